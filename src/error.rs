//! The one public error type. Variants are things a caller can act on; none carries
//! plaintext, key bytes or a logical identifier (subject, record id, actor), so an error
//! can be logged or shown to an operator as it is.

use std::borrow::Cow;
use std::fmt;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in medvault.
///
/// Each variant carries typed sub-kinds a caller can match ([`Structure`], [`LogFault`],
/// [`Denial`], [`InputKind`]); the free text beside them is for people, not programs.
/// AEAD failures stay opaque: a tag mismatch is reported as [`Error::Integrity`] naming
/// *which structure* failed (e.g. [`Structure::FieldEnvelope`]), never why inside the
/// cipher.
///
/// Match on the variant (and its sub-kind) to act; [`Error::kind_name`] is the stable
/// name recorded in access-log outcomes.
///
/// ```
/// # fn main() -> medvault::Result<()> {
/// use medvault::storage::MemoryStorage;
/// use medvault::{AccessContext, Error, InputKind, KeySource, Purpose, RecordKey, Vault};
/// let v = Vault::create_in(
///     Box::new(MemoryStorage::new()),
///     KeySource::raw([1; 32]),
///     medvault::VaultOptions::default(),
/// )?;
/// let ctx = AccessContext::new("nurse-42", Purpose::Care);
/// let missing = RecordKey::new("p1", "Observation", "nope");
/// match v.get::<serde_json::Value>(&ctx, &missing) {
///     Err(Error::NotFound) => {} // an answer, logged like any read
///     Err(Error::Integrity { structure, .. }) => panic!("tampered or corrupted {structure}"),
///     other => panic!("unexpected: {other:?}"),
/// }
/// let empty_subject = RecordKey::new("", "Observation", "1");
/// match v.put(&ctx, &empty_subject, &serde_json::json!({"a": 1})) {
///     Err(Error::InvalidInput(i)) => assert_eq!(i.kind, InputKind::Id),
///     other => panic!("unexpected: {other:?}"),
/// }
/// assert_eq!(Error::NotFound.kind_name(), "not_found");
/// # Ok(()) }
/// ```
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The supplied root key (passphrase or raw key) does not open this vault. Reported at
    /// open, before any data is touched; distinct from corruption.
    #[error("wrong key: the supplied passphrase or root key does not open this vault")]
    WrongKey,
    /// Stored bytes failed an integrity check (tag mismatch, bad MAC, truncation,
    /// malformed encoding). Never contains plaintext.
    #[error("integrity failure: {structure}: {detail}")]
    Integrity {
        /// Which structure failed.
        structure: Structure,
        /// How (no secret or personal data), e.g. `"MAC mismatch"`, `"truncated"`.
        detail: Cow<'static, str>,
    },
    /// The record, subject or key does not exist (or was erased).
    #[error("not found")]
    NotFound,
    /// The access context does not allow this operation. The attempt itself is logged.
    #[error("access denied: {0}")]
    AccessDenied(Denial),
    /// A ciphertext names a data-key version this vault does not hold (e.g. retired, or
    /// written by a newer handle). Not corruption.
    #[error("unknown key version {0}")]
    UnknownKeyVersion(u32),
    /// A stored structure has a format version this build does not understand.
    #[error("unsupported format version {version} in {what}")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// Key-derivation parameters read from disk exceed the caps (memory, iterations,
    /// lanes), so a file cannot demand unbounded work. See `crypto::kdf`.
    #[error("key-derivation parameters demand excessive work ({0})")]
    ExcessiveWork(&'static str),
    /// The caller passed something malformed: an id too long or empty, a record whose top
    /// level is not a map, a field name too long, an unknown purpose. [`Invalid::kind`]
    /// says which input.
    #[error("invalid input: {0}")]
    InvalidInput(Invalid),
    /// The storage backend failed (I/O error, injected fault, sled error). Corruption the
    /// backend detects with its own checksums is reported as [`Error::Integrity`] instead
    /// (see [`StorageError::corrupt`]).
    #[error("storage: {0}")]
    Storage(StorageError),
    /// `verify` found the access log tampered with: `seq` is the first bad sequence
    /// number, `fault` what is wrong with it.
    #[error("access log fails verification at entry {seq}: {fault}")]
    LogTampered {
        /// First bad sequence number.
        seq: u64,
        /// What is wrong with it.
        fault: LogFault,
    },
    /// A data-key version cannot be retired: `records` records still use it.
    #[error("data-key version {version} is still used by {records} records")]
    KeyInUse {
        /// The version asked to retire.
        version: u32,
        /// Records still sealed under it.
        records: u64,
    },
    /// What an operation would create already exists; [`Existing`] says what (a vault at
    /// the path given to `create`, an index, a legal hold, a restore's destination).
    #[error("{0}")]
    AlreadyExists(Existing),
    /// The write would re-create a subject that was erased: the vault remembers
    /// erasures (by keyed pseudonym only) and refuses to bring an erased patient back by
    /// accident (a re-import, a late write). The refusal is logged. If the patient has
    /// really returned, re-admit the subject explicitly first
    /// ([`crate::Vault::readmit_subject`], `medvault readmit`), which is logged with its
    /// reason. SECURITY.md "Erasure memory".
    #[error(
        "refused: this subject was erased; writing it again needs an explicit, logged \
         re-admission (Vault::readmit_subject, `medvault readmit`)"
    )]
    SubjectErased,
}

/// Which stored structure failed an integrity check ([`Error::Integrity`]). The layouts
/// are in docs/FORMAT.md under the headings named below.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Structure {
    /// The vault header (docs/FORMAT.md "Header").
    Header,
    /// A subject key entry (docs/FORMAT.md "Subject key entry"), or its absence where a
    /// record needs it.
    SubjectEntry,
    /// A record value's outer layout or storage key (docs/FORMAT.md "Record value").
    RecordValue,
    /// A record's sealed meta block.
    RecordMeta,
    /// A sealed field envelope of a record.
    FieldEnvelope,
    /// A field's CBOR value after it was opened.
    FieldValue,
    /// An access-log entry or its storage key (docs/FORMAT.md "Access-log entry").
    LogEntry,
    /// The sealed target of an access-log entry.
    LogTarget,
    /// The access-log head of storage v1 (docs/FORMAT.md "Log head"): no longer written;
    /// kept so that matching callers still compile.
    LogHead,
    /// A checkpoint (docs/FORMAT.md "Checkpoint").
    Checkpoint,
    /// A sealed blind-index definition (docs/INDEXES.md).
    IndexDefinition,
    /// A blind-index entry key.
    IndexEntry,
    /// A record's reverse index entry.
    IndexReverseEntry,
    /// The data-key rotation state (docs/FORMAT.md "Data-key rotation state").
    RotationState,
    /// An erasure mark (docs/FORMAT.md "Erasure mark").
    ErasureMark,
    /// The storage backend's own files (e.g. a sled checksum).
    Storage,
    /// The sealed access policy (docs/FORMAT.md "Access policy"): fails to open (swapped
    /// in from another vault, modified) or is older than the log says (rolled back).
    Policy,
    /// A research project's sealed pseudonym seed (docs/FORMAT.md "Research project
    /// seed").
    ResearchSeed,
    /// A subject's sealed objection to secondary use (docs/FORMAT.md "Research
    /// objection").
    ResearchObjection,
    /// An access-log segment file: its header, a frame, a missing or cut segment
    /// (docs/FORMAT.md "Log segment files").
    LogSegment,
    /// The anchor file (docs/FORMAT.md "Anchor file").
    Anchor,
    /// The record store's applied marker (docs/FORMAT.md "Applied marker").
    AppliedMarker,
    /// The record store as a whole against the log: behind or ahead of it, or not
    /// matching the state digest (docs/FORMAT.md "State digest").
    RecordStore,
    /// A backup directory: its manifest, a file missing, cut or altered, a log that does
    /// not match its checkpoint (docs/FORMAT.md "Backup directory").
    Backup,
    /// The erasure ledger (docs/FORMAT.md "Erasure ledger").
    ErasureLedger,
    /// The prune record: the retention's prune point in the record store, or its log
    /// entry (docs/FORMAT.md "Prune record").
    PruneRecord,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Structure::Header => "header",
            Structure::SubjectEntry => "subject entry",
            Structure::RecordValue => "record value",
            Structure::RecordMeta => "record meta",
            Structure::FieldEnvelope => "field envelope",
            Structure::FieldValue => "field value",
            Structure::LogEntry => "access-log entry",
            Structure::LogTarget => "access-log target",
            Structure::LogHead => "access-log head",
            Structure::Checkpoint => "checkpoint",
            Structure::IndexDefinition => "index definition",
            Structure::IndexEntry => "index entry",
            Structure::IndexReverseEntry => "index reverse entry",
            Structure::RotationState => "rotation state",
            Structure::ErasureMark => "erasure mark",
            Structure::Storage => "storage",
            Structure::Policy => "access policy",
            Structure::ResearchSeed => "research project seed",
            Structure::ResearchObjection => "research objection",
            Structure::LogSegment => "access-log segment",
            Structure::Anchor => "anchor",
            Structure::AppliedMarker => "applied marker",
            Structure::RecordStore => "record store",
            Structure::Backup => "backup",
            Structure::ErasureLedger => "erasure ledger",
            Structure::PruneRecord => "prune record",
        })
    }
}

/// What `verify` found wrong at the first bad access-log entry ([`Error::LogTampered`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogFault {
    /// The head is missing: the log was deleted.
    HeadMissing,
    /// The head fails its MAC.
    HeadMac,
    /// An entry's storage key is malformed.
    MalformedKey,
    /// An entry is missing (a gap in the sequence).
    EntryMissing,
    /// An entry's bytes are malformed.
    EntryMalformed,
    /// An entry has an unknown format version.
    UnknownVersion,
    /// An entry's chain link does not match: modified, moved or forged.
    LinkMismatch,
    /// An entry's body fails authentication.
    BodyAuthentication,
    /// The log diverges from the checkpoint given.
    DivergesFromCheckpoint,
    /// Entries are missing at the tail (truncated).
    TruncatedTail,
    /// An entry lies beyond the head.
    BeyondHead,
    /// The head does not match the last entry.
    HeadMismatch,
    /// The log is shorter than the checkpoint given (rolled back or deleted).
    ShorterThanCheckpoint,
}

impl fmt::Display for LogFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFault::HeadMissing => "access-log head missing (log deleted)",
            LogFault::HeadMac => "access-log head fails its MAC",
            LogFault::MalformedKey => "malformed entry key",
            LogFault::EntryMissing => "entry missing",
            LogFault::EntryMalformed => "entry malformed",
            LogFault::UnknownVersion => "entry has an unknown format version",
            LogFault::LinkMismatch => "link mismatch: entry modified, moved or forged",
            LogFault::BodyAuthentication => "entry body fails authentication",
            LogFault::DivergesFromCheckpoint => "log diverges from the checkpoint",
            LogFault::TruncatedTail => "entries missing at the tail (truncated)",
            LogFault::BeyondHead => "entry beyond the head",
            LogFault::HeadMismatch => "head does not match the last entry",
            LogFault::ShorterThanCheckpoint => {
                "log is shorter than the checkpoint (rolled back or deleted)"
            }
        })
    }
}

/// What already exists ([`Error::AlreadyExists`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Existing {
    /// A vault, at the path or in the store given to `create`.
    Vault,
    /// An index of that name in that collection (with another spec).
    Index {
        /// The collection.
        collection: String,
        /// The index name.
        name: String,
    },
    /// A legal hold of that name (`Vault::set_legal_hold`).
    LegalHold(String),
    /// The destination of a restore, which must not exist (`Vault::restore`).
    RestoreDestination,
}

impl fmt::Display for Existing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Existing::Vault => f.write_str("a vault already exists at this location"),
            Existing::Index { collection, name } => write!(
                f,
                "an index named {name} already exists in collection {collection}"
            ),
            Existing::LegalHold(name) => write!(f, "a legal hold named {name} already exists"),
            Existing::RestoreDestination => f.write_str(
                "the restore destination already exists (a restore creates it: name a new path)",
            ),
        }
    }
}

/// Why an access context was refused ([`Error::AccessDenied`]).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Denial {
    /// Break-the-glass (emergency) access without a stated reason.
    BreakGlassWithoutReason,
    /// The vault's access policy refused the operation (see `medvault::policy`).
    /// `rule` names the policy rule that decided: a rule name of the policy, or one of
    /// the built-in names `no-role`, `undeclared-purpose`, `role-purpose`,
    /// `deny-by-default`, `capability` (docs/POLICY.md). It holds no identifier of a
    /// subject, record or actor.
    Policy {
        /// The rule that decided.
        rule: String,
        /// The policy version that decided.
        version: u32,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denial::BreakGlassWithoutReason => {
                "break-the-glass (emergency) access requires a reason"
            }
            Denial::Policy { rule, version } => {
                return write!(
                    f,
                    "refused by policy rule `{rule}` (policy version {version})"
                );
            }
        })
    }
}

/// Which input was malformed ([`Invalid::kind`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// A subject, collection or record id (empty or too long).
    Id,
    /// A record value (not a map, too large, too deep, bad field names) or the type it
    /// is read into.
    Record,
    /// An access context (actor, reason, purpose name).
    Context,
    /// An index spec, path or query.
    Index,
    /// A checkpoint given to `verify` (text form, length, other vault).
    Checkpoint,
    /// Key-derivation parameters below Argon2's minimums, or rejected by Argon2.
    KdfParams,
    /// A key operation that cannot be done (e.g. retire the current version, a pending
    /// root rotation to another key, versions exhausted).
    KeyOperation,
    /// An action name, or an action an operation does not log.
    Action,
    /// Output that could not be encoded (e.g. JSON).
    Output,
    /// An access policy (malformed JSON, an undeclared purpose), or a review verdict.
    Policy,
    /// A backup or restore request: another vault's backup, no erasure ledger, a bad
    /// destination; a retention period or legal-hold name.
    Backup,
}

/// The payload of [`Error::InvalidInput`]: which input, and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Which input was malformed.
    pub kind: InputKind,
    /// What is wrong with it (no secret or personal data).
    pub detail: Cow<'static, str>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl Error {
    /// Shorthand for an [`Error::Integrity`] naming a structure and what is wrong.
    pub(crate) fn integrity(structure: Structure, detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Integrity {
            structure,
            detail: detail.into(),
        }
    }

    /// Shorthand for an [`Error::InvalidInput`].
    pub(crate) fn invalid(kind: InputKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidInput(Invalid {
            kind,
            detail: detail.into(),
        })
    }

    /// A short, stable name of the error kind, as recorded in access-log outcomes.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::WrongKey => "wrong_key",
            Error::Integrity { .. } => "integrity",
            Error::NotFound => "not_found",
            Error::AccessDenied(_) => "access_denied",
            Error::UnknownKeyVersion(_) => "unknown_key_version",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::ExcessiveWork(_) => "excessive_work",
            Error::InvalidInput(_) => "invalid_input",
            Error::Storage(_) => "storage",
            Error::LogTampered { .. } => "log_tampered",
            Error::KeyInUse { .. } => "key_in_use",
            Error::AlreadyExists(_) => "already_exists",
            Error::SubjectErased => "subject_erased",
        }
    }
}

/// A failure of the storage backend. Carries the backend's message (sled and the OS speak
/// of paths and I/O, never of record contents, which the backend only sees sealed).
#[derive(Debug)]
pub struct StorageError {
    message: String,
    corrupt: bool,
}

impl StorageError {
    /// Wraps a backend message.
    pub fn new(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
            corrupt: false,
        }
    }

    /// Stored bytes failed the backend's own checks (e.g. a sled checksum): tampering or
    /// corruption of the files. Converted to [`Error::Integrity`], not [`Error::Storage`].
    pub fn corrupt(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
            corrupt: true,
        }
    }

    /// True for an error made by [`StorageError::corrupt`].
    pub fn is_corruption(&self) -> bool {
        self.corrupt
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        if e.corrupt {
            Error::integrity(Structure::Storage, e.message)
        } else {
            Error::Storage(e)
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        StorageError::new(format!("I/O: {e}"))
    }
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        match e {
            // sled's message carries a debug backtrace; the fact is what matters.
            sled::Error::Corruption { .. } => {
                StorageError::corrupt("sled: the database files fail their checksums")
            }
            e => StorageError::new(format!("sled: {e}")),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        StorageError::from(e).into()
    }
}
