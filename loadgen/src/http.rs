//! HTTP/1.1 on the wire: writing GET requests the way Go's client writes them,
//! and an incremental response parser that counts body bytes without keeping
//! them. Bodies are framed by Content-Length (verified to arrive in full: a
//! short body is an error), by chunked encoding, or by connection close.

/// Appends a GET request for `path` to `out`. The headers are those a Go
/// client (`go mod download`) sends, so servers see the same request shape.
pub fn write_request(out: &mut Vec<u8>, host: &str, path: &str) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n");
}

/// Why a response could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not HTTP, or headers we cannot frame a body from.
    Protocol,
    /// Bytes arrived after a complete response although none was asked for.
    Unsolicited,
}

/// What feeding bytes to the parser gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    NeedMore,
    /// The response is complete; `consumed` bytes of the last input belonged to it.
    Done {
        consumed: usize,
    },
    Error(ParseError),
}

/// How a response ended when the connection reached end-of-stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eof {
    /// Body delimited by close: the response is complete.
    Complete,
    /// Nothing (or only part of the head) arrived: the connection was reset.
    Reset,
    /// The head arrived but fewer body bytes than announced.
    ShortBody,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Length,
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Most bytes of status line + headers accepted; beyond is a protocol error.
const MAX_HEAD: usize = 64 * 1024;

/// Incremental response parser, one per connection. Small when idle (the
/// head buffer is only allocated if a head is split across reads) because a
/// hold run keeps a million of them.
#[derive(Debug)]
pub struct ResponseParser {
    state: State,
    head: Vec<u8>,
    /// Body bytes still expected (Content-Length or current chunk).
    left: u64,
    pub status: u16,
    /// The server will close after this response (Connection: close, HTTP/1.0).
    pub close: bool,
    pub body_bytes: u64,
    /// Bytes of this response seen so far (head + framing + body).
    pub wire_bytes: u64,
}

impl Default for ResponseParser {
    fn default() -> Self {
        ResponseParser { state: State::Head, head: Vec::new(), left: 0, status: 0, close: false, body_bytes: 0, wire_bytes: 0 }
    }
}

impl ResponseParser {
    /// Prepares for the next response on the same connection.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.head = Vec::new();
        self.left = 0;
        self.status = 0;
        self.close = false;
        self.body_bytes = 0;
        self.wire_bytes = 0;
    }

    /// True once any byte of the current response has arrived.
    pub fn started(&self) -> bool {
        self.wire_bytes > 0
    }

    /// True while reading the body (used to call an abort a short body).
    pub fn in_body(&self) -> bool {
        !matches!(self.state, State::Head | State::Done)
    }

    /// Feeds bytes read from the socket.
    pub fn feed(&mut self, data: &[u8]) -> Feed {
        let mut pos = 0;
        while pos < data.len() {
            match self.state {
                State::Head => match self.parse_head(&data[pos..]) {
                    Ok(Some(n)) => pos += n,
                    Ok(None) => {
                        self.wire_bytes += (data.len() - pos) as u64;
                        return Feed::NeedMore;
                    }
                    Err(e) => return Feed::Error(e),
                },
                State::Length => {
                    let take = (self.left.min((data.len() - pos) as u64)) as usize;
                    self.left -= take as u64;
                    self.body_bytes += take as u64;
                    self.wire_bytes += take as u64;
                    pos += take;
                    if self.left == 0 {
                        self.state = State::Done;
                    }
                }
                State::UntilClose => {
                    let n = data.len() - pos;
                    self.body_bytes += n as u64;
                    self.wire_bytes += n as u64;
                    pos = data.len();
                }
                State::Chunked(c) => match self.chunk_step(c, &data[pos..]) {
                    Ok(n) => pos += n,
                    Err(e) => return Feed::Error(e),
                },
                State::Done => break,
            }
            if self.state == State::Done {
                return Feed::Done { consumed: pos };
            }
        }
        if self.state == State::Done {
            Feed::Done { consumed: pos }
        } else {
            Feed::NeedMore
        }
    }

    /// The connection reached end-of-stream (or was reset) mid-response.
    pub fn eof(&mut self) -> Eof {
        match self.state {
            State::UntilClose => {
                self.state = State::Done;
                Eof::Complete
            }
            State::Head | State::Done => Eof::Reset,
            _ => Eof::ShortBody,
        }
    }

    /// Tries to parse a complete head from the buffered bytes plus `data`.
    /// Returns how many bytes of `data` the head used, or None if incomplete.
    fn parse_head(&mut self, data: &[u8]) -> Result<Option<usize>, ParseError> {
        let buffered = self.head.len();
        if buffered > 0 {
            self.head.extend_from_slice(data);
        }
        let src: &[u8] = if buffered > 0 { &self.head } else { data };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(src) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buffered == 0 {
                    self.head.extend_from_slice(data);
                }
                if self.head.len() > MAX_HEAD {
                    return Err(ParseError::Protocol);
                }
                return Ok(None);
            }
            Err(_) => return Err(ParseError::Protocol),
        };
        let status = resp.code.unwrap_or(0);
        let http10 = resp.version == Some(0);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = http10;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
                match (v, length) {
                    (None, _) => return Err(ParseError::Protocol),
                    (Some(v), Some(old)) if v != old => return Err(ParseError::Protocol),
                    (Some(v), _) => length = Some(v),
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = h.value.split(|&b| b == b',').next_back().is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let t = token.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                        close = false;
                    }
                }
            }
        }
        let used = n - buffered;
        self.wire_bytes += used as u64;
        self.head = Vec::new();
        if (100..200).contains(&status) && status != 101 {
            // Interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(Some(used));
        }
        self.status = status;
        self.close = close;
        self.state = if status == 204 || status == 304 || length == Some(0) {
            State::Done
        } else if chunked {
            State::Chunked(Chunk::Size)
        } else if let Some(len) = length {
            self.left = len;
            State::Length
        } else {
            self.close = true;
            State::UntilClose
        };
        Ok(Some(used))
    }

    /// Advances the chunked-body state machine over `data`; returns bytes used.
    fn chunk_step(&mut self, mut c: Chunk, data: &[u8]) -> Result<usize, ParseError> {
        let mut i = 0;
        while i < data.len() {
            if c == Chunk::Data {
                let take = self.left.min((data.len() - i) as u64) as usize;
                self.left -= take as u64;
                self.body_bytes += take as u64;
                i += take;
                if self.left == 0 {
                    c = Chunk::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            c = match (c, b) {
                (Chunk::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    if self.left > (u64::MAX >> 8) {
                        return Err(ParseError::Protocol);
                    }
                    self.left = self.left * 16 + d;
                    Chunk::Size
                }
                (Chunk::Size, b';' | b' ' | b'\t') => Chunk::Ext,
                (Chunk::Size | Chunk::Ext, b'\r') => Chunk::SizeLf,
                (Chunk::Size | Chunk::Ext | Chunk::SizeLf, b'\n') => {
                    if self.left == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data
                    }
                }
                (Chunk::Ext, _) => Chunk::Ext,
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataCr | Chunk::DataLf, b'\n') => Chunk::Size,
                (Chunk::TrailerStart, b'\r') => Chunk::FinalLf,
                (Chunk::TrailerStart | Chunk::FinalLf, b'\n') => {
                    self.wire_bytes += i as u64;
                    self.state = State::Done;
                    return Ok(i);
                }
                (Chunk::TrailerLine, b'\n') => Chunk::TrailerStart,
                (Chunk::TrailerStart | Chunk::TrailerLine, _) => Chunk::TrailerLine,
                _ => return Err(ParseError::Protocol),
            };
        }
        self.wire_bytes += i as u64;
        self.state = State::Chunked(c);
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` split at every possible point and checks the outcome is
    /// the same as feeding it whole: reads can end anywhere.
    fn parse_split(wire: &[u8]) -> (u16, u64, bool, usize) {
        let mut whole = ResponseParser::default();
        let Feed::Done { consumed } = whole.feed(wire) else { panic!("incomplete: {:?}", String::from_utf8_lossy(wire)) };
        for cut in 0..=wire.len() {
            let mut p = ResponseParser::default();
            let first = p.feed(&wire[..cut]);
            let total = match first {
                Feed::Done { consumed } => consumed,
                Feed::NeedMore => match p.feed(&wire[cut..]) {
                    Feed::Done { consumed } => cut + consumed,
                    other => panic!("cut {cut}: {other:?}"),
                },
                Feed::Error(e) => panic!("cut {cut}: {e:?}"),
            };
            assert_eq!(total, consumed, "cut {cut}");
            assert_eq!(p.body_bytes, whole.body_bytes, "cut {cut}");
            assert_eq!(p.wire_bytes as usize, consumed, "cut {cut}");
        }
        (whole.status, whole.body_bytes, whole.close, consumed)
    }

    #[test]
    fn content_length() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";
        assert_eq!(parse_split(wire), (200, 5, false, wire.len()));
    }

    #[test]
    fn zero_length_and_not_modified() {
        assert_eq!(parse_split(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").1, 0);
        assert_eq!(parse_split(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n").0, 304);
    }

    #[test]
    fn chunked() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nB\r\n, the world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(parse_split(wire), (200, 16, false, wire.len()));
    }

    #[test]
    fn connection_close_and_http10() {
        assert!(parse_split(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx").2);
        assert!(parse_split(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx").2);
        assert!(!parse_split(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx").2);
    }

    #[test]
    fn interim_response_is_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_split(wire), (200, 2, false, wire.len()));
    }

    #[test]
    fn short_body_and_reset() {
        let mut p = ResponseParser::default();
        assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), Feed::NeedMore);
        assert!(p.in_body());
        assert_eq!(p.eof(), Eof::ShortBody);
        let mut p = ResponseParser::default();
        assert_eq!(p.eof(), Eof::Reset);
        let mut p = ResponseParser::default();
        assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n\r\nuntil close"), Feed::NeedMore);
        assert_eq!(p.eof(), Eof::Complete);
        assert_eq!(p.body_bytes, 11);
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let mut p = ResponseParser::default();
        assert_eq!(p.feed(b"SSH-2.0-OpenSSH\r\n\r\n"), Feed::Error(ParseError::Protocol));
        let mut p = ResponseParser::default();
        assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), Feed::Error(ParseError::Protocol));
    }

    #[test]
    fn extra_bytes_are_reported_as_not_consumed() {
        let mut p = ResponseParser::default();
        assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA"), Feed::Done { consumed: 39 });
    }

    #[test]
    fn request_shape() {
        let mut out = Vec::new();
        write_request(&mut out, "127.0.0.1:8080", "/example.com/a/@v/list");
        assert_eq!(
            out,
            b"GET /example.com/a/@v/list HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
        );
    }
}
