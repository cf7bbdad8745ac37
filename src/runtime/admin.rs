//! The admin listener (`--admin-listen`, loopback only): `GET /metrics`,
//! `GET /healthz`, and `POST /purge?module=M[&version=V]`, which withdraws
//! what the store holds of a module version (or a whole module) for good,
//! on the module's owner core, while the server runs.
//!
//! Owns that small HTTP/1.1 surface: one request per connection, no bodies,
//! bounded heads and time. It runs on core 0 beside the proxy's own accept
//! loop and never shares the proxy's wire code: the hot path stays GET and
//! HEAD only. It decides nothing about what a purge withdraws (the owner's
//! shard does) and keeps no state.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use glommio::net::{TcpListener, TcpStream};

use super::mesh::Mesh;
use super::purge::check_target;
use crate::http::Shutdown;
use crate::metrics::Metrics;
use crate::resolve::{route, Shard};

/// Largest request head read; an admin request is a line and a few headers.
const MAX_HEAD: usize = 8 << 10;
/// Longest a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What answers admin requests on core 0.
pub struct Admin {
    pub shard: Rc<Shard>,
    pub mesh: Rc<Mesh>,
    pub metrics: &'static Metrics,
    pub shutdown: Shutdown,
    /// With `--auth`, a POST needs an `admin = true` client's token.
    pub edge: crate::resolve::live::View<crate::edge::EdgeSettings>,
}

/// One answer: status, content type, body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        let mut body = body.into();
        body.push('\n');
        Answer { status, content_type: "text/plain; charset=utf-8", body }
    }
}

impl Admin {
    /// Accepts admin connections until the server drains.
    pub async fn serve(self: Rc<Self>, listener: TcpListener) {
        while !self.shutdown.is_draining() {
            match listener.accept().await {
                Ok(stream) => {
                    let admin = self.clone();
                    glommio::spawn_local(async move { admin.connection(stream).await }).detach();
                }
                Err(e) => {
                    if self.shutdown.is_draining() {
                        break;
                    }
                    log::warn!("admin listener: accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn connection(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        let answer = loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&head) {
                Ok(httparse::Status::Complete(_)) => break self.answer(&req).await,
                Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
                Ok(httparse::Status::Partial) => break Answer::text(431, "request head too large"),
                Err(e) => break Answer::text(400, format!("bad request: {e}")),
            }
        };
        let status_line = format!("{} {}", answer.status, crate::http::response::reason(answer.status));
        let allow = if answer.status == 405 { "Allow: GET, POST\r\n" } else { "" };
        let out = format!(
            "HTTP/1.1 {status_line}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}",
            answer.content_type,
            answer.body.len(),
            answer.body
        );
        let _ = stream.write_all(out.as_bytes()).await;
        let _ = stream.close().await;
    }

    async fn answer(&self, req: &httparse::Request<'_, '_>) -> Answer {
        let (method, target) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
        let has_body = req.headers.iter().any(|h| {
            (h.name.eq_ignore_ascii_case("content-length") && std::str::from_utf8(h.value).map(str::trim) != Ok("0"))
                || h.name.eq_ignore_ascii_case("transfer-encoding")
        });
        if has_body {
            return Answer::text(413, "admin requests take no body: pass parameters in the query");
        }
        // Only loopback names: a page in a browser on this host must not
        // reach the listener through a name it controls (DNS rebinding).
        let host = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("host")).and_then(|h| std::str::from_utf8(h.value).ok());
        if !host.is_some_and(is_loopback_host) {
            return Answer::text(
                403,
                "the admin listener answers only requests addressed to a loopback name (Host: 127.0.0.1:PORT, localhost, [::1])",
            );
        }
        // A browser's cross-site form can POST, but cannot add a header: a
        // purge must say it is one.
        if method == "POST" && !req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("x-gomodproxy-admin")) {
            return Answer::text(403, "admin POSTs need the header `X-Gomodproxy-Admin: 1` (curl -H 'X-Gomodproxy-Admin: 1' -X POST ...)");
        }
        if method == "POST" {
            if let Some(access) = self.edge.with(|e| e.access.clone()) {
                let authorization = req.headers.iter().find(|h| h.name.eq_ignore_ascii_case("authorization")).map(|h| h.value);
                match access.identify(authorization) {
                    Ok(Some(client)) if client.admin => {}
                    Ok(Some(_)) => return Answer::text(403, "this token is not an admin's (admin = true in --auth)"),
                    Ok(None) | Err(()) => {
                        return Answer::text(401, "admin POSTs need an admin client's token (Authorization: Bearer TOKEN)")
                    }
                }
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        match (method, path) {
            ("GET", "/healthz") => Answer::text(200, "ok"),
            ("GET", "/metrics") => {
                Answer { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body: self.metrics.render() }
            }
            ("POST", "/purge") => self.purge(query).await,
            (_, "/healthz" | "/metrics" | "/purge") => Answer::text(405, format!("{method} {path}: not allowed")),
            _ => Answer::text(404, format!("{path}: not an admin endpoint (GET /metrics, GET /healthz, POST /purge?module=M[&version=V])")),
        }
    }

    async fn purge(&self, query: &str) -> Answer {
        let (mut module, mut version) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(value) = percent_decode(value) else { return Answer::text(400, format!("{name}: bad percent-encoding")) };
            match name {
                "module" => module = Some(value),
                "version" => version = Some(value),
                other => return Answer::text(400, format!("{other}: unknown parameter (module, version)")),
            }
        }
        let Some(module) = module else { return Answer::text(400, "POST /purge?module=M[&version=V]: module is missing") };
        if let Err(e) = check_target(&module, version.as_deref()) {
            return Answer::text(400, e.to_string());
        }
        let owner = route::owner_of(&module, self.shard.cores());
        match self.mesh.purge(&self.shard, owner, &module, version.as_deref()).await {
            Ok(outcome) if outcome.withdrawn.is_empty() && !matches!(outcome.shared, Some(Err(_))) => {
                let what = version.map_or(module.clone(), |v| format!("{module}@{v}"));
                let shared = match outcome.shared {
                    Some(Ok(n)) => format!(" (the shared store accepted {n} delete(s))"),
                    _ => String::new(),
                };
                Answer::text(404, format!("nothing stored for {what}{shared}"))
            }
            Ok(outcome) => {
                let records: Vec<serde_json::Value> =
                    outcome.withdrawn.iter().map(|(m, v, k)| serde_json::json!({ "module": m, "version": v, "kind": k.label() })).collect();
                let mut body = serde_json::json!({ "purged": records });
                // The object store failing is a gateway's failure: 502, what
                // this node withdrew listed all the same (a retry redoes only the rest).
                let status = match outcome.shared {
                    None => 200,
                    Some(Ok(n)) => {
                        body["shared_deletes"] = n.into();
                        200
                    }
                    Some(Err(why)) => {
                        body["shared_error"] = why.into();
                        502
                    }
                };
                Answer { status, content_type: "application/json", body: body.to_string() + "\n" }
            }
            Err(e) => Answer::text(500, format!("purge failed: {e}")),
        }
    }
}

/// `127.x.x.x[:port]`, `[::1][:port]` or `localhost[:port]`.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `%XX`-decoding of a query value (`+` stays `+`: versions hold it).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::{is_loopback_host, percent_decode};

    #[test]
    fn only_loopback_host_names_are_admitted() {
        for ok in ["127.0.0.1:8081", "127.0.0.1", "localhost:8081", "LOCALHOST", "[::1]:8081", "[::1]", "127.1.2.3:1"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["evil.example:8081", "10.0.0.1:8081", "[2001:db8::1]:80", "", "127.0.0.1.evil.example"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn query_values_are_percent_decoded_and_plus_is_kept() {
        assert_eq!(percent_decode("example.com%2FA").as_deref(), Some("example.com/A"));
        assert_eq!(percent_decode("v2.0.0+incompatible").as_deref(), Some("v2.0.0+incompatible"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
