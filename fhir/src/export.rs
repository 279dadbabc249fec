//! Export of stored FHIR resources as NDJSON (one resource per line, FHIR Bulk Data
//! Access IG "ndjson" output): the one code path behind `medvault export` and the demo.
//!
//! Subjects are read [`EXPORT_BATCH`] at a time with [`Vault::records_of_subjects_json`]: one
//! access-log commit per batch holding one `export` entry per subject (naming the number of
//! records), appended before anything of the batch is written; memory holds one batch's
//! records at a time. Each line is the stored record's JSON text, minified: for an
//! import, the input resource with its number tokens, strings and member order
//! (docs/FHIR.md sections 1 and 8).

use std::io::Write;

use medvault::AccessContext;
use medvault::Error;
use medvault::RecordKey;
use medvault::Vault;

use crate::store;
use zeroize::Zeroizing;

/// Subjects read per access-log commit by [`export_ndjson`].
pub const EXPORT_BATCH: usize = 64;

/// Where an export stands, passed to the progress callback after each subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportProgress {
    /// Subjects written so far.
    pub subjects_done: u64,
    /// Subjects to write in total.
    pub subjects_total: u64,
    /// Records written so far.
    pub records: u64,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Subjects exported (including ones that held no record).
    pub subjects: u64,
    /// Lines (records) written.
    pub records: u64,
}

/// Why an export stopped. Lines already written stay written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The vault refused or failed a read.
    #[error(transparent)]
    Vault(#[from] Error),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// A subject asked for by name holds no record (never written, or erased). Records
    /// of the subjects named before it are written already.
    #[error("no records of subject {subject}")]
    NoRecords {
        /// The subject id as the caller named it.
        subject: String,
    },
}

/// Writes every record of `subjects` (all subjects, sorted, when empty) to `out` as
/// NDJSON, subject by subject; within a subject the Patient comes first, then the other
/// records by (collection, record id).
/// `progress` is called after each subject.
///
/// Fails with [`ExportError::NoRecords`] for a named subject without records,
/// [`ExportError::Vault`] (e.g. [`Error::Integrity`] for a tampered record,
/// [`Error::AccessDenied`]) or [`ExportError::Output`].
pub fn export_ndjson(
    vault: &Vault,
    ctx: &AccessContext,
    subjects: &[String],
    out: &mut dyn Write,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<ExportReport, ExportError> {
    let all;
    let named = !subjects.is_empty();
    let subjects = if subjects.is_empty() {
        let mut s = vault.subjects(ctx)?;
        s.sort();
        all = s;
        &all[..]
    } else {
        subjects
    };
    let mut report = ExportReport::default();
    let mut line = Zeroizing::new(String::with_capacity(64 * 1024));
    for batch in subjects.chunks(EXPORT_BATCH) {
        let names: Vec<&str> = batch.iter().map(String::as_str).collect();
        for (subject, mut records) in store::export_subjects(vault, ctx, &names)? {
            if named && records.is_empty() {
                // A subject asked for by name that holds nothing (never written, or erased).
                return Err(ExportError::NoRecords { subject });
            }
            sort_patient_first(&mut records);
            for (_, text) in &records {
                line.clear();
                // The vault's text is compact JSON already (no whitespace outside strings).
                line.push_str(text);
                line.push('\n');
                out.write_all(line.as_bytes())?;
                report.records += 1;
            }
            report.subjects += 1;
            progress(ExportProgress {
                subjects_done: report.subjects,
                subjects_total: subjects.len() as u64,
                records: report.records,
            });
        }
    }
    out.flush()?;
    Ok(report)
}

/// Sorts one subject's records the way [`export_ndjson`] writes them: the Patient first,
/// then the others by `(collection, record id)`.
pub fn sort_patient_first<T>(records: &mut [(RecordKey, T)]) {
    records.sort_by(|(a, _), (b, _)| {
        (a.collection != "Patient", &a.collection, &a.record_id).cmp(&(
            b.collection != "Patient",
            &b.collection,
            &b.record_id,
        ))
    });
}
