//! # medvault-fhir
//!
//! FHIR R4 import and export for a medvault vault, and (feature `synth`) synthetic
//! patient generation. docs/FHIR.md is the rulebook; this crate implements it.
//!
//! Import turns FHIR R4 resources into [`FhirRecord`]s keyed by
//! `(subject, collection, record_id)`:
//!
//! * `subject` is the id of the Patient whose compartment holds the resource (FHIR R4
//!   "Compartments"), a pseudonymous placeholder for a patient known only by an
//!   identifier, or [`SHARED_SUBJECT`] for resources that belong to no patient
//!   (docs/FHIR.md section 4);
//! * `collection` is the `resourceType`;
//! * `record_id` is the resource's logical `id`, else the id its Bundle entry's `fullUrl`
//!   gives it, else a content id (docs/FHIR.md section 3).
//!
//! The stored resource is the input's exact JSON text: references are not rewritten,
//! numbers keep their text, members their order, so that an export gives back what was
//! imported (docs/FHIR.md section 1).
//!
//! [`ImportSource`] reads NDJSON files (FHIR Bulk Data Access IG "ndjson"), line by line,
//! and `.json` files (one resource or a Bundle of any type); a Bundle that is split is
//! streamed entry by entry. [`import()`] stores what it yields, commits every valid
//! resource and hands every invalid position to a [`RejectSink`] (by default the
//! NDJSON reject file of [`RejectFile`]); [`export_ndjson`] writes the records back.
//!
//! Error values never carry resource content, only file names, positions and fixed
//! descriptions, because every resource is personal health data and errors end up in
//! logs, terminals and reject files.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::unwrap_used)]

mod bundle;
pub use medvault::civil;
pub mod export;
pub mod import;
mod indexes;
pub mod reject;
mod scan;
mod source;
mod store;
mod stream;
mod subject;
#[cfg(any(test, feature = "synth"))]
pub mod synth;

pub use bundle::SPLIT_TYPES;
pub use export::{ExportError, ExportProgress, ExportReport, export_ndjson};
pub use import::{
    ImportError, ImportOptions, ImportProgress, ImportReport, RejectSink, SkippedIn, import,
    import_with,
};
pub use indexes::default_indexes;
pub use reject::RejectFile;
pub use scan::SUBJECT_FIELDS;
pub use source::ImportSource;
pub use subject::{CONTAINED_PREFIX, PLACEHOLDER_PREFIX, SHARED_SUBJECT};

use std::fmt;
use std::io;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// Default cap on one NDJSON line, in bytes (excluding the line terminator).
///
/// Bulk Data Access IG ndjson puts one resource per line; the largest realistic
/// resources (Binary, DocumentReference with inline attachments) stay well below this,
/// and anything larger is more likely a corrupt file than a resource worth holding in
/// memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// Default cap on a `.json` resource that is held whole (a single resource, or a Bundle
/// kept whole: document, message, history), in bytes. A Bundle that is split is
/// streamed entry by entry and has no size cap; each of its entries is held whole and
/// must fit under this cap.
pub const DEFAULT_MAX_JSON_BYTES: u64 = 256 * 1024 * 1024;

/// One FHIR resource ready to be stored.
#[derive(Clone, PartialEq, Eq)]
pub struct FhirRecord {
    /// Id of the Patient whose compartment holds the resource, a placeholder subject
    /// (`urn:medvault:...`), or [`SHARED_SUBJECT`] (docs/FHIR.md section 4).
    pub subject: String,
    /// The resource's `resourceType` (FHIR R4 "Resource"), e.g. `"Condition"`.
    pub collection: String,
    /// The record id (docs/FHIR.md section 3): the resource's `id`, else the id its
    /// Bundle entry's `fullUrl` gives, else `sha256-<32 hex>` of its minified text.
    pub record_id: String,
    /// The resource's exact JSON text as read (UTF-8, no surrounding whitespace),
    /// zeroized when dropped (it is health data).
    pub resource: Zeroizing<String>,
}

impl FhirRecord {
    /// The resource parsed as a `serde_json` value (for tests and tools: numbers become
    /// float64 or 64-bit integers, so this is not the exact form).
    ///
    /// # Errors
    /// A serde_json error for a number no float64 holds (e.g. `1e400`).
    pub fn value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.resource.as_str())
    }
}

// Hand-written so that `{:?}` of a record (in a log line, a panic message or a failed
// assert) never prints patient data.
impl fmt::Debug for FhirRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirRecord")
            .field("subject", &self.subject)
            .field("collection", &self.collection)
            .field("record_id", &self.record_id)
            .field(
                "resource",
                &format_args!("<{} bytes redacted>", self.resource.len()),
            )
            .finish()
    }
}

/// Where in an input file something was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line of an NDJSON file.
    Line(u64),
    /// 0-based index into `Bundle.entry` of the Bundle on a 1-based NDJSON line (a
    /// Bundle nested in an entry reports that entry).
    LineEntry(u64, usize),
    /// 0-based index into `Bundle.entry` of a `.json` file.
    Entry(usize),
    /// The whole `.json` file (its single resource, or the file as such).
    Document,
}

impl Position {
    /// The NDJSON line, if any.
    pub fn line(&self) -> Option<u64> {
        match self {
            Position::Line(n) | Position::LineEntry(n, _) => Some(*n),
            _ => None,
        }
    }

    /// The Bundle entry index, if any.
    pub fn entry(&self) -> Option<usize> {
        match self {
            Position::LineEntry(_, i) | Position::Entry(i) => Some(*i),
            _ => None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::LineEntry(n, i) => write!(f, "line {n}, Bundle.entry[{i}]"),
            Position::Entry(i) => write!(f, "Bundle.entry[{i}]"),
            Position::Document => f.write_str("top-level resource"),
        }
    }
}

/// Errors from reading FHIR input: each is one rejected position (docs/FHIR.md
/// section 6).
///
/// Messages name the file and position but never include resource content (it is
/// patient data).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// Opening, listing or reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The path is (or links to) something other than a regular file or a directory: a
    /// device, a FIFO, a socket. Refused before reading: `/dev/zero` never ends and a
    /// FIFO blocks until written to.
    #[error("{}: not a regular file (a device, FIFO or socket, or a link to one)", path.display())]
    NotRegularFile {
        /// Path involved.
        path: PathBuf,
    },
    /// The text is not valid JSON.
    #[error("{}, {at}: invalid JSON (line {line}, column {column} of that text): {message}", path.display())]
    Json {
        /// File involved.
        path: PathBuf,
        /// Position of the offending text.
        at: Position,
        /// 1-based line within that text (the NDJSON line, the entry, or the file).
        line: u64,
        /// 1-based column within that line.
        column: u64,
        /// Fixed syntax-error description (never input text).
        message: String,
    },
    /// An object holds the same member name twice (FHIR R4 "JSON Representation"
    /// forbids it; keeping either would alter the record).
    #[error("{}, {at}: duplicated member name in an object", path.display())]
    DuplicateMember {
        /// File involved.
        path: PathBuf,
        /// Position of the resource.
        at: Position,
    },
    /// Arrays and objects nested deeper than a record may hold (100 levels, the core's
    /// bound), or Bundles nested more than 25 deep.
    #[error("{}, {at}: nested too deep", path.display())]
    TooDeep {
        /// File involved.
        path: PathBuf,
        /// Position of the resource.
        at: Position,
    },
    /// A value where a resource is required is not a JSON object with a well-formed
    /// `resourceType` (`[A-Z][A-Za-z]{0,63}`, FHIR R4 "Resource"), or a Bundle's
    /// `entry` is not an array of objects.
    #[error("{}, {at}: not a FHIR resource (not an object, or missing or malformed resourceType)", path.display())]
    NotAResource {
        /// File involved.
        path: PathBuf,
        /// Position of the offending value.
        at: Position,
    },
    /// A resource `id` is present but does not match `[A-Za-z0-9\-\.]{1,64}` (FHIR R4
    /// "id").
    #[error("{}, {at}: resource id is not a valid FHIR id", path.display())]
    InvalidId {
        /// File involved.
        path: PathBuf,
        /// Position of the resource.
        at: Position,
    },
    /// An NDJSON line is longer than the cap (see
    /// [`ImportSource::with_max_line_bytes`]). The rest of the line is skipped; reading
    /// continues with the next line.
    #[error("{}, line {line}: line longer than {limit} bytes", path.display())]
    LineTooLong {
        /// File involved.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The cap in bytes.
        limit: usize,
    },
    /// A `.json` resource to be held whole (a single resource, a Bundle kept whole, or
    /// one entry of a streamed Bundle) is larger than the cap (see
    /// [`ImportSource::with_max_json_bytes`]).
    #[error("{}, {at}: larger than {limit} bytes; split it or convert it to NDJSON", path.display())]
    BundleTooLarge {
        /// File involved.
        path: PathBuf,
        /// Position.
        at: Position,
        /// The cap in bytes.
        limit: u64,
    },
    /// The vault refused one record (e.g. larger than it holds); the other records of
    /// its batch were stored.
    #[error("{}, {at}: the vault refused the record: {message}", path.display())]
    Refused {
        /// File involved.
        path: PathBuf,
        /// Position of the resource.
        at: Position,
        /// The vault's message (names limits, never content).
        message: String,
    },
    /// A path given to [`ImportSource::new`] is a file with an extension other than
    /// `.ndjson` or `.json`.
    #[error("{}: unsupported file type (expected .ndjson or .json)", path.display())]
    UnsupportedFile {
        /// File involved.
        path: PathBuf,
    },
}

impl FhirError {
    /// The file the error concerns.
    pub fn path(&self) -> &std::path::Path {
        match self {
            FhirError::Io { path, .. }
            | FhirError::NotRegularFile { path }
            | FhirError::Json { path, .. }
            | FhirError::DuplicateMember { path, .. }
            | FhirError::TooDeep { path, .. }
            | FhirError::NotAResource { path, .. }
            | FhirError::InvalidId { path, .. }
            | FhirError::LineTooLong { path, .. }
            | FhirError::BundleTooLarge { path, .. }
            | FhirError::Refused { path, .. }
            | FhirError::UnsupportedFile { path } => path,
        }
    }

    /// The position in the file, when the error concerns one.
    pub fn position(&self) -> Option<Position> {
        match self {
            FhirError::Json { at, .. }
            | FhirError::DuplicateMember { at, .. }
            | FhirError::TooDeep { at, .. }
            | FhirError::NotAResource { at, .. }
            | FhirError::InvalidId { at, .. }
            | FhirError::BundleTooLarge { at, .. }
            | FhirError::Refused { at, .. } => Some(*at),
            FhirError::LineTooLong { line, .. } => Some(Position::Line(*line)),
            FhirError::Io { .. }
            | FhirError::NotRegularFile { .. }
            | FhirError::UnsupportedFile { .. } => None,
        }
    }

    /// The FHIR R4 `issue-type` code of an OperationOutcome describing this error
    /// (docs/FHIR.md section 6).
    pub fn issue_code(&self) -> &'static str {
        match self {
            FhirError::Io { .. } => "exception",
            FhirError::NotRegularFile { .. } | FhirError::UnsupportedFile { .. } => "not-supported",
            FhirError::Json { .. }
            | FhirError::DuplicateMember { .. }
            | FhirError::TooDeep { .. }
            | FhirError::NotAResource { .. } => "structure",
            FhirError::InvalidId { .. } => "invalid",
            FhirError::LineTooLong { .. } | FhirError::BundleTooLarge { .. } => "too-long",
            FhirError::Refused { .. } => "processing",
        }
    }

    /// The reason alone (no file, no position), a fixed text.
    pub fn reason(&self) -> String {
        match self {
            FhirError::Io { source, .. } => format!("cannot read the file: {source}"),
            FhirError::NotRegularFile { .. } => {
                "not a regular file (a device, FIFO or socket, or a link to one)".to_owned()
            }
            FhirError::Json {
                line,
                column,
                message,
                ..
            } => format!("invalid JSON (line {line}, column {column} of that text): {message}"),
            FhirError::DuplicateMember { .. } => "duplicated member name in an object".to_owned(),
            FhirError::TooDeep { .. } => "nested too deep".to_owned(),
            FhirError::NotAResource { .. } => {
                "not a FHIR resource (not an object, or missing or malformed resourceType)"
                    .to_owned()
            }
            FhirError::InvalidId { .. } => "resource id is not a valid FHIR id".to_owned(),
            FhirError::LineTooLong { limit, .. } => format!("line longer than {limit} bytes"),
            FhirError::BundleTooLarge { limit, .. } => format!("larger than {limit} bytes"),
            FhirError::Refused { message, .. } => {
                format!("the vault refused the record: {message}")
            }
            FhirError::UnsupportedFile { .. } => {
                "unsupported file type (expected .ndjson or .json)".to_owned()
            }
        }
    }
}

/// The outcome of reading one position of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportItem {
    /// A resource to store.
    Record(FhirRecord),
    /// Valid JSON that is not a resource to store: a Bulk Data `log.ndjson` line, a
    /// Bundle entry without `resource` (a request), a `PATCH` entry, a search outcome
    /// (docs/FHIR.md section 5); counted, not an error.
    Skipped {
        /// File involved.
        path: PathBuf,
        /// Where in the file.
        at: Position,
        /// Fixed reason.
        why: &'static str,
    },
}

impl ImportItem {
    /// The record, if this item is one.
    pub fn record(&self) -> Option<&FhirRecord> {
        match self {
            ImportItem::Record(r) => Some(r),
            ImportItem::Skipped { .. } => None,
        }
    }

    /// The record by value, if this item is one.
    pub fn into_record(self) -> Option<FhirRecord> {
        match self {
            ImportItem::Record(r) => Some(r),
            ImportItem::Skipped { .. } => None,
        }
    }
}

/// The subject a standalone resource (outside any Bundle) is filed under
/// (docs/FHIR.md section 4): its own id for a Patient, the patient its references name,
/// a placeholder subject, or [`SHARED_SUBJECT`].
///
/// # Errors
/// The text is not a JSON object with a well-formed `resourceType`, or holds a
/// duplicated member name.
pub fn subject_of(resource: &str) -> Result<String, FhirError> {
    let mut found = None;
    bundle::expand(std::borrow::Cow::Borrowed(resource), false, &mut |_, p| {
        if found.is_none() {
            found = Some(p);
        }
    });
    let path = PathBuf::new();
    match found {
        Some(bundle::Piece::Record(r)) => Ok(r.subject),
        Some(bundle::Piece::Rejected(r)) => Err(source::reject_error(path, Position::Document, r)),
        _ => Err(FhirError::NotAResource {
            path,
            at: Position::Document,
        }),
    }
}

#[cfg(test)]
mod tests;
