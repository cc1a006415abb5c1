//! The checks across an SPX's members once it was read: the manifest rules, `icon`,
//! `udev_rules` and `images` against the entries, the compose file and where each service's
//! image comes from.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::report::{NamedArchive, ServiceInfo, SpxReport, Top, VerifyOptions};
use crate::platform::Platform;
use crate::problem::Problems;
use crate::spx::compose::{self, Compose};
use crate::spx::{COMPOSE, COMPOSE_NAMES, MANIFEST, Target, assets, manifest};

/// Checks the manifest `m` (read from the SPX `file`) and everything it names; fills the
/// report's name, target, platform, archives and services.
pub(super) fn cross_check(
    report: &mut SpxReport,
    tops: &BTreeMap<String, Top>,
    m: Option<&Map<String, Value>>,
    stem: &str,
    file: &str,
    opts: &VerifyOptions,
    findings: &mut Problems,
) {
    let Some(m) = m else {
        if !tops.contains_key(MANIFEST) {
            findings.error(format!("{file}: no {MANIFEST} at the root"), Some("every SPX needs one"));
        }
        return;
    };
    let shown = file.to_string();
    manifest::check(
        m,
        &manifest::Rules { file: &format!("{file}: {MANIFEST}"), spx_name: Some((stem, &shown)), packaged: true },
        findings,
    );
    report.extension_name = Some(manifest::get_str(m, "extension_name").unwrap_or(stem).to_string());
    let target = manifest::target(m);
    report.target = target;
    let platform = opts.platform.clone().unwrap_or_else(|| target.unwrap_or(Target::Spot).platform());
    report.platform = platform.normalized().to_string();
    check_named_files(m, tops, file, findings);
    report.archives = check_archives(m, tops, file, findings);
    if let Some(c) = check_compose(tops, file, target.unwrap_or(Target::Spot), &platform, findings) {
        report.services = service_statuses(&c, &report.archives, file, findings);
    }
}

/// `icon` and `udev_rules` must be packaged; the icon is checked.
fn check_named_files(m: &Map<String, Value>, tops: &BTreeMap<String, Top>, file: &str, findings: &mut Problems) {
    for key in ["icon", "udev_rules"] {
        let Some(n) = manifest::get_str(m, key) else { continue };
        match tops.get(n) {
            Some(t) if t.kind == "file" => {
                if key == "icon" {
                    assets::check_icon(&format!("{file}: {n}"), &t.head, t.size, findings);
                }
            }
            _ => findings.error(
                format!("{file}: {MANIFEST}: $.{key}: {n:?} is not in the SPX"),
                Some("the file named in the manifest must be packaged"),
            ),
        }
    }
}

/// Every archive in `images` must be packaged; an archive it does not list is a warning.
/// Returns the archives that could be read, in `images` order.
fn check_archives(
    m: &Map<String, Value>,
    tops: &BTreeMap<String, Top>,
    file: &str,
    findings: &mut Problems,
) -> Vec<NamedArchive> {
    let images = manifest::images(m);
    let mut archives = Vec::new();
    for (i, n) in images.iter().enumerate() {
        match tops.get(n) {
            Some(t) if t.kind == "file" => {
                if let Some(info) = &t.archive {
                    archives.push(NamedArchive { name: n.clone(), size: t.size, info: info.clone() });
                }
            }
            _ => findings.error(
                format!("{file}: {MANIFEST}: $.images[{i}]: {n:?} is not in the SPX"),
                Some("every archive named in images must be packaged"),
            ),
        }
    }
    for (n, t) in tops {
        if t.archive.is_some() && !images.contains(n) {
            findings.warn(
                format!("{file}: {n} looks like an image archive but {MANIFEST} images does not list it"),
                Some("the robot loads only the archives listed in images"),
            );
        }
    }
    archives
}

/// The compose file, which must be `docker-compose.yml` at the root, checked.
fn check_compose(
    tops: &BTreeMap<String, Top>,
    file: &str,
    target: Target,
    platform: &Platform,
    findings: &mut Problems,
) -> Option<Compose> {
    let Some(data) = tops.get(COMPOSE).and_then(|t| t.data.as_ref()) else {
        let other = COMPOSE_NAMES.iter().find(|n| tops.contains_key(**n));
        let hint = match other {
            Some(o) => format!("rename {o} to {COMPOSE}; the robot reads no other name"),
            None => "every SPX needs one".into(),
        };
        findings.error(format!("{file}: no {COMPOSE} at the root"), Some(&hint));
        return None;
    };
    let rules = compose::Rules { file: &format!("{file}: {COMPOSE}"), target, platform };
    compose::check(data, &rules, findings)
}

/// Where each service's image comes from; an image in no archive and not provided is pulled by
/// the robot (a warning).
fn service_statuses(c: &Compose, archives: &[NamedArchive], file: &str, findings: &mut Problems) -> Vec<ServiceInfo> {
    let mut out = Vec::new();
    for s in &c.services {
        let Some(img) = &s.image else { continue };
        let holder = archives.iter().find(|a| a.info.tags().any(|t| compose::same_image(t, img)));
        let status = match holder {
            Some(a) => format!("bundled in {}", a.name),
            None if s.provided => "provided on the robot".to_string(),
            None => {
                let registry = crate::reference::Reference::parse(img).map(|r| r.registry).unwrap_or_default();
                findings.warn(
                    format!(
                        "{file}: {COMPOSE}: services.{}.image: {img} is in no image archive; the robot will try to pull it from {registry}",
                        s.name
                    ),
                    Some("bundle it, or make sure the robot can reach that registry"),
                );
                "pulled by the robot".to_string()
            }
        };
        out.push(ServiceInfo { name: s.name.clone(), image: Some(img.clone()), status });
    }
    out
}
