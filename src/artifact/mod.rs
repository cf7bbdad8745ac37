//! The vocabulary every layer shares: what an artifact is (its key and its
//! [`Kind`], with every rule that hangs on the kind), where its bytes live
//! ([`Body`]), why a source could not supply it ([`FetchError`]), and the
//! primitives of a fill that clients read while it arrives ([`fill`]).
//!
//! Owns these types and the facts that follow from a kind alone (its
//! content type, its cache class, its size cap). It depends only on the
//! store's blob and record types; it never does I/O, never decides what is
//! kept or for how long (`resolve` does, from the cache class), and never
//! knows who asked.

pub mod body;
pub mod error;
pub mod fill;
pub mod kind;

pub use body::Body;
pub use error::FetchError;
pub use kind::{CacheClass, Kind};

/// An artifact's identity.
///
/// For module artifacts `module` and `version` are decoded (not
/// `!`-escaped) and validated; `version` is empty for [`Kind::List`] and
/// [`Kind::Latest`]. For checksum-database answers ([`Kind::is_sumdb`])
/// `module` is `sumdb/<name>` and `version` the validated, canonical path
/// below it (`latest`, `lookup/<escaped module>@<escaped version>`,
/// `tile/8/0/x001/234`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    pub module: Box<str>,
    pub version: Box<str>,
    pub kind: Kind,
}
