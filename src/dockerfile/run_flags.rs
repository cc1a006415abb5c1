//! `RUN` flags: `--network=default|host|none`, `--mount=type=cache|secret|tmpfs|bind,…`
//! (BuildKit's syntax: values are expanded with the stage's ARGs and ENV, except `from=`),
//! `--security=sandbox`; `--security=insecure`, `--device` and `--mount=type=ssh` are reported
//! as unsupported. What a flag changes in the step's result is part of the step's cache key
//! ([`RunFlags::key_text`]; the content a bind mount shows is added by the executor).

use crate::dockerfile::instructions::Loc;
use crate::error::{Error, Result};
use crate::sandbox::Network;

/// A parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute path inside the rootfs.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A directory kept between builds (`<cache>/build/run-cache/`), shared by every step with
    /// the same `id` (default: the target).
    Cache { id: String, readonly: bool, locked: bool, mode: u32, uid: u32, gid: u32 },
    /// A `--secret` file, read-only, never in a layer or the cache key. `env` also (or only,
    /// without an explicit target) exposes it as an environment variable.
    Secret { id: String, required: bool, mode: u32, uid: u32, gid: u32, env: Option<String>, file: bool },
    /// An empty tmpfs.
    Tmpfs,
    /// `source` (a path inside `from`: an earlier stage, a named context or an image; the
    /// build context when `None`), read-only unless `rw` (then writes are discarded).
    Bind { from: Option<String>, source: String, readonly: bool },
}

/// Everything the flags of one RUN say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    pub network: Network,
    pub mounts: Vec<Mount>,
}

impl RunFlags {
    /// The part of the cache key that follows from the flags (secret contents excluded, as in
    /// BuildKit).
    pub fn key_text(&self) -> String {
        let mut s = format!("network={:?}\n", self.network);
        for m in &self.mounts {
            s.push_str(&format!("mount {:?} {:?}\n", m.target, m.kind));
        }
        s
    }
}

fn unsupported(loc: &Loc, what: &str, hint: &str) -> Error {
    Error::unsupported(format!("{loc}: RUN {what} is not supported by spxpack")).with_hint(hint.to_string())
}

fn octal(loc: &Loc, k: &str, v: &str) -> Result<u32> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| loc.error(format!("--mount {k}={v}: not an octal mode")))
}

fn number(loc: &Loc, k: &str, v: &str) -> Result<u32> {
    v.parse().map_err(|_| loc.error(format!("--mount {k}={v}: not a number")))
}

fn boolean(loc: &Loc, k: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(loc.error(format!("--mount {k}={v}: expected true or false"))),
    }
}

/// Expands variables in a flag value (the stage's ARGs and ENV).
pub type Expand<'a> = &'a dyn Fn(&str) -> Result<String>;

/// Parses the flags of a RUN (as written: name, value); relative mount targets are relative to
/// `workdir`.
pub fn parse(flags: &[(String, String)], workdir: &str, loc: &Loc, expand: Expand) -> Result<RunFlags> {
    let mut out = RunFlags::default();
    for (name, value) in flags {
        match name.as_str() {
            "network" => {
                out.network = match value.as_str() {
                    "default" | "host" => Network::Host,
                    "none" => Network::None,
                    v => {
                        return Err(loc
                            .error(format!("RUN --network={v}: unknown network mode"))
                            .with_hint("use --network=default (the host's network), host or none"));
                    }
                }
            }
            "security" => match value.as_str() {
                "sandbox" => {}
                "insecure" => {
                    return Err(unsupported(
                        loc,
                        "--security=insecure",
                        "spxpack never runs steps with extra privileges; drop the flag",
                    ));
                }
                v => return Err(loc.error(format!("RUN --security={v}: use sandbox or insecure"))),
            },
            "device" => {
                return Err(unsupported(
                    loc,
                    "--device",
                    "devices cannot be passed into spxpack's sandbox; drop the flag",
                ));
            }
            "mount" => out.mounts.push(parse_mount(value, workdir, loc, expand)?),
            other => return Err(loc.error(format!("unknown flag --{other} for RUN"))),
        }
    }
    for (i, m) in out.mounts.iter().enumerate() {
        if out.mounts[..i].iter().any(|o| o.target == m.target) {
            return Err(loc.error(format!("RUN --mount: {} is mounted twice", m.target)));
        }
    }
    Ok(out)
}

/// The `from=` of a `--mount` value as written (for the stage graph).
pub fn mount_from(spec: &str) -> Option<String> {
    split_mount(spec).into_iter().rev().find(|(k, _)| k == "from").and_then(|(_, v)| v)
}

fn split_mount(spec: &str) -> Vec<(String, Option<String>)> {
    let mut kv = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        kv.push(match part.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v.trim_matches('"').to_string())),
            None => (part.to_lowercase(), None),
        });
    }
    kv
}

/// The keys a `--mount` may have.
const MOUNT_KEYS: [&str; 19] = [
    "type",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "readonly",
    "ro",
    "rw",
    "readwrite",
    "required",
    "env",
    "size",
];

/// A `--mount` value split into its keys (values expanded, except `from=`).
struct MountSpec<'a> {
    loc: &'a Loc,
    kv: Vec<(String, Option<String>)>,
}

impl<'a> MountSpec<'a> {
    fn new(spec: &str, loc: &'a Loc, expand: Expand) -> Result<Self> {
        let mut kv = split_mount(spec);
        for (k, v) in &mut kv {
            let Some(v) = v else { continue };
            if k != "from" {
                *v = expand(v)?;
            } else if v.find('$').is_some_and(|i| i + 1 != v.len()) {
                // BuildKit: the stage graph cannot depend on variables
                return Err(loc
                    .error(format!("RUN --mount from={v}: from= does not support variable expansion"))
                    .with_hint("define an alias stage (FROM ${IMAGE} AS alias) and use from=alias"));
            }
        }
        Ok(MountSpec { loc, kv })
    }
    fn check_keys(&self, spec: &str) -> Result<()> {
        match self.kv.iter().find(|(k, _)| !MOUNT_KEYS.contains(&k.as_str())) {
            Some((k, _)) => Err(self.loc.error(format!("RUN --mount={spec}: unknown key {k:?}"))),
            None => Ok(()),
        }
    }
    /// The last value given for any of `names` (`Some(None)` for a key without `=`).
    fn get(&self, names: &[&str]) -> Option<Option<String>> {
        self.kv.iter().rev().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone())
    }
    fn value(&self, names: &[&str]) -> Option<String> {
        self.get(names).flatten()
    }
    fn num(&self, k: &str, default: u32) -> Result<u32> {
        self.value(&[k]).map_or(Ok(default), |v| number(self.loc, k, &v))
    }
    fn mode(&self, default: u32) -> Result<u32> {
        self.value(&["mode"]).map_or(Ok(default), |v| octal(self.loc, "mode", &v))
    }
    /// `readonly`/`ro` or `rw`/`readwrite`; bind mounts are read-only by default.
    fn readonly(&self, typ: &str) -> Result<bool> {
        match (self.get(&["readonly", "ro"]), self.get(&["rw", "readwrite"])) {
            (Some(v), _) => boolean(self.loc, "readonly", v.as_deref()),
            (None, Some(v)) => Ok(!boolean(self.loc, "rw", v.as_deref())?),
            (None, None) => Ok(typ == "bind"),
        }
    }
}

fn parse_mount(spec: &str, workdir: &str, loc: &Loc, expand: Expand) -> Result<Mount> {
    let m = MountSpec::new(spec, loc, expand)?;
    let typ = m.value(&["type"]).unwrap_or_else(|| "bind".into());
    let target = m.value(&["target", "dst", "destination"]);
    let readonly = m.readonly(&typ)?;
    m.check_keys(spec)?;
    // relative targets are relative to the working directory (BuildKit)
    let absolute = |t: &str| {
        crate::dockerfile::fsview::normalize(&if t.starts_with('/') { t.to_string() } else { format!("{workdir}/{t}") })
    };
    let kind = match typ.as_str() {
        "cache" => cache_mount(&m, target.as_deref().map(absolute), readonly)?,
        "secret" => secret_mount(&m, target.as_deref())?,
        "tmpfs" if target.is_none() => return Err(loc.error("RUN --mount=type=tmpfs needs target=PATH")),
        "tmpfs" => MountKind::Tmpfs,
        "bind" => bind_mount(&m, target.is_some(), readonly)?,
        "ssh" => {
            return Err(unsupported(loc, "--mount=type=ssh", "fetch private sources before the build and COPY them"));
        }
        t => return Err(loc.error(format!("RUN --mount: unknown type {t:?} (use bind, cache, secret or tmpfs)"))),
    };
    let target = match (&kind, target) {
        (_, Some(t)) => format!("/{}", absolute(&t)),
        (MountKind::Secret { id, .. }, None) => format!("/run/secrets/{id}"),
        _ => unreachable!("checked above"),
    };
    if target == "/" {
        return Err(loc
            .error("RUN --mount: cannot mount over /")
            .with_hint("mount at a directory below the root, e.g. target=/src"));
    }
    Ok(Mount { target, kind })
}

/// `type=cache`; `target` is already relative to the root.
fn cache_mount(m: &MountSpec, target: Option<String>, readonly: bool) -> Result<MountKind> {
    let loc = m.loc;
    if m.get(&["from"]).is_some() || m.get(&["source", "src"]).is_some() {
        return Err(unsupported(
            loc,
            "--mount=type=cache with from= or source=",
            "drop from=/source=; the cache directory starts empty",
        ));
    }
    let Some(t) = target else { return Err(loc.error("RUN --mount=type=cache needs target=PATH")) };
    let sharing = m.value(&["sharing"]).unwrap_or_else(|| "shared".into());
    if !["shared", "private", "locked"].contains(&sharing.as_str()) {
        return Err(loc.error(format!("RUN --mount sharing={sharing}: use shared, private or locked")));
    }
    Ok(MountKind::Cache {
        id: m.value(&["id"]).unwrap_or_else(|| format!("/{t}")),
        readonly,
        locked: sharing != "shared",
        mode: m.mode(0o755)?,
        uid: m.num("uid", 0)?,
        gid: m.num("gid", 0)?,
    })
}

/// `type=secret`: the id defaults to the target's file name.
fn secret_mount(m: &MountSpec, target: Option<&str>) -> Result<MountKind> {
    let id = match (m.value(&["id"]), target) {
        (Some(i), _) => i,
        (None, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_string(),
        (None, None) => return Err(m.loc.error("RUN --mount=type=secret needs id=NAME")),
    };
    let env = m.value(&["env"]);
    Ok(MountKind::Secret {
        file: target.is_some() || env.is_none(),
        required: boolean(m.loc, "required", m.value(&["required"]).as_deref().or(Some("false")))?,
        mode: m.mode(0o400)?,
        uid: m.num("uid", 0)?,
        gid: m.num("gid", 0)?,
        env,
        id,
    })
}

/// `type=bind` (the default): one source path, read-only unless `rw`.
fn bind_mount(m: &MountSpec, has_target: bool, readonly: bool) -> Result<MountKind> {
    let loc = m.loc;
    if !has_target {
        return Err(loc
            .error("RUN --mount=type=bind needs target=PATH")
            .with_hint("e.g. --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt"));
    }
    for k in ["mode", "uid", "gid", "sharing", "size", "required"] {
        if m.get(&[k]).is_some() {
            return Err(loc
                .error(format!("RUN --mount=type=bind: {k}= is not allowed for bind mounts"))
                .with_hint("a bind mount shows the source's own files; mode/uid/gid/sharing are for type=cache"));
        }
    }
    let source = m.value(&["source", "src"]).unwrap_or_else(|| ".".into());
    if crate::dockerfile::tree::has_wildcards(&source) {
        return Err(loc
            .error(format!("RUN --mount=type=bind,source={source}: source is one path, not a pattern"))
            .with_hint("mount the directory that holds the files"));
    }
    Ok(MountKind::Bind { from: m.value(&["from"]).filter(|f| !f.is_empty()), source, readonly })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> Loc {
        Loc { file: "Dockerfile".into(), line: 3, col: 1 }
    }

    fn p(flags: &[(&str, &str)]) -> Result<RunFlags> {
        let v: Vec<(String, String)> = flags.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        parse(&v, "/w", &loc(), &|s| Ok(s.replace("$F", "from-var")))
    }

    #[test]
    fn parses_network_and_mounts() {
        let f = p(&[
            ("network", "none"),
            ("mount", "type=cache,target=/root/.cache/pip,sharing=locked,mode=0700"),
            ("mount", "type=secret,id=token"),
            ("mount", "type=secret,id=k,env=KEY"),
            ("mount", "type=tmpfs,dst=tmp/x"),
            ("mount", "type=cache,target=/abs/../c"),
        ])
        .unwrap();
        assert_eq!(f.network, Network::None);
        assert_eq!(f.mounts[0].target, "/root/.cache/pip");
        assert_eq!(
            f.mounts[0].kind,
            MountKind::Cache {
                id: "/root/.cache/pip".into(),
                readonly: false,
                locked: true,
                mode: 0o700,
                uid: 0,
                gid: 0
            }
        );
        assert_eq!(f.mounts[1].target, "/run/secrets/token");
        assert!(matches!(&f.mounts[2].kind, MountKind::Secret { env: Some(e), file: false, .. } if e == "KEY"));
        assert_eq!(f.mounts[3].target, "/w/tmp/x");
        assert_eq!(f.mounts[4].target, "/c");
        assert_eq!(p(&[("network", "default")]).unwrap().network, Network::Host);
    }

    #[test]
    fn parses_bind_mounts() {
        let f = p(&[
            ("mount", "type=bind,source=req.txt,target=r.txt"),
            ("mount", "target=/src,rw"),
            ("mount", "type=bind,from=build,src=/out/$F,dst=/o,readonly=false"),
            ("mount", "type=bind,source=$F,target=/t/$F,ro=true"),
        ])
        .unwrap();
        let bind = |from: Option<&str>, source: &str, readonly| MountKind::Bind {
            from: from.map(str::to_string),
            source: source.into(),
            readonly,
        };
        assert_eq!(f.mounts[0].target, "/w/r.txt");
        assert_eq!(f.mounts[0].kind, bind(None, "req.txt", true), "read-only by default");
        assert_eq!(f.mounts[1].kind, bind(None, ".", false), "no type= is a bind of the context root");
        assert_eq!(f.mounts[2].kind, bind(Some("build"), "/out/from-var", false));
        assert_eq!((f.mounts[3].target.as_str(), &f.mounts[3].kind), ("/t/from-var", &bind(None, "from-var", true)));
        assert!(f.key_text().contains("Bind { from: Some(\"build\")"), "{}", f.key_text());
        assert_eq!(mount_from("type=bind,FROM=\"build\",target=/x").as_deref(), Some("build"));
        assert_eq!(mount_from("type=cache,target=/x"), None);
    }

    #[test]
    fn unsupported_forms_say_so() {
        for (k, v, want) in [
            ("mount", "type=ssh", "RUN --mount=type=ssh is not supported"),
            ("mount", "source=a", "RUN --mount=type=bind needs target=PATH"),
            ("mount", "type=bind,target=/", "cannot mount over /"),
            ("mount", "type=bind,target=/x/..", "cannot mount over /"),
            ("mount", "type=bind,target=/x,uid=1", "uid= is not allowed for bind mounts"),
            ("mount", "type=bind,target=/x,from=$IMAGE", "from= does not support variable expansion"),
            ("mount", "type=bind,target=/x,source=*.txt", "source is one path, not a pattern"),
            ("device", "/dev/kvm", "RUN --device is not supported"),
            ("security", "insecure", "RUN --security=insecure is not supported"),
            ("network", "bridge", "unknown network mode"),
            ("mount", "type=cache", "needs target=PATH"),
            ("mount", "type=cache,target=/x,colour=red", "unknown key"),
        ] {
            let e = p(&[(k, v)]).unwrap_err();
            assert!(e.to_string().starts_with("Dockerfile:3:1: "), "{e}");
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.hint().is_some(), "{e}");
        }
    }

    #[test]
    fn mount_defaults_and_the_last_key_wins() {
        let f = p(&[
            ("mount", "type=secret,target=/etc/keys/api.key"),
            ("mount", "type=secret,id=x,required=true"),
            ("mount", "type=cache,target=c,ro,uid=5,uid=7"),
            ("mount", "type=tmpfs,target=/t,readwrite"),
        ])
        .unwrap();
        let MountKind::Secret { id, required, mode, file, .. } = &f.mounts[0].kind else { panic!() };
        assert_eq!((id.as_str(), *required, *mode, *file), ("api.key", false, 0o400, true));
        assert_eq!(f.mounts[0].target, "/etc/keys/api.key");
        assert!(matches!(f.mounts[1].kind, MountKind::Secret { required: true, .. }));
        assert_eq!(f.mounts[1].target, "/run/secrets/x");
        let MountKind::Cache { id, readonly, uid, locked, .. } = &f.mounts[2].kind else { panic!() };
        assert_eq!((id.as_str(), *readonly, *uid, *locked), ("/w/c", true, 7, false));
        assert_eq!(f.mounts[3].kind, MountKind::Tmpfs);
        for (spec, want) in [
            ("type=tmpfs,target=/t,ro=maybe", "expected true or false"),
            ("type=cache,target=/c,mode=999", "not an octal mode"),
            ("type=cache,target=/c,uid=me", "not a number"),
            ("type=cache,target=/c,sharing=all", "use shared, private or locked"),
            ("type=secret", "needs id=NAME"),
            ("type=tmpfs", "needs target=PATH"),
            ("type=nfs,target=/n", "unknown type"),
            ("target=/a,target=/a", ""),
        ] {
            match p(&[("mount", spec)]) {
                Err(e) => assert!(!want.is_empty() && e.to_string().contains(want), "{spec}: {e}"),
                Ok(_) => assert!(want.is_empty(), "{spec} was accepted"),
            }
        }
        let twice = p(&[("mount", "type=tmpfs,target=/a"), ("mount", "type=cache,target=/a")]).unwrap_err();
        assert!(twice.to_string().contains("/a is mounted twice"), "{twice}");
    }
}
