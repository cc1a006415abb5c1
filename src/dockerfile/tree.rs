//! What COPY reads from: the build context (a local directory filtered by `.dockerignore`, with
//! symlinks resolved inside it and file hashes remembered by stat), a named local directory,
//! or another stage's / image's filesystem. [`Tree`] is the one interface the COPY planner
//! uses; [`glob`] expands source wildcards the way the classic builder does (Go's
//! `filepath.Match` on each path, `*` never crossing `/`, symlinked directories not entered).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::dockerignore::Matcher;
use super::fsview::{Content, ContentSrc, FsView, Kind, Node, Resolved, base_name, resolve_with};
use super::layer_reader::write_atomic;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// A source of files for COPY.
pub trait Tree: Send + Sync {
    /// "the build context", "stage build", "image busybox".
    fn describe(&self) -> String;
    /// Resolves a path inside the tree, following symlinks (also in the last component).
    fn resolve(&self, p: &str) -> Resolved;
    /// The entry at a resolved path, without following a final symlink; `None` if missing.
    /// Content ids of files are filled in (hashing local files).
    fn node(&self, p: &str) -> Result<Option<Node>>;
    /// Direct children of a directory (names), in order; excluded entries are left out.
    fn children(&self, dir: &str) -> Result<Vec<String>>;
    /// Why a path is not part of the tree although it exists on disk (`.dockerignore`).
    fn excluded(&self, _p: &str) -> Option<String> {
        None
    }
    /// `(dev, ino)` for hard-link detection of local files.
    fn inode(&self, _p: &str) -> Option<(u64, u64)> {
        None
    }
}

/// An image or stage filesystem as a COPY source.
pub struct ViewTree {
    pub view: Arc<FsView>,
    pub name: String,
}

impl Tree for ViewTree {
    fn describe(&self) -> String {
        self.name.clone()
    }
    fn resolve(&self, p: &str) -> Resolved {
        self.view.resolve(p, true)
    }
    fn node(&self, p: &str) -> Result<Option<Node>> {
        if p.is_empty() {
            return Ok(Some(Node::dir(0o755, 0, 0, 0)));
        }
        Ok(self.view.get(p).cloned())
    }
    fn children(&self, dir: &str) -> Result<Vec<String>> {
        let depth = if dir.is_empty() { 0 } else { dir.matches('/').count() + 1 };
        Ok(self
            .view
            .subtree(dir)
            .filter(|(k, _)| k.matches('/').count() == depth)
            .map(|(k, _)| base_name(k).to_string())
            .collect())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HashRec {
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
    ino: u64,
    hash: String,
}

/// A local directory (the build context or a `--build-context NAME=DIR`).
pub struct DirTree {
    pub root: PathBuf,
    pub shown: String,
    pub ignore: Matcher,
    hashes: Mutex<HashMap<String, HashRec>>,
    /// Paths hashed or confirmed in this build; only these are saved.
    seen: Mutex<std::collections::HashSet<String>>,
    hash_file: Option<PathBuf>,
    started: i64,
}

impl DirTree {
    /// `hash_dir` is where file hashes are remembered between builds (keyed by the root).
    pub fn open(root: &Path, shown: &str, ignore: Matcher, hash_dir: Option<&Path>) -> Result<Self> {
        let meta = fs::metadata(root).map_err(|e| {
            Error::io("cannot read the build context", root, e).with_hint("pass an existing directory as the context")
        })?;
        if !meta.is_dir() {
            return Err(Error::input(format!("build context {shown} is not a directory")));
        }
        let root = fs::canonicalize(root).map_err(|e| Error::io("cannot resolve", root, e))?;
        let hash_file =
            hash_dir.map(|d| d.join(format!("{}.json", Digest::of(root.to_string_lossy().as_bytes()).hex())));
        let hashes = hash_file
            .as_ref()
            .and_then(|f| fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        Ok(DirTree {
            root,
            shown: shown.to_string(),
            ignore,
            hashes: Mutex::new(hashes),
            seen: Mutex::new(Default::default()),
            hash_file,
            started,
        })
    }

    fn abs(&self, p: &str) -> PathBuf {
        if p.is_empty() { self.root.clone() } else { self.root.join(p) }
    }

    /// Whether a `!pattern` may re-include something below the excluded directory `rel` (the
    /// test Docker's context upload uses to decide whether to walk into it).
    fn reincludes_below(&self, rel: &str) -> bool {
        let dir = format!("{rel}/");
        self.ignore.patterns.iter().any(|p| p.exclusion && format!("{}/", p.text).starts_with(&dir))
    }

    /// Saves remembered hashes (entries modified in the last two seconds are not trusted).
    pub fn save_hashes(&self) -> Result<()> {
        let Some(file) = &self.hash_file else { return Ok(()) };
        let map = self.hashes.lock().expect("poisoned");
        let seen = self.seen.lock().expect("poisoned");
        let keep: HashMap<&String, &HashRec> = map
            .iter()
            .filter(|(k, r)| seen.contains(*k) && r.mtime < self.started - 1 && r.ctime < self.started - 1)
            .collect();
        let data = serde_json::to_vec(&keep).expect("json");
        write_atomic(file.parent().expect("has parent"), file, &data)
    }

    fn hash(&self, p: &str, m: &fs::Metadata) -> Result<String> {
        let rec = |hash: String| HashRec {
            size: m.len(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
            ino: m.ino(),
            hash,
        };
        self.seen.lock().expect("poisoned").insert(p.to_string());
        if let Some(r) = self.hashes.lock().expect("poisoned").get(p) {
            let now = rec(String::new());
            if (r.size, r.mtime, r.mtime_ns, r.ctime, r.ctime_ns, r.ino)
                == (now.size, now.mtime, now.mtime_ns, now.ctime, now.ctime_ns, now.ino)
            {
                return Ok(r.hash.clone());
            }
        }
        let abs = self.abs(p);
        let mut f = fs::File::open(&abs).map_err(|e| Error::io("cannot read", &abs, e))?;
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io("cannot read", &abs, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let hash = h.finish().to_string();
        self.hashes.lock().expect("poisoned").insert(p.to_string(), rec(hash.clone()));
        Ok(hash)
    }
}

fn lstat(p: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => Ok(None),
        Err(e) => Err(Error::io("cannot read", p, e)),
    }
}

impl Tree for DirTree {
    fn describe(&self) -> String {
        format!("the build context {}", self.shown)
    }
    fn resolve(&self, p: &str) -> Resolved {
        resolve_with(p, true, |k| {
            let a = self.abs(k);
            match fs::symlink_metadata(&a) {
                Ok(m) if m.file_type().is_symlink() => fs::read_link(&a).ok().map(|t| t.to_string_lossy().into_owned()),
                _ => None,
            }
        })
    }
    fn node(&self, p: &str) -> Result<Option<Node>> {
        let abs = self.abs(p);
        if self.excluded(p).is_some() {
            // an excluded directory with re-included paths below it is still there, as the
            // directory Docker's context upload implies (0755, no metadata of its own)
            return Ok(match lstat(&abs)? {
                Some(m) if m.is_dir() && self.reincludes_below(p) => Some(Node::dir(0o755, 0, 0, 0)),
                _ => None,
            });
        }
        let Some(m) = lstat(&abs)? else { return Ok(None) };
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(
                fs::read_link(&abs).map_err(|e| Error::io("cannot read", &abs, e))?.to_string_lossy().into_owned(),
            )
        } else if ft.is_file() {
            let id = self.hash(p, &m)?;
            Kind::File(Content { id, src: ContentSrc::Local(Arc::new(abs)) })
        } else {
            use std::os::unix::fs::FileTypeExt;
            let t = if ft.is_fifo() {
                b'6'
            } else if ft.is_char_device() {
                b'3'
            } else if ft.is_block_device() {
                b'4'
            } else {
                return Ok(None); // sockets are left out, as Docker's context upload does
            };
            let rdev = m.rdev();
            Kind::Other(t, ((rdev >> 8) & 0xfff) as u32, ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32)
        };
        let size = if matches!(kind, Kind::File(_)) { m.len() } else { 0 };
        Ok(Some(Node { kind, mode: m.mode() & 0o7777, uid: 0, gid: 0, mtime: m.mtime().max(0) as u64, size }))
    }
    fn children(&self, dir: &str) -> Result<Vec<String>> {
        let abs = self.abs(dir);
        let rd = fs::read_dir(&abs).map_err(|e| Error::io("cannot read directory", &abs, e))?;
        let mut names = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io("cannot read directory", &abs, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
            if self.ignore.excludes(&rel) && !(e.file_type().is_ok_and(|t| t.is_dir()) && self.reincludes_below(&rel)) {
                continue;
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    }
    fn excluded(&self, p: &str) -> Option<String> {
        self.ignore.excluded_by(p).map(|pat| format!("{}:{}: {}", self.ignore.source, pat.line, pat.text))
    }
    fn inode(&self, p: &str) -> Option<(u64, u64)> {
        fs::symlink_metadata(self.abs(p)).ok().filter(|m| m.nlink() > 1 && m.is_file()).map(|m| (m.dev(), m.ino()))
    }
}

/// Whether a source path has wildcard characters (`*`, `?`, `[`; `\` escapes).
pub fn has_wildcards(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' | b'?' | b'[' => return true,
            b'\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Expands a normalised wildcard path against a tree: every matching path, in walk order.
pub fn glob(tree: &dyn Tree, pattern: &str) -> Result<Vec<String>> {
    let parts: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let mut current = vec![String::new()];
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &current {
            // only real directories are entered (the walk does not follow symlinks)
            if !dir.is_empty() && !tree.node(dir)?.is_some_and(|n| n.is_dir()) {
                continue;
            }
            let pchars: Vec<char> = part.chars().collect();
            for name in tree.children(dir)? {
                let nchars: Vec<char> = name.chars().collect();
                if go_match(&pchars, &nchars) {
                    let p = if dir.is_empty() { name } else { format!("{dir}/{name}") };
                    if last || tree.node(&p)?.is_some_and(|n| n.is_dir()) {
                        next.push(p);
                    }
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// Go's `filepath.Match` for one path component.
pub fn go_match(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni])
                        && ok
                    {
                        pi += len;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                c if c != '\\' && c != '?' && c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) if n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the class at the start of `p` (`[...]`); returns (matched, length).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = if ch == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            ch
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|x| *x != ']') {
            hi = if p[i + 1] == '\\' {
                i += 1;
                *p.get(i + 1)?
            } else {
                p[i + 1]
            };
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        go_match(&p.chars().collect::<Vec<_>>(), &n.chars().collect::<Vec<_>>())
    }

    #[test]
    fn filepath_match() {
        assert!(m("*.whl", "a.whl") && m("*.whl", ".hidden.whl") && !m("*.whl", "a.txt"));
        assert!(m("*builder.txt", "builder.txt") && m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("[a-c]x", "bx") && !m("[^a-c]x", "bx") && m("[^a-c]x", "dx"));
        assert!(m("\\*", "*") && !m("\\*", "a"));
        assert!(m("*", "") && m("a*b*c", "aXbYc") && !m("a*b*c", "aXbY"));
    }

    #[test]
    fn dir_tree_globs_ignores_and_resolves() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("prebuilt/sub")).unwrap();
        fs::write(r.join("prebuilt/a.whl"), "a").unwrap();
        fs::write(r.join("prebuilt/b.txt"), "b").unwrap();
        fs::write(r.join("prebuilt/sub/c.whl"), "c").unwrap();
        fs::write(r.join("x-builder.txt"), "x").unwrap();
        fs::write(r.join("secret.key"), "k").unwrap();
        std::os::unix::fs::symlink("../../etc", r.join("up")).unwrap();
        std::os::unix::fs::symlink("prebuilt", r.join("pl")).unwrap();
        let ign = Matcher::parse("*.key\n", ".dockerignore").unwrap();
        let t = DirTree::open(r, "ctx", ign, None).unwrap();
        assert_eq!(glob(&t, "prebuilt/*.whl").unwrap(), vec!["prebuilt/a.whl"]);
        assert_eq!(glob(&t, "*builder.txt").unwrap(), vec!["x-builder.txt"]);
        assert_eq!(glob(&t, "*prebuilt/*").unwrap(), vec!["prebuilt/a.whl", "prebuilt/b.txt", "prebuilt/sub"]);
        assert!(glob(&t, "pl/*").unwrap().is_empty(), "symlinked dirs are not walked");
        assert!(glob(&t, "*.key").unwrap().is_empty());
        assert!(t.node("secret.key").unwrap().is_none());
        assert!(t.excluded("secret.key").unwrap().contains(".dockerignore:1: *.key"));
        let res = t.resolve("up/passwd");
        assert!(res.escaped && res.path == "etc/passwd");
        assert_eq!(t.resolve("pl/a.whl").path, "prebuilt/a.whl");
        let n = t.node("prebuilt/a.whl").unwrap().unwrap();
        let Kind::File(c) = n.kind else { panic!() };
        assert_eq!(c.id, Digest::of(b"a").to_string());
    }
}
