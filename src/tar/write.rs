//! [`TarWriter`]: entries in the order given, headers by the [`Header`] policy, content copied
//! exactly ([`copy_exact`]: a source that ends early or runs long is an error, never a
//! malformed archive), padding to 512-byte blocks and the two zero blocks at the end.

use std::io::{self, Read};

use super::header::{Header, padded};
use super::sink::Sink;
use crate::compress;

/// How copied content goes into the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Deflated when the sink compresses.
    Compressible,
    /// Compressed already: stored as it is.
    Compressed,
    /// Decided from the first bytes read ([`compress::already_compressed`]).
    Sniff,
}

/// Why copying exactly `size` bytes failed.
#[derive(Debug)]
pub enum CopyError {
    /// The source ended this many bytes early.
    Short(u64),
    /// The source had more than the expected bytes.
    Long,
    Read(io::Error),
    Write(io::Error),
}

/// Reads exactly `size` bytes from `r` in pieces of at most 1 MiB, handing each to `f`.
pub fn copy_exact(
    r: &mut dyn Read,
    size: u64,
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> std::result::Result<(), CopyError> {
    let mut buf = vec![0u8; (size.min(1 << 20)) as usize];
    let mut left = size;
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => return Err(CopyError::Short(left)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        f(&buf[..n]).map_err(CopyError::Write)?;
        left -= n as u64;
    }
    Ok(())
}

/// Fails with [`CopyError::Long`] unless `r` is at its end. Reading to the end also lets a
/// verifying reader check its digest.
pub fn expect_end(r: &mut dyn Read) -> std::result::Result<(), CopyError> {
    let mut one = [0u8; 1];
    loop {
        return match r.read(&mut one) {
            Ok(0) => Ok(()),
            Ok(_) => Err(CopyError::Long),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(CopyError::Read(e)),
        };
    }
}

/// A tar stream into a [`Sink`]. It is a sink itself, counting what passes through, so content
/// can also be produced by other writers (an image archive inside an SPX) and then padded with
/// [`TarWriter::pad`].
pub struct TarWriter<'a, S: Sink + ?Sized> {
    sink: &'a mut S,
    written: u64,
}

impl<'a, S: Sink + ?Sized> TarWriter<'a, S> {
    pub fn new(sink: &'a mut S) -> Self {
        TarWriter { sink, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the header blocks of an entry; its content follows.
    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        self.meta(&h.encode())
    }

    /// An entry without content (directory, link, device, whiteout).
    pub fn empty(&mut self, h: &Header) -> io::Result<()> {
        debug_assert_eq!(h.size, 0);
        self.header(h)
    }

    /// An entry whose content is `data` (`h.size` is set to its length).
    pub fn bytes(&mut self, h: &Header, data: &[u8]) -> io::Result<()> {
        self.header(&Header { size: data.len() as u64, ..h.clone() })?;
        self.meta(data)?;
        self.pad(data.len() as u64)
    }

    /// The content of an entry of `size` bytes: exactly `size` bytes of `r`, then the padding.
    /// `progress` is told every piece.
    pub fn copy(
        &mut self,
        r: &mut dyn Read,
        size: u64,
        how: Content,
        progress: &dyn Fn(u64),
    ) -> std::result::Result<(), CopyError> {
        let mut stored = match how {
            Content::Compressible => Some(false),
            Content::Compressed => Some(true),
            Content::Sniff => None,
        };
        copy_exact(r, size, |b| {
            if *stored.get_or_insert_with(|| compress::already_compressed(b)) {
                self.compressed(b)?;
            } else {
                self.meta(b)?;
            }
            progress(b.len() as u64);
            Ok(())
        })?;
        self.pad(size).map_err(CopyError::Write)
    }

    /// Zeros from the end of `size` bytes of content to the next block boundary.
    pub fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (padded(size) - size) as usize;
        self.meta(&[0u8; 512][..rem])
    }

    /// The end-of-archive marker: two zero blocks.
    pub fn finish(&mut self) -> io::Result<()> {
        self.meta(&[0u8; 1024])
    }
}

impl<S: Sink + ?Sized> Sink for TarWriter<'_, S> {
    fn meta(&mut self, data: &[u8]) -> io::Result<()> {
        self.sink.meta(data)?;
        self.written += data.len() as u64;
        Ok(())
    }
    fn compressed(&mut self, data: &[u8]) -> io::Result<()> {
        self.sink.compressed(data)?;
        self.written += data.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::Plain;

    #[test]
    fn copies_exactly_and_pads() {
        let mut sink = Plain(Vec::new());
        let mut tw = TarWriter::new(&mut sink);
        tw.header(&Header::file("a", 3, 0o644)).unwrap();
        tw.copy(&mut &b"abcdef"[..], 3, Content::Sniff, &|_| {}).unwrap();
        tw.bytes(&Header::file("b", 0, 0o600), b"xy").unwrap();
        tw.finish().unwrap();
        assert_eq!(tw.written(), 512 * 4 + 1024);
        let out = sink.0;
        let mut a = ::tar::Archive::new(&out[..]);
        let got: Vec<(String, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(got, [("a".to_string(), 3), ("b".to_string(), 2)]);
    }

    #[test]
    fn short_and_long_sources_are_errors() {
        let mut got = Vec::new();
        let e = copy_exact(&mut &b"abc"[..], 5, |b| {
            got.extend_from_slice(b);
            Ok(())
        });
        assert!(matches!(e, Err(CopyError::Short(2))));
        assert_eq!(got, b"abc");
        let mut r = &b"abcd"[..];
        copy_exact(&mut r, 3, |_| Ok(())).unwrap();
        assert!(matches!(expect_end(&mut r), Err(CopyError::Long)));
        assert!(expect_end(&mut &b""[..]).is_ok());
        let e = copy_exact(&mut &b"abc"[..], 3, |_| Err(io::Error::other("full")));
        assert!(matches!(e, Err(CopyError::Write(_))));
    }

    #[test]
    fn sniffed_content_is_stored_when_compressed_already() {
        struct Kinds(Vec<bool>);
        impl Sink for Kinds {
            fn meta(&mut self, _: &[u8]) -> io::Result<()> {
                self.0.push(false);
                Ok(())
            }
            fn compressed(&mut self, _: &[u8]) -> io::Result<()> {
                self.0.push(true);
                Ok(())
            }
        }
        for (data, stored) in [(&b"\x1f\x8b\x08rest"[..], true), (&b"plain text"[..], false)] {
            let mut k = Kinds(Vec::new());
            TarWriter::new(&mut k).copy(&mut &data[..], data.len() as u64, Content::Sniff, &|_| {}).unwrap();
            assert_eq!(k.0, [stored, false], "content, then padding");
        }
    }
}
