//! One Git repository's bare mirror under `DATA/git/`, and every `git`
//! command run on it: the host's `git` (so its ssh keys, `insteadOf`
//! rewrites and credential helpers apply, exactly as the host's git is
//! configured), never interactive, every command bounded in time.
//!
//! Owns the mirror's layout (as the go command keeps its own: `git init
//! --bare`, remote `origin`, heads and tags fetched with `-f`, export
//! attributes off) and the one-fetch-at-a-time rule per repository. It
//! knows no Go rule: revisions in, bytes out.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The least time between two fetches of a repository's refs, even when
/// a request names something the mirror does not know.
pub const FORCED_REFRESH_FLOOR: Duration = Duration::from_secs(5);

/// Why a git command gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitError {
    /// `git` could not be started at all.
    Spawn(String),
    /// It ran past its time and was killed.
    Timeout { what: String, after: Duration },
    /// It failed; `stderr` says why (auth refused, no such repository...).
    Failed { what: String, stderr: String },
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::Spawn(e) => write!(f, "running git: {e}"),
            GitError::Timeout { what, after } => write!(f, "{what}: no answer within {after:?}"),
            GitError::Failed { what, stderr } => write!(f, "{what}: {}", stderr.trim()),
        }
    }
}

/// One object a revision names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag's name below `refs/tags/`.
    pub name: String,
    /// The commit it points at (peeled through an annotated tag).
    pub commit: String,
}

/// The network slots of one Git host: at most `limit` fetches at a time,
/// whatever the number of its repositories being filled.
pub struct HostSlots {
    limit: usize,
    busy: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl HostSlots {
    pub fn new(limit: usize) -> HostSlots {
        HostSlots { limit: limit.max(1), busy: Mutex::new(0), freed: std::sync::Condvar::new() }
    }

    /// Waits for a slot; it is given back when the guard drops.
    fn take(&self) -> SlotGuard<'_> {
        let mut busy = lock(&self.busy);
        while *busy >= self.limit {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a HostSlots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.busy) -= 1;
        self.0.freed.notify_one();
    }
}

/// The host a remote URL names (`ssh://git@host:22/x`, `https://host/x`,
/// `git@host:x`); "" for a local path or `file://`.
pub fn host_of(remote: &str) -> &str {
    let rest = match remote.split_once("://") {
        Some(("file", _)) => return "",
        Some((_, rest)) => rest.split('/').next().unwrap_or(""),
        None if remote.starts_with('/') => return "",
        None => remote.split(':').next().unwrap_or(""),
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    rest.split(':').next().unwrap_or(rest)
}

/// A bare mirror of one remote.
pub struct Mirror {
    dir: PathBuf,
    remote: String,
    /// Most a single command may take (a fetch of a large repository included).
    timeout: Duration,
    /// When the refs were last fetched; held while fetching, so one fetch
    /// per repository runs at a time however many requests need it.
    fetched_at: Mutex<Option<Instant>>,
    /// The remote's HEAD as of the last fetch (its default branch's tip).
    head: Mutex<Option<String>>,
    /// Its host's network slots.
    slots: std::sync::Arc<HostSlots>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mirror {
    /// The mirror of `remote` below `root`, created (empty) if new.
    pub fn open(root: &Path, remote: &str, timeout: Duration, slots: std::sync::Arc<HostSlots>) -> Result<Mirror, GitError> {
        let name: String = Sha256::digest(remote.as_bytes()).iter().take(12).map(|b| format!("{b:02x}")).collect();
        let dir = root.join(format!("{name}.git"));
        let mirror = Mirror { dir, remote: remote.to_string(), timeout, fetched_at: Mutex::new(None), head: Mutex::new(None), slots };
        if !mirror.dir.join("HEAD").exists() {
            std::fs::create_dir_all(&mirror.dir).map_err(|e| GitError::Spawn(format!("creating {}: {e}", mirror.dir.display())))?;
            mirror.git("creating the mirror", &["init", "--bare", "--quiet"])?;
        }
        // Also after a crash between `init` and naming the remote.
        if mirror.git("reading the remote", &["remote", "get-url", "origin"]).is_err() {
            mirror.git("naming the remote", &["remote", "add", "origin", "--", remote])?;
        }
        // As the go command does: archives must not depend on the
        // repository's own export-subst/export-ignore attributes.
        let info = mirror.dir.join("info");
        let attributes = info.join("attributes");
        let wanted = "\n* -export-subst -export-ignore\n";
        if !std::fs::read_to_string(&attributes).is_ok_and(|a| a.ends_with(wanted)) {
            let written = std::fs::create_dir_all(&info).and_then(|()| {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&attributes)?;
                std::io::Write::write_all(&mut f, wanted.as_bytes())
            });
            written.map_err(|e| GitError::Spawn(format!("writing {}: {e}", attributes.display())))?;
        }
        Ok(mirror)
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Fetches every branch and tag unless they were fetched less than
    /// `max_age` ago (`Duration::ZERO`: always).
    /// Fetches every branch and tag (deleted ones pruned, as cmd/go reads
    /// the remote's own list) unless they were fetched less than `max_age`
    /// ago. A forced refresh (`Duration::ZERO`, for a name not known yet) is
    /// still at most one per [`FORCED_REFRESH_FLOOR`]: asking for made-up
    /// versions must not make a fetch each.
    pub fn refresh(&self, max_age: Duration) -> Result<(), GitError> {
        let mut fetched_at = lock(&self.fetched_at);
        if fetched_at.is_some_and(|at| at.elapsed() < max_age.max(FORCED_REFRESH_FLOOR)) {
            return Ok(());
        }
        let _slot = self.slots.take();
        // HEAD first: the fetch then brings the commit it names.
        let head = self.git(&format!("reading HEAD of {}", self.remote), &["ls-remote", "-q", "--end-of-options", "origin", "HEAD"])?;
        let what = format!("fetching {}", self.remote);
        let fetched = self.git(
            &what,
            &[
                "fetch",
                "-f",
                "--prune",
                "--prune-tags",
                "--quiet",
                "--end-of-options",
                "origin",
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
        );
        if let Err(e @ GitError::Timeout { .. }) = &fetched {
            self.drop_partial_packs();
            return Err(e.clone());
        }
        fetched?;
        *lock(&self.head) = String::from_utf8_lossy(&head).split_whitespace().next().map(str::to_string);
        *fetched_at = Some(Instant::now());
        Ok(())
    }

    /// Removes what a killed fetch left half-written (`objects/pack/tmp_*`).
    fn drop_partial_packs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("objects/pack")) else { return };
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with("tmp_")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Whether every branch and tag was fetched at least once.
    pub fn was_refreshed(&self) -> bool {
        lock(&self.fetched_at).is_some()
    }

    /// Fetches the one tag `name` (with its history), and nothing else.
    pub fn fetch_tag(&self, name: &str) -> Result<(), GitError> {
        let _fetching = lock(&self.fetched_at);
        let _slot = self.slots.take();
        let refspec = format!("refs/tags/{name}:refs/tags/{name}");
        self.git(
            &format!("fetching tag {name} of {}", self.remote),
            &["fetch", "-f", "--quiet", "--no-tags", "--end-of-options", "origin", &refspec],
        )
        .map(|_| ())
    }

    /// The remote's HEAD commit as of the last refresh.
    pub fn head(&self) -> Option<String> {
        lock(&self.head).clone()
    }

    /// Every branch and tag with the commit it names (tags peeled), sorted
    /// by name: `refs/heads/...`, `refs/tags/...`.
    pub fn refs(&self) -> Result<Vec<(String, String)>, GitError> {
        let mut refs = self.peeled_refs("listing refs", &["refs/heads", "refs/tags"])?;
        refs.sort();
        Ok(refs)
    }

    /// (full ref name, commit) of the refs below `namespaces`, an annotated
    /// tag peeled to the commit it names.
    fn peeled_refs(&self, what: &str, namespaces: &[&str]) -> Result<Vec<(String, String)>, GitError> {
        let mut args = vec!["for-each-ref", "--format=%(refname) %(objectname) %(*objectname)"];
        args.extend_from_slice(namespaces);
        let out = self.git(what, &args)?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let (name, object, peeled) = (f.next()?, f.next()?, f.next().unwrap_or(""));
                Some((name.to_string(), if peeled.is_empty() { object } else { peeled }.to_string()))
            })
            .collect())
    }

    /// The full hash of the commit `rev` (a hash or an unambiguous prefix)
    /// names, if the mirror has it.
    pub fn commit_of(&self, rev: &str) -> Result<Option<String>, GitError> {
        match self.git("resolving a revision", &["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{rev}^{{commit}}")]) {
            Ok(out) => Ok(Some(String::from_utf8_lossy(&out).trim().to_string())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tags whose commits are `commit` or its ancestors.
    pub fn tags_merged_into(&self, commit: &str) -> Result<Vec<String>, GitError> {
        let out =
            self.git("listing tags below a commit", &["for-each-ref", "--format=%(refname:lstrip=2)", "--merged", commit, "refs/tags"])?;
        Ok(String::from_utf8_lossy(&out).lines().map(str::to_string).collect())
    }

    /// Every tag, with the commit it names.
    pub fn tags(&self) -> Result<Vec<Tag>, GitError> {
        let refs = self.peeled_refs("listing tags", &["refs/tags"])?;
        Ok(refs.into_iter().filter_map(|(name, commit)| Some(Tag { name: name.strip_prefix("refs/tags/")?.to_string(), commit })).collect())
    }

    /// The commit time (seconds since the epoch) of `commit`.
    pub fn commit_time(&self, commit: &str) -> Result<i64, GitError> {
        let out = self.git("reading a commit", &["log", "-n1", "--format=%ct", "--end-of-options", commit])?;
        String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .map_err(|_| GitError::Failed { what: format!("reading commit {commit}"), stderr: "no commit time".into() })
    }

    /// The file at `path` in `commit`; `None` when there is none.
    pub fn read_file(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        match self.git("reading a file", &["cat-file", "blob", &format!("{commit}:{path}")]) {
            Ok(data) => Ok(Some(data)),
            Err(GitError::Failed { stderr, .. }) if stderr.contains("does not exist") || stderr.contains("Not a valid object") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `git archive` of `commit` (of its `subdir` only, unless empty) as a
    /// zip, every path under `prefix/`, with the line-ending settings the go
    /// command uses.
    pub fn archive(&self, commit: &str, subdir: &str) -> Result<Vec<u8>, GitError> {
        let mut args = vec![
            "-c",
            "core.autocrlf=input",
            "-c",
            "core.eol=lf",
            "archive",
            "--format=zip",
            "--prefix=prefix/",
            "--end-of-options",
            commit,
        ];
        if !subdir.is_empty() {
            args.push(subdir);
        }
        self.git("archiving a revision", &args)
    }

    /// Runs `git ARGS` on the mirror: no terminal, no prompt, ssh in batch
    /// mode, killed past the timeout.
    fn git(&self, what: &str, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .env("GIT_DIR", &self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GCM_INTERACTIVE", "never")
            .env("GIT_ASKPASS", "")
            .env("SSH_ASKPASS", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=10");
        }
        run_bounded(cmd, what, self.timeout)
    }
}

/// Runs `cmd` to its end or kills it at `timeout`; its output on success.
/// git runs in a process group of its own, so a timeout kills its helpers
/// too (`git-remote-https`, `ssh`), which would otherwise hold the pipes open.
fn run_bounded(mut cmd: Command, what: &str, timeout: Duration) -> Result<Vec<u8>, GitError> {
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| GitError::Spawn(e.to_string()))?;
    let kill_group = |child: &mut std::process::Child| {
        // SAFETY: kill(2) on the process group we created for this child.
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = child.wait();
    };
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group(&mut child);
        return Err(GitError::Spawn("no pipes".into()));
    };
    // Both pipes drain on their own threads, so a full pipe never stalls git.
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&mut child);
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(GitError::Spawn(e.to_string())),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    match status {
        None => Err(GitError::Timeout { what: what.to_string(), after: timeout }),
        Some(s) if s.success() => Ok(stdout),
        Some(_) => Err(GitError::Failed { what: what.to_string(), stderr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_every_remote_spelling() {
        assert_eq!(host_of("ssh://git@git.corp.example:2222/team/repo.git"), "git.corp.example");
        assert_eq!(host_of("https://git.corp.example/team/repo"), "git.corp.example");
        assert_eq!(host_of("https://user:token@git.corp.example/x"), "git.corp.example");
        assert_eq!(host_of("git@git.corp.example:team/repo.git"), "git.corp.example");
        assert_eq!(host_of("file:///srv/git/repo"), "");
        assert_eq!(host_of("/srv/git/repo"), "");
    }

    #[test]
    fn a_host_never_has_more_fetches_than_its_slots() {
        let slots = std::sync::Arc::new(HostSlots::new(2));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let now = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, peak, now) = (slots.clone(), peak.clone(), now.clone());
                std::thread::spawn(move || {
                    let _g = slots.take();
                    let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    peak.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
