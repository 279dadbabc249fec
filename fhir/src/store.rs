//! The one boundary between resource text and the vault: every record import writes
//! and every record export reads goes through here.
//!
//! Until the core's exact JSON representation is available the vault is handed a
//! `serde_json` value (lossy for numbers and member order: docs/FHIR.md section 9);
//! switching is confined to these two functions.

use medvault::{AccessContext, Action, Error, RecordKey, Vault};
use serde_json::{Map, Value};

/// Stores `batch` atomically (one `import` access-log entry per record).
///
/// # Errors
/// The vault's error; [`Error::InvalidInput`] also when a text holds a number the
/// interim representation cannot hold (e.g. `1e400`).
pub fn put_batch(
    vault: &Vault,
    ctx: &AccessContext,
    batch: &[(RecordKey, String)],
) -> Result<(), Error> {
    let mut values: Vec<Map<String, Value>> = Vec::with_capacity(batch.len());
    for (_, text) in batch {
        let v: Map<String, Value> = serde_json::from_str(text).map_err(|_| {
            Error::InvalidInput("a number in the resource is out of range".to_owned())
        })?;
        values.push(v);
    }
    vault.put_many(
        ctx,
        batch.iter().map(|(k, _)| k).zip(values.iter()),
        Action::Import,
    )?;
    Ok(())
}

/// Every record of `subject` as (key, JSON text), logged as one `export` entry.
///
/// # Errors
/// The vault's error.
pub fn export_subject(
    vault: &Vault,
    ctx: &AccessContext,
    subject: &str,
) -> Result<Vec<(RecordKey, String)>, Error> {
    let records: Vec<(RecordKey, Value)> = vault.export_records_of(ctx, subject)?;
    records
        .into_iter()
        .map(|(k, v)| {
            serde_json::to_string(&v)
                .map(|t| (k, t))
                .map_err(|_| Error::InvalidInput("JSON encoding failed".to_owned()))
        })
        .collect()
}
