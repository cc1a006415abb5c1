//! `RUN --mount=type=bind`, the builder's side. The builder plans what a bind mount shows with
//! the COPY planner — the source path in the build context (`.dockerignore` applies), a named
//! context, an earlier stage or an image, symlinks resolved inside that root, and COPY's errors
//! for a source that is missing, excluded or leads outside — and the plan's hash (paths, types,
//! modes, owners, sizes, content hashes) joins the step's cache key. On a cache miss the
//! executor writes the plan into the step's private directory (`run/bind.rs`) and binds
//! that copy at the target.

use std::sync::Arc;

use super::StageResult;
use super::copy::{self, CopyRequest, Source};
use super::ctx::{Ctx, FromUse};
pub use super::executor::Bound;
use super::fsview::{FsView, Node, PathKey};
use super::instructions::Loc;
use super::layer::{self, LayerOptions};
use super::run_flags::{Mount, MountKind};
use super::tree::Tree;
use crate::error::Result;
use crate::platform::Platform;

/// The plan's entries live below this name; it is the mount's source.
pub(crate) const ROOT: &str = "m";

/// Plans the bind mounts among `mounts` (a RUN at `loc` in stage `index`).
pub(crate) fn plan(
    ctx: &Ctx,
    mounts: &[Mount],
    stages: &[Option<StageResult>],
    index: usize,
    platform: &Platform,
    loc: &Loc,
) -> Result<Vec<Bound>> {
    let mut out = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let MountKind::Bind { from, source, .. } = &m.kind else { continue };
        let tree: Arc<dyn Tree> = match from {
            None => ctx.context.clone(),
            Some(f) => ctx.copy_source(f, FromUse::Mount, loc, stages, index, platform)?,
        };
        let req = CopyRequest {
            name: "RUN --mount=type=bind",
            loc,
            sources: vec![Source::Path(source.clone())],
            dest: format!("/{ROOT}"),
            workdir: "/",
            owner: (0, 0),
            keep_owners: true,
            chmod: None,
            unpack: None,
            timeouts: ctx.timeouts(),
        };
        let mut plan = copy::plan(&req, &FsView::new(), tree.as_ref(), &ctx.staging)?;
        // a directory is mounted itself (the planner made a fresh 0755 destination for its
        // contents); the root of a tree stays that fresh directory, as the context's root does
        // in BuildKit
        let resolved = tree.resolve(&crate::dockerfile::fsview::normalize(source));
        if !resolved.path.is_empty()
            && let Some(n) = tree.node(&resolved.path)?.filter(Node::is_dir)
            && let Some(e) = plan.entries.get_mut(&PathKey(ROOT.into()))
        {
            e.node = n;
        }
        // mtimes are not part of the key (clamped to 0), as BuildKit's content hash
        let key = layer::key(&plan, &LayerOptions { epoch: 0, level: 0, threads: 1 });
        out.push(Bound { mount: i, plan, key });
    }
    Ok(out)
}
