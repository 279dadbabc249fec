//! Bulk import of FHIR resources into a vault: the one code path behind `medvault
//! import`, the demo and the clinic example (docs/FHIR.md sections 3, 6 and 7).
//!
//! Records are written with [`Vault::put_many`] in atomic batches, each record with its
//! own `import` access-log entry. Invalid input positions are rejected one by one (to a
//! [`RejectSink`]) and everything valid is committed, unless [`ImportOptions::strict`].
//!
//! A resource already in the vault under the same subject, collection and id with the
//! same exact text is counted as unchanged and not written again (no new ciphertext, no
//! `import` entry of its own; one `import` entry per batch notes `unchanged=K`); with
//! other text it is replaced. The vault decides this inside each batch's write
//! ([`Vault::put_many_json_outcomes`]): the import reads nothing first, so a role that
//! may write but not read (e.g. `integration`) re-imports without rewriting anything
//! and without a denied read in the log.
//!
//! Memory: one batch of records (at most [`ImportOptions::batch_records`] records or
//! about [`ImportOptions::batch_bytes`] bytes of resource text), what [`ImportSource`]
//! holds (one line, or one Bundle entry and two in flight), the set of
//! `(resourceType, id)` written so far (a 16-byte digest and a subject number, about 24
//! bytes per distinct resource) that counts duplicates honestly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::PathBuf;

use medvault::{AccessContext, Error, RecordKey, Vault, WriteOutcome};
use sha2::{Digest, Sha256};

use crate::source::Located;
use crate::store::{self, StoreError};
use crate::{FhirError, ImportItem, ImportSource, Position};

/// Default number of records per atomic batch.
pub const DEFAULT_BATCH_RECORDS: usize = 1000;
/// Default bytes of resource text after which a batch is committed even if it holds
/// fewer records.
pub const DEFAULT_BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Number of rejects kept in [`ImportReport::rejects`] (the rest are only counted, and
/// all of them go to the [`RejectSink`]).
pub const MAX_KEPT_ERRORS: usize = 100;
/// Number of skipped positions kept per file in [`SkippedIn::positions`] (the rest are
/// only counted).
pub const MAX_KEPT_SKIPS: usize = 10;

/// How [`import`] batches and what it does with bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// Records per atomic batch (at least 1).
    pub batch_records: usize,
    /// Bytes of resource text after which the pending batch is committed (bounds memory
    /// when resources are large, e.g. DocumentReferences with inline attachments).
    pub batch_bytes: u64,
    /// `false` (default): every invalid input position is rejected (counted in
    /// [`ImportReport::rejected`] and handed to the [`RejectSink`]) and the import goes
    /// on. `true`: the first invalid position stops the import with
    /// [`ImportError::Input`] (batches already committed stay).
    pub strict: bool,
    /// `true` (default): before importing, define the blind indexes of
    /// [`crate::default_indexes`] that the vault does not have yet (an index of the same
    /// name with another spec is left alone), so patients can be found by identifier,
    /// name, birth date and condition code.
    pub default_indexes: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            batch_records: DEFAULT_BATCH_RECORDS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            strict: false,
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
    /// Records committed so far (created plus replaced).
    pub records: u64,
}

/// The skipped positions of one input file (see [`ImportReport::skipped_in`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedIn {
    /// The file.
    pub path: PathBuf,
    /// Positions of this file skipped.
    pub count: u64,
    /// The first [`MAX_KEPT_SKIPS`] of them, in input order.
    pub positions: Vec<Position>,
    /// Why the first was skipped (a fixed text, e.g. "no resourceType (not a FHIR
    /// resource, e.g. a bulk-export log line)").
    pub why: &'static str,
}

/// What an import did (docs/FHIR.md section 7).
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Distinct resources created by this import, per collection (FHIR resourceType),
    /// sorted by name.
    pub per_type: BTreeMap<String, u64>,
    /// Distinct resources created by this import (the sum of `per_type`): not in the
    /// vault under their subject before the import.
    pub records: u64,
    /// Writes that replaced a resource (same resourceType and id) with other text:
    /// one the vault held under the same subject before the import, or one written
    /// earlier by the same import (that earlier copy is gone: deleted from its subject
    /// when the new one is filed under another).
    pub replaced: u64,
    /// Resources the vault already held under the same subject with the same exact
    /// text: not written again (no new ciphertext, no `import` log entry).
    pub unchanged: u64,
    /// Always true: the vault compares each record with what it holds inside the write
    /// ([`Vault::put_many_json_outcomes`]), whatever the caller may read. Kept for the
    /// report's readers (the CLI's JSON summary).
    pub compared: bool,
    /// Positions that were valid JSON but not resources to store (Bulk Data
    /// `log.ndjson` lines, Bundle entries without a resource, PATCH entries, search
    /// outcomes).
    pub skipped: u64,
    /// Where the skipped positions are: one item per file with skips, in input order.
    pub skipped_in: Vec<SkippedIn>,
    /// Positions rejected (each handed to the [`RejectSink`]).
    pub rejected: u64,
    /// Records refused because their subject (patient) was erased: the vault remembers
    /// erasures and does not re-create an erased patient (each refusal is in the access
    /// log). Re-admit the patient ([`Vault::readmit_subject`], `medvault readmit`) and
    /// import again to store them. Not counted in [`ImportReport::rejected`]: the input
    /// is valid.
    pub refused_erased: u64,
    /// The first [`MAX_KEPT_ERRORS`] rejects (they name file and position, never
    /// content).
    pub rejects: Vec<FhirError>,
    /// Atomic batches committed.
    pub batches: u64,
    /// Input bytes read.
    pub bytes: u64,
}

/// Where rejected input positions go.
pub trait RejectSink {
    /// Records one rejected position.
    ///
    /// # Errors
    /// A write error: the import stops ([`ImportError::Rejects`]), since it could no
    /// longer say what it did not import.
    fn reject(&mut self, e: &FhirError) -> io::Result<()>;
}

/// A sink that keeps nothing (the report still counts and keeps the first rejects).
struct Discard;

impl RejectSink for Discard {
    fn reject(&mut self, _: &FhirError) -> io::Result<()> {
        Ok(())
    }
}

/// Why an import stopped. Records of batches committed before the error stay in the
/// vault; `committed` says how many.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Under [`ImportOptions::strict`]: the input could not be read or is not valid FHIR
    /// (file and position named).
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
    /// A reject could not be written to the [`RejectSink`].
    #[error("cannot write the reject file: {source} ({committed} records committed before it)")]
    Rejects {
        /// The write error.
        source: io::Error,
        /// Records committed before the error.
        committed: u64,
    },
}

/// [`import_with`] without a reject sink: rejects are counted and the first
/// [`MAX_KEPT_ERRORS`] kept in [`ImportReport::rejects`].
///
/// # Errors
/// As [`import_with`].
pub fn import(
    vault: &Vault,
    ctx: &AccessContext,
    source: ImportSource,
    options: ImportOptions,
    progress: &mut dyn FnMut(ImportProgress),
) -> Result<ImportReport, ImportError> {
    import_with(vault, ctx, source, options, progress, &mut Discard)
}

/// Where a record of the batch comes from, and whether it replaces one.
struct Meta {
    /// This import wrote the same (collection, record id) before.
    replaces: bool,
    path: PathBuf,
    at: Option<Position>,
}

/// A (collection, record id) as the first 128 bits of SHA-256 over
/// `collection \0 record id`: 16 bytes per distinct resource instead of its strings.
type KeyDigest = [u8; 16];

fn key_digest(collection: &str, record_id: &str) -> KeyDigest {
    let mut h = Sha256::new();
    h.update(collection.as_bytes());
    h.update([0u8]);
    h.update(record_id.as_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// The resources written by this import and the subject each was filed under; subjects
/// are interned (far fewer than resources), so a resource costs about 24 bytes.
#[derive(Default)]
struct Seen {
    by_key: HashMap<KeyDigest, u32>,
    subjects: Vec<String>,
    subject_index: HashMap<String, u32>,
}

impl Seen {
    fn get(&self, k: &KeyDigest) -> Option<&str> {
        let i = *self.by_key.get(k)?;
        self.subjects.get(i as usize).map(String::as_str)
    }

    fn insert(&mut self, k: KeyDigest, subject: &str) {
        let i = match self.subject_index.get(subject) {
            Some(i) => *i,
            None => {
                let i = u32::try_from(self.subjects.len()).unwrap_or(u32::MAX);
                self.subjects.push(subject.to_owned());
                self.subject_index.insert(subject.to_owned(), i);
                i
            }
        };
        self.by_key.insert(k, i);
    }

    fn remove(&mut self, k: &KeyDigest) {
        self.by_key.remove(k);
    }
}

/// The import's state.
struct Run<'a> {
    vault: &'a Vault,
    ctx: &'a AccessContext,
    options: ImportOptions,
    rejects: &'a mut dyn RejectSink,
    report: ImportReport,
    batch: Vec<(RecordKey, store::Prepared)>,
    meta: Vec<Meta>,
    batch_bytes: u64,
    /// Keys of the batch, by (collection, record id) digest.
    in_batch: HashSet<KeyDigest>,
    /// Every (collection, record id) written, with its subject.
    seen: Seen,
}

/// Reads every resource from `source` and stores it in `vault` as record `(subject,
/// resourceType, record id)` with its exact text, in atomic batches logged as
/// [`medvault::Action::Import`] under `ctx`. `progress` is called after each committed
/// batch. Invalid positions go to `rejects` (docs/FHIR.md section 6).
///
/// # Errors
/// [`ImportError::Input`] at the first invalid position under
/// [`ImportOptions::strict`]; [`ImportError::Vault`] when a batch cannot be committed
/// for another reason than one record being refused (e.g. [`Error::AccessDenied`] for a
/// break-the-glass context without reason); [`ImportError::Rejects`] when `rejects`
/// fails.
pub fn import_with(
    vault: &Vault,
    ctx: &AccessContext,
    mut source: ImportSource,
    options: ImportOptions,
    progress: &mut dyn FnMut(ImportProgress),
    rejects: &mut dyn RejectSink,
) -> Result<ImportReport, ImportError> {
    if options.default_indexes {
        add_default_indexes(vault, ctx)?;
    }
    let total_bytes = source.total_bytes();
    let mut run = Run {
        vault,
        ctx,
        options,
        rejects,
        report: ImportReport::default(),
        batch: Vec::new(),
        meta: Vec::new(),
        batch_bytes: 0,
        in_batch: HashSet::new(),
        seen: Seen::default(),
    };
    while let Some(Located { path, at, item }) = source.next_located() {
        match item {
            Ok(ImportItem::Record(r)) => run.add(r, path, at)?,
            Ok(ImportItem::Skipped { path, at, why }) => run.skip(path, at, why),
            Err(error) => run.reject(error)?,
        }
        let full = run.batch.len() >= options.batch_records.max(1)
            || run.batch_bytes >= options.batch_bytes;
        if full {
            run.commit()?;
            progress(ImportProgress {
                bytes_read: source.bytes_read(),
                total_bytes,
                records: run.report.records + run.report.replaced,
            });
        }
    }
    run.commit()?;
    run.report.bytes = source.bytes_read();
    run.report.compared = true;
    progress(ImportProgress {
        bytes_read: run.report.bytes,
        total_bytes,
        records: run.report.records + run.report.replaced,
    });
    Ok(run.report)
}

fn add_default_indexes(vault: &Vault, ctx: &AccessContext) -> Result<(), ImportError> {
    let have = vault.indexes();
    for spec in crate::default_indexes() {
        let same = have
            .iter()
            .find(|s| s.spec.collection == spec.collection && s.spec.name == spec.name);
        match same {
            Some(s) if s.spec != spec || s.built => continue,
            // Absent, or the same index left half built: (resume and) build it.
            _ => {
                vault
                    .add_index(ctx, spec, &mut |_| {})
                    .map_err(|error| ImportError::Vault {
                        error,
                        committed: 0,
                    })?;
            }
        }
    }
    Ok(())
}

impl Run<'_> {
    fn committed(&self) -> u64 {
        self.report.records + self.report.replaced
    }

    fn skip(&mut self, path: PathBuf, at: Position, why: &'static str) {
        self.report.skipped += 1;
        // The source reads file after file: a file's skips are the last item's.
        match self.report.skipped_in.last_mut() {
            Some(last) if last.path == path => {
                last.count += 1;
                if last.positions.len() < MAX_KEPT_SKIPS {
                    last.positions.push(at);
                }
            }
            _ => self.report.skipped_in.push(SkippedIn {
                path,
                count: 1,
                positions: vec![at],
                why,
            }),
        }
    }

    fn reject(&mut self, error: FhirError) -> Result<(), ImportError> {
        if self.options.strict {
            // What was read before the error is committed, as the error message says.
            self.commit()?;
            return Err(ImportError::Input {
                error,
                committed: self.committed(),
            });
        }
        self.report.rejected += 1;
        let sunk = self.rejects.reject(&error);
        if self.report.rejects.len() < MAX_KEPT_ERRORS {
            self.report.rejects.push(error);
        }
        sunk.map_err(|source| ImportError::Rejects {
            source,
            committed: self.committed(),
        })
    }

    fn add(
        &mut self,
        r: crate::FhirRecord,
        path: PathBuf,
        at: Option<Position>,
    ) -> Result<(), ImportError> {
        // Checked before anything else, so that a refused resource changes nothing.
        let prepared = match store::prepare(r.resource) {
            Ok(p) => p,
            Err(message) => {
                return self.reject(FhirError::Refused {
                    path,
                    at: at.unwrap_or(Position::Document),
                    message,
                });
            }
        };
        let id = (r.collection, r.record_id);
        let digest = key_digest(&id.0, &id.1);
        // Written by this import before: it replaces that copy (or leaves it, same
        // text). Else the vault tells at the commit whether the record is created,
        // replaced or unchanged (the import reads nothing of the vault).
        let mut replaces = false;
        if let Some(old_subject) = self.seen.get(&digest).map(str::to_owned) {
            replaces = true;
            if self.in_batch.contains(&digest) {
                // One key twice in one atomic batch: commit the first one first.
                self.commit()?;
            }
            if old_subject != r.subject {
                let old = RecordKey::new(old_subject, id.0.clone(), id.1.clone());
                match self.vault.delete(self.ctx, &old) {
                    Ok(()) | Err(Error::NotFound) => {}
                    Err(error) => {
                        return Err(ImportError::Vault {
                            error,
                            committed: self.committed(),
                        });
                    }
                }
            }
        }
        self.seen.insert(digest, &r.subject);
        self.batch_bytes = self.batch_bytes.saturating_add(prepared.len() as u64);
        self.batch.push((
            RecordKey::new(r.subject, id.0.clone(), id.1.clone()),
            prepared,
        ));
        self.meta.push(Meta { replaces, path, at });
        self.in_batch.insert(digest);
        Ok(())
    }

    /// Commits the batch; when the vault refuses it for one record's sake
    /// ([`Error::InvalidInput`]), stores the records one by one and rejects those it
    /// refuses.
    fn commit(&mut self) -> Result<(), ImportError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let meta = std::mem::take(&mut self.meta);
        self.in_batch.clear();
        self.batch_bytes = 0;
        match store::put_batch(self.vault, self.ctx, &batch) {
            Ok(outcomes) => {
                for (((key, _), m), o) in batch.iter().zip(&meta).zip(outcomes) {
                    self.count(key, m.replaces, o);
                }
                self.report.batches += 1;
                Ok(())
            }
            Err(StoreError::Refused(_)) => {
                for (one, m) in batch.iter().zip(meta) {
                    match store::put_batch(self.vault, self.ctx, std::slice::from_ref(one)) {
                        Ok(outcomes) => {
                            for o in outcomes {
                                self.count(&one.0, m.replaces, o);
                            }
                            self.report.batches += 1;
                        }
                        Err(StoreError::Refused(message)) => {
                            if !m.replaces {
                                self.seen
                                    .remove(&key_digest(&one.0.collection, &one.0.record_id));
                            }
                            self.reject(FhirError::Refused {
                                path: m.path,
                                at: m.at.unwrap_or(Position::Document),
                                message,
                            })?;
                        }
                        Err(StoreError::Erased) => {
                            if !m.replaces {
                                self.seen
                                    .remove(&key_digest(&one.0.collection, &one.0.record_id));
                            }
                            self.report.refused_erased += 1;
                        }
                        Err(StoreError::Vault(error)) => {
                            return Err(ImportError::Vault {
                                error,
                                committed: self.committed(),
                            });
                        }
                    }
                }
                Ok(())
            }
            Err(StoreError::Erased) => self.set_aside_erased(batch, meta),
            Err(StoreError::Vault(error)) => Err(ImportError::Vault {
                error,
                committed: self.committed(),
            }),
        }
    }

    /// After a batch was refused for an erased subject: counts the records of erased
    /// subjects in [`ImportReport::refused_erased`] and commits the others.
    fn set_aside_erased(
        &mut self,
        batch: Vec<(RecordKey, store::Prepared)>,
        meta: Vec<Meta>,
    ) -> Result<(), ImportError> {
        let total = batch.len();
        let mut erased: HashMap<String, bool> = HashMap::new();
        for (one, m) in batch.into_iter().zip(meta) {
            let is_erased = match erased.get(&one.0.subject) {
                Some(e) => *e,
                None => {
                    let e = self
                        .vault
                        .is_erased(self.ctx, &one.0.subject)
                        .map_err(|error| ImportError::Vault {
                            error,
                            committed: self.committed(),
                        })?;
                    erased.insert(one.0.subject.clone(), e);
                    e
                }
            };
            if is_erased {
                if !m.replaces {
                    self.seen
                        .remove(&key_digest(&one.0.collection, &one.0.record_id));
                }
                self.report.refused_erased += 1;
            } else {
                self.batch.push(one);
                self.meta.push(m);
            }
        }
        if self.batch.len() == total {
            // Refused, yet no subject of it is erased now (re-admitted meanwhile?).
            self.batch.clear();
            self.meta.clear();
            return Err(ImportError::Vault {
                error: Error::SubjectErased,
                committed: self.committed(),
            });
        }
        self.commit()
    }

    /// Counts one record of a committed batch: `earlier` when this import wrote its key
    /// before (then it replaces that copy unless the text is the same).
    fn count(&mut self, key: &RecordKey, earlier: bool, outcome: WriteOutcome) {
        if outcome == WriteOutcome::Unchanged {
            self.report.unchanged += 1;
        } else if earlier || outcome == WriteOutcome::Replaced {
            self.report.replaced += 1;
        } else {
            self.report.records += 1;
            *self
                .report
                .per_type
                .entry(key.collection.clone())
                .or_insert(0) += 1;
        }
    }
}
