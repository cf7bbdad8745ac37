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

/// Every shell script shipped (benchmarks, CI, the operator kit) passes
/// shellcheck. CI installs shellcheck; without it the check is reported
/// skipped (the preflight test above shellchecks its two scripts the same way).
#[test]
fn shell_scripts_pass_shellcheck() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut scripts: Vec<String> = ["tuning/preflight", "tuning/test-preflight.sh", ".ci/run"].map(|s| format!("{root}/{s}")).to_vec();
    for entry in std::fs::read_dir(format!("{root}/benches")).expect("benches/") {
        let path = entry.expect("benches/ entry").path();
        if path.extension().is_some_and(|e| e == "sh") {
            scripts.push(path.display().to_string());
        }
    }
    assert!(scripts.len() > 4, "the bench scripts were not found: {scripts:?}");
    match Command::new("shellcheck").args(&scripts).output() {
        Ok(out) => assert!(out.status.success(), "shellcheck:\n{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("SKIPPED: shellcheck is not installed"),
        Err(e) => panic!("running shellcheck: {e}"),
    }
}
