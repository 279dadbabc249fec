//! The demo's input: synthetic patients from `medvault_fhir::synth`, written as FHIR
//! Bulk Data NDJSON files (one file per resource type), as an EHR export would deliver
//! them, so that the demo imports through the same path as `medvault import`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use medvault::RecordKey;
use medvault_fhir::synth;
use serde_json::Value;

use crate::exit::{CliResult, Failure};

/// What was generated, for the checks that follow the import.
pub struct Dataset {
    /// Patient ids, in generation order.
    pub patients: Vec<String>,
    /// Every record key, in generation order.
    pub keys: Vec<RecordKey>,
    /// Resources per type.
    pub per_type: BTreeMap<String, u64>,
    /// Bytes of NDJSON written.
    pub bytes: u64,
    /// Files written.
    pub files: usize,
    /// Direct identifiers of every patient (names, MRN, SSN, phone, e-mail, street,
    /// birth date) and the patient ids: none may appear in a vault file.
    pub needles: Vec<String>,
    /// The resources of the first patient, to compare with what the vault returns.
    pub first_patient: Vec<Value>,
}

/// Generates `n` patients from `seed` into `dir/<Type>.ndjson`.
pub fn write(dir: &Path, n: usize, seed: u64) -> CliResult<Dataset> {
    std::fs::create_dir_all(dir)?;
    let mut writers: BTreeMap<String, BufWriter<File>> = BTreeMap::new();
    let mut ds = Dataset {
        patients: Vec::with_capacity(n),
        keys: Vec::new(),
        per_type: BTreeMap::new(),
        bytes: 0,
        files: 0,
        needles: Vec::new(),
        first_patient: Vec::new(),
    };
    for p in synth::generate(n, seed) {
        for r in &p.resources {
            let t = r["resourceType"]
                .as_str()
                .ok_or_else(|| Failure::other("synthetic resource without resourceType"))?
                .to_owned();
            let id = r["id"]
                .as_str()
                .ok_or_else(|| Failure::other("synthetic resource without id"))?;
            ds.keys.push(RecordKey::new(p.id.as_str(), t.as_str(), id));
            let line = serde_json::to_vec(r).map_err(|_| Failure::other("JSON encoding failed"))?;
            ds.bytes += line.len() as u64 + 1;
            *ds.per_type.entry(t.clone()).or_insert(0) += 1;
            let w = match writers.get_mut(&t) {
                Some(w) => w,
                None => {
                    let f = File::create(dir.join(format!("{t}.ndjson")))?;
                    writers.entry(t).or_insert(BufWriter::new(f))
                }
            };
            w.write_all(&line)?;
            w.write_all(b"\n")?;
        }
        if ds.patients.is_empty() {
            ds.first_patient = p.resources.clone();
        }
        ds.needles.extend(p.identifiers.iter().cloned());
        ds.needles.push(p.id.clone());
        ds.patients.push(p.id);
    }
    ds.files = writers.len();
    for (_, mut w) in writers {
        w.flush()?;
    }
    Ok(ds)
}
