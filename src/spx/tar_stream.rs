//! Reading a tar stream once, entry by entry, for the offline checks (an SPX in
//! `ops::verify`, a `docker save` archive in [`super::image_check`]): PAX records and GNU long
//! names capped per entry ([`HeaderGuard`]), entry names decoded as UTF-8 and normalised (an
//! absolute path, `..` or NUL is an error), PAX global headers skipped, and the stream must hold
//! at least one entry and end with the end-of-archive marker.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, Read};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::tar::index::{HeaderGuard, normalize};
use crate::tar::read_policy;

/// An entry as the visitor of [`walk_entries`] gets it.
pub type StreamEntry<'a, 'r> = tar::Entry<'a, HeaderGuard<Counting<Box<dyn Read + 'r>>>>;

/// How a checker words the problems of the stream it walks.
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    /// Appended to the "unsafe entry" message (e.g. "; the SPX may be malicious").
    pub unsafe_note: &'static str,
    /// The message for a stream that ends without the end-of-archive marker.
    pub no_end_marker: &'static str,
}

/// An entry's name decoded and normalised ([`normalize`]): `Ok(None)` for the archive root
/// (`./`), an error for a name that is not UTF-8 or not safe to extract.
pub fn entry_name(raw: &[u8], unsafe_note: &str) -> Result<Option<String>> {
    let shown = String::from_utf8_lossy(raw);
    let name =
        std::str::from_utf8(raw).map_err(|_| Error::input(format!("entry name {shown:?} is not valid UTF-8")))?;
    normalize(name).map_err(|why| Error::input(format!("unsafe entry {shown:?}: {why}{unsafe_note}")))
}

/// Reads every entry of the tar stream `r`, calling `visit` with its normalised name (the
/// archive root and PAX global headers are skipped). The visitor need not read the content;
/// what it leaves is skipped. Its error ends the walk.
pub fn walk_entries<'r>(
    r: Box<dyn Read + 'r>,
    words: Wording,
    visit: &mut dyn FnMut(&str, &mut StreamEntry<'_, 'r>) -> Result<()>,
) -> Result<()> {
    let consumed = Rc::new(Cell::new(0u64));
    let (guarded, guard) = HeaderGuard::new(Counting { inner: r, n: consumed.clone() });
    let mut ar = tar::Archive::new(guarded);
    let mut end = 0u64;
    let mut count = 0usize;
    let mut seen: HashSet<String> = HashSet::new();
    let mut entries = ar.entries().map_err(|e| Error::input(format!("not a tar archive: {e}")))?;
    while let Some(entry) = guard.next(&mut entries) {
        let mut entry = entry.map_err(|e| Error::input(format!("not a valid tar archive: {e}")))?;
        count += 1;
        read_policy::check_pax(&mut entry).map_err(|why| unsafe_shape(&why, words))?;
        let Some(name) = entry_name(&entry.path_bytes(), words.unsafe_note)? else { continue };
        end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        if entry.header().entry_type().is_hard_link() {
            let target = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            read_policy::hardlink_target(&name, &target, |t| seen.contains(t))
                .map_err(|why| unsafe_shape(&why, words))?;
        }
        visit(&name, &mut entry)?;
        // the rest of the content (of a directory, say) is not header data for the guard
        io::copy(&mut entry, &mut io::sink()).map_err(|e| Error::input(format!("{name}: truncated ({e})")))?;
        seen.insert(name);
    }
    if count == 0 {
        return Err(Error::input("it holds no entries"));
    }
    if consumed.get() < end + 512 {
        return Err(Error::input(words.no_end_marker));
    }
    Ok(())
}

/// The error for a shape that readers see differently ([`read_policy`]).
fn unsafe_shape(why: &str, words: Wording) -> Error {
    Error::input(format!("it contains {why}{}", words.unsafe_note))
        .with_hint("GNU tar, Python and Docker would read this archive differently")
}

/// Counts the bytes read from the stream, to tell whether the end-of-archive marker was read.
pub struct Counting<R> {
    inner: R,
    n: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.set(self.n.get() + k as u64);
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: Wording = Wording { unsafe_note: "; careful", no_end_marker: "no end" };

    fn names(tar: Vec<u8>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        walk_entries(Box::new(io::Cursor::new(tar)), WORDS, &mut |n, _| {
            out.push(n.to_string());
            Ok(())
        })?;
        Ok(out)
    }

    fn tar_with(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for n in names {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            // raw name: the tar crate refuses to write hostile names itself
            h.as_old_mut().name[..n.len()].copy_from_slice(n.as_bytes());
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(entry_name(b"./a//b/", "").unwrap().as_deref(), Some("a/b"));
        assert_eq!(entry_name(b"./", "").unwrap(), None);
        let e = entry_name(b"../x", "; careful").unwrap_err();
        assert_eq!(e.message(), "unsafe entry \"../x\": it contains a '..' component; careful");
        assert!(entry_name(b"a\xff", "").unwrap_err().message().contains("is not valid UTF-8"));
        assert_eq!(names(tar_with(&["./", "./a", "b/c"])).unwrap(), ["a", "b/c"]);
        assert!(names(tar_with(&["/etc/passwd"])).unwrap_err().message().contains("absolute path; careful"));
    }

    #[test]
    fn empty_and_truncated_streams_are_errors() {
        assert_eq!(names(vec![0; 1024]).unwrap_err().message(), "it holds no entries");
        let t = tar_with(&["a"]);
        assert_eq!(names(t[..t.len() - 1024].to_vec()).unwrap_err().message(), "no end");
    }

    #[test]
    fn archives_other_readers_see_differently_are_refused_in_streams() {
        for (class, bytes) in crate::tar::read_policy::tests::hostile_shapes() {
            let e = names(bytes).err().unwrap_or_else(|| panic!("{class}: accepted"));
            assert!(e.message().starts_with("it contains ") && e.message().ends_with("; careful"), "{class}: {e}");
        }
    }
}
