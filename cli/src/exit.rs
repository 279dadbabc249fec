//! Exit codes and the one-line error report. Every failure of a command becomes a
//! [`Failure`]: an exit code a script can act on and a message that names what failed
//! (paths, counts, error kinds) but never a record's content or a key.

use std::fmt;
use std::process::ExitCode;

use medvault::Error;
use medvault_fhir::{ExportError, FhirError, ImportError};

/// Exit codes (docs/CLI.md). 2 is also clap's code for a malformed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Anything not listed below.
    Other = 1,
    /// Bad usage: a malformed command line, a missing actor, purpose or passphrase.
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
        Error::Integrity { .. } | Error::LogTampered { .. } | Error::UnsupportedVersion { .. } => {
            Code::Integrity
        }
        Error::NotFound => Code::NotFound,
        Error::AccessDenied(_) => Code::AccessDenied,
        _ => Code::Other,
    }
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
            ImportError::Input { .. } => Code::Other,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<ExportError> for Failure {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Vault(v) => v.into(),
            ExportError::Output(_) => Failure::other(e.to_string()),
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
