//! Host side of `RUN --mount`: cache directories (kept in `<cache>/build/run-cache/`, one per
//! `id` and ownership mode, locked for `sharing=locked|private`), secrets (a private copy with
//! the requested mode, bound read-only, or an environment variable), tmpfs mounts and bind
//! mounts (a private copy of what the builder planned, see [`super::bind`]).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::RunOptions;
use crate::digest::Digest;
use crate::dockerfile::executor::RunRequest;
use crate::dockerfile::run_flags::{Mount, MountKind};
use crate::error::{Error, Result};
use crate::host_env::HostEnv;
use crate::sandbox::{GuestMount, Runner, Sandbox};

/// A `--secret` of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    pub source: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// docker buildx's `--secret` forms: `id=ID,src=PATH`, `id=ID,env=VAR`, `id=ID` (the
    /// environment variable ID); `source=`, `type=file|env` are accepted too.
    pub fn parse(spec: &str) -> Result<Secret> {
        let bad = || {
            Error::input(format!("--secret {spec:?}: expected id=ID,src=FILE or id=ID,env=VAR"))
                .with_hint("e.g. --secret id=pip_token,src=$HOME/.pip-token")
        };
        let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", v)) => typ = Some(v.to_string()),
                _ => return Err(bad()),
            }
        }
        let id = id.filter(|i| !i.is_empty()).ok_or_else(bad)?;
        let source = match (typ.as_deref(), src, env) {
            (Some("env"), Some(v), None) | (_, None, Some(v)) => SecretSource::Env(v),
            (Some("file") | None, Some(p), None) => SecretSource::File(p.into()),
            (None, None, None) => SecretSource::Env(id.clone()),
            _ => return Err(bad()),
        };
        Ok(Secret { id, source })
    }

    /// The secret's bytes: the file's, or the variable's in `env`.
    fn read(&self, env: &HostEnv) -> Result<Vec<u8>> {
        match &self.source {
            SecretSource::File(p) => {
                crate::input::read(p, crate::input::MAX_TEXT).map_err(|e| Error::io("cannot read secret", p, e))
            }
            SecretSource::Env(v) => {
                env.get_os(v).and_then(|s| s.to_str()).map(|s| s.as_bytes().to_vec()).ok_or_else(|| {
                    Error::input(format!("secret {}: environment variable {v} is not set", self.id))
                        .with_hint(format!("export {v}, or pass --secret id={},src=FILE", self.id))
                })
            }
        }
    }
}

/// The mounts of one step, ready for the sandbox; `locks` are held until the step ends.
pub struct Prepared {
    pub mounts: Vec<GuestMount>,
    pub locks: Vec<File>,
}

pub fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(p, data).map_err(|e| Error::io("cannot write", p, e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("cannot chmod", p, e))
}

fn chown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    rustix::fs::chown(p, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))
        .map_err(|e| Error::io("cannot chown", p, e.into()))
}

/// Prepares `mounts` for a step; secrets with `env=` are added to `env`. `dir` is private to
/// the step and removed after it.
pub fn prepare(
    mounts: &[Mount],
    opts: &RunOptions,
    req: &RunRequest,
    runner: &Runner,
    dir: &Path,
    env: &mut Vec<(String, String)>,
) -> Result<Prepared> {
    let mut out = Prepared { mounts: Vec::new(), locks: Vec::new() };
    let real_owners = runner.sandbox == Sandbox::Root;
    for (i, m) in mounts.iter().enumerate() {
        match &m.kind {
            MountKind::Cache { id, readonly, locked, mode, uid, gid } => {
                let sub = if real_owners { "root" } else { "rootless" };
                let base = req.cache.root().join("build/run-cache").join(sub);
                let d = base.join(&Digest::of(id.as_bytes()).hex()[..32]);
                if !d.exists() {
                    std::fs::create_dir_all(&base).map_err(|e| Error::io("cannot create", &base, e))?;
                    let tmp = tempfile::Builder::new()
                        .prefix(".new-")
                        .tempdir_in(&base)
                        .map_err(|e| Error::io("cannot create a directory in", &base, e))?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(*mode))
                        .map_err(|e| Error::io("cannot chmod", tmp.path(), e))?;
                    if real_owners {
                        chown(tmp.path(), *uid, *gid)?;
                    }
                    let p = tmp.keep();
                    if std::fs::rename(&p, &d).is_err() {
                        let _ = std::fs::remove_dir(&p); // another build made it meanwhile
                    }
                }
                if *locked {
                    let lock_path = d.with_extension("lock");
                    let f = File::create(&lock_path).map_err(|e| Error::io("cannot create", &lock_path, e))?;
                    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
                        .map_err(|e| Error::io("cannot lock", &lock_path, e.into()))?;
                    out.locks.push(f);
                }
                out.mounts.push(GuestMount { source: Some(d), target: m.target.clone(), readonly: *readonly });
            }
            MountKind::Secret { id, required, mode, uid, gid, env: var, file } => {
                let Some(s) = opts.secrets.iter().find(|s| s.id == *id) else {
                    if *required {
                        return Err(req
                            .loc
                            .error(format!("RUN --mount=type=secret,id={id}: no secret {id} was given"))
                            .with_hint(format!("pass --secret id={id},src=FILE (or env=VAR)")));
                    }
                    tracing::info!("{}: secret {id} not given; not mounted", req.loc);
                    continue;
                };
                let data = s.read(&opts.env).map_err(|e| e.at(req.loc))?;
                if let Some(v) = var {
                    env.retain(|(k, _)| k != v);
                    env.push((v.clone(), String::from_utf8_lossy(&data).into_owned()));
                }
                if *file {
                    let p = dir.join(format!("secret-{i}"));
                    write_file(&p, &data, *mode)?;
                    if real_owners {
                        chown(&p, *uid, *gid)?;
                    }
                    out.mounts.push(GuestMount { source: Some(p), target: m.target.clone(), readonly: true });
                }
            }
            MountKind::Tmpfs => out.mounts.push(GuestMount { source: None, target: m.target.clone(), readonly: false }),
            MountKind::Bind { readonly, .. } => {
                let b = req.binds.iter().find(|b| b.mount == i).ok_or_else(|| {
                    Error::internal(format!("{}: the bind mount at {} was not planned", req.loc, m.target))
                })?;
                let source = super::bind::materialise(
                    b,
                    req.staging,
                    req.source_of,
                    &dir.join(format!("bind-{i}")),
                    real_owners,
                )?;
                out.mounts.push(GuestMount { source: Some(source), target: m.target.clone(), readonly: *readonly });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_secret_specs_like_buildx() {
        let f = Secret::parse("id=tok,src=/run/tok").unwrap();
        assert_eq!(f.source, SecretSource::File("/run/tok".into()));
        assert_eq!(Secret::parse("id=tok,env=TOKEN").unwrap().source, SecretSource::Env("TOKEN".into()));
        assert_eq!(Secret::parse("id=TOKEN").unwrap().source, SecretSource::Env("TOKEN".into()));
        assert_eq!(Secret::parse("type=env,id=a,src=B").unwrap().source, SecretSource::Env("B".into()));
        assert!(Secret::parse("src=/x").is_err() && Secret::parse("id=a,bogus").is_err());
    }

    #[test]
    fn env_secrets_come_from_the_given_environment() {
        let env = HostEnv::from_vars([("TOKEN", "s3cret"), ("EMPTY", "")]);
        let read = |spec: &str| Secret::parse(spec).unwrap().read(&env);
        assert_eq!(read("id=t,env=TOKEN").unwrap(), b"s3cret");
        assert_eq!(read("id=EMPTY").unwrap(), b"", "set but empty is a value, as before");
        let e = read("id=t,env=UNSET").unwrap_err();
        assert!(e.to_string().contains("environment variable UNSET is not set"), "{e}");
    }
}
