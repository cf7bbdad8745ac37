//! Smoke test against the real upstream: the server runs with no
//! `--upstream`, so it inherits `go env GOPROXY` (its `direct` entry is
//! dropped) and `go env GOSUMDB` (verifying every module against that
//! database with the go command's own key), and the real go command, with
//! its default checksum database on, downloads one real module through it.
//!
//! No host or module name is written here: the module is the first
//! requirement of the Go distribution's own `src/go.mod`, and everything
//! else comes from `go env` at run time. One download; ignored by default
//! because it needs the network (`.ci/run` runs it).

mod common;

use common::*;

use std::io::Read;
use std::process::Command;

use sha2::{Digest, Sha256};

/// `go env VAR` as the go command's defaults give it: no `go env -w`
/// settings, nothing from this process's environment for that variable.
fn default_go_env(var: &str) -> String {
    let out = Command::new("go").args(["env", var]).env("GOENV", "off").env_remove(var).output().expect("run go env");
    assert!(out.status.success(), "go env {var}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The first `require` of a go.mod: (module path, version).
fn first_requirement(go_mod: &str) -> (String, String) {
    let mut in_block = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        let words: Vec<&str> = if in_block {
            line.split_whitespace().collect()
        } else if let Some(rest) = line.strip_prefix("require") {
            if rest.trim() == "(" {
                in_block = true;
                continue;
            }
            rest.split_whitespace().collect()
        } else {
            continue;
        };
        if let [path, version] = words[..] {
            return (path.to_string(), version.to_string());
        }
    }
    panic!("no require line in the distribution's go.mod");
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= chunk.len() { A[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// The go command's `h1:` hash of a module zip (x/mod's dirhash.Hash1):
/// SHA-256 over the sorted lines `<sha256 hex>  <name>\n` of its files.
fn h1_of_zip(zip_bytes: &[u8]) -> String {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).expect("the downloaded zip opens");
    let mut lines = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        let hex: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
        lines.push((f.name().to_string(), hex));
    }
    lines.sort();
    let summary: String = lines.iter().map(|(name, hex)| format!("{hex}  {name}\n")).collect();
    format!("h1:{}", base64(&Sha256::digest(summary.as_bytes())))
}

#[test]
#[ignore = "uses the network: the real upstream that go env GOPROXY names"]
fn real_upstream_download_is_verified_by_the_checksum_database_through_the_proxy() {
    let goroot = default_go_env("GOROOT");
    let go_mod = std::fs::read_to_string(format!("{goroot}/src/go.mod")).expect("read the distribution's go.mod");
    let (module, version) = first_requirement(&go_mod);
    let sumdb = default_go_env("GOSUMDB");
    assert!(!sumdb.is_empty() && sumdb != "off", "the default checksum database is needed: {sumdb:?}");

    // No --upstream: inherited from `go env GOPROXY` (GOENV=off in the
    // harness, so the go command's defaults); no --sumdb: the default
    // database, by name, verified with the key the go command builds in.
    let mut opts = ServerOpts { startup_timeout: std::time::Duration::from_secs(60), ..ServerOpts::new("") };
    opts.env.push(("GOSUMDB".into(), sumdb.clone()));
    let server = Server::start_with(opts);
    let mut go = GoEnv::new(server.url());
    go.env("GOSUMDB", &sumdb);
    go.env("GONOSUMDB", "");
    go.env("GONOSUMCHECK", "");
    go.env("GOPRIVATE", "");
    go.env("GONOPROXY", "");
    go.env("GOFLAGS", "-mod=mod -modcacherw");

    let target = format!("{module}@{version}");
    let out = go.mod_download_json(&[&target]);
    assert_eq!(out.len(), 1, "{out:?}");
    let info = &out[0];
    let sum = info["Sum"].as_str().expect("Sum in go mod download -json");
    let zip_path = info["Zip"].as_str().expect("Zip in go mod download -json");
    let zip_bytes = std::fs::read(zip_path).expect("read the downloaded zip");
    assert_eq!(h1_of_zip(&zip_bytes), sum, "the zip's hash must be the one the checksum database vouched for");

    // The proxy kept exactly those bytes.
    let served = http_get(server.addr(), &format!("/{}", artifact_path(&module, &version, "zip")));
    assert_eq!(served.status, 200);
    assert!(served.body == zip_bytes, "the proxy serves the bytes the go command verified");

    // The go command asked the proxy's /sumdb/<name>/supported, then looked
    // the module up through it.
    let sumdb_requests = metric(server.addr(), "gomodproxy_sumdb_requests");
    assert!(sumdb_requests >= 2, "checksum-database traffic must go through the proxy: {sumdb_requests} requests");
    assert_eq!(metric(server.addr(), "gomodproxy_upstream_errors"), 0);
    // The proxy verified it too, itself a client of the database: it
    // accepted (and kept) a signed tree head.
    let name = sumdb.split(['+', ' ']).next().unwrap();
    let head = std::fs::read_to_string(server.data_dir().join("sumdb").join(format!("{name}.head"))).expect("an accepted tree head");
    assert!(head.starts_with("go.sum database tree\n"), "{head}");
    assert_eq!(metric(server.addr(), "gomodproxy_checksum_mismatches"), 0);
}
