//! The state digest: a running 256-bit digest of the record store's whole live key space
//! (docs/FORMAT.md "State digest"), `XOR` over live pairs of
//! `HMAC-SHA256(digest key, u32 len(key) || key || u32 len(value) || value)`.
//!
//! XOR makes it order-free and incremental: a commit adds the term of every value it
//! puts and removes (XORs again) the term of every value it replaces or deletes, so the
//! digest after any history equals the digest recomputed from a scan of the store. A
//! pair added, removed, or changed behind the engine's back changes the scan's digest;
//! without the key nobody can choose a change that keeps it.

use crate::crypto::MacKey;

/// The digest of a set of key-value pairs (see the module docs). The empty set has the
/// all-zero digest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateDigest(pub [u8; 32]);

impl StateDigest {
    /// The keyed term of one pair.
    pub fn term(key: &MacKey, k: &[u8], v: &[u8]) -> [u8; 32] {
        key.mac_parts(&[k, v])
    }

    /// Adds a pair not yet in the set, or removes one that is (XOR is its own inverse).
    pub fn toggle(&mut self, term: &[u8; 32]) {
        for (a, b) in self.0.iter_mut().zip(term) {
            *a ^= b;
        }
    }

    /// The digest of `pairs`, computed from scratch.
    pub fn of<'a>(key: &MacKey, pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut d = StateDigest::default();
        for (k, v) in pairs {
            d.toggle(&Self::term(key, k, v));
        }
        d
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn incremental_equals_from_scratch_and_the_term_is_framed_hmac() {
        use hmac::{Hmac, Mac};
        let k = MacKey::new(&SecretKey::from_bytes([4; 32]));
        // Oracle for the term: the hmac crate over the documented framing.
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&[4; 32]).unwrap();
        m.update(&[0, 0, 0, 2]);
        m.update(b"k1");
        m.update(&[0, 0, 0, 3]);
        m.update(b"abc");
        assert_eq!(
            StateDigest::term(&k, b"k1", b"abc").as_slice(),
            m.finalize().into_bytes().as_slice()
        );
        // Put k1, put k2, replace k1, delete k2: equals the digest of {k1: new}.
        let mut d = StateDigest::default();
        d.toggle(&StateDigest::term(&k, b"k1", b"old"));
        d.toggle(&StateDigest::term(&k, b"k2", b"x"));
        d.toggle(&StateDigest::term(&k, b"k1", b"old"));
        d.toggle(&StateDigest::term(&k, b"k1", b"new"));
        d.toggle(&StateDigest::term(&k, b"k2", b"x"));
        assert_eq!(d, StateDigest::of(&k, [(&b"k1"[..], &b"new"[..])]));
        assert_ne!(d, StateDigest::of(&k, [(&b"k1"[..], &b"old"[..])]));
        // A key/value boundary moved is a different pair.
        assert_ne!(
            StateDigest::term(&k, b"k1a", b"bc"),
            StateDigest::term(&k, b"k1", b"abc")
        );
    }
}
