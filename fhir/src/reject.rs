//! The reject file: NDJSON, one FHIR R4 OperationOutcome per rejected input position,
//! as the bulk `$import` convention writes its error files (docs/FHIR.md section 6).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::FhirError;
use crate::import::RejectSink;

/// One OperationOutcome line (without the newline) describing `e`: `issue.code` from
/// the FHIR `issue-type` value set, `details.text` the fixed reason, `diagnostics`
/// file, position and reason, `location` the file and the line or entry,
/// `expression` the Bundle entry when there is one. Never any input content.
pub fn operation_outcome(e: &FhirError) -> String {
    let file = e.path().display().to_string();
    let at = e.position();
    let mut location = vec![file.clone()];
    if let Some(n) = at.and_then(|p| p.line()) {
        location.push(format!("line {n}"));
    }
    if let Some(i) = at.and_then(|p| p.entry()) {
        location.push(format!("entry {i}"));
    }
    let mut issue = json!({
        "severity": "error",
        "code": e.issue_code(),
        "details": {"text": e.reason()},
        "diagnostics": e.to_string(),
        "location": location,
    });
    if let (Some(i), Some(obj)) = (at.and_then(|p| p.entry()), issue.as_object_mut()) {
        obj.insert(
            "expression".to_owned(),
            json!([format!("Bundle.entry[{i}].resource")]),
        );
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]}).to_string()
}

/// A reject file, created (truncated) at the first reject only.
pub struct RejectFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl RejectFile {
    /// A reject file at `path`; nothing is created until the first reject.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RejectFile {
            path: path.into(),
            out: None,
            written: 0,
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// OperationOutcomes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes what was written.
    ///
    /// # Errors
    /// The write error.
    pub fn finish(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl RejectSink for RejectFile {
    fn reject(&mut self, e: &FhirError) -> io::Result<()> {
        if self.out.is_none() {
            self.out = Some(BufWriter::new(File::create(&self.path)?));
        }
        if let Some(w) = &mut self.out {
            w.write_all(operation_outcome(e).as_bytes())?;
            w.write_all(b"\n")?;
        }
        self.written += 1;
        Ok(())
    }
}
