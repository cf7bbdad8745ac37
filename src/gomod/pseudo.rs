//! Building and taking apart pseudo-versions (x/mod's `module.PseudoVersion`
//! and `PseudoVersionBase`): the version the go command gives a commit that
//! carries no tag of its own, from the highest tag below it, the commit
//! time and a 12-character revision prefix.
//!
//! Pure functions of strings and times; which tag is the base is the
//! caller's question.

use super::semver;

/// `yyyymmddhhmmss` (UTC) of `seconds` since the epoch.
pub fn timestamp(seconds: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(seconds);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// (year, month, day, hour, minute, second) of `seconds` since the epoch, UTC
/// (Howard Hinnant's civil-from-days).
pub fn civil(seconds: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rest / 3600, rest % 3600 / 60, rest % 60)
}

/// The pseudo-version of revision `rev` (12 characters) committed at
/// `seconds`, above `older` (a canonical tag version, or "" for none), in
/// major `major` (`v0`, `v2`...; "" means `v0`).
pub fn pseudo_version(major: &str, older: &str, seconds: i64, rev: &str) -> String {
    let major = if major.is_empty() { "v0" } else { major };
    let segment = format!("{}-{rev}", timestamp(seconds));
    let build = semver::build(older).unwrap_or("");
    let Some(older) = semver::canonical(older).filter(|_| !older.is_empty()) else {
        return format!("{major}.0.0-{segment}");
    };
    if semver::is_prerelease(&older) {
        return format!("{older}.0.{segment}{build}");
    }
    let (v, patch) = older.rsplit_once('.').map_or((&*older, ""), |(v, p)| (v, p));
    format!("{v}.{}-0.{segment}{build}", inc_decimal(patch))
}

/// `s` (decimal digits) plus one, as digits.
fn inc_decimal(s: &str) -> String {
    let mut digits: Vec<u8> = s.bytes().collect();
    let mut i = digits.len();
    loop {
        if i == 0 {
            digits.insert(0, b'1');
            break;
        }
        i -= 1;
        if digits[i] == b'9' {
            digits[i] = b'0';
        } else {
            digits[i] += 1;
            break;
        }
    }
    String::from_utf8(digits).unwrap_or_default()
}

/// `s` (decimal digits, not all zero) minus one; `None` for "0".
fn dec_decimal(s: &str) -> Option<String> {
    let mut digits: Vec<u8> = s.bytes().collect();
    let mut i = digits.len();
    loop {
        if i == 0 {
            return None;
        }
        i -= 1;
        if digits[i] == b'0' {
            digits[i] = b'9';
        } else {
            digits[i] -= 1;
            break;
        }
    }
    if digits.len() > 1 && digits[0] == b'0' {
        digits.remove(0);
    }
    String::from_utf8(digits).ok()
}

/// The tag version a pseudo-version was built above: "" for `vX.0.0-ts-rev`,
/// `v1.2.3` for `v1.2.4-0.ts-rev`, `v1.2.3-pre` for `v1.2.3-pre.0.ts-rev`.
/// `None` when `v` is no pseudo-version.
pub fn base(v: &str) -> Option<String> {
    if !semver::is_pseudo_version(v) {
        return None;
    }
    let v = v.split('+').next().unwrap_or(v);
    let (release, pre) = v.split_once('-')?;
    let head = &pre[..pre.rfind('-')?];
    let between = &head[..head.len().checked_sub(14)?];
    if between.is_empty() {
        return Some(String::new());
    }
    if between == "0." {
        let (v, patch) = release.rsplit_once('.')?;
        return Some(format!("{v}.{}", dec_decimal(patch)?));
    }
    let pre = between.strip_suffix(".0.")?;
    Some(format!("{release}-{pre}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A pseudo-version is one, names its revision and time, sorts above
        /// its base and below the next release, and gives its base back.
        #[test]
        fn pseudo_versions_round_trip_and_sort_between_their_neighbours(
            major in 0u32..4,
            minor in 0u32..30,
            patch in 0u32..30,
            // Valid pre-releases only: a numeric identifier has no leading zero.
            pre in proptest::option::of("[a-z]{1,6}(\\.(0|[1-9][0-9]?))?"),
            based in any::<bool>(),
            t in 0i64..4_102_444_800,
            rev in "[0-9a-f]{12}",
        ) {
            let m = if major == 0 { String::new() } else { format!("v{}", major + 1) };
            let major_v = if major == 0 { 0 } else { major + 1 };
            let older = match (based, &pre) {
                (false, _) => String::new(),
                (true, None) => format!("v{major_v}.{minor}.{patch}"),
                (true, Some(p)) => format!("v{major_v}.{minor}.{patch}-{p}"),
            };
            let v = pseudo_version(&m, &older, t, &rev);
            prop_assert!(semver::is_pseudo_version(&v), "{}", v);
            prop_assert_eq!(semver::pseudo_version_rev(&v), Some(rev.as_str()));
            prop_assert_eq!(semver::pseudo_version_time(&v).map(str::to_string), Some(timestamp(t)));
            prop_assert_eq!(base(&v), Some(older.clone()));
            if !older.is_empty() {
                prop_assert!(semver::compare(&v, &older).is_gt(), "{} > {}", v, older);
                let next = format!("v{major_v}.{minor}.{}", patch + 1);
                prop_assert!(semver::compare(&v, &next).is_lt(), "{} < {}", v, next);
            }
        }
    }

    #[test]
    fn the_three_forms_and_their_bases() {
        let t = 1_704_164_645; // 2024-01-02T03:04:05Z
        assert_eq!(pseudo_version("", "", t, "0123456789ab"), "v0.0.0-20240102030405-0123456789ab");
        assert_eq!(pseudo_version("v2", "", t, "0123456789ab"), "v2.0.0-20240102030405-0123456789ab");
        assert_eq!(pseudo_version("", "v1.2.3", t, "0123456789ab"), "v1.2.4-0.20240102030405-0123456789ab");
        assert_eq!(pseudo_version("", "v1.2.9", t, "0123456789ab"), "v1.2.10-0.20240102030405-0123456789ab");
        assert_eq!(pseudo_version("", "v1.3.0-rc.1", t, "0123456789ab"), "v1.3.0-rc.1.0.20240102030405-0123456789ab");
        for (v, b) in [
            ("v0.0.0-20240102030405-0123456789ab", ""),
            ("v1.2.4-0.20240102030405-0123456789ab", "v1.2.3"),
            ("v1.2.10-0.20240102030405-0123456789ab", "v1.2.9"),
            ("v1.3.0-rc.1.0.20240102030405-0123456789ab", "v1.3.0-rc.1"),
            ("v2.0.1-0.20240102030405-0123456789ab+incompatible", "v2.0.0"),
        ] {
            assert_eq!(base(v).as_deref(), Some(b), "{v}");
        }
        assert_eq!(base("v1.2.3"), None);
        // Not a valid version (a numeric identifier with a leading zero): no base, as in Go.
        assert_eq!(pseudo_version("", "v0.0.0-a.00", t, "0123456789ab"), "v0.0.0-20240102030405-0123456789ab");
        assert_eq!(timestamp(951_782_400), "20000229000000");
    }
}
