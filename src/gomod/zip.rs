//! Module zip rules (CheckZip in the Go team's x/mod/zip): every entry lies under
//! `module@version/`, has a clean, valid file path, no two entries differ
//! only in case, `go.mod` only at the root and no larger than 16 MiB,
//! `LICENSE` no larger than 16 MiB, the whole tree no larger than 500 MiB.
//!
//! Reads only the central directory (which `dirhash` reads too); never
//! inflates data and never trusts an offset or length without checking it
//! against the buffer.

use std::collections::HashSet;
use std::fmt;

use super::module;

pub const MAX_ZIP_FILE: u64 = 500 << 20;
pub const MAX_GO_MOD: u64 = 16 << 20;
pub const MAX_LICENSE: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipError {
    NotAZip(&'static str),
    Zip64Unsupported,
    BadEntry { name: String, reason: String },
    TooLarge,
}

impl fmt::Display for ZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZipError::NotAZip(why) => write!(f, "not a valid zip file: {why}"),
            ZipError::Zip64Unsupported => f.write_str("zip64 archives are not accepted for module zips"),
            ZipError::BadEntry { name, reason } => write!(f, "{name:?}: {reason}"),
            ZipError::TooLarge => write!(f, "module source tree too large (max size is {MAX_ZIP_FILE} bytes)"),
        }
    }
}

impl std::error::Error for ZipError {}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

const EOCD_SIG: u32 = 0x0605_4b50;
const CDIR_SIG: u32 = 0x0201_4b50;
const EOCD_LEN: usize = 22;

/// Finds the end-of-central-directory record: the last signature whose
/// comment length reaches exactly to the end of the file.
fn find_eocd(zip: &[u8]) -> Option<usize> {
    let lowest = zip.len().saturating_sub(EOCD_LEN + 0xFFFF);
    let mut i = zip.len().checked_sub(EOCD_LEN)?;
    loop {
        if u32_at(zip, i) == Some(EOCD_SIG) && u16_at(zip, i + 20).map(|c| i + EOCD_LEN + c as usize) == Some(zip.len()) {
            return Some(i);
        }
        if i == lowest {
            return None;
        }
        i -= 1;
    }
}

/// One central-directory entry, every field as the directory states it
/// (the caller checks what it relies on against the buffer).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub name: &'a [u8],
    /// 0: stored, 8: deflated.
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u32,
    pub size: u32,
    /// Where the entry's local header starts.
    pub local_offset: u32,
}

/// The central directory's entries, in order.
pub fn central_directory(zip: &[u8]) -> Result<Vec<Entry<'_>>, ZipError> {
    let eocd = find_eocd(zip).ok_or(ZipError::NotAZip("no end of central directory"))?;
    let entries = u16_at(zip, eocd + 10).ok_or(ZipError::NotAZip("truncated"))?;
    let cd_size = u32_at(zip, eocd + 12).ok_or(ZipError::NotAZip("truncated"))?;
    let cd_offset = u32_at(zip, eocd + 16).ok_or(ZipError::NotAZip("truncated"))?;
    if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        return Err(ZipError::Zip64Unsupported);
    }
    let cd_end = (cd_offset as usize).checked_add(cd_size as usize).ok_or(ZipError::NotAZip("bad central directory"))?;
    if cd_end > eocd {
        return Err(ZipError::NotAZip("central directory outside the file"));
    }
    let mut out = Vec::with_capacity(entries as usize);
    let mut at = cd_offset as usize;
    for _ in 0..entries {
        if u32_at(zip, at) != Some(CDIR_SIG) {
            return Err(ZipError::NotAZip("bad central directory entry"));
        }
        let fields = (
            u16_at(zip, at + 10),
            u32_at(zip, at + 16),
            u32_at(zip, at + 20),
            u32_at(zip, at + 24),
            u16_at(zip, at + 28),
            u16_at(zip, at + 30),
            u16_at(zip, at + 32),
            u32_at(zip, at + 42),
        );
        let (
            Some(method),
            Some(crc32),
            Some(compressed_size),
            Some(size),
            Some(name_len),
            Some(extra_len),
            Some(comment_len),
            Some(local_offset),
        ) = fields
        else {
            return Err(ZipError::NotAZip("truncated central directory"));
        };
        let name_start = at + 46;
        let name = zip.get(name_start..name_start + name_len as usize).ok_or(ZipError::NotAZip("truncated entry name"))?;
        at = name_start + name_len as usize + extra_len as usize + comment_len as usize;
        if at > cd_end {
            return Err(ZipError::NotAZip("central directory entry overruns the directory"));
        }
        out.push(Entry { name, method, crc32, compressed_size, size, local_offset });
    }
    Ok(out)
}

/// Checks a module zip for `module@version`.
pub fn check(zip: &[u8], module_path: &str, version: &str) -> Result<(), ZipError> {
    let entries = central_directory(zip)?;
    let prefix = format!("{module_path}@{version}/");
    let bad = |name: &str, reason: &str| ZipError::BadEntry { name: name.to_string(), reason: reason.to_string() };
    let mut folded: HashSet<String> = HashSet::with_capacity(entries.len());
    let mut total: u64 = 0;
    for entry in &entries {
        let (name_bytes, size) = (entry.name, entry.size);
        let full = std::str::from_utf8(name_bytes).map_err(|_| bad(&String::from_utf8_lossy(name_bytes), "file name is not UTF-8"))?;
        let Some(name) = full.strip_prefix(&prefix) else {
            return Err(bad(full, &format!("path does not have prefix {prefix:?}")));
        };
        if name.is_empty() {
            continue;
        }
        let (name, is_dir) = match name.strip_suffix('/') {
            Some(d) => (d, true),
            None => (name, false),
        };
        if name.split('/').any(|e| e.is_empty() || e == "." || e == "..") {
            return Err(bad(full, "file path is not clean"));
        }
        module::check_file_path(name).map_err(|e| bad(full, &e.to_string()))?;
        if !folded.insert(name.chars().map(super::modzip::fold_char).collect::<String>()) {
            return Err(bad(full, "case-insensitive file name collision"));
        }
        if is_dir {
            continue;
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.eq_ignore_ascii_case("go.mod") {
            if base != name {
                return Err(bad(full, "go.mod file not in module root directory"));
            }
            if name != "go.mod" {
                return Err(bad(full, "go.mod files must have lowercase names"));
            }
        }
        let size = size as u64;
        if (name == "go.mod" && size > MAX_GO_MOD) || (name == "LICENSE" && size > MAX_LICENSE) {
            return Err(bad(full, "file too large"));
        }
        total = total.saturating_add(size);
        if total > MAX_ZIP_FILE {
            return Err(ZipError::TooLarge);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn make(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn accepts_a_well_formed_module_zip() {
        let z = make(&[
            ("example.com/a@v1.0.0/go.mod", b"module example.com/a\n"),
            ("example.com/a@v1.0.0/a.go", b"package a\n"),
            ("example.com/a@v1.0.0/sub/b.go", b"package sub\n"),
        ]);
        assert_eq!(check(&z, "example.com/a", "v1.0.0"), Ok(()));
    }

    #[test]
    fn rejects_what_x_mod_rejects() {
        let cases: &[&[(&str, &[u8])]] = &[
            &[("example.com/b@v1.0.0/a.go", b"")],
            &[("example.com/a@v1.0.0/../evil.go", b"")],
            &[("example.com/a@v1.0.0/x/../y.go", b"")],
            &[("example.com/a@v1.0.0/A.go", b""), ("example.com/a@v1.0.0/a.go", b"")],
            &[("example.com/a@v1.0.0/sub/go.mod", b"")],
            &[("example.com/a@v1.0.0/GO.MOD", b"")],
            &[("example.com/a@v1.0.0//a.go", b"")],
        ];
        for entries in cases {
            assert!(check(&make(entries), "example.com/a", "v1.0.0").is_err(), "{entries:?}");
        }
    }

    #[test]
    fn never_panics_on_garbage_or_truncation() {
        let z = make(&[("example.com/a@v1.0.0/a.go", b"package a\n")]);
        for cut in 0..z.len() {
            let _ = check(&z[..cut], "example.com/a", "v1.0.0");
        }
        for i in 0..z.len() {
            let mut bad = z.clone();
            bad[i] ^= 0xFF;
            let _ = check(&bad, "example.com/a", "v1.0.0");
        }
        assert!(check(b"", "example.com/a", "v1.0.0").is_err());
        assert!(check(b"PK\x05\x06", "example.com/a", "v1.0.0").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// Never panics on any bytes, and never accepts what is no zip.
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = central_directory(&bytes);
            let _ = check(&bytes, "example.com/m", "v1.0.0");
        }

        /// A valid module zip with one byte changed anywhere is checked
        /// without a panic, and never passes with an entry outside the module.
        #[test]
        fn one_changed_byte_never_panics(at in 0usize..10_000, value in proptest::prelude::any::<u8>()) {
            let files = [crate::gomod::modzip::SourceFile { path: "go.mod".into(), mode: crate::gomod::modzip::FileMode::Regular, data: b"module example.com/m\n".to_vec() },
                         crate::gomod::modzip::SourceFile { path: "a/b.go".into(), mode: crate::gomod::modzip::FileMode::Regular, data: b"package b\n".to_vec() }];
            let mut zip = crate::gomod::modzip::create("example.com/m", "v1.0.0", &files).unwrap();
            let i = at % zip.len();
            zip[i] = value;
            if check(&zip, "example.com/m", "v1.0.0").is_ok() {
                for e in central_directory(&zip).unwrap() {
                    proptest::prop_assert!(e.name.starts_with(b"example.com/m@v1.0.0/"));
                }
            }
        }
    }
}
