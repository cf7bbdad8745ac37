//! Who may read what (`--auth FILE`, `--anonymous`): named clients, each
//! with a token kept only as its SHA-256, and the module-path patterns
//! (GOPRIVATE syntax) each may read beyond public modules.
//!
//! A module is private when it matches `--private` or any client's
//! `allow` patterns; the rest is public. Tokens arrive the ways the go
//! command can send them: HTTP Basic from `.netrc` (any user name, the
//! token as the password) or `Authorization: Bearer` (a `GOAUTH` command).
//! Owns the file's format, token checks (constant-time) and the verdict;
//! it never sees a socket, never logs a token, and never touches what is
//! served.

use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::gomod::pattern::PrefixPatterns;

/// What a caller without a token may read (`--anonymous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// Public modules (the default).
    Public,
    /// Nothing: every request needs a valid token.
    None,
}

/// One named client of the auth file.
#[derive(Debug)]
pub struct Client {
    pub name: Box<str>,
    token_sha256: [u8; 32],
    allow: PrefixPatterns,
    pub admin: bool,
}

/// The loaded `--auth` file and `--anonymous`.
#[derive(Debug)]
pub struct Access {
    clients: Vec<Client>,
    /// `--private` and every client's `allow`: what needs a token.
    private: Vec<PrefixPatterns>,
    anonymous: Anonymous,
}

/// What a request may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Served. `private`: the answer depends on the credentials (a private
    /// module), so shared caches must not keep it.
    Allowed { client: Option<&'a Client>, private: bool },
    /// 401 with a challenge: no credentials, and they are needed. (Credentials
    /// that match no client never reach a verdict: [`Access::identify`] refuses them.)
    NeedCredentials,
    /// 403: a valid client whose patterns do not cover the module.
    Forbidden { client: &'a Client },
}

impl PartialEq for Client {
    fn eq(&self, other: &Client) -> bool {
        self.name == other.name
    }
}
impl Eq for Client {}

#[derive(Debug)]
pub enum AccessError {
    Read(std::io::Error),
    Parse(String),
    Client { name: String, reason: String },
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::Read(e) => write!(f, "reading it: {e}"),
            AccessError::Parse(e) => write!(f, "{e}"),
            AccessError::Client { name, reason } => write!(f, "client {name:?}: {reason}"),
        }
    }
}

impl std::error::Error for AccessError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    client: Vec<ClientEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    name: String,
    token_sha256: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    admin: bool,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// Equal without an early exit: the time taken says nothing of where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Access {
    /// Reads `path`; `private` is `--private`.
    pub fn load(path: &Path, private: &PrefixPatterns, anonymous: Anonymous) -> Result<Access, AccessError> {
        let text = std::fs::read_to_string(path).map_err(AccessError::Read)?;
        Access::parse(&text, private, anonymous)
    }

    pub fn parse(text: &str, private: &PrefixPatterns, anonymous: Anonymous) -> Result<Access, AccessError> {
        let file: AuthFile = toml::from_str(text).map_err(|e| AccessError::Parse(e.to_string()))?;
        let mut clients = Vec::with_capacity(file.client.len());
        let mut patterns = vec![private.clone()];
        for c in file.client {
            let bad = |reason: &str| AccessError::Client { name: c.name.clone(), reason: reason.into() };
            if c.name.is_empty() || c.name.chars().any(|ch| ch.is_control()) {
                return Err(bad("a name must be non-empty printable text"));
            }
            if clients.iter().any(|k: &Client| *k.name == *c.name) {
                return Err(bad("named twice"));
            }
            let token_sha256 =
                hex32(&c.token_sha256).ok_or_else(|| bad("token_sha256 must be 64 hex digits (the SHA-256 of the token)"))?;
            let allow = PrefixPatterns::parse(&c.allow.join(",")).map_err(|e| bad(&format!("allow: {e}")))?;
            patterns.push(allow.clone());
            clients.push(Client { name: c.name.into(), token_sha256, allow, admin: c.admin });
        }
        Ok(Access { clients, private: patterns, anonymous })
    }

    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The client an `Authorization` value names: `Ok(None)` without one,
    /// `Err(())` for one that names no client (or is not Basic/Bearer).
    #[allow(clippy::result_unit_err)]
    pub fn identify(&self, authorization: Option<&[u8]>) -> Result<Option<&Client>, ()> {
        let Some(value) = authorization else { return Ok(None) };
        let value = std::str::from_utf8(value).map_err(|_| ())?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or(())?;
        let rest = rest.trim();
        let token: Vec<u8> = if scheme.eq_ignore_ascii_case("bearer") {
            rest.as_bytes().to_vec()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| ())?;
            // Any user name; the token is the password.
            let colon = decoded.iter().position(|&b| b == b':').ok_or(())?;
            decoded[colon + 1..].to_vec()
        } else {
            return Err(());
        };
        if token.is_empty() {
            return Err(());
        }
        let digest: [u8; 32] = Sha256::digest(&token).into();
        // Every client is compared, whichever matches.
        let mut found = None;
        for c in &self.clients {
            if same_digest(&digest, &c.token_sha256) && found.is_none() {
                found = Some(c);
            }
        }
        found.map(Some).ok_or(())
    }

    /// Whether `module` needs a token.
    pub fn is_private(&self, module: &str) -> bool {
        self.private.iter().any(|p| p.matches(module))
    }

    /// The verdict for a request by `client` (already identified) about
    /// `module` (`None`: names no module, such as a checksum-database tile).
    pub fn decide<'a>(&self, client: Option<&'a Client>, module: Option<&str>) -> Verdict<'a> {
        let private = module.is_some_and(|m| self.is_private(m));
        match (client, private) {
            (None, true) => Verdict::NeedCredentials,
            (None, false) if self.anonymous == Anonymous::None => Verdict::NeedCredentials,
            (None, false) => Verdict::Allowed { client: None, private: false },
            (Some(c), true) if module.is_some_and(|m| c.allow.matches(m)) => Verdict::Allowed { client: Some(c), private: true },
            (Some(c), true) => Verdict::Forbidden { client: c },
            (Some(c), false) => Verdict::Allowed { client: Some(c), private: false },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sha256("test"), the example in the issue.
    const TEST_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn access(anonymous: Anonymous) -> Access {
        let file = format!(
            "[[client]]\nname = \"ci\"\ntoken_sha256 = \"{TEST_SHA}\"   # hex SHA-256 of the token\nallow = [\"corp.example.com/*\"]\n\n\
             [[client]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nadmin = true\n",
            hex::encode(Sha256::digest(b"ops-token"))
        );
        Access::parse(&file, &PrefixPatterns::parse("secret.example.com").unwrap(), anonymous).unwrap()
    }

    mod hex {
        pub fn encode(d: impl AsRef<[u8]>) -> String {
            d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        }
    }

    fn basic(user: &str, pass: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))).into_bytes()
    }

    #[test]
    fn tokens_by_basic_or_bearer_and_wrong_ones_refused() {
        let a = access(Anonymous::Public);
        assert_eq!(a.identify(None), Ok(None));
        assert_eq!(a.identify(Some(&basic("anyone", "test"))).unwrap().unwrap().name.as_ref(), "ci");
        assert_eq!(a.identify(Some(b"Bearer test")).unwrap().unwrap().name.as_ref(), "ci");
        assert_eq!(a.identify(Some(b"bearer ops-token")).unwrap().unwrap().name.as_ref(), "ops");
        for wrong in [&basic("ci", "nope")[..], b"Bearer tes", b"Bearer ", b"Digest x", b"Basic !!!", b"Basic dGVzdA=="] {
            assert_eq!(a.identify(Some(wrong)), Err(()), "{:?}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn private_modules_need_a_client_whose_patterns_cover_them() {
        let a = access(Anonymous::Public);
        let ci = a.identify(Some(b"Bearer test")).unwrap();
        let ops = a.identify(Some(b"Bearer ops-token")).unwrap();
        assert_eq!(a.decide(None, Some("example.com/public")), Verdict::Allowed { client: None, private: false });
        assert_eq!(a.decide(None, None), Verdict::Allowed { client: None, private: false });
        assert_eq!(a.decide(None, Some("corp.example.com/x/y")), Verdict::NeedCredentials, "a client's allow makes it private");
        assert_eq!(a.decide(None, Some("secret.example.com/z")), Verdict::NeedCredentials, "--private too");
        assert_eq!(a.decide(ci, Some("corp.example.com/x")), Verdict::Allowed { client: ci, private: true });
        assert!(matches!(a.decide(ci, Some("secret.example.com/z")), Verdict::Forbidden { .. }));
        assert!(matches!(a.decide(ops, Some("corp.example.com/x")), Verdict::Forbidden { .. }));
        assert_eq!(a.decide(ops, Some("example.com/public")), Verdict::Allowed { client: ops, private: false });
        let none = access(Anonymous::None);
        assert_eq!(none.decide(None, Some("example.com/public")), Verdict::NeedCredentials);
        assert_eq!(none.decide(None, None), Verdict::NeedCredentials);
    }

    #[test]
    fn a_bad_file_is_an_error_naming_the_client() {
        let none = PrefixPatterns::parse("").unwrap();
        for (bad, says) in [
            ("[[client]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n", "64 hex digits"),
            ("[[client]]\nname = \"a\"\ntoken = \"plain\"\n", "unknown field"),
            (&format!("[[client]]\nname = \"a\"\ntoken_sha256 = \"{TEST_SHA}\"\nallow = [\"[\"]\n"), "allow"),
            (
                &format!(
                    "[[client]]\nname = \"a\"\ntoken_sha256 = \"{TEST_SHA}\"\n[[client]]\nname = \"a\"\ntoken_sha256 = \"{TEST_SHA}\"\n"
                ),
                "twice",
            ),
        ] {
            let e = Access::parse(bad, &none, Anonymous::Public).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
