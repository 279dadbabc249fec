//! The one boundary between resource text and the vault: every record import writes
//! and every record export reads goes through here.
//!
//! Until the core's exact JSON representation is available the vault is handed a
//! `serde_json` value (lossy for numbers and member order: docs/FHIR.md section 9);
//! switching is confined to these two functions.

use medvault::{AccessContext, Action, Error, RecordKey, Vault};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Why a batch was not stored.
#[derive(Debug)]
pub enum StoreError {
    /// A record is refused for what it is (too large, a number out of range...): the
    /// message names the limit, never content. Nothing of the batch was written.
    Refused(String),
    /// The vault failed or refused the operation as such.
    Vault(Error),
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(_) => StoreError::Refused(e.to_string()),
            e => StoreError::Vault(e),
        }
    }
}

/// A resource text checked and ready for the vault.
pub struct Prepared(Zeroizing<String>);

impl Prepared {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Checks that the vault can hold `text` exactly; the reason (never content) if not.
///
/// # Errors
/// A fixed description of what cannot be held.
pub fn prepare(text: Zeroizing<String>) -> Result<Prepared, String> {
    serde_json::from_str::<Map<String, Value>>(text.as_str())
        .map_err(|_| "not representable by the vault (a number out of range)".to_owned())?;
    Ok(Prepared(text))
}

/// Stores `batch` atomically (one `import` access-log entry per record).
///
/// # Errors
/// [`StoreError::Refused`] when a record cannot be stored (then nothing is), else the
/// vault's error.
pub fn put_batch(
    vault: &Vault,
    ctx: &AccessContext,
    batch: &[(RecordKey, Prepared)],
) -> Result<(), StoreError> {
    let mut values: Vec<Map<String, Value>> = Vec::with_capacity(batch.len());
    for (_, text) in batch {
        let v: Map<String, Value> = serde_json::from_str(text.0.as_str()).map_err(|_| {
            StoreError::Refused("a number in the resource is out of range".to_owned())
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
) -> Result<Vec<(RecordKey, Zeroizing<String>)>, Error> {
    let records: Vec<(RecordKey, Value)> = vault.export_records_of(ctx, subject)?;
    Ok(records
        .into_iter()
        .map(|(k, v)| (k, Zeroizing::new(v.to_string())))
        .collect())
}
