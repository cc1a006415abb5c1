#!/usr/bin/env bash
# bench/pull.sh — `spxpack pull` vs `skopeo copy … docker-archive:` + `pigz -6`, in one run, on a
# ~1 GB 8-layer arm64 image in the local registry; plus the floor: reading and sha256-ing the
# same compressed bytes once. Reports wall time, ratios and peak RSS (GNU time).
#
# Needs the test environment (scripts/testenv/setup.sh; source /tmp/spxpack-testenv/env.sh) and a
# release build (cargo build --release). Installs GNU time and pigz if missing.
source "$(dirname "$0")/lib.sh"
reg=$SPXPACK_TEST_REGISTRY_PLAIN; ref=$reg/bench:big
if [[ ! -f $w/layout/index.json ]]; then
    echo "building the image (once)…"; bench/make-big-image.sh "$w/layout" 8 128
fi
skopeo copy -q --dest-tls-verify=false "oci:$w/layout:big" "docker://$ref"
blobs=$(jq -r '.layers[].digest' "$w/layout/blobs/sha256/$(jq -r '.manifests[0].digest' "$w/layout/index.json" | cut -d: -f2)" | cut -d: -f2)
bytes=0; for b in $blobs; do bytes=$((bytes + $(stat -c %s "$w/layout/blobs/sha256/$b"))); done

# t NAME CMD… : wall seconds and peak RSS (MB) of CMD, appended to $w/results
t() { local name=$1; shift; sync; /usr/bin/time -f "%e %M" -o "$w/t.out" "$@" >/dev/null 2>"$w/$name.err" || { cat "$w/$name.err"; exit 1; }
      read -r sec kb < "$w/t.out"; printf '%-34s %7.2f s  %6.0f MB\n' "$name" "$sec" "$((kb / 1024))" | tee -a "$w/results"; }
: > "$w/results"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
# warm the registry's files once so every contender reads from the page cache
cat "$(printf "$SPXPACK_TEST_REGISTRY_PLAIN_DATA/docker/registry/v2/blobs/sha256/%s\n" $(for b in $blobs; do echo "${b:0:2}/$b/data"; done))" > /dev/null 2>&1 || true
files=(); for b in $blobs; do files+=("$SPXPACK_TEST_REGISTRY_PLAIN_DATA/docker/registry/v2/blobs/sha256/${b:0:2}/$b/data"); done
cat "${files[@]}" > /dev/null
echo "image: $ref, 8 layers, $((bytes / 1000000)) MB compressed"
t "floor: cat | sha256sum" sh -c "cat ${files[*]} | sha256sum"
t "floor: cat | openssl sha256" sh -c "cat ${files[*]} | openssl dgst -sha256"
t "floor: cat > file + fsync" sh -c "cat ${files[*]} > $w/floor.bin && sync $w/floor.bin"
rm -f "$w/floor.bin"
rm -rf "$w/cache" "$w/out.tar.gz" "$w/sk.tar" "$w/sk.tar.gz"
t "spxpack pull (cold cache)" "$bin" pull -q --cache-dir "$w/cache" "$ref" -o "$w/out.tar.gz"
t "spxpack pull (warm cache)" "$bin" pull -q --cache-dir "$w/cache" "$ref" -o "$w/out2.tar.gz"
t "spxpack pull .tar (warm cache)" "$bin" pull -q --cache-dir "$w/cache" "$ref" -o "$w/out3.tar"
t "skopeo copy docker-archive:" skopeo copy -q --src-tls-verify=false "docker://$ref" "docker-archive:$w/sk.tar:bench:big"
t "pigz -6 (of skopeo's archive)" pigz -6 -f "$w/sk.tar"
ls -l "$w/out.tar.gz" "$w/sk.tar.gz" | awk '{printf "%-40s %6.0f MB\n", $9, $5/1e6}'
python3 - "$w/results" <<'PY'
import sys, re
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"(.*?)\s+([\d.]+) s\s+(\d+) MB", line)
    r[m.group(1).strip()] = (float(m.group(2)), int(m.group(3)))
sk = r["skopeo copy docker-archive:"][0] + r["pigz -6 (of skopeo's archive)"][0]
sp = r["spxpack pull (cold cache)"][0]
floor = r["floor: cat | openssl sha256"][0]
floor2 = r["floor: cat | sha256sum"][0]
floor3 = r["floor: cat > file + fsync"][0]
print(f"skopeo + pigz -6: {sk:.2f} s; spxpack cold: {sp:.2f} s -> {sk/sp:.1f}x faster")
print(f"spxpack cold / floor read+sha256 (openssl): {sp/floor:.2f}x; (coreutils sha256sum): {sp/floor2:.2f}x")
print(f"spxpack cold / floor read+write+fsync: {sp/floor3:.2f}x")
print(f"peak RSS spxpack cold: {r['spxpack pull (cold cache)'][1]} MB")
PY
