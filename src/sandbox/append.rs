//! Appending layers made by RUN steps to an image: the config gets the new `diff_ids` and
//! `history` entries (other fields are kept as they were, in their order), the manifest the new
//! layer descriptors, and the image's blob source serves the new layer files.
//!
//! (The Dockerfile builder will own image mutation; this is the minimum the sandbox's tests and
//! the hidden `sandbox-run` command need, and moves there at integration.)

use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use super::diff::NewLayer;
use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::image::{BlobReader, BlobSource, ConfigView, Descriptor, Image, Manifest, media};

/// Serves new layer files and delegates everything else to the base image's source.
pub struct WithLayers {
    base: Arc<dyn BlobSource>,
    files: HashMap<Digest, PathBuf>,
}

impl BlobSource for WithLayers {
    fn open(&self, desc: &Descriptor) -> Result<BlobReader> {
        match self.files.get(&desc.digest) {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| Error::io("cannot open layer", p, e))?;
                Ok(Box::new(VerifyingReader::new(
                    BufReader::with_capacity(1 << 20, f),
                    desc.digest.clone(),
                    desc.size,
                    format!("built layer {}", desc.digest),
                )))
            }
            None => self.base.open(desc),
        }
    }
    fn describe(&self) -> String {
        format!("built layers over {}", self.base.describe())
    }
    fn prefetch(&self, desc: &Descriptor) -> Result<bool> {
        if self.files.contains_key(&desc.digest) { Ok(false) } else { self.base.prefetch(desc) }
    }
    fn is_local(&self) -> bool {
        self.base.is_local()
    }
}

/// `image` with `layers` (each with its history `created_by`) on top. `created` is the RFC 3339
/// time for the history entries and the config (`SOURCE_DATE_EPOCH`, for reproducibility).
pub fn append_layers(image: &Image, layers: &[(NewLayer, String)], created: &str) -> Result<Image> {
    let bad = |e: serde_json::Error| Error::internal(format!("cannot edit the config of {}: {e}", image.origin));
    let mut config: serde_json::Value = serde_json::from_slice(&image.config_raw).map_err(bad)?;
    let obj =
        config.as_object_mut().ok_or_else(|| Error::input(format!("config of {} is not an object", image.origin)))?;
    let diff_ids = obj
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(|d| d.as_array_mut())
        .ok_or_else(|| Error::input(format!("config of {} has no rootfs.diff_ids", image.origin)))?;
    for (l, _) in layers {
        diff_ids.push(serde_json::Value::String(l.diff_id.to_string()));
    }
    let history = obj.entry("history").or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(h) = history.as_array_mut() {
        for (_, by) in layers {
            h.push(serde_json::json!({ "created": created, "created_by": by }));
        }
    }
    obj.insert("created".into(), serde_json::Value::String(created.into()));
    let config_raw = serde_json::to_vec(&config).map_err(bad)?;
    let config_view: ConfigView = serde_json::from_slice(&config_raw).map_err(bad)?;

    let docker = image.manifest.media_type.as_deref() == Some(media::DOCKER_MANIFEST);
    let layer_type = if docker { media::DOCKER_LAYER_GZIP } else { media::OCI_LAYER_GZIP };
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest_raw).map_err(bad)?;
    let mo = manifest.as_object_mut().ok_or_else(|| Error::input("manifest is not an object"))?;
    let mut cfg_desc = image.manifest.config.clone();
    cfg_desc.digest = Digest::of(&config_raw);
    cfg_desc.size = config_raw.len() as u64;
    mo.insert("config".into(), serde_json::to_value(&cfg_desc).map_err(bad)?);
    let mut files = HashMap::new();
    if let Some(ls) = mo.get_mut("layers").and_then(|l| l.as_array_mut()) {
        for (l, _) in layers {
            ls.push(serde_json::to_value(Descriptor::new(layer_type, l.digest.clone(), l.size)).map_err(bad)?);
            files.insert(l.digest.clone(), l.path.clone());
        }
    }
    let manifest_raw = serde_json::to_vec(&manifest).map_err(bad)?;
    let manifest = Manifest::parse(&manifest_raw, "built manifest")?;
    Ok(Image {
        manifest_raw,
        manifest,
        config_raw,
        config: config_view,
        source: Arc::new(WithLayers { base: image.source.clone(), files }),
        origin: format!("{} + {} RUN layer(s)", image.origin, layers.len()),
        suggested_tags: Vec::new(),
        index_digest: None,
    })
}

/// RFC 3339 UTC time of a Unix timestamp (`SOURCE_DATE_EPOCH`).
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_epochs() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
