//! The access policy on every public read and write path (issue 15, "A denial is an
//! `AccessDenied` error naming the rule, and a logged denied attempt; allowed partial
//! reads return only the permitted fields"): one test per path of the library (typed and
//! exact-JSON variants alike) and of the FHIR crate, which reach the records only through
//! them. Each proves a denial (the rule named, nothing returned or written, a `denied`
//! entry naming the rule) and, for reads, a permitted partial read returning only the
//! permitted fields.
//!
//! Oracles: the records are JSON literals written by this test; the fields billing may
//! see are written out here from docs/POLICY.md's table of the default clinic policy
//! (not computed by medvault's policy code), and the exact-JSON results are compared with
//! hand-written texts.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use common::{options, raw_key};
use medvault::json::JsonText;
use medvault::storage::MemoryStorage;
use medvault::{
    AccessContext, Action, Denial, Error, LogQuery, Outcome, Policy, Purpose, RecordKey, Vault,
    VaultOptions,
};
use serde_json::{Value, json};

const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","identifier":[{"value":"MRN-1"}],"name":[{"family":"Doe"}],"birthDate":"1970-01-01"}"#;
/// What billing may read of it (docs/POLICY.md: Patient `resourceType`, `id`,
/// `identifier`), in stored order.
const PATIENT_BILLING: &str =
    r#"{"resourceType":"Patient","id":"p1","identifier":[{"value":"MRN-1"}]}"#;
const ENCOUNTER: &str = r#"{"resourceType":"Encounter","id":"e1","status":"finished","period":{"start":"2020-01-01"},"serviceProvider":{"display":"X"}}"#;
/// Billing: Encounter `resourceType`, `id`, `period` (and codes, absent here).
const ENCOUNTER_BILLING: &str =
    r#"{"resourceType":"Encounter","id":"e1","period":{"start":"2020-01-01"}}"#;
const CLAIM: &str = r#"{"resourceType":"Claim","id":"c1","total":{"value":10.50}}"#;
const OBSERVATION: &str =
    r#"{"resourceType":"Observation","id":"o1","valueQuantity":{"value":120}}"#;

fn admin() -> AccessContext {
    AccessContext::new("admin-1", Purpose::Administration).with_role("administration")
}
fn care() -> AccessContext {
    AccessContext::new("dr-a", Purpose::Care).with_role("care")
}
fn billing() -> AccessContext {
    AccessContext::new("clerk-b", Purpose::Billing).with_role("billing")
}
fn research() -> AccessContext {
    AccessContext::new("r-9", Purpose::Research).with_role("research")
}
fn importer() -> AccessContext {
    AccessContext::new("etl", Purpose::Maintenance).with_role("integration")
}

fn key(c: &str, id: &str) -> RecordKey {
    RecordKey::new("p1", c, id)
}

fn text(s: &str) -> JsonText {
    JsonText::parse(s).unwrap()
}

/// A vault under the default clinic policy holding the four records of patient p1, with
/// Patient's default indexes (identifier, family, ...).
fn governed() -> Vault {
    governed_in(MemoryStorage::new())
}

/// [`governed`] in `storage` (a clone shares its bytes, for raw looks).
fn governed_in(storage: MemoryStorage) -> Vault {
    let v = Vault::create_in(
        Box::new(storage),
        raw_key(),
        VaultOptions {
            policy: Some(Policy::default_clinic()),
            opener: admin(),
            ..options()
        },
    )
    .unwrap();
    for (c, id, t) in [
        ("Patient", "p1", PATIENT),
        ("Encounter", "e1", ENCOUNTER),
        ("Claim", "c1", CLAIM),
        ("Observation", "o1", OBSERVATION),
    ] {
        v.put_json(&importer(), &key(c, id), &text(t)).unwrap();
    }
    for spec in medvault_fhir::default_indexes()
        .into_iter()
        .filter(|s| s.collection == "Patient")
    {
        v.add_index(&importer(), spec, &mut |_| {}).unwrap();
    }
    v
}

/// `r` is a policy denial naming `rule`, and the newest log entry is the denied attempt:
/// `actor`'s `action`, outcome `denied`, its note naming the rule, no field named.
fn assert_denied<T: std::fmt::Debug>(
    v: &Vault,
    r: medvault::Result<T>,
    actor: &str,
    action: Action,
    rule: &str,
) {
    match r {
        Err(Error::AccessDenied(Denial::Policy { rule: got, version })) => {
            assert_eq!(got, rule);
            assert_eq!(version, 1);
        }
        other => panic!("expected a denial by rule {rule}, got {other:?}"),
    }
    let n = v.log_len();
    let log = v.audit_query(&admin(), &LogQuery::default()).unwrap();
    let e = &log[n as usize - 1];
    assert_eq!(e.actor, actor);
    assert_eq!(e.action, action);
    assert_eq!(e.outcome, Outcome::Denied);
    assert_eq!(e.note, format!("denied by rule {rule}"));
    assert!(e.target.as_ref().is_none_or(|t| t.fields.is_empty()));
}

/// The `read` entries logged since `from` name exactly `fields` (sorted) per record.
fn logged_read_fields(v: &Vault, from: u64) -> Vec<Vec<String>> {
    let log = v.audit_query(&admin(), &LogQuery::default()).unwrap();
    log[from as usize..]
        .iter()
        .filter(|e| e.action == Action::Read && e.outcome == Outcome::Ok)
        .map(|e| {
            let mut f = e.target.as_ref().unwrap().fields.clone();
            f.sort();
            f
        })
        .collect()
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

fn value(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

// ----- single-record reads -----------------------------------------------------------

#[test]
fn get_denies_and_narrows() {
    let v = governed();
    // No rule of HPAYMT covers Observation.
    let r = v.get::<Value>(&billing(), &key("Observation", "o1"));
    assert_denied(&v, r, "clerk-b", Action::Read, "deny-by-default");
    // A record that does not exist is refused the same way (no existence oracle).
    let r = v.get::<Value>(&billing(), &key("Observation", "nope"));
    assert_denied(&v, r, "clerk-b", Action::Read, "deny-by-default");
    let from = v.log_len();
    let got: Value = v.get(&billing(), &key("Patient", "p1")).unwrap();
    assert_eq!(got, value(PATIENT_BILLING));
    assert_eq!(
        logged_read_fields(&v, from),
        vec![sorted(&["resourceType", "id", "identifier"])]
    );
}

#[test]
fn get_json_denies_and_narrows() {
    let v = governed();
    let r = v.get_json(&research(), &key("Patient", "p1"));
    assert_denied(&v, r, "r-9", Action::Read, "deny-by-default");
    let got = v.get_json(&billing(), &key("Patient", "p1")).unwrap();
    assert_eq!(got.as_str(), PATIENT_BILLING);
    let got = v.get_json(&billing(), &key("Encounter", "e1")).unwrap();
    assert_eq!(got.as_str(), ENCOUNTER_BILLING);
    // Claim is granted whole: the number token comes back as written.
    let got = v.get_json(&billing(), &key("Claim", "c1")).unwrap();
    assert_eq!(got.as_str(), CLAIM);
}

#[test]
fn get_fields_denies_and_narrows() {
    let v = governed();
    let r = v.get_fields::<Value>(&billing(), &key("Patient", "p1"), &["name", "birthDate"]);
    assert_denied(&v, r, "clerk-b", Action::Read, "field-not-granted");
    let r = v.get_fields::<Value>(&billing(), &key("Observation", "o1"), &["id"]);
    assert_denied(&v, r, "clerk-b", Action::Read, "deny-by-default");
    let got: Value = v
        .get_fields(&billing(), &key("Patient", "p1"), &["name", "identifier"])
        .unwrap();
    assert_eq!(got, json!({"identifier": [{"value": "MRN-1"}]}));
}

#[test]
fn get_fields_json_denies_and_narrows() {
    let v = governed();
    let r = v.get_fields_json(&billing(), &key("Patient", "p1"), &["birthDate"]);
    assert_denied(&v, r, "clerk-b", Action::Read, "field-not-granted");
    let from = v.log_len();
    let got = v
        .get_fields_json(
            &billing(),
            &key("Encounter", "e1"),
            &["status", "period", "id"],
        )
        .unwrap();
    assert_eq!(
        got.as_str(),
        r#"{"id":"e1","period":{"start":"2020-01-01"}}"#
    );
    assert_eq!(
        logged_read_fields(&v, from),
        vec![sorted(&["id", "period"])]
    );
}

// ----- whole-subject reads -----------------------------------------------------------

/// Billing's view of p1's records: Patient and Encounter narrowed, Claim whole,
/// Observation left out.
fn billing_view() -> Vec<(String, Value)> {
    let mut v = vec![
        ("Claim".to_owned(), value(CLAIM)),
        ("Encounter".to_owned(), value(ENCOUNTER_BILLING)),
        ("Patient".to_owned(), value(PATIENT_BILLING)),
    ];
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn by_collection<T>(rs: Vec<(RecordKey, T)>, f: impl Fn(T) -> Value) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = rs.into_iter().map(|(k, t)| (k.collection, f(t))).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn records_of_denies_and_narrows() {
    let v = governed();
    let r = v.records_of::<Value>(&research(), "p1", None);
    assert_denied(&v, r, "r-9", Action::Read, "deny-by-default");
    let r = v.records_of::<Value>(&billing(), "p1", Some("Observation"));
    assert_denied(&v, r, "clerk-b", Action::Read, "deny-by-default");
    let got = v.records_of::<Value>(&billing(), "p1", None).unwrap();
    assert_eq!(by_collection(got, |x| x), billing_view());
    let got = v
        .records_of::<Value>(&billing(), "p1", Some("Patient"))
        .unwrap();
    assert_eq!(
        by_collection(got, |x| x),
        vec![("Patient".to_owned(), value(PATIENT_BILLING))]
    );
}

#[test]
fn records_of_json_denies_and_narrows() {
    let v = governed();
    let r = v.records_of_json(&research(), "p1", Some("Patient"));
    assert_denied(&v, r, "r-9", Action::Read, "deny-by-default");
    let got = v.records_of_json(&billing(), "p1", None).unwrap();
    let texts: Vec<&str> = {
        let mut t: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        t.sort();
        t
    };
    let mut want = vec![CLAIM, ENCOUNTER_BILLING, PATIENT_BILLING];
    want.sort();
    assert_eq!(texts, want);
}

#[test]
fn export_records_of_denies_and_narrows() {
    let v = governed();
    let r = v.export_records_of::<Value>(&research(), "p1");
    assert_denied(&v, r, "r-9", Action::Export, "deny-by-default");
    let got = v.export_records_of::<Value>(&billing(), "p1").unwrap();
    assert_eq!(by_collection(got, |x| x), billing_view());
}

#[test]
fn export_records_of_json_denies_and_narrows() {
    let v = governed();
    let r = v.export_records_of_json(&research(), "p1");
    assert_denied(&v, r, "r-9", Action::Export, "deny-by-default");
    let got = v.export_records_of_json(&billing(), "p1").unwrap();
    assert_eq!(by_collection(got, |t| value(t.as_str())), billing_view());
}

#[test]
fn subjects_denies_a_purpose_that_reads_nothing() {
    let v = governed();
    let r = v.subjects(&research());
    assert_denied(&v, r, "r-9", Action::Search, "deny-by-default");
    assert_eq!(v.subjects(&billing()).unwrap(), vec!["p1".to_owned()]);
    // Administration reads no clinical field, but holds `keys` (per-subject rotation).
    assert_eq!(v.subjects(&admin()).unwrap(), vec!["p1".to_owned()]);
}

// ----- lookups -----------------------------------------------------------------------

#[test]
fn find_denies_and_narrows() {
    let v = governed();
    let r = v.find::<Value>(&billing(), "Patient", "family", &["Doe"]);
    assert_denied(&v, r, "clerk-b", Action::Search, "field-not-granted");
    let r = v.find::<Value>(&research(), "Patient", "identifier", &["MRN-1"]);
    assert_denied(&v, r, "r-9", Action::Search, "deny-by-default");
    let got: Vec<(RecordKey, Value)> = v
        .find(&billing(), "Patient", "identifier", &["MRN-1"])
        .unwrap();
    assert_eq!(
        by_collection(got, |x| x),
        vec![("Patient".to_owned(), value(PATIENT_BILLING))]
    );
}

#[test]
fn find_json_denies_and_narrows() {
    let v = governed();
    let r = v.find_json(&billing(), "Patient", "family", &["Doe"]);
    assert_denied(&v, r, "clerk-b", Action::Search, "field-not-granted");
    let from = v.log_len();
    let got = v
        .find_json(&billing(), "Patient", "identifier", &["MRN-1"])
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.as_str(), PATIENT_BILLING);
    assert_eq!(
        logged_read_fields(&v, from),
        vec![sorted(&["resourceType", "id", "identifier"])]
    );
}

#[test]
fn find_by_scan_denies_and_narrows() {
    let v = governed();
    let r = v.find_by_scan::<Value>(&billing(), "Patient", "family", &["Doe"]);
    assert_denied(&v, r, "clerk-b", Action::Search, "field-not-granted");
    let got: Vec<(RecordKey, Value)> = v
        .find_by_scan(&billing(), "Patient", "identifier", &["MRN-1"])
        .unwrap();
    assert_eq!(
        by_collection(got, |x| x),
        vec![("Patient".to_owned(), value(PATIENT_BILLING))]
    );
}

#[test]
fn find_by_scan_json_denies_and_narrows() {
    let v = governed();
    let r = v.find_by_scan_json(&research(), "Patient", "identifier", &["MRN-1"]);
    assert_denied(&v, r, "r-9", Action::Search, "deny-by-default");
    let got = v
        .find_by_scan_json(&billing(), "Patient", "identifier", &["MRN-1"])
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.as_str(), PATIENT_BILLING);
}

// ----- writes ------------------------------------------------------------------------

/// Care (rule `care-all`) still reads `k` as `expected` (nothing was written).
fn unchanged(v: &Vault, k: &RecordKey, expected: Option<&str>) {
    match (v.get_json(&care(), k), expected) {
        (Ok(t), Some(e)) => assert_eq!(t.as_str(), e),
        (Err(Error::NotFound), None) => {}
        (other, e) => panic!("expected {e:?}, got {other:?}"),
    }
}

#[test]
fn put_denies() {
    let v = governed();
    // HPAYMT's rule covers Patient but grants no write.
    let r = v.put(&billing(), &key("Patient", "p1"), &json!({"id": "p1"}));
    assert_denied(&v, r, "clerk-b", Action::Write, "billing-claims");
    unchanged(&v, &key("Patient", "p1"), Some(PATIENT));
    let r = v.put(&research(), &key("Patient", "p2"), &json!({"id": "p2"}));
    assert_denied(&v, r, "r-9", Action::Write, "deny-by-default");
    unchanged(&v, &key("Patient", "p2"), None);
}

#[test]
fn put_json_denies() {
    let v = governed();
    let r = v.put_json(&billing(), &key("Claim", "c1"), &text(r#"{"total":0}"#));
    assert_denied(&v, r, "clerk-b", Action::Write, "billing-claims");
    unchanged(&v, &key("Claim", "c1"), Some(CLAIM));
}

#[test]
fn put_many_denies_the_whole_batch() {
    let v = governed();
    let (a, b) = (key("Observation", "o2"), key("Claim", "c1"));
    let (va, vb) = (json!({"id": "o2"}), json!({"id": "c1"}));
    // A write-only role for another purpose: a custom policy is not needed, dpo's
    // PATRQT reads but writes nothing.
    let dpo = AccessContext::new("dpo-1", Purpose::PatientRequest).with_role("dpo");
    let r = v.put_many(&dpo, [(&a, &va), (&b, &vb)], Action::Write);
    assert_denied(&v, r, "dpo-1", Action::Write, "patient-request");
    unchanged(&v, &a, None);
    unchanged(&v, &b, Some(CLAIM));
}

#[test]
fn put_many_json_denies_the_whole_batch() {
    let v = governed();
    let (a, b) = (key("Observation", "o2"), key("Observation", "o1"));
    let (ta, tb) = (text(r#"{"id":"o2"}"#), text(r#"{"id":"o1"}"#));
    let r = v.put_many_json(&billing(), [(&a, &ta), (&b, &tb)], Action::Import);
    assert_denied(&v, r, "clerk-b", Action::Import, "deny-by-default");
    unchanged(&v, &a, None);
    unchanged(&v, &b, Some(OBSERVATION));
}

#[test]
fn delete_denies() {
    let v = governed();
    let r = v.delete(&billing(), &key("Claim", "c1"));
    assert_denied(&v, r, "clerk-b", Action::Delete, "billing-claims");
    unchanged(&v, &key("Claim", "c1"), Some(CLAIM));
    // The integration role writes every field, and deleting needs `*`: allowed.
    v.delete(&importer(), &key("Claim", "c1")).unwrap();
    unchanged(&v, &key("Claim", "c1"), None);
}

#[test]
fn erase_subject_denies() {
    let v = governed();
    // care-all grants everything but erasure.
    let r = v.erase_subject(&care(), "p1");
    assert_denied(&v, r, "dr-a", Action::Erase, "deny-by-default");
    unchanged(&v, &key("Patient", "p1"), Some(PATIENT));
}

// ----- the FHIR crate ----------------------------------------------------------------

#[test]
fn fhir_import_is_denied_through_the_policy() {
    let v = governed();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Observation.ndjson"),
        format!(
            "{}\n",
            r#"{"resourceType":"Observation","id":"o9","subject":{"reference":"Patient/p1"}}"#
        ),
    )
    .unwrap();
    let src = medvault_fhir::ImportSource::new(&[dir.path().to_path_buf()]).unwrap();
    let r = medvault_fhir::import(&v, &billing(), src, Default::default(), &mut |_| {});
    match r {
        Err(medvault_fhir::ImportError::Vault { error, .. }) => assert_denied(
            &v,
            Err::<(), _>(error),
            "clerk-b",
            Action::Import,
            "deny-by-default",
        ),
        other => panic!("expected the vault's denial, got {other:?}"),
    }
    unchanged(&v, &key("Observation", "o9"), None);
}

#[test]
fn fhir_export_is_denied_and_narrowed_through_the_policy() {
    let v = governed();
    let mut out = Vec::new();
    let r =
        medvault_fhir::export_ndjson(&v, &research(), &["p1".to_owned()], &mut out, &mut |_| {});
    match r {
        Err(medvault_fhir::ExportError::Vault(e)) => assert_denied(
            &v,
            Err::<(), _>(e),
            "r-9",
            Action::Export,
            "deny-by-default",
        ),
        other => panic!("expected the vault's denial, got {other:?}"),
    }
    assert!(out.is_empty());
    medvault_fhir::export_ndjson(&v, &billing(), &["p1".to_owned()], &mut out, &mut |_| {})
        .unwrap();
    let mut lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
    lines.sort();
    let mut want = vec![CLAIM, ENCOUNTER_BILLING, PATIENT_BILLING];
    want.sort();
    assert_eq!(lines, want);
}

/// A write-only role (the importer) may not read, yet a re-import counts what the vault
/// holds unchanged: the vault compares inside the write, nothing is read first. The
/// oracle is the raw record bytes in storage (identical before and after: no new
/// ciphertext) and the log (no denied look, no write entry, one `unchanged=1` note).
#[test]
fn a_write_only_role_reimports_without_comparing() {
    use medvault::danger::RawAccess;
    let storage = MemoryStorage::new();
    let v = governed_in(storage.clone());
    let records = || -> Vec<(Vec<u8>, Vec<u8>)> {
        storage
            .dump()
            .into_iter()
            .filter(|(k, _)| k.first() == Some(&b'r'))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let obs = r#"{"resourceType":"Observation","id":"o9","subject":{"reference":"Patient/p1"}}"#;
    let write = |line: &str| {
        std::fs::write(dir.path().join("Observation.ndjson"), format!("{line}\n")).unwrap();
    };
    let import = |who: &AccessContext| {
        let src = medvault_fhir::ImportSource::new(&[dir.path().to_path_buf()]).unwrap();
        medvault_fhir::import(&v, who, src, Default::default(), &mut |_| {}).unwrap()
    };
    write(obs);
    let r = import(&importer());
    assert_eq!((r.records, r.replaced, r.unchanged), (1, 0, 0));
    let before = records();
    assert_eq!(before.len(), 5, "four records of p1 and o9");
    let from = v.log_len() as usize;
    for round in 0..2 {
        let r = import(&importer());
        assert!(r.compared, "round {round}");
        assert_eq!(
            (r.records, r.replaced, r.unchanged),
            (0, 0, 1),
            "round {round}"
        );
    }
    assert_eq!(records(), before, "nothing rewritten");
    let log = v.audit_query(&admin(), &LogQuery::default()).unwrap();
    let etl: Vec<_> = log[from..].iter().filter(|e| e.actor == "etl").collect();
    assert_eq!(etl.len(), 2, "{etl:?}");
    for e in etl {
        assert_eq!(e.action, Action::Import);
        assert_eq!(e.outcome, Outcome::Ok);
        assert_eq!(e.note, "unchanged=1");
        assert!(e.subject_pseudonym.is_none());
    }
    // A role that may read counts the same; changed text is replaced, new ciphertext.
    let r = import(&care());
    assert_eq!((r.records, r.replaced, r.unchanged), (0, 0, 1));
    assert_eq!(records(), before);
    write(&obs.replace("o9\"", "o9\",\"status\":\"final\""));
    let r = import(&importer());
    assert_eq!((r.records, r.replaced, r.unchanged), (0, 1, 0));
    let after = records();
    assert_eq!(after.len(), 5);
    let differ = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 1, "only o9 rewritten");
}

/// `put_many_json_outcomes` against raw storage: an unchanged record keeps its bytes; a
/// key given twice in one batch is compared with its earlier item (stored X, batch [A, X]
/// leaves X, both written); a new key is created.
#[test]
fn write_outcomes_follow_the_stored_bytes() {
    use medvault::WriteOutcome::{Created, Replaced, Unchanged};
    use medvault::danger::RawAccess;
    let storage = MemoryStorage::new();
    let v = governed_in(storage.clone());
    let records = || -> Vec<(Vec<u8>, Vec<u8>)> {
        storage
            .dump()
            .into_iter()
            .filter(|(k, _)| k.first() == Some(&b'r'))
            .collect()
    };
    let before = records();
    let (p, o) = (key("Patient", "p1"), key("Observation", "o1"));
    let (pt, ot) = (text(PATIENT), text(OBSERVATION));
    let r = v
        .put_many_json_outcomes(&importer(), [(&p, &pt), (&o, &ot)], Action::Import)
        .unwrap();
    assert_eq!(r, [Unchanged, Unchanged]);
    assert_eq!(records(), before);
    let other = text(&PATIENT.replacen('{', r#"{"active":true,"#, 1));
    let r = v
        .put_many_json_outcomes(&importer(), [(&p, &other), (&p, &pt)], Action::Import)
        .unwrap();
    assert_eq!(r, [Replaced, Replaced]);
    unchanged(&v, &p, Some(PATIENT));
    let n = key("Observation", "o-new");
    let r = v
        .put_many_json_outcomes(&importer(), [(&n, &ot), (&o, &ot)], Action::Import)
        .unwrap();
    assert_eq!(r, [Created, Unchanged]);
    assert_eq!(records().len(), before.len() + 1);
}
