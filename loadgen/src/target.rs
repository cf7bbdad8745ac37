//! Targets: parsing `http://host:port/base` URLs (optionally labelled
//! `name=URL`) and the safety rule that loadgen only sends load to loopback
//! addresses unless `--allow-remote` is given — a load generator pointed at
//! the wrong host by a typo is a denial-of-service tool.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

/// One server under test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Name used in tables, reports and plot legends.
    pub label: String,
    /// The base URL as given (without label).
    pub url: String,
    pub addr: SocketAddr,
    /// Host header value (the authority as written in the URL).
    pub host: String,
    /// Path prefix for every request, without a trailing slash ("" for none).
    pub base_path: String,
}

/// Splits `name=http://…` into label and URL; a plain URL has no label.
fn split_label(spec: &str) -> (Option<&str>, &str) {
    match spec.find('=') {
        Some(i) if !spec[..i].contains("://") && !spec[..i].is_empty() => (Some(&spec[..i]), &spec[i + 1..]),
        _ => (None, spec),
    }
}

/// True for addresses that stay on this machine: 127.0.0.0/8 and ::1
/// (also in IPv4-mapped form).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Parses an absolute `http://` URL into its target and request path
/// (path includes any query string; "" when the URL has no path).
pub fn parse_url(url: &str, allow_remote: bool) -> Result<(Target, String), String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!("{url}: scheme {scheme:?} is not supported (loadgen speaks HTTP/1.1 over plain TCP only)"))
        }
        None => return Err(format!("{url}: expected an http:// URL")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url}: expected http://HOST[:PORT][/PATH]"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| format!("{url}: bad host or port in {authority:?}"))?;
    let addr = resolve(host, port, allow_remote).map_err(|e| format!("{url}: {e}"))?;
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    let target = Target { label: authority.to_string(), url: url.to_string(), addr, host: authority.to_string(), base_path: String::new() };
    Ok((target, path))
}

/// Parses a `--target` value: `[name=]http://host[:port][/base/path]`.
pub fn parse_target(spec: &str, allow_remote: bool) -> Result<Target, String> {
    let (label, url) = split_label(spec.trim());
    let (mut target, path) = parse_url(url, allow_remote)?;
    if path.contains('?') {
        return Err(format!("{url}: a target is a base URL; give query strings with --path"));
    }
    target.base_path = path.trim_end_matches('/').to_string();
    target.label = match label {
        Some(l) => l.to_string(),
        None => format!("{}{}", target.host, target.base_path),
    };
    Ok(target)
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p.parse().ok()?)),
        Some(_) => None, // bare IPv6 needs brackets
        None => Some((authority, 80)),
    }
}

/// Resolves the host; outside loopback only with `allow_remote`.
fn resolve(host: &str, port: u16, allow_remote: bool) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !allow_remote && !is_loopback(ip) {
            return Err(format!("{ip} is not a loopback address; loadgen only targets 127.0.0.0/8 and ::1 unless --allow-remote is given"));
        }
        return Ok(SocketAddr::new(ip, port));
    }
    if host.eq_ignore_ascii_case("localhost") {
        // Decided here rather than by the resolver, so "localhost" can never
        // be redirected elsewhere by a hosts file or DNS search domain.
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if !allow_remote {
        return Err(format!(
            "host {host:?} is not a loopback address; loadgen only targets 127.0.0.0/8, ::1 and localhost unless --allow-remote is given"
        ));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolved to no address"))
}

/// The default source addresses for spreading `connections` towards `dst`:
/// as many 127.0.0.x addresses as it takes to keep each source address at
/// most `per_source` connections (the ephemeral range bounds each source →
/// destination pair). Remote and IPv6 targets get no source binding: only
/// IPv4 loopback offers a whole /8 of local addresses.
pub fn auto_source_ips(dst: IpAddr, connections: usize, per_source: usize) -> Vec<IpAddr> {
    if !matches!(dst, IpAddr::V4(v4) if v4.is_loopback()) || connections <= per_source {
        return Vec::new();
    }
    source_ip_range(connections.div_ceil(per_source.max(1)))
}

/// `n` consecutive loopback addresses from 127.0.0.1 (skipping .0 and .255
/// host bytes so that every address looks ordinary).
pub fn source_ip_range(n: usize) -> Vec<IpAddr> {
    let mut out = Vec::with_capacity(n);
    let mut i: u32 = 1;
    while out.len() < n && i < 0x00FF_FFFF {
        let [_, b, c, d] = i.to_be_bytes();
        if d != 0 && d != 255 {
            out.push(IpAddr::V4(Ipv4Addr::new(127, b, c, d)));
        }
        i += 1;
    }
    out
}

/// Parses `--source-ips`: `auto`, a count (`8`: 127.0.0.1–127.0.0.8), or a
/// comma list of addresses and `A-B` ranges of IPv4 loopback addresses.
pub fn parse_source_ips(spec: &str, allow_remote: bool) -> Result<Option<Vec<IpAddr>>, String> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    if let Ok(n) = spec.parse::<usize>() {
        if n == 0 {
            return Ok(Some(Vec::new()));
        }
        return Ok(Some(source_ip_range(n)));
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| format!("{part:?}: bad IPv4 range"))?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| format!("{part:?}: bad IPv4 range"))?;
            let (lo, hi) = (u32::from(a), u32::from(b));
            if hi < lo || hi - lo > 1 << 20 {
                return Err(format!("{part:?}: empty or oversized range"));
            }
            out.extend((lo..=hi).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(part.parse::<IpAddr>().map_err(|_| format!("{part:?} is not an IP address"))?);
        }
    }
    if let Some(bad) = out.iter().find(|ip| !allow_remote && !is_loopback(**ip)) {
        return Err(format!("source address {bad} is not a loopback address (needs --allow-remote)"));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        let t = parse_target("http://127.0.0.1:8080", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.base_path, "");
        assert_eq!(t.label, "127.0.0.1:8080");
        let t = parse_target("nginx=http://127.9.8.7:81/goproxy/", false).unwrap();
        assert_eq!(t.label, "nginx");
        assert_eq!(t.base_path, "/goproxy");
        assert_eq!(t.addr.port(), 81);
        let t = parse_target("http://[::1]:9000", false).unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
        let t = parse_target("http://localhost", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:80".parse().unwrap());
        assert!(parse_target("http://[::ffff:127.0.0.1]:80", false).is_ok());
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        for url in [
            "http://10.0.0.1:8080",
            "http://192.168.1.1",
            "http://0.0.0.0:8080",
            "http://[2001:db8::1]:80",
            "http://example.com/",
            "http://proxy.example.com:3000",
        ] {
            let err = parse_target(url, false).unwrap_err();
            assert!(err.contains("--allow-remote"), "{url}: {err}");
        }
        // With the override an IP literal passes (no traffic is sent here).
        assert!(parse_target("http://10.0.0.1:8080", true).is_ok());
    }

    #[test]
    fn malformed_urls() {
        assert!(parse_target("https://127.0.0.1", false).unwrap_err().contains("plain TCP"));
        assert!(parse_target("127.0.0.1:8080", false).is_err());
        assert!(parse_target("http://127.0.0.1:notaport", false).is_err());
        assert!(parse_target("http://::1:80", false).is_err());
        assert!(parse_target("http://user@127.0.0.1", false).is_err());
    }

    #[test]
    fn urls_keep_their_path() {
        let (t, p) = parse_url("http://127.0.0.1:8080/example.com/a/@v/v1.0.0.zip", false).unwrap();
        assert_eq!(p, "/example.com/a/@v/v1.0.0.zip");
        assert_eq!(t.addr.port(), 8080);
        let (_, p) = parse_url("http://127.0.0.1:8080", false).unwrap();
        assert_eq!(p, "");
    }

    #[test]
    fn source_ips() {
        assert_eq!(parse_source_ips("auto", false).unwrap(), None);
        let ips = parse_source_ips("3", false).unwrap().unwrap();
        assert_eq!(ips.len(), 3);
        assert_eq!(ips[2], "127.0.0.3".parse::<IpAddr>().unwrap());
        let ips = parse_source_ips("127.0.0.10-127.0.0.12,127.0.0.1", false).unwrap().unwrap();
        assert_eq!(ips.len(), 4);
        assert!(parse_source_ips("10.0.0.1", false).is_err());
        // 300 addresses skip the .255/.0 host bytes.
        let many = source_ip_range(300);
        assert!(many.iter().all(|ip| matches!(ip, IpAddr::V4(v) if v.octets()[3] != 0 && v.octets()[3] != 255)));
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(auto_source_ips(lo, 1000, 20_000).is_empty());
        assert_eq!(auto_source_ips(lo, 100_000, 20_000).len(), 5);
        assert!(auto_source_ips("::1".parse().unwrap(), 100_000, 20_000).is_empty());
    }
}
