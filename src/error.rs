//! The one public error type. Variants are things a caller can act on; none carries
//! plaintext, key bytes or a logical identifier (subject, record id, actor), so an error
//! can be logged or shown to an operator as it is.

use std::fmt;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in medvault.
///
/// AEAD failures stay opaque: a tag mismatch is reported as [`Error::Integrity`] naming
/// *which structure* failed (e.g. `"field envelope"`), never why inside the cipher.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The supplied root key (passphrase or raw key) does not open this vault. Reported at
    /// open, before any data is touched; distinct from corruption.
    #[error("wrong key: the supplied passphrase or root key does not open this vault")]
    WrongKey,
    /// Stored bytes failed an integrity check (tag mismatch, bad MAC, truncation, broken
    /// log chain). `what` names the structure and, for the access log, the first bad
    /// sequence number; it never contains plaintext.
    #[error("integrity failure: {what}")]
    Integrity {
        /// Which structure failed and how (no secret or personal data).
        what: String,
    },
    /// The record, subject or key does not exist (or was erased).
    #[error("not found")]
    NotFound,
    /// The access context does not allow this operation (e.g. break-the-glass without a
    /// reason). The attempt itself is logged.
    #[error("access denied: {0}")]
    AccessDenied(&'static str),
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
    /// level is not a map, a field name too long, an unknown purpose.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The storage backend failed (I/O error, injected fault, sled error). Corruption the
    /// backend detects with its own checksums is reported as [`Error::Integrity`] instead
    /// (see [`StorageError::corrupt`]).
    #[error("storage: {0}")]
    Storage(StorageError),
    /// `verify` found the access log tampered with: `seq` is the first bad sequence
    /// number, `what` says what is wrong (missing, link mismatch, truncated tail, ...).
    #[error("access log fails verification at entry {seq}: {what}")]
    LogTampered {
        /// First bad sequence number.
        seq: u64,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A data-key version cannot be retired: `records` records still use it.
    #[error("data-key version {version} is still used by {records} records")]
    KeyInUse {
        /// The version asked to retire.
        version: u32,
        /// Records still sealed under it.
        records: u64,
    },
    /// A vault already exists at the path given to `create`.
    #[error("a vault already exists at this location")]
    AlreadyExists,
}

impl Error {
    /// Shorthand for an [`Error::Integrity`] naming a structure.
    pub(crate) fn integrity(what: impl Into<String>) -> Self {
        Error::Integrity { what: what.into() }
    }

    /// Shorthand for an [`Error::InvalidInput`].
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
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
            Error::AlreadyExists => "already_exists",
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
            Error::Integrity {
                what: format!("storage: {}", e.message),
            }
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
