//! The applied marker: one record-store value, written in every batch that changes the
//! record store, saying how far in the log the store's content goes (docs/FORMAT.md
//! "Applied marker"). Open compares it with the log and the anchor.

use crate::crypto::{MacKey, ct_eq};
use crate::logstore::LogPos;

/// Storage key of the applied marker (outside the state digest).
pub const MARKER_KEY: &[u8] = b"a";
/// Applied-marker format version.
pub const MARKER_VERSION: u8 = 2;
/// Bytes of an encoded marker.
pub const MARKER_LEN: usize = 1 + LogPos::LEN + 32 + 32 + 4 + 4 + 32;
const LABEL: &[u8] = b"medvault/v1/applied-marker";

/// What the record store says it holds: every change logged before `pos.next_seq` and
/// none after; `link` is the chain link just before `pos`; `digest` the state digest of
/// the store's content; `generations` the `(root, KEK)` key generations the vault knew
/// to be finished when the batch was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Log position just after the last entry whose change this store holds.
    pub pos: LogPos,
    /// Chain link of the entry just before `pos`.
    pub link: [u8; 32],
    /// State digest of the store's content.
    pub digest: [u8; 32],
    /// `(root, KEK)` generations of the last finished key rotations when it was written:
    /// a header older than these is refused at open, even when the anchor was put back
    /// with it (docs/FORMAT.md "Applied marker").
    pub generations: (u32, u32),
}

impl Marker {
    /// `u8 version || LogPos (24) || link[32] || digest[32] || u32 root generation ||
    /// u32 KEK generation || mac[32]` (integers big-endian), `mac = HMAC-SHA256(marker
    /// key, "medvault/v1/applied-marker" || vault_id || bytes 0..97)`.
    pub fn encode(&self, key: &MacKey, vault_id: &crate::VaultId) -> Vec<u8> {
        let mut b = Vec::with_capacity(MARKER_LEN);
        b.push(MARKER_VERSION);
        b.extend_from_slice(&self.pos.to_bytes());
        b.extend_from_slice(&self.link);
        b.extend_from_slice(&self.digest);
        b.extend_from_slice(&self.generations.0.to_be_bytes());
        b.extend_from_slice(&self.generations.1.to_be_bytes());
        let mac = key.mac_raw(&[LABEL, vault_id.as_bytes(), &b]);
        b.extend_from_slice(&mac);
        b
    }

    /// Decodes and checks a marker; the error names what is wrong.
    pub fn decode(
        key: &MacKey,
        vault_id: &crate::VaultId,
        b: &[u8],
    ) -> Result<Marker, &'static str> {
        if b.len() != MARKER_LEN {
            return Err("applied marker has the wrong length");
        }
        let (body, mac) = b.split_at(MARKER_LEN - 32);
        if !ct_eq(&key.mac_raw(&[LABEL, vault_id.as_bytes(), body]), mac) {
            return Err("applied marker fails its MAC");
        }
        if body[0] != MARKER_VERSION {
            // Version 1 (without the key generations) was never released.
            return Err("applied marker has an unknown version");
        }
        let mut pos = [0u8; LogPos::LEN];
        pos.copy_from_slice(&body[1..25]);
        let mut link = [0u8; 32];
        link.copy_from_slice(&body[25..57]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&body[57..89]);
        let u4 =
            |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        Ok(Marker {
            pos: LogPos::from_bytes(&pos),
            link,
            digest,
            generations: (u4(89), u4(93)),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn marker_round_trips_and_refuses_every_flip() {
        let k = MacKey::new(&SecretKey::from_bytes([5; 32]));
        let m = Marker {
            pos: LogPos {
                next_seq: 9,
                segment: 0,
                offset: 777,
            },
            link: [1; 32],
            digest: [2; 32],
            generations: (7, 0x0102_0304),
        };
        let b = m.encode(&k, &crate::VaultId::from([3; 16]));
        assert_eq!(b.len(), 129);
        assert_eq!(b[0], 2);
        assert_eq!(&b[1..9], &9u64.to_be_bytes());
        assert_eq!(&b[17..25], &777u64.to_be_bytes());
        assert_eq!(
            &b[89..97],
            &[0, 0, 0, 7, 1, 2, 3, 4],
            "root then KEK generation"
        );
        assert_eq!(
            Marker::decode(&k, &crate::VaultId::from([3; 16]), &b),
            Ok(m)
        );
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 0x40;
            assert!(
                Marker::decode(&k, &crate::VaultId::from([3; 16]), &t).is_err(),
                "flip {i}"
            );
        }
        assert!(Marker::decode(&k, &crate::VaultId::from([4; 16]), &b).is_err());
        assert!(Marker::decode(&k, &crate::VaultId::from([3; 16]), &b[..128]).is_err());
    }
}
