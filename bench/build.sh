#!/usr/bin/env bash
# bench/build.sh — end-to-end `spxpack build` of a pull-only extension with the ~1 GiB, 8-layer
# arm64 image of bench/pull.sh, against the docker-free manual pipeline in the same run:
#   skopeo copy docker://IMAGE docker-archive:img.tar  →  pigz -9 img.tar  →  tar czf ext.spx …
# Reports wall time, peak RSS, the speed ratio and the size ratio of the two SPX files.
#
# Needs the test environment (scripts/testenv/setup.sh; source /tmp/spxpack-testenv/env.sh) and a
# release build. Installs GNU time and pigz if missing.
source "$(dirname "$0")/lib.sh"
ref=$SPXPACK_TEST_REGISTRY_PLAIN/bench:big
[[ -f $w/layout/index.json ]] || { echo "building the image (once)…"; bench/make-big-image.sh "$w/layout" 8 128; }
skopeo copy -q --dest-tls-verify=false "oci:$w/layout:big" "docker://$ref"

ext=$w/ext; rm -rf "$ext"; mkdir -p "$ext"
cat > "$ext/manifest.json" <<JSON
{"extension_name": "bench_ext", "description": "benchmark", "version": "1.0.0", "images": ["bench.tar.gz"], "installation_target": "spot"}
JSON
cat > "$ext/docker-compose.yml" <<YAML
services:
  app:
    image: "$ref"
    restart: unless-stopped
    network_mode: host
YAML

t() { local name=$1; shift; sync; /usr/bin/time -f "%e %M" -o "$w/t.out" "$@" >/dev/null 2>"$w/err" || { cat "$w/err"; exit 1; }
      read -r sec kb < "$w/t.out"; printf '%-40s %7.2f s  %6.0f MB\n' "$name" "$sec" "$((kb / 1024))" | tee -a "$w/build-results"; }
: > "$w/build-results"
rm -rf "$w/bcache" "$w/spx" "$w/manual"; mkdir -p "$w/spx" "$w/manual"
t "spxpack build (cold cache)" "$bin" build -q --cache-dir "$w/bcache" "$ext" -o "$w/spx/bench_ext.spx"
t "spxpack build (warm cache)" "$bin" build -q --cache-dir "$w/bcache" "$ext" -o "$w/spx/bench_ext2.spx"
t "spxpack build --verify off (warm)" "$bin" build -q --verify off --cache-dir "$w/bcache" "$ext" -o "$w/spx/bench_ext3.spx"
cp "$ext/manifest.json" "$ext/docker-compose.yml" "$w/manual/"
t "manual: skopeo copy docker-archive:" skopeo copy -q --src-tls-verify=false "docker://$ref" "docker-archive:$w/manual/bench.tar:$ref"
t "manual: pigz -9" pigz -9 -f "$w/manual/bench.tar"
mv "$w/manual/bench.tar.gz" "$w/manual/bench.tar.gz" 2>/dev/null || true
t "manual: tar czf" tar -C "$w/manual" -czf "$w/manual/bench_ext.spx" manifest.json docker-compose.yml bench.tar.gz
python3 - "$w/build-results" "$w/spx/bench_ext.spx" "$w/manual/bench_ext.spx" <<'PY'
import os, re, sys
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"(.*?)\s+([\d.]+) s\s+(\d+) MB", line)
    r[m.group(1).strip()] = float(m.group(2))
manual = sum(v for k, v in r.items() if k.startswith("manual:"))
ours = r["spxpack build (cold cache)"]
a, b = os.path.getsize(sys.argv[2]), os.path.getsize(sys.argv[3])
print(f"manual pipeline: {manual:.2f} s; spxpack build cold: {ours:.2f} s -> {manual/ours:.1f}x faster")
print(f"SPX size: spxpack {a/1e6:.1f} MB, manual {b/1e6:.1f} MB -> spxpack is {100*(a-b)/b:+.2f}%")
PY
"$bin" verify "$w/spx/bench_ext.spx"
