//! # medvault-ffi
//!
//! The C ABI of medvault, for .NET (P/Invoke), Java (JNA/FFM), Delphi and C. The header
//! is `include/medvault.h`, generated from this source by cbindgen (`tests/header.rs`
//! fails when it is stale).
//!
//! Conventions, the same for every function:
//! * Each returns a [`MedvaultStatus`] (0 = OK). On failure, `medvault_last_error_message`
//!   and `medvault_last_error_kind` describe the failure **on the calling thread**, until
//!   that thread's next medvault call. Messages never hold plaintext or key bytes.
//! * No panic crosses the boundary: one is caught and reported as
//!   `MEDVAULT_STATUS_PANIC`.
//! * A vault is a number ([`MedvaultVault`]) looked up in a table: an unknown or closed
//!   one is `MEDVAULT_STATUS_BAD_HANDLE`, never undefined behaviour.
//! * Strings in are NUL-terminated UTF-8, borrowed for the call only. Strings out
//!   (`char **out`) are owned by the caller and released with `medvault_string_free`,
//!   which zeroizes them; an out-pointer is set to NULL before anything else, so it is
//!   NULL after any failure.
//! * Record values are JSON text: an object whose members are the record's fields.
//! * Every data call takes a [`MedvaultAccess`] (actor, purpose, optional reason, the
//!   actor's roles, an optional custom PurposeOfUse code) and is logged in the vault's
//!   access log exactly as the same call from Rust; on a vault with an access policy
//!   (docs/POLICY.md) the policy decides on its roles and purpose exactly as for Rust.
//! * Thread safety: every function may be called from any thread, and concurrently on
//!   the same vault; the vault serialises its own commits. `medvault_close` while other
//!   threads still use the vault is safe: it stops new calls at once and the vault
//!   closes when the calls in flight return.
//!
//! This is the one crate of the workspace with `unsafe` code: reading C pointers (in
//! `args`) and giving back the strings C frees (in `registry`); each block states why it
//! is sound.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod args;
mod registry;
mod status;

use std::ffi::c_char;
use std::path::PathBuf;

use medvault::{KeySource, RotationScope, Vault, VaultOptions};
// The JSON text boundary, shared with the Python binding.
use medvault_bindings_text as text;

pub use args::{MEDVAULT_MAX_ARRAY_ITEMS, MedvaultAccess, MedvaultKdf};
pub use registry::MedvaultVault;
pub use status::{BindError, MedvaultStatus};

use args::{
    access, opt_out_arg, opt_str_arg, out_arg, passphrase, raw_key, record_key, str_arg, str_array,
};
use status::guard;

// ----- version and errors ------------------------------------------------------------

/// The version of this library (`major.minor.patch`), a static NUL-terminated string
/// (never freed). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn medvault_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// The message of the calling thread's last failed call, or NULL when its last call
/// succeeded. The pointer stays valid until this thread's next medvault call other than
/// `medvault_last_error_*`; do not free it. Thread-safe (per thread).
#[unsafe(no_mangle)]
pub extern "C" fn medvault_last_error_message() -> *const c_char {
    status::with_last(|l| l.map_or(std::ptr::null(), |l| l.message.as_ptr()))
        .unwrap_or(std::ptr::null())
}

/// The stable kind name of the calling thread's last failure (`wrong_key`,
/// `integrity`, `not_found`, `access_denied`, `invalid_input`, `storage`,
/// `subject_erased`, `null_argument`, `bad_handle`, `panic`, ...), or NULL. Lifetime as
/// `medvault_last_error_message`. Thread-safe (per thread).
#[unsafe(no_mangle)]
pub extern "C" fn medvault_last_error_kind() -> *const c_char {
    status::with_last(|l| l.map_or(std::ptr::null(), |l| l.kind.as_ptr()))
        .unwrap_or(std::ptr::null())
}

/// The access-policy rule that refused the calling thread's last call
/// (`MEDVAULT_STATUS_ACCESS_DENIED` by the vault's policy, docs/POLICY.md): a rule name
/// of the policy (e.g. `billing-claims`) or a built-in one (`no-role`,
/// `undeclared-purpose`, `role-purpose`, `deny-by-default`, `field-not-granted`,
/// `capability`, ...); NULL after a success or any other failure (break-the-glass
/// without a reason included). Lifetime as `medvault_last_error_message`. Thread-safe
/// (per thread).
#[unsafe(no_mangle)]
pub extern "C" fn medvault_last_error_rule() -> *const c_char {
    status::with_last(|l| {
        l.and_then(|l| l.rule.as_ref())
            .map_or(std::ptr::null(), |r| r.as_ptr())
    })
    .unwrap_or(std::ptr::null())
}

/// The status of the calling thread's last call (`MEDVAULT_STATUS_OK` after a success).
/// Thread-safe (per thread).
#[unsafe(no_mangle)]
pub extern "C" fn medvault_last_error_status() -> MedvaultStatus {
    status::with_last(|l| l.map_or(MedvaultStatus::Ok, |l| l.status)).unwrap_or(MedvaultStatus::Ok)
}

/// Zeroizes and frees a string returned through a `char **out` of this library. NULL is
/// a no-op (`MEDVAULT_STATUS_OK`); a pointer this library did not return, or returned
/// and freed already, is `MEDVAULT_STATUS_BAD_HANDLE` and left alone. Thread-safe.
///
/// # Safety
/// If `s` is a string this library returned, the caller has not freed it with another
/// allocator and no longer uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_string_free(s: *mut c_char) -> MedvaultStatus {
    guard(|| registry::free_string(s))
}

// ----- open, create, close -------------------------------------------------------------

/// What opens or creates a vault: `Vault::open_with` or `Vault::create_with`.
type OpenFn = fn(PathBuf, KeySource, VaultOptions) -> medvault::Result<Vault>;

/// The body of the four open/create functions: reads `out`, `path`, the key (`key`) and
/// `opener` in the order their failures are reported, runs `f` and writes the new vault
/// reference to `*out`.
///
/// # Safety
/// As `medvault_create_passphrase` for `out`, `path` and `opener`.
unsafe fn open_or_create(
    out: *mut MedvaultVault,
    path: *const c_char,
    key: impl FnOnce() -> Result<KeySource, BindError>,
    opener: *const MedvaultAccess,
    kdf: medvault::KdfParams,
    f: OpenFn,
) -> Result<(), BindError> {
    // SAFETY: forwarded contract.
    let out = unsafe { out_arg(out, 0, "out") }?;
    // SAFETY: forwarded contract.
    let path = unsafe { str_arg(path, "path") }?;
    let key = key()?;
    // SAFETY: forwarded contract.
    let opts = unsafe { options(opener, kdf) }?;
    *out = registry::insert(f(PathBuf::from(path), key, opts)?);
    Ok(())
}

/// Options with the opener recorded in the `open`/`create` log entry (the system actor
/// for a NULL `opener`).
///
/// # Safety
/// As `args::access`.
unsafe fn options(
    opener: *const MedvaultAccess,
    kdf: medvault::KdfParams,
) -> Result<VaultOptions, BindError> {
    let mut o = VaultOptions {
        kdf,
        ..VaultOptions::default()
    };
    if !opener.is_null() {
        // SAFETY: forwarded contract.
        o.opener = unsafe { access(opener) }?;
    }
    Ok(o)
}

/// Creates a vault in directory `path` (created if missing) with a passphrase stretched
/// by Argon2id with `kdf` (NULL: RFC 9106's 64 MiB, t=3, p=4). `opener` (may be NULL:
/// the system actor) is recorded in the `create` log entry. On success `*out` holds the
/// open vault. Fails with `ALREADY_EXISTS`, `STORAGE`, `INVALID_INPUT`,
/// `EXCESSIVE_WORK`, `NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// Non-NULL pointers point to what their types say: NUL-terminated strings, a readable
/// `MedvaultKdf`/`MedvaultAccess`, a writable `MedvaultVault`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_create_passphrase(
    path: *const c_char,
    passphrase: *const c_char,
    kdf: *const MedvaultKdf,
    opener: *const MedvaultAccess,
    out: *mut MedvaultVault,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let kdf = unsafe { args::kdf(kdf) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let key = || unsafe { args::passphrase(passphrase) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        unsafe { open_or_create(out, path, key, opener, kdf, Vault::create_with) }
    })
}

/// Creates a vault in directory `path` under a raw 256-bit root key (`key`, `key_len`
/// = 32 bytes, e.g. from a KMS or HSM; no KDF is run). Otherwise as
/// `medvault_create_passphrase`. Thread-safe.
///
/// # Safety
/// As `medvault_create_passphrase`; `key` points to `key_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_create_key(
    path: *const c_char,
    key: *const u8,
    key_len: usize,
    opener: *const MedvaultAccess,
    out: *mut MedvaultVault,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let key = || unsafe { raw_key(key, key_len) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        unsafe {
            open_or_create(
                out,
                path,
                key,
                opener,
                medvault::KdfParams::default(),
                Vault::create_with,
            )
        }
    })
}

/// Opens the vault in directory `path` with its passphrase (the KDF parameters are the
/// vault's own). Fails with `WRONG_KEY` (before any data is touched), `NOT_FOUND`/
/// `STORAGE` (no vault, or locked by another process), `INTEGRITY`, `NULL_ARGUMENT`.
/// Thread-safe; one process holds a vault open at a time (directory lock).
///
/// # Safety
/// As `medvault_create_passphrase`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_open_passphrase(
    path: *const c_char,
    passphrase: *const c_char,
    opener: *const MedvaultAccess,
    out: *mut MedvaultVault,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let key = || unsafe { args::passphrase(passphrase) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        unsafe {
            open_or_create(
                out,
                path,
                key,
                opener,
                medvault::KdfParams::default(),
                Vault::open_with,
            )
        }
    })
}

/// Opens the vault in directory `path` with its raw 256-bit root key (`key_len` = 32).
/// Otherwise as `medvault_open_passphrase`. Thread-safe.
///
/// # Safety
/// As `medvault_create_key`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_open_key(
    path: *const c_char,
    key: *const u8,
    key_len: usize,
    opener: *const MedvaultAccess,
    out: *mut MedvaultVault,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let key = || unsafe { raw_key(key, key_len) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        unsafe {
            open_or_create(
                out,
                path,
                key,
                opener,
                medvault::KdfParams::default(),
                Vault::open_with,
            )
        }
    })
}

/// Closes `vault`: the reference is invalid from now on (`BAD_HANDLE` for every later
/// use, a second close included). Calls in flight on other threads finish first; the
/// vault's files are flushed and its directory lock released when the last returns.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn medvault_close(vault: MedvaultVault) -> MedvaultStatus {
    guard(|| {
        let v = registry::remove(vault)?;
        // Only the last user's drop closes it; flush what this one can.
        v.sync()?;
        Ok(())
    })
}

// ----- records -------------------------------------------------------------------------

/// The first arguments of every data call, read in the order their failures are
/// reported: the open vault (`BAD_HANDLE`), then the access context (`NULL_ARGUMENT`,
/// `INVALID_INPUT`).
///
/// # Safety
/// As `args::access`.
unsafe fn data_call(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
) -> Result<(std::sync::Arc<Vault>, medvault::AccessContext), BindError> {
    let v = registry::get(vault)?;
    // SAFETY: forwarded contract.
    let ctx = unsafe { args::access(access) }?;
    Ok((v, ctx))
}

/// [`data_call`] and the record key of a call on one record.
///
/// # Safety
/// As `args::access` and `args::record_key`.
unsafe fn record_call(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    collection: *const c_char,
    record_id: *const c_char,
) -> Result<
    (
        std::sync::Arc<Vault>,
        medvault::AccessContext,
        medvault::RecordKey,
    ),
    BindError,
> {
    // SAFETY: forwarded contract.
    let (v, ctx) = unsafe { data_call(vault, access) }?;
    // SAFETY: forwarded contract.
    let key = unsafe { record_key(subject, collection, record_id) }?;
    Ok((v, ctx, key))
}

/// Stores the JSON object `json` (its members are the record's fields) as record
/// (`subject`, `collection`, `record_id`), replacing any earlier version. Logged as
/// `write`. Fails with `INVALID_INPUT` (not JSON, not an object, ids empty or over 256
/// bytes), `ACCESS_DENIED`, `STORAGE`, `BAD_HANDLE`, `NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// Non-NULL pointers point to a readable `MedvaultAccess` and NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_put(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    collection: *const c_char,
    record_id: *const c_char,
    json: *const c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx, key) = unsafe { record_call(vault, access, subject, collection, record_id) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let json = unsafe { str_arg(json, "json") }?;
        Ok(text::put_text(&v, &ctx, &key, json)?)
    })
}

/// Reads a record whole; `*out_json` receives its JSON object text (free it with
/// `medvault_string_free`). Logged as `read` before it returns. Fails with `NOT_FOUND`,
/// `INTEGRITY`, `UNKNOWN_KEY_VERSION`, `ACCESS_DENIED`, `BAD_HANDLE`, `NULL_ARGUMENT`.
/// Thread-safe.
///
/// # Safety
/// As `medvault_put`; `out_json` points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_get(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    collection: *const c_char,
    record_id: *const c_char,
    out_json: *mut *mut c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_json, std::ptr::null_mut(), "out_json") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx, key) = unsafe { record_call(vault, access, subject, collection, record_id) }?;
        let t = text::get_text(&v, &ctx, &key, None)?;
        *out = registry::hand_out(&t)?;
        Ok(())
    })
}

/// Reads only the `n_fields` named top-level fields (absent names are skipped; the
/// others are not decrypted); `*out_json` receives a JSON object of those. Logged as
/// `read` naming the fields. Errors as `medvault_get`. Thread-safe.
///
/// # Safety
/// As `medvault_get`; `fields` points to `n_fields` NUL-terminated strings (may be NULL
/// when `n_fields` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_get_fields(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    collection: *const c_char,
    record_id: *const c_char,
    fields: *const *const c_char,
    n_fields: usize,
    out_json: *mut *mut c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_json, std::ptr::null_mut(), "out_json") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx, key) = unsafe { record_call(vault, access, subject, collection, record_id) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let fields = unsafe { str_array(fields, n_fields, "fields") }?;
        let t = text::get_text(&v, &ctx, &key, Some(&fields))?;
        *out = registry::hand_out(&t)?;
        Ok(())
    })
}

/// Deletes a record. Logged as `delete`. Fails with `NOT_FOUND`, `ACCESS_DENIED`,
/// `STORAGE`, `BAD_HANDLE`, `NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// As `medvault_put`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_delete(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    collection: *const c_char,
    record_id: *const c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx, key) = unsafe { record_call(vault, access, subject, collection, record_id) }?;
        v.delete(&ctx, &key)?;
        Ok(())
    })
}

/// Every record of `subject` (only of `collection` when it is not NULL), in storage
/// order; `*out_json` receives a JSON array of `{"subject", "collection", "record_id",
/// "value"}` objects (`[]` for an unknown subject). Logged as one `read` naming the
/// subject and the count. Thread-safe.
///
/// # Safety
/// As `medvault_get`; `collection` may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_records_of(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    collection: *const c_char,
    out_json: *mut *mut c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_json, std::ptr::null_mut(), "out_json") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let subject = unsafe { str_arg(subject, "subject") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let collection = unsafe { opt_str_arg(collection, "collection") }?;
        let list = v.records_of_json(&ctx, subject, collection)?;
        *out = registry::hand_out(&text::list_text(&list)?)?;
        Ok(())
    })
}

/// Finds the records of `collection` whose blind index `index` matches the `n_values`
/// values (one per index part, normalised as the index says; see docs/INDEXES.md);
/// `*out_json` receives a JSON array shaped as for `medvault_records_of`. Logged as one
/// `search` and one `read` per record returned. Fails with `NOT_FOUND` (no such index),
/// `INVALID_INPUT` (wrong number of values, index still being built). Thread-safe.
///
/// # Safety
/// As `medvault_get`; `values` points to `n_values` NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_find(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    collection: *const c_char,
    index: *const c_char,
    values: *const *const c_char,
    n_values: usize,
    out_json: *mut *mut c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_json, std::ptr::null_mut(), "out_json") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let collection = unsafe { str_arg(collection, "collection") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let index = unsafe { str_arg(index, "index") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let values = unsafe { str_array(values, n_values, "values") }?;
        let list = v.find_json(&ctx, collection, index, &values)?;
        *out = registry::hand_out(&text::list_text(&list)?)?;
        Ok(())
    })
}

/// Erases `subject` by crypto-shredding (GDPR art. 17): its keys and records are
/// destroyed in one atomic commit; its access-log entries stay verifiable under its
/// pseudonym. `*out_records` (may be NULL) receives the number of records erased.
/// Fails with `NOT_FOUND` for an unknown subject. Blocks other calls while the storage
/// is purged. Thread-safe.
///
/// # Safety
/// As `medvault_put`; `out_records` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_erase_subject(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    out_records: *mut u64,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { opt_out_arg(out_records, 0) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let subject = unsafe { str_arg(subject, "subject") }?;
        let n = v.erase_subject(&ctx, subject)?;
        if let Some(o) = out {
            *o = n;
        }
        Ok(())
    })
}

/// Whether `subject` is remembered as erased (SECURITY.md "Erasure memory"): `*out_erased`
/// receives 1 when writes for it are refused (`MEDVAULT_STATUS_SUBJECT_ERASED`) until a
/// `medvault_readmit_subject`, else 0. Logged as `search` naming the subject by
/// pseudonym. Fails with `INVALID_INPUT` (bad id), `ACCESS_DENIED` (under a policy, a
/// role that may not invoke the purpose), `INTEGRITY`, `BAD_HANDLE`, `NULL_ARGUMENT`.
/// Thread-safe.
///
/// # Safety
/// As `medvault_put`; `out_erased` points to a writable `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_is_erased(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    out_erased: *mut i32,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_erased, 0, "out_erased") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let subject = unsafe { str_arg(subject, "subject") }?;
        *out = i32::from(v.is_erased(&ctx, subject)?);
        Ok(())
    })
}

/// Re-admits an erased subject whose patient has really returned: writes for `subject`
/// are accepted again, as a new incarnation under new keys (nothing of the erased one
/// comes back). `reason` (required, non-empty, at most 1024 bytes) is recorded in the
/// `readmit` log entry with the actor. Fails with `INVALID_INPUT` (empty or over-long
/// reason, bad id), `NOT_FOUND` (the subject is not remembered as erased),
/// `ACCESS_DENIED` (under a policy, a role without a rule that may erase),
/// `INTEGRITY`, `STORAGE`, `BAD_HANDLE`, `NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// As `medvault_put`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_readmit_subject(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subject: *const c_char,
    reason: *const c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let subject = unsafe { str_arg(subject, "subject") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let reason = unsafe { str_arg(reason, "reason") }?;
        v.readmit_subject(&ctx, subject, reason)?;
        Ok(())
    })
}

// ----- access policy -------------------------------------------------------------------

/// Installs the access policy `policy_json` (its JSON form, docs/POLICY.md "The
/// policy") as the vault's next policy version, sealed in the vault and logged as
/// `policy_change`; `*out_version` (may be NULL) receives the new version (1 for the
/// first). Once a policy is installed, `access` needs a role with the `policy`
/// capability (default clinic policy: `administration`); there is no way back to a
/// vault without a policy. Fails with `INVALID_INPUT` (not a valid policy),
/// `ACCESS_DENIED`, `STORAGE`, `BAD_HANDLE`, `NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// As `medvault_put`; `out_version` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_set_policy(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    policy_json: *const c_char,
    out_version: *mut u32,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { opt_out_arg(out_version, 0) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let policy = unsafe { str_arg(policy_json, "policy_json") }?;
        let version = text::set_policy(&v, &ctx, policy)?;
        if let Some(o) = out {
            *o = version;
        }
        Ok(())
    })
}

/// The JSON text of the default clinic policy (docs/POLICY.md "The default clinic
/// policy": roles `care`, `billing`, `research`, `administration`, `dpo`,
/// `integration`), for `medvault_set_policy` as it is or edited. `*out_json` receives it
/// (free it with `medvault_string_free`). Fails only with `NULL_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `out_json` is NULL or points to a writable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_default_policy(out_json: *mut *mut c_char) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_json, std::ptr::null_mut(), "out_json") }?;
        *out = registry::hand_out(&text::default_policy_text())?;
        Ok(())
    })
}

// ----- access log ----------------------------------------------------------------------

/// Verifies the whole access log (chain, seals, MACs) and, when `checkpoint` (text form
/// `mvcp1:...`, may be NULL) is given, that the log still extends it. `*out_entries`
/// (may be NULL) receives the number of entries verified. Fails with `LOG_TAMPERED`
/// naming the first bad entry, `INTEGRITY`, `INVALID_INPUT` (malformed checkpoint).
/// Thread-safe.
///
/// # Safety
/// As `medvault_put`; `checkpoint` may be NULL; `out_entries` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_verify(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    checkpoint: *const c_char,
    out_entries: *mut u64,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { opt_out_arg(out_entries, 0) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let cp = text::checkpoint(unsafe { opt_str_arg(checkpoint, "checkpoint") }?)?;
        let n = v.verify(&ctx, cp.as_ref())?;
        if let Some(o) = out {
            *o = n;
        }
        Ok(())
    })
}

/// Issues a checkpoint of the access log (after logging it) for an operator to keep
/// outside the vault; `*out_text` receives its text form (`mvcp1:` + hex). Thread-safe.
///
/// # Safety
/// As `medvault_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_checkpoint(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    out_text: *mut *mut c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_text, std::ptr::null_mut(), "out_text") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        let cp = v.checkpoint(&ctx)?;
        *out = registry::hand_out(&cp.to_text())?;
        Ok(())
    })
}

/// Queries the access log. `query_json` (may be NULL: every entry) is a JSON object
/// with optional members `subject`, `actor`, `purpose`, `action` (names as in the log),
/// `since_ms`, `until_ms` (ms since the Unix epoch, UTC); every given member must match.
/// `*out_json` receives a JSON array of entries (`seq`, `time_ms`, `actor`, `purpose`,
/// `reason`, `action`, `outcome`, `subject_pseudonym`, `target`, `note`). The query is
/// itself logged (`search`). Thread-safe.
///
/// # Safety
/// As `medvault_get`; `query_json` may be NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_audit_query(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    query_json: *const c_char,
    out_json: *mut *mut c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { out_arg(out_json, std::ptr::null_mut(), "out_json") }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let q = text::log_query(unsafe { opt_str_arg(query_json, "query_json") }?)?;
        let entries = v.audit_query(&ctx, &q)?;
        *out = registry::hand_out(&text::entries_text(&entries)?)?;
        Ok(())
    })
}

// ----- keys ----------------------------------------------------------------------------

/// Rotates the root key to a new passphrase stretched with `kdf` (NULL: RFC 9106's
/// default): one atomic header write rewrapping the vault secret and key-encryption key,
/// whatever the vault's size (see `Vault::rotate_root_key`). `*out_rewrapped` (may be
/// NULL) receives the number of keys rewrapped (2, or 3 during a KEK rotation). Logged as `key_rotation`. Thread-safe
/// (one key operation at a time; others wait).
///
/// # Safety
/// As `medvault_create_passphrase`; `out_rewrapped` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_rotate_root_passphrase(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    new_passphrase: *const c_char,
    kdf: *const MedvaultKdf,
    out_rewrapped: *mut u64,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { opt_out_arg(out_rewrapped, 0) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let key = unsafe { passphrase(new_passphrase) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let params = unsafe { args::kdf(kdf) };
        rotate_root(&v, &ctx, key, params, out)
    })
}

/// Rotates the root key to a new raw 256-bit key (`key_len` = 32). Otherwise as
/// `medvault_rotate_root_passphrase`. Thread-safe.
///
/// # Safety
/// As `medvault_create_key`; `out_rewrapped` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_rotate_root_key(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    key: *const u8,
    key_len: usize,
    out_rewrapped: *mut u64,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { opt_out_arg(out_rewrapped, 0) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let key = unsafe { raw_key(key, key_len) }?;
        rotate_root(&v, &ctx, key, medvault::KdfParams::default(), out)
    })
}

fn rotate_root(
    v: &Vault,
    ctx: &medvault::AccessContext,
    key: KeySource,
    params: medvault::KdfParams,
    out: Option<&mut u64>,
) -> Result<(), BindError> {
    let n = v.rotate_root_key(ctx, key, params, &mut |_| {})?;
    if let Some(o) = out {
        *o = n;
    }
    Ok(())
}

/// Rotates data keys online: each subject named (all subjects when `subjects` is NULL
/// and `n_subjects` is 0) gets a new data-key version and its records are re-encrypted
/// under it; an interrupted rotation is resumed first. `*out_subjects` and
/// `*out_records` (each may be NULL) receive what was rotated. Logged as
/// `key_rotation`. Thread-safe (one key operation at a time).
///
/// # Safety
/// As `medvault_put`; `subjects` points to `n_subjects` NUL-terminated strings; the
/// out-pointers are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_rotate_data_keys(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    subjects: *const *const c_char,
    n_subjects: usize,
    out_subjects: *mut u64,
    out_records: *mut u64,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out_s = unsafe { opt_out_arg(out_subjects, 0) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out_r = unsafe { opt_out_arg(out_records, 0) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        let scope = if subjects.is_null() && n_subjects == 0 {
            RotationScope::All
        } else {
            // SAFETY: pointers as the caller's contract (`# Safety`) says.
            let list = unsafe { str_array(subjects, n_subjects, "subjects") }?;
            RotationScope::Subjects(list.into_iter().map(str::to_owned).collect())
        };
        let r = v.rotate_data_keys(&ctx, &scope, &mut |_| {})?;
        if let Some(o) = out_s {
            *o = r.subjects;
        }
        if let Some(o) = out_r {
            *o = r.records;
        }
        Ok(())
    })
}

// ----- FHIR ----------------------------------------------------------------------------

/// Imports FHIR R4 resources from `path` (an `.ndjson` or `.json` file, or a directory
/// of them; Bulk Data NDJSON and Bundles) with medvault-fhir's default `ImportOptions`:
/// atomic batches, each record logged as `import`, the default blind indexes defined
/// first; a resource the vault already holds with the same text is counted as
/// unchanged and not written again; a resource of an erased subject is not stored and
/// counted in `refused_erased` (the import goes on). `*out_report_json` (may be NULL)
/// receives `{"records", "per_type", "replaced", "unchanged", "skipped", "rejected",
/// "refused_erased", "batches", "bytes"}`. Fails with `INVALID_INPUT` for unreadable or invalid input (file and
/// position named, never content), or the vault's error; batches committed before a
/// failure stay. Thread-safe.
///
/// # Safety
/// As `medvault_put`; `out_report_json` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medvault_import_fhir(
    vault: MedvaultVault,
    access: *const MedvaultAccess,
    path: *const c_char,
    out_report_json: *mut *mut c_char,
) -> MedvaultStatus {
    guard(|| {
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let out = unsafe { opt_out_arg(out_report_json, std::ptr::null_mut()) };
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let (v, ctx) = unsafe { data_call(vault, access) }?;
        // SAFETY: pointers as the caller's contract (`# Safety`) says.
        let path = PathBuf::from(unsafe { str_arg(path, "path") }?);
        let report = text::import_fhir(&v, &ctx, path)?;
        if let Some(o) = out {
            *o = registry::hand_out(&report)?;
        }
        Ok(())
    })
}
