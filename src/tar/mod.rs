//! Tar, read and written: [`index`] indexes a tar given as input (docker-archive, oci-archive,
//! SPX) for random access and holds the header guard shared by the streaming readers.

pub mod index;
