//! Guards confidentiality at rest on real FHIR data (issue 2 acceptance 4, issue 3
//! acceptance 4): no file of a vault holds a patient's name, SSN, MRN or birth date, nor
//! an actor id or subject id, in clear; every resource reads back equal.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{contains, fhir_data_dir, files_under, options, raw_key};
use medvault::{AccessContext, Purpose, RecordKey, Vault};
use serde_json::Value;

/// A distinctive actor id, to be searched for in the files.
const ACTOR: &str = "dr-quintessa-marlowe-7731";

/// The identifying strings of a Patient resource: family and given names, SSN, MRN,
/// birth date.
fn identifiers(p: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in p["name"].as_array().into_iter().flatten() {
        if let Some(f) = name["family"].as_str() {
            out.insert(f.to_owned());
        }
        for g in name["given"].as_array().into_iter().flatten() {
            out.insert(g.as_str().unwrap().to_owned());
        }
    }
    for id in p["identifier"].as_array().into_iter().flatten() {
        let codes: Vec<&str> = id["type"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["code"].as_str())
            .collect();
        if codes.iter().any(|c| *c == "SS" || *c == "MR") {
            out.insert(id["value"].as_str().unwrap().to_owned());
        }
    }
    if let Some(b) = p["birthDate"].as_str() {
        out.insert(b.to_owned());
    }
    out
}

/// Fails naming the file and the kind of secret (not the secret) when any file under
/// `dir` contains any of `needles`.
fn assert_no_file_contains(dir: &Path, needles: &[(String, &str)]) {
    let files = files_under(dir);
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        for (needle, kind) in needles {
            assert!(
                !contains(bytes, needle.as_bytes()),
                "{} contains a {kind} in clear",
                path.display()
            );
        }
    }
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn patient_identities_never_reach_the_disk_in_clear() {
    let data = fhir_data_dir();
    let text = std::fs::read_to_string(data.join("13-patients/Patient.000.ndjson")).unwrap();
    let patients: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(patients.len(), 13);

    let mut needles: Vec<(String, &str)> = vec![(ACTOR.to_owned(), "actor id")];
    for p in &patients {
        let ids = identifiers(p);
        // Family, given, SSN, MRN and birth date each found.
        assert!(ids.len() >= 4, "{} identifiers", ids.len());
        needles.extend(ids.into_iter().map(|s| (s, "patient identifier")));
        needles.push((p["id"].as_str().unwrap().to_owned(), "subject id"));
    }

    // Control: the scanner finds every needle in the source data.
    for (n, kind) in &needles[1..] {
        assert!(
            contains(text.as_bytes(), n.as_bytes()),
            "{kind} not in the source"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let ctx = AccessContext::new(ACTOR, Purpose::Administration);
    let key_of = |p: &Value| {
        let id = p["id"].as_str().unwrap();
        RecordKey::new(id, "Patient", id)
    };
    {
        let vault = Vault::create_with(&dir, raw_key(), options()).unwrap();
        for p in &patients {
            vault.put(&ctx, &key_of(p), p).unwrap();
        }
        vault.sync().unwrap();
    }
    assert_no_file_contains(&dir, &needles);

    // Read back after a reopen (the reads are logged under the actor too).
    {
        let vault = Vault::open_with(&dir, raw_key(), options()).unwrap();
        for p in &patients {
            let got: Value = vault.get(&ctx, &key_of(p)).unwrap();
            assert_eq!(&got, p);
        }
        let listed: BTreeSet<String> = vault.subjects(&ctx).unwrap().into_iter().collect();
        let ids: BTreeSet<String> = patients
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, ids);
        vault.verify(&ctx, None).unwrap();
        vault.sync().unwrap();
    }
    assert_no_file_contains(&dir, &needles);
}
