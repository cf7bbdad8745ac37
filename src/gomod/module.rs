//! Module paths, import paths, file paths, path/version compatibility, and
//! the case-encoding of paths and versions.
//!
//! # Case-encoding
//!
//! Module paths appear in proxy URLs and in file-system paths, and neither
//! can be relied upon to be case-sensitive. So every uppercase ASCII letter is
//! written as `!` followed by its lowercase form:
//! `corp.example/AcmeCloud` becomes `corp.example/!acme!cloud`. Paths
//! never contain `!`, so no escape for a literal `!` is needed. An escaped
//! string with an uppercase letter, a `!` not followed by a lowercase letter,
//! or a non-ASCII byte is malformed.
//!
//! # Paths
//!
//! * A **file path** is slash-separated, non-empty elements of Unicode
//!   letters, ASCII digits, space, and ``!#$%&()+,-.=@[]^_{}~``.
//! * An **import path** additionally must not start with `-`, allows only
//!   ASCII letters, digits and `+-._~`, and rejects elements that look like
//!   Windows short names (`abc~1`).
//! * A **module path** is an import path without `+`, whose elements do not
//!   start with a dot, whose first element is a lowercase domain-like name
//!   containing a dot, and whose `/vN` major-version suffix (if any) is
//!   well-formed.
//!
//! No element may be empty, consist only of dots, end in a dot, or be a
//! reserved Windows device name (`con`, `COM1.txt`, ...) in its part before
//! the first dot.

use std::borrow::Cow;
use std::error::Error;
use std::fmt::{self, Write as _};

use super::semver;

/// The one host with special major-version rules: `host/name.vN`, where `.v0`
/// and `.v1` are allowed and `-unstable` may follow.
const GOPKG_IN: &str = "gopkg.in/";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Which set of path rules was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    Module,
    Import,
    File,
}

impl PathKind {
    fn noun(self) -> &'static str {
        match self {
            PathKind::Module => "module",
            PathKind::Import => "import",
            PathKind::File => "file",
        }
    }
}

/// Why a path is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathReason {
    /// The path is the empty string.
    Empty,
    /// The path begins with `-` (module and import paths).
    LeadingDash,
    /// Two slashes in a row.
    DoubleSlash,
    /// The path ends in a slash.
    TrailingSlash,
    /// An empty element (for example from a leading slash).
    EmptyElement,
    /// An element made only of dots (`.`, `..`, ...); holds the element.
    DotsOnlyElement(String),
    /// An element begins with a dot (module paths only).
    LeadingDotInElement,
    /// An element ends with a dot.
    TrailingDotInElement,
    /// A character not allowed in this kind of path.
    InvalidChar(char),
    /// The part of an element before its first dot is a reserved Windows
    /// device name; holds that part as written.
    WindowsReservedName(String),
    /// An element looks like a Windows short name (`name~1`).
    TildeDigitsSuffix,
    /// A module path begins with a slash.
    LeadingSlash,
    /// The first element of a module path has no dot.
    MissingDotInFirstElement,
    /// The first element of a module path begins with `-`.
    LeadingDashInFirstElement,
    /// A character not allowed in the first element of a module path
    /// (only lowercase ASCII letters, digits, `-` and `.` are).
    InvalidCharInFirstElement(char),
    /// A malformed major-version suffix such as `/v1`, `/v0`, `/v02`,
    /// `/v2.0`, or a badly formed `.vN` on the special host.
    InvalidMajorSuffix,
}

impl fmt::Display for PathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathReason::Empty => f.write_str("empty string"),
            PathReason::LeadingDash => f.write_str("leading dash"),
            PathReason::DoubleSlash => f.write_str("double slash"),
            PathReason::TrailingSlash => f.write_str("trailing slash"),
            PathReason::EmptyElement => f.write_str("empty path element"),
            PathReason::DotsOnlyElement(e) => write!(f, "invalid path element {}", Quoted(e)),
            PathReason::LeadingDotInElement => f.write_str("leading dot in path element"),
            PathReason::TrailingDotInElement => f.write_str("trailing dot in path element"),
            PathReason::InvalidChar(c) => write!(f, "invalid char {}", QuotedChar(*c)),
            PathReason::WindowsReservedName(s) => {
                write!(f, "{} disallowed as path element component on Windows", Quoted(s))
            }
            PathReason::TildeDigitsSuffix => f.write_str("trailing tilde and digits in path element"),
            PathReason::LeadingSlash => f.write_str("leading slash"),
            PathReason::MissingDotInFirstElement => f.write_str("missing dot in first path element"),
            PathReason::LeadingDashInFirstElement => f.write_str("leading dash in first path element"),
            PathReason::InvalidCharInFirstElement(c) => {
                write!(f, "invalid char {} in first path element", QuotedChar(*c))
            }
            PathReason::InvalidMajorSuffix => f.write_str("invalid version"),
        }
    }
}

/// A module, import or file path that breaks the rules.
///
/// Displays as `malformed module path "x": missing dot in first path element`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub kind: PathKind,
    pub path: String,
    pub reason: PathReason,
}

impl PathError {
    fn new(kind: PathKind, path: &str, reason: PathReason) -> Self {
        PathError { kind, path: path.to_owned(), reason }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {} path {}: {}", self.kind.noun(), Quoted(&self.path), self.reason)
    }
}

impl Error for PathError {}

/// Why a version is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionReason {
    /// Not a valid semantic version.
    NotSemver,
    /// Valid, but not in canonical form; holds the canonical form.
    NotCanonical { canonical: String },
    /// The major version does not agree with the module path's suffix.
    /// `want` is e.g. `"v2"` or `"v0 or v1"`; `got` is the version's major
    /// (empty if the version is not valid semver).
    MajorMismatch { want: String, got: String },
    /// Not usable as a version string at all (see [`escape_version`]).
    Disallowed,
}

impl fmt::Display for VersionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionReason::NotSemver => f.write_str("not a semantic version"),
            VersionReason::NotCanonical { canonical } => {
                write!(f, "not a canonical version (should be {canonical})")
            }
            VersionReason::MajorMismatch { want, got } => {
                write!(f, "should be {want}, not {got}")
            }
            VersionReason::Disallowed => f.write_str("disallowed version string"),
        }
    }
}

/// A version that is not acceptable, independent of any module path.
///
/// Displays as `version "v2.0.0" invalid: should be v0 or v1, not v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionError {
    pub version: String,
    pub reason: VersionReason,
}

impl VersionError {
    fn new(version: &str, reason: VersionReason) -> Self {
        VersionError { version: version.to_owned(), reason }
    }
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version {} invalid: {}", Quoted(&self.version), self.reason)
    }
}

impl Error for VersionError {}

/// What an escaped string was supposed to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EscapeTarget {
    ModulePath,
    Version,
    /// Plain decoding via [`unescape_into`], without checking the result.
    Raw,
}

/// A case-encoded string that cannot be decoded, or decodes to something
/// invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscapeError {
    /// Not a well-formed encoding: contains an uppercase letter, a `!` not
    /// followed by a lowercase letter, or a non-ASCII character.
    Malformed { target: EscapeTarget, escaped: String },
    /// Decodes to something that is not a valid module path.
    InvalidPath { escaped: String, source: PathError },
    /// Decodes to something that is not a valid version string (it must be
    /// a valid file name).
    InvalidVersion { version: String, reason: PathReason },
}

impl fmt::Display for EscapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EscapeError::Malformed { target, escaped } => {
                let what = match target {
                    EscapeTarget::ModulePath => "module path",
                    EscapeTarget::Version => "version",
                    EscapeTarget::Raw => "string",
                };
                write!(f, "invalid escaped {what} {}", Quoted(escaped))
            }
            EscapeError::InvalidPath { escaped, source } => {
                write!(f, "invalid escaped module path {}: {source}", Quoted(escaped))
            }
            EscapeError::InvalidVersion { version, reason } => {
                write!(f, "invalid escaped version {}: {reason}", Quoted(version))
            }
        }
    }
}

impl Error for EscapeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            EscapeError::InvalidPath { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Any error of this module; what [`check`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleError {
    InvalidPath(PathError),
    /// A bad version, for the module `path` if known. With a path it displays
    /// as `example.com/m@v2.0.0: invalid version: should be v0 or v1, not v2`.
    InvalidVersion {
        path: Option<String>,
        source: VersionError,
    },
    InvalidEscape(EscapeError),
}

impl fmt::Display for ModuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::InvalidPath(e) => e.fmt(f),
            ModuleError::InvalidVersion { path: Some(path), source } => {
                write!(f, "{path}@{}: invalid version: {}", source.version, source.reason)
            }
            ModuleError::InvalidVersion { path: None, source } => source.fmt(f),
            ModuleError::InvalidEscape(e) => e.fmt(f),
        }
    }
}

impl Error for ModuleError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ModuleError::InvalidPath(e) => Some(e),
            ModuleError::InvalidVersion { source, .. } => Some(source),
            ModuleError::InvalidEscape(e) => Some(e),
        }
    }
}

impl From<PathError> for ModuleError {
    fn from(e: PathError) -> Self {
        ModuleError::InvalidPath(e)
    }
}

impl From<VersionError> for ModuleError {
    fn from(e: VersionError) -> Self {
        ModuleError::InvalidVersion { path: None, source: e }
    }
}

impl From<EscapeError> for ModuleError {
    fn from(e: EscapeError) -> Self {
        ModuleError::InvalidEscape(e)
    }
}

/// Formats a string the way Go's `%q` does: double-quoted, with `"` and `\`
/// backslash-escaped and non-printable characters as `\n`, `\x7f`, `\u00a0`.
/// (Printability is approximated: control, whitespace other than U+0020,
/// common format characters and private-use characters are escaped.)
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            write_quoted_char(f, c, '"')?;
        }
        f.write_char('"')
    }
}

/// Formats a character the way Go's `%q` formats a rune: `'x'`.
struct QuotedChar(char);

impl fmt::Display for QuotedChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('\'')?;
        write_quoted_char(f, self.0, '\'')?;
        f.write_char('\'')
    }
}

fn write_quoted_char(f: &mut fmt::Formatter<'_>, c: char, quote: char) -> fmt::Result {
    match c {
        '\\' => f.write_str("\\\\"),
        c if c == quote => {
            f.write_char('\\')?;
            f.write_char(c)
        }
        '\x07' => f.write_str("\\a"),
        '\x08' => f.write_str("\\b"),
        '\x0c' => f.write_str("\\f"),
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\x0b' => f.write_str("\\v"),
        c if is_printable(c) => f.write_char(c),
        c if (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32),
        c if (c as u32) < 0x1_0000 => write!(f, "\\u{:04x}", c as u32),
        c => write!(f, "\\U{:08x}", c as u32),
    }
}

fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c,
            '\u{ad}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}'))
}

// ---------------------------------------------------------------------------
// Path checking
// ---------------------------------------------------------------------------

/// Characters allowed in the first element of a module path: it is a
/// lowercase LDH domain name, to avoid any case ambiguity.
fn first_elem_char_ok(c: char) -> bool {
    matches!(c, '-' | '.' | '0'..='9' | 'a'..='z')
}

/// Characters allowed in module path elements. `+` and `%` are excluded so
/// that a path never changes meaning inside a URL.
fn module_char_ok(c: char) -> bool {
    matches!(c, '-' | '.' | '_' | '~' | '0'..='9' | 'A'..='Z' | 'a'..='z')
}

/// Characters allowed in import path elements: module characters plus `+`
/// (historically used in names like `c++`).
fn import_char_ok(c: char) -> bool {
    module_char_ok(c) || c == '+'
}

/// Characters allowed in file names: Unicode letters, ASCII alphanumerics,
/// space, and the ASCII punctuation that no common shell or file system
/// treats specially. Excluded: `" ' * < > ?`, backquote, `|`, and `/ \ :`.
fn file_char_ok(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c)
    } else {
        is_unicode_letter(c)
    }
}

fn char_ok(kind: PathKind, c: char) -> bool {
    match kind {
        PathKind::Module => module_char_ok(c),
        PathKind::Import => import_char_ok(c),
        PathKind::File => file_char_ok(c),
    }
}

/// Device names that Windows reserves in every directory, with any
/// extension and in any case.
const WINDOWS_RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2", "LPT3", "LPT4",
    "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Rules shared by every element of every kind of path.
fn check_elem(elem: &str, kind: PathKind) -> Result<(), PathReason> {
    if elem.is_empty() {
        return Err(PathReason::EmptyElement);
    }
    if elem.bytes().all(|b| b == b'.') {
        return Err(PathReason::DotsOnlyElement(elem.to_owned()));
    }
    if kind == PathKind::Module && elem.starts_with('.') {
        return Err(PathReason::LeadingDotInElement);
    }
    if elem.ends_with('.') {
        return Err(PathReason::TrailingDotInElement);
    }
    if let Some(c) = elem.chars().find(|&c| !char_ok(kind, c)) {
        return Err(PathReason::InvalidChar(c));
    }

    let short = elem.split('.').next().unwrap_or(elem);
    if matches!(short.len(), 3 | 4) && WINDOWS_RESERVED.iter().any(|bad| bad.eq_ignore_ascii_case(short)) {
        return Err(PathReason::WindowsReservedName(short.to_owned()));
    }

    // Windows short names ("PROGRA~1") only matter where paths become
    // directory names chosen by others, not for file names inside a module.
    if kind != PathKind::File {
        if let Some(tilde) = short.rfind('~') {
            let suffix = &short[tilde + 1..];
            if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PathReason::TildeDigitsSuffix);
            }
        }
    }
    Ok(())
}

/// Rules shared by all kinds of paths.
fn check_path_of_kind(path: &str, kind: PathKind) -> Result<(), PathReason> {
    if path.is_empty() {
        return Err(PathReason::Empty);
    }
    if kind != PathKind::File && path.starts_with('-') {
        return Err(PathReason::LeadingDash);
    }
    if path.contains("//") {
        return Err(PathReason::DoubleSlash);
    }
    if path.ends_with('/') {
        return Err(PathReason::TrailingSlash);
    }
    path.split('/').try_for_each(|elem| check_elem(elem, kind))
}

fn check_module_path(path: &str) -> Result<(), PathReason> {
    check_path_of_kind(path, PathKind::Module)?;
    let first = path.split('/').next().unwrap_or(path);
    if first.is_empty() {
        return Err(PathReason::LeadingSlash);
    }
    if !first.contains('.') {
        return Err(PathReason::MissingDotInFirstElement);
    }
    if path.starts_with('-') {
        return Err(PathReason::LeadingDashInFirstElement);
    }
    if let Some(c) = first.chars().find(|&c| !first_elem_char_ok(c)) {
        return Err(PathReason::InvalidCharInFirstElement(c));
    }
    if split_path_version(path).is_none() {
        return Err(PathReason::InvalidMajorSuffix);
    }
    Ok(())
}

/// Checks that `path` is a valid module path.
///
/// That is a valid import path (see [`check_import_path`]) that also:
/// has a first element (up to the first slash) made only of lowercase ASCII
/// letters, digits, dots and dashes, containing a dot and not starting with a
/// dash; has no element starting with a dot; has no `+`; and, if it ends in
/// `/vN` with N made of digits and dots, N has no leading zero, is not `1`,
/// and has no dot (the special host's `.vN` rules apply there instead).
pub fn check_path(path: &str) -> Result<(), PathError> {
    check_module_path(path).map_err(|reason| PathError::new(PathKind::Module, path, reason))
}

/// Checks that `path` is a valid package import path: slash-separated,
/// non-empty elements of ASCII letters, digits and `+-._~`, not starting
/// with `-`; no element ends in a dot, is all dots, has a reserved Windows
/// device name before its first dot, or ends in `~` plus digits.
pub fn check_import_path(path: &str) -> Result<(), PathError> {
    check_path_of_kind(path, PathKind::Import).map_err(|reason| PathError::new(PathKind::Import, path, reason))
}

/// Checks that `path` is a valid slash-separated file path, as used for the
/// entries of a module zip. Like an import path, but any Unicode letter,
/// space and ``!#$%&()+,-.=@[]^_{}~`` are allowed, elements may start with a
/// dot or dash, and `~digits` suffixes are fine.
pub fn check_file_path(path: &str) -> Result<(), PathError> {
    check_path_of_kind(path, PathKind::File).map_err(|reason| PathError::new(PathKind::File, path, reason))
}

// ---------------------------------------------------------------------------
// Major versions
// ---------------------------------------------------------------------------

/// Splits `path` into `(prefix, path_major)` with `prefix + path_major ==
/// path`, where `path_major` is empty or `/vN` for N >= 2 (or, on the special
/// host, `.vN` for any N, possibly followed by `-unstable`).
///
/// Returns `None` when the last element is a malformed major suffix
/// (`example.com/m/v1`, `example.com/m/v0`, `example.com/m/v2.0`, or a
/// special-host path without `.vN`).
pub fn split_path_version(path: &str) -> Option<(&str, &str)> {
    if path.starts_with(GOPKG_IN) {
        return split_gopkg_in(path);
    }
    let b = path.as_bytes();
    let mut i = b.len();
    let mut dot = false;
    while i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
        dot |= b[i - 1] == b'.';
        i -= 1;
    }
    if i <= 1 || i == b.len() || b[i - 1] != b'v' || b[i - 2] != b'/' {
        return Some((path, ""));
    }
    let (prefix, major) = path.split_at(i - 2);
    if dot || major.as_bytes()[2] == b'0' || major == "/v1" {
        return None;
    }
    Some((prefix, major))
}

fn split_gopkg_in(path: &str) -> Option<(&str, &str)> {
    let b = path.as_bytes();
    let mut i = b.len();
    if path.ends_with("-unstable") {
        i -= "-unstable".len();
    }
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i <= 1 || b[i - 1] != b'v' || b[i - 2] != b'.' {
        // Every path on that host must end in .vN.
        return None;
    }
    let (prefix, major) = path.split_at(i - 2);
    if major.len() <= 2 || (major.as_bytes()[2] == b'0' && major != ".v0") {
        return None;
    }
    Some((prefix, major))
}

/// Checks that version `v` agrees with a path's major suffix `path_major`
/// (as returned by [`split_path_version`]).
///
/// With no suffix, the version must be v0 or v1, or carry `+incompatible`
/// (which is how v2+ tags of modules without a suffix are named). With a
/// `/vN` or `.vN` suffix the major must be vN. As a compatibility exception,
/// `v0.0.0-` pseudo-versions are accepted for `.v1`.
pub fn check_path_major(v: &str, path_major: &str) -> Result<(), VersionError> {
    let mut pm = path_major;
    if pm.starts_with(".v") {
        pm = pm.strip_suffix("-unstable").unwrap_or(pm);
    }
    if v.starts_with("v0.0.0-") && pm == ".v1" {
        // Early tooling generated v0 pseudo-versions for .v1 paths, and
        // go.mod files in the wild still require them.
        return Ok(());
    }
    let got = semver::major(v).unwrap_or("");
    let want = if pm.is_empty() {
        if got == "v0" || got == "v1" || semver::build(v) == Some("+incompatible") {
            return Ok(());
        }
        "v0 or v1"
    } else if pm.starts_with('/') || pm.starts_with('.') {
        let want = &pm[1..];
        if got == want {
            return Ok(());
        }
        want
    } else {
        pm
    };
    Err(VersionError::new(v, VersionReason::MajorMismatch { want: want.to_owned(), got: got.to_owned() }))
}

/// Reports whether version `v` agrees with the major suffix `path_major`;
/// true exactly when [`check_path_major`] succeeds.
pub fn match_path_major(v: &str, path_major: &str) -> bool {
    check_path_major(v, path_major).is_ok()
}

/// The tag prefix implied by a major suffix: `"v2"` for `"/v2"` or
/// `".v2-unstable"`, `""` for `""` (meaning v0 or v1). `None` if
/// `path_major` is not a well-formed suffix.
pub fn path_major_prefix(path_major: &str) -> Option<&str> {
    if path_major.is_empty() {
        return Some("");
    }
    if !path_major.starts_with('/') && !path_major.starts_with('.') {
        return None;
    }
    let mut pm = path_major;
    if pm.starts_with(".v") {
        pm = pm.strip_suffix("-unstable").unwrap_or(pm);
    }
    let m = &pm[1..];
    (semver::major(m) == Some(m)).then_some(m)
}

// ---------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------

/// The canonical form of `v` like [`semver::canonical`], except that a
/// `+incompatible` build suffix is kept. `None` if `v` is not valid semver.
pub fn canonical_version(v: &str) -> Option<Cow<'_, str>> {
    let cv = semver::canonical(v)?;
    if semver::build(v) == Some("+incompatible") {
        // A build suffix implies the full vX.Y.Z form, so the canonical form
        // plus the suffix is `v` itself.
        return Some(Cow::Borrowed(v));
    }
    Some(cv)
}

/// Checks that `path` is a valid module path, `version` a valid semantic
/// version, and that the two agree on the major version (the path
/// `example.com/m/v2` only goes with `v2.x.y` versions).
///
/// Like the reference, this accepts non-canonical versions such as `v1.2`;
/// see [`check_canonical`].
pub fn check(path: &str, version: &str) -> Result<(), ModuleError> {
    check_path(path)?;
    if !semver::is_valid(version) {
        return Err(ModuleError::InvalidVersion {
            path: Some(path.to_owned()),
            source: VersionError::new(version, VersionReason::NotSemver),
        });
    }
    let path_major = split_path_version(path).map_or("", |(_, m)| m);
    check_path_major(version, path_major).map_err(|e| ModuleError::InvalidVersion { path: Some(path.to_owned()), source: e })
}

/// Like [`check`], and also requires `version` to be in canonical form
/// (`v1.2.0`, not `v1.2`; build metadata only as `+incompatible`), which is
/// the only form a module proxy serves files for.
pub fn check_canonical(path: &str, version: &str) -> Result<(), ModuleError> {
    check(path, version)?;
    match canonical_version(version) {
        Some(c) if c == version => Ok(()),
        c => Err(ModuleError::InvalidVersion {
            path: Some(path.to_owned()),
            source: VersionError::new(version, VersionReason::NotCanonical { canonical: c.map(Cow::into_owned).unwrap_or_default() }),
        }),
    }
}

// ---------------------------------------------------------------------------
// Case-encoding
// ---------------------------------------------------------------------------

/// Escapes an ASCII string without `!`. Borrows when there is no uppercase.
fn escape_ascii(s: &str) -> Cow<'_, str> {
    let uppers = s.bytes().filter(u8::is_ascii_uppercase).count();
    if uppers == 0 {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + uppers);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The case-encoded form of module path `path`; fails if `path` is not a
/// valid module path. Borrows when `path` has no uppercase letters.
pub fn escape_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    check_path(path)?;
    // Module paths are ASCII and never contain '!'.
    Ok(escape_ascii(path))
}

/// The case-encoded form of version `v`. Versions need not be semver, but
/// must be valid file names, ASCII, and free of `!`.
pub fn escape_version(v: &str) -> Result<Cow<'_, str>, VersionError> {
    if check_elem(v, PathKind::File).is_err() || v.contains('!') || !v.is_ascii() {
        return Err(VersionError::new(v, VersionReason::Disallowed));
    }
    Ok(escape_ascii(v))
}

/// Decodes `escaped` into `out`. On failure `out` is left empty.
fn decode_into(escaped: &str, out: &mut String) -> bool {
    out.clear();
    out.reserve(escaped.len());
    let mut bang = false;
    for b in escaped.bytes() {
        let ok = if bang {
            bang = false;
            b.is_ascii_lowercase() && {
                out.push(char::from(b.to_ascii_uppercase()));
                true
            }
        } else if b == b'!' {
            bang = true;
            true
        } else {
            b.is_ascii() && !b.is_ascii_uppercase() && {
                out.push(char::from(b));
                true
            }
        };
        if !ok {
            out.clear();
            return false;
        }
    }
    if bang {
        out.clear();
    }
    !bang
}

/// Whether `escaped` decodes to itself (ASCII, no uppercase, no `!`).
fn decodes_to_itself(escaped: &str) -> bool {
    escaped.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase() && b != b'!')
}

/// Decodes the `!`-encoding of `escaped` into `out` (cleared first, so one
/// buffer can be reused across calls), without checking what it decodes to.
/// On error `out` is left empty.
pub fn unescape_into(escaped: &str, out: &mut String) -> Result<(), EscapeError> {
    if decode_into(escaped, out) {
        Ok(())
    } else {
        Err(malformed(EscapeTarget::Raw, escaped))
    }
}

fn malformed(target: EscapeTarget, escaped: &str) -> EscapeError {
    EscapeError::Malformed { target, escaped: escaped.to_owned() }
}

/// Decodes an escaped module path into `out` (cleared first) and checks that
/// it is a valid module path. On error `out` is unspecified.
pub fn unescape_path_into(escaped: &str, out: &mut String) -> Result<(), EscapeError> {
    if !decode_into(escaped, out) {
        return Err(malformed(EscapeTarget::ModulePath, escaped));
    }
    check_path(out).map_err(|source| EscapeError::InvalidPath { escaped: escaped.to_owned(), source })
}

/// The module path encoded by `escaped`; fails if the encoding is malformed
/// or the result is not a valid module path. Borrows when nothing needed
/// decoding.
pub fn unescape_path(escaped: &str) -> Result<Cow<'_, str>, EscapeError> {
    if decodes_to_itself(escaped) {
        check_path(escaped).map_err(|source| EscapeError::InvalidPath { escaped: escaped.to_owned(), source })?;
        return Ok(Cow::Borrowed(escaped));
    }
    let mut out = String::new();
    unescape_path_into(escaped, &mut out)?;
    Ok(Cow::Owned(out))
}

/// Decodes an escaped version into `out` (cleared first) and checks that it
/// is an allowed version string (a valid file name). On error `out` is
/// unspecified.
pub fn unescape_version_into(escaped: &str, out: &mut String) -> Result<(), EscapeError> {
    if !decode_into(escaped, out) {
        return Err(malformed(EscapeTarget::Version, escaped));
    }
    check_elem(out, PathKind::File).map_err(|reason| EscapeError::InvalidVersion { version: out.clone(), reason })
}

/// The version encoded by `escaped`; fails if the encoding is malformed or
/// the result is not a valid file name. Borrows when nothing needed decoding.
pub fn unescape_version(escaped: &str) -> Result<Cow<'_, str>, EscapeError> {
    if decodes_to_itself(escaped) {
        check_elem(escaped, PathKind::File).map_err(|reason| EscapeError::InvalidVersion { version: escaped.to_owned(), reason })?;
        return Ok(Cow::Borrowed(escaped));
    }
    let mut out = String::new();
    unescape_version_into(escaped, &mut out)?;
    Ok(Cow::Owned(out))
}

// ---------------------------------------------------------------------------
// Unicode letters
// ---------------------------------------------------------------------------

/// Whether a non-ASCII `c` is a letter (general category L), as the
/// reference decides for file names. Kept as an explicit table rather than
/// `char::is_alphabetic`, which also admits combining marks, letter-like
/// numbers and symbols, and which follows whatever Unicode version the
/// compiler ships.
fn is_unicode_letter(c: char) -> bool {
    let c = u32::from(c);
    LETTER_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Inclusive ranges of non-ASCII code points in general category L
/// (Lu, Ll, Lt, Lm, Lo) of Unicode 15.0, sorted and disjoint.
#[rustfmt::skip]
const LETTER_RANGES: &[(u32, u32)] = &[
    (0x00aa, 0x00aa), (0x00b5, 0x00b5), (0x00ba, 0x00ba), (0x00c0, 0x00d6), (0x00d8, 0x00f6),
    (0x00f8, 0x02c1), (0x02c6, 0x02d1), (0x02e0, 0x02e4), (0x02ec, 0x02ec), (0x02ee, 0x02ee),
    (0x0370, 0x0374), (0x0376, 0x0377), (0x037a, 0x037d), (0x037f, 0x037f), (0x0386, 0x0386),
    (0x0388, 0x038a), (0x038c, 0x038c), (0x038e, 0x03a1), (0x03a3, 0x03f5), (0x03f7, 0x0481),
    (0x048a, 0x052f), (0x0531, 0x0556), (0x0559, 0x0559), (0x0560, 0x0588), (0x05d0, 0x05ea),
    (0x05ef, 0x05f2), (0x0620, 0x064a), (0x066e, 0x066f), (0x0671, 0x06d3), (0x06d5, 0x06d5),
    (0x06e5, 0x06e6), (0x06ee, 0x06ef), (0x06fa, 0x06fc), (0x06ff, 0x06ff), (0x0710, 0x0710),
    (0x0712, 0x072f), (0x074d, 0x07a5), (0x07b1, 0x07b1), (0x07ca, 0x07ea), (0x07f4, 0x07f5),
    (0x07fa, 0x07fa), (0x0800, 0x0815), (0x081a, 0x081a), (0x0824, 0x0824), (0x0828, 0x0828),
    (0x0840, 0x0858), (0x0860, 0x086a), (0x0870, 0x0887), (0x0889, 0x088e), (0x08a0, 0x08c9),
    (0x0904, 0x0939), (0x093d, 0x093d), (0x0950, 0x0950), (0x0958, 0x0961), (0x0971, 0x0980),
    (0x0985, 0x098c), (0x098f, 0x0990), (0x0993, 0x09a8), (0x09aa, 0x09b0), (0x09b2, 0x09b2),
    (0x09b6, 0x09b9), (0x09bd, 0x09bd), (0x09ce, 0x09ce), (0x09dc, 0x09dd), (0x09df, 0x09e1),
    (0x09f0, 0x09f1), (0x09fc, 0x09fc), (0x0a05, 0x0a0a), (0x0a0f, 0x0a10), (0x0a13, 0x0a28),
    (0x0a2a, 0x0a30), (0x0a32, 0x0a33), (0x0a35, 0x0a36), (0x0a38, 0x0a39), (0x0a59, 0x0a5c),
    (0x0a5e, 0x0a5e), (0x0a72, 0x0a74), (0x0a85, 0x0a8d), (0x0a8f, 0x0a91), (0x0a93, 0x0aa8),
    (0x0aaa, 0x0ab0), (0x0ab2, 0x0ab3), (0x0ab5, 0x0ab9), (0x0abd, 0x0abd), (0x0ad0, 0x0ad0),
    (0x0ae0, 0x0ae1), (0x0af9, 0x0af9), (0x0b05, 0x0b0c), (0x0b0f, 0x0b10), (0x0b13, 0x0b28),
    (0x0b2a, 0x0b30), (0x0b32, 0x0b33), (0x0b35, 0x0b39), (0x0b3d, 0x0b3d), (0x0b5c, 0x0b5d),
    (0x0b5f, 0x0b61), (0x0b71, 0x0b71), (0x0b83, 0x0b83), (0x0b85, 0x0b8a), (0x0b8e, 0x0b90),
    (0x0b92, 0x0b95), (0x0b99, 0x0b9a), (0x0b9c, 0x0b9c), (0x0b9e, 0x0b9f), (0x0ba3, 0x0ba4),
    (0x0ba8, 0x0baa), (0x0bae, 0x0bb9), (0x0bd0, 0x0bd0), (0x0c05, 0x0c0c), (0x0c0e, 0x0c10),
    (0x0c12, 0x0c28), (0x0c2a, 0x0c39), (0x0c3d, 0x0c3d), (0x0c58, 0x0c5a), (0x0c5d, 0x0c5d),
    (0x0c60, 0x0c61), (0x0c80, 0x0c80), (0x0c85, 0x0c8c), (0x0c8e, 0x0c90), (0x0c92, 0x0ca8),
    (0x0caa, 0x0cb3), (0x0cb5, 0x0cb9), (0x0cbd, 0x0cbd), (0x0cdd, 0x0cde), (0x0ce0, 0x0ce1),
    (0x0cf1, 0x0cf2), (0x0d04, 0x0d0c), (0x0d0e, 0x0d10), (0x0d12, 0x0d3a), (0x0d3d, 0x0d3d),
    (0x0d4e, 0x0d4e), (0x0d54, 0x0d56), (0x0d5f, 0x0d61), (0x0d7a, 0x0d7f), (0x0d85, 0x0d96),
    (0x0d9a, 0x0db1), (0x0db3, 0x0dbb), (0x0dbd, 0x0dbd), (0x0dc0, 0x0dc6), (0x0e01, 0x0e30),
    (0x0e32, 0x0e33), (0x0e40, 0x0e46), (0x0e81, 0x0e82), (0x0e84, 0x0e84), (0x0e86, 0x0e8a),
    (0x0e8c, 0x0ea3), (0x0ea5, 0x0ea5), (0x0ea7, 0x0eb0), (0x0eb2, 0x0eb3), (0x0ebd, 0x0ebd),
    (0x0ec0, 0x0ec4), (0x0ec6, 0x0ec6), (0x0edc, 0x0edf), (0x0f00, 0x0f00), (0x0f40, 0x0f47),
    (0x0f49, 0x0f6c), (0x0f88, 0x0f8c), (0x1000, 0x102a), (0x103f, 0x103f), (0x1050, 0x1055),
    (0x105a, 0x105d), (0x1061, 0x1061), (0x1065, 0x1066), (0x106e, 0x1070), (0x1075, 0x1081),
    (0x108e, 0x108e), (0x10a0, 0x10c5), (0x10c7, 0x10c7), (0x10cd, 0x10cd), (0x10d0, 0x10fa),
    (0x10fc, 0x1248), (0x124a, 0x124d), (0x1250, 0x1256), (0x1258, 0x1258), (0x125a, 0x125d),
    (0x1260, 0x1288), (0x128a, 0x128d), (0x1290, 0x12b0), (0x12b2, 0x12b5), (0x12b8, 0x12be),
    (0x12c0, 0x12c0), (0x12c2, 0x12c5), (0x12c8, 0x12d6), (0x12d8, 0x1310), (0x1312, 0x1315),
    (0x1318, 0x135a), (0x1380, 0x138f), (0x13a0, 0x13f5), (0x13f8, 0x13fd), (0x1401, 0x166c),
    (0x166f, 0x167f), (0x1681, 0x169a), (0x16a0, 0x16ea), (0x16f1, 0x16f8), (0x1700, 0x1711),
    (0x171f, 0x1731), (0x1740, 0x1751), (0x1760, 0x176c), (0x176e, 0x1770), (0x1780, 0x17b3),
    (0x17d7, 0x17d7), (0x17dc, 0x17dc), (0x1820, 0x1878), (0x1880, 0x1884), (0x1887, 0x18a8),
    (0x18aa, 0x18aa), (0x18b0, 0x18f5), (0x1900, 0x191e), (0x1950, 0x196d), (0x1970, 0x1974),
    (0x1980, 0x19ab), (0x19b0, 0x19c9), (0x1a00, 0x1a16), (0x1a20, 0x1a54), (0x1aa7, 0x1aa7),
    (0x1b05, 0x1b33), (0x1b45, 0x1b4c), (0x1b83, 0x1ba0), (0x1bae, 0x1baf), (0x1bba, 0x1be5),
    (0x1c00, 0x1c23), (0x1c4d, 0x1c4f), (0x1c5a, 0x1c7d), (0x1c80, 0x1c88), (0x1c90, 0x1cba),
    (0x1cbd, 0x1cbf), (0x1ce9, 0x1cec), (0x1cee, 0x1cf3), (0x1cf5, 0x1cf6), (0x1cfa, 0x1cfa),
    (0x1d00, 0x1dbf), (0x1e00, 0x1f15), (0x1f18, 0x1f1d), (0x1f20, 0x1f45), (0x1f48, 0x1f4d),
    (0x1f50, 0x1f57), (0x1f59, 0x1f59), (0x1f5b, 0x1f5b), (0x1f5d, 0x1f5d), (0x1f5f, 0x1f7d),
    (0x1f80, 0x1fb4), (0x1fb6, 0x1fbc), (0x1fbe, 0x1fbe), (0x1fc2, 0x1fc4), (0x1fc6, 0x1fcc),
    (0x1fd0, 0x1fd3), (0x1fd6, 0x1fdb), (0x1fe0, 0x1fec), (0x1ff2, 0x1ff4), (0x1ff6, 0x1ffc),
    (0x2071, 0x2071), (0x207f, 0x207f), (0x2090, 0x209c), (0x2102, 0x2102), (0x2107, 0x2107),
    (0x210a, 0x2113), (0x2115, 0x2115), (0x2119, 0x211d), (0x2124, 0x2124), (0x2126, 0x2126),
    (0x2128, 0x2128), (0x212a, 0x212d), (0x212f, 0x2139), (0x213c, 0x213f), (0x2145, 0x2149),
    (0x214e, 0x214e), (0x2183, 0x2184), (0x2c00, 0x2ce4), (0x2ceb, 0x2cee), (0x2cf2, 0x2cf3),
    (0x2d00, 0x2d25), (0x2d27, 0x2d27), (0x2d2d, 0x2d2d), (0x2d30, 0x2d67), (0x2d6f, 0x2d6f),
    (0x2d80, 0x2d96), (0x2da0, 0x2da6), (0x2da8, 0x2dae), (0x2db0, 0x2db6), (0x2db8, 0x2dbe),
    (0x2dc0, 0x2dc6), (0x2dc8, 0x2dce), (0x2dd0, 0x2dd6), (0x2dd8, 0x2dde), (0x2e2f, 0x2e2f),
    (0x3005, 0x3006), (0x3031, 0x3035), (0x303b, 0x303c), (0x3041, 0x3096), (0x309d, 0x309f),
    (0x30a1, 0x30fa), (0x30fc, 0x30ff), (0x3105, 0x312f), (0x3131, 0x318e), (0x31a0, 0x31bf),
    (0x31f0, 0x31ff), (0x3400, 0x4dbf), (0x4e00, 0xa48c), (0xa4d0, 0xa4fd), (0xa500, 0xa60c),
    (0xa610, 0xa61f), (0xa62a, 0xa62b), (0xa640, 0xa66e), (0xa67f, 0xa69d), (0xa6a0, 0xa6e5),
    (0xa717, 0xa71f), (0xa722, 0xa788), (0xa78b, 0xa7ca), (0xa7d0, 0xa7d1), (0xa7d3, 0xa7d3),
    (0xa7d5, 0xa7d9), (0xa7f2, 0xa801), (0xa803, 0xa805), (0xa807, 0xa80a), (0xa80c, 0xa822),
    (0xa840, 0xa873), (0xa882, 0xa8b3), (0xa8f2, 0xa8f7), (0xa8fb, 0xa8fb), (0xa8fd, 0xa8fe),
    (0xa90a, 0xa925), (0xa930, 0xa946), (0xa960, 0xa97c), (0xa984, 0xa9b2), (0xa9cf, 0xa9cf),
    (0xa9e0, 0xa9e4), (0xa9e6, 0xa9ef), (0xa9fa, 0xa9fe), (0xaa00, 0xaa28), (0xaa40, 0xaa42),
    (0xaa44, 0xaa4b), (0xaa60, 0xaa76), (0xaa7a, 0xaa7a), (0xaa7e, 0xaaaf), (0xaab1, 0xaab1),
    (0xaab5, 0xaab6), (0xaab9, 0xaabd), (0xaac0, 0xaac0), (0xaac2, 0xaac2), (0xaadb, 0xaadd),
    (0xaae0, 0xaaea), (0xaaf2, 0xaaf4), (0xab01, 0xab06), (0xab09, 0xab0e), (0xab11, 0xab16),
    (0xab20, 0xab26), (0xab28, 0xab2e), (0xab30, 0xab5a), (0xab5c, 0xab69), (0xab70, 0xabe2),
    (0xac00, 0xd7a3), (0xd7b0, 0xd7c6), (0xd7cb, 0xd7fb), (0xf900, 0xfa6d), (0xfa70, 0xfad9),
    (0xfb00, 0xfb06), (0xfb13, 0xfb17), (0xfb1d, 0xfb1d), (0xfb1f, 0xfb28), (0xfb2a, 0xfb36),
    (0xfb38, 0xfb3c), (0xfb3e, 0xfb3e), (0xfb40, 0xfb41), (0xfb43, 0xfb44), (0xfb46, 0xfbb1),
    (0xfbd3, 0xfd3d), (0xfd50, 0xfd8f), (0xfd92, 0xfdc7), (0xfdf0, 0xfdfb), (0xfe70, 0xfe74),
    (0xfe76, 0xfefc), (0xff21, 0xff3a), (0xff41, 0xff5a), (0xff66, 0xffbe), (0xffc2, 0xffc7),
    (0xffca, 0xffcf), (0xffd2, 0xffd7), (0xffda, 0xffdc), (0x10000, 0x1000b), (0x1000d, 0x10026),
    (0x10028, 0x1003a), (0x1003c, 0x1003d), (0x1003f, 0x1004d), (0x10050, 0x1005d), (0x10080, 0x100fa),
    (0x10280, 0x1029c), (0x102a0, 0x102d0), (0x10300, 0x1031f), (0x1032d, 0x10340), (0x10342, 0x10349),
    (0x10350, 0x10375), (0x10380, 0x1039d), (0x103a0, 0x103c3), (0x103c8, 0x103cf), (0x10400, 0x1049d),
    (0x104b0, 0x104d3), (0x104d8, 0x104fb), (0x10500, 0x10527), (0x10530, 0x10563), (0x10570, 0x1057a),
    (0x1057c, 0x1058a), (0x1058c, 0x10592), (0x10594, 0x10595), (0x10597, 0x105a1), (0x105a3, 0x105b1),
    (0x105b3, 0x105b9), (0x105bb, 0x105bc), (0x10600, 0x10736), (0x10740, 0x10755), (0x10760, 0x10767),
    (0x10780, 0x10785), (0x10787, 0x107b0), (0x107b2, 0x107ba), (0x10800, 0x10805), (0x10808, 0x10808),
    (0x1080a, 0x10835), (0x10837, 0x10838), (0x1083c, 0x1083c), (0x1083f, 0x10855), (0x10860, 0x10876),
    (0x10880, 0x1089e), (0x108e0, 0x108f2), (0x108f4, 0x108f5), (0x10900, 0x10915), (0x10920, 0x10939),
    (0x10980, 0x109b7), (0x109be, 0x109bf), (0x10a00, 0x10a00), (0x10a10, 0x10a13), (0x10a15, 0x10a17),
    (0x10a19, 0x10a35), (0x10a60, 0x10a7c), (0x10a80, 0x10a9c), (0x10ac0, 0x10ac7), (0x10ac9, 0x10ae4),
    (0x10b00, 0x10b35), (0x10b40, 0x10b55), (0x10b60, 0x10b72), (0x10b80, 0x10b91), (0x10c00, 0x10c48),
    (0x10c80, 0x10cb2), (0x10cc0, 0x10cf2), (0x10d00, 0x10d23), (0x10e80, 0x10ea9), (0x10eb0, 0x10eb1),
    (0x10f00, 0x10f1c), (0x10f27, 0x10f27), (0x10f30, 0x10f45), (0x10f70, 0x10f81), (0x10fb0, 0x10fc4),
    (0x10fe0, 0x10ff6), (0x11003, 0x11037), (0x11071, 0x11072), (0x11075, 0x11075), (0x11083, 0x110af),
    (0x110d0, 0x110e8), (0x11103, 0x11126), (0x11144, 0x11144), (0x11147, 0x11147), (0x11150, 0x11172),
    (0x11176, 0x11176), (0x11183, 0x111b2), (0x111c1, 0x111c4), (0x111da, 0x111da), (0x111dc, 0x111dc),
    (0x11200, 0x11211), (0x11213, 0x1122b), (0x1123f, 0x11240), (0x11280, 0x11286), (0x11288, 0x11288),
    (0x1128a, 0x1128d), (0x1128f, 0x1129d), (0x1129f, 0x112a8), (0x112b0, 0x112de), (0x11305, 0x1130c),
    (0x1130f, 0x11310), (0x11313, 0x11328), (0x1132a, 0x11330), (0x11332, 0x11333), (0x11335, 0x11339),
    (0x1133d, 0x1133d), (0x11350, 0x11350), (0x1135d, 0x11361), (0x11400, 0x11434), (0x11447, 0x1144a),
    (0x1145f, 0x11461), (0x11480, 0x114af), (0x114c4, 0x114c5), (0x114c7, 0x114c7), (0x11580, 0x115ae),
    (0x115d8, 0x115db), (0x11600, 0x1162f), (0x11644, 0x11644), (0x11680, 0x116aa), (0x116b8, 0x116b8),
    (0x11700, 0x1171a), (0x11740, 0x11746), (0x11800, 0x1182b), (0x118a0, 0x118df), (0x118ff, 0x11906),
    (0x11909, 0x11909), (0x1190c, 0x11913), (0x11915, 0x11916), (0x11918, 0x1192f), (0x1193f, 0x1193f),
    (0x11941, 0x11941), (0x119a0, 0x119a7), (0x119aa, 0x119d0), (0x119e1, 0x119e1), (0x119e3, 0x119e3),
    (0x11a00, 0x11a00), (0x11a0b, 0x11a32), (0x11a3a, 0x11a3a), (0x11a50, 0x11a50), (0x11a5c, 0x11a89),
    (0x11a9d, 0x11a9d), (0x11ab0, 0x11af8), (0x11c00, 0x11c08), (0x11c0a, 0x11c2e), (0x11c40, 0x11c40),
    (0x11c72, 0x11c8f), (0x11d00, 0x11d06), (0x11d08, 0x11d09), (0x11d0b, 0x11d30), (0x11d46, 0x11d46),
    (0x11d60, 0x11d65), (0x11d67, 0x11d68), (0x11d6a, 0x11d89), (0x11d98, 0x11d98), (0x11ee0, 0x11ef2),
    (0x11f02, 0x11f02), (0x11f04, 0x11f10), (0x11f12, 0x11f33), (0x11fb0, 0x11fb0), (0x12000, 0x12399),
    (0x12480, 0x12543), (0x12f90, 0x12ff0), (0x13000, 0x1342f), (0x13441, 0x13446), (0x14400, 0x14646),
    (0x16800, 0x16a38), (0x16a40, 0x16a5e), (0x16a70, 0x16abe), (0x16ad0, 0x16aed), (0x16b00, 0x16b2f),
    (0x16b40, 0x16b43), (0x16b63, 0x16b77), (0x16b7d, 0x16b8f), (0x16e40, 0x16e7f), (0x16f00, 0x16f4a),
    (0x16f50, 0x16f50), (0x16f93, 0x16f9f), (0x16fe0, 0x16fe1), (0x16fe3, 0x16fe3), (0x17000, 0x187f7),
    (0x18800, 0x18cd5), (0x18d00, 0x18d08), (0x1aff0, 0x1aff3), (0x1aff5, 0x1affb), (0x1affd, 0x1affe),
    (0x1b000, 0x1b122), (0x1b132, 0x1b132), (0x1b150, 0x1b152), (0x1b155, 0x1b155), (0x1b164, 0x1b167),
    (0x1b170, 0x1b2fb), (0x1bc00, 0x1bc6a), (0x1bc70, 0x1bc7c), (0x1bc80, 0x1bc88), (0x1bc90, 0x1bc99),
    (0x1d400, 0x1d454), (0x1d456, 0x1d49c), (0x1d49e, 0x1d49f), (0x1d4a2, 0x1d4a2), (0x1d4a5, 0x1d4a6),
    (0x1d4a9, 0x1d4ac), (0x1d4ae, 0x1d4b9), (0x1d4bb, 0x1d4bb), (0x1d4bd, 0x1d4c3), (0x1d4c5, 0x1d505),
    (0x1d507, 0x1d50a), (0x1d50d, 0x1d514), (0x1d516, 0x1d51c), (0x1d51e, 0x1d539), (0x1d53b, 0x1d53e),
    (0x1d540, 0x1d544), (0x1d546, 0x1d546), (0x1d54a, 0x1d550), (0x1d552, 0x1d6a5), (0x1d6a8, 0x1d6c0),
    (0x1d6c2, 0x1d6da), (0x1d6dc, 0x1d6fa), (0x1d6fc, 0x1d714), (0x1d716, 0x1d734), (0x1d736, 0x1d74e),
    (0x1d750, 0x1d76e), (0x1d770, 0x1d788), (0x1d78a, 0x1d7a8), (0x1d7aa, 0x1d7c2), (0x1d7c4, 0x1d7cb),
    (0x1df00, 0x1df1e), (0x1df25, 0x1df2a), (0x1e030, 0x1e06d), (0x1e100, 0x1e12c), (0x1e137, 0x1e13d),
    (0x1e14e, 0x1e14e), (0x1e290, 0x1e2ad), (0x1e2c0, 0x1e2eb), (0x1e4d0, 0x1e4eb), (0x1e7e0, 0x1e7e6),
    (0x1e7e8, 0x1e7eb), (0x1e7ed, 0x1e7ee), (0x1e7f0, 0x1e7fe), (0x1e800, 0x1e8c4), (0x1e900, 0x1e943),
    (0x1e94b, 0x1e94b), (0x1ee00, 0x1ee03), (0x1ee05, 0x1ee1f), (0x1ee21, 0x1ee22), (0x1ee24, 0x1ee24),
    (0x1ee27, 0x1ee27), (0x1ee29, 0x1ee32), (0x1ee34, 0x1ee37), (0x1ee39, 0x1ee39), (0x1ee3b, 0x1ee3b),
    (0x1ee42, 0x1ee42), (0x1ee47, 0x1ee47), (0x1ee49, 0x1ee49), (0x1ee4b, 0x1ee4b), (0x1ee4d, 0x1ee4f),
    (0x1ee51, 0x1ee52), (0x1ee54, 0x1ee54), (0x1ee57, 0x1ee57), (0x1ee59, 0x1ee59), (0x1ee5b, 0x1ee5b),
    (0x1ee5d, 0x1ee5d), (0x1ee5f, 0x1ee5f), (0x1ee61, 0x1ee62), (0x1ee64, 0x1ee64), (0x1ee67, 0x1ee6a),
    (0x1ee6c, 0x1ee72), (0x1ee74, 0x1ee77), (0x1ee79, 0x1ee7c), (0x1ee7e, 0x1ee7e), (0x1ee80, 0x1ee89),
    (0x1ee8b, 0x1ee9b), (0x1eea1, 0x1eea3), (0x1eea5, 0x1eea9), (0x1eeab, 0x1eebb), (0x20000, 0x2a6df),
    (0x2a700, 0x2b739), (0x2b740, 0x2b81d), (0x2b820, 0x2cea1), (0x2ceb0, 0x2ebe0), (0x2f800, 0x2fa1d),
    (0x30000, 0x3134a), (0x31350, 0x323af),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A path on the host with `.vN` major-version rules.
    fn gopkg(rest: &str) -> String {
        format!("{GOPKG_IN}{rest}")
    }

    /// (path, valid module path, valid import path, valid file path)
    const CHECK_PATH_TESTS: &[(&str, bool, bool, bool)] = &[
        ("x.y/z", true, true, true),
        ("x.y", true, true, true),
        ("", false, false, false),
        ("/x.y/z", false, false, false),
        ("x./z", false, false, false),
        (".x/z", false, true, true),
        ("-x/z", false, false, true),
        ("x..y/z", true, true, true),
        ("x.y/z/../../w", false, false, false),
        ("x.y//z", false, false, false),
        ("x.y/z//w", false, false, false),
        ("x.y/z/", false, false, false),
        ("x.y/z/v0", false, true, true),
        ("x.y/z/v1", false, true, true),
        ("x.y/z/v2", true, true, true),
        ("x.y/z/v2.0", false, true, true),
        ("X.y/z", false, true, true),
        ("!x.y/z", false, false, true),
        ("_x.y/z", false, true, true),
        ("x.y!/z", false, false, true),
        ("x.y\"/z", false, false, false),
        ("x.y#/z", false, false, true),
        ("x.y$/z", false, false, true),
        ("x.y%/z", false, false, true),
        ("x.y&/z", false, false, true),
        ("x.y'/z", false, false, false),
        ("x.y(/z", false, false, true),
        ("x.y)/z", false, false, true),
        ("x.y*/z", false, false, false),
        ("x.y+/z", false, true, true),
        ("x.y,/z", false, false, true),
        ("x.y-/z", true, true, true),
        ("x.y./zt", false, false, false),
        ("x.y:/z", false, false, false),
        ("x.y;/z", false, false, false),
        ("x.y</z", false, false, false),
        ("x.y=/z", false, false, true),
        ("x.y>/z", false, false, false),
        ("x.y?/z", false, false, false),
        ("x.y@/z", false, false, true),
        ("x.y[/z", false, false, true),
        ("x.y\\/z", false, false, false),
        ("x.y]/z", false, false, true),
        ("x.y^/z", false, false, true),
        ("x.y_/z", false, true, true),
        ("x.y`/z", false, false, false),
        ("x.y{/z", false, false, true),
        ("x.y}/z", false, false, true),
        ("x.y~/z", false, true, true),
        ("x.y/z!", false, false, true),
        ("x.y/z\"", false, false, false),
        ("x.y/z#", false, false, true),
        ("x.y/z$", false, false, true),
        ("x.y/z%", false, false, true),
        ("x.y/z&", false, false, true),
        ("x.y/z'", false, false, false),
        ("x.y/z(", false, false, true),
        ("x.y/z)", false, false, true),
        ("x.y/z*", false, false, false),
        ("x.y/z++", false, true, true),
        ("x.y/z,", false, false, true),
        ("x.y/z-", true, true, true),
        ("x.y/z.t", true, true, true),
        ("x.y/z/t", true, true, true),
        ("x.y/z:", false, false, false),
        ("x.y/z;", false, false, false),
        ("x.y/z<", false, false, false),
        ("x.y/z=", false, false, true),
        ("x.y/z>", false, false, false),
        ("x.y/z?", false, false, false),
        ("x.y/z@", false, false, true),
        ("x.y/z[", false, false, true),
        ("x.y/z\\", false, false, false),
        ("x.y/z]", false, false, true),
        ("x.y/z^", false, false, true),
        ("x.y/z_", true, true, true),
        ("x.y/z`", false, false, false),
        ("x.y/z{", false, false, true),
        ("x.y/z}", false, false, true),
        ("x.y/z~", true, true, true),
        ("x.y/x.foo", true, true, true),
        ("x.y/aux.foo", false, false, false),
        ("x.y/prn", false, false, false),
        ("x.y/prn2", true, true, true),
        ("x.y/com", true, true, true),
        ("x.y/com1", false, false, false),
        ("x.y/com1.txt", false, false, false),
        ("x.y/calm1", true, true, true),
        ("x.y/z~0", false, false, true),
        ("x.y/z~09", false, false, true),
        ("x.y/z09", true, true, true),
        ("x.y/z09~", true, true, true),
        ("x.y/z09~09z", true, true, true),
        ("x.y/z09~09z~09", false, false, true),
        ("example.com/!123/logrus", false, false, true),
        // Non-ASCII is disallowed in module and import paths for now.
        ("example.com/user/unicode/испытание", false, false, true),
        ("../x", false, false, false),
        ("./y", false, false, false),
        ("x:y", false, false, false),
        ("\\temp\\foo", false, false, false),
        (".gitignore", false, true, true),
        (".hidden/ISSUE_TEMPLATE", false, true, true),
        ("x☺y", false, false, false),
        // Additional cases.
        ("corp.example/Bar", true, true, true),
        ("corp.example/Bar/v3", true, true, true),
        ("corp.example/bar/v10", true, true, true),
        ("corp.example/bar/v02", false, true, true),
        ("corp.example/bar/v", true, true, true),
        ("corp.example/bar/v2x", true, true, true),
        ("corp.example/v2", true, true, true),
        ("corp.example/bar.v2", true, true, true),
        ("corp.example:8080/bar", false, false, false),
        ("Corp.example/bar", false, true, true),
        ("corp_x.example/bar", false, true, true),
        ("-corp.example/bar", false, false, true),
        ("corp.example/-bar", true, true, true),
        ("corp.example/.bar", false, true, true),
        ("corp.example/bar.", false, false, false),
        ("corp.example/...", false, false, false),
        ("corp.example/Con", false, false, false),
        ("corp.example/LPT9.x.y", false, false, false),
        ("corp.example/lpt0", true, true, true),
        ("corp.example/conx", true, true, true),
        ("corp.example/nul~1", false, false, true),
        ("corp.example/a~1.b", false, false, true),
        ("corp.example/a b", false, false, true),
        ("corp.example/a\tb", false, false, false),
        ("corp.example/café", false, false, true),
        ("corp.example/cafe\u{301}", false, false, false),
        ("corp.example/x²", false, false, false),
        ("corp.example/Ⅻ", false, false, false),
        ("corp.example/日本語", false, false, true),
        ("localhost", false, true, true),
        ("example.com", true, true, true),
        (".", false, false, false),
        ("/", false, false, false),
    ];

    #[test]
    fn check_path_table() {
        for &(path, ok, import_ok, file_ok) in CHECK_PATH_TESTS {
            assert_eq!(check_path(path).is_ok(), ok, "check_path({path:?}) = {:?}", check_path(path));
            assert_eq!(check_import_path(path).is_ok(), import_ok, "check_import_path({path:?}) = {:?}", check_import_path(path));
            assert_eq!(check_file_path(path).is_ok(), file_ok, "check_file_path({path:?}) = {:?}", check_file_path(path));
        }
    }

    #[test]
    fn special_host_paths() {
        for (rest, ok) in [
            ("yaml.v0", true),
            ("yaml.v1", true),
            ("yaml.v2", true),
            ("yaml.v10", true),
            ("yaml.v2-unstable", true),
            ("yaml.v1-unstable", true),
            ("yaml.v0-unstable", false),
            ("yaml.v01", false),
            ("yaml", false),
            ("yaml.v", false),
            ("yaml/v2", false),
            ("user/yaml.v3", true),
            ("v2", false),
        ] {
            let path = gopkg(rest);
            assert_eq!(check_path(&path).is_ok(), ok, "check_path({path:?})");
        }
    }

    #[test]
    fn error_messages() {
        let msg = |p: &str| check_path(p).unwrap_err().to_string();
        assert_eq!(msg("x"), r#"malformed module path "x": missing dot in first path element"#);
        assert_eq!(msg(""), r#"malformed module path "": empty string"#);
        assert_eq!(msg("-x.y"), r#"malformed module path "-x.y": leading dash"#);
        assert_eq!(msg("x.y//z"), r#"malformed module path "x.y//z": double slash"#);
        assert_eq!(msg("x.y/"), r#"malformed module path "x.y/": trailing slash"#);
        assert_eq!(msg("/x.y"), r#"malformed module path "/x.y": empty path element"#);
        assert_eq!(msg("x.y/../z"), r#"malformed module path "x.y/../z": invalid path element "..""#);
        assert_eq!(msg("x.y/.z"), r#"malformed module path "x.y/.z": leading dot in path element"#);
        assert_eq!(msg("x.y/z."), r#"malformed module path "x.y/z.": trailing dot in path element"#);
        assert_eq!(msg("x.y/z+"), r#"malformed module path "x.y/z+": invalid char '+'"#);
        assert_eq!(msg("x.y/z'"), r#"malformed module path "x.y/z'": invalid char '\''"#);
        assert_eq!(msg("x.y/a\"b"), r#"malformed module path "x.y/a\"b": invalid char '"'"#);
        assert_eq!(msg("x.y/a\u{7f}b"), r#"malformed module path "x.y/a\x7fb": invalid char '\x7f'"#);
        assert_eq!(msg("x.y/a\nb"), r#"malformed module path "x.y/a\nb": invalid char '\n'"#);
        assert_eq!(msg("x.y/a\u{a0}b"), r#"malformed module path "x.y/a\u00a0b": invalid char '\u00a0'"#);
        assert_eq!(msg("x.y/é"), r#"malformed module path "x.y/é": invalid char 'é'"#);
        assert_eq!(msg("x.y/Com1.txt"), r#"malformed module path "x.y/Com1.txt": "Com1" disallowed as path element component on Windows"#);
        assert_eq!(msg("x.y/ab~12"), r#"malformed module path "x.y/ab~12": trailing tilde and digits in path element"#);
        assert_eq!(msg("X.y/z"), r#"malformed module path "X.y/z": invalid char 'X' in first path element"#);
        assert_eq!(msg("x.y/z/v1"), r#"malformed module path "x.y/z/v1": invalid version"#);
        assert_eq!(check_import_path("x.y/z*").unwrap_err().to_string(), r#"malformed import path "x.y/z*": invalid char '*'"#);
        assert_eq!(check_file_path("a/b:c").unwrap_err().to_string(), r#"malformed file path "a/b:c": invalid char ':'"#);
        let e = check_path("x.y/z*").unwrap_err();
        assert_eq!(e.kind, PathKind::Module);
        assert_eq!(e.path, "x.y/z*");
        assert_eq!(e.reason, PathReason::InvalidChar('*'));
    }

    #[test]
    fn split_path_version_table() {
        for (prefix, major) in [("x.y/z", ""), ("x.y/z", "/v2"), ("x.y/z", "/v3"), ("x.y/v", ""), ("x.y/z", "/v10"), ("x.y/z/v2x", "")] {
            let path = format!("{prefix}{major}");
            assert_eq!(split_path_version(&path), Some((prefix, major)), "{path:?}");
        }
        for major in [".v0", ".v1", ".v2", ".v3", ".v2-unstable"] {
            let prefix = gopkg("yaml");
            let path = format!("{prefix}{major}");
            assert_eq!(split_path_version(&path), Some((prefix.as_str(), major)), "{path:?}");
        }
        for bad in ["x.y/z/v0", "x.y/z/v1", "x.y/z/v2.0", "x.y/z/v02", "x.y/z/v1.2.3"] {
            assert_eq!(split_path_version(bad), None, "{bad:?}");
        }
        for &(path, ..) in CHECK_PATH_TESTS {
            if let Some((prefix, major)) = split_path_version(path) {
                assert_eq!(format!("{prefix}{major}"), path);
            }
        }
        // Short inputs must not index out of range.
        for s in ["", "v", "/v", "v2", "/v2", "2", "."] {
            let _ = split_path_version(s);
            let _ = split_path_version(&gopkg(s));
        }
    }

    #[test]
    fn check_table() {
        let cases: Vec<(String, &str, bool)> = vec![
            ("example.com/quote".into(), "0.1.0", false),
            ("example com/quote".into(), "v1.0.0", false),
            ("example.com/yaml".into(), "v0.8.0", true),
            ("example.com/yaml".into(), "v1.0.0", true),
            ("example.com/yaml".into(), "v2.0.0", false),
            ("example.com/yaml".into(), "v2.1.5", false),
            ("example.com/yaml".into(), "v3.0.0", false),
            ("example.com/yaml/v2".into(), "v1.0.0", false),
            ("example.com/yaml/v2".into(), "v2.0.0", true),
            ("example.com/yaml/v2".into(), "v2.1.5", true),
            ("example.com/yaml/v2".into(), "v3.0.0", false),
            (gopkg("yaml.v0"), "v0.8.0", true),
            (gopkg("yaml.v0"), "v1.0.0", false),
            (gopkg("yaml.v0"), "v2.0.0", false),
            (gopkg("yaml.v0"), "v2.1.5", false),
            (gopkg("yaml.v0"), "v3.0.0", false),
            (gopkg("yaml.v1"), "v0.8.0", false),
            (gopkg("yaml.v1"), "v1.0.0", true),
            (gopkg("yaml.v1"), "v2.0.0", false),
            (gopkg("yaml.v1"), "v2.1.5", false),
            (gopkg("yaml.v1"), "v3.0.0", false),
            // Old tooling generated v0 pseudo-versions for .v1 paths.
            (gopkg("check.v1"), "v0.0.0", false),
            (gopkg("check.v1"), "v0.0.0-20160102150405-abcdef123456", true),
            (gopkg("yaml.v2"), "v1.0.0", false),
            (gopkg("yaml.v2"), "v2.0.0", true),
            (gopkg("yaml.v2"), "v2.1.5", true),
            (gopkg("yaml.v2"), "v3.0.0", false),
            ("example.com/quote".into(), "v17.0.0", false),
            ("example.com/quote".into(), "v17.0.0+incompatible", true),
            ("example.com/quote/v17".into(), "v17.0.0+incompatible", true),
            ("example.com/quote".into(), "v1.2", true),
            ("example.com/quote".into(), "v1.0.0+meta", true),
        ];
        for (path, version, ok) in cases {
            assert_eq!(check(&path, version).is_ok(), ok, "check({path:?}, {version:?})");
        }
    }

    #[test]
    fn check_messages() {
        assert_eq!(
            check("example.com/m", "0.1.0").unwrap_err().to_string(),
            "example.com/m@0.1.0: invalid version: not a semantic version"
        );
        assert_eq!(
            check("example.com/m", "v2.0.0").unwrap_err().to_string(),
            "example.com/m@v2.0.0: invalid version: should be v0 or v1, not v2"
        );
        assert_eq!(
            check("example.com/m/v3", "v2.0.0").unwrap_err().to_string(),
            "example.com/m/v3@v2.0.0: invalid version: should be v3, not v2"
        );
        assert_eq!(
            check("example", "v1.0.0").unwrap_err().to_string(),
            r#"malformed module path "example": missing dot in first path element"#
        );
        assert!(matches!(check("example", "v1.0.0"), Err(ModuleError::InvalidPath(_))));
        assert_eq!(check_path_major("v2.0.0", "").unwrap_err().to_string(), r#"version "v2.0.0" invalid: should be v0 or v1, not v2"#);
    }

    #[test]
    fn check_canonical_versions() {
        assert!(check_canonical("example.com/m", "v1.2.0").is_ok());
        assert!(check_canonical("example.com/m", "v2.0.0+incompatible").is_ok());
        assert!(check_canonical("example.com/m", "v0.0.0-20191109021931-daa7c04131f5").is_ok());
        let e = check_canonical("example.com/m", "v1.2").unwrap_err();
        assert_eq!(e.to_string(), "example.com/m@v1.2: invalid version: not a canonical version (should be v1.2.0)");
        assert!(check_canonical("example.com/m", "v1.2.0+meta").is_err());
        assert!(check_canonical("example.com/m", "v1.2.0-pre").is_ok());
    }

    #[test]
    fn match_path_major_table() {
        for (v, pm, want) in [
            ("v0.0.0", "", true),
            ("v0.0.0", "/v2", false),
            ("v0.0.0", ".v0", true),
            ("v0.0.0-20190510104115-cbcb75029529", ".v1", true),
            ("v1.0.0", "/v2", false),
            ("v1.0.0", ".v1", true),
            ("v1.0.0", ".v1-unstable", true),
            ("v2.0.0+incompatible", "", true),
            ("v2.0.0", "", false),
            ("v2.0.0", "/v2", true),
            ("v2.0.0", ".v2", true),
            ("bad", "", false),
            ("bad", "/v2", false),
            ("v2.0.0", "v2", false),
        ] {
            assert_eq!(match_path_major(v, pm), want, "match_path_major({v:?}, {pm:?})");
        }
        let e = check_path_major("bad", "/v2").unwrap_err();
        assert_eq!(e.to_string(), r#"version "bad" invalid: should be v2, not "#);
    }

    #[test]
    fn path_major_prefixes() {
        assert_eq!(path_major_prefix(""), Some(""));
        assert_eq!(path_major_prefix("/v2"), Some("v2"));
        assert_eq!(path_major_prefix(".v1"), Some("v1"));
        assert_eq!(path_major_prefix(".v1-unstable"), Some("v1"));
        assert_eq!(path_major_prefix("v2"), None);
        assert_eq!(path_major_prefix("/v2.0"), None);
        assert_eq!(path_major_prefix("/"), None);
        assert_eq!(path_major_prefix("/x"), None);
    }

    #[test]
    fn canonical_versions() {
        for (v, want) in [
            ("v1.2", Some("v1.2.0")),
            ("v1.2.3+meta", Some("v1.2.3")),
            ("v2.0.0+incompatible", Some("v2.0.0+incompatible")),
            ("v2.0.0-pre+incompatible", Some("v2.0.0-pre+incompatible")),
            ("v2.0.0+incompatible.x", Some("v2.0.0")),
            ("v1.0.0", Some("v1.0.0")),
            ("v1+incompatible", None),
            ("bad", None),
            ("", None),
        ] {
            assert_eq!(canonical_version(v).as_deref(), want, "canonical_version({v:?})");
        }
        assert!(matches!(canonical_version("v2.0.0+incompatible"), Some(Cow::Borrowed(_))));
    }

    /// (path, escaped form; empty means same as path)
    const ESCAPE_TESTS: &[(&str, &str)] = &[
        ("ascii.example/abcdefghijklmnopqrstuvwxyz.-/~_0123456789", ""),
        ("corp.example/AcmeCloudPlatform/omega", "corp.example/!acme!cloud!platform/omega"),
        ("corp.example/Bar", "corp.example/!bar"),
        ("corp.example/ABC/v2", "corp.example/!a!b!c/v2"),
    ];

    #[test]
    fn escape_paths() {
        for &(path, ok, ..) in CHECK_PATH_TESTS {
            if !ok {
                assert!(escape_path(path).is_err(), "escape_path({path:?}) should fail");
            }
        }
        for &(path, esc) in ESCAPE_TESTS {
            let want = if esc.is_empty() { path } else { esc };
            let got = escape_path(path).unwrap();
            assert_eq!(got, want);
            assert_eq!(matches!(got, Cow::Borrowed(_)), esc.is_empty());
        }
        assert_eq!(
            escape_path("Corp.example/x").unwrap_err().to_string(),
            r#"malformed module path "Corp.example/x": invalid char 'C' in first path element"#
        );
    }

    #[test]
    fn unescape_paths() {
        for bad in [
            "corp.example/AcmeCloudPlatform/omega",
            "corp.example/!acme!cloud!platform!/omega",
            "corp.example/!0acme!cloud!platform/omega",
            "corp.example/!_acme!cloud!platform/omega",
            "corp.example/!!acme!cloud!platform/omega",
            "corp.example/omega!",
            "corp.example/!",
            "corp.example/é",
            "",
        ] {
            assert!(unescape_path(bad).is_err(), "unescape_path({bad:?}) should fail");
        }
        for &(path, ok, ..) in CHECK_PATH_TESTS {
            if !ok {
                assert!(unescape_path(path).is_err(), "unescape_path({path:?}) should fail");
            }
        }
        let mut buf = String::from("leftover");
        for &(path, esc) in ESCAPE_TESTS {
            let esc = if esc.is_empty() { path } else { esc };
            assert_eq!(unescape_path(esc).unwrap(), path);
            unescape_path_into(esc, &mut buf).unwrap();
            assert_eq!(buf, path);
            unescape_into(esc, &mut buf).unwrap();
            assert_eq!(buf, path);
        }
        assert!(matches!(unescape_path("example.com/x"), Ok(Cow::Borrowed(_))));

        // Error kinds and messages.
        assert_eq!(
            unescape_path("corp.example/Bar").unwrap_err(),
            EscapeError::Malformed { target: EscapeTarget::ModulePath, escaped: "corp.example/Bar".into() }
        );
        assert_eq!(unescape_path("corp.example/!bar!").unwrap_err().to_string(), r#"invalid escaped module path "corp.example/!bar!""#);
        assert_eq!(
            unescape_path("corp!example/bar").unwrap_err().to_string(),
            r#"invalid escaped module path "corp!example/bar": malformed module path "corpExample/bar": missing dot in first path element"#
        );
        assert_eq!(unescape_into("a!B", &mut buf).unwrap_err().to_string(), r#"invalid escaped string "a!B""#);
        assert!(buf.is_empty());
        assert!(unescape_path_into("x", &mut buf).is_err());
        unescape_into("!hello !world", &mut buf).unwrap();
        assert_eq!(buf, "Hello World");
    }

    #[test]
    fn escape_versions() {
        for (v, esc) in [
            ("v1.2.3", "v1.2.3"),
            ("v1.2.3-Pre", "v1.2.3-!pre"),
            ("master", "master"),
            ("Feature-X", "!feature-!x"),
            ("v2.0.0+incompatible", "v2.0.0+incompatible"),
        ] {
            assert_eq!(escape_version(v).unwrap(), esc, "escape_version({v:?})");
            assert_eq!(unescape_version(esc).unwrap(), v, "unescape_version({esc:?})");
            let mut buf = String::new();
            unescape_version_into(esc, &mut buf).unwrap();
            assert_eq!(buf, v);
        }
        for bad in ["", "v1!", "a/b", "..", ".", "v1.", "con", "v1.0.0-é", "a:b", "a*b"] {
            let e = escape_version(bad).unwrap_err();
            assert_eq!(e.reason, VersionReason::Disallowed, "{bad:?}");
        }
        assert_eq!(escape_version("a/b").unwrap_err().to_string(), r#"version "a/b" invalid: disallowed version string"#);
        for bad in ["V1", "v1!", "!!", "a/b", "", "!c!o!n", "x."] {
            assert!(unescape_version(bad).is_err(), "unescape_version({bad:?})");
        }
        assert_eq!(unescape_version("!v1").unwrap(), "V1");
        assert_eq!(
            unescape_version("!c!o!n").unwrap_err().to_string(),
            r#"invalid escaped version "CON": "CON" disallowed as path element component on Windows"#
        );
        assert_eq!(unescape_version("V1").unwrap_err().to_string(), r#"invalid escaped version "V1""#);
    }

    #[test]
    fn module_error_conversions() {
        fn via_question_mark(p: &str, v: &str) -> Result<(), ModuleError> {
            check_path(p)?;
            escape_version(v)?;
            unescape_path(p)?;
            Ok(())
        }
        assert!(via_question_mark("example.com/x", "v1.0.0").is_ok());
        let e = via_question_mark("example.com/x", "a!").unwrap_err();
        assert_eq!(e.to_string(), r#"version "a!" invalid: disallowed version string"#);
        assert!(e.source().is_some());
        let e: Box<dyn Error + Send + Sync> = Box::new(check_path("x").unwrap_err());
        assert!(e.to_string().contains("missing dot"));
    }

    #[test]
    fn unicode_letter_table() {
        // Sorted, disjoint, non-ASCII.
        assert!(LETTER_RANGES[0].0 >= 0x80);
        for w in LETTER_RANGES.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 + 1 < w[1].0, "{w:?}");
        }
        for c in ['é', 'ß', 'Ж', 'ж', 'ǅ', 'ʰ', 'あ', '日', 'ª', '𝒜'] {
            assert!(is_unicode_letter(c), "{c:?}");
        }
        for c in ['\u{301}', '²', 'Ⅻ', '☺', '\u{a0}', '\u{93f}', 'Ⓐ', '\u{200b}', '١'] {
            assert!(!is_unicode_letter(c), "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn escape_round_trips(
            first in "[a-z0-9][a-z0-9-]{0,6}(\\.[a-z0-9-]{1,5}){1,2}",
            rest in proptest::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,8}", 0..5),
        ) {
            let mut path = first;
            for elem in rest {
                path.push('/');
                path.push_str(&elem);
            }
            prop_assume!(check_path(&path).is_ok());
            let esc = escape_path(&path).unwrap();
            prop_assert!(!esc.bytes().any(|b| b.is_ascii_uppercase()));
            prop_assert_eq!(&*unescape_path(&esc).unwrap(), path.as_str());
            let mut buf = String::from("junk");
            unescape_path_into(&esc, &mut buf).unwrap();
            prop_assert_eq!(&buf, &path);
        }

        #[test]
        fn version_escape_round_trips(v in "v[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-[A-Za-z0-9.]{1,8})?(\\+[A-Za-z0-9]{1,6})?") {
            prop_assume!(escape_version(&v).is_ok());
            let esc = escape_version(&v).unwrap();
            prop_assert!(!esc.bytes().any(|b| b.is_ascii_uppercase()));
            prop_assert_eq!(&*unescape_version(&esc).unwrap(), v.as_str());
        }

        #[test]
        fn unescape_never_panics(s in "\\PC*") {
            let mut buf = String::new();
            let _ = unescape_path(&s);
            let _ = unescape_version(&s);
            let _ = unescape_into(&s, &mut buf);
            let _ = unescape_path_into(&s, &mut buf);
            let _ = unescape_version_into(&s, &mut buf);
        }

        #[test]
        fn unescape_near_misses(s in "[!a-zA-Z0-9./~_é-]{0,24}") {
            let mut buf = String::new();
            match unescape_into(&s, &mut buf) {
                Ok(()) => {
                    // Decoding is the inverse of encoding.
                    prop_assert_eq!(&*escape_ascii(&buf), s.as_str());
                }
                Err(_) => prop_assert!(buf.is_empty()),
            }
            if let Ok(p) = unescape_path(&s) {
                prop_assert!(check_path(&p).is_ok());
                prop_assert_eq!(&*escape_path(&p).unwrap(), s.as_str());
            }
        }

        #[test]
        fn checks_never_panic(s in "\\PC*", v in "\\PC*") {
            let _ = check_path(&s);
            let _ = check_import_path(&s);
            let _ = check_file_path(&s);
            let _ = split_path_version(&s);
            let _ = check(&s, &v);
            let _ = check_canonical(&s, &v);
            let _ = check_path_major(&v, &s);
            let _ = path_major_prefix(&s);
            let _ = escape_path(&s);
            let _ = escape_version(&s);
            let _ = canonical_version(&v);
            let _ = check_path(&gopkg(&s));
        }

        /// The rule hierarchy: module ⊂ import ⊂ file.
        #[test]
        fn path_kinds_nest(s in "[a-zA-Z0-9./~_+!-]{0,16}") {
            if check_path(&s).is_ok() {
                prop_assert!(check_import_path(&s).is_ok());
            }
            if check_import_path(&s).is_ok() {
                prop_assert!(check_file_path(&s).is_ok());
            }
        }
    }
}
