//! `spxpack init`: scaffolds an extension directory — `manifest.json` and `docker-compose.yml`
//! following the SDK's conventions (restart policy, bridge networking with the CORE I/O port
//! range, the payload credentials volume, an optional GPU reservation) — for an image given as a
//! registry reference, a `docker save` archive, an OCI layout or a transport-prefixed source.
//! Existing files are never overwritten without `--force`.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::atomic::AtomicFile;
use crate::docker_archive::DockerArchive;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::source::Source;
use crate::spx::{COMPOSE, COMPOSE_NAMES, MANIFEST, Target, manifest};

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// A registry reference, an archive or layout path, or `oci:`/`oci-archive:`/`docker-archive:`.
    pub image: String,
    pub name: Option<String>,
    pub target: Target,
    pub gpu: bool,
    pub force: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InitSummary {
    pub files: Vec<PathBuf>,
    pub extension_name: String,
    /// (service, image, source) per service.
    pub services: Vec<(String, String, Option<String>)>,
}

/// Validates everything first, then creates the directory (if needed) and writes both files;
/// on a failure nothing is left behind (a directory it created is removed again).
pub fn init(opts: &InitOptions) -> Result<InitSummary> {
    let dir = &opts.dir;
    let existing: Vec<&str> = std::iter::once(MANIFEST)
        .chain(COMPOSE_NAMES)
        .filter(|n| dir.join(n).exists())
        .filter(|n| !opts.force || (*n != MANIFEST && *n != COMPOSE))
        .collect();
    if !existing.is_empty() {
        let hint = if opts.force {
            "remove them first"
        } else {
            "pass --force to overwrite manifest.json and docker-compose.yml"
        };
        return Err(Error::input(format!("{} already has {}", dir.display(), existing.join(", "))).with_hint(hint));
    }
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => {
            let full = std::fs::canonicalize(dir).or_else(|_| std::path::absolute(dir)).ok();
            let base = full.and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default();
            base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
        }
    };
    manifest::check_name(&name).map_err(|why| {
        Error::input(format!("extension name {name:?} {}", why.message()))
            .with_hint("choose one with --name (letters, digits, '-', '_'; no coreio or mission_control)")
    })?;
    let (services, prebuilt) = services_for(&opts.image, &name, dir)?;
    let archive = prebuilt.unwrap_or_else(|| format!("{name}.tar.gz"));

    let mut m = Map::new();
    m.insert("extension_name".into(), Value::from(name.clone()));
    m.insert("description".into(), Value::from(format!("{name} Spot Extension")));
    m.insert("version".into(), Value::from("0.1.0"));
    m.insert("images".into(), Value::from(vec![archive]));
    m.insert("installation_target".into(), Value::from(opts.target.as_str()));
    let mut manifest_text = serde_json::to_string_pretty(&Value::Object(m)).expect("serialisable");
    manifest_text.push('\n');
    let compose_text = compose_text(&name, &services, opts.target, opts.gpu);

    let files = write_files(dir, [(MANIFEST, manifest_text), (COMPOSE, compose_text)])?;
    Ok(InitSummary { files, extension_name: name, services })
}

/// Creates `dir` when it is missing and writes `files` into it atomically; when a write fails,
/// the files written and a directory created here are removed.
fn write_files(dir: &Path, files: [(&str, String); 2]) -> Result<Vec<PathBuf>> {
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut written = Vec::new();
    let result = files.into_iter().try_for_each(|(file, text)| {
        let path = dir.join(file);
        let mut a = AtomicFile::create(&path)?;
        a.write_all(text.as_bytes()).map_err(|e| Error::io("cannot write", &path, e))?;
        a.commit()?;
        written.push(path);
        Ok(())
    });
    if let Err(e) = result {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        if created {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e);
    }
    Ok(written)
}

/// The services for `image`, and the name of a prebuilt archive already in `dir`.
#[allow(clippy::type_complexity)]
fn services_for(
    image: &str,
    name: &str,
    dir: &Path,
) -> Result<(Vec<(String, String, Option<String>)>, Option<String>)> {
    let service = service_name(name);
    let path = Path::new(image);
    let is_transport = ["oci:", "oci-archive:", "docker-archive:"].iter().any(|p| image.starts_with(p));
    if !is_transport && path.is_dir() {
        return services_for(&format!("oci:{image}"), name, dir);
    }
    if !is_transport && path.is_file() {
        let archive = DockerArchive::open(path)?;
        let in_dir = path.parent().and_then(|p| std::fs::canonicalize(p).ok()) == std::fs::canonicalize(dir).ok();
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut out = Vec::new();
        for (i, item) in archive.items.iter().enumerate() {
            let tags = item.repo_tags.clone().unwrap_or_default();
            let Some(tag) = tags.first() else {
                return Err(Error::input(format!("{image}: image {i} has no RepoTags"))
                    .with_hint("save it with a tag (docker save NAME:TAG), or use docker-archive:FILE@N with --name"));
            };
            let svc = if archive.items.len() == 1 { service.clone() } else { service_name(&repo_last(tag)) };
            let source = (!in_dir).then(|| format!("docker-archive:{}:{tag}", relative(path, dir).display()));
            out.push((svc, tag.clone(), source));
        }
        let prebuilt = in_dir.then_some(file_name).filter(|n| crate::spx::is_archive_name(n));
        return Ok((out, prebuilt));
    }
    if is_transport {
        let src = Source::parse(image)?;
        let (rewritten, tag) = match &src {
            Source::OciDir { path, tag } => (format!("oci:{}", relative(path, dir).display()), tag.clone()),
            Source::OciArchive { path, tag } => (format!("oci-archive:{}", relative(path, dir).display()), tag.clone()),
            Source::DockerArchive { path, .. } => {
                let rest = image.strip_prefix("docker-archive:").unwrap_or(image);
                let sel = &rest[path.to_string_lossy().len()..];
                (
                    format!("docker-archive:{}{sel}", relative(path, dir).display()),
                    sel.strip_prefix(':').map(str::to_string),
                )
            }
            Source::Registry(_) => unreachable!("transport prefix"),
        };
        let source = match &tag {
            Some(t) if !matches!(src, Source::DockerArchive { .. }) => format!("{rewritten}:{t}"),
            _ => rewritten,
        };
        let tag = tag.filter(|t| Reference::parse(&format!("x:{t}")).is_ok()).unwrap_or_else(|| "latest".into());
        let image_name = format!("{}:{tag}", service_name(name).to_ascii_lowercase().replace('.', "-"));
        return Ok((vec![(service, image_name, Some(source))], None));
    }
    Reference::parse(image).map_err(|e| {
        Error::input(format!("--image {image}: not a file, a directory or a valid image reference ({})", e.message()))
            .with_hint("give NAME:TAG, a docker save archive, an OCI layout directory or oci:DIR:TAG")
    })?;
    Ok((vec![(service, image.to_string(), None)], None))
}

fn repo_last(tag: &str) -> String {
    let r = Reference::parse(tag).map(|r| r.repository).unwrap_or_else(|_| tag.to_string());
    r.rsplit('/').next().unwrap_or(&r).to_string()
}

fn service_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

/// `target` relative to `base` when possible (both made absolute first).
fn relative(target: &Path, base: &Path) -> PathBuf {
    let abs =
        |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| std::env::current_dir().unwrap_or_default().join(p));
    let (t, b) = (abs(target), abs(base));
    let tc: Vec<Component> = t.components().collect();
    let bc: Vec<Component> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return t;
    }
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &tc[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() { PathBuf::from(".") } else { out }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

fn compose_text(name: &str, services: &[(String, String, Option<String>)], target: Target, gpu: bool) -> String {
    let mut s = format!(
        "# {name}: the containers of this Spot Extension (written by spxpack init).\n\
         # spxpack build checks it and packages it byte for byte as docker-compose.yml.\n\
         services:\n"
    );
    for (svc, image, source) in services {
        s.push_str(&format!("  {svc}:\n    image: {}\n", q(image)));
        if let Some(src) = source {
            s.push_str(&format!(
                "    # Where spxpack takes the image from (Docker Compose ignores x- keys). Without it,\n    # spxpack pulls image: for the target platform.\n    x-spxpack:\n      source: {}\n",
                q(src)
            ));
        }
        s.push_str("    restart: unless-stopped\n");
        s.push_str(
            "    # Bridge networking; publish the ports your service listens on. CORE I/O lets in only\n    # TCP/UDP 21000-22000 (21443 is its web portal).\n    network_mode: \"bridge\"\n    # ports:\n    #   - \"21000:21000\"\n",
        );
        if target == Target::Spot {
            s.push_str(
                "    volumes:\n      # The payload GUID and secret CORE I/O provides, to authenticate with the robot.\n      - \"/opt/payload_credentials:/creds\"\n",
            );
        }
        s.push_str("    # Runtime arguments, changeable without rebuilding the image:\n    # command: [\"--flag\", \"value\"]\n");
        if gpu {
            s.push_str(
                "    deploy:\n      resources:\n        # A memory limit makes a leak fail fast instead of starving the robot's services:\n        # limits:\n        #   memory: \"512m\"\n        # The GPU (CORE I/O's Jetson); not runtime: nvidia.\n        reservations:\n          devices:\n            - driver: nvidia\n              capabilities: [gpu]\n",
            );
        } else {
            s.push_str(
                "    # A memory limit makes a leak fail fast instead of starving the robot's services:\n    # deploy:\n    #   resources:\n    #     limits:\n    #       memory: \"512m\"\n",
            );
        }
        s.push_str("    # With a memory limit, let the kernel pick this container first when memory runs out:\n    # oom_score_adj: 1000\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("ext")).unwrap();
        std::fs::create_dir_all(d.path().join("images/lay")).unwrap();
        assert_eq!(relative(&d.path().join("images/lay"), &d.path().join("ext")), PathBuf::from("../images/lay"));
        assert_eq!(relative(&d.path().join("ext"), &d.path().join("ext")), PathBuf::from("."));
    }

    #[test]
    fn writes_valid_files_and_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("my-ext");
        let opts = InitOptions {
            dir: dir.clone(),
            image: "127.0.0.1:5000/app:1.0".into(),
            name: None,
            target: Target::Spot,
            gpu: true,
            force: false,
        };
        let s = init(&opts).unwrap();
        assert_eq!(s.extension_name, "my-ext");
        let mut f = crate::problem::Problems::new();
        let p = Target::Spot.platform();
        let c = crate::spx::compose::check(
            &std::fs::read(dir.join(COMPOSE)).unwrap(),
            &crate::spx::compose::Rules { file: "c", target: Target::Spot, platform: &p },
            &mut f,
        )
        .unwrap();
        assert!(f.0.is_empty(), "{f:?}");
        assert_eq!(c.services[0].image.as_deref(), Some("127.0.0.1:5000/app:1.0"));
        let m = manifest::parse(&std::fs::read(dir.join(MANIFEST)).unwrap(), "m", &mut f).unwrap();
        manifest::check(&m, &manifest::Rules { file: "m", spx_name: None, packaged: false }, &mut f);
        assert!(f.0.is_empty(), "{f:?}");
        let e = init(&opts).unwrap_err();
        assert!(e.to_string().contains("already has manifest.json, docker-compose.yml"), "{e}");
        init(&InitOptions { force: true, ..opts.clone() }).unwrap();
        let e = init(&InitOptions { name: Some("my_coreio".into()), force: true, ..opts }).unwrap_err();
        assert!(e.to_string().contains("reserved word"), "{e}");
    }

    #[test]
    fn bad_arguments_leave_no_directory_behind() {
        let d = tempfile::tempdir().unwrap();
        let opts = |dir: &str, image: &str, name: Option<&str>| InitOptions {
            dir: d.path().join(dir),
            image: image.into(),
            name: name.map(str::to_string),
            target: Target::Spot,
            gpu: false,
            force: false,
        };
        for bad in [
            opts("a", "Not A Reference!", None),
            opts("b", "app:1", Some("bad name\nerror: forged")),
            opts("c/deeper", "app:1", Some("x_coreio")),
            opts("d", "app:1\nerror: forged", None),
        ] {
            let r = init(&bad).unwrap_err().render();
            assert_eq!(r.lines().filter(|l| l.starts_with("error: ")).count(), 1, "{r}");
            assert!(r.lines().all(|l| ["error: ", "caused by: ", "hint: "].iter().any(|p| l.starts_with(p))), "{r}");
            assert!(!bad.dir.exists() && !d.path().join("c").exists(), "{} was created", bad.dir.display());
        }
        // a missing directory is created, and named after itself
        let s = init(&opts("new-ext", "app:1", None)).unwrap();
        assert_eq!(s.extension_name, "new-ext");
    }
}
