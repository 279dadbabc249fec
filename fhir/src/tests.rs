// Tests may unwrap: a panic is the failure report, and every unwrap here is
// on test fixtures or on results the test is asserting to be Ok.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::synth::generate;
use super::*;

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
        .map(|i| match i {
            ImportItem::Record(r) => r,
            other => panic!("expected a record, got {other:?}"),
        })
        .collect()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn ndjson_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort();
    files
}

fn non_blank_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

const SHARED_TYPES: [&str; 4] = [
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
];

#[test]
fn ndjson_13_patients_per_file() {
    let Some(dir) = data_dir("13-patients") else {
        return;
    };
    let patient_ids: HashSet<String> = non_blank_lines(&dir.join("Patient.000.ndjson"))
        .iter()
        .map(|l| {
            obj(serde_json::from_str(l).unwrap())["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(patient_ids.len(), 13);
    let mut subjects_seen = HashSet::new();
    for file in ndjson_files(&dir) {
        let lines = non_blank_lines(&file);
        let items = read_all(std::slice::from_ref(&file));
        assert_eq!(items.len(), lines.len(), "{}", file.display());
        if file.file_name().unwrap() == "log.ndjson" {
            for (n, item) in items.iter().enumerate() {
                match item {
                    ImportItem::Skipped { at, .. } => {
                        assert_eq!(*at, Position::Line(n as u64 + 1));
                    }
                    other => panic!("log line imported: {other:?}"),
                }
            }
            continue;
        }
        for (rec, line) in records(items).into_iter().zip(&lines) {
            let input = obj(serde_json::from_str(line).unwrap());
            assert_eq!(rec.resource, input, "{} {}", file.display(), rec.record_id);
            assert_eq!(rec.collection, input["resourceType"].as_str().unwrap());
            assert_eq!(rec.record_id, input["id"].as_str().unwrap());
            let expected = subject_of(&input).unwrap_or_else(|| SHARED_SUBJECT.to_owned());
            assert_eq!(rec.subject, expected);
            if SHARED_TYPES.contains(&rec.collection.as_str()) {
                assert_eq!(rec.subject, SHARED_SUBJECT, "{}", rec.collection);
            } else {
                assert!(
                    patient_ids.contains(&rec.subject),
                    "{} {} has no patient",
                    rec.collection,
                    rec.record_id
                );
                subjects_seen.insert(rec.subject.clone());
            }
        }
    }
    assert_eq!(subjects_seen, patient_ids);
}

#[test]
fn ndjson_13_patients_directory_and_progress() {
    let Some(dir) = data_dir("13-patients") else {
        return;
    };
    let mut src = ImportSource::new(std::slice::from_ref(&dir)).unwrap();
    let files: Vec<PathBuf> = src.files().map(Path::to_path_buf).collect();
    assert_eq!(files, ndjson_files(&dir), "sorted, ndjson only");
    let total = src.total_bytes();
    assert!(total > 0);
    let (mut recs, mut skipped, mut last) = (0usize, 0usize, 0u64);
    while let Some(item) = src.next() {
        match item.unwrap() {
            ImportItem::Record(_) => recs += 1,
            ImportItem::Skipped { .. } => skipped += 1,
        }
        let now = src.bytes_read();
        assert!(now >= last && now <= total);
        last = now;
    }
    assert_eq!(src.bytes_read(), total);
    let expected_lines: usize = files.iter().map(|f| non_blank_lines(f).len()).sum();
    let log_lines = non_blank_lines(&dir.join("log.ndjson")).len();
    assert_eq!(skipped, log_lines);
    assert_eq!(recs, expected_lines - log_lines);
    assert!(src.next().is_none(), "fused");
}

#[test]
fn ndjson_1144_patients() {
    let Some(dir) = data_dir("1144-patients") else {
        return;
    };
    let file = dir.join("Patient.000.ndjson");
    let recs = records(read_all(std::slice::from_ref(&file)));
    assert_eq!(recs.len(), 1144);
    let mut ids = HashSet::new();
    for r in &recs {
        assert_eq!(r.collection, "Patient");
        assert_eq!(r.subject, r.record_id);
        assert_eq!(subject_of(&r.resource).as_ref(), Some(&r.subject));
        assert!(ids.insert(r.record_id.clone()), "duplicate id");
    }
}

/// Rewrites every `{"reference": "Type/id"}` whose target is in `ids` to
/// `urn:uuid:id`, as Synthea writes transaction Bundles.
fn to_urn_refs(v: &mut Value, ids: &HashSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("reference")
                && let Some((_, id)) = r.split_once('/')
                && ids.contains(id)
            {
                *r = format!("urn:uuid:{id}");
            }
            for (_, child) in m.iter_mut() {
                to_urn_refs(child, ids);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| to_urn_refs(c, ids)),
        _ => {}
    }
}

#[test]
fn transaction_bundle_matches_ndjson() {
    let Some(dir) = data_dir("13-patients") else {
        return;
    };
    let ndjson = records(
        read_all(std::slice::from_ref(&dir))
            .into_iter()
            .filter(|i| matches!(i, ImportItem::Record(_)))
            .collect(),
    );
    let keys = |rs: &[FhirRecord]| -> BTreeSet<(String, String, String)> {
        rs.iter()
            .map(|r| (r.subject.clone(), r.collection.clone(), r.record_id.clone()))
            .collect()
    };
    let ids: HashSet<String> = ndjson.iter().map(|r| r.record_id.clone()).collect();
    let mut entries = Vec::new();
    let mut patients_seen = 0;
    for r in &ndjson {
        let mut res = Value::Object(r.resource.clone());
        to_urn_refs(&mut res, &ids);
        let url = if r.collection == "Patient" {
            patients_seen += 1;
            // Every other Patient goes without `id`, as in a POST: its
            // identity must come from the urn:uuid fullUrl.
            if patients_seen % 2 == 0 {
                res.as_object_mut().unwrap().remove("id");
            }
            "Patient".to_owned()
        } else {
            r.collection.clone()
        };
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{}", r.record_id),
            "resource": res,
            "request": { "method": "POST", "url": url },
        }));
    }
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bundle.json");
    std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();

    let from_bundle = records(read_all(std::slice::from_ref(&path)));
    assert_eq!(from_bundle.len(), ndjson.len());
    assert_eq!(keys(&from_bundle), keys(&ndjson));
    let Value::Array(entries) = &bundle["entry"] else {
        panic!()
    };
    let mut urn_refs = 0;
    for (rec, entry) in from_bundle.iter().zip(entries) {
        // Stored exactly as in the Bundle, references untouched.
        assert_eq!(Value::Object(rec.resource.clone()), entry["resource"]);
        if let Some(r) = rec.resource.get("subject").and_then(|s| s.get("reference")) {
            urn_refs += usize::from(r.as_str().unwrap().starts_with("urn:uuid:"));
        }
    }
    assert!(urn_refs > 100, "the bundle really used urn:uuid references");
}

fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(content)
        .unwrap();
    p
}

const SECRET: &str = "Zephyrine417";

#[test]
fn invalid_json_names_file_and_line_without_content() {
    let tmp = tempfile::tempdir().unwrap();
    let good = r#"{"resourceType":"Patient","id":"p1"}"#;
    let bad = format!(r#"{{"resourceType":"Patient","id":"p2","name":[{{"family":"{SECRET}"]}}"#);
    let path = write_file(
        tmp.path(),
        "x.ndjson",
        format!("{good}\n\n{bad}\n{good}\n").as_bytes(),
    );
    let items: Vec<_> = ImportSource::new(std::slice::from_ref(&path))
        .unwrap()
        .collect();
    assert_eq!(
        items.len(),
        3,
        "good, bad, good: reading goes on after an error"
    );
    let err = items[1].as_ref().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FhirError::Json { line: 3, .. }), "{msg}");
    assert!(msg.contains("x.ndjson") && msg.contains("line 3"), "{msg}");
    assert!(
        !msg.contains(SECRET) && !format!("{err:?}").contains(SECRET),
        "{msg}"
    );

    // Same for a whole .json file.
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
fn missing_empty_and_invalid_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let content = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        r#"{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}"#,
        r#"{"resourceType":"Condition","id":""}"#,
        r#"{"resourceType":"Patient","id":"urn:medvault:shared"}"#,
        r#"{"resourceType":"Patient","id":42}"#,
        r#"{"resourceType":"../etc","id":"x"}"#,
    );
    let path = write_file(tmp.path(), "ids.ndjson", content.as_bytes());
    let errs: Vec<FhirError> = ImportSource::new(&[path])
        .unwrap()
        .map(|r| r.unwrap_err())
        .collect();
    assert!(matches!(
        errs[0],
        FhirError::MissingId {
            at: Position::Line(1),
            ..
        }
    ));
    assert!(matches!(
        errs[1],
        FhirError::MissingId {
            at: Position::Line(2),
            ..
        }
    ));
    assert!(matches!(
        errs[2],
        FhirError::InvalidId {
            at: Position::Line(3),
            ..
        }
    ));
    assert!(matches!(
        errs[3],
        FhirError::InvalidId {
            at: Position::Line(4),
            ..
        }
    ));
    assert!(matches!(
        errs[4],
        FhirError::NotAResource {
            at: Position::Line(5),
            ..
        }
    ));
    assert!(
        errs[0].to_string().contains("ids.ndjson, line 1"),
        "{}",
        errs[0]
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
    let src = ImportSource::new(std::slice::from_ref(&path))
        .unwrap()
        .with_max_line_bytes(100);
    let items: Vec<_> = src.collect();
    assert_eq!(items.len(), 4);
    assert!(matches!(items[0], Ok(ImportItem::Record(_))));
    match &items[1] {
        Err(
            e @ FhirError::LineTooLong {
                line: 2,
                limit: 100,
                ..
            },
        ) => {
            assert!(e.to_string().contains("long.ndjson, line 2"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(items[2], Ok(ImportItem::Record(_))),
        "CRLF line after a skipped one"
    );
    assert!(
        matches!(items[3], Err(FhirError::LineTooLong { line: 4, .. })),
        "at EOF too"
    );

    // A line of exactly the cap is fine.
    let path = write_file(tmp.path(), "exact.ndjson", format!("{short}\n").as_bytes());
    let src = ImportSource::new(&[path])
        .unwrap()
        .with_max_line_bytes(short.len());
    assert!(matches!(
        src.collect::<Vec<_>>()[..],
        [Ok(ImportItem::Record(_))]
    ));
}

#[test]
fn json_file_cap_and_bundle_types() {
    let tmp = tempfile::tempdir().unwrap();
    let b = |t: &str| {
        serde_json::to_vec(&json!({"resourceType":"Bundle","type":t,"entry":[
            {"resource":{"resourceType":"Patient","id":"p1"}}]}))
        .unwrap()
    };
    let big = write_file(tmp.path(), "big.json", &b("collection"));
    let mut src = ImportSource::new(&[big]).unwrap().with_max_json_bytes(10);
    assert!(matches!(
        src.next(),
        Some(Err(FhirError::BundleTooLarge { limit: 10, .. }))
    ));
    assert!(src.next().is_none());

    for t in ["transaction", "batch", "collection", "searchset"] {
        let p = write_file(tmp.path(), &format!("{t}.json"), &b(t));
        assert_eq!(records(read_all(&[p])).len(), 1, "{t}");
    }
    for t in ["document", "history", "message"] {
        let p = write_file(tmp.path(), &format!("{t}.json"), &b(t));
        let err = ImportSource::new(&[p])
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, FhirError::UnsupportedBundleType { bundle_type, .. } if bundle_type == t),
            "{err}"
        );
    }
}

#[test]
fn bundle_reference_resolution() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:11111111-2222-4333-8444-555555555555",
         "resource":{"resourceType":"Patient","name":[{"family":"Doe"}]},
         "request":{"method":"POST","url":"Patient"}},
        {"fullUrl":"urn:uuid:aaaaaaaa-2222-4333-8444-555555555555",
         "resource":{"resourceType":"Group","id":"g1"}},
        {"fullUrl":"urn:uuid:c1",
         "resource":{"resourceType":"Condition","id":"c1",
            "subject":{"reference":"urn:uuid:11111111-2222-4333-8444-555555555555"}}},
        {"fullUrl":"urn:uuid:o1",
         "resource":{"resourceType":"Observation","id":"o1",
            "subject":{"reference":"urn:uuid:aaaaaaaa-2222-4333-8444-555555555555"}}},
        {"request":{"method":"DELETE","url":"Observation/o2"}},
        {"fullUrl":"urn:uuid:c2",
         "resource":{"resourceType":"Condition","id":"c2",
            "subject":{"reference":"urn:uuid:99999999-2222-4333-8444-555555555555"}}},
        {"resource":{"resourceType":"Condition"}},
    ]});
    let p = write_file(tmp.path(), "b.json", &serde_json::to_vec(&bundle).unwrap());
    let items: Vec<_> = ImportSource::new(&[p]).unwrap().collect();
    let pid = "11111111-2222-4333-8444-555555555555";
    let key = |i: &Result<ImportItem, FhirError>| match i {
        Ok(ImportItem::Record(r)) => (r.subject.clone(), r.collection.clone(), r.record_id.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(key(&items[0]), (pid.into(), "Patient".into(), pid.into()));
    assert!(
        !items[0]
            .as_ref()
            .unwrap()
            .record()
            .unwrap()
            .resource
            .contains_key("id")
    );
    assert_eq!(
        key(&items[1]),
        (SHARED_SUBJECT.into(), "Group".into(), "g1".into())
    );
    assert_eq!(
        key(&items[2]),
        (pid.into(), "Condition".into(), "c1".into())
    );
    assert_eq!(
        key(&items[3]),
        (SHARED_SUBJECT.into(), "Observation".into(), "o1".into())
    );
    assert!(matches!(
        items[4],
        Ok(ImportItem::Skipped {
            at: Position::Entry(4),
            ..
        })
    ));
    assert!(matches!(
        items[5],
        Err(FhirError::UnresolvedReference {
            at: Position::Entry(5),
            field: "subject",
            ..
        })
    ));
    assert!(matches!(
        items[6],
        Err(FhirError::MissingId {
            at: Position::Entry(6),
            ..
        })
    ));
    assert_eq!(items.len(), 7);
}

#[test]
fn unresolvable_patient_references_outside_bundles_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"resourceType":"Condition","id":"a","subject":{"reference":"urn:uuid:1234"}}"#,
        r#"{"resourceType":"Condition","id":"b","subject":{"reference":"Patient?identifier=x|1"}}"#,
        r#"{"resourceType":"Condition","id":"c","subject":{"type":"Patient","identifier":{"value":"1"}}}"#,
        r#"{"resourceType":"Immunization","id":"d","patient":{"reference":"Patient/not valid"}}"#,
    ];
    let p = write_file(tmp.path(), "u.ndjson", lines.join("\n").as_bytes());
    let items: Vec<_> = ImportSource::new(&[p]).unwrap().collect();
    assert_eq!(items.len(), 4);
    for (n, item) in items.iter().enumerate() {
        assert!(
            matches!(item, Err(FhirError::UnresolvedReference { at: Position::Line(l), .. }) if *l == n as u64 + 1),
            "{item:?}"
        );
    }
}

#[test]
fn non_resources_and_paths() {
    let tmp = tempfile::tempdir().unwrap();
    write_file(
        tmp.path(),
        "a.ndjson",
        b"\xEF\xBB\xBF[1,2]\n{\"eventId\":\"kickoff\"}\n",
    );
    write_file(tmp.path(), "b.json", b"{\"name\":\"package\"}");
    write_file(tmp.path(), "c.ndjson.gz", b"\x1f\x8b");
    write_file(tmp.path(), "d.txt", b"hello");
    std::fs::create_dir(tmp.path().join("sub.ndjson")).unwrap();
    let src = ImportSource::new(&[tmp.path().to_path_buf()]).unwrap();
    let names: Vec<_> = src
        .files()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a.ndjson", "b.json"]);
    let items: Vec<_> = src.collect::<Result<_, _>>().unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|i| matches!(i, ImportItem::Skipped { .. }))
    );
    assert!(matches!(
        ImportSource::new(&[tmp.path().join("d.txt")]),
        Err(FhirError::UnsupportedFile { .. })
    ));
    assert!(matches!(
        ImportSource::new(&[tmp.path().join("missing.ndjson")]),
        Err(FhirError::Io { .. })
    ));
}

#[test]
fn subject_of_reference_forms() {
    let r =
        |field: &str, reference: Value| obj(json!({"resourceType":"X","id":"x", field: reference}));
    let p = "abc-123.x";
    for reference in [
        json!({"reference": format!("Patient/{p}")}),
        json!({"reference": format!("Patient/{p}/_history/3")}),
        json!({"reference": format!("https://fhir.example.org/r4/Patient/{p}")}),
        json!({"reference": format!("http://h/Patient/{p}/_history/1"), "display": "A B"}),
        json!([{"reference": "Group/g"}, {"reference": format!("Patient/{p}")}]),
    ] {
        for field in SUBJECT_FIELDS {
            assert_eq!(
                subject_of(&r(field, reference.clone())).as_deref(),
                Some(p),
                "{reference}"
            );
        }
    }
    for reference in [
        json!({"reference": "Group/g"}),
        json!({"reference": "urn:uuid:abc"}),
        json!({"reference": "#contained"}),
        json!({"reference": "Patient?identifier=a|b"}),
        json!({"reference": "Patient/a:b"}),
        json!({"reference": "Patient/"}),
        json!({"display": "Someone"}),
        json!("Patient/abc"),
    ] {
        assert_eq!(
            subject_of(&r("subject", reference.clone())),
            None,
            "{reference}"
        );
    }
    // A Patient referenced from any other element still owns the resource (it is in the
    // Patient compartment; filing it under the shared subject would dodge erasure).
    assert_eq!(
        subject_of(&r("performer", json!({"reference": "Patient/p"}))).as_deref(),
        Some("p")
    );
    // The first field that names a patient wins.
    let both = obj(json!({"resourceType":"X","subject":{"reference":"Group/g"},
        "patient":{"reference":"Patient/p2"}}));
    assert_eq!(subject_of(&both).as_deref(), Some("p2"));
    let patient =
        obj(json!({"resourceType":"Patient","id":"p9","subject":{"reference":"Patient/zz"}}));
    assert_eq!(subject_of(&patient).as_deref(), Some("p9"));
    let bad = obj(json!({"resourceType":"Patient","id":SHARED_SUBJECT}));
    assert_eq!(subject_of(&bad), None);
}

#[test]
fn record_debug_redacts_resource() {
    let rec = FhirRecord {
        subject: "p".into(),
        collection: "Patient".into(),
        record_id: "p".into(),
        resource: obj(json!({"name": SECRET})),
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
            assert_eq!(subject_of(m).as_deref(), Some(p.id.as_str()), "{t}");
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
    eprintln!("synth sizes: min {min} avg {avg} max {max} bytes");
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
    let got: BTreeSet<_> = records(read_all(&[path]))
        .into_iter()
        .map(|r| (r.subject, r.collection, r.record_id))
        .collect();
    assert_eq!(got, expected);
}

/// Run with `cargo test --release -- --ignored synth_speed --nocapture`; the
/// budget only means something in release mode.
#[test]
#[ignore = "timing; meaningful in release builds only"]
fn synth_speed() {
    let start = std::time::Instant::now();
    let n = generate(1000, 1).map(|p| p.resources.len()).sum::<usize>();
    eprintln!(
        "1000 patients, {n} resources generated in {:?}",
        start.elapsed()
    );
    let start = std::time::Instant::now();
    let bytes: usize = generate(1000, 1)
        .flat_map(|p| p.resources)
        .map(|r| serde_json::to_vec(&r).unwrap().len())
        .sum();
    let elapsed = start.elapsed();
    eprintln!("generated and serialised to {bytes} bytes of JSON in {elapsed:?}");
    assert!(elapsed < std::time::Duration::from_secs(1));
}

/// Guards patient data filed under the shared subject (it would survive the patient's
/// erasure): resources that reference a Patient outside subject/patient/beneficiary
/// belong to that patient.
#[test]
fn compartment_references_outside_the_usual_fields_name_the_patient() {
    for r in [
        json!({"resourceType": "Communication", "id": "c1",
               "recipient": [{"reference": "Patient/aaaa"}]}),
        json!({"resourceType": "Appointment", "id": "a1",
               "participant": [{"actor": {"reference": "Practitioner/p9"}},
                               {"actor": {"reference": "Patient/aaaa"}}]}),
        json!({"resourceType": "Provenance", "id": "v1",
               "target": [{"reference": "Patient/aaaa"}]}),
    ] {
        assert_eq!(
            subject_of(r.as_object().unwrap()).as_deref(),
            Some("aaaa"),
            "{}",
            r["resourceType"]
        );
    }
    let org = json!({"resourceType": "Organization", "id": "o1",
                     "partOf": {"reference": "Organization/o2"}});
    assert_eq!(subject_of(org.as_object().unwrap()), None);
}
