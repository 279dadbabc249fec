//! A rogue operator who holds the vault's key (issue 18, acceptance 2): rewrites one
//! access-log entry of a closed vault on the memory backend and repairs everything a key
//! holder can repair so that the vault opens and `verify` passes: the entry is re-sealed,
//! every later link re-chained, the Merkle tree rebuilt, the anchor and the applied
//! marker re-MACed. What the key cannot forge is a consistency proof from a checkpoint
//! signed before the rewrite: that is what the tests show.

use crate::commit::{CommitKeys, MARKER_KEY, Marker, Sealer};
use crate::crypto::{KeySource, MacKey, derive_key};
use crate::error::{Error, Result, Structure};
use crate::header::Header;
use crate::logstore::LogStore;
use crate::logstore::anchor::{self, AnchorState};
use crate::storage::{MemoryStorage, Storage, WriteBatch};

fn rogue_error(what: &'static str) -> Error {
    Error::integrity(Structure::LogEntry, what)
}

/// Rewrites entry `seq` of the (closed) vault in `storage`: opens its sealed body with
/// the key, applies `edit` to the plaintext, re-seals it, re-chains every later entry,
/// rebuilds the tree and re-MACs the anchor slots and the applied marker. Errors: a wrong
/// key, `seq` past the log, a damaged anchor or marker.
pub fn rewrite_entry(
    storage: &MemoryStorage,
    key: &KeySource,
    seq: u64,
    edit: impl FnOnce(&mut Vec<u8>),
) -> Result<()> {
    let header = storage
        .read_header()?
        .ok_or_else(|| rogue_error("no header"))?;
    let (h, unlocked) = Header::unlock(&header, key)?;
    let (vault_id, secret) = (h.vault_id, unlocked.vault_secret);
    let sealer = crate::audit::AuditLog::new(vault_id, &secret);
    let keys = CommitKeys::derive(&vault_id, &secret);
    let log = storage.memory_log();
    let mut frames = log.frames();
    let at = usize::try_from(seq).map_err(|_| rogue_error("seq out of range"))?;
    let f = frames
        .get_mut(at)
        .ok_or_else(|| rogue_error("seq past the log"))?;
    let mut plain = sealer
        .open(seq, &f.body)
        .ok_or_else(|| rogue_error("entry fails to open"))?
        .to_vec();
    edit(&mut plain);
    f.body = sealer.seal(seq, &plain);
    // Links from the rewritten entry on; links[i] = link after the first i frames.
    let mut links = vec![keys.genesis()];
    for (i, f) in frames.iter_mut().enumerate() {
        let prev = links[i];
        if i >= at {
            f.link = keys.link(&prev, f.version, f.flags, f.seq, &f.body);
        }
        links.push(f.link);
    }
    let anchor_key = MacKey::new(&derive_key(&secret, &[b"medvault/v1/anchor"]));
    let slots = log.read_anchor()?;
    // A fresh tree over the rewritten frames (as a rogue rebuilds log/tree).
    log.reset();
    log.set_frames(frames);
    let tree = log.tree().ok_or_else(|| rogue_error("no tree"))?;
    let mut new_slots: [Option<Vec<u8>>; 2] = [None, None];
    for (i, s) in slots.iter().enumerate() {
        let Some(bytes) = s else { continue };
        let Ok(a) = AnchorState::decode(&anchor_key, &vault_id, bytes) else {
            continue;
        };
        let n = a.log_end.next_seq as usize;
        let a = AnchorState {
            log_link: *links
                .get(n)
                .ok_or_else(|| rogue_error("anchor past the log"))?,
            tree_root: tree.root_at(a.log_end.next_seq)?,
            ..a
        };
        new_slots[i] = Some(a.encode(&anchor_key, &vault_id).to_vec());
    }
    anchor::newest(&anchor_key, &vault_id, &new_slots).map_err(rogue_error)?;
    log.set_anchor(new_slots);
    let marker_key = MacKey::new(&derive_key(&secret, &[b"medvault/v1/applied-marker"]));
    let stored = storage
        .get(MARKER_KEY)?
        .ok_or_else(|| rogue_error("no applied marker"))?;
    let m = Marker::decode(&marker_key, &vault_id, &stored).map_err(rogue_error)?;
    let m = Marker {
        link: *links
            .get(m.pos.next_seq as usize)
            .ok_or_else(|| rogue_error("marker past the log"))?,
        ..m
    };
    let mut batch = WriteBatch::new();
    batch.put(MARKER_KEY.to_vec(), m.encode(&marker_key, &vault_id));
    storage.apply(batch)?;
    Ok(())
}
