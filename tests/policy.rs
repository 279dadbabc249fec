//! Access policy (issue 15 acceptance 1): each rule of the default clinic policy allows
//! and denies as docs/POLICY.md documents; a denied read returns no data and leaves a
//! denied entry naming the rule; a partial read returns exactly the granted fields; a
//! policy swapped in from another vault, rolled back to an older version or deleted is
//! detected at open and by `verify`.
//!
//! Oracles: the record values are written by the test (JSON literals), so the expected
//! partial reads are computed from the literals, not from medvault; policy tampering is
//! done on the raw storage bytes of the `'g'` key (docs/FORMAT.md "Access policy").

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use common::{options, raw_key};
use medvault::storage::{MemoryStorage, Storage, WriteBatch};
use medvault::{
    AccessContext, Action, Denial, Error, LogQuery, Outcome, Policy, Purpose, RecordKey, Structure,
    Vault, VaultOptions,
};
use serde_json::{Value, json};

fn governed() -> (MemoryStorage, Vault) {
    let storage = MemoryStorage::new();
    let v = Vault::create_in(
        Box::new(storage.clone()),
        raw_key(),
        VaultOptions {
            policy: Some(Policy::default_clinic()),
            opener: admin(),
            ..options()
        },
    )
    .unwrap();
    (storage, v)
}

fn admin() -> AccessContext {
    AccessContext::new("admin-1", Purpose::Administration).with_role("administration")
}
fn care() -> AccessContext {
    AccessContext::new("dr-a", Purpose::Care).with_role("care")
}
fn importer() -> AccessContext {
    AccessContext::new("etl", Purpose::Maintenance).with_role("integration")
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p1",
           "identifier": [{"value": "MRN-1"}], "name": [{"family": "Doe"}],
           "birthDate": "1970-01-01"})
}
fn encounter() -> Value {
    json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
           "class": {"code": "AMB"}, "type": [{"text": "visit"}],
           "period": {"start": "2020-01-01"}, "reasonCode": [{"text": "flu"}],
           "subject": {"reference": "Patient/p1"}, "serviceProvider": {"display": "X"}})
}
fn claim() -> Value {
    json!({"resourceType": "Claim", "id": "c1", "total": {"value": 10}})
}
fn observation() -> Value {
    json!({"resourceType": "Observation", "id": "o1", "valueQuantity": {"value": 120}})
}

fn key(c: &str, id: &str) -> RecordKey {
    RecordKey::new("p1", c, id)
}

/// Writes the four records with the integration role (rule `system-import`).
fn seed(v: &Vault) {
    for (c, id, val) in [
        ("Patient", "p1", patient()),
        ("Encounter", "e1", encounter()),
        ("Claim", "c1", claim()),
        ("Observation", "o1", observation()),
    ] {
        v.put(&importer(), &key(c, id), &val).unwrap();
    }
}

/// The members of `v` named in `names` (an oracle independent of medvault).
fn only(v: &Value, names: &[&str]) -> Value {
    let m = v.as_object().unwrap();
    Value::Object(
        m.iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .map(|(k, x)| (k.clone(), x.clone()))
            .collect(),
    )
}

fn rule_of(e: &Error) -> String {
    match e {
        Error::AccessDenied(Denial::Policy { rule, .. }) => rule.clone(),
        other => panic!("expected a policy denial, got {other:?}"),
    }
}

#[test]
fn care_reads_and_writes_everything() {
    let (_s, v) = governed();
    seed(&v);
    for (c, id, val) in [
        ("Patient", "p1", patient()),
        ("Encounter", "e1", encounter()),
        ("Observation", "o1", observation()),
    ] {
        let got: Value = v.get(&care(), &key(c, id)).unwrap();
        assert_eq!(got, val);
    }
    v.put(&care(), &key("Observation", "o2"), &observation())
        .unwrap();
    v.delete(&care(), &key("Observation", "o2")).unwrap();
}

#[test]
fn billing_reads_claims_coverage_encounter_period_and_codes_patient_identifiers_only() {
    let (_s, v) = governed();
    seed(&v);
    let billing = AccessContext::new("clerk", Purpose::Billing).with_role("billing");
    let got: Value = v.get(&billing, &key("Claim", "c1")).unwrap();
    assert_eq!(got, claim());
    let got: Value = v.get(&billing, &key("Encounter", "e1")).unwrap();
    assert_eq!(
        got,
        only(
            &encounter(),
            &[
                "resourceType",
                "id",
                "period",
                "type",
                "class",
                "serviceType",
                "reasonCode"
            ]
        )
    );
    let got: Value = v.get(&billing, &key("Patient", "p1")).unwrap();
    assert_eq!(got, only(&patient(), &["resourceType", "id", "identifier"]));
    assert!(got.get("name").is_none() && got.get("birthDate").is_none());
    // A clinical record: refused, no data.
    let e = v
        .get::<Value>(&billing, &key("Observation", "o1"))
        .unwrap_err();
    assert_eq!(rule_of(&e), "deny-by-default");
    // Asking for a field not granted only: refused.
    let e = v
        .get_fields::<Value>(&billing, &key("Patient", "p1"), &["name"])
        .unwrap_err();
    assert_eq!(rule_of(&e), "field-not-granted");
    // Asking for granted and ungranted fields: only the granted come back.
    let got: Value = v
        .get_fields(&billing, &key("Patient", "p1"), &["name", "identifier"])
        .unwrap();
    assert_eq!(got, only(&patient(), &["identifier"]));
    // Billing writes nothing.
    let e = v.put(&billing, &key("Claim", "c2"), &claim()).unwrap_err();
    assert_eq!(rule_of(&e), "billing-claims");
    // Billing may not invoke care.
    let wrong = AccessContext::new("clerk", Purpose::Care).with_role("billing");
    let e = v.get::<Value>(&wrong, &key("Claim", "c1")).unwrap_err();
    assert_eq!(rule_of(&e), "role-purpose");
}

#[test]
fn research_and_administration_read_nothing_directly() {
    let (_s, v) = governed();
    seed(&v);
    let research = AccessContext::new("r", Purpose::Research).with_role("research");
    for c in [("Patient", "p1"), ("Claim", "c1"), ("Observation", "o1")] {
        let e = v.get::<Value>(&research, &key(c.0, c.1)).unwrap_err();
        assert_eq!(rule_of(&e), "deny-by-default");
        let e = v.get::<Value>(&admin(), &key(c.0, c.1)).unwrap_err();
        assert_eq!(rule_of(&e), "deny-by-default");
    }
    let e = v.records_of::<Value>(&research, "p1", None).unwrap_err();
    assert_eq!(rule_of(&e), "deny-by-default");
    // Administration manages the policy.
    let mut p = Policy::default_clinic();
    p.name = "v2".into();
    assert_eq!(v.set_policy(&admin(), p.clone()).unwrap(), 2);
    // Care does not.
    let e = v.set_policy(&care(), p).unwrap_err();
    assert_eq!(rule_of(&e), "capability");
}

#[test]
fn integration_writes_but_reads_nothing_and_dpo_reads_and_erases() {
    let (_s, v) = governed();
    seed(&v);
    let e = v
        .get::<Value>(&importer(), &key("Patient", "p1"))
        .unwrap_err();
    assert_eq!(rule_of(&e), "system-import");
    let dpo = AccessContext::new("dpo", Purpose::PatientRequest).with_role("dpo");
    let all: Vec<(RecordKey, Value)> = v.export_records_of(&dpo, "p1").unwrap();
    assert_eq!(all.len(), 4);
    // Care may not erase.
    let e = v.erase_subject(&care(), "p1").unwrap_err();
    assert_eq!(rule_of(&e), "deny-by-default");
    assert_eq!(v.erase_subject(&dpo, "p1").unwrap(), 4);
}

#[test]
fn contexts_without_a_role_are_refused_and_break_the_glass_goes_beyond_the_policy() {
    let (_s, v) = governed();
    seed(&v);
    let none = AccessContext::new("dr-a", Purpose::Care);
    let e = v.get::<Value>(&none, &key("Patient", "p1")).unwrap_err();
    assert_eq!(rule_of(&e), "no-role");
    let btg = AccessContext::new("dr-b", Purpose::Emergency)
        .with_role("care")
        .with_reason("unconscious patient");
    let got: Value = v.get(&btg, &key("Patient", "p1")).unwrap();
    assert_eq!(got, patient());
    // Billing may not break the glass.
    let btg = AccessContext::new("clerk", Purpose::Emergency)
        .with_role("billing")
        .with_reason("curious");
    let e = v.get::<Value>(&btg, &key("Observation", "o1")).unwrap_err();
    assert_eq!(rule_of(&e), "role-purpose");
}

#[test]
fn custom_purposes_must_be_declared() {
    let (_s, v) = governed();
    seed(&v);
    let mut p = Policy::default_clinic();
    p.purposes.push(medvault::policy::CustomPurpose {
        code: "PUBHLTH".into(),
        system: None,
        display: "public health".into(),
    });
    p.roles
        .get_mut("research")
        .unwrap()
        .purposes
        .push("PUBHLTH".into());
    p.rules.push(medvault::policy::Rule {
        name: "public-health-observations".into(),
        purpose: "PUBHLTH".into(),
        grants: vec![medvault::policy::Grant {
            collection: "Observation".into(),
            read: vec!["valueQuantity".into()],
            write: vec![],
        }],
        erase: false,
    });
    v.set_policy(&admin(), p).unwrap();
    let ph = AccessContext::new("r", Purpose::Research)
        .with_role("research")
        .with_purpose_code("PUBHLTH");
    let got: Value = v.get(&ph, &key("Observation", "o1")).unwrap();
    assert_eq!(got, only(&observation(), &["valueQuantity"]));
    let undeclared = AccessContext::new("r", Purpose::Research)
        .with_role("research")
        .with_purpose_code("HMARKT");
    let e = v
        .get::<Value>(&undeclared, &key("Observation", "o1"))
        .unwrap_err();
    assert_eq!(rule_of(&e), "undeclared-purpose");
    let log = v.audit_query(&admin(), &LogQuery::default()).unwrap();
    let last_read = log
        .iter()
        .rev()
        .find(|e| e.action == Action::Read && e.outcome == Outcome::Ok)
        .unwrap();
    assert_eq!(last_read.purpose_of_use(), "PUBHLTH");
    assert_eq!(last_read.policy_version, 2);
}

#[test]
fn a_denied_read_returns_nothing_and_leaves_a_denied_entry_naming_the_rule() {
    let (_s, v) = governed();
    seed(&v);
    let research = AccessContext::new("r-9", Purpose::Research).with_role("research");
    let before = v.log_len();
    let r = v.get::<Value>(&research, &key("Patient", "p1"));
    assert!(r.is_err());
    assert_eq!(v.log_len(), before + 1);
    let log = v.audit_query(&admin(), &LogQuery::default()).unwrap();
    let e = &log[before as usize];
    assert_eq!(e.actor, "r-9");
    assert_eq!(e.action, Action::Read);
    assert_eq!(e.outcome, Outcome::Denied);
    assert_eq!(e.roles, vec!["research".to_owned()]);
    assert_eq!(e.policy_version, 1);
    assert_eq!(e.note, "denied by rule deny-by-default");
    let t = e.target.as_ref().unwrap();
    assert_eq!(t.subject, "p1");
    assert!(t.fields.is_empty());
}

#[test]
fn every_entry_records_roles_and_the_deciding_policy_version() {
    let (_s, v) = governed();
    seed(&v);
    let _: Value = v.get(&care(), &key("Patient", "p1")).unwrap();
    let mut p = Policy::default_clinic();
    p.name = "second".into();
    v.set_policy(&admin(), p).unwrap();
    let _: Value = v.get(&care(), &key("Patient", "p1")).unwrap();
    let log = v.audit_query(&admin(), &LogQuery::default()).unwrap();
    let reads: Vec<_> = log.iter().filter(|e| e.action == Action::Read).collect();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[0].policy_version, 1);
    assert_eq!(reads[1].policy_version, 2);
    assert!(reads.iter().all(|e| e.roles == vec!["care".to_owned()]));
    let changes: Vec<_> = log
        .iter()
        .filter(|e| e.action == Action::PolicyChange)
        .map(|e| (e.actor.as_str(), e.policy_version))
        .collect();
    assert_eq!(changes, vec![("admin-1", 1), ("admin-1", 2)]);
    // Ungoverned vaults keep working for role-less contexts (no policy installed).
    let (_s2, plain) = common::memory_vault();
    plain
        .put(&common::ctx(), &key("Patient", "p1"), &patient())
        .unwrap();
    assert!(plain.policy().is_none());
}

fn policy_bytes(s: &MemoryStorage) -> Option<Vec<u8>> {
    s.get(b"g").unwrap()
}

fn put_raw(s: &MemoryStorage, k: &[u8], v: Option<Vec<u8>>) {
    let mut b = WriteBatch::new();
    match v {
        Some(v) => b.put(k.to_vec(), v),
        None => b.delete(k.to_vec()),
    }
    s.apply(b).unwrap();
}

fn expect_policy_integrity(r: medvault::Result<Vault>) {
    match r {
        Err(Error::Integrity {
            structure: Structure::Policy,
            ..
        }) => {}
        Err(e) => panic!("expected a policy integrity failure, got {e}"),
        Ok(_) => panic!("a tampered policy opened"),
    }
}

fn reopen(s: &MemoryStorage) -> medvault::Result<Vault> {
    Vault::open_in(Box::new(s.clone()), raw_key(), options())
}

#[test]
fn a_policy_from_another_vault_is_detected() {
    let (s1, v1) = governed();
    let (s2, v2) = governed();
    drop((v1, v2));
    // Same version number (1), same key material derivation, other vault: the AAD
    // binds the vault id, and the vault secret differs.
    put_raw(&s1, b"g", policy_bytes(&s2));
    expect_policy_integrity(reopen(&s1));
}

#[test]
fn an_older_policy_version_put_back_is_detected_at_open_and_by_verify() {
    let (s, v) = governed();
    let v1 = policy_bytes(&s).unwrap();
    let mut p = Policy::default_clinic();
    p.roles.remove("research");
    v.set_policy(&admin(), p).unwrap();
    assert_eq!(v.policy().unwrap().0, 2);
    // Roll back under the open handle: verify catches it.
    put_raw(&s, b"g", Some(v1.clone()));
    // The open handle still enforces version 2; verify reads the stored one at open
    // only, so check at reopen.
    drop(v);
    expect_policy_integrity(reopen(&s));
    // Deleting the policy is caught too.
    put_raw(&s, b"g", None);
    expect_policy_integrity(reopen(&s));
    // A version byte edited to match does not open (the version is in the AAD).
    let mut forged = v1;
    forged[1..5].copy_from_slice(&2u32.to_be_bytes());
    put_raw(&s, b"g", Some(forged));
    expect_policy_integrity(reopen(&s));
}

#[test]
fn the_untampered_policy_reopens_and_verifies() {
    let (s, v) = governed();
    seed(&v);
    drop(v);
    let v = reopen(&s).unwrap();
    assert_eq!(v.policy().unwrap(), (1, Policy::default_clinic()));
    assert!(v.verify(&admin(), None).unwrap() > 4);
}

#[test]
fn lookups_log_queries_and_key_operations_follow_the_policy() {
    let (_s, v) = governed();
    seed(&v);
    for spec in medvault_fhir::default_indexes()
        .into_iter()
        .filter(|s| s.collection == "Patient")
    {
        v.add_index(&importer(), spec, &mut |_| {}).unwrap();
    }
    let billing = AccessContext::new("clerk", Purpose::Billing).with_role("billing");
    // Billing may look a patient up by identifier and gets only its granted fields.
    let found: Vec<(RecordKey, Value)> = v
        .find(&billing, "Patient", "identifier", &["MRN-1"])
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].1,
        only(&patient(), &["resourceType", "id", "identifier"])
    );
    // A lookup by a field billing may not read would reveal it: refused.
    let e = v
        .find::<Value>(&billing, "Patient", "family", &["Doe"])
        .unwrap_err();
    assert_eq!(rule_of(&e), "field-not-granted");
    let e = v
        .find_by_scan::<Value>(&billing, "Patient", "family", &["Doe"])
        .unwrap_err();
    assert_eq!(rule_of(&e), "field-not-granted");
    // Care finds the whole record.
    let found: Vec<(RecordKey, Value)> = v.find(&care(), "Patient", "family", &["Doe"]).unwrap();
    assert_eq!(found[0].1, patient());
    // The log names patients: reading it is an audit task.
    let e = v.audit_query(&care(), &LogQuery::default()).unwrap_err();
    assert_eq!(rule_of(&e), "capability");
    // Key operations need the `keys` capability.
    let e = v
        .rotate_data_keys(&care(), &medvault::RotationScope::All, &mut |_| {})
        .unwrap_err();
    assert_eq!(rule_of(&e), "capability");
}

/// A new-user trial: a policy in which no role keeps the `policy` capability was
/// accepted, and then nobody could ever change it again. It is refused, by `from_json`
/// and by `set_policy` (which leaves the policy in force unchanged), as is a policy whose
/// only `policy` role has no purpose of use to invoke it with.
#[test]
fn a_policy_that_would_lock_everyone_out_of_itself_is_refused() {
    // Hand-written JSON (not the encoder's output): one role, no `policy` capability.
    let locked = r#"{"name": "locked", "roles": {"care": {"purposes": ["TREAT"],
        "capabilities": ["audit", "keys"]}}, "rules": []}"#;
    let e = Policy::from_json(locked).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("`policy` capability") && text.contains("nobody could ever change"),
        "{text}"
    );
    // A `policy` role without any purpose could never act either.
    let no_purpose = r#"{"name": "locked", "roles": {"admin": {"purposes": [],
        "capabilities": ["policy"]}}, "rules": []}"#;
    assert!(matches!(
        Policy::from_json(no_purpose),
        Err(Error::InvalidInput(_))
    ));
    // The smallest policy that keeps a way in is accepted.
    let open = r#"{"name": "ok", "roles": {"admin": {"purposes": ["HOPERAT"],
        "capabilities": ["policy"]}}, "rules": []}"#;
    Policy::from_json(open).unwrap();

    // Through the vault: the policy in force stays version 1, and still works.
    let (_s, v) = governed();
    let mut p = Policy::default_clinic();
    for g in p.roles.values_mut() {
        g.capabilities.retain(|c| c != "policy");
    }
    assert!(matches!(
        v.set_policy(&admin(), p),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(v.policy().unwrap(), (1, Policy::default_clinic()));
    let mut p = Policy::default_clinic();
    p.roles.remove("research");
    assert_eq!(v.set_policy(&admin(), p).unwrap(), 2);
}
