//! gomodproxy's `h1:` hashes (`gomod::dirhash`) against the go command's
//! own: for stored and deflated zips, upper-case paths, `/v2` modules,
//! files larger than one inflate piece and a module with no go.mod, the
//! hashes the go command reports for a download (`go mod download -json`,
//! computed by x/mod's dirhash) must be the ones gomodproxy computes from
//! the same bytes. Also: a corrupted zip is refused, not hashed.

mod common;

use common::*;

use gomodproxy::gomod::dirhash;

fn modules() -> Vec<Module> {
    vec![
        Module::new("example.com/plain", "v1.0.0"),
        Module::new("example.com/stored", "v1.1.0").stored().file("data.txt", "stored, not deflated\n"),
        Module::new("example.com/Upper/Case", "v0.3.0").file("sub/Dir/x.go", "package dir\n"),
        Module::new("example.com/two/v2", "v2.0.1"),
        // Several 64 KiB inflate pieces, and bytes that do not compress.
        Module::new("example.com/big", "v1.0.0").file("big.bin", pseudo_random_bytes(300_000, 7)).file("zeros.bin", vec![0u8; 1 << 20]),
        Module::new("example.com/nomod", "v1.0.0").no_go_mod(),
    ]
}

#[test]
fn hashes_match_what_the_go_command_records() {
    let mut fixture = Fixture::builder();
    for m in modules() {
        fixture = fixture.module(m);
    }
    let fx = fixture.build();
    let mut env = GoEnv::new(format!("file://{}", fx.root().display()));
    env.env("GOSUMDB", "off");
    for m in modules() {
        let downloaded = env.mod_download_json(&[&format!("{}@{}", m.path, m.version)]);
        let want_zip = downloaded[0]["Sum"].as_str().expect("Sum");
        let want_mod = downloaded[0]["GoModSum"].as_str().expect("GoModSum");
        let zip = fx.artifact(&m.path, &m.version, "zip");
        let go_mod = fx.artifact(&m.path, &m.version, "mod");
        assert_eq!(dirhash::hash_zip(&zip).expect("hash_zip"), want_zip, "{}@{} zip", m.path, m.version);
        assert_eq!(dirhash::hash_go_mod(&go_mod), want_mod, "{}@{} go.mod", m.path, m.version);
    }
}

#[test]
fn a_corrupted_zip_is_refused() {
    let fx = Fixture::builder().module(Module::new("example.com/big", "v1.0.0").file("big.bin", vec![b'a'; 200_000])).build();
    let zip = fx.artifact("example.com/big", "v1.0.0", "zip");
    assert!(dirhash::hash_zip(&zip).is_ok());
    // A flipped byte in the middle of big.bin's deflated data: bad deflate
    // or a CRC mismatch, never a hash.
    let entries = gomodproxy::gomod::zip::central_directory(&zip).expect("a zip");
    let big = entries.iter().find(|e| e.name.ends_with(b"/big.bin")).expect("big.bin");
    let data_at = big.local_offset as usize + 30 + big.name.len() + big.compressed_size as usize / 2;
    let mut flipped = zip.clone();
    flipped[data_at] ^= 0x55;
    assert!(dirhash::hash_zip(&flipped).is_err(), "a corrupted zip must not hash");
    // Cut short: the central directory is gone.
    assert!(dirhash::hash_zip(&zip[..zip.len() - 10]).is_err());
}
