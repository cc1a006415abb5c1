#!/usr/bin/env bash
# make-python-oci.sh OUT
#
# Builds a python:3.11-slim stand-in for arm64 + amd64 from Debian bookworm packages with
# `mmdebstrap --variant=extract` (the packages in python-extract-packages.txt; no maintainer scripts
# run, so no qemu second stage) and writes a single-layer-per-arch OCI layout at OUT:
#   index.json refs: multi (nested index: amd64, arm64/v8), amd64, arm64
#   config: Env PATH=... LANG=C.UTF-8, Cmd ["python3"]
# Layers: deterministic tar (--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner, no
# dev/proc/sys/run contents), pigz -n -6.
#
# The result is cached in $SPXPACK_TESTENV_CACHE/python/<key>/ (key = hash of the package list and
# build recipe): layout/, rootfs-amd64/, rootfs-arm64/. Reruns only copy the cached layout to OUT.
# The cached rootfs dirs are printed as PYTHON_ROOTFS_<ARCH>=... lines; treat them as read-only.
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 OUT" >&2; exit 2; }
for t in mmdebstrap pigz jq tar sha256sum; do command -v $t >/dev/null || die "$t not found (run scripts/testenv/install.sh)"; done
mkdir -p "$(dirname "$1")"
OUT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
ARCHES=(amd64 arm64)
PKGFILE=$HERE/python-extract-packages.txt
RECIPE_VERSION=1   # bump when the layering below changes
PACKAGES=$(grep -v '^[[:space:]]*#' "$PKGFILE" | tr -s ' \t' '\n' | grep . | LC_ALL=C sort -u | paste -sd, -)
[[ -n "$PACKAGES" ]] || die "empty package list $PKGFILE"
SOURCES=("deb $DEBIAN_MIRROR bookworm main" "deb $DEBIAN_MIRROR bookworm-updates main"
    "deb $DEBIAN_SECURITY_MIRROR bookworm-security main")
KEY=$(printf '%s\n' "$RECIPE_VERSION" "$PACKAGES" "${SOURCES[@]}" | sha256sum | cut -c1-16)
C=$(cache_dir)/python/$KEY

if [[ ! -f "$C/complete" ]]; then
    rm -rf "$C"
    mkdir -p "$C"
    WORK=$(mktemp -d "$C/.build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    LAYOUT=$WORK/layout
    mkdir -p "$LAYOUT/blobs/sha256"
    declare -A DESC
    for arch in "${ARCHES[@]}"; do
        r=$WORK/rootfs-$arch
        log=$C/mmdebstrap-$arch.log
        if ! mmdebstrap --quiet --arch="$arch" --variant=extract --include="$PACKAGES" \
            bookworm "$r" "${SOURCES[@]}" >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            die "mmdebstrap ($arch) failed; log: $log"
        fi
        cp "$r/usr/share/base-passwd/passwd.master" "$r/etc/passwd"
        cp "$r/usr/share/base-passwd/group.master" "$r/etc/group"
        chmod 644 "$r/etc/passwd" "$r/etc/group"
        mkdir -p "$r/tmp" && chmod 1777 "$r/tmp"
        rm -f "$r/etc/resolv.conf"
        [[ -e "$r/usr/bin/python3" || -L "$r/usr/bin/python3" ]] || die "$arch rootfs has no usr/bin/python3"

        det_tar "$r" --anchored --exclude='dev/*' --exclude='proc/*' --exclude='sys/*' --exclude='run/*' \
            >"$WORK/layer-$arch.tar"
        diffid=sha256:$(sha256sum "$WORK/layer-$arch.tar" | cut -d' ' -f1)
        pigz -n -6 <"$WORK/layer-$arch.tar" >"$WORK/layer-$arch.tar.gz"
        rm -f "$WORK/layer-$arch.tar"
        cfg='{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["python3"]}'
        DESC[$arch]=$(write_image "$LAYOUT" "$arch" "$WORK/layer-$arch.tar.gz" "$diffid" "$cfg" \
            "spxpack testenv: mmdebstrap --variant=extract bookworm python3 python3-pip")
    done
    write_index_layout "$LAYOUT" "${DESC[amd64]}" "${DESC[arm64]}"
    for arch in "${ARCHES[@]}"; do mv "$WORK/rootfs-$arch" "$C/rootfs-$arch"; done
    mv "$LAYOUT" "$C/layout"
    touch "$C/complete"
fi

rm -rf "$OUT" "$OUT.tmp"
cp -a "$C/layout" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
for arch in "${ARCHES[@]}"; do
    echo "PYTHON_ROOTFS_${arch^^}=$C/rootfs-$arch"
done
