//! The real go command verifies modules against a checksum database
//! through gomodproxy's `/sumdb/` proxy.
//!
//! `sumdb_gen.go` (standard library only) builds a real, Ed25519-signed
//! database for the fixture's modules under a made-up name; a
//! [`CountingUpstream`] serves it and the modules; the go command, given the
//! database's key in `GOSUMDB` and gomodproxy as `GOPROXY`, must find
//! `supported`, fetch lookups and tiles through the proxy, verify them, and
//! refuse a module whose recorded hash is wrong.

mod common;

use common::*;

use std::path::Path;

const FIRST: (&str, &str) = ("example.com/first", "v1.0.0");
const UPPER: (&str, &str) = ("example.com/Upper/Lib", "v1.2.0");
const TAMPERED: (&str, &str) = ("example.com/tampered", "v1.0.0");

/// The fixture every test here uses: the modules the database records.
fn three_modules() -> Fixture {
    Fixture::builder()
        .module(Module::new(FIRST.0, FIRST.1))
        .module(Module::new(UPPER.0, UPPER.1))
        .module(Module::new(TAMPERED.0, TAMPERED.1))
        .build()
}

/// Writes the database below `root` and returns its verifier key.
fn generate(root: &Path, env: &GoEnv) -> String {
    let specs = [FIRST, UPPER].map(|(m, v)| format!("{m}@{v}"));
    signed_sumdb(root, env, &[&specs[0], &specs[1], &format!("{}@{}=tamper", TAMPERED.0, TAMPERED.1)])
}

#[test]
fn the_go_command_verifies_modules_through_the_sumdb_proxy() {
    let fx = three_modules();
    let key = generate(fx.root(), &GoEnv::new("off"));
    assert!(key.starts_with(&format!("{SUMDB_NAME}+")), "{key}");
    let upstream = CountingUpstream::serve(fx.root());
    let server = Server::start_with(ServerOpts { extra_args: vec!["--sumdb".into(), key.clone()], ..ServerOpts::new(upstream.url()) });

    let mut env = GoEnv::new(server.url());
    let sum = env.get_verified(&key, &[FIRST, UPPER]);
    for (m, v) in [FIRST, UPPER] {
        assert!(sum.iter().any(|l| l.starts_with(&format!("{m} {v} h1:"))), "{sum:#?}");
    }
    // Everything went through the proxy: `supported` is its own answer; one
    // lookup each serves its own verification and the go command's; tiles.
    let prefix = format!("/sumdb/{SUMDB_NAME}");
    assert_eq!(upstream.hits(&format!("{prefix}/supported")), 0, "{:?}", upstream.request_log());
    for (m, v) in [FIRST, UPPER] {
        assert_eq!(upstream.hits(&format!("{prefix}/lookup/{}@{}", escape(m), escape(v))), 1, "{:?}", upstream.request_log());
    }
    assert!(upstream.hits_where(|p| p.starts_with(&format!("{prefix}/tile/"))) >= 1, "{:?}", upstream.request_log());
    // The complete tile (record 0 lies in it) was stored.
    let full_tile = format!("{prefix}/tile/8/0/000");
    let served = http_get(server.addr(), &full_tile);
    assert_eq!(served.status, 200);
    assert!(served.header("cache-control").unwrap().contains("immutable"));

    // A record that does not match the module: refused (by gomodproxy
    // first, which names both hashes; the go command would too).
    let out = env.try_run(&["get", &format!("{}@{}", TAMPERED.0, TAMPERED.1)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tampered checksum was accepted:\n{stderr}");
    assert!(stderr.contains("SECURITY ERROR") || stderr.contains("checksum mismatch"), "{stderr}");

    // A second, fresh client is answered from the proxy's caches.
    let before = upstream.hits_where(|p| p.starts_with(&prefix));
    GoEnv::new(server.url()).get_verified(&key, &[FIRST]);
    assert_eq!(upstream.hits_where(|p| p.starts_with(&prefix)), before, "{:?}", upstream.request_log());
}

/// Tiles read from the generated database's files.
struct TileFiles(std::path::PathBuf);

impl gomodproxy::gomod::merkle::TileSource for TileFiles {
    fn read_tiles(&mut self, tiles: &[gomodproxy::gomod::tlog::Tile]) -> Result<Vec<Vec<u8>>, gomodproxy::gomod::merkle::ProofError> {
        Ok(tiles.iter().map(|t| std::fs::read(self.0.join(t.to_string())).unwrap_or_default()).collect())
    }
}

/// gomodproxy's own note verifier, Merkle proofs and `h1:` hashes against
/// the signed database the go command accepted above: the tree head and
/// each lookup's note open with the database's key, an altered one does
/// not; each record is proved in the signed tree from the database's own
/// tiles; and the records carry exactly the hashes gomodproxy computes.
#[test]
fn gomodproxy_opens_the_databases_notes_and_agrees_with_its_records() {
    use base64::Engine as _;
    use gomodproxy::gomod::dirhash;
    use gomodproxy::gomod::merkle::{self, TileHashReader};
    use gomodproxy::gomod::note::{NoteError, Verifier};

    let fx = three_modules();
    let key = generate(fx.root(), &GoEnv::new("off"));
    let verifier = Verifier::parse(&key).expect("the database's key");
    let db = fx.root().join("sumdb").join(SUMDB_NAME);

    let latest = std::fs::read(db.join("latest")).unwrap();
    let head = verifier.open(&latest).expect("the tree head opens");
    let fields: Vec<&str> = head.lines().collect();
    assert_eq!(fields[0], "go.sum database tree", "{head}");
    let size: u64 = fields[1].parse().unwrap();
    let tree: merkle::Hash = base64::engine::general_purpose::STANDARD.decode(fields[2]).unwrap().try_into().unwrap();
    let altered = String::from_utf8(latest.clone()).unwrap().replacen("tree\n", "tree\n1", 1);
    assert_eq!(verifier.open(altered.as_bytes()), Err(NoteError::InvalidSignature));

    for (m, v) in [FIRST, UPPER] {
        let lookup = std::fs::read_to_string(db.join(format!("lookup/{}@{}", escape(m), escape(v)))).unwrap();
        // `<record id>\n<two go.sum lines>\n` then the signed tree head.
        let at = lookup.find("go.sum database tree\n").expect("a note");
        verifier.open(&lookup.as_bytes()[at..]).expect("the lookup's note opens");
        let zip_line = format!("{m} {v} {}", dirhash::hash_zip(&fx.artifact(m, v, "zip")).unwrap());
        let mod_line = format!("{m} {v}/go.mod {}", dirhash::hash_go_mod(&fx.artifact(m, v, "mod")));
        let lines: Vec<&str> = lookup[..at].lines().collect();
        assert_eq!(&lines[1..3], [zip_line.as_str(), mod_line.as_str()], "{lookup}");

        // `<id>\n<record>\n`: the record is proved in the signed tree.
        let id: u64 = lines[0].parse().unwrap();
        let record = &lookup[lines[0].len() + 1..at - 1];
        let mut tiles = TileFiles(db.clone());
        let mut reader = TileHashReader { size, hash: tree, height: 8, source: &mut tiles };
        let proof = merkle::prove_record(size, id, &mut reader).expect("a proof from the tiles");
        merkle::check_record(&proof, size, &tree, id, &merkle::record_hash(record.as_bytes())).expect("the record is in the tree");
        let forged = record.replacen(" h1:", " h1:A", 1);
        assert!(merkle::check_record(&proof, size, &tree, id, &merkle::record_hash(forged.as_bytes())).is_err());
    }
}

/// The database's files as a client's source.
struct DbFiles(std::path::PathBuf);

impl gomodproxy::upstream::sumdb_client::SumDbSource for DbFiles {
    fn get(&self, path: &str, _: gomodproxy::artifact::Kind) -> Result<Vec<u8>, gomodproxy::artifact::FetchError> {
        std::fs::read(self.0.join(path)).map_err(|e| gomodproxy::artifact::FetchError::NotFound { gone: false, message: e.to_string() })
    }
}

/// gomodproxy's checksum-database client against databases signed with one
/// key: a lookup is proved and yields the module's hashes; a later log
/// that extends the accepted head is accepted; one that rewrote a record
/// the accepted head covers is a fork; an altered head does not open.
#[test]
fn the_client_verifies_lookups_and_catches_a_forked_log() {
    use gomodproxy::gomod::dirhash;
    use gomodproxy::gomod::note::Verifier;
    use gomodproxy::upstream::sumdb_client::{SumDbClient, SumDbError};

    let fx = three_modules();
    let env = GoEnv::new("off");
    let [first, upper, tampered] = [FIRST, UPPER, TAMPERED].map(|(m, v)| format!("{m}@{v}"));
    let dbs = tempfile::tempdir().unwrap();
    // Each database is generated in place and moved aside: one name, one key.
    let make = |label: &str, specs: &[&str]| {
        let key = signed_sumdb(fx.root(), &env, specs);
        let dir = dbs.path().join(label);
        std::fs::rename(fx.root().join("sumdb").join(SUMDB_NAME), &dir).unwrap();
        (key, dir)
    };
    let (key, a) = make("a", &[&first, &upper]);
    let (key_b, b) = make("b", &[&first, &upper, &tampered]);
    let (key_c, c) = make("c", &[&first, &tampered, &upper]);
    assert!(key == key_b && key == key_c, "one key signs all three");
    let verifier = Verifier::parse(&key).unwrap();

    let client_a = SumDbClient::new(verifier.clone(), DbFiles(a));
    let head_a = client_a.latest(None).expect("a verified head");
    assert_eq!(head_a.size, 292);
    let proved = client_a.lookup(UPPER.0, UPPER.1, Some(&head_a)).expect("a proved lookup");
    let (record, kept) = (proved.record, proved.keep);
    assert_eq!(kept, head_a);
    assert_eq!(record.zip, dirhash::hash_zip(&fx.artifact(UPPER.0, UPPER.1, "zip")).unwrap());
    assert_eq!(record.go_mod, dirhash::hash_go_mod(&fx.artifact(UPPER.0, UPPER.1, "mod")));
    assert!(matches!(client_a.lookup(FIRST.0, "v9.9.9", Some(&head_a)), Err(SumDbError::Fetch(_))));

    // b appends a record to a's log: consistent, and the newer head is kept.
    let client_b = SumDbClient::new(verifier.clone(), DbFiles(b));
    let head_b = client_b.latest(Some(&head_a)).expect("b extends a");
    assert_eq!(head_b.size, 293);
    let proved = client_b.lookup(FIRST.0, FIRST.1, Some(&head_a)).expect("a lookup against a newer head");
    assert_eq!(proved.keep, head_b);

    // c has 293 records too, but record 291 differs from a's: a fork.
    let client_c = SumDbClient::new(verifier.clone(), DbFiles(c.clone()));
    assert!(matches!(client_c.latest(Some(&head_a)), Err(SumDbError::Fork { .. })), "c rewrote a's history");
    assert!(matches!(client_c.latest(Some(&head_b)), Err(SumDbError::Fork { .. })), "same size, other hash");
    assert!(client_c.latest(None).is_ok(), "on its own, c is a valid log");

    // A head whose size was altered does not open.
    let latest = std::fs::read_to_string(c.join("latest")).unwrap();
    std::fs::write(c.join("latest"), latest.replacen("\n293\n", "\n294\n", 1)).unwrap();
    assert!(matches!(client_c.latest(None), Err(SumDbError::Note(_))));
}

/// Every tile gomodproxy relays is authenticated against a verified head:
/// hash tiles through the tiles that hash to it (a narrower partial tile
/// is a prefix of the head's), data tiles record by record against their
/// leaves. A tile past the head, or one altered by a byte, is refused.
#[test]
fn the_client_authenticates_every_tile_it_relays() {
    use gomodproxy::gomod::note::Verifier;
    use gomodproxy::gomod::tlog::Tile;
    use gomodproxy::upstream::sumdb_client::{SumDbClient, SumDbError};

    let fx = three_modules();
    let key = generate(fx.root(), &GoEnv::new("off"));
    let dir = fx.root().join("sumdb").join(SUMDB_NAME);
    let client = SumDbClient::new(Verifier::parse(&key).unwrap(), DbFiles(dir.clone()));
    let head = client.latest(None).unwrap();
    assert_eq!(head.size, 293);
    let tile = |path: &str| client.tile(&Tile::parse(path).unwrap(), &head);
    for path in ["tile/8/0/000", "tile/8/0/001.p/37", "tile/8/1/000.p/1", "tile/8/data/000", "tile/8/data/001.p/37"] {
        assert_eq!(tile(path).unwrap_or_else(|e| panic!("{path}: {e}")), std::fs::read(dir.join(path)).unwrap(), "{path}");
    }
    // A client that saw an older head asks for a narrower tile: the prefix.
    assert_eq!(tile("tile/8/0/001.p/5").unwrap(), std::fs::read(dir.join("tile/8/0/001.p/37")).unwrap()[..5 * 32]);
    for past in ["tile/8/0/001.p/38", "tile/8/0/002", "tile/8/1/000.p/2", "tile/8/2/000.p/1", "tile/8/data/001.p/38"] {
        assert!(matches!(tile(past), Err(SumDbError::NotInTree)), "{past}: {:?}", tile(past));
    }
    for path in ["tile/8/0/000", "tile/8/0/001.p/37", "tile/8/data/000", "tile/8/data/001.p/37"] {
        let file = dir.join(path);
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        assert!(tile(path).is_err(), "{path}: an altered tile was accepted");
        std::fs::write(&file, &good).unwrap();
    }
}
