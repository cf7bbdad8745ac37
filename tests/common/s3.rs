//! A real S3-compatible server for the shared-tier tests: versitygw
//! (Apache-2.0, one Go binary) serving a directory, on loopback.
//!
//! The binary is taken from `$VERSITYGW` or `PATH`, else built once with
//! `go install` into `target/test-tools/` (through the module proxy the go
//! command is configured with; about a minute). Concurrent test processes
//! build it once: the build holds an exclusive lock on a file beside it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use super::server::{run_with_timeout, wait_until};

pub const VERSITYGW_MODULE: &str = "github.com/versity/versitygw/cmd/versitygw@v1.8.0";
pub const ACCESS_KEY: &str = "gomodproxy-test";
pub const SECRET_KEY: &str = "gomodproxy-test-secret";
pub const BUCKET: &str = "fleet";

/// The versitygw binary, built on first use.
pub fn versitygw_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("VERSITYGW").map(PathBuf::from).filter(|p| p.is_file()) {
            return p;
        }
        if let Ok(out) = Command::new("sh").args(["-c", "command -v versitygw"]).output() {
            let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !found.is_empty() {
                return PathBuf::from(found);
            }
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("test-tools");
        std::fs::create_dir_all(&dir).expect("create target/test-tools");
        let bin = dir.join("versitygw");
        let lock =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".versitygw.lock")).expect("lock file");
        // SAFETY: flock on a descriptor we own; released when `lock` closes.
        assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0, "flock");
        if !bin.is_file() {
            eprintln!("building {VERSITYGW_MODULE} into {} (once)", dir.display());
            let mut cmd = Command::new("go");
            cmd.args(["install", VERSITYGW_MODULE]).env("GOBIN", &dir).env("GOFLAGS", "-mod=mod").env("GOTOOLCHAIN", "local");
            let out = run_with_timeout(&mut cmd, Duration::from_secs(900));
            assert!(
                out.status.success() && bin.is_file(),
                "go install {VERSITYGW_MODULE} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        drop(lock);
        bin
    })
    .clone()
}

/// A running versitygw over a temp directory with one bucket, [`BUCKET`].
/// Killed on drop.
pub struct S3Server {
    root: TempDir,
    addr: SocketAddr,
    child: Option<Child>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::Builder::new().prefix("gomodproxy-s3-").tempdir().expect("s3 tempdir");
        // The posix backend's buckets are the root's directories.
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket dir");
        let mut s = S3Server { root, addr: "127.0.0.1:0".parse().unwrap(), child: None };
        // A port free now may be taken by another server of this parallel
        // suite before versitygw binds it: then it exits, and we try another.
        for _ in 0..5 {
            s.addr = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
            if s.try_start() {
                return s;
            }
        }
        panic!("versitygw did not start on any of 5 ports");
    }

    /// Starts it (again) on the same port and directory.
    pub fn start_again(&mut self) {
        assert!(self.try_start(), "versitygw did not start again on {}", self.addr);
    }

    /// Starts versitygw on `self.addr`; false if it exited (its port was
    /// taken) or never answered as itself.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new(versitygw_bin());
        cmd.arg("--port")
            .arg(self.addr.to_string())
            .args(["--access", ACCESS_KEY, "--secret", SECRET_KEY, "posix"])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        super::server::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn versitygw");
        // Ready when it answers HTTP as itself (its Server header): a bare
        // connect may reach a socket a previous process left behind, or
        // another server that took the port.
        let addr = self.addr;
        let mut exited = false;
        let ready = wait_until(Duration::from_secs(30), || {
            if child.try_wait().ok().flatten().is_some() {
                exited = true;
                return true;
            }
            let mut c = match std::net::TcpStream::connect(addr) {
                Ok(c) => c,
                Err(_) => return false,
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            use std::io::{Read, Write};
            let _ = write!(c, "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut head = Vec::new();
            let _ = c.take(4096).read_to_end(&mut head);
            String::from_utf8_lossy(&head).to_ascii_lowercase().contains("server: versitygw")
        });
        if !ready || exited {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        self.child = Some(child);
        true
    }

    /// kill -9, keeping the directory.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `--shared-store` for `prefix` in the bucket.
    pub fn store_url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}?endpoint=http://{}&region=us-east-1", self.addr)
    }

    /// What the nodes need in their environment to sign requests.
    pub fn credentials(&self) -> Vec<(String, String)> {
        vec![("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()), ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into())]
    }

    /// The file behind object `key` of the bucket (the posix backend keeps
    /// each object as a file of that path).
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Every object key below `prefix` (leases included).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let base = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        let mut stack = vec![base.join(prefix)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".sgw")) {
                    // versitygw's own scratch space, not objects.
                } else if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&base) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
