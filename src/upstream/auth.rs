//! Credentials and proxies for `http(s)` upstreams.
//!
//! Owns the `--upstream-auth` file format and the choice of an outgoing
//! proxy from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`. Credentials are kept
//! only here and in the `Authorization` header they become: they must never
//! appear in a `Debug` or `Display` text, a log line, an error message or a
//! fetcher's name.
//!
//! The auth file has one rule a line; blank lines and `#` lines are ignored:
//!
//! ```text
//! https://goproxy.corp.example           bearer TOKEN
//! https://artifacts.corp.example/api/go  basic  USER PASSWORD
//! ```
//!
//! A rule applies to an upstream whose URL is its prefix exactly or
//! continues it with `/` (so `https://a.example` never matches
//! `https://a.example.evil`); the longest matching prefix wins.

use std::fmt;

/// Rules from an `--upstream-auth` file: URL prefix → `Authorization` value.
#[derive(Clone, Default)]
pub struct AuthTable {
    rules: Vec<(String, String)>,
}

impl fmt::Debug for AuthTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Prefixes only: the values are secrets.
        f.debug_list().entries(self.rules.iter().map(|(p, _)| p)).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub line: usize,
    pub reason: &'static str,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the line itself: it holds a secret.
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for AuthError {}

/// A header value must be visible ASCII (no CR/LF smuggling a header in).
fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

impl AuthTable {
    pub fn parse(text: &str) -> Result<AuthTable, AuthError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |reason| Err(AuthError { line: line_no, reason });
            let words: Vec<&str> = line.split_whitespace().collect();
            let prefix = match words.first() {
                None => continue,
                Some(w) if w.starts_with('#') => continue,
                Some(w) => w.trim_end_matches('/'),
            };
            if !(prefix.starts_with("https://") || prefix.starts_with("http://")) || prefix.contains('@') {
                return err("the prefix must be an http:// or https:// URL without user information");
            }
            let value = match words[1..] {
                ["bearer", token] if is_header_safe(token) => format!("Bearer {token}"),
                ["basic", user, password] if is_header_safe(user) && is_header_safe(password) && !user.contains(':') => {
                    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
                }
                _ => return err("expected `PREFIX bearer TOKEN` or `PREFIX basic USER PASSWORD` (visible ASCII, no ':' in USER)"),
            };
            rules.push((prefix.to_string(), value));
        }
        Ok(AuthTable { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The `Authorization` value for an upstream base URL, if a rule matches.
    pub fn for_base(&self, base: &str) -> Option<&str> {
        self.rules
            .iter()
            .filter(|(p, _)| base == p || base.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/')))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, v)| v.as_str())
    }
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(A[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The host of an `http(s)://` URL, without port, brackets or user information.
fn host_of(url: &str) -> &str {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = after.split('/').next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Whether `host` is exempt from proxying by a `NO_PROXY` list: `*`, an
/// exact host or IP, or a domain (with or without a leading dot) that the
/// host is, or is below. Ports in entries are ignored.
fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.strip_prefix('[').map_or(entry, |e| e.split(']').next().unwrap_or(""));
        // An entry with a port (`host:3128`), but not a bare IPv6 address.
        let entry = match entry.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => entry,
        };
        let domain = entry.trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
        !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
    })
}

/// The proxy URL an upstream's requests go through, from the environment
/// as `var` reads it: `HTTPS_PROXY` for `https://` upstreams, `HTTP_PROXY`
/// for `http://` ones (either spelling case), unless `NO_PROXY` exempts
/// the host. Loopback hosts are never proxied.
pub fn proxy_for(base: &str, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let get = |name: &str| var(name).or_else(|| var(&name.to_ascii_lowercase())).filter(|v| !v.trim().is_empty());
    let proxy = if base.starts_with("https://") { get("HTTPS_PROXY") } else { get("HTTP_PROXY") }?;
    let host = host_of(base);
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback || get("NO_PROXY").is_some_and(|np| no_proxy_matches(&np, host)) {
        return None;
    }
    Some(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_match_by_prefix_and_never_show_their_secrets() {
        let t = AuthTable::parse("# corporate mirrors\n\nhttps://a.example bearer s3cr3t\nhttps://a.example/team/ basic alice pa55word\n")
            .unwrap();
        assert_eq!(t.for_base("https://a.example"), Some("Bearer s3cr3t"));
        assert_eq!(t.for_base("https://a.example/go"), Some("Bearer s3cr3t"));
        assert_eq!(t.for_base("https://a.example/team/go"), Some("Basic YWxpY2U6cGE1NXdvcmQ="));
        assert_eq!(t.for_base("https://a.example.evil"), None);
        assert_eq!(t.for_base("http://a.example"), None);
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("pa55word") && !shown.contains("YWxp"), "{shown}");
    }

    #[test]
    fn bad_rules_are_refused_without_echoing_them() {
        for bad in [
            "https://a.example bearer",
            "https://a.example token x",
            "a.example bearer x",
            "https://u:p@a.example bearer x",
            "https://a.example basic a:b c",
        ] {
            let e = AuthTable::parse(bad).unwrap_err();
            assert_eq!(e.line, 1, "{bad}");
            assert!(!e.to_string().contains("a.example"), "{e}");
        }
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn proxies_come_from_the_environment_unless_no_proxy_exempts_the_host() {
        let env =
            |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        let e = env(&[("HTTPS_PROXY", "http://proxy.corp.example:3128"), ("no_proxy", "internal.example, .svc.example,10.1.2.3:80")]);
        assert_eq!(proxy_for("https://mirror.example/go", e).as_deref(), Some("http://proxy.corp.example:3128"));
        assert_eq!(proxy_for("http://mirror.example", e), None, "http upstreams use HTTP_PROXY");
        assert_eq!(proxy_for("https://internal.example", e), None);
        assert_eq!(proxy_for("https://a.internal.example:8443/x", e), None);
        assert_eq!(proxy_for("https://b.svc.example", e), None);
        assert_eq!(proxy_for("https://10.1.2.3", e), None);
        assert_eq!(proxy_for("https://127.0.0.1:9", e), None, "loopback is never proxied");
        assert_eq!(proxy_for("https://xinternal.example", e).as_deref(), Some("http://proxy.corp.example:3128"));
        let all = env(&[("https_proxy", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(proxy_for("https://mirror.example", all), None);
    }
}
