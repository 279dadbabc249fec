//! Regression: after a subject is erased and a subject with the same id is written
//! again, `audit_query` failed with "access-log target: authentication failed" on the
//! erased incarnation's entries (sealed under its destroyed audit key) instead of
//! showing them by pseudonym only. (Since the vault remembers erasures, the second
//! incarnation needs an explicit re-admission first.)
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use medvault::storage::MemoryStorage;
use medvault::{
    AccessContext, Action, KeySource, LogQuery, Purpose, RecordKey, Vault, VaultOptions,
};
use serde_json::json;

#[test]
fn audit_query_survives_a_subject_erased_then_recreated() {
    let v = Vault::create_in(
        Box::new(MemoryStorage::new()),
        KeySource::raw([5; 32]),
        VaultOptions::default(),
    )
    .unwrap();
    let ctx = AccessContext::new("clerk", Purpose::Care);
    let k = RecordKey::new("p1", "Patient", "p1");
    v.put(&ctx, &k, &json!({"name": "first life"})).unwrap();
    v.erase_subject(&ctx, "p1").unwrap();
    v.readmit_subject(&ctx, "p1", "the patient came back")
        .unwrap();
    v.put(&ctx, &k, &json!({"name": "second life"})).unwrap();
    let writes = v
        .audit_query(
            &ctx,
            &LogQuery {
                action: Some(Action::Write),
                ..LogQuery::default()
            },
        )
        .unwrap();
    assert_eq!(writes.len(), 2);
    // The first write belongs to the erased incarnation: pseudonym only.
    assert!(writes[0].target.is_none());
    assert!(writes[0].subject_pseudonym.is_some());
    assert_eq!(writes[1].target.as_ref().unwrap().subject, "p1");
    assert_eq!(writes[0].subject_pseudonym, writes[1].subject_pseudonym);
}
