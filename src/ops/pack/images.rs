//! Where each image of a build comes from and which `images[]` archive it goes into: registry
//! references (through `--registry-mirror`), `x-spxpack.source` inputs, prebuilt archives in the
//! extension directory, and the archive assignment rules.

use std::path::{Path, PathBuf};

use super::model::{ArchiveKind, ArchivePlan, DockerBuild, ImageFrom, ImageReq};
use super::options::{PackOptions, VerifyLevel};
use crate::platform::Platform;
use crate::problem::Problems;
use crate::progress::Reporter;
use crate::reference::Reference;
use crate::source::Source;
use crate::spx;
use crate::spx::compose::{Service, repo_tag};
use crate::spx::image_check::{self, ArchiveInfo, CheckOptions};

/// An image pulled by reference (through a mirror when one applies).
pub fn registry_req(image: &str, opts: &PackOptions, what: &str, f: &mut Problems) -> Option<ImageReq> {
    let r = match Reference::parse(image) {
        Ok(r) => r,
        Err(e) => {
            f.error(format!("{what}: {}", e.message()), e.hint());
            return None;
        }
    };
    if r.tag.is_none() && r.digest.is_some() {
        f.error(
            format!("{what}: {image} has no tag to save it under"),
            Some("write NAME:TAG@sha256:… so docker load can tag it"),
        );
        return None;
    }
    // the resolver pulls through the mirror; only the message names it here
    let shown = match crate::registry::mirror::rewrite(&opts.client.mirrors, &r) {
        Some(mirrored) => format!("{image} (from {mirrored})"),
        None => image.to_string(),
    };
    Some(ImageReq { tag: repo_tag(image), from: ImageFrom::Source(Source::Registry(r)), shown, archive: 0 })
}

/// An image from `x-spxpack.source`, relative paths taken from the extension directory.
pub fn source_req(
    src: &str,
    image: &str,
    opts: &PackOptions,
    service: &str,
    file: &str,
    f: &mut Problems,
) -> Option<ImageReq> {
    let dir = &opts.dir;
    let parsed = match Source::parse(src) {
        Ok(s) => s,
        Err(e) => {
            f.error(format!("{file}: services.{service}.x-spxpack.source: {}", e.message()), e.hint());
            return None;
        }
    };
    let rel = |p: &PathBuf| if p.is_absolute() { p.clone() } else { dir.join(p) };
    let source = match parsed {
        Source::OciDir { path, tag } => Source::OciDir { path: rel(&path), tag },
        Source::OciArchive { path, tag } => Source::OciArchive { path: rel(&path), tag },
        Source::DockerArchive { path, selector } => Source::DockerArchive { path: rel(&path), selector },
        Source::Registry(r) => Source::Registry(r), // mirrored by the resolver
    };
    Some(ImageReq {
        tag: repo_tag(image),
        shown: format!("{image} (from {src})"),
        from: ImageFrom::Source(source),
        archive: 0,
    })
}

/// A compose service's `build:` (context relative to the extension directory, `Dockerfile` in
/// it by default); an `args` key without a value takes it from the environment and is left out
/// when that does not have it either (the Dockerfile's default applies, as in compose).
pub fn compose_build_req(
    s: &Service,
    image: &str,
    compose_label: &str,
    opts: &PackOptions,
    f: &mut Problems,
) -> Option<ImageReq> {
    let what = format!("{compose_label}: services.{}.build", s.name);
    let Some(b) = &s.build else {
        f.error(format!("{what}: must be a directory or a map with context"), None);
        return None;
    };
    let context = if b.context == "." { opts.dir.clone() } else { opts.dir.join(&b.context) };
    let dockerfile = context.join(b.dockerfile.as_deref().unwrap_or("Dockerfile"));
    let from_env = |k: &str| opts.env.get_os(k).and_then(|v| v.to_str()).map(str::to_string);
    let args = b.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone().or_else(|| from_env(k))?))).collect();
    let spec = DockerBuild { dockerfile, context, args, target: b.target.clone() };
    build_req(image, spec, &what, f)
}

/// An image built from a Dockerfile and saved as `image`.
pub fn build_req(image: &str, build: DockerBuild, what: &str, f: &mut Problems) -> Option<ImageReq> {
    if let Err(e) = Reference::parse(image) {
        f.error(format!("{what}: {}", e.message()), e.hint());
        return None;
    }
    if !build.context.is_dir() {
        f.error(
            format!("{what}: build context {} is not a directory", build.context.display()),
            Some("the context is relative to the extension directory"),
        );
        return None;
    }
    if !crate::input::names_a_file(&build.dockerfile) {
        f.error(
            format!("{what}: Dockerfile {} does not exist", build.dockerfile.display()),
            Some("add a Dockerfile to the build context, or name it with build.dockerfile (-f for the SDK flags)"),
        );
        return None;
    }
    let shown = format!("{image} (built from {})", build.dockerfile.display());
    Some(ImageReq { tag: repo_tag(image), from: ImageFrom::Build(build), shown, archive: 0 })
}

pub fn prebuilt(
    path: &Path,
    name: &str,
    opts: &PackOptions,
    platform: &Platform,
    f: &mut Problems,
    reporter: &dyn Reporter,
) -> ArchiveKind {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let copts = CheckOptions {
        full: opts.verify == VerifyLevel::Full,
        platform: Some(platform),
        limits: crate::compress::Limits::NONE,
    };
    let info = match crate::input::open(path) {
        Ok(mut file) => image_check::check(&mut file, &path.display().to_string(), &copts, f),
        Err(e) => {
            match crate::input::refusal(&e) {
                Some(refused) => f.error(refused.message().to_string(), refused.hint()),
                None => f.error(format!("{}: {}", path.display(), crate::error::io_text(&e)), None),
            }
            None
        }
    };
    let info = info.unwrap_or(ArchiveInfo { compression: "none", images: vec![], layers_verified: false });
    let tags: Vec<&String> = info.tags().collect();
    reporter.message(&format!(
        "using the prebuilt image archive {} from the extension directory ({})",
        name,
        if tags.is_empty() { "no tags".into() } else { tags.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ") }
    ));
    ArchiveKind::Prebuilt { path: path.to_path_buf(), size, info }
}

/// Chooses the archive an image goes into (see the module docs of `spx::compose`).
pub fn pick_archive(
    req: &ImageReq,
    wanted: Option<&str>,
    archives: &mut Vec<ArchivePlan>,
    images_list: &mut Option<Vec<String>>,
    extension_name: &str,
    f: &mut Problems,
) -> Option<usize> {
    let generated: Vec<usize> =
        (0..archives.len()).filter(|i| matches!(archives[*i].kind, ArchiveKind::Generated { .. })).collect();
    let explicit_list = images_list.is_some();
    let add = |name: String, archives: &mut Vec<ArchivePlan>| {
        archives.push(ArchivePlan { name, kind: ArchiveKind::Generated { reqs: vec![] } });
        archives.len() - 1
    };
    if let Some(w) = wanted {
        return match archives.iter().position(|a| a.name == w) {
            Some(i) if generated.contains(&i) => Some(i),
            Some(_) => {
                f.error(
                    format!("{}: {w} is a prebuilt archive in the extension directory without that tag", req.tag),
                    None,
                );
                None
            }
            None if !explicit_list => Some(add(w.to_string(), archives)),
            None => {
                f.error(
                    format!("{}: x-spxpack.archive {w:?} is not in manifest.json images", req.tag),
                    Some("add it to images"),
                );
                None
            }
        };
    }
    match generated.as_slice() {
        [one] => Some(*one),
        [] if !explicit_list => {
            let name = format!("{extension_name}.tar.gz");
            *images_list = Some(vec![name.clone()]);
            Some(add(name, archives))
        }
        [] => {
            f.error(
                format!("{}: manifest.json images lists no archive for it", req.tag),
                Some("add an archive name to images, or mark the service provided"),
            );
            None
        }
        many => {
            let repo = Reference::parse(&req.tag).map(|r| r.repository).unwrap_or_default();
            let last = repo.rsplit('/').next().unwrap_or(&repo).to_string();
            let hits: Vec<usize> =
                many.iter().copied().filter(|i| spx::archive_stem(&archives[*i].name) == last).collect();
            if let [one] = hits.as_slice() {
                return Some(*one);
            }
            let names: Vec<&str> = many.iter().map(|i| archives[*i].name.as_str()).collect();
            f.error(
                format!("{}: cannot tell which of {} holds it", req.tag, names.join(", ")),
                Some("add x-spxpack: {archive: NAME} to its service"),
            );
            None
        }
    }
}
