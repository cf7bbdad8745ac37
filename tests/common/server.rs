//! The `gomodproxy` binary under test: [`Server`] and its [`ServerOpts`],
//! process control (start, stop, kill, restart, logs), the child-process
//! helper [`run_with_timeout`], the bounded wait [`wait_until`], and the
//! server's `/metrics`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::http_client::http_get;

// ---------------------------------------------------------------------------
// Child-process helpers
// ---------------------------------------------------------------------------

/// Makes the child get SIGKILL if the thread that spawned it dies, so a
/// test binary killed by a timeout does not leave servers behind. (Linux
/// ties this to the spawning *thread*: spawn servers from the test's own
/// thread, which owns and drops them anyway.)
pub fn die_with_parent(cmd: &mut Command) {
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
/// Runs `gomodproxy ARGS --data <a fresh dir>` (with the go command's
/// defaults, no `go env -w` settings), which must fail to start; returns
/// what it printed on stderr.
pub fn refused_start(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(server_bin());
    cmd.args(args).arg("--data").arg(data.path()).env("GOENV", "off");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(20));
    assert!(!out.status.success(), "gomodproxy {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

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
    /// The admin listener's address, if it listens.
    admin: Option<SocketAddr>,
    /// The `--tls-listen` address, if it serves HTTPS.
    tls: Option<SocketAddr>,
    /// Incremented per (re)start so log lines say which process wrote them.
    generation: usize,
    /// Every stderr line of every process this Server started, in order,
    /// with the generation of the process that wrote it.
    logs: Arc<Mutex<Vec<(usize, String)>>>,
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
            admin: None,
            tls: None,
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
        // Many servers run at once: each its own admin port.
        if !o.extra_args.iter().any(|a| a == "--admin-listen") {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
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
        // Nor may it verify against the go command's default database (the
        // fixtures are in none): tests that verify pass --sumdb.
        cmd.env("GOSUMDB", "off");
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
        let generation = self.generation;
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                match line {
                    Ok(l) => {
                        eprintln!("[{etag} stderr] {l}");
                        logs.lock().unwrap().push((generation, l));
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
                if l.starts_with("admin listening on ") || l.starts_with("tls listening on ") {
                    if let Some(tx) = &tx {
                        let _ = tx.send(l.clone());
                    }
                }
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
        let mut admin = None;
        let mut tls = None;
        let line = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(l) if l.starts_with("admin ") => admin = parse_listening_line(l.trim_start_matches("admin ")),
                Ok(l) if l.starts_with("tls ") => {
                    tls = l.trim().strip_prefix("tls listening on https://").and_then(|a| a.trim_end_matches('/').parse().ok())
                }
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
        self.admin = admin;
        self.tls = tls;
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), usable as GOPROXY.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where it serves HTTPS (`--tls-listen`), if it does.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls.expect("this server has no --tls-listen")
    }

    /// The admin listener's address (the harness gives every server one).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("this server has no admin listener")
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
        self.logs.lock().unwrap().iter().map(|(_, l)| l.clone()).collect()
    }

    /// Waits (bounded) until some stderr line satisfies `pred`.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        wait_until(timeout, || self.logs.lock().unwrap().iter().any(|(_, l)| pred(l)))
    }

    /// The first stderr line of the running process (not an earlier
    /// generation's) that satisfies `pred`, waiting up to `timeout` for it:
    /// stderr is forwarded on a thread of its own, so a line written before
    /// `listening on` may still arrive after it.
    pub fn own_log_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let find = || self.logs.lock().unwrap().iter().find(|(g, l)| *g == self.generation && pred(l)).map(|(_, l)| l.clone());
        wait_until(timeout, || find().is_some());
        find()
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
// Bounded waits, metrics
// ---------------------------------------------------------------------------

/// A request to a server's admin listener, as an operator's tool sends it
/// (with the header admin POSTs need).
pub fn admin_request(admin: SocketAddr, method: &str, target: &str) -> crate::common::HttpResponse {
    crate::common::RawConn::connect(admin).request_with(method, target, &["X-Gomodproxy-Admin: 1"])
}

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
