//! go-get discovery: where a module path's repository is, as the go command
//! finds it, from the `<meta name="go-import" content="PREFIX VCS REPO">`
//! tags that `https://PATH?go-get=1` serves (vanity import paths, GitLab,
//! Gitea...). Plain `http` is tried after `https` only for a source marked
//! `insecure` (the go command's `GOINSECURE`).
//!
//! Owns the request, the tag parsing (up to `<body>`, as cmd/go stops
//! there) and the choice among tags (cmd/go's `matchGoImport`). It never
//! follows a VCS other than git: another is refused, saying which.

use std::time::Duration;

use crate::artifact::FetchError;

/// One go-import tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoImport {
    /// The import-path prefix the repository's root stands for.
    pub prefix: String,
    pub vcs: String,
    pub repo: String,
}

/// The value of attribute `name` in the attributes text of a tag.
fn attribute(attrs: &str, name: &str) -> Option<String> {
    let lower = attrs.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let boundary = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        let rest = attrs[at + name.len()..].trim_start();
        let Some(rest) = rest.strip_prefix('=').filter(|_| boundary) else { continue };
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest.split(|c: char| c.is_whitespace() || c == '>' || c == '/').next().unwrap_or(""),
        };
        return Some(value.replace("&amp;", "&").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">"));
    }
    None
}

/// The go-import tags of an HTML page, up to its `<body>`.
pub fn parse_meta(html: &str) -> Vec<GoImport> {
    let lower = html.to_ascii_lowercase();
    let end = lower.find("<body").unwrap_or(lower.len());
    let mut imports = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..end].find("<meta") {
        let start = from + i + "<meta".len();
        let close = lower[start..end].find('>').map_or(end, |j| start + j);
        let attrs = &html[start..close];
        from = close;
        if attribute(attrs, "name").is_some_and(|n| n == "go-import") {
            if let Some(content) = attribute(attrs, "content") {
                let f: Vec<&str> = content.split_whitespace().collect();
                if let [prefix, vcs, repo] = f[..] {
                    imports.push(GoImport { prefix: prefix.into(), vcs: vcs.into(), repo: repo.into() });
                }
            }
        }
    }
    imports
}

fn has_path_prefix(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

/// The tag for `path` among `imports` (cmd/go's `matchGoImport`): the one
/// whose prefix `path` lies under; two is an error, unless the first says
/// `mod` (all `mod` tags come first and win).
pub fn matching(imports: &[GoImport], path: &str) -> Result<GoImport, String> {
    let mut found: Option<&GoImport> = None;
    for im in imports.iter().filter(|im| has_path_prefix(path, &im.prefix)) {
        match found {
            Some(first) if first.vcs == "mod" && im.vcs != "mod" => break,
            Some(_) => return Err(format!("multiple meta tags match import path {path:?}")),
            None => found = Some(im),
        }
    }
    found.cloned().ok_or_else(|| format!("no go-import meta tag for {path:?} (found {})", imports.len()))
}

/// Whether a discovered repository URL may be handed to git: a page on
/// the network must not choose git's transport (`ext::`, `file://`, a
/// local path), as the go command checks the scheme too.
fn safe_repo_url(url: &str, insecure: bool) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    let allowed = matches!(scheme, "https" | "ssh" | "git+ssh") || (insecure && matches!(scheme, "http" | "git"));
    allowed && !rest.is_empty() && !rest.starts_with('-') && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The repository of `path`, discovered over the network.
pub fn discover(path: &str, insecure: bool, timeout: Duration) -> Result<GoImport, FetchError> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).try_proxy_from_env(true).build();
    let schemes: &[&str] = if insecure { &["https", "http"] } else { &["https"] };
    let mut last = String::new();
    for scheme in schemes {
        let url = format!("{scheme}://{path}?go-get=1");
        match agent.get(&url).call() {
            Ok(resp) => {
                let mut body = String::new();
                let read = std::io::Read::read_to_string(&mut std::io::Read::take(resp.into_reader(), 1 << 20), &mut body);
                if let Err(e) = read {
                    last = format!("{url}: {e}");
                    continue;
                }
                let im = matching(&parse_meta(&body), path).map_err(|why| FetchError::NotFound {
                    gone: false,
                    message: format!("{path}: discovering its repository at {url}: {why}"),
                })?;
                return match im.vcs.as_str() {
                    "git" if !safe_repo_url(&im.repo, insecure) => Err(FetchError::NotFound {
                        gone: false,
                        message: format!(
                            "{path}: its go-import tag names repository {:?}: only https:// and ssh:// (http:// when insecure) are followed",
                            im.repo
                        ),
                    }),
                    "git" => Ok(im),
                    "mod" => Err(FetchError::NotFound {
                        gone: false,
                        message: format!("{path}: {} serves modules through a proxy (vcs mod): give it in --upstream", im.repo),
                    }),
                    vcs => Err(FetchError::NotFound {
                        gone: false,
                        message: format!("{path}: its repository {} is {vcs}; only git repositories are served from direct", im.repo),
                    }),
                };
            }
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(FetchError::Unavailable { upstream: format!("go-get discovery of {path}"), message: last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_as_the_go_command_reads_them() {
        let html = r#"<html><head>
            <meta name="go-import" content="example.com/mod mod https://proxy.example">
            <META NAME='go-import' CONTENT='example.com/a git https://git.example/a.git'>
            <meta name="go-source" content="example.com/a _ _ _">
            <meta content="example.com/b hg https://hg.example/b" name="go-import"/>
            </head><body><meta name="go-import" content="example.com/c git https://git.example/c"></body></html>"#;
        let imports = parse_meta(html);
        assert_eq!(imports.len(), 3, "{imports:?}");
        assert_eq!(matching(&imports, "example.com/a/sub/v2").unwrap().repo, "https://git.example/a.git");
        assert_eq!(matching(&imports, "example.com/b").unwrap().vcs, "hg");
        assert!(matching(&imports, "example.com/c").is_err(), "tags in the body are not read");
        assert!(matching(&imports, "example.com/ab").is_err(), "a prefix ends at a path element");
        let two = [
            GoImport { prefix: "x.example/a".into(), vcs: "git".into(), repo: "r1".into() },
            GoImport { prefix: "x.example".into(), vcs: "git".into(), repo: "r2".into() },
        ];
        assert!(matching(&two, "x.example/a/b").unwrap_err().contains("multiple"));
        for bad in ["ext::sh -c touch% /tmp/x", "file:///etc", "/srv/repo", "https://-oProxyCommand=x/", "http://insecure.example/r"] {
            assert!(!safe_repo_url(bad, false), "{bad}");
        }
        assert!(safe_repo_url("http://insecure.example/r", true));
        assert!(safe_repo_url("https://git.example/a.git", false) && safe_repo_url("ssh://git@git.example/a.git", false));
    }
}
