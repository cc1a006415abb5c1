//! Planning COPY and ADD: which entries the new layer gets, with the classic builder's
//! destination rules (a trailing `/`, `.` or an existing directory means "into"; directories
//! copy their contents; parents are created `0755`), ownership (`--chown`, else root),
//! `--chmod`, hard links within the copy, local archives unpacked by ADD and remote files
//! fetched by ADD. The plan is pure data: its serialisation is the build-cache key, and the
//! layer writer turns it into bytes.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read, Write};
use std::sync::Arc;

use super::fsview::{Content, ContentSrc, FsView, Kind, Node, PathKey, base_name, normalize, parent};
use super::instructions::Loc;
use super::layer_reader::Staging;
use super::tree::{Tree, glob, has_wildcards};
use crate::digest::Hasher;
use crate::error::{Error, Result};

/// One entry of a planned layer.
#[derive(Debug, Clone)]
pub struct PlanEntry {
    pub node: Node,
    /// A hard link to this path inside the same layer.
    pub hardlink: Option<String>,
    /// A directory the copy had to create (a missing parent or destination), not a copied one.
    pub implied: bool,
}

/// The entries of a new layer, in walk order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub entries: BTreeMap<PathKey, PlanEntry>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    fn get(&self, p: &str) -> Option<&PlanEntry> {
        self.entries.get(&PathKey(p.to_string()))
    }
    fn put(&mut self, p: &str, e: PlanEntry) {
        self.entries.insert(PathKey(p.to_string()), e);
    }
}

/// A COPY/ADD source after variable expansion.
#[derive(Debug, Clone)]
pub enum Source {
    Path(String),
    Url(String),
    Inline { name: String, body: Vec<u8> },
}

/// A COPY/ADD after variable expansion.
pub struct CopyRequest<'a> {
    pub name: &'static str,
    pub loc: &'a Loc,
    pub sources: Vec<Source>,
    pub dest: String,
    pub workdir: &'a str,
    pub owner: (u64, u64),
    /// Keep the source's owners instead of `owner` (`RUN --mount=type=bind` of a stage).
    pub keep_owners: bool,
    pub chmod: Option<u32>,
    /// ADD: unpack local archives, decompressing within these limits.
    pub unpack: Option<crate::compress::Limits>,
    /// Network timeouts of `ADD <url>`.
    pub timeouts: crate::http::Timeouts,
}

struct Planner<'a> {
    view: &'a FsView,
    plan: Plan,
    req: &'a CopyRequest<'a>,
    links: HashMap<(u64, u64), String>,
}

impl Planner<'_> {
    fn lookup(&self, p: &str) -> Option<Node> {
        if p.is_empty() {
            return Some(Node::dir(0o755, 0, 0, 0));
        }
        match self.plan.get(p) {
            Some(e) => Some(e.node.clone()),
            None => self.view.get(p).cloned(),
        }
    }
    fn is_dir(&self, p: &str) -> bool {
        self.lookup(p).is_some_and(|n| n.is_dir())
    }

    /// Creates the missing ancestors of `p` (not `p` itself) as 0755 directories of `owner`.
    fn parents(&mut self, p: &str, owner: (u64, u64)) -> Result<()> {
        let mut missing = Vec::new();
        let mut cur = parent(p);
        while let Some(d) = cur.filter(|d| !d.is_empty()) {
            match self.lookup(d) {
                Some(n) if n.is_dir() => break,
                Some(_) => {
                    return Err(self
                        .req
                        .loc
                        .error(format!("{} cannot create /{p}: /{d} exists and is not a directory", self.req.name)));
                }
                None => missing.push(d.to_string()),
            }
            cur = parent(d);
        }
        for d in missing.into_iter().rev() {
            self.plan.put(&d, PlanEntry { node: Node::dir(0o755, owner.0, owner.1, 0), hardlink: None, implied: true });
        }
        Ok(())
    }

    fn mode(&self, n: &Node) -> u32 {
        match (&n.kind, self.req.chmod) {
            (Kind::Symlink(_), _) | (_, None) => n.mode,
            (_, Some(m)) => m,
        }
    }

    /// Adds one entry taken from a source tree at `dest`.
    fn add(&mut self, tree: &dyn Tree, src: &str, mut n: Node, dest: &str) {
        n.mode = self.mode(&n);
        if !self.req.keep_owners {
            n.uid = self.req.owner.0;
            n.gid = self.req.owner.1;
        }
        let mut hardlink = None;
        if matches!(n.kind, Kind::File(_))
            && let Some(ino) = tree.inode(src)
        {
            match self.links.get(&ino) {
                Some(first) => hardlink = Some(first.clone()),
                None => {
                    self.links.insert(ino, dest.to_string());
                }
            }
        }
        self.plan.put(dest, PlanEntry { node: n, hardlink, implied: false });
    }
}

/// A source of a COPY/ADD: a path of the source tree, or a file made from elsewhere (heredoc,
/// URL).
enum Item {
    Tree { path: String, named: String, node: Node },
    File { name: String, node: Node },
}

/// Step 1 of [`plan`]: the sources, wildcards expanded, as items.
fn collect_items(req: &CopyRequest, tree: &dyn Tree, staging: &Staging) -> Result<Vec<Item>> {
    let loc = req.loc;
    let mut items = Vec::new();
    for s in &req.sources {
        match s {
            Source::Inline { name, body } => {
                let mut h = Hasher::new();
                h.update(body);
                let c = Content { id: h.finish().to_string(), src: ContentSrc::Inline(Arc::new(body.clone())) };
                let node = Node { kind: Kind::File(c), mode: 0o644, uid: 0, gid: 0, mtime: 0, size: body.len() as u64 };
                items.push(Item::File { name: name.clone(), node });
            }
            Source::Url(u) => {
                let (name, node) = super::fetch::download(u, staging, loc, req.timeouts)?;
                items.push(Item::File { name, node });
            }
            Source::Path(s) => {
                let rel = normalize(s);
                if has_wildcards(s) {
                    for m in glob(tree, &rel)? {
                        let r = tree.resolve(&m);
                        if let Some(node) = tree.node(&r.path)? {
                            items.push(Item::Tree { path: r.path, named: m, node });
                        }
                    }
                    continue;
                }
                let r = tree.resolve(&rel);
                if r.too_many_links {
                    return Err(loc.error(format!("{} source {s}: too many levels of symbolic links", req.name)));
                }
                match tree.node(&r.path)? {
                    Some(node) => items.push(Item::Tree { path: r.path, named: rel, node }),
                    None => return Err(missing_source(req, tree, s, &rel, &r)),
                }
            }
        }
    }
    Ok(items)
}

/// Plans a COPY/ADD against `view` (the destination stage) reading from `tree`.
pub fn plan(req: &CopyRequest, view: &FsView, tree: &dyn Tree, staging: &Staging) -> Result<Plan> {
    let mut p = Planner { view, plan: Plan::default(), req, links: HashMap::new() };
    let loc = req.loc;
    let items = collect_items(req, tree, staging)?;
    if items.is_empty() {
        return Err(loc
            .error(format!("{}: no source files were specified: the wildcards matched nothing", req.name))
            .with_hint(format!("check the patterns against {}", tree.describe())));
    }
    // 2. destination
    let dir_syntax = req.dest.ends_with('/')
        || req.dest == "."
        || req.dest.ends_with("/.")
        || req.dest == ".."
        || req.dest.ends_with("/..");
    if items.len() > 1 && !dir_syntax {
        return Err(loc
            .error(format!(
                "when using {} with more than one source file, the destination must be a directory and end with a /",
                req.name
            ))
            .with_hint(format!("write the destination as {}/", req.dest.trim_end_matches('/'))));
    }
    let abs = if req.dest.starts_with('/') { req.dest.clone() } else { format!("{}/{}", req.workdir, req.dest) };
    let dest = view.resolve(&normalize(&abs), true);
    if dest.too_many_links {
        return Err(loc.error(format!("destination {}: too many levels of symbolic links", req.dest)));
    }
    let dest = dest.path;
    let root = (0, 0);
    for it in items {
        match it {
            Item::Tree { path, named, node } if node.is_dir() => {
                // the directory's contents go into dest
                match p.lookup(&dest) {
                    Some(n) if !n.is_dir() => {
                        return Err(loc.error(format!(
                            "{} cannot copy directory {} to /{dest}: it exists and is not a directory",
                            req.name,
                            if named.is_empty() { "." } else { &named }
                        )));
                    }
                    Some(_) => {}
                    None => {
                        p.parents(&dest, root)?;
                        p.plan.put(
                            &dest,
                            PlanEntry {
                                node: Node::dir(0o755, req.owner.0, req.owner.1, 0),
                                hardlink: None,
                                implied: true,
                            },
                        );
                    }
                }
                walk_into(&mut p, tree, &path, &dest)?;
            }
            Item::Tree { path, named, node } => {
                if req.unpack.is_some() && matches!(node.kind, Kind::File(_)) && is_archive(&node)? {
                    if p.lookup(&dest).is_some_and(|n| !n.is_dir()) {
                        return Err(loc.error(format!("ADD cannot unpack {named} into /{dest}: it is not a directory")));
                    }
                    if !p.is_dir(&dest) {
                        p.parents(&dest, root)?;
                        p.plan.put(&dest, PlanEntry { node: Node::dir(0o755, 0, 0, 0), hardlink: None, implied: true });
                    }
                    unpack(&mut p, &node, &named, &dest, staging)?;
                    continue;
                }
                let target = file_target(&p, dir_syntax, &dest, base_name(&named));
                p.parents(&target, req.owner)?;
                p.add(tree, &path, node, &target);
            }
            Item::File { name, mut node } => {
                let target = file_target(&p, dir_syntax, &dest, &name);
                p.parents(&target, req.owner)?;
                node.mode = req.chmod.unwrap_or(node.mode);
                node.uid = req.owner.0;
                node.gid = req.owner.1;
                p.plan.put(&target, PlanEntry { node, hardlink: None, implied: false });
            }
        }
    }
    Ok(p.plan)
}

fn file_target(p: &Planner, dir_syntax: bool, dest: &str, name: &str) -> String {
    if dir_syntax || p.is_dir(dest) {
        if dest.is_empty() { name.to_string() } else { format!("{dest}/{name}") }
    } else {
        dest.to_string()
    }
}

fn missing_source(req: &CopyRequest, tree: &dyn Tree, s: &str, rel: &str, r: &super::fsview::Resolved) -> Error {
    let loc = req.loc;
    if let Some(why) = tree.excluded(&r.path).or_else(|| tree.excluded(rel)) {
        return loc
            .error(format!("{} source {s} is excluded by .dockerignore ({why})", req.name))
            .with_hint(format!("remove that pattern, or add the line !{rel} to the ignore file"));
    }
    if r.escaped {
        return loc
            .error(format!(
                "{} source {s} leads outside {} through a symlink ({})",
                req.name,
                tree.describe(),
                r.via.join(", ")
            ))
            .with_hint("symlinks are resolved inside the context; copy the target into the context instead");
    }
    loc.error(format!("{} source {s} not found in {}", req.name, tree.describe()))
        .with_hint("source paths are relative to the context directory given on the command line")
}

/// Copies everything below `src` in `tree` to below `dest`.
fn walk_into(p: &mut Planner, tree: &dyn Tree, src: &str, dest: &str) -> Result<()> {
    for name in tree.children(src)? {
        let s = if src.is_empty() { name.clone() } else { format!("{src}/{name}") };
        let d = if dest.is_empty() { name.clone() } else { format!("{dest}/{name}") };
        let Some(node) = tree.node(&s)? else { continue };
        let is_dir = node.is_dir();
        p.add(tree, &s, node, &d);
        if is_dir {
            walk_into(p, tree, &s, &d)?;
        }
    }
    Ok(())
}

fn open_content(c: &Content) -> Result<Box<dyn Read + Send>> {
    match &c.src {
        ContentSrc::Local(p) => {
            Ok(Box::new(std::fs::File::open(p.as_ref()).map_err(|e| Error::io("cannot read", p.as_ref(), e))?))
        }
        ContentSrc::Inline(b) => Ok(Box::new(std::io::Cursor::new(b.to_vec()))),
        ContentSrc::Layer { .. } => Err(Error::internal("archive detection on a layer entry")),
    }
}

/// Whether a local file is a tar archive (plain, gzip, bzip2 or xz), as ADD decides.
fn is_archive(n: &Node) -> Result<bool> {
    let Kind::File(c) = &n.kind else { return Ok(false) };
    if matches!(c.src, ContentSrc::Layer { .. }) {
        return Ok(false);
    }
    let r = BufReader::new(open_content(c)?);
    let Ok((_, r)) = crate::compress::decompress(r) else { return Ok(false) };
    let mut ar = tar::Archive::new(r);
    let first = ar.entries().ok().and_then(|mut e| e.next());
    Ok(matches!(first, Some(Ok(_))))
}

/// ADD of a local archive: its entries go below `dest` with their own owners and modes.
fn unpack(p: &mut Planner, n: &Node, named: &str, dest: &str, staging: &Staging) -> Result<()> {
    let loc = p.req.loc;
    let Kind::File(c) = &n.kind else { return Ok(()) };
    let limits = p.req.unpack.unwrap_or_default();
    let mut br = BufReader::with_capacity(1 << 20, open_content(c)?);
    let bad = |e: std::io::Error| match crate::compress::bomb(&e) {
        Some(b) => loc
            .error(format!("ADD {named}: {}", b.0))
            .with_hint("a decompression bomb? If the archive is genuine, raise --max-decompressed or --max-ratio"),
        None => loc.error(format!("ADD cannot read archive {named}: {e}")),
    };
    let kind = crate::compress::sniff(std::io::BufRead::fill_buf(&mut br).map_err(bad)?);
    let r = crate::compress::limited_decoder(kind, br, limits)
        .ok_or_else(|| loc.error(format!("ADD cannot read archive {named}: zstd is not supported")))?;
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let clean = super::dockerignore::clean(raw.trim_start_matches('/'));
        if clean == ".." || clean.starts_with("../") {
            return Err(loc.error(format!("ADD archive {named} has an entry outside its root: {raw}")));
        }
        let rel = normalize(&clean);
        if rel.is_empty() {
            continue;
        }
        if base_name(&rel).starts_with(".wh.") {
            return Err(loc.error(format!("ADD archive {named} contains a whiteout entry {raw}; it cannot be added")));
        }
        let h = e.header().clone();
        let target = if dest.is_empty() { rel.clone() } else { format!("{dest}/{rel}") };
        let owner = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let mtime = h.mtime().unwrap_or(0);
        let t = h.entry_type();
        let (kind, hardlink, size) = if t.is_dir() {
            (Kind::Dir, None, 0)
        } else if t.is_symlink() {
            let l = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default();
            (Kind::Symlink(l), None, 0)
        } else if t.is_hard_link() {
            let l = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default();
            let lt = normalize(&super::dockerignore::clean(&l));
            let full = if dest.is_empty() { lt } else { format!("{dest}/{lt}") };
            let Some(existing) = p.plan.get(&full).cloned() else {
                return Err(
                    loc.error(format!("ADD archive {named}: hard link {raw} points to {l}, which is not in it"))
                );
            };
            (existing.node.kind.clone(), Some(full), existing.node.size)
        } else if t.is_file() || t == tar::EntryType::Continuous {
            let path = staging.new_path(base_name(&rel));
            let mut f = std::fs::File::create(&path).map_err(|x| Error::io("cannot create", &path, x))?;
            let mut h2 = Hasher::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let k = e.read(&mut buf).map_err(bad)?;
                if k == 0 {
                    break;
                }
                h2.update(&buf[..k]);
                f.write_all(&buf[..k]).map_err(|x| Error::io("cannot write", &path, x))?;
                size += k as u64;
            }
            (Kind::File(Content { id: h2.finish().to_string(), src: ContentSrc::Local(Arc::new(path)) }), None, size)
        } else if matches!(t, tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) {
            let maj = h.device_major().ok().flatten().unwrap_or(0);
            let min = h.device_minor().ok().flatten().unwrap_or(0);
            (Kind::Other(t.as_byte(), maj, min), None, 0)
        } else {
            continue; // PAX/GNU metadata entries are handled by the reader
        };
        p.parents(&target, (0, 0))?;
        let node = Node { kind, mode, uid: owner.0, gid: owner.1, mtime, size };
        p.plan.put(&target, PlanEntry { node, hardlink, implied: false });
    }
    Ok(())
}

/// Parses `--chmod` (octal, up to 07777).
pub fn parse_chmod(s: &str, loc: &Loc) -> Result<u32> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(loc
            .error(format!("invalid chmod parameter {s:?}: it should be an octal number between 0 and 07777"))
            .with_hint("e.g. --chmod=755 or --chmod=0644")),
    }
}

/// Resolves `--chown=user[:group]` against the image's `/etc/passwd` and `/etc/group`.
/// Without a group, a numeric user keeps its number as group and a named user gets its
/// primary group.
pub fn parse_chown(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<(u64, u64)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) if !g.contains(':') => (u, Some(g)),
        Some(_) => return Err(Error::input(format!("invalid chown string format: {spec}"))),
        None => (spec, None),
    };
    if u.is_empty() {
        return Err(Error::input(format!("invalid chown string format: {spec}")));
    }
    let find = |file: Option<&str>, what: &str, name: &str| -> Result<Vec<String>> {
        let Some(text) = file else {
            return Err(Error::input(format!(
                "cannot find {what} {name}: the image has no /etc/{}",
                if what == "user" { "passwd" } else { "group" }
            )));
        };
        text.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.first().map(String::as_str) == Some(name))
            .ok_or_else(|| Error::input(format!("no such {what}: {name}")))
    };
    let (uid, primary) = match u.parse::<u64>() {
        Ok(n) => (n, n),
        Err(_) => {
            let f = find(passwd, "user", u)?;
            let uid = f
                .get(2)
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| Error::input(format!("bad /etc/passwd entry for {u}")))?;
            let gid = f
                .get(3)
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| Error::input(format!("bad /etc/passwd entry for {u}")))?;
            (uid, gid)
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let f = find(group, "group", g)?;
                f.get(2)
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(|| Error::input(format!("bad /etc/group entry for {g}")))?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_specs() {
        let pw = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
        let gr = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";
        assert_eq!(parse_chown("1:2", None, None).unwrap(), (1, 2));
        assert_eq!(parse_chown("7", None, None).unwrap(), (7, 7));
        assert_eq!(parse_chown("app", Some(pw), Some(gr)).unwrap(), (1000, 1001));
        assert_eq!(parse_chown("app:staff", Some(pw), Some(gr)).unwrap(), (1000, 50));
        assert_eq!(parse_chown("0:app", Some(pw), Some(gr)).unwrap(), (0, 1001));
        assert!(parse_chown("nobody", Some(pw), Some(gr)).unwrap_err().to_string().contains("no such user: nobody"));
        assert!(parse_chown("app:nogroup", Some(pw), Some(gr)).unwrap_err().to_string().contains("no such group"));
        assert!(parse_chown("app", None, None).unwrap_err().to_string().contains("/etc/passwd"));
        assert!(parse_chown("a:b:c", None, None).is_err());
    }
}
