//! Results against published values, not our own code: the RFC 6962 test leaves give the
//! published roots and compact ranges, and the signed-note format reproduces Go's example.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use base64ct::{Base64, Encoding};
use ed25519_dalek::SigningKey;
use hex_literal::hex;
use medvault_verify::{Frontier, VerifierKey, empty_root, leaf_hash, open_note, sign_note};

/// transparency-dev/merkle, testonly/constants.go (commit
/// 582a6ad190b6848f1d26f8bf08ddef29955d9db1), `LeafInputs()`: the classic RFC 6962 test
/// leaves, also those of certificate-transparency's merkle_tree_test.
const LEAVES: [&[u8]; 8] = [
    &hex!(""),
    &hex!("00"),
    &hex!("10"),
    &hex!("2021"),
    &hex!("3031"),
    &hex!("40414243"),
    &hex!("5051525354555657"),
    &hex!("606162636465666768696a6b6c6d6e6f"),
];

/// Same file, `RootHashes()`: the root of the tree of the first i leaves, i = 0..=8.
const ROOTS: [[u8; 32]; 9] = [
    hex!("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    hex!("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    hex!("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    hex!("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    hex!("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    hex!("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    hex!("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    hex!("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    hex!("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
];

#[test]
fn rfc6962_leaves_give_the_published_roots() {
    assert_eq!(empty_root(), ROOTS[0]);
    let mut f = Frontier::new();
    assert_eq!(f.root(), ROOTS[0]);
    for (i, leaf) in LEAVES.iter().enumerate() {
        f.push(leaf_hash(leaf)).unwrap();
        assert_eq!(f.root(), ROOTS[i + 1], "root of size {}", i + 1);
    }
}

#[test]
fn frontier_holds_the_published_compact_ranges() {
    // Same file, `NodeHashes()` / `CompactTrees()`: the perfect subtrees of each size.
    let n0 = |i: usize| leaf_hash(LEAVES[i]);
    let n1_0 = hex!("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125");
    let n1_2 = hex!("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a");
    let n2_0 = hex!("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7");
    let n3_0 = hex!("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
    assert_eq!(
        n0(0),
        hex!("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    let want: [Vec<[u8; 32]>; 8] = [
        vec![n0(0)],
        vec![n1_0],
        vec![n1_0, n0(2)],
        vec![n2_0],
        vec![n2_0, n0(4)],
        vec![n2_0, n1_2],
        vec![n2_0, n1_2, n0(6)],
        vec![n3_0],
    ];
    let mut f = Frontier::new();
    for (i, leaf) in LEAVES.iter().enumerate() {
        f.push(leaf_hash(leaf)).unwrap();
        assert_eq!(
            f.nodes(),
            want[i].as_slice(),
            "compact range of size {}",
            i + 1
        );
        // Restoring from the stored parts gives the same tree (no recomputation at open).
        let back = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
        assert_eq!(back.root(), ROOTS[i + 1]);
    }
    assert!(Frontier::from_parts(3, vec![n1_0]).is_err());
}

/// Go's golang.org/x/mod/sumdb/note, package documentation ("Here is a well-formed signed
/// note") and note_test.go: key, text and the exact signed note.
const GO_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                       then you don't know what your problem is.\n";
const GO_NOTE_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

fn go_signing_key() -> SigningKey {
    let b64 = GO_SKEY.splitn(5, '+').nth(4).unwrap();
    let raw = Base64::decode_vec(b64).unwrap();
    assert_eq!(raw[0], 0x01, "Ed25519 key type");
    SigningKey::from_bytes(&raw[1..].try_into().unwrap())
}

#[test]
fn signed_note_matches_go_note_package() {
    let key = go_signing_key();
    let vkey = VerifierKey::new("PeterNeumann", key.verifying_key()).unwrap();
    assert_eq!(vkey.to_string(), GO_VKEY);
    let parsed = VerifierKey::parse(GO_VKEY).unwrap();
    assert_eq!(parsed, vkey);

    let note = sign_note(GO_TEXT, "PeterNeumann", &key).unwrap();
    assert_eq!(note, format!("{GO_TEXT}\n{GO_NOTE_SIG}"));
    assert_eq!(open_note(&note, &parsed).unwrap(), GO_TEXT);
    let forged = note.replacen("cryptography", "cryptographY", 1);
    assert!(open_note(&forged, &parsed).is_err());
}

#[test]
fn verifier_key_rejects_a_wrong_key_id() {
    assert!(VerifierKey::parse(&GO_VKEY.replace("c74f20a3", "c74f20a4")).is_err());
    assert!(VerifierKey::parse(&GO_VKEY.replace("+ARpc", "+AhpC")).is_err());
}
