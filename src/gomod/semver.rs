//! Go's dialect of semantic versioning, plus pseudo-version recognition.
//!
//! The accepted syntax is `vMAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]]`:
//! the leading `v` is mandatory, numbers carry no superfluous leading zeros,
//! prerelease and build are non-empty dot-separated identifiers over
//! `[0-9A-Za-z-]`, and all-digit prerelease identifiers have no leading
//! zeros. `vMAJOR` and `vMAJOR.MINOR` (with no suffixes) are shorthands for
//! `vMAJOR.0.0` and `vMAJOR.MINOR.0`.
//!
//! Functions that extract a part of a version return `None` for a string that
//! is not a valid version. For parts that may legitimately be absent
//! ([`prerelease`], [`build`]) a valid version without that part yields
//! `Some("")`.

use std::borrow::Cow;
use std::cmp::Ordering;

/// The pieces of a valid version, all borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// What `canonical` has to append for the shorthand forms
    /// (`".0.0"` for `vN`, `".0"` for `vN.M`), empty otherwise.
    short: &'static str,
    /// Including the leading `-`, or empty.
    prerelease: &'a str,
    /// Including the leading `+`, or empty.
    build: &'a str,
}

fn parse(v: &str) -> Option<Parsed<'_>> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = parse_int(rest)?;
    if rest.is_empty() {
        return Some(Parsed { major, minor: "0", patch: "0", short: ".0.0", prerelease: "", build: "" });
    }
    let (minor, rest) = parse_int(rest.strip_prefix('.')?)?;
    if rest.is_empty() {
        return Some(Parsed { major, minor, patch: "0", short: ".0", prerelease: "", build: "" });
    }
    let (patch, mut rest) = parse_int(rest.strip_prefix('.')?)?;
    let mut prerelease = "";
    if rest.starts_with('-') {
        (prerelease, rest) = parse_prerelease(rest)?;
    }
    let mut build = "";
    if rest.starts_with('+') {
        (build, rest) = parse_build(rest)?;
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Parsed { major, minor, patch, short: "", prerelease, build })
}

/// Splits a leading decimal number (no superfluous leading zero) off `s`.
fn parse_int(s: &str) -> Option<(&str, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits > 1 && s.as_bytes()[0] == b'0') {
        return None;
    }
    Some(s.split_at(digits))
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// An all-digit identifier with a superfluous leading zero.
fn is_bad_num(ident: &str) -> bool {
    ident.len() > 1 && ident.starts_with('0') && is_num(ident)
}

fn is_num(ident: &str) -> bool {
    ident.bytes().all(|b| b.is_ascii_digit())
}

/// `s` starts with `-`; returns the prerelease (up to any `+`) and the rest.
fn parse_prerelease(s: &str) -> Option<(&str, &str)> {
    let end = s.find('+').unwrap_or(s.len());
    let (pre, rest) = s.split_at(end);
    let body = &pre[1..];
    for ident in body.split('.') {
        if ident.is_empty() || !ident.bytes().all(is_ident_byte) || is_bad_num(ident) {
            return None;
        }
    }
    Some((pre, rest))
}

/// `s` starts with `+`; the build suffix runs to the end of the string.
fn parse_build(s: &str) -> Option<(&str, &str)> {
    let body = &s[1..];
    for ident in body.split('.') {
        if ident.is_empty() || !ident.bytes().all(is_ident_byte) {
            return None;
        }
    }
    Some((s, ""))
}

/// Reports whether `v` is a valid semantic version string.
pub fn is_valid(v: &str) -> bool {
    parse(v).is_some()
}

/// The canonical formatting of `v`: missing `.MINOR`/`.PATCH` are filled in
/// and build metadata (including `+incompatible`) is discarded.
///
/// Two versions compare equal exactly when their canonical forms are
/// identical. Borrows from `v` unless a shorthand form has to be expanded.
/// Use `module::canonical_version` to keep `+incompatible`.
pub fn canonical(v: &str) -> Option<Cow<'_, str>> {
    let p = parse(v)?;
    Some(if !p.build.is_empty() {
        Cow::Borrowed(&v[..v.len() - p.build.len()])
    } else if !p.short.is_empty() {
        let mut s = String::with_capacity(v.len() + p.short.len());
        s.push_str(v);
        s.push_str(p.short);
        Cow::Owned(s)
    } else {
        Cow::Borrowed(v)
    })
}

/// The major version prefix of `v`: `major("v2.1.0") == Some("v2")`.
pub fn major(v: &str) -> Option<&str> {
    let p = parse(v)?;
    Some(&v[..1 + p.major.len()])
}

/// The `vMAJOR.MINOR` prefix of `v`: `major_minor("v2.1.0") == Some("v2.1")`,
/// `major_minor("v2") == Some("v2.0")`.
pub fn major_minor(v: &str) -> Option<Cow<'_, str>> {
    let p = parse(v)?;
    let i = 1 + p.major.len();
    if v[i..].starts_with('.') {
        let j = i + 1 + p.minor.len();
        return Some(Cow::Borrowed(&v[..j]));
    }
    Some(Cow::Owned(format!("{}.{}", &v[..i], p.minor)))
}

/// The prerelease suffix of `v` including its `-` (`"-pre"` for
/// `"v2.1.0-pre+meta"`); `Some("")` for a valid version without one.
pub fn prerelease(v: &str) -> Option<&str> {
    parse(v).map(|p| p.prerelease)
}

/// The build suffix of `v` including its `+` (`"+meta"` for `"v2.1.0+meta"`);
/// `Some("")` for a valid version without one.
pub fn build(v: &str) -> Option<&str> {
    parse(v).map(|p| p.build)
}

/// Reports whether `v` is a valid version with a prerelease suffix.
pub fn is_prerelease(v: &str) -> bool {
    parse(v).is_some_and(|p| !p.prerelease.is_empty())
}

/// Compares two versions by semantic-version precedence.
///
/// Build metadata is ignored. An invalid version is less than any valid one,
/// and all invalid versions compare equal to each other.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(pa), Some(pb)) => compare_int(pa.major, pb.major)
            .then_with(|| compare_int(pa.minor, pb.minor))
            .then_with(|| compare_int(pa.patch, pb.patch))
            .then_with(|| compare_prerelease(pa.prerelease, pb.prerelease)),
    }
}

/// Sorts versions by [`compare`], breaking ties by plain string order.
pub fn sort<S: AsRef<str>>(list: &mut [S]) {
    list.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        compare(a, b).then_with(|| a.cmp(b))
    });
}

/// Compares decimal strings without superfluous leading zeros.
fn compare_int(x: &str, y: &str) -> Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

/// Compares prerelease suffixes (each empty or starting with `-`).
fn compare_prerelease(x: &str, y: &str) -> Ordering {
    if x == y {
        return Ordering::Equal;
    }
    // A version without a prerelease ranks above one with.
    if x.is_empty() {
        return Ordering::Greater;
    }
    if y.is_empty() {
        return Ordering::Less;
    }
    let mut xs = x[1..].split('.');
    let mut ys = y[1..].split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            // The shorter list of identifiers ranks lower.
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(dx), Some(dy)) => {
                if dx == dy {
                    continue;
                }
                let ord = match (is_num(dx), is_num(dy)) {
                    // Numeric identifiers rank below alphanumeric ones.
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (true, true) => compare_int(dx, dy),
                    (false, false) => dx.cmp(dy),
                };
                return ord;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pseudo-versions
// ---------------------------------------------------------------------------

/// The parts of a pseudo-version, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pseudo<'a> {
    /// `vX.0.0`, `vX.Y.(Z+1)-0` or `vX.Y.Z-pre.0`.
    #[cfg_attr(not(test), allow(dead_code))]
    base: &'a str,
    /// `yyyymmddhhmmss`.
    timestamp: &'a str,
    /// The revision identifier (usually a 12-character commit hash prefix).
    rev: &'a str,
    /// Build suffix including `+`, or empty.
    #[cfg_attr(not(test), allow(dead_code))]
    build: &'a str,
}

/// Recognises the three pseudo-version shapes:
///
/// 1. `vX.0.0-yyyymmddhhmmss-rev`
/// 2. `vX.Y.Z-pre.0.yyyymmddhhmmss-rev`
/// 3. `vX.Y.(Z+1)-0.yyyymmddhhmmss-rev`
///
/// each optionally followed by `+build`, and each required to be a valid
/// semantic version with at least two dashes.
fn parse_pseudo(v: &str) -> Option<Pseudo<'_>> {
    if v.bytes().filter(|&b| b == b'-').count() < 2 {
        return None;
    }
    let p = parse(v)?;
    if !p.short.is_empty() || p.prerelease.is_empty() {
        return None;
    }
    // Everything of the prerelease after its leading '-'.
    let pre = &p.prerelease[1..];
    // The revision follows the last dash and is plain alphanumerics.
    let dash = pre.rfind('-')?;
    let rev = &pre[dash + 1..];
    if rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    // Exactly fourteen digits of timestamp sit right before that dash.
    let head = &pre[..dash];
    let ts_start = head.len().checked_sub(14)?;
    let timestamp = head.get(ts_start..)?;
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // What separates "vX.Y.Z-" from the timestamp.
    let between = &head[..ts_start];
    // Offset of the prerelease's '-' within v.
    let pre_at = 1 + p.major.len() + 1 + p.minor.len() + 1 + p.patch.len();
    let base = if between.is_empty() {
        // Shape 1: only vX.0.0 may be followed directly by the timestamp.
        if p.minor != "0" || p.patch != "0" {
            return None;
        }
        &v[..pre_at]
    } else if between == "0." || between.ends_with(".0.") {
        // Shapes 2 and 3: base is everything up to the ".0" or "-0".
        &v[..pre_at + 1 + between.len() - 1]
    } else {
        return None;
    };
    Some(Pseudo { base, timestamp, rev, build: p.build })
}

/// Reports whether `v` is a pseudo-version (a version synthesised by the go
/// command from a commit time and revision, like
/// `v0.0.0-20191109021931-daa7c04131f5`).
pub fn is_pseudo_version(v: &str) -> bool {
    parse_pseudo(v).is_some()
}

/// The `yyyymmddhhmmss` time stamp (UTC) of the pseudo-version `v`.
///
/// `None` if `v` is not a pseudo-version, or if the time stamp is not a real
/// calendar date and time of day (month 01-12, a day that exists in that
/// month, hour 00-23, minute and second 00-59).
pub fn pseudo_version_time(v: &str) -> Option<&str> {
    let ts = parse_pseudo(v)?.timestamp;
    is_valid_timestamp(ts).then_some(ts)
}

/// The revision identifier of the pseudo-version `v` (`"daa7c04131f5"` for
/// `"v0.0.0-20191109021931-daa7c04131f5"`), or `None` if `v` is not one.
pub fn pseudo_version_rev(v: &str) -> Option<&str> {
    parse_pseudo(v).map(|p| p.rev)
}

/// Checks a 14-digit `yyyymmddhhmmss` string the way Go's time parser does.
fn is_valid_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let num = |range: std::ops::Range<usize>| b[range].iter().fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day) && hour < 24 && minute < 60 && second < 60
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (input, canonical form or "" if invalid), in ascending order of
    /// precedence; equal canonical forms compare equal.
    const TESTS: &[(&str, &str)] = &[
        ("bad", ""),
        ("v1-alpha.beta.gamma", ""),
        ("v1-pre", ""),
        ("v1+meta", ""),
        ("v1-pre+meta", ""),
        ("v1.2-pre", ""),
        ("v1.2+meta", ""),
        ("v1.2-pre+meta", ""),
        ("v1.0.0-alpha", "v1.0.0-alpha"),
        ("v1.0.0-alpha.1", "v1.0.0-alpha.1"),
        ("v1.0.0-alpha.beta", "v1.0.0-alpha.beta"),
        ("v1.0.0-beta", "v1.0.0-beta"),
        ("v1.0.0-beta.2", "v1.0.0-beta.2"),
        ("v1.0.0-beta.11", "v1.0.0-beta.11"),
        ("v1.0.0-rc.1", "v1.0.0-rc.1"),
        ("v1", "v1.0.0"),
        ("v1.0", "v1.0.0"),
        ("v1.0.0", "v1.0.0"),
        ("v1.2", "v1.2.0"),
        ("v1.2.0", "v1.2.0"),
        ("v1.2.3-456", "v1.2.3-456"),
        ("v1.2.3-456.789", "v1.2.3-456.789"),
        ("v1.2.3-456-789", "v1.2.3-456-789"),
        ("v1.2.3-456a", "v1.2.3-456a"),
        ("v1.2.3-pre", "v1.2.3-pre"),
        ("v1.2.3-pre+meta", "v1.2.3-pre"),
        ("v1.2.3-pre.1", "v1.2.3-pre.1"),
        ("v1.2.3-zzz", "v1.2.3-zzz"),
        ("v1.2.3", "v1.2.3"),
        ("v1.2.3+meta", "v1.2.3"),
        ("v1.2.3+meta-pre", "v1.2.3"),
        ("v1.2.3+meta-pre.sha.256a", "v1.2.3"),
    ];

    #[test]
    fn validity() {
        for &(input, out) in TESTS {
            assert_eq!(is_valid(input), !out.is_empty(), "is_valid({input:?})");
        }
        for bad in [
            "",
            "v",
            "1.2.3",
            "V1.2.3",
            "v01.2.3",
            "v1.02.3",
            "v1.2.03",
            "v1.2.3-",
            "v1.2.3+",
            "v1.2.3-01",
            "v1.2.3-a..b",
            "v1.2.3-a.",
            "v1.2.3+a..b",
            "v1.2.3+a.",
            "v1.2.3-a_b",
            "v1.2.3+a_b",
            "v1.2.3.4",
            "v1.",
            "v1.2.",
            "v-1",
            "v1.2.3 ",
            " v1.2.3",
            "v1.2.3-é",
            "v1.2.3++a",
        ] {
            assert!(!is_valid(bad), "is_valid({bad:?}) should be false");
        }
        for good in [
            "v0",
            "v0.0.0",
            "v10.20.30",
            "v1.2.3-0",
            "v1.2.3-0a",
            "v1.2.3-a-",
            "v1.2.3+01",
            "v1.2.3-x+y.z",
            "v1.2.3---",
            "v99999999999999999999.0.0",
        ] {
            assert!(is_valid(good), "is_valid({good:?}) should be true");
        }
    }

    #[test]
    fn canonical_forms() {
        for &(input, out) in TESTS {
            let got = canonical(input);
            assert_eq!(got.as_deref().unwrap_or(""), out, "canonical({input:?})");
        }
        // Canonical forms that need no expansion are borrowed.
        assert!(matches!(canonical("v1.2.3+meta"), Some(Cow::Borrowed("v1.2.3"))));
        assert!(matches!(canonical("v1.2.3"), Some(Cow::Borrowed(_))));
        assert!(matches!(canonical("v1"), Some(Cow::Owned(_))));
        assert_eq!(canonical("v2.0.0+incompatible").as_deref(), Some("v2.0.0"));
    }

    #[test]
    fn parts() {
        for &(input, out) in TESTS {
            let want_major = out.split_once('.').map(|(m, _)| m);
            assert_eq!(major(input), want_major, "major({input:?})");

            let want_mm = if out.is_empty() {
                None
            } else {
                let mut w = input;
                if let Some(i) = w.find('+') {
                    w = &w[..i];
                }
                if let Some(i) = w.find('-') {
                    w = &w[..i];
                }
                Some(match w.matches('.').count() {
                    0 => format!("{w}.0"),
                    1 => w.to_string(),
                    _ => w[..w.rfind('.').unwrap()].to_string(),
                })
            };
            assert_eq!(major_minor(input).map(Cow::into_owned), want_mm, "major_minor({input:?})");

            let want_pre = if out.is_empty() { None } else { Some(out.find('-').map_or("", |i| &out[i..])) };
            assert_eq!(prerelease(input), want_pre, "prerelease({input:?})");
            assert_eq!(is_prerelease(input), want_pre.is_some_and(|p| !p.is_empty()));

            let want_build = if out.is_empty() { None } else { Some(input.find('+').map_or("", |i| &input[i..])) };
            assert_eq!(build(input), want_build, "build({input:?})");
        }
        assert_eq!(major("v2.1.0"), Some("v2"));
        assert!(matches!(major_minor("v2.1.0"), Some(Cow::Borrowed("v2.1"))));
        assert_eq!(major_minor("v2").as_deref(), Some("v2.0"));
        assert_eq!(build("v2.0.0+incompatible"), Some("+incompatible"));
    }

    fn want_order(i: usize, j: usize) -> Ordering {
        if TESTS[i].1 == TESTS[j].1 {
            Ordering::Equal
        } else {
            i.cmp(&j)
        }
    }

    #[test]
    fn comparisons() {
        for (i, &(a, _)) in TESTS.iter().enumerate() {
            for (j, &(b, _)) in TESTS.iter().enumerate() {
                assert_eq!(compare(a, b), want_order(i, j), "compare({a:?}, {b:?})");
            }
        }
        assert_eq!(compare("v1.10.0", "v1.9.0"), Ordering::Greater);
        assert_eq!(compare("v1.0.0-alpha.10", "v1.0.0-alpha.9"), Ordering::Greater);
        assert_eq!(compare("v1.0.0-a", "v1.0.0-9"), Ordering::Greater);
        assert_eq!(compare("v1.0.0+a", "v1.0.0+b"), Ordering::Equal);
        assert_eq!(compare("v10.0.0", "v9.99.99"), Ordering::Greater);
    }

    #[test]
    fn sorting() {
        let mut versions: Vec<&str> = TESTS.iter().rev().map(|t| t.0).collect();
        versions.rotate_left(7);
        sort(&mut versions);
        let golden = [
            "bad",
            "v1+meta",
            "v1-alpha.beta.gamma",
            "v1-pre",
            "v1-pre+meta",
            "v1.2+meta",
            "v1.2-pre",
            "v1.2-pre+meta",
            "v1.0.0-alpha",
            "v1.0.0-alpha.1",
            "v1.0.0-alpha.beta",
            "v1.0.0-beta",
            "v1.0.0-beta.2",
            "v1.0.0-beta.11",
            "v1.0.0-rc.1",
            "v1",
            "v1.0",
            "v1.0.0",
            "v1.2",
            "v1.2.0",
            "v1.2.3-456",
            "v1.2.3-456.789",
            "v1.2.3-456-789",
            "v1.2.3-456a",
            "v1.2.3-pre",
            "v1.2.3-pre+meta",
            "v1.2.3-pre.1",
            "v1.2.3-zzz",
            "v1.2.3",
            "v1.2.3+meta",
            "v1.2.3+meta-pre",
            "v1.2.3+meta-pre.sha.256a",
        ];
        assert_eq!(versions, golden);
    }

    /// (pseudo-version, base) pairs, as produced by the go command from
    /// the given older tag.
    const PSEUDO: &[(&str, &str)] = &[
        ("v0.0.0-20060102150405-hash", "v0.0.0"),
        ("v1.0.0-20060102150405-hash", "v1.0.0"),
        ("v2.0.0-20060102150405-hash", "v2.0.0"),
        ("v0.0.1-0.20060102150405-hash", "v0.0.1-0"),
        ("v1.2.4-0.20060102150405-hash", "v1.2.4-0"),
        ("v1.2.100000000000000000-0.20060102150405-hash", "v1.2.100000000000000000-0"),
        ("v1.2.3-pre.0.20060102150405-hash", "v1.2.3-pre.0"),
        ("v1.3.0-pre.0.20060102150405-hash", "v1.3.0-pre.0"),
        ("v0.0.0--.0.20060102150405-hash", "v0.0.0--.0"),
        ("v1.0.1-0.20060102150405-hash+metadata", "v1.0.1-0"),
        ("v2.0.1-0.20060102150405-hash+incompatible", "v2.0.1-0"),
        ("v2.3.0-pre.0.20060102150405-hash+incompatible", "v2.3.0-pre.0"),
        ("v0.0.0-20191109021931-daa7c04131f5", "v0.0.0"),
        ("v1.2.3-a.b-c.0.20191109021931-DAA7c04131f5", "v1.2.3-a.b-c.0"),
    ];

    #[test]
    fn pseudo_versions() {
        for &(v, base) in PSEUDO {
            assert!(is_pseudo_version(v), "is_pseudo_version({v:?})");
            let p = parse_pseudo(v).unwrap();
            assert_eq!(p.base, base, "base of {v:?}");
            assert_eq!(p.build, build(v).unwrap());
            let want_rev = if v.ends_with("f5") { p.rev } else { "hash" };
            assert_eq!(pseudo_version_rev(v), Some(want_rev), "rev of {v:?}");
            let ts = pseudo_version_time(v);
            assert!(ts == Some("20060102150405") || ts == Some("20191109021931"), "{v:?}");
        }
        for not in [
            "",
            "---",
            "v0.0.0",
            "v1.2.3",
            "v1.2.3-pre",
            "v1.0.0+metadata",
            "v2.0.0+incompatible",
            "v0.0.0-",
            // Too few or too many timestamp digits.
            "v0.0.0-2006010215040-hash",
            "v0.0.0-200601021504055-hash",
            // Missing or malformed revision.
            "v0.0.0-20060102150405-",
            "v0.0.0-20060102150405",
            "v0.0.0-20060102150405-ha_sh",
            // Shape 1 needs a .0.0 base.
            "v1.2.0-20060102150405-hash",
            "v1.0.3-20060102150405-hash",
            // Shapes 2 and 3 need ".0." / "-0." right before the timestamp.
            "v1.2.4-1.20060102150405-hash",
            "v1.2.3-pre.1.20060102150405-hash",
            "v1.2.3-pre0.20060102150405-hash",
            "v1.2.3-pre.20060102150405-hash",
            // Short forms and invalid semver.
            "v1-0.20060102150405-hash",
            "v1.2.3-pre.00.20060102150405-hash",
            "v1.2.3-0.20060102150405-hash+",
            "v1.2.3-0.20060102150405-hash+a..b",
            "v0.0.0-20060102150405-hash-extra",
            "1.0.0-20060102150405-hash",
        ] {
            assert!(!is_pseudo_version(not), "is_pseudo_version({not:?}) should be false");
            assert_eq!(pseudo_version_time(not), None, "{not:?}");
            assert_eq!(pseudo_version_rev(not), None, "{not:?}");
        }
    }

    #[test]
    fn pseudo_version_time_must_be_a_real_time() {
        for (ts, ok) in [
            ("20060102150405", true),
            ("00000101000000", true),
            ("20000229235959", true),
            ("19000229000000", false),
            ("20240229000000", true),
            ("20230229000000", false),
            ("20060431000000", false),
            ("20061301000000", false),
            ("20060001000000", false),
            ("20060100000000", false),
            ("20060102240000", false),
            ("20060102236000", false),
            ("20060102235960", false),
            ("00000000000000", false),
        ] {
            let v = format!("v0.0.0-{ts}-abcdef123456");
            assert!(is_pseudo_version(&v), "{v}");
            assert_eq!(pseudo_version_time(&v).is_some(), ok, "{v}");
            assert_eq!(pseudo_version_rev(&v), Some("abcdef123456"));
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = is_valid(&s);
            let _ = canonical(&s);
            let _ = major(&s);
            let _ = major_minor(&s);
            let _ = prerelease(&s);
            let _ = build(&s);
            let _ = compare(&s, "v1.0.0");
            let _ = is_pseudo_version(&s);
            let _ = pseudo_version_time(&s);
            let _ = pseudo_version_rev(&s);
        }

        #[test]
        fn version_like_strings(s in "v[0-9]{1,3}(\\.[0-9]{1,3}){0,2}(-[0-9a-z.-]{0,6})?(\\+[0-9a-z.-]{0,6})?") {
            match canonical(&s) {
                None => prop_assert!(!is_valid(&s)),
                Some(c) => {
                    prop_assert!(is_valid(&c));
                    let again = canonical(&c);
                    prop_assert_eq!(again.as_deref(), Some(&*c));
                    prop_assert_eq!(compare(&s, &c), Ordering::Equal);
                    prop_assert_eq!(build(&c), Some(""));
                }
            }
        }

        #[test]
        fn compare_is_antisymmetric(
            a in "v[0-2](\\.[0-2]){0,2}(-[0-9a-b.]{1,4})?",
            b in "v[0-2](\\.[0-2]){0,2}(-[0-9a-b.]{1,4})?",
        ) {
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
        }

        /// Every string of the reference pattern is a pseudo-version exactly
        /// when it is also valid semver with at least two dashes.
        #[test]
        fn pseudo_matches_reference_pattern(
            s in "v[0-9]{1,2}\\.(0\\.0-|[0-9]{1,2}\\.[0-9]{1,2}-([a-z0-9.-]{0,5}\\.)?0\\.)[0-9]{14}-[A-Za-z0-9]{1,4}(\\+[0-9A-Za-z-]{1,3}(\\.[0-9A-Za-z-]{1,3}){0,2})?"
        ) {
            let want = s.matches('-').count() >= 2 && is_valid(&s);
            prop_assert_eq!(is_pseudo_version(&s), want);
        }
    }
}
