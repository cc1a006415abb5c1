//! The certificates a registry connection trusts: the system store, `--ca-cert` files, and
//! `*.crt` files of `--cert-dir` and the `certs.d` directories Docker and podman read
//! (`/etc/docker/certs.d`, `/etc/containers/certs.d`, `~/.config/containers/certs.d`).

use std::path::PathBuf;

use super::ClientOptions;
use crate::error::{Error, Result};

/// Every certificate to trust for `opts`, system store first.
pub(super) fn trusted_certificates(opts: &ClientOptions) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let mut certs: Vec<ureq::tls::Certificate<'static>> = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        certs.push(ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
    }
    let mut ca_files: Vec<PathBuf> = opts.ca_certs.clone();
    // Docker's and podman's per-registry CA directories: <dir>/<host[:port]>/*.crt
    let mut dirs: Vec<PathBuf> = opts.cert_dirs.clone();
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    dirs.push(PathBuf::from("/etc/containers/certs.d"));
    if let Some(h) = opts.env.path("HOME") {
        dirs.push(h.join(".config/containers/certs.d"));
    }
    for d in &dirs {
        ca_files.extend(crt_files(d, opts.cert_dirs.contains(d)));
    }
    for path in &ca_files {
        let pem = crate::input::read(path, crate::input::MAX_TEXT)
            .map_err(|e| Error::io("cannot read CA certificate", path, e))?;
        let mut n = 0;
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => {
                    certs.push(c.to_owned());
                    n += 1;
                }
                Ok(_) => {}
                Err(e) => return Err(Error::input(format!("invalid CA certificate file {}: {e}", path.display()))),
            }
        }
        if n == 0 {
            return Err(Error::input(format!("{} contains no PEM certificate", path.display()))
                .with_hint("pass a PEM file with -----BEGIN CERTIFICATE----- blocks"));
        }
    }
    Ok(certs)
}

/// `*.crt` files in `dir` and its subdirectories (one level). A missing directory is fine unless
/// the user named it.
fn crt_files(dir: &std::path::Path, named: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        if named {
            tracing::warn!("--cert-dir {} cannot be read", dir.display());
        }
        return out;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if let Ok(sub) = std::fs::read_dir(&p) {
                let mut s: Vec<PathBuf> =
                    sub.flatten().map(|e| e.path()).filter(|f| f.extension().is_some_and(|x| x == "crt")).collect();
                s.sort();
                out.extend(s);
            }
        } else if p.extension().is_some_and(|x| x == "crt") {
            out.push(p);
        }
    }
    out
}
