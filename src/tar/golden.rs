//! Byte goldens for the writers: a writer's output for a small fixed input is compared with
//! `fixtures/goldens/<name>`. Run the tests with `SPXPACK_BLESS=1` to rewrite the files after a
//! deliberate change, and say in the CHANGELOG which bytes changed.

use std::path::PathBuf;

/// Compares `bytes` with the golden file `name` (or rewrites it under `SPXPACK_BLESS=1`).
#[track_caller]
#[allow(clippy::disallowed_methods)] // a test switch, not library behaviour
pub fn check(name: &str, bytes: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/goldens").join(name);
    if std::env::var_os("SPXPACK_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("parent")).unwrap();
        std::fs::write(&path, bytes).unwrap();
        return;
    }
    let want = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with SPXPACK_BLESS=1 cargo test --lib", path.display()));
    if want != bytes {
        let at = want.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(want.len().min(bytes.len()));
        panic!(
            "{name}: the writer's bytes changed ({} bytes now, {} in the golden; first difference at byte {at}). \
             If the change is intended, rerun with SPXPACK_BLESS=1 and note it in the CHANGELOG.",
            bytes.len(),
            want.len()
        );
    }
}
