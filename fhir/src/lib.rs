//! # medvault-fhir
//!
//! FHIR R4 import and export for a medvault vault, and (feature `synth`) synthetic
//! patient generation.
//!
//! Import turns FHIR R4 resources into [`FhirRecord`]s keyed by
//! `(subject, collection, record_id)`:
//!
//! * `subject` is the id of the Patient the resource belongs to (its patient
//!   compartment, FHIR R4 §2.36 "Compartments"), or [`SHARED_SUBJECT`] for
//!   resources that belong to no patient (Organization, Practitioner, ...);
//! * `collection` is the `resourceType`;
//! * `record_id` is the resource's logical `id` (FHIR R4 §2.24.0.1 "id").
//!
//! Two input shapes are read by [`ImportSource`]:
//!
//! * NDJSON files (`*.ndjson`), one resource per line, as written by the
//!   FHIR Bulk Data Access IG (`$export`, "ndjson" output format). These are
//!   streamed line by line with a bounded line length, so memory use does
//!   not grow with file size.
//! * JSON files (`*.json`) holding a single resource or a Bundle
//!   (FHIR R4 §3.3 "Bundle": `transaction`, `batch`, `collection` or
//!   `searchset`), as written by Synthea. These are read whole, up to a cap.
//!
//! [`import()`] stores what [`ImportSource`] yields in a vault and [`export_ndjson`] writes
//! it back; `medvault import`/`export`, the demo and `examples/clinic.rs` all go through
//! these two functions.
//!
//! The stored `resource` is always the input resource exactly as given
//! (references are not rewritten), so that exporting a record reproduces the
//! input.
//!
//! Error values never carry resource content, only file names, line numbers
//! and fixed descriptions, because every resource is personal health data
//! and errors end up in logs and terminals.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::unwrap_used)]

mod bundle;
pub mod civil;
pub mod export;
pub mod import;
mod indexes;
mod source;
#[cfg(any(test, feature = "synth"))]
pub mod synth;

pub use export::{ExportError, ExportProgress, ExportReport, export_ndjson};
pub use import::{ImportError, ImportOptions, ImportProgress, ImportReport, import};
pub use indexes::default_indexes;
pub use source::ImportSource;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Subject for resources that belong to no patient (Organization,
/// Practitioner, Location, ...).
///
/// Contains `':'`, which a FHIR id (`[A-Za-z0-9\-\.]{1,64}`, FHIR R4
/// §2.24.0.1 "id") can never contain, so it cannot collide with a Patient id.
/// Every Patient id produced by this module is checked against that syntax.
pub const SHARED_SUBJECT: &str = "urn:medvault:shared";

/// Default cap on one NDJSON line, in bytes (excluding the line terminator).
///
/// Bulk Data Access IG ndjson puts one resource per line; the largest
/// realistic resources (Binary, DocumentReference with inline attachments)
/// stay well below this, and anything larger is more likely a corrupt file
/// than a resource worth holding in memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 * 1024 * 1024;

/// Default cap on one `.json` file (single resource or Bundle), in bytes.
///
/// Such files are parsed whole, so their size bounds peak memory (the parsed
/// `serde_json::Value` tree takes several times the file size).
pub const DEFAULT_MAX_JSON_BYTES: u64 = 1024 * 1024 * 1024;

/// Reference fields that place a resource in a Patient's compartment, in the
/// order they are tried by [`subject_of`].
///
/// Taken from the FHIR R4 Patient compartment definition (§2.36,
/// `compartmentdefinition-patient`): `subject` (Condition, Encounter,
/// Observation, DocumentReference, MedicationRequest, Procedure, ...),
/// `patient` (AllergyIntolerance, Immunization, Device, Claim, ...),
/// `beneficiary` (Coverage), `individual` (ResearchSubject), `candidate`
/// (EnrollmentRequest) and `for` (Task).
pub const SUBJECT_FIELDS: [&str; 6] = [
    "subject",
    "patient",
    "beneficiary",
    "individual",
    "candidate",
    "for",
];

/// One FHIR resource ready to be stored.
#[derive(Clone, PartialEq)]
pub struct FhirRecord {
    /// Id of the Patient whose compartment holds the resource, or
    /// [`SHARED_SUBJECT`].
    pub subject: String,
    /// The resource's `resourceType` (FHIR R4 §2.24 "Resource"), e.g.
    /// `"Condition"`; unknown types are kept as given.
    pub collection: String,
    /// The resource's logical id (FHIR R4 §2.24.0.1 "id"). For a Bundle entry
    /// without `id` whose `fullUrl` is `urn:uuid:X`, this is `X`.
    pub record_id: String,
    /// The resource exactly as read (references not rewritten).
    pub resource: Map<String, Value>,
}

// Hand-written so that `{:?}` of a record (in a log line, a panic message or
// a failed assert) never prints patient data.
impl fmt::Debug for FhirRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirRecord")
            .field("subject", &self.subject)
            .field("collection", &self.collection)
            .field("record_id", &self.record_id)
            .field(
                "resource",
                &format_args!("<{} fields redacted>", self.resource.len()),
            )
            .finish()
    }
}

/// Where in an input file something was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line of an NDJSON file.
    Line(u64),
    /// 0-based index into `Bundle.entry` of a `.json` file.
    Entry(usize),
    /// The single resource of a `.json` file that is not a Bundle.
    Document,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Entry(i) => write!(f, "Bundle.entry[{i}]"),
            Position::Document => f.write_str("top-level resource"),
        }
    }
}

/// Errors from reading FHIR input.
///
/// Messages name the file and position but never include resource content
/// (it is patient data).
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
    /// The text is not valid JSON.
    #[error("invalid JSON in {}, line {line}, column {column}: {message}", path.display())]
    Json {
        /// File involved.
        path: PathBuf,
        /// 1-based line: the NDJSON line, or the line within a `.json` file.
        line: u64,
        /// 1-based column within that line, as reported by the parser.
        column: usize,
        /// Fixed syntax-error description (never input text).
        message: String,
    },
    /// A value where a resource is required (a Bundle entry, or anything with
    /// a `resourceType` member) has no usable `resourceType`; resource type
    /// names are `[A-Z][A-Za-z]{0,63}` (FHIR R4 §2.24).
    #[error("{}, {at}: not a FHIR resource (missing or malformed resourceType)", path.display())]
    NotAResource {
        /// File involved.
        path: PathBuf,
        /// Position of the offending value.
        at: Position,
    },
    /// A resource has no `id`, or an empty one, and none can be derived.
    #[error("{}, {at}: resource has no id", path.display())]
    MissingId {
        /// File involved.
        path: PathBuf,
        /// Position of the resource.
        at: Position,
    },
    /// A resource `id` (or a Patient id taken from a reference or `fullUrl`)
    /// does not match `[A-Za-z0-9\-\.]{1,64}` (FHIR R4 §2.24.0.1).
    #[error("{}, {at}: resource id is not a valid FHIR id", path.display())]
    InvalidId {
        /// File involved.
        path: PathBuf,
        /// Position of the resource.
        at: Position,
    },
    /// A patient-compartment reference (see [`SUBJECT_FIELDS`]) points at a
    /// Patient but cannot be resolved to a Patient id: a `urn:uuid:` with no
    /// matching Bundle entry (or any `urn:` outside a Bundle), a conditional
    /// reference (`Patient?identifier=...`) or a logical reference by
    /// identifier. Refused rather than filed under [`SHARED_SUBJECT`], which
    /// would put patient data outside the patient's compartment.
    #[error("{}, {at}: cannot resolve the patient reference in `{field}`", path.display())]
    UnresolvedReference {
        /// File involved.
        path: PathBuf,
        /// Position of the resource.
        at: Position,
        /// The reference field, one of [`SUBJECT_FIELDS`].
        field: &'static str,
    },
    /// An NDJSON line is longer than the cap (see
    /// [`ImportSource::with_max_line_bytes`]). The rest of the line is
    /// skipped; reading continues with the next line.
    #[error("{}, line {line}: line longer than {limit} bytes", path.display())]
    LineTooLong {
        /// File involved.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The cap in bytes.
        limit: usize,
    },
    /// A `.json` file (Bundle or single resource) is larger than the cap (see
    /// [`ImportSource::with_max_json_bytes`]); the file is skipped.
    #[error("{} is larger than {limit} bytes; split it or convert it to NDJSON", path.display())]
    BundleTooLarge {
        /// File involved.
        path: PathBuf,
        /// The cap in bytes.
        limit: u64,
    },
    /// A Bundle whose `type` is not one of `transaction`, `batch`,
    /// `collection`, `searchset` (FHIR R4 §3.3.1, `bundle-type` value set).
    /// `document`, `message` and `history` Bundles are refused: their
    /// entries are not independent current resources.
    #[error("{}: unsupported Bundle.type `{bundle_type}`", path.display())]
    UnsupportedBundleType {
        /// File involved.
        path: PathBuf,
        /// The Bundle type if it is a well-formed code, else `"(invalid)"`.
        bundle_type: String,
    },
    /// A path given to [`ImportSource::new`] is a file with an extension other
    /// than `.ndjson` or `.json`.
    #[error("{}: unsupported file type (expected .ndjson or .json)", path.display())]
    UnsupportedFile {
        /// File involved.
        path: PathBuf,
    },
}

/// Returns the id of the Patient a resource belongs to.
///
/// A Patient yields its own `id`. Any other resource yields the id from the
/// first of [`SUBJECT_FIELDS`] holding a Reference (or, for 0..* fields like
/// `Account.subject`, the first element of the array) whose `reference`
/// targets a Patient (FHIR R4 §3.1.1 "Resource References"):
///
/// * relative `Patient/<id>`,
/// * absolute `http(s)://.../Patient/<id>`,
/// * either with a version suffix `/_history/<vid>`.
///
/// Returns `None` when there is no such reference, including when the only
/// patient reference is a `urn:uuid:` (it needs its Bundle to be resolved),
/// conditional (`Patient?identifier=...`), contained (`#id`) or by identifier
/// only, and when the id is not a valid FHIR id (§2.24.0.1), which guarantees
/// the result can never equal [`SHARED_SUBJECT`]. [`ImportSource`] is stricter
/// and refuses unresolvable patient references (see
/// [`FhirError::UnresolvedReference`]).
pub fn subject_of(resource: &Map<String, Value>) -> Option<String> {
    if resource.get("resourceType").and_then(Value::as_str) == Some("Patient") {
        return resource
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_valid_id(id))
            .map(str::to_owned);
    }
    for field in SUBJECT_FIELDS {
        for target in reference_targets(resource.get(field)) {
            if let RefTarget::Patient(id) = target {
                return Some(id.to_owned());
            }
        }
    }
    // Resources in the Patient compartment through other elements (Appointment
    // `participant.actor`, Communication `recipient`, Provenance `target`, ...): a
    // patient's data must not land in the shared subject, where erasing the patient
    // would not reach it. The first Patient referenced anywhere owns the resource.
    resource
        .iter()
        .filter(|(k, _)| k.as_str() != "contained")
        .find_map(|(_, v)| any_patient_reference(v, 0))
}

/// The first `Patient/<id>` reference anywhere under `v` (depth-limited).
fn any_patient_reference(v: &Value, depth: usize) -> Option<String> {
    if depth > 32 {
        return None;
    }
    match v {
        Value::Object(m) => {
            if m.get("reference").is_some_and(Value::is_string) {
                for target in reference_targets(Some(v)) {
                    if let RefTarget::Patient(id) = target {
                        return Some(id.to_owned());
                    }
                }
            }
            m.values().find_map(|x| any_patient_reference(x, depth + 1))
        }
        Value::Array(a) => a.iter().find_map(|x| any_patient_reference(x, depth + 1)),
        _ => None,
    }
}

/// FHIR R4 §2.24.0.1: an id is `[A-Za-z0-9\-\.]{1,64}`.
fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Resource type names are plain ASCII identifiers starting with an upper
/// case letter (FHIR R4 §2.24). Enforced because the type becomes a storage
/// collection name.
fn is_valid_resource_type(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.as_bytes()[0].is_ascii_uppercase()
        && t.bytes().all(|b| b.is_ascii_alphabetic())
}

/// What one Reference value points at, as far as the patient compartment is
/// concerned.
#[derive(Debug, PartialEq)]
enum RefTarget<'a> {
    /// A Patient with this (valid) id.
    Patient(&'a str),
    /// A `urn:` reference, only resolvable against a Bundle's `fullUrl`s.
    Urn(&'a str),
    /// Claims to target a Patient but gives no usable id.
    UnresolvablePatient,
    /// Not a patient reference (another type, contained, absent).
    Other,
}

/// Yields the targets of a Reference or an array of References.
fn reference_targets(value: Option<&Value>) -> impl Iterator<Item = RefTarget<'_>> {
    let items: &[Value] = match value {
        Some(Value::Array(a)) => a,
        Some(v) => std::slice::from_ref(v),
        None => &[],
    };
    items.iter().map(classify_reference)
}

fn classify_reference(reference: &Value) -> RefTarget<'_> {
    let Some(obj) = reference.as_object() else {
        return RefTarget::Other;
    };
    let declared_patient = obj.get("type").and_then(Value::as_str) == Some("Patient");
    let Some(r) = obj.get("reference").and_then(Value::as_str) else {
        // Logical reference (by identifier only): FHIR R4 §3.1.1.
        return if declared_patient {
            RefTarget::UnresolvablePatient
        } else {
            RefTarget::Other
        };
    };
    if r.starts_with("urn:") {
        return RefTarget::Urn(r);
    }
    if r.starts_with('#') {
        return RefTarget::Other;
    }
    if let Some((path, _query)) = r.split_once('?') {
        // Conditional reference, e.g. `Patient?identifier=sys|val`.
        return if path.rsplit('/').next() == Some("Patient") || declared_patient {
            RefTarget::UnresolvablePatient
        } else {
            RefTarget::Other
        };
    }
    let mut segs: Vec<&str> = r.split('/').collect();
    if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        segs.truncate(segs.len() - 2);
    }
    match segs.as_slice() {
        [.., "Patient", id] if is_valid_id(id) => RefTarget::Patient(id),
        [.., "Patient", _] => RefTarget::UnresolvablePatient,
        _ if declared_patient => RefTarget::UnresolvablePatient,
        _ => RefTarget::Other,
    }
}

/// Maps Bundle `fullUrl`s of the form `urn:...` to the Patient id of that
/// entry, or `None` when the entry is not a Patient.
type UrnMap = HashMap<String, Option<String>>;

/// Like [`subject_of`] for a non-Patient resource, but resolving `urn:`
/// references through `urns` and refusing unresolvable patient references.
fn resolve_subject(
    resource: &Map<String, Value>,
    urns: Option<&UrnMap>,
) -> Result<Option<String>, &'static str> {
    for field in SUBJECT_FIELDS {
        for target in reference_targets(resource.get(field)) {
            match target {
                RefTarget::Patient(id) => return Ok(Some(id.to_owned())),
                RefTarget::Urn(u) => match urns.and_then(|m| m.get(u)) {
                    Some(Some(pid)) => return Ok(Some(pid.clone())),
                    // An entry of another type (e.g. a Group subject).
                    Some(None) => {}
                    None => return Err(field),
                },
                RefTarget::UnresolvablePatient => return Err(field),
                RefTarget::Other => {}
            }
        }
    }
    Ok(None)
}

/// The outcome of reading one position of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportItem {
    /// A resource to store.
    Record(FhirRecord),
    /// Valid JSON that is not a resource (e.g. a Bulk Data `log.ndjson`
    /// line) or a Bundle entry without `resource`; counted, not an error.
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

/// Turns one parsed JSON value into an item.
///
/// `fallback_id` is the id derived from a Bundle entry's `urn:uuid:` fullUrl;
/// `urns` is present exactly for Bundle entries; it resolves `urn:`
/// references, and makes a non-resource an error instead of a skip (an
/// entry's `resource` must be a resource).
fn resource_item(
    path: &Path,
    at: Position,
    value: Value,
    fallback_id: Option<&str>,
    urns: Option<&UrnMap>,
) -> Result<ImportItem, FhirError> {
    let in_bundle = urns.is_some();
    let not_resource = || FhirError::NotAResource {
        path: path.to_path_buf(),
        at,
    };
    let Value::Object(resource) = value else {
        return if in_bundle {
            Err(not_resource())
        } else {
            Ok(ImportItem::Skipped {
                path: path.to_path_buf(),
                at,
                why: "not a JSON object",
            })
        };
    };
    let collection = match resource.get("resourceType") {
        Some(Value::String(t)) if is_valid_resource_type(t) => t.clone(),
        Some(_) => return Err(not_resource()),
        None if in_bundle => return Err(not_resource()),
        None => {
            return Ok(ImportItem::Skipped {
                path: path.to_path_buf(),
                at,
                why: "no resourceType (not a FHIR resource, e.g. a bulk-export log line)",
            });
        }
    };
    let record_id = match resource.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => match fallback_id {
            Some(id) => id.to_owned(),
            None => {
                return Err(FhirError::MissingId {
                    path: path.to_path_buf(),
                    at,
                });
            }
        },
        Some(_) => {
            return Err(FhirError::InvalidId {
                path: path.to_path_buf(),
                at,
            });
        }
    };
    if !is_valid_id(&record_id) {
        return Err(FhirError::InvalidId {
            path: path.to_path_buf(),
            at,
        });
    }
    let subject = if collection == "Patient" {
        record_id.clone()
    } else {
        match resolve_subject(&resource, urns) {
            Ok(Some(s)) => s,
            Ok(None) => SHARED_SUBJECT.to_owned(),
            Err(field) => {
                return Err(FhirError::UnresolvedReference {
                    path: path.to_path_buf(),
                    at,
                    field,
                });
            }
        }
    };
    Ok(ImportItem::Record(FhirRecord {
        subject,
        collection,
        record_id,
        resource,
    }))
}

#[cfg(test)]
mod tests;
