//! The layering of `src/` (the table in docs/architecture.md), checked: a module may use only
//! modules of lower layers (`crate::X` in code, not in comments). A new upward or sideways
//! import fails `upward_imports_are_refused`; move the shared piece down instead.

/// Top-level modules of the library, lowest layer first. Modules in one layer do not use each
/// other.
pub const LAYERS: &[&[&str]] = &[
    &["error", "host_env", "progress"],
    &["problem"],
    &["digest", "platform", "input", "atomic"],
    &["reference", "compress", "http"],
    &["tar"],
    &["image"],
    &["blob_cache"],
    &["docker_archive", "oci_layout", "registry"],
    &["source", "sandbox", "spx"],
    &["dockerfile"],
    &["ops"],
    &["fuzzing"],
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::LAYERS;

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// `(file, module it uses)` for every `crate::X` outside comments and test modules.
    fn edges(src: &Path) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for p in crate::testkit::source_files() {
            // test-only files (`*_tests.rs`, declared under #[cfg(test)]) may use anything
            if p.to_string_lossy().ends_with("tests.rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().to_string_lossy().into_owned();
            let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
            if ["lib", "main", "cli", "layering", "testkit"].contains(&top.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if code.starts_with("#[cfg(test)]") {
                    break; // test modules close the file by convention
                }
                let mut rest = code;
                while let Some(i) = rest.find("crate::") {
                    rest = &rest[i + "crate::".len()..];
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && name != top && name != "Error" && name != "Result" && name != "Kind" {
                        out.push((rel.clone(), top.clone(), name));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_module_has_a_layer() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let declared: BTreeSet<&str> = lib
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')))
            .filter(|m| *m != "layering")
            .collect();
        let missing: Vec<&&str> = declared.iter().filter(|m| layer_of(m).is_none()).collect();
        assert!(missing.is_empty(), "modules without a layer in src/layering.rs: {missing:?}");
    }

    #[test]
    fn upward_imports_are_refused() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut bad = BTreeSet::new();
        for (file, from, to) in edges(&src) {
            let (Some(a), Some(b)) = (layer_of(&from), layer_of(&to)) else { continue };
            if b >= a {
                bad.insert(format!("src/{file}: {from} (layer {a}) uses {to} (layer {b})"));
            }
        }
        assert!(
            bad.is_empty(),
            "imports against the layering (docs/architecture.md):\n{}",
            Vec::from_iter(bad).join("\n")
        );
    }
}
