//! Static `docker-compose.yml` checks, without Docker: the file is parsed (serde-saphyr: duplicate
//! keys, alias bombs and non-mapping roots are errors) only to validate it and to learn each
//! service's image; it is always packaged byte for byte. Checks mirror what `docker-compose
//! config -q` rejects (unknown keys, wrong value types) plus CORE I/O conventions (GPU reservation
//! instead of `runtime: nvidia`, host ports 21000–22000, `platform:` vs the target).
//!
//! spxpack's own settings live under `x-spxpack` keys, which Compose ignores:
//! a service's `x-spxpack: {provided: true}` (the robot has or pulls the image; it is not
//! bundled), `{source: oci:DIR:TAG}` (take the image from there instead of pulling `image:`),
//! `{archive: NAME.tar.gz}` (which `images[]` archive holds it); the top-level
//! `x-spxpack: {additional_files: [PATH, …]}` (files and directories packaged as well).

mod keys;
mod ports;

use serde_json::{Map, Value};

use self::keys::{SERVICE_KEYS, TOP_KEYS, shape_name, shape_ok};
use self::ports::check_ports;
use super::manifest::kind;
use super::{Target, suggest};
use crate::platform::Platform;
use crate::problem::Problems;
use crate::reference::Reference;

/// One service, as far as packaging cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// The `image:` string exactly as written.
    pub image: Option<String>,
    pub has_build: bool,
    /// The `build:` section, when it could be read.
    pub build: Option<BuildSection>,
    /// `x-spxpack.provided`
    pub provided: bool,
    /// `x-spxpack.source`
    pub source: Option<String>,
    /// `x-spxpack.archive`
    pub archive: Option<String>,
}

/// A service's `build:` section: `build: DIR` or `build: {context, dockerfile, args, target}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSection {
    /// Relative to the compose file's directory; `.` when not given.
    pub context: String,
    /// Relative to the context; `Dockerfile` when not given.
    pub dockerfile: Option<String>,
    /// `args:` as a map or a `K=V` list; a key without a value takes it from the environment.
    pub args: Vec<(String, Option<String>)>,
    pub target: Option<String>,
}

/// What the compose file tells the packager.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    pub services: Vec<Service>,
    /// Top-level `x-spxpack.additional_files`.
    pub additional_files: Vec<String>,
}

/// Where and for what the file is checked.
pub struct Rules<'a> {
    /// Label in messages (`docker-compose.yml`, `x.spx: docker-compose.yml`).
    pub file: &'a str,
    pub target: Target,
    pub platform: &'a Platform,
}

const MAX_SIZE: usize = 4 << 20;

/// Parses and checks `text`; problems go to `findings`. `None` when the file cannot be used at all.
pub fn check(text: &[u8], r: &Rules, findings: &mut Problems) -> Option<Compose> {
    let file = r.file;
    if text.len() > MAX_SIZE {
        findings.error(format!("{file}: {} bytes, more than the {MAX_SIZE} byte limit", text.len()), None);
        return None;
    }
    let Ok(text) = std::str::from_utf8(text) else {
        findings.error(format!("{file}: not valid UTF-8"), Some("save the file as UTF-8"));
        return None;
    };
    let opts = serde_saphyr::options! { with_snippet: false };
    let root: Value = match serde_saphyr::from_str_with_options(text, opts) {
        Ok(v) => v,
        Err(e) => {
            let msg = e.to_string().replace(", set DuplicateKeyPolicy in Options if acceptable", "");
            findings.error(
                format!("{file}: invalid YAML: {msg}"),
                Some("fix the syntax; `docker-compose config` shows the same problem"),
            );
            return None;
        }
    };
    let Value::Object(root) = root else {
        findings.error(format!("{file}: must be a mapping with a services: key, found {}", kind(&root)), None);
        return None;
    };
    let mut out = Compose::default();
    for (k, v) in &root {
        if k == "x-spxpack" {
            check_top_extension(v, file, &mut out, findings);
        } else if !k.starts_with("x-") && !TOP_KEYS.contains(&k.as_str()) {
            let hint = suggest(k, &TOP_KEYS).map(|s| format!("did you mean {s}?"));
            findings.error(format!("{file}: {k}: unknown top-level key"), hint.as_deref());
        }
    }
    let services = match root.get("services") {
        Some(Value::Object(s)) if !s.is_empty() => s,
        Some(Value::Object(_)) | None | Some(Value::Null) => {
            findings
                .error(format!("{file}: services: missing or empty"), Some("an extension runs at least one service"));
            return None;
        }
        Some(v) => {
            findings.error(format!("{file}: services: must be a mapping, found {}", kind(v)), None);
            return None;
        }
    };
    for (name, svc) in services {
        let path = format!("services.{name}");
        let Value::Object(svc) = svc else {
            findings.error(format!("{file}: {path}: must be a mapping, found {}", kind(svc)), None);
            continue;
        };
        out.services.push(check_service(name, svc, &path, r, findings));
    }
    Some(out)
}

fn check_top_extension(v: &Value, file: &str, out: &mut Compose, findings: &mut Problems) {
    let Value::Object(m) = v else {
        findings.error(format!("{file}: x-spxpack: must be a mapping, found {}", kind(v)), None);
        return;
    };
    for (k, v) in m {
        match (k.as_str(), v) {
            ("additional_files", Value::Array(a)) => {
                for (i, item) in a.iter().enumerate() {
                    match item.as_str() {
                        Some(s) => out.additional_files.push(s.to_string()),
                        None => findings.error(
                            format!("{file}: x-spxpack.additional_files[{i}]: must be a path, found {}", kind(item)),
                            None,
                        ),
                    }
                }
            }
            ("additional_files", other) => findings.error(
                format!("{file}: x-spxpack.additional_files: must be a list of paths, found {}", kind(other)),
                None,
            ),
            (k, _) => findings.error(
                format!("{file}: x-spxpack.{k}: unknown key"),
                Some("the top-level x-spxpack knows additional_files"),
            ),
        }
    }
}

fn check_service(name: &str, svc: &Map<String, Value>, path: &str, r: &Rules, findings: &mut Problems) -> Service {
    let file = r.file;
    let mut s = Service { name: name.to_string(), ..Default::default() };
    let known: Vec<&str> = SERVICE_KEYS.iter().map(|(k, _)| *k).collect();
    for (k, v) in svc {
        if k == "x-spxpack" {
            check_service_extension(v, &format!("{path}.x-spxpack"), file, &mut s, findings);
            continue;
        }
        if k.starts_with("x-") {
            continue;
        }
        match SERVICE_KEYS.iter().find(|(key, _)| key == k) {
            None => {
                let hint = suggest(k, &known).map(|g| format!("did you mean {g}?"));
                findings.error(format!("{file}: {path}.{k}: unknown service key"), hint.as_deref());
            }
            Some((_, shape)) if !shape_ok(*shape, v) => {
                findings.error(
                    format!("{file}: {path}.{k}: must be {}, found {}", shape_name(*shape), kind(v)),
                    Some("`docker-compose config` rejects this too"),
                );
            }
            _ => {}
        }
    }
    match svc.get("image") {
        Some(Value::String(img)) => {
            if let Err(e) = Reference::parse(img) {
                findings.error(format!("{file}: {path}.image: {}", e.message()), e.hint());
            }
            s.image = Some(img.clone());
        }
        Some(_) => {}
        None if !svc.contains_key("build") => {
            findings.error(format!("{file}: {path}: has neither image: nor build:"), Some("add image: NAME:TAG"));
        }
        None => {}
    }
    s.has_build = svc.contains_key("build");
    s.build = svc.get("build").and_then(|b| build_section(b, &format!("{path}.build"), file, findings));
    if let Some(Value::String(restart)) = svc.get("restart") {
        let ok = matches!(restart.as_str(), "no" | "always" | "unless-stopped" | "on-failure")
            || restart.strip_prefix("on-failure:").is_some_and(|n| n.parse::<u32>().is_ok());
        if !ok {
            findings.error(
                format!("{file}: {path}.restart: {restart:?} is not a restart policy"),
                Some("use \"no\", always, on-failure[:N] or unless-stopped"),
            );
        }
    }
    if svc.get("runtime").and_then(Value::as_str) == Some("nvidia") {
        findings.warn(
            format!("{file}: {path}.runtime: \"nvidia\" is not how CORE I/O grants the GPU"),
            Some("use deploy.resources.reservations.devices: [{driver: nvidia, capabilities: [gpu]}]"),
        );
    }
    if let Some(Value::String(p)) = svc.get("platform") {
        let parsed = if p.contains('/') { Platform::parse(p).ok() } else { None };
        let os_only = !p.contains('/');
        let mismatch = match parsed {
            Some(pl) => !pl.satisfies(r.platform),
            None => os_only && p != "linux",
        };
        if mismatch {
            findings.warn(
                format!(
                    "{file}: {path}.platform: {p:?} does not match the target {} ({})",
                    r.platform.normalized(),
                    r.target.machine()
                ),
                Some("remove platform: or set it to the target platform"),
            );
        }
    }
    check_ports(svc, path, r, findings);
    s
}

fn check_service_extension(v: &Value, path: &str, file: &str, s: &mut Service, findings: &mut Problems) {
    let Value::Object(m) = v else {
        findings.error(format!("{file}: {path}: must be a mapping, found {}", kind(v)), None);
        return;
    };
    for (k, v) in m {
        match (k.as_str(), v) {
            ("provided", Value::Bool(b)) => s.provided = *b,
            ("source", Value::String(x)) => s.source = Some(x.clone()),
            ("archive", Value::String(x)) => s.archive = Some(x.clone()),
            ("provided", other) => {
                findings.error(format!("{file}: {path}.provided: must be true or false, found {}", kind(other)), None)
            }
            ("source" | "archive", other) => {
                findings.error(format!("{file}: {path}.{k}: must be a string, found {}", kind(other)), None)
            }
            (k, _) => {
                let hint = suggest(k, &["provided", "source", "archive"]).map(|g| format!("did you mean {g}?"));
                findings.error(
                    format!("{file}: {path}.{k}: unknown key (x-spxpack knows provided, source, archive)"),
                    hint.as_deref(),
                );
            }
        }
    }
    if s.provided && (s.source.is_some() || s.archive.is_some()) {
        findings.error(
            format!("{file}: {path}: provided: true contradicts source/archive"),
            Some("a provided image is not bundled; drop source and archive, or provided"),
        );
    }
    if let Some(a) = &s.archive
        && (a.contains('/') || !super::is_archive_name(a))
    {
        findings.error(
            format!("{file}: {path}.archive: {a:?} must be an image archive file name from manifest.json images"),
            None,
        );
    }
}

/// The `RepoTags` entry for a compose `image:` (a tag is added when it has none, as Compose
/// looks the image up as `NAME:latest`).
pub fn repo_tag(image: &str) -> String {
    match Reference::parse(image) {
        Ok(r) if r.tag.is_some() => image.split('@').next().unwrap_or(image).to_string(),
        Ok(_) => format!("{}:latest", image.split('@').next().unwrap_or(image)),
        Err(_) => image.to_string(),
    }
}

/// Whether two image names refer to the same `NAME:TAG` after Docker's normalisation.
pub fn same_image(a: &str, b: &str) -> bool {
    match (Reference::parse(a), Reference::parse(b)) {
        (Ok(x), Ok(y)) => x.full_name() == y.full_name() && x.effective_tag() == y.effective_tag(),
        _ => a == b,
    }
}

/// Reads `build: DIR` or `build: {context, dockerfile, args, target}`; other keys of the map
/// (cache_from, network, …) do not matter without a daemon and are ignored.
fn build_section(v: &Value, path: &str, file: &str, findings: &mut Problems) -> Option<BuildSection> {
    match v {
        Value::String(ctx) => Some(BuildSection { context: ctx.clone(), ..Default::default() }),
        Value::Object(m) => {
            let text = |k: &str| match m.get(k) {
                Some(Value::String(x)) => Some(x.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let mut args = Vec::new();
            match m.get("args") {
                Some(Value::Object(a)) => {
                    for (k, v) in a {
                        let val = match v {
                            Value::Null => None,
                            Value::String(x) => Some(x.clone()),
                            other => Some(other.to_string()),
                        };
                        args.push((k.clone(), val));
                    }
                }
                Some(Value::Array(a)) => {
                    for item in a {
                        let Some(x) = item.as_str() else {
                            findings.error(format!("{file}: {path}.args: list items must be strings"), None);
                            continue;
                        };
                        match x.split_once('=') {
                            Some((k, v)) => args.push((k.to_string(), Some(v.to_string()))),
                            None => args.push((x.to_string(), None)),
                        }
                    }
                }
                _ => {}
            }
            Some(BuildSection {
                context: text("context").unwrap_or_else(|| ".".into()),
                dockerfile: text("dockerfile"),
                args,
                target: text("target"),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, target: Target) -> (Option<Compose>, Vec<String>) {
        let mut f = Problems::new();
        let p = target.platform();
        let c = check(src.as_bytes(), &Rules { file: "docker-compose.yml", target, platform: &p }, &mut f);
        (c, f.0.iter().map(|x| format!("{:?}: {}", x.severity, x.message)).collect())
    }

    #[test]
    fn accepts_the_sdk_style_and_reads_extensions() {
        let (c, f) = run(
            "version: \"3.5\"\nx-spxpack:\n  additional_files: [data, .env]\nservices:\n  app:\n    image: \"x:arm64\"\n    network_mode: host\n    restart: unless-stopped\n    command: >\n      a b\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              capabilities: [gpu]\n  side:\n    image: redis\n    x-spxpack: {provided: true}\n    ports: [\"21000:21000\"]\n",
            Target::Spot,
        );
        assert_eq!(f, Vec::<String>::new());
        let c = c.unwrap();
        assert_eq!(c.additional_files, ["data", ".env"]);
        assert_eq!(c.services[0].image.as_deref(), Some("x:arm64"));
        assert!(c.services[1].provided);
    }

    #[test]
    fn reports_structure_and_conventions() {
        let (_, f) = run(
            "services:\n  a:\n    image: Bad/Name\n    netwrok_mode: host\n    volumes:\n      /creds/:/x\n    restart: sometimes\n    runtime: nvidia\n    platform: linux/amd64\n    ports: [\"50051:50051\", 8080, \"127.0.0.1:21443:21443/udp\", {target: 80, published: \"21001\"}]\n    x-spxpack: {provide: true}\n  b: null\nextra: 1\n",
            Target::Spot,
        );
        let want = [
            "Error: docker-compose.yml: extra: unknown top-level key",
            "Error: docker-compose.yml: services.a.netwrok_mode: unknown service key",
            "Error: docker-compose.yml: services.a.volumes: must be a list, found a string",
            "Error: docker-compose.yml: services.a.x-spxpack.provide: unknown key (x-spxpack knows provided, source, archive)",
            "Error: docker-compose.yml: services.a.image: invalid image reference \"Bad/Name\": repository names must be lowercase",
            "Error: docker-compose.yml: services.a.restart: \"sometimes\" is not a restart policy",
            "Warning: docker-compose.yml: services.a.runtime: \"nvidia\" is not how CORE I/O grants the GPU",
            "Warning: docker-compose.yml: services.a.platform: \"linux/amd64\" does not match the target linux/arm64/v8 (CORE I/O (linux/arm64))",
            "Warning: docker-compose.yml: services.a.ports[0]: host port 50051 is outside 21000-22000, which CORE I/O lets in",
            "Warning: docker-compose.yml: services.a.ports[1]: 8080 is published on a random host port, outside CORE I/O's 21000-22000",
            "Warning: docker-compose.yml: services.a.ports[2]: host port 21443 is the CORE I/O web portal",
            "Error: docker-compose.yml: services.b: must be a mapping, found null",
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn yaml_errors_and_bombs() {
        let (c, f) = run("services:\n  a:\n    image: x\n    image: y\n", Target::Spot);
        assert!(c.is_none());
        assert!(f[0].contains("duplicate mapping key: image at line 4"), "{f:?}");
        let (_, f) = run("- a\n", Target::Spot);
        assert_eq!(f, ["Error: docker-compose.yml: must be a mapping with a services: key, found an array"]);
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 0..12 {
            let prev = if i == 0 { "a".to_string() } else { format!("b{}", i - 1) };
            bomb.push_str(&format!(
                "b{i}: &b{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
        }
        let (c, f) = run(&bomb, Target::Spot);
        assert!(c.is_none() && f[0].contains("invalid YAML"), "{f:?}");
        let (_, f) =
            run("services:\n  w:\n    image: w\n    network_mode: host\n    ports: [\"21800:21800\"]\n", Target::Orbit);
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("ignored with network_mode: host"));
    }

    #[test]
    fn tags() {
        assert_eq!(repo_tag("openvpn_client"), "openvpn_client:latest");
        assert_eq!(repo_tag("gps_listener_image_arm64:latest"), "gps_listener_image_arm64:latest");
        assert!(same_image("openvpn_client", "docker.io/library/openvpn_client:latest"));
        assert!(!same_image("a:1", "a:2"));
    }

    #[test]
    fn build_sections_and_service_extensions() {
        let (c, f) = run(
            "services:\n  a:\n    image: a:1\n    build:\n      context: ./app\n      dockerfile: Dockerfile.arm\n      target: prod\n      args: {V: 1, E: null}\n  b:\n    image: b:1\n    build: ./b\n    x-spxpack: {provided: true, archive: b.tar, sorce: x}\n",
            Target::Spot,
        );
        let c = c.unwrap();
        let a = c.services[0].build.clone().unwrap();
        assert_eq!(
            (a.context.as_str(), a.dockerfile.as_deref(), a.target.as_deref()),
            ("./app", Some("Dockerfile.arm"), Some("prod"))
        );
        assert_eq!(a.args, [("V".to_string(), Some("1".to_string())), ("E".to_string(), None)]);
        assert_eq!(c.services[1].build.as_ref().unwrap().context, "./b");
        assert_eq!(
            f,
            [
                "Error: docker-compose.yml: services.b.x-spxpack.sorce: unknown key (x-spxpack knows provided, source, archive)",
                "Error: docker-compose.yml: services.b.x-spxpack: provided: true contradicts source/archive",
            ]
        );
    }
}
