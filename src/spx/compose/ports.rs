//! `ports:` against what CORE I/O lets in: TCP/UDP 21000–22000 (21443 is its web portal).

use serde_json::{Map, Value};

use super::Rules;
use crate::problem::Problems;
use crate::spx::Target;

/// CORE I/O only lets TCP/UDP 21000–22000 in (21443 is its web portal).
pub(super) fn check_ports(svc: &Map<String, Value>, path: &str, r: &Rules, findings: &mut Problems) {
    let file = r.file;
    let Some(Value::Array(ports)) = svc.get("ports") else { return };
    if ports.is_empty() {
        return;
    }
    if svc.get("network_mode").and_then(Value::as_str) == Some("host") {
        findings.warn(
            format!("{file}: {path}.ports: ignored with network_mode: host (the container uses the host's ports)"),
            Some("remove ports:, or use network_mode: bridge"),
        );
        return;
    }
    if r.target != Target::Spot {
        return;
    }
    for (i, p) in ports.iter().enumerate() {
        let published: Option<String> = match p {
            Value::Number(_) => None,
            Value::String(s) => published_port(s),
            Value::Object(m) => m.get("published").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)),
            _ => continue,
        };
        let where_ = format!("{file}: {path}.ports[{i}]");
        match published {
            None => findings.warn(
                format!("{where_}: {} is published on a random host port, outside CORE I/O's 21000-22000", show(p)),
                Some("publish it on a fixed port in 21000-22000, e.g. \"21000:21000\""),
            ),
            Some(host) => {
                let (lo, hi) = match host.split_once('-') {
                    Some((a, b)) => (a.parse::<u32>().ok(), b.parse::<u32>().ok()),
                    None => (host.parse().ok(), host.parse().ok()),
                };
                let (Some(lo), Some(hi)) = (lo, hi) else {
                    findings.error(format!("{where_}: {} has an invalid host port {host:?}", show(p)), None);
                    continue;
                };
                if lo < 21000 || hi > 22000 {
                    findings.warn(
                        format!("{where_}: host port {host} is outside 21000-22000, which CORE I/O lets in"),
                        Some("use a host port in 21000-22000"),
                    );
                } else if (lo..=hi).contains(&21443) {
                    findings.warn(
                        format!("{where_}: host port 21443 is the CORE I/O web portal"),
                        Some("use another port in 21000-22000"),
                    );
                }
            }
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The host port (or range) of a short-syntax port, `None` when it is chosen at random.
fn published_port(spec: &str) -> Option<String> {
    let spec = spec.split('/').next().unwrap_or(spec);
    // [HOST_IP:][HOST_PORT:]CONTAINER_PORT, HOST_IP may be [v6]
    let rest = match spec.strip_prefix('[') {
        Some(r) => r.split_once("]:").map_or("", |(_, x)| x),
        None => spec,
    };
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        [_] => None,
        [host, _] if spec.starts_with('[') => (!host.is_empty()).then(|| host.to_string()),
        [host, _] => (!host.is_empty()).then(|| host.to_string()),
        [_, host, _] => (!host.is_empty()).then(|| host.to_string()),
        _ => Some(rest.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports() {
        assert_eq!(published_port("50051:50051"), Some("50051".into()));
        assert_eq!(published_port("127.0.0.1:22101:22101"), Some("22101".into()));
        assert_eq!(published_port("8000-8010:8000-8010/tcp"), Some("8000-8010".into()));
        assert_eq!(published_port("[::1]:21000:21000"), Some("21000".into()));
        assert_eq!(published_port("8080"), None);
        assert_eq!(published_port("127.0.0.1::80"), None);
    }
}
