//! Planning a build without the network: the manifest rules, the compose checks, which image goes
//! into which `images[]` archive (from the compose services, or from the SDK script's
//! `--extra-image-tags`/`--build-image-tags` with `--image-archive`), prebuilt archives found in
//! the extension directory, icon/udev/additional files, and the final entry list. Every problem
//! is collected and reported at once, before anything is downloaded or written.

use std::path::PathBuf;

use serde_json::Value;

use super::PackOptions;
use super::files::{asset, dedupe};
use super::images::{build_req, pick_archive, prebuilt, registry_req, source_req};
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::problem::Problems;
use crate::progress::Reporter;
use crate::reference::Reference;
use crate::source::Source;
use crate::spx::compose::{self, Compose, same_image};
use crate::spx::image_check::ArchiveInfo;
use crate::spx::writer::{Body, Entry};
use crate::spx::{COMPOSE, COMPOSE_NAMES, MANIFEST, Target, assets, json, manifest};

/// One image to bundle.
#[derive(Debug, Clone)]
pub struct ImageReq {
    /// The `RepoTags` entry (the compose `image:` string, with `:latest` when it has no tag).
    pub tag: String,
    pub from: ImageFrom,
    /// For messages: what the user wrote and where it is pulled from.
    pub shown: String,
    /// Index into [`Plan::archives`].
    pub archive: usize,
}

/// Where a bundled image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFrom {
    /// Pulled or read: a registry reference, an OCI layout, an archive.
    Source(Source),
    /// Built from a Dockerfile by spxpack's builder.
    Build(DockerBuild),
}

/// A Dockerfile build: compose `build:` or the SDK script's `-f/-t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerBuild {
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub args: Vec<(String, String)>,
    pub target: Option<String>,
}

/// An `images[]` archive.
#[derive(Debug, Clone)]
pub enum ArchiveKind {
    /// Written by spxpack from these [`Plan::images`].
    Generated { reqs: Vec<usize> },
    /// Taken byte for byte from the extension directory.
    Prebuilt { path: PathBuf, size: u64, info: ArchiveInfo },
}

#[derive(Debug, Clone)]
pub struct ArchivePlan {
    pub name: String,
    pub kind: ArchiveKind,
}

/// A validated build.
#[derive(Debug, Clone)]
pub struct Plan {
    pub output: PathBuf,
    pub extension_name: String,
    pub version: Option<String>,
    pub target: Target,
    pub platform: Platform,
    pub manifest_added: Vec<String>,
    pub images: Vec<ImageReq>,
    pub archives: Vec<ArchivePlan>,
    /// Final entries; generated archives have `size: 0` until emit plans them.
    pub entries: Vec<Entry>,
    /// SDK `--image-archive`: also write archive `.0` to path `.1`.
    pub tee: Option<(usize, PathBuf)>,
}

pub fn plan(opts: &PackOptions, reporter: &dyn Reporter) -> Result<Plan> {
    let dir = &opts.dir;
    if !dir.is_dir() {
        return Err(Error::not_found(format!("extension directory {} does not exist", dir.display()))
            .with_hint("pass the directory holding manifest.json and docker-compose.yml"));
    }
    let mut f = Problems::new();
    let shown_dir = |name: &str| dir.join(name).display().to_string();

    // manifest.json
    let manifest_path = dir.join(MANIFEST);
    if let Some((msg, hint)) = assets::symlink_escape(&manifest_path, dir, "the manifest") {
        return Err(Error::input(msg).with_hint(hint));
    }
    let mut m = match crate::input::read(&manifest_path, crate::input::MAX_TEXT) {
        Ok(bytes) => manifest::parse(&bytes, &shown_dir(MANIFEST), &mut f),
        Err(e) if let Some(refused) = crate::input::refusal(&e) => return Err(refused),
        Err(e) => {
            let hint = format!("create one with: spxpack init {} --image IMAGE", dir.display());
            return Err(
                Error::input(format!("{}: {}", manifest_path.display(), crate::error::io_text(&e))).with_hint(hint)
            );
        }
    };
    // output and extension name
    let dir_name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "extension".into());
    let name_in_manifest = m.as_ref().and_then(|m| manifest::get_str(m, "extension_name")).map(str::to_string);
    let output = match &opts.output {
        Some(o) => o.clone(),
        None => opts.cwd.join(format!("{}.spx", name_in_manifest.as_deref().unwrap_or(&dir_name))),
    };
    let out_file = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let out_stem = out_file.strip_suffix(".spx").unwrap_or(&out_file).to_string();
    let extension_name = name_in_manifest.clone().unwrap_or_else(|| out_stem.clone());
    let out_target = check_output(&output, "the output", &mut f);
    let tee_target =
        opts.image_archive.as_ref().and_then(|ia| check_output(&opts.cwd.join(ia), "--image-archive", &mut f));
    if let (Some(a), Some(b)) = (&out_target, &tee_target)
        && same_path(a, b)
    {
        f.error(
            format!(
                "the output {} and --image-archive {} are the same file",
                output.display(),
                opts.cwd.join(opts.image_archive.as_deref().unwrap_or(b)).display()
            ),
            Some("give the SPX and the image archive different names"),
        );
    }
    if !out_file.ends_with(".spx") {
        f.warn(format!("the output {out_file} does not end in .spx"), Some("the extension pages upload .spx files"));
    }
    if let Some(m) = &m {
        let rules =
            manifest::Rules { file: &shown_dir(MANIFEST), spx_name: Some((&out_stem, &out_file)), packaged: false };
        manifest::check(m, &rules, &mut f);
    }
    let target = m.as_ref().and_then(manifest::target).unwrap_or(Target::Spot);
    let platform = opts.platform.clone().unwrap_or_else(|| target.platform());
    if !platform.satisfies(&target.platform()) {
        f.warn(
            format!(
                "building for {} but installation_target is {:?}, which runs {}",
                platform.normalized(),
                target.as_str(),
                target.machine()
            ),
            Some(if target == Target::Spot {
                "Orbit extensions must set \"installation_target\": \"orbit\""
            } else {
                "drop --platform/--amd64"
            }),
        );
    }

    // the compose file
    let found: Vec<&str> = COMPOSE_NAMES.iter().copied().filter(|n| crate::input::names_a_file(&dir.join(n))).collect();
    let compose_path = match found.as_slice() {
        [one] => Some(dir.join(one)),
        [] => {
            f.error(
                format!("{}: no docker-compose.yml (or compose.yaml)", dir.display()),
                Some("an extension needs a compose file; spxpack init writes one"),
            );
            None
        }
        many => {
            f.error(
                format!(
                    "{}: several compose files ({}); it is ambiguous which one to package",
                    dir.display(),
                    many.join(", ")
                ),
                Some("keep one; it is packaged as docker-compose.yml"),
            );
            None
        }
    };
    if let Some(p) = &compose_path
        && let Some((msg, hint)) = assets::symlink_escape(p, dir, "the compose file")
    {
        f.error(msg, Some(&hint));
    }
    let compose: Option<Compose> = compose_path.as_ref().and_then(|p| {
        if assets::symlink_escape(p, dir, "").is_some() {
            return None;
        }
        match crate::input::read(p, crate::input::MAX_TEXT) {
            Ok(bytes) => {
                let mut cf = Problems::new();
                let label = p.display().to_string();
                let c = compose::check(&bytes, &compose::Rules { file: &label, target, platform: &platform }, &mut cf);
                f.extend(if opts.skip_compose_validation { cf.downgraded() } else { cf });
                c
            }
            Err(e) => {
                match crate::input::refusal(&e) {
                    Some(refused) => f.error(refused.message().to_string(), refused.hint()),
                    None => f.error(format!("{}: {}", p.display(), crate::error::io_text(&e)), None),
                }
                None
            }
        }
    });

    // the SDK script's Dockerfile builds: -f DOCKERFILE… -t TAG…, context = the Dockerfile's directory
    let mut dockerfile_reqs: Vec<ImageReq> = Vec::new();
    if opts.build_tags.len() == opts.dockerfiles.len() {
        for (df, tag) in opts.dockerfiles.iter().zip(&opts.build_tags) {
            let dockerfile = opts.cwd.join(df);
            let context = dockerfile.parent().map(std::path::Path::to_path_buf).unwrap_or_else(|| opts.cwd.clone());
            let b = DockerBuild { dockerfile, context, args: Vec::new(), target: None };
            if let Some(r) =
                build_req(tag, b, &format!("--dockerfile-paths {} (--build-image-tags {tag})", df.display()), &mut f)
            {
                dockerfile_reqs.push(r);
            }
        }
    }
    if opts.build_tags.len() != opts.dockerfiles.len() {
        f.error(
            format!(
                "--build-image-tags has {} tags for {} --dockerfile-paths",
                opts.build_tags.len(),
                opts.dockerfiles.len()
            ),
            Some("give one tag per Dockerfile"),
        );
    }

    // which images are bundled, and where
    let mut images_list: Option<Vec<String>> = m.as_ref().and_then(|m| match m.get("images") {
        None | Some(Value::Null) => None,
        Some(_) => Some(manifest::images(m)),
    });
    let mut added: Vec<(String, Value)> = Vec::new();
    let mut tee = None;
    let mut reqs: Vec<(ImageReq, Option<String>)> = Vec::new(); // (req, x-spxpack.archive)
    let mut provided: Vec<String> = opts.provided.clone();
    // when an image could not be planned, "no image goes into X" would only repeat that problem
    let mut uncertain = opts.image_archive.is_none() && compose.is_none();
    if let Some(ia) = &opts.image_archive {
        let name = ia.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let lower = name.to_ascii_lowercase();
        if !(lower.ends_with(".tar") || lower.ends_with(".gz") || lower.ends_with(".tgz")) {
            f.error(format!("--image-archive {}: must end in .tar, .tar.gz or .tgz", ia.display()), None);
        }
        match &mut images_list {
            Some(list) if !list.contains(&name) => f.error(
                format!("{}: $.images does not list {name:?}, the --image-archive", shown_dir(MANIFEST)),
                Some("add it to images, or pass the --image-archive named there"),
            ),
            Some(_) => {}
            None => {
                images_list = Some(vec![name.clone()]);
                added.push(("images".into(), Value::from(vec![name.clone()])));
            }
        }
        let idx = images_list.as_ref().and_then(|l| l.iter().position(|n| *n == name)).unwrap_or(0);
        tee = Some((idx, opts.cwd.join(ia)));
        for r in &dockerfile_reqs {
            reqs.push((r.clone(), Some(name.clone())));
        }
        for t in &opts.extra_images {
            if let Some(r) = registry_req(t, opts, "--extra-image-tags", &mut f) {
                reqs.push((r, Some(name.clone())));
            }
        }
        if opts.extra_images.is_empty() && opts.build_tags.is_empty() {
            f.error(
                format!("--image-archive {name}: no image to put in it"),
                Some("name the images with --extra-image-tags (or drop --image-archive to take them from the compose file)"),
            );
        }
    } else {
        for r in &dockerfile_reqs {
            reqs.push((r.clone(), None));
        }
        for t in &opts.extra_images {
            if let Some(r) = registry_req(t, opts, "--extra-image-tags", &mut f) {
                reqs.push((r, None));
            }
        }
        for s in compose.iter().flat_map(|c| &c.services) {
            let Some(image) = &s.image else {
                uncertain = true;
                if s.has_build && !s.provided {
                    f.error(
                        format!(
                            "{}: services.{}: build: needs an image: NAME:TAG to save the built image under",
                            compose_label(&compose_path),
                            s.name
                        ),
                        Some("the robot runs the service by that name; add e.g. image: my_service:1.0"),
                    );
                }
                continue;
            };
            if s.provided || provided.iter().any(|p| same_image(p, image)) {
                continue;
            }
            if dockerfile_reqs.iter().any(|r| same_image(&r.tag, image)) {
                continue; // built from -f/-t
            }
            if s.has_build && s.source.is_none() {
                let label = compose_label(&compose_path);
                let what = format!("{label}: services.{}.build", s.name);
                let Some(b) = &s.build else {
                    uncertain = true;
                    f.error(format!("{what}: must be a directory or a map with context"), None);
                    continue;
                };
                let context = if b.context == "." { dir.clone() } else { dir.join(&b.context) };
                let dockerfile = context.join(b.dockerfile.as_deref().unwrap_or("Dockerfile"));
                let mut args = Vec::new();
                for (k, v) in &b.args {
                    // unset in the environment: the Dockerfile's default applies, as in compose
                    if let Some(v) = v.clone().or_else(|| std::env::var(k).ok()) {
                        args.push((k.clone(), v));
                    }
                }
                let spec = DockerBuild { dockerfile, context, args, target: b.target.clone() };
                match build_req(image, spec, &what, &mut f) {
                    Some(r) => reqs.push((r, s.archive.clone())),
                    None => uncertain = true,
                }
                continue;
            }
            if Reference::parse(image).is_err() {
                uncertain = true;
                continue; // reported by the compose checks
            }
            let req = match &s.source {
                Some(src) => source_req(src, image, opts, &s.name, &compose_label(&compose_path), &mut f),
                None => registry_req(image, opts, &format!("services.{}.image", s.name), &mut f),
            };
            match req {
                Some(r) => reqs.push((r, s.archive.clone())),
                None => uncertain = true,
            }
        }
    }
    provided.extend(compose.iter().flat_map(|c| &c.services).filter(|s| s.provided).filter_map(|s| s.image.clone()));

    // the archives: prebuilt ones in the directory, the rest written by spxpack
    let drop_in_name = tee.as_ref().and_then(|(i, _)| images_list.as_ref().and_then(|l| l.get(*i)).cloned());
    let mut archives: Vec<ArchivePlan> = Vec::new();
    let mut refused_archive = false;
    for n in images_list.iter().flatten() {
        if n.is_empty() || n.contains('/') || n.contains('\\') || n == "." || n == ".." {
            continue; // reported by the manifest rules
        }
        let path = dir.join(n);
        let kind = if Some(n) != drop_in_name.as_ref() && path.is_file() {
            match assets::symlink_escape(&path, dir, "image archive") {
                Some((msg, hint)) => {
                    // not read: its images count as bundled, so nothing else is reported about it
                    f.error(msg, Some(&hint));
                    refused_archive = true;
                    let info = ArchiveInfo { compression: "none", images: vec![], layers_verified: false };
                    ArchiveKind::Prebuilt { path: path.clone(), size: 0, info }
                }
                None => prebuilt(&path, n, opts, &platform, &mut f, reporter),
            }
        } else {
            ArchiveKind::Generated { reqs: vec![] }
        };
        archives.push(ArchivePlan { name: n.clone(), kind });
    }
    let mut images: Vec<ImageReq> = Vec::new();
    for (mut req, wanted) in reqs {
        if let Some(prev) = images.iter().find(|x| same_image(&x.tag, &req.tag)) {
            if prev.from != req.from {
                f.error(format!("{} comes from two sources: {} and {}", req.tag, prev.shown, req.shown), None);
            }
            continue;
        }
        if let Some(a) = archives.iter().find(|a| match &a.kind {
            ArchiveKind::Prebuilt { info, .. } => info.tags().any(|t| same_image(t, &req.tag)),
            _ => false,
        }) {
            reporter.message(&format!("{} is in the prebuilt archive {}", req.tag, a.name));
            continue;
        }
        if refused_archive {
            continue; // which archive it goes into depends on the refused one
        }
        let Some(idx) = pick_archive(&req, wanted.as_deref(), &mut archives, &mut images_list, &extension_name, &mut f)
        else {
            uncertain = true;
            continue;
        };
        req.archive = idx;
        if let ArchiveKind::Generated { reqs } = &mut archives[idx].kind {
            reqs.push(images.len());
        }
        images.push(req);
    }
    if m.as_ref().is_some_and(|m| !m.contains_key("images") || m["images"].is_null())
        && !archives.is_empty()
        && opts.image_archive.is_none()
    {
        added.push(("images".into(), Value::from(archives.iter().map(|a| a.name.clone()).collect::<Vec<_>>())));
    }
    for (i, a) in archives.iter().enumerate() {
        if let ArchiveKind::Generated { reqs } = &a.kind
            && reqs.is_empty()
            && !uncertain
        {
            f.error(
                format!(
                    "{}: $.images[{i}]: no image goes into {:?}, and {} does not exist",
                    shown_dir(MANIFEST),
                    a.name,
                    shown_dir(&a.name)
                ),
                Some("put the docker save archive there, or remove it from images"),
            );
        }
    }
    // every compose image must be bundled or provided
    for s in compose.iter().flat_map(|c| &c.services) {
        let Some(image) = s.image.as_ref().filter(|i| Reference::parse(i).is_ok()) else { continue };
        let bundled = images.iter().any(|r| same_image(&r.tag, image))
            || archives.iter().any(|a| match &a.kind {
                ArchiveKind::Prebuilt { info, .. } => info.tags().any(|t| same_image(t, image)),
                _ => false,
            });
        let excused = provided.iter().any(|p| same_image(p, image)) || (s.has_build && opts.image_archive.is_none());
        if !bundled && !excused && !refused_archive {
            let how = if opts.image_archive.is_some() { "--extra-image-tags" } else { "a prebuilt archive" };
            f.error(
                format!(
                    "{}: services.{}.image: {image} is not bundled: it is in neither {how} nor marked provided",
                    compose_label(&compose_path),
                    s.name
                ),
                Some(&format!(
                    "bundle it (--extra-image-tags {image}), or if the robot already has it: --provided {image} or x-spxpack: {{provided: true}}"
                )),
            );
        }
    }
    for p in &opts.provided {
        if !compose.iter().flat_map(|c| &c.services).any(|s| s.image.as_deref().is_some_and(|i| same_image(i, p))) {
            f.warn(format!("--provided {p}: no service uses this image"), None);
        }
    }

    // icon, udev rules, additional files
    let mut extra: Vec<Entry> = Vec::new();
    let mut icon_entries = Vec::new();
    let mut udev_entries = Vec::new();
    if let Some(m) = m.as_mut() {
        asset(opts.icon.as_deref(), "icon", "icon.png", m, dir, &opts.cwd, &mut icon_entries, &mut added, &mut f);
        asset(
            opts.udev_rule.as_deref(),
            "udev_rules",
            "udev_rule.rule",
            m,
            dir,
            &opts.cwd,
            &mut udev_entries,
            &mut added,
            &mut f,
        );
    }
    if let Some(Entry { body: Body::File { path, size }, name, .. }) = icon_entries.first() {
        let head = assets::read_head(path, 64).unwrap_or_default();
        assets::check_icon(&format!("icon {name}"), &head, *size, &mut f);
    }
    let mut tree_files: Vec<PathBuf> = Vec::new();
    for a in &opts.additional_files {
        if dir.join(a).is_dir() {
            tree_files.push(dir.join(a));
        }
        let Some(base) = a.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            f.error(format!("--additional-files {}: names no file", a.display()), None);
            continue;
        };
        assets::add_path(&mut extra, &dir.join(a), &base, dir, true, "additional file", &mut f);
    }
    for p in compose.iter().flat_map(|c| &c.additional_files) {
        match manifest::check_member_path(p) {
            Err(why) => f.error(
                format!("{}: x-spxpack.additional_files: {p:?} {why}", compose_label(&compose_path)),
                Some("list paths inside the extension directory"),
            ),
            Ok(()) => {
                if dir.join(p).is_dir() {
                    tree_files.push(dir.join(p));
                }
                let name = crate::tar_index::normalize(p).ok().flatten().unwrap_or_else(|| p.clone());
                assets::add_path(&mut extra, &dir.join(p), &name, dir, true, "additional file", &mut f);
            }
        }
    }
    extra.sort_by(|a, b| a.name.cmp(&b.name));

    // the manifest as packaged
    let mut manifest_added = Vec::new();
    let mut manifest_bytes = Vec::new();
    let mut version = None;
    if let Some(m) = m.as_mut() {
        for (k, v) in added {
            if manifest::set_default(m, &k, v) {
                manifest_added.push(k);
            }
        }
        if manifest::set_default(m, "installation_target", "spot".into()) {
            manifest_added.push("installation_target".into());
        }
        if manifest::set_default(m, "date", manifest::date_from_epoch(opts.epoch).into()) {
            manifest_added.push("date".into());
        }
        version = manifest::get_str(m, "version").map(str::to_string);
        manifest_bytes = json::python_dumps(&Value::Object(m.clone())).into_bytes();
    }

    // the entries, in the SDK script's order
    let mut entries = vec![Entry {
        name: MANIFEST.into(),
        body: Body::Bytes(manifest_bytes),
        mode: 0o644,
        origin: shown_dir(MANIFEST),
    }];
    for (i, a) in archives.iter().enumerate() {
        let body = match &a.kind {
            ArchiveKind::Generated { .. } => Body::Archive { index: i, size: 0 },
            ArchiveKind::Prebuilt { path, size, .. } => Body::File { path: path.clone(), size: *size },
        };
        entries.push(Entry { name: a.name.clone(), body, mode: 0o644, origin: format!("image archive {}", a.name) });
    }
    if let Some(p) = &compose_path {
        let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        entries.push(Entry {
            name: COMPOSE.into(),
            body: Body::File { path: p.clone(), size },
            mode: 0o644,
            origin: p.display().to_string(),
        });
    }
    entries.extend(icon_entries);
    entries.extend(extra);
    entries.extend(udev_entries);
    let entries = dedupe(entries, &mut f, reporter);

    // no output may overwrite what the build reads
    let read = inputs(&manifest_path, compose_path.as_ref(), &tree_files, &entries, &images, &dockerfile_reqs);
    for (dest, target, what) in [
        (Some(output.clone()), out_target, "the output"),
        (opts.image_archive.as_ref().map(|ia| opts.cwd.join(ia)), tee_target, "--image-archive"),
    ] {
        if let (Some(dest), Some(target)) = (dest, target)
            && let Err(e) = crate::atomic::refuse_inputs(&dest, &target, what, &read)
        {
            f.error(e.message(), e.hint());
        }
    }

    f.finish(reporter)?;
    if !manifest_added.is_empty() {
        let note = if manifest_added.iter().any(|k| k == "date") && opts.epoch == 0 {
            " (date 1970-01-01T00:00:00: set SOURCE_DATE_EPOCH, e.g. to the last commit's time, to record a real one)"
        } else {
            ""
        };
        reporter.message(&format!("{MANIFEST}: added {}{note}", manifest_added.join(", ")));
    }
    Ok(Plan { output, extension_name, version, target, platform, manifest_added, images, archives, entries, tee })
}

fn compose_label(p: &Option<PathBuf>) -> String {
    p.as_ref().map_or_else(|| COMPOSE.to_string(), |p| p.display().to_string())
}

/// The output policy of [`crate::atomic::output_target`] (its directory exists, it is not a
/// directory, device or FIFO), checked before any download; the path that will be written.
fn check_output(path: &std::path::Path, what: &str, f: &mut Problems) -> Option<PathBuf> {
    match crate::atomic::output_target(path, what) {
        Ok(t) => Some(t),
        Err(e) => {
            f.error(e.message(), e.hint());
            None
        }
    }
}

/// Whether two output paths name the same file (their directories compared canonically).
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    let canon = |p: &std::path::Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        std::fs::canonicalize(dir).ok().map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    canon(a).is_some() && canon(a) == canon(b)
}

/// Everything the build reads from disk, for [`crate::atomic::refuse_inputs`]. The SDK's `-f`
/// Dockerfiles are inputs, but their directory (the build context, usually the package
/// directory) is not treated as read whole: writing the SPX and the `-i` archive there is the
/// SDK script's documented habit.
fn inputs(
    manifest_path: &std::path::Path,
    compose_path: Option<&PathBuf>,
    tree_files: &[PathBuf],
    entries: &[Entry],
    images: &[ImageReq],
    sdk_builds: &[ImageReq],
) -> Vec<crate::atomic::Input> {
    use crate::atomic::{Input, InputKind};
    let mut v = vec![Input::file("the manifest", manifest_path)];
    v.extend(compose_path.map(|p| Input::file("the compose file", p)));
    for e in entries {
        if let Body::File { path, .. } = &e.body {
            // named as the user gave it when that is a path
            let shown = std::path::Path::new(&e.origin);
            v.push(Input::file("the packaged file", if shown.exists() { shown } else { path }));
        }
    }
    v.extend(tree_files.iter().map(|p| Input::tree("the additional files directory", p)));
    for r in images {
        match &r.from {
            ImageFrom::Source(s) => v.extend(Input::of_source(s, "the image source")),
            ImageFrom::Build(b) => {
                let sdk = sdk_builds.iter().any(|x| x.from == r.from);
                let opts = crate::dockerfile::BuildOptions::new(&b.dockerfile, &b.context);
                v.extend(
                    crate::dockerfile::inputs(&opts)
                        .into_iter()
                        .filter(|i| !(sdk && matches!(i.kind, InputKind::Context(_)))),
                );
            }
        }
    }
    v
}
