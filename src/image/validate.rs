//! Checks an image against what the target's Docker (20.10 on CORE I/O) accepts on
//! `docker load`, collecting every problem ([`Problem`], the same type the SPX checks report)
//! instead of stopping at the first.

use super::{Image, media};
use crate::platform::Platform;
use crate::problem::Problem;

/// Docker's `maxLayerDepth`.
pub const MAX_LAYERS: usize = 125;

/// Checks layer count vs `diff_ids`, layer compression Docker 20.10 can read, foreign layers,
/// OS and (when given) the platform. Every problem is an error.
pub fn check(image: &Image, want: Option<&Platform>) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |message: String, hint: Option<&str>| out.push(Problem::error(message, hint));
    let n_layers = image.manifest.layers.len();
    let n_diff = image.config.rootfs.diff_ids.len();
    if n_layers != n_diff {
        push(
            format!("{}: manifest lists {n_layers} layers but the config has {n_diff} diff_ids", image.origin),
            Some("the image is malformed; rebuild or re-push it"),
        );
    }
    if n_layers > MAX_LAYERS {
        push(
            format!("{}: {n_layers} layers, more than Docker's limit of {MAX_LAYERS}", image.origin),
            Some("squash the image into fewer layers"),
        );
    }
    if image.config.rootfs.kind != "layers" {
        push(
            format!("{}: config rootfs.type is {:?}, expected \"layers\"", image.origin, image.config.rootfs.kind),
            None,
        );
    }
    if image.config.os != "linux" {
        push(format!("{}: image OS is {:?}, the robot runs linux", image.origin, image.config.os), None);
    }
    for (i, l) in image.manifest.layers.iter().enumerate() {
        match media::layer_compression(&l.media_type) {
            Some(media::LayerCompression::Zstd) => push(
                format!(
                    "{}: layer {i} ({}) is zstd-compressed; Docker 20.10 on CORE I/O cannot load it",
                    image.origin, l.digest
                ),
                Some("re-push the image with gzip layers (e.g. skopeo copy --dest-compress-format gzip)"),
            ),
            None => push(format!("{}: layer {i} has unsupported media type {:?}", image.origin, l.media_type), None),
            _ => {}
        }
        if media::is_foreign_layer(&l.media_type) || l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            push(
                format!("{}: layer {i} ({}) is a foreign layer with external URLs", image.origin, l.digest),
                Some("foreign (non-distributable) layers are not downloaded; use a Linux image without them"),
            );
        }
    }
    if let Some(want) = want {
        let have = image.platform();
        if !have.satisfies(want) {
            push(
                format!("{}: image is {have}, not the requested {}", image.origin, want.normalized()),
                Some("pass --platform with the image's platform, or pick an image built for the target"),
            );
        }
    }
    out
}
