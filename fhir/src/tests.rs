// Tests may unwrap: a panic is the failure report, and every unwrap here is on test
// fixtures or on results the test is asserting to be Ok.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::subject::is_valid_id;
use super::synth::generate;
use super::*;

const SECRET: &str = "SECRET-TOKEN-52817";

/// The CC0 Synthea sample data shipped in the `shared/` folder beside the workspace
/// (this crate is `fhir/` in it), or `$MEDVAULT_FHIR_DATA` if set. Absent → skip with a
/// note, except under `CI=true` where it must be there.
fn data_dir(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("MEDVAULT_FHIR_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fhir-r4-ndjson")
        });
    let dir = base.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "test data {} missing (required when CI=true)",
            dir.display()
        );
    }
    eprintln!("note: {} absent; skipping test", dir.display());
    None
}

fn read_all(paths: &[PathBuf]) -> Vec<ImportItem> {
    ImportSource::new(paths)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn records(items: Vec<ImportItem>) -> Vec<FhirRecord> {
    items
        .into_iter()
        .filter_map(ImportItem::into_record)
        .collect()
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(content)
        .unwrap();
    p
}

fn keys(rs: &[FhirRecord]) -> BTreeSet<(String, String, String)> {
    rs.iter()
        .map(|r| (r.subject.clone(), r.collection.clone(), r.record_id.clone()))
        .collect()
}

/// Every line of 13-patients becomes a record holding exactly the line's bytes, under
/// one of the 13 patients (or shared for the shared types).
#[test]
fn ndjson_13_patients_records_are_the_lines() {
    let Some(dir) = data_dir("13-patients") else {
        return;
    };
    let mut patients = HashSet::new();
    let mut lines = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in &files {
        let items = read_all(std::slice::from_ref(file));
        let text = std::fs::read_to_string(file).unwrap();
        let input: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(items.len(), input.len(), "{}", file.display());
        for (item, line) in items.into_iter().zip(input) {
            match item {
                ImportItem::Record(r) => {
                    assert_eq!(r.resource.as_str(), line, "{}", r.record_id);
                    if r.collection == "Patient" {
                        patients.insert(r.record_id.clone());
                    }
                    lines += 1;
                    all.push(r);
                }
                ImportItem::Skipped { .. } => {
                    assert!(file.ends_with("log.ndjson"));
                }
            }
        }
    }
    assert_eq!(lines, 7160);
    assert_eq!(patients.len(), 13);
    for r in &all {
        if [
            "Organization",
            "Practitioner",
            "PractitionerRole",
            "Location",
        ]
        .contains(&r.collection.as_str())
        {
            assert_eq!(r.subject, SHARED_SUBJECT, "{}", r.collection);
        } else {
            assert!(
                patients.contains(&r.subject),
                "{} {}",
                r.collection,
                r.record_id
            );
        }
    }
}

fn to_urn_refs(v: &mut Value, ids: &HashSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("reference")
                && let Some((_, id)) = r.split_once('/')
                && ids.contains(id)
            {
                *r = format!("urn:uuid:{id}");
            }
            m.values_mut().for_each(|c| to_urn_refs(c, ids));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| to_urn_refs(c, ids)),
        _ => {}
    }
}

/// A transaction Bundle built from the NDJSON records (urn:uuid references, every
/// other Patient without id) gives the same keys, whether the Bundle is a streamed
/// `.json` file or one NDJSON line.
#[test]
fn transaction_bundle_matches_ndjson_streamed_or_in_memory() {
    let Some(dir) = data_dir("13-patients") else {
        return;
    };
    let ndjson = records(read_all(std::slice::from_ref(&dir)));
    let ids: HashSet<String> = ndjson.iter().map(|r| r.record_id.clone()).collect();
    let mut entries = Vec::new();
    let mut patients_seen = 0;
    for r in &ndjson {
        let mut res: Value = serde_json::from_str(r.resource.as_str()).unwrap();
        to_urn_refs(&mut res, &ids);
        if r.collection == "Patient" {
            patients_seen += 1;
            if patients_seen % 2 == 0 {
                res.as_object_mut().unwrap().remove("id");
            }
        }
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", r.record_id),
            "resource": res,
            "request": { "method": "POST", "url": r.collection },
        }));
    }
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
    let tmp = tempfile::tempdir().unwrap();
    let text = serde_json::to_string(&bundle).unwrap();
    let as_json = write_file(tmp.path(), "bundle.json", text.as_bytes());
    let as_line = write_file(tmp.path(), "bundle.ndjson", text.as_bytes());

    let streamed = records(read_all(&[as_json]));
    let in_memory = records(read_all(&[as_line]));
    assert_eq!(keys(&streamed), keys(&ndjson));
    assert_eq!(streamed, in_memory);
    let mut urn_refs = 0;
    for (rec, entry) in streamed.iter().zip(bundle["entry"].as_array().unwrap()) {
        // Stored exactly as in the Bundle, references untouched.
        assert_eq!(rec.value().unwrap(), entry["resource"]);
        urn_refs += usize::from(rec.resource.contains("\"urn:uuid:"));
    }
    assert!(urn_refs > 100, "the bundle really used urn:uuid references");
}

/// Positions of every kind of reject, reading going on after each, and never any
/// content in an error.
#[test]
fn rejects_name_file_and_position_without_content() {
    let tmp = tempfile::tempdir().unwrap();
    let good = r#"{"resourceType":"Patient","id":"p1"}"#;
    let bad = format!(r#"{{"resourceType":"Patient","id":"p2","name":[{{"family":"{SECRET}"]}}"#);
    let dup = format!(r#"{{"resourceType":"Patient","id":"p3","gender":"{SECRET}","gender":"x"}}"#);
    let path = write_file(
        tmp.path(),
        "x.ndjson",
        format!("\u{feff}{good}\r\n\n{bad}\n{dup}\n[1]\n{{\"a\":1}}\n{good}").as_bytes(),
    );
    let items: Vec<_> = ImportSource::new(std::slice::from_ref(&path))
        .unwrap()
        .collect();
    assert_eq!(items.len(), 6);
    assert!(
        matches!(items[0], Ok(ImportItem::Record(_))),
        "BOM and CRLF"
    );
    assert!(matches!(
        &items[1],
        Err(FhirError::Json {
            at: Position::Line(3),
            ..
        })
    ));
    assert!(matches!(
        &items[2],
        Err(FhirError::DuplicateMember {
            at: Position::Line(4),
            ..
        })
    ));
    assert!(matches!(
        &items[3],
        Err(FhirError::NotAResource {
            at: Position::Line(5),
            ..
        })
    ));
    assert!(matches!(
        &items[4],
        Ok(ImportItem::Skipped {
            at: Position::Line(6),
            ..
        })
    ));
    for e in items.iter().filter_map(|i| i.as_ref().err()) {
        let msg = format!("{e} {e:?} {}", reject::operation_outcome(e));
        assert!(msg.contains("x.ndjson"), "{msg}");
        assert!(!msg.contains(SECRET), "{msg}");
    }

    // A `.json` file: the whole file is one position.
    let path = write_file(
        tmp.path(),
        "y.json",
        format!("{{\n\"a\": \"{SECRET}\",\n}}").as_bytes(),
    );
    let err = ImportSource::new(&[path])
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("y.json") && msg.contains("line 3"), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");
}

#[test]
fn record_ids_from_id_fullurl_or_content() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "resource:0", "resource": {"resourceType": "Patient", "name": [{"family": "A"}]}},
        {"fullUrl": "http://x.org/fhir/Observation/o7/_history/2", "resource": {"resourceType": "Observation"}},
        {"fullUrl": "urn:oid:1.2.3", "resource": {"resourceType": "Observation", "id": ""}},
        {"fullUrl": "Patient/p9", "resource": {"resourceType": "Binary"}},
    ]});
    // The same Patient pretty-printed elsewhere gets the same content id.
    let pretty = serde_json::to_string_pretty(&bundle["entry"][0]["resource"]).unwrap();
    let a = write_file(tmp.path(), "a.json", bundle.to_string().as_bytes());
    let b = write_file(tmp.path(), "b.json", pretty.as_bytes());
    let rs = records(read_all(&[a, b]));
    let ids: Vec<&str> = rs.iter().map(|r| r.record_id.as_str()).collect();
    assert!(
        ids[0].starts_with("sha256-") && is_valid_id(ids[0]),
        "{ids:?}"
    );
    assert_eq!(&ids[1..4], ["o7", "1.2.3", ids[3]]);
    assert!(
        ids[3].starts_with("sha256-"),
        "type mismatch: no id from fullUrl"
    );
    assert_eq!(ids[4], ids[0]);
    assert_eq!(
        rs[4].resource.as_str(),
        pretty,
        "held whole, exactly as read"
    );
}

#[test]
fn over_long_line_is_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let short = r#"{"resourceType":"Patient","id":"p1"}"#;
    let long = format!(
        r#"{{"resourceType":"Patient","id":"p2","note":"{}"}}"#,
        "x".repeat(500)
    );
    let path = write_file(
        tmp.path(),
        "long.ndjson",
        format!("{short}\n{long}\n{short}\r\n{long}").as_bytes(),
    );
    let items: Vec<_> = ImportSource::new(std::slice::from_ref(&path))
        .unwrap()
        .with_max_line_bytes(100)
        .collect();
    assert_eq!(items.len(), 4);
    assert!(matches!(items[0], Ok(ImportItem::Record(_))));
    assert!(matches!(
        items[1],
        Err(FhirError::LineTooLong {
            line: 2,
            limit: 100,
            ..
        })
    ));
    assert!(matches!(items[2], Ok(ImportItem::Record(_))));
    assert!(matches!(
        items[3],
        Err(FhirError::LineTooLong { line: 4, .. })
    ));
}

/// A large streamed Bundle: every entry in order with its position, an oversized entry
/// rejected alone, and a bad entry rejected alone.
#[test]
fn streamed_bundle_entries_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries: Vec<Value> = (0..5000)
        .map(|i| {
            json!({"resource": {"resourceType": "Observation", "id": format!("o{i}"),
            "subject": {"reference": format!("Patient/p{}", i % 7)}}})
        })
        .collect();
    entries[10] = json!("not an entry");
    entries[20] =
        json!({"resource": {"resourceType": "Binary", "id": "big", "data": "A".repeat(5000)}});
    let bundle = json!({"entry": entries, "type": "batch", "resourceType": "Bundle"});
    let path = write_file(tmp.path(), "big.json", bundle.to_string().as_bytes());
    let mut src = ImportSource::new(&[path])
        .unwrap()
        .with_max_json_bytes(4096);
    let total = src.total_bytes();
    let mut n = 0;
    for (i, item) in (&mut src).enumerate() {
        match (i, item) {
            (10, Err(FhirError::NotAResource { at, .. })) => assert_eq!(at, Position::Entry(10)),
            (20, Err(FhirError::BundleTooLarge { at, .. })) => assert_eq!(at, Position::Entry(20)),
            (i, Ok(ImportItem::Record(r))) => {
                assert_eq!(r.record_id, format!("o{i}"));
                assert_eq!(r.subject, format!("p{}", i % 7));
                n += 1;
            }
            (i, other) => panic!("entry {i}: {other:?}"),
        }
    }
    assert_eq!(n, 4998);
    assert_eq!(src.bytes_read(), total);
}

#[test]
fn subject_of_standalone_resources() {
    for (r, want) in [
        (
            json!({"resourceType": "Communication", "recipient": [{"reference": "Patient/aaaa"}]}),
            "aaaa",
        ),
        (
            json!({"resourceType": "Appointment", "participant": [
                {"actor": {"reference": "Practitioner/p9"}}, {"actor": {"reference": "Patient/aaaa"}}]}),
            "aaaa",
        ),
        (
            json!({"resourceType": "Encounter", "subject": {"reference": "urn:uuid:e11037dd-9b76"}}),
            "e11037dd-9b76",
        ),
        (
            json!({"resourceType": "Organization", "partOf": {"reference": "Organization/o2"}}),
            SHARED_SUBJECT,
        ),
        (json!({"resourceType": "Patient", "id": "x1"}), "x1"),
    ] {
        assert_eq!(subject_of(&r.to_string()).unwrap(), want, "{r}");
    }
    assert!(matches!(
        subject_of(r#"{"resourceType":"Patient","id":"a","id":"b"}"#),
        Err(FhirError::DuplicateMember { .. })
    ));
}

#[test]
fn record_debug_redacts_resource() {
    let rec = FhirRecord {
        subject: "p".into(),
        collection: "Patient".into(),
        record_id: "p".into(),
        resource: format!(r#"{{"name":"{SECRET}"}}"#).into(),
    };
    assert!(!format!("{rec:?}").contains(SECRET));
}

// ---- synth ----

#[test]
fn synth_is_deterministic_and_seed_dependent() {
    let a: Vec<_> = generate(20, 7).collect();
    let b: Vec<_> = generate(20, 7).collect();
    assert_eq!(a, b);
    let prefix: Vec<_> = generate(5, 7).collect();
    assert_eq!(prefix[..], a[..5]);
    let c: Vec<_> = generate(20, 8).collect();
    assert!(
        a.iter()
            .zip(&c)
            .all(|(x, y)| x.id != y.id && x.resources != y.resources)
    );
    assert_eq!(generate(3, 1).len(), 3);
}

#[test]
fn synth_patients_are_well_formed() {
    let mut sizes = Vec::new();
    let mut all_ids = HashSet::new();
    for p in generate(200, 42) {
        assert_eq!(p.resources[0]["resourceType"], "Patient");
        assert_eq!(p.resources[0]["id"], p.id.as_str());
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut order = Vec::new();
        for r in &p.resources {
            let m = r.as_object().unwrap();
            let t = m["resourceType"].as_str().unwrap();
            assert_eq!(subject_of(&r.to_string()).unwrap(), p.id, "{t}");
            assert!(is_valid_id(m["id"].as_str().unwrap()));
            assert!(
                all_ids.insert(m["id"].as_str().unwrap().to_owned()),
                "unique ids"
            );
            *counts.entry(t).or_default() += 1;
            if order.last() != Some(&t) {
                order.push(t);
            }
        }
        assert_eq!(
            order,
            [
                "Patient",
                "Condition",
                "Encounter",
                "MedicationRequest",
                "Observation"
            ]
        );
        assert!((2..=6).contains(&counts["Condition"]));
        assert!((3..=10).contains(&counts["Encounter"]));
        assert!((1..=5).contains(&counts["MedicationRequest"]));
        assert!((4..=12).contains(&counts["Observation"]));

        assert!(p.identifiers.len() >= 6);
        let patient_json = serde_json::to_string(&p.resources[0]).unwrap();
        for ident in &p.identifiers {
            assert!(!ident.is_empty());
            assert!(
                patient_json.contains(ident.as_str()),
                "{ident} not in Patient"
            );
        }
        let ssn = &p.resources[0]["identifier"][2]["value"];
        assert!(ssn.as_str().unwrap().starts_with("999-"));
        sizes.push(
            p.resources
                .iter()
                .map(|r| serde_json::to_vec(r).unwrap().len())
                .sum::<usize>(),
        );
    }
    let avg = sizes.iter().sum::<usize>() / sizes.len();
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!((10 * 1024..=30 * 1024).contains(&avg), "avg {avg}");
    assert!(*min >= 6 * 1024 && *max <= 40 * 1024, "min {min} max {max}");
}

#[test]
fn synth_round_trips_through_import() {
    let tmp = tempfile::tempdir().unwrap();
    let mut out = String::new();
    let mut expected = BTreeSet::new();
    for p in generate(25, 3) {
        for r in &p.resources {
            out.push_str(&serde_json::to_string(r).unwrap());
            out.push('\n');
            let t = r["resourceType"].as_str().unwrap().to_owned();
            expected.insert((p.id.clone(), t, r["id"].as_str().unwrap().to_owned()));
        }
    }
    let path = write_file(tmp.path(), "synth.ndjson", out.as_bytes());
    let got = keys(&records(read_all(&[path])));
    assert_eq!(got, expected);
}
