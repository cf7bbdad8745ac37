//! The real go command verifies modules against a checksum database
//! through gomodproxy's `/sumdb/` proxy.
//!
//! `sumdb_gen.go` (standard library only) builds a real, Ed25519-signed
//! database for the fixture's modules under a made-up name; a
//! [`CountingUpstream`] serves it and the modules; the go command, given the
//! database's key in `GOSUMDB` and gomodproxy as `GOPROXY`, must find
//! `supported`, fetch lookups and tiles through the proxy, verify them, and
//! refuse a module whose recorded hash is wrong.

mod common;

use common::*;

use std::path::Path;
use std::process::Command;

const FIRST: (&str, &str) = ("example.com/first", "v1.0.0");
const UPPER: (&str, &str) = ("example.com/Upper/Lib", "v1.2.0");
const TAMPERED: (&str, &str) = ("example.com/tampered", "v1.0.0");

/// Writes the database below `root` and returns its verifier key.
fn generate(root: &Path, env: &GoEnv) -> String {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sumdb_gen.go");
    let mut cmd: Command = env.command(&["run", gen.to_str().unwrap(), root.to_str().unwrap(), SUMDB_NAME]);
    for (m, v) in [FIRST, UPPER] {
        cmd.arg(format!("{m}@{v}"));
    }
    cmd.arg(format!("{}@{}=tamper", TAMPERED.0, TAMPERED.1));
    // `go run` of a lone file needs no module; keep the env's flags out of it.
    cmd.env("GOFLAGS", "").env("GOPROXY", "off");
    let out = run_with_timeout(&mut cmd, GO_TIMEOUT);
    assert!(out.status.success(), "sumdb_gen failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_go_command_verifies_modules_through_the_sumdb_proxy() {
    let fx = Fixture::builder()
        .module(Module::new(FIRST.0, FIRST.1))
        .module(Module::new(UPPER.0, UPPER.1))
        .module(Module::new(TAMPERED.0, TAMPERED.1))
        .build();
    let upstream = CountingUpstream::serve(fx.root());
    let server =
        Server::start_with(ServerOpts { extra_args: vec!["--sumdb".into(), SUMDB_NAME.into()], ..ServerOpts::new(upstream.url()) });

    let mut env = GoEnv::new(server.url());
    let key = generate(fx.root(), &env);
    assert!(key.starts_with(&format!("{SUMDB_NAME}+")), "{key}");
    env.env("GOSUMDB", &key);
    env.write_file("go.mod", "module example.com/main\n\ngo 1.21\n");

    for (m, v) in [FIRST, UPPER] {
        env.run(&["get", &format!("{m}@{v}")]);
    }
    let sum = env.go_sum_lines();
    for (m, v) in [FIRST, UPPER] {
        assert!(sum.iter().any(|l| l.starts_with(&format!("{m} {v} h1:"))), "{sum:#?}");
    }
    // Everything went through the proxy: supported, both lookups, tiles.
    let prefix = format!("/sumdb/{SUMDB_NAME}");
    assert!(upstream.hits(&format!("{prefix}/supported")) >= 1, "{:?}", upstream.request_log());
    for (m, v) in [FIRST, UPPER] {
        assert_eq!(upstream.hits(&format!("{prefix}/lookup/{}@{}", escape(m), escape(v))), 1, "{:?}", upstream.request_log());
    }
    assert!(upstream.hits_where(|p| p.starts_with(&format!("{prefix}/tile/"))) >= 1, "{:?}", upstream.request_log());
    // The complete tile (record 0 lies in it) was stored.
    let full_tile = format!("{prefix}/tile/8/0/000");
    let served = http_get(server.addr(), &full_tile);
    assert_eq!(served.status, 200);
    assert!(served.header("cache-control").unwrap().contains("immutable"));

    // A record that does not match the module: the go command must refuse it.
    let out = env.try_run(&["get", &format!("{}@{}", TAMPERED.0, TAMPERED.1)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tampered checksum was accepted:\n{stderr}");
    assert!(stderr.contains("SECURITY ERROR") || stderr.contains("checksum mismatch"), "{stderr}");

    // A second, fresh client is answered from the proxy's caches.
    let before = upstream.hits_where(|p| p.starts_with(&prefix));
    let mut again = GoEnv::new(server.url());
    again.env("GOSUMDB", &key);
    again.write_file("go.mod", "module example.com/main\n\ngo 1.21\n");
    again.run(&["get", &format!("{}@{}", FIRST.0, FIRST.1)]);
    assert_eq!(upstream.hits_where(|p| p.starts_with(&prefix)), before, "{:?}", upstream.request_log());
}
