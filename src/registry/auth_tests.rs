//! Credential lookup from config files written to a temporary directory (always through
//! `--authfile`, so the real `HOME` is never read for a hit), `--creds` parsing and registry
//! key normalisation.

use base64::Engine as _;

use super::auth::*;
use crate::error::Kind;
use crate::host_env::HostEnv;

/// Lookups in an empty environment: only what the options name is read.
fn lookup(o: &CredentialOptions, registry: &str, repo: &str) -> crate::error::Result<Option<Found>> {
    super::auth::lookup(o, &HostEnv::default(), registry, repo)
}

#[test]
fn the_environment_is_an_argument_ngc_key_and_docker_config() {
    let o = CredentialOptions::default();
    let env = HostEnv::from_vars([("NGC_API_KEY", "k3y")]);
    let f = super::auth::lookup(&o, &env, "nvcr.io", "nvidia/l4t-base").unwrap().unwrap();
    assert_eq!(f.credential, Credential::Basic { username: "$oauthtoken".into(), password: "k3y".into() });
    assert!(super::auth::lookup(&o, &env, "docker.io", "x").unwrap().is_none(), "the key is only for nvcr.io");
    let dir = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode("dora:pw");
    std::fs::write(dir.path().join("config.json"), format!(r#"{{"auths":{{"q.example":{{"auth":"{b64}"}}}}}}"#))
        .unwrap();
    let env = HostEnv::from_vars([("DOCKER_CONFIG", dir.path().as_os_str())]);
    let f = super::auth::lookup(&o, &env, "q.example", "x").unwrap().unwrap();
    assert_eq!(f.credential.username(), Some("dora"));
    assert!(lookup(&o, "q.example", "x").unwrap().is_none(), "without DOCKER_CONFIG the file is not read");
}

fn authfile(json: &str) -> (tempfile::TempDir, CredentialOptions) {
    let dir = crate::testkit::scratch();
    let p = dir.path().join("auth.json");
    std::fs::write(&p, json).unwrap();
    (dir, CredentialOptions { authfile: Some(p), ..Default::default() })
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn tokens_win_over_passwords_in_one_entry() {
    let (_d, o) = authfile(&format!(
        r#"{{"auths":{{"r.example":{{"auth":"{}","identitytoken":"refresh"}},"t.example":{{"auth":"{}","registrytoken":"bearer","identitytoken":"x"}}}}}}"#,
        b64("u:p"),
        b64("u:p")
    ));
    assert_eq!(lookup(&o, "r.example", "a").unwrap().unwrap().credential, Credential::IdentityToken("refresh".into()));
    assert_eq!(lookup(&o, "t.example", "a").unwrap().unwrap().credential, Credential::RegistryToken("bearer".into()));
}

#[test]
fn the_most_specific_namespace_key_wins_and_the_source_is_named() {
    let (d, o) = authfile(
        r#"{"auths":{"https://ghcr.io/v2/":{"username":"host","password":"1"},
            "ghcr.io/org":{"username":"org","password":"2"},
            "ghcr.io/org/team/":{"username":"team","password":"3"}}}"#,
    );
    let who = |repo: &str| lookup(&o, "ghcr.io", repo).unwrap().unwrap();
    assert_eq!(who("org/team/app").credential.username(), Some("team"));
    assert_eq!(who("org/other").credential.username(), Some("org"));
    assert_eq!(who("elsewhere/x").credential.username(), Some("host"));
    let f = who("org/team/app");
    assert_eq!(f.source, format!("{} (auths.ghcr.io/org/team/)", d.path().join("auth.json").display()));
}

#[test]
fn malformed_auth_entries_are_input_errors_naming_the_key() {
    for (auth, want) in [("%%%", "is not valid base64"), (b64("nocolon").as_str(), "must encode USER:PASS")] {
        let (_d, o) = authfile(&format!(r#"{{"auths":{{"bad.example":{{"auth":"{auth}"}}}}}}"#));
        let e = lookup(&o, "bad.example", "x").unwrap_err();
        assert_eq!(e.kind(), Kind::Input);
        assert!(e.to_string().contains("auths.bad.example.auth"), "{e}");
        assert!(e.to_string().contains(want), "{e}");
    }
    let (_d, o) = authfile("{not json");
    let e = lookup(&o, "x.example", "x").unwrap_err();
    assert!(e.hint().unwrap().contains("--authfile"), "{e:?}");
}

#[test]
fn credential_helpers_must_exist_and_be_named_safely() {
    let (_d, o) = authfile(r#"{"credHelpers":{"helped.example":"spxpack-testkit-absent"}}"#);
    let e = lookup(&o, "helped.example", "x").unwrap_err();
    assert_eq!(e.kind(), Kind::Auth);
    assert!(e.to_string().contains("docker-credential-spxpack-testkit-absent"), "{e}");
    assert!(e.hint().unwrap().contains("install"), "{e:?}");
    let (_d, o) = authfile(r#"{"credHelpers":{"helped.example":"../../bin/sh"}}"#);
    let e = lookup(&o, "helped.example", "x").unwrap_err();
    assert!(e.to_string().contains("invalid credential helper name"), "{e}");
}

#[test]
fn anonymous_sends_nothing_even_with_creds() {
    let mut o = CredentialOptions { anonymous: true, ..Default::default() };
    o.add_creds("u:p").unwrap();
    assert!(lookup(&o, "docker.io", "library/x").unwrap().is_none());
}

#[test]
fn creds_specs_are_split_into_registry_user_and_password() {
    let mut o = CredentialOptions::default();
    o.add_creds("localhost:5000=a:b").unwrap();
    o.add_creds("https://index.docker.io/v1/=c:d:e").unwrap();
    o.add_creds("f:g=h").unwrap();
    assert_eq!(o.explicit[0], (Some("localhost:5000".into()), "a".into(), "b".into()));
    assert_eq!(o.explicit[1], (Some("docker.io".into()), "c".into(), "d:e".into()), "passwords may hold ':'");
    assert_eq!(o.explicit[2], (None, "f".into(), "g=h".into()), "no registry: '=' belongs to the password");
    assert!(o.add_creds(":pw").unwrap_err().to_string().contains("empty user"));
}

#[test]
fn registry_names_are_normalised() {
    for (k, want) in [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("registry.hub.docker.com", "docker.io"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        (" quay.io ", "quay.io"),
        ("nvcr.io/nvidia", "nvcr.io"),
    ] {
        assert_eq!(normalize_registry(k), want, "{k}");
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    for c in [
        Credential::Basic { username: "user".into(), password: "s3cret".into() },
        Credential::IdentityToken("s3cret".into()),
        Credential::RegistryToken("s3cret".into()),
    ] {
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
