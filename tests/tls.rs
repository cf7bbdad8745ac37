//! `https://` upstreams: a CA made here at test time, trusted through
//! `SSL_CERT_FILE`; a certificate from another CA is refused with a message
//! naming certificate verification; `--upstream-auth` credentials arrive as
//! the Authorization header and never reach the server's log (at
//! `RUST_LOG=debug`); a client certificate is presented when asked for;
//! `HTTPS_PROXY` tunnels to the upstream with CONNECT, TLS end to end.

mod common;

use common::*;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS GOPROXY file server on 127.0.0.1 that records every request's
/// Authorization header; with `client_ca`, it demands a client certificate
/// that CA signed.
struct TlsUpstream {
    addr: SocketAddr,
    authorizations: Arc<Mutex<Vec<String>>>,
    _server: ScriptedServer,
}

impl TlsUpstream {
    fn serve(root: &Path, ca: &Ca, client_ca: Option<&Ca>) -> TlsUpstream {
        // `mirror.invalid`: a reserved name that resolves nowhere, for the
        // upstream reached only through a CONNECT proxy.
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost", "mirror.invalid"], ExtendedKeyUsagePurpose::ServerAuth);
        let builder = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(c.cert.der().clone()).unwrap();
                builder.with_client_cert_verifier(
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap(),
                )
            }
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = Arc::new(builder.with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], key).unwrap());
        let authorizations: Arc<Mutex<Vec<String>>> = Arc::default();
        let (auths, root) = (authorizations.clone(), root.to_path_buf());
        let server = ScriptedServer::start(move |conn| {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
            let Ok(tls) = rustls::ServerConnection::new(config.clone()) else { return };
            let mut s = rustls::StreamOwned::new(tls, conn);
            let Some(head) = read_request_head(&mut s) else { return };
            for line in head.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auths.lock().unwrap().push(v.trim().to_string());
                    }
                }
            }
            let target = head.split(' ').nth(1).unwrap_or("");
            // Servers must accept the absolute form (RFC 9112, 3.2.2),
            // which ureq also sends inside a CONNECT tunnel.
            let target = target.strip_prefix("https://").and_then(|r| r.find('/').map(|i| &r[i..])).unwrap_or(target);
            let path = percent_decode_path(target).unwrap_or_default();
            let body = fixture_file(&root, &path);
            let (status, body) = match body {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", b"not found\n".to_vec()),
            };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
            s.conn.send_close_notify();
            let _ = s.flush();
        });
        TlsUpstream { addr: server.addr(), authorizations, _server: server }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

const MODULE: &str = "example.com/tls";
const TOKEN: &str = "tok-9f8e7d6c5b4a";

fn server(upstream: &str, ca_file: &Path, extra: &[String]) -> Server {
    server_with_env(upstream, ca_file, extra, vec![])
}

/// A gomodproxy trusting only `ca_file`, at debug log level.
fn server_with_env(upstream: &str, ca_file: &Path, extra: &[String], mut env: Vec<(String, String)>) -> Server {
    let mut extra_args = vec!["--breaker-failures".to_string(), "0".into(), "--negative-ttl".into(), "0".into()];
    extra_args.extend_from_slice(extra);
    env.extend([
        ("SSL_CERT_FILE".into(), ca_file.display().to_string()),
        // An empty directory: only the test CA is trusted.
        ("SSL_CERT_DIR".into(), ca_file.parent().unwrap().join("no-certs").display().to_string()),
        ("RUST_LOG".into(), "debug".into()),
    ]);
    Server::start_with(ServerOpts { extra_args, env, ..ServerOpts::new(upstream) })
}

/// A test CA in `dir` (with the empty `no-certs` directory `server` points
/// SSL_CERT_DIR at), and the file that holds it.
fn test_ca(dir: &Path) -> (Ca, PathBuf) {
    std::fs::create_dir(dir.join("no-certs")).unwrap();
    let ca = Ca::new("gomodproxy test CA");
    let file = ca.write_pem(dir, "ca.pem");
    (ca, file)
}

fn assert_serves_the_module(server: &Server, fx: &Fixture) {
    for ext in ["info", "mod", "zip"] {
        let r = http_get(server.addr(), &format!("/{}", artifact_path(MODULE, "v1.0.0", ext)));
        assert_eq!(r.status, 200, ".{ext}: {}", r.body_str());
        assert!(r.body == fx.artifact(MODULE, "v1.0.0", ext), ".{ext}: wrong bytes");
    }
}

#[test]
fn https_upstream_trusted_through_ssl_cert_file_with_bearer_credentials() {
    let fx = Fixture::builder().module(Module::new(MODULE, "v1.0.0")).build();
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = test_ca(dir.path());
    let up = TlsUpstream::serve(fx.root(), &ca, None);
    let auth = dir.path().join("auth");
    std::fs::write(&auth, format!("# test\n{} bearer {TOKEN}\n", up.url())).unwrap();
    let server = server(&up.url(), &ca_file, &["--upstream-auth".into(), auth.display().to_string()]);
    assert_serves_the_module(&server, &fx);
    let seen = up.authorizations.lock().unwrap().clone();
    assert!(!seen.is_empty() && seen.iter().all(|a| *a == format!("Bearer {TOKEN}")), "{seen:?}");
    // Every connection to an https upstream took one handshake, and was counted.
    let (connections, handshakes) =
        (metric(server.addr(), "gomodproxy_upstream_connections"), metric(server.addr(), "gomodproxy_upstream_tls_handshakes"));
    assert!(handshakes >= 1 && handshakes == connections, "{handshakes} TLS handshakes for {connections} upstream connections");
    let logs = server.log_lines();
    assert!(logs.iter().any(|l| l.contains("DEBUG")), "the log check is only meaningful at debug level");
    assert!(!logs.iter().any(|l| l.contains(TOKEN)), "the token leaked into the log");
}

#[test]
fn a_certificate_from_another_ca_is_refused_naming_verification() {
    let fx = Fixture::builder().module(Module::new(MODULE, "v1.0.0")).build();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("no-certs")).unwrap();
    let up = TlsUpstream::serve(fx.root(), &Ca::new("the upstream's CA"), None);
    let other = Ca::new("some other CA").write_pem(dir.path(), "other.pem");
    let server = server(&up.url(), &other, &[]);
    let r = http_get(server.addr(), &format!("/{}", artifact_path(MODULE, "v1.0.0", "info")));
    assert_eq!(r.status, 502, "{}", r.body_str());
    assert!(r.body_str().contains("certificate verification failed"), "the reason must name certificate verification: {}", r.body_str());
    assert!(up.authorizations.lock().unwrap().is_empty());
}

#[test]
fn a_client_certificate_is_presented_when_configured() {
    let fx = Fixture::builder().module(Module::new(MODULE, "v1.0.0")).build();
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = test_ca(dir.path());
    let clients = Ca::new("client CA");
    let up = TlsUpstream::serve(fx.root(), &ca, Some(&clients));
    let path = format!("/{}", artifact_path(MODULE, "v1.0.0", "info"));

    let without = server(&up.url(), &ca_file, &[]);
    let r = http_get(without.addr(), &path);
    assert!(r.body_str().contains("CertificateRequired"), "{}", r.body_str());
    assert_eq!(r.status, 502, "no client certificate: {}", r.body_str());

    let (cert, key) = clients.issue(&[], ExtendedKeyUsagePurpose::ClientAuth);
    let (cert_file, key_file) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let with = server(
        &up.url(),
        &ca_file,
        &["--upstream-client-cert".into(), cert_file.display().to_string(), "--upstream-client-key".into(), key_file.display().to_string()],
    );
    let r = http_get(with.addr(), &path);
    assert_eq!(r.status, 200, "with a client certificate: {}", r.body_str());
    assert!(r.body == fx.artifact(MODULE, "v1.0.0", "info"));
    assert!(!with.log_lines().iter().any(|l| l.contains("PRIVATE KEY")));
}

/// An HTTP proxy that tunnels every CONNECT to `to`, whatever host it
/// names, recording the request lines it was sent; anything but CONNECT
/// gets 405.
fn connect_proxy(to: SocketAddr) -> (ScriptedServer, Arc<Mutex<Vec<String>>>) {
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = requests.clone();
    let proxy = ScriptedServer::start(move |mut client| {
        let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
        let Some(head) = read_request_head(&mut client) else { return };
        let line = head.lines().next().unwrap_or("").to_string();
        seen.lock().unwrap().push(line.clone());
        if !line.starts_with("CONNECT ") {
            let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        let Ok(mut upstream) = std::net::TcpStream::connect(to) else { return };
        let _ = upstream.set_read_timeout(Some(Duration::from_secs(30)));
        if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").is_err() {
            return;
        }
        let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else { return };
        let up = thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut u2);
            let _ = u2.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut upstream, &mut client);
        let _ = client.shutdown(std::net::Shutdown::Write);
        let _ = up.join();
        let _ = client.read(&mut [0u8; 1]);
    });
    (proxy, requests)
}

#[test]
fn an_https_upstream_is_reached_through_a_connect_proxy() {
    let fx = Fixture::builder().module(Module::new(MODULE, "v1.0.0")).build();
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = test_ca(dir.path());
    let up = TlsUpstream::serve(fx.root(), &ca, None);
    let (proxy, requests) = connect_proxy(up.addr);
    // Only the proxy can reach this name; the certificate is checked
    // against it through the tunnel.
    let upstream = format!("https://mirror.invalid:{}", up.addr.port());
    let auth = dir.path().join("auth");
    std::fs::write(&auth, format!("{upstream} bearer {TOKEN}\n")).unwrap();
    let env = vec![("HTTPS_PROXY".into(), proxy.url()), ("NO_PROXY".into(), "other.invalid".into())];
    let server = server_with_env(&upstream, &ca_file, &["--upstream-auth".into(), auth.display().to_string()], env);
    assert_serves_the_module(&server, &fx);
    assert!(!server.log_lines().iter().any(|l| l.contains(TOKEN)), "the token leaked into the log");
    let lines = requests.lock().unwrap().clone();
    assert!(!lines.is_empty(), "nothing went through the proxy");
    let target = format!("CONNECT mirror.invalid:{} HTTP/1.1", up.addr.port());
    assert!(lines.iter().all(|l| *l == target), "only tunnels, to the upstream: {lines:?}");
    // The credentials travelled inside the tunnel, to the upstream only.
    let seen = up.authorizations.lock().unwrap().clone();
    assert!(!seen.is_empty() && seen.iter().all(|a| *a == format!("Bearer {TOKEN}")), "{seen:?}");
}
