#!/usr/bin/env bash
# bench/image-build.sh — `spxpack image build` vs `docker build` (Docker 20.10, classic builder) +
# `docker save`, in one run, on a COPY-heavy context of ~500 MB of mixed files: ~250 MB of real
# files from this machine (many small ones: /usr/share, /usr/lib, the Rust toolchain) and
# ~256 MB of incompressible bytes in a few large files (like model weights). Then a rebuild with
# nothing changed and a rebuild after changing one small source file, for both.
# Reports wall time, ratios and peak RSS (GNU time).
#
# Needs the test environment (scripts/testenv/setup.sh; source /tmp/spxpack-testenv/env.sh) and a
# release build (cargo build --release). Installs GNU time if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SPXPACK_TEST_REGISTRY_PLAIN:?source /tmp/spxpack-testenv/env.sh first (scripts/testenv/setup.sh)}"
command -v /usr/bin/time >/dev/null || apt-get install -y -q --no-install-recommends --no-upgrade time >/dev/null
bin=${SPXPACK_BIN:-$PWD/target/release/spxpack}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
docker=${SPXPACK_TEST_DOCKER:-docker}
w=${BENCH_DIR:-/var/tmp/spxpack-bench-build}; mkdir -p "$w"
base=$SPXPACK_TEST_REGISTRY_PLAIN/busybox:multi
ctx=$w/ctx

# ---- the context (made once, deterministic file list) ----
if [[ ! -f $ctx/Dockerfile ]]; then
    echo "making the context (once)…"
    rm -rf "$ctx"; mkdir -p "$ctx/src" "$ctx/models"
    find /usr/share /usr/lib/x86_64-linux-gnu "$HOME"/.rustup/toolchains -xdev -type f -size -16M -readable \
        -printf '%s %p\n' 2>/dev/null | LC_ALL=C sort -k2 \
        | awk -v need=$((250 * 1024 * 1024)) '{ if (t >= need) exit; print substr($0, index($0, " ") + 1); t += $1 }' \
        > "$w/files" || true
    tar --create --files-from "$w/files" 2>/dev/null | tar --extract --directory "$ctx/src" 2>/dev/null || true
    for i in 0 1 2 3; do
        openssl enc -aes-128-ctr -nosalt -K "$(printf '%032x' "$i")" -iv 0 -in /dev/zero 2>/dev/null \
            | head -c $((64 * 1024 * 1024)) > "$ctx/models/weights-$i.bin" || true
    done
    printf 'numpy==1.26.4\nrequests==2.31.0\n' > "$ctx/requirements.txt"
    printf '#!/bin/sh\necho service\n' > "$ctx/src/run.sh"; chmod 755 "$ctx/src/run.sh"
    cat > "$ctx/Dockerfile" <<EOF
FROM $base
WORKDIR /app
COPY requirements.txt ./
COPY models/ /models/
COPY src/ ./src/
ENV PYTHONPATH=/app/src
ENTRYPOINT ["/app/src/run.sh"]
EOF
fi
files=$(find "$ctx" -type f | wc -l); bytes=$(du -sb "$ctx" | cut -f1)
echo "context: $files files, $((bytes / 1000000)) MB"

# t NAME CMD… : wall seconds and peak RSS (MB) of CMD, appended to $w/results
t() { local name=$1; shift; sync; /usr/bin/time -f "%e %M" -o "$w/t.out" "$@" >/dev/null 2>"$w/err" || { cat "$w/err"; exit 1; }
      read -r sec kb < "$w/t.out"; printf '%-44s %7.2f s  %6.0f MB\n' "$name" "$sec" "$((kb / 1024))" | tee -a "$w/results"; }
: > "$w/results"
"$docker" pull -q --platform linux/arm64 "$base" >/dev/null
cat $(find "$ctx" -type f) > /dev/null   # everyone reads the context from the page cache
rm -rf "$w/cache" "$w"/*.tar
"$docker" rmi -f bench-build:docker >/dev/null 2>&1 || true

export DOCKER_BUILDKIT=0
spx=("$bin" image build -q --cache-dir "$w/cache" -t bench-build:spx -o "$w/spx.tar" "$ctx")
dbuild=("$docker" build -q --platform linux/arm64 --network none -t bench-build:docker)
dsave=("$docker" save -o "$w/docker.tar" bench-build:docker)

t "spxpack image build (cold cache) → .tar" "${spx[@]}"
t "docker build --no-cache (classic)" "${dbuild[@]}" --no-cache "$ctx"
t "docker save" "${dsave[@]}"
t "spxpack rebuild, nothing changed" "${spx[@]}"
t "docker build, nothing changed" "${dbuild[@]}" "$ctx"
t "docker save (again)" "${dsave[@]}"
echo "# one more line" >> "$ctx/src/run.sh"
t "spxpack rebuild, one file changed" "${spx[@]}"
t "docker build, one file changed" "${dbuild[@]}" "$ctx"
t "docker save (after the change)" "${dsave[@]}"
sed -i '$ d' "$ctx/src/run.sh"
ls -l "$w/spx.tar" "$w/docker.tar" | awk '{printf "%-50s %6.0f MB\n", $9, $5/1e6}'
python3 - "$w/results" <<'PY'
import sys, re
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"(.*?)\s+([\d.]+) s\s+(\d+) MB", line)
    r[m.group(1).strip()] = (float(m.group(2)), int(m.group(3)))
g = lambda k: r[k][0]
cold_d = g("docker build --no-cache (classic)") + g("docker save")
cold_s = g("spxpack image build (cold cache) → .tar")
print(f"cold: docker build + save {cold_d:.2f} s; spxpack {cold_s:.2f} s -> {cold_d/cold_s:.1f}x faster")
nc_d = g("docker build, nothing changed") + g("docker save (again)")
print(f"no change: spxpack {g('spxpack rebuild, nothing changed'):.2f} s; docker build {g('docker build, nothing changed'):.2f} s (+ save {g('docker save (again)'):.2f} s = {nc_d:.2f} s)")
one_d = g("docker build, one file changed") + g("docker save (after the change)")
one_s = g("spxpack rebuild, one file changed")
print(f"one file changed: spxpack {one_s:.2f} s; docker build + save {one_d:.2f} s -> {one_d/one_s:.1f}x faster")
print(f"peak RSS spxpack cold: {r['spxpack image build (cold cache) → .tar'][1]} MB")
PY
