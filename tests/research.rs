//! The research export guard (issue 16, docs/RESEARCH.md): refusals, per-project
//! pseudonyms, minimization rules on real FHIR resources, k-anonymity, objections, the
//! disclosure in the log and the patient's access report, project-key destruction.
//!
//! Oracles independent of the export code: the source Patient resources are read from
//! ../shared/data/fhir-r4-ndjson with serde_json (names, identifiers, phones, address
//! lines, birth dates, ids; the quasi-identifier classes); the output is scanned as raw
//! bytes and parsed with serde_json; the storage is inspected as raw key bytes.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{fhir_data_dir, options, raw_key};
use medvault::research::{CollectionSpec, DataSpec, DateRule, ResearchExport, ResearchRequest};
use medvault::storage::{MemoryStorage, Storage};
use medvault::{
    AccessContext, Action, Denial, Error, LogQuery, Outcome, Policy, Purpose, RecordKey, Vault,
    VaultOptions,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const AUTH: &str = "CNIL DR-2026-042";
const REFERENCE_YEAR: i32 = 2026;

fn admin() -> AccessContext {
    AccessContext::new("admin-1", Purpose::Administration).with_role("administration")
}
fn dpo() -> AccessContext {
    AccessContext::new("dpo-1", Purpose::PatientRequest).with_role("dpo")
}
fn etl() -> AccessContext {
    AccessContext::new("etl", Purpose::Maintenance).with_role("integration")
}
fn researcher() -> AccessContext {
    AccessContext::new("dr-study", Purpose::Research).with_role("research")
}

fn policy_k(k: usize) -> Policy {
    let mut p = Policy::default_clinic();
    p.research.k = k;
    p
}

fn vault(storage: &MemoryStorage, policy: Policy) -> Vault {
    Vault::create_in(
        Box::new(storage.clone()),
        raw_key(),
        VaultOptions {
            policy: Some(policy),
            opener: admin(),
            ..options()
        },
    )
    .unwrap()
}

/// The collections of the 13-patients data (Observation, absent there, for a record
/// put by hand).
const COLLECTIONS: [&str; 10] = [
    "Patient",
    "Condition",
    "Encounter",
    "MedicationRequest",
    "Procedure",
    "Immunization",
    "AllergyIntolerance",
    "Device",
    "DocumentReference",
    "Observation",
];

fn spec(dates: DateRule, postal_digits: usize) -> DataSpec {
    DataSpec {
        collections: COLLECTIONS
            .iter()
            .map(|c| CollectionSpec {
                collection: c.to_string(),
                fields: vec!["*".into()],
            })
            .collect(),
        dates,
        postal_digits,
        quasi_identifiers: Vec::new(),
        keep_identifiers: Vec::new(),
        reference_year: Some(REFERENCE_YEAR),
    }
}

fn request(project: &str, spec: DataSpec) -> ResearchRequest {
    ResearchRequest {
        project: project.into(),
        authorization: AUTH.into(),
        spec,
    }
}

fn import(v: &Vault, dirs: &[PathBuf]) {
    let src = medvault_fhir::ImportSource::new(dirs).unwrap();
    medvault_fhir::import(v, &etl(), src, Default::default(), &mut |_| {}).unwrap();
}

/// Every NDJSON line of the files of `dir` whose name starts with `prefix`.
fn lines(dir: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(prefix) && n.ends_with(".ndjson")
        })
        .collect();
    files.sort();
    for f in files {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            if !l.trim().is_empty() {
                out.push(l.to_owned());
            }
        }
    }
    out
}

/// The source Patients of `dirs`, read with serde_json.
fn source_patients(dirs: &[PathBuf]) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for d in dirs {
        for l in lines(d, "Patient") {
            let v: Value = serde_json::from_str(&l).unwrap();
            if seen.insert(v["id"].as_str().unwrap().to_owned()) {
                out.push(v);
            }
        }
    }
    out
}

fn strs(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strs).collect(),
        _ => Vec::new(),
    }
}

/// What identifies a patient: id, given and family names, identifier values, phone and
/// e-mail values, address lines, birth date.
fn identity_of(p: &Value) -> Vec<String> {
    let mut out = vec![p["id"].as_str().unwrap().to_owned()];
    for n in p["name"].as_array().into_iter().flatten() {
        out.extend(strs(&n["given"]));
        out.extend(strs(&n["family"]));
    }
    for i in p["identifier"].as_array().into_iter().flatten() {
        out.extend(strs(&i["value"]));
    }
    for t in p["telecom"].as_array().into_iter().flatten() {
        out.extend(strs(&t["value"]));
    }
    for a in p["address"].as_array().into_iter().flatten() {
        out.extend(strs(&a["line"]));
    }
    out.extend(strs(&p["birthDate"]));
    out.retain(|s| s.len() >= 4);
    out
}

/// Every byte the export hands out: the resources (one per line) and the manifest.
fn output_bytes(x: &ResearchExport) -> Vec<u8> {
    let mut b = Vec::new();
    for (_, r) in &x.resources {
        b.extend_from_slice(r.as_bytes());
        b.push(b'\n');
    }
    b.extend_from_slice(x.manifest_json().as_bytes());
    b
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Fails when `hay` holds any of `needles` (Aho-Corasick: every occurrence of every
/// needle is found, overlapping or not), naming the first one's owner and length only.
fn assert_none_in(hay: &[u8], needles: &[(String, String)]) {
    let ac = aho_corasick::AhoCorasick::new(needles.iter().map(|(_, n)| n.as_str())).unwrap();
    if let Some(m) = ac.find(hay) {
        let (owner, n) = &needles[m.pattern().as_usize()];
        panic!(
            "the export holds an identifying value of {owner} ({} bytes)",
            n.len()
        );
    }
}

fn assert_no_identity(x: &ResearchExport, patients: &[Value]) {
    let needles: Vec<(String, String)> = patients
        .iter()
        .flat_map(|p| {
            let owner = format!("patient {}", p["id"]);
            identity_of(p).into_iter().map(move |s| (owner.clone(), s))
        })
        .collect();
    assert!(
        needles.len() > patients.len() * 5,
        "too few values: {}",
        needles.len()
    );
    assert_none_in(&output_bytes(x), &needles);
}

/// Parsed output resources (serde_json), with their type.
fn parsed(x: &ResearchExport) -> Vec<(String, Value)> {
    x.resources
        .iter()
        .map(|(t, r)| (t.clone(), serde_json::from_slice(r.as_bytes()).unwrap()))
        .collect()
}

/// Every value of an `id` or `reference` member, at any depth.
fn ids_and_refs(x: &ResearchExport) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    match (k.as_str(), x) {
                        ("id" | "reference", Value::String(s)) => {
                            out.insert(s.clone());
                        }
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for (_, v) in parsed(x) {
        walk(&v, &mut out);
    }
    out
}

/// The bare 32-hex-digit pseudonyms of ids and references.
fn bare(set: &BTreeSet<String>) -> BTreeSet<String> {
    set.iter()
        .map(|s| s.rsplit(['/', ':']).next().unwrap().replace('-', ""))
        .collect()
}

fn denied_rule(r: medvault::Result<ResearchExport>) -> String {
    match r {
        Err(Error::AccessDenied(Denial::Policy { rule, .. })) => rule,
        Err(e) => panic!("expected a policy denial, got {e}"),
        Ok(_) => panic!("expected a policy denial, got an export"),
    }
}

fn raw_keys_with_prefix(storage: &MemoryStorage, prefix: u8) -> usize {
    storage
        .scan(&[prefix], Some(&[prefix + 1]))
        .inspect(|r| assert!(r.is_ok()))
        .count()
}

fn put_patient(v: &Vault, id: &str, birth: &str, gender: &str) {
    let text = format!(
        r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"Fam{id}","given":["Giv{id}"]}}],"gender":"{gender}","birthDate":"{birth}","address":[{{"line":["1 Rue {id}"],"postalCode":"75011"}}]}}"#
    );
    let t = medvault::json::JsonText::parse(text).unwrap();
    v.put_json(&etl(), &RecordKey::new(id, "Patient", id), &t)
        .unwrap();
}

#[test]
fn each_refusal_is_denied_and_logged() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    put_patient(&v, "p1", "1970-05-06", "female");
    let good = request("P-1", spec(DateRule::Month, 3));

    let mut no_auth = good.clone();
    no_auth.authorization = " ".into();
    let mut no_project = good.clone();
    no_project.project = String::new();
    let mut no_spec = good.clone();
    no_spec.spec.collections.clear();
    let mut names = good.clone();
    names.spec.keep_identifiers = vec!["name".into()];
    let care = AccessContext::new("dr-1", Purpose::Care).with_role("care");
    let billing_as_research = AccessContext::new("clerk", Purpose::Research).with_role("billing");
    let res = researcher();
    let cases: Vec<(&AccessContext, &ResearchRequest, &str)> = vec![
        (&res, &no_auth, "research-authorization"),
        (&care, &good, "research-purpose"),
        (&billing_as_research, &good, "role-purpose"),
        (&res, &names, "research-identifier"),
        (&res, &no_project, "research-project"),
        (&res, &no_spec, "research-specification"),
    ];
    for (ctx, req, rule) in &cases {
        assert_eq!(denied_rule(v.research_export(ctx, req)), *rule);
    }
    // Nothing was created for a refused export: no project seed.
    assert_eq!(raw_keys_with_prefix(&storage, b's'), 0);
    // Each refusal is an export entry with outcome denied naming the rule, in order.
    let denied: Vec<(String, String)> = v
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Export),
                ..LogQuery::default()
            },
        )
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Denied)
        .map(|e| (e.actor, e.note))
        .collect();
    let expected: Vec<(String, String)> = cases
        .iter()
        .map(|(c, _, r)| (c.actor.clone(), format!("denied by rule {r}")))
        .collect();
    assert_eq!(denied, expected);

    // The same identifier is exported once the policy allows it.
    let mut p = policy_k(1);
    p.research.allow_identifiers = vec!["name".into()];
    v.set_policy(&admin(), p).unwrap();
    let x = v.research_export(&researcher(), &names).unwrap();
    assert!(contains(&output_bytes(&x), "Famp1"));
    assert!(!contains(&output_bytes(&x), "1 Rue p1"));
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn real_data_export_leaks_no_identity_and_k_anonymity_matches_an_independent_count() {
    let data = fhir_data_dir();
    let dirs = vec![data.join("13-patients"), data.join("1144-patients")];
    let storage = MemoryStorage::new();
    let v = vault(&storage, Policy::default_clinic());
    import(&v, &dirs);
    let patients = source_patients(&dirs);
    // The 13 patients are among the 1,144 (same ids): 1,144 distinct patients.
    assert!(patients.len() >= 1144, "{}", patients.len());
    let objector = patients[0]["id"].as_str().unwrap().to_owned();
    v.set_research_objection(&dpo(), &objector, true).unwrap();

    let req = request("P-A", spec(DateRule::Month, 3));
    let x = v.research_export(&researcher(), &req).unwrap();
    assert_no_identity(&x, &patients);

    // k-anonymity, computed here from the source Patients with serde_json.
    let class = |p: &Value| -> (String, String, String) {
        let birth = match p["birthDate"].as_str() {
            Some(b) => {
                let y: i32 = b[..4].parse().unwrap();
                if REFERENCE_YEAR - y > 89 {
                    "90+".to_owned()
                } else {
                    y.to_string()
                }
            }
            None => "unknown".to_owned(),
        };
        let gender = p["gender"].as_str().unwrap_or("unknown").to_owned();
        let postal = p["address"][0]["postalCode"]
            .as_str()
            .map(|s| s.chars().take(3).collect())
            .unwrap_or_else(|| "unknown".to_owned());
        (birth, gender, postal)
    };
    let included: Vec<&Value> = patients
        .iter()
        .filter(|p| p["id"].as_str() != Some(objector.as_str()))
        .collect();
    let mut sizes: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for p in &included {
        *sizes.entry(class(p)).or_default() += 1;
    }
    let kept = included.iter().filter(|p| sizes[&class(p)] >= 5).count();
    let k_achieved = sizes
        .values()
        .filter(|&&n| n >= 5)
        .min()
        .copied()
        .unwrap_or(0);
    let m = &x.manifest;
    assert_eq!(m.k_required, 5);
    assert_eq!(m.patients, kept);
    assert_eq!(m.suppressed_patients, included.len() - kept);
    assert_eq!(m.k_achieved, k_achieved);
    assert_eq!(m.excluded_objections, 1);
    let exported_patients = x.resources.iter().filter(|(t, _)| t == "Patient").count();
    assert_eq!(exported_patients, kept);
    eprintln!(
        "P-A: {} patients kept, {} suppressed, k = {}, {} resources",
        m.patients, m.suppressed_patients, m.k_achieved, m.records
    );

    // With k = 1 nobody is suppressed: every resource of the 13 patients leaves, and
    // still no identity does.
    v.set_policy(&admin(), policy_k(1)).unwrap();
    let all = v
        .research_export(&researcher(), &request("P-ALL", spec(DateRule::Month, 3)))
        .unwrap();
    assert_eq!(all.manifest.patients, included.len());
    assert_eq!(all.manifest.suppressed_patients, 0);
    assert_no_identity(&all, &patients);
    // Device identifiers and serial numbers (HIPAA's 13th identifier) do not leave
    // either, though the Devices do.
    let devices: Vec<(String, String)> = lines(&dirs[0], "Device")
        .iter()
        .flat_map(|l| {
            let d: Value = serde_json::from_str(l).unwrap();
            let mut v = strs(&d["serialNumber"]);
            v.extend(strs(&d["lotNumber"]));
            v.extend(strs(&d["distinctIdentifier"]));
            for u in d["udiCarrier"].as_array().into_iter().flatten() {
                v.extend(strs(&u["carrierHRF"]));
                v.extend(strs(&u["deviceIdentifier"]));
            }
            // Short numbers (a 4-digit serial) occur by chance in codes and quantities.
            v.into_iter()
                .filter(|x| x.len() >= 6)
                .map(|x| ("a device".to_owned(), x))
        })
        .collect();
    assert!(devices.len() > 40, "{}", devices.len());
    assert!(all.resources.iter().any(|(t, _)| t == "Device"));
    assert_none_in(&output_bytes(&all), &devices);
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn two_projects_pseudonyms_share_nothing_and_none_is_the_vaults() {
    let data = fhir_data_dir();
    let dirs = vec![data.join("13-patients")];
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    import(&v, &dirs);
    let a = v
        .research_export(&researcher(), &request("P-A", spec(DateRule::Month, 3)))
        .unwrap();
    let b = v
        .research_export(&researcher(), &request("P-B", spec(DateRule::Month, 3)))
        .unwrap();
    let (ia, ib) = (ids_and_refs(&a), ids_and_refs(&b));
    assert!(ia.len() > 1000, "{}", ia.len());
    assert_eq!(ia.len(), ib.len());
    assert!(ia.is_disjoint(&ib), "two projects share a pseudonym");
    let (ba, bb) = (bare(&ia), bare(&ib));
    assert!(ba.is_disjoint(&bb));
    // Patient pseudonyms: 13 each, none shared.
    let pa: BTreeSet<String> = parsed(&a)
        .into_iter()
        .filter(|(t, _)| t == "Patient")
        .map(|(_, v)| v["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pa.len(), 13);
    // None of the source ids survives, nor any of the vault's own subject pseudonyms.
    let source_ids: Vec<(String, String)> = lines(&dirs[0], "")
        .iter()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v.get("resourceType")?;
            Some(("a source id".to_owned(), v["id"].as_str()?.to_owned()))
        })
        .collect();
    assert!(source_ids.len() > 7000, "{}", source_ids.len());
    assert_none_in(&output_bytes(&a), &source_ids);
    assert_none_in(&output_bytes(&b), &source_ids);
    let vault_tags: BTreeSet<String> = v
        .audit_query(&admin(), &LogQuery::default())
        .unwrap()
        .into_iter()
        .filter_map(|e| e.subject_pseudonym.map(|t| t.to_string()))
        .collect();
    assert!(vault_tags.len() >= 13);
    for t in &vault_tags {
        assert!(!ba.contains(t) && !bb.contains(t));
    }
    let tags: Vec<(String, String)> = vault_tags
        .iter()
        .map(|t| ("a vault pseudonym".to_owned(), t.clone()))
        .collect();
    assert_none_in(&output_bytes(&a), &tags);
    // The same project again gives the same pseudonyms (a stable study cohort).
    let a2 = v
        .research_export(&researcher(), &request("P-A", spec(DateRule::Month, 3)))
        .unwrap();
    assert_eq!(ids_and_refs(&a2), ia);
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn an_objecting_patient_is_absent_and_only_included_patients_see_the_disclosure() {
    let data = fhir_data_dir();
    let dir = data.join("13-patients");
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    import(&v, std::slice::from_ref(&dir));
    let patients = source_patients(std::slice::from_ref(&dir));
    let objector = patients[0]["id"].as_str().unwrap().to_owned();
    let included = patients[1]["id"].as_str().unwrap().to_owned();
    // The care role may not record an objection; the patient's request may.
    assert!(matches!(
        v.set_research_objection(
            &AccessContext::new("dr", Purpose::Care).with_role("care"),
            &objector,
            true
        ),
        Err(Error::AccessDenied(_))
    ));
    v.set_research_objection(&dpo(), &objector, true).unwrap();
    let with = v
        .research_export(&researcher(), &request("P-O", spec(DateRule::Month, 3)))
        .unwrap();
    assert_eq!(with.manifest.excluded_objections, 1);
    assert_eq!(with.manifest.patients, 12);

    // Acceptance 4: the included patient's report shows the disclosure to the
    // project; the objecting patient's does not.
    let shows = |subject: &str| {
        v.access_report(&dpo(), subject)
            .unwrap()
            .accesses
            .iter()
            .any(|a| {
                a.disclosure
                    && a.action == Action::Export
                    && a.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("P-O") && r.contains(AUTH))
            })
    };
    assert!(shows(&included));
    assert!(!shows(&objector));
    // Exported as FHIR AuditEvents: the included patient's disclosure is a BALP
    // PrivacyDisclosure with purpose HRESCH naming the project; none for the objector.
    let events = |subject: &str| -> Vec<Value> {
        let mut out = Vec::new();
        v.audit_export_fhir(
            &admin(),
            &LogQuery {
                subject: Some(subject.to_owned()),
                action: Some(Action::Export),
                ..LogQuery::default()
            },
            &mut out,
        )
        .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let disclosure = |e: &Value| {
        e["meta"]["profile"][0]
            .as_str()
            .is_some_and(|p| p.ends_with("IHE.BasicAudit.PrivacyDisclosure.Source"))
            && e["purposeOfEvent"][0]["coding"][0]["code"] == "HRESCH"
            && e["purposeOfEvent"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("P-O"))
    };
    assert_eq!(
        events(&included).iter().filter(|e| disclosure(e)).count(),
        1
    );
    assert_eq!(
        events(&objector).iter().filter(|e| disclosure(e)).count(),
        0
    );

    // Withdrawn, the objector's resources come back: as many as the source lines that
    // name the objector's id (counted here on the NDJSON text).
    v.set_research_objection(&dpo(), &objector, false).unwrap();
    let without = v
        .research_export(&researcher(), &request("P-O2", spec(DateRule::Month, 3)))
        .unwrap();
    let own = COLLECTIONS
        .iter()
        .flat_map(|c| lines(&dir, &format!("{c}.")))
        .filter(|l| l.contains(objector.as_str()))
        .count();
    assert!(own > 10, "{own}");
    assert_eq!(without.manifest.records - with.manifest.records, own);
    assert_eq!(without.manifest.excluded_objections, 0);
}

#[test]
fn the_disclosure_entry_names_project_authorization_digest_and_counts() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    for i in 0..3 {
        put_patient(&v, &format!("p{i}"), "1980-01-02", "male");
    }
    let req = request("P-LOG", spec(DateRule::Year, 2));
    let x = v.research_export(&researcher(), &req).unwrap();
    assert_eq!((x.manifest.patients, x.manifest.records), (3, 3));
    assert_eq!(x.manifest.k_achieved, 3);
    let digest: String = Sha256::digest(serde_json::to_vec(&req.spec).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let exports: Vec<_> = v
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Export),
                ..LogQuery::default()
            },
        )
        .unwrap();
    let summary: Vec<_> = exports
        .iter()
        .filter(|e| e.subject_pseudonym.is_none())
        .collect();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        summary[0].note,
        format!(
            "research disclosure: project=P-LOG; authorization={AUTH}; spec=sha256:{digest}; patients=3; records=3; k=3 (required 1); suppressed=0; objections=0"
        )
    );
    assert_eq!(summary[0].purpose_of_use(), "HRESCH");
    assert_eq!(summary[0].roles, vec!["research".to_owned()]);
    let per_patient: BTreeSet<String> = exports
        .iter()
        .filter_map(|e| e.target.as_ref().map(|t| t.subject.clone()))
        .collect();
    assert_eq!(
        per_patient,
        ["p0", "p1", "p2"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn destroying_the_project_key_changes_pseudonyms_and_leaves_no_seed() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    for i in 0..4 {
        put_patient(&v, &format!("p{i}"), "1990-03-04", "female");
    }
    let req = request("P-D", spec(DateRule::Month, 3));
    let before = ids_and_refs(&v.research_export(&researcher(), &req).unwrap());
    assert_eq!(raw_keys_with_prefix(&storage, b's'), 1);
    // Only a role with the keys capability may destroy it.
    assert!(matches!(
        v.destroy_research_key(&researcher(), "P-D"),
        Err(Error::AccessDenied(_))
    ));
    v.destroy_research_key(&admin(), "P-D").unwrap();
    assert_eq!(raw_keys_with_prefix(&storage, b's'), 0);
    assert!(matches!(
        v.destroy_research_key(&admin(), "P-D"),
        Err(Error::NotFound)
    ));
    let logged = v
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::KeyRotation),
                ..LogQuery::default()
            },
        )
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Ok)
        .map(|e| e.note)
        .collect::<Vec<_>>();
    assert_eq!(
        logged,
        vec!["research project key destroyed: project=P-D".to_owned()]
    );
    // The same project id now gets a new seed: no pseudonym is shared with before.
    let after = ids_and_refs(&v.research_export(&researcher(), &req).unwrap());
    assert_eq!(before.len(), after.len());
    assert!(before.is_disjoint(&after));
    assert_eq!(raw_keys_with_prefix(&storage, b's'), 1);
}

/// The second patient of the 13-patients data (born 1960: not over 89 in 2026) and
/// every line that names it, in a folder of their own.
fn one_patient_dir(data: &Path, out: &Path) -> (Value, Vec<(String, Value)>) {
    let dir = data.join("13-patients");
    let patient: Value = serde_json::from_str(&lines(&dir, "Patient")[1]).unwrap();
    let id = patient["id"].as_str().unwrap().to_owned();
    let mut source = Vec::new();
    for c in COLLECTIONS {
        let mine: Vec<String> = lines(&dir, &format!("{c}."))
            .into_iter()
            .filter(|l| l.contains(id.as_str()))
            .collect();
        for l in &mine {
            source.push((c.to_owned(), serde_json::from_str(l).unwrap()));
        }
        if !mine.is_empty() {
            std::fs::write(out.join(format!("{c}.ndjson")), mine.join("\n") + "\n").unwrap();
        }
    }
    (patient, source)
}

fn field_values<'a>(
    rs: &'a [(String, Value)],
    ty: &str,
    f: impl Fn(&'a Value) -> Option<&'a Value>,
) -> Vec<String> {
    let mut v: Vec<String> = rs
        .iter()
        .filter(|(t, _)| t == ty)
        .filter_map(|(_, r)| f(r))
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn each_minimization_rule_shows_on_real_resources() {
    let data = fhir_data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (src_patient, source) = one_patient_dir(&data, tmp.path());
    let pid = src_patient["id"].as_str().unwrap().to_owned();
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    import(&v, &[tmp.path().to_path_buf()]);
    // A record with number tokens a float parser would change.
    let obs = format!(
        r#"{{"resourceType":"Observation","id":"obs-x","subject":{{"reference":"Patient/{pid}","display":"someone"}},"valueQuantity":{{"value":1.50,"unit":"mg"}},"component":[{{"valueInteger":12345678901234567890123}},{{"valueQuantity":{{"value":0.1000000000000000055511151231257827}}}}]}}"#
    );
    v.put_json(
        &etl(),
        &RecordKey::new(pid.as_str(), "Observation", "obs-x"),
        &medvault::json::JsonText::parse(obs).unwrap(),
    )
    .unwrap();

    let x = v
        .research_export(&researcher(), &request("P-R", spec(DateRule::Month, 3)))
        .unwrap();
    let out = parsed(&x);
    let bytes = output_bytes(&x);
    assert_eq!(out.len(), source.len() + 1);

    // Direct identifiers, extensions and narrative: present in the source Patient, gone.
    let p = &out.iter().find(|(t, _)| t == "Patient").unwrap().1;
    for f in ["name", "identifier", "telecom", "extension", "text"] {
        assert!(src_patient.get(f).is_some(), "source lacks {f}");
        assert!(p.get(f).is_none(), "{f} exported");
    }
    // Birth date: the year only.
    assert_eq!(
        p["birthDate"].as_str().unwrap(),
        &src_patient["birthDate"].as_str().unwrap()[..4]
    );
    // Address: only the postal code, truncated to 3 characters.
    let postal: String = src_patient["address"][0]["postalCode"]
        .as_str()
        .unwrap()
        .chars()
        .take(3)
        .collect();
    assert_eq!(p["address"], serde_json::json!([{ "postalCode": postal }]));
    // Ids and references: pseudonyms; the subject reference names the exported Patient;
    // the reference's display (the patient's name) is gone.
    let new_pid = p["id"].as_str().unwrap();
    assert_ne!(new_pid, pid);
    for (t, r) in out
        .iter()
        .filter(|(t, _)| t == "Encounter" || t == "Condition")
    {
        assert_eq!(
            r["subject"]["reference"],
            format!("Patient/{new_pid}"),
            "{t}"
        );
        assert!(r["subject"].get("display").is_none());
    }
    // Dates: every Encounter start generalized to its month (compared as multisets).
    let src_starts: Vec<String> =
        field_values(&source, "Encounter", |r| r.pointer("/period/start"))
            .into_iter()
            .map(|s| s[..7].to_owned())
            .collect();
    assert!(src_starts.len() > 3);
    assert_eq!(
        field_values(&out, "Encounter", |r| r.pointer("/period/start")),
        src_starts
    );
    // Attachments (the base64 clinical notes) and free text: gone.
    assert!(source.iter().any(
        |(t, r)| t == "DocumentReference" && r.pointer("/content/0/attachment/data").is_some()
    ));
    assert!(out.iter().any(|(t, _)| t == "DocumentReference"));
    assert!(!contains(&bytes, "\"attachment\"") && !contains(&bytes, "\"data\""));
    assert!(!contains(&bytes, "\"div\""));
    // Numbers: the exact tokens (no float parser on the way).
    assert!(contains(
        &bytes,
        r#""valueQuantity":{"value":1.50,"unit":"mg"}"#
    ));
    assert!(
        contains(&bytes, "12345678901234567890123")
            && contains(&bytes, "0.1000000000000000055511151231257827")
    );
    assert!(!contains(&bytes, "someone"));

    // Year rule: every date down to the year.
    let y = v
        .research_export(&researcher(), &request("P-Y", spec(DateRule::Year, 3)))
        .unwrap();
    let src_years: Vec<String> = field_values(&source, "Encounter", |r| r.pointer("/period/start"))
        .into_iter()
        .map(|s| s[..4].to_owned())
        .collect();
    assert_eq!(
        field_values(&parsed(&y), "Encounter", |r| r.pointer("/period/start")),
        src_years
    );
    // Shift rule: every full date moved by one per-patient offset of at most 182 days
    // (checked with chrono's calendar), time of day dropped, intervals kept.
    let sh = v
        .research_export(&researcher(), &request("P-S", spec(DateRule::Shift, 3)))
        .unwrap();
    let day = |s: &str| {
        chrono::NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d")
            .unwrap()
            .to_epoch_days()
    };
    let src_days: Vec<i32> = {
        let mut d: Vec<i32> = field_values(&source, "Encounter", |r| r.pointer("/period/start"))
            .iter()
            .map(|s| day(s))
            .collect();
        d.sort();
        d
    };
    let shifted = field_values(&parsed(&sh), "Encounter", |r| r.pointer("/period/start"));
    assert!(shifted.iter().all(|s| s.len() == 10), "time of day dropped");
    let mut out_days: Vec<i32> = shifted.iter().map(|s| day(s)).collect();
    out_days.sort();
    let offsets: BTreeSet<i32> = src_days.iter().zip(&out_days).map(|(a, b)| b - a).collect();
    assert_eq!(offsets.len(), 1, "one offset per patient: {offsets:?}");
    let offset = *offsets.iter().next().unwrap();
    assert!(offset.abs() <= 182);
    // Exported again for the same project: the same offset (a stable cohort).
    let again = v
        .research_export(&researcher(), &request("P-S", spec(DateRule::Shift, 3)))
        .unwrap();
    assert_eq!(
        field_values(&parsed(&again), "Encounter", |r| r.pointer("/period/start")),
        shifted
    );
    // Postal digits 0: no address at all.
    let z = v
        .research_export(&researcher(), &request("P-Z", spec(DateRule::Year, 0)))
        .unwrap();
    assert!(parsed(&z).iter().all(|(_, r)| r.get("address").is_none()));
    // Ages over 89 grouped: at reference year 2200 the birth date is dropped.
    let mut old = spec(DateRule::Month, 3);
    old.reference_year = Some(2200);
    let g = v
        .research_export(&researcher(), &request("P-G", old))
        .unwrap();
    assert_eq!(g.manifest.ages_grouped, 1);
    let gp = &parsed(&g)
        .into_iter()
        .find(|(t, _)| t == "Patient")
        .unwrap()
        .1;
    assert!(gp.get("birthDate").is_none());
    // Fields the specification does not request are not exported.
    let mut narrow = spec(DateRule::Month, 3);
    narrow.collections = vec![CollectionSpec {
        collection: "Encounter".into(),
        fields: vec!["period".into()],
    }];
    let n = v
        .research_export(&researcher(), &request("P-N", narrow))
        .unwrap();
    for (t, r) in parsed(&n) {
        assert_eq!(t, "Encounter");
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "period", "resourceType"].into_iter().collect());
    }
}

#[test]
fn an_objection_is_logged_withdrawable_and_erased_with_its_subject() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    put_patient(&v, "p1", "1970-05-06", "female");
    assert!(matches!(
        v.set_research_objection(&dpo(), "nobody", true),
        Err(Error::NotFound)
    ));
    v.set_research_objection(&dpo(), "p1", true).unwrap();
    assert_eq!(raw_keys_with_prefix(&storage, b'o'), 1);
    let x = v
        .research_export(&researcher(), &request("P-E", spec(DateRule::Month, 3)))
        .unwrap();
    assert_eq!(
        (x.manifest.patients, x.manifest.excluded_objections),
        (0, 1)
    );
    let notes: Vec<String> = v
        .audit_query(
            &admin(),
            &LogQuery {
                subject: Some("p1".into()),
                action: Some(Action::Write),
                ..LogQuery::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|e| e.note)
        .collect();
    assert!(notes.contains(&"objection recorded (secondary use, GDPR art. 21)".to_owned()));
    // Erasing the patient removes the marker too.
    v.erase_subject(&dpo(), "p1").unwrap();
    assert_eq!(raw_keys_with_prefix(&storage, b'o'), 0);
}

// ----- security review (issue 16 follow-up) -------------------------------------------

/// A Patient carried inside other resources: its id, US SSN and birth date are known
/// here, so the output can be scanned for them as raw bytes.
const NESTED_ID: &str = "nested-patient-4711";
const NESTED_SSN: &str = "999-12-3456";
const NESTED_BIRTH: &str = "1961-07-23";
const NESTED_URL: &str = "urn:uuid:8c0e1b2a-5d4f-4e33-9a7b-0b1c2d3e4f50";

fn nested_patient() -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{NESTED_ID}","identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"{NESTED_SSN}"}}],"gender":"female","birthDate":"{NESTED_BIRTH}"}}"#
    )
}

/// A FHIR document Bundle (Bundle "Document" section): a Composition and the Patient it
/// is about, as full entries with `fullUrl`.
fn document_bundle() -> String {
    format!(
        r#"{{"resourceType":"Bundle","id":"doc-1","type":"document","timestamp":"2026-03-04T05:06:07Z","entry":[{{"fullUrl":"urn:uuid:0f1e2d3c-4b5a-4697-8887-766554433221","resource":{{"resourceType":"Composition","id":"comp-1","status":"final","date":"2026-03-04","subject":{{"reference":"{NESTED_URL}"}}}}}},{{"fullUrl":"{NESTED_URL}","resource":{}}}]}}"#,
        nested_patient()
    )
}

/// A FHIR history Bundle: the Patient's version with its request and response.
fn history_bundle() -> String {
    format!(
        r#"{{"resourceType":"Bundle","id":"hist-1","type":"history","entry":[{{"fullUrl":"http://example.org/fhir/Patient/{NESTED_ID}","resource":{},"request":{{"method":"PUT","url":"Patient?identifier=urn:oid:2.16.840.1.113883.4.1|{NESTED_SSN}"}},"response":{{"status":"200 OK","location":"Patient/{NESTED_ID}/_history/2","lastModified":"{NESTED_BIRTH}T00:00:00Z"}}}}]}}"#,
        nested_patient()
    )
}

fn put_text(v: &Vault, subject: &str, collection: &str, id: &str, text: &str) {
    let t = medvault::json::JsonText::parse(text).unwrap();
    v.put_json(&etl(), &RecordKey::new(subject, collection, id), &t)
        .unwrap();
}

fn spec_of(collections: &[&str], dates: DateRule) -> DataSpec {
    DataSpec {
        collections: collections
            .iter()
            .map(|c| CollectionSpec {
                collection: c.to_string(),
                fields: vec!["*".into()],
            })
            .collect(),
        dates,
        postal_digits: 3,
        quasi_identifiers: Vec::new(),
        keep_identifiers: Vec::new(),
        reference_year: Some(REFERENCE_YEAR),
    }
}

fn assert_no_nested_values(x: &ResearchExport) {
    let b = output_bytes(x);
    for needle in [
        NESTED_ID,
        NESTED_SSN,
        NESTED_BIRTH,
        "1961",
        NESTED_URL,
        "8c0e1b2a",
    ] {
        assert!(!contains(&b, needle), "the export holds {needle}");
    }
}

/// Whole Bundles (document, history) and Parameters carry other resources with their
/// own ids, identifiers, dates and URLs: a specification naming them is refused, the
/// refusal logged, whatever the rest of the specification.
#[test]
fn bundles_and_parameters_in_a_specification_are_refused_and_logged() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    put_patient(&v, "p1", "1970-05-06", "female");
    put_text(&v, "p1", "Bundle", "doc-1", &document_bundle());
    put_text(&v, "p1", "Bundle", "hist-1", &history_bundle());
    let params = format!(
        r#"{{"resourceType":"Parameters","parameter":[{{"name":"p","resource":{}}}]}}"#,
        nested_patient()
    );
    put_text(&v, "p1", "Parameters", "par-1", &params);
    for c in [
        &["Bundle"][..],
        &["Patient", "Bundle"],
        &["Parameters"],
        &["Condition", "Parameters"],
    ] {
        let r = v.research_export(
            &researcher(),
            &request("P-NEST", spec_of(c, DateRule::Year)),
        );
        assert_eq!(denied_rule(r), "research-nested-resources", "{c:?}");
    }
    let denied = v
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Export),
                ..LogQuery::default()
            },
        )
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == Outcome::Denied && e.note.contains("research-nested-resources"))
        .count();
    assert_eq!(denied, 4);
}

/// Outside Bundles, no resource nested in another leaves: `contained`, a resource put in
/// any member, and a Bundle stored under another collection's name (its resourceType is
/// not its collection) are dropped; the nested Patient's id, SSN, birth date and URL
/// are nowhere in the output bytes.
#[test]
fn no_nested_resource_leaves_in_any_other_collection() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    put_patient(&v, "p1", "1970-05-06", "female");
    let obs = format!(
        r##"{{"resourceType":"Observation","id":"o1","status":"final","subject":{{"reference":"Patient/p1"}},"effectiveDateTime":"2020-01-02","contained":[{np}],"performer":[{{"reference":"#{NESTED_ID}"}}],"component":[{{"code":{{"text":"x"}},"valueReference":{np}}}],"focus":[{np}]}}"##,
        np = nested_patient()
    );
    put_text(&v, "p1", "Observation", "o1", &obs);
    put_text(&v, "p1", "Composition", "doc-1", &document_bundle());
    put_text(&v, "p1", "Composition", "hist-1", &history_bundle());
    let x = v
        .research_export(
            &researcher(),
            &request(
                "P-NEST",
                spec_of(&["Patient", "Observation", "Composition"], DateRule::Shift),
            ),
        )
        .unwrap();
    assert_no_nested_values(&x);
    let out = parsed(&x);
    let types: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["Patient", "Observation"],
        "the Bundles under Composition"
    );
    let o = &out[1].1;
    assert_eq!(o["resourceType"], "Observation");
    assert_eq!(o["status"], "final");
    assert!(
        o.get("contained").is_none() && o.get("focus").is_none(),
        "{o}"
    );
    assert!(o["component"][0].get("valueReference").is_none(), "{o}");
    assert_eq!(x.manifest.changes.nested_resources_dropped, 2);
}

/// The project id and the authorization reference are written into the disclosure
/// entry's `name=value; ...` note, the manifest and the CLI's output: a `;`, `=`,
/// newline or other control character is refused (InvalidInput, logged), so no field or
/// line can be forged; the documented charset is accepted.
#[test]
fn project_and_authorization_that_could_forge_log_fields_are_refused() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    put_patient(&v, "p1", "1970-05-06", "female");
    let forged = "none; spec=sha256:0; patients=0";
    let s = || spec(DateRule::Year, 3);
    for (project, auth) in [
        ("P-1", forged),
        ("P-1", "IRB 7\nresearch disclosure: project=X"),
        ("P-1", "IRB\u{7}"),
        ("P-1", "IRB=7"),
        ("P-1", "IRB-é"),
        ("P;1", AUTH),
        ("P-1\r", AUTH),
        ("P`1", AUTH),
    ] {
        let req = ResearchRequest {
            project: project.into(),
            authorization: auth.into(),
            spec: s(),
        };
        match v.research_export(&researcher(), &req) {
            Err(Error::InvalidInput(i)) => {
                assert_eq!(i.kind, medvault::InputKind::Context);
                assert!(i.to_string().contains("printable ASCII"), "{i}");
            }
            other => panic!("{project:?}/{auth:?}: expected InvalidInput, got {other:?}"),
        }
    }
    assert!(matches!(
        v.destroy_research_key(&admin(), "P;1\nx"),
        Err(Error::InvalidInput(_))
    ));
    // 128 printable bytes pass; 129 do not (the existing length rule).
    let long = "A".repeat(128);
    let ok = ResearchRequest {
        project: "P-1 (cohort: 2026/07, v2.1)".into(),
        authorization: long.clone(),
        spec: s(),
    };
    v.research_export(&researcher(), &ok).unwrap();
    let mut too_long = ok.clone();
    too_long.authorization.push('A');
    assert_eq!(
        denied_rule(v.research_export(&researcher(), &too_long)),
        "research-authorization"
    );
    // No entry of the log holds the forged text.
    for e in v.audit_query(&admin(), &LogQuery::default()).unwrap() {
        let all = format!("{} {:?}", e.note, e.reason);
        assert!(!all.contains("sha256:0;") && !all.contains('\n'), "{all}");
    }
}

/// A date shift never leaves the FHIR date range: a value whose shift crosses year 9999
/// or year 1 is generalized to its year (docs/RESEARCH.md). The oracle is the FHIR
/// `date` regular expression (FHIR "Data Types", "date"), applied to every date-like
/// output string.
#[test]
fn a_date_shift_past_the_fhir_range_gives_the_year_not_an_invalid_date() {
    let storage = MemoryStorage::new();
    let v = vault(&storage, policy_k(1));
    let mut seen_year_only = 0;
    for i in 0..6 {
        let p = format!("p{i}");
        put_patient(&v, &p, "1970-05-06", "female");
        let obs = format!(
            r#"{{"resourceType":"Observation","id":"o{i}","status":"final","effectiveDateTime":"9999-12-31T23:59:59Z","issued":"0001-01-01T00:00:00Z","valuePeriod":{{"start":"9999-12","end":"0001-01"}}}}"#
        );
        put_text(&v, &p, "Observation", &format!("o{i}"), &obs);
    }
    let x = v
        .research_export(
            &researcher(),
            &request("P-SHIFT", spec_of(&["Observation"], DateRule::Shift)),
        )
        .unwrap();
    let fhir_date = regex_lite_date;
    for (_, o) in parsed(&x) {
        for s in [
            &o["effectiveDateTime"],
            &o["issued"],
            &o["valuePeriod"]["start"],
            &o["valuePeriod"]["end"],
        ] {
            let s = s.as_str().unwrap();
            assert!(fhir_date(s), "not a FHIR date: {s}");
            if s.len() == 4 {
                seen_year_only += 1;
            }
        }
    }
    assert_eq!(x.manifest.records, 6);
    // Every shift but 0 pushes one of each pair out of range.
    assert!(seen_year_only >= 10, "{seen_year_only}");
}

/// FHIR `date`: `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?`
/// (FHIR "Data Types", "Primitive Types"), checked by hand: a four-digit year 0001 to
/// 9999, then optionally `-MM` in 01..12 and `-DD` in 01..31.
fn regex_lite_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let in_range = |r: std::ops::Range<usize>, max: u32| {
        digits(r.clone()) && (1..=max).contains(&s[r].parse::<u32>().unwrap())
    };
    if !(b.len() == 4 || b.len() == 7 || b.len() == 10) || !digits(0..4) || &s[..4] == "0000" {
        return false;
    }
    let month_ok = b.len() < 7 || (b[4] == b'-' && in_range(5..7, 12));
    let day_ok = b.len() < 10 || (b[7] == b'-' && in_range(8..10, 31));
    month_ok && day_ok
}
