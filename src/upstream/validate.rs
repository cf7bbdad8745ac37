//! Checks an upstream answer before anything stores or serves it. A failed
//! check is a `FetchError::Invalid` (a 502 for the client) and nothing of the
//! answer is kept.

use super::{Fetch, FetchError, What};
use crate::gomod::semver;

pub fn validate(req: &Fetch<'_>, body: &[u8]) -> Result<(), FetchError> {
    let invalid = |why: String| Err(FetchError::Invalid(why));
    match req.what {
        What::Info | What::Latest => {
            let v: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return invalid(format!("{}: not JSON: {e}", req.what_name())),
            };
            let Some(version) = v.get("Version").and_then(|v| v.as_str()) else {
                return invalid(format!("{}: no \"Version\" string", req.what_name()));
            };
            let canonical = crate::gomod::module::canonical_version(version);
            if canonical.as_deref() != Some(version) {
                return invalid(format!("{}: Version {version:?} is not a canonical semantic version", req.what_name()));
            }
            // A canonical request must be answered with exactly that version;
            // a query (branch, commit, `latest`) resolves to whatever it resolves to.
            if req.what == What::Info && semver::is_valid(req.version) && crate::gomod::module::canonical_version(req.version).as_deref() == Some(req.version) && version != req.version {
                return invalid(format!(".info for {} names version {version}", req.version));
            }
            Ok(())
        }
        What::Mod => match std::str::from_utf8(body) {
            Ok(text) if !text.contains('\0') => Ok(()),
            _ => invalid("go.mod is not UTF-8 text".into()),
        },
        What::List => match std::str::from_utf8(body) {
            Ok(_) => Ok(()),
            Err(_) => invalid("version list is not UTF-8 text".into()),
        },
        What::Zip => crate::gomod::zip::check(body, req.module, req.version).map_err(|e| FetchError::Invalid(format!("module zip: {e}"))),
    }
}

impl Fetch<'_> {
    fn what_name(&self) -> &'static str {
        match self.what {
            What::Info => ".info",
            What::Latest => "@latest",
            What::Mod => ".mod",
            What::Zip => ".zip",
            What::List => "list",
        }
    }
}
