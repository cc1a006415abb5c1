//! Tar, read and written. Every tar spxpack writes (COPY and RUN layers, the SPX, `docker save`
//! archives) goes through [`TarWriter`] with the one header policy of [`header`]; [`index`]
//! indexes a tar given as input (docker-archive, oci-archive, SPX) for random access and holds
//! the header guard shared by the streaming readers; [`read_policy`] refuses the shapes other
//! readers (GNU tar, Python, Go) would see differently, in every reader.

pub mod header;
pub mod index;
pub mod read_policy;
pub mod sink;
pub mod write;

#[cfg(test)]
pub(crate) mod golden;

pub use header::Header;
pub use sink::{LayerBlob, LayerSink, Plain, Sink};
pub use write::{Content, CopyError, TarWriter, copy_exact, expect_end};
