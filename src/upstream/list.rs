//! GOPROXY list syntax: `file:///dir`, `http(s)://host/path`, `off`,
//! separated by `,` (fall through on 404/410) or `|` (on any error).
//!
//! Owns parsing such a list into typed entries and the rule for which
//! entries private modules may use. It never builds fetchers (the chain in
//! this module's parent does) and never reads the environment.

use std::fmt;
use std::path::PathBuf;

/// How to fall through from one upstream to the next, as GOPROXY defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `,`: try the next entry only when this one answered 404 or 410.
    OnNotFound,
    /// `|`: try the next entry after any error.
    OnAnyError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamSpec {
    /// A directory in the GOPROXY file layout.
    File(PathBuf),
    /// `http://` or `https://` base URL, without a trailing slash.
    Http(String),
    /// `direct`: the module's own repository, through the `[[git]]` sources.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamEntry {
    pub spec: UpstreamSpec,
    /// How to continue after this entry fails.
    pub fallback: Fallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamList {
    pub entries: Vec<UpstreamEntry>,
}

/// Where an upstream list came from decides how strict we are with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamSource {
    /// Given explicitly (`--upstream`, `GOMODPROXY_UPSTREAM`): every entry must work.
    Flag,
    /// Inherited from `GOPROXY` or `go env GOPROXY`.
    Inherited,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ListError {
    EmptyUpstream(String),
    UnsupportedUpstream { entry: String, reason: &'static str },
    BadUpstream { entry: String, reason: &'static str },
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::EmptyUpstream(list) => write!(f, "upstream list {list:?} has no usable entry"),
            ListError::UnsupportedUpstream { entry, reason } => write!(f, "upstream {entry:?} is not supported: {reason}"),
            ListError::BadUpstream { entry, reason } => write!(f, "upstream {entry:?} is invalid: {reason}"),
        }
    }
}

impl std::error::Error for ListError {}

/// Warnings produced while parsing, for the caller to log.
pub type Warnings = Vec<String>;

impl UpstreamList {
    /// Parses a GOPROXY-style list: entries separated by `,` or `|`.
    pub fn parse(list: &str, source: UpstreamSource) -> Result<(UpstreamList, Warnings), ListError> {
        let mut entries = Vec::new();
        // Every entry is served now, inherited or given; warnings stay for entries to come.
        let _ = source;
        let warnings = Vec::new();
        let mut rest = list.trim();
        while !rest.is_empty() {
            let (raw, fallback, tail) = match rest.find([',', '|']) {
                Some(i) => {
                    let fb = if rest.as_bytes()[i] == b'|' { Fallback::OnAnyError } else { Fallback::OnNotFound };
                    (&rest[..i], fb, &rest[i + 1..])
                }
                None => (rest, Fallback::OnNotFound, ""),
            };
            rest = tail;
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            match parse_entry(raw) {
                Ok(Some(spec)) => entries.push(UpstreamEntry { spec, fallback }),
                // `off` ends the list: the go command stops there too.
                Ok(None) => break,
                Err(e) => return Err(e),
            }
        }
        if entries.is_empty() {
            return Err(ListError::EmptyUpstream(list.to_string()));
        }
        Ok((UpstreamList { entries }, warnings))
    }
}

impl UpstreamList {
    /// The `file://` and `direct` entries alone (with their fallbacks): the
    /// upstreams private modules may use when no `--private-upstream` is
    /// given (neither tells a third party of a path). `None` when there are none.
    pub fn local_only(&self) -> Option<UpstreamList> {
        let entries: Vec<UpstreamEntry> =
            self.entries.iter().filter(|e| matches!(e.spec, UpstreamSpec::File(_) | UpstreamSpec::Direct)).cloned().collect();
        (!entries.is_empty()).then_some(UpstreamList { entries })
    }
}

fn parse_entry(raw: &str) -> Result<Option<UpstreamSpec>, ListError> {
    let bad = |reason| ListError::BadUpstream { entry: raw.to_string(), reason };
    match raw {
        "off" => return Ok(None),
        "direct" => return Ok(Some(UpstreamSpec::Direct)),
        _ => {}
    }
    if let Some(path) = raw.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("a file:// upstream needs an absolute path (file:///dir)"));
        }
        return Ok(Some(UpstreamSpec::File(PathBuf::from(path))));
    }
    for scheme in ["http://", "https://"] {
        if let Some(after) = raw.strip_prefix(scheme) {
            let host_end = after.find('/').unwrap_or(after.len());
            if host_end == 0 {
                return Err(bad("missing host"));
            }
            if raw.contains(['?', '#']) {
                return Err(bad("an upstream URL cannot carry a query or fragment"));
            }
            // Credentials in the URL would be in every log line and error
            // message naming the upstream; the error itself must not echo them.
            if let Some(at) = after[..host_end].rfind('@') {
                return Err(ListError::BadUpstream {
                    entry: format!("{scheme}…@{}", &after[at + 1..]),
                    reason: "credentials in the URL are not accepted: put them in an --upstream-auth file",
                });
            }
            return Ok(Some(UpstreamSpec::Http(raw.trim_end_matches('/').to_string())));
        }
    }
    Err(bad("expected file://, http://, https://, direct or off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_separators_and_fallbacks() {
        let (l, w) = UpstreamList::parse("http://a.test|file:///srv/mods,http://b.test/x/", UpstreamSource::Flag).unwrap();
        assert!(w.is_empty());
        assert_eq!(l.entries.len(), 3);
        assert_eq!(l.entries[0].fallback, Fallback::OnAnyError);
        assert_eq!(l.entries[1].spec, UpstreamSpec::File("/srv/mods".into()));
        assert_eq!(l.entries[1].fallback, Fallback::OnNotFound);
        assert_eq!(l.entries[2].spec, UpstreamSpec::Http("http://b.test/x".into()));
    }

    #[test]
    fn credentials_in_an_upstream_url_are_refused_without_being_echoed() {
        let err = UpstreamList::parse("https://alice:s3cr3t@mirror.test/go", UpstreamSource::Flag).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--upstream-auth") && text.contains("mirror.test"), "{text}");
        assert!(!text.contains("s3cr3t") && !text.contains("alice"), "{text}");
    }

    #[test]
    fn off_ends_the_list() {
        let (l, _) = UpstreamList::parse("http://a.test,off,http://b.test", UpstreamSource::Flag).unwrap();
        assert_eq!(l.entries.len(), 1);
        assert!(UpstreamList::parse("off", UpstreamSource::Flag).is_err());
    }

    #[test]
    fn direct_is_an_entry_of_its_own() {
        let (l, w) = UpstreamList::parse("https://mirror.test,direct", UpstreamSource::Inherited).unwrap();
        assert_eq!(
            l.entries.iter().map(|e| e.spec.clone()).collect::<Vec<_>>(),
            [UpstreamSpec::Http("https://mirror.test".into()), UpstreamSpec::Direct]
        );
        assert!(w.is_empty());
        assert_eq!(l.local_only().unwrap().entries[0].spec, UpstreamSpec::Direct, "trusted with private modules");
    }

    #[test]
    fn private_modules_fall_back_to_local_trees_only() {
        let (l, _) = UpstreamList::parse("http://a.test|file:///srv/mods,https://b.test,file:///srv/more", UpstreamSource::Flag).unwrap();
        let local = l.local_only().unwrap();
        assert_eq!(local.entries.len(), 2);
        assert!(local.entries.iter().all(|e| matches!(e.spec, UpstreamSpec::File(_))));
        let (l, _) = UpstreamList::parse("http://a.test", UpstreamSource::Flag).unwrap();
        assert!(l.local_only().is_none());
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["ftp://x", "file://relative", "http://", "http://h/?q", "nonsense"] {
            assert!(UpstreamList::parse(bad, UpstreamSource::Flag).is_err(), "{bad}");
        }
    }
}
