//! Exit codes and the one-line error report. Every failure of a command becomes a
//! [`Failure`]: an exit code a script can act on and a message that names what failed
//! (paths, counts, error kinds) but never a record's content or a key.

use std::fmt;
use std::process::ExitCode;

use medvault::Error;
use medvault_fhir::{ExportError, FhirError, ImportError};

/// Exit codes (docs/CLI.md, "Exit codes"). 2 is also clap's code for a malformed
/// command line. Each distinct failure a script may want to act on has its own code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Anything not listed below.
    Other = 1,
    /// Bad usage: a malformed command line, a missing actor, purpose or passphrase, a
    /// compound index given the wrong number of values.
    Usage = 2,
    /// The passphrase or raw key does not open the vault.
    WrongKey = 3,
    /// Tampering or corruption: a failed MAC or AEAD tag, a broken log chain, a rollback
    /// detected against a checkpoint, an unknown format version.
    Integrity = 4,
    /// No such vault, subject or record.
    NotFound = 5,
    /// The access context does not allow the operation (e.g. break-the-glass without a
    /// reason).
    AccessDenied = 6,
    /// `import` finished and committed every valid resource, but rejected some lines or
    /// entries (listed in the reject file).
    Rejected = 7,
    /// The vault is locked by another open handle or process.
    InUse = 8,
    /// `init` over an existing vault.
    AlreadyExists = 9,
    /// A new passphrase too weak to protect a vault, refused (`--allow-weak-passphrase`
    /// insists).
    WeakPassphrase = 10,
    /// `find` names an index the vault does not define.
    NoSuchIndex = 11,
    /// A legal hold refused the operation (`audit prune` while a hold is in force).
    Held = 12,
    /// A bug: a panic that no code path caught.
    Internal = 70,
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    /// Writing to stdout failed because its reader closed the pipe.
    pub broken_pipe: bool,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            broken_pipe: false,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Code::Usage, message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        Failure::new(Code::Other, message)
    }

    /// Prefixes the message with what was being done (`"open VAULT: "`).
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// Prints `medvault: error: MESSAGE` on stderr (one line) and returns the exit code.
    pub fn report(&self) -> ExitCode {
        let one_line = self.message.replace(['\n', '\r'], " ");
        eprintln!("medvault: error: {one_line}");
        ExitCode::from(self.code as u8)
    }
}

/// The exit code of a library error.
pub fn code_of(e: &Error) -> Code {
    match e {
        Error::WrongKey => Code::WrongKey,
        // A header demanding more key-derivation work than the caps is a damaged or hostile
        // file, refused before any work: an integrity failure like a bad MAC.
        Error::Integrity { .. }
        | Error::LogTampered { .. }
        | Error::UnsupportedVersion { .. }
        | Error::ExcessiveWork(_) => Code::Integrity,
        Error::NotFound => Code::NotFound,
        Error::AccessDenied(_) => Code::AccessDenied,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        // The storage layer reports a held lock only through its message (no kind yet).
        Error::Storage(s) if is_in_use(&s.to_string()) => Code::InUse,
        _ => Code::Other,
    }
}

/// The failure of opening an existing vault. The command gives the vault no Argon2id
/// parameters when it opens one (they are the header's own), so parameters the KDF
/// refuses can only come from a header that was damaged or altered: an integrity
/// failure, like parameters above the caps, said as such.
// TODO(core): `Vault::open` could report this itself as `Error::Integrity` (structure
// Header), as it does for a bad checksum; the CLI maps it until then.
pub fn open_failure(e: Error) -> Failure {
    match e {
        Error::InvalidInput(medvault::Invalid {
            kind: medvault::InputKind::KdfParams,
            detail,
        }) => Failure::new(
            Code::Integrity,
            format!(
                "integrity failure: the header's Argon2id parameters are invalid ({detail}); \
                 the header was damaged or altered (restore it from a backup)"
            ),
        ),
        e => e.into(),
    }
}

/// True for the storage layer's "the vault is in use" message.
fn is_in_use(message: &str) -> bool {
    message.contains("the vault is in use")
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::new(code_of(&e), e.to_string())
    }
}

impl From<FhirError> for Failure {
    fn from(e: FhirError) -> Self {
        let code = match &e {
            FhirError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Code::NotFound
            }
            _ => Code::Other,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Self {
        let code = match &e {
            ImportError::Vault { error, .. } => code_of(error),
            ImportError::Input { .. } | ImportError::Rejects { .. } => Code::Other,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<ExportError> for Failure {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Vault(v) => v.into(),
            ExportError::Output(_) => Failure::other(e.to_string()),
            ExportError::NoRecords { subject } => Failure::new(
                Code::NotFound,
                format!("no records of subject {}", crate::human::escape(&subject)),
            ),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        let mut f = Failure::other(format!("I/O: {e}"));
        f.broken_pipe = e.kind() == std::io::ErrorKind::BrokenPipe;
        f
    }
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, Failure>;
