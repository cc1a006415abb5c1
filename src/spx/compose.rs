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

use serde_json::{Map, Value};

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

const TOP_KEYS: [&str; 9] =
    ["version", "services", "volumes", "networks", "secrets", "configs", "name", "include", "models"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Str,
    StrOrNum,
    StrOrList,
    ListOrDict,
    List,
    Command,
    Map,
    MapOrList,
    StrOrMap,
    Bool,
    Int,
    Any,
}

/// Service keys of the Compose specification (docker-compose 1.29 and Compose v2) and their shapes.
const SERVICE_KEYS: [(&str, Shape); 92] = {
    use Shape::*;
    [
        ("annotations", ListOrDict),
        ("attach", Bool),
        ("blkio_config", Map),
        ("build", StrOrMap),
        ("cap_add", List),
        ("cap_drop", List),
        ("cgroup", Str),
        ("cgroup_parent", Str),
        ("command", Command),
        ("configs", List),
        ("container_name", Str),
        ("cpu_count", Int),
        ("cpu_percent", Int),
        ("cpu_period", StrOrNum),
        ("cpu_quota", StrOrNum),
        ("cpu_rt_period", StrOrNum),
        ("cpu_rt_runtime", StrOrNum),
        ("cpu_shares", StrOrNum),
        ("cpus", StrOrNum),
        ("cpuset", Str),
        ("credential_spec", Map),
        ("depends_on", MapOrList),
        ("deploy", Map),
        ("develop", Map),
        ("device_cgroup_rules", List),
        ("devices", List),
        ("dns", StrOrList),
        ("dns_opt", List),
        ("dns_search", StrOrList),
        ("domainname", Str),
        ("driver_opts", Map),
        ("entrypoint", Command),
        ("env_file", StrOrList),
        ("environment", ListOrDict),
        ("expose", List),
        ("extends", StrOrMap),
        ("external_links", List),
        ("extra_hosts", ListOrDict),
        ("gpus", Any),
        ("group_add", List),
        ("healthcheck", Map),
        ("hostname", Str),
        ("image", Str),
        ("init", Bool),
        ("ipc", Str),
        ("isolation", Str),
        ("label_file", StrOrList),
        ("labels", ListOrDict),
        ("links", List),
        ("logging", Map),
        ("mac_address", Str),
        ("mem_limit", StrOrNum),
        ("mem_reservation", StrOrNum),
        ("mem_swappiness", Int),
        ("memswap_limit", StrOrNum),
        ("models", MapOrList),
        ("network_mode", Str),
        ("networks", MapOrList),
        ("oom_kill_disable", Bool),
        ("oom_score_adj", Int),
        ("pid", Str),
        ("pids_limit", StrOrNum),
        ("platform", Str),
        ("ports", List),
        ("post_start", List),
        ("pre_stop", List),
        ("privileged", Bool),
        ("profiles", List),
        ("provider", Map),
        ("pull_policy", Str),
        ("read_only", Bool),
        ("restart", Str),
        ("runtime", Str),
        ("scale", Int),
        ("secrets", List),
        ("security_opt", List),
        ("shm_size", StrOrNum),
        ("stdin_open", Bool),
        ("stop_grace_period", Str),
        ("stop_signal", Str),
        ("storage_opt", Map),
        ("sysctls", ListOrDict),
        ("tmpfs", StrOrList),
        ("tty", Bool),
        ("ulimits", Map),
        ("use_api_socket", Bool),
        ("user", StrOrNum),
        ("userns_mode", Str),
        ("uts", Str),
        ("volumes", List),
        ("volumes_from", List),
        ("working_dir", Str),
    ]
};

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

fn shape_ok(shape: Shape, v: &Value) -> bool {
    let str_list = |a: &Vec<Value>| a.iter().all(|x| x.is_string() || x.is_number());
    match shape {
        Shape::Str => v.is_string() || v.is_number(),
        Shape::StrOrNum => v.is_string() || v.is_number(),
        Shape::StrOrList => v.is_string() || v.as_array().is_some_and(str_list),
        Shape::ListOrDict => v.is_object() || v.as_array().is_some_and(str_list),
        Shape::List => v.as_array().is_some_and(|a| a.iter().all(|x| !x.is_array() && !x.is_null())),
        Shape::Command => v.is_string() || v.as_array().is_some_and(str_list),
        Shape::Map => v.is_object(),
        Shape::MapOrList => v.is_object() || v.as_array().is_some_and(str_list),
        Shape::StrOrMap => v.is_string() || v.is_object(),
        Shape::Bool => v.is_boolean(),
        Shape::Int => v.is_i64() || v.is_u64(),
        Shape::Any => true,
    }
}

fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Str => "a string",
        Shape::StrOrNum => "a string or a number",
        Shape::StrOrList => "a string or a list of strings",
        Shape::ListOrDict => "a list of strings or a mapping",
        Shape::List => "a list",
        Shape::Command => "a string or a list of strings",
        Shape::Map => "a mapping",
        Shape::MapOrList => "a mapping or a list",
        Shape::StrOrMap => "a string or a mapping",
        Shape::Bool => "true or false",
        Shape::Int => "an integer",
        Shape::Any => "anything",
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

/// CORE I/O only lets TCP/UDP 21000–22000 in (21443 is its web portal).
fn check_ports(svc: &Map<String, Value>, path: &str, r: &Rules, findings: &mut Problems) {
    let file = r.file;
    let Some(Value::Array(ports)) = svc.get("ports") else { return };
    if ports.is_empty() {
        return;
    }
    if svc.get("network_mode").and_then(Value::as_str) == Some("host") {
        findings.warn(
            format!("{file}: {path}.ports: ignored with network_mode: host (the container uses the host's ports)"),
            Some("remove ports:, or use network_mode: bridge"),
        );
        return;
    }
    if r.target != Target::Spot {
        return;
    }
    for (i, p) in ports.iter().enumerate() {
        let published: Option<String> = match p {
            Value::Number(_) => None,
            Value::String(s) => published_port(s),
            Value::Object(m) => m.get("published").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)),
            _ => continue,
        };
        let where_ = format!("{file}: {path}.ports[{i}]");
        match published {
            None => findings.warn(
                format!("{where_}: {} is published on a random host port, outside CORE I/O's 21000-22000", show(p)),
                Some("publish it on a fixed port in 21000-22000, e.g. \"21000:21000\""),
            ),
            Some(host) => {
                let (lo, hi) = match host.split_once('-') {
                    Some((a, b)) => (a.parse::<u32>().ok(), b.parse::<u32>().ok()),
                    None => (host.parse().ok(), host.parse().ok()),
                };
                let (Some(lo), Some(hi)) = (lo, hi) else {
                    findings.error(format!("{where_}: {} has an invalid host port {host:?}", show(p)), None);
                    continue;
                };
                if lo < 21000 || hi > 22000 {
                    findings.warn(
                        format!("{where_}: host port {host} is outside 21000-22000, which CORE I/O lets in"),
                        Some("use a host port in 21000-22000"),
                    );
                } else if (lo..=hi).contains(&21443) {
                    findings.warn(
                        format!("{where_}: host port 21443 is the CORE I/O web portal"),
                        Some("use another port in 21000-22000"),
                    );
                }
            }
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The host port (or range) of a short-syntax port, `None` when it is chosen at random.
fn published_port(spec: &str) -> Option<String> {
    let spec = spec.split('/').next().unwrap_or(spec);
    // [HOST_IP:][HOST_PORT:]CONTAINER_PORT, HOST_IP may be [v6]
    let rest = match spec.strip_prefix('[') {
        Some(r) => r.split_once("]:").map_or("", |(_, x)| x),
        None => spec,
    };
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [_] => None,
        [host, _] if spec.starts_with('[') => (!host.is_empty()).then(|| host.to_string()),
        [host, _] => (!host.is_empty()).then(|| host.to_string()),
        [_, host, _] => (!host.is_empty()).then(|| host.to_string()),
        _ => Some(rest.to_string()),
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
    fn ports_and_tags() {
        assert_eq!(published_port("50051:50051"), Some("50051".into()));
        assert_eq!(published_port("127.0.0.1:22101:22101"), Some("22101".into()));
        assert_eq!(published_port("8000-8010:8000-8010/tcp"), Some("8000-8010".into()));
        assert_eq!(published_port("[::1]:21000:21000"), Some("21000".into()));
        assert_eq!(published_port("8080"), None);
        assert_eq!(published_port("127.0.0.1::80"), None);
        assert_eq!(repo_tag("openvpn_client"), "openvpn_client:latest");
        assert_eq!(repo_tag("gps_listener_image_arm64:latest"), "gps_listener_image_arm64:latest");
        assert!(same_image("openvpn_client", "docker.io/library/openvpn_client:latest"));
        assert!(!same_image("a:1", "a:2"));
    }
}
