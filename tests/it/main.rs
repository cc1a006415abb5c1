//! Integration tests against real components: the CNCF distribution registry (plain, TLS +
//! htpasswd, token auth), Docker 20.10, skopeo and qemu-aarch64. `./scripts/test.sh` installs
//! and starts them; a test that needs one fails with a message saying so when they are missing.

// The tests read their environment (SPXPACK_TEST_*, set by scripts/testenv) directly.
#![allow(clippy::disallowed_methods)]

mod support;

mod archive_input;
// archives GNU tar, Python and Docker read differently: refused by verify and pull
mod archive_shapes;
mod bad_input;
mod build_cache;
mod build_errors;
mod build_oracle;
mod build_sources;
mod build_util;
// config diff_ids that do not match the layers: pull and build fail, nothing written
mod diff_ids;
mod faults;
mod push;
// push against a fake registry that misbehaves on demand
mod pull;
mod push_faults;
// one redirect policy for every HTTP request (ADD <url> like registries)
mod redirect_policy;
// the bundled example extension (README's first command)
mod spx_example;
// every Spot SDK example extension, built with the compose files untouched
mod spx_sdk_examples;
// the SDK script's documented command lines, run with spxpack build
mod spx_dropin;
// bad extension inputs: one error line each, exit 1, nothing written
mod spx_bad_input;
// where outputs may go: never over an input, never over a device or FIFO; symlinks written through
mod outputs;
// verify and inspect of SPX files made by the SDK script's method, by hand, or broken
mod spx_verify;
// spxpack init, then build
mod spx_init;
// compose-driven build features (provided images, derived names, prebuilt archives, dates)
mod run_basics;
// RUN --mount=type=bind
mod run_mounts;
mod run_python;
mod sandbox_diff;
mod sandbox_python;
mod sandbox_rungs;
mod sandbox_safety;
mod sandbox_secrets;
mod spx_build;
// images built from Dockerfiles (compose build:, -f/-t) inside spxpack build
mod spx_dockerfile;
// FIFOs and /dev/zero as input files: refused, in bounded time and memory
mod untrusted_files;
// Dockerfiles whose variables double on every line, and very long Dockerfiles
mod dockerfile_limits;
// ELF files for another architecture than the image: a warning, --strict an error
mod wrong_arch;
