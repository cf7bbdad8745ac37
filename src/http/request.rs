//! Request parsing: bytes in a connection buffer → a borrowed [`Request`],
//! or a typed reason to refuse it. Nothing here allocates.

use super::HttpLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// A parsed request head; borrows the connection's read buffer.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The request target as sent (origin-form: starts with `/`).
    pub target: &'a str,
    pub if_none_match: Option<&'a [u8]>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// An HTTP/1.0 request (whose keep-alive must be acknowledged).
    pub http10: bool,
    /// The `Authorization` header's value (for the edge; never logged).
    pub authorization: Option<&'a [u8]>,
}

/// Why a request is refused at the wire level. Each maps to one status in
/// `http::response` and ends the connection (the stream may be out of sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    Malformed(&'static str),
    UriTooLong,
    HeadersTooLarge,
    MethodNotAllowed,
    BodyNotAllowed,
    VersionNotSupported,
}

impl HttpError {
    pub fn status(self) -> u16 {
        match self {
            HttpError::Malformed(_) | HttpError::BodyNotAllowed => 400,
            HttpError::UriTooLong => 414,
            HttpError::HeadersTooLarge => 431,
            HttpError::MethodNotAllowed => 405,
            HttpError::VersionNotSupported => 505,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            HttpError::Malformed(why) => why,
            HttpError::UriTooLong => "request target too long",
            HttpError::HeadersTooLarge => "request header fields too large",
            HttpError::MethodNotAllowed => "only GET and HEAD are served",
            HttpError::BodyNotAllowed => "request bodies are not accepted",
            HttpError::VersionNotSupported => "only HTTP/1.0 and HTTP/1.1 are served",
        }
    }
}

pub enum Parsed<'a> {
    /// A whole request head, and how many buffer bytes it used.
    Complete(Request<'a>, usize),
    /// Need more bytes.
    Partial,
}

/// Parses one request head from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &HttpLimits) -> Result<Parsed<'a>, HttpError> {
    // nginx takes 100 and more; --max-header-bytes is the real bound.
    const MAX_HEADERS: usize = 128;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers[..limits.max_headers.min(MAX_HEADERS)]);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial(buf, limits),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        // "HTTP/2.0" is a version we do not speak; "FTP/1.0" is not HTTP at all.
        // A space inside the target also lands here ("GET /a b HTTP/1.1"):
        // that is a malformed request (400), not a version (505), or any
        // client could inflate the 5xx count operators alert on.
        Err(httparse::Error::Version) => {
            let line = &buf[..request_line_len(buf).unwrap_or(buf.len())];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut parts = line.split(|&b| b == b' ');
            let (_method, _target, version, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
            return Err(match (version, rest) {
                (Some(v), None) if v.starts_with(b"HTTP/") => HttpError::VersionNotSupported,
                (Some(_), Some(_)) => HttpError::Malformed("a space inside the request target"),
                _ => HttpError::Malformed("malformed request line"),
            });
        }
        Err(_) => {
            // A target too long for our limit can also confuse the parser first; report the real reason.
            if request_line_len(buf).is_none_or(|n| n > limits.max_uri_bytes + 32) && buf.len() > limits.max_uri_bytes {
                return Err(HttpError::UriTooLong);
            }
            return Err(HttpError::Malformed("malformed request"));
        }
    };
    if used > limits.max_head_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    let target = req.path.ok_or(HttpError::Malformed("missing request target"))?;
    if target.len() > limits.max_uri_bytes {
        return Err(HttpError::UriTooLong);
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => return Err(HttpError::MethodNotAllowed),
    };
    let minor = req.version.unwrap_or(1);
    let mut keep_alive = minor == 1;
    let mut if_none_match = None;
    let mut authorization = None;
    let mut has_host = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if h.value.trim_ascii() != b"0" {
                return Err(HttpError::BodyNotAllowed);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::BodyNotAllowed);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            if_none_match = Some(h.value);
        } else if name.eq_ignore_ascii_case("authorization") {
            // Two credentials would make which one counts a guess.
            if authorization.is_some() {
                return Err(HttpError::Malformed("more than one Authorization header"));
            }
            authorization = Some(h.value);
        } else if name.eq_ignore_ascii_case("host") {
            // RFC 9112 §3.2: more than one Host is a 400, whatever they say.
            if has_host {
                return Err(HttpError::Malformed("more than one Host header"));
            }
            has_host = true;
        }
    }
    if minor == 1 && !has_host {
        return Err(HttpError::Malformed("HTTP/1.1 request without a Host header"));
    }
    let target = origin_form(target).ok_or(HttpError::Malformed("request target must be an absolute path or an absolute URL"))?;
    Ok(Parsed::Complete(Request { method, target, if_none_match, keep_alive, http10: minor == 0, authorization }, used))
}

/// The path (and query) of a request target: origin-form as is, and the
/// absolute form (`http://host/path`), which servers must accept too (RFC
/// 9112, 3.2.2) though clients send it mostly to proxies. The authority is
/// ignored: this server answers one namespace whatever host is named.
fn origin_form(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return Some(target);
    }
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Some(&rest[i..]),
        // `http://host` or `http://host?q`: the path is empty, i.e. `/`
        // (a query on the root names nothing here either).
        _ => Some("/"),
    }
}

fn request_line_len(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// An incomplete head is fine until it outgrows the limits.
fn partial<'a>(buf: &[u8], limits: &HttpLimits) -> Result<Parsed<'a>, HttpError> {
    match request_line_len(buf) {
        None if buf.len() > limits.max_uri_bytes + 32 => Err(HttpError::UriTooLong),
        Some(n) if n > limits.max_uri_bytes + 32 => Err(HttpError::UriTooLong),
        _ if buf.len() >= limits.max_head_bytes => Err(HttpError::HeadersTooLarge),
        _ => Ok(Parsed::Partial),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits::default()
    }

    fn complete(raw: &[u8]) -> (Method, String, bool, usize) {
        match parse(raw, &limits()) {
            Ok(Parsed::Complete(r, n)) => (r.method, r.target.to_string(), r.keep_alive, n),
            Ok(Parsed::Partial) => panic!("partial"),
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn takes_at_least_a_hundred_header_fields() {
        let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..100 {
            head.push_str(&format!("X-H{i}: v\r\n"));
        }
        head.push_str("\r\n");
        assert_eq!(complete(head.as_bytes()).1, "/");
    }

    #[test]
    fn parses_get_and_head_with_keep_alive_rules() {
        let (m, t, ka, n) = complete(b"GET /example.com/a/@v/list HTTP/1.1\r\nHost: x\r\n\r\nGET /next");
        assert_eq!((m, t.as_str(), ka, n), (Method::Get, "/example.com/a/@v/list", true, 48));
        let (m, _, ka, _) = complete(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!((m, ka), (Method::Head, false));
        let (_, _, ka, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!ka);
        let (_, _, ka, _) = complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(ka);
    }

    #[test]
    fn partial_until_limits() {
        assert!(matches!(parse(b"GET /exa", &limits()), Ok(Parsed::Partial)));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(5000));
        assert_eq!(parse(long.as_bytes(), &limits()).err(), Some(HttpError::UriTooLong));
        let long = format!("GET /{}", "a".repeat(5000));
        assert_eq!(parse(long.as_bytes(), &limits()).err(), Some(HttpError::UriTooLong));
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n", "b".repeat(20_000));
        assert_eq!(parse(big.as_bytes(), &limits()).err(), Some(HttpError::HeadersTooLarge));
    }

    #[test]
    fn accepts_the_absolute_form_as_its_path() {
        assert_eq!(complete(b"GET http://h:8080/a/@v/list HTTP/1.1\r\nHost: h\r\n\r\n").1, "/a/@v/list");
        assert_eq!(complete(b"GET HTTPS://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n").1, "/x?y");
        assert_eq!(complete(b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n").1, "/");
        assert_eq!(complete(b"GET http://h?q=/x HTTP/1.1\r\nHost: h\r\n\r\n").1, "/");
    }

    #[test]
    fn refuses_what_a_read_only_proxy_never_needs() {
        let e = |raw: &[u8]| parse(raw, &limits()).err();
        assert_eq!(e(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"), Some(HttpError::MethodNotAllowed));
        assert_eq!(e(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"), Some(HttpError::BodyNotAllowed));
        assert_eq!(e(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(HttpError::BodyNotAllowed));
        assert_eq!(e(b"GET / HTTP/1.1\r\n\r\n"), Some(HttpError::Malformed("HTTP/1.1 request without a Host header")));
        assert!(matches!(e(b"GET\x00 / HTTP/1.1\r\n\r\n"), Some(HttpError::Malformed(_))));
        assert!(matches!(e(b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n"), Some(HttpError::Malformed(_))));
        assert!(matches!(e(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"), Some(HttpError::Malformed(_))));
        assert_eq!(e(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), Some(HttpError::VersionNotSupported));
        // A space inside the target is the client's mistake (400), not a version we lack (505).
        assert_eq!(e(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"), Some(HttpError::Malformed("a space inside the request target")));
        assert_eq!(e(b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n").map(HttpError::status), Some(400));
        // RFC 9112 §3.2: two Host headers are a 400.
        assert_eq!(e(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"), Some(HttpError::Malformed("more than one Host header")));
        assert!(matches!(e(b"GET / FTP/1.0\r\nHost: x\r\n\r\n"), Some(HttpError::Malformed(_))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// Never panics, whatever the bytes; a complete head never claims
        /// more bytes than it was given, and its target is origin-form.
        #[test]
        fn never_panics_and_never_claims_bytes_it_was_not_given(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Ok(Parsed::Complete(r, n)) = parse(&bytes, &limits()) {
                proptest::prop_assert!(n <= bytes.len());
                proptest::prop_assert!(r.target.starts_with('/'));
            }
        }

        /// A request made of valid parts parses back to those parts, whatever
        /// header fields come with it; one whose target holds a space is a 400.
        #[test]
        fn valid_requests_round_trip_and_spaces_in_targets_are_refused(
            head in proptest::prop_oneof![proptest::strategy::Just("GET"), proptest::strategy::Just("HEAD")],
            target in "/[A-Za-z0-9._~!/@%-]{0,60}",
            minor in 0u8..2,
            close in proptest::prelude::any::<bool>(),
            extra in proptest::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,20}"), 0..10),
        ) {
            let mut raw = format!("{head} {target} HTTP/1.{minor}\r\nHost: h\r\n");
            for (k, v) in &extra {
                raw.push_str(&format!("{k}: {}\r\n", v.trim()));
            }
            if close {
                raw.push_str("Connection: close\r\n");
            }
            raw.push_str("\r\n");
            match parse(raw.as_bytes(), &limits()) {
                Ok(Parsed::Complete(r, n)) => {
                    proptest::prop_assert_eq!(r.method, if head == "GET" { Method::Get } else { Method::Head });
                    proptest::prop_assert_eq!(r.target, target.as_str());
                    proptest::prop_assert_eq!(r.keep_alive, minor == 1 && !close);
                    proptest::prop_assert_eq!(n, raw.len());
                }
                other => proptest::prop_assert!(false, "{:?} refused: {:?}", raw, other.err()),
            }
            let spaced = format!("{head} {target} x HTTP/1.1\r\nHost: h\r\n\r\n");
            proptest::prop_assert_eq!(parse(spaced.as_bytes(), &limits()).err().map(HttpError::status), Some(400));
        }
    }
}
