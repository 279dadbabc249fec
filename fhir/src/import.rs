//! Bulk import of FHIR resources into a vault: the one code path behind `medvault import`,
//! the demo and the clinic example.
//!
//! Records are written with [`Vault::put_many`] in atomic batches, each record with its own
//! `import` access-log entry. Memory stays bounded: one batch of records (at most
//! [`ImportOptions::batch_records`] records or about [`ImportOptions::batch_bytes`] bytes of
//! input) plus what [`ImportSource`] holds.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{FhirError, ImportItem, ImportSource};
use medvault::AccessContext;
use medvault::Action;
use medvault::Error;
use medvault::RecordKey;
use medvault::Vault;

/// Default number of records per atomic batch.
pub const DEFAULT_BATCH_RECORDS: usize = 1000;
/// Default input bytes after which a batch is committed even if it holds fewer records.
pub const DEFAULT_BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Number of input errors kept in [`ImportReport::invalid`] (the rest are only counted).
pub const MAX_KEPT_ERRORS: usize = 100;

/// How [`import`] batches and what it does with bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// Records per atomic batch (at least 1).
    pub batch_records: usize,
    /// Input bytes after which the pending batch is committed (bounds memory when
    /// resources are large, e.g. DocumentReferences with inline attachments).
    pub batch_bytes: u64,
    /// `false` (default): the first input error stops the import (batches already
    /// committed stay). `true`: bad positions are counted in
    /// [`ImportReport::invalid_count`] and skipped.
    pub skip_invalid: bool,
    /// `true` (default): before importing, define the blind indexes of
    /// [`super::default_indexes`] that the vault does not have yet (an index of the same
    /// name with another spec is left alone), so patients can be found by identifier,
    /// name, birth date and condition code.
    pub default_indexes: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_records: DEFAULT_BATCH_RECORDS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            skip_invalid: false,
            default_indexes: true,
        }
    }
}

/// Where an import stands, passed to the progress callback after each committed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// Input bytes consumed ([`ImportSource::bytes_read`]).
    pub bytes_read: u64,
    /// Input bytes in total ([`ImportSource::total_bytes`]).
    pub total_bytes: u64,
    /// Records committed so far.
    pub records: u64,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Records committed per collection (FHIR resourceType), sorted by name.
    pub per_type: BTreeMap<String, u64>,
    /// Records committed in total (the sum of `per_type`).
    pub records: u64,
    /// Positions that were valid JSON but not resources (e.g. Bulk Data `log.ndjson`
    /// lines, Bundle entries without a resource).
    pub skipped: u64,
    /// Input errors skipped under [`ImportOptions::skip_invalid`].
    pub invalid_count: u64,
    /// The first [`MAX_KEPT_ERRORS`] of those errors (they name file and position, never
    /// content).
    pub invalid: Vec<FhirError>,
    /// Atomic batches committed.
    pub batches: u64,
    /// Input bytes read.
    pub bytes: u64,
}

/// Why an import stopped. Records of batches committed before the error stay in the
/// vault; `committed` says how many.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input could not be read or is not valid FHIR (file and position named).
    #[error("{error} ({committed} records committed before it)")]
    Input {
        /// What is wrong with the input.
        error: FhirError,
        /// Records committed before the error.
        committed: u64,
    },
    /// The vault refused or failed a batch (nothing of that batch was written).
    #[error("{error} ({committed} records committed before it)")]
    Vault {
        /// The vault's error.
        error: Error,
        /// Records committed before the error.
        committed: u64,
    },
}

/// Reads every resource from `source` and stores it in `vault` as record
/// `(FhirRecord::subject, resourceType, id)` with the resource object as its value, in
/// atomic batches logged as [`Action::Import`] under `ctx`. `progress` is called after
/// each committed batch. Returns the per-type counts.
///
/// Fails with [`ImportError::Input`] at the first bad input position (unless
/// [`ImportOptions::skip_invalid`]) and with [`ImportError::Vault`] when a batch cannot be
/// committed (e.g. [`Error::AccessDenied`] for a break-the-glass context without reason).
pub fn import(
    vault: &Vault,
    ctx: &AccessContext,
    mut source: ImportSource,
    options: ImportOptions,
    progress: &mut dyn FnMut(ImportProgress),
) -> Result<ImportReport, ImportError> {
    if options.default_indexes {
        let have = vault.indexes();
        for spec in super::default_indexes() {
            let same = have
                .iter()
                .find(|s| s.spec.collection == spec.collection && s.spec.name == spec.name);
            match same {
                Some(s) if s.spec != spec || s.built => continue,
                // Absent, or the same index left half built: (resume and) build it.
                _ => {
                    vault.add_index(ctx, spec, &mut |_| {}).map_err(|error| {
                        ImportError::Vault {
                            error,
                            committed: 0,
                        }
                    })?;
                }
            }
        }
    }
    let batch_records = options.batch_records.max(1);
    let total_bytes = source.total_bytes();
    let mut report = ImportReport::default();
    let mut batch: Vec<(RecordKey, Map<String, Value>)> = Vec::with_capacity(batch_records);
    let mut batch_start = 0u64;
    loop {
        let item = source.next();
        let end = item.is_none();
        match item {
            None => {}
            Some(Ok(ImportItem::Record(r))) => {
                let key = RecordKey::new(r.subject, r.collection, r.record_id);
                batch.push((key, r.resource));
            }
            Some(Ok(ImportItem::Skipped { .. })) => report.skipped += 1,
            Some(Err(error)) if options.skip_invalid => {
                report.invalid_count += 1;
                if report.invalid.len() < MAX_KEPT_ERRORS {
                    report.invalid.push(error);
                }
            }
            Some(Err(error)) => {
                return Err(ImportError::Input {
                    error,
                    committed: report.records,
                });
            }
        }
        let read = source.bytes_read();
        let full =
            batch.len() >= batch_records || read.saturating_sub(batch_start) >= options.batch_bytes;
        if !batch.is_empty() && (full || end) {
            commit(vault, ctx, &mut batch, &mut report)?;
            batch_start = read;
            progress(ImportProgress {
                bytes_read: read,
                total_bytes,
                records: report.records,
            });
        }
        if end {
            break;
        }
    }
    report.bytes = source.bytes_read();
    progress(ImportProgress {
        bytes_read: report.bytes,
        total_bytes,
        records: report.records,
    });
    Ok(report)
}

fn commit(
    vault: &Vault,
    ctx: &AccessContext,
    batch: &mut Vec<(RecordKey, Map<String, Value>)>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let items = batch.iter().map(|(k, v)| (k, v));
    vault
        .put_many(ctx, items, Action::Import)
        .map_err(|error| ImportError::Vault {
            error,
            committed: report.records,
        })?;
    for (key, _) in batch.drain(..) {
        *report.per_type.entry(key.collection).or_insert(0) += 1;
        report.records += 1;
    }
    report.batches += 1;
    Ok(())
}
