//! Recovery tests: what start-up does with whole, torn and corrupt segments.

use super::*;
use std::os::unix::fs::FileExt;

fn owner(_: &str, _: &str, _: RecordKind) -> usize {
    0
}

/// Writes records back to back into a new segment, as the writer would.
fn write_segment(dir: &Path, id: u64, records: &[(&str, &str, RecordKind, &[u8])]) -> (File, Vec<u64>) {
    let seg_dir = dir.join("segments");
    fs::create_dir_all(&seg_dir).unwrap();
    let file = segment::create(&seg_dir, id).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0;
    for (m, v, k, payload) in records {
        offsets.push(at);
        at += segment::write_record(&file, at, *k, &format!("{m}@{v}"), payload, &payload_sha256(payload), 1).unwrap();
    }
    offsets.push(at);
    (file, offsets)
}

fn get(store: &Store, m: &str, v: &str, k: RecordKind) -> Option<Vec<u8>> {
    store.indexes()[0].blob(m, v, k).map(|b| b.bytes().to_vec())
}

#[test]
fn recovers_whole_records_and_seals_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    write_segment(
        dir.path(),
        1,
        &[("example.com/a", "v1.0.0", RecordKind::Info, b"{}"), ("example.com/a", "v1.0.0", RecordKind::Zip, b"PK-zip-bytes")],
    );
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().records, 2);
    assert_eq!(store.stats().records_verified, 2, "an unsealed segment is verified");
    assert_eq!(get(&store, "example.com/a", "v1.0.0", RecordKind::Zip).as_deref(), Some(&b"PK-zip-bytes"[..]));
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().records, 2);
    assert_eq!(store.stats().records_verified, 0, "sealed on first recovery, trusted after");
}

#[test]
fn cuts_a_torn_tail_at_every_possible_length() {
    let payloads: [&[u8]; 3] = [b"first", b"second-payload", b"third-payload-longer"];
    let template = tempfile::tempdir().unwrap();
    let (_, offsets) = write_segment(
        template.path(),
        1,
        &[
            ("example.com/a", "v1.0.0", RecordKind::Mod, payloads[0]),
            ("example.com/b", "v1.0.0", RecordKind::Mod, payloads[1]),
            ("example.com/c", "v1.0.0", RecordKind::Mod, payloads[2]),
        ],
    );
    let full = fs::read(template.path().join("segments").join(segment::segment_file_name(1))).unwrap();
    for cut in 0..full.len() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("segments")).unwrap();
        fs::write(dir.path().join("segments").join(segment::segment_file_name(1)), &full[..cut]).unwrap();
        let store = Store::open(dir.path(), 1, owner).unwrap();
        // Record i survives exactly when its bytes (not its padding) are all there.
        for (i, m) in ["example.com/a", "example.com/b", "example.com/c"].iter().enumerate() {
            let whole = cut as u64 >= offsets[i] + HEADER_LEN as u64 + format!("{m}@v1.0.0").len() as u64 + payloads[i].len() as u64;
            let got = get(&store, m, "v1.0.0", RecordKind::Mod);
            assert_eq!(got.is_some(), whole, "cut at {cut}, record {i}");
            if let Some(bytes) = got {
                assert_eq!(bytes, payloads[i]);
            }
        }
    }
}

#[test]
fn skips_a_record_whose_payload_does_not_match_its_checksum_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (file, offsets) = write_segment(
        dir.path(),
        1,
        &[
            ("example.com/a", "v1.0.0", RecordKind::Zip, b"good"),
            ("example.com/b", "v1.0.0", RecordKind::Zip, b"will-rot"),
            ("example.com/c", "v1.0.0", RecordKind::Zip, b"after"),
        ],
    );
    let rot_at = offsets[1] + HEADER_LEN as u64 + "example.com/b@v1.0.0".len() as u64;
    file.write_all_at(b"X", rot_at).unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert!(get(&store, "example.com/a", "v1.0.0", RecordKind::Zip).is_some());
    assert!(get(&store, "example.com/b", "v1.0.0", RecordKind::Zip).is_none(), "corrupt payload must never be served");
    assert_eq!(
        get(&store, "example.com/c", "v1.0.0", RecordKind::Zip).as_deref(),
        Some(&b"after"[..]),
        "a good record after a bad one is kept"
    );
    assert_eq!(store.stats().records_skipped, 1);
    assert_eq!(store.stats().bytes_cut, 0);
}

#[test]
fn a_damaged_header_mid_segment_skips_that_record_only_sealed_or_not() {
    for sealed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let names = ["example.com/a", "example.com/b", "example.com/c", "example.com/d"];
        let records: Vec<(&str, &str, RecordKind, &[u8])> =
            names.iter().map(|m| (*m, "v1.0.0", RecordKind::Mod, &b"module x\n"[..])).collect();
        let (file, offsets) = write_segment(dir.path(), 1, &records);
        if sealed {
            segment::write_seal(&file, offsets[names.len()]).unwrap();
        }
        // One byte of b's header (its stored_at field).
        file.write_all_at(b"\xee", offsets[1] + 17).unwrap();
        let store = Store::open(dir.path(), 1, owner).unwrap();
        for m in names {
            let got = get(&store, m, "v1.0.0", RecordKind::Mod);
            assert_eq!(got.is_some(), m != "example.com/b", "sealed={sealed}: {m}");
        }
        assert_eq!(store.stats().records_skipped, 1, "sealed={sealed}");
        assert_eq!(store.stats().bytes_cut, 0, "sealed={sealed}");
        let d = store.indexes()[0].blob("example.com/d", "v1.0.0", RecordKind::Mod).unwrap();
        let want = if sealed { Integrity::Unchecked } else { Integrity::Verified };
        assert_eq!(d.integrity(), want, "sealed={sealed}");
    }
}

#[test]
fn blobs_of_a_sealed_segment_are_unchecked_until_hashed_and_a_flipped_byte_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (file, offsets) = write_segment(
        dir.path(),
        1,
        &[("example.com/a", "v1.0.0", RecordKind::Zip, b"good-bytes"), ("example.com/b", "v1.0.0", RecordKind::Zip, b"rotting-bytes")],
    );
    segment::write_seal(&file, offsets[2]).unwrap();
    file.write_all_at(b"X", offsets[1] + HEADER_LEN as u64 + "example.com/b@v1.0.0".len() as u64).unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let a = store.indexes()[0].blob("example.com/a", "v1.0.0", RecordKind::Zip).unwrap();
    let b = store.indexes()[0].blob("example.com/b", "v1.0.0", RecordKind::Zip).unwrap();
    assert_eq!((a.integrity(), b.integrity()), (Integrity::Unchecked, Integrity::Unchecked), "start-up trusts no sealed payload");
    assert!(a.verify());
    assert!(!b.verify());
    assert_eq!((a.integrity(), b.integrity()), (Integrity::Verified, Integrity::Corrupt));
    // Every copy of the blob shares what was found.
    let b_again = store.indexes()[0].blob("example.com/b", "v1.0.0", RecordKind::Zip).unwrap();
    assert_eq!(b_again.integrity(), Integrity::Corrupt);
}

#[test]
fn a_segment_file_cut_under_an_open_store_reads_as_zeros_and_fails_its_check_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![0xA5u8; 64 << 10];
    let (file, offsets) = write_segment(
        dir.path(),
        1,
        &[("example.com/a", "v1.0.0", RecordKind::Zip, b"head"), ("example.com/b", "v1.0.0", RecordKind::Zip, &big)],
    );
    segment::write_seal(&file, offsets[2]).unwrap();
    let full = fs::read(dir.path().join("segments").join(segment::segment_file_name(1))).unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let b = store.indexes()[0].blob("example.com/b", "v1.0.0", RecordKind::Zip).unwrap();
    assert!(b.on_disk());
    file.set_len(4096).unwrap();
    assert!(!b.verify(), "a check looks at the file afresh: the cut is seen before any byte is read");
    assert!(!b.on_disk(), "and the segment is known cut from then on");
    drop(store);

    // Reading lost pages anyway (as a racing reader would, within the
    // second a seen length holds) neither crashes nor returns the old
    // bytes, and marks the segment cut at once.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("segments")).unwrap();
    fs::write(dir.path().join("segments").join(segment::segment_file_name(1)), &full).unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let b = store.indexes()[0].blob("example.com/b", "v1.0.0", RecordKind::Zip).unwrap();
    assert!(b.on_disk());
    let file = fs::OpenOptions::new().write(true).open(dir.path().join("segments").join(segment::segment_file_name(1))).unwrap();
    file.set_len(4096).unwrap();
    assert!(b.on_disk(), "within a second, the length seen holds");
    let faults = fault::faults();
    let tail = &b.bytes()[b.bytes().len() - 4096..];
    assert!(tail.iter().all(|&x| x == 0), "lost pages read as zeros");
    assert!(fault::faults() > faults, "the fault handler replaced the lost pages");
    assert!(!b.on_disk(), "the fault marked the segment cut: its zeros are never served");
}

#[test]
fn garbage_files_and_garbage_segments_do_not_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("segments");
    fs::create_dir_all(&seg_dir).unwrap();
    fs::write(seg_dir.join("notes.txt"), b"hello").unwrap();
    fs::write(seg_dir.join(segment::segment_file_name(7)), vec![0xA5u8; 10_000]).unwrap();
    fs::write(seg_dir.join(segment::segment_file_name(8)), b"").unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().records, 0);
    assert_eq!(store.indexes()[0].len(), 0);
}

#[test]
fn later_records_win_and_entries_go_to_their_shard() {
    let dir = tempfile::tempdir().unwrap();
    write_segment(dir.path(), 1, &[("example.com/a", "v1.0.0", RecordKind::Mod, b"old")]);
    write_segment(
        dir.path(),
        2,
        &[("example.com/a", "v1.0.0", RecordKind::Mod, b"new"), ("example.com/b", "v1.0.0", RecordKind::Mod, b"b")],
    );
    let shard = |m: &str, _: &str, _: RecordKind| usize::from(m.ends_with('b'));
    let store = Store::open(dir.path(), 2, shard).unwrap();
    let idx = store.indexes();
    assert_eq!(idx[0].blob("example.com/a", "v1.0.0", RecordKind::Mod).unwrap().bytes(), b"new");
    assert!(idx[0].blob("example.com/b", "v1.0.0", RecordKind::Mod).is_none());
    assert_eq!(idx[1].blob("example.com/b", "v1.0.0", RecordKind::Mod).unwrap().bytes(), b"b");
}

#[test]
fn a_data_directory_is_used_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path(), 1, owner).unwrap();
    assert!(matches!(Store::open(dir.path(), 1, owner), Err(StoreError::Locked(_))));
}

#[test]
fn the_writer_appends_publishable_records_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let writer = store.writer(1 << 20);
    let big = bytes::Bytes::from(vec![7u8; (1 << 20) + 5]);
    let small = bytes::Bytes::from_static(b"module example.com/a\n");
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().unwrap();
    let (a, b, c) = ex.run(async {
        let a = writer.append(RecordKind::Mod, "example.com/a", "v1.0.0", small.clone(), payload_sha256(&small)).await.unwrap();
        let b = writer.append(RecordKind::Zip, "example.com/a", "v1.0.0", big.clone(), payload_sha256(&big)).await.unwrap();
        let c = writer.append(RecordKind::Mod, "example.com/b", "v1.0.0", small.clone(), payload_sha256(&small)).await.unwrap();
        (a, b, c)
    });
    assert_eq!(a.bytes(), &small[..]);
    assert_eq!(b.bytes(), &big[..]);
    assert_eq!(c.bytes(), &small[..]);
    let segments = files_with(dir.path(), "seg").len();
    assert_eq!(segments, 3, "the oversized blob got a segment of its own, and the next record a fresh one");
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().records, 3);
    assert_eq!(get(&store, "example.com/a", "v1.0.0", RecordKind::Zip).unwrap(), *big);
}

/// Like `write_segment`, with each record's write time given.
fn write_timed(dir: &Path, id: u64, records: &[(&str, &str, RecordKind, &[u8], u64)]) {
    let seg_dir = dir.join("segments");
    fs::create_dir_all(&seg_dir).unwrap();
    let file = segment::create(&seg_dir, id).unwrap();
    let mut at = 0;
    for (m, v, k, payload, when) in records {
        at += segment::write_record(&file, at, *k, &format!("{m}@{v}"), payload, &payload_sha256(payload), *when).unwrap();
    }
}

#[test]
fn the_later_write_wins_whatever_segment_holds_it() {
    // Cores draw segment ids from one counter, so a lower id can hold the later record.
    let dir = tempfile::tempdir().unwrap();
    write_timed(dir.path(), 1, &[("sumdb/sum.example", "latest", RecordKind::SumAnswer, b"newer", 20)]);
    write_timed(dir.path(), 2, &[("sumdb/sum.example", "latest", RecordKind::SumAnswer, b"older", 10)]);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(get(&store, "sumdb/sum.example", "latest", RecordKind::SumAnswer).as_deref(), Some(&b"newer"[..]));
    assert_eq!(store.indexes()[0].blob("sumdb/sum.example", "latest", RecordKind::SumAnswer).unwrap().stored_at_ms(), 20);
}

#[test]
fn a_tombstone_hides_what_was_stored_before_it_across_restarts_but_not_a_refill() {
    let dir = tempfile::tempdir().unwrap();
    write_timed(
        dir.path(),
        1,
        &[
            ("example.com/a", "v1.0.0", RecordKind::Zip, b"bad zip", 10),
            ("example.com/a", "v1.0.0", RecordKind::Mod, b"module example.com/a\n", 10),
            ("example.com/b", "v1.0.0", RecordKind::Zip, b"zip b", 10),
        ],
    );
    let store = Store::open(dir.path(), 1, owner).unwrap();
    store.withdraw(&[("example.com/a", "v1.0.0", RecordKind::Zip), ("example.com/b", "v1.0.0", RecordKind::Zip)], owner).unwrap();
    assert_eq!(get(&store, "example.com/a", "v1.0.0", RecordKind::Zip), None, "gone at once");
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().withdrawn, 2);
    assert_eq!(get(&store, "example.com/a", "v1.0.0", RecordKind::Zip), None, "and after a restart");
    assert!(get(&store, "example.com/a", "v1.0.0", RecordKind::Mod).is_some(), "only the kind withdrawn");
    drop(store);
    // A refill, later than the tombstone, is served again.
    write_timed(dir.path(), 9, &[("example.com/a", "v1.0.0", RecordKind::Zip, b"good zip", store_now())]);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(get(&store, "example.com/a", "v1.0.0", RecordKind::Zip).as_deref(), Some(&b"good zip"[..]));
    assert_eq!(get(&store, "example.com/b", "v1.0.0", RecordKind::Zip), None);
}

fn store_now() -> u64 {
    unix_ms() + 1
}

#[test]
fn tiles_an_older_build_relayed_unverified_are_never_indexed() {
    let dir = tempfile::tempdir().unwrap();
    write_timed(
        dir.path(),
        1,
        &[
            ("sumdb/sum.example", "tile/8/0/000", RecordKind::UnverifiedSumTile, b"unchecked", 10),
            ("sumdb/sum.example", "tile/8/0/001", RecordKind::SumTile, b"authenticated", 10),
        ],
    );
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(get(&store, "sumdb/sum.example", "tile/8/0/000", RecordKind::UnverifiedSumTile), None);
    assert!(get(&store, "sumdb/sum.example", "tile/8/0/001", RecordKind::SumTile).is_some());
}

#[test]
fn appends_that_wait_together_are_written_together_and_each_gets_its_own_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let writer = std::rc::Rc::new(store.writer(1 << 20));
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().unwrap();
    let blobs = ex.run(async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let writer = writer.clone();
                glommio::spawn_local(async move {
                    let payload = bytes::Bytes::from(format!("module example.com/m{i}\n"));
                    let sha = payload_sha256(&payload);
                    writer.append(RecordKind::Mod, &format!("example.com/m{i}"), "v1.0.0", payload, sha).await.unwrap()
                })
            })
            .collect();
        let mut blobs = Vec::new();
        for t in tasks {
            blobs.push(t.await);
        }
        blobs
    });
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(b.bytes(), format!("module example.com/m{i}\n").as_bytes());
    }
    assert!(writer.writes() <= 3, "64 appends waiting together took {} writes", writer.writes());
    drop(writer);
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().records, 64);
}

/// Appends `payload` as `module@v1.0.0` and publishes it, as a fill does.
async fn fill(writer: &SegmentWriter, store: &Store, module: &str, kind: RecordKind, payload: &[u8]) -> Result<StoredBlob, StoreError> {
    let payload = bytes::Bytes::copy_from_slice(payload);
    let sha = payload_sha256(&payload);
    let blob = writer.append(kind, module, "v1.0.0", payload, sha).await?;
    store.indexes()[0].insert(module, "v1.0.0", kind, blob.clone());
    Ok(blob)
}

/// A fresh store bounded at `max` bytes, its writer of `segment`-byte
/// segments, and an executor to run them on (the directory lives as long
/// as the first).
fn bounded_store(max: u64, segment: u64) -> (tempfile::TempDir, Store, SegmentWriter, glommio::LocalExecutor) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    store.ledger().set_max_bytes(Some(max));
    let writer = store.writer(segment);
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().unwrap();
    (dir, store, writer, ex)
}

/// Bytes of the segment files in the directory now, while nothing writes.
fn bytes_on_disk(dir: &Path) -> u64 {
    bytes_on_disk_now(dir).expect("no file deleted while listed").0
}

fn payload_of(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j) as u8).collect()
}

#[test]
fn a_bounded_store_evicts_whole_segments_keeps_what_is_hit_and_stays_within_one_segment_of_its_bound() {
    const MAX: u64 = 256 << 10;
    const SEGMENT: u64 = 32 << 10;
    let (dir, store, writer, ex) = bounded_store(MAX, SEGMENT);
    ex.run(async {
        for i in 0..200 {
            fill(&writer, &store, &format!("example.com/m{i}"), RecordKind::Zip, &payload_of(i, 4000)).await.unwrap();
            // m0 is asked for all the time; the rest never again.
            store.indexes()[0].read("example.com/m0", "v1.0.0", RecordKind::Zip, index::Entry::note_hit);
            let (counted, listed) = (store.ledger().on_disk(), bytes_on_disk(dir.path()));
            assert!(listed <= MAX + SEGMENT, "after fill {i}: {listed} bytes on disk, bound {MAX} + one segment {SEGMENT}");
            // The active segment's last record may end short of its 8-byte alignment.
            assert!(counted >= listed && counted - listed < 8, "after fill {i}: the ledger counts {counted}, the directory holds {listed}");
        }
    });
    let ledger = store.ledger();
    assert!(ledger.evicted_segments.load(std::sync::atomic::Ordering::Relaxed) >= 10);
    // m1..m7 share m0's segment, which its hits keep; m10 is in the next one.
    assert!(get(&store, "example.com/m10", "v1.0.0", RecordKind::Zip).is_none(), "an early blob never hit again was evicted");
    assert_eq!(get(&store, "example.com/m0", "v1.0.0", RecordKind::Zip), Some(payload_of(0, 4000)), "the hit blob was carried");
    assert_eq!(get(&store, "example.com/m199", "v1.0.0", RecordKind::Zip), Some(payload_of(199, 4000)));
    let kept = store.indexes()[0].len();
    drop(writer);
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.indexes()[0].len(), kept, "a restart finds what was kept, no evicted blob comes back");
    assert_eq!(get(&store, "example.com/m0", "v1.0.0", RecordKind::Zip), Some(payload_of(0, 4000)));
    for e in store.indexes()[0].entries() {
        let i: usize = e.module().trim_start_matches("example.com/m").parse().unwrap();
        assert!(e.blob.verify(), "m{i} is whole");
        assert_eq!(e.blob.bytes(), &payload_of(i, 4000)[..]);
    }
    assert_eq!(store.ledger().on_disk(), bytes_on_disk(dir.path()), "every file sealed: counted exactly");
}

/// The bytes of the directory's files at one instant, and the largest
/// file's, or `None` when a file went while they were listed. Files only
/// grow or go: if every file listed is still there once all are read, the
/// total is at most what the directory held at that moment (a listing that
/// counted a file deleted after it was read could count room twice).
fn bytes_on_disk_now(dir: &Path) -> Option<(u64, u64)> {
    let listed: Vec<(PathBuf, u64)> = fs::read_dir(dir.join("segments"))
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.path(), e.metadata().ok()?.len()))
        })
        .collect();
    if listed.iter().any(|(path, _)| !path.exists()) {
        return None;
    }
    Some((listed.iter().map(|(_, len)| len).sum(), listed.iter().map(|(_, len)| *len).max().unwrap_or(0)))
}

/// Samples [`bytes_on_disk_now`] until `stop`: the most bytes on disk, and the largest file.
fn watch_bytes_on_disk(dir: &Path, stop: &std::sync::atomic::AtomicBool) -> (u64, u64) {
    let (mut most, mut largest) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some((total, file)) = bytes_on_disk_now(dir) {
            (most, largest) = (most.max(total), largest.max(file));
        }
    }
    (most, largest)
}

#[test]
fn with_every_blob_hot_eviction_still_makes_room_and_passes_the_bound_by_less_than_a_segment_while_it_runs() {
    const MAX: u64 = 256 << 10;
    const SEGMENT: u64 = 32 << 10;
    let (dir, store, writer, ex) = bounded_store(MAX, SEGMENT);
    // Watches the directory while the writes run: the copies an eviction
    // carries are on disk beside their victim until it is deleted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, dir) = (stop.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || watch_bytes_on_disk(&dir, &stop))
    };
    ex.run(async {
        for i in 0..300 {
            // Every write is stored: no refusal as full.
            fill(&writer, &store, &format!("example.com/m{i}"), RecordKind::Zip, &payload_of(i, 4000)).await.unwrap();
            // Everything stored is asked for again before the next fill.
            for j in 0..=i {
                store.indexes()[0].read(&format!("example.com/m{j}"), "v1.0.0", RecordKind::Zip, index::Entry::note_hit);
            }
        }
        // Writes of almost a segment need more than one victim's room: each
        // victim's copies go before the next victim is chosen.
        for i in 0..12 {
            fill(&writer, &store, &format!("example.com/big{i}"), RecordKind::Zip, &payload_of(i, 30_000)).await.unwrap();
            for j in 0..300 {
                store.indexes()[0].read(&format!("example.com/m{j}"), "v1.0.0", RecordKind::Zip, index::Entry::note_hit);
            }
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, largest) = watcher.join().unwrap();
    assert!(most <= MAX + SEGMENT, "{most} bytes on disk at the most, bound {MAX} + one segment {SEGMENT}");
    assert!(largest <= SEGMENT + HEADER_LEN as u64, "a segment of {largest} bytes: copies fill segments as any write does");
    let ledger = store.ledger();
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    assert!(load(&ledger.evicted_segments) >= 20);
    let (carried, evicted) = (load(&ledger.carried_bytes), load(&ledger.evicted_bytes));
    assert!(carried > 0 && carried <= evicted / 4 * 3, "carried {carried} of {evicted} evicted bytes: at most three quarters");
    assert!(load(&ledger.dropped_blobs) > 0, "hot blobs beyond a victim's share were dropped");
    assert_eq!(get(&store, "example.com/big11", "v1.0.0", RecordKind::Zip), Some(payload_of(11, 30_000)));
}

#[test]
fn writers_on_four_cores_evicting_at_once_keep_the_bound_within_one_segment() {
    // A segment is at most a quarter of a core's share of the bound, as
    // the configuration requires.
    const MAX: u64 = 256 << 10;
    const SEGMENT: u64 = 16 << 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    store.ledger().set_max_bytes(Some(MAX));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (most, largest) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_bytes_on_disk(dir.path(), &stop));
        let cores: Vec<_> = (0..4)
            .map(|core| {
                let store = &store;
                scope.spawn(move || {
                    let writer = store.writer(SEGMENT);
                    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().unwrap();
                    ex.run(async {
                        for i in 0..200 {
                            // Small, then nearly a segment: the cores need victims at once.
                            let len = if i % 10 == 9 { 15_000 } else { 2000 };
                            fill(&writer, store, &format!("example.com/c{core}m{i}"), RecordKind::Zip, &payload_of(i, len)).await.unwrap();
                            // Half of them hot: every victim has copies to carry.
                            for j in (0..=i).step_by(2) {
                                store.indexes()[0].read(
                                    &format!("example.com/c{core}m{j}"),
                                    "v1.0.0",
                                    RecordKind::Zip,
                                    index::Entry::note_hit,
                                );
                            }
                        }
                    });
                })
            })
            .collect();
        // Every core finished (or panicked) before the watcher is stopped and the verdict read.
        let finished: Vec<_> = cores.into_iter().map(|c| c.join()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for f in finished {
            f.unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        watcher.join().unwrap()
    });
    assert!(most <= MAX + SEGMENT, "{most} bytes on disk at the most, bound {MAX} + one segment {SEGMENT}");
    assert!(largest <= SEGMENT + HEADER_LEN as u64, "a segment of {largest} bytes: more than one and its seal");
    assert!(store.ledger().evicted_segments.load(std::sync::atomic::Ordering::Relaxed) >= 20);
    assert!(store.ledger().on_disk() <= MAX + SEGMENT);
}

#[test]
fn eviction_carries_tombstones_and_go_sum_hashes_so_a_purge_outlives_the_segment_that_recorded_it() {
    const SEGMENT: u64 = 16 << 10;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let writer = store.writer(SEGMENT);
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().unwrap();
    let first_segment = ex.run(async {
        // The first segment: the purged blob beside a hot one, which keeps it from eviction.
        let purged = fill(&writer, &store, "example.com/purged", RecordKind::Zip, &payload_of(1, 3000)).await.unwrap();
        fill(&writer, &store, "example.com/hot", RecordKind::Zip, &payload_of(2, 3000)).await.unwrap();
        // The next segments: the tombstone and a go.sum hash, among fillers.
        for i in 0..4 {
            fill(&writer, &store, &format!("example.com/a{i}"), RecordKind::Zip, &payload_of(i, 3000)).await.unwrap();
        }
        let tombstone = bytes::Bytes::from_static(&[RecordKind::Zip as u8]);
        writer.append(RecordKind::Tombstone, "example.com/purged", "v1.0.0", tombstone.clone(), payload_sha256(&tombstone)).await.unwrap();
        store.indexes()[0].remove("example.com/purged", "v1.0.0", RecordKind::Zip);
        fill(&writer, &store, "example.com/summed", RecordKind::GoSum, b"h1:abc=").await.unwrap();
        // Sealed, so it may be evicted.
        for i in 0..6 {
            fill(&writer, &store, &format!("example.com/c{i}"), RecordKind::Zip, &payload_of(i, 3000)).await.unwrap();
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        store.ledger().set_max_bytes(Some(store.ledger().on_disk() + (8 << 10)));
        for i in 0..40 {
            // Hits a clock tick (a few ms) after the last segment was opened.
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            store.indexes()[0].read("example.com/hot", "v1.0.0", RecordKind::Zip, index::Entry::note_hit);
            fill(&writer, &store, &format!("example.com/b{i}"), RecordKind::Zip, &payload_of(i, 3000)).await.unwrap();
        }
        purged.record_id().0
    });
    assert!(
        segment::segment_path(&dir.path().join("segments"), first_segment).exists(),
        "the purged blob's segment is still there (kept by its hot neighbour)"
    );
    assert!(store.ledger().evicted_segments.load(std::sync::atomic::Ordering::Relaxed) >= 3, "the tombstone's segment was evicted");
    assert!(store.ledger().carried_records.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    drop(writer);
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert!(get(&store, "example.com/purged", "v1.0.0", RecordKind::Zip).is_none(), "the carried tombstone still hides it");
    assert_eq!(get(&store, "example.com/summed", "v1.0.0", RecordKind::GoSum).as_deref(), Some(&b"h1:abc="[..]));
    assert_eq!(get(&store, "example.com/hot", "v1.0.0", RecordKind::Zip), Some(payload_of(2, 3000)));
}

#[test]
fn eviction_carries_the_stale_if_error_reserve_unserved_but_never_more_than_its_share_of_a_victim() {
    const MAX: u64 = 128 << 10;
    const SEGMENT: u64 = 16 << 10;
    let (dir, store, writer, ex) = bounded_store(MAX, SEGMENT);
    let reserve = [RecordKind::List, RecordKind::Latest, RecordKind::Query, RecordKind::SumAnswer];
    ex.run(async {
        // A module's answers that change, never read from the store again
        // (fresh copies are served from memory), among zips nobody asks
        // for again either; then enough zips to evict all of them.
        for (i, kind) in reserve.iter().enumerate() {
            fill(&writer, &store, "example.com/answers", *kind, &payload_of(i, 300)).await.unwrap();
            fill(&writer, &store, &format!("example.com/cold{i}"), RecordKind::Zip, &payload_of(i, 3000)).await.unwrap();
        }
        for i in 0..120 {
            fill(&writer, &store, &format!("example.com/z{i}"), RecordKind::Zip, &payload_of(i, 3000)).await.unwrap();
            assert!(bytes_on_disk(dir.path()) <= MAX + SEGMENT, "after zip {i}");
        }
    });
    assert!(store.ledger().evicted_segments.load(std::sync::atomic::Ordering::Relaxed) >= 10);
    assert!(get(&store, "example.com/cold0", "v1.0.0", RecordKind::Zip).is_none(), "an unserved zip was evicted");
    drop(writer);
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    for (i, kind) in reserve.iter().enumerate() {
        assert_eq!(get(&store, "example.com/answers", "v1.0.0", *kind), Some(payload_of(i, 300)), "{kind:?} was carried, across a restart");
    }

    // A store of nothing but reserve records still makes room: a victim
    // carries at most three quarters of itself, so fills are stored, not refused as
    // full, and the bound holds.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    store.ledger().set_max_bytes(Some(MAX));
    let writer = store.writer(SEGMENT);
    ex.run(async {
        for i in 0..600 {
            fill(&writer, &store, &format!("example.com/l{i}"), RecordKind::List, &payload_of(i, 1000)).await.unwrap();
            assert!(bytes_on_disk(dir.path()) <= MAX + SEGMENT, "after list {i}");
        }
    });
    let ledger = store.ledger();
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    let (carried, evicted) = (load(&ledger.carried_bytes), load(&ledger.evicted_bytes));
    assert!(carried > 0 && carried <= evicted / 4 * 3, "carried {carried} of {evicted} evicted bytes: at most three quarters");
    assert!(get(&store, "example.com/l599", "v1.0.0", RecordKind::List).is_some());
}

#[test]
fn a_victim_with_more_reserve_than_its_share_carries_the_newest_answers() {
    const SEGMENT: u64 = 16 << 10;
    const ANSWERS: usize = 14;
    let (_dir, store, writer, ex) = bounded_store(128 << 10, SEGMENT);
    let evicted = || store.ledger().evicted_segments.load(std::sync::atomic::Ordering::Relaxed);
    ex.run(async {
        // Fourteen answers of 1000 bytes fill most of the first segment:
        // more than its share, oldest first in the file.
        for i in 0..ANSWERS {
            fill(&writer, &store, &format!("example.com/l{i}"), RecordKind::List, &payload_of(i, 1000)).await.unwrap();
            glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
        }
        let mut i = 0;
        while evicted() == 0 {
            fill(&writer, &store, &format!("example.com/z{i}"), RecordKind::Zip, &payload_of(i, 3000)).await.unwrap();
            i += 1;
        }
    });
    let kept: Vec<usize> =
        (0..ANSWERS).filter(|i| get(&store, &format!("example.com/l{i}"), "v1.0.0", RecordKind::List).is_some()).collect();
    assert!(!kept.is_empty() && kept.len() < ANSWERS, "a victim's share holds some of them: {kept:?}");
    let newest: Vec<usize> = (ANSWERS - kept.len()..ANSWERS).collect();
    assert_eq!(kept, newest, "the newest answers are carried");
}

#[test]
fn a_blob_held_by_a_reader_while_its_segment_is_evicted_stays_whole() {
    let (dir, store, writer, ex) = bounded_store(64 << 10, 16 << 10);
    let held = ex.run(async {
        let held = fill(&writer, &store, "example.com/held", RecordKind::Zip, &payload_of(7, 12000)).await.unwrap();
        for i in 0..30 {
            fill(&writer, &store, &format!("example.com/f{i}"), RecordKind::Zip, &payload_of(i, 12000)).await.unwrap();
        }
        held
    });
    assert!(!segment::segment_path(&dir.path().join("segments"), held.record_id().0).exists(), "its segment was evicted");
    assert!(get(&store, "example.com/held", "v1.0.0", RecordKind::Zip).is_none());
    // The map and the descriptor (what sendfile reads) still hold every byte.
    assert_eq!(held.bytes(), &payload_of(7, 12000)[..]);
    let (fd, offset) = held.file_range();
    let mut buf = vec![0u8; 12000];
    // SAFETY: pread into a buffer we own, from a descriptor the blob keeps open.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t) };
    assert_eq!(n, 12000);
    assert_eq!(buf, payload_of(7, 12000));
    assert!(held.verify());
}

#[test]
fn a_store_that_cannot_make_room_passes_the_write_back_as_full() {
    let (_dir, store, writer, ex) = bounded_store(32 << 10, 8 << 10);
    ex.run(async {
        let too_big = fill(&writer, &store, "example.com/huge", RecordKind::Zip, &payload_of(1, 40 << 10)).await;
        assert!(matches!(too_big, Err(StoreError::Full)), "{too_big:?}");
        fill(&writer, &store, "example.com/small", RecordKind::Zip, &payload_of(2, 1000)).await.unwrap();
        // Sealed segments to evict, and the open one (never evicted) part full.
        for i in 0..5 {
            fill(&writer, &store, &format!("example.com/s{i}"), RecordKind::Zip, &payload_of(i, 5000)).await.unwrap();
        }
        // Under the bound, but not beside the open segment: refused before
        // anything is evicted for it.
        let open = store.ledger().on_disk() - store.ledger().sealed_bytes();
        assert!(open > 0);
        let beside = fill(&writer, &store, "example.com/beside", RecordKind::Zip, &payload_of(3, (32 << 10) - open as usize)).await;
        assert!(matches!(beside, Err(StoreError::Full)), "{beside:?}");
    });
    assert_eq!(
        store.ledger().evicted_segments.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no victim lost for a write that could not fit"
    );
    assert!(get(&store, "example.com/small", "v1.0.0", RecordKind::Zip).is_some());
    assert!(store.ledger().on_disk() <= 32 << 10);
}

/// Writes `n` small records through a writer of `segment`-byte segments
/// (a tombstone for the first one last), then closes it: sealed, snapshotted.
fn write_and_close(store: &Store, n: usize, segment: u64) {
    let writer = store.writer(segment);
    let ex = glommio::LocalExecutorBuilder::default().io_memory(1 << 20).make().unwrap();
    ex.run(async {
        for i in 0..n {
            fill(&writer, store, &format!("example.com/s{i}"), RecordKind::Mod, &payload_of(i, 300)).await.unwrap();
        }
        let tombstone = bytes::Bytes::from_static(&[RecordKind::Mod as u8]);
        writer.append(RecordKind::Tombstone, "example.com/s0", "v1.0.0", tombstone.clone(), payload_sha256(&tombstone)).await.unwrap();
        writer.close().await;
    });
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn a_closed_store_opens_from_its_index_snapshots_tombstones_included() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    write_and_close(&store, 100, 8 << 10);
    drop(store);
    let segments = files_with(dir.path(), "seg").len();
    assert!(segments >= 4);
    assert_eq!(files_with(dir.path(), "snap").len(), segments, "every segment sealed with its snapshot");
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let stats = store.stats();
    assert_eq!((stats.snapshots_used, stats.segments, stats.records_verified), (segments, segments, 0), "{stats:?}");
    assert_eq!(stats.withdrawn, 1, "the tombstone, listed in its snapshot, hides s0");
    assert!(get(&store, "example.com/s0", "v1.0.0", RecordKind::Mod).is_none());
    for i in 1..100 {
        let b = store.indexes()[0].blob(&format!("example.com/s{i}"), "v1.0.0", RecordKind::Mod).unwrap();
        assert_eq!(b.integrity(), Integrity::Unchecked, "hashed on first use, as any sealed segment's");
        assert!(b.verify());
        assert_eq!(b.bytes(), &payload_of(i, 300)[..]);
    }
}

#[test]
fn a_snapshot_that_does_not_hold_for_its_segment_is_ignored_and_the_segment_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    write_and_close(&store, 100, 8 << 10);
    drop(store);
    let (segs, snaps) = (files_with(dir.path(), "seg"), files_with(dir.path(), "snap"));
    // A segment that grew (bytes appended after its seal), a snapshot with
    // a flipped byte, one cut short, one deleted.
    std::fs::OpenOptions::new().append(true).open(&segs[0]).unwrap().write_all_at(b"junk", 0).unwrap();
    let mut bad = fs::read(&snaps[1]).unwrap();
    bad[40] ^= 1;
    fs::write(&snaps[1], bad).unwrap();
    let cut = fs::read(&snaps[2]).unwrap();
    fs::write(&snaps[2], &cut[..cut.len() / 2]).unwrap();
    fs::remove_file(&snaps[3]).unwrap();
    // And a snapshot left behind by a segment evicted during a crash.
    fs::write(dir.path().join("segments").join(snapshot::snapshot_file_name(0xdead)), b"orphan").unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().snapshots_used, segs.len() - 4, "{:?}", store.stats());
    assert_eq!(store.stats().records, 101);
    for i in 1..100 {
        assert_eq!(get(&store, &format!("example.com/s{i}"), "v1.0.0", RecordKind::Mod), Some(payload_of(i, 300)), "s{i}");
    }
    assert!(get(&store, "example.com/s0", "v1.0.0", RecordKind::Mod).is_none());
    drop(store);
    assert!(!dir.path().join("segments").join(snapshot::snapshot_file_name(0xdead)).exists(), "orphan removed");
    // The scans wrote fresh snapshots: every segment opens from one now.
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().snapshots_used, segs.len());
    assert_eq!(store.stats().records, 101);
}

#[test]
fn a_snapshot_written_after_a_scan_keeps_the_records_past_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<(&str, &str, RecordKind, &[u8])> = vec![
        ("example.com/a", "v1.0.0", RecordKind::Mod, b"aaaa"),
        ("example.com/b", "v1.0.0", RecordKind::Mod, b"bbbb"),
        ("example.com/c", "v1.0.0", RecordKind::Mod, b"cccc"),
    ];
    let (file, offsets) = write_segment(dir.path(), 1, &recs);
    // Damage b's header: the scan skips it and resumes at c.
    file.write_all_at(&[0xff], offsets[1] + 20).unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().records, 2);
    drop(store);
    let store = Store::open(dir.path(), 1, owner).unwrap();
    assert_eq!(store.stats().snapshots_used, 1);
    assert_eq!(get(&store, "example.com/c", "v1.0.0", RecordKind::Mod).as_deref(), Some(&b"cccc"[..]));
    assert!(get(&store, "example.com/b", "v1.0.0", RecordKind::Mod).is_none());
}

#[test]
fn a_snapshot_refused_half_way_publishes_nothing_of_itself_and_the_segment_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    write_and_close(&store, 100, 8 << 10);
    drop(store);
    let (segs, snaps) = (files_with(dir.path(), "seg"), files_with(dir.path(), "snap"));
    // Its checksum holds, and every entry but the last is sound: the last
    // points past its segment's end.
    let seg_len = fs::metadata(&segs[1]).unwrap().len();
    let bytes = fs::read(&snaps[1]).unwrap();
    let mut listed: Vec<snapshot::Listed<'_>> = snapshot::decode(&bytes, seg_len).unwrap().map(Result::unwrap).collect();
    assert!(listed.len() > 2);
    let last = listed.len() - 1;
    listed[last].data_offset = seg_len;
    fs::write(&snaps[1], snapshot::encode(seg_len, listed.into_iter())).unwrap();
    let store = Store::open(dir.path(), 1, owner).unwrap();
    let stats = store.stats();
    assert_eq!((stats.snapshots_used, stats.segments, stats.records), (segs.len() - 1, segs.len(), 101), "{stats:?}");
    assert_eq!(store.indexes()[0].len(), 99, "each record once: none left over from the refused snapshot");
    for i in 1..100 {
        assert_eq!(get(&store, &format!("example.com/s{i}"), "v1.0.0", RecordKind::Mod), Some(payload_of(i, 300)), "s{i}");
    }
}
