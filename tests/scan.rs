//! Batched subject scans (`Vault::records_of_subjects_json`, issue 14): the records of
//! many subjects under one access-log commit, still one entry per subject.
//!
//! Oracles: the records are JSON literals written by the test, so what each subject
//! must return is known without medvault; the log is read back through `audit_query`
//! and compared with the subjects and counts the test wrote.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ctx, memory_vault, options, raw_key};
use medvault::storage::MemoryStorage;
use medvault::{
    AccessContext, Action, Error, InputKind, LogQuery, Outcome, Policy, Purpose, RecordKey, Vault,
    VaultOptions,
};
use serde_json::{Value, json};

fn rec(subject: &str, i: usize) -> Value {
    json!({"resourceType": "Observation", "id": format!("o{i}"), "subject": subject,
           "valueQuantity": {"value": i, "unit": "mmHg"}})
}

/// Writes `n` records for each of the subjects; returns what each subject holds, by
/// record id order.
fn seed(v: &Vault, subjects: &[(&str, usize)]) {
    for (s, n) in subjects {
        for i in 0..*n {
            v.put(
                &ctx(),
                &RecordKey::new(*s, "Observation", format!("o{i}")),
                &rec(s, i),
            )
            .unwrap();
        }
    }
}

fn auditor() -> AccessContext {
    AccessContext::new("auditor", Purpose::Administration)
}

#[test]
fn a_batch_returns_each_subjects_records_and_logs_one_entry_per_subject() {
    let (_s, v) = memory_vault();
    seed(&v, &[("p1", 3), ("p2", 0), ("p3", 2)]);
    let before = v.log_len();
    let scanner = AccessContext::new("scanner-1", Purpose::Care);
    let got = v
        .records_of_subjects_json(&scanner, &["p3", "p1", "p2", "nobody"], None, Action::Read)
        .unwrap();
    let subjects: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, ["p3", "p1", "p2", "nobody"], "in the order given");
    for (s, records) in &got {
        let n = match s.as_str() {
            "p1" => 3,
            "p3" => 2,
            _ => 0,
        };
        assert_eq!(records.len(), n, "{s}");
        let mut by_id: Vec<(String, Value)> = records
            .iter()
            .map(|(k, t)| {
                assert_eq!(
                    (k.subject.as_str(), k.collection.as_str()),
                    (s.as_str(), "Observation")
                );
                (
                    k.record_id.clone(),
                    serde_json::from_str(t.as_str()).unwrap(),
                )
            })
            .collect();
        by_id.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (id, value)) in by_id.iter().enumerate() {
            assert_eq!(id, &format!("o{i}"));
            assert_eq!(value, &rec(s, i));
        }
    }
    // One entry per subject (the unknown ones included, as records_of logs them: by
    // pseudonym only, no target), each naming its subject and count, all before the
    // call returned.
    assert_eq!(v.log_len(), before + 4);
    let log = v.audit_query(&auditor(), &LogQuery::default()).unwrap();
    let entries: Vec<_> = log
        .iter()
        .filter(|e| e.actor == "scanner-1")
        .map(|e| {
            assert_eq!((e.action, &e.outcome), (Action::Read, &Outcome::Ok));
            (e.target.as_ref().map(|t| t.subject.clone()), e.note.clone())
        })
        .collect();
    assert_eq!(
        entries,
        [
            (Some("p3".to_owned()), "records=2".to_owned()),
            (Some("p1".to_owned()), "records=3".to_owned()),
            // p2 was never written (no records seeded): no keys, like an unknown id.
            (None, "records=0".to_owned()),
            (None, "records=0".to_owned()),
        ]
    );
    // Each subject's own trail shows its read.
    let p1 = v
        .audit_query(
            &auditor(),
            &LogQuery {
                subject: Some("p1".into()),
                actor: Some("scanner-1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(p1.len(), 1);
}

#[test]
fn an_export_batch_is_logged_as_export_and_other_actions_are_refused() {
    let (_s, v) = memory_vault();
    seed(&v, &[("p1", 1)]);
    let got = v
        .records_of_subjects_json(&ctx(), &["p1"], None, Action::Export)
        .unwrap();
    assert_eq!(got[0].1.len(), 1);
    let log = v.audit_query(&auditor(), &LogQuery::default()).unwrap();
    let last = log
        .iter()
        .rev()
        .find(|e| e.actor == "test-clinician")
        .unwrap();
    assert_eq!(last.action, Action::Export);
    for action in [Action::Write, Action::Delete, Action::Search] {
        let before = v.log_len();
        match v.records_of_subjects_json(&ctx(), &["p1"], None, action) {
            Err(Error::InvalidInput(i)) => assert_eq!(i.kind, InputKind::Action),
            other => panic!("{action:?}: {other:?}"),
        }
        assert_eq!(v.log_len(), before, "a refused call reads nothing");
    }
    // An invalid id refuses the whole batch, logged as failed.
    let long = "x".repeat(257);
    let before = v.log_len();
    match v.records_of_subjects_json(&ctx(), &["p1", &long], None, Action::Read) {
        Err(Error::InvalidInput(i)) => assert_eq!(i.kind, InputKind::Id),
        other => panic!("{other:?}"),
    }
    assert!(v.log_len() > before, "the failure is logged");
}

#[test]
fn an_erased_subject_reads_empty_among_others() {
    let (_s, v) = memory_vault();
    seed(&v, &[("p1", 2), ("p2", 2)]);
    v.erase_subject(&ctx(), "p1").unwrap();
    let got = v
        .records_of_subjects_json(&ctx(), &["p1", "p2"], None, Action::Read)
        .unwrap();
    assert!(got[0].1.is_empty(), "erased subject returned records");
    assert_eq!(got[1].1.len(), 2);
}

#[test]
fn a_denied_batch_returns_nothing_and_logs_a_denied_entry_per_subject() {
    let storage = MemoryStorage::new();
    let admin = AccessContext::new("admin-1", Purpose::Administration).with_role("administration");
    let v = Vault::create_in(
        Box::new(storage),
        raw_key(),
        VaultOptions {
            policy: Some(Policy::default_clinic()),
            opener: admin.clone(),
            ..options()
        },
    )
    .unwrap();
    let writer = AccessContext::new("dr-a", Purpose::Care).with_role("care");
    for s in ["p1", "p2"] {
        v.put(
            &writer,
            &RecordKey::new(s, "Patient", s),
            &json!({"resourceType": "Patient", "id": s, "birthDate": "1970-01-01"}),
        )
        .unwrap();
    }
    let research = AccessContext::new("r-9", Purpose::Research).with_role("research");
    let before = v.log_len();
    let r = v.records_of_subjects_json(&research, &["p1", "p2"], Some("Patient"), Action::Read);
    assert!(matches!(r, Err(Error::AccessDenied(_))), "{r:?}");
    assert_eq!(v.log_len(), before + 2, "one denied entry per subject");
    let log = v.audit_query(&admin, &LogQuery::default()).unwrap();
    for (e, s) in log[before as usize..].iter().zip(["p1", "p2"]) {
        assert_eq!((e.actor.as_str(), e.action), ("r-9", Action::Read));
        assert_eq!(e.outcome, Outcome::Denied);
        let by_subject = v
            .audit_query(
                &admin,
                &LogQuery {
                    subject: Some(s.into()),
                    actor: Some("r-9".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(by_subject.len(), 1, "{s}'s trail shows the denied read");
        assert_eq!(by_subject[0].seq, e.seq);
    }
}
