//! Synthetic FHIR R4 patients for demos, tests and benchmarks.
//!
//! Everything here is made up by this code: the name lists, addresses and
//! identifiers are invented; clinical codes are real public codes (SNOMED CT,
//! LOINC, RxNorm, UCUM) with display text, picked at random and not
//! clinically coherent. None of it describes a real person.
//!
//! Names follow Synthea's habit of appending three digits to a base name
//! (`"Okonkwo482"`), so that a byte scan of storage files for a patient's
//! identifiers finds only that patient's data, never a common word.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::civil::civil_from_days;

/// One synthetic patient and all of its resources.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthPatient {
    /// The Patient's logical id (UUID-shaped, FHIR R4 §2.24.0.1).
    pub id: String,
    /// FHIR R4 resources as JSON objects: the Patient first, then its
    /// Conditions (2–6), Encounters (3–10), MedicationRequests (1–5) and
    /// Observations (4–12). Every non-Patient resource references the
    /// patient as `"subject": {"reference": "Patient/<id>"}`. About 10–30 KiB
    /// of JSON in total.
    pub resources: Vec<Value>,
    /// Every direct identifier written into the Patient resource (family and
    /// given names, MRN, SSN, phone, email, street line, birth date), each as
    /// it appears verbatim in the Patient's JSON, so that callers can check
    /// that none of them appears in plaintext in encrypted storage.
    pub identifiers: Vec<String>,
}

/// Generates `n` synthetic patients from `seed`.
///
/// Deterministic: the same `(n, seed)` yields the same patients within one
/// build (the output depends on `rand::rngs::StdRng`, whose algorithm may
/// change between `rand` releases). Patient `i` depends only on `(seed, i)`,
/// so a prefix of a longer run equals a shorter run. Lazy: patients are
/// built as the iterator is advanced.
pub fn generate(n: usize, seed: u64) -> SynthPatients {
    SynthPatients { seed, next: 0, n }
}

/// Iterator returned by [`generate`].
#[derive(Debug, Clone)]
pub struct SynthPatients {
    seed: u64,
    next: usize,
    n: usize,
}

impl Iterator for SynthPatients {
    type Item = SynthPatient;

    fn next(&mut self) -> Option<SynthPatient> {
        if self.next >= self.n {
            return None;
        }
        let i = self.next as u64;
        self.next += 1;
        let mut rng = StdRng::seed_from_u64(mix(self.seed, i));
        Some(patient(&mut rng))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.n - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for SynthPatients {}
impl std::iter::FusedIterator for SynthPatients {}

/// SplitMix64 finaliser over `(seed, index)`, so that neighbouring indices
/// get unrelated RNG streams.
fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GIVEN_FEMALE: &[&str] = &[
    "Adaeze",
    "Brielle",
    "Corinna",
    "Delphine",
    "Esperanza",
    "Fenella",
    "Giedre",
    "Halona",
    "Ingeborg",
    "Jacinta",
    "Kalani",
    "Leocadia",
    "Marisol",
    "Noemi",
    "Oriana",
    "Perpetua",
    "Quilla",
    "Rosalind",
    "Saoirse",
    "Thandiwe",
    "Ulrika",
    "Valentina",
    "Wilhelmina",
    "Yesenia",
];
const GIVEN_MALE: &[&str] = &[
    "Anselm",
    "Bartholomew",
    "Cormac",
    "Desmond",
    "Emeka",
    "Florian",
    "Gideon",
    "Horatio",
    "Ignatius",
    "Jericho",
    "Kwabena",
    "Leander",
    "Mattias",
    "Nikodem",
    "Octavio",
    "Peregrine",
    "Quentin",
    "Rasmus",
    "Sebastiano",
    "Tobiah",
    "Umberto",
    "Vasilios",
    "Wendell",
    "Xavi",
];
const FAMILY: &[&str] = &[
    "Abernathy",
    "Bellweather",
    "Castellano",
    "Dziedzic",
    "Eberhardt",
    "Fairbrother",
    "Gallagher",
    "Haverford",
    "Iwasaki",
    "Jankowski",
    "Kowalczyk",
    "Lindqvist",
    "Marchetti",
    "Nakashima",
    "Okonkwo",
    "Pemberton",
    "Quintanilla",
    "Rutherford",
    "Szymanski",
    "Thistlewood",
    "Umarov",
    "Vanterpool",
    "Whitlock",
    "Yarborough",
    "Zielinski",
];
const STREETS: &[&str] = &[
    "Alder",
    "Birchwood",
    "Cobblestone",
    "Driftwood",
    "Elmhurst",
    "Foxglove",
    "Granite",
    "Heron",
    "Ironbark",
    "Juniper",
    "Kestrel",
    "Larkspur",
    "Millpond",
    "Nettle",
];
const STREET_KINDS: &[&str] = &["Street", "Avenue", "Lane", "Court", "Way", "Terrace"];
/// (city, state, ZIP prefix): invented towns.
const CITIES: &[(&str, &str, &str)] = &[
    ("Fernhollow", "MA", "017"),
    ("Kettle Ridge", "MA", "012"),
    ("Lowmarsh", "VT", "051"),
    ("Brackenford", "NH", "032"),
    ("Stonegate Falls", "ME", "042"),
    ("Wrenfield", "CT", "062"),
];
const CLINICS: &[&str] = &[
    "Fernhollow Family Practice",
    "Kettle Ridge Community Health",
    "Lowmarsh Regional Hospital",
    "Brackenford Medical Group",
    "Stonegate Falls Clinic",
];
const CLINICIANS: &[&str] = &[
    "Dr. Imelda Quarrington",
    "Dr. Osric Vanterlinde",
    "Dr. Priyanka Haldane",
    "Dr. Tiberius Okafor-Lund",
    "Dr. Ysolde Marchbank",
    "Dr. Caspian Wetherell",
];

const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const UCUM: &str = "http://unitsofmeasure.org";

/// SNOMED CT findings/disorders: (code, display).
const CONDITIONS: &[(&str, &str)] = &[
    ("44054006", "Diabetes mellitus type 2"),
    ("59621000", "Essential hypertension"),
    ("195967001", "Asthma"),
    ("13645005", "Chronic obstructive lung disease"),
    ("55822004", "Hyperlipidemia"),
    ("35489007", "Depressive disorder"),
    ("197480006", "Anxiety disorder"),
    ("444814009", "Viral sinusitis"),
    ("10509002", "Acute bronchitis"),
    ("195662009", "Acute viral pharyngitis"),
    ("68566005", "Urinary tract infectious disease"),
    ("49436004", "Atrial fibrillation"),
    ("53741008", "Coronary arteriosclerosis"),
    ("69896004", "Rheumatoid arthritis"),
    ("239873007", "Osteoarthritis of knee"),
    ("40930008", "Hypothyroidism"),
    ("271737000", "Anemia"),
    ("37796009", "Migraine"),
];

/// SNOMED CT encounter types with their v3 ActCode class:
/// (code, display, class code, class display).
const ENCOUNTERS: &[(&str, &str, &str, &str)] = &[
    ("185349003", "Encounter for check up", "AMB", "ambulatory"),
    (
        "162673000",
        "General examination of patient",
        "AMB",
        "ambulatory",
    ),
    ("185345009", "Encounter for symptom", "AMB", "ambulatory"),
    ("390906007", "Follow-up encounter", "AMB", "ambulatory"),
    ("50849002", "Emergency room admission", "EMER", "emergency"),
    (
        "32485007",
        "Hospital admission",
        "IMP",
        "inpatient encounter",
    ),
];

/// RxNorm clinical drugs: (code, display, dose text, times per day).
const MEDICATIONS: &[(&str, &str, &str, u32)] = &[
    (
        "860975",
        "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
        "Take 1 tablet by mouth once daily with the evening meal",
        1,
    ),
    (
        "314076",
        "lisinopril 10 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        1,
    ),
    (
        "197361",
        "amlodipine 5 MG Oral Tablet",
        "Take 1 tablet by mouth once daily",
        1,
    ),
    (
        "314231",
        "simvastatin 10 MG Oral Tablet",
        "Take 1 tablet by mouth at bedtime",
        1,
    ),
    (
        "310798",
        "hydrochlorothiazide 25 MG Oral Tablet",
        "Take 1 tablet by mouth every morning",
        1,
    ),
    (
        "313782",
        "acetaminophen 325 MG Oral Tablet",
        "Take 2 tablets by mouth every 6 hours as needed for pain",
        4,
    ),
    (
        "197806",
        "ibuprofen 600 MG Oral Tablet",
        "Take 1 tablet by mouth every 8 hours with food",
        3,
    ),
    (
        "308182",
        "amoxicillin 250 MG Oral Capsule",
        "Take 1 capsule by mouth three times daily for 10 days",
        3,
    ),
    (
        "966222",
        "levothyroxine sodium 0.075 MG Oral Tablet",
        "Take 1 tablet by mouth every morning on an empty stomach",
        1,
    ),
    (
        "855332",
        "warfarin sodium 5 MG Oral Tablet",
        "Take 1 tablet by mouth once daily or as directed",
        1,
    ),
];

/// LOINC observations: (code, display, category, UCUM unit, low, high, decimals).
const OBSERVATIONS: &[(&str, &str, &str, &str, f64, f64, i32)] = &[
    (
        "8302-2",
        "Body height",
        "vital-signs",
        "cm",
        150.0,
        195.0,
        1,
    ),
    (
        "29463-7",
        "Body weight",
        "vital-signs",
        "kg",
        48.0,
        120.0,
        1,
    ),
    (
        "39156-5",
        "Body mass index (BMI) [Ratio]",
        "vital-signs",
        "kg/m2",
        18.0,
        38.0,
        1,
    ),
    (
        "8867-4",
        "Heart rate",
        "vital-signs",
        "/min",
        52.0,
        110.0,
        0,
    ),
    (
        "9279-1",
        "Respiratory rate",
        "vital-signs",
        "/min",
        12.0,
        22.0,
        0,
    ),
    (
        "8310-5",
        "Body temperature",
        "vital-signs",
        "Cel",
        36.1,
        38.4,
        1,
    ),
    (
        "59408-5",
        "Oxygen saturation in Arterial blood by Pulse oximetry",
        "vital-signs",
        "%",
        91.0,
        100.0,
        0,
    ),
    (
        "8480-6",
        "Systolic blood pressure",
        "vital-signs",
        "mm[Hg]",
        100.0,
        170.0,
        0,
    ),
    (
        "8462-4",
        "Diastolic blood pressure",
        "vital-signs",
        "mm[Hg]",
        60.0,
        105.0,
        0,
    ),
    (
        "4548-4",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        "laboratory",
        "%",
        4.6,
        9.5,
        1,
    ),
    (
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "laboratory",
        "mg/dL",
        70.0,
        190.0,
        0,
    ),
    (
        "2093-3",
        "Cholesterol [Mass/volume] in Serum or Plasma",
        "laboratory",
        "mg/dL",
        140.0,
        280.0,
        0,
    ),
    (
        "2571-8",
        "Triglyceride [Mass/volume] in Serum or Plasma",
        "laboratory",
        "mg/dL",
        60.0,
        300.0,
        0,
    ),
    (
        "2085-9",
        "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
        "laboratory",
        "mg/dL",
        30.0,
        90.0,
        0,
    ),
    (
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "laboratory",
        "mg/dL",
        0.5,
        1.8,
        2,
    ),
    (
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        "laboratory",
        "g/dL",
        10.5,
        17.5,
        1,
    ),
    (
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "laboratory",
        "mmol/L",
        3.4,
        5.3,
        1,
    ),
    (
        "2951-2",
        "Sodium [Moles/volume] in Serum or Plasma",
        "laboratory",
        "mmol/L",
        133.0,
        146.0,
        0,
    ),
];

/// Days from 1970-01-01 of the window encounters fall in (2012-01-01 to
/// 2024-12-31).
const CARE_START_DAY: i64 = 15_340;
const CARE_END_DAY: i64 = 20_088;

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// A UUID-shaped (version 4 layout) id from the RNG.
fn uuid(rng: &mut StdRng) -> String {
    let mut b: [u8; 16] = rng.r#gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

fn date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// FHIR `dateTime` with a UTC offset (FHIR R4 §2.24.0.1 "dateTime").
fn date_time(days: i64, minute_of_day: u32) -> String {
    format!(
        "{}T{:02}:{:02}:00+00:00",
        date(days),
        minute_of_day / 60,
        minute_of_day % 60
    )
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [coding(system, code, display)], "text": display })
}

fn narrative(text: &str) -> Value {
    json!({
        "status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{text}</div>"),
    })
}

fn round(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

struct Visit {
    id: String,
    day: i64,
    start_min: u32,
}

fn patient(rng: &mut StdRng) -> SynthPatient {
    let id = uuid(rng);
    let female = rng.gen_bool(0.5);
    let given_base = pick(rng, if female { GIVEN_FEMALE } else { GIVEN_MALE });
    let given = format!("{given_base}{}", rng.gen_range(100..1000));
    let middle_base = pick(rng, if female { GIVEN_FEMALE } else { GIVEN_MALE });
    let middle = format!("{middle_base}{}", rng.gen_range(100..1000));
    let family = format!("{}{}", pick(rng, FAMILY), rng.gen_range(100..1000));
    // 999-xx-xxxx is never issued by the US SSA, so it can't be anyone's SSN.
    let ssn = format!(
        "999-{:02}-{:04}",
        rng.gen_range(10..100),
        rng.gen_range(1000..10_000)
    );
    let mrn = format!("MV{:08}", rng.gen_range(10_000_000..100_000_000u32));
    // 555-01xx numbers are reserved for fiction.
    let phone = format!(
        "555-01{:02}-{:04}",
        rng.gen_range(0..100),
        rng.gen_range(0..10_000)
    );
    let email = format!(
        "{}.{}@example.org",
        given.to_ascii_lowercase(),
        family.to_ascii_lowercase()
    );
    let street = format!(
        "{} {} {}",
        rng.gen_range(10..9990),
        pick(rng, STREETS),
        pick(rng, STREET_KINDS)
    );
    let (city, state, zip3) = *pick(rng, CITIES);
    let zip = format!("{zip3}{:02}", rng.gen_range(0..100));
    let birth_day = rng.gen_range(-14_600..17_900); // 1930 to 2019
    let birth_date = date(birth_day);
    let gender = if female { "female" } else { "male" };
    let prefix = match (female, birth_day < 10_950) {
        (_, false) => None,
        (true, true) => Some("Ms."),
        (false, true) => Some("Mr."),
    };
    let mut name = json!({ "use": "official", "family": family, "given": [given, middle] });
    if let Some(p) = prefix {
        name["prefix"] = json!([p]);
    }
    let (marital_code, marital_display) = if birth_day < 7_300 && rng.gen_bool(0.6) {
        ("M", "Married")
    } else {
        ("S", "Never Married")
    };
    let patient = json!({
        "resourceType": "Patient",
        "id": id,
        "meta": { "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"] },
        "text": narrative(&format!("Generated by medvault demo. {given} {family}, {gender}, born {birth_date}.")),
        "identifier": [
            { "system": "urn:medvault:demo:patient", "value": id },
            {
                "type": concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
                "system": "urn:medvault:demo:mrn",
                "value": mrn,
            },
            {
                "type": concept("http://terminology.hl7.org/CodeSystem/v2-0203", "SS", "Social Security Number"),
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": ssn,
            },
        ],
        "name": [name],
        "telecom": [
            { "system": "phone", "value": phone, "use": "home" },
            { "system": "email", "value": email },
        ],
        "gender": gender,
        "birthDate": birth_date,
        "address": [{
            "use": "home",
            "line": [street],
            "city": city,
            "state": state,
            "postalCode": zip,
            "country": "US",
        }],
        "maritalStatus": concept("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", marital_code, marital_display),
        "communication": [{
            "language": concept("urn:ietf:bcp:47", "en-US", "English (United States)"),
        }],
    });
    let identifiers = vec![
        family.clone(),
        given.clone(),
        middle,
        mrn,
        ssn,
        phone,
        email,
        street,
        birth_date,
    ];

    let subject =
        json!({ "reference": format!("Patient/{id}"), "display": format!("{given} {family}") });
    let first_day = birth_day.max(CARE_START_DAY);
    let mut visits: Vec<Visit> = (0..rng.gen_range(3..=10))
        .map(|_| Visit {
            id: uuid(rng),
            day: rng.gen_range(first_day..=CARE_END_DAY),
            start_min: rng.gen_range(7 * 60..18 * 60),
        })
        .collect();
    visits.sort_by_key(|v| (v.day, v.start_min));

    let conditions: Vec<(String, Value)> = (0..rng.gen_range(2..=6))
        .map(|_| {
            let cid = uuid(rng);
            let visit = pick(rng, &visits);
            let (code, display) = *pick(rng, CONDITIONS);
            let resolved = rng.gen_bool(0.3);
            let mut c = json!({
                "resourceType": "Condition",
                "id": cid,
                "meta": { "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition"] },
                "text": narrative(display),
                "clinicalStatus": concept(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    if resolved { "resolved" } else { "active" },
                    if resolved { "Resolved" } else { "Active" },
                ),
                "verificationStatus": concept(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
                "category": [concept(
                    "http://terminology.hl7.org/CodeSystem/condition-category",
                    "encounter-diagnosis", "Encounter Diagnosis")],
                "code": concept(SNOMED, code, display),
                "subject": subject,
                "encounter": { "reference": format!("Encounter/{}", visit.id) },
                "onsetDateTime": date_time(visit.day, visit.start_min),
                "recordedDate": date_time(visit.day, visit.start_min + 20),
            });
            if resolved {
                c["abatementDateTime"] =
                    json!(date_time(visit.day + rng.gen_range(7..120), visit.start_min));
            }
            (cid, c)
        })
        .collect();

    let encounters = visits.iter().map(|v| {
        let (code, display, class, class_display) = *pick(rng, ENCOUNTERS);
        let minutes = if class == "IMP" { 60 * 24 * rng.gen_range(1..5) } else { rng.gen_range(15..60) };
        let end = v.start_min + minutes;
        let clinic = *pick(rng, CLINICS);
        json!({
            "resourceType": "Encounter",
            "id": v.id,
            "meta": { "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter"] },
            "identifier": [{ "system": "urn:medvault:demo:encounter", "value": v.id }],
            "status": "finished",
            "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", class, class_display),
            "type": [concept(SNOMED, code, display)],
            "subject": subject,
            "participant": [{
                "type": [concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "PPRF", "primary performer")],
                "individual": { "display": pick(rng, CLINICIANS) },
            }],
            "period": {
                "start": date_time(v.day, v.start_min),
                "end": date_time(v.day + i64::from(end / 1440), end % 1440),
            },
            "location": [{ "location": { "display": clinic } }],
            "serviceProvider": { "display": clinic },
        })
    }).collect::<Vec<_>>();

    let medications = (0..rng.gen_range(1..=5)).map(|_| {
        let (code, display, instructions, per_day) = *pick(rng, MEDICATIONS);
        let visit = pick(rng, &visits);
        let (reason_id, _) = pick(rng, &conditions);
        let status = *pick(rng, &["active", "completed", "stopped"]);
        json!({
            "resourceType": "MedicationRequest",
            "id": uuid(rng),
            "meta": { "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-medicationrequest"] },
            "status": status,
            "intent": "order",
            "category": [concept("http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                "community", "Community")],
            "medicationCodeableConcept": concept(RXNORM, code, display),
            "subject": subject,
            "encounter": { "reference": format!("Encounter/{}", visit.id) },
            "authoredOn": date_time(visit.day, visit.start_min + 25),
            "requester": { "display": pick(rng, CLINICIANS) },
            "reasonReference": [{ "reference": format!("Condition/{reason_id}") }],
            "dosageInstruction": [{
                "sequence": 1,
                "text": instructions,
                "timing": { "repeat": { "frequency": per_day, "period": 1, "periodUnit": "d" } },
                "asNeededBoolean": per_day == 4,
                "doseAndRate": [{
                    "type": concept("http://terminology.hl7.org/CodeSystem/dose-rate-type",
                        "ordered", "Ordered"),
                    "doseQuantity": { "value": 1 },
                }],
            }],
        })
    }).collect::<Vec<_>>();

    let observations = (0..rng.gen_range(4..=12))
        .map(|_| {
            let &(code, display, category, unit, lo, hi, decimals) = pick(rng, OBSERVATIONS);
            let visit = pick(rng, &visits);
            let value = round(rng.gen_range(lo..hi), decimals);
            let (category_display, profile) = if category == "laboratory" {
                (
                    "Laboratory",
                    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab",
                )
            } else {
                (
                    "Vital Signs",
                    "http://hl7.org/fhir/StructureDefinition/vitalsigns",
                )
            };
            json!({
                "resourceType": "Observation",
                "id": uuid(rng),
                "meta": { "profile": [profile] },
                "status": "final",
                "category": [concept("http://terminology.hl7.org/CodeSystem/observation-category",
                    category, category_display)],
                "code": concept(LOINC, code, display),
                "subject": subject,
                "encounter": { "reference": format!("Encounter/{}", visit.id) },
                "effectiveDateTime": date_time(visit.day, visit.start_min + 10),
                "issued": date_time(visit.day, visit.start_min + 40),
                "valueQuantity": { "value": value, "unit": unit, "system": UCUM, "code": unit },
            })
        })
        .collect::<Vec<_>>();

    let mut resources = Vec::with_capacity(
        1 + conditions.len() + encounters.len() + medications.len() + observations.len(),
    );
    resources.push(patient);
    resources.extend(conditions.into_iter().map(|(_, c)| c));
    resources.extend(encounters);
    resources.extend(medications);
    resources.extend(observations);
    SynthPatient {
        id,
        resources,
        identifiers,
    }
}
