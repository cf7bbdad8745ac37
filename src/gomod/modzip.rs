//! Creating a module zip from a module's files, by the rules of x/mod's
//! `zip.Create` (which the go command applies to what `git archive` gives
//! it): every path under `module@version/`; files of nested modules, of
//! vendored packages, symbolic links and irregular files left out; a path
//! the module zip rules forbid, a case-insensitive collision, a go.mod not
//! named so, or a size over the limits refuses the whole zip.
//!
//! Owns those rules. Pure: it is handed the files and returns the bytes;
//! it never reads a repository, and the zip it writes is deflated but not
//! byte-for-byte the go command's (zip encoders differ): what must match is
//! its `h1:` hash, which depends on file names and contents alone.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write as _;

use super::module;

/// Most bytes a module's files may hold, uncompressed (x/mod's MaxZipFile).
pub const MAX_ZIP_FILE: u64 = 500 << 20;
/// Most bytes of the root go.mod and of the root LICENSE.
pub const MAX_GO_MOD: u64 = 16 << 20;
pub const MAX_LICENSE: u64 = 16 << 20;

/// What a file is, as `git archive` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    Regular,
    Symlink,
    /// A directory entry or anything else that is no regular file.
    Other,
}

/// One file of the module, its path relative to the module root.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub mode: FileMode,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModZipError {
    /// Files the rules forbid: (path, why), each as x/mod words it.
    Invalid(Vec<(String, String)>),
    /// The files hold more than [`MAX_ZIP_FILE`] bytes.
    TooLarge,
    /// The module path or version is not one a zip may be made for.
    BadVersion(String),
    /// Our zip writer failed (a bug: it writes to memory).
    Write(String),
}

impl fmt::Display for ModZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModZipError::Invalid(files) => {
                f.write_str("create zip: ")?;
                for (i, (path, why)) in files.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{path}: {why}")?;
                }
                Ok(())
            }
            ModZipError::TooLarge => write!(f, "create zip: module source tree too large (max size is {MAX_ZIP_FILE} bytes)"),
            ModZipError::BadVersion(why) => write!(f, "create zip: {why}"),
            ModZipError::Write(why) => write!(f, "create zip: writing: {why}"),
        }
    }
}

impl std::error::Error for ModZipError {}

/// Whether `name` is in a vendored package (left out of module zips), for
/// a module whose go.mod says `go <lang>`: before 1.24, `vendor/modules.txt`
/// is kept and any `/vendor/` inside a path counts from its start (x/mod's
/// `isVendoredPackage`, bug-for-bug, so older checksums stay).
fn is_vendored_package(name: &str, go_1_24: bool) -> bool {
    if go_1_24 && name == "vendor/modules.txt" {
        return true;
    }
    let start = if let Some(rest) = name.strip_prefix("vendor/") {
        name.len() - rest.len()
    } else if let Some(j) = name.find("/vendor/") {
        if go_1_24 {
            j + "/vendor/".len()
        } else {
            "/vendor/".len()
        }
    } else {
        return false;
    };
    // Bytes, as x/mod slices them: the offset may fall inside a character.
    name.as_bytes().get(start..).is_some_and(|rest| rest.contains(&b'/'))
}

/// A character's representative under Unicode simple case folding (the
/// least of the characters it folds with, as Go's `strToFold` picks), so
/// `σ`, `ς` and `Σ` are one, and the Kelvin sign is `K`.
pub(crate) fn fold_char(c: char) -> char {
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }
    let lower = single(c.to_lowercase());
    let upper = single(c.to_uppercase());
    let round_trips = [lower.and_then(|l| single(l.to_uppercase())), upper.and_then(|u| single(u.to_lowercase()))];
    [Some(c), lower, upper].into_iter().chain(round_trips).flatten().min().unwrap_or(c)
}

/// Whether a go directive's version is 1.24 or later.
fn at_least_go_1_24(go: Option<&str>) -> bool {
    let Some(v) = go else { return false };
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (1, 24)
}

fn is_clean(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.ends_with('/') && p.split('/').all(|e| !e.is_empty() && e != "." && e != "..")
}

/// x/mod's collision checker: no two paths equal under case folding, no
/// path both a file and a directory, no file twice.
#[derive(Default)]
struct Collisions(HashMap<String, (String, bool)>);

impl Collisions {
    fn check(&mut self, p: &str, is_dir: bool) -> Result<(), String> {
        let fold: String = p.chars().map(fold_char).collect();
        match self.0.get(&fold) {
            Some((other, other_dir)) => {
                if p != other {
                    return Err(format!("case-insensitive file name collision: {other:?} and {p:?}"));
                }
                if is_dir != *other_dir {
                    return Err(format!("entry {p:?} is both a file and a directory"));
                }
                if !is_dir {
                    return Err(format!("multiple entries for file {p:?}"));
                }
            }
            None => {
                self.0.insert(fold, (p.to_string(), is_dir));
            }
        }
        match p.rsplit_once('/') {
            Some((parent, _)) => self.check(parent, true),
            None => Ok(()),
        }
    }
}

/// The module zip of `module@version` from `files`, in their order.
pub fn create(module_path: &str, version: &str, files: &[SourceFile]) -> Result<Vec<u8>, ModZipError> {
    if module::canonical_version(version).is_none_or(|c| c != version) {
        return Err(ModZipError::BadVersion(format!("version {version:?} is not canonical")));
    }
    module::check(module_path, version).map_err(|e| ModZipError::BadVersion(e.to_string()))?;

    // Directories holding a go.mod (other than the root) are other modules.
    let mut have_go_mod: HashSet<&str> = HashSet::new();
    let mut go_version = None;
    for f in files {
        let (dir, base) = f.path.rsplit_once('/').map_or(("", f.path.as_str()), |(d, b)| (d, b));
        if base.eq_ignore_ascii_case("go.mod") && f.mode == FileMode::Regular {
            have_go_mod.insert(dir);
            if f.path == "go.mod" {
                go_version = super::modfile::go_version(&f.data);
            }
        }
    }
    let go_1_24 = at_least_go_1_24(go_version.as_deref());
    let in_submodule = |p: &str| {
        let mut p = p;
        while let Some((dir, _)) = p.rsplit_once('/') {
            if have_go_mod.contains(dir) {
                return true;
            }
            p = dir;
        }
        false
    };

    let mut invalid: Vec<(String, String)> = Vec::new();
    let mut seen_error: HashSet<&str> = HashSet::new();
    let mut collisions = Collisions::default();
    let mut left = MAX_ZIP_FILE;
    let mut too_large = false;
    let mut valid: Vec<&SourceFile> = Vec::new();
    for f in files {
        let p = f.path.as_str();
        let mut refuse = |why: String| {
            if seen_error.insert(p) {
                invalid.push((p.to_string(), why));
            }
        };
        if !is_clean(p) {
            refuse(if p.starts_with('/') { "file path is not relative".into() } else { "file path is not clean".into() });
            continue;
        }
        if is_vendored_package(p, go_1_24) || in_submodule(p) || p == ".hg_archival.txt" {
            continue;
        }
        if let Err(e) = module::check_file_path(p) {
            refuse(e.to_string());
            continue;
        }
        if p.eq_ignore_ascii_case("go.mod") && p != "go.mod" {
            refuse("go.mod files must have lowercase names".into());
            continue;
        }
        if let Err(why) = collisions.check(p, false) {
            refuse(why);
            continue;
        }
        if f.mode != FileMode::Regular {
            continue;
        }
        let size = f.data.len() as u64;
        match left.checked_sub(size) {
            Some(rest) => left = rest,
            None => too_large = true,
        }
        if p == "go.mod" && size > MAX_GO_MOD {
            refuse(format!("go.mod file too large (max size is {MAX_GO_MOD} bytes)"));
            continue;
        }
        if p == "LICENSE" && size > MAX_LICENSE {
            refuse(format!("LICENSE file too large (max size is {MAX_LICENSE} bytes)"));
            continue;
        }
        valid.push(f);
    }
    if too_large {
        return Err(ModZipError::TooLarge);
    }
    if !invalid.is_empty() {
        return Err(ModZipError::Invalid(invalid));
    }

    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let prefix = format!("{module_path}@{version}/");
    for f in valid {
        zip.start_file(format!("{prefix}{}", f.path), options).map_err(|e| ModZipError::Write(e.to_string()))?;
        zip.write_all(&f.data).map_err(|e| ModZipError::Write(e.to_string()))?;
    }
    zip.finish().map_err(|e| ModZipError::Write(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the files, creating a zip never panics, and a zip it
        /// makes holds each kept file once, under the module's prefix, and
        /// passes the checks the proxy applies to any upstream's zip.
        #[test]
        fn any_file_list_gives_a_valid_zip_or_a_reason(
            files in proptest::collection::vec(("[a-zA-Z0-9._/~ :-]{1,12}", proptest::collection::vec(any::<u8>(), 0..64)), 0..12)
        ) {
            let files: Vec<SourceFile> = files.into_iter().map(|(path, data)| SourceFile { path, mode: FileMode::Regular, data }).collect();
            if let Ok(zip) = create("example.com/m", "v1.0.0", &files) {
                let names = names(&zip);
                let unique: HashSet<&String> = names.iter().collect();
                prop_assert_eq!(unique.len(), names.len());
                prop_assert!(names.iter().all(|n| n.starts_with("example.com/m@v1.0.0/")));
                prop_assert!(crate::gomod::zip::check(&zip, "example.com/m", "v1.0.0").is_ok());
                prop_assert!(crate::gomod::dirhash::hash_zip(&zip).is_ok());
            }
        }
    }

    /// What `go mod download -json` printed as `Sum` for a module zip of
    /// exactly these two files (served from a `file://` proxy).
    const GOLDEN_H1: &str = "h1:fCHMqo5ggHEQvwcrsN81zr5orRk5lClR36KRHpfUjKg=";

    /// The h1: of a fixed tree, as the go command computed it for the same
    /// files (`go mod download` of a module holding exactly these two).
    #[test]
    fn golden_hash_of_a_fixed_tree() {
        let files = [file("go.mod", "module example.com/m\n"), file("m.go", "package m\n")];
        let zip = create("example.com/m", "v1.0.0", &files).unwrap();
        assert_eq!(crate::gomod::dirhash::hash_zip(&zip).unwrap(), GOLDEN_H1);
    }

    fn file(path: &str, data: &str) -> SourceFile {
        SourceFile { path: path.into(), mode: FileMode::Regular, data: data.as_bytes().to_vec() }
    }

    fn names(zip: &[u8]) -> Vec<String> {
        crate::gomod::zip::central_directory(zip).unwrap().iter().map(|e| String::from_utf8_lossy(e.name).into_owned()).collect()
    }

    #[test]
    fn nested_modules_vendored_packages_and_links_are_left_out() {
        let mut link = file("link.go", "a.go");
        link.mode = FileMode::Symlink;
        let files = [
            file("go.mod", "module example.com/m\n\ngo 1.21\n"),
            file("a.go", "package m\n"),
            file("sub/go.mod", "module example.com/m/sub\n"),
            file("sub/s.go", "package sub\n"),
            file("vendor/modules.txt", "# x\n"),
            file("vendor/example.com/x/x.go", "package x\n"),
            file("pkg/vendor/v.go", "package vendor\n"),
            file(".hg_archival.txt", "repo: x\n"),
            link,
        ];
        let zip = create("example.com/m", "v1.0.0", &files).unwrap();
        // Before go 1.24, vendor/modules.txt is kept and pkg/vendor/v.go is
        // (wrongly, as x/mod keeps it for old checksums) a vendored package.
        assert_eq!(names(&zip), ["example.com/m@v1.0.0/go.mod", "example.com/m@v1.0.0/a.go", "example.com/m@v1.0.0/vendor/modules.txt"]);
        let mut new = files.to_vec();
        new[0] = file("go.mod", "module example.com/m\n\ngo 1.24\n");
        let zip = create("example.com/m", "v1.0.0", &new).unwrap();
        assert_eq!(names(&zip), ["example.com/m@v1.0.0/go.mod", "example.com/m@v1.0.0/a.go", "example.com/m@v1.0.0/pkg/vendor/v.go"]);
    }

    #[test]
    fn non_ascii_names_fold_and_vendor_as_in_go() {
        assert_eq!(fold_char('ς'), fold_char('σ'));
        assert_eq!(fold_char('Σ'), fold_char('σ'));
        assert_eq!(fold_char('\u{212A}'), fold_char('k'), "Kelvin sign");
        let e = create("example.com/m", "v1.0.0", &[file("σ.go", ""), file("ς.go", "")]).unwrap_err().to_string();
        assert!(e.contains("case-insensitive"), "{e}");
        // Byte 8 of "doc/日本/vendor/x/y.go" is inside a character: x/mod counts bytes.
        assert!(is_vendored_package("doc/日本/vendor/x/y.go", false));
    }

    #[test]
    fn forbidden_paths_and_collisions_refuse_the_zip() {
        for (files, why) in [
            (vec![file("a.go", ""), file("A.go", "")], "case-insensitive"),
            (vec![file("GO.MOD", "module x\n")], "lowercase"),
            (vec![file("a:b.go", "")], "a:b.go"),
            (vec![file("../a.go", "")], "not clean"),
            (vec![file("d", ""), file("d/x.go", "")], "both a file and a directory"),
        ] {
            let e = create("example.com/m", "v1.0.0", &files).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        assert!(create("example.com/m", "v1.0", &[]).is_err());
        assert!(create("example.com/m", "v2.0.0", &[]).is_err(), "a v2 needs a /v2 path");
        assert!(create("example.com/m", "v2.0.0+incompatible", &[]).is_ok());
    }

    #[test]
    fn the_zip_hashes_like_the_go_commands() {
        let files = [file("go.mod", "module example.com/m\n"), file("a.go", "package m\n")];
        let zip = create("example.com/m", "v1.0.0", &files).unwrap();
        let h = crate::gomod::dirhash::hash_zip(&zip).unwrap();
        let lines: String = {
            use sha2::Digest as _;
            let mut ls: Vec<String> = files
                .iter()
                .map(|f| {
                    let hex: String = sha2::Sha256::digest(&f.data).iter().map(|b| format!("{b:02x}")).collect();
                    format!("{hex}  example.com/m@v1.0.0/{}\n", f.path)
                })
                .collect();
            ls.sort();
            ls.concat()
        };
        use base64::Engine as _;
        use sha2::Digest as _;
        assert_eq!(h, format!("h1:{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(lines.as_bytes()))));
    }
}
