//! Parsed views of manifests, indexes, descriptors and configs. Parsing rejects duplicate keys
//! and oversized documents; the raw bytes stay authoritative.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::media;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;

/// Manifests, indexes and configs larger than this are refused before parsing.
pub const MAX_JSON: usize = 8 << 20;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor { media_type: media_type.to_string(), digest, size, urls: None, annotations: None, platform: None }
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The parts of an image config spxpack reads. Unknown fields are ignored here and kept in the
/// raw bytes.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigView {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    pub rootfs: RootFs,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub history: Option<Vec<serde_json::Value>>,
}

impl ConfigView {
    pub fn platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// Parses a JSON document of a known kind, refusing oversized input, with an error naming
/// `what` (e.g. `manifest of 127.0.0.1:5000/busybox:multi`).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    if bytes.len() > MAX_JSON {
        return Err(Error::input(format!("{what} is {} bytes, more than the {} byte limit", bytes.len(), MAX_JSON)));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::input(format!("invalid {what}: {e}")))
}

impl Manifest {
    /// Parses and checks an image manifest.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        let m: Manifest = parse_json(bytes, what)?;
        if m.schema_version != 2 {
            return Err(Error::unsupported(format!(
                "{what} has schemaVersion {}; only schema 2 is supported",
                m.schema_version
            ))
            .with_hint("re-push the image with a current docker or skopeo to convert it"));
        }
        if let Some(mt) = &m.media_type
            && !media::is_manifest(mt)
        {
            return Err(Error::input(format!("{what} has mediaType {mt:?}, not an image manifest")));
        }
        for (i, l) in m.layers.iter().enumerate() {
            if media::layer_compression(&l.media_type).is_none() {
                return Err(Error::unsupported(format!(
                    "{what}: layer {i} ({}) has unsupported media type {:?}",
                    l.digest, l.media_type
                )));
            }
        }
        Ok(m)
    }
}

impl Index {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        let i: Index = parse_json(bytes, what)?;
        if i.schema_version != 2 {
            return Err(Error::unsupported(format!("{what} has schemaVersion {}", i.schema_version)));
        }
        Ok(i)
    }
}

/// The kind of a manifest-like document, from its declared media type or its shape.
pub fn sniff_manifest_kind(bytes: &[u8], content_type: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
        #[serde(default)]
        fs_layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = p.media_type.filter(|m| !m.is_empty()) {
        return Some(mt);
    }
    if p.schema_version == Some(1) || p.fs_layers.is_some() {
        return Some(media::DOCKER_MANIFEST_V1.to_string());
    }
    if let Some(ct) = content_type.map(|c| c.split(';').next().unwrap_or("").trim())
        && (media::is_index(ct) || media::is_manifest(ct))
    {
        return Some(ct.to_string());
    }
    if p.manifests.is_some() {
        return Some(media::OCI_INDEX.to_string());
    }
    if p.layers.is_some() {
        return Some(media::OCI_MANIFEST.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys_and_bad_descriptors() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let dup = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{d}","size":1}},"layers":[],"layers":[]}}"#
        );
        assert!(Manifest::parse(dup.as_bytes(), "m").unwrap_err().to_string().contains("duplicate"));
        let neg = format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{d}","size":-1}},"layers":[]}}"#);
        assert!(Manifest::parse(neg.as_bytes(), "m").is_err());
        let upper = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:E3B0","size":1},"layers":[]}"#;
        assert!(Manifest::parse(upper.as_bytes(), "m").is_err());
        let s1 = format!(r#"{{"schemaVersion":1,"config":{{"mediaType":"x","digest":"{d}","size":1}},"layers":[]}}"#);
        assert!(Manifest::parse(s1.as_bytes(), "m").unwrap_err().to_string().contains("schemaVersion 1"));
        let ok = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"x","digest":"{d}","size":1}},"layers":[{{"mediaType":"{}","digest":"{d}","size":0}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_LAYER_GZIP
        );
        assert_eq!(Manifest::parse(ok.as_bytes(), "m").unwrap().layers.len(), 1);
    }
}
