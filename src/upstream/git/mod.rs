//! `direct`: modules straight from their Git repositories, as the go
//! command's own `direct` mode would produce them, with no go command on
//! the host. Each `[[git]]` source of `--config` maps module paths (a
//! GOPRIVATE-style pattern) to a repository: the first `depth` path
//! elements are the repository root, and `{repo}` in the remote is that
//! root without its host.
//!
//! Owns the Go rules that turn a repository into a module: versions from
//! semver tags (`+incompatible` for v2+ tags without a go.mod, listed as
//! cmd/go lists them), `.info` with the commit time and its `Origin`, the
//! go.mod at the tag (or one synthesized), and the zip of the tag's tree by
//! the module zip rules; modules in subdirectories (prefixed tags) and
//! major versions (`/vN` directories or a go.mod saying `/vN`). Branch and
//! commit queries and pseudo-versions are not resolved yet (404 with a
//! reason). It never reaches a repository but through
//! [`repo::Mirror`], never answers a checksum-database request, and never
//! decides privacy: the caller's guard routes private paths here.

pub mod repo;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use repo::{GitError, Mirror, Tag};

use super::{Fetch, Fetcher};
use crate::artifact::{FetchError, Kind};
use crate::gomod::modzip::{self, FileMode, SourceFile};
use crate::gomod::pattern::PrefixPatterns;
use crate::gomod::{module, semver};

/// One `[[git]]` source.
#[derive(Debug, Clone)]
pub struct GitSource {
    /// Module paths it serves (GOPRIVATE syntax).
    pub pattern: PrefixPatterns,
    /// The remote, `{repo}` standing for the repository root without its host.
    pub remote: String,
    /// Path elements of the repository root, host included.
    pub depth: usize,
    /// Whether its modules may go to public upstreams and checksum
    /// databases (by default a Git source's modules are private).
    pub public: bool,
}

/// Every `[[git]]` source and the mirrors they have cloned.
pub struct GitSources {
    sources: Vec<GitSource>,
    /// `DATA/git`.
    root: PathBuf,
    /// How long fetched refs answer a `list` before they are fetched again.
    refs_ttl: Duration,
    /// Most one git command may take.
    timeout: Duration,
    mirrors: Mutex<HashMap<String, Arc<Mirror>>>,
}

impl std::fmt::Debug for GitSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSources").field("sources", &self.sources).field("root", &self.root).finish_non_exhaustive()
    }
}

fn not_found(message: String) -> FetchError {
    FetchError::NotFound { gone: false, message }
}

/// A git failure, as the fill reports it: the remote is named.
fn git_failure(remote: &str, e: GitError) -> FetchError {
    match e {
        GitError::Timeout { .. } => FetchError::Timeout { upstream: format!("git {remote}"), waiting: "git" },
        e => FetchError::Unavailable { upstream: format!("git {remote}"), message: e.to_string() },
    }
}

impl GitSources {
    pub fn new(sources: Vec<GitSource>, root: PathBuf, refs_ttl: Duration, timeout: Duration) -> GitSources {
        GitSources { sources, root, refs_ttl, timeout, mirrors: Mutex::default() }
    }

    /// No sources: every `direct` request is a 404 naming what to configure.
    pub fn none() -> GitSources {
        GitSources::new(Vec::new(), PathBuf::new(), Duration::ZERO, Duration::ZERO)
    }

    /// The source serving `module`, if any.
    pub fn source_of(&self, module: &str) -> Option<&GitSource> {
        self.sources.iter().find(|s| s.pattern.matches(module))
    }

    /// The patterns of the sources whose modules are private.
    pub fn private_patterns(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter(|s| !s.public).flat_map(|s| s.pattern.sources())
    }

    fn mirror(&self, remote: &str) -> Result<Arc<Mirror>, FetchError> {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = mirrors.get(remote) {
            return Ok(m.clone());
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|e| FetchError::Unavailable { upstream: "git".into(), message: format!("{}: {e}", self.root.display()) })?;
        let m = Arc::new(Mirror::open(&self.root, remote, self.timeout).map_err(|e| git_failure(remote, e))?);
        mirrors.insert(remote.to_string(), m.clone());
        Ok(m)
    }
}

/// A module of a repository: where it is and what it is called (cmd/go's
/// codeRepo): `module` = the repository root, then `code_dir`, then
/// `path_major` (`/v2`...).
struct Located<'a> {
    module: &'a str,
    mirror: Arc<Mirror>,
    /// The module's directory in the repository ("" at the root); its tags
    /// are prefixed `code_dir/`.
    code_dir: String,
    path_major: &'a str,
}

/// Whether go.mod's `declared` path has the major suffix `path_major`
/// (cmd/go's `isMajor`: only the major counts, so a fork's go.mod serves).
fn is_major(declared: &str, path_major: &str) -> bool {
    match module::split_path_version(declared) {
        Some((_, major)) => major == path_major,
        None => false,
    }
}

impl Located<'_> {
    fn tags(&self, max_age: Duration) -> Result<Vec<Tag>, FetchError> {
        self.mirror.refresh(max_age).map_err(|e| git_failure(self.mirror.remote(), e))?;
        self.mirror.tags().map_err(|e| git_failure(self.mirror.remote(), e))
    }

    fn read(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, FetchError> {
        self.mirror.read_file(commit, path).map_err(|e| git_failure(self.mirror.remote(), e))
    }

    /// The go.mod in the module's directory at `commit`.
    fn go_mod(&self, commit: &str) -> Result<Option<Vec<u8>>, FetchError> {
        self.read(commit, &join(&self.code_dir, "go.mod"))
    }

    fn tag_prefix(&self) -> String {
        if self.code_dir.is_empty() {
            String::new()
        } else {
            format!("{}/", self.code_dir)
        }
    }

    /// The versions cmd/go lists: canonical semver tags (not pseudo-versions)
    /// of this major, then v2+ tags as `+incompatible`, unless the latest
    /// compatible version (or the latest at that major) has a go.mod.
    fn versions(&self, tags: &[Tag]) -> Result<Vec<String>, FetchError> {
        // (version, commit) of every tag of this module's directory.
        let prefix = self.tag_prefix();
        let mut list: Vec<(&str, &str)> = Vec::new();
        let mut incompatible: Vec<(&str, &str)> = Vec::new();
        for t in tags {
            let Some(v) = t.name.strip_prefix(prefix.as_str()) else { continue };
            if module::canonical_version(v).is_none_or(|c| c != v) || semver::is_pseudo_version(v) {
                continue;
            }
            if module::check_path_major(v, self.path_major).is_ok() {
                list.push((v, &t.commit));
            } else if self.code_dir.is_empty() && self.path_major.is_empty() && semver::major(v) > Some("v1") {
                incompatible.push((v, &t.commit));
            }
        }
        let by_version = |a: &(&str, &str), b: &(&str, &str)| semver::compare(a.0, b.0);
        list.sort_by(by_version);
        incompatible.sort_by(by_version);
        let mut out: Vec<String> = list.iter().map(|(v, _)| v.to_string()).collect();
        if let Some((_, latest)) = list.last() {
            if self.go_mod(latest)?.is_some() {
                return Ok(out);
            }
        }
        let mut i = 0;
        while i < incompatible.len() {
            let major = semver::major(incompatible[i].0);
            let end = i + incompatible[i..].iter().take_while(|(v, _)| semver::major(v) == major).count();
            if self.go_mod(incompatible[end - 1].1)?.is_none() {
                out.extend(incompatible[i..end].iter().map(|(v, _)| format!("{v}+incompatible")));
            }
            i = end;
        }
        Ok(out)
    }

    /// The tag `version` names, fetching once more if it is not known yet.
    fn tag_of(&self, version: &str) -> Result<Tag, FetchError> {
        let name = format!("{}{}", self.tag_prefix(), version.strip_suffix("+incompatible").unwrap_or(version));
        let name = name.as_str();
        let find = |tags: Vec<Tag>| tags.into_iter().find(|t| t.name == name);
        if let Some(t) = find(self.tags(Duration::MAX)?) {
            return Ok(t);
        }
        find(self.tags(Duration::ZERO)?)
            .ok_or_else(|| not_found(format!("{}@{version}: invalid version: unknown revision {name}", self.module)))
    }

    /// The tag of `version`, the directory its module is in at that
    /// revision and its go.mod, found as cmd/go's `findDir` finds them: a
    /// `/vN` module may live in the `vN/` subdirectory or, with a go.mod
    /// saying `/vN`, in the module's own; v0/v1 at the repository root may
    /// have no go.mod; a v2+ version of a path without a major suffix is
    /// `+incompatible` exactly when its tree has no go.mod.
    fn checked(&self, version: &str) -> Result<(Tag, String, Option<Vec<u8>>), FetchError> {
        if semver::is_pseudo_version(version) {
            return Err(not_found(format!("{}@{version}: pseudo-versions are not resolved from Git yet", self.module)));
        }
        let tag = self.tag_of(version)?;
        let invalid = |why: String| not_found(format!("{}@{version}: invalid version: {why}", self.module));
        let file1 = join(&self.code_dir, "go.mod");
        let gomod1 = self.read(&tag.commit, &file1)?;
        let mpath1 = gomod1.as_deref().and_then(crate::gomod::modfile::module_path);
        let found1 = mpath1.as_deref().is_some_and(|m| is_major(m, self.path_major));
        if version.ends_with("+incompatible") {
            if !self.code_dir.is_empty() || !self.path_major.is_empty() {
                return Err(invalid("+incompatible suffix not allowed: module path has a major version or is in a subdirectory".into()));
            }
            if gomod1.is_some() {
                return Err(invalid(
                    "+incompatible suffix not allowed: module contains a go.mod file, so module path must match major version".into(),
                ));
            }
            return Ok((tag, String::new(), None));
        }
        let root = self.module.strip_suffix(self.path_major).unwrap_or(self.module);
        let root = root.strip_suffix(&self.code_dir).map(|r| r.trim_end_matches('/')).unwrap_or(root);
        if let Some(major) = self.path_major.strip_prefix('/') {
            let dir2 = join(&self.code_dir, major);
            let file2 = join(&dir2, "go.mod");
            if let Some(gomod2) = self.read(&tag.commit, &file2)? {
                let mpath2 = crate::gomod::modfile::module_path(&gomod2);
                return match mpath2 {
                    Some(m) if is_major(&m, self.path_major) && found1 => Err(invalid(format!(
                        "{file1} and ...{}/go.mod both have ...{} module paths at revision {}",
                        self.path_major, self.path_major, tag.name
                    ))),
                    Some(m) if is_major(&m, self.path_major) => Ok((tag, dir2, Some(gomod2))),
                    Some(m) => {
                        Err(invalid(format!("{root}/{file2} has non-...{} module path {m:?} at revision {}", self.path_major, tag.name)))
                    }
                    None => Err(invalid(format!("{root}/{file2} is missing module path at revision {}", tag.name))),
                };
            }
        }
        if found1 {
            return Ok((tag, self.code_dir.clone(), gomod1));
        }
        if let Some(m) = mpath1 {
            let why = if self.path_major.is_empty() {
                format!("{file1} has post-{} module path {m:?} at revision {}", semver::major(version).unwrap_or("v1"), tag.name)
            } else {
                format!("{file1} has non-...{} module path {m:?} at revision {}", self.path_major, tag.name)
            };
            return Err(invalid(why));
        }
        if gomod1.is_some() {
            return Err(invalid(format!("{file1} is missing module path at revision {}", tag.name)));
        }
        if self.code_dir.is_empty() && self.path_major.is_empty() {
            // No go.mod at the root: fine for v0/v1.
            if module::check_path_major(version, "").is_err() {
                return Err(invalid(format!("should be v0 or v1, not {}", semver::major(version).unwrap_or("?"))));
            }
            return Ok((tag, String::new(), None));
        }
        Err(invalid(format!(
            "missing {}/go.mod at revision {}",
            self.module.strip_suffix(self.path_major).unwrap_or(self.module),
            tag.name
        )))
    }

    fn info(&self, version: &str) -> Result<Vec<u8>, FetchError> {
        let (tag, _, _) = self.checked(version)?;
        let time = self.mirror.commit_time(&tag.commit).map_err(|e| git_failure(self.mirror.remote(), e))?;
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Origin<'a> {
            #[serde(rename = "VCS")]
            vcs: &'a str,
            #[serde(rename = "URL")]
            url: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            subdir: &'a str,
            hash: &'a str,
            #[serde(rename = "Ref")]
            reference: String,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Info<'a> {
            version: &'a str,
            time: String,
            origin: Origin<'a>,
        }
        let info = Info {
            version,
            time: rfc3339_utc(time),
            origin: Origin {
                vcs: "git",
                url: self.mirror.remote(),
                subdir: &self.code_dir,
                hash: &tag.commit,
                reference: format!("refs/tags/{}", tag.name),
            },
        };
        serde_json::to_vec(&info).map_err(|e| FetchError::Invalid(e.to_string()))
    }

    fn go_mod_file(&self, version: &str) -> Result<Vec<u8>, FetchError> {
        let (_, _, go_mod) = self.checked(version)?;
        // No go.mod: the one the go command synthesizes.
        Ok(go_mod.unwrap_or_else(|| format!("module {}\n", crate::gomod::modfile::auto_quote(self.module)).into_bytes()))
    }

    fn zip(&self, version: &str) -> Result<Vec<u8>, FetchError> {
        let (tag, dir, _) = self.checked(version)?;
        let archive = self.mirror.archive(&tag.commit, &dir).map_err(|e| git_failure(self.mirror.remote(), e))?;
        let mut files = archive_files(&archive, &dir).map_err(|e| FetchError::Invalid(format!("git archive of {}: {e}", tag.name)))?;
        // A module in a subdirectory gets the repository's LICENSE, as cmd/go gives it.
        if !dir.is_empty() && !files.iter().any(|f| f.path == "LICENSE") {
            if let Some(data) = self.read(&tag.commit, "LICENSE")? {
                files.push(SourceFile { path: "LICENSE".into(), mode: FileMode::Regular, data });
            }
        }
        modzip::create(self.module, version, &files)
            .map_err(|e| FetchError::NotFound { gone: true, message: format!("{}@{version}: {e}", self.module) })
    }
}

/// `dir/name`, or `name` at the root.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The files below `dir` of a `git archive --format=zip --prefix=prefix/`
/// output, relative to `dir`, directories dropped (as cmd/go's coderepo does).
fn archive_files(archive: &[u8], dir: &str) -> Result<Vec<SourceFile>, String> {
    let strip = if dir.is_empty() { "prefix/".to_string() } else { format!("prefix/{dir}/") };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).map_err(|e| e.to_string())?;
    let mut files = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| e.to_string())?;
        if !entry.name().starts_with("prefix/") {
            return Err(format!("entry {:?} outside the archive's prefix", entry.name()));
        }
        let Some(name) = entry.name().strip_prefix(strip.as_str()).map(str::to_string) else { continue };
        if name.is_empty() || name.ends_with('/') {
            continue;
        }
        let mode = match entry.unix_mode().map(|m| m & 0o170000) {
            Some(0o120000) => FileMode::Symlink,
            Some(0o100000) | None => FileMode::Regular,
            Some(_) => FileMode::Other,
        };
        if entry.size() > modzip::MAX_ZIP_FILE {
            return Err(format!("{name}: larger than a module may be"));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(|e| format!("{name}: {e}"))?;
        files.push(SourceFile { path: name, mode, data });
    }
    Ok(files)
}

/// `seconds` since the epoch as Go's JSON writes a UTC time.
fn rfc3339_utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

impl Fetcher for GitSources {
    fn fetch(&self, req: &Fetch<'_>) -> Result<Vec<u8>, FetchError> {
        if req.kind.is_sumdb() {
            return Err(not_found("direct: checksum databases are not served from Git".into()));
        }
        let Some(source) = self.source_of(req.module) else {
            return Err(not_found(format!(
                "direct: no [[git]] source in --config matches {}; add one whose pattern covers it",
                req.module
            )));
        };
        let elements: Vec<&str> = req.module.split('/').collect();
        if elements.len() < source.depth {
            return Err(not_found(format!("{}: shorter than its repository root (depth {})", req.module, source.depth)));
        }
        let Some((path_prefix, path_major)) = module::split_path_version(req.module) else {
            return Err(not_found(format!("{}: malformed major version suffix", req.module)));
        };
        let code_root = elements[..source.depth].join("/");
        let code_dir = if code_root == req.module {
            String::new()
        } else if path_prefix == code_root || path_prefix.starts_with(&format!("{code_root}/")) {
            path_prefix[code_root.len()..].trim_matches('/').to_string()
        } else {
            return Err(not_found(format!("repository rooted at {code_root} cannot contain module {}", req.module)));
        };
        let remote = source.remote.replace("{repo}", &elements[1..source.depth].join("/"));
        let here = Located { module: req.module, mirror: self.mirror(&remote)?, code_dir, path_major };
        match req.kind {
            Kind::List => Ok(here.versions(&here.tags(self.refs_ttl)?)?.iter().map(|v| format!("{v}\n")).collect::<String>().into_bytes()),
            // The fill derives `@latest` from `list`, as for a file tree.
            Kind::Latest => Err(not_found(format!("{}: @latest comes from the version list", req.module))),
            Kind::Info if module::canonical_version(req.version).is_none_or(|c| c != req.version) => {
                Err(not_found(format!("{}@{}: branch and commit queries are not resolved from Git yet", req.module, req.version)))
            }
            Kind::Info => here.info(req.version),
            Kind::Mod => here.go_mod_file(req.version),
            Kind::Zip => here.zip(req.version),
            _ => Err(not_found("direct: not a module request".into())),
        }
    }

    fn name(&self) -> &str {
        "direct"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_go_writes_them() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_704_164_645), "2024-01-02T03:04:05Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }
}
