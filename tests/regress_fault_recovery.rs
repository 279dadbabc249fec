//! Guards two recovery bugs found by fault injection (tests/faults.rs): cached subject keys outliving a partly applied erase, and a create over a failed create's leftovers failing as a tampered log.
//!
//! 1. An erase whose batch failed after deleting the subject entry (a torn write) left
//!    the subject's keys in the cache as if nothing happened; the next acknowledged put
//!    was sealed under those keys but persisted no entry, so after a reopen it was
//!    unreadable ("record without subject keys"). Fix: `erase_subject` evicts the
//!    subject's cached keys when its commit fails.
//! 2. A create whose header write failed left a log behind; a second create on the same
//!    storage failed with `Integrity` ("access-log head: MAC mismatch"), as if tampered.
//!    Fix (main, 8549bfb): `create_in` clears an interrupted create's leftovers (head and
//!    first entry only) and refuses a headless store with records or keys
//!    (`AlreadyExists`).

use medvault::storage::{FaultPlan, MemoryStorage};
use medvault::{AccessContext, Error, KeySource, Purpose, RecordKey, Vault, VaultOptions};
use serde_json::{Value, json};

const ROOT: [u8; 32] = [0x21; 32];

fn ctx() -> AccessContext {
    AccessContext::new("nurse", Purpose::Care)
}

fn open(mem: &MemoryStorage) -> medvault::Result<Vault> {
    Vault::open_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
}

#[test]
fn put_after_a_torn_erase_survives_reopen() {
    let mem = MemoryStorage::new();
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .expect("create");
    let a = RecordKey::new("alice", "Observation", "1");
    v.put(&ctx(), &a, &json!({"a": 1})).expect("put");
    // The erase batch is [delete record, delete subject entry, log entry, head]: tear it
    // after the first two.
    mem.set_faults(FaultPlan {
        fail_writes_after: Some(0),
        torn_ops: 2,
        ..FaultPlan::default()
    });
    let dpo = AccessContext::new("dpo", Purpose::PatientRequest);
    assert!(matches!(
        v.erase_subject(&dpo, "alice"),
        Err(Error::Storage(_))
    ));
    mem.set_faults(FaultPlan::default());
    let b = RecordKey::new("alice", "Observation", "2");
    v.put(&ctx(), &b, &json!({"b": 2}))
        .expect("acknowledged put");
    drop(v);
    let v = open(&mem).expect("reopen");
    let got: Value = v.get(&ctx(), &b).expect("the acknowledged put reads back");
    assert_eq!(got, json!({"b": 2}));
    v.verify(&ctx(), None).expect("log verifies");
}

#[test]
fn create_over_a_failed_create_succeeds() {
    let mem = MemoryStorage::new();
    mem.set_faults(FaultPlan {
        fail_header_writes: true,
        ..FaultPlan::default()
    });
    assert!(matches!(
        Vault::create_in(
            Box::new(mem.clone()),
            KeySource::raw(ROOT),
            VaultOptions::default()
        ),
        Err(Error::Storage(_))
    ));
    mem.set_faults(FaultPlan::default());
    assert!(matches!(open(&mem), Err(Error::NotFound)));
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .expect("a retried create clears the leftovers");
    v.verify(&ctx(), None).expect("a fresh log");
    drop(v);
    open(&mem).expect("the retried vault opens");
}
