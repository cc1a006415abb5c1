//! Entry points of the cargo-fuzz targets in `fuzz/` (not an API: hidden from the docs, may
//! change with any release). One function per parser of untrusted input; each takes the raw
//! bytes an attacker controls and drives the parser the way spxpack does. Errors are the
//! expected outcome; a panic, a hang or an out-of-memory is a bug (see docs/fuzzing.md).

use std::io::{Cursor, Write};

use crate::compress::Limits;
use crate::docker_archive::{DockerArchive, Selector};
use crate::dockerfile::dockerignore::Matcher;
use crate::dockerfile::lex::{self, Lex};
use crate::image::{ConfigView, Index, Manifest, model, parse_json};
use crate::oci_layout::{Layout, LayoutFs};
use crate::ops::verify::{VerifyOptions, verify_stream};
use crate::platform::Platform;
use crate::problem::Problems;
use crate::reference::Reference;
use crate::spx::{Target, compose, manifest};
use crate::tar::index::TarArchive;

/// Limits small enough that a decompression bomb ends an iteration quickly.
const LIMITS: Limits = Limits { max_bytes: 16 << 20, max_ratio: 1000 };

/// A docker-save or OCI archive (plain or compressed): the tar index, the docker archive
/// reader and the OCI layout reader over it, every image of either.
pub fn archive(data: &[u8]) {
    let Ok(mut f) = tempfile::NamedTempFile::new() else { return };
    if f.write_all(data).and_then(|_| f.flush()).is_err() {
        return;
    }
    let Ok(tar) = TarArchive::open(f.path(), "archive") else { return };
    let tar = std::sync::Arc::new(tar);
    for name in tar.names() {
        let _ = tar.resolve(name);
    }
    if let Ok(d) = DockerArchive::from_tar(tar.clone()) {
        let _ = d.all_images();
        let _ = d.image(&Selector::Only);
        let _ = d.index_names();
    }
    if let Ok(l) = Layout::open(LayoutFs::Tar(tar), "oci-archive") {
        let _ = l.tags();
        let _ = l.image(None, &Platform::linux_arm64());
    }
}

/// OCI/Docker JSON documents: index, manifest, config, and the media-type sniffing.
pub fn oci_documents(data: &[u8]) {
    let _ = Index::parse(data, "index");
    let _ = Manifest::parse(data, "manifest");
    if let Ok(c) = parse_json::<ConfigView>(data, "config") {
        let _ = c.platform().normalized();
    }
    let _ = model::sniff_manifest_kind(data, None);
    let _ = model::sniff_manifest_kind(data, Some("application/vnd.oci.image.index.v1+json; charset=utf-8"));
}

/// An `.spx` file as `spxpack verify --full` reads it.
pub fn spx_verify(data: &[u8]) {
    let opts = VerifyOptions { full: true, platform: None, limits: LIMITS };
    let _ = verify_stream(&mut Cursor::new(data), "fuzz.spx", &opts);
}

/// An extension's `manifest.json`, checked as `build` (defaults added) and `verify` (packaged).
pub fn spx_manifest(data: &[u8]) {
    let mut findings = Problems::new();
    let Some(mut m) = manifest::parse(data, "manifest.json", &mut findings) else { return };
    for packaged in [false, true] {
        let rules = manifest::Rules { file: "manifest.json", spx_name: Some(("fuzz", "fuzz.spx")), packaged };
        manifest::check(&m, &rules, &mut findings);
    }
    let _ = manifest::images(&m);
    let _ = manifest::target(&m);
    manifest::set_default(&mut m, "version", serde_json::Value::from("1.0.0"));
    if let Some(name) = manifest::get_str(&m, "extension_name") {
        let _ = manifest::check_name(name);
    }
}

/// A `docker-compose.yml`, checked for both targets.
pub fn compose(data: &[u8]) {
    for (target, platform) in [(Target::Spot, Platform::linux_arm64()), (Target::Orbit, Platform::linux_amd64())] {
        let mut findings = Problems::new();
        let rules = compose::Rules { file: "docker-compose.yml", target, platform: &platform };
        if let Some(c) = compose::check(data, &rules, &mut findings) {
            for s in &c.services {
                if let Some(image) = &s.image {
                    let _ = compose::same_image(image, &compose::repo_tag(image));
                }
            }
        }
    }
}

/// A Dockerfile: the parser, then every line through the ARG/ENV line parsers and the
/// variable expander (with both escape characters).
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::dockerfile::parse::parse(text, "Dockerfile");
    let env = |name: &str| match name {
        "A" => Some("a b".to_string()),
        "EMPTY" => Some(String::new()),
        "Q" => Some("'\"$A".to_string()),
        _ => None,
    };
    for line in text.lines().take(64) {
        for escape in ['\\', '`'] {
            let _ = lex::parse_words(line, escape);
            let _ = lex::parse_name_val(line, "ENV", escape);
            let _ = lex::parse_args(line, escape);
            let lex = Lex::new(escape);
            let _ = lex.word(line, &env);
            let _ = lex.words(line, &env);
            let _ = Lex { escape, skip_quotes: true }.word(line, &env);
        }
    }
}

/// A `.dockerignore`: the patterns, then the matcher over the file's own lines as paths.
pub fn dockerignore(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = Matcher::parse(text, ".dockerignore") else { return };
    let _ = m.has_exclusions();
    for line in text.lines().take(32) {
        let path = crate::dockerfile::dockerignore::clean(line.trim_start_matches('!'));
        let _ = m.excluded_by(path.trim_start_matches('/'));
    }
    for p in ["a", "a/b", "a/b/c.txt", ".git", "node_modules/x", "ä/ö"] {
        let _ = m.excludes(p);
    }
}

/// Registry response headers: `WWW-Authenticate`, `Content-Range`, and `Location` resolved
/// against the request URL, then judged by the redirect policy. The first byte picks the base.
pub fn http_headers(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let h = String::from_utf8_lossy(rest);
    let _ = crate::registry::client::token::parse_challenge(&h);
    let _ = crate::registry::content_range_start(&h);
    let bases = [
        "https://registry.example.com/v2/library/busybox/blobs/sha256:00?x=1",
        "http://127.0.0.1:5000/v2/",
        "https://[fe80::1%25eth0]:443/a/b",
        "https://example.com",
    ];
    let base = bases[sel as usize % bases.len()];
    if let Some(next) = crate::http::resolve(base, &h) {
        // the redirect policy compares schemes as written: they must come out in lower case
        assert!(
            next.starts_with("http://") || next.starts_with("https://"),
            "resolve({base:?}, {h:?}) gave {next:?}, not a lower-case http(s) URL"
        );
        let _ = crate::http::redact(&next);
        let _ = crate::http::judge(crate::http::authority(base), base, &next, |_| false);
    }
    let _ = crate::http::classify(&h);
}

/// Image references, platforms, SOURCE strings and docker-archive selectors, as typed on the
/// command line or found in compose files and archives.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let _ = (r.familiar_name(), r.familiar_tagged(), r.qualified_tagged(), r.api_reference(), r.api_host());
        let again = Reference::parse(&r.full_name());
        assert!(again.is_ok(), "{s:?} parsed, but its full name {:?} does not", r.full_name());
    }
    if let Ok(p) = Platform::parse(s) {
        let _ = p.satisfies(&Platform::linux_arm64());
        let _ = p.arch();
    }
    let _ = crate::source::Source::parse(s);
    let _ = Selector::parse(Some(s));
}
