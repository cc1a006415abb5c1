//! Integration tests against real components: the CNCF distribution registry (plain, TLS +
//! htpasswd, token auth), Docker 20.10, skopeo and qemu-aarch64. `./scripts/test.sh` installs
//! and starts them; a test that needs one fails with a message saying so when they are missing.

mod support;

mod archive_input;
mod bad_input;
mod build_cache;
mod build_errors;
mod build_oracle;
mod build_sources;
mod build_util;
mod faults;
mod pull;
