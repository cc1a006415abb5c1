//! spxpack: build Boston Dynamics Spot Extensions (`.spx`) without a Docker daemon.
//!
//! The library pulls or reads arm64/amd64 images ([`source`], [`registry`], [`oci_layout`],
//! [`docker_archive`]), keeps their blobs in a verified content-addressed cache
//! ([`blob_cache`]) and writes `docker save`-compatible archives ([`docker_archive::write`]).
//! It never prints: progress goes through [`progress::Reporter`], logs through `tracing`.

pub mod atomic;
pub mod blob_cache;
pub mod compress;
pub mod digest;
pub mod docker_archive;
pub mod dockerfile;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod host_env;
pub mod http;
pub mod image;
pub mod input;
pub mod oci_layout;
pub mod ops;
pub mod platform;
pub mod problem;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod sandbox;
pub mod source;
pub mod spx;
pub mod tar;
#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod layering;

pub use error::{Error, Kind, Result};
