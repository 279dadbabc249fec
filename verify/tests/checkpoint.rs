//! Signed checkpoints: the exact text layout (golden, written by hand from docs/VERIFY.md),
//! signature checks, one changed byte anywhere in a signed checkpoint is rejected, and
//! `verify_extends` accepts a real extension and rejects a rewritten one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use ed25519_dalek::SigningKey;
use medvault_verify::{
    Checkpoint, ConsistencyProof, Error, MemoryTree, VaultId, VerifierKey, empty_root, leaf_hash,
    prove_consistency,
};

const VAULT: VaultId = VaultId([
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
]);

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn vkey() -> VerifierKey {
    Checkpoint::verifier_key(VAULT, &key()).unwrap()
}

fn cp(size: u64, root: [u8; 32]) -> Checkpoint {
    Checkpoint {
        vault_id: VAULT,
        tree_size: size,
        root,
        time: 1_796_164_382,
    }
}

#[test]
fn body_layout_is_the_documented_one() {
    let body = cp(20852163, [0x0a; 32]).body();
    assert_eq!(
        body,
        "medvault/00112233445566778899aabbccddeeff\n\
         20852163\n\
         CgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgo=\n\
         medvault-checkpoint/v1\n\
         time 1796164382\n"
    );
    assert_eq!(
        Checkpoint::parse_body(&body).unwrap(),
        cp(20852163, [0x0a; 32])
    );
    for bad in [
        body.replace("medvault/", "medvault2/"),
        body.replace("20852163", "020852163"),
        body.replace("/v1", "/v2"),
        body.replace("time ", "time  "),
        format!("{body}extra\n"),
        body.trim_end().to_owned(),
    ] {
        assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn signed_checkpoint_opens_only_intact_and_under_its_key() {
    let c = cp(5, [3; 32]);
    let note = c.sign(&key()).unwrap();
    assert_eq!(Checkpoint::open(&note, &vkey()).unwrap(), c);
    // The verifier key text round-trips (what the vault exports).
    assert_eq!(VerifierKey::parse(&vkey().to_string()).unwrap(), vkey());

    // Every single-byte change is rejected (signature, format or key match).
    let bytes = note.as_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[i] ^= 0x01;
        if let Ok(s) = String::from_utf8(b) {
            assert!(
                Checkpoint::open(&s, &vkey()).is_err(),
                "byte {i} changed: {s:?}"
            );
        }
    }
    // Another key with the same name: no signature of it.
    let other = VerifierKey::new(
        &VAULT.origin(),
        SigningKey::from_bytes(&[8; 32]).verifying_key(),
    )
    .unwrap();
    assert!(matches!(
        Checkpoint::open(&note, &other),
        Err(Error::Signature(_))
    ));
    // A cosignature line of another key is ignored (signed-note, "Verifying").
    let (text, sig) = note.split_once("\n\n").unwrap();
    let cosigned = format!("{text}\n\n\u{2014} witness.example AAAAAAAA\n{sig}");
    assert_eq!(Checkpoint::open(&cosigned, &vkey()).unwrap(), c);
}

#[test]
fn a_key_of_another_vault_is_refused() {
    let other = VaultId([1; 16]);
    let note = Checkpoint {
        vault_id: other,
        ..cp(1, [1; 32])
    }
    .sign(&key())
    .unwrap();
    // Signed by the same key pair but named for VAULT: no signature line of that name.
    assert!(Checkpoint::open(&note, &vkey()).is_err());
}

#[test]
fn extends_accepts_growth_and_rejects_rewrites() {
    let mut t = MemoryTree::new();
    for i in 0u64..30 {
        t.push(leaf_hash(&i.to_be_bytes())).unwrap();
    }
    let old = cp(12, t.root_at(12).unwrap());
    let new = cp(30, t.root());
    let p = prove_consistency(&t, 12, 30).unwrap();
    old.verify_extends(&new, &p).unwrap();
    assert!(new.verify_extends(&old, &p).is_err());

    let empty = cp(0, empty_root());
    let none = ConsistencyProof {
        old_size: 0,
        new_size: 30,
        hashes: vec![],
    };
    empty.verify_extends(&new, &none).unwrap();

    // Rewrite entry 5 and everything after it.
    let mut rogue = MemoryTree::new();
    for i in 0u64..30 {
        let entry = if i < 5 {
            i.to_be_bytes().to_vec()
        } else {
            [b"x".as_slice(), &i.to_be_bytes()].concat()
        };
        rogue.push(leaf_hash(&entry)).unwrap();
    }
    let rewritten = cp(30, rogue.root());
    let rp = prove_consistency(&rogue, 12, 30).unwrap();
    assert!(matches!(
        old.verify_extends(&rewritten, &rp),
        Err(Error::Rejected(_))
    ));
    assert!(old.verify_extends(&rewritten, &p).is_err());
}
