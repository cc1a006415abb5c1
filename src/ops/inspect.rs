//! `spxpack inspect`: what an archive, layout or registry image holds: tags, platform, image ID,
//! manifest, and per layer its digest, diff_id, size and compression.

use serde::Serialize;

use crate::error::Result;
use crate::image::{Image, media};
use crate::platform::Platform;
use crate::progress::human_size;
use crate::source::{Resolver, Source};

#[derive(Debug, Serialize)]
pub struct LayerReport {
    pub digest: String,
    pub diff_id: Option<String>,
    pub size: u64,
    pub media_type: String,
    pub compression: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub origin: String,
    pub tags: Vec<String>,
    pub platform: String,
    /// sha256 of the config bytes: the image ID Docker shows.
    pub id: String,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    pub created: Option<String>,
    pub layers: Vec<LayerReport>,
    /// Sum of the layer blob sizes.
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub source: String,
    pub images: Vec<ImageReport>,
}

pub fn image_report(img: &Image, tags: Vec<String>) -> ImageReport {
    let diff_ids = &img.config.rootfs.diff_ids;
    ImageReport {
        origin: img.origin.clone(),
        tags,
        platform: img.platform().to_string(),
        id: img.id().to_string(),
        manifest_digest: img.manifest_digest().to_string(),
        manifest_media_type: img.manifest.media_type.clone().unwrap_or_else(|| media::OCI_MANIFEST.into()),
        index_digest: img.index_digest.as_ref().map(|d| d.to_string()),
        created: img.config.created.clone(),
        layers: img
            .manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerReport {
                digest: l.digest.to_string(),
                diff_id: diff_ids.get(i).map(|d| d.to_string()),
                size: l.size,
                media_type: l.media_type.clone(),
                compression: match media::layer_compression(&l.media_type) {
                    Some(media::LayerCompression::None) => "none",
                    Some(media::LayerCompression::Gzip) => "gzip",
                    Some(media::LayerCompression::Zstd) => "zstd",
                    None => "unknown",
                },
            })
            .collect(),
        size: img.layers_size(),
    }
}

/// Inspects every image of `src` (for a registry or layout, the one for `platform`).
pub fn inspect(resolver: &Resolver, src: &Source, platform: &Platform) -> Result<Report> {
    let images = resolver.resolve_all(src, platform)?;
    Ok(Report {
        source: src.to_string(),
        images: images.iter().map(|i| image_report(i, i.suggested_tags.clone())).collect(),
    })
}

/// Human-readable rendering.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    for (n, i) in r.images.iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        let tags = if i.tags.is_empty() { "<none>".to_string() } else { i.tags.join(", ") };
        s += &format!("image {n}: {}\n", i.origin);
        s += &format!("  tags:      {tags}\n");
        s += &format!("  platform:  {}\n", i.platform);
        s += &format!("  id:        {}\n", i.id);
        s += &format!("  manifest:  {} ({})\n", i.manifest_digest, i.manifest_media_type);
        if let Some(x) = &i.index_digest {
            s += &format!("  index:     {x}\n");
        }
        if let Some(c) = &i.created {
            s += &format!("  created:   {c}\n");
        }
        s += &format!("  layers:    {} ({})\n", i.layers.len(), human_size(i.size));
        for l in &i.layers {
            s += &format!(
                "    {}  {:>10}  {:<4}  diff_id {}\n",
                l.digest,
                human_size(l.size),
                l.compression,
                l.diff_id.as_deref().unwrap_or("?")
            );
        }
    }
    s
}
