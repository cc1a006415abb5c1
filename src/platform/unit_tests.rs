//! Platform normalisation as Docker and containerd apply it, and the index JSON form.

use super::*;

fn norm(os: &str, arch: &str, variant: Option<&str>) -> String {
    Platform::new(os, arch, variant).normalized().to_string()
}

#[test]
fn architecture_aliases_normalise() {
    for (arch, variant, want) in [
        ("aarch64", None, "linux/arm64/v8"),
        ("arm64", Some("8"), "linux/arm64/v8"),
        ("arm64", Some("v9"), "linux/arm64/v9"),
        ("x86_64", None, "linux/amd64"),
        ("x86-64", Some("v1"), "linux/amd64"),
        ("amd64", Some("v3"), "linux/amd64/v3"),
        ("armhf", None, "linux/arm/v7"),
        ("armel", None, "linux/arm/v6"),
        ("arm", Some("6"), "linux/arm/v6"),
        ("i686", None, "linux/386"),
        ("riscv64", Some(""), "linux/riscv64"),
    ] {
        assert_eq!(norm("linux", arch, variant), want, "{arch} {variant:?}");
    }
    assert_eq!(norm("Linux", "arm64", None), "linux/arm64/v8", "the OS is lowercased");
}

#[test]
fn variants_must_agree() {
    let v8 = Platform::parse("linux/arm64/v8").unwrap();
    assert!(!Platform::new("linux", "arm64", Some("v9")).satisfies(&v8));
    assert!(!Platform::new("linux", "amd64", Some("v3")).satisfies(&Platform::linux_amd64()));
    assert!(Platform::new("linux", "arm", Some("7")).satisfies(&Platform::parse("linux/arm").unwrap()));
    assert!(!Platform::new("linux", "arm", Some("v6")).satisfies(&Platform::parse("linux/arm").unwrap()));
}

#[test]
fn parse_lowercases_and_refuses_odd_characters() {
    assert_eq!(Platform::parse("LINUX/AMD64").unwrap(), Platform::linux_amd64());
    assert_eq!(Platform::parse("linux/arm64/v8").unwrap(), Platform::linux_arm64());
    for bad in ["linux/arm64;rm", "linux/arm 64", "linux//v8", "linux/arm64/"] {
        assert!(Platform::parse(bad).is_err(), "{bad}");
    }
    let e = Platform::parse("linux/arm64/v8/x").unwrap_err();
    assert!(e.hint().unwrap().contains("os/arch[/variant]"), "{e:?}");
}

#[test]
fn index_json_keeps_os_version_and_features() {
    let j = r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#;
    let p: Platform = serde_json::from_str(j).unwrap();
    assert_eq!(p.os_version.as_deref(), Some("10.0.17763.1"));
    assert_eq!(serde_json::to_string(&p).unwrap(), j, "field names and order survive");
    let arm = serde_json::to_string(&Platform::linux_arm64()).unwrap();
    assert_eq!(arm, r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#);
    assert_eq!(Platform::new("linux", "amd64", Some("")).to_string(), "linux/amd64", "empty variants are not shown");
}
