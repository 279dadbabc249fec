//! # medvault
//!
//! An embeddable, encrypted storage engine for patient records. Every record belongs to
//! a data subject (a patient); every top-level field is sealed separately with
//! AES-256-GCM under the subject's own data key (DEK); data keys are wrapped by a root key
//! (KEK) derived with Argon2id from a passphrase or supplied raw by a KMS; erasing a
//! subject destroys its keys (crypto-shredding); and every operation, reads included, is
//! committed with an entry in a sealed, hash-chained access log.
//!
//! ```
//! use medvault::{AccessContext, KeySource, Purpose, RecordKey, Vault};
//! use serde_json::json;
//!
//! # fn main() -> medvault::Result<()> {
//! let dir = tempfile::tempdir()?;
//! // Low-cost KDF parameters for the example only; the default is RFC 9106's.
//! let vault = Vault::create(dir.path().join("v"), KeySource::passphrase("s3cret"),
//!                           medvault::danger::insecure_kdf_params())?;
//! let nurse = AccessContext::new("nurse-42", Purpose::Care);
//! let key = RecordKey::new("patient-1", "Observation", "bp-1");
//! vault.put(&nurse, &key, &json!({"code": "85354-9", "value": 120}))?;
//! let only_value: serde_json::Value = vault.get_fields(&nurse, &key, &["value"])?;
//! assert_eq!(only_value, json!({"value": 120}));
//! assert!(vault.verify(&nurse, None)? >= 3);
//! # Ok(()) }
//! ```
//!
//! Records are found without decrypting the vault through blind indexes (keyed hashes of
//! normalized field values, written atomically with each record): see [`index`],
//! [`Vault::find`] and `docs/INDEXES.md`.
//!
//! Architecture, invariants and formats: `docs/FORMAT.md`, `SECURITY.md`, and the
//! module docs below.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::unwrap_used)]

pub mod audit;
pub mod civil;
mod codec;
pub mod commit;
pub mod context;
mod crypto;
pub mod danger;
mod error;
#[cfg(test)]
mod golden_tests;
mod header;
mod ids;
pub mod index;
pub mod json;
mod keyring;
mod keyspace;
pub mod logstore;
pub mod policy;
pub mod record;
pub mod research;
pub mod storage;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod vault;

pub use audit::{Action, Checkpoint, LogEntry, Outcome, Target};
pub use context::{AccessContext, Purpose};
pub use crypto::{DEFAULT_MAX_KDF_WORK, KdfParams, KeySource, Passphrase, RootKey};
pub use error::{
    Denial, Error, Existing, InputKind, Invalid, LogFault, Result, StorageError, Structure,
};
pub use ids::{SubjectTag, VaultId};
pub use index::{IndexCheck, IndexPath, IndexSpec, IndexStatus, Normalization};
pub use keyring::DEFAULT_KEY_CACHE_BYTES;
pub use policy::{FieldFilter, Policy};
pub use record::RecordKey;
pub use vault::{
    BackupReport, CheckpointKey, DEFAULT_DEK_MESSAGE_BOUND, DEFAULT_RETENTION_DAYS, Durability,
    ErasedSubject, ErasureLedger, KEK_REWRAP_BATCH, LedgerEntry, LegalHold, LogQuery, Progress,
    PruneReport, RestoreOptions, RestoreReport, RotateAllPhase, RotateAllReport, RotationReport,
    RotationScope, SYSTEM_ACTOR, SignedCheckpoint, Stats, SubjectRecords, Vault, VaultOptions,
    WriteOutcome,
};
/// File names of a backup directory, where a restore builds, and the check that keeps a
/// backup or restore out of what it copies (docs/BACKUP.md).
pub mod backup {
    pub use crate::vault::{MANIFEST_FILE, RECORDS_FILE, check_destination, restore_partial_dir};
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
