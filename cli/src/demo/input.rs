//! The demo's input as it sits on disk: FHIR Bulk Data NDJSON files, real (the Synthea
//! exports of the shared data set, when found) or synthetic (written by
//! [`super::dataset`]). Read here independently of the import, so that what the vault
//! returns can be checked against the input's own bytes (the oracle is the file, not the
//! parser under test).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::exit::{CliResult, Failure};

/// Shortest direct identifier searched for: shorter strings match by chance.
const MIN_NEEDLE: usize = 6;

/// The input files and what the checks need from them.
pub struct Input {
    /// The NDJSON files, sorted (Bulk Data `log.ndjson` files left out).
    pub files: Vec<PathBuf>,
    /// Bytes of the files.
    pub bytes: u64,
    /// The exact bytes of every resource line, by `(resourceType, id)`.
    pub lines: BTreeMap<(String, String), Vec<u8>>,
    /// Resources per type.
    pub per_type: BTreeMap<String, u64>,
    /// Distinct patient ids, in file order (a Patient present in two files counts once).
    pub patients: Vec<String>,
    /// Resource lines in the files (a resource present in two files counts twice).
    pub lines_read: u64,
    /// Direct identifiers of every patient (names, identifier values, phone numbers,
    /// e-mail addresses, street lines) and the patient ids: none may appear in a vault
    /// file or in a research export. Each at least [`MIN_NEEDLE`] bytes.
    pub needles: Vec<String>,
}

impl Input {
    /// Resources in the input.
    pub fn resources(&self) -> u64 {
        self.lines.len() as u64
    }
}

/// Every `*.ndjson` file of `dirs` (not recursive; `log.ndjson` skipped).
fn ndjson_files(dirs: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let mut files = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if p.is_file() && name.ends_with(".ndjson") && name != "log.ndjson" {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn push_needle(needles: &mut Vec<String>, s: Option<&str>) {
    if let Some(s) = s
        && s.len() >= MIN_NEEDLE
    {
        needles.push(s.to_owned());
    }
}

/// The direct identifiers of a Patient resource (FHIR R4 Patient: `name`, `identifier`,
/// `telecom`, `address`).
fn patient_needles(p: &Value, out: &mut Vec<String>) {
    for n in p["name"].as_array().into_iter().flatten() {
        push_needle(out, n["family"].as_str());
        for g in n["given"].as_array().into_iter().flatten() {
            push_needle(out, g.as_str());
        }
    }
    for i in p["identifier"].as_array().into_iter().flatten() {
        push_needle(out, i["value"].as_str());
    }
    for t in p["telecom"].as_array().into_iter().flatten() {
        push_needle(out, t["value"].as_str());
    }
    for a in p["address"].as_array().into_iter().flatten() {
        for l in a["line"].as_array().into_iter().flatten() {
            push_needle(out, l.as_str());
        }
    }
}

/// Reads the NDJSON files of `dirs`.
pub fn read(dirs: &[PathBuf]) -> CliResult<Input> {
    let files = ndjson_files(dirs)?;
    if files.is_empty() {
        return Err(Failure::usage("the demo's input holds no .ndjson file"));
    }
    let mut input = Input {
        files: Vec::new(),
        bytes: 0,
        lines: BTreeMap::new(),
        per_type: BTreeMap::new(),
        patients: Vec::new(),
        lines_read: 0,
        needles: Vec::new(),
    };
    let mut seen_patients = std::collections::HashSet::new();
    for f in &files {
        let text = std::fs::read(f)?;
        input.bytes += text.len() as u64;
        for line in text.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value = serde_json::from_slice(line).map_err(|_| {
                Failure::other(format!("demo input {}: a line is not JSON", f.display()))
            })?;
            let (Some(t), Some(id)) = (v["resourceType"].as_str(), v["id"].as_str()) else {
                continue;
            };
            input.lines_read += 1;
            if t == "Patient" && seen_patients.insert(id.to_owned()) {
                input.patients.push(id.to_owned());
                input.needles.push(id.to_owned());
                patient_needles(&v, &mut input.needles);
            }
            *input.per_type.entry(t.to_owned()).or_insert(0) += 1;
            input
                .lines
                .insert((t.to_owned(), id.to_owned()), line.to_vec());
        }
    }
    input.needles.sort();
    input.needles.dedup();
    input.files = files;
    Ok(input)
}

/// The shared data set's Synthea exports, when found: `MEDVAULT_FHIR_DATA`, else
/// `../shared/data/fhir-r4-ndjson` from the current directory, else the same path next
/// to the workspace this binary was built from. `None` when none holds both folders.
pub fn find_real() -> Option<Vec<PathBuf>> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("MEDVAULT_FHIR_DATA") {
        roots.push(PathBuf::from(d));
    }
    roots.push(PathBuf::from("../shared/data/fhir-r4-ndjson"));
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fhir-r4-ndjson"));
    roots.into_iter().find_map(|r| {
        let dirs = vec![r.join("13-patients"), r.join("1144-patients")];
        dirs.iter().all(|d| d.is_dir()).then_some(dirs)
    })
}
