//! The anchor: a small record, kept outside the record store, of how far the log and the
//! record store were durable together (docs/FORMAT.md "Anchor file"). Open refuses a log
//! shorter than the anchor and a record store behind it; that is what catches a record
//! store cut or rolled back on its own, which its own applied marker cannot.
//!
//! Two fixed-size slots written alternately, each with a counter and a MAC under a key
//! derived from the vault secret; the valid slot with the larger counter wins, so a write
//! torn by a crash leaves the other, older slot in force.
//!
//! Each slot also records the root-key and vault-KEK generations of the header in force
//! when it was written, so open refuses a header older than the last finished rotation
//! (a header copied before a rotation and put back), and the root of the Merkle tree over
//! the log's durable frames, so open refuses a tree file that does not match the log.

use crate::crypto::{MacKey, ct_eq};
use crate::logstore::LogPos;

/// Anchor slot format version: 2 carries the Merkle tree root (bytes 105..137) and the
/// key generations (137..145). Version 1 (nothing past byte 105) is not read: nothing
/// was released with it.
pub const ANCHOR_VERSION: u8 = 2;
/// Bytes of one slot.
pub const SLOT_LEN: usize = 193;
/// Offset of slot `i` in the anchor file is `i * SLOT_STRIDE`: each slot in its own
/// 4 KiB block, so a torn block write damages at most one slot.
pub const SLOT_STRIDE: u64 = 4096;
const MAC_AT: usize = SLOT_LEN - 32;
const TREE_AT: usize = 105;
const GENERATIONS_AT: usize = 137;
const RESERVED_AT: usize = 145;
const LABEL: &[u8] = b"medvault/v1/anchor";

/// What one anchor slot records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorState {
    /// Write counter: the valid slot with the larger one wins; slot = counter mod 2.
    pub counter: u64,
    /// End of the log made durable (every frame before it was fdatasynced).
    pub log_end: LogPos,
    /// Link of the frame just before `log_end` (the genesis link for an empty log).
    pub log_link: [u8; 32],
    /// The record store's applied marker at that time: every change logged before this
    /// sequence number was applied and flushed.
    pub applied_next: u64,
    /// The state digest of the record store at `applied_next`.
    pub digest: [u8; 32],
    /// RFC 9162 root of the Merkle tree of the log's first `log_end.next_seq` frames
    /// (docs/VERIFY.md); all zero when the log store keeps no tree, or for an anchor
    /// written before the tree existed.
    pub tree_root: [u8; 32],
    /// Root-key generation of the header in force (raised when a root-key rotation's
    /// new header is written; never lowered).
    pub root_generation: u32,
    /// Vault-KEK generation in force (raised when a KEK rotation finishes).
    pub kek_generation: u32,
}

impl AnchorState {
    /// Encodes and MACs a slot: `u8 version || u64 counter || LogPos (24) ||
    /// log_link[32] || u64 applied_next || digest[32] || tree_root[32] ||
    /// u32 root_generation || u32 kek_generation || reserved[16] (zero) || mac[32]`,
    /// where `mac = HMAC-SHA256(anchor key, "medvault/v1/anchor" || vault_id || bytes
    /// 0..161)`.
    pub fn encode(&self, key: &MacKey, vault_id: &crate::VaultId) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        b[0] = ANCHOR_VERSION;
        b[1..9].copy_from_slice(&self.counter.to_be_bytes());
        b[9..33].copy_from_slice(&self.log_end.to_bytes());
        b[33..65].copy_from_slice(&self.log_link);
        b[65..73].copy_from_slice(&self.applied_next.to_be_bytes());
        b[73..105].copy_from_slice(&self.digest);
        b[TREE_AT..GENERATIONS_AT].copy_from_slice(&self.tree_root);
        b[GENERATIONS_AT..GENERATIONS_AT + 4].copy_from_slice(&self.root_generation.to_be_bytes());
        b[GENERATIONS_AT + 4..RESERVED_AT].copy_from_slice(&self.kek_generation.to_be_bytes());
        let mac = key.mac_raw(&[LABEL, vault_id.as_bytes(), &b[..MAC_AT]]);
        b[MAC_AT..].copy_from_slice(&mac);
        b
    }

    /// Decodes one slot, checking its MAC; the error names what is wrong.
    pub fn decode(key: &MacKey, vault_id: &crate::VaultId, b: &[u8]) -> Result<Self, &'static str> {
        if b.len() != SLOT_LEN {
            return Err("anchor slot has the wrong length");
        }
        let mac = key.mac_raw(&[LABEL, vault_id.as_bytes(), &b[..MAC_AT]]);
        if !ct_eq(&mac, &b[MAC_AT..]) {
            return Err("anchor slot fails its MAC");
        }
        if b[0] != ANCHOR_VERSION {
            return Err("anchor slot has an unknown version");
        }
        if b[RESERVED_AT..MAC_AT].iter().any(|&x| x != 0) {
            return Err("anchor slot has reserved bytes set");
        }
        let u = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let mut pos = [0u8; LogPos::LEN];
        pos.copy_from_slice(&b[9..33]);
        let mut log_link = [0u8; 32];
        log_link.copy_from_slice(&b[33..65]);
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[73..105]);
        let mut tree_root = [0u8; 32];
        tree_root.copy_from_slice(&b[TREE_AT..GENERATIONS_AT]);
        let u4 = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[i..i + 4]);
            u32::from_be_bytes(a)
        };
        Ok(AnchorState {
            tree_root,
            root_generation: u4(GENERATIONS_AT),
            kek_generation: u4(GENERATIONS_AT + 4),
            counter: u(1),
            log_end: LogPos::from_bytes(&pos),
            log_link,
            applied_next: u(65),
            digest,
        })
    }

    /// Slot this state is written to.
    pub fn slot(&self) -> usize {
        (self.counter % 2) as usize
    }
}

/// The anchor in force among two stored slots: the valid one with the larger counter.
/// `Ok(None)` when both slots are absent (no anchor written yet); an error naming what is
/// wrong when slots exist but none is valid, or when a valid slot sits in the slot its
/// counter does not name (moved).
pub fn newest(
    key: &MacKey,
    vault_id: &crate::VaultId,
    slots: &[Option<Vec<u8>>; 2],
) -> Result<Option<AnchorState>, &'static str> {
    let mut best: Option<AnchorState> = None;
    let mut first_error = None;
    for (i, s) in slots.iter().enumerate() {
        let Some(bytes) = s else { continue };
        match AnchorState::decode(key, vault_id, bytes) {
            Ok(a) if a.slot() != i => first_error = first_error.or(Some("anchor slot moved")),
            Ok(a) => {
                if best.is_none_or(|b| a.counter > b.counter) {
                    best = Some(a);
                }
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match (best, first_error) {
        (Some(a), _) => Ok(Some(a)),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    fn key() -> MacKey {
        MacKey::new(&SecretKey::from_bytes([9; 32]))
    }

    fn state(counter: u64) -> AnchorState {
        AnchorState {
            counter,
            log_end: LogPos {
                next_seq: 10 + counter,
                segment: 0,
                offset: 500,
            },
            log_link: [counter as u8; 32],
            applied_next: 5,
            digest: [0xd1; 32],
            tree_root: [0x7e; 32],
            root_generation: 7,
            kek_generation: 0x0102_0304,
        }
    }

    #[test]
    fn slot_bytes_match_the_spec() {
        // Oracle: the MAC recomputed with the hmac crate over the documented layout.
        use hmac::{Hmac, Mac};
        let s = state(3);
        let b = s.encode(&key(), &crate::VaultId::from([1; 16]));
        assert_eq!(b[0], 2);
        assert_eq!(&b[1..9], &3u64.to_be_bytes());
        assert_eq!(&b[9..17], &13u64.to_be_bytes());
        assert_eq!(&b[25..33], &500u64.to_be_bytes());
        assert_eq!(&b[65..73], &5u64.to_be_bytes());
        assert_eq!(&b[105..137], &[0x7e; 32]);
        assert_eq!(&b[137..141], &[0, 0, 0, 7]);
        assert_eq!(&b[141..145], &[1, 2, 3, 4]);
        assert!(b[145..161].iter().all(|&x| x == 0));
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&[9; 32]).unwrap();
        m.update(b"medvault/v1/anchor");
        m.update(&[1; 16]);
        m.update(&b[..161]);
        assert_eq!(&b[161..], m.finalize().into_bytes().as_slice());
        assert_eq!(
            AnchorState::decode(&key(), &crate::VaultId::from([1; 16]), &b),
            Ok(s)
        );
    }

    #[test]
    fn newest_valid_slot_wins_and_a_torn_slot_is_tolerated() {
        let k = key();
        let id = crate::VaultId::from([1; 16]);
        let a4 = state(4).encode(&k, &id).to_vec();
        let a5 = state(5).encode(&k, &id).to_vec();
        assert_eq!(
            newest(&k, &id, &[Some(a4.clone()), Some(a5.clone())]),
            Ok(Some(state(5)))
        );
        // Slot 1 torn at every length, or with any byte flipped: slot 0 stays in force.
        for cut in 0..SLOT_LEN {
            let slots = [Some(a4.clone()), Some(a5[..cut].to_vec())];
            assert_eq!(newest(&k, &id, &slots), Ok(Some(state(4))), "cut {cut}");
        }
        for i in 0..SLOT_LEN {
            let mut t = a5.clone();
            t[i] ^= 0x04;
            let slots = [Some(a4.clone()), Some(t)];
            assert_eq!(newest(&k, &id, &slots), Ok(Some(state(4))), "flip {i}");
        }
        assert_eq!(newest(&k, &id, &[None, None]), Ok(None));
        let mut bad = a4.clone();
        bad[50] ^= 1;
        assert!(newest(&k, &id, &[Some(bad), None]).is_err());
        // Another vault's anchor, or a slot copied into the other position, is refused.
        assert!(
            newest(
                &k,
                &crate::VaultId::from([2; 16]),
                &[Some(a4.clone()), None]
            )
            .is_err()
        );
        assert!(newest(&k, &id, &[None, Some(a4)]).is_err());
    }
}
