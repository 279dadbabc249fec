//! The reject file: NDJSON, one FHIR R4 OperationOutcome per rejected input position,
//! as the bulk `$import` convention writes its error files (docs/FHIR.md section 6).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::FhirError;
use crate::import::RejectSink;

/// One OperationOutcome line (without the newline) describing `e`: `issue.code` from
/// the FHIR `issue-type` value set, `details.text` the fixed reason, `diagnostics`
/// file, position and reason, `location` the file and the line or entry,
/// `expression` the Bundle entry when there is one. Never any input content.
pub fn operation_outcome(e: &FhirError) -> String {
    // Written member by member so that `resourceType` comes first, as FHIR writes it;
    // every string goes through the JSON encoder.
    let q = |t: &str| serde_json::Value::from(t).to_string();
    let at = e.position();
    let mut location = vec![q(&e.path().display().to_string())];
    if let Some(n) = at.and_then(|p| p.line()) {
        location.push(q(&format!("line {n}")));
    }
    let entry = at.and_then(|p| p.entry());
    if let Some(i) = entry {
        location.push(q(&format!("entry {i}")));
    }
    let mut issue = format!(
        r#"{{"severity":"error","code":{},"details":{{"text":{}}},"diagnostics":{},"location":[{}]"#,
        q(e.issue_code()),
        q(&e.reason()),
        q(&e.to_string()),
        location.join(",")
    );
    if let Some(i) = entry {
        issue.push_str(&format!(
            r#","expression":[{}]"#,
            q(&format!("Bundle.entry[{i}].resource"))
        ));
    }
    format!(r#"{{"resourceType":"OperationOutcome","issue":[{issue}}}]}}"#)
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
