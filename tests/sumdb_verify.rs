//! With a keyed `--sumdb`, gomodproxy verifies every public module's `.zip`
//! and `.mod` against the checksum database before it stores them, so even
//! a client that verifies nothing (`GOSUMDB=off`) never gets tampered
//! bytes. The database is a real signed log (`signed_sumdb`), reached only
//! through the fixture upstream's `/sumdb/<name>/`; the go command is the
//! client.

mod common;

use common::*;

const FIRST: (&str, &str) = ("example.com/first", "v1.0.0");
const UPPER: (&str, &str) = ("example.com/Upper/Lib", "v1.2.0");
const TAMPERED: (&str, &str) = ("example.com/tampered", "v1.0.0");
const PRIVATE: (&str, &str) = ("private.example/team/lib", "v0.1.0");
/// Large enough to be streamed to its requesters while it arrives.
const BIG: (&str, &str) = ("example.com/big", "v1.0.0");

struct Setup {
    fx: Fixture,
    upstream: CountingUpstream,
    server: Server,
    key: String,
}

fn setup() -> Setup {
    let fx = Fixture::builder()
        .module(Module::new(FIRST.0, FIRST.1))
        .module(Module::new(UPPER.0, UPPER.1))
        .module(Module::new(TAMPERED.0, TAMPERED.1))
        .module(Module::new(PRIVATE.0, PRIVATE.1))
        .module(Module::new(BIG.0, BIG.1).stored().file("big.bin", pseudo_random_bytes(3 << 20, 11)))
        .build();
    let specs = [FIRST, UPPER].map(|(m, v)| format!("{m}@{v}"));
    let tampered = [TAMPERED, BIG].map(|(m, v)| format!("{m}@{v}=tamper"));
    let key = signed_sumdb(fx.root(), &GoEnv::new("off"), &[&specs[0], &specs[1], &tampered[0], &tampered[1]]);
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(ServerOpts {
        extra_args: vec![
            "--sumdb".into(),
            key.clone(),
            "--private".into(),
            "private.example".into(),
            "--private-upstream".into(),
            format!("file://{}", fx.root().display()),
            "--negative-ttl".into(),
            "0".into(),
        ],
        ..ServerOpts::new(upstream.url())
    });
    Setup { fx, upstream, server, key }
}

fn zip_path(m: &str, v: &str) -> String {
    format!("/{}", artifact_path(m, v, "zip"))
}

#[test]
fn verified_modules_download_and_tampered_ones_are_refused_even_for_clients_that_do_not_verify() {
    let Setup { fx, upstream, server, key } = setup();

    // A verifying client gets the good modules; go.sum holds gomodproxy's hashes.
    let sum = GoEnv::new(server.url()).get_verified(&key, &[FIRST, UPPER]);
    for (m, v) in [FIRST, UPPER] {
        let h1 = gomodproxy::gomod::dirhash::hash_zip(&fx.artifact(m, v, "zip")).unwrap();
        assert!(sum.contains(&format!("{m} {v} {h1}")), "{sum:#?}");
    }

    // The record of `tampered` does not match its zip: refused with 410,
    // both hashes named, for a client that checks nothing itself.
    let got = gomodproxy::gomod::dirhash::hash_zip(&fx.artifact(TAMPERED.0, TAMPERED.1, "zip")).unwrap();
    let r = http_get(server.addr(), &zip_path(TAMPERED.0, TAMPERED.1));
    assert_eq!(r.status, 410, "{}", r.body_str());
    let body = r.body_str();
    assert!(body.contains("checksum mismatch") && body.contains(&got) && body.contains(SUMDB_NAME), "{body}");
    assert!(metric(server.addr(), "gomodproxy_checksum_mismatches") >= 1);
    let mut careless = GoEnv::new(server.url());
    careless.env("GOSUMDB", "off");
    careless.write_file("go.mod", "module example.com/careless\n\ngo 1.21\n");
    let out = careless.try_run(&["get", &format!("{}@{}", TAMPERED.0, TAMPERED.1)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tampered zip reached a client:\n{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    // Nothing was stored: each request fetches again.
    let fetched = upstream.hits(&zip_path(TAMPERED.0, TAMPERED.1));
    assert_eq!(http_get(server.addr(), &zip_path(TAMPERED.0, TAMPERED.1)).status, 410);
    assert_eq!(upstream.hits(&zip_path(TAMPERED.0, TAMPERED.1)), fetched + 1);

    // A zip streamed while it arrives: its last byte waits for the check,
    // so the streaming client is cut short; the next request, fetched
    // whole, gets the 410 and its reason.
    let out = careless.try_run(&["mod", "download", &format!("{}@{}", BIG.0, BIG.1)]);
    assert!(!out.status.success(), "a tampered streamed zip reached a client");
    let r = http_get(server.addr(), &zip_path(BIG.0, BIG.1));
    assert_eq!(r.status, 410, "{}", r.body_str());
    assert!(metric(server.addr(), "gomodproxy_streamed_fills") >= 1, "the first fill was streamed");

    // The accepted tree head is kept for the next run.
    let head = std::fs::read_to_string(server.data_dir().join("sumdb").join(format!("{SUMDB_NAME}.head"))).unwrap();
    assert!(head.starts_with("go.sum database tree\n"), "{head}");

    // Private modules are never looked up, and still download.
    let r = http_get(server.addr(), &zip_path(PRIVATE.0, PRIVATE.1));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(upstream.hits_where(|p| p.contains("/lookup/private.example")), 0, "{:?}", upstream.request_log());
}

#[test]
fn an_upstream_that_swaps_a_zip_is_refused_until_it_serves_the_recorded_bytes() {
    let Setup { fx, upstream: _upstream, server, .. } = setup();
    let file = fx.root().join(artifact_path(FIRST.0, FIRST.1, "zip"));
    let original = std::fs::read(&file).unwrap();
    // A valid zip of the same module version, with one file more.
    let other = Fixture::builder().module(Module::new(FIRST.0, FIRST.1).file("extra.go", "package first\n")).build();
    std::fs::write(&file, other.artifact(FIRST.0, FIRST.1, "zip")).unwrap();
    let r = http_get(server.addr(), &zip_path(FIRST.0, FIRST.1));
    assert_eq!(r.status, 410, "{}", r.body_str());
    // The .mod matches its record and is served.
    assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(FIRST.0, FIRST.1, "mod"))).status, 200);

    std::fs::write(&file, &original).unwrap();
    let r = http_get(server.addr(), &zip_path(FIRST.0, FIRST.1));
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.body, original);
}

#[test]
fn notes_signed_by_another_key_verify_nothing_and_nothing_is_served() {
    use base64::Engine as _;
    use sha2::Digest as _;

    let fx = Fixture::builder().module(Module::new(FIRST.0, FIRST.1)).module(Module::new(UPPER.0, UPPER.1)).build();
    let specs = [FIRST, UPPER].map(|(m, v)| format!("{m}@{v}"));
    signed_sumdb(fx.root(), &GoEnv::new("off"), &[&specs[0], &specs[1]]);
    // gomodproxy trusts another key under the database's name: the
    // database's signatures are not by it, so no lookup opens.
    let mut other = vec![1u8];
    other.extend_from_slice(&[0x42; 32]);
    let hash = sha2::Sha256::new().chain_update(format!("{SUMDB_NAME}\n")).chain_update(&other).finalize();
    let trusted = format!(
        "{SUMDB_NAME}+{:08x}+{}",
        u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]),
        base64::engine::general_purpose::STANDARD.encode(&other)
    );
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(ServerOpts { extra_args: vec!["--sumdb".into(), trusted], ..ServerOpts::new(upstream.url()) });
    for _ in 0..2 {
        let r = http_get(server.addr(), &zip_path(FIRST.0, FIRST.1));
        assert_eq!(r.status, 502, "{}", r.body_str());
        assert!(r.body_str().contains("checksum database"), "{}", r.body_str());
    }
    assert_eq!(upstream.hits(&zip_path(FIRST.0, FIRST.1)), 2, "refused, so never stored");
}

/// The outage a fleet must survive: after a warm-up, the upstream (and so
/// the database behind it) is gone and gomodproxy restarts; a fresh go
/// client, with the database's key and no URL (it can reach the database
/// only through the proxy), still downloads and verifies every module
/// seen before, from what gomodproxy verified and kept.
#[test]
fn a_fresh_client_verifies_everything_seen_before_with_the_upstream_and_database_gone() {
    let Setup { fx, mut upstream, mut server, key } = setup();
    let warm = GoEnv::new(server.url()).get_verified(&key, &[FIRST, UPPER]);

    upstream.shutdown();
    // Restarted with every answer past its TTL: only stale copies can serve.
    server.restart_with(|o| o.extra_args.extend(["--sumdb-ttl".to_string(), "0".to_string()]));
    let mut fresh_env = GoEnv::new(server.url());
    let fresh = fresh_env.get_verified(&key, &[FIRST, UPPER]);
    assert_eq!(fresh, warm, "the same verified hashes");
    for (m, v) in [FIRST, UPPER] {
        let h1 = gomodproxy::gomod::dirhash::hash_zip(&fx.artifact(m, v, "zip")).unwrap();
        assert!(fresh.contains(&format!("{m} {v} {h1}")), "{fresh:#?}");
    }
    // The go command checked the database's answers itself, via the proxy.
    assert!(metric(server.addr(), "gomodproxy_sumdb_requests") >= 3);
    assert!(metric(server.addr(), "gomodproxy_stale_served") >= 2, "lookups served from the kept copies");
    assert!(fresh_env.gomodcache().join("cache/download/sumdb").join(SUMDB_NAME).exists(), "the client kept tiles it verified");
}
