//! AES-256-GCM sealing (NIST SP 800-38D) with random 96-bit nonces.
//!
//! Envelope layout: `nonce (12) || ciphertext || tag (16)`. Nonces come from the
//! thread-local CSPRNG; callers count messages per key and rotate long before the
//! 2^32 random-nonce bound of SP 800-38D section 8.3. Failures are opaque.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::SecretKey;

/// Nonce length in bytes (96 bits, SP 800-38D section 8.2.2).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes (128 bits).
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// An AES-256-GCM key with its expanded key schedule (zeroized on drop through the
/// `aes-gcm` `zeroize` feature).
#[derive(Clone)]
pub struct AeadKey {
    cipher: Aes256Gcm,
}

impl AeadKey {
    /// Expands a 256-bit key.
    pub fn new(key: &SecretKey) -> Self {
        AeadKey {
            cipher: Aes256Gcm::new(key.expose_secret().into()),
        }
    }

    /// Seals `plaintext` under a fresh random nonce, binding `aad`, and appends the
    /// envelope (`nonce || ciphertext || tag`, plaintext length + 28 bytes) to `out`.
    pub fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        // Encrypted in place at the end of `out`: no temporary ciphertext buffer, no copy
        // (this runs once per field of every record written).
        out.reserve(OVERHEAD + plaintext.len());
        let start = out.len();
        out.resize(start + NONCE_LEN, 0);
        super::random_bytes(&mut out[start..]);
        let nonce = *Nonce::from_slice(&out[start..start + NONCE_LEN]);
        out.extend_from_slice(plaintext);
        // aes-gcm only fails for plaintexts over 2^36 - 32 bytes; callers bound sizes far
        // below that (records are capped), so this branch is unreachable in practice.
        let tag =
            match self
                .cipher
                .encrypt_in_place_detached(&nonce, aad, &mut out[start + NONCE_LEN..])
            {
                Ok(tag) => tag,
                Err(_) => panic!("AES-GCM refused a plaintext within the record size cap"),
            };
        out.extend_from_slice(&tag);
    }

    /// Seals into a new buffer. See [`AeadKey::seal_into`].
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(aad, plaintext, &mut out);
        out
    }

    /// Opens an envelope. Returns `None` on any failure (too short, tag mismatch); the
    /// caller names the structure in its `Error::Integrity`.
    pub fn open(&self, aad: &[u8], envelope: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if envelope.len() < OVERHEAD {
            return None;
        }
        let (nonce, ct) = envelope.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

impl AeadKey {
    /// Seals `plaintext` under the caller's `nonce`, binding `aad`, and appends
    /// `ciphertext || tag` (plaintext length + 16 bytes, no nonce) to `out`, encrypting in
    /// place at the end of `out` (no temporary buffer).
    ///
    /// The caller guarantees that `nonce` is never used twice under this key (NIST SP
    /// 800-38D, "Uniqueness Requirement on IVs and Keys"): the record codec derives it
    /// from a fresh random 96-bit record nonce and a field index unique within the
    /// record (docs/FORMAT.md "Record value"), which keeps the random-nonce collision
    /// bound per message that the usage marks count.
    pub(crate) fn seal_detached_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.reserve(plaintext.len() + TAG_LEN);
        let start = out.len();
        out.extend_from_slice(plaintext);
        // aes-gcm only fails for plaintexts over 2^36 - 32 bytes; records are capped far
        // below that (64 MiB), so this branch is unreachable in practice.
        let tag = match self.cipher.encrypt_in_place_detached(
            Nonce::from_slice(nonce),
            aad,
            &mut out[start..],
        ) {
            Ok(tag) => tag,
            Err(_) => panic!("AES-GCM refused a plaintext within the record size cap"),
        };
        out.extend_from_slice(&tag);
    }

    /// Opens `ciphertext || tag` sealed by [`AeadKey::seal_detached_into`] under `nonce`
    /// straight into the end of `out` (decrypted in place, no intermediate buffer).
    /// Returns false on any failure (shorter than a tag, tag mismatch), after zeroizing
    /// and removing what it appended (aes-gcm decrypts before it compares the tag). The
    /// caller reserves room for the plaintext (`sealed.len() - 16`) when `out` must not
    /// reallocate.
    pub(crate) fn open_detached_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        use zeroize::Zeroize;
        let Some(ct_len) = sealed.len().checked_sub(TAG_LEN) else {
            return false;
        };
        let (ct, tag) = sealed.split_at(ct_len);
        let start = out.len();
        out.extend_from_slice(ct);
        let ok = self
            .cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                aad,
                &mut out[start..],
                aes_gcm::Tag::from_slice(tag),
            )
            .is_ok();
        if !ok {
            out[start..].zeroize();
            out.truncate(start);
        }
        ok
    }

    /// [`AeadKey::open_detached_into`] into a new zeroize-on-drop buffer; `None` on any
    /// failure.
    pub(crate) fn open_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(sealed.len().saturating_sub(TAG_LEN)));
        self.open_detached_into(nonce, aad, sealed, &mut out)
            .then_some(out)
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey([redacted])")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let k = AeadKey::new(&SecretKey::random());
        let env = k.seal(b"aad", b"hello");
        assert_eq!(env.len(), 5 + OVERHEAD);
        assert_eq!(&k.open(b"aad", &env).unwrap()[..], b"hello");
        assert!(k.open(b"aaD", &env).is_none());
        for i in 0..env.len() {
            let mut t = env.clone();
            t[i] ^= 1;
            assert!(k.open(b"aad", &t).is_none(), "flip at {i} accepted");
        }
        assert!(k.open(b"aad", &env[..OVERHEAD - 1]).is_none());
        let other = AeadKey::new(&SecretKey::random());
        assert!(other.open(b"aad", &env).is_none());
    }

    #[test]
    fn detached_matches_the_nonce_prefixed_envelope() {
        // Oracle: the crate's own nonce-prefixed envelope (aes-gcm `encrypt`) with the same
        // nonce gives the same ciphertext and tag.
        let k = AeadKey::new(&SecretKey::random());
        let env = k.seal(b"aad", b"hello world");
        let nonce: [u8; NONCE_LEN] = env[..NONCE_LEN].try_into().unwrap();
        let mut out = b"x".to_vec();
        k.seal_detached_into(&nonce, b"aad", b"hello world", &mut out);
        assert_eq!(&out[1..], &env[NONCE_LEN..]);
        assert_eq!(
            &k.open_detached(&nonce, b"aad", &out[1..]).unwrap()[..],
            b"hello world"
        );
        for i in 1..out.len() {
            let mut t = out[1..].to_vec();
            t[i - 1] ^= 1;
            let mut o = b"p".to_vec();
            assert!(
                !k.open_detached_into(&nonce, b"aad", &t, &mut o),
                "flip at {i}"
            );
            assert_eq!(o, b"p");
        }
        let mut other = nonce;
        other[11] ^= 1;
        assert!(k.open_detached(&other, b"aad", &out[1..]).is_none());
        assert!(k.open_detached(&nonce, b"aaD", &out[1..]).is_none());
        assert!(k.open_detached(&nonce, b"aad", &out[1..TAG_LEN]).is_none());
    }

    #[test]
    fn nonces_differ() {
        let k = AeadKey::new(&SecretKey::random());
        let a = k.seal(b"", b"x");
        let b = k.seal(b"", b"x");
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
    }

    /// Known-answer test: NIST GCM test vector (gcmEncryptExtIV256, Count 0 with AAD),
    /// checks that we use the library as AES-256-GCM with 96-bit nonce and 128-bit tag.
    #[test]
    fn aes_gcm_known_answer() {
        use hex_literal::hex;
        // Test case 16 of the GCM spec (McGrew & Viega), AES-256.
        let key = hex!("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
        let iv = hex!("cafebabefacedbaddecaf888");
        let pt = hex!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        );
        let aad = hex!("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let ct = hex!(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        );
        let tag = hex!("76fc6ece0f4e1768cddf8853bb2d551b");
        let k = AeadKey::new(&SecretKey::from_bytes(key));
        let mut env = iv.to_vec();
        env.extend_from_slice(&ct);
        env.extend_from_slice(&tag);
        assert_eq!(&k.open(&aad, &env).unwrap()[..], &pt[..]);
    }
}
