//! `--log-format json`: every log line is one JSON object (ts, level,
//! target, msg), and a line about a request carries its module, version
//! and kind as fields.

mod common;

use common::*;

use std::collections::HashMap;
use std::time::Duration;

const M: &str = "example.com/logs/Mod";

#[test]
fn json_lines_carry_module_version_and_kind() {
    let fx = Fixture::builder().module(Module::new(M, "v1.0.0")).module(Module::new(M, "v1.1.0")).build();
    let upstream = CountingUpstream::serve(fx.root());
    let failing = format!("/{}", artifact_path(M, "v1.1.0", "mod"));
    upstream.set_behavior(UpstreamBehavior { status_override: HashMap::from([(failing.clone(), 500)]), ..Default::default() });
    let mut opts = ServerOpts::new(upstream.url());
    opts.extra_args = vec!["--log-format".into(), "json".into(), "--upstream-retries".into(), "0".into()];
    let server = Server::start_with(opts);
    assert_eq!(http_get(server.addr(), &failing).status, 502);
    assert_eq!(http_get(server.addr(), &format!("/{}", artifact_path(M, "v1.0.0", "zip"))).status, 200);
    let r = admin_request(server.admin_addr(), "POST", &format!("/purge?module={M}&version=v1.0.0"));
    assert_eq!(r.status, 200, "{}", r.body_str());

    let has = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        server.log_lines().iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|v| pred(&v))
    };
    assert!(wait_until(Duration::from_secs(10), || has(&|v| v["msg"].as_str().is_some_and(|m| m.contains("purged")))));
    for line in server.log_lines() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for field in ["ts", "level", "target", "msg"] {
            assert!(v[field].is_string(), "{field} missing: {line}");
        }
    }
    assert!(
        has(&|v| v["level"] == "WARN" && v["module"] == M && v["version"] == "v1.1.0" && v["kind"] == ".mod"),
        "the upstream failure names its request: {:#?}",
        server.log_lines()
    );
    assert!(
        has(&|v| v["module"] == M
            && v["version"] == "v1.0.0"
            && v["kind"] == ".zip"
            && v["msg"].as_str().is_some_and(|m| m.starts_with("purged"))),
        "the purge names what it withdrew: {:#?}",
        server.log_lines()
    );
}
