//! `--config FILE`: every flag's setting from a TOML file, a flag or its
//! `GOMODPROXY_*` variable overriding it; an unknown key or a bad value
//! stops start-up with a message naming the file.

mod common;

use common::*;
use std::time::Duration;

fn config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("gomodproxy.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn the_file_sets_flags_and_the_command_line_and_environment_override_it() {
    let fx = Fixture::builder().module(Module::new("example.com/a", "v1.0.0")).build();
    let dir = tempfile::tempdir().unwrap();
    let mod_path = format!("/{}", artifact_path("example.com/a", "v1.0.0", "mod"));

    // The upstream comes from the file alone.
    let file = config(
        &dir,
        &format!(
            "upstream = \"{}\"\nsumdb = \"off\"\nlist_ttl = \"7s\"\nprivate = [\"corp.example\", \"*.corp.example\"]\n",
            fx.file_url()
        ),
    );
    let server = Server::start_with(ServerOpts { extra_args: vec!["--config".into(), file.clone()], ..ServerOpts::new("") });
    assert_eq!(http_get(server.addr(), &mod_path).body, fx.artifact("example.com/a", "v1.0.0", "mod"));
    let list = http_get(server.addr(), &format!("/{}", list_path("example.com/a")));
    assert!(list.header("cache-control").unwrap().contains("max-age=7"), "{list:?}");
    assert!(
        server.wait_for_log(Duration::from_secs(5), |l| l.contains("private modules (corp.example,*.corp.example)")),
        "{:?}",
        server.log_lines()
    );

    // A flag beats the file: here the file's upstream is dead, the flag's is not.
    let dead = config(&dir, "upstream = \"http://127.0.0.1:1\"\nsumdb = \"off\"\n");
    let flag = Server::start_with(ServerOpts { extra_args: vec!["--config".into(), dead.clone()], ..ServerOpts::new(fx.file_url()) });
    assert_eq!(http_get(flag.addr(), &mod_path).status, 200);

    // So does the environment.
    let mut o = ServerOpts::new("");
    o.extra_args = vec!["--config".into(), dead];
    o.env.push(("GOMODPROXY_UPSTREAM".into(), fx.file_url()));
    let env = Server::start_with(o);
    assert_eq!(http_get(env.addr(), &mod_path).status, 200);
}

#[test]
fn an_unknown_key_or_a_bad_value_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = config(&dir, "upstream = \"file:///nonexistent\"\nlist_tll = \"7s\"\n");
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--config", &unknown]);
    assert!(stderr.contains("gomodproxy.toml") && stderr.contains("list-tll"), "{stderr}");

    let bad = config(&dir, "upstream = \"file:///nonexistent\"\nlist_ttl = \"soon\"\n");
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--config", &bad]);
    assert!(stderr.contains("gomodproxy.toml") && stderr.contains("soon"), "{stderr}");

    let table = config(&dir, "[[git]]\npattern = \"git.corp.example/*\"\n");
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--config", &table]);
    assert!(stderr.contains("[[git]]") && stderr.contains("remote is missing"), "{stderr}");

    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--config", "/nonexistent/gomodproxy.toml"]);
    assert!(stderr.contains("cannot be read"), "{stderr}");
}

#[test]
fn a_file_upstream_that_is_no_directory_refuses_to_start() {
    // A typo here used to start a server that answered 404 to everything.
    let stderr = refused_start(&["serve", "--listen", "127.0.0.1:0", "--upstream", "file:///does/not/exist,http://127.0.0.1:9"]);
    assert!(stderr.contains("--upstream") && stderr.contains("/does/not/exist") && stderr.contains("no such directory"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let stderr = refused_start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("file://{}", dir.path().display()),
        "--private",
        "corp.example",
        "--private-upstream",
        "file:///does/not/exist/either",
    ]);
    assert!(stderr.contains("--private-upstream") && stderr.contains("no such directory"), "{stderr}");
}
