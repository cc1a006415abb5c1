#!/usr/bin/env bash
# bench/make-big-image.sh OUT_LAYOUT [LAYERS] [MIB_PER_LAYER]
# Builds a deterministic arm64 OCI layout, LAYERS layers (default 8) of about MIB_PER_LAYER MiB
# uncompressed each (default 128, so ~1 GiB): half real files from this machine (/usr/lib,
# /usr/share, the Rust toolchain), half incompressible bytes (like model weights or media), so
# the image compresses about as much as real robot images do. Each layer is gzip'd with pigz -6.
# Tag: big.
set -euo pipefail
out=$1; layers=${2:-8}; mib=${3:-128}
half=$((mib * 1024 * 1024 / 2))
need=$((layers * half))
rm -rf "$out"; mkdir -p "$out/blobs/sha256"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# candidate files, sorted, regular files only, stopping once we have enough bytes
find /usr/lib/x86_64-linux-gnu /usr/share "$HOME"/.rustup/toolchains -xdev -type f -size -64M -printf '%s %p\n' 2>/dev/null \
    | LC_ALL=C sort -k2 | awk -v need="$need" -v per="$half" -v dir="$work" '
        { if (total >= need) exit; g = int(total / per); print substr($0, index($0, " ") + 1) > (dir "/group" g); total += $1 }' || true  # awk stops early: SIGPIPE upstream
diff_ids=(); layer_descs=()
for ((i = 0; i < layers; i++)); do
    [[ -s "$work/group$i" ]] || { echo "not enough files for layer $i" >&2; exit 1; }
    mkdir -p "$work/data"
    openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$i")" -iv 0 -in /dev/zero 2>/dev/null | head -c "$half" > "$work/data/weights-$i.bin" || true
    echo "$work/data/weights-$i.bin" >> "$work/group$i"
    tar --create --file "$work/layer$i.tar" --files-from "$work/group$i" --sort=name --mtime=@0 --owner=0 --group=0 \
        --numeric-owner --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime 2>/dev/null
    diff_ids+=("\"sha256:$(sha256sum "$work/layer$i.tar" | cut -d' ' -f1)\"")
    pigz -n -6 -c "$work/layer$i.tar" > "$work/layer$i.tgz"; rm -f "$work/data/weights-$i.bin"
    d=$(sha256sum "$work/layer$i.tgz" | cut -d' ' -f1); s=$(stat -c %s "$work/layer$i.tgz")
    mv "$work/layer$i.tgz" "$out/blobs/sha256/$d"; rm "$work/layer$i.tar"
    layer_descs+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$s}")
done
join() { local IFS=,; echo "$*"; }
printf '{"architecture":"arm64","variant":"v8","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$(join "${diff_ids[@]}")" > "$work/config"
cd_=$(sha256sum "$work/config" | cut -d' ' -f1); cs=$(stat -c %s "$work/config"); mv "$work/config" "$out/blobs/sha256/$cd_"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$cd_" "$cs" "$(join "${layer_descs[@]}")" > "$work/manifest"
md=$(sha256sum "$work/manifest" | cut -d' ' -f1); ms=$(stat -c %s "$work/manifest"); mv "$work/manifest" "$out/blobs/sha256/$md"
echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"big"}}]}' "$md" "$ms" > "$out/index.json"
du -sb "$out/blobs" | awk '{printf "layout: %.0f MB compressed\n", $1/1e6}'
