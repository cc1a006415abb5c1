//! One module per command: each is a function of named steps over the format modules
//! ([`crate::spx`], [`crate::docker_archive`], [`crate::oci_layout`]), the image sources
//! ([`crate::source`]) and the builders ([`crate::dockerfile`], [`crate::sandbox`]). The CLI
//! (in the binary) turns flags into these functions' options and prints their summaries.

pub mod init;
pub mod inspect;
pub mod inspect_spx;
pub mod pack;
pub mod pull;
pub mod push;
pub mod verify;
