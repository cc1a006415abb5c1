#!/usr/bin/env bash
# bench/push.sh — `spxpack push` of a docker-save archive vs `skopeo copy docker-archive:…
# docker://…`, in one run, on the ~1 GB 8-layer arm64 image (bench/make-big-image.sh) into the
# local CNCF registry (plain HTTP on loopback). Each contender pushes to a repository of its
# own that holds nothing yet; then spxpack pushes again (everything exists) and to a third
# repository (everything mounted). Reports wall time, ratio and peak RSS (GNU time).
#
# Needs the test environment (scripts/testenv/setup.sh; source /tmp/spxpack-testenv/env.sh) and a
# release build (cargo build --release). Installs GNU time and pigz if missing.
source "$(dirname "$0")/lib.sh"
reg=$SPXPACK_TEST_REGISTRY_PLAIN; run=$(date +%s)
if [[ ! -f $w/layout/index.json ]]; then
    echo "building the image (once)…"; bench/make-big-image.sh "$w/layout" 8 128
fi
# the archive both contenders read: spxpack's docker-save archive of the layout (gzip layers kept)
[[ -f $w/big.tar ]] || "$bin" pull -q --cache-dir "$w/cache-archive" "oci:$w/layout:big@$(jq -r '.manifests[0].digest' "$w/layout/index.json")" -o "$w/big.tar" >/dev/null 2>&1
cat "$w/big.tar" > /dev/null   # page cache: both read from memory
bytes=$(stat -c %s "$w/big.tar")

slug() { tr -c 'A-Za-z0-9\n' '_' <<<"$1"; }
t() { local name=$1 f; f=$w/$(slug "$1"); shift; sync; /usr/bin/time -f "%e %M" -o "$w/t.out" "$@" >"$f.out" 2>"$f.err" || { cat "$f.err"; exit 1; }
      read -r sec kb < "$w/t.out"; printf '%-40s %7.2f s  %6.0f MB\n' "$name" "$sec" "$((kb / 1024))" | tee -a "$w/push-results"; }
: > "$w/push-results"
echo "archive: $w/big.tar, 8 layers, $((bytes / 1000000)) MB"
rm -rf "$w/cache-push"
t "spxpack push (new repository)" "$bin" push --json --cache-dir "$w/cache-push" "$w/big.tar" "$reg/bench-push-spx-$run:big"
t "spxpack push (again: all exist)" "$bin" push --json --cache-dir "$w/cache-push" "$w/big.tar" "$reg/bench-push-spx-$run:big"
t "spxpack push (other repo: all mounted)" "$bin" push --json --cache-dir "$w/cache-push" "$w/big.tar" "$reg/bench-push-spx2-$run:big"
t "skopeo copy docker-archive: docker://" skopeo copy -q --dest-tls-verify=false "docker-archive:$w/big.tar" "docker://$reg/bench-push-sk-$run:big"
jq -c '{digest, blobs, bytes_uploaded}' "$w/$(slug "spxpack push (new repository)").out"
want=$(tar -xOf "$w/big.tar" index.json | jq -r '.manifests[0].digest')
got=sha256:$(skopeo inspect --raw --tls-verify=false "docker://$reg/bench-push-spx-$run:big" | sha256sum | cut -d' ' -f1)
skd=sha256:$(skopeo inspect --raw --tls-verify=false "docker://$reg/bench-push-sk-$run:big" | sha256sum | cut -d' ' -f1)
echo "archive manifest $want; spxpack's tag $got; skopeo's tag $skd"
python3 - "$w/push-results" <<'PY'
import sys, re
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"(.*?)\s+([\d.]+) s\s+(\d+) MB", line)
    r[m.group(1).strip()] = (float(m.group(2)), int(m.group(3)))
sp = r["spxpack push (new repository)"]; sk = r["skopeo copy docker-archive: docker://"]
print(f"skopeo {sk[0]:.2f} s; spxpack {sp[0]:.2f} s -> {sk[0]/sp[0]:.1f}x faster; peak RSS spxpack {sp[1]} MB, skopeo {sk[1]} MB")
PY
