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
    /// import at the path: a regular file (not a link) whose first line is an
    /// OperationOutcome as this type writes them. Anything else there (an empty file, a
    /// link, a directory, another file) is left alone.
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

/// True when `path` is a regular file (not followed if a link) that starts with
/// [`LINE_START`]; false when there is nothing there or something else (an empty file
/// included: it may be anyone's).
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
    Ok(head == LINE_START)
}

impl RejectSink for RejectFile {
    fn reject(&mut self, e: &FhirError) -> io::Result<()> {
        if self.out.is_none() {
            self.out = Some(BufWriter::new(create_private(&self.path)?));
        }
        if let Some(w) = &mut self.out {
            w.write_all(operation_outcome(e).as_bytes())?;
            w.write_all(b"\n")?;
        }
        self.written += 1;
        Ok(())
    }
}

/// Creates (or truncates) the reject file at `path` for writing, readable by its owner
/// only (mode 0600 on Unix: the diagnostics name input files and positions). Never
/// follows a symbolic link: a link at `path` is refused (an import must not overwrite
/// whatever file a link points to), as is anything but a regular file.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] for a link or a non-regular file at `path`; the
/// error of creating, opening or changing the mode of the file.
fn create_private(path: &Path) -> io::Result<File> {
    let refuse = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is {what}; the reject file is never written through one (name a new \
                 file or a regular file)",
                path.display()
            ),
        )
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match std::fs::symlink_metadata(path) {
        // Nothing there: create it exclusively. O_CREAT|O_EXCL fails on any link placed
        // there meanwhile (even a dangling one) instead of following it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => options.create_new(true).open(path),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_symlink() => Err(refuse("a symbolic link")),
        Ok(m) if !m.file_type().is_file() => Err(refuse("not a regular file")),
        Ok(before) => {
            // Opened without truncating: the file opened must first be shown to be the
            // regular file inspected, not a link swapped in between the two calls.
            let file = options.open(path)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let after = file.metadata()?;
                if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
                    return Err(refuse("a file that changed while it was opened"));
                }
                file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            }
            #[cfg(not(unix))]
            let _ = before;
            file.set_len(0)?;
            Ok(file)
        }
    }
}
