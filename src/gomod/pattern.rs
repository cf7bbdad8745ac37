//! `GOPRIVATE`/`GONOPROXY`/`GONOSUMDB` patterns: comma-separated globs,
//! each matched against as many leading path elements of a module path as
//! it has itself (x/mod's `module.MatchPrefixPatterns`), with the glob
//! syntax of Go's `path.Match` (`*`, `?`, `[...]` classes, `\` escapes).
//!
//! Owns the syntax and the matching only; what a match means (never
//! forward to a public upstream) is decided by the caller. Patterns are
//! compiled once, when the configuration is read, so a malformed one is a
//! start-up error instead of a pattern that silently never matches (which
//! for a privacy setting would be a leak).

use std::fmt;

/// One compiled glob element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// `*`: any run of characters other than `/`.
    Star,
    /// `?`: one character other than `/`.
    Any,
    Lit(char),
    /// `[...]` / `[^...]`: one character in (or not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A pattern list that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPattern {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for BadPattern {}

/// One glob of the list: its tokens and how many `/` it holds (it is
/// matched against that many plus one leading elements of a path).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    source: String,
    toks: Vec<Tok>,
    slashes: usize,
}

/// A compiled, comma-separated pattern list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixPatterns {
    globs: Vec<Glob>,
}

impl PrefixPatterns {
    /// Compiles a list like `GOPRIVATE`'s: empty entries are skipped and a
    /// trailing `/` is dropped, as the go command does.
    pub fn parse(list: &str) -> Result<PrefixPatterns, BadPattern> {
        let mut globs = Vec::new();
        for raw in list.split(',') {
            let glob = raw.trim().trim_end_matches('/');
            if glob.is_empty() {
                continue;
            }
            let toks = compile(glob).map_err(|reason| BadPattern { pattern: glob.to_string(), reason })?;
            globs.push(Glob { source: glob.to_string(), slashes: glob.matches('/').count(), toks });
        }
        Ok(PrefixPatterns { globs })
    }

    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// The globs, as given (for logs).
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.globs.iter().map(|g| g.source.as_str())
    }

    /// Whether some glob matches a leading run of `path`'s elements.
    ///
    /// Unlike the go command, letters are compared without regard to ASCII
    /// case: a request that differs from a private path only in case still
    /// names it (many code hosts treat paths so), and saying too much is
    /// the failure this guards against.
    pub fn matches(&self, path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        let chars: Vec<char> = lower.chars().collect();
        self.globs.iter().any(|g| {
            let Some(prefix) = leading_elements(&chars, g.slashes + 1) else { return false };
            glob_match(&g.toks, prefix)
        })
    }
}

/// The first `n` `/`-separated elements of `path`, or `None` when it has fewer.
fn leading_elements(path: &[char], n: usize) -> Option<&[char]> {
    let mut seen = 0;
    for (i, &c) in path.iter().enumerate() {
        if c == '/' {
            seen += 1;
            if seen == n {
                return Some(&path[..i]);
            }
        }
    }
    (seen + 1 >= n).then_some(path)
}

/// Tokenises one glob, checking all of it (`path.Match` reports a syntax
/// error only when matching reaches it; we want it at start-up). Letters
/// are lower-cased to match [`PrefixPatterns::matches`].
fn compile(glob: &str) -> Result<Vec<Tok>, &'static str> {
    let mut toks = Vec::new();
    let mut it = glob.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => {
                // Consecutive stars mean one.
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            '?' => toks.push(Tok::Any),
            '\\' => toks.push(Tok::Lit(it.next().ok_or("trailing backslash")?.to_ascii_lowercase())),
            '[' => {
                let negated = it.next_if_eq(&'^').is_some();
                let mut ranges = Vec::new();
                loop {
                    if !ranges.is_empty() && it.next_if_eq(&']').is_some() {
                        break;
                    }
                    let lo = class_char(&mut it)?;
                    let hi = if it.next_if_eq(&'-').is_some() { class_char(&mut it)? } else { lo };
                    if lo > hi {
                        return Err("character range out of order");
                    }
                    ranges.push((lo.to_ascii_lowercase(), hi.to_ascii_lowercase()));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => toks.push(Tok::Lit(c.to_ascii_lowercase())),
        }
    }
    Ok(toks)
}

/// A possibly escaped character inside a class; `-` and `]` must be escaped.
fn class_char(it: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, &'static str> {
    let c = match it.next() {
        None => return Err("unterminated character class"),
        Some('-') | Some(']') => return Err("'-' or ']' must be escaped in a character class"),
        Some('\\') => it.next().ok_or("unterminated character class")?,
        Some(c) => c,
    };
    // A class must be closed: something (at least its ']') follows.
    if it.peek().is_none() {
        return Err("unterminated character class");
    }
    Ok(c)
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Star => false,
        Tok::Any => c != '/',
        Tok::Lit(l) => *l == c,
        Tok::Class { negated, ranges } => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
    }
}

/// Whole-string match, in time proportional to tokens × characters
/// (a dynamic programme, so no pattern can make matching exponential).
fn glob_match(toks: &[Tok], name: &[char]) -> bool {
    // reach[j]: the tokens so far can consume exactly name[..j].
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for t in toks {
        let mut next = vec![false; name.len() + 1];
        if *t == Tok::Star {
            // Extend every reachable position over a run of non-'/' characters.
            for j in 0..=name.len() {
                next[j] = reach[j] || (j > 0 && next[j - 1] && name[j - 1] != '/');
            }
        } else {
            for j in 1..=name.len() {
                next[j] = reach[j - 1] && tok_matches(t, name[j - 1]);
            }
        }
        reach = next;
    }
    reach[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(list: &str, path: &str) -> bool {
        PrefixPatterns::parse(list).unwrap().matches(path)
    }

    #[test]
    fn matches_leading_elements_like_the_go_command() {
        // Cases from x/mod's MatchPrefixPatterns tests and the go command's docs.
        assert!(m("*.corp.example", "git.corp.example/team/repo"));
        assert!(!m("*.corp.example", "corp.example/team/repo"));
        assert!(m("corp.example/team", "corp.example/team/repo/v2"));
        assert!(m("corp.example/team", "corp.example/team"));
        assert!(!m("corp.example/team", "corp.example/teamx/repo"));
        assert!(!m("corp.example/team/repo", "corp.example/team"));
        assert!(m("corp.example/team/", "corp.example/team/repo"));
        assert!(m("other.example,corp.example", "corp.example/x"));
        assert!(m(" , corp.example ,", "corp.example/x"));
        assert!(!m("", "corp.example/x"));
        assert!(m("corp.example/*/internal", "corp.example/a/internal/x"));
        assert!(!m("corp.example/*/internal", "corp.example/a/b/internal"));
        assert!(m("corp.exampl?", "corp.example/x"));
        assert!(m("corp.ex[a-c]mple", "corp.example"));
        assert!(!m("corp.ex[^a-c]mple", "corp.example"));
        assert!(m("corp\\.example", "corp.example/x"));
        assert!(m("*", "anything.example/x/y"));
        assert!(m("*", "x"));
    }

    #[test]
    fn case_never_hides_a_private_path() {
        assert!(m("corp.example/secret", "corp.example/Secret/repo"));
        assert!(m("corp.example/Secret", "corp.example/secret"));
        assert!(m("corp.example/[S]ecret", "corp.example/secret"));
    }

    #[test]
    fn malformed_patterns_are_errors_not_silent_misses() {
        for bad in ["corp.example/[", "corp.example/[]", "corp.example/[a-]", "corp.example/[z-a]", "corp.example\\", "a/[^]", "[-a]", "[a"]
        {
            assert!(PrefixPatterns::parse(bad).is_err(), "{bad}");
        }
        assert!(PrefixPatterns::parse("a/[\\]]b,[\\-x]").is_ok());
        assert!(m("a/[\\]]b", "a/]b"));
    }

    #[test]
    fn pathological_patterns_stay_cheap() {
        let p = PrefixPatterns::parse(&"*a".repeat(200)).unwrap();
        let name = "a".repeat(3000) + "b";
        assert!(!p.matches(&name));
    }
}
