//! Image inputs as users write them: a registry reference (`python:3.10-slim`,
//! `docker://…`), `oci:DIR[:tag]`, `oci-archive:FILE[:tag]` and
//! `docker-archive:FILE[:tag|@index]`; and [`Resolver`], which turns them into [`Image`]s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::blob_cache::BlobCache;
use crate::compress::Limits;
use crate::docker_archive::{DockerArchive, Selector};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::oci_layout::Layout;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{Client, ClientOptions, Registry};
use crate::tar::index::TarArchive;

/// A parsed image input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Registry(Reference),
    OciDir { path: PathBuf, tag: Option<String> },
    OciArchive { path: PathBuf, tag: Option<String> },
    DockerArchive { path: PathBuf, selector: Selector },
}

impl Source {
    pub fn parse(s: &str) -> Result<Self> {
        let split = |rest: &str| -> (PathBuf, Option<String>) {
            match rest.split_once(':') {
                Some((p, t)) if !t.is_empty() => (PathBuf::from(p), Some(t.to_string())),
                Some((p, _)) => (PathBuf::from(p), None),
                None => (PathBuf::from(rest), None),
            }
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = split(rest);
            return Ok(Source::OciDir { path, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, tag) = split(rest);
            return Ok(Source::OciArchive { path, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, sel) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t)),
                None => match rest.rsplit_once('@') {
                    Some((p, i)) if i.bytes().all(|b| b.is_ascii_digit()) && !i.is_empty() => {
                        (p, Some(&rest[p.len()..]))
                    }
                    _ => (rest, None),
                },
            };
            if path.is_empty() {
                return Err(
                    Error::input(format!("{s:?}: missing file name")).with_hint("use docker-archive:FILE[:TAG|@N]")
                );
            }
            return Ok(Source::DockerArchive { path: PathBuf::from(path), selector: Selector::parse(sel)? });
        }
        if let Some((scheme, _)) = s.split_once(':')
            && matches!(scheme, "docker-daemon" | "containers-storage" | "dir" | "tarball" | "ostree" | "sif")
        {
            return Err(Error::unsupported(format!("{s:?}: the {scheme}: transport is not supported"))
                .with_hint("use a registry reference, oci:, oci-archive: or docker-archive:"));
        }
        Ok(Source::Registry(Reference::parse(s)?))
    }

    /// For `inspect` and `push`: an existing path is read as the archive or layout it is, and
    /// `FILE:TAG` or `FILE@N` of an existing archive file as that image of it.
    pub fn parse_path_or_ref(s: &str) -> Result<Self> {
        if s.contains(':') && !Path::new(s).exists() {
            if let Some((file, _)) = s.split_once(':').filter(|(f, _)| crate::input::names_a_file(Path::new(f))) {
                return Self::parse(&format!("docker-archive:{file}{}", &s[file.len()..]));
            }
            return Self::parse(s);
        }
        if let Some((file, n)) = s.rsplit_once('@')
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && crate::input::names_a_file(Path::new(file))
        {
            return Self::parse(&format!("docker-archive:{s}"));
        }
        let p = Path::new(s);
        if p.is_dir() {
            return Ok(Source::OciDir { path: p.to_path_buf(), tag: None });
        }
        if crate::input::names_a_file(p) {
            return Ok(Source::DockerArchive { path: p.to_path_buf(), selector: Selector::Only });
        }
        if s.starts_with('/')
            || s.starts_with("./")
            || s.starts_with("../")
            || s.ends_with(".tar")
            || s.ends_with(".tar.gz")
            || s.ends_with(".tgz")
        {
            return Err(Error::not_found(format!("{s} does not exist")));
        }
        Self::parse(s)
    }

    pub fn is_registry(&self) -> bool {
        matches!(self, Source::Registry(_))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registry(r) => write!(f, "{r}"),
            Source::OciDir { path, tag } => {
                write!(f, "oci:{}{}", path.display(), tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default())
            }
            Source::OciArchive { path, tag } => {
                write!(f, "oci-archive:{}{}", path.display(), tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default())
            }
            Source::DockerArchive { path, selector } => write!(
                f,
                "docker-archive:{}{}",
                path.display(),
                match selector {
                    Selector::Only => String::new(),
                    Selector::Tag(t) => format!(":{t}"),
                    Selector::Index(i) => format!("@{i}"),
                }
            ),
        }
    }
}

/// Turns sources into images: one registry client and cache per run.
pub struct Resolver {
    pub cache: Arc<BlobCache>,
    client_opts: ClientOptions,
    client: OnceLock<Result<Arc<Client>, String>>,
    /// How far a compressed input archive may expand (`--max-decompressed`, `--max-ratio`).
    pub limits: Limits,
}

impl Resolver {
    pub fn new(cache: Arc<BlobCache>, client_opts: ClientOptions) -> Self {
        Resolver { cache, client_opts, client: OnceLock::new(), limits: Limits::default() }
    }

    /// The same resolver with other decompression limits for input archives.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The registry settings of the run.
    pub fn client_options(&self) -> &ClientOptions {
        &self.client_opts
    }

    /// Registry access through this resolver's client and cache.
    pub fn registry(&self) -> Result<Registry> {
        if self.cache.offline() {
            return Ok(Registry::new(None, self.cache.clone()));
        }
        Ok(Registry::new(Some(self.client()?), self.cache.clone()))
    }

    /// The registry client of this run (made once).
    pub fn client(&self) -> Result<Arc<Client>> {
        let c =
            self.client.get_or_init(|| Client::new(self.client_opts.clone()).map(Arc::new).map_err(|e| e.to_string()));
        match c {
            Ok(c) => Ok(c.clone()),
            Err(e) => Err(Error::input(e.clone())),
        }
    }

    /// Resolves one source to the image for `platform`.
    pub fn resolve(&self, src: &Source, platform: &Platform) -> Result<Image> {
        match src {
            Source::Registry(r) => match crate::registry::mirror::rewrite(&self.client_opts.mirrors, r) {
                None => self.registry()?.resolve(r, platform),
                Some(m) => {
                    tracing::info!("pulling {r} from the mirror {m}");
                    let mut img = self
                        .registry()?
                        .resolve(&m, platform)
                        .map_err(|e| e.context(format!("{r} via --registry-mirror")))?;
                    // the image keeps its own name (the mirror is only where the bytes come from)
                    img.suggested_tags = r.familiar_tagged().into_iter().collect();
                    img.origin = format!("{r} (from {m})");
                    Ok(img)
                }
            },
            Source::OciDir { path, tag } => Layout::open_dir(path)?.image(tag.as_deref(), platform),
            Source::OciArchive { path, tag } => {
                Layout::open_archive_limited(path, self.limits)?.image(tag.as_deref(), platform)
            }
            Source::DockerArchive { path, selector } => DockerArchive::open_limited(path, self.limits)?.image(selector),
        }
    }

    /// Every image a source holds (all images of a docker archive), for `inspect`.
    pub fn resolve_all(&self, src: &Source, platform: &Platform) -> Result<Vec<Image>> {
        match src {
            Source::DockerArchive { path, selector: Selector::Only } => {
                let tar = Arc::new(TarArchive::open_limited(path, "archive", self.limits)?);
                if !tar.contains("manifest.json") && tar.contains("index.json") {
                    let layout = Layout::open(crate::oci_layout::LayoutFs::Tar(tar), "oci-archive")?;
                    let tags = layout.tags();
                    if tags.len() > 1 {
                        return tags.iter().map(|t| layout.image(Some(t), platform)).collect();
                    }
                    return Ok(vec![layout.image(None, platform)?]);
                }
                DockerArchive::from_tar(tar)?.all_images()
            }
            _ => Ok(vec![self.resolve(src, platform)?]),
        }
    }
}

impl crate::atomic::Input {
    /// The local files an image source reads (none for a registry reference).
    pub fn of_source(src: &Source, label: &str) -> Option<Self> {
        match src {
            Source::Registry(_) => None,
            Source::OciDir { path, .. } => Some(Self::layout(label, path)),
            Source::OciArchive { path, .. } | Source::DockerArchive { path, .. } => Some(Self::file(label, path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        assert_eq!(
            Source::parse("oci:/x/lay:arm64").unwrap(),
            Source::OciDir { path: "/x/lay".into(), tag: Some("arm64".into()) }
        );
        assert_eq!(Source::parse("oci:/x/lay").unwrap(), Source::OciDir { path: "/x/lay".into(), tag: None });
        assert_eq!(
            Source::parse("docker-archive:a.tar:busybox:arm64").unwrap(),
            Source::DockerArchive { path: "a.tar".into(), selector: Selector::Tag("busybox:arm64".into()) }
        );
        assert_eq!(
            Source::parse("docker-archive:a.tar@1").unwrap(),
            Source::DockerArchive { path: "a.tar".into(), selector: Selector::Index(1) }
        );
        assert_eq!(
            Source::parse("docker-archive:a.tar").unwrap(),
            Source::DockerArchive { path: "a.tar".into(), selector: Selector::Only }
        );
        assert!(matches!(Source::parse("docker://busybox").unwrap(), Source::Registry(_)));
        assert!(Source::parse("docker-daemon:busybox:latest").is_err());
        assert!(Source::parse("docker-archive:").is_err());
    }

    #[test]
    fn archive_paths_with_a_selector() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.tar");
        std::fs::write(&f, b"x").unwrap();
        let p = f.to_str().unwrap();
        assert_eq!(
            Source::parse_path_or_ref(&format!("{p}:app:1")).unwrap(),
            Source::DockerArchive { path: f.clone(), selector: Selector::Tag("app:1".into()) }
        );
        assert_eq!(
            Source::parse_path_or_ref(&format!("{p}@1")).unwrap(),
            Source::DockerArchive { path: f.clone(), selector: Selector::Index(1) }
        );
        assert_eq!(
            Source::parse_path_or_ref(p).unwrap(),
            Source::DockerArchive { path: f.clone(), selector: Selector::Only }
        );
        assert!(matches!(Source::parse_path_or_ref("busybox:1").unwrap(), Source::Registry(_)));
    }
}
