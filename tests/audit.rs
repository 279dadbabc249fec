//! Guards the access log (issue 3, acceptance 1, 2 and 5; invariants 4 and 5): `verify`
//! names the first bad entry for every kind of tampering, rollback is caught by a
//! checkpoint, concurrent commits get gapless sequence numbers, every operation leaves
//! exactly one entry, queries and exports work, and erasure unlinks entries but keeps
//! them verifiable.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{all_entries, care, ctx, memory_vault, raw_key, reopen};
use medvault::storage::MemoryStorage;
use medvault::{
    AccessContext, Action, Checkpoint, Error, LogQuery, Outcome, Purpose, RecordKey, Result, Vault,
};
use medvault_testkit::{SegmentFile, fix_check, renumber, segment_paths};
use serde_json::{Value, json};

/// A memory vault whose log holds a mix of entries (create, writes, reads, scans,
/// a failed read, a reopen).
fn populated() -> (MemoryStorage, Vault) {
    let (storage, v) = memory_vault();
    let c = ctx();
    for i in 0..12 {
        let k = RecordKey::new(format!("p{}", i % 3), "Observation", format!("o{i}"));
        v.put(&c, &k, &json!({"value": i, "code": "8867-4"}))
            .unwrap();
    }
    for i in 0..4 {
        let k = RecordKey::new(format!("p{}", i % 3), "Observation", format!("o{i}"));
        let _: Value = v.get(&c, &k).unwrap();
    }
    let _: Vec<(RecordKey, Value)> = v.records_of(&c, "p1", None).unwrap();
    let missing = RecordKey::new("p1", "Observation", "nope");
    assert!(v.get::<Value>(&c, &missing).is_err());
    drop(v);
    let v = reopen(&storage);
    assert!(v.log_len() >= 20);
    (storage, v)
}

#[track_caller]
fn assert_tampered_at(v: &Vault, cp: Option<&Checkpoint>, seq: u64, why: &str) {
    match v.verify(&ctx(), cp) {
        Err(Error::LogTampered { seq: s, fault }) => {
            assert_eq!(s, seq, "{why}: reported {fault:?} at {s}, expected {seq}")
        }
        other => panic!("{why}: expected LogTampered at {seq}, got {other:?}"),
    }
}

#[test]
fn an_untouched_log_verifies() {
    let (_storage, v) = populated();
    let n = v.log_len();
    assert_eq!(v.verify(&ctx(), None).unwrap(), n);
    // The verify entry itself is part of the chain.
    assert_eq!(v.verify(&ctx(), None).unwrap(), n + 1);
}

// ----- the log's segment files (storage v2) ------------------------------------------
//
// Since storage v2 the access log is not in the record store: it is the segment files
// `VAULT/log/*.seg` (docs/FORMAT.md "Log segment files") with the anchor `VAULT/anchor`.
// The tamper tests below make the same attacks as before on those files, through
// `medvault_testkit::SegmentFile` (the documented layout, split without medvault's own
// decoder). A tamperer without the key can always recompute a frame's unkeyed check, so
// each attack is made both with the check left stale and with it recomputed.

/// A closed disk vault holding the same mix of entries as `populated`, with its log and
/// anchor saved so every case starts from the same bytes.
struct DiskLog {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    len: u64,
    seg: SegmentFile,
    anchor: Vec<u8>,
}

impl DiskLog {
    fn new() -> DiskLog {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        let c = ctx();
        {
            let v = Vault::create_with(&dir, raw_key(), common::options()).unwrap();
            for i in 0..12 {
                let k = RecordKey::new(format!("p{}", i % 3), "Observation", format!("o{i}"));
                v.put(&c, &k, &json!({"value": i, "code": "8867-4"}))
                    .unwrap();
            }
            for i in 0..4 {
                let k = RecordKey::new(format!("p{}", i % 3), "Observation", format!("o{i}"));
                let _: Value = v.get(&c, &k).unwrap();
            }
            let _: Vec<(RecordKey, Value)> = v.records_of(&c, "p1", None).unwrap();
            let missing = RecordKey::new("p1", "Observation", "nope");
            assert!(v.get::<Value>(&c, &missing).is_err());
        }
        let len = Vault::open_with(&dir, raw_key(), common::options())
            .unwrap()
            .log_len();
        assert!(len >= 20);
        let seg = SegmentFile::only_one(&dir);
        assert!(seg.tail.is_empty(), "a closed vault's log ends on a frame");
        assert_eq!(seg.frames.len() as u64, len);
        let anchor = std::fs::read(dir.join("anchor")).unwrap();
        DiskLog {
            _tmp: tmp,
            dir,
            len,
            seg,
            anchor,
        }
    }

    /// Puts the saved log and anchor back (an open appends its own entries).
    fn restore(&self) {
        std::fs::create_dir_all(self.dir.join("log")).unwrap();
        for p in segment_paths(&self.dir) {
            std::fs::remove_file(p).unwrap();
        }
        self.seg.write();
        std::fs::write(self.dir.join("anchor"), &self.anchor).unwrap();
    }

    fn open(&self) -> Result<Vault> {
        Vault::open_with(&self.dir, raw_key(), common::options())
    }

    /// Writes `seg` in place of the log, opens, and expects `verify` to name `seq`.
    fn assert_named(&self, seg: &SegmentFile, seq: u64, why: &str) {
        self.restore();
        seg.write();
        let v = self
            .open()
            .unwrap_or_else(|e| panic!("{why}: open failed before verify: {e}"));
        assert_tampered_at(&v, None, seq, why);
    }

    /// Writes `seg` in place of the log and expects open to refuse it as tampering, or
    /// `verify` to name `seq` (a frame removed shortens the file below the anchor's
    /// remembered end, which open sees first).
    fn assert_caught(&self, seg: &SegmentFile, seq: u64, why: &str) {
        self.restore();
        seg.write();
        match self.open() {
            Ok(v) => assert_tampered_at(&v, None, seq, why),
            Err(Error::Integrity { .. } | Error::LogTampered { .. }) => {}
            Err(e) => panic!("{why}: open failed, but not as tampering: {e:?}"),
        }
    }

    /// Writes `seg` in place of the log and expects open to fail with an integrity error.
    fn assert_open_fails(&self, seg: Option<&SegmentFile>, why: &str) -> Error {
        self.restore();
        if let Some(s) = seg {
            s.write();
        }
        match self.open() {
            Err(e @ (Error::Integrity { .. } | Error::LogTampered { .. })) => e,
            Err(e) => panic!("{why}: open failed, but not as tampering: {e:?}"),
            Ok(_) => panic!("{why}: the vault opened"),
        }
    }
}

#[test]
fn a_modified_byte_in_any_entry_is_named() {
    let d = DiskLog::new();
    let len = d.len;
    // First, middle and last entries, every byte (length, version, flags, seq, sealed
    // body, link, check), with the check stale and with it recomputed.
    for seq in [0, len / 2, len - 1] {
        let i_frame = d.seg.index_of(seq);
        let orig = d.seg.frames[i_frame].clone();
        for i in 0..orig.len() {
            for fix in [false, true] {
                let mut s = d.seg.clone();
                s.frames[i_frame][i] ^= 0x01;
                // (Recomputing the check after flipping a check byte would undo the flip.)
                if fix && i >= 4 && i < orig.len() - 8 {
                    fix_check(&mut s.frames[i_frame]);
                }
                d.assert_named(
                    &s,
                    seq,
                    &format!("entry {seq} byte {i}, check fixed: {fix}"),
                );
            }
        }
    }
    // Every other entry, a few positions.
    for seq in 1..len - 1 {
        let i_frame = d.seg.index_of(seq);
        let n = d.seg.frames[i_frame].len();
        for i in [0, 3, 5, 9, n / 2, n - 41, n - 1] {
            let mut s = d.seg.clone();
            s.frames[i_frame][i] ^= 0x80;
            if i >= 4 && i < n - 8 {
                fix_check(&mut s.frames[i_frame]);
            }
            d.assert_named(&s, seq, &format!("entry {seq} byte {i}"));
        }
    }
    d.restore();
    assert_eq!(d.open().unwrap().verify(&ctx(), None).unwrap(), len + 1);
}

#[test]
fn a_deleted_entry_in_the_middle_is_named() {
    let d = DiskLog::new();
    let len = d.len;
    for seq in [1, len / 2, len - 2] {
        // Cut out of the file as it is, and with every later frame renumbered to close
        // the gap.
        let mut s = d.seg.clone();
        s.frames.remove(d.seg.index_of(seq));
        d.assert_caught(&s, seq, &format!("entry {seq} deleted"));
        for (i, f) in s.frames.iter_mut().enumerate().skip(seq as usize) {
            renumber(f, i as u64);
        }
        d.assert_caught(
            &s,
            seq,
            &format!("entry {seq} deleted, later ones renumbered"),
        );
    }
}

#[test]
fn swapped_entries_are_named() {
    let d = DiskLog::new();
    let len = d.len;
    for (a, b) in [(0, 1), (3, 4), (2, len / 2), (len / 2, len - 1)] {
        let (ia, ib) = (d.seg.index_of(a), d.seg.index_of(b));
        let mut s = d.seg.clone();
        s.frames.swap(ia, ib);
        d.assert_named(&s, a, &format!("entries {a} and {b} swapped"));
        renumber(&mut s.frames[ia], a);
        renumber(&mut s.frames[ib], b);
        d.assert_named(
            &s,
            a,
            &format!("entries {a} and {b} swapped and renumbered"),
        );
    }
}

#[test]
fn forged_entries_are_named() {
    let d = DiskLog::new();
    let len = d.len;

    // A copy of the last entry appended beyond the log's end of a closed vault, as it
    // is and renumbered to follow: open reads the frames past its anchor and refuses
    // one that does not chain (before, the open's own entry overwrote a forged 'l' key).
    let mut s = d.seg.clone();
    s.frames.push(d.seg.frames[d.seg.index_of(len - 1)].clone());
    d.assert_open_fails(Some(&s), "copy of the last entry beyond the end");
    renumber(s.frames.last_mut().unwrap(), len);
    match d.assert_open_fails(Some(&s), "copy of the last entry renumbered beyond the end") {
        Error::LogTampered { seq, .. } => assert_eq!(seq, len),
        e => panic!("a forged frame past the anchor: expected LogTampered at {len}, got {e:?}"),
    }

    // Forged beyond the end under an open vault: not part of its log (the vault appends
    // at its own end, over the forgery), so verify counts only genuine entries, and
    // after a reopen the forgery is never served as an entry.
    d.restore();
    let v = d.open().unwrap();
    let head = v.log_len();
    let genuine: BTreeSet<String> = all_entries(&v).into_iter().map(|e| e.actor).collect();
    let head = head + 1; // the query above is an entry too
    let mut live = SegmentFile::only_one(&d.dir);
    let mut forged = live.frames[live.index_of(3)].clone();
    renumber(&mut forged, head);
    live.frames.push(forged);
    live.write();
    assert_eq!(v.verify(&ctx(), None).unwrap(), head);
    drop(v);
    match d.open() {
        Ok(v) => {
            let n = v.log_len();
            assert_eq!(n, head + 2, "only the verify and open entries were added");
            assert_eq!(v.verify(&ctx(), None).unwrap(), n);
            let actors: BTreeSet<String> = all_entries(&v).into_iter().map(|e| e.actor).collect();
            assert_eq!(actors, genuine, "a forged entry was served");
        }
        Err(e) => assert!(
            matches!(e, Error::Integrity { .. } | Error::LogTampered { .. }),
            "{e:?}"
        ),
    }

    // An entry replaced by a copy of another one, as it is and renumbered.
    for (target, source) in [(2, 5), (len / 2, 0), (len - 1, len - 2)] {
        let mut s = d.seg.clone();
        let it = d.seg.index_of(target);
        s.frames[it] = d.seg.frames[d.seg.index_of(source)].clone();
        d.assert_caught(&s, target, &format!("{target} replaced by {source}"));
        renumber(&mut s.frames[it], target);
        d.assert_caught(
            &s,
            target,
            &format!("{target} replaced by {source}, renumbered"),
        );
    }

    // An entry inserted in the middle, later entries shifted up by one (renumbered).
    let at = len / 2;
    let mut s = d.seg.clone();
    s.frames.insert(at as usize, d.seg.frames[0].clone());
    for (i, f) in s.frames.iter_mut().enumerate().skip(at as usize) {
        renumber(f, i as u64);
    }
    d.assert_named(&s, at, "entry inserted in the middle");

    // A well-formed entry with a made-up body and link.
    let mut s = d.seg.clone();
    let i4 = d.seg.index_of(4);
    let n = s.frames[i4].len();
    for (i, b) in s.frames[i4].iter_mut().enumerate().take(n - 8).skip(14) {
        *b = (i as u8).wrapping_mul(31);
    }
    fix_check(&mut s.frames[i4]);
    d.assert_named(&s, 4, "made-up entry");
}

#[test]
fn a_truncated_tail_is_detected_from_the_head() {
    let d = DiskLog::new();
    // The last entries cut off a closed vault's log (whole frames, and in the middle of
    // a frame): the anchor remembers the end, so open refuses ("behind its anchor")
    // where before it took the head's word and verify named the first missing entry.
    for cut in [1usize, 2, 5] {
        let mut s = d.seg.clone();
        s.frames.truncate(s.frames.len() - cut);
        let e = d.assert_open_fails(Some(&s), &format!("last {cut} cut"));
        assert!(e.to_string().contains("behind its anchor"), "{e}");
        s.tail = d.seg.frames[s.frames.len()][..20].to_vec();
        let e = d.assert_open_fails(Some(&s), &format!("last {cut} cut mid-frame"));
        assert!(e.to_string().contains("behind its anchor"), "{e}");
    }
    // On a live vault: entries vanish underneath it; verify names the first missing.
    d.restore();
    let v = d.open().unwrap();
    let len = v.log_len();
    let mut s = SegmentFile::only_one(&d.dir);
    assert_eq!(s.frames.len() as u64, len);
    s.frames.truncate(s.frames.len() - 2);
    s.write();
    assert_tampered_at(&v, None, len - 2, "last 2 deleted under an open vault");
}

#[test]
fn a_deleted_log_is_detected() {
    let d = DiskLog::new();
    // Every segment deleted under an open vault.
    d.restore();
    let v = d.open().unwrap();
    for p in segment_paths(&d.dir) {
        std::fs::remove_file(p).unwrap();
    }
    assert_tampered_at(&v, None, 0, "whole log deleted under an open vault");
    drop(v);
    // And at open: the log, the anchor, both, or the log emptied down to its header.
    d.restore();
    std::fs::remove_dir_all(d.dir.join("log")).unwrap();
    let e = d.open().map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
    d.restore();
    std::fs::remove_file(d.dir.join("anchor")).unwrap();
    let e = d.open().map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
    d.restore();
    std::fs::remove_file(d.dir.join("anchor")).unwrap();
    for p in segment_paths(&d.dir) {
        std::fs::remove_file(p).unwrap();
    }
    let e = d.open().map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
    // Only the entries deleted: the anchor and the record store's marker say they existed.
    let mut s = d.seg.clone();
    s.frames.clear();
    d.assert_open_fails(Some(&s), "every entry deleted, anchor kept");
}

#[test]
fn a_rolled_back_copy_fails_against_a_later_checkpoint() {
    let (storage, v) = populated();
    let old_copy = storage.deep_clone();
    let c = ctx();
    for i in 0..5 {
        let k = RecordKey::new("p9", "Observation", format!("later-{i}"));
        v.put(&c, &k, &json!({"value": i})).unwrap();
    }
    let cp = v.checkpoint(&c).unwrap();
    let text = cp.to_text();
    assert_eq!(Checkpoint::from_text(&text).unwrap(), cp);
    assert_eq!(v.verify(&c, Some(&cp)).unwrap(), cp.next_seq);
    drop(v);
    // The live vault still extends its checkpoint after more work.
    let v = reopen(&storage);
    let _: Value = v
        .get(&c, &RecordKey::new("p9", "Observation", "later-1"))
        .unwrap();
    assert!(v.verify(&c, Some(&cp)).unwrap() > cp.next_seq);
    drop(v);

    // The old copy restored: it verifies alone, but not against the checkpoint.
    let v = reopen(&old_copy);
    let restored_len = v.log_len();
    assert!(restored_len < cp.next_seq);
    assert_tampered_at(&v, Some(&cp), restored_len, "old copy restored");
    assert_eq!(
        v.verify(&c, None).unwrap(),
        restored_len + 1,
        "the copy is a valid log on its own"
    );
    // Even once the restored copy has grown past the checkpoint, it diverges from it.
    for i in 0..10 {
        let k = RecordKey::new("p8", "Observation", format!("after-restore-{i}"));
        v.put(&c, &k, &json!({"value": i})).unwrap();
    }
    assert!(v.log_len() > cp.next_seq);
    assert_tampered_at(&v, Some(&cp), cp.next_seq - 1, "restored copy grown past");

    // A checkpoint of another vault, or a tampered one, is refused.
    let (_s, other) = memory_vault();
    let foreign = other.checkpoint(&c).unwrap();
    assert!(matches!(
        v.verify(&c, Some(&foreign)),
        Err(Error::InvalidInput(_))
    ));
    let mut bytes = cp.to_bytes();
    bytes[30] ^= 1;
    let bent = Checkpoint::from_bytes(&bytes).unwrap();
    assert!(matches!(
        v.verify(&c, Some(&bent)),
        Err(Error::Integrity { .. })
    ));
}

#[test]
fn a_rolled_back_directory_fails_against_a_later_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let backup = tmp.path().join("backup");
    let c = ctx();
    {
        let v = Vault::create_with(&dir, raw_key(), common::options()).unwrap();
        for i in 0..10 {
            let k = RecordKey::new("p1", "Observation", format!("o{i}"));
            v.put(&c, &k, &json!({"value": i})).unwrap();
        }
    }
    common::copy_tree(&dir, &backup);
    let cp = {
        let v = Vault::open_with(&dir, raw_key(), common::options()).unwrap();
        for i in 0..10 {
            let k = RecordKey::new("p1", "Observation", format!("n{i}"));
            v.put(&c, &k, &json!({"value": i})).unwrap();
        }
        let cp = v.checkpoint(&c).unwrap();
        assert_eq!(v.verify(&c, Some(&cp)).unwrap(), cp.next_seq);
        cp.to_text()
    };
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&backup, &dir).unwrap();
    let cp = Checkpoint::from_text(&cp).unwrap();
    let v = Vault::open_with(&dir, raw_key(), common::options()).unwrap();
    let len = v.log_len();
    assert!(len < cp.next_seq);
    assert_tampered_at(&v, Some(&cp), len, "vault directory rolled back");
    // The rolled-back records are the old ones: the later writes are gone.
    assert!(matches!(
        v.get::<Value>(&c, &RecordKey::new("p1", "Observation", "n0")),
        Err(Error::NotFound)
    ));
}

#[test]
fn concurrent_reads_and_writes_get_gapless_sequence_numbers() {
    const THREADS: usize = 8;
    const OPS: usize = 1000;
    const SUBJECT: &str = "shared-patient";
    let (_storage, v) = memory_vault();
    let v = Arc::new(v);
    let start = v.log_len();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let v = Arc::clone(&v);
            std::thread::spawn(move || {
                let c = care(&format!("worker-{t}"));
                let mut writes: BTreeMap<String, u64> = BTreeMap::new();
                let mut reads = 0u64;
                for i in 0..OPS {
                    let id = format!("t{t}-r{}", i % 20);
                    let k = RecordKey::new(SUBJECT, "Observation", id.as_str());
                    if i % 2 == 0 || !writes.contains_key(&id) {
                        v.put(&c, &k, &json!({"t": t, "i": i, "note": "x"}))
                            .unwrap();
                        *writes.entry(id).or_default() += 1;
                    } else if i % 4 == 1 {
                        let got: Value = v.get(&c, &k).unwrap();
                        assert_eq!(got["t"], json!(t));
                        reads += 1;
                    } else {
                        // Another worker's record: may not exist yet (a logged failure).
                        let other = format!("t{}-r{}", (t + 1) % THREADS, i % 20);
                        let ko = RecordKey::new(SUBJECT, "Observation", other);
                        match v.get_fields::<Value>(&c, &ko, &["i"]) {
                            Ok(_) | Err(Error::NotFound) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                        reads += 1;
                    }
                }
                (writes, reads)
            })
        })
        .collect();
    let mut writes: BTreeMap<String, u64> = BTreeMap::new();
    let mut reads = 0u64;
    for h in handles {
        let (w, r) = h.join().unwrap();
        reads += r;
        for (k, n) in w {
            *writes.entry(k).or_default() += n;
        }
    }
    let total = (THREADS * OPS) as u64;
    assert_eq!(v.log_len(), start + total, "one entry per operation");

    let entries = all_entries(&v);
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (0..entries.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "sequence numbers 0..N-1, no gap, no duplicate"
    );
    assert_eq!(entries.len() as u64, start + total);
    assert_eq!(v.verify(&ctx(), None).unwrap(), start + total + 1);

    // Every write has exactly one entry naming its record; every op one entry.
    let mut logged: BTreeMap<String, u64> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.action == Action::Write) {
        assert_eq!(e.outcome, Outcome::Ok);
        let t = e.target.as_ref().unwrap();
        assert_eq!(t.subject, SUBJECT);
        *logged.entry(t.record_id.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(logged, writes);
    let read_entries = entries.iter().filter(|e| e.action == Action::Read).count();
    assert_eq!(read_entries as u64, reads);
    for t in 0..THREADS {
        let actor = format!("worker-{t}");
        let n = entries.iter().filter(|e| e.actor == actor).count();
        assert_eq!(n, OPS, "{actor}");
    }
}

#[test]
fn one_read_is_one_entry_naming_the_fields_returned() {
    let (_storage, v) = memory_vault();
    let c = care("dr-who");
    let k = RecordKey::new("p1", "Observation", "o1");
    v.put(
        &c,
        &k,
        &json!({"a": 1, "b": "two", "c": [3], "d": {"four": 4}, "e": null}),
    )
    .unwrap();

    let entry_of = |seq: u64| all_entries(&v).into_iter().find(|e| e.seq == seq).unwrap();
    let fields_of = |e: &medvault::LogEntry| -> BTreeSet<String> {
        e.target.as_ref().unwrap().fields.iter().cloned().collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };

    let before = v.log_len();
    let got: Value = v.get_fields(&c, &k, &["b", "d"]).unwrap();
    assert_eq!(got, json!({"b": "two", "d": {"four": 4}}));
    assert_eq!(v.log_len(), before + 1, "one read, one entry");
    let e = entry_of(before);
    assert_eq!(e.action, Action::Read);
    assert_eq!(e.actor, "dr-who");
    assert_eq!(e.outcome, Outcome::Ok);
    let t = e.target.as_ref().unwrap();
    assert_eq!(t.subject, "p1");
    assert_eq!(t.collection.as_deref(), Some("Observation"));
    assert_eq!(t.record_id.as_deref(), Some("o1"));
    assert_eq!(fields_of(&e), set(&["b", "d"]));

    // Absent names are not returned, so not named.
    let before = v.log_len();
    let _: Value = v.get_fields(&c, &k, &["a", "zzz"]).unwrap();
    assert_eq!(v.log_len(), before + 1);
    assert_eq!(fields_of(&entry_of(before)), set(&["a"]));

    // A whole read names every field.
    let before = v.log_len();
    let _: Value = v.get(&c, &k).unwrap();
    assert_eq!(v.log_len(), before + 1);
    assert_eq!(
        fields_of(&entry_of(before)),
        set(&["a", "b", "c", "d", "e"])
    );

    // A failed read is one entry too, with its outcome.
    let before = v.log_len();
    let missing = RecordKey::new("p1", "Observation", "o2");
    assert!(matches!(v.get::<Value>(&c, &missing), Err(Error::NotFound)));
    assert_eq!(v.log_len(), before + 1);
    let e = entry_of(before);
    assert_eq!(e.action, Action::Read);
    assert_eq!(e.outcome, Outcome::Failed("not_found".into()));
}

fn query(v: &Vault, q: LogQuery) -> Vec<medvault::LogEntry> {
    v.audit_query(&care("auditor"), &q).unwrap()
}

#[test]
fn queries_filter_by_subject_actor_purpose_action_and_time() {
    let (_storage, v) = memory_vault();
    let nurse = AccessContext::new("nurse-1", Purpose::Care);
    let biller = AccessContext::new("biller-2", Purpose::Billing);
    let researcher = AccessContext::new("researcher-3", Purpose::Research);
    let k1 = RecordKey::new("p1", "Claim", "c1");
    let k2 = RecordKey::new("p2", "Observation", "o1");

    // Phase 1.
    v.put(&nurse, &k1, &json!({"amount": 120, "code": "99213"}))
        .unwrap();
    v.put(&nurse, &k2, &json!({"value": 7})).unwrap();
    let _: Value = v.get_fields(&biller, &k1, &["amount"]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    let mid = medvault_now_ms();
    std::thread::sleep(std::time::Duration::from_millis(3));
    // Phase 2.
    let first_of_phase2 = v.log_len();
    let _: Vec<(RecordKey, Value)> = v.records_of(&researcher, "p2", None).unwrap();
    let _: Value = v.get(&nurse, &k2).unwrap();
    v.delete(&nurse, &k2).unwrap();
    let last_of_phase2 = v.log_len() - 1;

    let by_subject = query(
        &v,
        LogQuery {
            subject: Some("p1".into()),
            ..Default::default()
        },
    );
    assert_eq!(by_subject.len(), 2, "{by_subject:?}");
    assert!(
        by_subject
            .iter()
            .all(|e| e.target.as_ref().unwrap().subject == "p1")
    );

    let by_subject2 = query(
        &v,
        LogQuery {
            subject: Some("p2".into()),
            ..Default::default()
        },
    );
    let actions: Vec<Action> = by_subject2.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [Action::Write, Action::Read, Action::Read, Action::Delete]
    );

    let by_actor = query(
        &v,
        LogQuery {
            actor: Some("biller-2".into()),
            ..Default::default()
        },
    );
    assert_eq!(by_actor.len(), 1);
    assert_eq!(by_actor[0].purpose, Purpose::Billing);
    let t = by_actor[0].target.as_ref().unwrap();
    assert_eq!(t.fields, ["amount"]);

    let by_purpose = query(
        &v,
        LogQuery {
            purpose: Some(Purpose::Research),
            ..Default::default()
        },
    );
    assert_eq!(by_purpose.len(), 1);
    assert_eq!(by_purpose[0].actor, "researcher-3");

    let by_action = query(
        &v,
        LogQuery {
            action: Some(Action::Write),
            ..Default::default()
        },
    );
    assert_eq!(by_action.len(), 2);
    assert!(by_action.iter().all(|e| e.actor == "nurse-1"));

    // Queries are logged.
    let searches = query(
        &v,
        LogQuery {
            actor: Some("auditor".into()),
            ..Default::default()
        },
    );
    assert_eq!(searches.len(), 5, "the five queries before this one");
    assert!(searches.iter().all(|e| e.action == Action::Search));

    let since = query(
        &v,
        LogQuery {
            since_ms: Some(mid),
            ..Default::default()
        },
    );
    let until = query(
        &v,
        LogQuery {
            until_ms: Some(mid),
            ..Default::default()
        },
    );
    assert!(since.iter().all(|e| e.time_ms >= mid));
    assert!(until.iter().all(|e| e.time_ms < mid));
    let since_seqs: BTreeSet<u64> = since.iter().map(|e| e.seq).collect();
    let until_seqs: BTreeSet<u64> = until.iter().map(|e| e.seq).collect();
    assert!(since_seqs.is_disjoint(&until_seqs));
    assert!((first_of_phase2..=last_of_phase2).all(|s| since_seqs.contains(&s)));
    assert!((0..first_of_phase2).all(|s| until_seqs.contains(&s)));
    let window = query(
        &v,
        LogQuery {
            since_ms: Some(mid),
            until_ms: Some(mid),
            ..Default::default()
        },
    );
    assert!(window.is_empty());

    // Combined filters.
    let combined = query(
        &v,
        LogQuery {
            subject: Some("p2".into()),
            action: Some(Action::Read),
            actor: Some("nurse-1".into()),
            ..Default::default()
        },
    );
    assert_eq!(combined.len(), 1);
}

fn medvault_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn export_writes_one_parseable_json_line_per_entry() {
    let (_storage, v) = populated();
    let c = care("auditor");
    let mut buf = Vec::new();
    let q = LogQuery {
        subject: Some("p1".into()),
        ..Default::default()
    };
    let n = v.audit_export_jsonl(&c, &q, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, n);
    assert!(n >= 5);
    let mut last_seq = None;
    for l in &lines {
        let e: Value = serde_json::from_str(l).unwrap();
        assert!(e["seq"].is_u64() && e["time_ms"].is_u64());
        assert!(e["actor"].is_string() && e["action"].is_string());
        // A failed attempt (here a read of a missing record) names only the pseudonym.
        if e["target"].is_null() {
            assert_eq!(e["outcome"]["failed"], "not_found", "{l}");
        } else {
            assert_eq!(e["target"]["subject"], "p1");
        }
        assert!(e["subject_pseudonym"].as_str().unwrap().len() == 32);
        let seq = e["seq"].as_u64().unwrap();
        assert!(last_seq.is_none_or(|s| s < seq), "ascending seqs");
        last_seq = Some(seq);
    }
    let last = all_entries(&v);
    let exports: Vec<_> = last.iter().filter(|e| e.action == Action::Export).collect();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].actor, "auditor");
}

#[test]
fn erasure_unlinks_entries_but_keeps_them_verifiable() {
    const GONE: &str = "patient-to-forget-4242";
    let (_storage, v) = populated();
    let c = ctx();
    for i in 0..3 {
        let k = RecordKey::new(GONE, "Observation", format!("o{i}"));
        v.put(&c, &k, &json!({"value": i})).unwrap();
    }
    let _: Value = v
        .get(&c, &RecordKey::new(GONE, "Observation", "o1"))
        .unwrap();
    let q = LogQuery {
        subject: Some(GONE.into()),
        ..Default::default()
    };
    let before = v.audit_query(&c, &q).unwrap();
    assert_eq!(before.len(), 4);
    let pseudonym = before[0].subject_pseudonym.unwrap();
    assert!(
        before
            .iter()
            .all(|e| e.subject_pseudonym == Some(pseudonym))
    );
    assert!(
        before
            .iter()
            .all(|e| e.target.as_ref().unwrap().subject == GONE)
    );

    assert_eq!(v.erase_subject(&c, GONE).unwrap(), 3);
    let n = v.verify(&c, None).unwrap();
    assert_eq!(n, v.log_len() - 1);

    let after = v.audit_query(&c, &q).unwrap();
    let before_seqs: Vec<u64> = before.iter().map(|e| e.seq).collect();
    let after_seqs: Vec<u64> = after.iter().map(|e| e.seq).collect();
    assert_eq!(&after_seqs[..before.len()], &before_seqs[..]);
    assert_eq!(after.last().unwrap().action, Action::Erase);
    for e in &after {
        assert_eq!(e.target, None, "entry {} still names its target", e.seq);
        assert_eq!(e.subject_pseudonym, Some(pseudonym));
    }
    // Entries of other subjects keep their targets.
    let other = query(
        &v,
        LogQuery {
            subject: Some("p1".into()),
            ..Default::default()
        },
    );
    assert!(other.iter().any(|e| e.target.is_some()));
    // The export no longer names the erased subject anywhere.
    let mut buf = Vec::new();
    v.audit_export_jsonl(&c, &LogQuery::default(), &mut buf)
        .unwrap();
    assert!(!common::contains(&buf, GONE.as_bytes()));
    // And its records are gone.
    let r: Result<Value> = v.get(&c, &RecordKey::new(GONE, "Observation", "o1"));
    assert!(matches!(r, Err(Error::NotFound)), "{r:?}");
    assert!(!v.subjects(&c).unwrap().iter().any(|s| s == GONE));
}

/// An export of a subject's records is logged as `export`, not `read`, naming the subject.
#[test]
fn export_is_logged_as_export() {
    let (_m, v) = memory_vault();
    let k = RecordKey::new("p-export", "Observation", "o1");
    v.put(&ctx(), &k, &json!({"a": 1})).unwrap();
    let out: Vec<(RecordKey, Value)> = v.export_records_of(&care("exporter"), "p-export").unwrap();
    assert_eq!(out.len(), 1);
    let entries = all_entries(&v);
    let last_export = entries
        .iter()
        .filter(|e| e.actor == "exporter")
        .map(|e| (e.action, e.target.as_ref().map(|t| t.subject.clone())))
        .collect::<Vec<_>>();
    assert_eq!(
        last_export,
        vec![(Action::Export, Some("p-export".to_string()))]
    );
}
