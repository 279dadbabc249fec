//! The one boundary between resource text and the vault: every record import writes
//! and every record export reads goes through here, as the core's exact JSON
//! representation ([`medvault::json::JsonText`]): number tokens, strings and member order
//! are kept, so an export gives back what was imported (docs/FHIR.md section 1).

use medvault::json::JsonText;
use medvault::{AccessContext, Action, Error, RecordKey, Vault, WriteOutcome};
use zeroize::Zeroizing;

/// Why a batch was not stored.
#[derive(Debug)]
pub enum StoreError {
    /// A record is refused for what it is (larger than a record may be...): the message
    /// names the limit, never content. Nothing of the batch was written.
    Refused(String),
    /// A record's subject was erased: the vault remembers erasures and refuses to
    /// re-create an erased patient ([`Error::SubjectErased`]; the refusal is logged).
    /// Nothing of the batch was written.
    Erased,
    /// The vault failed or refused the operation as such.
    Vault(Error),
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(_) => StoreError::Refused(e.to_string()),
            Error::SubjectErased => StoreError::Erased,
            e => StoreError::Vault(e),
        }
    }
}

/// A resource text in the vault's exact representation.
pub struct Prepared(JsonText);

impl Prepared {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Parses `text` into the vault's exact representation (validated, canonical compact
/// form keeping every number and string token and member order); the reason (offset
/// and kind, never content) if it cannot be held.
///
/// # Errors
/// The representation's error as text.
pub fn prepare(text: Zeroizing<String>) -> Result<Prepared, String> {
    let mut text = text;
    let bytes = Zeroizing::new(std::mem::take(&mut *text).into_bytes());
    JsonText::parse_owned(bytes, medvault::json::Limits::default())
        .map(Prepared)
        .map_err(|e| e.to_string())
}

/// Stores `batch` atomically (one `import` access-log entry per record written), leaving
/// each record the vault already holds with the same exact text as it is (the vault
/// compares inside the write, [`Vault::put_many_json_outcomes`]: nothing stored is read
/// back to the caller). Returns one outcome per record, in order.
///
/// # Errors
/// [`StoreError::Refused`] when a record cannot be stored (then nothing is),
/// [`StoreError::Erased`] when a record's subject was erased, else the vault's error.
pub fn put_batch(
    vault: &Vault,
    ctx: &AccessContext,
    batch: &[(RecordKey, Prepared)],
) -> Result<Vec<WriteOutcome>, StoreError> {
    Ok(vault.put_many_json_outcomes(ctx, batch.iter().map(|(k, p)| (k, &p.0)), Action::Import)?)
}

/// Every record of each subject of `subjects` as (key, exact JSON text), read in one
/// commit of the access log with one `export` entry per subject
/// ([`Vault::records_of_subjects_json`]); in the order given.
///
/// # Errors
/// The vault's error.
#[allow(clippy::type_complexity)]
pub fn export_subjects(
    vault: &Vault,
    ctx: &AccessContext,
    subjects: &[&str],
) -> Result<Vec<(String, Vec<(RecordKey, Zeroizing<String>)>)>, Error> {
    Ok(vault
        .records_of_subjects_json(ctx, subjects, None, Action::Export)?
        .into_iter()
        .map(|(s, records)| {
            let records = records
                .into_iter()
                .map(|(k, t)| (k, t.into_string()))
                .collect();
            (s, records)
        })
        .collect())
}
