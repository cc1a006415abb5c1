#!/usr/bin/env bash
# scripts/test.sh [CARGO TEST ARGS...] — the project's test command (CI runs it through .ci/run).
#
#   1. cargo fmt --check, cargo clippy (fast failures first), then a short fuzzing pass:
#      scripts/fuzz.sh 10, every fuzz target for 10 s, two at a time (needs the nightly toolchain;
#      installs cargo-fuzz into ~/.cache/spxpack/fuzz-tools once)
#   2. scripts/testenv/setup.sh: installs and starts the real components (Docker 20.10, registries,
#      qemu-aarch64 binfmt, fixtures) and writes $SPXPACK_TESTENV_DIR/env.sh (needs root)
#   3. cargo test --locked --all-targets with env.sh sourced
#   4. scripts/testenv/teardown.sh on exit (whatever happened)
#
# Environment: SPXPACK_TEST_SKIP_FUZZ=1 skips the fuzzing pass; SPXPACK_TEST_PYTHON=1 also builds/pushes the python stand-in (setup.sh --python);
# SPXPACK_TEST_KEEP_ENV=1 leaves the services running afterwards (for debugging; tear down with
# scripts/testenv/teardown.sh); SPXPACK_TEST_SKIP_ENV=1 runs the tests without the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

if [[ "${SPXPACK_TEST_SKIP_FUZZ:-0}" != 1 ]]; then
    step "scripts/fuzz.sh 10 (every fuzz target for 10 s; docs/fuzzing.md)"
    SPXPACK_FUZZ_PARALLEL=${SPXPACK_FUZZ_PARALLEL:-2} ./scripts/fuzz.sh 10
fi

if [[ "${SPXPACK_TEST_SKIP_ENV:-0}" != 1 ]]; then
    teardown() {
        local rc=$?
        if [[ "${SPXPACK_TEST_KEEP_ENV:-0}" == 1 ]]; then
            echo "==> keeping the test environment (SPXPACK_TEST_KEEP_ENV=1); stop it with scripts/testenv/teardown.sh"
        else
            ./scripts/testenv/teardown.sh || { echo "test.sh: teardown failed" >&2; [[ $rc -ne 0 ]] || rc=1; }
        fi
        exit "$rc"
    }
    trap teardown EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    setup_args=()
    [[ "${SPXPACK_TEST_PYTHON:-0}" == 1 ]] && setup_args+=(--python)
    step "scripts/testenv/setup.sh ${setup_args[*]}"
    ./scripts/testenv/setup.sh "${setup_args[@]}"
    # shellcheck disable=SC1091
    source "${SPXPACK_TESTENV_DIR:-/tmp/spxpack-testenv}/env.sh"
fi

step "cargo test --locked --all-targets $*"
cargo test --locked --all-targets "$@"
