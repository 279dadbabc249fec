//! # medvault-bindings-text
//!
//! The JSON text boundary that medvault's two bindings share: the C ABI (`medvault-ffi`)
//! and the Python extension (`medvault-py`) both hand record values, access-log queries,
//! log entries and import reports over as JSON text, and every conversion between that
//! text and the vault's API happens here, once. Each binding keeps only the mapping of
//! [`TextError`] to its own error (a C status code; a Python exception).
//!
//! Values cross as exact JSON text (`medvault::json::JsonText`): number and string
//! tokens and member order come back byte for byte as written (`1.50` stays `1.50`).
//!
//! Internal to the workspace (`publish = false`): not API, no semver promise.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

use std::path::PathBuf;

use medvault::json::JsonText;
use medvault::{AccessContext, Checkpoint, LogEntry, LogQuery, Policy, Purpose, RecordKey, Vault};
use serde::Serialize;
use zeroize::Zeroizing;

/// A failure at the text boundary: a stable kind name (`medvault::Error::kind_name`'s
/// names, e.g. `invalid_input`, `not_found`, `storage`) and a message free of plaintext,
/// key bytes and identifiers (the core's errors carry none; the boundary's own name only
/// the argument and a position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError {
    kind: &'static str,
    message: String,
    rule: Option<String>,
}

impl TextError {
    /// Malformed input found at the boundary (kind `invalid_input`); the message is
    /// prefixed with `invalid input: `.
    pub fn invalid(message: impl Into<String>) -> Self {
        TextError {
            kind: "invalid_input",
            message: format!("invalid input: {}", message.into()),
            rule: None,
        }
    }

    /// The stable kind name (as `medvault::Error::kind_name`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The access-policy rule that refused the call (`medvault::Denial::Policy`'s
    /// `rule`: a rule name of the policy, or a built-in name such as `no-role`,
    /// `role-purpose`, `deny-by-default`, `field-not-granted`; docs/POLICY.md), `None`
    /// for any other failure.
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// Kind, message and policy rule, taken apart.
    pub fn into_parts(self) -> (&'static str, String, Option<String>) {
        (self.kind, self.message, self.rule)
    }
}

impl From<medvault::Error> for TextError {
    fn from(e: medvault::Error) -> Self {
        let rule = match &e {
            medvault::Error::AccessDenied(medvault::Denial::Policy { rule, .. }) => {
                Some(rule.clone())
            }
            _ => None,
        };
        TextError {
            kind: e.kind_name(),
            message: e.to_string(),
            rule,
        }
    }
}

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TextError {}

/// A syntax error in caller JSON, reported by position only (never the text).
fn json_error(what: &str, e: &serde_json::Error) -> TextError {
    TextError::invalid(format!(
        "{what} is not valid JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// The access context of a binding call (`medvault::AccessContext`), built from what both
/// bindings pass: the actor id, a purpose (a name of `Purpose::name`, `break-the-glass`,
/// or an HL7 v3 PurposeOfUse code such as `TREAT`, any case), an optional reason, the
/// roles the application authenticated the actor in (docs/POLICY.md "Roles, purposes
/// and the access context"; an empty list is no role: refused under a policy, rule
/// `no-role`), and an optional custom PurposeOfUse code declared by the vault's policy
/// (e.g. `PUBHLTH`, refining `purpose`).
///
/// Lengths and counts (actor 1 to 256 bytes, reason at most 1024, at most 16 roles of 1
/// to 64 bytes) are checked by the vault, which logs a refusal; here only the purpose
/// name is parsed.
///
/// # Errors
/// `invalid_input` for an unknown purpose name.
pub fn access_context(
    actor: &str,
    purpose: &str,
    reason: Option<&str>,
    roles: &[&str],
    purpose_code: Option<&str>,
) -> Result<AccessContext, TextError> {
    let purpose: Purpose = purpose.parse()?;
    let mut ctx = AccessContext::new(actor, purpose);
    ctx.reason = reason.map(str::to_owned);
    ctx.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    ctx.purpose_code = purpose_code.map(str::to_owned);
    Ok(ctx)
}

/// Installs the access policy given as JSON text (docs/POLICY.md "The policy";
/// `medvault::Policy::from_json`) with `Vault::set_policy`; returns the new policy
/// version (1 for the first).
///
/// # Errors
/// `invalid_input` for text that is not a valid policy; `access_denied` when a policy
/// is installed already and `ctx` has no role with the `policy` capability; the vault's
/// error otherwise.
pub fn set_policy(vault: &Vault, ctx: &AccessContext, text: &str) -> Result<u32, TextError> {
    let policy = Policy::from_json(text)?;
    Ok(vault.set_policy(ctx, policy)?)
}

/// The JSON text of the default clinic policy (`medvault::Policy::default_clinic`,
/// docs/POLICY.md "The default clinic policy"), to install as it is or to edit.
pub fn default_policy_text() -> String {
    Policy::default_clinic().to_json()
}

/// Stores the JSON object `text` as record `key` (the one conversion of values in).
///
/// # Errors
/// `invalid_input` when `text` is not one JSON object (the message names kind, byte
/// offset and depth only, never content); the vault's error otherwise.
pub fn put_text(
    vault: &Vault,
    ctx: &AccessContext,
    key: &RecordKey,
    text: &str,
) -> Result<(), TextError> {
    let record =
        JsonText::parse(text).map_err(|e| TextError::invalid(format!("the record: {e}")))?;
    vault.put_json(ctx, key, &record)?;
    Ok(())
}

/// JSON text of a value read from the vault (the one conversion of values out).
///
/// # Errors
/// `invalid_input` when serde_json cannot write `value` (a map with non-string keys).
pub fn value_text<T: Serialize>(value: &T) -> Result<Zeroizing<String>, TextError> {
    serde_json::to_string(value)
        .map(Zeroizing::new)
        .map_err(|_| TextError::invalid("a value could not be written as JSON"))
}

/// Record `key` as JSON object text: all fields, or only `fields` when given (absent
/// names are skipped).
///
/// # Errors
/// The vault's error (`not_found`, `access_denied`, `integrity`, ...).
pub fn get_text(
    vault: &Vault,
    ctx: &AccessContext,
    key: &RecordKey,
    fields: Option<&[&str]>,
) -> Result<Zeroizing<String>, TextError> {
    let text = match fields {
        None => vault.get_json(ctx, key)?,
        Some(f) => vault.get_fields_json(ctx, key, f)?,
    };
    Ok(text.into_string())
}

/// A JSON array of `{"subject", "collection", "record_id", "value"}` objects, each value
/// its record's exact text.
///
/// # Errors
/// None in practice (ids are strings); typed for [`value_text`].
pub fn list_text(records: &[(RecordKey, JsonText)]) -> Result<Zeroizing<String>, TextError> {
    let mut out = Zeroizing::new(String::from("["));
    for (i, (k, v)) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // The ids escaped by serde_json; the value spliced in as its exact text.
        out.push_str("{\"subject\":");
        out.push_str(&value_text(&k.subject)?);
        out.push_str(",\"collection\":");
        out.push_str(&value_text(&k.collection)?);
        out.push_str(",\"record_id\":");
        out.push_str(&value_text(&k.record_id)?);
        out.push_str(",\"value\":");
        out.push_str(v.as_str());
        out.push('}');
    }
    out.push(']');
    Ok(out)
}

/// The filter of an access-log query, as JSON text: every member optional, unknown
/// members refused.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueryText {
    subject: Option<String>,
    actor: Option<String>,
    purpose: Option<String>,
    action: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
}

/// Parses an access-log query (`None`: every entry) into a `LogQuery`: a JSON object
/// with optional members `subject`, `actor`, `purpose`, `action` (names as in the log),
/// `since_ms`, `until_ms` (ms since the Unix epoch, UTC).
///
/// # Errors
/// `invalid_input` for text that is not such an object (position named), an unknown
/// member, or an unknown purpose or action name.
pub fn log_query(text: Option<&str>) -> Result<LogQuery, TextError> {
    let q: QueryText = match text {
        None => QueryText::default(),
        Some(t) => serde_json::from_str(t).map_err(|e| json_error("the query", &e))?,
    };
    Ok(LogQuery {
        subject: q.subject,
        actor: q.actor,
        purpose: q.purpose.map(|p| p.parse()).transpose()?,
        action: q.action.map(|a| a.parse()).transpose()?,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
    })
}

/// The access-log entries as a JSON array (the core's `LogEntry` JSON form).
///
/// # Errors
/// As [`value_text`].
pub fn entries_text(entries: &[LogEntry]) -> Result<Zeroizing<String>, TextError> {
    value_text(&entries)
}

/// A checkpoint from its text form (`mvcp1:` + hex), or `None`.
///
/// # Errors
/// `invalid_input` for a malformed checkpoint text.
pub fn checkpoint(text: Option<&str>) -> Result<Option<Checkpoint>, TextError> {
    Ok(text.map(Checkpoint::from_text).transpose()?)
}

/// Imports FHIR R4 resources from `path` (an `.ndjson` or `.json` file, or a directory
/// of them) with medvault-fhir's default `ImportOptions`, and returns the report as a
/// JSON object `{"records", "per_type", "replaced", "unchanged", "skipped", "rejected",
/// "refused_erased", "batches", "bytes"}` (counts; `bytes` of input read;
/// `refused_erased`: records not stored because their subject was erased, see
/// `medvault_fhir::ImportReport::refused_erased`).
///
/// # Errors
/// `invalid_input` for unreadable or invalid input (file and position named, never
/// content, with the number of records committed before it); the vault's error
/// otherwise. Batches committed before a failure stay.
pub fn import_fhir(vault: &Vault, ctx: &AccessContext, path: PathBuf) -> Result<String, TextError> {
    let source =
        medvault_fhir::ImportSource::new(&[path]).map_err(|e| TextError::invalid(e.to_string()))?;
    let report = medvault_fhir::import(
        vault,
        ctx,
        source,
        medvault_fhir::ImportOptions::default(),
        &mut |_| {},
    )
    .map_err(|e| {
        let text = e.to_string();
        match e {
            medvault_fhir::ImportError::Input { error, committed } => {
                TextError::invalid(format!("{error} ({committed} records committed before it)"))
            }
            medvault_fhir::ImportError::Vault { error, .. } => TextError::from(error),
            // Not reachable through `import` (its reject sink discards); kept exhaustive.
            medvault_fhir::ImportError::Rejects { .. } => TextError {
                kind: "storage",
                message: text,
                rule: None,
            },
        }
    })?;
    Ok(serde_json::json!({
        "records": report.records,
        "per_type": report.per_type,
        "replaced": report.replaced,
        "unchanged": report.unchanged,
        "skipped": report.skipped,
        "rejected": report.rejected,
        "refused_erased": report.refused_erased,
        "batches": report.batches,
        "bytes": report.bytes,
    })
    .to_string())
}
