//! XChaCha20-Poly1305 sealing (draft-irtf-cfrg-xchacha-03, over RFC 8439's
//! ChaCha20-Poly1305) with random 192-bit nonces, for messages sealed under one key
//! without a count: the subject's log-target key, used once per access-log entry that
//! names the subject, reads included.
//!
//! Why not AES-256-GCM as elsewhere: a random 96-bit nonce limits a GCM key to 2^32
//! messages (NIST SP 800-38D section 8.3), so every use must be counted and the count
//! persisted ahead of use; for a key used by reads that is a record-store write per
//! read after each reload. With 192-bit random nonces the probability of any repeat
//! after 2^64 messages is below 2^-64: no count is needed.
//!
//! Envelope layout: `nonce (24) || ciphertext || tag (16)`. Failures are opaque.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::SecretKey;

/// Nonce length in bytes (192 bits).
pub const XNONCE_LEN: usize = 24;
/// Bytes an envelope adds to its plaintext: nonce and the 128-bit Poly1305 tag.
pub const XOVERHEAD: usize = XNONCE_LEN + 16;

/// An XChaCha20-Poly1305 key (the crate zeroizes it on drop).
#[derive(Clone)]
pub struct XAeadKey {
    cipher: XChaCha20Poly1305,
}

impl XAeadKey {
    /// A key from 256 bits.
    pub fn new(key: &SecretKey) -> Self {
        XAeadKey {
            cipher: XChaCha20Poly1305::new(key.expose_secret().into()),
        }
    }

    /// Seals `plaintext` under a fresh random nonce, binding `aad`: `nonce || ciphertext
    /// || tag` (plaintext length + 40 bytes).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; XNONCE_LEN];
        super::random_bytes(&mut nonce);
        // The crate fails only for plaintexts over 2^38 bytes (ChaCha20's block counter);
        // sealed targets are capped far below that (lp16 fields).
        let ct = match self.cipher.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        ) {
            Ok(ct) => ct,
            Err(_) => panic!("XChaCha20-Poly1305 refused a plaintext within the size cap"),
        };
        let mut out = Vec::with_capacity(XNONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens an envelope of [`XAeadKey::seal`]. `None` on any failure (too short, tag
    /// mismatch); the caller names the structure in its `Error::Integrity`.
    pub fn open(&self, aad: &[u8], envelope: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if envelope.len() < XOVERHEAD {
            return None;
        }
        let (nonce, ct) = envelope.split_at(XNONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

impl std::fmt::Debug for XAeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XAeadKey(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    /// The envelope's layout, checked by opening it with the crate directly (nonce taken
    /// from the first 24 bytes), and every flipped byte refused.
    #[test]
    fn envelope_is_nonce_ciphertext_tag_and_every_flip_fails() {
        let key = SecretKey::from_bytes([0x42; 32]);
        let k = XAeadKey::new(&key);
        let env = k.seal(b"aad", b"patient-17 Observation/o1");
        assert_eq!(env.len(), 24 + 25 + 16);
        let raw = XChaCha20Poly1305::new((&[0x42u8; 32]).into());
        let pt = raw
            .decrypt(
                XNonce::from_slice(&env[..24]),
                Payload {
                    msg: &env[24..],
                    aad: b"aad",
                },
            )
            .unwrap();
        assert_eq!(pt, b"patient-17 Observation/o1");
        assert_eq!(k.open(b"aad", &env).unwrap().as_slice(), &pt[..]);
        assert!(k.open(b"other", &env).is_none());
        for i in 0..env.len() {
            let mut t = env.clone();
            t[i] ^= 1;
            assert!(k.open(b"aad", &t).is_none(), "flip {i}");
        }
        assert!(k.open(b"aad", &env[..39]).is_none());
        assert_ne!(k.seal(b"aad", b"x")[..24], k.seal(b"aad", b"x")[..24]);
    }
}
