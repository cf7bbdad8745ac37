//! The HTTP/1.1 wire: one task per connection, over plain TCP or TLS
//! ([`Conn`]), that reads the balancer's PROXY header where one must come,
//! then request heads, asks the edge's [`Service`] for each response, and
//! writes it back.
//!
//! Owns framing, keep-alive and pipelining, and the limits that keep one
//! client from holding more than its share (head size, header and idle
//! timeouts, write stalls, fair chunking of large bodies) and the
//! connection's side of a drain ([`Shutdown`]). It hands each request's
//! target, validators, credentials and client address to the [`Service`]
//! and writes the [`Reply`] it gets; it knows no Go rules, and must never
//! block the executor or copy a body through user space over plain TCP.

pub mod request;
pub mod response;
pub mod send;
pub mod shutdown;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::artifact::fill::{FillStream, Readable};
use crate::artifact::Body;
use crate::edge::{proxy_protocol, Incoming, ProxyHeader, Service};
use crate::goproxy::Reply;
use crate::metrics::CoreMetrics;
pub use request::{HttpError, Method, Parsed, Request};
pub use shutdown::Shutdown;

/// Limits on what one client may make the server hold or wait for, and
/// how its large bodies go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest request target accepted (414 beyond).
    pub max_uri_bytes: usize,
    /// Request line plus all headers (431 beyond).
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight.
    pub idle_timeout: Duration,
    /// One stalled write to a client that stopped reading.
    pub write_timeout: Duration,
    /// Which connections send stored bodies with `sendfile` ([`send`]).
    pub sendfile: send::Sendfile,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_uri_bytes: 4096,
            max_head_bytes: 16 * 1024,
            max_headers: 128,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(60),
            sendfile: send::Sendfile::Auto,
        }
    }
}

/// A connection's read buffer: grows from small (most Go-client requests are
/// a few hundred bytes) up to the head-size limit, and is compacted in place.
/// It holds no memory until bytes arrive, and gives its memory back when
/// the connection idles (see [`read_idle`]).
struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    const INITIAL: usize = 1024;

    fn new() -> ReadBuf {
        ReadBuf { data: Vec::new(), start: 0, end: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether it holds memory.
    fn holds_memory(&self) -> bool {
        self.data.capacity() > 0
    }

    /// Gives the memory back (only while empty).
    fn release(&mut self) {
        if self.is_empty() {
            *self = ReadBuf::new();
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into, making some if needed (up to `max` buffered bytes).
    fn spare(&mut self, max: usize) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = vec![0; Self::INITIAL.min(max.max(1))];
        }
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < max {
                self.data.resize((self.data.len() * 2).min(max), 0);
            }
        }
        &mut self.data[self.end..]
    }
}

/// How long a keep-alive connection waits for its next request with its
/// buffers before it gives them back and waits on a single byte: a busy
/// client keeps them, an idle connection holds only its own small state.
const IDLE_GRACE: Duration = Duration::from_millis(500);

/// Reads the first bytes of the next request into the empty `buf`, waiting
/// at most `wait`. Past [`IDLE_GRACE`] the read buffer and the response
/// head are let go, and the wait goes on for one byte read into the stack
/// (glommio waits for readiness, then reads: nothing is lent to the kernel
/// while waiting). Returns the bytes added to `buf` (0: the peer closed).
async fn read_idle<C: Conn>(stream: &mut C, buf: &mut ReadBuf, head: &mut Vec<u8>, wait: Duration, max: usize) -> io::Result<usize> {
    let mut wait = wait;
    if buf.holds_memory() {
        let grace = wait.min(IDLE_GRACE);
        stream.tcp().set_read_timeout(Some(grace))?;
        match stream.read(buf.spare(max)).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut && wait > grace => wait -= grace,
            Ok(n) => {
                buf.end += n;
                return Ok(n);
            }
            Err(e) => return Err(e),
        }
        buf.release();
        *head = Vec::new();
    }
    stream.tcp().set_read_timeout(Some(wait))?;
    let mut first = [0u8; 1];
    let n = stream.read(&mut first).await?;
    if n == 1 {
        buf.spare(max)[0] = first[0];
        buf.end += 1;
    }
    Ok(n)
}

fn count_status(metrics: &CoreMetrics, status: u16) {
    match status {
        400..=499 => metrics.client_errors.bump(),
        500..=599 => metrics.server_errors.bump(),
        _ => {}
    }
}

/// What a connection is carried over: a plain TCP stream (bodies sent
/// without a copy, see [`send`]) or TLS (every byte through rustls).
pub trait Conn: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
    /// Sends `head` then `body` completely; `file` holds `body` at that
    /// offset, for a transport that can send it from there.
    fn send_all<'a>(&'a mut self, head: &'a [u8], body: &'a [u8], file: Option<(RawFd, u64)>) -> impl Future<Output = io::Result<()>> + 'a;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    async fn send_all(&mut self, head: &[u8], body: &[u8], file: Option<(RawFd, u64)>) -> io::Result<()> {
        send::send(self, head, body, file).await
    }
}

impl Conn for futures_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }

    /// Through rustls in fair turns (encryption needs the bytes in user
    /// space: no sendfile here).
    async fn send_all(&mut self, head: &[u8], body: &[u8], _file: Option<(RawFd, u64)>) -> io::Result<()> {
        self.write_all(head).await?;
        for (i, turn) in body.chunks(send::FAIR_CHUNK).enumerate() {
            if i > 0 {
                glommio::executor().yield_now().await;
            }
            self.write_all(turn).await?;
        }
        self.flush().await
    }
}

/// Serves one connection until the client closes it, a limit ends it, or
/// a response says `Connection: close`. `_held` (the caller's connection
/// slot) is dropped when the connection ends. Everything is taken by
/// value: this future is the connection's task, and what it borrowed from
/// a wrapper would be stored twice.
pub async fn serve_connection<S: Service, C: Conn>(
    mut stream: C,
    service: Rc<S>,
    limits: &'static HttpLimits,
    metrics: &'static CoreMetrics,
    shutdown: Shutdown,
    _held: impl Sized,
) {
    let service = &*service;
    let _ = stream.tcp().set_nodelay(true);
    if send::make_nonblocking(stream.tcp()).is_err() {
        return;
    }
    let _ = stream.tcp().set_write_timeout(Some(limits.write_timeout));
    let mut buf = ReadBuf::new();
    let mut head = Vec::new();
    // When the first byte of the request being read arrived.
    let mut request_began: Option<Instant> = None;
    // Slack above the head limit so the parser can see the limit being crossed.
    let max_buffered = limits.max_head_bytes + 1024;
    let Ok(peer) = stream.tcp().peer_addr() else { return };
    // The socket's own peer (a balancer, where one sends PROXY headers):
    // that is where the bytes go.
    let sendfile = limits.sendfile.for_peer(peer.ip());
    // The balancer's PROXY header, where one must come; anything wrong
    // about it closes the connection without an answer.
    let proxy = service.proxy_header(peer.ip());
    let client = match proxy {
        ProxyHeader::Required => match Box::pin(read_proxy_header(&mut stream, &mut buf, limits)).await {
            Some(addr) => addr.unwrap_or(peer),
            None => return,
        },
        ProxyHeader::Refused | ProxyHeader::Off => peer,
    };
    // A PROXY header from a peer that may not send one is closed unanswered
    // (it fails to parse as a request, and is told apart then).
    let refuse_header = proxy == ProxyHeader::Refused;
    let mut first_request = true;
    loop {
        match request::parse(buf.filled(), limits) {
            Ok(Parsed::Complete(req, used)) => {
                first_request = false;
                metrics.requests.bump();
                // While draining, finish this response and close.
                let connection = response::Connection::of(req.keep_alive && !shutdown.is_draining(), req.http10);
                // Boxed, the response's whole life (the service's future:
                // the edge, the protocol, a hop to the owner; the send's):
                // what an idle keep-alive connection holds is this
                // function's own future, and those are several KB. One
                // allocation a request buys ~4 KB less per idle connection.
                let outcome = Box::pin(respond(&mut stream, &mut head, service, metrics, &req, client, connection, sendfile)).await;
                buf.consume(used);
                request_began = if buf.is_empty() { None } else { Some(Instant::now()) };
                // A drain that began while this response was going out ends the connection too.
                match outcome {
                    Responded::Sent if connection.stays_open() && !shutdown.is_draining() => {}
                    Responded::Sent => {
                        let _ = stream.close().await;
                        return;
                    }
                    Responded::Cut => return,
                }
            }
            Ok(Parsed::Partial) => {
                let wait = match request_began {
                    None => limits.idle_timeout,
                    Some(t) => match limits.header_timeout.checked_sub(t.elapsed()) {
                        Some(left) if left > Duration::ZERO => left,
                        // Slowloris: the head did not arrive in time.
                        _ => return,
                    },
                };
                if request_began.is_none() {
                    // Between requests: the next one's first bytes.
                    match read_idle(&mut stream, &mut buf, &mut head, wait, max_buffered).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => request_began = Some(Instant::now()),
                    }
                    continue;
                }
                if stream.tcp().set_read_timeout(Some(wait)).is_err() {
                    return;
                }
                match stream.read(buf.spare(max_buffered)).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.end += n,
                }
            }
            Err(_) if first_request && refuse_header && proxy_protocol::looks_like_header(buf.filled()) => return,
            Err(e) => {
                count_status(metrics, e.status());
                // Boxed like a response (the reply and the send's future are large).
                Box::pin(async {
                    let resp = Reply::text(e.status(), Body::from_static(e.message()));
                    response::write_head(&mut head, &resp, resp.body.bytes().len(), response::Connection::Close);
                    let _ = stream.send_all(&head, resp.body.bytes(), None).await;
                    let _ = stream.close().await;
                })
                .await;
                return;
            }
        }
    }
}

/// How a response went out.
enum Responded {
    /// Whole: the connection may serve the next request.
    Sent,
    /// Not whole (the client left, the fill failed): the connection ends
    /// without a close, so a cut body never reaches its Content-Length.
    Cut,
}

/// Serves one parsed request on `stream`: asks the service, sends the
/// response, and tells the service what went out.
// The connection's own state, passed as it is rather than bundled for one call.
#[allow(clippy::too_many_arguments)]
async fn respond<S: Service, C: Conn>(
    stream: &mut C,
    head: &mut Vec<u8>,
    service: &S,
    metrics: &CoreMetrics,
    req: &request::Request<'_>,
    client: SocketAddr,
    connection: response::Connection,
    sendfile: bool,
) -> Responded {
    let send_body = req.method == Method::Get;
    let parsed_at = Instant::now();
    let method = if send_body { "GET" } else { "HEAD" };
    let incoming = Incoming { method, target: req.target, if_none_match: req.if_none_match, authorization: req.authorization, client };
    let mut resp = service.serve(&incoming).await;
    count_status(metrics, resp.status);
    // The connection takes the stream over, so that it can let go of the
    // fill buffer as soon as the fill is done.
    if let Some(fill) = resp.body.take_filling() {
        let progress = fill.progress.clone();
        return match send_filling(stream, head, &resp, fill, send_body, connection).await {
            Some(sent) => {
                service.served(&incoming, &resp, sent, parsed_at.elapsed());
                metrics.body_bytes.add(sent);
                Responded::Sent
            }
            // The fill failed or the client left.
            None => {
                if !progress.is_streaming() {
                    metrics.streams_cut.bump();
                }
                service.served(&incoming, &resp, 0, parsed_at.elapsed());
                Responded::Cut
            }
        };
    }
    let full = resp.body.bytes();
    let body = if send_body && resp.status != 304 { full } else { &[][..] };
    response::write_head(head, &resp, full.len(), connection);
    let file = if body.is_empty() || !sendfile { None } else { resp.body.file_range() };
    let sent = stream.send_all(head, body, file).await;
    service.served(&incoming, &resp, if sent.is_ok() { body.len() as u64 } else { 0 }, parsed_at.elapsed());
    if sent.is_err() {
        return Responded::Cut;
    }
    metrics.body_bytes.add(body.len() as u64);
    Responded::Sent
}

/// Reads and consumes the PROXY header at the start of a connection:
/// `Some(client)` (`Some(None)`: a LOCAL/UNKNOWN header, the peer
/// stands), or `None` when it is missing, malformed or late.
async fn read_proxy_header<C: Conn>(stream: &mut C, buf: &mut ReadBuf, limits: &HttpLimits) -> Option<Option<SocketAddr>> {
    let until = Instant::now() + limits.header_timeout;
    loop {
        match proxy_protocol::parse(buf.filled()) {
            Ok(Some(h)) => {
                buf.consume(h.len);
                return Some(h.client);
            }
            Ok(None) => {}
            Err(_) => return None,
        }
        let left = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        stream.tcp().set_read_timeout(Some(left)).ok()?;
        match stream.read(buf.spare(proxy_protocol::MAX_HEADER)).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.end += n,
        }
    }
}

/// Sends a zip that is still arriving (see `artifact::fill`): the
/// head with the announced length, then the bytes as the fill releases
/// them, straight from its buffer and, once the fill is done, from the
/// kept copy (the fill buffer is then dropped), in fair turns. Returns the
/// body bytes sent, or None when the connection must be dropped (the fill
/// failed, the client went away).
async fn send_filling<C: Conn>(
    stream: &mut C,
    head: &mut Vec<u8>,
    resp: &Reply,
    fill: FillStream,
    send_body: bool,
    connection: response::Connection,
) -> Option<u64> {
    let FillStream { progress, buffer } = fill;
    response::write_head(head, resp, buffer.capacity(), connection);
    stream.send_all(head, &[], None).await.ok()?;
    if !send_body {
        return Some(0);
    }
    let mut buffer = Some(buffer);
    let mut pos = 0;
    loop {
        match progress.readable(pos).await {
            Readable::UpTo(end) => {
                let kept = progress.kept();
                if kept.is_some() {
                    buffer = None;
                }
                // `end` never passes what was published (or kept).
                let released = match (&kept, &buffer) {
                    (Some(k), _) => k.get(pos..end)?,
                    (None, Some(b)) => b.published().get(pos..end)?,
                    (None, None) => return None,
                };
                for turn in released.chunks(send::FAIR_CHUNK) {
                    stream.send_all(&[], turn, None).await.ok()?;
                    glommio::executor().yield_now().await;
                }
                pos = end;
            }
            Readable::End => return Some(pos as u64),
            Readable::Failed => return None,
        }
    }
}

/// Whether an accept error means "out of descriptors": back off instead of spinning.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}
