//! TLS for clients (`--tls-listen`, `--tls-cert`, `--tls-key`): the
//! certificate gomodproxy presents, and swapping it without a restart.
//!
//! Owns building the rustls server configuration (TLS 1.2 and 1.3 with
//! rustls' safe defaults, ALPN `http/1.1`) and [`Certificates`], which
//! holds the one in use: re-read on SIGHUP and when the files change
//! (polled), a bad new pair refused with a log line while the old one
//! stays. New connections take the current configuration; open ones keep
//! theirs. It never reads a socket and never logs key material.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::resolve::live::{Live, View};
use crate::upstream::tls::{load_pem_pair, TlsError};

/// Builds the server configuration of the PEM chain at `cert` and the key at `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (chain, key) = load_pem_pair(cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rejected(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificate in use and where it comes from.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Live<Arc<rustls::ServerConfig>>>,
    /// The files' modification times when last loaded (or tried).
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Certificates {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, TlsError> {
        let seen = (mtime(cert), mtime(key));
        let config = server_config(cert, key)?;
        Ok(Arc::new(Certificates { cert: cert.into(), key: key.into(), current: Live::new(config), seen: Mutex::new(seen) }))
    }

    /// A view for one core: the configuration new connections get.
    pub fn view(&self) -> View<Arc<rustls::ServerConfig>> {
        self.current.view()
    }

    /// Reads the pair again (`force`, on SIGHUP; else only if a file
    /// changed since last time) and puts it in place if it is good.
    pub fn reload(&self, force: bool) {
        let now = (mtime(&self.cert), mtime(&self.key));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *seen == now {
                return;
            }
            *seen = now;
        }
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                self.current.replace(config);
                log::info!("TLS: certificate {} reloaded; new connections get it", self.cert.display());
            }
            Err(e) => log::error!("TLS: the new certificate and key are refused, the running ones stay: {e}"),
        }
    }

    /// Polls the files every `every` for the life of the process (a thread).
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("gomodproxy-tls-watch".into()).spawn(move || loop {
            std::thread::sleep(every);
            me.reload(false);
        });
        if let Err(e) = spawned {
            log::warn!("TLS: no thread to watch the certificate files ({e}); SIGHUP still reloads them");
        }
    }
}
