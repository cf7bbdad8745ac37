//! Private module paths (`--private`, GOPRIVATE syntax) and the only
//! upstreams allowed to hear of them.
//!
//! [`PrivacyGuard`] is the [`Fetcher`] the runtime holds: every upstream
//! request of every kind (fills, `@latest` and its `list` fallback, query
//! pass-through, checksum-database lookups) goes through it, so no code
//! path can get around the rule it owns:
//!
//! * a module path matching `--private` is fetched only from the private
//!   chain: the `--private-upstream` list when one is given, else the
//!   `file://` entries of `--upstream` (local trees say nothing to anyone);
//!   it is never sent to an `http(s)` entry of `--upstream`;
//! * a private module is never looked up in a checksum database, by any
//!   upstream (that is what GONOSUMDB means to the go command);
//! * public modules never go to the private chain, so a private upstream
//!   does not see (or serve) the public traffic.
//!
//! It must never decide by anything but the decoded module path, and never
//! forward a request it could not decode.

use std::borrow::Cow;

use super::{Fetch, FetchError, Fetcher, Kind, UpstreamChain};
use crate::gomod::module;
use crate::gomod::pattern::PrefixPatterns;

pub struct PrivacyGuard {
    patterns: PrefixPatterns,
    public: UpstreamChain,
    /// `None`: no upstream is trusted with private modules.
    private: Option<UpstreamChain>,
}

/// Whose business a request is.
enum Subject<'a> {
    Public,
    Private(Cow<'a, str>),
    /// A lookup whose module could not be decoded: refused, never forwarded.
    Undecodable,
}

impl PrivacyGuard {
    pub fn new(patterns: PrefixPatterns, public: UpstreamChain, private: Option<UpstreamChain>) -> PrivacyGuard {
        PrivacyGuard { patterns, public, private }
    }

    fn subject<'a>(&self, req: &Fetch<'a>) -> Subject<'a> {
        if self.patterns.is_empty() {
            return Subject::Public;
        }
        let module: Cow<'a, str> = match req.kind {
            // The lookup path carries the module, escaped: `lookup/<module>@<version>`.
            Kind::SumLookup => {
                let escaped = req.version.strip_prefix("lookup/").and_then(|mv| mv.split_once('@')).map(|(m, _)| m);
                match escaped.map(module::unescape_path) {
                    Some(Ok(m)) => m,
                    _ => return Subject::Undecodable,
                }
            }
            // The rest of the database (tree heads, tiles) names no module.
            Kind::SumSupported | Kind::SumLatest | Kind::SumTile | Kind::SumPartialTile => return Subject::Public,
            Kind::List | Kind::Latest | Kind::Info | Kind::Query | Kind::Mod | Kind::Zip => Cow::Borrowed(req.module),
        };
        if self.patterns.matches(&module) {
            Subject::Private(module)
        } else {
            Subject::Public
        }
    }
}

impl Fetcher for PrivacyGuard {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        self.fetch_streaming(req, &crate::artifact::fill::Progress::default()).map(Vec::from)
    }

    fn fetch_streaming(&self, req: &Fetch<'_>, progress: &crate::artifact::fill::Progress) -> Result<bytes::Bytes, FetchError> {
        match self.subject(req) {
            Subject::Public => self.public.fetch_streaming(req, progress),
            Subject::Undecodable => {
                Err(FetchError::NotFound { gone: false, message: "not found: malformed checksum database lookup".into() })
            }
            // 404, as for a module the database does not know: the go
            // command's user learns to list it in GONOSUMDB (or GOPRIVATE).
            Subject::Private(module) if req.kind.is_sumdb() => Err(FetchError::NotFound {
                gone: false,
                message: format!(
                    "not found: {module} is a private module and is never looked up in a checksum database; set GONOSUMDB or GOPRIVATE"
                ),
            }),
            Subject::Private(module) => match &self.private {
                Some(chain) => chain.fetch_streaming(req, progress),
                None => Err(FetchError::NotFound {
                    gone: false,
                    message: format!("not found: {module}: private module; no private upstream configured"),
                }),
            },
        }
    }

    fn name(&self) -> &str {
        self.public.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::list::Fallback;
    use std::sync::{Arc, Mutex};

    /// Records every request it is asked, answers a fixed body.
    struct Spy(Arc<Mutex<Vec<String>>>, &'static [u8]);
    impl Fetcher for Spy {
        fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
            self.0.lock().unwrap().push(req.protocol_path().unwrap_or_default());
            Ok(self.1.to_vec())
        }
        fn name(&self) -> &str {
            "spy"
        }
    }

    type Log = Arc<Mutex<Vec<String>>>;

    fn guard(patterns: &str, with_private: bool) -> (PrivacyGuard, Log, Log) {
        let (pubs, privs) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let public = UpstreamChain::new(vec![(Box::new(Spy(pubs.clone(), b"v1.0.0\n")), Fallback::OnNotFound)]);
        let private = with_private
            .then(|| UpstreamChain::new(vec![(Box::new(Spy(privs.clone(), b"v9.0.0\n")) as Box<dyn Fetcher>, Fallback::OnNotFound)]));
        (PrivacyGuard::new(PrefixPatterns::parse(patterns).unwrap(), public, private), pubs, privs)
    }

    fn list(module: &str) -> Fetch<'_> {
        Fetch { module, version: "", kind: Kind::List }
    }

    #[test]
    fn private_modules_go_only_to_the_private_chain() {
        let (g, pubs, privs) = guard("corp.example", true);
        assert_eq!(g.fetch(&list("corp.example/secret")).unwrap(), b"v9.0.0\n");
        assert_eq!(g.fetch(&list("public.example/x")).unwrap(), b"v1.0.0\n");
        assert_eq!(*pubs.lock().unwrap(), ["public.example/x/@v/list"]);
        assert_eq!(*privs.lock().unwrap(), ["corp.example/secret/@v/list"]);
    }

    #[test]
    fn without_a_private_chain_private_modules_are_not_found() {
        let (g, pubs, _) = guard("corp.example", false);
        let err = g.fetch(&list("corp.example/secret")).unwrap_err();
        assert!(
            matches!(&err, FetchError::NotFound { message, .. } if message.contains("private module; no private upstream configured")),
            "{err:?}"
        );
        assert!(pubs.lock().unwrap().is_empty());
    }

    #[test]
    fn private_modules_are_never_looked_up_in_a_checksum_database() {
        let (g, pubs, privs) = guard("corp.example/*", true);
        for version in
            ["lookup/corp.example/!secret@v1.0.0", "lookup/corp.example/secret@v1.0.0", "lookup/corp.example/%@v1.0.0", "lookup/nothing"]
        {
            let req = Fetch { module: "sumdb/sum.example", version, kind: Kind::SumLookup };
            assert!(matches!(g.fetch(&req), Err(FetchError::NotFound { .. })), "{version}");
        }
        // Public lookups and tiles are forwarded (the spy's body is no valid
        // answer for them; what matters is who was asked).
        let public = Fetch { module: "sumdb/sum.example", version: "lookup/public.example/x@v1.0.0", kind: Kind::SumLookup };
        let _ = g.fetch(&public);
        let tile = Fetch { module: "sumdb/sum.example", version: "tile/8/0/000", kind: Kind::SumTile };
        let _ = g.fetch(&tile);
        assert_eq!(*pubs.lock().unwrap(), ["sumdb/sum.example/lookup/public.example/x@v1.0.0", "sumdb/sum.example/tile/8/0/000"]);
        assert!(privs.lock().unwrap().is_empty());
    }
}
