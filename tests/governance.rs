//! Access governance beyond the policy decision (issue 15 acceptance 2 and 3):
//! break-the-glass review queue, the patient's access report on real FHIR data, and the
//! FHIR AuditEvent (IHE BALP) export. The export written here is what
//! tools/validate_audit_events.py validates in CI with the independent `fhir.resources`
//! models.
//!
//! Oracles: the test knows which accesses it made (actor, role, purpose, record); the
//! patient's id is read from the NDJSON file with serde_json, not through medvault.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::{fhir_data_dir, options, raw_key, workspace_root};
use medvault::audit::report::Verdict;
use medvault::storage::MemoryStorage;
use medvault::{
    AccessContext, Action, Error, LogQuery, Outcome, Policy, Purpose, RecordKey, Vault,
    VaultOptions,
};
use serde_json::{Value, json};

fn admin() -> AccessContext {
    AccessContext::new("admin-1", Purpose::Administration).with_role("administration")
}
fn dpo() -> AccessContext {
    AccessContext::new("dpo-1", Purpose::PatientRequest).with_role("dpo")
}
fn etl() -> AccessContext {
    AccessContext::new("etl", Purpose::Maintenance).with_role("integration")
}

fn governed() -> Vault {
    Vault::create_in(
        Box::new(MemoryStorage::new()),
        raw_key(),
        VaultOptions {
            policy: Some(Policy::default_clinic()),
            opener: admin(),
            ..options()
        },
    )
    .unwrap()
}

#[test]
fn break_the_glass_enters_the_review_queue_until_a_verdict_closes_it() {
    let v = governed();
    let k = RecordKey::new("p1", "Observation", "o1");
    v.put(
        &etl(),
        &k,
        &json!({"valueQuantity": {"value": 1}, "status": "final"}),
    )
    .unwrap();
    let er = AccessContext::new("dr-er", Purpose::Emergency)
        .with_role("care")
        .with_reason("unconscious, no chart");
    let got: Value = v.get(&er, &k).unwrap();
    assert_eq!(got["status"], "final");
    // Without a reason: refused, and no queue item.
    let no_reason = AccessContext::new("dr-er", Purpose::Emergency).with_role("care");
    assert!(matches!(
        v.get::<Value>(&no_reason, &k),
        Err(Error::AccessDenied(_))
    ));
    let q = v.review_queue(&admin(), None).unwrap();
    assert_eq!(q.len(), 1);
    let item = &q[0];
    assert_eq!(item.actor, "dr-er");
    assert_eq!(item.subject.as_deref(), Some("p1"));
    assert_eq!(item.reason.as_deref(), Some("unconscious, no chart"));
    assert_eq!(item.what, "Observation/o1 [status,valueQuantity]");
    assert!(!item.overdue);
    // Past the policy's delay (72 h), it is reported as overdue.
    let late = item.time_ms + 73 * 3_600_000;
    assert!(v.review_queue(&admin(), Some(late)).unwrap()[0].overdue);
    // Care may not review.
    let care = AccessContext::new("dr-a", Purpose::Care).with_role("care");
    assert!(
        v.close_review(&care, item.seq, Verdict::Justified, "")
            .is_err()
    );
    v.close_review(
        &admin(),
        item.seq,
        Verdict::Justified,
        "checked with ER lead",
    )
    .unwrap();
    assert!(v.review_queue(&admin(), None).unwrap().is_empty());
    // A second verdict on the same access: not pending any more.
    assert!(matches!(
        v.close_review(&admin(), item.seq, Verdict::Unjustified, ""),
        Err(Error::NotFound)
    ));
    // The review is logged, names the patient, and carries the verdict.
    let log = v
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Review),
                ..LogQuery::default()
            },
        )
        .unwrap();
    // Three review attempts: care's (denied), the verdict, the repeated verdict (failed).
    let outcomes: Vec<Outcome> = log.iter().map(|e| e.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Denied,
            Outcome::Ok,
            Outcome::Failed("not_found".into())
        ]
    );
    let log = &log[1..2];
    assert_eq!(log[0].note, format!("review of #{}: justified", item.seq));
    assert_eq!(log[0].target.as_ref().unwrap().subject, "p1");
    assert_eq!(log[0].reason.as_deref(), Some("checked with ER lead"));
}

/// The first Patient id of the 13-patients data, read with serde_json.
fn first_patient(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join("Patient.000.ndjson")).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["id"].as_str().unwrap().to_owned()
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn the_access_report_lists_exactly_the_accesses_of_five_actors() {
    let data = fhir_data_dir();
    let dir = data.join("13-patients");
    let v = governed();
    let src = medvault_fhir::ImportSource::new(std::slice::from_ref(&dir)).unwrap();
    medvault_fhir::import(&v, &etl(), src, Default::default(), &mut |_| {}).unwrap();
    let pid = first_patient(&dir);
    let pkey = RecordKey::new(pid.as_str(), "Patient", pid.as_str());

    // Five actors, five roles or purposes.
    let dr = AccessContext::new("dr-house", Purpose::Care).with_role("care");
    let nurse = AccessContext::new("nurse-joy", Purpose::Care).with_role("care");
    let clerk = AccessContext::new("clerk-bill", Purpose::Billing).with_role("billing");
    let er = AccessContext::new("dr-er", Purpose::Emergency)
        .with_role("care")
        .with_reason("trauma bay 2");
    let research = AccessContext::new("dr-study", Purpose::Research).with_role("research");
    let _: Value = v.get(&dr, &pkey).unwrap();
    let _: Value = v.get_fields(&nurse, &pkey, &["name", "birthDate"]).unwrap();
    let billed: Value = v.get(&clerk, &pkey).unwrap();
    assert!(billed.get("name").is_none() && billed.get("identifier").is_some());
    let _: Vec<(RecordKey, Value)> = v.records_of(&er, &pid, Some("Encounter")).unwrap();
    assert!(v.get::<Value>(&research, &pkey).is_err());

    let report = v.access_report(&dpo(), &pid).unwrap();
    let expected: Vec<(&str, &str, &str, Action, Outcome)> = vec![
        ("dr-house", "care", "TREAT", Action::Read, Outcome::Ok),
        ("nurse-joy", "care", "TREAT", Action::Read, Outcome::Ok),
        ("clerk-bill", "billing", "HPAYMT", Action::Read, Outcome::Ok),
        ("dr-er", "care", "ETREAT", Action::Read, Outcome::Ok),
        (
            "dr-study",
            "research",
            "HRESCH",
            Action::Read,
            Outcome::Denied,
        ),
    ];
    let not_import: Vec<_> = report
        .accesses
        .iter()
        .filter(|a| a.action != Action::Import)
        .map(|a| {
            (
                a.actor.as_str(),
                a.roles[0].as_str(),
                a.purpose.as_str(),
                a.action,
                a.outcome.clone(),
            )
        })
        .collect();
    assert_eq!(not_import, expected);
    // The rest are the import's writes of this patient's records, by etl.
    let imports: Vec<_> = report
        .accesses
        .iter()
        .filter(|a| a.action == Action::Import)
        .collect();
    assert!(!imports.is_empty());
    assert!(
        imports
            .iter()
            .all(|a| a.actor == "etl" && a.purpose == "HSYSADMIN")
    );
    // What kind of data each read saw.
    let reads: Vec<_> = report
        .accesses
        .iter()
        .filter(|a| a.action == Action::Read && a.outcome == Outcome::Ok)
        .collect();
    // The fields returned, in the record's stored order (compared as a set).
    assert_eq!(
        reads[1]
            .fields
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["birthDate", "name"])
    );
    assert_eq!(
        reads[2]
            .fields
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["id", "identifier", "resourceType"])
    );
    assert_eq!(reads[3].collection.as_deref(), Some("Encounter"));
    assert_eq!(reads[3].reason.as_deref(), Some("trauma bay 2"));

    // Text, JSON and FHIR forms carry the same accesses.
    let text = report.to_text();
    for who in ["dr-house", "nurse-joy", "clerk-bill", "dr-er", "dr-study"] {
        assert!(text.contains(who), "{who} missing from the text report");
    }
    let j = report.to_json();
    assert_eq!(
        j["accesses"].as_array().unwrap().len(),
        report.accesses.len()
    );
    let b = report.to_fhir_bundle();
    assert_eq!(b["resourceType"], "Bundle");
    let events = b["entry"].as_array().unwrap();
    assert_eq!(events.len(), report.accesses.len());
    let profiles: Vec<&str> = events
        .iter()
        .filter_map(|e| e["resource"]["meta"]["profile"][0].as_str())
        .collect();
    assert!(
        profiles
            .iter()
            .any(|p| p.ends_with("IHE.BasicAudit.PatientRead"))
    );
    assert!(
        profiles
            .iter()
            .any(|p| p.ends_with("IHE.BasicAudit.PatientQuery"))
    );
    assert!(
        profiles
            .iter()
            .any(|p| p.ends_with("IHE.BasicAudit.PatientCreate"))
    );

    // The report is itself a logged access: the next report shows it as a disclosure.
    let again = v.access_report(&dpo(), &pid).unwrap();
    let last = again.accesses.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action),
        ("dpo-1", Action::Export)
    );
    assert!(last.disclosure);

    // Billing may not ask for a report; an erased patient cannot be reported on.
    let clerk_report = v.access_report(&clerk, &pid);
    assert!(matches!(clerk_report, Err(Error::AccessDenied(_))));
    v.erase_subject(&dpo(), &pid).unwrap();
    assert!(matches!(
        v.access_report(&dpo(), &pid),
        Err(Error::NotFound)
    ));
}

/// Where the BALP export for CI's validator goes: `$MEDVAULT_AUDIT_EVENTS`, else
/// `<workspace>/target/balp-audit-events.ndjson`.
fn export_path() -> PathBuf {
    std::env::var_os("MEDVAULT_AUDIT_EVENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/balp-audit-events.ndjson"))
}

#[test]
fn the_fhir_export_maps_each_kind_of_access_to_its_balp_profile() {
    let v = governed();
    let care = AccessContext::new("dr-a", Purpose::Care).with_role("care");
    let k = RecordKey::new("p1", "Observation", "o1");
    v.put(&care, &k, &json!({"status": "final"})).unwrap(); // create
    v.put(&care, &k, &json!({"status": "amended"})).unwrap(); // update
    let _: Value = v.get(&care, &k).unwrap(); // read
    let _: Vec<(RecordKey, Value)> = v.records_of(&care, "p1", None).unwrap(); // query
    let _: Vec<(RecordKey, Value)> = v.export_records_of(&dpo(), "p1").unwrap(); // disclosure
    let research = AccessContext::new("r", Purpose::Research).with_role("research");
    assert!(v.get::<Value>(&research, &k).is_err()); // denied
    v.delete(&care, &k).unwrap(); // delete

    let mut out = Vec::new();
    let n = v
        .audit_export_fhir(&admin(), &LogQuery::default(), &mut out)
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(out.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, n);
    let got: Vec<(String, String, String)> = lines
        .iter()
        .map(|e| {
            (
                e["meta"]["profile"][0]
                    .as_str()
                    .unwrap_or("-")
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        got,
        vec![
            s("IHE.BasicAudit.PatientCreate", "C", "0"),
            s("IHE.BasicAudit.PatientUpdate", "U", "0"),
            s("IHE.BasicAudit.PatientRead", "R", "0"),
            s("IHE.BasicAudit.PatientQuery", "E", "0"),
            s("IHE.BasicAudit.PrivacyDisclosure.Source", "R", "0"),
            s("-", "R", "4"),
            s("IHE.BasicAudit.PatientDelete", "D", "0"),
        ]
    );
    // Purpose of use and roles travel with each event.
    assert_eq!(lines[0]["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(lines[0]["agent"][0]["role"][0]["coding"][0]["code"], "care");
    assert_eq!(lines[4]["purposeOfEvent"][0]["coding"][0]["code"], "PATRQT");
    let path = export_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &out).unwrap();
}
