//! A merged view of an image's filesystem: the layers' entries applied in order (whiteouts and
//! opaque directories honoured), with metadata and a reference to where each file's bytes are
//! (a local file, an entry of a layer blob, or inline bytes). It answers what COPY needs —
//! does a path exist, is it a directory, where do its symlinks lead (resolved inside the root,
//! like Docker's `FollowSymlinkInScope`) — without extracting anything.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::Digest;

/// Where a file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSrc {
    /// A file on this machine (build context, staged download or extraction).
    Local(Arc<PathBuf>),
    /// An entry of a layer blob (read by extracting that entry).
    Layer {
        blob: Digest,
        gzip: bool,
        path: String,
    },
    Inline(Arc<Vec<u8>>),
}

/// A file's content: a stable identity (used in cache keys) and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// `sha256:<hex>` of the bytes, or `<layer digest>:<path>` for layer entries.
    pub id: String,
    pub src: ContentSrc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Content),
    Symlink(String),
    /// Devices, FIFOs: kept as tar entries (`typeflag`, major, minor).
    Other(u8, u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits plus setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
}

impl Node {
    pub fn dir(mode: u32, uid: u64, gid: u64, mtime: u64) -> Self {
        Node { kind: Kind::Dir, mode, uid, gid, mtime, size: 0 }
    }
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }
}

/// A path key ordered component by component (`a` < `a/b` < `a-b`), the order a directory
/// walk produces; paths are relative to the root, without a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathKey(pub String);

impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let map = |b: u8| if b == b'/' { 0 } else { b };
        self.0.bytes().map(map).cmp(other.0.bytes().map(map))
    }
}
impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The merged filesystem.
#[derive(Debug, Clone, Default)]
pub struct FsView {
    nodes: BTreeMap<PathKey, Node>,
}

/// One entry of a layer, as applied to a view.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    pub path: String,
    pub node: Option<Node>,
    /// A hard link to another path (resolved against the view as applied so far).
    pub hardlink: Option<String>,
}

/// Splits a path into clean components (drops `.`, empty parts and a leading `/`; keeps `..`).
pub fn components(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Normalises an absolute or relative path to a root-relative key (`..` clamped at the root).
pub fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in components(p) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.join("/")
}

pub fn parent(p: &str) -> Option<&str> {
    if p.is_empty() {
        return None;
    }
    Some(p.rfind('/').map(|i| &p[..i]).unwrap_or(""))
}

pub fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

impl FsView {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node at a normalised path (`""` is the root, always a directory).
    pub fn get(&self, p: &str) -> Option<&Node> {
        self.nodes.get(&PathKey(p.to_string()))
    }

    pub fn is_dir(&self, p: &str) -> bool {
        p.is_empty() || self.get(p).is_some_and(Node::is_dir)
    }

    pub fn exists(&self, p: &str) -> bool {
        p.is_empty() || self.get(p).is_some()
    }

    /// Every path strictly below `dir`, in walk order.
    pub fn subtree<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let start = PathKey(prefix.clone());
        self.nodes
            .range(start..)
            .take_while(move |(k, _)| prefix.is_empty() || k.0.starts_with(&prefix))
            .filter(|(k, _)| !k.0.is_empty())
            .map(|(k, v)| (k.0.as_str(), v))
    }

    /// Every path, in walk order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.0.as_str(), v))
    }

    fn remove_tree(&mut self, p: &str) {
        self.nodes.remove(&PathKey(p.to_string()));
        let below: Vec<PathKey> = self.subtree(p).map(|(k, _)| PathKey(k.to_string())).collect();
        for k in below {
            self.nodes.remove(&k);
        }
    }

    /// Inserts a node, creating missing parents as `0755` root directories and replacing
    /// whatever was there (a non-directory replacing a directory removes its subtree).
    pub fn insert(&mut self, p: &str, node: Node) {
        if p.is_empty() {
            return;
        }
        self.ensure_parents(p);
        if let Some(old) = self.get(p)
            && old.is_dir()
            && !node.is_dir()
        {
            self.remove_tree(p);
        }
        self.nodes.insert(PathKey(p.to_string()), node);
    }

    fn ensure_parents(&mut self, p: &str) {
        let mut cur = parent(p);
        let mut missing = Vec::new();
        while let Some(d) = cur {
            if d.is_empty() || self.is_dir(d) {
                break;
            }
            missing.push(d.to_string());
            cur = parent(d);
        }
        for d in missing.into_iter().rev() {
            if self.get(&d).is_some() {
                self.remove_tree(&d);
            }
            self.nodes.insert(PathKey(d), Node::dir(0o755, 0, 0, 0));
        }
    }

    /// Applies one layer's entries (with whiteouts) on top of the view.
    pub fn apply(&mut self, entries: &[LayerEntry]) {
        let mut added: BTreeSet<String> = BTreeSet::new();
        let mut opaque: Vec<String> = Vec::new();
        for e in entries {
            let p = normalize(&e.path);
            let name = base_name(&p);
            if name == ".wh..wh..opq" {
                opaque.push(parent(&p).unwrap_or("").to_string());
                continue;
            }
            if let Some(victim) = name.strip_prefix(".wh.") {
                let dir = parent(&p).unwrap_or("");
                self.remove_tree(&join(dir, victim));
                continue;
            }
            if let Some(target) = &e.hardlink {
                let t = normalize(target);
                if let Some(n) = self.get(&t).cloned() {
                    self.insert(&p, n);
                    added.insert(p);
                }
                continue;
            }
            if let Some(n) = &e.node {
                self.insert(&p, n.clone());
                added.insert(p);
            }
        }
        if opaque.is_empty() {
            return;
        }
        // an opaque directory hides what lower layers had in it; keep what this layer added
        // (and the directories leading to it)
        let mut keep = added.clone();
        for a in &added {
            let mut cur = parent(a);
            while let Some(d) = cur.filter(|d| !d.is_empty()) {
                keep.insert(d.to_string());
                cur = parent(d);
            }
        }
        for dir in opaque {
            let lower: Vec<String> =
                self.subtree(&dir).map(|(k, _)| k.to_string()).filter(|k| !keep.contains(k)).collect();
            for k in lower {
                self.nodes.remove(&PathKey(k));
            }
        }
    }

    /// Resolves `p` inside the root, following symlinks in every component (the last one only
    /// when `follow_last`). Missing components are kept as written. Returns the resolved
    /// normalised path and whether a symlink pointed outside the root (and was clamped).
    pub fn resolve(&self, p: &str, follow_last: bool) -> Resolved {
        resolve_with(p, follow_last, |k| match self.get(k).map(|n| &n.kind) {
            Some(Kind::Symlink(t)) => Some(t.clone()),
            _ => None,
        })
    }
}

/// A path resolved inside a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: String,
    /// A symlink on the way pointed outside the root and was clamped to it.
    pub escaped: bool,
    /// The symlinks followed (`link -> target`), for messages.
    pub via: Vec<String>,
    /// More than 255 links were followed (a cycle).
    pub too_many_links: bool,
}

/// Resolution shared by image views and the build context: `link(path)` returns the target
/// of the symlink at a normalised path, or `None` when it is not a symlink.
pub fn resolve_with(p: &str, follow_last: bool, link: impl Fn(&str) -> Option<String>) -> Resolved {
    let mut todo: Vec<String> = components(p).rev().map(str::to_string).collect();
    let mut done: Vec<String> = Vec::new();
    let mut escaped = false;
    let mut via = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            if done.pop().is_none() {
                escaped = true;
            }
            continue;
        }
        done.push(c);
        let cur = done.join("/");
        if todo.is_empty() && !follow_last {
            break;
        }
        if let Some(target) = link(&cur) {
            hops += 1;
            if hops > 255 {
                return Resolved { path: cur, escaped, via, too_many_links: true };
            }
            via.push(format!("{cur} -> {target}"));
            done.pop();
            if target.starts_with('/') {
                escaped = true;
                done.clear();
            }
            for t in components(&target).collect::<Vec<_>>().into_iter().rev() {
                todo.push(t.to_string());
            }
        }
    }
    Resolved { path: done.join("/"), escaped, via, too_many_links: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str) -> Node {
        Node {
            kind: Kind::File(Content { id: id.into(), src: ContentSrc::Inline(Arc::new(vec![])) }),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
        }
    }
    fn link(t: &str) -> Node {
        Node { kind: Kind::Symlink(t.into()), mode: 0o777, uid: 0, gid: 0, mtime: 0, size: 0 }
    }
    fn e(p: &str, n: Node) -> LayerEntry {
        LayerEntry { path: p.into(), node: Some(n), hardlink: None }
    }

    #[test]
    fn layers_whiteouts_and_opaque_dirs() {
        let mut v = FsView::new();
        v.apply(&[e("a/", Node::dir(0o700, 0, 0, 0)), e("a/x", file("1")), e("a/y", file("2")), e("b/c", file("3"))]);
        assert!(v.is_dir("b"), "implicit parent");
        assert_eq!(v.get("a").unwrap().mode, 0o700);
        v.apply(&[e("./a/.wh.x", file("")), e("b/.wh..wh..opq", file("")), e("b/new", file("4"))]);
        assert!(!v.exists("a/x") && v.exists("a/y"));
        assert!(!v.exists("b/c") && v.exists("b/new"));
        v.apply(&[e("a", file("5"))]);
        assert!(!v.exists("a/y"), "a file replacing a directory removes its subtree");
        let names: Vec<&str> = v.iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["a", "b", "b/new"]);
        let mut h = FsView::new();
        h.apply(&[e("f", file("9")), LayerEntry { path: "g".into(), node: None, hardlink: Some("f".into()) }]);
        assert_eq!(h.get("g"), h.get("f"));
    }

    #[test]
    fn resolves_in_scope() {
        let mut v = FsView::new();
        v.insert("usr/bin", Node::dir(0o755, 0, 0, 0));
        v.insert("bin", link("usr/bin"));
        v.insert("usr/bin/sh", link("busybox"));
        v.insert("etc/up", link("../../../outside"));
        v.insert("abs", link("/usr"));
        v.insert("loop", link("loop"));
        assert_eq!(v.resolve("/bin/sh", true).path, "usr/bin/busybox");
        assert_eq!(v.resolve("/bin/sh", false).path, "usr/bin/sh");
        assert_eq!(v.resolve("bin/new/x", true).path, "usr/bin/new/x");
        let r = v.resolve("etc/up/x", true);
        assert_eq!(r.path, "outside/x");
        assert!(r.escaped);
        assert_eq!(v.resolve("abs/bin", true).path, "usr/bin");
        assert!(v.resolve("loop", true).too_many_links);
        let order: Vec<&str> = {
            let mut s: Vec<PathKey> =
                ["a-b", "a/b", "a", "a/b/c", "ab"].iter().map(|s| PathKey(s.to_string())).collect();
            s.sort();
            s.into_iter()
                .map(|k| match k.0.as_str() {
                    "a" => "a",
                    "a/b" => "a/b",
                    "a/b/c" => "a/b/c",
                    "a-b" => "a-b",
                    _ => "ab",
                })
                .collect()
        };
        assert_eq!(order, vec!["a", "a/b", "a/b/c", "a-b", "ab"]);
    }
}
