//! `--config FILE`: the settings of a TOML file, as the flags they stand
//! for. A key is a flag's long name (`list_ttl` or `list-ttl` for
//! `--list-ttl`); a value is a string, a number, a boolean, or an array of
//! strings (joined with commas, as the list flags take them).
//!
//! `[[git]]` tables are the Git sources `direct` is answered from.
//!
//! Owns reading and shaping the file. It never decides precedence nor
//! validates a value: the command line reads the settings as if they had
//! been typed after every flag actually given (see `flags::parse_cli`), so
//! one parser checks both and a flag or `GOMODPROXY_*` variable overrides
//! the file.

use std::path::Path;

use super::ConfigError;
use crate::gomod::pattern::PrefixPatterns;
use crate::upstream::git::{GitRemote, GitSource};

/// One setting: the flag's long name (dashes) and its value as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub flag: String,
    pub value: String,
}

/// What a config file holds.
#[derive(Debug, Default)]
pub struct FileContents {
    pub settings: Vec<Setting>,
    /// Its `[[git]]` sources, in file order (the first whose pattern
    /// matches a module serves it).
    pub git: Vec<GitSource>,
}

/// The file at `path` (a key given twice is a TOML error).
pub fn read(path: &Path) -> Result<FileContents, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot be read: {e}")))?;
    parse(path, &text)
}

/// One `[[git]]` table: `pattern`, `remote` (with `{repo}`), `depth`, and
/// optionally `public`.
fn git_source(path: &Path, i: usize, value: toml::Value) -> Result<GitSource, ConfigError> {
    let bad = |why: String| bad(path, format!("[[git]] #{}: {why}", i + 1));
    let toml::Value::Table(table) = value else { return Err(bad("not a table".into())) };
    let (mut pattern, mut remote, mut depth, mut public, mut insecure) = (None, None, None, false, false);
    for (key, value) in table {
        match (key.as_str(), value) {
            ("pattern", toml::Value::String(s)) => pattern = Some(s),
            ("remote", toml::Value::String(s)) => remote = Some(s),
            ("depth", toml::Value::Integer(n)) => depth = Some(n),
            ("public", toml::Value::Boolean(b)) => public = b,
            ("insecure", toml::Value::Boolean(b)) => insecure = b,
            (key @ ("pattern" | "remote" | "depth" | "public" | "insecure"), _) => return Err(bad(format!("{key}: wrong type"))),
            (key, _) => return Err(bad(format!("unknown key {key:?} (pattern, remote, depth, public, insecure)"))),
        }
    }
    let pattern = pattern.ok_or_else(|| bad("pattern is missing".into()))?;
    let compiled = PrefixPatterns::parse(&pattern).map_err(|e| bad(format!("pattern: {e}")))?;
    if compiled.is_empty() {
        return Err(bad("pattern is empty".into()));
    }
    let remote = remote.ok_or_else(|| bad("remote is missing".into()))?;
    if remote == "go-get" {
        if depth.is_some() {
            return Err(bad("depth: a go-get source finds each repository's root itself".into()));
        }
        return Ok(GitSource { pattern: compiled, remote: GitRemote::GoGet { insecure }, public });
    }
    if insecure {
        return Err(bad("insecure applies to go-get discovery only".into()));
    }
    if !remote.contains("{repo}") {
        return Err(bad(format!("remote {remote:?} has no {{repo}} (the repository root without its host)")));
    }
    let depth = depth.ok_or_else(|| bad("depth is missing (path elements of the repository root, host included)".into()))?;
    let depth =
        usize::try_from(depth).ok().filter(|d| (2..=64).contains(d)).ok_or_else(|| bad(format!("depth {depth}: between 2 and 64")))?;
    Ok(GitSource { pattern: compiled, remote: GitRemote::Template { url: remote, depth }, public })
}

fn bad(path: &Path, reason: String) -> ConfigError {
    ConfigError::ConfigFile { path: path.to_path_buf(), reason }
}

fn parse(path: &Path, text: &str) -> Result<FileContents, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(path, e.message().to_string()))?;
    let mut contents = FileContents::default();
    for (key, value) in table {
        if key == "git" {
            let toml::Value::Array(sources) = value else { return Err(bad(path, "git: write sources as [[git]] tables".into())) };
            for (i, source) in sources.into_iter().enumerate() {
                contents.git.push(git_source(path, i, source)?);
            }
            continue;
        }
        let flag = key.replace('_', "-");
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let strings: Option<Vec<String>> = items.into_iter().map(|v| v.as_str().map(str::to_string)).collect();
                strings.ok_or_else(|| bad(path, format!("{key}: a list must hold strings only")))?.join(",")
            }
            toml::Value::Table(_) | toml::Value::Datetime(_) => {
                return Err(bad(path, format!("{key}: not a setting (a string, number, boolean or list of strings)")))
            }
        };
        contents.settings.push(Setting { flag, value });
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
        parse(Path::new("test.toml"), text).map(|c| c.settings.into_iter().map(|s| (s.flag, s.value)).collect())
    }

    #[test]
    fn values_become_the_flags_they_stand_for() {
        let got = settings(
            "listen = \"0.0.0.0:8080\"\nlist_ttl = \"30s\"\ncores = 4\nprivate = [\"*.corp.example\", \"git.corp.example\"]\nupstream-retries = 2\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                ("cores", "4"),
                ("list-ttl", "30s"),
                ("listen", "0.0.0.0:8080"),
                ("private", "*.corp.example,git.corp.example"),
                ("upstream-retries", "2")
            ]
            .map(|(f, v)| (f.to_string(), v.to_string()))
        );
    }

    #[test]
    fn git_sources_are_read_in_order() {
        let c = parse(
            Path::new("t.toml"),
            "[[git]]\npattern = \"git.corp.example/*\"\nremote = \"ssh://git@git.corp.example/{repo}.git\"\ndepth = 3\n\n[[git]]\npattern = \"example.com/open\"\nremote = \"https://example.com/{repo}\"\ndepth = 2\npublic = true\n",
        )
        .unwrap();
        assert_eq!(c.git.len(), 2);
        assert!(c.git[0].pattern.matches("git.corp.example/team/repo") && !c.git[0].public);
        assert!(matches!(&c.git[0].remote, GitRemote::Template { depth: 3, url } if url.contains("{repo}")));
        assert!(c.git[1].public);
    }

    #[test]
    fn shapes_that_are_no_setting_are_refused_with_the_key() {
        for (text, key) in [
            ("[server]\nlisten = \"x\"\n", "server"),
            ("private = [1, 2]\n", "private"),
            ("when = 1979-05-27\n", "when"),
            ("[[git]]\npattern = \"x/*\"\n", "remote is missing"),
            ("[[git]]\npattern = \"x/*\"\nremote = \"go-get\"\ndepth = 3\n", "finds each repository"),
            ("[[git]]\npattern = \"x/*\"\nremote = \"file:///srv/{repo}\"\ndepth = 3\ninsecure = true\n", "go-get discovery only"),
            ("[[git]]\npattern = \"x/*\"\nremote = \"file:///srv\"\ndepth = 3\n", "{repo}"),
            ("[[git]]\npattern = \"x/*\"\nremote = \"file:///srv/{repo}\"\ndepth = 1\n", "depth"),
            ("[[git]]\npattern = \"x/*\"\nremote = \"file:///srv/{repo}\"\ndepth = 3\nbranch = \"main\"\n", "unknown key"),
        ] {
            let e = settings(text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("test.toml"), "{e}");
        }
        let e = settings("listen = \n").unwrap_err().to_string();
        assert!(e.contains("test.toml"), "{e}");
    }
}
