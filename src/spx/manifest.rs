//! The extension `manifest.json`: strict parsing (duplicate keys are errors), every rule of
//! `docs/spx-format.md` ("Fields", "Extension name", "Script manifest processing") checked at
//! once with the JSON path of each problem, and the defaults the SDK script adds
//! (`installation_target`, `date`) appended in its order while the user's key order is kept.

use serde_json::{Map, Value};

mod date;

pub use date::{date_from_epoch, parse_iso8601};

use super::json::{self, child, index};
use super::{Target, suggest};
use crate::error::{Error, Result};
use crate::problem::Problems;

/// Every key the robot or the SDK documents.
pub const KNOWN_KEYS: [&str; 10] = [
    "description",
    "version",
    "icon",
    "udev_rules",
    "images",
    "extension_name",
    "installation_target",
    "files_to_save",
    "directories_to_save",
    "date",
];

/// Manifests larger than this are refused.
pub const MAX_SIZE: usize = 1 << 20;

/// Parses `bytes`; problems go to `findings` (labelled with `file`). `None` if unusable.
pub fn parse(bytes: &[u8], file: &str, findings: &mut Problems) -> Option<Map<String, Value>> {
    if bytes.len() > MAX_SIZE {
        findings.error(format!("{file}: {} bytes, more than the {MAX_SIZE} byte limit", bytes.len()), None);
        return None;
    }
    let (v, dups) = match json::parse_strict(bytes) {
        Ok(x) => x,
        Err(e) => {
            findings.error(
                format!("{file}: invalid JSON at line {} column {}: {}", e.line, e.column, e.message),
                Some("fix the syntax (JSON allows no comments and no trailing commas)"),
            );
            return None;
        }
    };
    for d in dups {
        findings.error(
            format!("{file}: {d}: duplicate key"),
            Some("remove one of them: JSON readers disagree on which value wins"),
        );
    }
    match v {
        Value::Object(m) => Some(m),
        other => {
            findings.error(format!("{file}: $: must be a JSON object, found {}", kind(&other)), None);
            None
        }
    }
}

/// The JSON type name of `v`, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where a manifest is checked.
pub struct Rules<'a> {
    /// Label in messages: `manifest.json` or `x.spx: manifest.json`.
    pub file: &'a str,
    /// Without `extension_name` the robot names the extension after the SPX file: (stem, file name).
    pub spx_name: Option<(&'a str, &'a str)>,
    /// Checking a finished SPX: missing defaults are reported instead of added.
    pub packaged: bool,
}

/// Whether Python's truthiness test (`not d.get(key)`) would call `key` missing.
pub fn is_missing(m: &Map<String, Value>, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
    }
}

/// Checks every rule and appends the problems to `findings`: the errors in rule order, then the
/// warnings.
pub fn check(m: &Map<String, Value>, r: &Rules, findings: &mut Problems) {
    let mut c = Check { file: r.file, errors: findings, warnings: Problems::new() };
    check_version(m, &mut c);
    if let Some(v) = m.get("description")
        && !v.is_string()
    {
        c.err("$.description", format!("must be a string, found {}", kind(v)), None);
    }
    check_extension_name(m, r, &mut c);
    check_installation_target(m, r, &mut c);
    check_date(m, &mut c);
    check_member_files(m, &mut c);
    check_images(m, &mut c);
    check_save_paths(m, &mut c);
    check_unknown_keys(m, &mut c);
    let Check { errors, warnings, .. } = c;
    errors.extend(warnings);
}

/// The problems of one manifest check: errors go straight to the caller's list, warnings are
/// added after every error.
struct Check<'a> {
    file: &'a str,
    errors: &'a mut Problems,
    warnings: Problems,
}

impl Check<'_> {
    fn err(&mut self, path: &str, msg: String, hint: Option<&str>) {
        self.errors.error(format!("{}: {path}: {msg}", self.file), hint);
    }
    fn warn(&mut self, path: &str, msg: String, hint: Option<&str>) {
        self.warnings.warn(format!("{}: {path}: {msg}", self.file), hint);
    }
}

fn check_version(m: &Map<String, Value>, c: &mut Check) {
    match m.get("version") {
        None | Some(Value::Null) => {
            c.err("$.version", "missing (required)".into(), Some("add e.g. \"version\": \"1.0.0\""))
        }
        Some(Value::String(s)) if s.is_empty() => {
            c.err("$.version", "must not be empty".into(), Some("set e.g. \"version\": \"1.0.0\""))
        }
        Some(Value::String(s)) => {
            if !is_xyz(s) {
                c.warn(
                    "$.version",
                    format!("{s:?} is not in X.Y.Z form"),
                    Some("the SDK script rejects it when extension_name is missing"),
                );
            }
        }
        Some(v) => c.err("$.version", format!("must be a string, found {}", kind(v)), None),
    }
}

/// `extension_name`, or without it the SPX file name the robot then uses.
fn check_extension_name(m: &Map<String, Value>, r: &Rules, c: &mut Check) {
    match m.get("extension_name") {
        Some(Value::String(s)) if !s.is_empty() => {
            if let Err(why) = check_name(s) {
                c.err("$.extension_name", format!("{s:?} {}", why.message()), Some(NAME_HINT));
            }
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {
            if let Some((stem, shown)) = r.spx_name
                && let Err(why) = check_name(stem)
            {
                c.err(
                    "$.extension_name",
                    format!(
                        "not set, so the robot names the extension after the file {shown}, and {stem:?} {}",
                        why.message()
                    ),
                    Some("set extension_name in manifest.json, or choose another output file name"),
                );
            }
        }
        Some(v) => c.err("$.extension_name", format!("must be a string, found {}", kind(v)), None),
    }
}

fn check_installation_target(m: &Map<String, Value>, r: &Rules, c: &mut Check) {
    match m.get("installation_target") {
        Some(Value::String(s)) if !s.is_empty() && Target::parse(s).is_none() => c.err(
            "$.installation_target",
            format!("{s:?} is not one of spot, orbit"),
            Some("use \"spot\" for CORE I/O (arm64) or \"orbit\" for Orbit (amd64)"),
        ),
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(v) if !is_missing(m, "installation_target") => {
            c.err("$.installation_target", format!("must be a string, found {}", kind(v)), None)
        }
        _ if r.packaged => c.warn(
            "$.installation_target",
            "not set; the robot assumes \"spot\"".into(),
            Some("Orbit extensions must set \"orbit\""),
        ),
        _ => {}
    }
}

fn check_date(m: &Map<String, Value>, c: &mut Check) {
    match m.get("date") {
        Some(Value::String(s)) if !s.is_empty() => {
            if let Err(why) = parse_iso8601(s) {
                c.err(
                    "$.date",
                    format!("{s:?} is not an ISO 8601 date: {}", why.message()),
                    Some("use e.g. 2025-05-12T22:10:15"),
                );
            }
        }
        Some(v) if !is_missing(m, "date") => c.err("$.date", format!("must be a string, found {}", kind(v)), None),
        _ => {}
    }
}

/// `icon`, `udev_rules`: a file in the SPX.
fn check_member_files(m: &Map<String, Value>, c: &mut Check) {
    for key in ["icon", "udev_rules"] {
        let path = child("$", key);
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                if let Err(why) = check_member_path(s) {
                    c.err(&path, format!("{s:?} {why}"), Some("name a file stored in the SPX, relative to its root"));
                } else if key == "udev_rules" && !s.ends_with(".rules") {
                    c.warn(&path, format!("{s:?} does not end in .rules"), Some("udev ignores other files"));
                }
            }
            Some(v) => c.err(&path, format!("must be a string, found {}", kind(v)), None),
        }
    }
}

/// `images`: plain, distinct archive file names.
fn check_images(m: &Map<String, Value>, c: &mut Check) {
    let a = match m.get("images") {
        None | Some(Value::Null) => return,
        Some(Value::Array(a)) => a,
        Some(v) => return c.err("$.images", format!("must be an array of file names, found {}", kind(v)), None),
    };
    let mut seen = Vec::new();
    for (i, v) in a.iter().enumerate() {
        let path = index("$.images", i);
        let Some(s) = v.as_str() else {
            c.err(&path, format!("must be a string, found {}", kind(v)), None);
            continue;
        };
        if s.is_empty() || s.contains('/') || s.contains('\\') || s == "." || s == ".." {
            c.err(
                &path,
                format!("{s:?} must be a plain file name"),
                Some("image archives are stored at the root of the SPX; list their file names"),
            );
        } else if !super::is_archive_name(s) {
            c.warn(
                &path,
                format!("{s:?} does not end in .tar, .tar.gz or .tgz"),
                Some("the SDK script only writes those"),
            );
        }
        if seen.contains(&s) {
            c.err(&path, format!("{s:?} is listed twice"), None);
        }
        seen.push(s);
    }
}

/// `files_to_save`, `directories_to_save`: paths under `/data/.extensions/<name>`.
fn check_save_paths(m: &Map<String, Value>, c: &mut Check) {
    for key in ["files_to_save", "directories_to_save"] {
        let path = child("$", key);
        let a = match m.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(v) => {
                c.err(&path, format!("must be an array of paths, found {}", kind(v)), None);
                continue;
            }
        };
        for (i, v) in a.iter().enumerate() {
            let p = index(&path, i);
            match v.as_str() {
                None => c.err(&p, format!("must be a string, found {}", kind(v)), None),
                Some(s) => {
                    if let Err(why) = check_member_path(s) {
                        c.err(
                            &p,
                            format!("{s:?} {why}"),
                            Some("paths are relative to the extension directory on the robot"),
                        );
                    }
                }
            }
        }
    }
}

/// Keys the robot ignores, with a guess at the one meant.
fn check_unknown_keys(m: &Map<String, Value>, c: &mut Check) {
    for k in m.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        let guess = match k.as_str() {
            "extension_target" | "target" | "install_target" => Some("installation_target"),
            "name" => Some("extension_name"),
            "image" => Some("images"),
            _ => suggest(k, &KNOWN_KEYS),
        };
        let msg = match guess {
            Some(g) => format!("unknown key; did you mean {g:?}?"),
            None => "unknown key; the robot ignores it".to_string(),
        };
        c.warn(&child("$", k), msg, None);
    }
}

const NAME_HINT: &str = "use only letters, digits, '-' and '_', without \"coreio\" or \"mission_control\"";

/// The extension name rules (`docs/spx-format.md`, "Extension name"). The reserved words are matched without
/// regard to case.
/// The error's message is the reason, to follow the quoted name (`"x y" contains ' '; …`).
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::input("is empty"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(Error::input(format!(
            "contains {c:?}; extension names may only contain letters, digits, '-' and '_'"
        )));
    }
    let lower = name.to_ascii_lowercase();
    for reserved in ["coreio", "mission_control"] {
        if lower.contains(reserved) {
            return Err(Error::input(format!("contains the reserved word {reserved:?}")));
        }
    }
    Ok(())
}

/// A path stored in (or saved from) the extension directory: relative, no `..`, no `\`.
pub fn check_member_path(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("is empty");
    }
    if p.starts_with('/') {
        return Err("is absolute; it must be relative to the extension directory");
    }
    if p.contains('\\') || p.contains('\0') {
        return Err("contains a backslash or NUL");
    }
    if p.split('/').any(|c| c == "..") {
        return Err("leaves the extension directory ('..')");
    }
    if p.split('/').all(|c| c.is_empty() || c == ".") {
        return Err("names the extension directory itself");
    }
    Ok(())
}

fn is_xyz(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Sets `key` to `value` when Python's truthiness would call it missing: an existing key keeps
/// its position (as a Python dict assignment does), a new one is appended. Returns whether it
/// changed anything.
pub fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) -> bool {
    if !is_missing(m, key) {
        return false;
    }
    m.insert(key.to_string(), value);
    true
}

/// A convenience view of a manifest's string fields.
pub fn get_str<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The `images` list (string entries only).
pub fn images(m: &Map<String, Value>) -> Vec<String> {
    match m.get("images") {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// The target named by `installation_target`, `spot` when it is missing.
pub fn target(m: &Map<String, Value>) -> Option<Target> {
    match get_str(m, "installation_target") {
        None => Some(Target::Spot),
        Some(s) => Target::parse(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, packaged: bool) -> Vec<String> {
        let mut f = Problems::new();
        if let Some(m) = parse(src.as_bytes(), "manifest.json", &mut f) {
            check(&m, &Rules { file: "manifest.json", spx_name: Some(("my ext", "my ext.spx")), packaged }, &mut f);
        }
        f.0.iter().map(|x| format!("{:?}: {}", x.severity, x.message)).collect()
    }

    #[test]
    fn every_problem_with_its_path() {
        let got = run(
            r#"{"version": 1, "installation_target": "robot", "extension_name": "my_coreio",
                "images": ["a.tar.gz", "sub/b.tgz", 3, "a.tar.gz"], "icon": "../x.png", "date": "yesterday",
                "files_to_save": ["/etc/x"], "extension_target": "spot", "udev_rules": "x.rule"}"#,
            false,
        );
        let want = [
            "Error: manifest.json: $.version: must be a string, found a number",
            "Error: manifest.json: $.extension_name: \"my_coreio\" contains the reserved word \"coreio\"",
            "Error: manifest.json: $.installation_target: \"robot\" is not one of spot, orbit",
            "Error: manifest.json: $.date: \"yesterday\" is not an ISO 8601 date: expected YYYY-MM-DD",
            "Error: manifest.json: $.icon: \"../x.png\" leaves the extension directory ('..')",
            "Error: manifest.json: $.images[1]: \"sub/b.tgz\" must be a plain file name",
            "Error: manifest.json: $.images[2]: must be a string, found a number",
            "Error: manifest.json: $.images[3]: \"a.tar.gz\" is listed twice",
            "Error: manifest.json: $.files_to_save[0]: \"/etc/x\" is absolute; it must be relative to the extension directory",
            "Warning: manifest.json: $.udev_rules: \"x.rule\" does not end in .rules",
            "Warning: manifest.json: $.extension_target: unknown key; did you mean \"installation_target\"?",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn missing_version_name_fallback_and_duplicates() {
        let got = run(r#"{"description": "d", "description": "e"}"#, true);
        assert_eq!(
            got,
            [
                "Error: manifest.json: $.description: duplicate key",
                "Error: manifest.json: $.version: missing (required)",
                "Error: manifest.json: $.extension_name: not set, so the robot names the extension after the file my ext.spx, and \"my ext\" contains ' '; extension names may only contain letters, digits, '-' and '_'",
                "Warning: manifest.json: $.installation_target: not set; the robot assumes \"spot\"",
            ]
        );
        assert_eq!(run("[1]", false), ["Error: manifest.json: $: must be a JSON object, found an array"]);
        let e = run("{\"version\": \"1.0\",}", false);
        assert!(e[0].contains("invalid JSON at line 1 column 19: trailing comma"), "{e:?}");
        assert_eq!(
            run(r#"{"version": "1.0", "extension_name": "ok-name_1"}"#, false),
            ["Warning: manifest.json: $.version: \"1.0\" is not in X.Y.Z form"]
        );
    }

    #[test]
    fn defaults_keep_positions() {
        let mut m: Map<String, Value> =
            serde_json::from_str(r#"{"installation_target": "", "version": "1.0.0"}"#).unwrap();
        assert!(set_default(&mut m, "installation_target", "spot".into()));
        assert!(set_default(&mut m, "date", date_from_epoch(0).into()));
        assert!(!set_default(&mut m, "version", "x".into()));
        assert_eq!(
            json::python_dumps(&Value::Object(m)),
            r#"{"installation_target": "spot", "version": "1.0.0", "date": "1970-01-01T00:00:00"}"#
        );
    }

    #[test]
    fn names_say_why() {
        assert!(check_name("my-ext_1").is_ok());
        let why = |name: &str| check_name(name).unwrap_err().message().to_string();
        assert_eq!(why(""), "is empty");
        assert_eq!(why("a.b"), "contains '.'; extension names may only contain letters, digits, '-' and '_'");
        assert_eq!(why("My_Mission_Control"), "contains the reserved word \"mission_control\"");
    }

    #[test]
    fn errors_come_before_warnings_and_nothing_is_reported_twice() {
        let got = run(
            r#"{"version": "1", "extension_name": "ok", "images": ["a.zip", "a.zip"], "files_to_save": "x",
                "directories_to_save": [1], "icon": 2, "descripton": "x"}"#,
            false,
        );
        assert_eq!(
            got,
            [
                "Error: manifest.json: $.icon: must be a string, found a number",
                "Error: manifest.json: $.images[1]: \"a.zip\" is listed twice",
                "Error: manifest.json: $.files_to_save: must be an array of paths, found a string",
                "Error: manifest.json: $.directories_to_save[0]: must be a string, found a number",
                "Warning: manifest.json: $.version: \"1\" is not in X.Y.Z form",
                "Warning: manifest.json: $.images[0]: \"a.zip\" does not end in .tar, .tar.gz or .tgz",
                "Warning: manifest.json: $.images[1]: \"a.zip\" does not end in .tar, .tar.gz or .tgz",
                "Warning: manifest.json: $.descripton: unknown key; did you mean \"description\"?",
            ]
        );
    }
}
