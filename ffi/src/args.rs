//! Reading C arguments: NUL-terminated UTF-8 strings, arrays of them, raw keys, the
//! access context and out-pointers. Each reader checks for NULL and bounds what it
//! reads; the caller of the exported function guarantees that a non-NULL pointer points
//! to what the header says (that cannot be checked from here).

use std::ffi::{CStr, c_char};

use medvault::{AccessContext, KdfParams, KeySource, RecordKey};
use zeroize::Zeroizing;

use crate::status::BindError;

/// Most strings accepted in one array argument (fields, index values, subjects).
pub const MEDVAULT_MAX_ARRAY_ITEMS: usize = 65_536;

/// Who acts and why, passed to every data call (mirrors `medvault::AccessContext`).
///
/// On a vault with an access policy (docs/POLICY.md) the policy decides on `roles` and
/// the purpose: a context without a role (`roles_len` 0) is refused there (status
/// `MEDVAULT_STATUS_ACCESS_DENIED`, rule `no-role`). On a vault without a policy roles
/// change nothing but are recorded in the access log.
///
/// ABI evolution: the library reads the whole struct through the pointer, so its size
/// is part of the ABI. Version 0.1 has six members (`actor`, `purpose`, `reason`,
/// `roles`, `roles_len`, `purpose_code`); `roles`, `roles_len` and `purpose_code` were
/// added before any release, so code built against an earlier draft of this header must
/// be recompiled. A future member will be appended at the end and come with a new
/// library version (`medvault_version`); a program must be compiled against the header
/// of the library it loads. Initialise the struct with designated initializers
/// (`{.actor = ..., .purpose = ...}`): members left out are zero, which is "no reason,
/// no role, no custom code", so such source code keeps compiling as members are added.
#[repr(C)]
pub struct MedvaultAccess {
    /// Id of the acting user or system: NUL-terminated UTF-8, 1 to 256 bytes. Required.
    pub actor: *const c_char,
    /// Purpose name: `care`, `emergency` (also `break-the-glass`), `administration`,
    /// `billing`, `research`, `patient-request` or `maintenance`, or its HL7 v3
    /// PurposeOfUse code (`TREAT`, `ETREAT`, `HOPERAT`, `HPAYMT`, `HRESCH`, `PATRQT`,
    /// `HSYSADMIN`). Required.
    pub purpose: *const c_char,
    /// Free-text reason, at most 1024 bytes, or NULL. Required (non-empty) for
    /// `emergency`: without it the call fails with `MEDVAULT_STATUS_ACCESS_DENIED` and
    /// the attempt is logged.
    pub reason: *const c_char,
    /// The roles the application authenticated the actor in: an array of `roles_len`
    /// NUL-terminated UTF-8 role names (e.g. `care`, `billing`; at most 16, each 1 to 64
    /// bytes), borrowed for the call. May be NULL only when `roles_len` is 0 (no role).
    /// A NULL element is `MEDVAULT_STATUS_NULL_ARGUMENT`; an empty, over-long or 17th
    /// role is `MEDVAULT_STATUS_INVALID_INPUT` (and the attempt is logged).
    pub roles: *const *const c_char,
    /// Number of elements of `roles`.
    pub roles_len: usize,
    /// A custom HL7 PurposeOfUse code declared by the vault's policy (e.g. `PUBHLTH`;
    /// 1 to 64 bytes), refining `purpose`; NULL for the purpose's own code (`care` is
    /// `TREAT`, ...). Refused as `undeclared-purpose` when the policy does not declare
    /// it.
    pub purpose_code: *const c_char,
}

/// Argon2id parameters for a passphrase (RFC 9106, "Parameter Choice"); NULL where a
/// function accepts it means RFC 9106's second recommended option (64 MiB, t=3, p=4).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MedvaultKdf {
    /// Memory `m` in KiB (at least 8 per lane, at most 4 GiB).
    pub memory_kib: u32,
    /// Passes `t` (1 to 64).
    pub iterations: u32,
    /// Lanes `p` (1 to 64).
    pub lanes: u32,
}

/// A string argument: NULL is an error naming `what`; invalid UTF-8 is invalid input.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and unchanged for
/// the returned lifetime.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, BindError> {
    if p.is_null() {
        return Err(BindError::null(what));
    }
    // SAFETY: non-NULL here; NUL termination and validity are the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| BindError::invalid(format!("`{what}` is not valid UTF-8")))
}

/// A string argument that may be NULL (then `None`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(
    p: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, BindError> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, what) }.map(Some)
    }
}

/// An array of `n` strings. `items` may be NULL only when `n` is 0.
///
/// # Safety
/// `items` is NULL or points to `n` readable pointers, each as for [`str_arg`].
pub(crate) unsafe fn str_array<'a>(
    items: *const *const c_char,
    n: usize,
    what: &str,
) -> Result<Vec<&'a str>, BindError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if items.is_null() {
        return Err(BindError::null(what));
    }
    if n > MEDVAULT_MAX_ARRAY_ITEMS {
        return Err(BindError::invalid(format!(
            "`{what}` has more than {MEDVAULT_MAX_ARRAY_ITEMS} items"
        )));
    }
    // SAFETY: non-NULL; the caller guarantees `n` readable, aligned pointers.
    let ptrs = unsafe { std::slice::from_raw_parts(items, n) };
    ptrs.iter()
        // SAFETY: each element under the same contract as `str_arg`.
        .map(|&p| unsafe { str_arg(p, what) })
        .collect()
}

/// A raw 256-bit root key of `len` bytes (must be 32).
///
/// # Safety
/// `key` is NULL or points to `len` readable bytes.
pub(crate) unsafe fn raw_key(key: *const u8, len: usize) -> Result<KeySource, BindError> {
    if key.is_null() {
        return Err(BindError::null("key"));
    }
    if len != 32 {
        return Err(BindError::invalid("a raw root key is 32 bytes"));
    }
    let mut k = Zeroizing::new([0u8; 32]);
    // SAFETY: non-NULL, and the caller guarantees 32 readable bytes.
    k.copy_from_slice(unsafe { std::slice::from_raw_parts(key, 32) });
    Ok(KeySource::raw(*k))
}

/// A passphrase (non-NULL UTF-8; its copy lives in a zeroize-on-drop `Passphrase`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn passphrase(p: *const c_char) -> Result<KeySource, BindError> {
    // SAFETY: forwarded contract.
    let s = unsafe { str_arg(p, "passphrase") }?;
    Ok(KeySource::passphrase(s))
}

/// Argon2id parameters, the default for NULL.
///
/// # Safety
/// `kdf` is NULL or points to a readable `MedvaultKdf`.
pub(crate) unsafe fn kdf(kdf: *const MedvaultKdf) -> KdfParams {
    if kdf.is_null() {
        return KdfParams::default();
    }
    // SAFETY: non-NULL; the caller guarantees a readable struct.
    let k = unsafe { *kdf };
    KdfParams {
        memory_kib: k.memory_kib,
        iterations: k.iterations,
        lanes: k.lanes,
    }
}

/// The access context. NULL struct, actor, purpose or role element (or `roles` NULL with
/// a non-zero `roles_len`) are errors; the context's own
/// rules (lengths, break-the-glass reason) are checked by the vault, which logs a
/// refusal.
///
/// # Safety
/// `access` is NULL or points to a readable `MedvaultAccess` whose strings follow
/// [`str_arg`]'s contract and whose `roles` follow [`str_array`]'s.
pub(crate) unsafe fn access(access: *const MedvaultAccess) -> Result<AccessContext, BindError> {
    if access.is_null() {
        return Err(BindError::null("access"));
    }
    // SAFETY: non-NULL; the caller guarantees a readable struct.
    let a = unsafe { &*access };
    // SAFETY: forwarded contract (the struct's strings are the caller's).
    let actor = unsafe { str_arg(a.actor, "access.actor") }?;
    // SAFETY: forwarded contract (the struct's strings are the caller's).
    let purpose = unsafe { str_arg(a.purpose, "access.purpose") }?;
    // SAFETY: forwarded contract (the struct's strings are the caller's).
    let reason = unsafe { opt_str_arg(a.reason, "access.reason") }?;
    // SAFETY: forwarded contract (`roles` points to `roles_len` strings).
    let roles = unsafe { str_array(a.roles, a.roles_len, "access.roles") }?;
    // SAFETY: forwarded contract (the struct's strings are the caller's).
    let code = unsafe { opt_str_arg(a.purpose_code, "access.purpose_code") }?;
    Ok(medvault_bindings_text::access_context(
        actor, purpose, reason, &roles, code,
    )?)
}

/// A record key from three strings.
///
/// # Safety
/// Each pointer as for [`str_arg`].
pub(crate) unsafe fn record_key(
    subject: *const c_char,
    collection: *const c_char,
    record_id: *const c_char,
) -> Result<RecordKey, BindError> {
    // SAFETY: each pointer is NULL or a NUL-terminated string (this function's contract).
    let s = unsafe { str_arg(subject, "subject") }?;
    // SAFETY: each pointer is NULL or a NUL-terminated string (this function's contract).
    let c = unsafe { str_arg(collection, "collection") }?;
    // SAFETY: each pointer is NULL or a NUL-terminated string (this function's contract).
    let r = unsafe { str_arg(record_id, "record_id") }?;
    Ok(RecordKey::new(s, c, r))
}

/// An out-pointer that must not be NULL; set to its empty value at once so that C never
/// reads a stale value after a failure.
///
/// # Safety
/// `out` is NULL or points to a writable `T`.
pub(crate) unsafe fn out_arg<'a, T>(
    out: *mut T,
    empty: T,
    what: &str,
) -> Result<&'a mut T, BindError> {
    if out.is_null() {
        return Err(BindError::null(what));
    }
    // SAFETY: non-NULL; the caller guarantees a writable, aligned `T`. `write` does not
    // read (nor drop) the old, possibly uninitialised, value.
    unsafe {
        out.write(empty);
        Ok(&mut *out)
    }
}

/// An out-pointer that may be NULL (the caller does not want the value).
///
/// # Safety
/// As [`out_arg`].
pub(crate) unsafe fn opt_out_arg<'a, T>(out: *mut T, empty: T) -> Option<&'a mut T> {
    if out.is_null() {
        None
    } else {
        // SAFETY: forwarded contract.
        unsafe { out_arg(out, empty, "") }.ok()
    }
}
