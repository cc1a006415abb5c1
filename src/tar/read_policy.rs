//! What spxpack's tar readers accept so that every common reader — GNU tar, Python's `tarfile`,
//! Go's `archive/tar` (Docker) and the `tar` crate — sees the same entries. Each rule closes a
//! shape on which they disagree:
//!
//! - **PAX records must be well formed** ([`check_pax`]): the length prefix is the exact record
//!   length, the record ends in `\n` and holds `key=value`. The `tar` crate skips a malformed
//!   record and falls back to the ustar field, while GNU tar and Python refuse the archive (or
//!   read the bytes with another framing).
//! - **Numeric records are numbers**: `size`, `uid`, `gid` must be decimal. The `tar` crate
//!   ignores a non-numeric `size` (and uses the header's); GNU tar calls it malformed.
//! - **A key the readers apply is given once** per header: the `tar` crate takes the first
//!   `path=`, GNU tar and Python the last.
//! - **No GNU sparse records** (`GNU.sparse.*`): GNU tar expands them, the others do not.
//! - **PAX global headers (`g`) carry only archive metadata** ([`check_global`]: `comment`,
//!   times, charsets). GNU tar and Python apply a global `path=`, `size=`, `linkpath=`… to every
//!   following entry; Go and the `tar` crate do not.
//! - **Hard link targets are earlier entries of the archive** ([`hardlink_target`]): a safe
//!   relative name (no `..`, not absolute) of a file that precedes the link.

use std::io::Read;

use super::index::{MAX_HEADER_BYTES, normalize};

/// PAX keys that some reader applies to the entry (so a duplicate is ambiguous).
const APPLIED: &[&str] = &["path", "linkpath", "size", "uid", "gid", "uname", "gname"];
/// PAX keys whose value must be a decimal number.
const NUMERIC: &[&str] = &["size", "uid", "gid"];
/// The only keys a PAX global header may carry.
const GLOBAL_OK: &[&str] = &["comment", "mtime", "atime", "ctime", "charset", "hdrcharset"];

/// Checks the PAX records that describe `entry` (a preceding `x` header), or, for a global
/// header (`g`), the records it carries ([`check_global`]). The error says what is wrong.
pub fn check_pax<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<(), String> {
    let global = entry.header().entry_type() == tar::EntryType::XGlobalHeader;
    if !global {
        let Some(records) = entry.pax_extensions().map_err(|e| format!("cannot read its PAX records: {e}"))? else {
            return Ok(());
        };
        return check_records(records, false);
    }
    if entry.size() > MAX_HEADER_BYTES {
        return Err(format!("a PAX global header of more than {} MiB", MAX_HEADER_BYTES >> 20));
    }
    let mut body = Vec::new();
    entry.read_to_end(&mut body).map_err(|e| format!("cannot read a PAX global header: {e}"))?;
    // after its body is read, any records attached to the entry came from an `x` header before it
    if entry.pax_extensions().ok().flatten().is_some_and(|mut r| r.next().is_some()) {
        return Err("a PAX x header that describes a global header".into());
    }
    check_records(tar::PaxExtensions::new(&body), true)
}

/// The record rules of [`check_pax`] for one header (`global`: a `g` header).
fn check_records(records: tar::PaxExtensions<'_>, global: bool) -> Result<(), String> {
    let mut keys: Vec<String> = Vec::new();
    for rec in records {
        let rec = rec.map_err(|_| {
            "a malformed PAX record (its length prefix is not its length, or it is not `LEN key=value\\n`; \
             GNU tar refuses it, the tar crate skips it)"
                .to_string()
        })?;
        let key = rec.key().map_err(|_| "a PAX record key that is not UTF-8".to_string())?.to_string();
        let value = rec.value_bytes();
        if NUMERIC.contains(&key.as_str()) && (value.is_empty() || !value.iter().all(u8::is_ascii_digit)) {
            let shown = String::from_utf8_lossy(&value[..value.len().min(40)]).into_owned();
            return Err(format!("a PAX {key} record that is not a decimal number ({shown:?}; GNU tar: malformed)"));
        }
        if key.starts_with("GNU.sparse.") {
            return Err(format!("a GNU sparse PAX record ({key}); GNU tar expands sparse files, other readers do not"));
        }
        if global && !GLOBAL_OK.contains(&key.as_str()) {
            return Err(format!(
                "a PAX global header that sets {key:?} for every following entry \
                 (GNU tar and Python apply it; Go and Docker do not)"
            ));
        }
        if APPLIED.contains(&key.as_str()) && keys.contains(&key) {
            return Err(format!("two PAX {key} records for one entry (readers disagree on which one counts)"));
        }
        keys.push(key);
    }
    Ok(())
}

/// Checks the target of the hard link `name`: a safe relative name of an entry that came
/// before it (`earlier` says whether a normalised name did). Returns the normalised target.
pub fn hardlink_target(name: &str, target: &str, earlier: impl Fn(&str) -> bool) -> Result<String, String> {
    let t = match normalize(target) {
        Ok(Some(t)) => t,
        Ok(None) => return Err(format!("hard link {name:?} has no target")),
        Err(why) => return Err(format!("hard link {name:?} points outside the archive ({target:?}: {why})")),
    };
    if !earlier(&t) {
        return Err(format!("hard link {name:?} points to {target:?}, which is not an earlier entry of the archive"));
    }
    Ok(t)
}

#[cfg(test)]
#[path = "read_policy_tests.rs"]
pub(crate) mod tests;
