//! Checks an upstream answer before anything stores or serves it. A failed
//! check is a `FetchError::Invalid` (a 502 for the client) and nothing of the
//! answer is kept.

use super::{Fetch, FetchError, Kind};
use crate::gomod::{semver, tlog};

pub fn validate(req: &Fetch<'_>, body: &[u8]) -> Result<(), FetchError> {
    let invalid = |why: String| Err(FetchError::Invalid(why));
    match req.kind {
        Kind::Info | Kind::Query | Kind::Latest => {
            let v: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return invalid(format!("{}: not JSON: {e}", req.kind.label())),
            };
            let Some(version) = v.get("Version").and_then(|v| v.as_str()) else {
                return invalid(format!("{}: no \"Version\" string", req.kind.label()));
            };
            let canonical = crate::gomod::module::canonical_version(version);
            if canonical.as_deref() != Some(version) {
                return invalid(format!("{}: Version {version:?} is not a canonical semantic version", req.kind.label()));
            }
            // A canonical request must be answered with exactly that version;
            // a query (branch, commit, `latest`) resolves to whatever it resolves to.
            if req.kind == Kind::Info
                && semver::is_valid(req.version)
                && crate::gomod::module::canonical_version(req.version).as_deref() == Some(req.version)
                && version != req.version
            {
                return invalid(format!(".info for {} names version {version}", req.version));
            }
            Ok(())
        }
        // The go command would refuse anything else, and a cached .mod is
        // kept for good: an HTML error page served with 200 must not be.
        Kind::Mod => crate::gomod::modfile::check(body).map_err(|e| FetchError::Invalid(format!(".mod: {e}"))),
        Kind::List => match std::str::from_utf8(body) {
            Ok(_) => Ok(()),
            Err(_) => invalid("version list is not UTF-8 text".into()),
        },
        Kind::Zip => crate::gomod::zip::check(body, req.module, req.version).map_err(|e| FetchError::Invalid(format!("module zip: {e}"))),
        // The go command verifies signatures and hashes itself; these checks
        // only keep an answer that cannot be one (an HTML error page sent
        // with 200, a truncated tile) out of the cache, above all out of the
        // store, where a complete tile would stay forever.
        Kind::SumSupported => Ok(()),
        Kind::SumLatest => match std::str::from_utf8(body) {
            Ok(text) if is_signed_note(text) => Ok(()),
            _ => invalid("checksum database latest: not a signed note".into()),
        },
        Kind::SumLookup => {
            let text = std::str::from_utf8(body).map_err(|_| FetchError::Invalid("checksum database lookup: not UTF-8 text".into()))?;
            // A record id line, the record, a blank line, the signed tree head.
            let id = text.split('\n').next().unwrap_or("");
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || !is_signed_note(text) {
                return invalid("checksum database lookup: not a record with a signed note".into());
            }
            Ok(())
        }
        Kind::SumTile | Kind::SumPartialTile => {
            let Some(tile) = tlog::Tile::parse(req.version) else {
                return invalid(format!("not a tile path: {}", req.version));
            };
            match tile.hash_tile_len() {
                Some(len) if body.len() as u64 != len => {
                    invalid(format!("{}: {} bytes, a hash tile of width {} has {len}", req.version, body.len(), tile.w))
                }
                None if body.is_empty() => invalid(format!("{}: empty data tile", req.version)),
                _ => Ok(()),
            }
        }
    }
}

/// The shape of a note signed by x/mod's note package: text, a blank
/// line, then signature lines starting with an em dash.
fn is_signed_note(text: &str) -> bool {
    text.contains("\n\n\u{2014} ") && !text.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: Kind, version: &str, body: &[u8]) -> Result<(), FetchError> {
        validate(&Fetch { module: "sumdb/sum.example", version, kind }, body)
    }

    #[test]
    fn checksum_database_answers_must_have_their_shape() {
        let note = "go.sum database tree\n3\nAAAA\n\n\u{2014} sum.example c2ln\n";
        assert!(check(Kind::SumLatest, "latest", note.as_bytes()).is_ok());
        assert!(check(Kind::SumLatest, "latest", b"<html>hi</html>").is_err());
        let record = format!("7\nexample.com/a v1.0.0 h1:x=\n\n{note}");
        assert!(check(Kind::SumLookup, "lookup/example.com/a@v1.0.0", record.as_bytes()).is_ok());
        assert!(check(Kind::SumLookup, "lookup/example.com/a@v1.0.0", note.as_bytes()).is_err());
        assert!(check(Kind::SumTile, "tile/8/0/000", &[0; 256 * 32]).is_ok());
        assert!(check(Kind::SumTile, "tile/8/0/000", &[0; 256 * 32 - 1]).is_err());
        assert!(check(Kind::SumPartialTile, "tile/8/1/000.p/3", &[0; 96]).is_ok());
        assert!(check(Kind::SumPartialTile, "tile/8/1/000.p/3", &[0; 97]).is_err());
        assert!(check(Kind::SumTile, "tile/8/data/000", b"x\n").is_ok());
        assert!(check(Kind::SumTile, "tile/8/data/000", b"").is_err());
        assert!(check(Kind::SumTile, "tile/8/0/1", &[0; 32]).is_err());
    }
}
