#!/usr/bin/env bash
# make-busybox-oci.sh OUT
#
# Builds a deterministic amd64 + arm64 busybox OCI image layout at OUT (byte-identical on every run
# with the same busybox-static .debs) and the unpacked root filesystems next to it:
#   OUT/                                 OCI layout; index.json refs: multi (nested image index with
#                                        amd64 and arm64/v8), amd64, arm64 (image manifests)
#   $(dirname OUT)/busybox-rootfs-amd64  unpacked rootfs (for qemu/bwrap/proot/chroot tests)
#   $(dirname OUT)/busybox-rootfs-arm64
#
# busybox-static .debs for both arches are fetched through a private apt state dir (the system's
# dpkg architectures and apt lists are not touched) and cached in $SPXPACK_TESTENV_CACHE
# (default /var/cache/spxpack-testenv), so reruns need no network.
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 OUT" >&2; exit 2; }
for t in jq gzip tar dpkg-deb apt-get sha256sum; do command -v $t >/dev/null || die "$t not found"; done
mkdir -p "$(dirname "$1")"
OUT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PARENT=$(dirname "$OUT")
ARCHES=(amd64 arm64)
APPLETS=(sh ash ls echo cat uname env mkdir rm touch id sleep test '[' wc sha256sum true false pwd cp mv ln
    chmod chown grep sed head tail printf stat readlink basename dirname date whoami hostname tar gzip
    find xargs sort tr cut du df ps kill which)

CACHE=$(cache_dir)/busybox
mkdir -p "$CACHE"

# ---- fetch the .debs (cached) ----
have_debs() {
    local a
    for a in "${ARCHES[@]}"; do compgen -G "$CACHE/busybox-static_*_$a.deb" >/dev/null || return 1; done
}
if ! have_debs; then
    S=$CACHE/apt
    mkdir -p "$S/lists/partial" "$S/cache/archives/partial"
    echo "deb [arch=amd64,arm64 signed-by=$DEBIAN_KEYRING] $DEBIAN_MIRROR bookworm main" >"$S/sources.list"
    A=(-o APT::Architecture=amd64 -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
        -o Dir::Etc::SourceList="$S/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$S/lists" -o Dir::Cache="$S/cache" -o Dir::State::Status=/dev/null
        -o Acquire::Languages=none -o Debug::NoLocking=1)
    log=$S/apt.log
    apt-get "${A[@]}" update >"$log" 2>&1 || { cat "$log" >&2; die "private apt-get update failed"; }
    (cd "$CACHE" && apt-get "${A[@]}" download busybox-static:amd64 busybox-static:arm64) >>"$log" 2>&1 ||
        { cat "$log" >&2; die "apt-get download busybox-static failed"; }
    have_debs || die "busybox-static .debs missing after download (see $log)"
    rm -rf "$S/lists" "$S/cache"
fi

# ---- build ----
WORK=$(mktemp -d "$PARENT/.busybox-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LAYOUT=$WORK/layout
mkdir -p "$LAYOUT/blobs/sha256"
declare -A DESC

for arch in "${ARCHES[@]}"; do
    deb=$(compgen -G "$CACHE/busybox-static_*_$arch.deb" | LC_ALL=C sort | tail -n1)
    version=$(dpkg-deb -f "$deb" Version)
    x=$WORK/x-$arch
    dpkg-deb -x "$deb" "$x"
    [[ -x "$x/bin/busybox" ]] || die "$deb has no bin/busybox"

    r=$WORK/rootfs-$arch
    mkdir -p "$r/bin" "$r/etc" "$r/root" "$r/tmp" "$r/dev" "$r/proc" "$r/sys"
    install -m 755 "$x/bin/busybox" "$r/bin/busybox"
    for a in "${APPLETS[@]}"; do ln -s busybox "$r/bin/$a"; done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$r/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$r/etc/group"
    chmod 644 "$r/etc/passwd" "$r/etc/group"
    chmod 755 "$r" "$r/bin" "$r/etc" "$r/dev" "$r/proc" "$r/sys"
    chmod 700 "$r/root"
    chmod 1777 "$r/tmp"

    det_tar "$r" >"$WORK/layer-$arch.tar"
    diffid=sha256:$(sha256sum "$WORK/layer-$arch.tar" | cut -d' ' -f1)
    gzip -n -9 <"$WORK/layer-$arch.tar" >"$WORK/layer-$arch.tar.gz"
    rm -f "$WORK/layer-$arch.tar"
    cfg='{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"}'
    DESC[$arch]=$(write_image "$LAYOUT" "$arch" "$WORK/layer-$arch.tar.gz" "$diffid" "$cfg" \
        "spxpack testenv: busybox-static $version")
done
write_index_layout "$LAYOUT" "${DESC[amd64]}" "${DESC[arm64]}"

# ---- install atomically-ish ----
rm -rf "$OUT" "$PARENT/busybox-rootfs-amd64" "$PARENT/busybox-rootfs-arm64"
mv "$LAYOUT" "$OUT"
for arch in "${ARCHES[@]}"; do mv "$WORK/rootfs-$arch" "$PARENT/busybox-rootfs-$arch"; done
