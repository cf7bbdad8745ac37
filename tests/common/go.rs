//! [`GoEnv`]: the real `go` command, run hermetically against a proxy URL,
//! and helpers for what it prints and downloads.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use super::fixture::{artifact_path, MainModule};
use super::server::run_with_timeout;

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

    /// A client verifying against checksum database `gosumdb` (its key, as
    /// a `GOSUMDB` value): in a fresh main module, `go get` each of
    /// `modules`; its go.sum lines.
    pub fn get_verified(&mut self, gosumdb: &str, modules: &[(&str, &str)]) -> Vec<String> {
        self.env("GOSUMDB", gosumdb);
        self.write_file("go.mod", "module example.com/main\n\ngo 1.21\n");
        for (m, v) in modules {
            self.run(&["get", &format!("{m}@{v}")]);
        }
        self.go_sum_lines()
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
