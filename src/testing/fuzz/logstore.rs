//! Decoder checks for the log store's files: segment frames and headers, and the tree
//! node file's header (`segment`), and anchor slots (`anchor`). See fuzz/README.md.

use crate::crypto::{MacKey, SecretKey};
use crate::logstore::LogPos;
use crate::logstore::anchor::{self, AnchorState, SLOT_LEN};
use crate::logstore::frame::{
    Decoded, SEGMENT_HEADER_LEN, decode_frame, decode_segment_header, encode_segment_header,
};

const ANCHOR_KEY: [u8; 32] = [0x61; 32];
const VAULT_ID: crate::VaultId = crate::VaultId::from_bytes([0x42; 16]);

fn anchor_key() -> MacKey {
    MacKey::new(&SecretKey::from_bytes(ANCHOR_KEY))
}

/// Segment target: `data` is the bytes of a segment file (header, then frames).
///
/// Properties: the header and frame decoders never panic; a decoded header re-encodes to
/// exactly its bytes; every decoded frame re-encodes to exactly the bytes it took (the
/// encoding is canonical) and takes at least the fixed overhead; decoding stops at the
/// first incomplete or bad frame and never reads past the input. The same bytes read as a
/// tree node file's header (docs/FORMAT.md "Tree node file") never panic, and a header
/// whose durable size checks re-encodes to exactly its bytes.
pub fn check_segment(data: &[u8]) {
    use crate::logstore::tree::{decode_tree_header, encode_tree_header};
    if let Ok(Some(durable)) = decode_tree_header(data, &VAULT_ID) {
        assert_eq!(
            encode_tree_header(&VAULT_ID, durable)[..],
            data[..41],
            "tree header does not re-encode to its bytes"
        );
    }
    if let Ok((id, first)) = decode_segment_header(data) {
        assert_eq!(
            encode_segment_header(&id, first)[..],
            data[..SEGMENT_HEADER_LEN],
            "segment header does not re-encode to its bytes"
        );
    }
    let mut at = SEGMENT_HEADER_LEN.min(data.len());
    // Also from the very start, so inputs without a header reach the frame decoder.
    for start in [0, at] {
        at = start;
        while at < data.len() {
            match decode_frame(&data[at..]) {
                Decoded::Frame(f, n) => {
                    assert!(n >= crate::logstore::frame::FRAME_OVERHEAD);
                    assert!(at + n <= data.len());
                    let mut again = Vec::with_capacity(n);
                    f.encode_into(&mut again);
                    assert_eq!(again, data[at..at + n], "frame does not re-encode");
                    at += n;
                }
                Decoded::Incomplete | Decoded::Bad(_) => break,
            }
        }
    }
}

/// Anchor target: `data` is an anchor file (slot 0 at 0, slot 1 at 4096, or whatever the
/// bytes give), with slots MACed under the fixture anchor key.
///
/// Properties: slot decoding and the choice of the newest slot never panic; a decoded
/// slot re-encodes to exactly its bytes; the chosen slot is one of the valid ones, with
/// the largest counter.
pub fn check_anchor(data: &[u8]) {
    let key = anchor_key();
    let slot = |i: usize| {
        let at = i * anchor::SLOT_STRIDE as usize;
        data.get(at..at + SLOT_LEN).map(<[u8]>::to_vec)
    };
    // Short inputs are read as one slot at offset 0 and one right after it, so the
    // fuzzer reaches two slots without 4 KiB inputs.
    let slots = if data.len() < anchor::SLOT_STRIDE as usize {
        [
            data.get(..SLOT_LEN).map(<[u8]>::to_vec),
            data.get(SLOT_LEN..2 * SLOT_LEN).map(<[u8]>::to_vec),
        ]
    } else {
        [slot(0), slot(1)]
    };
    let mut valid = Vec::new();
    for (i, s) in slots.iter().enumerate() {
        if let Some(b) = s
            && let Ok(a) = AnchorState::decode(&key, &VAULT_ID, b)
        {
            let again = a.encode(&key, &VAULT_ID);
            if b[0] == anchor::ANCHOR_VERSION {
                assert_eq!(again[..], b[..], "anchor slot does not re-encode");
            } else {
                // Version 1 (still read): no tree root; the rest re-encodes as version 2.
                assert_eq!(a.tree_root, [0; 32], "a version-1 slot carries a tree root");
                assert_eq!(again[1..105], b[1..105], "anchor slot does not re-encode");
            }
            if a.slot() == i {
                valid.push(a);
            }
        }
    }
    if let Ok(Some(a)) = anchor::newest(&key, &VAULT_ID, &slots) {
        assert!(valid.contains(&a), "newest() chose an invalid slot");
        assert!(valid.iter().all(|v| v.counter <= a.counter));
    } else {
        assert!(valid.is_empty(), "newest() missed a valid slot");
    }
}

/// Seeds for both targets: a segment with three frames; an anchor file with two valid
/// slots, and with one.
pub fn logstore_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use crate::logstore::{FLAG_CHANGE, FRAME_VERSION, Frame};
    let mut seg = encode_segment_header(&VAULT_ID, 0).to_vec();
    for seq in 0..3u64 {
        Frame {
            seq,
            version: FRAME_VERSION,
            flags: if seq == 1 { FLAG_CHANGE } else { 0 },
            body: vec![seq as u8; 20 + seq as usize],
            link: [seq as u8; 32],
        }
        .encode_into(&mut seg);
    }
    let key = anchor_key();
    let state = |counter: u64| AnchorState {
        tree_root: [0x5a; 32],
        counter,
        log_end: LogPos {
            next_seq: counter * 3,
            segment: 0,
            offset: 41 + counter * 60,
        },
        log_link: [counter as u8; 32],
        applied_next: counter,
        digest: [0xdd; 32],
        root_generation: counter as u32,
        kek_generation: 1,
    };
    let mut two = state(2).encode(&key, &VAULT_ID).to_vec();
    two.extend_from_slice(&state(3).encode(&key, &VAULT_ID));
    let one = state(4).encode(&key, &VAULT_ID).to_vec();
    let mut tree = crate::logstore::tree::encode_tree_header(&VAULT_ID, 3).to_vec();
    tree.resize(64, 0);
    for i in 0..4u8 {
        tree.extend_from_slice(&[i; 32]);
    }
    vec![
        ("segment", "three-frames".into(), seg),
        ("segment", "tree-header".into(), tree),
        ("anchor", "two-slots".into(), two),
        ("anchor", "one-slot".into(), one),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_pass_their_checks_and_reach_the_decoders() {
        for (t, _, b) in logstore_seeds() {
            match t {
                "segment" => {
                    check_segment(&b);
                    assert!(
                        decode_segment_header(&b).is_ok()
                            || crate::logstore::tree::decode_tree_header(&b, &VAULT_ID)
                                .is_ok_and(|d| d == Some(3))
                    );
                }
                _ => {
                    check_anchor(&b);
                    assert!(matches!(
                        anchor::newest(
                            &anchor_key(),
                            &VAULT_ID,
                            &[b.get(..SLOT_LEN).map(<[u8]>::to_vec), None]
                        ),
                        Ok(Some(_))
                    ));
                }
            }
        }
    }
}
