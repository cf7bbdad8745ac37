//! Self-tests of the shared harness (no gomodproxy involved), so a failure
//! in a server test can be trusted to be about the server.

mod common;

use common::*;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

#[test]
fn escaping_and_version_classification() {
    assert_eq!(escape("example.com/CamelCase/Lib"), "example.com/!camel!case/!lib");
    assert_eq!(artifact_path("example.com/X", "v1.0.0-RC", "zip"), "example.com/!x/@v/v1.0.0-!r!c.zip");
    assert!(is_pseudo_version("v0.0.0-20240102030405-abcdefabcdef"));
    assert!(is_pseudo_version("v1.2.4-0.20240102030405-abcdefabcdef"));
    assert!(is_pseudo_version("v1.2.3-pre.0.20240102030405-abcdefabcdef+incompatible"));
    assert!(!is_pseudo_version("v1.2.3"));
    assert!(!is_pseudo_version("v2.0.0+incompatible"));
    assert!(!is_pseudo_version("v1.1.0-RC.1"));
    assert_eq!(package_name("example.com/multi/v2"), "multi");
    assert_eq!(package_name("example.com/CamelCase/Lib"), "lib");
    assert_eq!(Module::new("example.com/p", "v0.0.0-20240102030405-abcdefabcdef").time, "2024-01-02T03:04:05Z");
    assert_eq!(Module::new("example.com/legacy", "v2.0.0+incompatible").no_go_mod().mod_file(), "module example.com/legacy\n");
}

fn small_fixture() -> Fixture {
    Fixture::builder()
        .module(Module::new("example.com/Up", "v1.0.0"))
        .module(Module::new("example.com/Up", "v0.0.0-20240102030405-abcdefabcdef"))
        .module(Module::new("example.com/big", "v1.0.0").file("d.bin", pseudo_random_bytes(1 << 20, 7)).stored())
        .build()
}

#[test]
fn fixture_layout() {
    let fx = small_fixture();
    // Escaped directories; pseudo-versions are served but not listed.
    assert_eq!(fx.read("example.com/!up/@v/list"), b"v1.0.0\n");
    assert!(fx.root().join("example.com/!up/@v/v0.0.0-20240102030405-abcdefabcdef.zip").is_file());
    let info: serde_json::Value = serde_json::from_slice(&fx.artifact("example.com/Up", "v1.0.0", "info")).unwrap();
    assert_eq!(info, serde_json::json!({"Version": "v1.0.0", "Time": DEFAULT_TIME}));
    // Zip entries use the unescaped module path; stored data stays large.
    let z = fx.artifact("example.com/Up", "v1.0.0", "zip");
    let mut ar = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
    let names: Vec<String> = ar.file_names().map(str::to_string).collect();
    assert!(names.contains(&"example.com/Up@v1.0.0/go.mod".to_string()), "{names:?}");
    assert!(names.contains(&"example.com/Up@v1.0.0/up.go".to_string()), "{names:?}");
    assert_eq!(ar.by_name("example.com/Up@v1.0.0/go.mod").unwrap().size(), Module::new("example.com/Up", "v1.0.0").mod_file().len() as u64);
    assert!(fx.artifact("example.com/big", "v1.0.0", "zip").len() > 1 << 20);
}

#[test]
fn counting_upstream_counts_decodes_and_pipelines() {
    let fx = small_fixture();
    let up = CountingUpstream::serve(fx.root());
    let mut c = RawConn::connect(up.addr());
    // `%21` is how the go command sends `!`; counts use the decoded form.
    let r = c.request("GET", "/example.com/%21up/@v/list");
    assert_eq!((r.status, r.body_str().as_str()), (200, "v1.0.0\n"));
    let h = c.request("HEAD", "/example.com/!up/@v/v1.0.0.zip");
    assert_eq!(h.content_length(), Some(fx.artifact("example.com/Up", "v1.0.0", "zip").len()));
    assert!(h.body.is_empty());
    assert_eq!(c.request("GET", "/example.com/nope/@v/list").status, 404);
    assert_eq!(c.request("GET", "/example.com/%2fx/@v/list").status, 400);
    assert_eq!(up.hits("/example.com/!up/@v/list"), 1);
    assert_eq!(up.hits("/example.com/!up/@v/v1.0.0.zip"), 1);
    assert_eq!(up.total_hits(), 4);
    assert_eq!(up.request_log()[0], "GET /example.com/%21up/@v/list");

    let mut b = UpstreamBehavior::default();
    b.status_override.insert("/example.com/!up/@v/list".into(), 503);
    up.set_behavior(b);
    assert_eq!(c.request("GET", "/example.com/!up/@v/list").status, 503);
}

#[test]
fn counting_upstream_hold_slow_truncate_and_shutdown() {
    let fx = small_fixture();
    let mut up = CountingUpstream::serve(fx.root());
    let addr = up.addr();
    let zip = format!("/{}", artifact_path("example.com/big", "v1.0.0", "zip"));
    let want = fx.artifact("example.com/big", "v1.0.0", "zip");

    // Held: the request is counted, but no byte comes back until released.
    up.hold_zips();
    let z = zip.clone();
    let t = thread::spawn(move || http_get(addr, &z));
    assert!(up.wait_for_hits(&zip, 1, Duration::from_secs(10)));
    assert!(!t.is_finished());
    up.release_zips();
    assert!(t.join().unwrap().body == want);

    // Slow fill: chunked with pauses, still complete.
    up.set_behavior(UpstreamBehavior { zip_chunk: 256 * 1024, zip_chunk_delay: Duration::from_millis(5), ..Default::default() });
    assert!(http_get(addr, &zip).body == want);

    // Truncated: Content-Length promises more than arrives.
    up.set_behavior(UpstreamBehavior { zip_truncate_at: Some(1000), ..Default::default() });
    let err = RawConn::connect(addr).read_response_after(&zip).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");

    // Shut down: the port refuses connections.
    up.shutdown();
    assert!(TcpStream::connect(addr).is_err());
}
