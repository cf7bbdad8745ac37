//! Fixture trees: a declarative list of Go modules ([`Module`], built with
//! [`FixtureBuilder`]) rendered into a GOPROXY file-layout tree
//! ([`Fixture`], the layout of `$GOMODCACHE/cache/download`), usable as
//! `--upstream file://...` or directly as `GOPROXY=file://...`; the
//! standard module set and its main module ([`MainModule`]); and the
//! module path / version escaping and URL path helpers.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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
