//! A module zip whose entries inflate to more than their headers declare
//! (a zip bomb that lies about its sizes, passing every check that reads
//! only the central directory) is refused, never stored or served: the
//! `h1:` computation inflates every entry and stops at its declared size.

mod common;

use common::*;

use std::io::Write as _;

const M: &str = "example.com/lying";
const V: &str = "v1.0.0";
/// What each entry declares; what the big one really inflates to is far more.
const DECLARED: u32 = 1000;
const REAL: usize = 64 << 20;

/// A deflated zip of `go.mod` and `big.txt` (REAL zero bytes) whose
/// headers, local and central, say big.txt is DECLARED bytes.
fn lying_zip() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file(format!("{M}@{V}/go.mod"), opts).unwrap();
        w.write_all(format!("module {M}\n").as_bytes()).unwrap();
        w.start_file(format!("{M}@{V}/big.txt"), opts).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..REAL >> 20 {
            w.write_all(&zeros).unwrap();
        }
        w.finish().unwrap();
    }
    let mut zip = buf.into_inner();
    let name = format!("{M}@{V}/big.txt").into_bytes();
    let mut patched = 0;
    for at in 0..zip.len().saturating_sub(46 + name.len()) {
        let sig = u32::from_le_bytes(zip[at..at + 4].try_into().unwrap());
        // Local header: uncompressed size at 22, name at 30; central: at 24, name at 46.
        let (size_at, name_at) = match sig {
            0x0403_4b50 => (22, 30),
            0x0201_4b50 => (24, 46),
            _ => continue,
        };
        if zip[at + name_at..].starts_with(&name) {
            zip[at + size_at..at + size_at + 4].copy_from_slice(&DECLARED.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "both headers of big.txt patched");
    zip
}

#[test]
fn a_zip_whose_entries_inflate_past_their_declared_sizes_is_refused_and_never_stored() {
    let fx = Fixture::builder().module(Module::new(M, V)).build();
    let zip_path = format!("/{}", artifact_path(M, V, "zip"));
    std::fs::write(fx.root().join(&zip_path[1..]), lying_zip()).unwrap();
    let up = CountingUpstream::serve(fx.root());
    let server = Server::start(&up.url());
    for attempt in 1..=2 {
        let r = http_get(server.addr(), &zip_path);
        assert_eq!(r.status, 502, "attempt {attempt}: {}", r.body_str());
        assert!(r.body_str().contains("inflates to more than its declared size"), "{}", r.body_str());
        assert_eq!(up.hits(&zip_path), attempt, "nothing of the lying zip was stored");
    }
    let h = http_get(server.addr(), "/healthz");
    assert_eq!(h.status, 200);
}
