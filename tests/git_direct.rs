//! `direct` from Git, byte-compatible with the go command: for repositories
//! the test creates, gomodproxy's `.info`, `.mod`, zip `h1:` and version
//! list equal what the go command produces itself in `GOPROXY=direct` mode,
//! and a client's go.sum through gomodproxy equals the direct one.
//! gomodproxy runs with no `go` on its PATH.
//!
//! How the two reach the same repositories: module paths are
//! `git.corp.example/team/NAME`; the go command discovers the repository
//! from a `go-import` tag (a tiny local server, reached as its HTTP proxy,
//! with `GOINSECURE`), which names `https://git.corp.example/team/NAME`;
//! gomodproxy's `[[git]]` remote says the same; a git config shared by both
//! rewrites that URL to the local `file://` repository (`insteadOf`), as a
//! host's git config would to a mirror.
//!
//! Covered so far: modules at a repository root, semver tags (annotated or
//! not, pre-releases, non-canonical tags ignored), `+incompatible`,
//! synthesized go.mod, nested modules, vendor directories, symlinks,
//! `.gitattributes` eol conversion. Not yet: subdirectory modules, major
//! suffixes, queries and pseudo-versions (the Git source answers those 404).

mod common;

use common::*;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;

const HOST: &str = "git.corp.example";

fn git(dir: &Path, args: &[&str], when: &str) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_AUTHOR_DATE", when)
        .env("GIT_COMMITTER_DATE", when)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn write(dir: &Path, rel: &str, data: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn commit(dir: &Path, when: &str, tags: &[&str]) {
    git(dir, &["add", "-A"], when);
    git(dir, &["commit", "-q", "-m", when], when);
    for t in tags {
        match t.strip_prefix("annotated:") {
            Some(t) => git(dir, &["tag", "-a", "-m", t, t], when),
            None => git(dir, &["tag", t], when),
        }
    }
}

/// A new repository `team/NAME` below `root`, on branch main.
fn repo(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join("team").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "-b", "main"], "2024-01-01T00:00:00Z");
    dir
}

/// `go.mod` of `HOST/team/PATH` with a go directive.
fn go_mod(path: &str, go: &str) -> String {
    format!("module {HOST}/team/{path}\n\ngo {go}\n")
}

/// The corpus, one repository per case:
/// - `plain`: go.mod, several tags (annotated or not, a pre-release, two
///   non-canonical), a nested module, vendor under go 1.21 then 1.24, a
///   symlink, an unusual but legal name, eol attributes;
/// - `multi`: a root module and one in `tools/` (prefixed tags; the root's
///   LICENSE), ident attributes;
/// - `major`: v2 in a `v2/` directory; `branchy`: v2 by a go.mod saying /v2;
/// - `pseudo`: untagged commits (every pseudo-version form), a retracted
///   tag, branches; `untagged`: no tags at all;
/// - `badname`: a file name the zip rules forbid;
/// - `nomod`: no go.mod, so v2+ is +incompatible.
fn corpus(root: &Path) {
    let plain = repo(root, "plain");
    write(&plain, "go.mod", &go_mod("plain", "1.21"));
    write(&plain, "plain.go", "package plain\n");
    commit(&plain, "2024-01-02T03:04:05Z", &["v0.1.0"]);
    write(&plain, "plain.go", "package plain\n\n// V1 is the first release.\nconst V1 = 1\n");
    write(&plain, "sub/go.mod", &format!("module {HOST}/team/plain/sub\n"));
    write(&plain, "sub/sub.go", "package sub\n");
    write(&plain, "vendor/modules.txt", "# example.com/dep v1.0.0\n");
    write(&plain, "vendor/example.com/dep/dep.go", "package dep\n");
    write(&plain, "odd name+(1).txt", "legal but unusual\n");
    std::os::unix::fs::symlink("plain.go", plain.join("link.go")).unwrap();
    commit(&plain, "2024-02-03T04:05:06Z", &["annotated:v1.0.0", "v1.2", "release-1"]);
    write(&plain, ".gitattributes", "*.txt eol=crlf\n");
    write(&plain, "notes.txt", "line one\nline two\n");
    commit(&plain, "2024-03-04T05:06:07Z", &["v1.1.0-rc.1", "v1.1.0"]);
    write(&plain, "go.mod", &go_mod("plain", "1.24"));
    commit(&plain, "2024-04-05T06:07:08Z", &["v1.2.0", "v2.0.0"]);

    let multi = repo(root, "multi");
    write(&multi, "go.mod", &go_mod("multi", "1.22"));
    write(&multi, "multi.go", "package multi\n\n// $Id$\n");
    write(&multi, ".gitattributes", "*.go ident\n");
    write(&multi, "LICENSE", "Copyright the corp.\n");
    write(&multi, "tools/go.mod", &go_mod("multi/tools", "1.22"));
    write(&multi, "tools/tools.go", "package tools\n");
    commit(&multi, "2024-02-01T10:00:00Z", &["v1.0.0", "tools/v0.2.0"]);
    write(&multi, "tools/tools.go", "package tools\n\nconst Ready = true\n");
    commit(&multi, "2024-02-02T10:00:00Z", &["annotated:tools/v1.0.0"]);

    let major = repo(root, "major");
    write(&major, "go.mod", &go_mod("major", "1.21"));
    write(&major, "major.go", "package major\n");
    commit(&major, "2024-03-01T10:00:00Z", &["v1.0.0"]);
    write(&major, "v2/go.mod", &go_mod("major/v2", "1.21"));
    write(&major, "v2/major.go", "package major\n\nconst V = 2\n");
    commit(&major, "2024-03-02T10:00:00Z", &["v1.0.1", "v2.0.0"]);

    let branchy = repo(root, "branchy");
    write(&branchy, "go.mod", &go_mod("branchy", "1.21"));
    write(&branchy, "branchy.go", "package branchy\n");
    commit(&branchy, "2024-04-01T10:00:00Z", &["v1.5.0"]);
    write(&branchy, "go.mod", &go_mod("branchy/v2", "1.21"));
    commit(&branchy, "2024-04-02T10:00:00Z", &["v2.0.0", "v2.1.0"]);

    let pseudo = repo(root, "pseudo");
    write(&pseudo, "go.mod", &go_mod("pseudo", "1.21"));
    let steps: [(&str, &[&str]); 5] = [
        ("2024-06-01T01:00:00Z", &["v1.0.0"]),
        ("2024-06-02T01:00:00Z", &["v1.1.0-rc.1"]),
        ("2024-06-03T01:00:00Z", &[]),
        ("2024-06-04T01:00:00Z", &["annotated:v1.2.0"]),
        ("2024-06-05T01:00:00Z", &[]),
    ];
    for (i, (when, tags)) in steps.into_iter().enumerate() {
        write(&pseudo, "pseudo.go", &format!("package pseudo\n\nconst N = {i}\n"));
        commit(&pseudo, when, tags);
        if i == 2 {
            git(&pseudo, &["branch", "feature"], when);
        }
    }
    git(&pseudo, &["branch", "old"], "2024-06-05T01:00:00Z");
    write(&pseudo, "go.mod", &format!("{}\nretract v1.2.0 // broken\n", go_mod("pseudo", "1.21")));
    commit(&pseudo, "2024-06-06T01:00:00Z", &["v1.3.0"]);
    write(&pseudo, "pseudo.go", "package pseudo\n\nconst N = 7\n");
    commit(&pseudo, "2024-06-07T01:00:00Z", &[]);

    let badname = repo(root, "badname");
    write(&badname, "go.mod", &go_mod("badname", "1.21"));
    write(&badname, "bad:name.go", "package badname\n");
    commit(&badname, "2024-08-01T01:00:00Z", &["v1.0.0"]);

    let untagged = repo(root, "untagged");
    write(&untagged, "go.mod", &go_mod("untagged", "1.21"));
    commit(&untagged, "2024-07-01T01:00:00Z", &[]);
    write(&untagged, "u.go", "package untagged\n");
    commit(&untagged, "2024-07-02T01:00:00Z", &[]);

    let nomod = repo(root, "nomod");
    write(&nomod, "nomod.go", "package nomod\n");
    commit(&nomod, "2023-05-06T07:08:09Z", &["v1.0.0"]);
    write(&nomod, "nomod.go", "package nomod\n\nconst Two = 2\n");
    commit(&nomod, "2023-06-07T08:09:10Z", &["v2.0.0", "v2.1.0"]);
    write(&nomod, "nomod.go", "package nomod\n\nconst Three = 3\n");
    commit(&nomod, "2023-07-08T09:10:11Z", &["annotated:v3.0.0"]);
}

/// Answers `?go-get=1` for every path below HOST with the go-import tag
/// the go command reads; refuses CONNECT, so https fails over to http.
fn go_import_server() -> ScriptedServer {
    ScriptedServer::start(|stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                break;
            }
        }
        let mut s = stream;
        let target = line.split_whitespace().nth(1).unwrap_or("");
        if line.starts_with("CONNECT") {
            let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        let path = target.split("://").nth(1).unwrap_or(target);
        let repo: Vec<&str> = path.split('?').next().unwrap_or("").split('/').take(3).collect();
        let root = repo.join("/");
        let vcs = if root.ends_with("/hgrepo") { "hg" } else { "git" };
        let body = format!(
            "<!DOCTYPE html><html><head><meta name=\"go-import\" content=\"{root} {vcs} https://{root}\"></head><body></body></html>\n"
        );
        let _ =
            write!(s, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    })
}

struct Setup {
    _repos: tempfile::TempDir,
    gitconfig: std::path::PathBuf,
    meta: ScriptedServer,
    server: Server,
    _config: tempfile::TempDir,
}

fn setup() -> Setup {
    let repos = tempfile::tempdir().unwrap();
    corpus(repos.path());
    let gitconfig = repos.path().join("gitconfig");
    std::fs::write(
        &gitconfig,
        format!("[url \"file://{}/\"]\n\tinsteadOf = https://{HOST}/\n[protocol \"file\"]\n\tallow = always\n", repos.path().display()),
    )
    .unwrap();
    let meta = go_import_server();
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("gomodproxy.toml");
    std::fs::write(
        &file,
        format!(
            "upstream = \"direct\"\nsumdb = \"off\"\n\n[[git]]\npattern = \"{HOST}/*\"\nremote = \"https://{HOST}/{{repo}}\"\ndepth = 3\n"
        ),
    )
    .unwrap();
    let mut o = ServerOpts::new("");
    o.extra_args = vec!["--config".into(), file.display().to_string()];
    o.env.push(("GIT_CONFIG_GLOBAL".into(), gitconfig.display().to_string()));
    // No go command on the server's PATH: git only.
    o.env.push(("PATH".into(), "/usr/bin:/bin".into()));
    let server = Server::start_with(o);
    Setup { _repos: repos, gitconfig, meta, server, _config: config }
}

/// The go command in `direct` mode against the corpus.
fn direct_env(s: &Setup) -> GoEnv {
    let mut env = GoEnv::new("direct");
    env.env("GIT_CONFIG_GLOBAL", &s.gitconfig.display().to_string());
    env.env("GOPRIVATE", HOST);
    env.env("GOINSECURE", HOST);
    env.env("HTTP_PROXY", &s.meta.url());
    env.env("HTTPS_PROXY", &s.meta.url());
    env
}

/// The go command through gomodproxy (checksums of these private modules off).
fn proxy_env(s: &Setup) -> GoEnv {
    let mut env = GoEnv::new(s.server.url());
    env.env("GONOSUMDB", HOST);
    env
}

const VERSIONS: &[(&str, &str)] = &[
    ("plain", "v0.1.0"),
    ("plain", "v1.0.0"),
    ("plain", "v1.1.0-rc.1"),
    ("plain", "v1.1.0"),
    ("plain", "v1.2.0"),
    ("nomod", "v1.0.0"),
    ("nomod", "v2.0.0+incompatible"),
    ("nomod", "v2.1.0+incompatible"),
    ("nomod", "v3.0.0+incompatible"),
    ("multi", "v1.0.0"),
    ("multi/tools", "v0.2.0"),
    ("multi/tools", "v1.0.0"),
    ("major", "v1.0.1"),
    ("major/v2", "v2.0.0"),
    ("branchy", "v1.5.0"),
    ("branchy/v2", "v2.1.0"),
];

/// Modules whose version lists and `@latest` are compared.
const MODULES: &[&str] = &["plain", "nomod", "multi", "multi/tools", "major", "major/v2", "branchy", "branchy/v2"];

#[test]
fn every_version_is_what_the_go_command_makes_of_the_repository() {
    assert!(!Path::new("/usr/bin/go").exists() && !Path::new("/bin/go").exists(), "the server's PATH must hold no go command");
    let s = setup();
    let direct = direct_env(&s);
    let proxied = proxy_env(&s);
    for (name, version) in VERSIONS {
        let module = format!("{HOST}/team/{name}");
        let target = format!("{module}@{version}");
        let d = &direct.mod_download_json(&[&target])[0];
        let p = &proxied.mod_download_json(&[&target])[0];
        assert_eq!(p["Sum"], d["Sum"], "{target}: zip h1:");
        assert_eq!(p["GoModSum"], d["GoModSum"], "{target}: go.mod h1:");
        for ext in ["info", "mod"] {
            let ours = http_get(s.server.addr(), &format!("/{}", artifact_path(&module, version, ext)));
            assert_eq!(ours.status, 200, "{target}.{ext}: {}", ours.body_str());
            let theirs = direct.downloaded(&module, version, ext);
            assert_eq!(ours.body_str(), String::from_utf8_lossy(&theirs), "{target}.{ext}");
        }
    }
    for name in MODULES {
        let module = format!("{HOST}/team/{name}");
        let versions = |env: &GoEnv| env.run(&["list", "-m", "-versions", &module]);
        assert_eq!(versions(&proxied), versions(&direct), "{module} versions");
        let latest = |env: &GoEnv| env.run(&["list", "-m", "-json", &format!("{module}@latest")]);
        let (ours, theirs) = (latest(&proxied), latest(&direct));
        let field = |j: &str, k: &str| serde_json::from_str::<serde_json::Value>(j).unwrap()[k].clone();
        assert_eq!(field(&ours, "Version"), field(&theirs, "Version"), "{module}@latest");
        assert_eq!(field(&ours, "Time"), field(&theirs, "Time"), "{module}@latest");
    }
    let list = http_get(s.server.addr(), &format!("/{}", list_path(&format!("{HOST}/team/nomod"))));
    assert_eq!(list.body_str(), "v1.0.0\nv2.0.0+incompatible\nv2.1.0+incompatible\nv3.0.0+incompatible\n");
}

#[test]
fn a_build_through_gomodproxy_records_the_direct_go_sum() {
    let s = setup();
    let main = "package main\n\nimport (\n\t_ \"git.corp.example/team/nomod\"\n\t_ \"git.corp.example/team/plain\"\n)\n\nfunc main() {}\n";
    let build = |env: &GoEnv| {
        env.write_file("go.mod", "module example.com/main\n\ngo 1.21\n");
        env.write_file("main.go", main);
        env.run(&["get", &format!("{HOST}/team/plain@v1.1.0"), &format!("{HOST}/team/nomod@v3.0.0+incompatible")]);
        env.run(&["build", "./..."]);
        env.go_sum_lines()
    };
    let theirs = build(&direct_env(&s));
    let ours = build(&proxy_env(&s));
    assert_eq!(ours, theirs);
    assert!(ours.iter().any(|l| l.starts_with(&format!("{HOST}/team/plain v1.1.0 h1:"))), "{ours:#?}");
}

#[test]
fn what_the_git_source_does_not_resolve_yet_is_a_404_that_says_so() {
    let s = setup();
    let addr = s.server.addr();
    let cases = [
        (format!("/{HOST}/team/plain/@v/nosuchbranch.info"), "unknown revision"),
        (format!("/{HOST}/team/plain/v2/@v/v2.0.0.info"), "module path"),
        (format!("/{HOST}/team/plain/@v/v1.9.9.info"), "unknown revision"),
        (format!("/{HOST}/team/plain/@v/v2.0.0+incompatible.info"), "+incompatible"),
        ("/example.com/elsewhere/@v/v1.0.0.info".to_string(), "no [[git]] source"),
        (format!("/{HOST}/team/plain/@v/v1.0.0+incompatible.info"), "is compatible"),
    ];
    // Pseudo-versions are checked as cmd/go checks them.
    let tip = commit_of(&s._repos.path().join("team/untagged"), "2024-07-02T01:00:00Z");
    let untagged = format!("/{HOST}/team/untagged/@v");
    let cases: Vec<(String, &str)> = cases
        .into_iter()
        .chain([
            (format!("{untagged}/v1.0.0-20240702010000-{}.info", &tip[..12]), "must be v0, not v1"),
            (format!("{untagged}/v0.0.0-20240702010000-{}.info", &tip[..10]), "12-character"),
            (format!("{untagged}/v0.0.0-20240702010001-{}.info", &tip[..12]), "timestamp"),
        ])
        .collect();
    for (path, why) in cases {
        let r = http_get(addr, &path);
        assert_eq!(r.status, 404, "{path}: {}", r.body_str());
        assert!(r.body_str().contains(why), "{path}: {}", r.body_str());
    }
}

#[test]
fn a_version_once_served_keeps_its_bytes_when_its_tag_moves() {
    let s = setup();
    let module = format!("{HOST}/team/plain");
    let info = format!("/{}", artifact_path(&module, "v1.1.0", "info"));
    let zip = format!("/{}", artifact_path(&module, "v1.1.0", "zip"));
    let (first_info, first_zip) = (http_get(s.server.addr(), &info), http_get(s.server.addr(), &zip));
    assert_eq!((first_info.status, first_zip.status), (200, 200));
    // The tag moves to the latest commit.
    git(&s._repos.path().join("team/plain"), &["tag", "-f", "v1.1.0", "main"], "2024-05-01T00:00:00Z");
    let mut server = s.server;
    server.restart();
    assert_eq!(http_get(server.addr(), &info).body, first_info.body);
    assert_eq!(http_get(server.addr(), &zip).body, first_zip.body);
}

/// A server whose only Git remote is `remote` for modules below `host/`.
fn server_for(host: &str, remote: &str) -> (Server, tempfile::TempDir) {
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("gomodproxy.toml");
    std::fs::write(
        &file,
        format!("upstream = \"direct\"\nsumdb = \"off\"\ngit_timeout = \"2s\"\n\n[[git]]\npattern = \"{host}/*\"\nremote = \"{remote}\"\ndepth = 3\n"),
    )
    .unwrap();
    let mut o = ServerOpts::new("");
    o.extra_args = vec!["--config".into(), file.display().to_string()];
    (Server::start_with(o), config)
}

#[test]
fn a_remote_that_refuses_or_hangs_is_a_clear_and_timely_error() {
    use std::time::{Duration, Instant};
    let refusing = ScriptedServer::start(|mut stream| {
        let mut buf = [0u8; 4096];
        let _ = std::io::Read::read(&mut stream, &mut buf);
        let _ = stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let (server, _c) = server_for("refusing.example", &format!("{}/{{repo}}", refusing.url()));
    let r = http_get(server.addr(), "/refusing.example/team/repo/@v/list");
    assert_eq!(r.status, 502, "{}", r.body_str());
    let body = r.body_str();
    assert!(body.contains(&refusing.url()) && (body.contains("Username") || body.contains("Authentication")), "{body}");

    let hanging = ScriptedServer::start(|stream| {
        std::thread::sleep(Duration::from_secs(20));
        drop(stream);
    });
    let (server, _c) = server_for("hanging.example", &format!("{}/{{repo}}", hanging.url()));
    let started = Instant::now();
    let r = http_get(server.addr(), "/hanging.example/team/repo/@v/list");
    assert_eq!(r.status, 504, "{}", r.body_str());
    assert!(r.body_str().contains(&hanging.url()), "{}", r.body_str());
    assert!(started.elapsed() < Duration::from_secs(15), "bounded by --git-timeout");
    // The server stays up and answers.
    assert_eq!(http_get(server.addr(), "/healthz").status, 200);
}

/// A commit of `repo` by its subject (commit() uses the date as subject).
fn commit_of(repo: &Path, subject: &str) -> String {
    let out = Command::new("git")
        .args(["log", "--all", "--format=%H %s"])
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_suffix(&format!(" {subject}")).map(str::to_string)).unwrap()
}

#[test]
fn queries_and_pseudo_versions_are_what_the_go_command_makes_of_them() {
    let s = setup();
    let direct = direct_env(&s);
    let proxied = proxy_env(&s);
    let pseudo_repo = s._repos.path().join("team/pseudo");
    let c3 = commit_of(&pseudo_repo, "2024-06-03T01:00:00Z");
    let c1 = commit_of(&pseudo_repo, "2024-06-01T01:00:00Z");
    let queries: Vec<(String, String)> = [
        ("pseudo", "main".to_string()),
        ("pseudo", "feature".to_string()),
        ("pseudo", "old".to_string()),
        ("pseudo", c3[..10].to_string()),
        ("pseudo", c1.clone()),
        ("pseudo", "latest".to_string()),
        ("untagged", "latest".to_string()),
        ("untagged", "main".to_string()),
        ("plain", "main".to_string()),
        ("multi/tools", "main".to_string()),
        ("nomod", "main".to_string()),
    ]
    .into_iter()
    .map(|(m, q)| (format!("{HOST}/team/{m}"), q))
    .collect();
    let mut expected_forms = Vec::new();
    for (module, query) in &queries {
        let target = format!("{module}@{query}");
        let d = &direct.mod_download_json(&[&target])[0];
        let p = &proxied.mod_download_json(&[&target])[0];
        for field in ["Version", "Sum", "GoModSum"] {
            assert_eq!(p[field], d[field], "{target}: {field}");
        }
        let version = d["Version"].as_str().unwrap().to_string();
        expected_forms.push(version.clone());
        // The .info of the resolved version, byte for byte, against a go
        // command that asks for that version by name (its cache keeps the
        // Origin of however it first resolved a version: by name is the
        // one a proxy can answer for everyone).
        let by_name = direct_env(&s);
        by_name.mod_download_json(&[&format!("{module}@{version}")]);
        let ours = http_get(s.server.addr(), &format!("/{}", artifact_path(module, &version, "info")));
        assert_eq!(ours.status, 200, "{module}@{version}: {}", ours.body_str());
        assert_eq!(ours.body_str(), String::from_utf8_lossy(&by_name.downloaded(module, &version, "info")), "{module}@{version}.info");
        // And the query's own answer carries the Origin the go command records for it.
        if query != "latest" {
            let q = http_get(s.server.addr(), &format!("/{}/@v/{query}.info", escape(module)));
            let ours: serde_json::Value = serde_json::from_slice(&q.body).unwrap_or_else(|_| panic!("{target}: {}", q.body_str()));
            assert_eq!(ours["Version"], d["Version"], "{target}");
            assert_eq!(ours["Origin"], d["Origin"], "{target}: Origin");
        }
    }
    // Each pseudo-version form and the retracted v1.2.0 skipped as a base.
    let forms: Vec<&str> = expected_forms.iter().map(String::as_str).collect();
    assert!(forms[0].starts_with("v1.3.1-0.20240607010000-"), "{forms:?}");
    assert!(forms[1].starts_with("v1.1.0-rc.1.0.20240603010000-"), "{forms:?}");
    assert!(forms[2].starts_with("v1.1.0-rc.1.0.20240605010000-"), "retracted v1.2.0 is no base: {forms:?}");
    assert_eq!(forms[4], "v1.0.0", "a tagged commit is its tag");
    assert!(forms[6].starts_with("v0.0.0-20240702010000-"), "{forms:?}");
}

#[test]
fn a_zip_the_go_command_would_refuse_is_refused_while_info_and_mod_are_served() {
    let s = setup();
    let module = format!("{HOST}/team/badname");
    let out = direct_env(&s).try_run(&["mod", "download", &format!("{module}@v1.0.0")]);
    let theirs = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && theirs.contains("bad:name.go"), "{theirs}");
    let zip = http_get(s.server.addr(), &format!("/{}", artifact_path(&module, "v1.0.0", "zip")));
    assert_eq!(zip.status, 410, "{}", zip.body_str());
    assert!(zip.body_str().contains("bad:name.go") && zip.body_str().contains("create zip"), "{}", zip.body_str());
    for ext in ["info", "mod"] {
        assert_eq!(http_get(s.server.addr(), &format!("/{}", artifact_path(&module, "v1.0.0", ext))).status, 200, "{ext}");
    }
}

#[test]
fn go_get_sources_find_repositories_as_the_go_command_does() {
    go_get_source(&format!("pattern = \"{HOST}/*\""));
}

/// `pattern = "*"`, `public = true`: `direct` for any module, as the go
/// command's own; its modules are public (the server logs no private patterns).
#[test]
fn a_public_catch_all_source_resolves_any_module_from_its_repository() {
    let server = go_get_source("pattern = \"*\"\npublic = true");
    assert!(!server.log_lines().iter().any(|l| l.contains("private modules (")), "{:?}", server.log_lines());
}

/// A server whose one Git source (`source`: its pattern, maybe `public`)
/// finds repositories by go-get, checked against the go command.
fn go_get_source(source: &str) -> Server {
    let s = setup();
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("gomodproxy.toml");
    std::fs::write(
        &file,
        format!("upstream = \"direct\"\nsumdb = \"off\"\nprivate = \"\"\n\n[[git]]\n{source}\nremote = \"go-get\"\ninsecure = true\n"),
    )
    .unwrap();
    let mut o = ServerOpts::new("");
    o.extra_args = vec!["--config".into(), file.display().to_string()];
    o.env.push(("GIT_CONFIG_GLOBAL".into(), s.gitconfig.display().to_string()));
    o.env.push(("PATH".into(), "/usr/bin:/bin".into()));
    // The go-import tags are reached as the go command reaches them here: through an HTTP proxy.
    o.env.push(("HTTP_PROXY".into(), s.meta.url()));
    o.env.push(("HTTPS_PROXY".into(), s.meta.url()));
    let server = Server::start_with(o);
    let direct = direct_env(&s);
    let mut proxied = GoEnv::new(server.url());
    proxied.env("GONOSUMDB", HOST);
    for target in ["plain@v1.1.0", "multi/tools@v1.0.0", "pseudo@main"] {
        let target = format!("{HOST}/team/{target}");
        let d = &direct.mod_download_json(&[&target])[0];
        let p = &proxied.mod_download_json(&[&target])[0];
        for field in ["Version", "Sum", "GoModSum"] {
            assert_eq!(p[field], d[field], "{target}: {field}");
        }
    }
    let hg = http_get(server.addr(), &format!("/{HOST}/team/hgrepo/@v/list"));
    assert_eq!(hg.status, 404, "{}", hg.body_str());
    assert!(hg.body_str().contains("is hg; only git"), "{}", hg.body_str());
    server
}

#[test]
fn a_version_asked_for_by_name_fetches_just_its_tag() {
    let s = setup();
    let module = format!("{HOST}/team/plain");
    assert_eq!(http_get(s.server.addr(), &format!("/{}", artifact_path(&module, "v1.0.0", "info"))).status, 200);
    let mirrors: Vec<_> = std::fs::read_dir(s.server.data_dir().join("git")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(mirrors.len(), 1);
    let tags = || {
        let out = Command::new("git").args(["tag"]).env("GIT_DIR", &mirrors[0]).env("GIT_CONFIG_GLOBAL", "/dev/null").output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(tags(), ["v1.0.0"], "only the tag asked for");
    // A list needs them all.
    assert!(http_get(s.server.addr(), &format!("/{}", list_path(&module))).body_str().contains("v1.2.0"));
    assert!(tags().len() > 5, "{:?}", tags());
}
