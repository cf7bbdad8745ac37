//! `http://` and `https://` upstreams (another GOPROXY server), through a
//! pooled, keep-alive blocking client. TLS uses rustls with the system's
//! trust store.

use std::io::Read;

use super::{Fetch, FetchError, FetchOptions, Fetcher};

pub struct HttpFetcher {
    base: String,
    agent: ureq::Agent,
}

impl HttpFetcher {
    pub fn new(base: String, opts: FetchOptions) -> HttpFetcher {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(opts.timeout.min(std::time::Duration::from_secs(10)))
            .timeout(opts.timeout)
            .redirects(3)
            .user_agent(concat!("gomodproxy/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpFetcher { base, agent }
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}/{}", self.base, req.protocol_path()?);
        let cap = req.what.size_cap();
        let unavailable = |message: String| FetchError::Unavailable { upstream: self.base.clone(), message };
        let resp = match self.agent.get(&url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code @ (404 | 410), r)) => {
                let mut msg = String::new();
                // The upstream's reason is shown to the go command's user; keep it short and printable.
                let _ = r.into_reader().take(1024).read_to_string(&mut msg);
                let msg: String = msg.chars().filter(|c| !c.is_control() || *c == '\n').collect();
                let msg = msg.trim();
                let message = if msg.is_empty() { format!("not found: {}", req.protocol_path().unwrap_or_default()) } else { msg.to_string() };
                return Err(FetchError::NotFound { gone: code == 410, message });
            }
            Err(ureq::Error::Status(code, _)) => return Err(unavailable(format!("HTTP status {code}"))),
            Err(ureq::Error::Transport(t)) => {
                let text = t.to_string();
                if text.contains("timed out") || text.contains("Timeout") {
                    return Err(FetchError::Timeout { upstream: self.base.clone() });
                }
                return Err(unavailable(text));
            }
        };
        if let Some(len) = resp.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok()) {
            if len > cap {
                return Err(FetchError::TooLarge { upstream: self.base.clone(), limit: cap });
            }
        }
        let mut body = Vec::new();
        resp.into_reader().take(cap + 1).read_to_end(&mut body).map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut { FetchError::Timeout { upstream: self.base.clone() } } else { unavailable(format!("reading body: {e}")) }
        })?;
        if body.len() as u64 > cap {
            return Err(FetchError::TooLarge { upstream: self.base.clone(), limit: cap });
        }
        Ok(body)
    }

    fn name(&self) -> &str {
        &self.base
    }
}
