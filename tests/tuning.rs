//! The operator kit in tuning/: `preflight` runs for both roles, prints one
//! well-formed line per check, and its exit code matches its FAIL lines
//! (tuning/test-preflight.sh holds the checks; this runs it with the suite).

use std::process::Command;

#[test]
fn preflight_checks_a_host_for_both_roles() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tuning/test-preflight.sh");
    let out = Command::new("bash").arg(script).output().expect("run tuning/test-preflight.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tuning/test-preflight.sh failed:\n{text}");
    assert!(text.contains("PASS: test-preflight.sh"), "{text}");
}
