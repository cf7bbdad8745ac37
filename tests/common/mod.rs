//! Shared harness for the end-to-end tests (`mod common;` in each test file).
//!
//! Pieces:
//! * [`Fixture`] / [`Module`]: a declarative list of Go modules rendered into a
//!   GOPROXY file-layout tree (the layout of `$GOMODCACHE/cache/download`),
//!   usable as `--upstream file://...` or directly as `GOPROXY=file://...`.
//! * [`Server`]: the `gomodproxy` binary under test, spawned on `127.0.0.1:0`.
//! * [`GoEnv`]: the real `go` command, run hermetically against a proxy URL.
//! * [`RawConn`] / [`HttpResponse`]: a tiny HTTP/1.1 client over a bare
//!   `TcpStream`, so protocol tests control every byte (pipelining, HEAD,
//!   malformed requests).
//! * [`CountingUpstream`]: an HTTP server (std threads) that serves a fixture
//!   tree in GOPROXY layout, counts requests per path and can slow down or
//!   hold back `.zip` bodies.
//!
//! Everything binds to loopback only and nothing reaches the network.
//!
//! Not every test file uses every helper; the allow keeps per-file dead-code
//! warnings from drowning real ones.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Module path / version escaping
// ---------------------------------------------------------------------------

/// `!`-case-encodes a module path or version as the GOPROXY protocol and the
/// module cache do: every upper-case ASCII letter becomes `!` + lower-case.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Relative URL/file path of `$module/@v/list` (escaped, no leading slash).
pub fn list_path(module: &str) -> String {
    format!("{}/@v/list", escape(module))
}

/// Relative URL/file path of `$module/@latest` (escaped, no leading slash).
pub fn latest_path(module: &str) -> String {
    format!("{}/@latest", escape(module))
}

/// Relative URL/file path of `$module/@v/$version.$ext` (both escaped, no
/// leading slash). `ext` is `info`, `mod` or `zip`.
pub fn artifact_path(module: &str, version: &str, ext: &str) -> String {
    format!("{}/@v/{}.{}", escape(module), escape(version), ext)
}

/// True for pseudo-versions (`vX.0.0-yyyymmddhhmmss-abcdef123456`,
/// `vX.Y.Z-pre.0.yyyymmddhhmmss-...`, `vX.Y.(Z+1)-0.yyyymmddhhmmss-...`),
/// optionally followed by `+incompatible`. The go command's file layout
/// leaves these out of `@v/list`, so the fixture must too.
pub fn is_pseudo_version(v: &str) -> bool {
    pseudo_timestamp(v).is_some()
}

/// The 14-digit timestamp of a pseudo-version, if `v` is one.
fn pseudo_timestamp(v: &str) -> Option<&str> {
    let base = v.split('+').next()?;
    let (rest, rev) = base.rsplit_once('-')?;
    if rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if rest.len() < 15 {
        return None;
    }
    let (head, ts) = rest.split_at(rest.len() - 14);
    let sep_ok = head.ends_with('-') || head.ends_with('.');
    if sep_ok && ts.bytes().all(|b| b.is_ascii_digit()) {
        Some(ts)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Fixture: declarative modules -> GOPROXY file layout
// ---------------------------------------------------------------------------

/// `.info` time used when a module does not say otherwise.
pub const DEFAULT_TIME: &str = "2024-01-02T03:04:05Z";

/// One version of one module, as it will appear in the fixture tree.
///
/// By default a module has a go.mod (`go 1.21`) and one Go package at its
/// root whose `ID()` function returns `"<path>@<version>"`; [`Module::calls`]
/// makes `ID()` also call into a dependency, so compiling the main module
/// compiles the whole dependency chain.
#[derive(Clone, Debug)]
pub struct Module {
    pub path: String,
    pub version: String,
    /// RFC 3339 time written to `.info`.
    pub time: String,
    /// `go` directive of the generated go.mod (None: no directive).
    pub go_directive: Option<String>,
    pub requires: Vec<(String, String)>,
    /// Retract directives, verbatim after `retract ` (e.g. `v1.0.1 // why`).
    pub retracts: Vec<String>,
    /// False for pre-modules code (and so `+incompatible` versions): the zip
    /// has no go.mod and `.mod` is the synthesized `module <path>\n`.
    pub has_go_mod: bool,
    /// Import paths whose `ID()` this module's `ID()` appends.
    pub calls: Vec<String>,
    /// Extra files (path relative to the module root, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Store zip entries uncompressed (the big module: its data is random,
    /// and deflating 40 MiB in a debug build would be slow for nothing).
    pub stored: bool,
}

impl Module {
    pub fn new(path: &str, version: &str) -> Module {
        // A pseudo-version encodes its commit time; the go command expects
        // the .info Time to agree with it, so derive it instead of making
        // every caller repeat it.
        let time = match pseudo_timestamp(version) {
            Some(ts) => format!("{}-{}-{}T{}:{}:{}Z", &ts[0..4], &ts[4..6], &ts[6..8], &ts[8..10], &ts[10..12], &ts[12..14]),
            None => DEFAULT_TIME.to_string(),
        };
        Module {
            path: path.to_string(),
            version: version.to_string(),
            time,
            go_directive: Some("1.21".to_string()),
            requires: Vec::new(),
            retracts: Vec::new(),
            has_go_mod: true,
            calls: Vec::new(),
            files: Vec::new(),
            stored: false,
        }
    }

    pub fn time(mut self, t: &str) -> Self {
        self.time = t.to_string();
        self
    }

    /// Adds `require path version` to go.mod *and* makes `ID()` call the
    /// dependency's root package, so the requirement is really used.
    pub fn require(mut self, path: &str, version: &str) -> Self {
        self.requires.push((path.to_string(), version.to_string()));
        self.calls.push(path.to_string());
        self
    }

    /// Adds a `retract` directive (e.g. `"v1.0.1 // broken"`).
    pub fn retract(mut self, spec: &str) -> Self {
        self.retracts.push(spec.to_string());
        self
    }

    /// Pre-modules code: no go.mod in the zip, synthesized `.mod`.
    pub fn no_go_mod(mut self) -> Self {
        self.has_go_mod = false;
        self
    }

    pub fn file(mut self, rel: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((rel.to_string(), contents.into()));
        self
    }

    pub fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    /// `path@version`, the string the generated `ID()` starts with.
    pub fn id(&self) -> String {
        format!("{}@{}", self.path, self.version)
    }

    /// The generated go.mod, or the synthesized one for pre-modules code.
    /// This is exactly what `.mod` serves (and what go.sum's `/go.mod` hash
    /// covers).
    pub fn mod_file(&self) -> String {
        if !self.has_go_mod {
            // Same bytes as the go command's synthesized go.mod.
            return format!("module {}\n", self.path);
        }
        let mut s = format!("module {}\n", self.path);
        if let Some(go) = &self.go_directive {
            s.push_str(&format!("\ngo {go}\n"));
        }
        if !self.requires.is_empty() {
            s.push_str("\nrequire (\n");
            for (p, v) in &self.requires {
                s.push_str(&format!("\t{p} {v}\n"));
            }
            s.push_str(")\n");
        }
        for r in &self.retracts {
            s.push_str(&format!("\nretract {r}\n"));
        }
        s
    }

    pub fn info_json(&self) -> String {
        format!(r#"{{"Version":"{}","Time":"{}"}}"#, self.version, self.time)
    }

    /// The root package's source file: `(file name, contents)`.
    pub fn go_source(&self) -> (String, String) {
        let pkg = package_name(&self.path);
        let mut src = format!("// Package {pkg} is generated by the gomodproxy e2e fixture.\npackage {pkg}\n");
        if !self.calls.is_empty() {
            src.push_str("\nimport (\n");
            for (i, c) in self.calls.iter().enumerate() {
                src.push_str(&format!("\tdep{i} \"{c}\"\n"));
            }
            src.push_str(")\n");
        }
        src.push_str(&format!("\n// ID names this module version and the ones it calls.\nfunc ID() string {{\n\treturn \"{}\"", self.id()));
        for i in 0..self.calls.len() {
            src.push_str(&format!(" + \" > \" + dep{i}.ID()"));
        }
        src.push_str("\n}\n");
        (format!("{pkg}.go"), src)
    }

    /// Writes the module zip (entries `<path>@<version>/...`, module path
    /// NOT escaped) to `w`.
    fn write_zip(&self, w: fs::File) -> zip::result::ZipResult<()> {
        use zip::write::SimpleFileOptions;
        let method = if self.stored { zip::CompressionMethod::Stored } else { zip::CompressionMethod::Deflated };
        // Fixed timestamp: the go command's h1: hash ignores it, but a
        // deterministic zip makes byte comparisons across runs meaningful.
        let opts = SimpleFileOptions::default().compression_method(method).last_modified_time(zip::DateTime::default());
        let mut entries: Vec<(String, &[u8])> = Vec::new();
        let mod_file = self.mod_file();
        if self.has_go_mod {
            entries.push(("go.mod".to_string(), mod_file.as_bytes()));
        }
        let (src_name, src) = self.go_source();
        entries.push((src_name, src.as_bytes()));
        for (name, data) in &self.files {
            entries.push((name.clone(), data));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut z = zip::ZipWriter::new(w);
        let prefix = format!("{}@{}/", self.path, self.version);
        for (name, data) in entries {
            z.start_file(format!("{prefix}{name}"), opts)?;
            z.write_all(data)?;
        }
        z.finish()?;
        Ok(())
    }
}

/// Go package name for a module root: last path element, skipping a `/vN`
/// major-version suffix, lower-cased, non-alphanumerics dropped.
pub fn package_name(module_path: &str) -> String {
    let mut elems: Vec<&str> = module_path.split('/').collect();
    if elems.len() > 1 {
        let last = elems[elems.len() - 1];
        if last.len() > 1 && last.starts_with('v') && last[1..].bytes().all(|b| b.is_ascii_digit()) {
            elems.pop();
        }
    }
    let mut name: String = elems.last().unwrap().chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        name.insert(0, 'p');
    }
    name
}

/// Deterministic, incompressible filler (xorshift64*). Fast enough in a
/// debug build to produce 40 MiB well under a second.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut x = seed | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

/// Builder for [`Fixture`].
#[derive(Default)]
pub struct FixtureBuilder {
    modules: Vec<Module>,
}

impl FixtureBuilder {
    pub fn module(mut self, m: Module) -> Self {
        self.modules.push(m);
        self
    }

    pub fn build(self) -> Fixture {
        let dir = tempfile::Builder::new().prefix("gomodproxy-fixture-").tempdir().expect("create fixture tempdir");
        let root = dir.path();
        // list files: one version per line, pseudo-versions excluded, in the
        // order modules were declared (the protocol does not require sorting
        // and the go command sorts itself).
        let mut lists: Vec<(String, Vec<String>)> = Vec::new();
        for m in &self.modules {
            let vdir = root.join(escape(&m.path)).join("@v");
            fs::create_dir_all(&vdir).expect("mkdir @v");
            let base = vdir.join(escape(&m.version));
            fs::write(base.with_extension_str("info"), m.info_json()).unwrap();
            fs::write(base.with_extension_str("mod"), m.mod_file()).unwrap();
            let zf = fs::File::create(base.with_extension_str("zip")).unwrap();
            m.write_zip(zf).expect("write module zip");
            let entry = match lists.iter_mut().find(|(p, _)| *p == m.path) {
                Some(e) => e,
                None => {
                    lists.push((m.path.clone(), Vec::new()));
                    lists.last_mut().unwrap()
                }
            };
            if !is_pseudo_version(&m.version) {
                entry.1.push(m.version.clone());
            }
        }
        for (path, versions) in &lists {
            // A module with only pseudo-versions still gets an (empty) list,
            // which is what a proxy answers for it.
            let body: String = versions.iter().map(|v| format!("{v}\n")).collect();
            fs::write(root.join(list_path(path)), body).unwrap();
        }
        Fixture { dir, modules: self.modules }
    }
}

/// Appends `.ext` to a path whose file name may itself contain dots
/// (`v1.2.3` must become `v1.2.3.info`, not `v1.2.info`).
trait WithExtensionStr {
    fn with_extension_str(&self, ext: &str) -> PathBuf;
}
impl WithExtensionStr for PathBuf {
    fn with_extension_str(&self, ext: &str) -> PathBuf {
        let mut s = self.clone().into_os_string();
        s.push(".");
        s.push(ext);
        PathBuf::from(s)
    }
}

/// A GOPROXY file-layout tree in a temp dir (removed on drop).
pub struct Fixture {
    dir: TempDir,
    modules: Vec<Module>,
}

impl Fixture {
    pub fn builder() -> FixtureBuilder {
        FixtureBuilder::default()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `file:///abs/path`, usable as GOPROXY or `--upstream`.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.root().display())
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    pub fn module(&self, path: &str, version: &str) -> &Module {
        self.modules.iter().find(|m| m.path == path && m.version == version).unwrap_or_else(|| panic!("fixture has no {path}@{version}"))
    }

    /// Bytes of a file in the tree, by relative (escaped) path, e.g. from
    /// [`artifact_path`] or [`list_path`].
    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.root().join(rel)).unwrap_or_else(|e| panic!("read fixture {rel}: {e}"))
    }

    pub fn artifact(&self, module: &str, version: &str, ext: &str) -> Vec<u8> {
        self.read(&artifact_path(module, version, ext))
    }

    /// The module set the go-command tests use: see [`standard_main`] for the
    /// main module that depends on it. Covers several versions per module,
    /// upper case in paths and versions, a `/v2` module next to its v1, a
    /// `+incompatible` version, a pseudo-version, a retraction, a dependency
    /// chain resolved by MVS (not by "latest"), and a >= 40 MiB zip.
    pub fn standard() -> Fixture {
        Fixture::builder()
            // Several versions; main pins the middle one, so a proxy that
            // served "latest" instead of what was asked would be caught.
            .module(Module::new("example.com/hello", "v1.0.0").time("2024-01-01T00:00:00Z"))
            .module(Module::new("example.com/hello", "v1.1.0").time("2024-02-01T00:00:00Z"))
            // v1.2.0 adds a nested package: `go get example.com/hello/sub`
            // first asks for a module named `example.com/hello/sub`, which
            // must be "not found" (404/410) so the go command moves on to
            // `example.com/hello`.
            .module(
                Module::new("example.com/hello", "v1.2.0").time("2024-03-01T00:00:00Z").file(
                    "sub/sub.go",
                    "package sub\n\n// ID names this package.\nfunc ID() string { return \"example.com/hello/sub\" }\n",
                ),
            )
            // Upper case in the module path (escaped `!camel!case/!lib` on
            // the wire and on disk) and in a pre-release version.
            .module(Module::new("example.com/CamelCase/Lib", "v1.0.0"))
            .module(Module::new("example.com/CamelCase/Lib", "v1.1.0-RC.1"))
            // A v1 module and its /v2 successor: `example.com/multi/@v/...`
            // and `example.com/multi/v2/@v/...` must not be confused.
            .module(Module::new("example.com/multi", "v1.0.0"))
            .module(Module::new("example.com/multi/v2", "v2.0.0"))
            .module(Module::new("example.com/multi/v2", "v2.1.0"))
            // Pre-modules code tagged v2: only usable as +incompatible.
            .module(Module::new("example.com/legacy", "v2.0.0+incompatible").no_go_mod())
            // Only a pseudo-version: empty @v/list, Time from the version.
            .module(Module::new("example.com/pseudo", "v0.0.0-20240102030405-abcdefabcdef"))
            // v1.0.2's go.mod retracts v1.0.1; main requires v1.0.0.
            .module(Module::new("example.com/retract", "v1.0.0"))
            .module(Module::new("example.com/retract", "v1.0.1"))
            .module(Module::new("example.com/retract", "v1.0.2").retract("v1.0.1 // broken release, fixture retraction"))
            // a -> b v1.1.0 -> c v1.2.0, while newer b/c versions exist.
            .module(Module::new("example.com/chain/a", "v1.0.0").require("example.com/chain/b", "v1.1.0"))
            .module(Module::new("example.com/chain/b", "v1.0.0"))
            .module(Module::new("example.com/chain/b", "v1.1.0").require("example.com/chain/c", "v1.2.0"))
            .module(Module::new("example.com/chain/b", "v1.2.0").require("example.com/chain/c", "v1.3.0"))
            .module(Module::new("example.com/chain/c", "v1.2.0"))
            .module(Module::new("example.com/chain/c", "v1.3.0"))
            // A big, incompressible zip: a data file next to the package's
            // .go file, stored uncompressed so the zip itself is > 40 MiB.
            .module(
                Module::new("example.com/big", "v1.0.0")
                    .file("data.bin", pseudo_random_bytes(BIG_DATA_LEN, 0x9E37_79B9_7F4A_7C15))
                    .stored(),
            )
            .build()
    }
}

/// Size of the big module's data file (the zip is a little larger).
pub const BIG_DATA_LEN: usize = 40 * 1024 * 1024 + 12345;

/// A main module: its go.mod requirements and the packages main.go imports.
#[derive(Clone, Debug)]
pub struct MainModule {
    pub path: String,
    pub requires: Vec<(String, String)>,
    /// Import paths; main calls `ID()` of each and prints it on a line.
    pub imports: Vec<String>,
}

/// The main module for [`Fixture::standard`]. It requires only
/// `example.com/chain/a`, so `-mod=mod` must discover b and c through the
/// module graph.
pub fn standard_main() -> MainModule {
    let req = |p: &str, v: &str| (p.to_string(), v.to_string());
    MainModule {
        path: "corp.example/e2e/app".to_string(),
        requires: vec![
            req("example.com/hello", "v1.1.0"),
            req("example.com/CamelCase/Lib", "v1.0.0"),
            req("example.com/multi", "v1.0.0"),
            req("example.com/multi/v2", "v2.1.0"),
            req("example.com/legacy", "v2.0.0+incompatible"),
            req("example.com/pseudo", "v0.0.0-20240102030405-abcdefabcdef"),
            req("example.com/retract", "v1.0.0"),
            req("example.com/chain/a", "v1.0.0"),
            req("example.com/big", "v1.0.0"),
        ],
        imports: [
            "example.com/hello",
            "example.com/CamelCase/Lib",
            "example.com/multi",
            "example.com/multi/v2",
            "example.com/legacy",
            "example.com/pseudo",
            "example.com/retract",
            "example.com/chain/a",
            "example.com/big",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

/// What the standard main program prints, one line per import.
pub fn standard_main_output() -> String {
    [
        "example.com/hello@v1.1.0",
        "example.com/CamelCase/Lib@v1.0.0",
        "example.com/multi@v1.0.0",
        "example.com/multi/v2@v2.1.0",
        "example.com/legacy@v2.0.0+incompatible",
        "example.com/pseudo@v0.0.0-20240102030405-abcdefabcdef",
        "example.com/retract@v1.0.0",
        "example.com/chain/a@v1.0.0 > example.com/chain/b@v1.1.0 > example.com/chain/c@v1.2.0",
        "example.com/big@v1.0.0",
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

// ---------------------------------------------------------------------------
// A fake checksum database, in the layout a proxy serves it under /sumdb/
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Child-process helpers
// ---------------------------------------------------------------------------

/// Makes the child get SIGKILL if the thread that spawned it dies, so a
/// test binary killed by a timeout does not leave servers behind. (Linux
/// ties this to the spawning *thread*: spawn servers from the test's own
/// thread, which owns and drops them anyway.)
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork
    // and exec here.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Runs `cmd` to completion with stdout/stderr captured, killing it and
/// panicking if it takes longer than `timeout` (a hung proxy must fail the
/// test, not hang the suite).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    die_with_parent(cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Drain both pipes on threads so a chatty child never blocks on a full
    // pipe while we wait for it.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        match child.try_wait().expect("try_wait") {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = t_err.join().unwrap_or_default();
                panic!("{cmd:?} still running after {timeout:?}; killed. stderr:\n{}", String::from_utf8_lossy(&stderr));
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

// ---------------------------------------------------------------------------
// Server: the gomodproxy binary under test
// ---------------------------------------------------------------------------

/// Path of the binary under test. `GOMODPROXY_BIN` overrides the one cargo
/// built for this package (e.g. to run the suite against a release build).
pub fn server_bin() -> PathBuf {
    match std::env::var_os("GOMODPROXY_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_gomodproxy")),
    }
}

/// Command-line options of `gomodproxy serve`.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub listen: String,
    /// The `--upstream` list, passed verbatim; empty: not passed (the
    /// server then inherits `go env GOPROXY`).
    pub upstream: String,
    pub cores: usize,
    pub list_ttl: Option<u64>,
    /// Use this data dir instead of a fresh temp one (caller keeps it).
    pub data_dir: Option<PathBuf>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// How long to wait for the `listening on` line.
    pub startup_timeout: Duration,
}

impl ServerOpts {
    pub fn new(upstream: impl Into<String>) -> ServerOpts {
        ServerOpts {
            listen: "127.0.0.1:0".to_string(),
            upstream: upstream.into(),
            cores: 2,
            list_ttl: None,
            data_dir: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            startup_timeout: Duration::from_secs(20),
        }
    }
}

/// A running `gomodproxy serve`. Killed (SIGKILL) on drop, also while a
/// failing test unwinds.
pub struct Server {
    opts: ServerOpts,
    /// Owned temp data dir (None when the caller supplied one).
    _data_tmp: Option<TempDir>,
    data_dir: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
    /// Incremented per (re)start so log lines say which process wrote them.
    generation: usize,
    /// Every stderr line of every process this Server started, in order.
    logs: Arc<Mutex<Vec<String>>>,
}

static SERVER_SEQ: AtomicUsize = AtomicUsize::new(0);

impl Server {
    /// Starts a server with default options and a fresh data dir.
    pub fn start(upstream: &str) -> Server {
        Server::start_with(ServerOpts::new(upstream))
    }

    pub fn start_with(opts: ServerOpts) -> Server {
        let (data_tmp, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new().prefix("gomodproxy-data-").tempdir().expect("data tempdir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let mut s = Server {
            opts,
            _data_tmp: data_tmp,
            data_dir,
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            generation: SERVER_SEQ.fetch_add(1, Ordering::Relaxed),
            logs: Arc::new(Mutex::new(Vec::new())),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let o = &self.opts;
        let mut cmd = Command::new(server_bin());
        cmd.arg("serve").arg("--listen").arg(&o.listen).arg("--data").arg(&self.data_dir).arg("--cores").arg(o.cores.to_string());
        // Empty: no --upstream, so the server inherits `go env GOPROXY`.
        if !o.upstream.is_empty() {
            cmd.arg("--upstream").arg(&o.upstream);
        }
        if let Some(ttl) = o.list_ttl {
            cmd.arg("--list-ttl").arg(ttl.to_string());
        }
        cmd.args(&o.extra_args);
        // The upstream always comes from --upstream; make sure nothing in
        // the developer's environment can add or redirect one.
        for k in [
            "GOPROXY",
            "GONOPROXY",
            "GOPRIVATE",
            "GONOSUMDB",
            "GOSUMDB",
            "GOFLAGS",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(k);
        }
        // Defaults the server takes from `go env` must not come from the
        // `go env -w` settings of whoever runs the tests.
        cmd.env("GOENV", "off");
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", server_bin().display()));
        let tag = format!("gomodproxy#{}", self.generation);

        // stderr: forwarded line by line into the test's (captured) output,
        // so a failing test shows what the server logged.
        let stderr = child.stderr.take().unwrap();
        let etag = tag.clone();
        let logs = self.logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => {
                        eprintln!("[{etag} stderr] {l}");
                        logs.lock().unwrap().push(l);
                    }
                    Err(_) => break,
                }
            }
        });

        // stdout: the first `listening on` line is handed to us; anything
        // else is forwarded like stderr. Reading continues until EOF so the
        // server never blocks on a full stdout pipe.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let otag = tag.clone();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(l) = line else { break };
                if l.starts_with("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(l.clone());
                    }
                }
                eprintln!("[{otag} stdout] {l}");
            }
        });

        // Bounded wait for the line; notice an early exit instead of waiting
        // out the whole timeout.
        let deadline = Instant::now() + self.opts.startup_timeout;
        let line = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Disconnected) | Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(st) = child.try_wait().expect("try_wait") {
                        panic!("{tag} exited before listening: {st}");
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("{tag}: no `listening on` line within {:?}", self.opts.startup_timeout);
                    }
                }
            }
        };
        self.addr = parse_listening_line(&line).unwrap_or_else(|| panic!("{tag}: cannot parse listening line {line:?}"));
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), usable as GOPROXY.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn opts(&self) -> &ServerOpts {
        &self.opts
    }

    /// Every stderr line the server processes started by this `Server`
    /// have written so far (all generations, in order).
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits (bounded) until some stderr line satisfies `pred`.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        wait_until(timeout, || self.logs.lock().unwrap().iter().any(|l| pred(l)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits (bounded) for the server to exit on its own; None if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.child.as_mut()?.try_wait().expect("try_wait");
            if let Some(st) = st {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL, then reap. A crash: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // std sends SIGKILL
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait up to 10 s for a clean exit, then SIGKILL. Returns
    /// the exit status if the process exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM, bounded) and starts it again on the same
    /// data dir and options. The port changes when listening on `:0`.
    pub fn restart(&mut self) {
        self.restart_with(|_| {});
    }

    /// Like [`Server::restart`], after `f` adjusted the options (e.g. to
    /// point `upstream` at something dead).
    pub fn restart_with(&mut self, f: impl FnOnce(&mut ServerOpts)) {
        self.stop();
        f(&mut self.opts);
        self.generation = SERVER_SEQ.fetch_add(1, Ordering::Relaxed);
        self.spawn();
    }

    /// Starts a process after [`Server::kill9`] without stopping anything.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.generation = SERVER_SEQ.fetch_add(1, Ordering::Relaxed);
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `listening on http://127.0.0.1:PORT` -> socket address.
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on ")?;
    let hostport = rest.strip_prefix("http://")?.trim_end_matches('/');
    hostport.parse().ok()
}

// ---------------------------------------------------------------------------
// GoEnv: the real go command, hermetic
// ---------------------------------------------------------------------------

/// Limit for one go command (the big zip plus a cold build cache fits well
/// inside this on two cores).
pub const GO_TIMEOUT: Duration = Duration::from_secs(300);

/// Go's build cache, shared by all GoEnvs (and across runs) under cargo's
/// per-target temp dir. It holds compiled packages keyed by content hash,
/// never module downloads, so sharing it cannot hide a proxy problem; not
/// sharing it would recompile the runtime for every GoEnv.
fn shared_gocache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-gocache")
}

/// A hermetic environment for the go command: its own GOPATH, GOMODCACHE,
/// HOME and main-module dir, a given GOPROXY, no checksum database, no
/// toolchain switching, no user config, nothing inherited but PATH.
pub struct GoEnv {
    root: TempDir,
    proxy: String,
    extra_env: Vec<(String, String)>,
}

impl GoEnv {
    pub fn new(proxy: impl Into<String>) -> GoEnv {
        let root = tempfile::Builder::new().prefix("gomodproxy-goenv-").tempdir().expect("goenv tempdir");
        for d in ["gopath/pkg/mod", "home", "work", "tmp"] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }
        GoEnv { root, proxy: proxy.into(), extra_env: Vec::new() }
    }

    pub fn set_proxy(&mut self, proxy: impl Into<String>) {
        self.proxy = proxy.into();
    }

    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// Extra/overriding environment for every later command.
    pub fn env(&mut self, k: &str, v: &str) {
        self.extra_env.push((k.to_string(), v.to_string()));
    }

    pub fn work_dir(&self) -> PathBuf {
        self.root.path().join("work")
    }

    pub fn gomodcache(&self) -> PathBuf {
        self.root.path().join("gopath/pkg/mod")
    }

    /// A `go` command with the hermetic environment, run in the work dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let r = self.root.path();
        let mut cmd = Command::new("go");
        cmd.args(args).current_dir(self.work_dir()).env_clear();
        if let Some(p) = std::env::var_os("PATH") {
            cmd.env("PATH", p);
        }
        cmd.env("HOME", r.join("home"))
            .env("XDG_CONFIG_HOME", r.join("home/.config"))
            .env("XDG_CACHE_HOME", r.join("home/.cache"))
            .env("TMPDIR", r.join("tmp"))
            // Ignore `go env -w` settings of whoever runs the tests.
            .env("GOENV", "off")
            .env("GOPATH", r.join("gopath"))
            .env("GOMODCACHE", self.gomodcache())
            .env("GOCACHE", shared_gocache())
            .env("GOPROXY", &self.proxy)
            // -modcacherw: the module cache is read-only by default, which
            // would make the TempDir impossible to delete.
            .env("GOFLAGS", "-mod=mod -modcacherw")
            .env("GOTOOLCHAIN", "local")
            // Fixture modules are in no checksum database; with it off the
            // go command never asks the proxy for /sumdb/ either.
            .env("GOSUMDB", "off")
            .env("GO111MODULE", "on")
            .env("GOWORK", "off")
            .env("CGO_ENABLED", "0");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a go command, whatever its exit status.
    pub fn try_run(&self, args: &[&str]) -> Output {
        run_with_timeout(&mut self.command(args), GO_TIMEOUT)
    }

    /// Runs a go command, panicking with its output if it fails; returns
    /// stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        if !out.status.success() {
            panic!(
                "go {} failed ({}) with GOPROXY={}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                out.status,
                self.proxy,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).expect("utf-8 go output")
    }

    /// Writes a file relative to the work dir.
    pub fn write_file(&self, rel: &str, contents: &str) {
        let p = self.work_dir().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, contents).unwrap();
    }

    pub fn read_file(&self, rel: &str) -> String {
        fs::read_to_string(self.work_dir().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Writes go.mod and main.go for `m` (and removes any old go.sum).
    /// main calls `ID()` of every import and prints one line each.
    pub fn write_main_module(&self, m: &MainModule) {
        let mut gomod = format!("module {}\n\ngo 1.21\n", m.path);
        if !m.requires.is_empty() {
            gomod.push_str("\nrequire (\n");
            for (p, v) in &m.requires {
                gomod.push_str(&format!("\t{p} {v}\n"));
            }
            gomod.push_str(")\n");
        }
        self.write_file("go.mod", &gomod);
        let mut main = String::from("package main\n\nimport (\n\t\"os\"\n\n");
        for (i, imp) in m.imports.iter().enumerate() {
            main.push_str(&format!("\tm{i} \"{imp}\"\n"));
        }
        main.push_str(")\n\nfunc main() {\n");
        for i in 0..m.imports.len() {
            main.push_str(&format!("\tos.Stdout.WriteString(m{i}.ID() + \"\\n\")\n"));
        }
        main.push_str("}\n");
        self.write_file("main.go", &main);
        let _ = fs::remove_file(self.work_dir().join("go.sum"));
    }

    /// Copies go.mod and main.go (NOT go.sum) from another env, to replay
    /// an already resolved graph against another proxy: the go command then
    /// recomputes every go.sum line from what this proxy serves.
    pub fn copy_main_module_from(&self, other: &GoEnv) {
        for f in ["go.mod", "main.go"] {
            fs::copy(other.work_dir().join(f), self.work_dir().join(f)).unwrap();
        }
        let _ = fs::remove_file(self.work_dir().join("go.sum"));
    }

    /// The bytes the go command downloaded and kept for an artifact
    /// (`$GOMODCACHE/cache/download/...`; `ext` is info, mod or zip). The
    /// go command stores them as received, so this compares the proxy's
    /// bytes with the fixture's.
    pub fn downloaded(&self, module: &str, version: &str, ext: &str) -> Vec<u8> {
        let p = self.gomodcache().join("cache/download").join(artifact_path(module, version, ext));
        fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// Path of the binary [`GoEnv::build`] writes.
    pub fn binary_path(&self) -> PathBuf {
        self.root.path().join("app.bin")
    }

    /// `go build -o <binary> .` in the work dir.
    pub fn build(&self) {
        let out = self.binary_path();
        self.run(&["build", "-o", out.to_str().unwrap(), "."]);
    }

    /// Runs the binary built by [`GoEnv::build`]; returns its stdout.
    pub fn run_binary(&self) -> String {
        let out = run_with_timeout(&mut Command::new(self.binary_path()), Duration::from_secs(30));
        assert!(out.status.success(), "app failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `go mod download -json [args]`, parsed. The go command prints one
    /// JSON object per module; a per-module failure is reported in its
    /// `Error` field and this panics on it.
    pub fn mod_download_json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut a = vec!["mod", "download", "-json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        let vals = parse_json_stream(&out);
        for v in &vals {
            if let Some(e) = v.get("Error") {
                panic!("go mod download: {} {}: {e}", v["Path"], v["Version"]);
            }
        }
        vals
    }

    /// `go list -m -json [args]`, parsed.
    pub fn list_m_json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut a = vec!["list", "-m", "-json"];
        a.extend_from_slice(args);
        parse_json_stream(&self.run(&a))
    }

    /// go.sum lines, sorted, blank lines dropped (empty if there is none).
    pub fn go_sum_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = match fs::read_to_string(self.work_dir().join("go.sum")) {
            Ok(s) => s.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect(),
            Err(_) => Vec::new(),
        };
        lines.sort();
        lines
    }
}

/// Parses a stream of concatenated JSON values (go's `-json` output).
pub fn parse_json_stream(s: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(s)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("bad JSON stream ({e}):\n{s}"))
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Header names as sent; look them up with [`HttpResponse::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").map(|v| v.trim().parse().expect("numeric Content-Length"))
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True when the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection").map(|v| v.eq_ignore_ascii_case("close")).unwrap_or(false)
    }
}

/// Largest response head we accept before calling the response broken.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// One client connection; reads are bounded by a timeout so a server that
/// stops answering fails the test instead of hanging it.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read but not consumed yet (the next pipelined response).
    buf: Vec<u8>,
    host: String,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn { stream, buf: Vec::new(), host: addr.to_string() }
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    /// Sends raw bytes in one write call.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// A well-formed request (with Host) for `method path`, as bytes.
    pub fn request_bytes(&self, method: &str, path: &str) -> Vec<u8> {
        format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gomodproxy-e2e\r\n\r\n", self.host).into_bytes()
    }

    /// Sends one request and reads its response.
    pub fn request(&mut self, method: &str, path: &str) -> HttpResponse {
        let req = self.request_bytes(method, path);
        self.send(&req).expect("send request");
        self.read_response(method == "HEAD").unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends a GET for `path` and returns the raw read result (for tests
    /// that expect a broken response).
    pub fn read_response_after(&mut self, path: &str) -> io::Result<HttpResponse> {
        let req = self.request_bytes("GET", path);
        self.send(&req)?;
        self.read_response(false)
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads one response. `head`: it answers a HEAD request (no body
    /// whatever Content-Length says). Handles Content-Length, chunked, and
    /// read-to-close bodies.
    pub fn read_response(&mut self, head: bool) -> io::Result<HttpResponse> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed before a full response head ({} bytes buffered)", self.buf.len()),
                ));
            }
        };
        let head_bytes: Vec<u8> = self.buf.drain(..end + 4).collect();
        let head_str = String::from_utf8(head_bytes[..end].to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "non-UTF-8 response head"))?;
        let mut lines = head_str.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")))?;
        let reason = parts.next().unwrap_or("").to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}")));
        }
        let mut headers = Vec::new();
        for l in lines {
            let (k, v) = l.split_once(':').ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad header line {l:?}")))?;
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut resp = HttpResponse { version, status, reason, headers, body: Vec::new() };
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        let chunked = resp.header("transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false);
        if chunked {
            resp.body = self.read_chunked()?;
        } else if let Some(n) = resp.content_length() {
            while self.buf.len() < n {
                if self.fill()? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("body truncated: {} of {n} bytes", self.buf.len())));
                }
            }
            resp.body = self.buf.drain(..n).collect();
        } else {
            while self.fill()? != 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Ok(String::from_utf8_lossy(&l[..i]).into_owned());
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunked body"));
            }
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let size_line = self.read_line()?;
            let size_hex = size_line.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunk"));
                }
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// True if the peer closes the connection (EOF or reset) within the
    /// read timeout without sending anything more.
    pub fn peer_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.fill() {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe),
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One-shot GET on a fresh connection.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    RawConn::connect(addr).request("GET", path)
}

/// One-shot HEAD on a fresh connection.
pub fn http_head(addr: SocketAddr, path: &str) -> HttpResponse {
    RawConn::connect(addr).request("HEAD", path)
}

// ---------------------------------------------------------------------------
// CountingUpstream: an instrumented HTTP upstream serving a fixture tree
// ---------------------------------------------------------------------------

/// How [`CountingUpstream`] misbehaves; change it at any time with
/// [`CountingUpstream::set_behavior`].
#[derive(Clone, Debug, Default)]
pub struct UpstreamBehavior {
    /// Wait this long before sending a `.zip` response's head.
    pub zip_delay: Duration,
    /// Send `.zip` bodies in chunks of this many bytes (0: all at once)...
    pub zip_chunk: usize,
    /// ...sleeping this long between chunks (a slow fill).
    pub zip_chunk_delay: Duration,
    /// Close the connection after this many `.zip` body bytes (a dying
    /// upstream; Content-Length still announces the full size).
    pub zip_truncate_at: Option<usize>,
    /// Answer these paths (as in [`CountingUpstream::hits`]) with this
    /// status and a short text body instead of the file.
    pub status_override: HashMap<String, u16>,
    /// Moves the hold point of [`CountingUpstream::hold_zips`]: instead of
    /// before the head, a held `.zip` answer stops after this many body
    /// bytes (a fill stuck mid-download) until released.
    pub zip_pause_at: Option<usize>,
}

struct UpstreamState {
    counts: Mutex<HashMap<String, usize>>,
    /// `METHOD path` in arrival order.
    log: Mutex<Vec<String>>,
    /// Every request head byte for byte (request line and headers, lossily
    /// UTF-8), in arrival order: what a leak check searches.
    raw: Mutex<Vec<String>>,
    /// Signalled on every request, for [`CountingUpstream::wait_for_hits`].
    arrived: Condvar,
    behavior: Mutex<UpstreamBehavior>,
    /// While true, `.zip` requests wait (bounded) before answering.
    zip_gate_closed: Mutex<bool>,
    zip_gate: Condvar,
    stop: AtomicBool,
    /// Open connections, so shutdown can cut them.
    conns: Mutex<Vec<TcpStream>>,
    /// `.zip` body bytes written to clients so far (all requests).
    zip_bytes: AtomicUsize,
    /// While true, the gate holds every file answer, not only `.zip`.
    gate_all: AtomicBool,
}

/// An HTTP/1.1 GOPROXY-layout server over a directory, on 127.0.0.1:0,
/// that counts what it is asked for. Shuts down on drop.
pub struct CountingUpstream {
    addr: SocketAddr,
    state: Arc<UpstreamState>,
    accept: Option<JoinHandle<()>>,
}

/// Longest a held `.zip` request waits for [`CountingUpstream::release_zips`].
const GATE_MAX_WAIT: Duration = Duration::from_secs(60);

impl CountingUpstream {
    pub fn serve(root: &Path) -> CountingUpstream {
        CountingUpstream::serve_on(root, "127.0.0.1:0".parse().unwrap())
    }

    /// Like [`CountingUpstream::serve`], on a given address (e.g. a port a
    /// server under test was already told about, to bring an upstream up late).
    pub fn serve_on(root: &Path, addr: SocketAddr) -> CountingUpstream {
        let listener = TcpListener::bind(addr).expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState {
            counts: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            behavior: Mutex::new(UpstreamBehavior::default()),
            zip_gate_closed: Mutex::new(false),
            zip_gate: Condvar::new(),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            zip_bytes: AtomicUsize::new(0),
            gate_all: AtomicBool::new(false),
        });
        let root = root.to_path_buf();
        let st = state.clone();
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    st.conns.lock().unwrap().push(c);
                }
                let st = st.clone();
                let root = root.clone();
                thread::spawn(move || upstream_conn(conn, &root, &st));
            }
        });
        CountingUpstream { addr, state, accept: Some(accept) }
    }

    /// `http://127.0.0.1:PORT`, usable as `--upstream` or GOPROXY.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests seen for `path`: the URL path with leading slash, `!`-case
    /// escaped but percent-DEcoded (e.g. `"/" + artifact_path(..)`; the go
    /// command sends `!` as `%21`), any method.
    pub fn hits(&self, path: &str) -> usize {
        self.state.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Requests seen for all paths matching `pred`.
    pub fn hits_where(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.state.counts.lock().unwrap().iter().filter(|(k, _)| pred(k)).map(|(_, v)| v).sum()
    }

    pub fn total_hits(&self) -> usize {
        self.state.counts.lock().unwrap().values().sum()
    }

    pub fn counts(&self) -> HashMap<String, usize> {
        self.state.counts.lock().unwrap().clone()
    }

    /// `METHOD path` of every request so far, in arrival order.
    pub fn request_log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// Every request head received so far, request line and headers as sent.
    pub fn raw_requests(&self) -> Vec<String> {
        self.state.raw.lock().unwrap().clone()
    }

    pub fn reset_counts(&self) {
        self.state.counts.lock().unwrap().clear();
        self.state.log.lock().unwrap().clear();
        self.state.raw.lock().unwrap().clear();
    }

    pub fn set_behavior(&self, b: UpstreamBehavior) {
        *self.state.behavior.lock().unwrap() = b;
    }

    /// Makes `.zip` requests wait (after being counted) until
    /// [`CountingUpstream::release_zips`] or at most 60 s. With
    /// [`CountingUpstream::wait_for_hits`] this opens a deterministic
    /// singleflight window without guessing sleep lengths.
    pub fn hold_zips(&self) {
        *self.state.zip_gate_closed.lock().unwrap() = true;
    }

    /// Like [`CountingUpstream::hold_zips`], but every request for an
    /// existing file (`.info`, `.mod`, `list`, ...) waits too, after being
    /// counted. [`CountingUpstream::release_zips`] releases them all.
    pub fn hold_all(&self) {
        self.state.gate_all.store(true, Ordering::SeqCst);
        self.hold_zips();
    }

    pub fn release_zips(&self) {
        self.state.gate_all.store(false, Ordering::SeqCst);
        *self.state.zip_gate_closed.lock().unwrap() = false;
        self.state.zip_gate.notify_all();
    }

    /// `.zip` body bytes written to clients so far, over all requests
    /// (written to the socket: the peer may not have read them yet).
    pub fn zip_bytes_sent(&self) -> usize {
        self.state.zip_bytes.load(Ordering::SeqCst)
    }

    /// Waits until [`CountingUpstream::zip_bytes_sent`] reaches `n`; false
    /// on timeout.
    pub fn wait_for_zip_bytes(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.zip_bytes_sent() >= n)
    }

    /// Waits until `path` has been requested at least `n` times; false on
    /// timeout.
    pub fn wait_for_hits(&self, path: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut counts = self.state.counts.lock().unwrap();
        loop {
            if counts.get(path).copied().unwrap_or(0) >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            counts = self.state.arrived.wait_timeout(counts, deadline - now).unwrap().0;
        }
    }

    /// Stops accepting and cuts every open connection: from now on the
    /// upstream is dead (connections to its port are refused).
    pub fn shutdown(&mut self) {
        if self.state.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.release_zips();
        // Wake the accept loop so it sees the stop flag and drops the
        // listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serves one keep-alive connection until the client closes it, an error,
/// or 30 s of idleness.
fn upstream_conn(mut conn: TcpStream, root: &Path, st: &UpstreamState) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = conn.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Read one request head.
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            let mut tmp = [0u8; 8192];
            match conn.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        if st.stop.load(Ordering::SeqCst) {
            return;
        }
        let head: Vec<u8> = buf.drain(..end + 4).collect();
        let head = String::from_utf8_lossy(&head[..end]).into_owned();
        st.raw.lock().unwrap().push(head.clone());
        let mut lines = head.split("\r\n");
        let mut rl = lines.next().unwrap_or("").split(' ');
        let method = rl.next().unwrap_or("").to_string();
        let target = rl.next().unwrap_or("/").to_string();
        let close = lines.any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("connection:") && l.contains("close")
        });
        // (Requests to a GOPROXY never carry bodies; none are read.)
        // The go command percent-encodes `!` as `%21` (and may encode other
        // bytes), so count and serve by the decoded path; `None` means an
        // encoded `/` or bad escape, answered 400.
        let raw_path = target.split('?').next().unwrap().to_string();
        let decoded = percent_decode_path(&raw_path);
        let path = decoded.clone().unwrap_or_else(|| raw_path.clone());
        {
            let mut counts = st.counts.lock().unwrap();
            *counts.entry(path.clone()).or_insert(0) += 1;
            st.log.lock().unwrap().push(format!("{method} {raw_path}"));
            st.arrived.notify_all();
        }
        if decoded.is_none() {
            let msg = "bad path\n";
            let resp = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{msg}",
                msg.len()
            );
            let _ = conn.write_all(resp.as_bytes());
            continue;
        }
        let behavior = st.behavior.lock().unwrap().clone();
        let ok = serve_upstream_request(&mut conn, root, st, &behavior, &method, &path, close);
        if !ok || close {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Decodes `%XX` escapes in a URL path. None for malformed escapes and for
/// an encoded `/` (which would smuggle a separator into one segment).
pub fn percent_decode_path(p: &str) -> Option<String> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == b'/' {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Writes one response; false when the connection must be dropped.
fn serve_upstream_request(
    conn: &mut TcpStream,
    root: &Path,
    st: &UpstreamState,
    b: &UpstreamBehavior,
    method: &str,
    path: &str,
    close: bool,
) -> bool {
    let conn_hdr = if close { "close" } else { "keep-alive" };
    let simple = |conn: &mut TcpStream, status: u16, reason: &str, msg: &str| -> bool {
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {conn_hdr}\r\n\r\n{}",
            msg.len(),
            if method == "HEAD" { "" } else { msg }
        );
        conn.write_all(resp.as_bytes()).is_ok()
    };
    if method != "GET" && method != "HEAD" {
        return simple(conn, 405, "Method Not Allowed", "method not allowed\n");
    }
    if let Some(&status) = b.status_override.get(path) {
        return simple(conn, status, "Injected", "injected failure\n");
    }
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|s| s == ".." || s == ".") || rel.contains('%') || rel.contains('\\') {
        return simple(conn, 400, "Bad Request", "bad path\n");
    }
    let file = root.join(rel);
    let data = match fs::read(&file) {
        Ok(d) if file.is_file() => d,
        // The go command's file layout has no @latest; a proxy without one
        // answers 404 and clients fall back to @v/list.
        _ => return simple(conn, 404, "Not Found", &format!("not found: {path}\n")),
    };
    let is_zip = path.ends_with(".zip");
    let ctype = if is_zip {
        "application/zip"
    } else if path.ends_with(".info") || path.ends_with("/@latest") {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    // Hold, then delay: both happen after the request was counted, so
    // tests can observe the arrival and then act while it is stuck.
    let pause_at = if is_zip { b.zip_pause_at } else { None };
    if (is_zip && pause_at.is_none()) || st.gate_all.load(Ordering::SeqCst) {
        wait_at_gate(st);
    }
    if is_zip && !b.zip_delay.is_zero() {
        thread::sleep(b.zip_delay);
    }
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: {conn_hdr}\r\n\r\n", data.len());
    if conn.write_all(head.as_bytes()).is_err() {
        return false;
    }
    if method == "HEAD" {
        return true;
    }
    let (body, truncated) = match (is_zip, b.zip_truncate_at) {
        (true, Some(n)) if n < data.len() => (&data[..n], true),
        _ => (&data[..], false),
    };
    if !is_zip {
        return conn.write_all(body).is_ok() && !truncated;
    }
    let split = pause_at.unwrap_or(0).min(body.len());
    if !send_zip_body(conn, st, b, &body[..split]) {
        return false;
    }
    if pause_at.is_some() {
        wait_at_gate(st);
    }
    send_zip_body(conn, st, b, &body[split..]) && !truncated
}

/// Waits while the gate is closed (bounded by [`GATE_MAX_WAIT`] and shutdown).
fn wait_at_gate(st: &UpstreamState) {
    let deadline = Instant::now() + GATE_MAX_WAIT;
    let mut closed = st.zip_gate_closed.lock().unwrap();
    while *closed && !st.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        closed = st.zip_gate.wait_timeout(closed, deadline - now).unwrap().0;
    }
}

/// Writes (part of) a `.zip` body, chunked and slowed as `b` says, counting
/// what was written; false when the connection must be dropped.
fn send_zip_body(conn: &mut TcpStream, st: &UpstreamState, b: &UpstreamBehavior, body: &[u8]) -> bool {
    let chunk = if b.zip_chunk > 0 { b.zip_chunk } else { body.len().max(1) };
    for (i, part) in body.chunks(chunk).enumerate() {
        if i > 0 && !b.zip_chunk_delay.is_zero() {
            thread::sleep(b.zip_chunk_delay);
        }
        if st.stop.load(Ordering::SeqCst) || conn.write_all(part).is_err() {
            return false;
        }
        st.zip_bytes.fetch_add(part.len(), Ordering::SeqCst);
    }
    true
}

// ---------------------------------------------------------------------------
// Bounded waits, metrics, streaming body checks
// ---------------------------------------------------------------------------

/// Polls `f` every 20 ms until it returns true or `timeout` passes; returns
/// its last answer. The one way tests wait for something asynchronous.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /metrics` (on a fresh connection, which itself counts as open while
/// the server answers), parsed: sample name -> value.
pub fn metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let r = http_get(addr, "/metrics");
    assert_eq!(r.status, 200, "/metrics: {r:?}");
    r.body_str()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// One sample of `/metrics` (e.g. `gomodproxy_coalesced`); panics if absent.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let m = metrics(addr);
    *m.get(name).unwrap_or_else(|| panic!("/metrics has no {name}: {m:?}")) as u64
}

/// A client connection that compares response bodies with expected bytes as
/// they stream in instead of buffering them, so dozens of concurrent
/// 40 MiB downloads stay cheap. Requests may be pipelined.
pub struct CheckConn {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl CheckConn {
    /// Connects with a 30 s read timeout (a stuck server fails the check).
    pub fn connect(addr: SocketAddr) -> io::Result<CheckConn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(CheckConn { stream, buf: Vec::new(), host: addr.to_string() })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends GETs for all `paths` in one write (pipelined).
    pub fn send_gets(&mut self, paths: &[&str]) -> io::Result<()> {
        let mut req = Vec::new();
        for p in paths {
            req.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gomodproxy-e2e\r\n\r\n", self.host).as_bytes());
        }
        self.stream.write_all(&req)
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp).map_err(|e| format!("read: {e}"))?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads the next response and checks it is a 200 with a
    /// Content-Length body equal to `want`. Err says what differed.
    pub fn expect_body(&mut self, want: &[u8]) -> Result<(), String> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_RESPONSE_HEAD {
                return Err("response head too large".into());
            }
            if self.fill()? == 0 {
                return Err(format!("connection closed before a response head ({} bytes)", self.buf.len()));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let status = head.split(' ').nth(1).unwrap_or("");
        let len: Option<usize> = head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        });
        if status != "200" {
            return Err(format!("status {status}: {head}"));
        }
        match len {
            Some(n) if n == want.len() => {}
            other => return Err(format!("Content-Length {other:?}, want {}", want.len())),
        }
        let mut pos = 0;
        while pos < want.len() {
            if self.buf.is_empty() && self.fill()? == 0 {
                return Err(format!("body truncated at {pos} of {} bytes", want.len()));
            }
            let take = self.buf.len().min(want.len() - pos);
            if self.buf[..take] != want[pos..pos + take] {
                let off = (0..take).find(|&i| self.buf[i] != want[pos + i]).unwrap_or(0);
                return Err(format!("body differs at byte {} of {}", pos + off, want.len()));
            }
            self.buf.drain(..take);
            pos += take;
        }
        Ok(())
    }
}

/// GET `path` on a fresh connection and check the body is exactly `want`.
pub fn get_check(addr: SocketAddr, path: &str, want: &[u8]) -> Result<(), String> {
    let mut c = CheckConn::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.send_gets(&[path]).map_err(|e| format!("send: {e}"))?;
    c.expect_body(want).map_err(|e| format!("GET {path}: {e}"))
}

/// Reads one request head (through its blank line, at most 16 KiB) from a
/// test server's connection, byte by byte so nothing after it is consumed.
/// `None` on end of stream, an error, or an oversized head.
pub fn read_request_head(conn: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) if head.len() < 16 << 10 => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The fixture file a test server answers for a decoded request path, never
/// outside `root` (no `..`, no empty elements).
pub fn fixture_file(root: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|e| e == ".." || e.is_empty()) {
        return None;
    }
    std::fs::read(root.join(rel)).ok()
}
