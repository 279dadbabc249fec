//! The JSON text boundary: what C sends and receives as record values. All conversion
//! between JSON text and the vault's API happens in [`put_text`] and [`value_text`] (and
//! the list shapes built on the latter), so the switch to the core's exact JSON API
//! changes this file only.
//!
//! Values cross as exact JSON text (`medvault::json::JsonText`): number and string
//! tokens and member order come back byte for byte as written (`1.50` stays `1.50`).

use medvault::json::JsonText;
use medvault::{AccessContext, Checkpoint, LogEntry, LogQuery, RecordKey, Vault};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::status::BindError;

/// A syntax error in caller JSON, reported by position only (never the text).
fn json_error(what: &str, e: &serde_json::Error) -> BindError {
    BindError::invalid(format!(
        "{what} is not valid JSON (line {}, column {})",
        e.line(),
        e.column()
    ))
}

/// Stores the JSON object `text` as record `key` (the one conversion of values in).
pub fn put_text(
    vault: &Vault,
    ctx: &AccessContext,
    key: &RecordKey,
    text: &str,
) -> Result<(), BindError> {
    // JsonError names kind, byte offset and depth only (never content).
    let record =
        JsonText::parse(text).map_err(|e| BindError::invalid(format!("the record: {e}")))?;
    vault.put_json(ctx, key, &record)?;
    Ok(())
}

/// JSON text of a value read from the vault (the one conversion of values out).
pub fn value_text<T: Serialize>(value: &T) -> Result<Zeroizing<String>, BindError> {
    serde_json::to_string(value)
        .map(Zeroizing::new)
        .map_err(|_| BindError::invalid("a value could not be written as JSON"))
}

/// Record `key` as JSON text (all fields, or only `fields` when given).
pub fn get_text(
    vault: &Vault,
    ctx: &AccessContext,
    key: &RecordKey,
    fields: Option<&[&str]>,
) -> Result<Zeroizing<String>, BindError> {
    let text = match fields {
        None => vault.get_json(ctx, key)?,
        Some(f) => vault.get_fields_json(ctx, key, f)?,
    };
    Ok(text.into_string())
}

/// A JSON array of `{"subject", "collection", "record_id", "value"}` objects, each value
/// its record's exact text.
pub fn list_text(records: &[(RecordKey, JsonText)]) -> Result<Zeroizing<String>, BindError> {
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

/// Parses a query (`None`: every entry) into a `LogQuery`.
pub fn log_query(text: Option<&str>) -> Result<LogQuery, BindError> {
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
pub fn entries_text(entries: &[LogEntry]) -> Result<Zeroizing<String>, BindError> {
    value_text(&entries)
}

/// A checkpoint's text form (`mvcp1:` + hex), or `None`.
pub fn checkpoint(text: Option<&str>) -> Result<Option<Checkpoint>, BindError> {
    Ok(text.map(Checkpoint::from_text).transpose()?)
}
