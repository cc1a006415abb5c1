//! Editing an image config the way Docker does, without disturbing what the build does not
//! touch: the base config is parsed with key order preserved, fields are changed in place (new
//! keys go last), history entries and diff_ids are appended, and the result is re-serialised
//! compactly. Timestamps come from the build epoch, never from the clock. Also the checks of
//! the values EXPOSE and STOPSIGNAL write.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::instructions::Health;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image config being edited. Every edit costs time independent of the number of earlier
/// instructions (a 20,000-line Dockerfile builds in linear time): `Env` has an index by name,
/// map fields are sorted once when the bytes are written, and the history is aligned with the
/// layers once, at the first commit.
#[derive(Debug, Clone)]
pub struct Config {
    root: Value,
    /// `Env` name → index of its first entry in the `Env` array.
    env_index: HashMap<String, usize>,
    /// Map fields `map_insert` added to, sorted by [`Config::to_bytes`].
    unsorted: BTreeSet<String>,
    /// The history has an entry for every layer (true after the first commit).
    aligned: bool,
}

impl Config {
    fn new(root: Value) -> Self {
        let mut c = Config { root, env_index: HashMap::new(), unsorted: BTreeSet::new(), aligned: false };
        c.reindex_env();
        c
    }

    /// Parses a base image config.
    pub fn parse(raw: &[u8], what: &str) -> Result<Self> {
        let root: Value =
            serde_json::from_slice(raw).map_err(|e| Error::input(format!("invalid config of {what}: {e}")))?;
        if !root.is_object() {
            return Err(Error::input(format!("config of {what} is not a JSON object")));
        }
        Ok(Config::new(root))
    }

    /// The config of `FROM scratch`.
    pub fn scratch(p: &Platform) -> Self {
        let mut root = json!({"architecture": p.architecture, "os": p.os});
        if let Some(v) = p.variant.as_deref().filter(|v| !v.is_empty()) {
            root["variant"] = json!(v);
        }
        root["config"] = json!({"Env": [format!("PATH={DEFAULT_PATH}")], "WorkingDir": "/"});
        root["rootfs"] = json!({"type": "layers", "diff_ids": []});
        root["history"] = json!([]);
        Config::new(root)
    }

    fn obj(&mut self) -> &mut Map<String, Value> {
        self.root.as_object_mut().expect("object")
    }

    /// The `config` object (created if missing or null).
    fn cfg(&mut self) -> &mut Map<String, Value> {
        let o = self.obj();
        if !o.get("config").is_some_and(Value::is_object) {
            o.insert("config".into(), json!({}));
        }
        o.get_mut("config").and_then(Value::as_object_mut).expect("object")
    }

    fn cfg_ref(&self) -> Option<&Map<String, Value>> {
        self.root.get("config").and_then(Value::as_object)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.cfg_ref()?.get(key).filter(|v| !v.is_null())
    }

    pub fn set(&mut self, key: &str, v: Value) {
        self.cfg().insert(key.to_string(), v);
        self.unsorted.remove(key);
        if key == "Env" {
            self.reindex_env();
        }
    }

    pub fn remove(&mut self, key: &str) {
        if self.cfg_ref().is_some_and(|c| c.contains_key(key)) {
            self.set(key, Value::Null);
        }
    }

    pub fn strings(&self, key: &str) -> Vec<String> {
        self.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    pub fn string(&self, key: &str) -> String {
        self.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
    }

    fn reindex_env(&mut self) {
        let mut index = HashMap::new();
        if let Some(env) = self.get("Env").and_then(Value::as_array) {
            for (i, e) in env.iter().enumerate() {
                if let Some(e) = e.as_str() {
                    index.entry(env_name(e).to_string()).or_insert(i);
                }
            }
        }
        self.env_index = index;
    }

    pub fn env_get(&self, key: &str) -> Option<String> {
        let i = *self.env_index.get(key)?;
        let e = self.get("Env")?.as_array()?.get(i)?.as_str()?;
        Some(e.split_once('=').map_or("", |(_, v)| v).to_string())
    }

    /// Sets an environment variable in place (or appends it), as Docker's `addEnv`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let item = json!(format!("{key}={value}"));
        let at = self.env_index.get(key).copied();
        let cfg = self.cfg();
        if !cfg.get("Env").is_some_and(Value::is_array) {
            cfg.insert("Env".into(), json!([]));
        }
        let env = cfg.get_mut("Env").and_then(Value::as_array_mut).expect("array");
        match at {
            Some(i) => env[i] = item,
            None => {
                env.push(item);
                let i = env.len() - 1;
                self.env_index.insert(key.to_string(), i);
            }
        }
    }

    /// Adds keys to a map-valued field (`ExposedPorts`, `Volumes`, `Labels`); the field is
    /// sorted like Go's encoder sorts maps when the bytes are written.
    pub fn map_insert(&mut self, field: &str, key: &str, value: Value) {
        let cfg = self.cfg();
        if !cfg.get(field).is_some_and(Value::is_object) {
            cfg.insert(field.to_string(), json!({}));
        }
        cfg.get_mut(field).and_then(Value::as_object_mut).expect("object").insert(key.to_string(), value);
        self.unsorted.insert(field.to_string());
    }

    pub fn set_health(&mut self, h: Option<&Health>) {
        let v = match h {
            None => json!({"Test": ["NONE"]}),
            Some(h) => {
                let mut m = Map::new();
                m.insert("Test".into(), json!(h.test));
                for (k, v) in [
                    ("Interval", h.interval),
                    ("Timeout", h.timeout),
                    ("StartPeriod", h.start_period),
                    ("StartInterval", h.start_interval),
                    ("Retries", h.retries),
                ] {
                    if v != 0 {
                        m.insert(k.into(), json!(v));
                    }
                }
                Value::Object(m)
            }
        };
        self.set("Healthcheck", v);
    }

    pub fn set_top(&mut self, key: &str, v: Value) {
        self.obj().insert(key.to_string(), v);
    }

    fn layer_count(&self) -> usize {
        self.root["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len)
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.root["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Appends a history entry, and the layer's diff_id when there is one.
    pub fn commit(&mut self, created: &str, created_by: &str, layer: Option<&Digest>) {
        let n_layers = self.layer_count();
        let aligned = std::mem::replace(&mut self.aligned, true);
        let o = self.obj();
        if !o.get("history").is_some_and(Value::is_array) {
            o.insert("history".into(), json!([]));
        }
        let hist = o.get_mut("history").and_then(Value::as_array_mut).expect("array");
        // keep history and layers aligned when the base recorded no history for its layers
        // (once: every commit then adds a layer and its entry together)
        if !aligned {
            let recorded = hist.iter().filter(|h| !h["empty_layer"].as_bool().unwrap_or(false)).count();
            for _ in recorded..n_layers {
                hist.push(json!({"created": created, "created_by": ""}));
            }
        }
        let mut h = Map::new();
        h.insert("created".into(), json!(created));
        h.insert("created_by".into(), json!(created_by));
        h.insert("comment".into(), json!("spxpack"));
        if layer.is_none() {
            h.insert("empty_layer".into(), json!(true));
        }
        hist.push(Value::Object(h));
        if let Some(d) = layer {
            let rootfs = o.entry("rootfs").or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
            if !rootfs["diff_ids"].is_array() {
                rootfs["diff_ids"] = json!([]);
            }
            rootfs["diff_ids"].as_array_mut().expect("array").push(json!(d.to_string()));
        }
        o.insert("created".into(), json!(created));
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        if self.unsorted.is_empty() {
            return serde_json::to_vec(&self.root).expect("serialisable");
        }
        let mut root = self.root.clone();
        if let Some(cfg) = root.get_mut("config").and_then(Value::as_object_mut) {
            for field in &self.unsorted {
                if let Some(m) = cfg.get_mut(field).and_then(Value::as_object_mut) {
                    m.sort_keys();
                }
            }
        }
        serde_json::to_vec(&root).expect("serialisable")
    }
}

/// Build args Docker passes to RUN without an ARG instruction.
pub(super) const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Go's `%q` of a string slice: `["a" "b"]`.
pub(super) fn quoted(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| serde_json::to_string(s).expect("json")).collect();
    format!("[{}]", items.join(" "))
}

/// The name of an `Env` entry (`NAME=value`, or a bare `NAME`).
fn env_name(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// EXPOSE port specs: `80`, `80/tcp`, `53/udp`, `8000-8002`, `[ip:]host:container[/proto]`.
pub fn parse_ports(raw: &str) -> Result<Vec<String>> {
    let bad = |why: &str| Error::input(format!("invalid port {raw:?}: {why}"));
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let (port, proto) = match container.split_once('/') {
        Some((p, pr)) => (p, pr.to_lowercase()),
        None => (container, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(&format!("unknown protocol {proto:?} (use tcp, udp or sctp)")));
    }
    let num =
        |s: &str| s.parse::<u32>().ok().filter(|n| *n <= 65535).ok_or_else(|| bad("ports are numbers from 0 to 65535"));
    let (a, b) = match port.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(port)?, num(port)?),
    };
    if b < a {
        return Err(bad("the range ends before it starts"));
    }
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM",
    "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO",
    "PWR", "SYS",
];

/// Docker's `signal.ParseSignal`: a number, `NAME` or `SIGNAME` (also `RTMIN+n`).
pub fn check_signal(s: &str) -> Result<()> {
    if let Ok(n) = s.parse::<u32>() {
        return if n == 0 || n > 64 { Err(Error::input(format!("invalid signal: {s}"))) } else { Ok(()) };
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if SIGNALS.contains(&name)
        || name == "IOT"
        || name == "POLL"
        || name.starts_with("RTMIN")
        || name.starts_with("RTMAX")
    {
        Ok(())
    } else {
        Err(Error::input(format!("invalid signal: {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_order_and_history_aligned() {
        let raw = br#"{"architecture":"arm64","config":{"Env":["PATH=/bin","A=1"],"Cmd":["/bin/sh"]},"created":"x","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;
        let mut c = Config::parse(raw, "base").unwrap();
        c.set_env("A", "2");
        c.set_env("B", "3");
        c.map_insert("ExposedPorts", "80/tcp", json!({}));
        c.map_insert("ExposedPorts", "443/tcp", json!({}));
        c.commit("1970-01-01T00:00:00Z", "ENV A=2 B=3", None);
        c.commit("1970-01-01T00:00:00Z", "COPY x /", Some(&Digest::of(b"l")));
        let out = String::from_utf8(c.to_bytes()).unwrap();
        assert!(out.starts_with(r#"{"architecture":"arm64","config":{"Env":["PATH=/bin","A=2","B=3"],"Cmd":["/bin/sh"],"ExposedPorts":{"443/tcp":{},"80/tcp":{}}},"created":"1970-01-01T00:00:00Z""#), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["history"].as_array().unwrap().len(), 3, "a placeholder for the base layer");
        assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(v["history"][1]["empty_layer"], json!(true));
    }

    #[test]
    fn many_edits_keep_the_semantics_of_single_edits() {
        // the edits are indexed (Env), sorted once (maps) and aligned once (history); this is
        // the shape of a 20,000-line Dockerfile of ENV and LABEL lines
        let mut c = Config::scratch(&Platform::linux_arm64());
        for i in (0..5000).rev() {
            c.set_env(&format!("E{i}"), "old");
            c.set_env(&format!("E{i}"), &i.to_string());
            c.map_insert("Labels", &format!("l{i:05}"), json!("x"));
            c.commit("1970-01-01T00:00:00Z", "ENV", None);
        }
        c.map_insert("Labels", "l00007", json!("y"));
        assert_eq!(c.env_get("E7").as_deref(), Some("7"));
        assert_eq!(c.env_get("PATH").as_deref(), Some(DEFAULT_PATH));
        c.set("Env", json!(["A=1"]));
        assert_eq!((c.env_get("A").as_deref(), c.env_get("E7")), (Some("1"), None));
        let v: Value = serde_json::from_slice(&c.to_bytes()).unwrap();
        let labels: Vec<&String> = v["config"]["Labels"].as_object().unwrap().keys().collect();
        assert!(labels.windows(2).all(|w| w[0] < w[1]) && labels.len() == 5000, "sorted like Go's encoder");
        assert_eq!(v["config"]["Labels"]["l00007"], json!("y"));
        assert_eq!(v["history"].as_array().unwrap().len(), 5000);
    }

    #[test]
    fn history_quotes_like_go() {
        assert_eq!(quoted(&["/bin/sh".into(), "-c".into(), "echo \"x\"".into()]), r#"["/bin/sh" "-c" "echo \"x\""]"#);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ports_and_signals() {
        assert_eq!(parse_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(parse_ports("8000-8002").unwrap(), vec!["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert_eq!(parse_ports("127.0.0.1:80:8080/tcp").unwrap(), vec!["8080/tcp"]);
        assert!(parse_ports("70000").is_err() && parse_ports("80/xyz").is_err() && parse_ports("x").is_err());
        assert!(check_signal("SIGTERM").is_ok() && check_signal("KILL").is_ok() && check_signal("9").is_ok());
        assert!(check_signal("SIGFOO").is_err() && check_signal("0").is_err());
    }
}
