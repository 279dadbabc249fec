//! The reject file: NDJSON, one FHIR R4 OperationOutcome per rejected input position,
//! as the bulk `$import` convention writes its error files (docs/FHIR.md section 6).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
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

/// The first bytes of every line [`operation_outcome`] writes: how a reject file is
/// told from another file.
const LINE_START: &[u8] = br#"{"resourceType":"OperationOutcome""#;

/// A reject file: after an import it holds that import's rejects and nothing else.
/// Created (truncated) at the first reject; when an import rejects nothing,
/// [`RejectFile::finish`] removes the reject file an earlier import left at the path, so
/// that no stale reject file outlives a clean import.
pub struct RejectFile {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
    removed_stale: bool,
}

impl RejectFile {
    /// A reject file at `path`; nothing is created until the first reject.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RejectFile {
            path: path.into(),
            out: None,
            written: 0,
            removed_stale: false,
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

    /// True when [`RejectFile::finish`] removed a reject file of an earlier import.
    pub fn removed_stale(&self) -> bool {
        self.removed_stale
    }

    /// Flushes what was written; when nothing was, removes the reject file of an earlier
    /// import at the path: a regular file (not a link) that is empty or whose first line
    /// is an OperationOutcome as this type writes them. Anything else there is left
    /// alone.
    ///
    /// # Errors
    /// The write error, or the error removing a stale reject file.
    pub fn finish(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(w) => w.flush(),
            None => {
                if is_reject_file(&self.path)? {
                    std::fs::remove_file(&self.path)?;
                    self.removed_stale = true;
                }
                Ok(())
            }
        }
    }
}

/// True when `path` is a regular file (not followed if a link) that is empty or starts
/// with [`LINE_START`]; false when there is nothing there or something else.
fn is_reject_file(path: &Path) -> io::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_file() {
        return Ok(false);
    }
    let mut head = Vec::with_capacity(LINE_START.len());
    File::open(path)?
        .take(LINE_START.len() as u64)
        .read_to_end(&mut head)?;
    Ok(head.is_empty() || head == LINE_START)
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
