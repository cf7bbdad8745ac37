//! Test-side servers: [`ScriptedServer`], the one accept loop (a thread per
//! connection, handed to a handler) every fake server in the tests runs on;
//! [`CountingUpstream`], an HTTP server on it that serves a fixture tree in
//! GOPROXY layout, counts requests per path and can slow down or hold back
//! `.zip` bodies; and the pieces the tests' own scripted servers share
//! ([`read_request_head`], [`percent_decode_path`], [`fixture_file`]).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http_client::find;
use super::server::wait_until;

// ---------------------------------------------------------------------------
// ScriptedServer: the accept loop of every fake server
// ---------------------------------------------------------------------------

/// A fake server: an accept loop on its own thread that hands every
/// accepted connection, raw, to `handler` on a thread of its own. What the
/// handler does with it is the script (read a request head and answer,
/// wrap it in TLS, tunnel it, hold it unanswered). Counts the connections
/// it accepts. Stops accepting on drop; connections already handed to the
/// handler carry on until it returns.
pub struct ScriptedServer {
    addr: SocketAddr,
    shared: Arc<ScriptedShared>,
    accept: Option<JoinHandle<()>>,
}

struct ScriptedShared {
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Open connections, so [`ScriptedServer::cut_connections`] can cut
    /// them (None: not tracked).
    conns: Option<Mutex<Vec<TcpStream>>>,
}

impl ScriptedServer {
    /// On 127.0.0.1, a free port.
    pub fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> ScriptedServer {
        ScriptedServer::start_on("127.0.0.1:0".parse().unwrap(), handler)
    }

    /// On a given address (e.g. a port a server under test was already told
    /// about, to bring an upstream up late).
    pub fn start_on(addr: SocketAddr, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> ScriptedServer {
        ScriptedServer::launch(addr, false, handler)
    }

    /// Like [`ScriptedServer::start_on`], keeping a clone of every accepted
    /// connection for [`ScriptedServer::cut_connections`]. The clone keeps
    /// the socket open after the handler drops its end, so a handler whose
    /// peer must see the end shuts the connection down itself (dropping it
    /// sends no FIN, and no RST).
    pub fn start_tracked_on(addr: SocketAddr, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> ScriptedServer {
        ScriptedServer::launch(addr, true, handler)
    }

    fn launch(addr: SocketAddr, track: bool, handler: impl Fn(TcpStream) + Send + Sync + 'static) -> ScriptedServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind test server on {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let shared =
            Arc::new(ScriptedShared { stop: AtomicBool::new(false), connections: AtomicUsize::new(0), conns: track.then(Mutex::default) });
        let (sh, handler) = (shared.clone(), Arc::new(handler));
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                if let Some(conns) = &sh.conns {
                    if let Ok(c) = conn.try_clone() {
                        conns.lock().unwrap().push(c);
                    }
                }
                let handler = handler.clone();
                thread::spawn(move || handler(conn));
            }
        });
        ScriptedServer { addr, shared, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting and waits until the listener is gone: from now on
    /// connections to the port are refused. Does nothing the second time.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else { return };
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop flag and drops the
        // listener.
        let _ = TcpStream::connect(self.addr);
        let _ = accept.join();
    }

    /// Shuts down every connection accepted so far (both ways). Only for a
    /// server started with [`ScriptedServer::start_tracked_on`].
    pub fn cut_connections(&self) {
        let conns = self.shared.conns.as_ref().expect("cut_connections needs ScriptedServer::start_tracked_on");
        for c in conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop();
    }
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
    /// `.zip` body bytes written to clients so far (all requests).
    zip_bytes: AtomicUsize,
    /// While true, the gate holds every file answer, not only `.zip`.
    gate_all: AtomicBool,
}

/// An HTTP/1.1 GOPROXY-layout server over a directory, on 127.0.0.1:0,
/// that counts what it is asked for. Shuts down on drop.
pub struct CountingUpstream {
    server: ScriptedServer,
    state: Arc<UpstreamState>,
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
        let state = Arc::new(UpstreamState {
            counts: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            raw: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            behavior: Mutex::new(UpstreamBehavior::default()),
            zip_gate_closed: Mutex::new(false),
            zip_gate: Condvar::new(),
            stop: AtomicBool::new(false),
            zip_bytes: AtomicUsize::new(0),
            gate_all: AtomicBool::new(false),
        });
        let (st, root) = (state.clone(), root.to_path_buf());
        // Tracked, so shutdown can cut the connections still open.
        let server = ScriptedServer::start_tracked_on(addr, move |conn| upstream_conn(conn, &root, &st));
        CountingUpstream { server, state }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// `http://127.0.0.1:PORT`, usable as `--upstream` or GOPROXY.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
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
        self.server.stop();
        self.server.cut_connections();
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
// Pieces for the tests' own scripted servers
// ---------------------------------------------------------------------------

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
