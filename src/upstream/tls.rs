//! The TLS client set-up of `https://` upstreams: which roots are trusted,
//! and the optional client certificate.
//!
//! Owns building one `rustls::ClientConfig` at start-up, and the ureq
//! connector that uses it and times its handshakes. Roots come from
//! `rustls-native-certs`, which reads the files named by `SSL_CERT_FILE`
//! and/or `SSL_CERT_DIR` *instead of* the system store when either is set
//! (so a corporate or test CA is trusted by pointing them at it), else the
//! system store. Never reads a private key into anything but rustls, and
//! never prints one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read { path: PathBuf, message: String },
    /// A file holds no certificate / no private key in PEM form.
    Empty { path: PathBuf, what: &'static str },
    /// rustls refused the set-up (a key that does not match the certificate...).
    Rejected(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, message } => write!(f, "reading {}: {message}", path.display()),
            TlsError::Empty { path, what } => write!(f, "{} holds no PEM {what}", path.display()),
            TlsError::Rejected(why) => write!(f, "TLS client set-up refused: {why}"),
        }
    }
}

impl std::error::Error for TlsError {}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { path: path.to_path_buf(), message: e.to_string() })
}

/// The client configuration every `https://` upstream uses; `client` is a
/// PEM certificate chain and its PEM private key.
/// ureq's rustls connector, timed: the handshake runs to completion in
/// `connect` (on the fetch thread, before the request is written).
pub struct TimedTls(pub Arc<rustls::ClientConfig>);

impl ureq::TlsConnector for TimedTls {
    fn connect(&self, dns_name: &str, io: Box<dyn ureq::ReadWrite>) -> Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        use super::dns::{micros_since, CONNECT_STATS};
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let connected = ureq::TlsConnector::connect(&self.0, dns_name, io);
        CONNECT_STATS.tls_handshakes.fetch_add(1, Relaxed);
        CONNECT_STATS.tls_handshake_micros.fetch_add(micros_since(started), Relaxed);
        connected
    }
}

pub fn client_config(client: Option<(&Path, &Path)>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            let (valid, invalid) = roots.add_parsable_certificates(certs);
            if valid == 0 {
                log::warn!("no trusted root certificates found ({invalid} unusable): every https:// upstream will fail verification");
            }
        }
        Err(e) => log::warn!("loading trusted root certificates: {e}; every https:// upstream will fail verification"),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected(e.to_string()))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let (chain, key) = load_pem_pair(cert_path, key_path)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| TlsError::Rejected(e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// A PEM certificate chain and its PEM private key, read and parsed (not
/// yet checked against each other: rustls does that). Also the edge's, for
/// the certificate it presents to clients.
pub fn load_pem_pair(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>), TlsError> {
    let pem = read_pem(cert_path)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read { path: cert_path.to_path_buf(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Empty { path: cert_path.to_path_buf(), what: "certificate" });
    }
    let pem = read_pem(key_path)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Read { path: key_path.to_path_buf(), message: e.to_string() })?
        .ok_or_else(|| TlsError::Empty { path: key_path.to_path_buf(), what: "private key" })?;
    Ok((chain, key))
}
