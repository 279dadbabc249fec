//! The verifiable access log end to end (issue 18): the engine's Merkle tree, signed
//! checkpoints and proofs, each checked by the standalone verifier `medvault-verify`
//! (whose own tree and proofs are checked against the transparency-dev RFC 9162 vectors
//! in verify/tests/vectors.rs), never by the engine's own code.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use medvault::logstore::{FRAME_VERSION, Frame, LogPos, LogStore, SegmentLog, SegmentOptions};
use medvault::storage::MemoryStorage;
use medvault::{AccessContext, KeySource, Purpose, RecordKey, Vault, VaultOptions};
use medvault_verify::{
    Checkpoint, ConsistencyProof, InclusionProof, MemoryTree, VerifierKey, leaf_hash,
};
use proptest::prelude::*;
use serde_json::json;

fn key() -> KeySource {
    KeySource::raw([0x42; 32])
}

fn ctx(actor: &str) -> AccessContext {
    AccessContext::new(actor, Purpose::Care)
}

/// The frames of every segment file of `vault_dir`, sliced by their length field as
/// docs/FORMAT.md "Log segment files" lays them out (not by the engine's decoder).
fn raw_frames(vault_dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut segs: Vec<_> = std::fs::read_dir(vault_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let mut out = Vec::new();
    for s in segs {
        let b = std::fs::read(s).unwrap();
        let mut at = 41;
        while at + 4 <= b.len() {
            let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            out.push(b[at..at + 4 + len].to_vec());
            at += 4 + len;
        }
    }
    out
}

fn oracle(frames: &[Vec<u8>]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for f in frames {
        t.push(leaf_hash(f)).unwrap();
    }
    t
}

#[test]
fn signed_checkpoints_and_proofs_verify_with_the_public_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let c = ctx("nurse-1");
    let v = Vault::create(&path, key(), medvault::danger::insecure_kdf_params()).unwrap();
    for i in 0..7 {
        let k = RecordKey::new(format!("p{i}"), "Patient", format!("p{i}"));
        v.put(&c, &k, &json!({"n": i})).unwrap();
    }
    let first = v.signed_checkpoint(&c).unwrap();
    let vkey = v.verifier_key(&c).unwrap();
    drop(v);

    // Reopened: the tree is read back, not recomputed, and keeps growing.
    let v = Vault::open(&path, key()).unwrap();
    for i in 0..5 {
        let k = RecordKey::new(format!("p{i}"), "Patient", format!("p{i}"));
        v.get::<serde_json::Value>(&c, &k).unwrap();
    }
    let second = v.signed_checkpoint(&c).unwrap();
    assert!(second.tree_size > first.tree_size);
    let vk = VerifierKey::parse(&vkey).unwrap();
    let c1 = Checkpoint::open(&first.note, &vk).unwrap();
    let c2 = Checkpoint::open(&second.note, &vk).unwrap();
    assert_eq!(
        (c1.tree_size, c1.root, c2.tree_size, c2.root),
        (first.tree_size, first.root, second.tree_size, second.root)
    );
    assert_eq!(c1.vault_id.0, *v.vault_id().as_bytes());

    // Consistency, checked by medvault-verify.
    let proof = v
        .prove_consistency(&c, c1.tree_size, Some(c2.tree_size))
        .unwrap();
    c1.verify_extends(&c2, &ConsistencyProof::from_text(&proof).unwrap())
        .unwrap();

    // Inclusion of every entry, each leaf being the frame's bytes in the segment file.
    v.sync().unwrap();
    let frames = raw_frames(&path);
    assert!(frames.len() as u64 >= c2.tree_size);
    // The roots the vault signed are the RFC 9162 roots of the stored frames.
    let model = oracle(&frames);
    assert_eq!(model.root_at(c1.tree_size).unwrap(), c1.root);
    assert_eq!(model.root_at(c2.tree_size).unwrap(), c2.root);
    for i in 0..c2.tree_size {
        let text = v.prove_inclusion(&c, i, Some(c2.tree_size)).unwrap();
        let (p, leaf) = InclusionProof::from_text(&text).unwrap();
        assert_eq!(leaf, leaf_hash(&frames[i as usize]), "entry {i}");
        p.verify(&leaf, &c2.root).unwrap();
        assert!(p.verify(&leaf_hash(b"forged"), &c2.root).is_err());
    }
    assert_eq!(v.entry_bytes(&c, 3).unwrap(), frames[3]);

    // The MAC checkpoint stays beside the signed one, for key holders.
    let mac = v.checkpoint(&c).unwrap();
    v.verify(&c, Some(&mac)).unwrap();
    // Every proof asked is logged.
    assert!(v.log_len() > c2.tree_size + c2.tree_size);
}

#[test]
fn a_root_key_rotation_turns_the_signing_key_over_and_keeps_the_old_public_key() {
    let c = ctx("admin");
    let v = Vault::create_in(
        Box::new(MemoryStorage::new()),
        key(),
        VaultOptions::default(),
    )
    .unwrap();
    assert!(v.checkpoint_keys().unwrap().is_empty());
    let old = v.signed_checkpoint(&c).unwrap();
    let keys = v.checkpoint_keys().unwrap();
    assert_eq!(keys.len(), 1);
    v.rotate_root_key(
        &c,
        KeySource::raw([0x43; 32]),
        medvault::danger::insecure_kdf_params(),
        &mut |_| {},
    )
    .unwrap();
    let keys = v.checkpoint_keys().unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| (k.generation, k.current))
            .collect::<Vec<_>>(),
        [(1, false), (2, true)]
    );
    let new = v.signed_checkpoint(&c).unwrap();
    assert_eq!(new.generation, 2);
    let k1 = VerifierKey::parse(&keys[0].verifier_key).unwrap();
    let k2 = VerifierKey::parse(&keys[1].verifier_key).unwrap();
    assert_eq!(v.verifier_key(&c).unwrap(), keys[1].verifier_key);
    // Each checkpoint verifies under its own key only; the two still link up.
    let c1 = Checkpoint::open(&old.note, &k1).unwrap();
    let c2 = Checkpoint::open(&new.note, &k2).unwrap();
    assert!(Checkpoint::open(&old.note, &k2).is_err());
    assert!(Checkpoint::open(&new.note, &k1).is_err());
    let p = v
        .prove_consistency(&c, c1.tree_size, Some(c2.tree_size))
        .unwrap();
    c1.verify_extends(&c2, &ConsistencyProof::from_text(&p).unwrap())
        .unwrap();
    // The rotation is in the log.
    let notes: Vec<String> = v
        .audit_query(&c, &medvault::LogQuery::default())
        .unwrap()
        .into_iter()
        .filter(|e| e.action == medvault::Action::KeyRotation)
        .map(|e| e.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("checkpoint signing key generation 2")),
        "{notes:?}"
    );
}

#[test]
fn a_key_holder_rewriting_history_fails_the_consistency_proof() {
    let storage = MemoryStorage::new();
    let opts = VaultOptions::default;
    let c = ctx("nurse-1");
    let v = Vault::create_in(Box::new(storage.clone()), key(), opts()).unwrap();
    for i in 0..10 {
        let k = RecordKey::new(format!("p{i}"), "Patient", format!("p{i}"));
        v.put(&c, &k, &json!({"n": i})).unwrap();
    }
    let before = v.signed_checkpoint(&c).unwrap();
    let vk = VerifierKey::parse(&v.verifier_key(&c).unwrap()).unwrap();
    for i in 0..4 {
        let k = RecordKey::new(format!("p{i}"), "Patient", format!("p{i}"));
        v.get::<serde_json::Value>(&c, &k).unwrap();
    }
    drop(v);

    // The rogue operator, with the key, rewrites who wrote entry 5 and repairs the rest.
    let rewritten = std::cell::Cell::new(false);
    medvault::testing::rogue::rewrite_entry(&storage, &key(), 5, |plain| {
        let at = plain
            .windows(7)
            .position(|w| w == b"nurse-1")
            .expect("the actor is in the entry");
        plain[at..at + 7].copy_from_slice(b"nurse-9");
        rewritten.set(true);
    })
    .unwrap();
    assert!(rewritten.get());

    // The vault opens and its own verify passes: the key holder repaired every MAC.
    let v = Vault::open_in(Box::new(storage.clone()), key(), opts()).unwrap();
    v.verify(&c, None).unwrap();
    let after = v.signed_checkpoint(&c).unwrap();
    let c_before = Checkpoint::open(&before.note, &vk).unwrap();
    let c_after = Checkpoint::open(&after.note, &vk).unwrap();
    // The auditor holding the old checkpoint rejects the new one: no proof links them.
    let proof = v
        .prove_consistency(&c, c_before.tree_size, Some(c_after.tree_size))
        .unwrap();
    let proof = ConsistencyProof::from_text(&proof).unwrap();
    assert!(c_before.verify_extends(&c_after, &proof).is_err());
    // Without the rewrite the same steps pass (the control is the first test above).
}

fn frame(seq: u64, body_len: usize, salt: u8) -> Frame {
    Frame {
        seq,
        version: FRAME_VERSION,
        flags: (seq % 2) as u8,
        body: (0..body_len)
            .map(|i| (i as u8) ^ salt ^ seq as u8)
            .collect(),
        link: [salt ^ seq as u8; 32],
    }
}

fn start() -> LogPos {
    LogPos {
        next_seq: 0,
        segment: 0,
        offset: 41,
    }
}

/// Changes byte `at` of `text` to another byte.
fn flip(text: &str, at: usize, to: u8) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    let i = at % b.len();
    b[i] = if b[i] == to { to ^ 0x01 } else { to };
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random log sizes (appended in random chunks, across segment rollovers, with a
    /// reopen and a lost tail of the node file): every inclusion and consistency proof
    /// the engine gives verifies against the roots of an independent tree over the
    /// segment files' bytes, and every proof with one byte changed fails.
    #[test]
    fn every_proof_verifies_and_every_changed_byte_fails(
        n in 1u64..260,
        chunks in proptest::collection::vec(1u64..9, 1..40),
        salt in any::<u8>(),
        lost_nodes in 0u64..40,
        pairs in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 4),
        byte in any::<usize>(),
        to in any::<u8>(),
    ) {
        let d = tempfile::tempdir().unwrap();
        let id = medvault::VaultId::from([salt; 16]);
        let opts = || SegmentOptions { max_segment_bytes: 2048 };
        let log = SegmentLog::create(d.path(), id, opts()).unwrap();
        let mut seq = 0u64;
        for c in chunks.iter().cycle() {
            if seq >= n { break; }
            let k = (*c).min(n - seq);
            let fs: Vec<Frame> = (seq..seq + k).map(|s| frame(s, (s % 97) as usize, salt)).collect();
            log.append(&fs).unwrap();
            seq += k;
        }
        log.sync().unwrap();
        drop(log);
        // A crash may lose node-file bytes written after its last sync: cut some.
        let tree_file = d.path().join("log").join("tree");
        let len = std::fs::metadata(&tree_file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&tree_file).unwrap();
        f.set_len(len.saturating_sub(lost_nodes * 32).max(64)).unwrap();
        drop(f);
        let log = SegmentLog::open(d.path(), id, opts()).unwrap();
        log.recover(&start()).unwrap();
        let tree = log.tree().unwrap();
        let model = oracle(&raw_frames(d.path()));
        prop_assert_eq!(model.size(), n);
        prop_assert_eq!(tree.size(), n);
        for (a, b, i) in pairs {
            let new = 1 + b % n;
            let old = 1 + a % new;
            let index = i % new;
            let new_root = model.root_at(new).unwrap();
            let old_root = model.root_at(old).unwrap();
            prop_assert_eq!(tree.root_at(new).unwrap(), new_root);

            let inc = tree.prove_inclusion(index, new).unwrap();
            let text = inc.to_text(&tree.leaf(index).unwrap());
            let (p, leaf) = InclusionProof::from_text(&text).unwrap();
            prop_assert_eq!(leaf, leaf_hash(&raw_frames(d.path())[index as usize]));
            prop_assert!(p.verify(&leaf, &new_root).is_ok());
            let bad = flip(&text, byte, to);
            let rejected = match std::str::from_utf8(&bad).ok().map(InclusionProof::from_text) {
                // A proof whose size is not the checkpoint's is refused before its hashes
                // (as medvault-verify does): for the leftmost leaves the hashes alone do
                // not bind the size.
                Some(Ok((p, l))) => p.verify(&l, &new_root).is_err() || l != leaf
                    || p.tree_size != new,
                _ => true,
            };
            prop_assert!(rejected, "inclusion proof with byte {} changed accepted", byte % text.len());

            let con = tree.prove_consistency(old, new).unwrap();
            let text = con.to_text();
            let p = ConsistencyProof::from_text(&text).unwrap();
            prop_assert!(p.verify(&old_root, &new_root).is_ok());
            if old < new {
                // (Equal sizes give a proof with no hash: changing its header changes the
                // sizes, which the checkpoints' check refuses; see verify_extends.)
                let bad = flip(&text, byte, to);
                let rejected = match std::str::from_utf8(&bad).ok().map(ConsistencyProof::from_text) {
                    Some(Ok(q)) => q.verify(&old_root, &new_root).is_err()
                        || (q.old_size, q.new_size) != (old, new),
                    _ => true,
                };
                prop_assert!(rejected, "consistency proof with byte {} changed accepted", byte % text.len());
            }
        }
    }
}

fn fill(log: &SegmentLog, from: u64, n: u64) {
    for s in from..from + n {
        log.append(&[frame(s, 50 + (s % 13) as usize, 9)]).unwrap();
    }
    log.sync().unwrap();
}

#[test]
fn a_torn_tail_cut_at_open_cuts_the_tree_with_it() {
    let d = tempfile::tempdir().unwrap();
    let id = medvault::VaultId::from([3; 16]);
    let log = SegmentLog::create(d.path(), id, SegmentOptions::default()).unwrap();
    fill(&log, 0, 6);
    drop(log); // a clean close: the tree of 6 leaves is durable
    // A crash tore the last append: cut the segment inside frame 5.
    let seg = d.path().join("log").join(format!("{:020}.seg", 0));
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let log = SegmentLog::open(d.path(), id, SegmentOptions::default()).unwrap();
    log.recover(&start()).unwrap();
    let frames = raw_frames(d.path());
    assert_eq!(frames.len(), 5);
    let tree = log.tree().unwrap();
    assert_eq!(tree.size(), 5);
    assert_eq!(tree.root(), oracle(&frames).root());
    // Appending goes on from there, tree and log in step.
    log.append(&[frame(5, 70, 1)]).unwrap();
    log.sync().unwrap();
    assert_eq!(
        log.tree().unwrap().root(),
        oracle(&raw_frames(d.path())).root()
    );
}

#[test]
fn proofs_survive_a_prune_of_whole_old_segments() {
    let d = tempfile::tempdir().unwrap();
    let id = medvault::VaultId::from([4; 16]);
    let opts = || SegmentOptions {
        max_segment_bytes: 600,
    };
    let log = SegmentLog::create(d.path(), id, opts()).unwrap();
    fill(&log, 0, 40);
    let end = log.end();
    drop(log);
    let all = raw_frames(d.path());
    let model = oracle(&all);
    // A retention prune drops every segment but the last.
    let mut segs: Vec<_> = std::fs::read_dir(d.path().join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() > 3);
    for s in &segs[..segs.len() - 1] {
        std::fs::remove_file(s).unwrap();
    }
    let log = SegmentLog::open(d.path(), id, opts()).unwrap();
    log.recover(&end).unwrap();
    let tree = log.tree().unwrap();
    assert_eq!(tree.size(), 40);
    let root = model.root_at(40).unwrap();
    for i in [0, 1, 17, 39] {
        let p = tree.prove_inclusion(i, 40).unwrap();
        p.verify(&leaf_hash(&all[i as usize]), &root).unwrap();
    }
    let p = tree.prove_consistency(3, 40).unwrap();
    p.verify(&model.root_at(3).unwrap(), &root).unwrap();
    // And the log keeps growing with its tree.
    fill(&log, 40, 5);
    assert_eq!(log.tree().unwrap().size(), 45);
}

#[test]
fn a_deleted_tree_is_rebuilt_and_an_altered_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let c = ctx("nurse-1");
    let v = Vault::create(&path, key(), medvault::danger::insecure_kdf_params()).unwrap();
    for i in 0..5 {
        let k = RecordKey::new(format!("p{i}"), "Patient", format!("p{i}"));
        v.put(&c, &k, &json!({"n": i})).unwrap();
    }
    let cp = v.signed_checkpoint(&c).unwrap();
    let vk = VerifierKey::parse(&v.verifier_key(&c).unwrap()).unwrap();
    drop(v);
    let tree_file = path.join("log").join("tree");

    // Deleted (or a vault from before the tree): open rebuilds it from the segments.
    std::fs::remove_file(&tree_file).unwrap();
    let v = Vault::open(&path, key()).unwrap();
    v.verify(&c, None).unwrap();
    let later = v.signed_checkpoint(&c).unwrap();
    let p = v
        .prove_consistency(&c, cp.tree_size, Some(later.tree_size))
        .unwrap();
    Checkpoint::open(&cp.note, &vk)
        .unwrap()
        .verify_extends(
            &Checkpoint::open(&later.note, &vk).unwrap(),
            &ConsistencyProof::from_text(&p).unwrap(),
        )
        .unwrap();
    drop(v);

    // One node changed behind the vault: open refuses it (the anchor binds the root)
    // when the frontier changes; verify catches any other node.
    let bytes = std::fs::read(&tree_file).unwrap();
    let nodes = (bytes.len() as u64 - 64) / 32;
    for node in [0, nodes - 1] {
        let mut t = bytes.clone();
        t[64 + node as usize * 32] ^= 1;
        std::fs::write(&tree_file, &t).unwrap();
        let refused = Vault::open(&path, key()).and_then(|v| v.verify(&c, None).map(|_| ()));
        let e = refused.unwrap_err().to_string();
        assert!(e.contains("Merkle tree"), "node {node}: {e}");
    }
    std::fs::write(&tree_file, &bytes).unwrap();
    Vault::open(&path, key()).unwrap().verify(&c, None).unwrap();
}
