//! Planning a build without the network, as named steps: read the manifest, choose the output,
//! check the manifest and the platform, find and check the compose file, decide which images
//! are bundled and which `images[]` archive each goes into ([`super::assign`]), collect the icon,
//! udev rules and additional files ([`super::files`]), write the manifest as packaged, list the
//! entries, and make sure no output overwrites an input. Every problem is collected and reported
//! at once, before anything is downloaded or written.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::assign::{self, manifest_lacks_images};
use super::files::{self, Assets, dedupe};
use super::model::{ArchiveKind, ArchivePlan, ComposeIn, ImageFrom, ImageReq, Plan, shown};
use super::options::PackOptions;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::problem::Problems;
use crate::progress::Reporter;
use crate::spx::compose;
use crate::spx::writer::{Body, Entry};
use crate::spx::{COMPOSE, COMPOSE_NAMES, MANIFEST, Target, assets, json, manifest};

/// A manifest as read: where it is and its object (`None` when it could not be parsed).
pub(super) struct ManifestIn {
    pub path: PathBuf,
    pub map: Option<Map<String, Value>>,
}

/// The SPX to write and the extension's name.
pub(super) struct Output {
    pub path: PathBuf,
    /// Its file name, and that without `.spx`.
    pub file: String,
    pub stem: String,
    /// The manifest's `extension_name`, else the output's stem.
    pub extension_name: String,
    /// The path that will be written ([`crate::atomic::output_target`]), when it is usable.
    pub target: Option<PathBuf>,
    /// The SDK `--image-archive` copy: its path and, when usable, the path that will be written.
    pub tee: Option<(PathBuf, Option<PathBuf>)>,
}

/// Validates a build; see the module docs.
pub fn plan(opts: &PackOptions, reporter: &dyn Reporter) -> Result<Plan> {
    check_dir(&opts.dir)?;
    let mut f = Problems::new();
    let mut m = read_manifest(&opts.dir, &mut f)?;
    let out = choose_output(opts, m.map.as_ref(), &mut f);
    if let Some(map) = &m.map {
        let label = shown(&opts.dir, MANIFEST);
        let rules = manifest::Rules { file: &label, spx_name: Some((&out.stem, &out.file)), packaged: false };
        manifest::check(map, &rules, &mut f);
    }
    let (target, platform) = choose_platform(opts, m.map.as_ref(), &mut f);
    let compose = check_compose(opts, target, &platform, &mut f);

    let sdk_builds = assign::sdk_builds(opts, &mut f);
    let mut wanted = assign::wanted_images(opts, m.map.as_ref(), &compose, &sdk_builds, &mut f);
    let archives = assign::plan_archives(opts, &wanted, &platform, &mut f, reporter);
    let (images, archives) = assign::assign_images(&mut wanted, archives, &out.extension_name, &mut f, reporter);
    if m.map.as_ref().is_some_and(manifest_lacks_images) && opts.image_archive.is_none() {
        wanted.added.extend(assign::images_key(&archives.archives));
    }
    assign::check_archives_used(&opts.dir, &archives.archives, wanted.uncertain, &mut f);
    assign::check_bundled(opts, &compose, &images, &archives, &wanted.provided, &mut f);

    let (assets, tree_files) = files::collect_assets(opts, m.map.as_ref(), &compose, &mut wanted.added, &mut f);
    let packaged = package_manifest(m.map.as_mut(), wanted.added, opts.epoch);
    let entries = list_entries(&opts.dir, packaged.bytes, &archives.archives, compose.path.as_ref(), assets);
    let entries = dedupe(entries, &mut f, reporter);
    let read = inputs(&m.path, compose.path.as_ref(), &tree_files, &entries, &images, &sdk_builds);
    check_overwrites(&out, &read, &mut f);

    f.finish(reporter)?;
    report_added(&packaged.added, opts.epoch, reporter);
    Ok(Plan {
        output: out.path,
        extension_name: out.extension_name,
        version: packaged.version,
        target,
        platform,
        manifest_added: packaged.added,
        images,
        archives: archives.archives,
        entries,
        tee: wanted.tee,
    })
}

fn check_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::not_found(format!("extension directory {} does not exist", dir.display()))
        .with_hint("pass the directory holding manifest.json and docker-compose.yml"))
}

/// Reads and parses `manifest.json`; a manifest that cannot be read at all (missing, refused,
/// a symlink out of the directory) ends the planning, a malformed one is a problem.
pub(super) fn read_manifest(dir: &Path, f: &mut Problems) -> Result<ManifestIn> {
    let path = dir.join(MANIFEST);
    if let Some((msg, hint)) = assets::symlink_escape(&path, dir, "the manifest") {
        return Err(Error::input(msg).with_hint(hint));
    }
    let map = match crate::input::read(&path, crate::input::MAX_TEXT) {
        Ok(bytes) => manifest::parse(&bytes, &shown(dir, MANIFEST), f),
        Err(e) if let Some(refused) = crate::input::refusal(&e) => return Err(refused),
        Err(e) => {
            let hint = format!("create one with: spxpack init {} --image IMAGE", dir.display());
            let msg = format!("{}: {}", path.display(), crate::error::io_text(&e));
            return Err(Error::input(msg).with_hint(hint));
        }
    };
    Ok(ManifestIn { path, map })
}

/// The SPX path (`--output`, else `<extension_name or directory name>.spx` in the current
/// directory) and the `--image-archive` copy, both checked as outputs before any download.
pub(super) fn choose_output(opts: &PackOptions, m: Option<&Map<String, Value>>, f: &mut Problems) -> Output {
    let dir_name = std::fs::canonicalize(&opts.dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "extension".into());
    let name_in_manifest = m.and_then(|m| manifest::get_str(m, "extension_name")).map(str::to_string);
    let path = match &opts.output {
        Some(o) => o.clone(),
        None => opts.cwd.join(format!("{}.spx", name_in_manifest.as_deref().unwrap_or(&dir_name))),
    };
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.strip_suffix(".spx").unwrap_or(&file).to_string();
    let extension_name = name_in_manifest.unwrap_or_else(|| stem.clone());
    let target = check_output(&path, "the output", f);
    let tee = opts.image_archive.as_ref().map(|ia| {
        let tee_path = opts.cwd.join(ia);
        let tee_target = check_output(&tee_path, "--image-archive", f);
        (tee_path, tee_target)
    });
    if let (Some(a), Some((tee_path, Some(b)))) = (&target, &tee)
        && same_path(a, b)
    {
        f.error(
            format!("the output {} and --image-archive {} are the same file", path.display(), tee_path.display()),
            Some("give the SPX and the image archive different names"),
        );
    }
    if !file.ends_with(".spx") {
        f.warn(format!("the output {file} does not end in .spx"), Some("the extension pages upload .spx files"));
    }
    Output { path, file, stem, extension_name, target, tee }
}

/// The target from `installation_target` and the platform to build for (`--platform`, else the
/// target's); a platform the target does not run is a warning.
pub(super) fn choose_platform(
    opts: &PackOptions,
    m: Option<&Map<String, Value>>,
    f: &mut Problems,
) -> (Target, Platform) {
    let target = m.and_then(manifest::target).unwrap_or(Target::Spot);
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
    (target, platform)
}

/// Finds the one compose file of the extension directory and checks it
/// (`--skip-docker-compose-validation` turns its errors into warnings).
pub(super) fn check_compose(opts: &PackOptions, target: Target, platform: &Platform, f: &mut Problems) -> ComposeIn {
    let dir = &opts.dir;
    let path = find_compose(dir, f);
    if let Some(p) = &path
        && let Some((msg, hint)) = assets::symlink_escape(p, dir, "the compose file")
    {
        f.error(msg, Some(&hint));
        return ComposeIn { path, compose: None };
    }
    let compose = path.as_ref().and_then(|p| match crate::input::read(p, crate::input::MAX_TEXT) {
        Ok(bytes) => {
            let mut cf = Problems::new();
            let label = p.display().to_string();
            let c = compose::check(&bytes, &compose::Rules { file: &label, target, platform }, &mut cf);
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
    });
    ComposeIn { path, compose }
}

/// The compose file: exactly one of [`COMPOSE_NAMES`].
fn find_compose(dir: &Path, f: &mut Problems) -> Option<PathBuf> {
    let found: Vec<&str> = COMPOSE_NAMES.iter().copied().filter(|n| crate::input::names_a_file(&dir.join(n))).collect();
    match found.as_slice() {
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
    }
}

/// The manifest as packaged.
pub(super) struct Packaged {
    pub bytes: Vec<u8>,
    /// The keys spxpack added, in order.
    pub added: Vec<String>,
    pub version: Option<String>,
}

/// Adds the keys the build decided on (`images`, `icon`, `udev_rules`) and the SDK script's
/// defaults (`installation_target`, `date`) where the manifest lacks them, keeping the user's
/// key order, and serialises it as Python's `json.dumps` does.
pub(super) fn package_manifest(
    m: Option<&mut Map<String, Value>>,
    added: Vec<(String, Value)>,
    epoch: u64,
) -> Packaged {
    let Some(m) = m else { return Packaged { bytes: Vec::new(), added: Vec::new(), version: None } };
    let defaults = [
        ("installation_target".to_string(), Value::from("spot")),
        ("date".to_string(), Value::from(manifest::date_from_epoch(epoch))),
    ];
    let mut keys = Vec::new();
    for (k, v) in added.into_iter().chain(defaults) {
        if manifest::set_default(m, &k, v) {
            keys.push(k);
        }
    }
    let version = manifest::get_str(m, "version").map(str::to_string);
    Packaged { bytes: json::python_dumps(&Value::Object(m.clone())).into_bytes(), added: keys, version }
}

/// The entries in the SDK script's order: manifest, image archives, compose file, icon,
/// additional files, udev rules.
pub(super) fn list_entries(
    dir: &Path,
    manifest_bytes: Vec<u8>,
    archives: &[ArchivePlan],
    compose_path: Option<&PathBuf>,
    assets: Assets,
) -> Vec<Entry> {
    let mut entries = vec![Entry {
        name: MANIFEST.into(),
        body: Body::Bytes(manifest_bytes),
        mode: 0o644,
        origin: shown(dir, MANIFEST),
    }];
    for (i, a) in archives.iter().enumerate() {
        let body = match &a.kind {
            ArchiveKind::Generated { .. } => Body::Archive { index: i, size: 0 },
            ArchiveKind::Prebuilt { path, size, .. } => Body::File { path: path.clone(), size: *size },
        };
        entries.push(Entry { name: a.name.clone(), body, mode: 0o644, origin: format!("image archive {}", a.name) });
    }
    if let Some(p) = compose_path {
        let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        entries.push(Entry {
            name: COMPOSE.into(),
            body: Body::File { path: p.clone(), size },
            mode: 0o644,
            origin: p.display().to_string(),
        });
    }
    entries.extend(assets.icon);
    entries.extend(assets.extra);
    entries.extend(assets.udev);
    entries
}

/// No output may overwrite what the build reads.
fn check_overwrites(out: &Output, read: &[crate::atomic::Input], f: &mut Problems) {
    let mut dests = vec![(&out.path, &out.target, "the output")];
    dests.extend(out.tee.as_ref().map(|(path, target)| (path, target, "--image-archive")));
    for (dest, target, what) in dests {
        if let Some(target) = target
            && let Err(e) = crate::atomic::refuse_inputs(dest, target, what, read)
        {
            f.error(e.message(), e.hint());
        }
    }
}

fn report_added(added: &[String], epoch: u64, reporter: &dyn Reporter) {
    if added.is_empty() {
        return;
    }
    let note = if added.iter().any(|k| k == "date") && epoch == 0 {
        " (date 1970-01-01T00:00:00: set SOURCE_DATE_EPOCH, e.g. to the last commit's time, to record a real one)"
    } else {
        ""
    };
    reporter.message(&format!("{MANIFEST}: added {}{note}", added.join(", ")));
}

/// The output policy of [`crate::atomic::output_target`] (its directory exists, it is not a
/// directory, device or FIFO), checked before any download; the path that will be written.
fn check_output(path: &Path, what: &str, f: &mut Problems) -> Option<PathBuf> {
    match crate::atomic::output_target(path, what) {
        Ok(t) => Some(t),
        Err(e) => {
            f.error(e.message(), e.hint());
            None
        }
    }
}

/// Whether two output paths name the same file (their directories compared canonically).
fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::canonicalize(dir).ok().map(|d| d.join(p.file_name().unwrap_or_default()))
    };
    canon(a).is_some() && canon(a) == canon(b)
}

/// Everything the build reads from disk, for [`crate::atomic::refuse_inputs`]. The SDK's `-f`
/// Dockerfiles are inputs, but their directory (the build context, usually the package
/// directory) is not treated as read whole: writing the SPX and the `-i` archive there is the
/// SDK script's documented habit.
fn inputs(
    manifest_path: &Path,
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
            let shown = Path::new(&e.origin);
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
