//! Blind indexes (issue 8): exact finds by identifier, name and birth date on the 1,144
//! Synthea patients; no value in clear on disk; truncated indexes stay exact; entries
//! follow replacement, deletion and erasure; `find` is logged without the value.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use medvault::{
    AccessContext, Action, Durability, Error, IndexSpec, KeySource, LogQuery, Normalization,
    Purpose, RecordKey, Vault, VaultOptions,
};
use medvault_fhir::default_indexes;
use serde_json::{Value, json};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

fn ctx() -> AccessContext {
    AccessContext::new("index-test", Purpose::Care)
}

fn opts() -> VaultOptions {
    VaultOptions {
        durability: Durability::Background,
        ..VaultOptions::default()
    }
}

fn key() -> KeySource {
    KeySource::raw([0x1d; 32])
}

/// The test's own plaintext folding of names (what a clerk considers the same name).
fn fold(s: &str) -> String {
    s.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .collect::<String>()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

struct Patient {
    id: String,
    value: Value,
}

impl Patient {
    fn families(&self) -> BTreeSet<String> {
        self.value["name"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["family"].as_str().map(str::to_owned))
            .collect()
    }

    fn ssn(&self) -> &str {
        self.value["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["type"]["coding"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["code"] == "SS"))
            })
            .and_then(|i| i["value"].as_str())
            .unwrap()
    }

    fn birth_date(&self) -> &str {
        self.value["birthDate"].as_str().unwrap()
    }

    fn key(&self) -> RecordKey {
        RecordKey::new(self.id.clone(), "Patient", self.id.clone())
    }
}

fn load_1144() -> Vec<Patient> {
    let dir = common::fhir_data_dir().join("1144-patients");
    let text = std::fs::read_to_string(dir.join("Patient.000.ndjson")).unwrap();
    let ps: Vec<Patient> = text
        .lines()
        .map(|l| {
            let value: Value = serde_json::from_str(l).unwrap();
            let id = value["id"].as_str().unwrap().to_owned();
            Patient { id, value }
        })
        .collect();
    assert_eq!(ps.len(), 1144);
    ps
}

/// Creates a vault with `specs` defined first (as an import does), then the patients.
fn build(dir: &Path, patients: &[Patient], specs: Vec<IndexSpec>) -> Vault {
    let v = Vault::create_with(dir, key(), opts()).unwrap();
    for s in specs {
        assert_eq!(v.add_index(&ctx(), s, &mut |_| {}).unwrap(), 0);
    }
    let keys: Vec<RecordKey> = patients.iter().map(Patient::key).collect();
    for (ks, ps) in keys.chunks(500).zip(patients.chunks(500)) {
        v.put_many(
            &ctx(),
            ks.iter().zip(ps.iter().map(|p| &p.value)),
            Action::Import,
        )
        .unwrap();
    }
    v
}

fn ids(found: &[(RecordKey, Value)]) -> BTreeSet<String> {
    found.iter().map(|(k, _)| k.record_id.clone()).collect()
}

/// Patients having a family name that folds like `q` (and, if given, that birth date).
fn expected_family(ps: &[Patient], q: &str, birth: Option<&str>) -> BTreeSet<String> {
    ps.iter()
        .filter(|p| p.families().iter().any(|f| fold(f) == fold(q)))
        .filter(|p| birth.is_none_or(|b| p.birth_date() == b))
        .map(|p| p.id.clone())
        .collect()
}

/// An accented spelling of an ASCII name, or the ASCII spelling of an accented one,
/// with the case changed.
fn variant(name: &str) -> String {
    if name.is_ascii() {
        let mut done = false;
        name.chars()
            .map(|c| match c {
                'a' | 'e' | 'o' | 'u' | 'i' if !done => {
                    done = true;
                    match c {
                        'a' => 'á',
                        'e' => 'é',
                        'o' => 'ö',
                        'u' => 'ü',
                        _ => 'í',
                    }
                }
                c => c.to_ascii_uppercase(),
            })
            .collect()
    } else {
        fold(name).to_uppercase()
    }
}

fn find(v: &Vault, index: &str, values: &[&str]) -> Vec<(RecordKey, Value)> {
    v.find(&ctx(), "Patient", index, values).unwrap()
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn finds_the_1144_patients_by_ssn_family_name_and_birth_date() {
    let ps = load_1144();
    let tmp = tempfile::tempdir().unwrap();
    let v = build(&tmp.path().join("v"), &ps, default_indexes());
    assert!(v.indexes().iter().all(|s| s.built));

    for p in &ps {
        let got = find(&v, "identifier", &[p.ssn()]);
        assert_eq!(ids(&got), BTreeSet::from([p.id.clone()]), "SSN of {}", p.id);
        assert_eq!(got[0].1, p.value);
    }
    // Identifier normalization: spaces for dashes, still found.
    let spaced = ps[0].ssn().replace('-', " ");
    assert_eq!(
        ids(&find(&v, "identifier", &[&spaced])),
        BTreeSet::from([ps[0].id.clone()])
    );

    let families: BTreeSet<String> = ps.iter().flat_map(Patient::families).collect();
    let (mut accented, mut checked) = (0, 0);
    for f in &families {
        let want = expected_family(&ps, f, None);
        assert!(!want.is_empty());
        for q in [f.clone(), f.to_uppercase(), f.to_lowercase(), variant(f)] {
            assert_eq!(ids(&find(&v, "family", &[&q])), want, "family {q:?}");
            checked += 1;
        }
        accented += usize::from(!f.is_ascii());
    }
    assert!(accented >= 10, "the data should hold accented names");

    let (mut unique, mut shared) = (0, 0);
    for p in &ps {
        for f in p.families() {
            let want = expected_family(&ps, &f, Some(p.birth_date()));
            assert!(want.contains(&p.id));
            let got = ids(&find(
                &v,
                "family-birthdate",
                &[&variant(&f), p.birth_date()],
            ));
            assert_eq!(got, want, "family {f:?} born {}", p.birth_date());
            if got.len() == 1 {
                unique += 1;
            } else {
                shared += 1;
            }
        }
    }
    eprintln!(
        "{} families x 4 spellings ({checked} finds, {accented} accented); family+birth date: \
         {unique} unique, {shared} shared with another patient (twins / same-day namesakes)",
        families.len()
    );
    assert!(unique > 1000);
    let check = v.verify_indexes(&ctx()).unwrap();
    assert!(check.is_consistent(), "{check:?}");
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn no_value_in_clear_and_16_bit_indexes_stay_exact() {
    let ps = load_1144();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let v = build(&dir, &ps, default_indexes());
    // Added to a collection that already holds the records: built from them.
    let trunc = |name: &str, path: &str, n, bits| {
        IndexSpec::new("Patient", name, &[path], n)
            .unwrap()
            .truncated(bits)
    };
    let mut last = None;
    let built = v
        .add_index(
            &ctx(),
            trunc(
                "identifier16",
                "identifier[].value",
                Normalization::Identifier,
                16,
            ),
            &mut |p| last = Some(p),
        )
        .unwrap();
    assert_eq!(built, 1144);
    let last = last.unwrap();
    assert_eq!((last.done, last.total), (1144, 1144));
    for (name, bits) in [("family16", 16), ("family4", 4)] {
        let s = trunc(name, "name[].family", Normalization::Name, bits);
        assert_eq!(v.add_index(&ctx(), s, &mut |_| {}).unwrap(), 1144);
    }

    for p in &ps {
        let got = find(&v, "identifier16", &[p.ssn()]);
        assert_eq!(ids(&got), BTreeSet::from([p.id.clone()]));
    }
    let families: BTreeSet<String> = ps.iter().flat_map(Patient::families).collect();
    for f in &families {
        let want = expected_family(&ps, f, None);
        assert_eq!(ids(&find(&v, "family16", &[&variant(f)])), want);
        assert_eq!(ids(&find(&v, "family4", &[f])), want);
    }
    // With 4 bits, ~1/16 of all names are candidates: false positives were dropped.
    let notes: Vec<String> = v
        .audit_query(
            &ctx(),
            &LogQuery {
                action: Some(Action::Search),
                ..LogQuery::default()
            },
        )
        .unwrap()
        .into_iter()
        .map(|e| e.note)
        .filter(|n| n.contains("index=family4"))
        .collect();
    assert_eq!(notes.len(), families.len());
    let dropped = notes
        .iter()
        .filter(|n| {
            let num = |k: &str| -> u64 {
                let s = &n[n.find(k).unwrap() + k.len()..];
                s.split(' ').next().unwrap().parse().unwrap()
            };
            num("candidates=") > num("matches=")
        })
        .count();
    assert_eq!(
        dropped,
        notes.len(),
        "every 4-bit lookup had false candidates"
    );
    let check = v.verify_indexes(&ctx()).unwrap();
    assert!(check.is_consistent(), "{check:?}");
    // 6 default indexes + 3 truncated; at least one entry per patient per identifier.
    assert!(check.entries > 1144 * 8, "{check:?}");
    drop(v);

    // No name, identifier or birth date in any vault file, raw or as normalized.
    let mut needles: Vec<String> = Vec::new();
    for p in &ps {
        for f in p.families() {
            needles.push(fold(&f));
            needles.push(f);
        }
        for i in p.value["identifier"].as_array().unwrap() {
            let s = i["value"].as_str().unwrap();
            needles.push(s.to_owned());
            let norm: String = s.chars().filter(|c| c.is_alphanumeric()).collect();
            needles.push(norm.to_uppercase());
        }
        needles.push(p.birth_date().to_owned());
        for n in p.value["name"].as_array().unwrap() {
            for g in n["given"].as_array().into_iter().flatten() {
                needles.push(g.as_str().unwrap().to_owned());
            }
        }
    }
    // Synthea names carry digits ("Goldner995"): none is shorter than 4 bytes.
    needles.retain(|n| n.len() >= 4);
    assert!(needles.len() > 1144 * 8);
    let size: usize = common::files_under(&dir).iter().map(|(_, b)| b.len()).sum();
    assert!(size > 1144 * 1000);
    let hits = common::needles_found_under(&dir, &needles);
    assert!(hits.is_empty(), "{} patient values in clear", hits.len());
}

// ----- small synthetic vaults ---------------------------------------------------------

fn synth(n: usize) -> Vec<Patient> {
    medvault_fhir::synth::generate(n, 8)
        .map(|s| Patient {
            id: s.id,
            value: s.resources[0].clone(),
        })
        .collect()
}

fn condition(p: &Patient, code: &str) -> (RecordKey, Value) {
    let id = format!("cond-{}", p.id);
    (
        RecordKey::new(p.id.clone(), "Condition", id.clone()),
        json!({"resourceType": "Condition", "id": id,
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
               "subject": {"reference": format!("Patient/{}", p.id)}}),
    )
}

#[test]
fn a_replaced_record_no_longer_matches_its_old_values() {
    let tmp = tempfile::tempdir().unwrap();
    let ps = synth(30);
    let v = build(&tmp.path().join("v"), &ps, default_indexes());
    let p = &ps[3];
    let old = p.families().into_iter().next().unwrap();
    assert_eq!(
        ids(&find(&v, "family", &[&old])),
        BTreeSet::from([p.id.clone()])
    );
    let before = v.verify_indexes(&ctx()).unwrap();

    let mut changed = p.value.clone();
    changed["name"][0]["family"] = json!("Renamed777");
    changed["identifier"][1]["value"] = json!("MV99999999");
    v.put(&ctx(), &p.key(), &changed).unwrap();
    assert!(find(&v, "family", &[&old]).is_empty());
    assert!(find(&v, "family-birthdate", &[&old, p.birth_date()]).is_empty());
    assert!(
        find(
            &v,
            "identifier",
            &[p.value["identifier"][1]["value"].as_str().unwrap()]
        )
        .is_empty()
    );
    assert_eq!(
        ids(&find(&v, "family", &["renamed777"])),
        BTreeSet::from([p.id.clone()])
    );
    assert_eq!(
        ids(&find(&v, "identifier", &["mv-9999-9999"])),
        BTreeSet::from([p.id.clone()])
    );
    // Unchanged values still match; the record's entry count is unchanged.
    assert_eq!(
        ids(&find(&v, "identifier", &[p.ssn()])),
        BTreeSet::from([p.id.clone()])
    );
    let after = v.verify_indexes(&ctx()).unwrap();
    assert!(after.is_consistent(), "{after:?}");
    assert_eq!(after.entries, before.entries);

    // The same record twice in one batch: the second version's entries win.
    let mut a = changed.clone();
    a["name"][0]["family"] = json!("First111");
    let mut b = changed.clone();
    b["name"][0]["family"] = json!("Second222");
    let k = p.key();
    v.put_many(&ctx(), [(&k, &a), (&k, &b)], Action::Write)
        .unwrap();
    assert!(find(&v, "family", &["First111"]).is_empty());
    assert!(find(&v, "family", &["Renamed777"]).is_empty());
    assert_eq!(find(&v, "family", &["Second222"]).len(), 1);
    assert!(v.verify_indexes(&ctx()).unwrap().is_consistent());

    // Deleted: gone from every index.
    v.delete(&ctx(), &k).unwrap();
    assert!(find(&v, "family", &["Second222"]).is_empty());
    assert!(find(&v, "identifier", &[p.ssn()]).is_empty());
    let end = v.verify_indexes(&ctx()).unwrap();
    assert!(end.is_consistent(), "{end:?}");
    assert!(end.entries < after.entries);
}

#[test]
fn erasure_destroys_the_subjects_index_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let ps = synth(20);
    let v = build(&tmp.path().join("v"), &ps, default_indexes());
    for (i, p) in ps.iter().enumerate() {
        let (k, c) = condition(p, if i % 2 == 0 { "44054006" } else { "38341003" });
        v.put(&ctx(), &k, &c).unwrap();
    }
    let diabetes = |v: &Vault| -> BTreeSet<String> {
        v.find::<Value>(&ctx(), "Condition", "code", &["44054006"])
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.subject)
            .collect()
    };
    assert_eq!(diabetes(&v).len(), 10);
    let before = v.verify_indexes(&ctx()).unwrap();
    let gone = &ps[0];
    v.erase_subject(&ctx(), &gone.id).unwrap();
    assert!(find(&v, "identifier", &[gone.ssn()]).is_empty());
    for f in gone.families() {
        assert!(find(&v, "family", &[&f]).is_empty());
    }
    assert_eq!(diabetes(&v).len(), 9);
    assert!(!diabetes(&v).contains(&gone.id));
    let after = v.verify_indexes(&ctx()).unwrap();
    assert!(after.is_consistent(), "{after:?}");
    // Patient: 3 identifiers, 1 family, 2 given, birth date, family+birth; Condition: 1.
    assert_eq!(before.entries - after.entries, 9, "{before:?} {after:?}");
}

#[test]
fn find_is_logged_without_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let ps = synth(10);
    let v = build(&dir, &ps, default_indexes());
    let ssn = ps[2].ssn().to_owned();
    let unknown = "Qzvxwk-4711-Nowhere";
    assert_eq!(find(&v, "identifier", &[&ssn]).len(), 1);
    assert!(find(&v, "identifier", &[unknown]).is_empty());
    assert!(find(&v, "family", &[unknown]).is_empty());
    assert!(
        v.find_by_scan::<Value>(&ctx(), "Patient", "family", &[unknown])
            .unwrap()
            .is_empty()
    );
    let entries = v.audit_query(&ctx(), &LogQuery::default()).unwrap();
    let searches: Vec<_> = entries
        .iter()
        .filter(|e| e.action == Action::Search && e.note.contains("collection=Patient"))
        .collect();
    assert_eq!(searches.len(), 4);
    assert!(searches[0].note.contains("index=identifier"));
    assert!(searches[0].note.contains("candidates=1 matches=1"));
    assert!(
        searches
            .iter()
            .all(|e| e.purpose == Purpose::Care && e.actor == "index-test")
    );
    // The match's read is logged, naming the record (sealed in the log).
    let reads: Vec<_> = entries
        .iter()
        .filter(|e| e.action == Action::Read && e.note == "find")
        .collect();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].target.as_ref().unwrap().subject, ps[2].id);
    let forms = [
        ssn.clone(),
        ssn.replace('-', ""),
        unknown.to_owned(),
        unknown.to_lowercase(),
        unknown.to_uppercase().replace('-', ""),
    ];
    for e in &entries {
        let text = serde_json::to_string(e).unwrap();
        for f in &forms {
            assert!(
                !text.contains(f.as_str()),
                "log entry mentions {f:?}: {text}"
            );
        }
    }
    drop(v);
    assert!(common::needles_found_under(&dir, &forms).is_empty());
}

#[test]
fn definitions_persist_and_misuse_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let ps = synth(5);
    let v = build(&dir, &ps, default_indexes());
    let specs = default_indexes();
    assert_eq!(
        v.add_index(&ctx(), specs[0].clone(), &mut |_| {}).unwrap(),
        0
    );
    let other = IndexSpec::new(
        "Patient",
        "identifier",
        &["identifier[].system"],
        Normalization::Exact,
    )
    .unwrap();
    match v.add_index(&ctx(), other, &mut |_| {}) {
        Err(e @ Error::AlreadyExists(medvault::Existing::Index { .. })) => assert_eq!(
            e.to_string(),
            "an index named identifier already exists in collection Patient"
        ),
        r => panic!("another spec under an existing name: {r:?}"),
    }
    assert!(matches!(
        v.find::<Value>(&ctx(), "Patient", "nope", &["x"]),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        v.find::<Value>(&ctx(), "Condition", "family", &["x"]),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        v.find::<Value>(&ctx(), "Patient", "family-birthdate", &["x"]),
        Err(Error::InvalidInput(_))
    ));
    assert!(find(&v, "family", &["  "]).is_empty());
    drop(v);
    let v = Vault::open_with(&dir, key(), opts()).unwrap();
    let listed: Vec<IndexSpec> = v.indexes().into_iter().map(|s| s.spec).collect();
    let mut want = specs.clone();
    want.sort_by(|a, b| (&a.collection, &a.name).cmp(&(&b.collection, &b.name)));
    assert_eq!(listed, want);
    let p = &ps[4];
    assert_eq!(
        ids(&find(&v, "identifier", &[p.ssn()])),
        BTreeSet::from([p.id.clone()])
    );
    // The wrong key opens nothing, definitions included.
    drop(v);
    assert!(matches!(
        Vault::open(&dir, KeySource::raw([0; 32])),
        Err(Error::WrongKey)
    ));
}

#[test]
fn an_index_built_while_records_are_rewritten_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let ps = synth(400);
    let v = Arc::new(build(&tmp.path().join("v"), &ps, Vec::new()));
    let writer = {
        let v = v.clone();
        let ps: Vec<(RecordKey, Value)> = ps.iter().map(|p| (p.key(), p.value.clone())).collect();
        std::thread::spawn(move || {
            for round in 0..3 {
                for (i, (k, p)) in ps.iter().enumerate().rev() {
                    let mut p = p.clone();
                    p["name"][0]["family"] = json!(format!("Round{round}x{i}"));
                    if i % 7 == 0 {
                        v.delete(&ctx(), k).unwrap();
                    }
                    v.put(&ctx(), k, &p).unwrap();
                }
            }
        })
    };
    for s in default_indexes() {
        v.add_index(&ctx(), s, &mut |_| {}).unwrap();
    }
    writer.join().unwrap();
    let check = v.verify_indexes(&ctx()).unwrap();
    assert!(check.is_consistent(), "{check:?}");
    assert_eq!(check.records, 400);
    assert_eq!(find(&v, "family", &["round2x17"]).len(), 1);
}
