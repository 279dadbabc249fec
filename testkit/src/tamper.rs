//! The `tamper` target: a real vault's stored bytes mutated, then opened and used.

use medvault::danger::RawAccess;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use medvault::logstore::LogStore;
use medvault::logstore::frame::{Decoded, decode_frame};
use medvault::storage::{MemoryStorage, Storage};
use medvault::testing::fuzz::{Input, assert_decode_error};
use medvault::{
    AccessContext, Error, KeySource, LogQuery, Purpose, RecordKey, RotationScope, Vault,
    VaultOptions,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::project;

const TAMPER_ROOT: [u8; 32] = [0x7a; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Header,
    Key(Vec<u8>),
    /// Frame `i` of the access log, as a segment holds it.
    Frame(usize),
    /// Anchor slot 0 or 1.
    Anchor(usize),
}

struct TamperFixture {
    mem: MemoryStorage,
    /// Header, anchor slots, log frames, applied marker, subject entries, records, in a
    /// fixed logical order.
    items: Vec<Item>,
    records: BTreeMap<RecordKey, Value>,
    subjects: BTreeSet<String>,
    actors: BTreeSet<String>,
}

fn tamper_fixture() -> &'static TamperFixture {
    static F: OnceLock<TamperFixture> = OnceLock::new();
    F.get_or_init(build_tamper_fixture)
}

fn build_tamper_fixture() -> TamperFixture {
    let mem = MemoryStorage::new();
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(TAMPER_ROOT),
        VaultOptions::default(),
    )
    .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    let nurse = AccessContext::new("nurse-1", Purpose::Care);
    let btg = AccessContext::new("dr-7", Purpose::Emergency).with_reason("emergency");
    let dpo = AccessContext::new("dpo", Purpose::PatientRequest);
    let puts: Vec<(RecordKey, Value)> = vec![
        (
            RecordKey::new("alice", "Observation", "1"),
            json!({"a": 1, "b": "alice-one", "c": [1, 2]}),
        ),
        (
            RecordKey::new("alice", "Observation", "2"),
            json!({"a": 2, "b": "alice-two"}),
        ),
        (
            RecordKey::new("bob", "Condition", "1"),
            json!({"a": 3, "d": {"x": null}}),
        ),
        (
            RecordKey::new("carol", "Observation", "1"),
            json!({"b": "carol"}),
        ),
        (RecordKey::new("dave", "Observation", "1"), json!({"a": 4})),
    ];
    let mut subject_keys = Vec::new();
    let mut record_keys = Vec::new();
    let mut records = BTreeMap::new();
    for (k, val) in &puts {
        let before: BTreeSet<Vec<u8>> = mem.dump().into_iter().map(|(k, _)| k).collect();
        v.put(&nurse, k, val)
            .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
        for (key, _) in mem.dump() {
            if before.contains(&key) {
                continue;
            }
            match key.first() {
                Some(b'k') => subject_keys.push(key),
                Some(b'r') => record_keys.push(key),
                _ => {}
            }
        }
        records.insert(k.clone(), val.clone());
    }
    let _: Value = v
        .get(&nurse, &puts[0].0)
        .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    let _: Value = v
        .get_fields(&btg, &puts[2].0, &["a"])
        .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    // bob's record moves to data-key version 2 (version 1 retired): a subject entry and
    // a record that have been through a rotation.
    let maint = AccessContext::new("ops", Purpose::Maintenance);
    v.rotate_data_keys(
        &maint,
        &RotationScope::Subjects(vec!["bob".to_owned()]),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    v.erase_subject(&dpo, "dave")
        .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    records.remove(&puts[4].0);
    drop(v);
    let live: BTreeSet<Vec<u8>> = mem.dump().into_iter().map(|(k, _)| k).collect();
    let mut items = vec![Item::Header, Item::Anchor(0), Item::Anchor(1)];
    items.extend((0..mem.memory_log().frames().len()).map(Item::Frame));
    items.push(Item::Key(
        medvault::testing::fuzz::APPLIED_MARKER_KEY.to_vec(),
    ));
    items.extend(
        subject_keys
            .into_iter()
            .chain(record_keys)
            .filter(|k| live.contains(k))
            .map(Item::Key),
    );
    TamperFixture {
        mem,
        items,
        records,
        subjects: ["alice", "bob", "carol"].map(str::to_owned).into(),
        actors: ["medvault", "nurse-1", "dr-7", "dpo", "ops", "tamper"]
            .map(str::to_owned)
            .into(),
    }
}

fn read_item(mem: &MemoryStorage, item: &Item) -> Option<Vec<u8>> {
    match item {
        Item::Header => mem.raw_header(),
        Item::Key(k) => mem.get(k).ok().flatten(),
        Item::Frame(i) => mem.memory_log().frames().get(*i).map(|f| {
            let mut b = Vec::new();
            f.encode_into(&mut b);
            b
        }),
        Item::Anchor(i) => mem.memory_log().read_anchor().ok()?[*i].clone(),
    }
}

fn write_item(mem: &MemoryStorage, item: &Item, value: Option<&[u8]>) {
    match (item, value) {
        (Item::Header, Some(v)) => mem.raw_set_header(v),
        (Item::Header, None) => mem.raw_set_header(&[]),
        (Item::Key(k), Some(v)) => mem.raw_put(k, v),
        (Item::Key(k), None) => mem.raw_delete(k),
        (Item::Frame(i), v) => {
            // A value that no longer decodes as a frame is a frame cut out of the log.
            let log = mem.memory_log();
            let mut frames = log.frames();
            let new = v.and_then(|b| match decode_frame(b) {
                Decoded::Frame(f, _) => Some(f),
                _ => None,
            });
            match (new, *i < frames.len()) {
                (Some(f), true) => frames[*i] = f,
                (Some(f), false) => frames.push(f),
                (None, true) => {
                    frames.remove(*i);
                }
                (None, false) => {}
            }
            log.set_frames(frames);
        }
        (Item::Anchor(i), v) => {
            let log = mem.memory_log();
            let mut slots = log.read_anchor().unwrap_or_default();
            slots[*i] = v.map(<[u8]>::to_vec);
            log.set_anchor(slots);
        }
    }
}

/// Whether `item` is part of what `verify` checks against the log: every item but the
/// header (authenticated at open) and the anchor (a lower bound: an older valid slot is
/// a legitimate state after a crash).
fn verified_item(item: &Item) -> bool {
    // The purge marker `'p'` is outside the state digest (docs/FORMAT.md "State
    // digest"): its presence only makes the next open run a purge, which changes no
    // live value.
    !matches!(item, Item::Header | Item::Anchor(_)) && *item != Item::Key(b"p".to_vec())
}

/// Tamper target: a real vault (memory storage, raw key; three live subjects, one
/// erased, one data-key-rotated, four records, reads including break-the-glass) has its
/// stored bytes mutated
/// per the input — flip, set, truncate or extend a byte string, delete a value, copy or
/// swap values between items, plant a copy under a new key, recompute the header's
/// checksum — and is then opened and used. Every call must return the right data or an
/// error: a record read equals what was written, listings hold only genuine records and
/// subjects, access-log entries name only genuine actors, before and after a data-key
/// rotation over the tampered data; a changed log fails `verify` and an untouched log
/// passes it. Never a panic, never a hang.
pub fn check_tamper(data: &[u8]) {
    let fx = tamper_fixture();
    let mem = fx.mem.deep_clone();
    let mut inp = Input::new(data);
    let n_items = fx.items.len();
    let mut touched = Vec::new();
    for _ in 0..8 {
        if inp.is_empty() {
            break;
        }
        let op = inp.below(9);
        let item = fx.items[inp.below(n_items)].clone();
        let cur = read_item(&mem, &item);
        match op {
            0..=3 => {
                let Some(mut b) = cur else { continue };
                let at = usize::from(inp.u16()) % b.len().max(1);
                let x = inp.byte();
                match op {
                    0 if !b.is_empty() => b[at] ^= x.max(1),
                    1 if !b.is_empty() => b[at] = x,
                    2 => b.truncate(at),
                    _ => b.extend_from_slice(inp.bytes(usize::from(x % 64))),
                }
                write_item(&mem, &item, Some(&b));
            }
            4 => write_item(&mem, &item, None),
            5 | 6 => {
                let other = fx.items[inp.below(n_items)].clone();
                let theirs = read_item(&mem, &other);
                write_item(&mem, &item, theirs.as_deref());
                if op == 6 {
                    write_item(&mem, &other, cur.as_deref());
                    touched.push(other);
                }
            }
            7 => {
                // Plant a copy under a new key sharing the item's prefix: a record moved
                // within its subject, a subject entry under another tag, a log entry far
                // beyond the head.
                let Some(val) = cur else { continue };
                let planted = match &item {
                    Item::Key(k) => {
                        let mut nk = k.clone();
                        if let Some(last) = nk.last_mut() {
                            *last ^= inp.byte().max(1);
                        }
                        Item::Key(nk)
                    }
                    Item::Frame(_) => Item::Frame(usize::MAX),
                    _ => continue,
                };
                write_item(&mem, &planted, Some(&val));
                touched.push(planted);
                continue;
            }
            _ => {
                let Some(mut b) = mem.raw_header() else {
                    continue;
                };
                if b.len() >= 32 {
                    let n = b.len();
                    let sum: [u8; 32] = Sha256::digest(&b[..n - 32]).into();
                    b[n - 32..].copy_from_slice(&sum);
                    mem.raw_set_header(&b);
                }
                touched.push(Item::Header);
                continue;
            }
        }
        touched.push(item);
    }
    // Since storage v2, `verify` checks the record store against the log too: any change
    // to a frame or to the record store must fail it.
    let changed: Vec<Item> = touched
        .iter()
        .filter(|it| {
            verified_item(it)
                && (matches!(it, Item::Frame(usize::MAX))
                    || read_item(&mem, it) != read_item(&fx.mem, it))
        })
        .cloned()
        .collect();
    let log_changed = !changed.is_empty();

    let v = match Vault::open_in(
        Box::new(mem.clone()),
        KeySource::raw(TAMPER_ROOT),
        VaultOptions::default(),
    ) {
        Ok(v) => v,
        Err(e) => return assert_decode_error(&e, "tamper: open"),
    };
    // Open cuts a torn tail: frames past the anchor's durable position that fail their
    // checks are taken for a write a crash interrupted (docs/DESIGN-storage.md "Open"),
    // as a crash may lose frames that were never made durable. The log open keeps is
    // its first `kept` entries (the open entry is the next one).
    let kept = v.log_len().saturating_sub(1);
    let ctx = AccessContext::new("tamper", Purpose::Care);
    check_tampered_reads(&v, fx, &ctx);
    // A data-key rotation over tampered data re-encrypts only what opens, or stops
    // with an error; either way the reads that follow are still right or errors.
    let maint = AccessContext::new("tamper", Purpose::Maintenance);
    if let Err(e) = v.rotate_data_keys(&maint, &RotationScope::All, &mut |_| {})
        && !matches!(e, Error::KeyInUse { .. })
    {
        assert_decode_error(&e, "tamper: rotate_data_keys");
    }
    check_tampered_reads(&v, fx, &ctx);
    let fresh = RecordKey::new("alice", "Observation", "fresh");
    let val = json!({"a": 99});
    if v.put(&ctx, &fresh, &val).is_ok() {
        match v.get::<Value>(&ctx, &fresh) {
            Ok(got) => assert_eq!(got, val, "tamper: a fresh write reads back wrong"),
            Err(e) => assert_decode_error(&e, "tamper: get after put"),
        }
    }
    match v.verify(&ctx, None) {
        // A vault that verifies serves no changed frame and no changed record-store
        // value: every changed frame lies in the tail open cut (index >= kept), and
        // nothing of the record store changed.
        Ok(_) => assert!(
            changed.iter().all(|it| match it {
                Item::Frame(i) => *i as u64 >= kept,
                _ => false,
            }),
            "tamper: a changed log or record store verifies ({changed:?}, {kept} frames kept)"
        ),
        Err(e) => {
            assert!(log_changed, "tamper: an untouched vault fails verify: {e}");
            assert_decode_error(&e, "tamper: verify");
        }
    }
}

/// Every read of the tampered vault returns the right data or a typed error.
fn check_tampered_reads(v: &Vault, fx: &TamperFixture, ctx: &AccessContext) {
    for (k, want) in &fx.records {
        match v.get::<Value>(ctx, k) {
            Ok(got) => assert_eq!(&got, want, "tamper: a read returned wrong data"),
            Err(e) => assert_decode_error(&e, "tamper: get"),
        }
        match v.get_fields::<Value>(ctx, k, &["b"]) {
            Ok(got) => assert_eq!(got, project(want, &["b"]), "tamper: wrong field"),
            Err(e) => assert_decode_error(&e, "tamper: get_fields"),
        }
    }
    for s in &fx.subjects {
        match v.records_of::<Value>(ctx, s, None) {
            Ok(list) => {
                let mut seen = BTreeSet::new();
                for (k, got) in list {
                    assert_eq!(
                        fx.records.get(&k),
                        Some(&got),
                        "tamper: a listing returned wrong data"
                    );
                    assert_eq!(&k.subject, s, "tamper: a listing crossed subjects");
                    assert!(seen.insert(k), "tamper: a record listed twice");
                }
            }
            Err(e) => assert_decode_error(&e, "tamper: records_of"),
        }
    }
    match v.subjects(ctx) {
        Ok(list) => {
            for s in list {
                assert!(fx.subjects.contains(&s), "tamper: a forged subject listed");
            }
        }
        Err(e) => assert_decode_error(&e, "tamper: subjects"),
    }
    match v.audit_query(ctx, &LogQuery::default()) {
        Ok(entries) => {
            for e in entries {
                assert!(fx.actors.contains(&e.actor), "tamper: a forged log entry");
                if let Some(t) = e.target {
                    assert!(
                        fx.subjects.contains(&t.subject) || t.subject == "dave",
                        "tamper: a forged log target"
                    );
                }
            }
        }
        Err(e) => assert_decode_error(&e, "tamper: audit_query"),
    }
}

/// A vault's access-log segment file split by the layout documented in docs/FORMAT.md
/// ("Log segment files") — read here independently of medvault's own decoder, so tests
/// that tamper with the files do not rely on the code under test: a 41-byte header, then
/// frames `u32 len || len bytes` (len counts every byte after itself), and any bytes
/// after the last whole frame (`tail`). Within a frame: version at byte 4, flags at 5,
/// seq (`u64`, big-endian) at 6..14, and the last 8 bytes are the first 8 of SHA-256
/// (FIPS 180-4) over every byte before them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// The file's path.
    pub path: std::path::PathBuf,
    /// The 41-byte segment header.
    pub header: Vec<u8>,
    /// Every whole frame, in file order, each with its length prefix.
    pub frames: Vec<Vec<u8>>,
    /// Bytes after the last whole frame (empty in a cleanly closed vault).
    pub tail: Vec<u8>,
}

/// Bytes of a segment header (docs/FORMAT.md "Log segment files").
pub const SEGMENT_HEADER_BYTES: usize = 41;

impl SegmentFile {
    /// Reads and splits the segment at `path`. Panics when the file cannot be read or is
    /// shorter than its header (test support).
    pub fn read(path: &std::path::Path) -> SegmentFile {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
        assert!(bytes.len() >= SEGMENT_HEADER_BYTES, "{path:?}: no header");
        let mut frames = Vec::new();
        let mut at = SEGMENT_HEADER_BYTES;
        while let Some(len) = bytes.get(at..at + 4) {
            let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(f) = bytes.get(at..at + 4 + n) else {
                break;
            };
            frames.push(f.to_vec());
            at += 4 + n;
        }
        SegmentFile {
            path: path.to_owned(),
            header: bytes[..SEGMENT_HEADER_BYTES].to_vec(),
            frames,
            tail: bytes[at..].to_vec(),
        }
    }

    /// The vault's only segment (`VAULT/log/*.seg`); panics unless there is exactly one.
    pub fn only_one(vault_dir: &std::path::Path) -> SegmentFile {
        let segs = segment_paths(vault_dir);
        assert_eq!(segs.len(), 1, "expected one log segment, found {segs:?}");
        SegmentFile::read(&segs[0])
    }

    /// The file's bytes: header, frames, tail.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = self.header.clone();
        for f in &self.frames {
            b.extend_from_slice(f);
        }
        b.extend_from_slice(&self.tail);
        b
    }

    /// Writes the file back (replacing it).
    pub fn write(&self) {
        std::fs::write(&self.path, self.bytes())
            .unwrap_or_else(|e| panic!("write {:?}: {e}", self.path));
    }

    /// The index in `frames` of the frame carrying `seq`.
    pub fn index_of(&self, seq: u64) -> usize {
        self.frames
            .iter()
            .position(|f| frame_seq(f) == seq)
            .unwrap_or_else(|| panic!("no frame with seq {seq}"))
    }
}

/// The log segment files of the vault at `vault_dir`, in name (= sequence) order.
pub fn segment_paths(vault_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(vault_dir.join("log"))
        .unwrap_or_else(|e| panic!("read {vault_dir:?}/log: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// The seq of an encoded frame (bytes 6..14).
pub fn frame_seq(frame: &[u8]) -> u64 {
    let mut s = [0u8; 8];
    s.copy_from_slice(&frame[6..14]);
    u64::from_be_bytes(s)
}

/// Recomputes a frame's unkeyed check (its last 8 bytes) over the bytes before it: what
/// a tamperer without the key can always do.
pub fn fix_check(frame: &mut [u8]) {
    let n = frame.len();
    let sum = Sha256::digest(&frame[..n - 8]);
    frame[n - 8..].copy_from_slice(&sum[..8]);
}

/// Renumbers a frame to `seq` and fixes its check.
pub fn renumber(frame: &mut [u8], seq: u64) {
    frame[6..14].copy_from_slice(&seq.to_be_bytes());
    fix_check(frame);
}
