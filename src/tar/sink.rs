//! Where a tar's bytes go. A [`Sink`] is told which bytes are worth compressing (headers,
//! records, padding, most file content) and which are compressed already (gzip layers, image
//! archives, PNG …): [`GzipWriter`] deflates the first and stores the second byte for byte, so
//! an SPX or a `.tar.gz` archive never spends CPU recompressing a layer; [`Plain`] writes both
//! as they are.

use std::io::{self, Write};

use crate::compress::GzipWriter;
use crate::digest::{Digest, Hasher, HashingWriter};

/// A byte sink that knows whether content is compressed already.
pub trait Sink {
    /// Bytes worth compressing.
    fn meta(&mut self, data: &[u8]) -> io::Result<()>;
    /// Bytes that are compressed already: stored as they are.
    fn compressed(&mut self, data: &[u8]) -> io::Result<()>;
}

/// An uncompressed sink.
#[derive(Debug)]
pub struct Plain<W: Write>(pub W);

impl<W: Write> Sink for Plain<W> {
    fn meta(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn compressed(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
}

impl<W: Write> Sink for GzipWriter<W> {
    fn meta(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_compressible(data)
    }
    fn compressed(&mut self, data: &[u8]) -> io::Result<()> {
        self.write_stored(data)
    }
}

/// An image layer being written: the tar is hashed (its diff_id) and gzip-compressed, and the
/// gzip stream hashed (the blob digest), in one pass.
pub struct LayerSink<W: Write> {
    gz: GzipWriter<HashingWriter<W>>,
    diff: Hasher,
}

/// A finished layer blob.
pub struct LayerBlob<W> {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 and size of the gzip stream.
    pub digest: Digest,
    pub size: u64,
    /// The writer the gzip stream went to (flushed).
    pub inner: W,
}

impl<W: Write> LayerSink<W> {
    /// `level` 0–9; `threads` ≥ 1 (the bytes do not depend on it).
    pub fn new(out: W, level: u32, threads: usize) -> io::Result<Self> {
        Ok(LayerSink { gz: GzipWriter::new(HashingWriter::new(out), level, threads)?, diff: Hasher::new() })
    }

    /// Ends the gzip stream.
    pub fn finish(self) -> io::Result<LayerBlob<W>> {
        let hw = self.gz.finish()?;
        Ok(LayerBlob { diff_id: self.diff.finish(), digest: hw.hasher.finish(), size: hw.n, inner: hw.inner })
    }
}

impl<W: Write> Sink for LayerSink<W> {
    fn meta(&mut self, data: &[u8]) -> io::Result<()> {
        self.diff.update(data);
        self.gz.write_compressible(data)
    }
    fn compressed(&mut self, data: &[u8]) -> io::Result<()> {
        self.diff.update(data);
        self.gz.write_stored(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_sinks_hash_both_sides_whatever_is_stored() {
        let write = |stored: bool| {
            let mut s = LayerSink::new(Vec::new(), 6, 2).unwrap();
            s.meta(b"header").unwrap();
            if stored { s.compressed(b"content") } else { s.meta(b"content") }.unwrap();
            s.finish().unwrap()
        };
        let (a, b) = (write(true), write(false));
        assert_eq!(a.diff_id, Digest::of(b"headercontent"));
        assert_eq!(a.diff_id, b.diff_id);
        assert_eq!((a.digest, a.size), (Digest::of(&a.inner), a.inner.len() as u64));
        assert_ne!(a.inner, b.inner, "stored and deflated blocks differ");
    }
}
