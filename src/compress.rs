//! Compression: sniffing (gzip, bzip2, xz, zstd), decompressing readers that peel exactly one
//! layer (optionally under [`Limits`], the decompression-bomb guard), and [`GzipWriter`], a deterministic parallel gzip encoder that can also *store*
//! already-compressed data without spending CPU on it.
//!
//! The writer cuts compressible data into fixed 1 MiB chunks, deflates each chunk on its own
//! and ends it with a sync flush (the pigz scheme, without dictionary priming), so the output
//! depends only on the input and the segment boundaries, never on the thread count. Stored
//! segments become deflate "stored" blocks. The result is a single gzip member with mtime 0,
//! no file name and OS byte 255.

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::{Compress, Compression as Level, FlushCompress, Status};

#[cfg(test)]
mod unit_tests;

/// A compression format recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// Recognises a compression format from the first bytes of a stream.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Sniffs `r` and returns a reader of its decompressed content (one layer of compression is
/// removed; a stream that is not compressed is returned as is).
pub fn decompress<R: BufRead + Send + 'static>(mut r: R) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let head = r.fill_buf()?;
    let c = sniff(head);
    let out: Box<dyn Read + Send> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "zstd-compressed data is not supported"));
        }
    };
    Ok((c, out))
}

/// A decoder for `r`, compressed with `c`, whose output is checked against `limits`: reading
/// past them fails with an `InvalidData` error that says which limit was hit. `None` for zstd
/// (not read); an uncompressed stream is returned as is.
pub fn limited_decoder<'a, R: BufRead + 'a>(c: Compression, r: R, limits: Limits) -> Option<Box<dyn Read + 'a>> {
    let input = Arc::new(AtomicU64::new(0));
    let counted = CountIn { inner: r, n: input.clone() };
    let dec: Box<dyn Read + 'a> = match c {
        Compression::None => return Some(Box::new(counted.inner)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(counted)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(counted)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(counted)),
        Compression::Zstd => return None,
    };
    Some(Box::new(Bounded { inner: dec, input, out: 0, limits, format: c }))
}

/// Caps on what one compressed stream may expand to (CVE-2017-14992: a gzip bomb in a layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed bytes per stream.
    pub max_bytes: u64,
    /// Decompressed ÷ compressed bytes, checked once [`RATIO_GRACE`] bytes came out.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 64 << 30, max_ratio: 1000 }
    }
}

impl Limits {
    /// No limits: for spxpack's own output and inputs the user builds from.
    pub const NONE: Limits = Limits { max_bytes: u64::MAX, max_ratio: u64::MAX };
}

/// Output below this size is never a bomb, whatever the ratio (a tar of a few zero-filled
/// files compresses more than 1000×).
pub const RATIO_GRACE: u64 = 64 << 20;

/// Counts the compressed bytes a decoder consumes.
struct CountIn<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: BufRead> Read for CountIn<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

impl<R: BufRead> BufRead for CountIn<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.n.fetch_add(amt as u64, Ordering::Relaxed);
        self.inner.consume(amt);
    }
}

/// A decoder's output, checked against [`Limits`].
struct Bounded<D> {
    inner: D,
    input: Arc<AtomicU64>,
    out: u64,
    limits: Limits,
    format: Compression,
}

impl<D: Read> Read for Bounded<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.out += k as u64;
        let bomb = |what: String| io::Error::new(io::ErrorKind::InvalidData, Bomb(what));
        if self.out > self.limits.max_bytes {
            return Err(bomb(format!(
                "the {} stream decompresses to more than {} bytes",
                self.format.name(),
                self.limits.max_bytes
            )));
        }
        let input = self.input.load(Ordering::Relaxed).max(1);
        if self.out > RATIO_GRACE && self.out / input > self.limits.max_ratio {
            return Err(bomb(format!(
                "the {} stream expands more than {}× ({input} bytes became {})",
                self.format.name(),
                self.limits.max_ratio,
                self.out
            )));
        }
        Ok(k)
    }
}

/// The error of a stream that passed its [`Limits`]: what was passed ("the gzip stream
/// decompresses to more than N bytes"); its `Display` adds the flags that raise the limits.
#[derive(Debug)]
pub struct Bomb(pub String);

impl std::fmt::Display for Bomb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {BOMB_HINT}", self.0)
    }
}

impl std::error::Error for Bomb {}

/// What the error of a stream that passed its limits suggests.
pub const BOMB_HINT: &str = "a decompression bomb? (raise --max-decompressed/--max-ratio if the content is genuine)";

/// The [`Bomb`] inside `e`, when a limited decoder stopped.
pub fn bomb(e: &io::Error) -> Option<&Bomb> {
    e.get_ref().and_then(|i| i.downcast_ref::<Bomb>())
}

/// Bytes of compressible input per independently deflated chunk.
pub const CHUNK: usize = 1 << 20;
const STORED_MAX: usize = 65535;

/// A gzip encoder with compressible and stored segments; see the module docs.
pub struct GzipWriter<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    pending: Vec<u8>,
    stored: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
}

impl<W: Write> GzipWriter<W> {
    /// `level` 0–9; `threads` ≥ 1 (the output does not depend on it).
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        // magic, CM=deflate, FLG=0, MTIME=0, XFL=0, OS=255 (unknown)
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        Ok(GzipWriter {
            out,
            level: level.min(9),
            threads: threads.max(1),
            pending: Vec::new(),
            stored: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total: 0,
        })
    }

    /// Adds data that should be compressed.
    pub fn write_compressible(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.flush_stored()?;
        self.crc.update(data);
        self.total += data.len() as u64;
        self.pending.extend_from_slice(data);
        let batch = CHUNK * self.threads;
        if self.pending.len() >= batch {
            let full = self.pending.len() / CHUNK * CHUNK;
            let rest = self.pending.split_off(full);
            let chunks = std::mem::replace(&mut self.pending, rest);
            self.deflate_chunks(&chunks)?;
        }
        Ok(())
    }

    /// Adds data that is already compressed: it is stored, costing only a CRC and a copy.
    pub fn write_stored(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.flush_pending()?;
        self.crc.update(data);
        self.total += data.len() as u64;
        let mut data = data;
        if !self.stored.is_empty() {
            let take = (STORED_MAX - self.stored.len()).min(data.len());
            self.stored.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.stored.len() == STORED_MAX {
                let block = std::mem::take(&mut self.stored);
                write_stored_block(&mut self.out, &block)?;
            }
        }
        while data.len() >= STORED_MAX {
            write_stored_block(&mut self.out, &data[..STORED_MAX])?;
            data = &data[STORED_MAX..];
        }
        self.stored.extend_from_slice(data);
        Ok(())
    }

    /// Ends the stream and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_pending()?;
        self.flush_stored()?;
        // final empty stored block
        self.out.write_all(&[0x01, 0x00, 0x00, 0xff, 0xff])?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.write_all(&(self.total as u32).to_le_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn flush_stored(&mut self) -> io::Result<()> {
        if !self.stored.is_empty() {
            let block = std::mem::take(&mut self.stored);
            write_stored_block(&mut self.out, &block)?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let chunks = std::mem::take(&mut self.pending);
            self.deflate_chunks(&chunks)?;
        }
        Ok(())
    }

    fn deflate_chunks(&mut self, data: &[u8]) -> io::Result<()> {
        let level = self.level;
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        if self.threads == 1 || chunks.len() == 1 {
            for c in chunks {
                self.out.write_all(&deflate_chunk(c, level))?;
            }
            return Ok(());
        }
        for group in chunks.chunks(self.threads) {
            let outs: Vec<Vec<u8>> = std::thread::scope(|s| {
                let handles: Vec<_> = group.iter().map(|c| s.spawn(move || deflate_chunk(c, level))).collect();
                handles.into_iter().map(|h| h.join().expect("deflate thread panicked")).collect()
            });
            for o in outs {
                self.out.write_all(&o)?;
            }
        }
        Ok(())
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_compressible(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_stored_block(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    debug_assert!(data.len() <= STORED_MAX);
    let len = data.len() as u16;
    let mut h = [0u8; 5];
    h[0] = 0x00; // BFINAL=0, BTYPE=00, padded to the byte boundary
    h[1..3].copy_from_slice(&len.to_le_bytes());
    h[3..5].copy_from_slice(&(!len).to_le_bytes());
    out.write_all(&h)?;
    out.write_all(data)
}

/// Raw-deflates one chunk and ends it with a sync flush (byte aligned, not final).
fn deflate_chunk(input: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Level::new(level), false);
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate cannot fail on valid input");
        if c.total_in() as usize == input.len() && out.len() < out.capacity() {
            break;
        }
        if let Status::BufError = status {
            out.reserve(out.capacity());
        }
    }
    out
}

/// Gzip-compresses everything from `r` into `w` with the deterministic parallel encoder.
/// Returns (uncompressed bytes, compressed bytes written).
pub fn gzip_stream<W: Write>(r: &mut dyn Read, w: W, level: u32, threads: usize) -> io::Result<(u64, W)> {
    let mut gz = GzipWriter::new(w, level, threads)?;
    let n = crate::digest::for_each_chunk(r, CHUNK, |b| gz.write_compressible(b))?;
    Ok((n, gz.finish()?))
}

/// Whether data starting with `head` is compressed already (a compressed stream, PNG, JPEG,
/// zip, 7z, RIFF media), so deflating it again is wasted CPU.
pub fn already_compressed(head: &[u8]) -> bool {
    sniff(head) != Compression::None
        || head.starts_with(b"\x89PNG")
        || head.starts_with(&[0xff, 0xd8, 0xff])
        || head.starts_with(b"PK\x03\x04")
        || head.starts_with(b"7z\xbc\xaf\x27\x1c")
        || head.starts_with(b"RIFF")
}

/// The number of worker threads to use by default.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_decoders_stop_bombs() {
        let zeros = vec![0u8; (RATIO_GRACE + (8 << 20)) as usize];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Level::best());
        gz.write_all(&zeros).unwrap();
        let packed = gz.finish().unwrap();
        let read = |limits: Limits| {
            let mut d = limited_decoder(Compression::Gzip, &packed[..], limits).unwrap();
            io::copy(&mut d, &mut io::sink())
        };
        // deflate shrinks zeros about 1030×: over the default ratio once past the grace size
        let e = read(Limits::default()).unwrap_err();
        assert!(e.to_string().contains("expands more than 1000×"), "{e}");
        assert_eq!(read(Limits { max_bytes: 64 << 30, max_ratio: 2000 }).unwrap(), zeros.len() as u64);
        let e = read(Limits { max_bytes: 1 << 20, max_ratio: 1000 }).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("more than 1048576 bytes"), "{e}");
        let e = read(Limits { max_bytes: u64::MAX, max_ratio: 100 }).unwrap_err();
        assert!(e.to_string().contains("expands more than 100×"), "{e}");
        assert!(limited_decoder(Compression::Zstd, &packed[..], Limits::NONE).is_none());
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut x: u32 = 12345;
        while v.len() < n {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let word = ["alpha ", "beta ", "gamma ", "delta\n"][(x >> 16) as usize % 4];
            v.extend_from_slice(word.as_bytes());
            if x.is_multiple_of(7) {
                v.push((x >> 8) as u8);
            }
        }
        v.truncate(n);
        v
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn mixed_segments_round_trip_and_do_not_depend_on_threads() {
        let a = sample(3 * CHUNK + 777);
        let b = sample(200_000);
        let c = sample(10);
        let build = |threads: usize, piece: usize| {
            let mut gz = GzipWriter::new(Vec::new(), 6, threads).unwrap();
            for p in a.chunks(piece) {
                gz.write_compressible(p).unwrap();
            }
            for p in b.chunks(piece) {
                gz.write_stored(p).unwrap();
            }
            gz.write_compressible(&c).unwrap();
            gz.write_stored(&c).unwrap();
            gz.finish().unwrap()
        };
        let one = build(1, 4096);
        assert_eq!(one, build(2, 65536));
        assert_eq!(one, build(5, 1000));
        let mut all = a.clone();
        all.extend_from_slice(&b);
        all.extend_from_slice(&c);
        all.extend_from_slice(&c);
        assert_eq!(gunzip(&one), all);
        // the stored part costs 5 bytes per 64 KiB block, the compressible part shrinks
        assert!(one.len() < all.len());
    }

    #[test]
    fn empty_stream_is_valid_gzip() {
        let out = GzipWriter::new(Vec::new(), 6, 2).unwrap().finish().unwrap();
        assert!(gunzip(&out).is_empty());
    }

    #[test]
    fn sniffs_formats() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(sniff(b"ustar"), Compression::None);
    }

    #[test]
    fn gzip_stream_matches_python_gzip_reader_semantics() {
        let data = sample(2 * CHUNK + 5);
        let (n, out) = gzip_stream(&mut &data[..], Vec::new(), 6, 2).unwrap();
        assert_eq!(n as usize, data.len());
        // single gzip member: GzDecoder (first member only) reads everything
        let mut one = Vec::new();
        flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut one).unwrap();
        assert_eq!(one, data);
    }
}
