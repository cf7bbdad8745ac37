//! `http://` and `https://` upstreams (another GOPROXY server), through a
//! pooled, keep-alive blocking client. TLS uses rustls with the system's
//! trust store.
//!
//! A GET that could not even connect (refused, reset while connecting, a
//! failed DNS lookup) is retried a bounded number of times with doubling
//! backoff: every request here is idempotent, and a restarting upstream or
//! a full accept queue is gone in a moment. An answer (any status, 4xx
//! included) is never retried, nor is a timeout: it has already spent the
//! time one request may take.
//!
//! Three timeouts: connect (TCP and TLS), read (the wait for the answer's
//! head after connecting, then every pause in its body) and total, which
//! bounds every phase: connecting, the head (an upstream dripping its head
//! a byte at a time passes any per-read limit), the body. ureq 2 enforces
//! only one of "per read" and "overall", so the socket work runs on a
//! reader thread of its own under ureq's overall deadline (the total,
//! which also bounds how long that thread can outlive an abandoned fetch),
//! and the fetch's own thread watches it: the head within connect plus
//! read timeout, each body chunk within the read timeout, all within the
//! total, else the fetch ends at once with a timeout.

use std::io::Read;
use std::time::{Duration, Instant};

use super::{Fetch, FetchError, FetchOptions, Fetcher};

pub struct HttpFetcher {
    /// What the reader thread needs, shared with it.
    client: std::sync::Arc<Client>,
    total_timeout: Duration,
    connect_timeout: Duration,
    read_timeout: Duration,
}

/// The upstream, its connection pool and how to ask it.
struct Client {
    base: String,
    agent: ureq::Agent,
    retries: u32,
    retry_backoff: Duration,
    /// The `Authorization` value from `--upstream-auth`; never logged.
    authorization: Option<String>,
}

/// What the reader thread sends the fetch: the answer's head (its
/// announced length), then its body in chunks, then the end.
enum Delivery {
    Head(Result<Option<u64>, FetchError>),
    Chunk(Vec<u8>),
    Failed(FetchError),
    End,
}

/// Chunks in flight from the reader thread: a little read-ahead, bounded.
const CHUNKS_AHEAD: usize = 4;

/// Whether a failed call may be tried again: it never reached the upstream.
fn may_retry(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Transport(t) => {
            let text = t.to_string();
            // A refused certificate is refused again: retrying only delays the answer.
            matches!(t.kind(), ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns)
                && !is_timeout(&text)
                && tls_failure(&text).is_none()
        }
        ureq::Error::Status(..) => false,
    }
}

/// The rustls reason of a failed TLS handshake, if `text` (a ureq
/// transport error) is one.
fn tls_failure(text: &str) -> Option<&str> {
    text.find("tls connection init failed: ").map(|i| &text[i + "tls connection init failed: ".len()..])
}

/// What a timed-out fetch was waiting for, as its error message says.
const CONNECTING: &str = "connecting (--upstream-connect-timeout)";
const ANSWER: &str = "waiting for its answer (--upstream-read-timeout)";
const WHOLE: &str = "before the whole answer arrived (--upstream-timeout)";

fn is_timeout(text: &str) -> bool {
    text.contains("timed out") || text.contains("Timeout")
}

/// Runs `attempt` until it succeeds, fails for good, or `retries` extra
/// attempts are spent, sleeping `backoff`, `2 × backoff`, … in between.
/// The sleep is a parameter so tests need not wait.
pub fn with_retries<T, E>(
    retries: u32,
    backoff: Duration,
    mut sleep: impl FnMut(Duration),
    retryable: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut wait = backoff;
    let mut left = retries;
    loop {
        match attempt() {
            Err(e) if left > 0 && retryable(&e) => {
                left -= 1;
                sleep(wait);
                wait = wait.saturating_mul(2);
            }
            done => return done,
        }
    }
}

/// An answer's body as a reason for the go command's user: at most 1 KiB,
/// printable (newlines kept), trimmed.
fn short_reason(resp: ureq::Response) -> String {
    let mut msg = String::new();
    let _ = resp.into_reader().take(1024).read_to_string(&mut msg);
    let msg: String = msg.chars().filter(|c| !c.is_control() || *c == '\n').collect();
    msg.trim().to_string()
}

/// Redirects followed for one request.
const MAX_REDIRECTS: u32 = 3;

/// `location` (absolute or relative) resolved against `from`, if it stays
/// on `from`'s scheme, host and port.
fn same_origin(from: &str, location: &str) -> Option<String> {
    let base = url::Url::parse(from).ok()?;
    let next = base.join(location.trim()).ok()?;
    let origin = |u: &url::Url| (u.scheme().to_string(), u.host_str().map(str::to_ascii_lowercase), u.port_or_known_default());
    (origin(&base) == origin(&next)).then(|| next.to_string())
}

impl HttpFetcher {
    pub fn new(base: String, opts: &FetchOptions) -> HttpFetcher {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(opts.connect_timeout.min(opts.timeout))
            .timeout_read(opts.read_timeout.min(opts.timeout))
            .timeout_write(opts.read_timeout.min(opts.timeout))
            // Redirects are followed by `fetch_streaming`, within the upstream's own origin.
            .redirects(0)
            // ureq keeps one idle connection per host by default: every
            // concurrent fetch beyond one would open a new TCP (and TLS)
            // connection, with a fresh DNS lookup, and drop it after.
            .max_idle_connections_per_host(opts.concurrency.max(1))
            .max_idle_connections(opts.concurrency.max(1) * 4)
            .user_agent(concat!("gomodproxy/", env!("CARGO_PKG_VERSION")));
        if let Some(dns) = &opts.dns {
            builder = builder.resolver(dns.clone());
        }
        let mut authorization = None;
        if let Some(setup) = &opts.http {
            builder = builder.tls_connector(std::sync::Arc::new(super::tls::TimedTls(setup.tls.clone())));
            authorization = setup.auth.for_base(&base).map(str::to_string);
        }
        if let Some(proxy) = super::auth::proxy_for(&base, |k| std::env::var(k).ok()) {
            match ureq::Proxy::new(&proxy) {
                Ok(p) => builder = builder.proxy(p),
                // Not the value: a proxy URL may carry credentials.
                Err(_) => log::warn!("{base}: the proxy the environment names is not a usable proxy URL; connecting directly"),
            }
        }
        let client = Client { base, agent: builder.build(), retries: opts.retries, retry_backoff: opts.retry_backoff, authorization };
        HttpFetcher {
            client: std::sync::Arc::new(client),
            total_timeout: opts.timeout,
            connect_timeout: opts.connect_timeout.min(opts.timeout),
            read_timeout: opts.read_timeout.min(opts.timeout),
        }
    }
}

impl Client {
    /// On the reader thread: asks for `url` (following redirects within
    /// the upstream's origin) and sends `tx` the head, then the body in
    /// chunks, all under ureq's overall `deadline`. Stops as soon as the
    /// fetch stops listening.
    fn read(&self, req: &Fetch<'_>, mut url: String, deadline: Instant, cap: u64, tx: &std::sync::mpsc::SyncSender<Delivery>) {
        let resp = match self.open(req, &mut url, deadline) {
            Ok(resp) => resp,
            Err(e) => {
                let _ = tx.send(Delivery::Head(Err(e)));
                return;
            }
        };
        let announced = resp.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|len| len > cap) {
            let _ = tx.send(Delivery::Head(Err(FetchError::TooLarge { upstream: self.base.clone(), limit: cap })));
            return;
        }
        if tx.send(Delivery::Head(Ok(announced))).is_err() {
            return;
        }
        let mut reader = resp.into_reader().take(cap + 1);
        loop {
            let mut chunk = vec![0u8; 64 << 10];
            let delivery = match reader.read(&mut chunk) {
                Ok(0) => Delivery::End,
                Ok(n) => {
                    chunk.truncate(n);
                    Delivery::Chunk(chunk)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // ureq's deadline (the total) struck.
                Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                    Delivery::Failed(FetchError::Timeout { upstream: self.base.clone(), waiting: WHOLE })
                }
                Err(e) => Delivery::Failed(FetchError::Unavailable { upstream: self.base.clone(), message: format!("reading body: {e}") }),
            };
            let last = !matches!(delivery, Delivery::Chunk(_));
            if tx.send(delivery).is_err() || last {
                return;
            }
        }
    }

    /// The answer's head: a usable 2xx, after at most [`MAX_REDIRECTS`]
    /// redirects within the upstream's origin, or why not.
    #[allow(clippy::result_large_err)]
    fn open(&self, req: &Fetch<'_>, url: &mut String, deadline: Instant) -> Result<ureq::Response, FetchError> {
        let unavailable = |message: String| FetchError::Unavailable { upstream: self.base.clone(), message };
        let mut redirects = 0;
        loop {
            // Credentials go to the configured URL only, never along a redirect.
            let authorization = self.authorization.as_ref().filter(|_| redirects == 0);
            let call = || {
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                let r = self.agent.get(url).timeout(left);
                match authorization {
                    Some(v) => r.set("Authorization", v),
                    None => r,
                }
                .call()
            };
            let resp = match with_retries(self.retries, self.retry_backoff, std::thread::sleep, may_retry, call) {
                Ok(r) => r,
                Err(ureq::Error::Status(code @ (404 | 410), r)) => {
                    let msg = short_reason(r);
                    let message = if msg.is_empty() { format!("not found: {}", req.protocol_path().unwrap_or_default()) } else { msg };
                    return Err(FetchError::NotFound { gone: code == 410, message });
                }
                // 429 and 5xx: the upstream is overloaded or failing.
                Err(ureq::Error::Status(code, _)) if code == 429 || code >= 500 => return Err(unavailable(format!("HTTP status {code}"))),
                // Any other status: an answer we cannot use (401, 403, 400).
                Err(ureq::Error::Status(status, r)) => {
                    return Err(FetchError::Rejected { upstream: self.base.clone(), status, message: short_reason(r) })
                }
                Err(ureq::Error::Transport(t)) => {
                    let text = t.to_string();
                    if is_timeout(&text) {
                        let waiting = if t.kind() == ureq::ErrorKind::ConnectionFailed { CONNECTING } else { WHOLE };
                        return Err(FetchError::Timeout { upstream: self.base.clone(), waiting });
                    }
                    if let Some(why) = tls_failure(&text) {
                        let what = if why.contains("certificate") { "TLS certificate verification failed" } else { "TLS handshake failed" };
                        return Err(unavailable(format!(
                            "{what}: {why} (trusted roots: SSL_CERT_FILE / SSL_CERT_DIR, else the system store)"
                        )));
                    }
                    return Err(unavailable(text));
                }
            };
            if !(300..400).contains(&resp.status()) {
                return Ok(resp);
            }
            // A redirect is followed only within the upstream's own scheme,
            // host and port: elsewhere (another host, another loopback port,
            // a private address) it would make gomodproxy fetch for whoever
            // controls the upstream's answers.
            let status = resp.status();
            let next = resp.header("Location").and_then(|to| same_origin(url, to));
            match next {
                Some(next) if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    *url = next;
                }
                _ => {
                    let to: String = resp.header("Location").unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect();
                    log::warn!(
                        module = req.module, version = req.version, kind = req.kind.label();
                        "{}: redirect {status} to {to:?} not followed (only within the upstream's own scheme, host and port, at most {MAX_REDIRECTS})",
                        self.base
                    );
                    return Err(FetchError::Rejected {
                        upstream: self.base.clone(),
                        status,
                        message: "a redirect this proxy does not follow".into(),
                    });
                }
            }
        }
    }
}

impl Fetcher for HttpFetcher {
    // ureq's error is large, but there is one per request and it is matched at once.
    #[allow(clippy::result_large_err)]
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        self.fetch_streaming(req, &crate::artifact::fill::Progress::default()).map(Vec::from)
    }

    #[allow(clippy::result_large_err)]
    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &crate::artifact::fill::Progress) -> Result<bytes::Bytes, FetchError> {
        let base = &self.client.base;
        let url = format!("{base}/{}", req.protocol_path()?);
        let cap = req.kind.size_cap();
        let unavailable = |message: String| FetchError::Unavailable { upstream: base.clone(), message };
        let timeout = |waiting| FetchError::Timeout { upstream: base.clone(), waiting };
        let started = Instant::now();
        let deadline = started + self.total_timeout;
        let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        let client = self.client.clone();
        let owned = (req.module.to_string(), req.version.to_string(), req.kind);
        let reader = std::thread::Builder::new().name("gomodproxy-upstream".into()).spawn(move || {
            let (module, version, kind) = owned;
            let req = Fetch { module: &module, version: &version, kind };
            client.read(&req, url, deadline, cap, &tx)
        });
        if let Err(e) = reader {
            return Err(unavailable(format!("no thread to read the answer with: {e}")));
        }
        // Waits for the reader's next delivery, within `limit` and the total.
        let next = |limit: Duration, waiting: &'static str| -> Result<Delivery, FetchError> {
            let now = Instant::now();
            let (wait, waiting) = if now + limit < deadline { (limit, waiting) } else { (deadline.saturating_duration_since(now), WHOLE) };
            match rx.recv_timeout(wait) {
                Ok(d) => Ok(d),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(timeout(waiting)),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(unavailable("the answer's reader ended early".into())),
            }
        };
        // Dropping `rx` on any return below tells the reader to stop.
        let announced = match next(self.connect_timeout + self.read_timeout, ANSWER)? {
            Delivery::Head(head) => head?,
            _ => return Err(unavailable("the answer's reader skipped the head".into())),
        };
        // Only zips are streamed: the answers worth the wait, and only with
        // a length, which readers must send before the body.
        let mut streaming = announced.filter(|_| req.kind == super::Kind::Zip).and_then(|len| progress.start(len));
        // Chunks, not one growing buffer: a body of unknown length never
        // takes twice its size while it grows.
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut received = 0u64;
        let memory = super::memory::fill_memory();
        let mut held = memory.hold();
        loop {
            let chunk = match next(self.read_timeout, ANSWER)? {
                Delivery::Chunk(chunk) => chunk,
                Delivery::End => break,
                Delivery::Failed(e) => return Err(e),
                Delivery::Head(_) => return Err(unavailable("the answer's reader sent a second head".into())),
            };
            let n = chunk.len() as u64;
            // Room in the fill memory, waiting for it no longer than for the upstream.
            let room_by = (Instant::now() + self.read_timeout).min(deadline);
            if !held.grow(n, room_by) {
                log::warn!(
                    module = req.module, version = req.version, kind = req.kind.label();
                    "{base}: fill of {}@{} waited for fill memory in vain ({} of {} bytes held by fills)",
                    req.module, req.version, memory.used(), memory.limit()
                );
                return Err(FetchError::FillMemoryFull { limit: memory.limit() });
            }
            match &mut streaming {
                Some(writer) => {
                    if !writer.append(&chunk) {
                        return Err(unavailable("body longer than its Content-Length".into()));
                    }
                    progress.note_published();
                }
                None => chunks.push(chunk),
            }
            received += n;
            if received > cap {
                return Err(FetchError::TooLarge { upstream: base.clone(), limit: cap });
            }
        }
        let body = match streaming {
            // The readers' buffer, whole, for validation (readers wait for
            // the last byte meanwhile).
            Some(writer) => progress.finish_writing(writer).ok_or_else(|| unavailable("body shorter than its Content-Length".into()))?,
            None if chunks.len() == 1 => chunks.pop().map(bytes::Bytes::from).unwrap_or_default(),
            None => chunks.concat().into(),
        };
        // The hold goes with the body: given back when its last copy is dropped.
        Ok(bytes::Bytes::from_owner(super::memory::Budgeted { data: body, held }))
    }

    fn name(&self) -> &str {
        &self.client.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_within_the_upstreams_origin() {
        let from = "https://mirror.test/example.com/a/@v/list";
        assert_eq!(same_origin(from, "/other/path").as_deref(), Some("https://mirror.test/other/path"));
        assert_eq!(same_origin(from, "https://MIRROR.test:443/x").as_deref(), Some("https://mirror.test/x"));
        assert_eq!(same_origin(from, "list2").as_deref(), Some("https://mirror.test/example.com/a/@v/list2"));
        for elsewhere in
            ["https://other.test/x", "http://mirror.test/x", "https://mirror.test:8443/x", "//127.0.0.1/x", "https://127.0.0.1/x"]
        {
            assert_eq!(same_origin(from, elsewhere), None, "{elsewhere}");
        }
        let local = "http://127.0.0.1:8000/m/@v/list";
        assert_eq!(same_origin(local, "http://127.0.0.1:8001/m/@v/list"), None, "another loopback port");
        assert!(same_origin(local, "http://127.0.0.1:8000/moved").is_some());
    }

    #[test]
    fn retries_are_bounded_backed_off_and_only_for_retryable_errors() {
        let mut slept = Vec::new();
        let mut calls = 0;
        let r: Result<(), &str> = with_retries(
            3,
            Duration::from_millis(100),
            |d| slept.push(d),
            |e| *e == "refused",
            || {
                calls += 1;
                Err("refused")
            },
        );
        assert_eq!(r, Err("refused"));
        assert_eq!(calls, 4, "one attempt and three retries");
        assert_eq!(slept, [100, 200, 400].map(Duration::from_millis));

        let mut calls = 0;
        let r: Result<u8, &str> = with_retries(
            3,
            Duration::ZERO,
            |_| {},
            |e| *e == "refused",
            || {
                calls += 1;
                if calls < 3 {
                    Err("refused")
                } else {
                    Ok(7)
                }
            },
        );
        assert_eq!((r, calls), (Ok(7), 3));

        let mut calls = 0;
        let r: Result<(), &str> = with_retries(
            3,
            Duration::ZERO,
            |_| {},
            |e| *e == "refused",
            || {
                calls += 1;
                Err("404")
            },
        );
        assert_eq!((r, calls), (Err("404"), 1), "an answer is never retried");
    }

    #[test]
    fn a_refused_connection_is_retryable_and_reported_as_unavailable() {
        // A port nobody listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let refused = ureq::get(&format!("http://127.0.0.1:{port}/")).call().unwrap_err();
        assert!(may_retry(&refused), "{refused}");
        let opts =
            FetchOptions { retries: 2, retry_backoff: Duration::from_millis(1), ..FetchOptions::with_timeout(Duration::from_secs(5)) };
        let f = HttpFetcher::new(format!("http://127.0.0.1:{port}"), &opts);
        let err = f.fetch(&Fetch { module: "example.com/a", version: "", kind: super::super::Kind::List }).unwrap_err();
        assert!(matches!(err, FetchError::Unavailable { .. }), "{err:?}");
    }
}
