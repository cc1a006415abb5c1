//! Which images a build bundles and which `images[]` archive each goes into: the images come
//! from the compose services (or, with the SDK script's `--image-archive`, from
//! `--extra-image-tags` and `-f/-t` builds); archives named in the manifest that exist in the
//! extension directory are taken as they are (prebuilt), the others are written by spxpack.
//! Every compose image must end up bundled or provided.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::images::{build_req, compose_build_req, pick_archive, prebuilt, registry_req, source_req};
use super::model::{ArchiveKind, ArchivePlan, ComposeIn, DockerBuild, ImageReq, shown};
use super::options::PackOptions;
use crate::platform::Platform;
use crate::problem::Problems;
use crate::progress::Reporter;
use crate::reference::Reference;
use crate::spx::compose::{Service, same_image};
use crate::spx::image_check::ArchiveInfo;
use crate::spx::{MANIFEST, assets, manifest};

/// The images a build bundles, before they are assigned to archives.
#[derive(Debug, Default)]
pub(super) struct Wanted {
    /// Each image and the archive it asks for (`x-spxpack.archive`, or the `--image-archive`).
    pub reqs: Vec<(ImageReq, Option<String>)>,
    /// The `images` list: the manifest's, or the one spxpack adds.
    pub images_list: Option<Vec<String>>,
    /// Manifest keys to add where the manifest lacks them.
    pub added: Vec<(String, Value)>,
    /// SDK `--image-archive`: (index in `images_list`, the path of the copy).
    pub tee: Option<(usize, PathBuf)>,
    /// Images the robot has: `--provided` and the services marked provided.
    pub provided: Vec<String>,
    /// Some image could not be planned, so "no image goes into X" would only repeat that problem.
    pub uncertain: bool,
}

/// The `images[]` archives of a build.
#[derive(Debug, Default)]
pub(super) struct Archives {
    pub archives: Vec<ArchivePlan>,
    /// A prebuilt archive was refused (not read): which archive an image goes into, and whether
    /// it is bundled, depend on it, so nothing more is said about them.
    pub refused: bool,
}

impl Archives {
    /// The prebuilt archive holding `tag`.
    fn prebuilt_with(&self, tag: &str) -> Option<&ArchivePlan> {
        self.archives.iter().find(|a| match &a.kind {
            ArchiveKind::Prebuilt { info, .. } => info.tags().any(|t| same_image(t, tag)),
            ArchiveKind::Generated { .. } => false,
        })
    }
}

/// The SDK script's Dockerfile builds: `-f DOCKERFILE… -t TAG…`, the context being each
/// Dockerfile's directory.
pub(super) fn sdk_builds(opts: &PackOptions, f: &mut Problems) -> Vec<ImageReq> {
    let mut reqs = Vec::new();
    if opts.build_tags.len() != opts.dockerfiles.len() {
        f.error(
            format!(
                "--build-image-tags has {} tags for {} --dockerfile-paths",
                opts.build_tags.len(),
                opts.dockerfiles.len()
            ),
            Some("give one tag per Dockerfile"),
        );
        return reqs;
    }
    for (df, tag) in opts.dockerfiles.iter().zip(&opts.build_tags) {
        let dockerfile = opts.cwd.join(df);
        let context = dockerfile.parent().map(Path::to_path_buf).unwrap_or_else(|| opts.cwd.clone());
        let b = DockerBuild { dockerfile, context, args: Vec::new(), target: None };
        let what = format!("--dockerfile-paths {} (--build-image-tags {tag})", df.display());
        reqs.extend(build_req(tag, b, &what, f));
    }
    reqs
}

/// The images to bundle: with `--image-archive` the SDK flags' images, all into that archive;
/// otherwise the SDK flags' images and every compose service that is not provided.
pub(super) fn wanted_images(
    opts: &PackOptions,
    m: Option<&Map<String, Value>>,
    compose: &ComposeIn,
    sdk_builds: &[ImageReq],
    f: &mut Problems,
) -> Wanted {
    let mut w = Wanted {
        images_list: m.filter(|m| !manifest_lacks_images(m)).map(manifest::images),
        provided: opts.provided.clone(),
        uncertain: opts.image_archive.is_none() && compose.compose.is_none(),
        ..Wanted::default()
    };
    match &opts.image_archive {
        Some(ia) => sdk_archive_images(opts, ia, sdk_builds, &mut w, f),
        None => {
            w.reqs.extend(sdk_builds.iter().map(|r| (r.clone(), None)));
            for t in &opts.extra_images {
                w.reqs.extend(registry_req(t, opts, "--extra-image-tags", f).map(|r| (r, None)));
            }
            for s in compose.services() {
                match service_image(s, opts, compose, sdk_builds, &w.provided, f) {
                    Bundle::Yes(r) => w.reqs.push((r, s.archive.clone())),
                    Bundle::No => {}
                    Bundle::Unplanned => w.uncertain = true,
                }
            }
        }
    }
    w.provided.extend(compose.services().filter(|s| s.provided).filter_map(|s| s.image.clone()));
    w
}

/// `--image-archive NAME`: the `-f/-t` builds and `--extra-image-tags` all go into NAME, which
/// the manifest's `images` must list (or is added as its only entry).
fn sdk_archive_images(opts: &PackOptions, ia: &Path, sdk_builds: &[ImageReq], w: &mut Wanted, f: &mut Problems) {
    let name = ia.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    if !(lower.ends_with(".tar") || lower.ends_with(".gz") || lower.ends_with(".tgz")) {
        f.error(format!("--image-archive {}: must end in .tar, .tar.gz or .tgz", ia.display()), None);
    }
    match &w.images_list {
        Some(list) if !list.contains(&name) => f.error(
            format!("{}: $.images does not list {name:?}, the --image-archive", shown(&opts.dir, MANIFEST)),
            Some("add it to images, or pass the --image-archive named there"),
        ),
        Some(_) => {}
        None => {
            w.images_list = Some(vec![name.clone()]);
            w.added.push(("images".into(), Value::from(vec![name.clone()])));
        }
    }
    let idx = w.images_list.as_ref().and_then(|l| l.iter().position(|n| *n == name)).unwrap_or(0);
    w.tee = Some((idx, opts.cwd.join(ia)));
    w.reqs.extend(sdk_builds.iter().map(|r| (r.clone(), Some(name.clone()))));
    for t in &opts.extra_images {
        w.reqs.extend(registry_req(t, opts, "--extra-image-tags", f).map(|r| (r, Some(name.clone()))));
    }
    if opts.extra_images.is_empty() && opts.build_tags.is_empty() {
        f.error(
            format!("--image-archive {name}: no image to put in it"),
            Some(
                "name the images with --extra-image-tags (or drop --image-archive to take them from the compose file)",
            ),
        );
    }
}

/// Whether a compose service's image is bundled.
enum Bundle {
    Yes(ImageReq),
    /// Provided, or built from the SDK flags.
    No,
    /// It could not be planned (the problem is reported).
    Unplanned,
}

/// Where a compose service's image comes from: built from its `build:`, read from its
/// `x-spxpack.source`, or pulled by its `image:` reference.
fn service_image(
    s: &Service,
    opts: &PackOptions,
    compose: &ComposeIn,
    sdk_builds: &[ImageReq],
    provided: &[String],
    f: &mut Problems,
) -> Bundle {
    let Some(image) = &s.image else {
        if s.has_build && !s.provided {
            f.error(
                format!(
                    "{}: services.{}: build: needs an image: NAME:TAG to save the built image under",
                    compose.label(),
                    s.name
                ),
                Some("the robot runs the service by that name; add e.g. image: my_service:1.0"),
            );
        }
        return Bundle::Unplanned;
    };
    if s.provided || provided.iter().any(|p| same_image(p, image)) {
        return Bundle::No;
    }
    if sdk_builds.iter().any(|r| same_image(&r.tag, image)) {
        return Bundle::No; // built from -f/-t
    }
    let req = if s.has_build && s.source.is_none() {
        compose_build_req(s, image, &compose.label(), opts, f)
    } else if Reference::parse(image).is_err() {
        None // reported by the compose checks
    } else {
        match &s.source {
            Some(src) => source_req(src, image, opts, &s.name, &compose.label(), f),
            None => registry_req(image, opts, &format!("services.{}.image", s.name), f),
        }
    };
    req.map_or(Bundle::Unplanned, Bundle::Yes)
}

/// The archives named in `images`: a file of that name in the extension directory is a
/// prebuilt archive (checked now, except the `--image-archive` itself), the others are written.
pub(super) fn plan_archives(
    opts: &PackOptions,
    w: &Wanted,
    platform: &Platform,
    f: &mut Problems,
    reporter: &dyn Reporter,
) -> Archives {
    let dir = &opts.dir;
    let drop_in_name = w.tee.as_ref().and_then(|(i, _)| w.images_list.as_ref().and_then(|l| l.get(*i)));
    let mut out = Archives::default();
    for n in w.images_list.iter().flatten() {
        if n.is_empty() || n.contains('/') || n.contains('\\') || n == "." || n == ".." {
            continue; // reported by the manifest rules
        }
        let path = dir.join(n);
        let kind = if Some(n) != drop_in_name && path.is_file() {
            match assets::symlink_escape(&path, dir, "image archive") {
                Some((msg, hint)) => {
                    // not read: its images count as bundled, so nothing else is reported about it
                    f.error(msg, Some(&hint));
                    out.refused = true;
                    let info = ArchiveInfo { compression: "none", images: vec![], layers_verified: false };
                    ArchiveKind::Prebuilt { path: path.clone(), size: 0, info }
                }
                None => prebuilt(&path, n, opts, platform, f, reporter),
            }
        } else {
            ArchiveKind::Generated { reqs: vec![] }
        };
        out.archives.push(ArchivePlan { name: n.clone(), kind });
    }
    out
}

/// Puts each wanted image into its archive (see [`pick_archive`]); an image found in a prebuilt
/// archive is not written again, one named twice is bundled once (two different sources for
/// one tag are an error). Returns the images to write, each with its archive index.
pub(super) fn assign_images(
    w: &mut Wanted,
    mut archives: Archives,
    extension_name: &str,
    f: &mut Problems,
    reporter: &dyn Reporter,
) -> (Vec<ImageReq>, Archives) {
    let mut images: Vec<ImageReq> = Vec::new();
    for (mut req, wanted) in std::mem::take(&mut w.reqs) {
        if let Some(prev) = images.iter().find(|x| same_image(&x.tag, &req.tag)) {
            if prev.from != req.from {
                f.error(format!("{} comes from two sources: {} and {}", req.tag, prev.shown, req.shown), None);
            }
            continue;
        }
        if let Some(a) = archives.prebuilt_with(&req.tag) {
            reporter.message(&format!("{} is in the prebuilt archive {}", req.tag, a.name));
            continue;
        }
        if archives.refused {
            continue; // which archive it goes into depends on the refused one
        }
        let list = &mut archives.archives;
        let Some(idx) = pick_archive(&req, wanted.as_deref(), list, &mut w.images_list, extension_name, f) else {
            w.uncertain = true;
            continue;
        };
        req.archive = idx;
        if let ArchiveKind::Generated { reqs } = &mut list[idx].kind {
            reqs.push(images.len());
        }
        images.push(req);
    }
    (images, archives)
}

/// Whether the manifest has no `images` list (missing or null), so spxpack adds one.
pub(super) fn manifest_lacks_images(m: &Map<String, Value>) -> bool {
    m.get("images").is_none_or(Value::is_null)
}

/// The `images` key spxpack adds to a manifest without one: every archive, in order.
pub(super) fn images_key(archives: &[ArchivePlan]) -> Option<(String, Value)> {
    if archives.is_empty() {
        return None;
    }
    Some(("images".into(), Value::from(archives.iter().map(|a| a.name.clone()).collect::<Vec<_>>())))
}

/// An archive spxpack would write with no image in it is an error (unless some image could not
/// be planned: then that problem is the one to fix).
pub(super) fn check_archives_used(dir: &Path, archives: &[ArchivePlan], uncertain: bool, f: &mut Problems) {
    if uncertain {
        return;
    }
    for (i, a) in archives.iter().enumerate() {
        if let ArchiveKind::Generated { reqs } = &a.kind
            && reqs.is_empty()
        {
            f.error(
                format!(
                    "{}: $.images[{i}]: no image goes into {:?}, and {} does not exist",
                    shown(dir, MANIFEST),
                    a.name,
                    shown(dir, &a.name)
                ),
                Some("put the docker save archive there, or remove it from images"),
            );
        }
    }
}

/// Every compose image must be bundled or provided; a `--provided` image no service uses is a
/// warning.
pub(super) fn check_bundled(
    opts: &PackOptions,
    compose: &ComposeIn,
    images: &[ImageReq],
    archives: &Archives,
    provided: &[String],
    f: &mut Problems,
) {
    for s in compose.services() {
        let Some(image) = s.image.as_ref().filter(|i| Reference::parse(i).is_ok()) else { continue };
        let bundled = images.iter().any(|r| same_image(&r.tag, image)) || archives.prebuilt_with(image).is_some();
        let excused = provided.iter().any(|p| same_image(p, image)) || (s.has_build && opts.image_archive.is_none());
        if !bundled && !excused && !archives.refused {
            let how = if opts.image_archive.is_some() { "--extra-image-tags" } else { "a prebuilt archive" };
            f.error(
                format!(
                    "{}: services.{}.image: {image} is not bundled: it is in neither {how} nor marked provided",
                    compose.label(),
                    s.name
                ),
                Some(&format!(
                    "bundle it (--extra-image-tags {image}), or if the robot already has it: --provided {image} or x-spxpack: {{provided: true}}"
                )),
            );
        }
    }
    for p in &opts.provided {
        if !compose.services().any(|s| s.image.as_deref().is_some_and(|i| same_image(i, p))) {
            f.warn(format!("--provided {p}: no service uses this image"), None);
        }
    }
}
