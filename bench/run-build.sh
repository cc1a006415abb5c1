#!/usr/bin/env bash
# bench/run-build.sh — a Dockerfile with RUN steps, `spxpack image build` vs `docker build`
# (Docker 20.10, classic builder) in one run, same emulation (the kernel's qemu-aarch64 binfmt
# handler) and same network: the pip case of the RUN acceptance test on the Debian bookworm
# python stand-in for linux/arm64 —
#   FROM python; COPY requirements.txt; RUN pip install -r requirements.txt (six from PyPI)
# Rows: the step runs (Docker: `--no-cache` with the base already in the daemon — the test
# daemon shares its layers with other images, so it cannot be made colder; plus `docker save`,
# which a CI job needs to ship the image), spxpack cold (empty cache: the base is fetched and
# extracted) and with its base cached (`--no-cache`), then the rebuild with nothing changed.
# Reports wall time and peak RSS (GNU time).
#
# BENCH_PIP=local takes PyPI out of the measurement: the wheel is downloaded once on the host,
# COPYed in and installed with `pip install --no-index` (what is left is the sandbox, qemu and
# the image writing). Downloads from PyPI through this machine's egress vary by seconds run to run.
#
# Needs the test environment (scripts/testenv/setup.sh; source /tmp/spxpack-testenv/env.sh), a
# release build (cargo build --release) and network access to PyPI. Behind a TLS-intercepting
# proxy set BENCH_CA_BUNDLE to its CA bundle (default /etc/ssl/certs/ca-certificates.crt): spxpack
# gets it with --ca-bundle, Docker's Dockerfile copies it in and deletes it again.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SPXPACK_TEST_REGISTRY_PLAIN:?source /tmp/spxpack-testenv/env.sh first (scripts/testenv/setup.sh)}"
command -v /usr/bin/time >/dev/null || apt-get install -y -q --no-install-recommends --no-upgrade time >/dev/null
bin=${SPXPACK_BIN:-$PWD/target/release/spxpack}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
docker=${SPXPACK_TEST_DOCKER:-docker}
ca=${BENCH_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
w=${BENCH_DIR:-/var/tmp/spxpack-bench-run}; mkdir -p "$w"

# ---- the base image: the python stand-in, pushed under a name only this run uses ----
py=${SPXPACK_TEST_PYTHON_OCI:-/tmp/spxpack-it-python/python-oci}
if [[ ! -f $py/index.json ]]; then
    echo "making the python stand-in (once)…"
    scripts/testenv/make-python-oci.sh "$w/python-oci" >/dev/null
    py=$w/python-oci
fi
base=$SPXPACK_TEST_REGISTRY_PLAIN/bench-run-python-$$:t
skopeo copy -q --all --dest-tls-verify=false "oci:$py:multi" "docker://$base"

ctx=$w/ctx; rm -rf "$ctx"; mkdir -p "$ctx"
printf 'six==1.16.0\n' > "$ctx/requirements.txt"
cp "$ca" "$ctx/egress-ca.pem"
pip_args="--no-cache-dir -r /app/requirements.txt"
copy_wheels=""
if [[ ${BENCH_PIP:-pypi} == local ]]; then
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$ctx/wheels" -r "$ctx/requirements.txt"
    pip_args="--no-cache-dir --no-index --find-links /app/wheels -r /app/requirements.txt"
    copy_wheels="COPY wheels /app/wheels"
fi
cat > "$ctx/Dockerfile" <<EOF
FROM $base
ENV PIP_BREAK_SYSTEM_PACKAGES=1
COPY requirements.txt /app/requirements.txt
$copy_wheels
RUN python3 -m pip install $pip_args
EOF
cat > "$ctx/Dockerfile.docker" <<EOF
FROM $base
ENV PIP_BREAK_SYSTEM_PACKAGES=1
COPY egress-ca.pem /egress-ca.pem
COPY requirements.txt /app/requirements.txt
$copy_wheels
RUN PIP_CERT=/egress-ca.pem python3 -m pip install $pip_args && rm /egress-ca.pem
EOF

# t NAME CMD… : wall seconds and peak RSS (MB) of CMD, appended to $w/results
t() { local name=$1; shift; sync; /usr/bin/time -f "%e %M" -o "$w/t.out" "$@" >"$w/out" 2>"$w/err" || { cat "$w/out" "$w/err"; exit 1; }
      read -r sec kb < "$w/t.out"; printf '%-50s %7.2f s  %6.0f MB\n' "$name" "$sec" "$((kb / 1024))" | tee -a "$w/results"; }
: > "$w/results"
export DOCKER_BUILDKIT=0
dbuild=("$docker" build -q --platform linux/arm64 --network host -f "$ctx/Dockerfile.docker" -t bench-run:docker "$ctx")
spx=("$bin" image build -q --cache-dir "$w/cache" --ca-bundle "$ca" -t bench-run:spx -o "$w/spx.tar" "$ctx")

"$docker" rmi -f bench-run:docker >/dev/null 2>&1 || true
"$docker" pull -q --platform linux/arm64 "$base" >/dev/null
rm -rf "$w/cache" "$w"/*.tar
t "docker build --no-cache (base in the daemon)" "${dbuild[@]}" --no-cache
t "docker save bench-run:docker" "$docker" save -o "$w/docker.tar" bench-run:docker
t "spxpack image build (cold: empty cache)" "${spx[@]}"
t "spxpack image build --no-cache (base cached)" "${spx[@]}" --no-cache
t "docker build (nothing changed)" "${dbuild[@]}"
t "spxpack image build (nothing changed)" "${spx[@]}"
"$docker" rmi -f bench-run:docker "$base" >/dev/null 2>&1 || true

"$docker" rmi -f bench-run:docker "$base" >/dev/null 2>&1 || true

python3 - "$w/results" <<'PY'
import re, sys
r = {}
for line in open(sys.argv[1]):
    m = re.match(r"(.*?)\s+([\d.]+) s\s+(\d+) MB", line)
    r[m.group(1).strip()] = float(m.group(2))
d = r["docker build --no-cache (base in the daemon)"]
ds = d + r["docker save bench-run:docker"]
s = r["spxpack image build (cold: empty cache)"]
n = r["spxpack image build --no-cache (base cached)"]
print(f"step runs: docker build --no-cache {d:.2f} s (+ save {ds:.2f} s); spxpack cold {s:.2f} s -> {d/s:.2f}x, "
      f"spxpack --no-cache {n:.2f} s -> {d/n:.2f}x")
print(f"nothing changed: docker build {r['docker build (nothing changed)']:.2f} s, "
      f"spxpack {r['spxpack image build (nothing changed)']:.2f} s")
PY
