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
//! major versions (`/vN` directories or a go.mod saying `/vN`); queries
//! (branches, tags, `HEAD`, commit hashes and prefixes) resolved to the
//! version cmd/go would give them, pseudo-versions in their three forms
//! (retracted tags never a base) with the tag digest cmd/go records. It never reaches a repository but through
//! [`repo::Mirror`], never answers a checksum-database request, and never
//! decides privacy: the caller's guard routes private paths here.

pub mod discover;
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

/// Where a source's repositories are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRemote {
    /// A URL in which `{repo}` stands for the repository root without its
    /// host; the root is the module path's first `depth` elements.
    Template { url: String, depth: usize },
    /// Found as the go command finds it, from go-import tags (`insecure`:
    /// plain `http` after `https`, like `GOINSECURE`).
    GoGet { insecure: bool },
}

/// One `[[git]]` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// Module paths it serves (GOPRIVATE syntax).
    pub pattern: PrefixPatterns,
    pub remote: GitRemote,
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
    /// go-get discoveries by module path, with when they were made (kept
    /// for `refs_ttl`).
    discovered: Mutex<HashMap<String, (discover::GoImport, std::time::Instant)>>,
    /// Most fetches at a time per Git host.
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<repo::HostSlots>>>,
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
    pub fn new(sources: Vec<GitSource>, root: PathBuf, refs_ttl: Duration, timeout: Duration, per_host: usize) -> GitSources {
        GitSources {
            sources,
            root,
            refs_ttl,
            timeout,
            mirrors: Mutex::default(),
            discovered: Mutex::default(),
            per_host,
            hosts: Mutex::default(),
        }
    }

    /// No sources: every `direct` request is a 404 naming what to configure.
    pub fn none() -> GitSources {
        GitSources::new(Vec::new(), PathBuf::new(), Duration::ZERO, Duration::ZERO, 1)
    }

    /// The source serving `module`, if any.
    pub fn source_of(&self, module: &str) -> Option<&GitSource> {
        self.sources.iter().find(|s| s.pattern.matches(module))
    }

    /// The repository root and remote URL of `module` under `source`.
    fn locate(&self, source: &GitSource, module: &str) -> Result<(String, String), FetchError> {
        match &source.remote {
            GitRemote::Template { url, depth } => {
                let elements: Vec<&str> = module.split('/').collect();
                if elements.len() < *depth {
                    return Err(not_found(format!("{module}: shorter than its repository root (depth {depth})")));
                }
                Ok((elements[..*depth].join("/"), url.replace("{repo}", &elements[1..*depth].join("/"))))
            }
            GitRemote::GoGet { insecure } => {
                let known = |d: &HashMap<String, (discover::GoImport, std::time::Instant)>| {
                    d.get(module).filter(|(_, at)| at.elapsed() < self.refs_ttl).map(|(im, _)| (im.prefix.clone(), im.repo.clone()))
                };
                if let Some(found) = known(&self.discovered.lock().unwrap_or_else(|e| e.into_inner())) {
                    return Ok(found);
                }
                // Not under the lock: one slow host must not hold up the rest.
                let im = discover::discover(module, *insecure, self.timeout)?;
                let mut discovered = self.discovered.lock().unwrap_or_else(|e| e.into_inner());
                if discovered.len() >= 10_000 {
                    discovered.clear();
                }
                discovered.insert(module.to_string(), (im.clone(), std::time::Instant::now()));
                Ok((im.prefix, im.repo))
            }
        }
    }

    fn mirror(&self, remote: &str) -> Result<Arc<Mirror>, FetchError> {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = mirrors.get(remote) {
            return Ok(m.clone());
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|e| FetchError::Unavailable { upstream: "git".into(), message: format!("{}: {e}", self.root.display()) })?;
        let slots = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            hosts.entry(repo::host_of(remote).to_string()).or_insert_with(|| Arc::new(repo::HostSlots::new(self.per_host))).clone()
        };
        let m = Arc::new(Mirror::open(&self.root, remote, self.timeout, slots).map_err(|e| git_failure(remote, e))?);
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
            // semver's canonical form drops build metadata, so a tag
            // spelled `v2.0.0+incompatible` is ignored, as cmd/go ignores it.
            if semver::canonical(v).is_none_or(|c| c != v) || semver::is_pseudo_version(v) {
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
        let local = self.mirror.tags().map_err(|e| git_failure(self.mirror.remote(), e))?;
        if let Some(t) = find(local) {
            return Ok(t);
        }
        // A mirror never refreshed fetches just this tag (and its history):
        // a version asked for by name needs nothing else.
        if !self.mirror.was_refreshed() && self.mirror.fetch_tag(name).is_ok() {
            if let Some(t) = find(self.mirror.tags().map_err(|e| git_failure(self.mirror.remote(), e))?) {
                return Ok(t);
            }
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
        let tag = if semver::is_pseudo_version(version) { self.pseudo_commit(version)? } else { self.tag_of(version)? };
        let invalid = |why: String| not_found(format!("{}@{version}: invalid version: {why}", self.module));
        let file1 = join(&self.code_dir, "go.mod");
        let gomod1 = self.read(&tag.commit, &file1)?;
        let mpath1 = gomod1.as_deref().and_then(crate::gomod::modfile::module_path);
        let found1 = mpath1.as_deref().is_some_and(|m| is_major(m, self.path_major));
        if version.ends_with("+incompatible") {
            if module::match_path_major(version.trim_end_matches("+incompatible"), "") {
                return Err(invalid(format!(
                    "+incompatible suffix not allowed: major version {} is compatible",
                    semver::major(version).unwrap_or("v0")
                )));
            }
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

    /// A version's `.info` as the go command keeps it on disk (and so as
    /// proxies serve it): Origin without the tag digest (it never matters
    /// once a version is named), and without a ref for a pseudo-version.
    fn info(&self, version: &str) -> Result<Vec<u8>, FetchError> {
        let (tag, _, _) = self.checked(version)?;
        let time = self.commit_time(&tag.commit)?;
        let reference = if semver::is_pseudo_version(version) { None } else { Some(format!("refs/tags/{}", tag.name)) };
        self.info_json(version, time, &tag.commit, reference, false)
    }

    fn commit_time(&self, commit: &str) -> Result<i64, FetchError> {
        self.mirror.commit_time(commit).map_err(|e| git_failure(self.mirror.remote(), e))
    }

    /// The `.info` cmd/go writes: Version, Time, and the Origin that says
    /// where it came from (with the tag set that decided a pseudo-version).
    fn info_json(&self, version: &str, time: i64, hash: &str, reference: Option<String>, with_tags: bool) -> Result<Vec<u8>, FetchError> {
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
            #[serde(skip_serializing_if = "String::is_empty")]
            tag_prefix: String,
            #[serde(skip_serializing_if = "String::is_empty")]
            tag_sum: String,
            #[serde(rename = "Ref", skip_serializing_if = "Option::is_none")]
            reference: Option<String>,
        }
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Info<'a> {
            version: &'a str,
            time: String,
            origin: Origin<'a>,
        }
        let (tag_prefix, tag_sum) = if with_tags { self.tag_sum()? } else { (String::new(), String::new()) };
        let info = Info {
            version,
            time: rfc3339_utc(time),
            origin: Origin { vcs: "git", url: self.mirror.remote(), subdir: &self.code_dir, hash, tag_prefix, tag_sum, reference },
        };
        serde_json::to_vec(&info).map_err(|e| FetchError::Invalid(e.to_string()))
    }

    /// cmd/go's `Tags(prefix)` digest of the tags that could be a
    /// pseudo-version's base: `(prefix, "t1:" + base64(sha256 of each
    /// `"name" hash` line))`, names sorted, hashes of the commits.
    fn tag_sum(&self) -> Result<(String, String), FetchError> {
        use base64::Engine as _;
        use sha2::Digest as _;
        let mut prefix = self.tag_prefix();
        if let Some(major) = self.path_major.strip_prefix('/') {
            prefix.push_str(major);
            prefix.push('.');
        }
        let dir = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
        let mut tags: Vec<Tag> = self.tags(Duration::MAX)?.into_iter().filter(|t| t.name.starts_with(&prefix)).collect();
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        let mut h = sha2::Sha256::new();
        for t in &tags {
            let name = t.name.strip_prefix(dir).unwrap_or(&t.name);
            let canonical = semver::canonical(name);
            if canonical.is_some_and(|c| name.starts_with(&*c)) && !semver::is_pseudo_version(name) {
                h.update(format!("{} {}\n", go_quote(&t.name), t.commit).as_bytes());
            }
        }
        Ok((prefix, format!("t1:{}", base64::engine::general_purpose::STANDARD.encode(h.finalize()))))
    }

    /// The commit a pseudo-version names, checked as cmd/go checks one:
    /// its revision prefix resolves, its time stamp is the commit's, and
    /// its base (if any) is a tag of this module below the commit.
    fn pseudo_commit(&self, version: &str) -> Result<Tag, FetchError> {
        let invalid = |why: String| not_found(format!("{}@{version}: invalid pseudo-version: {why}", self.module));
        let rev = semver::pseudo_version_rev(version).ok_or_else(|| invalid("no revision".into()))?;
        // Its base is checked against every tag: a mirror holding one tag
        // (fetched for a version asked by name) is brought up to date first.
        self.tags(Duration::MAX)?;
        let stamp = semver::pseudo_version_time(version).ok_or_else(|| invalid("no time stamp".into()))?;
        let lookup = || self.mirror.commit_of(rev).map_err(|e| git_failure(self.mirror.remote(), e));
        let commit = match lookup()? {
            Some(c) => c,
            None => {
                self.tags(Duration::ZERO)?;
                lookup()?.ok_or_else(|| not_found(format!("{}@{version}: invalid version: unknown revision {rev}", self.module)))?
            }
        };
        if rev.len() != 12 || !commit.starts_with(rev) {
            return Err(invalid(format!(
                "revision {rev} is not the 12-character short hash of its commit ({})",
                &commit[..commit.len().min(12)]
            )));
        }
        let time = self.commit_time(&commit)?;
        if crate::gomod::pseudo::timestamp(time) != stamp {
            return Err(invalid(format!("does not match version-control timestamp (expected {})", crate::gomod::pseudo::timestamp(time))));
        }
        let base = crate::gomod::pseudo::base(version).unwrap_or_default();
        if base.is_empty() && self.path_major.is_empty() && semver::major(version) == Some("v1") {
            return Err(invalid("major version without preceding tag must be v0, not v1".into()));
        }
        let prefix = self.tag_prefix();
        if let Some(t) =
            self.tags(Duration::MAX)?.iter().find(|t| t.commit == commit && !base.is_empty() && t.name == format!("{prefix}{base}"))
        {
            return Err(invalid(format!(
                "tag ({}) found on revision {rev} is already canonical, so should not be replaced with a pseudo-version derived from that tag",
                t.name
            )));
        }
        if !base.is_empty() {
            let merged = self.mirror.tags_merged_into(&commit).map_err(|e| git_failure(self.mirror.remote(), e))?;
            if !merged.iter().any(|t| self.tag_version(t).is_some_and(|(v, _)| v == base)) {
                return Err(invalid(format!("revision {rev} is not a descendent of preceding tag ({base})")));
            }
        }
        Ok(Tag { name: rev.to_string(), commit })
    }

    /// cmd/go's `tagToVersion`: the canonical version a tag of this module
    /// stands for, and whether the tag is exactly that.
    fn tag_version(&self, tag: &str) -> Option<(String, bool)> {
        let trimmed = tag.strip_prefix(&self.tag_prefix())?;
        if semver::is_pseudo_version(tag) {
            return None;
        }
        let v = semver::canonical(trimmed)?.into_owned();
        if !trimmed.starts_with(&v) {
            return None;
        }
        let exact = v == trimmed;
        Some((v, exact))
    }

    /// The version intervals the module's latest release retracts.
    fn retracted(&self) -> Result<Vec<(String, String)>, FetchError> {
        let versions = self.versions(&self.tags(Duration::MAX)?)?;
        let compatible: Vec<&String> = versions.iter().take_while(|v| !v.ends_with("+incompatible")).collect();
        let Some(highest) = compatible.iter().rev().find(|v| !semver::is_prerelease(v)).or(compatible.last()) else {
            return Ok(Vec::new());
        };
        let go_mod = self.checked(highest).map(|(_, _, m)| m).unwrap_or_default();
        Ok(go_mod.map(|m| crate::gomod::modfile::retractions(&m)).unwrap_or_default())
    }

    /// Whether a v2+ version may be `+incompatible` at `commit` (cmd/go's
    /// `canUseIncompatible`): only at the root of a path without a major
    /// suffix, and only without a go.mod there or in `vN/`.
    fn can_use_incompatible(&self, commit: &str, v: &str) -> Result<bool, FetchError> {
        if !self.code_dir.is_empty() || !self.path_major.is_empty() || self.read(commit, "go.mod")?.is_some() {
            return Ok(false);
        }
        match semver::major(v) {
            Some(major) => Ok(self.read(commit, &format!("{major}/go.mod"))?.is_none()),
            None => Ok(true),
        }
    }

    /// The version cmd/go gives `commit` when a query names it: the
    /// highest canonical tag on it (retracted ones aside), else a
    /// pseudo-version above the highest allowed tag below it.
    fn version_of(&self, commit: &str, time: i64) -> Result<String, FetchError> {
        let retracted = self.retracted()?;
        let is_retracted = |v: &str| retracted.iter().any(|(lo, hi)| semver::compare(lo, v).is_le() && semver::compare(v, hi).is_le());
        let tags = self.tags(Duration::MAX)?;
        let mut highest: Option<String> = None;
        for t in tags.iter().filter(|t| t.commit == commit) {
            let Some((v, true)) = self.tag_version(&t.name) else { continue };
            if highest.as_deref().is_none_or(|h| semver::compare(h, &v).is_lt())
                && !is_retracted(&v)
                && (module::match_path_major(&v, self.path_major) || self.can_use_incompatible(commit, &v)?)
            {
                highest = Some(v);
            }
        }
        let with_incompatible = |v: String| -> Result<String, FetchError> {
            if !module::match_path_major(&v, self.path_major) && self.can_use_incompatible(commit, &v)? {
                Ok(format!("{v}+incompatible"))
            } else {
                Ok(v)
            }
        };
        if let Some(v) = highest {
            return with_incompatible(v);
        }
        let mut base: Option<String> = None;
        for t in self.mirror.tags_merged_into(commit).map_err(|e| git_failure(self.mirror.remote(), e))? {
            let Some((v, _)) = self.tag_version(&t) else { continue };
            if is_retracted(&v) || !(module::match_path_major(&v, self.path_major) || self.can_use_incompatible(commit, &v)?) {
                continue;
            }
            if base.as_deref().is_none_or(|b| semver::compare(b, &v).is_lt()) {
                base = Some(v);
            }
        }
        let major = self.path_major.strip_prefix('/').unwrap_or("");
        let short = &commit[..commit.len().min(12)];
        with_incompatible(crate::gomod::pseudo::pseudo_version(major, base.as_deref().unwrap_or(""), time, short))
    }

    /// A query (`@v/QUERY.info`: a branch, a tag, `HEAD`, a commit hash or
    /// prefix) resolved as cmd/go's `Stat` resolves it, with its `.info`.
    fn query(&self, query: &str, refs_ttl: Duration) -> Result<Vec<u8>, FetchError> {
        self.tags(refs_ttl)?;
        let refs = self.mirror.refs().map_err(|e| git_failure(self.mirror.remote(), e))?;
        let named = |name: String| refs.iter().find(|(n, _)| *n == name).map(|(n, h)| (h.clone(), Some(n.clone())));
        let unknown = || not_found(format!("{}@{query}: invalid version: unknown revision {query}", self.module));
        let tag_name = if semver::is_valid(query) { format!("{}{query}", self.tag_prefix()) } else { query.to_string() };
        let (commit, reference) = if let Some(found) = named(format!("refs/tags/{tag_name}")) {
            found
        } else if let Some(found) = named(format!("refs/heads/{query}")) {
            found
        } else if query == "HEAD" {
            (self.mirror.head().ok_or_else(unknown)?, Some("HEAD".to_string()))
        } else if (7..=40).contains(&query.len()) && query.bytes().all(|b| b.is_ascii_hexdigit()) {
            // A hash the mirror has names no ref, as for cmd/go with the
            // commit already in its own clone.
            let tips: Vec<&(String, String)> = refs.iter().filter(|(_, h)| h.starts_with(query)).collect();
            if tips.iter().any(|(_, h)| *h != tips[0].1) {
                return Err(not_found(format!("{}@{query}: ambiguous revision {query}", self.module)));
            }
            let commit = self.mirror.commit_of(query).map_err(|e| git_failure(self.mirror.remote(), e))?;
            (commit.ok_or_else(unknown)?, None)
        } else {
            return Err(unknown());
        };
        let time = self.commit_time(&commit)?;
        let version = self.version_of(&commit, time)?;
        // The version must be one this module can have at that commit.
        self.checked(&version)?;
        let pseudo = semver::is_pseudo_version(&version);
        self.info_json(&version, time, &commit, reference.filter(|r| *r != commit), pseudo)
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
    let (year, month, day, hour, minute, second) = crate::gomod::pseudo::civil(seconds);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// `s` as Go's `%q` writes it (tag names are printable ASCII in practice;
/// anything else is escaped as Go would escape its bytes).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (' '..='~').contains(&c) => out.push(c),
            c if !c.is_control() && c as u32 > 0x7f => out.push(c),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('"');
    out
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
        let Some((path_prefix, path_major)) = module::split_path_version(req.module) else {
            return Err(not_found(format!("{}: malformed major version suffix", req.module)));
        };
        let (code_root, remote) = self.locate(source, req.module)?;
        let code_dir = if code_root == req.module {
            String::new()
        } else if path_prefix == code_root || path_prefix.starts_with(&format!("{code_root}/")) {
            path_prefix[code_root.len()..].trim_matches('/').to_string()
        } else {
            return Err(not_found(format!("repository rooted at {code_root} cannot contain module {}", req.module)));
        };
        let here = Located { module: req.module, mirror: self.mirror(&remote)?, code_dir, path_major };
        match req.kind {
            Kind::List => Ok(here.versions(&here.tags(self.refs_ttl)?)?.iter().map(|v| format!("{v}\n")).collect::<String>().into_bytes()),
            // With tags, the fill derives `@latest` from `list`, as the go
            // command would; without, it is the default branch's tip.
            Kind::Latest => match here.versions(&here.tags(self.refs_ttl)?)?.is_empty() {
                true => here.query("HEAD", self.refs_ttl),
                false => Err(not_found(format!("{}: @latest comes from the version list", req.module))),
            },
            Kind::Info if module::canonical_version(req.version).is_none_or(|c| c != req.version) => here.query(req.version, self.refs_ttl),
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
