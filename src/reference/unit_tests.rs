//! More reference cases: Docker's separator grammar, the tag/port ambiguity, hub aliases,
//! `docker://`, display round trips and the messages users see.

use super::*;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn a_colon_after_the_last_slash_is_a_tag_before_it_a_port() {
    let r = Reference::parse("registry.example:5000/app").unwrap();
    assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("registry.example:5000", "app", None));
    let r = Reference::parse("registry.example:5000/app:5000").unwrap();
    assert_eq!(r.tag.as_deref(), Some("5000"));
    let r = Reference::parse("localhost/app:1").unwrap();
    assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost", "app"));
    // a first component without '.' or ':' is a Hub namespace
    let r = Reference::parse("team/app:1").unwrap();
    assert_eq!((r.registry.as_str(), r.repository.as_str()), ("docker.io", "team/app"));
}

#[test]
fn separators_follow_dockers_grammar() {
    for ok in ["a.b/c", "a_b", "a__b", "a---b", "a-b.c_d", "x/y/z/w", "a1/b2"] {
        assert!(Reference::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["a___b", "a..b", "a._b", "a/.b", "a/b.", "_a", "a/-b"] {
        assert!(Reference::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn hub_aliases_and_the_docker_scheme_normalise_to_docker_io() {
    for s in ["index.docker.io/library/alpine:3", "registry-1.docker.io/library/alpine:3", "docker://alpine:3"] {
        let r = Reference::parse(s).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:3", "{s}");
        assert_eq!(r.familiar_name(), "alpine");
    }
    // library/ is only implied for one-component Hub names
    assert_eq!(Reference::parse("docker.io/team/app").unwrap().familiar_name(), "team/app");
    assert_eq!(Reference::parse("docker.io/library/a/b").unwrap().familiar_name(), "library/a/b");
}

#[test]
fn tags_are_limited_in_length_and_alphabet() {
    assert!(Reference::parse(&format!("a:{}", "t".repeat(128))).is_ok());
    assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
    for bad in ["a:.x", "a:x!y", "a:x/y:z"] {
        assert!(Reference::parse(bad).is_err(), "{bad}");
    }
    assert!(Reference::parse(&format!("{}:1", "a".repeat(256))).is_err(), "repository over 255");
    assert!(Reference::parse(&"a".repeat(5000)).unwrap_err().to_string().contains("too long"));
}

#[test]
fn digests_pin_and_tags_stay_for_naming() {
    let r = Reference::parse(&format!("nvcr.io/nvidia/base:1.0@{D}")).unwrap();
    assert_eq!(r.api_reference(), D, "the digest is what is fetched");
    assert_eq!(r.effective_tag(), Some("1.0"));
    assert_eq!(r.to_string(), format!("nvcr.io/nvidia/base:1.0@{D}"));
    let r = Reference::parse("nvcr.io/nvidia/base").unwrap();
    assert_eq!((r.api_reference().as_str(), r.tag_or_latest()), ("latest", "latest"));
    let e = Reference::parse("a@sha512:abcd").unwrap_err();
    assert!(e.to_string().contains("sha512"), "{e}");
}

#[test]
fn errors_explain_uppercase_and_bad_hosts() {
    let e = Reference::parse("Team/App").unwrap_err();
    assert!(e.to_string().contains("lowercase"), "{e}");
    assert!(e.hint().unwrap().contains("[registry/]name"), "{e:?}");
    let e = Reference::parse("reg.example:port/app").unwrap_err();
    assert!(e.to_string().contains("invalid registry host"), "{e}");
    assert!(Reference::parse("reg.example:123456/app").is_err(), "ports have at most 5 digits");
}

#[test]
fn display_round_trips() {
    for s in ["docker.io/library/python:3.10", "127.0.0.1:15000/a/b:t", &format!("ghcr.io/o/r@{D}")] {
        let r = Reference::parse(s).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{s}");
    }
    assert!(is_loopback_host("127.8.9.10:1") && !is_loopback_host("128.0.0.1") && !is_loopback_host("localhost.evil"));
}
