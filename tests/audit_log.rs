//! `--audit-log`: one valid JSON line per request with the fields an
//! operator needs (the client as the balancer's PROXY header names it, the
//! client's name but never its token, what was asked, what it got, how it
//! was come by), reopened on SIGHUP for log rotation.

mod common;

use common::*;

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const PUBLIC: &str = "example.com/audited";
const PRIVATE: &str = "corp.example.com/audited";
const TOKEN: &str = "audit-token-9d2";

/// One request on a fresh connection, behind a PROXY header naming
/// `client` (version 2 for addresses ending in an even number, 1 otherwise).
fn request(server: &Server, client: &str, method: &str, path: &str, auth: Option<&str>) -> Vec<u8> {
    let mut c = TcpStream::connect(server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let ip: std::net::Ipv4Addr = client.parse().unwrap();
    if ip.octets()[3] % 2 == 0 {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]);
        h.extend_from_slice(&ip.octets());
        h.extend_from_slice(&[10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
        c.write_all(&h).unwrap();
    } else {
        write!(c, "PROXY TCP4 {client} 10.0.0.1 40000 443\r\n").unwrap();
    }
    write!(c, "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    got
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[test]
fn every_request_gets_one_json_line_and_rotation_reopens_the_file() {
    let fx = Fixture::builder().module(Module::new(PUBLIC, "v1.0.0")).module(Module::new(PRIVATE, "v1.0.0")).build();
    let dir = tempfile::tempdir().unwrap();
    let (audit, auth) = (dir.path().join("audit.log"), dir.path().join("auth.toml"));
    let sha: String = Sha256::digest(TOKEN.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&auth, format!("[[client]]\nname = \"ci\"\ntoken_sha256 = \"{sha}\"\nallow = [\"corp.example.com/*\"]\n")).unwrap();
    let mut opts = ServerOpts::new(fx.file_url());
    opts.extra_args = [
        "--audit-log",
        &audit.display().to_string(),
        "--auth",
        &auth.display().to_string(),
        "--proxy-protocol",
        "on",
        "--proxy-protocol-from",
        "127.0.0.0/8",
    ]
    .map(String::from)
    .to_vec();
    let server = Server::start_with(opts);

    let info = format!("/{}", artifact_path(PUBLIC, "v1.0.0", "info"));
    let zip = format!("/{}", artifact_path(PRIVATE, "v1.0.0", "zip"));
    let bearer = format!("Bearer {TOKEN}");
    let sent = [
        ("192.0.2.10", "GET", info.as_str(), None),                 // miss
        ("192.0.2.10", "GET", info.as_str(), None),                 // hit
        ("192.0.2.11", "HEAD", info.as_str(), None),                // hit, no body
        ("192.0.2.12", "GET", zip.as_str(), None),                  // 401
        ("192.0.2.12", "GET", zip.as_str(), Some(bearer.as_str())), // 200 for ci
    ];
    for (client, method, path, auth) in sent {
        let r = request(&server, client, method, path, auth);
        assert!(r.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&r));
    }
    assert!(wait_until(Duration::from_secs(10), || lines(&audit).len() >= sent.len()), "audit lines: {:?}", lines(&audit));
    let got = lines(&audit);
    assert_eq!(got.len(), sent.len(), "one line per request: {got:#?}");
    for key in [
        "time",
        "client",
        "client_name",
        "method",
        "path",
        "module",
        "version",
        "kind",
        "status",
        "bytes",
        "duration_ms",
        "cache",
        "upstream",
    ] {
        assert!(got.iter().all(|l| l.get(key).is_some()), "every line has {key}: {got:#?}");
    }
    let clients: Vec<&str> = got.iter().map(|l| l["client"].as_str().unwrap()).collect();
    assert_eq!(clients, ["192.0.2.10", "192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.12"], "the PROXY header's client");
    assert!(got[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!((got[0]["status"].as_u64(), got[0]["cache"].as_str()), (Some(200), Some("miss")));
    assert!(got[0]["upstream"].is_string(), "a fill names the source that answered: {}", got[0]);
    assert_eq!(got[0]["module"], PUBLIC);
    assert_eq!(got[0]["version"], "v1.0.0");
    assert_eq!(got[0]["kind"], ".info");
    assert_eq!(got[0]["bytes"].as_u64(), Some(fx.artifact(PUBLIC, "v1.0.0", "info").len() as u64));
    assert_eq!((got[1]["cache"].as_str(), got[1]["upstream"].is_null()), (Some("hit"), true));
    assert_eq!((got[2]["method"].as_str(), got[2]["bytes"].as_u64()), (Some("HEAD"), Some(0)));
    assert_eq!((got[3]["status"].as_u64(), got[3]["client_name"].is_null()), (Some(401), true));
    assert_eq!((got[4]["status"].as_u64(), got[4]["client_name"].as_str()), (Some(200), Some("ci")));
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(TOKEN), "a token reached the audit log");

    // Rotation: the file is moved away; after SIGHUP new lines go to a new one.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&audit, &rotated).unwrap();
    // SAFETY: signalling the server process this test started.
    assert_eq!(unsafe { libc::kill(server.pid().unwrap() as i32, libc::SIGHUP) }, 0);
    assert!(
        wait_until(Duration::from_secs(10), || {
            request(&server, "192.0.2.20", "GET", &info, None);
            lines(&audit).iter().any(|l| l["client"] == "192.0.2.20")
        }),
        "no line in the reopened file after SIGHUP"
    );
    // (Lines written between the move and the reopen go to the moved file, as with any rotation.)
    assert!(lines(&rotated).len() >= sent.len(), "the rotated file keeps its lines");
}
