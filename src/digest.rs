//! Content digests (`sha256:<64 lowercase hex>`), parsed strictly before they are ever used in a
//! path or URL, and readers that verify size and digest while streaming.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

#[cfg(test)]
mod unit_tests;

/// A validated sha256 digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; rejects other algorithms, uppercase and wrong lengths.
    pub fn parse(s: &str) -> Result<Self> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(Error::input(format!("invalid digest {s:?}: expected sha256:<64 hex digits>")));
        };
        if alg != "sha256" {
            if matches!(alg, "sha384" | "sha512") {
                return Err(Error::unsupported(format!("digest {s:?} uses {alg}; only sha256 is supported")));
            }
            return Err(Error::input(format!("invalid digest {s:?}: unknown algorithm {alg:?}")));
        }
        Self::from_hex(hex).map_err(|_| Error::input(format!("invalid digest {s:?}: expected 64 lowercase hex digits")))
    }
    /// Builds a digest from 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Result<Self> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(Error::input(format!("invalid sha256 hex {hex:?}")));
        }
        Ok(Digest { hex: hex.to_string() })
    }
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest { hex: hex::encode(Sha256::digest(data)) }
    }
    pub fn hex(&self) -> &str {
        &self.hex
    }
    /// `blobs/sha256/<hex>`, the path of this blob in an OCI layout.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex)
    }
    /// The first 12 hex digits, as Docker shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(self) -> Digest {
        Digest { hex: hex::encode(self.0.finalize()) }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Wraps a writer and hashes (and counts) what is written through it: a blob's digest and size
/// while it is written.
pub struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Hasher,
    /// Bytes written so far.
    pub n: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::new(), n: 0 }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Wraps a reader, hashes what passes through, and fails at EOF (or as soon as too many bytes
/// arrive) when the content does not match the expected size and digest.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    expected_size: u64,
    seen: u64,
    what: String,
}

impl<R: Read> VerifyingReader<R> {
    /// `what` names the blob in errors, e.g. `layer sha256:… of busybox:arm64`.
    pub fn new(inner: R, expected: Digest, expected_size: u64, what: impl Into<String>) -> Self {
        VerifyingReader { inner, hasher: Some(Hasher::new()), expected, expected_size, seen: 0, what: what.into() }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hasher.is_none() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.expected_size {
            return Err(Error::integrity(format!(
                "{} is larger than its descriptor says ({} bytes expected)",
                self.what, self.expected_size
            ))
            .into_io());
        }
        if n == 0 {
            let h = self.hasher.take().expect("checked above");
            if self.seen != self.expected_size {
                return Err(Error::integrity(format!(
                    "{} is truncated: got {} of {} bytes",
                    self.what, self.seen, self.expected_size
                ))
                .into_io());
            }
            let got = h.finish();
            if got != self.expected {
                return Err(Error::integrity(format!(
                    "digest mismatch for {}: expected {}, got {}",
                    self.what, self.expected, got
                ))
                .with_hint("the source content is corrupt or was altered; re-push or re-export the image")
                .into_io());
            }
            return Ok(0);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads `r` to the end in pieces of at most `chunk` bytes, handing each to `f`; returns the
/// number of bytes read.
pub fn for_each_chunk(r: &mut dyn Read, chunk: usize, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
    let mut buf = vec![0u8; chunk];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        f(&buf[..k])?;
        n += k as u64;
    }
}

/// Copies `r` to `w` and returns (bytes, sha256) of what was copied.
pub fn copy_hashed(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<(u64, Digest)> {
    let mut h = Hasher::new();
    let n = for_each_chunk(r, 1 << 20, |b| {
        h.update(b);
        w.write_all(b)
    })?;
    Ok((n, h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_strictly() {
        assert_eq!(Digest::parse(EMPTY).unwrap(), Digest::of(b""));
        for bad in [
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd0000000000000000000000000000000000000000000",
            "sha256::e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn verifying_reader_accepts_good_and_rejects_bad() {
        let data = b"hello world".to_vec();
        let d = Digest::of(&data);
        let mut out = Vec::new();
        VerifyingReader::new(&data[..], d.clone(), data.len() as u64, "x").read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        let err = VerifyingReader::new(&b"hello worle"[..], d.clone(), 11, "blob x").read_to_end(&mut Vec::new());
        let err = err.unwrap_err().to_string();
        assert!(err.contains("digest mismatch for blob x"), "{err}");

        let err = VerifyingReader::new(&b"hello"[..], d.clone(), 11, "blob x").read_to_end(&mut Vec::new());
        assert!(err.unwrap_err().to_string().contains("truncated"));

        let err = VerifyingReader::new(&b"hello world!"[..], d, 11, "blob x").read_to_end(&mut Vec::new());
        assert!(err.unwrap_err().to_string().contains("larger"));
    }
}
