#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...] — builds the cargo-fuzz targets in fuzz/ and runs each for
# SECONDS (default 60), seeded from fuzz/corpus/TARGET. Prints one line per target and exits
# non-zero if any target found a crash, a hang (>10 s for one input) or an out-of-memory (>2 GiB).
# See docs/fuzzing.md.
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz, which it installs
# with `cargo install --locked cargo-fuzz` into $SPXPACK_FUZZ_TOOLS (default ~/.cache/spxpack/fuzz-tools)
# when it is not on PATH.
#
# Environment:
#   SPXPACK_FUZZ_PARALLEL=N     targets run at once (default 1; each uses one core)
#   SPXPACK_FUZZ_NICE=N         nice level of the runs (default 19: never starve other work)
#   SPXPACK_FUZZ_SANITIZER=S    none (default: Rust code, and the only unsafe is not reached) or address
#   SPXPACK_FUZZ_TOOLS=DIR      where cargo-fuzz is installed when missing
#
# Inputs a run adds go to fuzz/run/TARGET (ignored by git); a crashing input goes to
# fuzz/artifacts/TARGET/ and its path is printed. Reproduce it with
#   cargo +nightly fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-…
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "fuzz.sh: SECONDS must be a positive number, not '$seconds'" >&2; exit 2; }
shift || true
parallel=${SPXPACK_FUZZ_PARALLEL:-1}
niceness=${SPXPACK_FUZZ_NICE:-19}
sanitizer=${SPXPACK_FUZZ_SANITIZER:-none}
tools=${SPXPACK_FUZZ_TOOLS:-$HOME/.cache/spxpack/fuzz-tools}

fail() { echo "fuzz.sh: $*" >&2; exit 2; }

command -v rustup >/dev/null || fail "rustup is not installed; install it from https://rustup.rs, then: rustup toolchain install nightly"
rustup toolchain list | grep -q '^nightly' ||
    fail "the nightly toolchain is missing (cargo-fuzz needs it); install it with: rustup toolchain install nightly"
export PATH="$tools/bin:$PATH"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz into $tools" >&2
    cargo install --locked --root "$tools" cargo-fuzz >&2 ||
        fail "cannot install cargo-fuzz; install it yourself with: cargo install --locked cargo-fuzz"
fi

if [[ $# -gt 0 ]]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
[[ ${#targets[@]} -gt 0 ]] || fail "no fuzz targets found in fuzz/"

echo "==> building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)" >&2
nice -n "$niceness" cargo +nightly fuzz build -s "$sanitizer" >&2 || fail "the fuzz targets do not build"

# run TARGET: one libFuzzer run; writes run/TARGET.log and prints the target's line.
run() {
    local t=$1 log="run/$1.log"
    mkdir -p "run/$t" "corpus/$t" "artifacts/$t"
    local start=$SECONDS rc=0
    nice -n "$niceness" cargo +nightly fuzz run -s "$sanitizer" "$t" "run/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    local took=$((SECONDS - start))
    local execs corpus
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # the last status line: "#EXECS DONE cov: … corp: INPUTS/SIZE …"
    corpus=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' "$log" | tail -1)
    if [[ $rc -eq 0 ]]; then
        printf '%-14s ok     %5ss  %10s execs  corpus %s\n' "$t" "$took" "${execs:-?}" "${corpus:-?}"
    else
        local art
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        printf '%-14s FAILED %5ss  %10s execs  %s (log fuzz/%s)\n' "$t" "$took" "${execs:-?}" \
            "$(grep -m1 -oE 'panicked at [^ ]*|ERROR: libFuzzer: [a-z -]+' "$log" || echo "exit $rc")${art:+, input $art}" "$log"
        return 1
    fi
}

failed=0
pids=()
for t in "${targets[@]}"; do
    run "$t" &
    pids+=($!)
    if [[ ${#pids[@]} -ge $parallel ]]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
exit "$failed"
