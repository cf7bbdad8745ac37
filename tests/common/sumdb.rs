//! Checksum databases for tests, in the layout a proxy serves under
//! `/sumdb/`: [`FakeSumDb`], shaped right but unsigned, and
//! [`signed_sumdb`], a real Ed25519-signed log built by `tests/sumdb_gen.go`.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::fixture::{escape, pseudo_random_bytes};
use super::go::{GoEnv, GO_TIMEOUT};
use super::server::run_with_timeout;

/// The checksum database name tests use. Made up on purpose: tests never
/// name a real database.
pub const SUMDB_NAME: &str = "sum.example";

/// Files of a fake checksum database written below `root/sumdb/<name>/`:
/// the shapes are right (a signed-note-looking tree head, a record with its
/// note, hash tiles of the right lengths) but nothing is really signed, so
/// only the proxy (which does not verify) can be tested with it, never the
/// go command.
pub struct FakeSumDb {
    pub name: String,
    /// `/sumdb/<name>` (URL prefix, no trailing slash).
    pub prefix: String,
}

impl FakeSumDb {
    /// Writes the tree. `lookups` are the `(module, version)` pairs it has records for.
    pub fn write(root: &Path, name: &str, lookups: &[(&str, &str)]) -> FakeSumDb {
        let db = FakeSumDb { name: name.to_string(), prefix: format!("/sumdb/{name}") };
        let put = |rel: &str, bytes: &[u8]| {
            let p = root.join("sumdb").join(name).join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, bytes).unwrap();
        };
        put("supported", b"");
        put("latest", db.note(300).as_bytes());
        for (i, (m, v)) in lookups.iter().enumerate() {
            let record = format!("{}\n{m} {v} h1:fake{i}=\n{m} {v}/go.mod h1:fakemod{i}=\n\n{}", 10 + i, db.note(300));
            put(&format!("lookup/{}@{}", escape(m), escape(v)), record.as_bytes());
        }
        for t in ["tile/8/0/000", "tile/8/0/x001/002", "tile/8/0/001.p/44", "tile/8/1/000.p/1"] {
            put(t, &FakeSumDb::tile_bytes(t));
        }
        put("tile/8/data/000", b"example.com/a v1.0.0 h1:x=\nexample.com/a v1.0.0/go.mod h1:y=\n\n");
        // Wrong length for a complete hash tile: a proxy must not keep it.
        put("tile/8/0/002", &[7u8; 100]);
        db
    }

    /// A tree head shaped like a note signed by x/mod's note package.
    pub fn note(&self, size: u64) -> String {
        format!("go.sum database tree\n{size}\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} {} c2lnbmF0dXJl\n", self.name)
    }

    /// Deterministic bytes of the right length for a hash tile path.
    pub fn tile_bytes(tile: &str) -> Vec<u8> {
        let w = tile.rsplit_once(".p/").map_or(256, |(_, w)| w.parse::<usize>().unwrap());
        pseudo_random_bytes(w * 32, tile.len() as u64 * 7919 + w as u64)
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
