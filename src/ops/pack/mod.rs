//! `spxpack build`: extension directory (and the SDK script's flags) → validated plan (no
//! network yet: every manifest, compose and file problem is reported before any download) →
//! images resolved for the target platform and fetched into the cache → image archives streamed
//! straight into the SPX (sizes planned first, so there is no temporary archive and no
//! recompression) → the finished SPX re-read and checked → renamed into place.

mod assign;
mod emit;
mod files;
mod images;
mod model;
mod options;
mod plan;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod tests;

use crate::error::Result;
use crate::progress::{Reporter, human_size};

pub use crate::registry::Mirror;
pub use model::{ArchiveSummary, PackSummary, Plan};
pub use options::{PackOptions, VerifyLevel};

/// Builds the SPX; see the module docs.
pub fn pack(opts: &PackOptions, reporter: &dyn Reporter) -> Result<PackSummary> {
    let plan = plan::plan(opts, reporter)?;
    reporter.message(&format!(
        "packaging {} {} for {} into {}",
        plan.extension_name,
        plan.version.as_deref().unwrap_or("?"),
        plan.platform.normalized(),
        plan.output.display()
    ));
    let summary = emit::emit(opts, plan, reporter)?;
    reporter.message(&format!("SPX size {}", human_size(summary.size)));
    Ok(summary)
}
