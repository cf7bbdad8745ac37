//! The edge: the layer between the wire and the protocol that decides who
//! is asking and whether they may. gomodproxy sits behind an L4 balancer
//! with nothing in front of it, so the client's address comes from the
//! balancer's PROXY header ([`proxy_protocol`], only from the peers
//! `--proxy-protocol-from` names) and every request's credentials are
//! checked against `--auth` ([`access`]) before the protocol sees it.
//!
//! Owns [`Incoming`] (what the wire knows of a request), the [`Service`]
//! the wire calls, and [`Edge`], which answers 401/403 itself and hands
//! the rest to the protocol's [`Handler`], marking answers that depend on
//! credentials private. Nothing below it knows who asked; it never parses
//! HTTP framing and never touches the store or an upstream.

pub mod access;
pub mod audit;
pub mod proxy_protocol;
pub mod rate;
pub mod tls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::artifact::Body;
use crate::goproxy::path::{self, Endpoint, SumDbRequest};
use crate::goproxy::reply;
use crate::goproxy::{Admission, Handler, Reply};
use crate::resolve::live::View;
use access::{Access, Verdict};

/// What the wire knows of one request.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// `GET` or `HEAD`.
    pub method: &'static str,
    pub target: &'a str,
    pub if_none_match: Option<&'a [u8]>,
    /// The `Authorization` header's value; never logged.
    pub authorization: Option<&'a [u8]>,
    /// The client: the PROXY header's source when the balancer sent one,
    /// else the connection's peer.
    pub client: SocketAddr,
}

/// What the wire must do about a PROXY header on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// It must come first; without it (or malformed) the connection is closed unanswered.
    Required,
    /// It must not come: one from this peer closes the connection unanswered.
    Refused,
    /// `--proxy-protocol off`: nobody sends one (a header is a malformed request).
    Off,
}

/// What the wire calls for every connection and request.
pub trait Service {
    fn proxy_header(&self, peer: IpAddr) -> ProxyHeader;
    fn serve(&self, req: &Incoming<'_>) -> impl Future<Output = Reply>;
    /// After the answer to `req` went out (or failed to): `bytes` of body
    /// sent, `took` since its head was parsed.
    fn served(&self, req: &Incoming<'_>, reply: &Reply, bytes: u64, took: std::time::Duration);
}

/// A network and prefix length (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(|| format!("{s:?}: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (a, b, bits) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)) << 96, u128::from(u32::from(i)) << 96, self.prefix),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), self.prefix),
            _ => return false,
        };
        let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits as u32) };
        a & mask == b & mask
    }
}

/// The edge's configuration, as the last reload left it.
#[derive(Debug, Default, Clone)]
pub struct EdgeSettings {
    /// `--proxy-protocol on`: the peers that must send a PROXY header
    /// (`--proxy-protocol-from`); `None`: off, nobody may.
    pub proxy_from: Option<Vec<Cidr>>,
    /// `--auth` and `--anonymous`; `None`: everyone reads everything.
    pub access: Option<Arc<Access>>,
}

/// The edge in front of the protocol handler `H`.
pub struct Edge<H> {
    handler: H,
    settings: View<EdgeSettings>,
    /// `--audit-log`; fixed for the life of the process (reopened on SIGHUP).
    audit: Option<Arc<audit::AuditLog>>,
    /// `--rate-limit`, `--miss-rate-limit`: every core's shared buckets.
    rates: Arc<rate::RateLimits>,
}

impl<H: Handler> Edge<H> {
    pub fn new(handler: H, settings: View<EdgeSettings>, audit: Option<Arc<audit::AuditLog>>, rates: Arc<rate::RateLimits>) -> Edge<H> {
        Edge { handler, settings, audit, rates }
    }
}

/// The miss limit, as the protocol asks it.
struct MissGate<'a> {
    buckets: Option<&'a rate::Buckets>,
    client: IpAddr,
    name: Option<&'a str>,
}

impl Admission for MissGate<'_> {
    fn admit_miss(&self) -> Result<(), std::time::Duration> {
        match self.buckets {
            Some(b) => rate::take_both(b, self.client, self.name),
            None => Ok(()),
        }
    }
}

/// What a request is about: the module (a checksum-database lookup names
/// the module it looks up), the version or query, the kind, and whether it
/// is the health check. Tiles, tree heads and metrics name no module; a bad
/// path is the protocol's to answer (400/404), without any module's secrets.
#[derive(Debug, Default, PartialEq, Eq)]
struct Subject {
    module: Option<String>,
    version: Option<String>,
    kind: Option<&'static str>,
    health: bool,
}

fn subject(target: &str) -> Subject {
    let of = |module: std::borrow::Cow<'_, str>, version: Option<std::borrow::Cow<'_, str>>, kind| Subject {
        module: Some(module.into_owned()),
        version: version.map(|v| v.into_owned()),
        kind: Some(kind),
        health: false,
    };
    match path::parse(target) {
        Ok(Endpoint::Artifact { module, version, kind }) => of(module, Some(version), kind.label()),
        Ok(Endpoint::Versions { module, kind }) => of(module, None, kind.label()),
        Ok(Endpoint::Query { module, query }) => of(module, Some(query), "query"),
        Ok(Endpoint::SumDb { req: SumDbRequest::Lookup { module, version }, .. }) => of(module, Some(version), "checksum database lookup"),
        Ok(Endpoint::SumDb { .. }) => Subject { kind: Some("checksum database answer"), ..Subject::default() },
        Ok(Endpoint::Health) => Subject { health: true, ..Subject::default() },
        _ => Subject::default(),
    }
}

fn unauthorized(why: &'static str) -> Reply {
    let mut r = Reply::text(401, Body::from_static(why));
    r.challenge = true;
    r
}

impl<H: Handler> Service for Edge<H> {
    fn proxy_header(&self, peer: IpAddr) -> ProxyHeader {
        self.settings.with(|s| match &s.proxy_from {
            None => ProxyHeader::Off,
            Some(cidrs) if cidrs.iter().any(|c| c.contains(peer)) => ProxyHeader::Required,
            Some(_) => ProxyHeader::Refused,
        })
    }

    async fn serve(&self, req: &Incoming<'_>) -> Reply {
        let (mut reply, client_name) = self.answer(req).await;
        reply.client_name = client_name;
        reply
    }

    fn served(&self, req: &Incoming<'_>, reply: &Reply, bytes: u64, took: std::time::Duration) {
        let Some(log) = &self.audit else { return };
        let Subject { module, version, kind, .. } = subject(req.target);
        log.record(&audit::Entry {
            client: req.client,
            client_name: reply.client_name.as_deref(),
            method: req.method,
            path: req.target,
            module: module.as_deref(),
            version: version.as_deref(),
            kind,
            status: reply.status,
            bytes,
            duration: took,
            cache: reply.cache.label(),
            upstream: reply.source.as_deref(),
        });
    }
}

impl<H: Handler> Edge<H> {
    /// The answer to `req`, and the name of the client its token names, if any.
    async fn answer(&self, req: &Incoming<'_>) -> (Reply, Option<Box<str>>) {
        let access = self.settings.with(|s| s.access.clone());
        let (module, health) = match &access {
            Some(_) => {
                let s = subject(req.target);
                (s.module, s.health)
            }
            None => (None, req.target == "/healthz"),
        };
        let identified = match &access {
            Some(a) => a.identify(req.authorization),
            None => Ok(None),
        };
        let name = identified.ok().flatten().map(|c| c.name.clone());
        // The balancer's health checks are never limited.
        if let (Some(all), false) = (&self.rates.all, health) {
            if let Err(wait) = rate::take_both(all, req.client.ip(), name.as_deref()) {
                return (reply::too_many(wait), name);
            }
        }
        let gate = MissGate { buckets: self.rates.misses.as_ref(), client: req.client.ip(), name: name.as_deref() };
        let Some(access) = access.as_ref().filter(|_| !health) else {
            let reply = self.handler.handle_admitted(req.target, req.if_none_match, &gate).await;
            return (reply, name);
        };
        let Ok(client) = identified else {
            return (unauthorized("unauthorized: the token is not valid\n"), None);
        };
        let reply = match access.decide(client, module.as_deref()) {
            Verdict::Allowed { private, .. } => {
                let mut reply = self.handler.handle_admitted(req.target, req.if_none_match, &gate).await;
                reply.private |= private;
                reply
            }
            Verdict::NeedCredentials => unauthorized("unauthorized: this module needs a token (HTTP Basic from .netrc, or Bearer)\n"),
            Verdict::Forbidden { .. } => Reply::text(403, Body::from_static("forbidden: this token may not read this module\n")),
        };
        (reply, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_what_they_should() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.9.9".parse().unwrap()), "IPv4-mapped");
        assert!(Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32").unwrap().contains("2001:db8:1::1".parse().unwrap()));
        assert!(!Cidr::parse("2001:db8::/32").unwrap().contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_name_their_module() {
        let module = |t: &str| subject(t).module;
        assert_eq!(module("/corp.example.com/a/@v/list").as_deref(), Some("corp.example.com/a"));
        assert_eq!(module("/corp.example.com/!a/@v/v1.0.0.zip").as_deref(), Some("corp.example.com/A"));
        assert_eq!(module("/corp.example.com/a/@v/main.info").as_deref(), Some("corp.example.com/a"));
        let lookup = subject("/sumdb/sum.example/lookup/corp.example.com/a@v1.0.0");
        assert_eq!((lookup.module.as_deref(), lookup.version.as_deref()), (Some("corp.example.com/a"), Some("v1.0.0")));
        assert_eq!(subject("/healthz"), Subject { health: true, ..Subject::default() });
        assert_eq!(subject("/sumdb/sum.example/latest"), Subject { kind: Some("checksum database answer"), ..Subject::default() });
    }
}
