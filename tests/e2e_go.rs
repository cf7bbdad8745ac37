//! End-to-end tests with the real go command: every module of
//! [`Fixture::standard`] is fetched through gomodproxy and compiled, and the
//! resulting go.sum must be byte-for-byte what the go command computes when
//! it reads the same fixture tree directly (`GOPROXY=file://...`).
//!
//! go.sum is the right oracle: its `h1:` lines hash every file of every
//! zip and its `/go.mod` lines hash every `.mod`, so any byte a proxy gets
//! wrong (truncation, wrong version, wrong module for an escaped path, a
//! stale cache entry) changes it or makes the go command fail.

mod common;

use common::*;

/// Every module version the standard main module's build list contains.
const BUILD_LIST: &[(&str, &str)] = &[
    ("example.com/hello", "v1.1.0"),
    ("example.com/CamelCase/Lib", "v1.0.0"),
    ("example.com/multi", "v1.0.0"),
    ("example.com/multi/v2", "v2.1.0"),
    ("example.com/legacy", "v2.0.0+incompatible"),
    ("example.com/pseudo", "v0.0.0-20240102030405-abcdefabcdef"),
    ("example.com/retract", "v1.0.0"),
    ("example.com/chain/a", "v1.0.0"),
    ("example.com/chain/b", "v1.1.0"),
    ("example.com/chain/c", "v1.2.0"),
    ("example.com/big", "v1.0.0"),
];

/// Builds the standard main module with the go command reading the fixture
/// tree directly, and returns that env: its go.sum and go.mod are the
/// reference results a proxy must reproduce.
fn direct_reference(fx: &Fixture) -> GoEnv {
    let direct = GoEnv::new(fx.file_url());
    direct.write_main_module(&standard_main());
    direct.build();
    assert_eq!(direct.run_binary(), standard_main_output());
    let sum = direct.go_sum_lines();
    // Guard against a vacuous comparison later: the reference must hold a
    // zip hash and a go.mod hash for every module of the build list.
    for (m, v) in BUILD_LIST {
        assert!(sum.iter().any(|l| l.starts_with(&format!("{m} {v} h1:"))), "reference go.sum lacks {m} {v}: {sum:#?}");
        assert!(sum.iter().any(|l| l.starts_with(&format!("{m} {v}/go.mod h1:"))), "reference go.sum lacks {m} {v}/go.mod: {sum:#?}");
    }
    assert_eq!(sum.len(), 2 * BUILD_LIST.len(), "unexpected reference go.sum: {sum:#?}");
    direct
}

/// Builds the standard main module in a fresh env against `proxy_url` and
/// checks the build, the program's output, go.mod and go.sum against the
/// direct reference. Returns the env for further checks.
fn build_and_compare(proxy_url: &str, fx: &Fixture, reference: &GoEnv) -> GoEnv {
    let env = GoEnv::new(proxy_url);
    env.write_main_module(&standard_main());
    env.build();
    assert_eq!(env.run_binary(), standard_main_output());
    // Same MVS result (chain/b and chain/c added as indirect at the versions
    // chain/a's and chain/b's go.mod ask for, not the latest ones)...
    assert_eq!(env.read_file("go.mod"), reference.read_file("go.mod"));
    // ...and the same hashes of every zip and go.mod.
    assert_eq!(env.go_sum_lines(), reference.go_sum_lines(), "go.sum through {proxy_url} differs from direct file:// access");
    // The go command keeps what it downloaded verbatim: the proxy must have
    // served the fixture's exact bytes (the 40 MiB zip included).
    for (m, v) in BUILD_LIST {
        for ext in ["mod", "zip"] {
            let got = env.downloaded(m, v, ext);
            let want = fx.artifact(m, v, ext);
            assert!(got == want, "{m}@{v}.{ext}: proxy served {} bytes differing from the fixture's {}", got.len(), want.len());
        }
    }
    env
}

#[test]
fn fixture_is_valid_for_the_go_command() {
    // No server involved: if this fails, the harness or fixture is broken,
    // not gomodproxy.
    let fx = Fixture::standard();
    let big = fx.artifact("example.com/big", "v1.0.0", "zip");
    assert!(big.len() >= 40 * 1024 * 1024, "big zip is only {} bytes", big.len());
    let list = String::from_utf8(fx.read(&list_path("example.com/pseudo"))).unwrap();
    assert_eq!(list, "", "pseudo-versions must not be listed");
    direct_reference(&fx);
}

#[test]
fn go_build_through_proxy_matches_direct_file_access() {
    let fx = Fixture::standard();
    let reference = direct_reference(&fx);
    let server = Server::start(&fx.file_url());

    // First build: the server fills its cache from the file:// upstream.
    build_and_compare(&server.url(), &fx, &reference);
    // Second build with an empty module cache: now answered from the
    // server's cache, and it must be just as exact.
    build_and_compare(&server.url(), &fx, &reference);
}

#[test]
fn go_build_via_http_upstream_fetches_each_artifact_once_and_survives_upstream_death() {
    let fx = Fixture::standard();
    let reference = direct_reference(&fx);
    let mut upstream = CountingUpstream::serve(fx.root());
    let mut server = Server::start(&upstream.url());

    build_and_compare(&server.url(), &fx, &reference);
    build_and_compare(&server.url(), &fx, &reference);

    // .mod/.zip/.info of a canonical version never change, so two builds
    // through a caching proxy need each of them from upstream once at most;
    // each zip exactly once (nothing else can provide it; .mod and .info
    // could in principle be derived).
    for (m, v) in BUILD_LIST {
        let p = format!("/{}", artifact_path(m, v, "zip"));
        assert_eq!(upstream.hits(&p), 1, "upstream requests for {p}; all: {:#?}", upstream.counts());
        for ext in ["mod", "info"] {
            let p = format!("/{}", artifact_path(m, v, ext));
            assert!(upstream.hits(&p) <= 1, "{} upstream requests for {p}; all: {:#?}", upstream.hits(&p), upstream.counts());
        }
    }

    // Kill the upstream (its port now refuses connections) and restart the
    // server on the same data dir: everything cached must still be served.
    upstream.shutdown();
    server.restart();
    let after = build_and_compare(&server.url(), &fx, &reference);
    assert_eq!(after.go_sum_lines(), reference.go_sum_lines());
}

#[test]
fn cached_modules_survive_restart_with_upstream_gone() {
    let fx = Fixture::standard();
    let reference = direct_reference(&fx);
    let mut server = Server::start(&fx.file_url());

    // Warm the cache with the whole graph: `go build` fetches .mod, .zip
    // and .info of every module, and `go mod download -json` does too.
    let warm = build_and_compare(&server.url(), &fx, &reference);
    warm.mod_download_json(&[]);

    // Same data dir, upstream pointing at an empty directory (one that does
    // not exist is refused at start-up).
    let gone = tempfile::tempdir().unwrap();
    let gone_url = format!("file://{}", gone.path().display());
    server.restart_with(|o| o.upstream = gone_url.clone());

    // A fresh env replays the resolved graph (go.mod + main.go, no go.sum):
    // `go mod download` must fetch all of it from the server's cache and
    // produce the same go.sum lines.
    let cold = GoEnv::new(server.url());
    cold.copy_main_module_from(&warm);
    let downloaded = cold.mod_download_json(&[]);
    let mut got: Vec<(String, String)> =
        downloaded.iter().map(|d| (d["Path"].as_str().unwrap().to_string(), d["Version"].as_str().unwrap().to_string())).collect();
    got.sort();
    let mut want: Vec<(String, String)> = BUILD_LIST.iter().map(|(m, v)| (m.to_string(), v.to_string())).collect();
    want.sort();
    assert_eq!(got, want, "go mod download did not cover the build list");
    for d in &downloaded {
        let (m, v) = (d["Path"].as_str().unwrap(), d["Version"].as_str().unwrap());
        let sum = format!("{m} {v} {}", d["Sum"].as_str().unwrap());
        let gomodsum = format!("{m} {v}/go.mod {}", d["GoModSum"].as_str().unwrap());
        assert!(reference.go_sum_lines().contains(&sum), "{sum} not in reference go.sum");
        assert!(reference.go_sum_lines().contains(&gomodsum), "{gomodsum} not in reference go.sum");
    }
    // `go mod download` without arguments records only the `/go.mod` lines
    // in go.sum (the zip hashes are in its JSON, checked above); `go build`
    // then adds the `h1:` lines, hashing the zips it got from the server.
    let gomod_lines: Vec<String> = reference.go_sum_lines().into_iter().filter(|l| l.contains("/go.mod ")).collect();
    assert_eq!(cold.go_sum_lines(), gomod_lines);
    cold.build();
    assert_eq!(cold.run_binary(), standard_main_output());
    assert_eq!(cold.go_sum_lines(), reference.go_sum_lines());

    // Nothing that was never fetched can appear: an uncached version is an
    // error now, not a hang.
    let out = cold.try_run(&["mod", "download", "-json", "example.com/hello@v1.0.0"]);
    assert!(!out.status.success(), "uncached version downloaded with upstream gone");
}

#[test]
fn version_queries_and_retractions_match_direct_file_access() {
    let fx = Fixture::standard();
    let server = Server::start(&fx.file_url());
    let direct = GoEnv::new(fx.file_url());
    let via = GoEnv::new(server.url());
    for env in [&direct, &via] {
        env.write_main_module(&standard_main());
    }

    // Each query must print the same through the proxy as from the tree.
    let queries: &[&[&str]] = &[
        // Versions come from @v/list; the retraction from the latest
        // version's .mod (v1.0.2's `retract v1.0.1`), fetched via the proxy.
        &["list", "-m", "-versions", "example.com/retract"],
        &["list", "-m", "-retracted", "-versions", "example.com/retract"],
        &["list", "-m", "-retracted", "-f", "{{.Path}} {{.Version}} {{.Retracted}}", "example.com/retract@v1.0.1"],
        &["list", "-m", "-u", "-retracted", "example.com/retract"],
        &["list", "-m", "-versions", "example.com/CamelCase/Lib"],
        &["list", "-m", "-versions", "example.com/multi"],
        &["list", "-m", "-versions", "example.com/multi/v2"],
        &["list", "-m", "-versions", "example.com/legacy"],
        &["list", "-m", "-versions", "example.com/chain/c"],
        &["list", "-m", "-f", "{{.Path}} {{.Version}} {{.Time}}", "example.com/hello@latest"],
        &["list", "-m", "-f", "{{.Path}} {{.Version}}", "example.com/multi/v2@latest"],
        &["list", "-m", "-f", "{{.Path}} {{.Version}}", "example.com/legacy@latest"],
        &["list", "-m", "-u", "all"],
    ];
    for q in queries {
        let want = direct.run(q);
        let got = via.run(q);
        assert_eq!(got, want, "go {} differs through the proxy", q.join(" "));
    }

    // Spot-check the reference itself, so the comparison means something.
    assert_eq!(direct.run(&["list", "-m", "-versions", "example.com/retract"]), "example.com/retract v1.0.0 v1.0.2\n");
    assert_eq!(direct.run(&["list", "-m", "-retracted", "-versions", "example.com/retract"]), "example.com/retract v1.0.0 v1.0.1 v1.0.2\n");
    assert!(via
        .run(&["list", "-m", "-retracted", "-f", "{{.Retracted}}", "example.com/retract@v1.0.1"])
        .contains("broken release, fixture retraction"));
    assert_eq!(via.run(&["list", "-m", "-versions", "example.com/CamelCase/Lib"]), "example.com/CamelCase/Lib v1.0.0 v1.1.0-RC.1\n");

    // A version with upper case (`v1.1.0-!r!c.1` on the wire).
    let q = ["mod", "download", "-json", "example.com/CamelCase/Lib@v1.1.0-RC.1"];
    let (w, g) = (&parse_json_stream(&direct.run(&q))[0], &parse_json_stream(&via.run(&q))[0]);
    assert_eq!((&g["Sum"], &g["GoModSum"]), (&w["Sum"], &w["GoModSum"]));
    assert_eq!(
        via.downloaded("example.com/CamelCase/Lib", "v1.1.0-RC.1", "zip"),
        fx.artifact("example.com/CamelCase/Lib", "v1.1.0-RC.1", "zip")
    );

    // `go get` of a package resolves the module by probing path prefixes,
    // longest first: `example.com/hello/sub/@v/list` must be a 404/410 for
    // the go command to move on to `example.com/hello` (any other error
    // stops it).
    for env in [&direct, &via] {
        env.run(&["get", "example.com/hello/sub@latest"]);
    }
    assert!(via.read_file("go.mod").contains("example.com/hello v1.2.0"));
    assert_eq!(via.go_sum_lines(), direct.go_sum_lines());

    // An unknown module is "not found", as from the tree.
    let q = ["list", "-m", "example.com/does-not-exist@latest"];
    assert!(!direct.try_run(&q).status.success());
    let out = via.try_run(&q);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404 Not Found") || stderr.contains("410 Gone") || stderr.contains("not found"), "unexpected error: {stderr}");
}
