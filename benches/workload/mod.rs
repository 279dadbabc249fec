//! The benchmark workload shared by every bench target: deterministic records of about
//! 1 KiB (JSON) with 12 top-level fields, ten per subject, generated from their index
//! alone so that a million of them never have to sit in memory at once.

#![allow(dead_code)] // each bench target uses a different part of this module

use medvault::RecordKey;
use serde::{Deserialize, Serialize};

/// Records per subject (1M records = 100k subjects, as in the scale run).
pub const RECORDS_PER_SUBJECT: u64 = 10;

/// A clinical record of 12 top-level fields, about 1 KiB once JSON-encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rec {
    pub mrn: String,
    pub family: String,
    pub given: String,
    pub birth_date: String,
    pub sex: String,
    pub address: String,
    pub phone: String,
    pub diagnoses: Vec<String>,
    pub medications: Vec<String>,
    pub vitals: Vec<f64>,
    pub allergies: String,
    pub note: String,
}

/// The one field "get one field" reads.
pub const ONE_FIELD: &str = "birth_date";

/// What "get one field" deserializes into (serde skips the others on the raw paths).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneField {
    pub birth_date: String,
}

const FAMILY: &[&str] = &[
    "Nguyen", "Martin", "Bernard", "Dubois", "Schmidt", "Rossi", "Garcia", "Kowalski", "Jansen",
    "Silva", "Novak", "Larsen",
];
const GIVEN: &[&str] = &[
    "Anna", "Louis", "Chloe", "Mateo", "Ines", "Noah", "Lea", "Hugo", "Emma", "Jonas",
];
const CODES: &[&str] = &[
    "E11.9 Type 2 diabetes mellitus without complications",
    "I10 Essential (primary) hypertension",
    "J45.909 Unspecified asthma, uncomplicated",
    "M54.5 Low back pain",
    "F41.1 Generalized anxiety disorder",
    "K21.9 Gastro-esophageal reflux disease without esophagitis",
    "N39.0 Urinary tract infection, site not specified",
    "E78.5 Hyperlipidemia, unspecified",
];
const MEDS: &[&str] = &[
    "metformin 500 mg oral tablet, twice daily",
    "lisinopril 10 mg oral tablet, once daily",
    "salbutamol 100 mcg inhaler, as needed",
    "atorvastatin 20 mg oral tablet, at night",
    "omeprazole 20 mg capsule, before breakfast",
    "sertraline 50 mg oral tablet, once daily",
];
const WORDS: &[&str] = &[
    "patient",
    "reports",
    "mild",
    "pain",
    "since",
    "last",
    "visit",
    "no",
    "fever",
    "blood",
    "pressure",
    "stable",
    "advised",
    "follow-up",
    "in",
    "three",
    "weeks",
    "tolerates",
    "medication",
    "well",
    "sleep",
    "improved",
    "denies",
    "chest",
];

/// SplitMix64: a tiny deterministic generator, so records depend on their index only.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// The key of record `i`: subject `patient-<i/10>`, collection `Observation`.
pub fn key(i: u64) -> RecordKey {
    RecordKey::new(
        format!("patient-{:08}", i / RECORDS_PER_SUBJECT),
        "Observation",
        format!("obs-{i:010}"),
    )
}

/// The subject id of subject number `s`.
pub fn subject(s: u64) -> String {
    format!("patient-{s:08}")
}

/// The key raw stores (sled, SQLite) use: the three ids joined by NUL.
pub fn raw_key(k: &RecordKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(k.subject.len() + k.collection.len() + k.record_id.len() + 2);
    v.extend_from_slice(k.subject.as_bytes());
    v.push(0);
    v.extend_from_slice(k.collection.as_bytes());
    v.push(0);
    v.extend_from_slice(k.record_id.as_bytes());
    v
}

/// Record `i` (about 1 KiB of JSON, 12 fields).
pub fn record(i: u64) -> Rec {
    let mut m = Mix(i ^ 0x6d65_6476_6175_6c74);
    let s = i / RECORDS_PER_SUBJECT;
    let mut note = String::with_capacity(560);
    while note.len() < 520 {
        note.push_str(m.pick(WORDS));
        note.push(' ');
    }
    Rec {
        mrn: format!("MRN-{s:010}"),
        family: FAMILY[(s % FAMILY.len() as u64) as usize].to_owned(),
        given: GIVEN[(s % GIVEN.len() as u64) as usize].to_owned(),
        birth_date: format!("19{:02}-{:02}-{:02}", s % 100, 1 + s % 12, 1 + s % 28),
        sex: if s.is_multiple_of(2) {
            "female"
        } else {
            "male"
        }
        .to_owned(),
        address: format!(
            "{} rue des Lilas, {:05} Lyon, France",
            1 + s % 200,
            69000 + s % 10
        ),
        phone: format!(
            "+33 4 {:02} {:02} {:02} {:02}",
            s % 100,
            (s / 7) % 100,
            i % 100,
            42
        ),
        diagnoses: (0..2).map(|_| m.pick(CODES).to_owned()).collect(),
        medications: (0..2).map(|_| m.pick(MEDS).to_owned()).collect(),
        vitals: (0..6).map(|_| (m.next() % 20_000) as f64 / 100.0).collect(),
        allergies: "penicillin (rash, 2009); latex (contact dermatitis)".to_owned(),
        note,
    }
}

/// Compact JSON bytes of a record (what raw stores hold; the vault's field plaintexts
/// are JSON text too).
pub fn plain<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize to JSON")
}

/// Decodes JSON bytes into `T`.
pub fn from_plain<T: for<'de> Deserialize<'de>>(b: &[u8]) -> T {
    serde_json::from_slice(b).expect("stored records decode")
}

/// A deterministic permutation-ish sample of `m` indices in `0..n` (for random reads).
pub fn sample(n: u64, m: usize, seed: u64) -> Vec<u64> {
    let mut g = Mix(seed);
    (0..m).map(|_| g.next() % n.max(1)).collect()
}

/// The number in environment variable `name` (underscores allowed: `100_000`), or
/// `default` when it is unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}
