//! HTTPS for clients (`--tls-listen`, `--tls-cert`, `--tls-key`): the go
//! command downloads through it with a CA made here (`SSL_CERT_FILE`),
//! private modules too with `.netrc` credentials (the go command sends
//! them over HTTPS only); a certificate swapped on disk reaches new
//! connections after SIGHUP while an open connection keeps working, and a
//! bad new pair is refused while the old one stays.

mod common;

use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use sha2::{Digest, Sha256};

const PUBLIC: &str = "example.com/tlspub";
const PRIVATE: &str = "corp.example.com/tlspriv";
const TOKEN: &str = "tls-ci-token-51e";

/// Writes a certificate for 127.0.0.1 (and `name`) and its key; returns the certificate's DER.
fn write_pair(ca: &Ca, dir: &Path, name: &str) -> Vec<u8> {
    let (cert, key) = ca.issue(&["127.0.0.1", name], ExtendedKeyUsagePurpose::ServerAuth);
    // Key first: a watcher that sees the new certificate must find its key.
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    cert.der().to_vec()
}

fn start(fx: &Fixture, dir: &Path) -> Server {
    let auth = dir.join("auth.toml");
    let sha: String = Sha256::digest(TOKEN.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&auth, format!("[[client]]\nname = \"ci\"\ntoken_sha256 = \"{sha}\"\nallow = [\"corp.example.com/*\"]\n")).unwrap();
    let mut opts = ServerOpts::new(fx.file_url());
    opts.extra_args = vec![
        "--tls-listen".into(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        dir.join("cert.pem").display().to_string(),
        "--tls-key".into(),
        dir.join("key.pem").display().to_string(),
        "--auth".into(),
        auth.display().to_string(),
    ];
    Server::start_with(opts)
}

/// A TLS client connection trusting `ca` only.
struct Client {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr, ca: &Ca) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // Complete the handshake so the server's certificate is known.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        Client { tls }
    }

    fn certificate(&self) -> Vec<u8> {
        self.tls.conn.peer_certificates().unwrap()[0].to_vec()
    }

    fn alpn(&self) -> Option<Vec<u8>> {
        self.tls.conn.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// GET `path` on this connection (kept alive); status and body.
    fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        write!(self.tls, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        self.tls.flush().unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap();
                if raw.len() >= end + 4 + len {
                    let status = head[9..12].parse().unwrap();
                    return (status, raw[end + 4..end + 4 + len].to_vec());
                }
            }
            let n = self.tls.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed mid-response");
            raw.extend_from_slice(&buf[..n]);
        }
    }
}

fn fixture() -> Fixture {
    Fixture::builder().module(Module::new(PUBLIC, "v1.0.0")).module(Module::new(PRIVATE, "v1.0.0")).build()
}

#[test]
fn the_go_command_downloads_over_https_with_a_test_ca_and_netrc_credentials() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gomodproxy edge test CA");
    let ca_file = ca.write_pem(dir.path(), "ca.pem");
    write_pair(&ca, dir.path(), "proxy.test");
    let server = start(&fx, dir.path());
    let tls = server.tls_addr();

    let reference = GoEnv::new(fx.file_url());
    let want_public = reference.mod_download_json(&[&format!("{PUBLIC}@v1.0.0")]);
    let want_private = reference.mod_download_json(&[&format!("{PRIVATE}@v1.0.0")]);

    let mut env = GoEnv::new(format!("https://{tls}"));
    env.env("SSL_CERT_FILE", &ca_file.display().to_string());
    env.env("GONOSUMDB", "corp.example.com");
    let got = env.mod_download_json(&[&format!("{PUBLIC}@v1.0.0")]);
    assert_eq!(got[0]["Sum"], want_public[0]["Sum"], "go.sum hash over HTTPS differs from the module's own");
    // The private module: refused without credentials...
    let out = env.try_run(&["mod", "download", "-json", &format!("{PRIVATE}@v1.0.0")]);
    assert!(!out.status.success(), "downloaded a private module without credentials");
    assert!(String::from_utf8_lossy(&out.stdout).contains("401 Unauthorized"), "{}", String::from_utf8_lossy(&out.stdout));
    // ...and read with a `machine host:port` line of .netrc.
    let netrc = dir.path().join("netrc");
    std::fs::write(&netrc, format!("machine 127.0.0.1:{} login ci password {TOKEN}\n", tls.port())).unwrap();
    env.env("NETRC", &netrc.display().to_string());
    let got = env.mod_download_json(&[&format!("{PRIVATE}@v1.0.0")]);
    assert_eq!(got[0]["Sum"], want_private[0]["Sum"]);
    assert_eq!(got[0]["GoModSum"], want_private[0]["GoModSum"]);
    assert!(!server.log_lines().join("\n").contains(TOKEN), "the token appeared in the log");
}

#[test]
fn a_swapped_certificate_reaches_new_connections_and_open_ones_keep_working() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gomodproxy edge test CA");
    let old = write_pair(&ca, dir.path(), "old.test");
    let server = start(&fx, dir.path());
    let tls = server.tls_addr();
    let info = format!("/{}", artifact_path(PUBLIC, "v1.0.0", "info"));

    let mut open = Client::connect(tls, &ca);
    assert_eq!(open.certificate(), old);
    assert_eq!(open.alpn().as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(open.get(&info), (200, fx.artifact(PUBLIC, "v1.0.0", "info")));

    let new = write_pair(&ca, dir.path(), "new.test");
    let pid = server.pid().unwrap() as i32;
    // SAFETY: signalling the server process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        wait_until(Duration::from_secs(10), || Client::connect(tls, &ca).certificate() == new),
        "new connections still get the old certificate after SIGHUP"
    );
    assert_eq!(open.get(&info).0, 200, "the connection opened before the swap keeps working");

    // A bad new pair (a key that does not match the certificate) is refused; the good one stays.
    let (other, _) = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(dir.path().join("cert.pem"), other.pem()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    assert!(
        server.wait_for_log(Duration::from_secs(10), |l| l.contains("TLS") && l.contains("refused")),
        "no log line refusing the bad pair"
    );
    assert_eq!(Client::connect(tls, &ca).certificate(), new, "a refused pair must leave the running certificate in place");
    assert_eq!(Client::connect(tls, &ca).get(&info).0, 200);
}

#[test]
fn with_listen_off_only_https_is_served() {
    use std::io::BufRead;
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("gomodproxy edge test CA");
    write_pair(&ca, dir.path(), "only.test");
    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(server_bin());
    cmd.args(["serve", "--listen", "off", "--tls-listen", "127.0.0.1:0", "--admin-listen", "off", "--cores", "1"])
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("key.pem"))
        .arg("--upstream")
        .arg(fx.file_url())
        .arg("--data")
        .arg(data.path())
        .env("GOENV", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.starts_with("listening on ")).unwrap_or_default();
    let addr: SocketAddr = line.trim_start_matches("listening on https://").parse().unwrap_or_else(|_| panic!("{line:?}"));
    let info = format!("/{}", artifact_path(PUBLIC, "v1.0.0", "info"));
    assert_eq!(Client::connect(addr, &ca).get(&info).0, 200);
    let _ = child.kill();
    let _ = child.wait();
    assert!(refused_start(&["serve", "--listen", "off", "--upstream", &fx.file_url()]).contains("--tls-listen"));
}
