//! The PROXY protocol header (versions 1 and 2, as HAProxy specifies it)
//! that an L4 balancer puts before a connection's first byte to say who
//! the client is.
//!
//! Pure parsing: bytes in, the client's address (or "use the peer's") and
//! how many bytes the header took, out. It never trusts a length it reads
//! beyond [`MAX_HEADER`], and never decides whether a peer may send one:
//! that is [`super::EdgeSettings::proxy_header`]'s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's fixed signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's line is at most this long, CRLF included.
const V1_MAX: usize = 107;
/// The most header bytes accepted (version 2 with TLVs): more is refused.
pub const MAX_HEADER: usize = 1024;

/// A whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The client's address; `None` for a LOCAL (v2) or UNKNOWN (v1)
    /// header (a health check of the balancer's own): the peer's address stands.
    pub client: Option<SocketAddr>,
    /// Bytes the header takes at the front of the stream.
    pub len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Not a PROXY header at all (a plain request where one was required).
    Missing,
    Malformed(&'static str),
}

/// Whether `buf` starts like a PROXY header (enough to refuse one from a
/// peer that may not send it). False for fewer than 6 bytes that match.
pub fn looks_like_header(buf: &[u8]) -> bool {
    buf.starts_with(b"PROXY ") || (buf.len() >= 12 && buf[..12] == V2_SIGNATURE)
}

/// Parses a header at the front of `buf`. `Ok(None)`: not enough bytes yet.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'P' {
        return parse_v1(buf);
    }
    if buf[0] == b'\r' {
        return parse_v2(buf);
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(ProxyError::Missing);
    }
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX { Err(ProxyError::Malformed("v1 line longer than 107 bytes")) } else { Ok(None) };
    };
    let line = std::str::from_utf8(&buf[prefix.len()..end]).map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let len = end + 2;
    let mut parts = line.split(' ');
    let family = parts.next().unwrap_or("");
    if family == "UNKNOWN" {
        return Ok(Some(Header { client: None, len }));
    }
    let fields: Vec<&str> = parts.collect();
    let [src, _dst, sport, _dport] = fields[..] else { return Err(ProxyError::Malformed("v1 line needs four addresses and ports")) };
    let ip: IpAddr = match family {
        "TCP4" => src.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| ProxyError::Malformed("v1 source is not an IPv4 address"))?,
        "TCP6" => src.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| ProxyError::Malformed("v1 source is not an IPv6 address"))?,
        _ => return Err(ProxyError::Malformed("v1 family must be TCP4, TCP6 or UNKNOWN")),
    };
    // Ports are decimal without a sign or leading zeros beyond "0".
    let port = (!sport.is_empty() && sport.bytes().all(|b| b.is_ascii_digit()) && (sport == "0" || !sport.starts_with('0')))
        .then(|| sport.parse::<u16>().ok())
        .flatten()
        .ok_or(ProxyError::Malformed("v1 source port is not a port"))?;
    Ok(Some(Header { client: Some(SocketAddr::new(ip, port)), len }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    let n = buf.len().min(12);
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ProxyError::Missing);
    }
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version must be 2"));
    }
    let body = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + body;
    if len > MAX_HEADER {
        return Err(ProxyError::Malformed("v2 header longer than 1024 bytes"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let addrs = &buf[16..len];
    match ver_cmd & 0x0F {
        // LOCAL: the balancer's own connection; the peer's address stands.
        0 => return Ok(Some(Header { client: None, len })),
        1 => {}
        _ => return Err(ProxyError::Malformed("v2 command must be LOCAL or PROXY")),
    }
    let client = match family {
        // TCP over IPv4, then IPv6 (UDP would not be this connection).
        0x11 => {
            let a = addrs.get(..12).ok_or(ProxyError::Malformed("v2 IPv4 addresses cut short"))?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), u16::from_be_bytes([a[8], a[9]])))
        }
        0x21 => {
            let a = addrs.get(..36).ok_or(ProxyError::Malformed("v2 IPv6 addresses cut short"))?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes([a[32], a[33]])))
        }
        // UNSPEC and the rest: no usable address; the peer's stands.
        0x00 => None,
        _ => return Err(ProxyError::Malformed("v2 family must be TCP over IPv4 or IPv6")),
    };
    Ok(Some(Header { client, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(cmd: u8, family: u8, addrs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20 | cmd, family]);
        h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h
    }

    #[test]
    fn version_one_lines() {
        let h = parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n").unwrap().unwrap();
        assert_eq!(h.client, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(h.len, "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".len());
        let h = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n").unwrap().unwrap();
        assert_eq!(h.client, Some("[2001:db8::1]:4000".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().client, None);
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7 198.51.100.1 563").unwrap(), None, "not all there yet");
        for bad in [
            &b"PROXY TCP4 192.0.2.777 1.1.1.1 1 2\r\n"[..],
            b"PROXY TCP5 1.1.1.1 1.1.1.1 1 2\r\n",
            b"PROXY TCP4 1.1.1.1 1.1.1.1 65536 2\r\n",
            b"PROXY TCP4 1.1.1.1 1.1.1.1 +1 2\r\n",
            b"PROXY TCP4 1.1.1.1 1.1.1.1 1\r\n",
            b"PROXY TCP6 1.1.1.1 1.1.1.1 1 2\r\n",
        ] {
            assert!(matches!(parse(bad), Err(ProxyError::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(parse(&[b'P'; 200]), Err(ProxyError::Missing)));
        let long = format!("PROXY TCP4 {}", "1".repeat(120));
        assert!(matches!(parse(long.as_bytes()), Err(ProxyError::Malformed(_))), "a line that never ends is refused");
    }

    #[test]
    fn version_two_headers() {
        let mut a4 = vec![203, 0, 113, 9, 10, 0, 0, 1];
        a4.extend_from_slice(&4321u16.to_be_bytes());
        a4.extend_from_slice(&443u16.to_be_bytes());
        let h = v2(1, 0x11, &a4);
        let got = parse(&h).unwrap().unwrap();
        assert_eq!((got.client, got.len), (Some("203.0.113.9:4321".parse().unwrap()), 28));
        // TLVs after the addresses are skipped with the header.
        let mut with_tlv = a4.clone();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']);
        assert_eq!(parse(&v2(1, 0x11, &with_tlv)).unwrap().unwrap().len, 16 + with_tlv.len());
        let mut a6 = [0u8; 36].to_vec();
        a6[15] = 1;
        a6[32..34].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(parse(&v2(1, 0x21, &a6)).unwrap().unwrap().client, Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse(&v2(0, 0x00, &[])).unwrap().unwrap().client, None, "LOCAL");
        assert_eq!(parse(&h[..20]).unwrap(), None, "not all there yet");
        assert!(matches!(parse(&v2(1, 0x11, &a4[..6])), Err(ProxyError::Malformed(_))));
        assert!(matches!(parse(&v2(2, 0x11, &a4)), Err(ProxyError::Malformed(_))));
        assert!(matches!(parse(&v2(1, 0x12, &a4)), Err(ProxyError::Malformed(_))), "UDP");
        let mut huge = v2(1, 0x11, &a4);
        huge[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert!(matches!(parse(&huge), Err(ProxyError::Malformed(_))));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        /// Never panics; a header it accepts fits in the bytes given and
        /// is a prefix of them; feeding it byte by byte never claims more.
        #[test]
        fn never_panics_and_never_reads_past_the_bytes_given(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(Some(h)) = parse(&bytes) {
                proptest::prop_assert!(h.len <= bytes.len() && h.len <= MAX_HEADER);
                proptest::prop_assert_eq!(parse(&bytes[..h.len]), Ok(Some(h)));
            }
        }

        /// Version 1 lines round-trip their source address.
        #[test]
        fn v1_round_trips(a in proptest::prelude::any::<[u8; 4]>(), port in proptest::prelude::any::<u16>(), dport in proptest::prelude::any::<u16>()) {
            let ip = Ipv4Addr::from(a);
            let line = format!("PROXY TCP4 {ip} 10.0.0.1 {port} {dport}\r\n");
            let h = parse(line.as_bytes()).unwrap().unwrap();
            proptest::prop_assert_eq!(h.client, Some(SocketAddr::new(IpAddr::V4(ip), port)));
            proptest::prop_assert_eq!(h.len, line.len());
        }
    }
}
