# bench/lib.sh — sourced by the benchmarks: the test environment, GNU time and pigz, the release
# binary ($bin) and the work directory ($w, $BENCH_DIR or /var/tmp/spxpack-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SPXPACK_TEST_REGISTRY_PLAIN:?source /tmp/spxpack-testenv/env.sh first (scripts/testenv/setup.sh)}"
command -v /usr/bin/time >/dev/null && command -v pigz >/dev/null || apt-get install -y -q --no-install-recommends --no-upgrade time pigz >/dev/null
bin=${SPXPACK_BIN:-$PWD/target/release/spxpack}
[[ -x $bin ]] || { echo "build first: cargo build --release" >&2; exit 1; }
w=${BENCH_DIR:-/var/tmp/spxpack-bench}; mkdir -p "$w"
