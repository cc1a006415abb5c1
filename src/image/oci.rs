//! OCI names shared by the writers and readers of OCI layouts and docker archives: the
//! annotation keys that carry an image's name, and the OCI form of an image's manifest.

use super::{Descriptor, Image, Manifest, media};

/// The tag of an index entry (`org.opencontainers.image.ref.name`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full name containerd and Docker 25+ give an index entry (`io.containerd.image.name`).
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The OCI manifest bytes stored for an image: the original when it is OCI already, else a
/// conversion of the Docker schema 2 manifest (same config and layers, OCI media types).
pub fn oci_manifest_bytes(image: &Image) -> Vec<u8> {
    if image.manifest.media_type.as_deref() == Some(media::OCI_MANIFEST) {
        return image.manifest_raw.clone();
    }
    let m = &image.manifest;
    let layers = m
        .layers
        .iter()
        .map(|l| {
            let c = media::layer_compression(&l.media_type).unwrap_or(media::LayerCompression::Gzip);
            let mut d = Descriptor::new(media::oci_layer_type(c), l.digest.clone(), l.size);
            d.annotations = l.annotations.clone();
            d
        })
        .collect();
    let oci = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor::new(media::OCI_CONFIG, m.config.digest.clone(), m.config.size),
        layers,
        annotations: m.annotations.clone(),
    };
    serde_json::to_vec(&oci).expect("serialisable")
}
