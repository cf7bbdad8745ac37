//! The layering, kept by CI rather than by memory: every top-level module
//! of the library may use (`crate::…`) only the modules below it in
//! `gomodproxy::LAYERS`, and every top-level module is placed in that list.
//! Test code (`#[cfg(test)]` modules, `tests.rs` files) may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules `src` names with `crate::` in `text`, leaving out
/// comment lines and everything from the first `#[cfg(test)]` on (test
/// modules close their files here).
fn crate_uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        // `crate::` must start a path, not end a longer name (`gomodproxy_crate::`).
        let starts_path = at == 0 || !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if starts_path {
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
        rest = after;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
            out.push(path);
        }
    }
}

/// Each top-level module's `crate::` uses outside test code.
fn uses_by_module(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let top = rel.components().next().expect("a path").as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        // The binary and the crate root are the composition's edge, not a layer.
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let found: Vec<String> = crate_uses(&text).into_iter().filter(|m| *m != top).collect();
        uses.entry(top).or_default().extend(found);
    }
    uses
}

/// Every use of a module at or above one's own layer, as "user -> used".
fn violations(layers: &[&str], uses: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|l| *l == m);
    let mut bad = Vec::new();
    for (user, used) in uses {
        for m in used {
            match (rank(user), rank(m)) {
                (Some(u), Some(d)) if d > u => {}
                (None, _) => bad.push(format!("{user} -> {m} ({user} is not in LAYERS)")),
                (_, None) => bad.push(format!("{user} -> {m} ({m} is not in LAYERS)")),
                _ => bad.push(format!("{user} -> {m} ({m} is not below {user})")),
            }
        }
    }
    bad
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let uses = uses_by_module(&src);
    assert!(uses.len() >= 8, "found too few modules to be scanning the right tree: {uses:?}");
    let bad = violations(gomodproxy::LAYERS, &uses);
    assert!(bad.is_empty(), "layering broken (see LAYERS in src/lib.rs):\n{}", bad.join("\n"));
}

#[test]
fn layers_name_every_top_level_module_once() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
    let declared: BTreeSet<&str> =
        lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ").and_then(|m| m.strip_suffix(';'))).collect();
    let listed: BTreeSet<&str> = gomodproxy::LAYERS.iter().copied().collect();
    assert_eq!(listed.len(), gomodproxy::LAYERS.len(), "a module is listed twice");
    assert_eq!(declared, listed, "src/lib.rs declares modules LAYERS does not place (or the reverse)");
}

#[test]
fn the_scanner_sees_paths_groups_and_skips_tests_and_comments() {
    let text = "use crate::store::Index;\nuse crate::{artifact::Kind, gomod};\n// crate::runtime in a comment\n\
                fn f() { crate::metrics::x(); }\n#[cfg(test)]\nmod tests { use crate::runtime; }\n";
    let found: Vec<String> = crate_uses(text).into_iter().collect();
    assert_eq!(found, ["artifact", "gomod", "metrics", "store"]);

    // An upward use is reported, a downward one is not.
    let layers = ["http", "goproxy", "store"];
    let mut uses = BTreeMap::new();
    uses.insert("goproxy".to_string(), BTreeSet::from(["store".to_string(), "http".to_string()]));
    assert_eq!(violations(&layers, &uses), ["goproxy -> http (http is not below goproxy)"]);
}
