//! Status codes, the binding's error type and the thread-local last error. Every exported
//! function runs its body through [`guard`], which clears the last error, catches any
//! panic (none may unwind into C) and records the failure for `medvault_last_error_*`.

use std::cell::RefCell;
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What an exported function returns: `MEDVAULT_STATUS_OK` (0) or the kind of failure.
/// Codes 1-13 mirror the core's error kinds (`medvault::Error::kind_name`); 100 and up
/// are the binding's own. Values are stable: new kinds get new numbers, never reused.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MedvaultStatus {
    /// Success.
    Ok = 0,
    /// The passphrase or root key does not open this vault (`wrong_key`).
    WrongKey = 1,
    /// Stored bytes failed an integrity check (`integrity`).
    Integrity = 2,
    /// The record, subject, index or key does not exist (`not_found`).
    NotFound = 3,
    /// The access context does not allow the operation, e.g. break-the-glass without a
    /// reason (`access_denied`). The attempt is logged.
    AccessDenied = 4,
    /// Malformed input: an id, a JSON text, a purpose name, a key length (`invalid_input`).
    InvalidInput = 5,
    /// The storage backend failed: I/O, the directory lock (`storage`).
    Storage = 6,
    /// `verify` found the access log tampered with (`log_tampered`).
    LogTampered = 7,
    /// A ciphertext names a data-key version the vault does not hold
    /// (`unknown_key_version`).
    UnknownKeyVersion = 8,
    /// A stored structure has a format version this build does not read
    /// (`unsupported_version`).
    UnsupportedVersion = 9,
    /// Key-derivation parameters demand more work than the caps allow (`excessive_work`).
    ExcessiveWork = 10,
    /// A data-key version still in use cannot be retired (`key_in_use`).
    KeyInUse = 11,
    /// A vault already exists where `create` was asked to make one (`already_exists`).
    AlreadyExists = 12,
    /// The write would re-create a subject that was erased (`subject_erased`): the
    /// vault remembers erasures (SECURITY.md "Erasure memory") and refuses to bring an
    /// erased patient back by accident. The refusal is logged. If the patient has really
    /// returned, call `medvault_readmit_subject` (with a reason) first.
    SubjectErased = 13,
    /// An error kind this build of the binding has no code for; its name is returned by
    /// `medvault_last_error_kind`.
    Other = 50,
    /// A required pointer argument was NULL.
    NullArgument = 100,
    /// The vault reference is not open (never returned by an open/create, or closed), or
    /// a string given to `medvault_string_free` was not returned by medvault (or was
    /// freed already).
    BadHandle = 101,
    /// A bug: medvault panicked. The panic was caught at the boundary; the vault is
    /// still usable (its state is protected by its own atomic commits).
    Panic = 102,
}

impl MedvaultStatus {
    /// The code of an error kind named by `medvault::Error::kind_name` (stable names),
    /// [`MedvaultStatus::Other`] for a name this build does not know.
    pub fn of_kind(kind: &str) -> MedvaultStatus {
        match kind {
            "wrong_key" => MedvaultStatus::WrongKey,
            "integrity" => MedvaultStatus::Integrity,
            "not_found" => MedvaultStatus::NotFound,
            "access_denied" => MedvaultStatus::AccessDenied,
            "invalid_input" => MedvaultStatus::InvalidInput,
            "storage" => MedvaultStatus::Storage,
            "log_tampered" => MedvaultStatus::LogTampered,
            "unknown_key_version" => MedvaultStatus::UnknownKeyVersion,
            "unsupported_version" => MedvaultStatus::UnsupportedVersion,
            "excessive_work" => MedvaultStatus::ExcessiveWork,
            "key_in_use" => MedvaultStatus::KeyInUse,
            "already_exists" => MedvaultStatus::AlreadyExists,
            "subject_erased" => MedvaultStatus::SubjectErased,
            _ => MedvaultStatus::Other,
        }
    }
}

/// A failure at the boundary: a status, a stable kind name and a message without
/// plaintext, key bytes or identifiers (the core's errors carry none; the binding's own
/// name only the argument).
#[derive(Debug)]
pub struct BindError {
    /// The code returned to C.
    pub status: MedvaultStatus,
    /// Stable kind name (`medvault::Error::kind_name`, or `null_argument`,
    /// `bad_handle`, `panic`).
    pub kind: String,
    /// Human-readable message.
    pub message: String,
    /// The access-policy rule of an `access_denied` by the policy, else `None`.
    pub rule: Option<String>,
}

impl BindError {
    /// Malformed input detected by the binding (bad UTF-8, bad JSON, bad key length).
    pub fn invalid(message: impl Into<String>) -> Self {
        medvault_bindings_text::TextError::invalid(message).into()
    }

    /// A required pointer argument `what` was NULL.
    pub fn null(what: &str) -> Self {
        BindError {
            status: MedvaultStatus::NullArgument,
            kind: "null_argument".into(),
            message: format!("argument `{what}` is NULL"),
            rule: None,
        }
    }

    /// An unknown or closed vault reference, or a foreign pointer given to a free.
    pub fn bad_handle(message: impl Into<String>) -> Self {
        BindError {
            status: MedvaultStatus::BadHandle,
            kind: "bad_handle".into(),
            message: message.into(),
            rule: None,
        }
    }

    fn panic() -> Self {
        BindError {
            status: MedvaultStatus::Panic,
            kind: "panic".into(),
            // The payload is not repeated: a panic message is not vetted for content.
            message: "internal error: medvault panicked (a bug; please report it)".into(),
            rule: None,
        }
    }
}

impl From<medvault::Error> for BindError {
    fn from(e: medvault::Error) -> Self {
        medvault_bindings_text::TextError::from(e).into()
    }
}

impl From<medvault_bindings_text::TextError> for BindError {
    fn from(e: medvault_bindings_text::TextError) -> Self {
        let (kind, message, rule) = e.into_parts();
        BindError {
            status: MedvaultStatus::of_kind(kind),
            kind: kind.to_owned(),
            message,
            rule,
        }
    }
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BindError {}

/// The last failure of this thread, as C strings the accessors lend out.
pub(crate) struct LastError {
    pub status: MedvaultStatus,
    pub kind: CString,
    pub message: CString,
    pub rule: Option<CString>,
}

thread_local! {
    static LAST: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

/// A C string of `s`, with any NUL byte replaced so that the text is never cut short.
pub(crate) fn c_string_lossy(s: &str) -> CString {
    let clean: Vec<u8> = s.bytes().map(|b| if b == 0 { b'?' } else { b }).collect();
    // No NUL left, so this cannot fail; the fallback keeps the no-panic rule anyway.
    CString::new(clean).unwrap_or_default()
}

fn set_last(e: Option<BindError>) {
    let v = e.map(|e| LastError {
        status: e.status,
        kind: c_string_lossy(&e.kind),
        message: c_string_lossy(&e.message),
        rule: e.rule.as_deref().map(c_string_lossy),
    });
    // `try_with`: during thread teardown the slot may be gone; then nothing is recorded.
    let _ = LAST.try_with(|l| *l.borrow_mut() = v);
}

/// Runs `f` with `g` applied to this thread's last error, if any.
pub(crate) fn with_last<R>(g: impl FnOnce(Option<&LastError>) -> R) -> Option<R> {
    LAST.try_with(|l| g(l.borrow().as_ref())).ok()
}

/// Runs one exported function's body: clears the thread's last error, catches panics,
/// and turns the result into a status (recording a failure as the last error).
pub(crate) fn guard(f: impl FnOnce() -> Result<(), BindError>) -> MedvaultStatus {
    set_last(None);
    // AssertUnwindSafe: after a panic nothing the closure touched is used again by this
    // call; shared state (the vault tables) is behind mutexes that recover from poison,
    // and the vault's own state is only changed by atomic commits.
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => MedvaultStatus::Ok,
        Ok(Err(e)) => {
            let s = e.status;
            set_last(Some(e));
            s
        }
        Err(_) => {
            set_last(Some(BindError::panic()));
            MedvaultStatus::Panic
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_kind_name_has_its_own_code() {
        // The names as written in the core's `Error::kind_name` (src/error.rs), typed out
        // here rather than taken from the core, with the codes the header documents.
        let expect = [
            ("wrong_key", 1),
            ("integrity", 2),
            ("not_found", 3),
            ("access_denied", 4),
            ("invalid_input", 5),
            ("storage", 6),
            ("log_tampered", 7),
            ("unknown_key_version", 8),
            ("unsupported_version", 9),
            ("excessive_work", 10),
            ("key_in_use", 11),
            ("already_exists", 12),
            ("subject_erased", 13),
            ("a_kind_from_the_future", 50),
        ];
        for (name, code) in expect {
            assert_eq!(MedvaultStatus::of_kind(name) as i32, code, "{name}");
        }
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let s = guard(|| panic!("boom with patient data"));
        assert_eq!(s, MedvaultStatus::Panic);
        let msg = with_last(|l| l.map(|l| l.message.to_string_lossy().into_owned()))
            .flatten()
            .unwrap_or_default();
        assert!(msg.contains("panicked"), "{msg}");
        assert!(!msg.contains("patient"), "{msg}");
        // The next successful call clears it.
        assert_eq!(guard(|| Ok(())), MedvaultStatus::Ok);
        assert!(with_last(|l| l.is_none()).unwrap_or(false));
    }
}
