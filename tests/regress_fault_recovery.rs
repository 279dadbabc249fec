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
//!    (`AlreadyExists`). Guarded by `tests/faults.rs`,
//!    `failed_create_leaves_no_vault_and_can_be_retried` (the same failed header write,
//!    `NotFound`, then a create, a put and a reopen), so it has no second copy here.

use medvault::danger::{FaultPlan, FaultyStorage};
use medvault::storage::MemoryStorage;
use medvault::{AccessContext, Error, KeySource, Purpose, RecordKey, Vault, VaultOptions};
use serde_json::{Value, json};

const ROOT: [u8; 32] = [0x21; 32];

fn ctx() -> AccessContext {
    AccessContext::new("nurse", Purpose::Care)
}

fn open(mem: &FaultyStorage<MemoryStorage>) -> medvault::Result<Vault> {
    Vault::open_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
}

#[test]
fn put_after_a_torn_erase_survives_reopen() {
    let mem = FaultyStorage::memory();
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
    // The torn erase deleted the record outside any applied commit (its entry is
    // followed by "not applied"): since storage v2, verify checks the record store
    // against the log's state digest and names that damage instead of passing.
    match v.verify(&ctx(), None) {
        Err(
            e @ Error::Integrity {
                structure: medvault::Structure::RecordStore,
                ..
            },
        ) => assert!(e.to_string().contains("missing"), "{e}"),
        other => panic!("verify should name the torn erase's damage: {other:?}"),
    }
}
