//! Go's module rules: the syntax of module, import and file paths, of
//! versions and pseudo-versions, and the `!`-lowercase case-encoding used in
//! proxy URLs, re-implemented from the Go team's reference packages.
//! Everything here is a pure function: no I/O, no global state, no panics on
//! any input, and no allocation on the happy path where it can be avoided.

pub mod dirhash;
pub mod merkle;
pub mod modfile;
pub mod module;
pub mod modzip;
pub mod note;
pub mod pattern;
pub mod pseudo;
pub mod semver;
pub mod tlog;
pub mod zip;

pub use module::{
    canonical_version, check, check_canonical, check_file_path, check_import_path, check_path, check_path_major, escape_path,
    escape_version, match_path_major, path_major_prefix, split_path_version, unescape_into, unescape_path, unescape_path_into,
    unescape_version, unescape_version_into, EscapeError, EscapeTarget, ModuleError, PathError, PathKind, PathReason, VersionError,
    VersionReason,
};
pub use semver::{is_pseudo_version, pseudo_version_rev, pseudo_version_time};
