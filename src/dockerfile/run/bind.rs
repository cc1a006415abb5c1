//! Host side of `RUN --mount=type=bind`: writes what the builder planned
//! ([`crate::dockerfile::bind_plan`]) into the step's private directory (files of other layers
//! extracted by [`Staging`]) and returns the copy to bind at the target: read-only by default;
//! with `rw` writable, and the writes are discarded with the copy after the step (BuildKit).
//! Nothing of it reaches a layer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::dockerfile::bind_plan::{Bound, ROOT};
use crate::dockerfile::copy::PlanEntry;
use crate::dockerfile::fsview::{ContentSrc, Kind, Node};
use crate::dockerfile::layer;
use crate::dockerfile::layer_reader::{BlobLookup, Staging};
use crate::error::{Error, Result};

/// Writes a planned bind mount into `dir` (created here) and returns the path to bind. Owners
/// are set only when `real_owners` (root); otherwise the files are the caller's, which the
/// step sees as root.
pub fn materialise(
    b: &Bound,
    staging: &Staging,
    source_of: BlobLookup,
    dir: &Path,
    real_owners: bool,
) -> Result<PathBuf> {
    layer::stage_contents(&b.plan, staging, source_of)?;
    std::fs::create_dir(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let mut dirs = Vec::new();
    for (k, e) in &b.plan.entries {
        let host = dir.join(&k.0);
        if write_entry(&host, e, dir, staging)? {
            if e.node.is_dir() {
                dirs.push((host, &e.node));
            } else {
                finish(&host, &e.node, real_owners)?;
            }
        }
    }
    // directories last, deepest first: their modes may forbid writing into them
    for (host, n) in dirs.iter().rev() {
        finish(host, n, real_owners)?;
    }
    Ok(dir.join(ROOT))
}

/// Creates one entry; false when there is nothing more to set on it (a hard link, or an entry
/// that cannot be mounted).
fn write_entry(host: &Path, e: &PlanEntry, dir: &Path, staging: &Staging) -> Result<bool> {
    let made = |r: std::io::Result<()>| r.map_err(|x| Error::io("cannot create", host, x));
    if let Some(first) = &e.hardlink {
        made(std::fs::hard_link(dir.join(first), host))?;
        return Ok(false);
    }
    match &e.node.kind {
        Kind::Dir => made(std::fs::create_dir(host))?,
        Kind::Symlink(t) => made(std::os::unix::fs::symlink(t, host))?,
        Kind::File(c) => {
            let from = match &c.src {
                ContentSrc::Inline(b) => return made(std::fs::write(host, b.as_slice())).map(|()| true),
                ContentSrc::Local(p) => p.as_ref().clone(),
                ContentSrc::Layer { blob, path, .. } => {
                    staging.get(blob, path).ok_or_else(|| Error::internal(format!("{path} was not staged")))?
                }
            };
            std::fs::copy(&from, host).map_err(|x| Error::io("cannot copy", &from, x))?;
        }
        Kind::Other(..) => {
            tracing::info!("{}: devices and FIFOs are not bind-mounted", host.display());
            return Ok(false);
        }
    }
    Ok(true)
}

/// Owner (root only), mode and mtime of a written entry.
fn finish(host: &Path, n: &Node, real_owners: bool) -> Result<()> {
    use rustix::fs::{AtFlags, Gid, Timespec, Timestamps, Uid};
    if real_owners {
        // before the mode: a chown clears setuid/setgid bits
        let (uid, gid) = (Uid::from_raw(n.uid as u32), Gid::from_raw(n.gid as u32));
        rustix::fs::chownat(rustix::fs::CWD, host, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io("cannot chown", host, e.into()))?;
    }
    if !matches!(n.kind, Kind::Symlink(_)) {
        std::fs::set_permissions(host, std::fs::Permissions::from_mode(n.mode & 0o7777))
            .map_err(|e| Error::io("cannot chmod", host, e))?;
    }
    let t = Timespec { tv_sec: n.mtime as i64, tv_nsec: 0 };
    let times = Timestamps { last_access: t, last_modification: t };
    rustix::fs::utimensat(rustix::fs::CWD, host, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("cannot set the mtime of", host, e.into()))
}
