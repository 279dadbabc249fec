//! What C holds: vault references are numbers looked up in a process-wide table (so a
//! wrong, stale or closed reference is an error, never a dangling pointer), and every
//! string handed out is registered until `medvault_string_free` zeroizes and frees it (so
//! a foreign pointer or a double free is an error too).

use std::collections::BTreeMap;
use std::ffi::c_char;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use medvault::Vault;
use zeroize::Zeroize;

use crate::status::BindError;

/// An open vault as C sees it: a number, never 0, never reused within a process.
pub type MedvaultVault = u64;

struct Vaults {
    next: u64,
    open: BTreeMap<u64, Arc<Vault>>,
}

static VAULTS: Mutex<Vaults> = Mutex::new(Vaults {
    next: 1,
    open: BTreeMap::new(),
});

/// Address -> length (NUL included) of every string handed out and not yet freed.
static STRINGS: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

/// Locks a table; a panic while it was held leaves it consistent (every change is one
/// insert or remove), so a poisoned lock is taken over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers an open vault and returns its reference.
pub(crate) fn insert(vault: Vault) -> MedvaultVault {
    let mut t = lock(&VAULTS);
    let id = t.next;
    t.next += 1;
    t.open.insert(id, Arc::new(vault));
    id
}

/// The vault behind `id`, shared with concurrent callers.
pub(crate) fn get(id: MedvaultVault) -> Result<Arc<Vault>, BindError> {
    lock(&VAULTS)
        .open
        .get(&id)
        .cloned()
        .ok_or_else(|| BindError::bad_handle("not an open vault (never opened, or closed)"))
}

/// Removes `id` from the table; the vault closes when the last call using it returns.
pub(crate) fn remove(id: MedvaultVault) -> Result<Arc<Vault>, BindError> {
    lock(&VAULTS)
        .open
        .remove(&id)
        .ok_or_else(|| BindError::bad_handle("not an open vault (never opened, or closed)"))
}

/// Copies `text` into a new NUL-terminated allocation owned by C until
/// [`free_string`]. Fails when `text` holds a NUL byte (JSON text and checkpoints never
/// do: JSON escapes control characters).
pub(crate) fn hand_out(text: &str) -> Result<*mut c_char, BindError> {
    if text.as_bytes().contains(&0) {
        return Err(BindError::invalid("text to return holds a NUL byte"));
    }
    let mut v = Vec::with_capacity(text.len() + 1);
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    let boxed: Box<[u8]> = v.into_boxed_slice();
    let len = boxed.len();
    let ptr = Box::into_raw(boxed) as *mut u8;
    lock(&STRINGS).insert(ptr as usize, len);
    Ok(ptr.cast::<c_char>())
}

/// Zeroizes and frees a string made by [`hand_out`]. NULL is a no-op.
pub(crate) fn free_string(ptr: *mut c_char) -> Result<(), BindError> {
    if ptr.is_null() {
        return Ok(());
    }
    let len = lock(&STRINGS).remove(&(ptr as usize)).ok_or_else(|| {
        BindError::bad_handle("not a string returned by medvault, or freed already")
    })?;
    let slice = std::ptr::slice_from_raw_parts_mut(ptr.cast::<u8>(), len);
    // SAFETY: `ptr` and `len` were recorded by `hand_out` from `Box::into_raw` of a
    // `Box<[u8]>` of exactly `len` bytes, and removed from the table just now under its
    // lock, so this is the one and only reconstruction of that box (a second free finds
    // no entry and fails above). C may have written into the bytes (they are its to
    // use) but not freed them with another allocator: the API says so.
    let mut boxed: Box<[u8]> = unsafe { Box::from_raw(slice) };
    boxed.zeroize();
    drop(boxed);
    Ok(())
}
