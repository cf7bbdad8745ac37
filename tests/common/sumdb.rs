//! Checksum databases for tests, in the layout a proxy serves under
//! `/sumdb/`: [`signed_sumdb`], a real Ed25519-signed log built by
//! `tests/sumdb_gen.go`, and [`SignedDb`], its paths.

use std::path::Path;
use std::process::Command;

use super::fixture::escape;
use super::go::{GoEnv, GO_TIMEOUT};
use super::server::run_with_timeout;

/// The checksum database name tests use. Made up on purpose: tests never
/// name a real database.
pub const SUMDB_NAME: &str = "sum.example";

/// A signed checksum database (see [`signed_sumdb`]) written below a
/// fixture root, as its upstream serves it under `/sumdb/<name>/`.
pub struct SignedDb {
    /// The verifier key: a `GOSUMDB` / `--sumdb` value.
    pub key: String,
    /// `/sumdb/<name>` (URL prefix, no trailing slash).
    pub prefix: String,
}

impl SignedDb {
    pub fn write(root: &Path, specs: &[&str]) -> SignedDb {
        let key = signed_sumdb(root, &GoEnv::new("off"), specs);
        SignedDb { key, prefix: format!("/sumdb/{SUMDB_NAME}") }
    }

    /// `/sumdb/<name>/<rel>`.
    pub fn url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }

    pub fn lookup_url(&self, module: &str, version: &str) -> String {
        self.url(&format!("lookup/{}@{}", escape(module), escape(version)))
    }
}

/// Writes a signed database named [`SUMDB_NAME`] of `specs` (`path@version[=tamper]`: the first, 290
/// filler records, then the rest) below `root`; returns its verifier key.
pub fn signed_sumdb(root: &Path, env: &GoEnv, specs: &[&str]) -> String {
    let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sumdb_gen.go");
    let mut cmd: Command = env.command(&["run", gen.to_str().unwrap(), root.to_str().unwrap(), SUMDB_NAME]);
    cmd.args(specs);
    // `go run` of a lone file needs no module; keep the env's flags out of it.
    cmd.env("GOFLAGS", "").env("GOPROXY", "off");
    let out = run_with_timeout(&mut cmd, GO_TIMEOUT);
    assert!(out.status.success(), "sumdb_gen failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
