//! Fault injection: I/O errors and torn writes at chosen points of put / put_many /
//! delete / erase / verify / open / create, injected by `danger::FaultyStorage` over the
//! memory backend (and, for one case, over sled).
//!
//! Every failing call must report `Error::Storage`; afterwards (same handle, and after a
//! reopen) every acknowledged write reads back, and the access log verifies. A torn
//! write (part of a batch applied: sled never does this, the memory backend simulates
//! a non-atomic backend) may leave damage, but it must surface as an error
//! (`Integrity`, `LogTampered`, `NotFound` for an unacknowledged record), never as
//! wrong data.

use std::collections::BTreeMap;

use medvault::danger::{FaultPlan, FaultyStorage, RawAccess};
use medvault::storage::{MemoryStorage, SledOptions, SledStorage, Storage};
use medvault::{
    AccessContext, Action, Error, KeySource, Purpose, RecordKey, Structure, Vault, VaultOptions,
};
use serde_json::{Value, json};

const ROOT: [u8; 32] = [0x3c; 32];

fn nurse() -> AccessContext {
    AccessContext::new("nurse-1", Purpose::Care)
}

fn dpo() -> AccessContext {
    AccessContext::new("dpo", Purpose::PatientRequest)
}

fn open(mem: &FaultyStorage<MemoryStorage>) -> Vault {
    Vault::open_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .expect("reopen after faults are cleared")
}

fn key(s: &str, r: &str) -> RecordKey {
    RecordKey::new(s, "Observation", r)
}

/// A vault with two subjects and three acknowledged records.
fn baseline() -> (
    FaultyStorage<MemoryStorage>,
    Vault,
    BTreeMap<RecordKey, Value>,
) {
    let mem = FaultyStorage::memory();
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .expect("create");
    let mut acked = BTreeMap::new();
    for (k, val) in [
        (key("alice", "1"), json!({"a": 1, "b": "one"})),
        (key("alice", "2"), json!({"a": 2})),
        (key("bob", "1"), json!({"b": "bob"})),
    ] {
        v.put(&nurse(), &k, &val).expect("baseline put");
        acked.insert(k, val);
    }
    (mem, v, acked)
}

fn storage_err<T>(r: medvault::Result<T>, what: &str) {
    match r {
        Err(Error::Storage(_)) => {}
        Err(e) => panic!("{what}: expected Error::Storage, got {e:?}"),
        Ok(_) => panic!("{what}: expected Error::Storage, got success"),
    }
}

/// Every acknowledged record reads back with its value and the log verifies.
fn assert_consistent(v: &Vault, acked: &BTreeMap<RecordKey, Value>, what: &str) {
    for (k, want) in acked {
        let got: Value = v
            .get(&nurse(), k)
            .unwrap_or_else(|e| panic!("{what}: acknowledged {k:?} unreadable: {e}"));
        assert_eq!(&got, want, "{what}: {k:?}");
    }
    let n = v
        .verify(&nurse(), None)
        .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert!(n > 0);
}

/// Same handle, then (that handle closed: one handle per store) a reopen: both
/// consistent. Returns the reopened handle.
fn assert_consistent_both(
    mem: &FaultyStorage<MemoryStorage>,
    v: Vault,
    acked: &BTreeMap<RecordKey, Value>,
) -> Vault {
    mem.set_faults(FaultPlan::default());
    assert_consistent(&v, acked, "same handle");
    drop(v);
    let v = open(mem);
    assert_consistent(&v, acked, "reopened");
    v
}

/// Every access-log append fails (the log store of the faulty backend).
fn fail_log_appends() -> FaultPlan {
    FaultPlan {
        fail_log_appends_after: Some(0),
        ..FaultPlan::default()
    }
}

fn fail_writes() -> FaultPlan {
    FaultPlan {
        fail_writes_after: Some(0),
        ..FaultPlan::default()
    }
}

#[test]
fn failed_put_is_typed_and_leaves_no_trace() {
    for (k, what) in [
        (key("alice", "1"), "overwrite"),
        (key("alice", "9"), "new record of a known subject"),
        (key("carol", "1"), "first record of a new subject"),
    ] {
        let (mem, v, acked) = baseline();
        mem.set_faults(fail_writes());
        storage_err(v.put(&nurse(), &k, &json!({"a": 100})), what);
        let v = assert_consistent_both(&mem, v, &acked);
        // The failed write is not there, and the key is usable afterwards.
        let after: medvault::Result<Value> = v.get(&nurse(), &k);
        match acked.get(&k) {
            Some(old) => assert_eq!(&after.expect(what), old),
            None => assert!(matches!(after, Err(Error::NotFound)), "{what}"),
        }
        v.put(&nurse(), &k, &json!({"a": 101})).expect(what);
        let mut acked = acked;
        acked.insert(k, json!({"a": 101}));
        assert_consistent_both(&mem, v, &acked);
    }
}

#[test]
fn failed_put_many_is_all_or_nothing() {
    let (mem, v, acked) = baseline();
    let items = [
        (key("alice", "1"), json!({"x": 1})),
        (key("carol", "1"), json!({"x": 2})),
        (key("dave", "1"), json!({"x": 3})),
    ];
    mem.set_faults(fail_writes());
    storage_err(
        v.put_many(&nurse(), items.iter().map(|(k, x)| (k, x)), Action::Import),
        "put_many",
    );
    let v = assert_consistent_both(&mem, v, &acked);
    for s in ["carol", "dave"] {
        assert!(matches!(
            v.get::<Value>(&nurse(), &key(s, "1")),
            Err(Error::NotFound)
        ));
    }
    assert_eq!(
        v.subjects(&nurse()).expect("subjects").len(),
        2,
        "no subject of the failed batch persists"
    );
}

#[test]
fn failed_delete_keeps_the_record() {
    let (mem, v, acked) = baseline();
    mem.set_faults(fail_writes());
    storage_err(v.delete(&nurse(), &key("alice", "1")), "delete");
    assert_consistent_both(&mem, v, &acked);
}

#[test]
fn failed_erase_keeps_the_subject_usable() {
    let (mem, v, acked) = baseline();
    mem.set_faults(fail_writes());
    storage_err(v.erase_subject(&dpo(), "alice"), "erase");
    let v = assert_consistent_both(&mem, v, &acked);
    // The handle still writes to alice, and the write survives a reopen.
    let mut acked = acked;
    v.put(&nurse(), &key("alice", "3"), &json!({"a": 3}))
        .expect("put after failed erase");
    acked.insert(key("alice", "3"), json!({"a": 3}));
    let v = assert_consistent_both(&mem, v, &acked);
    // And the erasure, retried, succeeds.
    assert_eq!(v.erase_subject(&dpo(), "alice").expect("erase"), 3);
    acked.retain(|k, _| k.subject != "alice");
    assert_consistent_both(&mem, v, &acked);
}

#[test]
fn failed_reads_are_typed_and_return_nothing() {
    let (mem, v, acked) = baseline();
    mem.set_faults(FaultPlan {
        fail_reads: true,
        ..FaultPlan::default()
    });
    storage_err(v.get::<Value>(&nurse(), &key("alice", "1")), "get");
    storage_err(v.records_of::<Value>(&nurse(), "alice", None), "records_of");
    storage_err(v.subjects(&nurse()), "subjects");
    storage_err(v.verify(&nurse(), None), "verify");
    storage_err(
        Vault::open_in(
            Box::new(mem.clone()),
            KeySource::raw(ROOT),
            VaultOptions::default(),
        ),
        "open",
    );
    assert_consistent_both(&mem, v, &acked);
}

#[test]
fn a_read_whose_log_entry_fails_returns_no_data() {
    // Since storage v2 a read writes nothing to the record store: its entry goes to the
    // access log alone, so the fault is on the log's append (fail closed, as before).
    let (mem, v, acked) = baseline();
    mem.set_faults(fail_log_appends());
    storage_err(v.get::<Value>(&nurse(), &key("alice", "1")), "get");
    storage_err(
        v.get_fields::<Value>(&nurse(), &key("alice", "1"), &["a"]),
        "get_fields",
    );
    storage_err(v.records_of::<Value>(&nurse(), "alice", None), "records_of");
    storage_err(v.verify(&nurse(), None), "verify (its own entry)");
    storage_err(v.checkpoint(&nurse()), "checkpoint");
    assert_consistent_both(&mem, v, &acked);
}

#[test]
fn failed_flush_is_reported() {
    let (mem, v, acked) = baseline();
    mem.set_faults(FaultPlan {
        fail_flush: true,
        ..FaultPlan::default()
    });
    storage_err(v.put(&nurse(), &key("alice", "1"), &json!({"a": 7})), "put");
    storage_err(v.erase_subject(&dpo(), "bob"), "erase");
    // Not acknowledged, but applied: either outcome is allowed; what was acked for
    // alice 2 must hold, and the log must verify.
    let mut acked = acked;
    acked.remove(&key("alice", "1"));
    acked.remove(&key("bob", "1"));
    let v = assert_consistent_both(&mem, v, &acked);
    let a1: Value = v.get(&nurse(), &key("alice", "1")).expect("alice 1");
    assert!(a1 == json!({"a": 7}) || a1 == json!({"a": 1, "b": "one"}));
}

#[test]
fn failed_open_changes_nothing() {
    let (mem, v, acked) = baseline();
    drop(v);
    let before = mem.dump();
    let frames_before = mem.memory_log().frames();
    // The open's own entry goes to the access log (storage v2): fail that append.
    mem.set_faults(fail_log_appends());
    storage_err(
        Vault::open_in(
            Box::new(mem.clone()),
            KeySource::raw(ROOT),
            VaultOptions::default(),
        ),
        "open whose log entry fails",
    );
    assert_eq!(
        mem.dump(),
        before,
        "a failed open wrote to the record store"
    );
    assert_eq!(
        mem.memory_log().frames(),
        frames_before,
        "a failed open wrote to the access log"
    );
    mem.set_faults(FaultPlan::default());
    assert_consistent(&open(&mem), &acked, "after failed open");
}

#[test]
fn failed_create_leaves_no_vault_and_can_be_retried() {
    // The header is written last; if that fails there is no vault (open: NotFound), and
    // a second create clears what the first left and succeeds.
    let mem = FaultyStorage::memory();
    mem.set_faults(FaultPlan {
        fail_header_writes: true,
        ..FaultPlan::default()
    });
    storage_err(
        Vault::create_in(
            Box::new(mem.clone()),
            KeySource::raw(ROOT),
            VaultOptions::default(),
        ),
        "create",
    );
    mem.set_faults(FaultPlan::default());
    assert!(matches!(
        Vault::open_in(
            Box::new(mem.clone()),
            KeySource::raw(ROOT),
            VaultOptions::default()
        ),
        Err(Error::NotFound)
    ));
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .expect("create over a failed create's leftovers");
    v.put(&nurse(), &key("alice", "1"), &json!({"a": 1}))
        .expect("put");
    let acked = BTreeMap::from([(key("alice", "1"), json!({"a": 1}))]);
    assert_consistent_both(&mem, v, &acked);
    // Writes failing during create: nothing is written, the error is typed, and a
    // retry works.
    let mem = FaultyStorage::memory();
    mem.set_faults(fail_writes());
    storage_err(
        Vault::create_in(
            Box::new(mem.clone()),
            KeySource::raw(ROOT),
            VaultOptions::default(),
        ),
        "create with failing writes",
    );
    mem.set_faults(FaultPlan::default());
    assert!(mem.raw_header().is_none());
    assert!(mem.dump().is_empty(), "a failed create wrote something");
    Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .expect("create after a create that wrote nothing");
}

/// Fails the `n`-th batch from now on; `torn` operations of it are applied first.
fn plan(n: u64, torn: usize) -> FaultPlan {
    FaultPlan {
        fail_writes_after: Some(n),
        torn_ops: torn,
        ..FaultPlan::default()
    }
}

/// After a torn or failed operation: every acknowledged record reads back right; any
/// other record reads back as one of the values written to it or fails with an error
/// (never another value); the log verifies, or reports tampering.
fn assert_no_wrong_data(
    v: &Vault,
    acked: &BTreeMap<RecordKey, Value>,
    attempted: &BTreeMap<RecordKey, Vec<Value>>,
    what: &str,
) {
    for (k, want) in acked {
        match v.get::<Value>(&nurse(), k) {
            Ok(got) => assert!(
                &got == want || attempted.get(k).is_some_and(|a| a.contains(&got)),
                "{what}: {k:?} reads back wrong data"
            ),
            Err(e) => panic!("{what}: acknowledged {k:?} unreadable: {e}"),
        }
    }
    for (k, vals) in attempted {
        if acked.contains_key(k) {
            continue;
        }
        match v.get::<Value>(&nurse(), k) {
            Ok(got) => assert!(vals.contains(&got), "{what}: {k:?} reads back wrong data"),
            Err(Error::NotFound | Error::Integrity { .. }) => {}
            Err(e) => panic!("{what}: {k:?}: unexpected error {e}"),
        }
    }
    // A torn batch breaks the record store's all-or-nothing contract (storage v2's
    // commit protocol relies on it): verify must then name the damage, as a record store
    // that does not match the log's state digest, or an applied marker (written in the
    // torn batch) that no longer matches the one the vault committed.
    match v.verify(&nurse(), None) {
        Ok(_)
        | Err(Error::LogTampered { .. })
        | Err(Error::Integrity {
            structure: Structure::RecordStore | Structure::AppliedMarker,
            ..
        }) => {}
        Err(e) => panic!("{what}: verify: unexpected error {e}"),
    }
}

/// Torn writes at every point of every batch of a put, a put_many, a delete and an
/// erase. Each failing call reports `Error::Storage`; then the same handle and a
/// reopened one show no wrong data, and acknowledged writes made *after* the fault
/// (same handle) survive a reopen.
#[test]
fn torn_writes_never_yield_wrong_data() {
    type Op = fn(&Vault) -> medvault::Result<()>;
    type Case = (&'static str, Op, Vec<(RecordKey, Value)>);
    let ops: Vec<Case> = vec![
        (
            "put overwrite",
            |v| v.put(&nurse(), &key("alice", "1"), &json!({"a": 50})),
            vec![(key("alice", "1"), json!({"a": 50}))],
        ),
        (
            "put new subject",
            |v| v.put(&nurse(), &key("carol", "1"), &json!({"c": 1})),
            vec![(key("carol", "1"), json!({"c": 1}))],
        ),
        (
            "put_many",
            |v| {
                let items = [
                    (key("alice", "2"), json!({"m": 1})),
                    (key("carol", "1"), json!({"m": 2})),
                    (key("dave", "1"), json!({"m": 3})),
                ];
                v.put_many(&nurse(), items.iter().map(|(k, x)| (k, x)), Action::Write)
                    .map(|_| ())
            },
            vec![
                (key("alice", "2"), json!({"m": 1})),
                (key("carol", "1"), json!({"m": 2})),
                (key("dave", "1"), json!({"m": 3})),
            ],
        ),
        ("delete", |v| v.delete(&nurse(), &key("alice", "1")), vec![]),
        (
            "erase",
            |v| v.erase_subject(&dpo(), "alice").map(|_| ()),
            vec![],
        ),
    ];
    for (name, op, writes) in &ops {
        for torn in 0..8 {
            let what = format!("{name}, torn after {torn} ops");
            let (mem, v, mut acked) = baseline();
            let mut attempted: BTreeMap<RecordKey, Vec<Value>> = BTreeMap::new();
            for (k, x) in writes {
                attempted.entry(k.clone()).or_default().push(x.clone());
            }
            mem.set_faults(plan(0, torn));
            storage_err(op(&v), &what);
            mem.set_faults(FaultPlan::default());
            if matches!(*name, "delete" | "erase") {
                // Not acknowledged: the records may be gone (torn) or still there.
                let gone: Vec<RecordKey> = acked
                    .keys()
                    .filter(|k| k.subject == "alice" && (*name == "erase" || k.record_id == "1"))
                    .cloned()
                    .collect();
                for k in gone {
                    let old = acked.remove(&k).expect("baseline record");
                    attempted.entry(k).or_default().push(old);
                }
            }
            assert_no_wrong_data(&v, &acked, &attempted, &format!("{what}, same handle"));
            // The handle keeps working: a write now is acknowledged and must survive.
            for s in ["alice", "carol"] {
                let k = key(s, "after");
                let val = json!({"after": s});
                match v.put(&nurse(), &k, &val) {
                    Ok(()) => {
                        attempted.remove(&k);
                        acked.insert(k, val);
                    }
                    // A torn erasure that got as far as the key entry had put its
                    // erasure mark first: the subject stays erased (erasure memory).
                    Err(medvault::Error::SubjectErased) if *name == "erase" && s == "alice" => {}
                    Err(e) => panic!("{what}: put after the fault: {e}"),
                }
            }
            assert_no_wrong_data(&v, &acked, &attempted, &format!("{what}, same handle"));
            drop(v);
            let v = open(&mem);
            assert_no_wrong_data(&v, &acked, &attempted, &format!("{what}, reopened"));
        }
    }
}

/// A write fault at each of the next few batches while a sequence of operations runs:
/// whatever failed is typed, and what succeeded survives.
#[test]
fn write_fault_at_each_point_of_a_sequence() {
    for fail_at in 0..10u64 {
        let (mem, v, mut acked) = baseline();
        mem.set_faults(plan(fail_at, 0));
        let steps: Vec<(RecordKey, Option<Value>)> = vec![
            (key("alice", "1"), Some(json!({"s": 1}))),
            (key("carol", "1"), Some(json!({"s": 2}))),
            (key("alice", "2"), None),
            (key("carol", "2"), Some(json!({"s": 3}))),
            (key("bob", "1"), None),
            (key("bob", "2"), Some(json!({"s": 4}))),
        ];
        for (k, val) in steps {
            let r = match &val {
                Some(x) => v.put(&nurse(), &k, x),
                None => v.delete(&nurse(), &k),
            };
            match r {
                Ok(()) => {
                    match val {
                        Some(x) => acked.insert(k, x),
                        None => acked.remove(&k),
                    };
                }
                Err(Error::Storage(_)) => {}
                Err(e) => panic!("fail at {fail_at}: untyped failure {e}"),
            }
        }
        let v = assert_consistent_both(&mem, v, &acked);
        let listed = v.stats().expect("stats").records;
        assert_eq!(
            listed,
            acked.len() as u64,
            "fail at {fail_at}: stray records"
        );
    }
}

/// The memory backend's own contract, which the tests above rely on.
#[test]
fn fault_plan_fires_as_documented() {
    let mem = FaultyStorage::memory();
    mem.set_faults(plan(1, 1));
    let mut b = medvault::storage::WriteBatch::new();
    b.put(b"a".to_vec(), b"1".to_vec());
    mem.apply(b).expect("first batch passes");
    let mut b = medvault::storage::WriteBatch::new();
    b.put(b"b".to_vec(), b"2".to_vec());
    b.put(b"c".to_vec(), b"3".to_vec());
    assert!(mem.apply(b).is_err());
    let keys: Vec<Vec<u8>> = mem.dump().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        vec![b"a".to_vec(), b"b".to_vec()],
        "torn after one op"
    );
}

/// The same fault as `failed_put_is_typed_and_leaves_no_trace`, injected over sled: the
/// failed put is typed, leaves no trace, and what was acknowledged reads back (same
/// handle, and after a reopen of the directory without the wrapper).
#[test]
fn failed_put_over_sled_is_typed_and_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v");
    std::fs::create_dir_all(&path).expect("mkdir");
    let sled = SledStorage::open(&path, &SledOptions::default()).expect("sled");
    let faulty = FaultyStorage::new(sled);
    let faults = faulty.handle();
    let v = Vault::create_in(
        Box::new(faulty),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .expect("create");
    let mut acked = BTreeMap::new();
    for (k, val) in [
        (key("alice", "1"), json!({"a": 1, "b": "one"})),
        (key("bob", "1"), json!({"b": "bob"})),
    ] {
        v.put(&nurse(), &k, &val).expect("baseline put");
        acked.insert(k, val);
    }
    for (k, what) in [
        (key("alice", "1"), "overwrite over sled"),
        (key("carol", "1"), "first record of a new subject over sled"),
    ] {
        faults.set_faults(fail_writes());
        storage_err(v.put(&nurse(), &k, &json!({"a": 100})), what);
        faults.set_faults(FaultPlan::default());
        assert_consistent(&v, &acked, what);
        let after: medvault::Result<Value> = v.get(&nurse(), &k);
        match acked.get(&k) {
            Some(old) => assert_eq!(&after.expect(what), old),
            None => assert!(matches!(after, Err(Error::NotFound)), "{what}"),
        }
    }
    drop(v);
    let v = Vault::open(&path, KeySource::raw(ROOT)).expect("reopen over sled");
    assert_consistent(&v, &acked, "sled reopened");
}
