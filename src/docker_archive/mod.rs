//! The `docker save` archive format: [`read`] opens every generation (classic v1.2 with
//! `<v1id>/layer.tar` links, Docker 25+ hybrid, containerd exporter; plain or compressed outer
//! stream) and [`write`] produces the hybrid layout (`manifest.json`, `repositories`, OCI
//! `index.json`, `oci-layout`, `blobs/sha256/…`) deterministically.

pub mod read;
pub mod write;

#[cfg(test)]
mod roundtrip_tests;

pub use read::{DockerArchive, Selector};
pub use write::{ArchiveImage, WriteOptions, WriteSummary, write_file};
