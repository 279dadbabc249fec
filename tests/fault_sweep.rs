//! Fault injection, systematically: every writing or syncing I/O call an operation makes,
//! on both stores (the record store's `apply` / `flush` / `write_header`, the log store's
//! `append` / `sync` / `write_anchor` / `sync_anchor`), is failed in turn, once as a
//! transient error and once as a disk that went away (that call and every later one
//! fail). Operations: single put, batched put, read, delete, erasure, data-key rotation,
//! root-key rotation; durability modes `Writes` and `Every`; backends: memory (memory
//! log) and sled (segment files on disk).
//!
//! Oracle, independent of the engine's own bookkeeping: a model of what was acknowledged
//! before the operation (`before`) and what the operation would leave (`after`), plus the
//! access log read back after a reopen. After each fault, with the faults cleared:
//! * the failing call reported `Error::Storage` (or the operation succeeded: a failed
//!   call after its acknowledgement point, e.g. a later anchor write, is allowed to be
//!   absorbed — then the result must be `after`);
//! * the same handle returns no wrong data (each value is `before`'s or `after`'s, or an
//!   error);
//! * after a reopen, `verify` passes and the state is *exactly* `before` or exactly
//!   `after` (never a mix), and it is `after` if and only if the log holds the
//!   operation's change entries without a recovery entry saying "not applied"
//!   (invariant 4 of DESIGN.md); an acknowledged operation is always `after`.
//!
//! The number of calls per operation is measured by a fault-free run of the same
//! operation on an identical vault ([`FaultHandle::io_calls`]), and the test asserts that
//! the sweep covered at least one call on each store.

use std::collections::BTreeMap;

use medvault::danger::{FaultHandle, FaultPlan, FaultyStorage};
use medvault::storage::{MemoryStorage, SledOptions, SledStorage};
use medvault::{
    AccessContext, Action, Durability, Error, KeySource, LogQuery, Outcome, Purpose, RecordKey,
    RotationScope, Vault, VaultOptions,
};
use serde_json::{Value, json};

const ROOT: [u8; 32] = [0x5a; 32];
const NEXT_ROOT: [u8; 32] = [0xa5; 32];

fn nurse() -> AccessContext {
    AccessContext::new("nurse-1", Purpose::Care)
}

fn dpo() -> AccessContext {
    AccessContext::new("dpo", Purpose::PatientRequest)
}

fn key(s: &str, r: &str) -> RecordKey {
    RecordKey::new(s, "Observation", r)
}

/// The records a sweep case starts from (acknowledged before any fault).
fn baseline_records() -> BTreeMap<RecordKey, Value> {
    [
        (key("alice", "1"), json!({"a": 1, "b": "one"})),
        (key("alice", "2"), json!({"a": 2, "n": 1.50})),
        (key("bob", "1"), json!({"b": "bob", "list": [1, 2, 3]})),
    ]
    .into_iter()
    .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put,
    PutMany,
    Read,
    Delete,
    Erase,
    RotateDataKeys,
    RotateRoot,
}

const OPS: [Op; 7] = [
    Op::Put,
    Op::PutMany,
    Op::Read,
    Op::Delete,
    Op::Erase,
    Op::RotateDataKeys,
    Op::RotateRoot,
];

/// What the model says the operation leaves: `None` = no readable value.
fn after_of(op: Op, before: &BTreeMap<RecordKey, Value>) -> BTreeMap<RecordKey, Option<Value>> {
    let mut m: BTreeMap<RecordKey, Option<Value>> = before
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    match op {
        Op::Put => {
            m.insert(key("alice", "1"), Some(json!({"a": 100, "c": "new"})));
        }
        Op::PutMany => {
            m.insert(key("alice", "3"), Some(json!({"x": 3})));
            m.insert(key("carol", "1"), Some(json!({"x": "carol"})));
            m.insert(key("bob", "1"), Some(json!({"x": 0.1})));
        }
        Op::Read | Op::RotateDataKeys | Op::RotateRoot => {}
        Op::Delete => {
            m.insert(key("bob", "1"), None);
        }
        Op::Erase => {
            m.insert(key("alice", "1"), None);
            m.insert(key("alice", "2"), None);
        }
    }
    m
}

fn run(op: Op, v: &Vault) -> medvault::Result<()> {
    match op {
        Op::Put => v.put(&nurse(), &key("alice", "1"), &json!({"a": 100, "c": "new"})),
        Op::PutMany => {
            let items = [
                (key("alice", "3"), json!({"x": 3})),
                (key("carol", "1"), json!({"x": "carol"})),
                (key("bob", "1"), json!({"x": 0.1})),
            ];
            v.put_many(&nurse(), items.iter().map(|(k, x)| (k, x)), Action::Import)
                .map(|_| ())
        }
        Op::Read => {
            let got: Value = v.get(&nurse(), &key("alice", "2"))?;
            assert_eq!(
                got,
                json!({"a": 2, "n": 1.50}),
                "a read returned wrong data"
            );
            Ok(())
        }
        Op::Delete => v.delete(&nurse(), &key("bob", "1")),
        Op::Erase => v.erase_subject(&dpo(), "alice").map(|_| ()),
        Op::RotateDataKeys => v
            .rotate_data_keys(
                &AccessContext::new("admin", Purpose::Administration),
                &RotationScope::All,
                &mut |_| {},
            )
            .map(|_| ()),
        Op::RotateRoot => v
            .rotate_root_key(
                &AccessContext::new("admin", Purpose::Administration),
                KeySource::raw(NEXT_ROOT),
                medvault::danger::insecure_kdf_params(),
                &mut |_| {},
            )
            .map(|_| ()),
    }
}

/// The action codes whose `Ok` entries stand for a change of the record store.
fn is_change(a: Action) -> bool {
    matches!(
        a,
        Action::Write | Action::Import | Action::Delete | Action::Erase | Action::KeyRotation
    )
}

/// Reads every key of `model` from `v`: `Some(value)` when readable, `None` for
/// `NotFound` / `SubjectErased`; any other error is returned as such.
fn read_state(
    v: &Vault,
    keys: impl Iterator<Item = RecordKey>,
) -> Result<BTreeMap<RecordKey, Option<Value>>, String> {
    let mut got = BTreeMap::new();
    for k in keys {
        let r: medvault::Result<Value> = v.get(&nurse(), &k);
        let val = match r {
            Ok(x) => Some(x),
            Err(Error::NotFound) | Err(Error::SubjectErased) => None,
            Err(e) => return Err(format!("{k:?}: {e}")),
        };
        got.insert(k, val);
    }
    Ok(got)
}

/// One backend under test: how to make a fresh vault with a fault handle, and how to
/// reopen it without the fault wrapper.
trait Backend {
    fn name(&self) -> &'static str;
    /// A new vault holding the baseline records, and its fault handle.
    fn fresh(&mut self, durability: Durability) -> (Vault, FaultHandle);
    /// Reopens the vault last made by `fresh` (the handle passed is dropped first).
    fn reopen(&mut self, durability: Durability, key: [u8; 32]) -> medvault::Result<Vault>;
}

fn options(durability: Durability) -> VaultOptions {
    VaultOptions {
        durability,
        kdf: medvault::danger::insecure_kdf_params(),
        ..VaultOptions::default()
    }
}

fn fill(v: &Vault) {
    for (k, val) in baseline_records() {
        v.put(&nurse(), &k, &val).expect("baseline put");
    }
}

struct Memory {
    store: Option<FaultyStorage<MemoryStorage>>,
}

impl Backend for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn fresh(&mut self, durability: Durability) -> (Vault, FaultHandle) {
        let mem = FaultyStorage::memory();
        let v = Vault::create_in(
            Box::new(mem.clone()),
            KeySource::raw(ROOT),
            options(durability),
        )
        .expect("create");
        fill(&v);
        let h = mem.handle();
        self.store = Some(mem);
        (v, h)
    }

    fn reopen(&mut self, durability: Durability, key: [u8; 32]) -> medvault::Result<Vault> {
        let mem = self.store.as_ref().expect("fresh first");
        mem.set_faults(FaultPlan::default());
        Vault::open_in(
            Box::new(mem.clone()),
            KeySource::raw(key),
            options(durability),
        )
    }
}

struct Sled {
    root: tempfile::TempDir,
    n: u32,
}

impl Sled {
    fn path(&self) -> std::path::PathBuf {
        self.root.path().join(format!("v{}", self.n))
    }
}

impl Backend for Sled {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn fresh(&mut self, durability: Durability) -> (Vault, FaultHandle) {
        self.n += 1;
        let path = self.path();
        std::fs::create_dir_all(&path).expect("mkdir");
        let sled = SledStorage::open(&path, &SledOptions::default()).expect("sled");
        let faulty = FaultyStorage::new(sled);
        let h = faulty.handle();
        let v = Vault::create_in(Box::new(faulty), KeySource::raw(ROOT), options(durability))
            .expect("create");
        fill(&v);
        (v, h)
    }

    fn reopen(&mut self, durability: Durability, key: [u8; 32]) -> medvault::Result<Vault> {
        Vault::open_with(self.path(), KeySource::raw(key), options(durability))
    }
}

/// Opens with the old root key, or with the new one when a root-key rotation may have
/// gone through (both are right after a failed rotation; which one the header asks for
/// is the engine's business, but one of them must open it).
fn reopen_any(b: &mut dyn Backend, durability: Durability, op: Op) -> Vault {
    match b.reopen(durability, ROOT) {
        Ok(v) => v,
        Err(Error::WrongKey) if op == Op::RotateRoot => b
            .reopen(durability, NEXT_ROOT)
            .unwrap_or_else(|e| panic!("reopen with the new root key: {e}")),
        Err(e) => panic!("reopen: {e}"),
    }
}

/// Counts the I/O calls `op` makes on a fault-free vault.
fn calls_of(b: &mut dyn Backend, op: Op, durability: Durability) -> u64 {
    let (v, h) = b.fresh(durability);
    h.set_faults(FaultPlan::default());
    run(op, &v).unwrap_or_else(|e| panic!("{op:?} without faults: {e}"));
    let n = h.io_calls();
    drop(v);
    n
}

struct Tally {
    cases: u64,
    failed_ops: u64,
    applied_after_error: u64,
}

/// Fails call `at` of `op` (sticky or not) and checks the oracle. Returns whether the
/// operation reported an error.
fn one_case(
    b: &mut dyn Backend,
    op: Op,
    durability: Durability,
    at: u64,
    sticky: bool,
    tally: &mut Tally,
) {
    let what = format!(
        "{} {op:?} {durability:?} call {at}{}",
        b.name(),
        if sticky { " sticky" } else { "" }
    );
    let before = baseline_records();
    let after = after_of(op, &before);
    let before_opt: BTreeMap<RecordKey, Option<Value>> = after
        .keys()
        .map(|k| (k.clone(), before.get(k).cloned()))
        .collect();
    let (v, h) = b.fresh(durability);
    let base_seq = v.log_len();
    h.set_faults(FaultPlan {
        fail_io_call: Some(at),
        fail_io_sticky: sticky,
        ..FaultPlan::default()
    });
    let result = run(op, &v);
    match &result {
        Ok(()) => {}
        Err(Error::Storage(_)) => tally.failed_ops += 1,
        Err(e) => panic!("{what}: expected Error::Storage, got {e:?}"),
    }
    h.set_faults(FaultPlan::default());
    // Same handle: nothing wrong is served (it may refuse: a poisoned committer).
    for (k, val) in after.keys().filter_map(|k| {
        let r: medvault::Result<Value> = v.get(&nurse(), k);
        r.ok().map(|x| (k.clone(), x))
    }) {
        let ok = before.get(&k) == Some(&val) || after.get(&k) == Some(&Some(val.clone()));
        assert!(ok, "{what}: same handle served {val} for {k:?}");
    }
    drop(v);
    drop(h);

    let v = reopen_any(b, durability, op);
    let n = v
        .verify(&nurse(), None)
        .unwrap_or_else(|e| panic!("{what}: verify after reopen: {e}"));
    assert!(n > base_seq, "{what}: verify saw {n} entries");
    let got = read_state(&v, after.keys().cloned())
        .unwrap_or_else(|e| panic!("{what}: read after reopen: {e}"));

    // What the log says happened to the operation's changes.
    let entries = v
        .audit_query(
            &AccessContext::new("auditor", Purpose::Administration),
            &LogQuery::default(),
        )
        .unwrap_or_else(|e| panic!("{what}: audit query: {e}"));
    let not_applied: Vec<u64> = entries
        .iter()
        .filter(|e| e.action == Action::Recovery)
        .filter_map(|e| {
            e.note
                .strip_prefix("entry ")?
                .strip_suffix(" not applied")?
                .parse()
                .ok()
        })
        .collect();
    let logged_applied = entries.iter().any(|e| {
        e.seq >= base_seq
            && is_change(e.action)
            && e.outcome == Outcome::Ok
            && !not_applied.contains(&e.seq)
    });

    if before_opt == after {
        // A read or a rotation: the values never change.
        assert_eq!(got, after, "{what}: values changed");
    } else if got == after {
        assert!(
            logged_applied,
            "{what}: the change is in the record store but no entry says so"
        );
        if result.is_err() {
            tally.applied_after_error += 1;
        }
    } else if got == before_opt {
        assert!(
            !logged_applied,
            "{what}: the log says the change happened but the store does not hold it"
        );
        assert!(
            result.is_err(),
            "{what}: acknowledged but absent after reopen"
        );
    } else {
        panic!("{what}: a mix of before and after: {got:?}");
    }
    if op == Op::Read && result.is_ok() {
        let read_logged = entries
            .iter()
            .any(|e| e.seq >= base_seq && e.action == Action::Read && e.outcome == Outcome::Ok);
        assert!(read_logged, "{what}: data returned without its entry");
    }
    tally.cases += 1;
}

fn sweep(b: &mut dyn Backend) -> Tally {
    let mut tally = Tally {
        cases: 0,
        failed_ops: 0,
        applied_after_error: 0,
    };
    for durability in [Durability::Writes, Durability::Every] {
        for op in OPS {
            let n = calls_of(b, op, durability);
            assert!(n >= 1, "{} {op:?}: no I/O call counted", b.name());
            for at in 0..n {
                for sticky in [false, true] {
                    one_case(b, op, durability, at, sticky, &mut tally);
                }
            }
        }
    }
    eprintln!(
        "{}: {} fault cases, {} operations failed, {} failed after their change was applied and logged",
        b.name(),
        tally.cases,
        tally.failed_ops,
        tally.applied_after_error
    );
    tally
}

#[test]
fn every_io_call_of_every_operation_fails_in_turn_memory() {
    let t = sweep(&mut Memory { store: None });
    assert!(t.failed_ops > 0, "no fault made an operation fail");
}

#[test]
fn every_io_call_of_every_operation_fails_in_turn_sled() {
    let root = tempfile::tempdir().expect("tempdir");
    let t = sweep(&mut Sled { root, n: 0 });
    assert!(t.failed_ops > 0, "no fault made an operation fail");
}

/// The counter itself: a put on a fresh vault makes calls on both stores (a log append
/// and a record-store batch at least), so the sweep reaches both.
#[test]
fn a_put_makes_io_calls_on_both_stores() {
    let mem = FaultyStorage::memory();
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        options(Durability::Writes),
    )
    .expect("create");
    let h = mem.handle();
    // Fail the log append only (the first call of a put is its append).
    h.set_faults(FaultPlan {
        fail_log_appends_after: Some(0),
        ..FaultPlan::default()
    });
    assert!(matches!(
        v.put(&nurse(), &key("a", "1"), &json!({"x": 1})),
        Err(Error::Storage(_))
    ));
    h.set_faults(FaultPlan::default());
    v.put(&nurse(), &key("a", "1"), &json!({"x": 1}))
        .expect("put");
    let calls = h.io_calls();
    // Fail every record-store batch: the put fails, so at least one counted call was an
    // `apply`.
    h.set_faults(FaultPlan {
        fail_writes_after: Some(0),
        ..FaultPlan::default()
    });
    assert!(matches!(
        v.put(&nurse(), &key("a", "2"), &json!({"x": 2})),
        Err(Error::Storage(_))
    ));
    assert!(calls >= 2, "a put made {calls} I/O calls");
}
