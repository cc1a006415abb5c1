//! `USER` for a step: a name, uid, `name:group` or `uid:gid` resolved against the rootfs'
//! `/etc/passwd` and `/etc/group` (read inside the root, never the host's).

use std::path::Path;

use super::fsutil;
use crate::error::{Error, Result};

/// Resolves a Dockerfile `USER` value (`name`, `uid`, `name:group`, `uid:gid`) against the
/// rootfs' `/etc/passwd` and `/etc/group` (read inside the root, never the host's).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32)> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let read = |rel: &str| -> String {
        fsutil::read_in_root(rootfs, rel, 16 << 20)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let passwd = read("etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, passwd_field(&passwd, |f| f[2] == u).and_then(|f| f[3].parse().ok()).unwrap_or(n)),
        Err(_) => {
            let f = passwd_field(&passwd, |f| f[0] == u)
                .ok_or_else(|| Error::input(format!("USER {u}: no such user in the image's /etc/passwd")))?;
            (
                f[2].parse().map_err(|_| Error::input(format!("bad uid for {u} in /etc/passwd")))?,
                f[3].parse().unwrap_or(0),
            )
        }
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = read("etc/group");
                passwd_field(&group, |f| f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| Error::input(format!("USER {user}: no such group {g} in the image's /etc/group")))?
            }
        },
    };
    Ok((uid, gid))
}

/// The home directory of `uid` in the rootfs' `/etc/passwd`, as Docker sets `HOME` for `USER`.
pub fn home_of(rootfs: &Path, uid: u32) -> Option<String> {
    let passwd = fsutil::read_in_root(rootfs, "etc/passwd", 16 << 20).ok().flatten()?;
    let text = String::from_utf8_lossy(&passwd);
    passwd_field(&text, |f| f[2] == uid.to_string() && f.len() >= 6).map(|f| f[5].to_string()).filter(|h| !h.is_empty())
}

fn passwd_field(text: &str, pred: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    text.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 4 && pred(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_users_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
            .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(d.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(d.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_user(d.path(), "1000").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(d.path(), "4242:7").unwrap(), (4242, 7));
        assert!(resolve_user(d.path(), "nobody").is_err());
        assert_eq!(home_of(d.path(), 1000).as_deref(), Some("/home/app"));
        assert_eq!(home_of(d.path(), 4242), None);
    }
}
