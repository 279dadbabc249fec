//! The commit protocol at every crash point, under tampering, and under concurrency.
//!
//! The oracle is a model the test keeps itself: which commit wrote what. After a crash at
//! any I/O call (power loss: only synced/flushed bytes stay; process kill: the log's
//! written frames stay, the record store keeps what it flushed), the reopened record
//! store must equal the model replaying exactly the commits the log says happened.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::danger::{FaultPlan, FaultyStorage, RawAccess};
use crate::error::StorageError;
use crate::logstore::{LogFaults, MemoryLog, SegmentLog, SegmentOptions};
use crate::storage::{KeyValue, MemoryStorage, ScanIter};

const ID: crate::VaultId = crate::VaultId::from_bytes([0x11; 16]);

/// "Seals" by prefixing the seq: the protocol treats bodies as opaque, and the test
/// reads them back.
struct PlainSealer;

impl Sealer for PlainSealer {
    fn seal(&self, seq: u64, body: &[u8]) -> Vec<u8> {
        let mut v = seq.to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }
    fn open(&self, seq: u64, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        (sealed.get(..8)? == seq.to_be_bytes()).then(|| Zeroizing::new(sealed[8..].to_vec()))
    }
    fn not_applied_of(&self, body: &[u8]) -> Option<u64> {
        std::str::from_utf8(body)
            .ok()?
            .strip_prefix("not-applied ")?
            .parse()
            .ok()
    }
    fn not_applied_body(&self, seq: u64) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(format!("not-applied {seq}").into_bytes())
    }
}

fn keys() -> CommitKeys {
    CommitKeys::derive(&ID, &SecretKey::from_bytes([0x42; 32]))
}

fn no_exclusions(_: &[u8]) -> bool {
    false
}

fn parts(records: Arc<dyn Storage>, log: Arc<dyn LogStore>) -> Parts {
    Parts {
        vault_id: ID,
        keys: keys(),
        sealer: Arc::new(PlainSealer),
        records,
        log,
        excluded: no_exclusions,
    }
}

fn body(s: &str) -> Vec<Zeroizing<Vec<u8>>> {
    vec![Zeroizing::new(s.as_bytes().to_vec())]
}

/// A record store with a page cache: `apply` changes the live map, `flush` copies it to
/// the durable one; a crash keeps only the durable map.
#[derive(Clone, Default)]
struct CachedStore {
    live: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    durable: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    hook: Option<Hook>,
}

type Hook = Arc<dyn Fn(&str) + Send + Sync>;

impl CachedStore {
    fn from_map(m: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        CachedStore {
            live: Arc::new(Mutex::new(m.clone())),
            durable: Arc::new(Mutex::new(m)),
            hook: None,
        }
    }
    fn call(&self, what: &str) {
        if let Some(h) = &self.hook {
            h(what)
        }
    }
    fn content(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut m = self.live.lock().unwrap().clone();
        m.remove(MARKER_KEY);
        m
    }
}

impl Storage for CachedStore {
    fn read_header(&self) -> std::result::Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }
    fn write_header(&self, _: &[u8]) -> std::result::Result<(), StorageError> {
        Ok(())
    }
    fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, StorageError> {
        Ok(self.live.lock().unwrap().get(key).cloned())
    }
    fn scan(&self, start: &[u8], end: Option<&[u8]>) -> ScanIter<'_> {
        let m = self.live.lock().unwrap();
        let v: Vec<std::result::Result<KeyValue, StorageError>> = m
            .iter()
            .filter(|(k, _)| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        Box::new(v.into_iter())
    }
    fn last_in(&self, _: &[u8], _: &[u8]) -> std::result::Result<Option<KeyValue>, StorageError> {
        Ok(None)
    }
    fn apply(&self, batch: WriteBatch) -> std::result::Result<(), StorageError> {
        self.call("apply:before");
        {
            let mut m = self.live.lock().unwrap();
            for op in batch.ops {
                match op {
                    Op::Put(k, v) => {
                        m.insert(k, v);
                    }
                    Op::Delete(k) => {
                        m.remove(&k);
                    }
                }
            }
        }
        self.call("apply:after");
        Ok(())
    }
    fn flush(&self) -> std::result::Result<(), StorageError> {
        self.call("flush:before");
        let l = self.live.lock().unwrap().clone();
        *self.durable.lock().unwrap() = l;
        self.call("flush:after");
        Ok(())
    }
    fn size_on_disk(&self) -> std::result::Result<u64, StorageError> {
        Ok(0)
    }
}

/// A log store that calls a hook around every I/O call.
struct HookedLog {
    inner: MemoryLog,
    hook: Hook,
    syncs: Arc<Mutex<u64>>,
}

impl LogStore for HookedLog {
    fn recover(&self, from: &LogPos) -> Result<Recovered> {
        self.inner.recover(from)
    }
    fn append(&self, frames: &[Frame]) -> Result<LogPos> {
        (self.hook)("append:before");
        let r = self.inner.append(frames);
        (self.hook)("append:after");
        r
    }
    fn sync(&self) -> Result<()> {
        (self.hook)("sync:before");
        *self.syncs.lock().unwrap() += 1;
        let r = self.inner.sync();
        (self.hook)("sync:after");
        r
    }
    fn end(&self) -> LogPos {
        self.inner.end()
    }
    fn read(&self, from_seq: u64) -> Result<crate::logstore::FrameIter<'_>> {
        self.inner.read(from_seq)
    }
    fn read_anchor(&self) -> Result<[Option<Vec<u8>>; 2]> {
        self.inner.read_anchor()
    }
    fn write_anchor(&self, slot: usize, bytes: &[u8]) -> Result<()> {
        (self.hook)("anchor:before");
        let r = self.inner.write_anchor(slot, bytes);
        (self.hook)("anchor:after");
        r
    }
    fn sync_anchor(&self) -> Result<()> {
        self.inner.sync_anchor()
    }
    fn size_on_disk(&self) -> Result<u64> {
        Ok(0)
    }
}

/// One commit of the model workload: `i` writes key `k<i % 5>` (or deletes it every
/// fourth commit) and a per-commit key `c<i>`.
fn batch_of(i: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    let k = format!("k{}", i % 5).into_bytes();
    if i % 4 == 3 {
        b.delete(k);
    } else {
        b.put(k, format!("v{i}").into_bytes());
    }
    b.put(format!("c{i}").into_bytes(), vec![i as u8; 3]);
    b
}

fn apply_model(m: &mut BTreeMap<Vec<u8>, Vec<u8>>, b: WriteBatch) {
    for op in b.ops {
        match op {
            Op::Put(k, v) => {
                m.insert(k, v);
            }
            Op::Delete(k) => {
                m.remove(&k);
            }
        }
    }
}

/// The commits the log says happened: change entries named `commit <i>` not followed by
/// a "not applied" entry naming their seq.
fn commits_in_log(log: &dyn LogStore) -> Vec<u64> {
    let mut by_seq = BTreeMap::new();
    let mut not_applied = Vec::new();
    for item in log.read(0).unwrap() {
        let (f, _) = item.unwrap();
        let (entry, _) = changes::split(&f.body[8..]).unwrap();
        let text = String::from_utf8(entry.to_vec()).unwrap();
        if let Some(s) = text.strip_prefix("not-applied ") {
            not_applied.push(s.parse::<u64>().unwrap());
        } else if let Some(i) = text.strip_prefix("commit ") {
            assert_ne!(f.flags & FLAG_CHANGE, 0);
            by_seq.insert(f.seq, i.parse::<u64>().unwrap());
        }
    }
    for s in not_applied {
        by_seq.remove(&s);
    }
    by_seq.into_values().collect()
}

type Image = (MemoryLog, BTreeMap<Vec<u8>, Vec<u8>>, String);

#[test]
fn every_crash_point_leaves_both_stores_agreeing_with_the_log() {
    const COMMITS: u64 = 12;
    let images: Arc<Mutex<Vec<Image>>> = Arc::default();
    let mem_log = MemoryLog::new();
    let store = Arc::new(Mutex::new(CachedStore::default()));
    let acked: Arc<Mutex<u64>> = Arc::default();
    let hook: Hook = {
        let (images, mem_log, store) = (images.clone(), mem_log.clone(), store.clone());
        Arc::new(move |what: &str| {
            let s = store.lock().unwrap().durable.lock().unwrap().clone();
            images.lock().unwrap().push((
                mem_log.after_power_loss(),
                s.clone(),
                format!("power loss {what}"),
            ));
            // A process kill keeps every written frame (the page cache survives).
            let kill = mem_log.after_power_loss();
            kill.set_frames(mem_log.frames());
            kill.set_anchor(mem_log.read_anchor().unwrap());
            images
                .lock()
                .unwrap()
                .push((kill, s, format!("kill {what}")));
        })
    };
    let cached = CachedStore {
        hook: Some(hook.clone()),
        ..CachedStore::default()
    };
    *store.lock().unwrap() = cached.clone();
    let log = Arc::new(HookedLog {
        inner: mem_log.clone(),
        hook,
        syncs: Arc::default(),
    });
    let c = Committer::create(parts(Arc::new(cached.clone()), log), body("create")).unwrap();
    let created_images = images.lock().unwrap().len();
    let mut acked_at = Vec::new();
    for i in 0..COMMITS {
        let done = c.commit(batch_of(i), body(&format!("commit {i}"))).unwrap();
        // A read between writes: logged, no change.
        c.commit(WriteBatch::new(), body("read")).unwrap();
        if i % 3 != 2 {
            c.make_durable(done.end).unwrap();
            *acked.lock().unwrap() = i + 1;
        }
        acked_at.push((images.lock().unwrap().len(), *acked.lock().unwrap()));
    }
    let images = images.lock().unwrap().clone();
    assert!(images.len() > 60, "{} crash points", images.len());
    let mut recovered = 0;
    for (n, (log_img, durable, what)) in images.iter().enumerate() {
        if n < created_images {
            continue; // a crash during create leaves no vault (the header comes last)
        }
        // Acknowledged before this image was taken.
        let acked_here = acked_at
            .iter()
            .take_while(|(at, _)| *at <= n)
            .last()
            .map_or(0, |(_, a)| *a);
        let records = CachedStore::from_map(durable.clone());
        let (c2, opened) =
            Committer::open(parts(Arc::new(records.clone()), Arc::new(log_img.clone())))
                .unwrap_or_else(|e| panic!("image {n} ({what}): open: {e}"));
        recovered += usize::from(!opened.not_applied.is_empty());
        c2.verify(None)
            .unwrap_or_else(|e| panic!("image {n} ({what}): verify: {e}"));
        let happened = commits_in_log(log_img);
        // Commits happen in order, and every acknowledged one is there.
        assert_eq!(
            happened,
            (0..happened.len() as u64).collect::<Vec<_>>(),
            "image {n} ({what})"
        );
        assert!(happened.len() as u64 >= acked_here, "image {n} ({what})");
        let mut model = BTreeMap::new();
        for &i in &happened {
            apply_model(&mut model, batch_of(i));
        }
        assert_eq!(records.content(), model, "image {n} ({what})");
        // And the vault goes on: one more commit, durable, verified.
        let d = c2.commit(batch_of(99), body("commit 99")).unwrap();
        c2.make_durable(d.end).unwrap();
        c2.verify(None).unwrap();
    }
    // The kills between steps 1 and 2 (and before a flush) did leave logged changes that
    // recovery had to record as not applied.
    assert!(recovered > 5, "{recovered} recoveries");
}

type Records = FaultyStorage<MemoryStorage>;

fn memory_vault() -> (Committer, Records, MemoryLog) {
    let records = FaultyStorage::memory();
    let log = MemoryLog::new();
    let c = Committer::create(
        parts(Arc::new(records.clone()), Arc::new(log.clone())),
        body("create"),
    )
    .unwrap();
    (c, records, log)
}

fn reopen(records: &Records, log: &MemoryLog) -> Result<(Committer, Opened)> {
    Committer::open(parts(Arc::new(records.clone()), Arc::new(log.clone())))
}

fn commit_durable(c: &Committer, i: u64) {
    let d = c.commit(batch_of(i), body(&format!("commit {i}"))).unwrap();
    c.make_durable(d.end).unwrap();
}

#[test]
fn a_failed_apply_is_logged_as_not_applied() {
    let (c, records, log) = memory_vault();
    commit_durable(&c, 0);
    records.set_faults(FaultPlan {
        fail_writes_after: Some(0),
        ..FaultPlan::default()
    });
    assert!(c.commit(batch_of(1), body("commit 1")).is_err());
    records.set_faults(FaultPlan::default());
    assert_eq!(commits_in_log(&log), vec![0]);
    assert!(records.get(b"c1").unwrap().is_none());
    c.verify(None).unwrap();
    commit_durable(&c, 2);
    c.verify(None).unwrap();
}

#[test]
fn a_failure_that_cannot_be_logged_poisons_until_reopen_records_it() {
    let (c, records, log) = memory_vault();
    commit_durable(&c, 0);
    records.set_faults(FaultPlan {
        fail_writes_after: Some(0),
        ..FaultPlan::default()
    });
    log.set_faults(LogFaults {
        fail_appends_after: Some(1),
        ..LogFaults::default()
    });
    let d = c.commit(batch_of(1), body("commit 1"));
    assert!(d.is_err());
    records.set_faults(FaultPlan::default());
    log.set_faults(LogFaults::default());
    assert!(c.commit(WriteBatch::new(), body("read")).is_err());
    assert!(c.make_durable(u64::MAX).is_err());
    drop(c);
    let (c, opened) = reopen(&records, &log).unwrap();
    assert_eq!(opened.not_applied, vec![2]);
    assert_eq!(commits_in_log(&log), vec![0]);
    c.verify(None).unwrap();
}

#[test]
fn a_failed_append_changes_nothing() {
    let (c, records, log) = memory_vault();
    commit_durable(&c, 0);
    let before = (records.dump(), log.frames());
    log.set_faults(LogFaults {
        fail_appends_after: Some(0),
        ..LogFaults::default()
    });
    assert!(c.commit(batch_of(1), body("commit 1")).is_err());
    assert_eq!((records.dump(), log.frames()), before);
    log.set_faults(LogFaults::default());
    commit_durable(&c, 1);
    c.verify(None).unwrap();
}

#[test]
fn rollbacks_cuts_and_stray_pairs_are_named() {
    let (c, records, log) = memory_vault();
    commit_durable(&c, 0);
    let old_records = FaultyStorage::new(records.inner().deep_clone());
    let old_log = log.frames();
    let old_anchor = log.read_anchor().unwrap();
    for i in 1..4 {
        commit_durable(&c, i);
    }
    c.sync_all().unwrap();
    drop(c);
    let msg = |r: Result<(Committer, Opened)>| match r {
        Ok(_) => "opened".to_owned(),
        Err(e) => e.to_string(),
    };

    // Record store rolled back on its own.
    let m = msg(reopen(&old_records, &log));
    assert!(m.contains("record store: behind the log"), "{m}");

    // Log cut back (anchor kept): the log is behind its anchor / the record store.
    let cut = MemoryLog::new();
    cut.set_frames(old_log.clone());
    cut.set_anchor(log.read_anchor().unwrap());
    let m = msg(reopen(&records, &cut));
    assert!(
        m.contains("ahead of the log") || m.contains("behind its anchor"),
        "{m}"
    );

    // Log and anchor rolled back together: the record store is ahead.
    cut.set_anchor(old_anchor.clone());
    let m = msg(reopen(&records, &cut));
    assert!(m.contains("record store: ahead of the log"), "{m}");

    // Anchor alone rolled back: nothing a read returns changes; opens and verifies.
    let log2 = MemoryLog::new();
    log2.set_frames(log.frames());
    log2.set_anchor(old_anchor);
    let (c, _) = reopen(&records, &log2).unwrap();
    c.verify(None).unwrap();
    drop(c);

    // Anchor deleted; marker deleted.
    log2.set_anchor([None, None]);
    assert!(msg(reopen(&records, &log2)).contains("anchor: missing"));
    let r2 = FaultyStorage::new(records.inner().deep_clone());
    r2.raw_delete(MARKER_KEY);
    assert!(msg(reopen(&r2, &log)).contains("no applied marker"));

    // A pair added, removed or altered behind the engine: verify names the digest.
    for tamper in 0..3 {
        let r = FaultyStorage::new(records.inner().deep_clone());
        match tamper {
            0 => r.raw_put(b"zz", b"new"),
            1 => r.raw_delete(b"c2"),
            _ => r.raw_put(b"c2", b"changed"),
        }
        let (c, _) = reopen(&r, &log).unwrap();
        let e = c.verify(None).unwrap_err().to_string();
        assert!(e.contains("state digest"), "{e}");
        // The diagnostic names the key, in hex, and what happened to it.
        let (key, what): (&[u8], &str) = match tamper {
            0 => (b"zz", "added or resurrected"),
            1 => (b"c2", "missing"),
            _ => (b"c2", "altered or rolled back"),
        };
        assert!(
            e.contains(&crate::audit::hex(key)) && e.contains(what),
            "{e}"
        );
    }

    // A frame altered past the marker is refused at open; before it, by verify.
    let mut frames = log.frames();
    let last = frames.len() - 1;
    frames[last].body[9] ^= 1;
    // (A copy of the log with the frame edited in place, its tree left as it was.)
    let t = log.deep_clone();
    t.set_frames(frames.clone());
    t.set_anchor(log.read_anchor().unwrap());
    let (c, _) = reopen(&records, &t).unwrap();
    assert!(matches!(c.verify(None), Err(Error::LogTampered { .. })));
}

#[test]
fn group_commit_covers_concurrent_commits() {
    let records = MemoryStorage::new();
    let syncs: Arc<Mutex<u64>> = Arc::default();
    let log = Arc::new(HookedLog {
        inner: MemoryLog::new(),
        hook: Arc::new(|_| {}),
        syncs: syncs.clone(),
    });
    let c =
        Arc::new(Committer::create(parts(Arc::new(records.clone()), log), body("create")).unwrap());
    let before = *syncs.lock().unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for j in 0..50u64 {
                    let mut b = WriteBatch::new();
                    b.put(format!("t{t}-{j}").into_bytes(), vec![1]);
                    let d = c.commit(b, body("w")).unwrap();
                    c.make_durable(d.end).unwrap();
                    // Durable means: the log's durable count reaches past this commit.
                    assert!(lock(&c.sync).durable >= d.end);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let used = *syncs.lock().unwrap() - before;
    assert!(
        (1..=200).contains(&used),
        "{used} fdatasyncs for 200 commits"
    );
    assert_eq!(c.verify(None).unwrap().pairs, 200);
}

#[test]
fn segment_files_and_sled_round_trip_through_reopen() {
    use crate::storage::{SledOptions, SledStorage};
    let d = tempfile::tempdir().unwrap();
    let open_records = || -> Arc<dyn Storage> {
        Arc::new(SledStorage::open(d.path(), &SledOptions::default()).unwrap())
    };
    {
        let records = open_records();
        let log = Arc::new(SegmentLog::create(d.path(), ID, SegmentOptions::default()).unwrap());
        let c = Committer::create(parts(records, log), body("create")).unwrap();
        for i in 0..20 {
            commit_durable(&c, i);
        }
        c.sync_all().unwrap();
    }
    let records = open_records();
    let log = Arc::new(SegmentLog::open(d.path(), ID, SegmentOptions::default()).unwrap());
    let (c, opened) = Committer::open(parts(records, log)).unwrap();
    assert_eq!(opened, Opened::default());
    let v = c.verify(None).unwrap();
    assert_eq!(v.entries, 21);
    assert_eq!(commits_in_log(c.log()), (0..20).collect::<Vec<_>>());
}

#[test]
fn a_checkpoint_pin_is_checked_by_verify() {
    let (c, _, log) = memory_vault();
    commit_durable(&c, 0);
    let (n, l) = c.head();
    commit_durable(&c, 1);
    c.verify(Some((n, l))).unwrap();
    c.verify(Some((0, c.keys().genesis()))).unwrap();
    assert!(matches!(
        c.verify(Some((n, [0; 32]))),
        Err(Error::LogTampered { .. })
    ));
    assert!(matches!(
        c.verify(Some((c.end() + 1, l))),
        Err(Error::LogTampered { .. })
    ));
    drop(log);
}

#[test]
fn the_flusher_makes_commits_durable_without_a_caller_waiting() {
    let (c, _, log) = memory_vault();
    let c = Arc::new(c);
    let f = Committer::spawn_flusher(&c, std::time::Duration::from_millis(5)).unwrap();
    let d = c.commit(batch_of(0), body("commit 0")).unwrap();
    let start = std::time::Instant::now();
    while log.after_power_loss().frames().len() < d.end as usize {
        assert!(start.elapsed().as_secs() < 10, "the flusher never synced");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    drop(f);
}

#[test]
fn verify_scans_every_key_range_once_whatever_the_bytes() {
    // Keys at and around every range bound of the parallel scan (before `r`, `r` and
    // each of its 32 sub-ranges, `s` on). Oracle: the keys the test put, counted by the
    // test, and the state digest computed here from the test's own pairs.
    let (c, records, _log) = memory_vault();
    let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut batch = WriteBatch::new();
    let mut put = |k: Vec<u8>| {
        let v = [b"v".as_slice(), &k].concat();
        want.insert(k.clone(), v.clone());
        batch.put(k, v);
    };
    for k in [
        &b"\x00"[..],
        b"b",
        b"q\xff",
        b"r",
        b"s",
        b"s\x00",
        b"z",
        b"\xff\xff",
    ] {
        put(k.to_vec());
    }
    for b in 0..=255u8 {
        put(vec![b'r', b]);
        put(vec![b'r', b, 0xff]);
    }
    c.commit(batch, body("boundaries")).unwrap();
    let v = c.verify(None).unwrap();
    let live: BTreeMap<Vec<u8>, Vec<u8>> = records
        .scan(&[], None)
        .map(|kv| kv.unwrap())
        .filter(|(k, _)| k != MARKER_KEY)
        .collect();
    assert_eq!(live, want);
    assert_eq!(v.pairs as usize, want.len());
    // The digest verify accepted is the one of the pairs the store holds.
    let d = StateDigest::of(
        &MacKey::new(&derive_key(
            &SecretKey::from_bytes([0x42; 32]),
            &[b"medvault/v1/state-digest"],
        )),
        live.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
    );
    assert_eq!(d, lock(&c.head).digest);
    // A pair slipped into a range in the middle of `r`, behind the engine: named.
    records.raw_put(&[b'r', 0x80, 1], b"stray");
    let e = c.verify(None).unwrap_err().to_string();
    assert!(e.contains("does not match the state digest"), "{e}");
}
