//! Cryptographic core: key newtypes, AEAD seal/open, keyed hashes and key derivation.
//!
//! Every primitive comes from RustCrypto (`aes-gcm`, `chacha20poly1305`, `argon2`, `hkdf`,
//! `hmac`, `sha2`);
//! nothing here is hand-rolled. Key bytes live only in zeroize-on-drop types without
//! `Debug`/`Display` of their contents. This layer knows nothing of storage or records.

pub mod aead;
pub mod kdf;
pub mod xaead;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use aead::AeadKey;
pub use kdf::{DEFAULT_MAX_KDF_WORK, KdfParams};
pub use xaead::XAeadKey;

/// Length in bytes of every symmetric key in medvault (AES-256, HMAC-SHA256 keys).
pub const KEY_LEN: usize = 32;

/// 256 bits of secret key material, zeroized on drop, never printed.
///
/// Reached only through [`SecretKey::expose_secret`], so every use of raw key bytes is
/// visible in review.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Wraps key bytes (the caller's copy should be zeroized by the caller).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        SecretKey(bytes)
    }

    /// A fresh random key from the thread-local CSPRNG (ChaCha, seeded by the OS).
    pub fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        random_bytes(&mut k);
        SecretKey(k)
    }

    /// The raw key bytes. Callers must not copy them into non-zeroizing buffers.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// The root key (KEK): from a passphrase through Argon2id, or supplied raw by a KMS/HSM.
/// Never stored; it wraps data keys and the vault secret. A type of its own, so that it
/// cannot be passed where another key is expected.
#[derive(Clone)]
pub struct RootKey(SecretKey);

impl RootKey {
    /// Wraps 256 bits of root-key material (e.g. from a KMS or HSM).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        RootKey(SecretKey::from_bytes(bytes))
    }

    /// Wraps a derived key (Argon2id output).
    pub(crate) fn from_secret(key: SecretKey) -> Self {
        RootKey(key)
    }

    /// The key material, for the header's key schedule.
    pub(crate) fn secret(&self) -> &SecretKey {
        &self.0
    }
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey([redacted])")
    }
}

/// A passphrase, zeroized on drop, never printed. Held in Unicode Normalization Form C
/// (UAX #15), so the same passphrase typed on systems whose keyboards send composed
/// (`é` U+00E9) or decomposed (`e` + U+0301) accents derives the same root key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase, normalized to NFC (UAX #15, "Unicode Normalization Forms").
    /// The caller's string is zeroized once normalized.
    pub fn new(p: impl Into<String>) -> Self {
        use unicode_normalization::UnicodeNormalization;
        let given = zeroize::Zeroizing::new(p.into());
        // NFC expands UTF-8 at most threefold (UAX #15's table of expansion factors):
        // reserving that much means no reallocation leaves a copy behind.
        let mut nfc = String::with_capacity(given.len().saturating_mul(3));
        nfc.extend(given.nfc());
        Passphrase(nfc)
    }

    /// The passphrase bytes (UTF-8, NFC).
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

/// Where the root key comes from.
///
/// ```
/// # fn main() -> medvault::Result<()> {
/// use medvault::{Error, KeySource, Vault};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("v");
/// // A passphrase, stretched with Argon2id (low-cost parameters for the example only;
/// // the default is RFC 9106's).
/// let weak_kdf = medvault::danger::insecure_kdf_params();
/// drop(Vault::create(&path, KeySource::passphrase("correct horse battery staple"), weak_kdf)?);
/// assert!(matches!(
///     Vault::open(&path, KeySource::passphrase("wrong horse")),
///     Err(Error::WrongKey)
/// ));
/// drop(Vault::open(&path, KeySource::passphrase("correct horse battery staple"))?);
/// // Or 32 raw bytes from a KMS or HSM: no KDF is run.
/// drop(Vault::create(dir.path().join("w"), KeySource::raw([7; 32]), weak_kdf)?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum KeySource {
    /// A passphrase stretched with Argon2id (RFC 9106). At `create`, the parameters are
    /// those of `VaultOptions::kdf`; at `open`, those stored in the vault header (capped).
    Passphrase(Passphrase),
    /// A raw 256-bit root key handed over by a KMS or HSM; no KDF is run.
    Raw(RootKey),
}

impl KeySource {
    /// Shorthand for [`KeySource::Passphrase`].
    pub fn passphrase(p: impl Into<String>) -> Self {
        KeySource::Passphrase(Passphrase::new(p))
    }

    /// Shorthand for [`KeySource::Raw`].
    pub fn raw(bytes: [u8; KEY_LEN]) -> Self {
        KeySource::Raw(RootKey::from_bytes(bytes))
    }
}

type HmacSha256 = Hmac<Sha256>;

/// A pre-keyed HMAC-SHA256 instance (RFC 2104), cloned per message so the key schedule
/// is computed once. Used for keyed pseudonyms, the log chain and MACs.
#[derive(Clone)]
pub struct MacKey {
    mac: HmacSha256,
}

impl MacKey {
    /// Keys an HMAC-SHA256 instance.
    pub fn new(key: &SecretKey) -> Self {
        // HMAC accepts keys of any length, so this cannot fail; map defensively anyway.
        let mac = <HmacSha256 as Mac>::new_from_slice(key.expose_secret())
            .unwrap_or_else(|_| unreachable_hmac());
        MacKey { mac }
    }

    /// HMAC-SHA256 over the concatenation of `parts`, each preceded by its length as a
    /// big-endian u32, so that distinct part lists never produce the same MAC input.
    pub fn mac_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 over `bytes` as given (no framing).
    pub fn mac_raw(&self, bytes: &[&[u8]]) -> [u8; 32] {
        let mut m = self.mac.clone();
        for b in bytes {
            m.update(b);
        }
        m.finalize().into_bytes().into()
    }

    /// Constant-time check of an HMAC over `bytes` (no framing).
    pub fn verify_raw(&self, bytes: &[&[u8]], tag: &[u8]) -> bool {
        let mut m = self.mac.clone();
        for b in bytes {
            m.update(b);
        }
        m.verify_slice(tag).is_ok()
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha256 {
    // HMAC-SHA256 takes keys of any length (RFC 2104 section 2); new_from_slice never fails.
    // Falling back to a fixed key would be wrong, so abort loudly (no secret in message).
    panic!("HMAC-SHA256 rejected a 32-byte key")
}

/// Derives a 256-bit subkey with HKDF-SHA256 (RFC 5869): `HKDF-Expand(PRK = ikm, info)`.
///
/// `ikm` is already uniformly random (a root key or the vault secret), so the extract
/// step uses it directly with an empty salt.
pub fn derive_key(ikm: &SecretKey, info: &[&[u8]]) -> SecretKey {
    let hk = hkdf::Hkdf::<Sha256>::new(None, ikm.expose_secret());
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let mut label = Zeroizing::new(Vec::with_capacity(64));
    for part in info {
        label.extend_from_slice(part);
    }
    // 32 bytes is far below HKDF's 255*32 limit: expand cannot fail.
    if hk.expand(&label, out.as_mut()).is_err() {
        panic!("HKDF-SHA256 refused a 32-byte output");
    }
    SecretKey::from_bytes(*out)
}

/// SHA-256 of `bytes` (FIPS 180-4): the unkeyed checksum that tells corruption from a
/// wrong key.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Fills `buf` from the thread-local CSPRNG (rand's `ThreadRng`: ChaCha12 seeded from
/// the OS and reseeded periodically), so a nonce costs no system call.
pub fn random_bytes(buf: &mut [u8]) {
    #[cfg(test)]
    if test_rng::fill(buf) {
        return;
    }
    rand::thread_rng().fill_bytes(buf);
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A deterministic RNG override for the golden-file tests, compiled only into this
/// crate's own unit tests (`cfg(test)`): release and downstream builds have no such knob.
///
/// While a seed is set on the current thread, [`random_bytes`] (and so every nonce, salt,
/// vault_id and fresh key) draws from ChaCha20 seeded with it, so an encoder's output is
/// reproducible byte for byte.
#[cfg(test)]
pub(crate) mod test_rng {
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use std::cell::RefCell;

    thread_local! {
        static RNG: RefCell<Option<ChaCha20Rng>> = const { RefCell::new(None) };
    }

    /// Draws from the override when one is set on this thread; returns whether it did.
    pub(crate) fn fill(buf: &mut [u8]) -> bool {
        RNG.with(|r| match r.borrow_mut().as_mut() {
            Some(rng) => {
                rng.fill_bytes(buf);
                true
            }
            None => false,
        })
    }

    /// Seeds the override for the current thread until the guard drops.
    pub(crate) fn seed(seed: u64) -> Guard {
        RNG.with(|r| *r.borrow_mut() = Some(ChaCha20Rng::seed_from_u64(seed)));
        Guard(())
    }

    /// Clears the override on drop (also when a test panics).
    pub(crate) struct Guard(());

    impl Drop for Guard {
        fn drop(&mut self) {
            RNG.with(|r| *r.borrow_mut() = None);
        }
    }
}
