//! Property tests against a reference tree written straight from RFC 9162's definition of
//! MTH (recursive over the leaf list, independent of the frontier and the prover): for
//! random sizes and pairs of sizes every inclusion and consistency proof verifies, every
//! proof with one byte changed fails, and a rewritten history fails consistency.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use medvault_verify::{
    Frontier, Hash, MemoryTree, leaf_hash, node_hash, prove_consistency, prove_inclusion,
};
use proptest::prelude::*;

/// RFC 9162 "Definition of the Merkle Tree", verbatim recursion over leaf hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha2_empty(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn sha2_empty() -> Hash {
    // SHA-256("") from FIPS 180-4 examples / RFC 6962 empty root.
    hex_literal::hex!("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
}

fn leaves(n: usize, salt: u8) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat()))
        .collect()
}

fn tree(hashes: &[Hash]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for h in hashes {
        t.push(*h).unwrap();
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frontier_root_is_the_rfc_root(n in 0usize..700) {
        let hs = leaves(n, 0);
        let mut f = Frontier::new();
        for h in &hs {
            f.push(*h).unwrap();
        }
        prop_assert_eq!(f.root(), mth(&hs));
        prop_assert_eq!(f.nodes().len(), n.count_ones() as usize);
    }

    #[test]
    fn inclusion_proofs_verify_and_one_changed_byte_fails(
        n in 1usize..700, pick in any::<u64>(), at in any::<u64>(), bit in 0u8..8,
    ) {
        let hs = leaves(n, 1);
        let t = tree(&hs);
        let i = (pick % n as u64) as usize;
        // Oracle: the proof is checked against the reference root of the RFC definition.
        let root = mth(&hs);
        let p = prove_inclusion(&t, i as u64, n as u64).unwrap();
        prop_assert!(p.verify(&hs[i], &root).is_ok());
        // One byte changed anywhere in the leaf hash or the proof's hashes.
        let total = 32 * (p.hashes.len() + 1);
        let pos = (at % total as u64) as usize;
        let (mut leaf, mut bad) = (hs[i], p.clone());
        if pos < 32 {
            leaf[pos] ^= 1 << bit;
        } else {
            bad.hashes[pos / 32 - 1][pos % 32] ^= 1 << bit;
        }
        prop_assert!(bad.verify(&leaf, &root).is_err());
        // A proof for another index or size does not pass for this one.
        if n > 1 {
            let j = (i + 1) % n;
            prop_assert!(p.verify(&hs[j], &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_one_changed_byte_fails(
        a in 1usize..600, b in 0usize..600, at in any::<u64>(), bit in 0u8..8,
    ) {
        let (m, n) = (a.min(a + b), a + b);
        let hs = leaves(n, 2);
        let t = tree(&hs);
        let (r1, r2) = (mth(&hs[..m]), mth(&hs));
        let p = prove_consistency(&t, m as u64, n as u64).unwrap();
        prop_assert!(p.verify(&r1, &r2).is_ok());
        if p.hashes.is_empty() {
            // m == n: nothing to change in the proof; a changed root must fail.
            let mut r = r2;
            r[(at % 32) as usize] ^= 1 << bit;
            prop_assert!(p.verify(&r1, &r).is_err());
        } else {
            let pos = (at % (32 * p.hashes.len()) as u64) as usize;
            let mut bad = p.clone();
            bad.hashes[pos / 32][pos % 32] ^= 1 << bit;
            prop_assert!(bad.verify(&r1, &r2).is_err());
        }
    }

    /// Acceptance 2 on the tree alone: a rogue operator who rewrites entry j < m and
    /// re-appends everything after it cannot produce a consistency proof from the old
    /// checkpoint's root to the new one.
    #[test]
    fn rewritten_history_fails_consistency(
        m in 1usize..400, extra in 0usize..200, j in any::<u64>(),
    ) {
        let n = m + extra;
        let honest = leaves(n, 3);
        let old_root = mth(&honest[..m]);
        let mut rogue = honest.clone();
        let j = (j % m as u64) as usize;
        for (k, h) in rogue.iter_mut().enumerate().skip(j) {
            *h = leaf_hash(&[b"rewritten".as_slice(), &k.to_be_bytes()].concat());
        }
        let t = tree(&rogue);
        let p = prove_consistency(&t, m as u64, n as u64).unwrap();
        prop_assert!(p.verify(&old_root, &t.root()).is_err());
    }
}
