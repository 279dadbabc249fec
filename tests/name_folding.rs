//! Name search folds every Latin letter (issue "exact fidelity"): a family name typed in
//! plain ASCII finds the patient whose stored name carries ø, ł, đ, ß, æ, œ, ı, þ, ð,
//! ħ, ŀ, ĸ ... (the docs/INDEXES.md "Name folding" table), through the blind index and
//! through the scan that checks it. Expectations are written here, one per letter.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use medvault::{AccessContext, IndexSpec, KeySource, Normalization, Purpose, RecordKey, Vault};
use serde_json::{Value, json};

/// (stored family name, what a clinician types).
const NAMES: &[(&str, &str)] = &[
    ("Søndergård", "Sondergard"),
    ("ØRSTED", "orsted"),
    ("Łukasiewicz", "Lukasiewicz"),
    ("Đoković", "Dokovic"),
    ("Weiß", "Weiss"),
    ("GROẞMANN", "Grossmann"),
    ("Ærøskøbing", "Aeroskobing"),
    ("Œhlenschläger", "Oehlenschlager"),
    ("Yıldız", "Yildiz"),
    ("Þórsdóttir", "Thorsdottir"),
    ("Guðmundsdóttir", "Gudmundsdottir"),
    ("Ħaġar", "Hagar"),
    ("Paŀlarès", "Pallares"),
    ("ĸalâleĸ", "Qalaleq"),
    ("Ŋuyen", "Nuyen"),
    ("Ŧomić", "Tomic"),
    ("Ǿstergaard", "Ostergaard"),
    ("Ɓello", "Bello"),
    ("Ɗangote", "Dangote"),
    ("Ɛkwueme", "Ekwueme"),
    ("Ǝze", "Eze"),
    ("Ə́liyev", "Eliyev"),
];

#[test]
fn ascii_queries_find_names_with_undecomposed_letters() {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create(
        dir.path().join("v"),
        KeySource::raw([3; 32]),
        medvault::danger::insecure_kdf_params(),
    )
    .unwrap();
    let ctx = AccessContext::new("fold-test", Purpose::Care);
    let spec =
        IndexSpec::new("Patient", "family", &["name[].family"], Normalization::Name).unwrap();
    v.add_index(&ctx, spec, &mut |_| {}).unwrap();
    for (i, (family, _)) in NAMES.iter().enumerate() {
        let key = RecordKey::new(format!("p{i}"), "Patient", format!("p{i}"));
        v.put(
            &ctx,
            &key,
            &json!({"resourceType": "Patient", "name": [{"family": family}]}),
        )
        .unwrap();
    }
    for (i, (family, typed)) in NAMES.iter().enumerate() {
        for query in [*typed, &typed.to_uppercase(), family] {
            let hits: Vec<(RecordKey, Value)> =
                v.find(&ctx, "Patient", "family", &[query]).unwrap();
            assert_eq!(hits.len(), 1, "{family}: query {query:?}");
            assert_eq!(hits[0].0.subject, format!("p{i}"), "{family}");
            assert_eq!(hits[0].1["name"][0]["family"], *family, "stored as written");
            let scanned: Vec<(RecordKey, Value)> =
                v.find_by_scan(&ctx, "Patient", "family", &[query]).unwrap();
            assert_eq!(scanned.len(), 1, "{family}: scan, query {query:?}");
        }
    }
}
