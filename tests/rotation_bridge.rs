//! Guards the rotation-bridge attack of issue 14 (acceptance 3): a header copied while a
//! root rotation was pending let the old passphrase unwrap the *new* root, and putting it
//! back made the revoked passphrase open the live vault again. Replayed here as a
//! tamperer holding the old passphrase would; and after `rotate_all`, data written
//! afterwards is checked, with RustCrypto alone (no medvault decoder), not to open with
//! any key material from before.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

mod common;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use medvault::danger::{FaultPlan, FaultyStorage, RawAccess};
use medvault::storage::MemoryStorage;
use medvault::{AccessContext, Error, KeySource, Purpose, RecordKey, Vault, VaultOptions};
use serde_json::{Value, json};
use sha2::Sha256;

fn ctx() -> AccessContext {
    AccessContext::new("bridge-test", Purpose::Maintenance)
}

fn kdf() -> medvault::KdfParams {
    medvault::danger::insecure_kdf_params()
}

fn open(m: &FaultyStorage<MemoryStorage>, key: KeySource) -> medvault::Result<Vault> {
    Vault::open_in(Box::new(m.clone()), key, VaultOptions::default())
}

fn put(v: &Vault, subject: &str, id: &str) -> (RecordKey, Value) {
    let k = RecordKey::new(subject, "Observation", id);
    let val = json!({"resourceType": "Observation", "id": id, "note": format!("{subject} {id}")});
    v.put(&ctx(), &k, &val).unwrap();
    (k, val)
}

/// Open refused the header as older than the anchor's last finished rotation.
fn is_put_back_refusal(r: &medvault::Result<Vault>) -> bool {
    match r {
        Err(e @ Error::Integrity { .. }) => e
            .to_string()
            .contains("older than the last finished key rotation"),
        _ => false,
    }
}

#[test]
fn a_header_copied_before_a_root_rotation_and_put_back_is_refused() {
    let m = FaultyStorage::memory();
    let v = Vault::create_in(
        Box::new(m.clone()),
        KeySource::passphrase("old"),
        VaultOptions {
            kdf: kdf(),
            kek_rewrap_batch: 2,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let mut all = vec![
        put(&v, "p1", "o1"),
        put(&v, "p2", "o1"),
        put(&v, "p3", "o1"),
    ];
    // Every header the vault holds while rotations are pending or done, as a tamperer
    // would copy them: before, during a KEK rotation (interrupted), and after.
    let mut copies = vec![m.raw_header().unwrap()];
    m.set_faults(FaultPlan {
        fail_writes_after: Some(1),
        ..FaultPlan::default()
    });
    assert!(v.rotate_vault_kek(&ctx(), &mut |_| {}).is_err());
    m.set_faults(FaultPlan::default());
    drop(v);
    let v = open(&m, KeySource::passphrase("old")).unwrap();
    assert!(v.vault_kek_rotation_pending());
    copies.push(m.raw_header().unwrap());
    // The passphrase changes while the KEK rotation is pending; then it finishes.
    v.rotate_root_key(&ctx(), KeySource::passphrase("new"), kdf(), &mut |_| {})
        .unwrap();
    assert!(v.vault_kek_rotation_pending());
    v.rotate_vault_kek(&ctx(), &mut |_| {}).unwrap();
    // No header the old passphrase unlocks was ever written after the rotation: the new
    // one is a wrong key for it.
    assert!(matches!(
        open(&m, KeySource::passphrase("old")),
        Err(Error::WrongKey)
    ));
    // New data, written after the rotation finished.
    all.push(put(&v, "p4", "o1"));
    all.push(put(&v, "p1", "o2"));
    drop(v);
    let live = m.raw_header().unwrap();
    for (i, copy) in copies.iter().enumerate() {
        m.raw_set_header(copy);
        // The revoked passphrase does not open the vault through the put-back header...
        let r = open(&m, KeySource::passphrase("old"));
        assert!(
            is_put_back_refusal(&r),
            "copy {i}: the old passphrase on a put-back header: {:?}",
            r.as_ref().map(|_| ())
        );
        // ... and the new one does not either (that header is not its).
        assert!(open(&m, KeySource::passphrase("new")).is_err(), "copy {i}");
    }
    m.raw_set_header(&live);
    let v = open(&m, KeySource::passphrase("new")).unwrap();
    for (k, val) in &all {
        let got: Value = v.get(&ctx(), k).unwrap();
        assert_eq!(&got, val);
    }
    assert!(v.verify(&ctx(), None).unwrap() > 0);
}

// ----- by-hand key extraction (docs/FORMAT.md "Header", "Subject key entry") ---------

fn hkdf(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut k)
        .unwrap();
    k
}

fn aes_open(key: &[u8; 32], env: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    Aes256Gcm::new_from_slice(key)
        .unwrap()
        .decrypt(
            Nonce::from_slice(&env[..12]),
            Payload {
                msg: &env[12..],
                aad,
            },
        )
        .ok()
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// The vault KEKs a raw root key unwraps from a version-2 header: (generation, key).
fn keks_by_hand(hdr: &[u8], root: &[u8; 32]) -> Vec<(u32, [u8; 32])> {
    assert_eq!(hdr[0], 2, "header version 2");
    let vid = &hdr[5..21];
    // Root spec at 21: kind (1), Argon2id parameters (12), salt (16), generation.
    let root_gen = be32(&hdr[50..]);
    let wrap = hkdf(root, b"medvault/v1/kek");
    let aad = |kek_gen: u32| {
        let mut a = b"medvault/v1/vault-kek".to_vec();
        a.push(2);
        a.extend_from_slice(vid);
        a.extend_from_slice(&root_gen.to_be_bytes());
        a.extend_from_slice(&kek_gen.to_be_bytes());
        a
    };
    let mut out = Vec::new();
    let mut slots = vec![(be32(&hdr[146..]), &hdr[150..210])];
    if hdr[210] == 1 {
        slots.push((be32(&hdr[211..]), &hdr[215..275]));
    }
    for (g, w) in slots {
        if let Some(k) = aes_open(&wrap, w, &aad(g)) {
            out.push((g, k.try_into().unwrap()));
        }
    }
    out
}

/// Every wrapped key of a subject entry: (AAD, wrapped bytes), per docs/FORMAT.md.
fn wrapped_keys(vid: &[u8], storage_key: &[u8], e: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    assert_eq!(e[0], 2, "subject entry version 2");
    let tag = &storage_key[1..17];
    let g = be32(&e[1..]);
    let n = u16::from_be_bytes([e[9], e[10]]) as usize;
    let mut out = Vec::new();
    for i in 0..n {
        let at = 11 + i * 72;
        let mut aad = b"medvault/v1/dek".to_vec();
        aad.push(2);
        aad.extend_from_slice(vid);
        aad.extend_from_slice(tag);
        aad.extend_from_slice(&e[at..at + 4]);
        aad.extend_from_slice(&g.to_be_bytes());
        out.push((aad, e[at + 12..at + 72].to_vec()));
    }
    let at = 11 + n * 72 + 8;
    let mut aad = b"medvault/v1/audit-key".to_vec();
    aad.push(2);
    aad.extend_from_slice(vid);
    aad.extend_from_slice(tag);
    aad.extend_from_slice(&g.to_be_bytes());
    out.push((aad, e[at..at + 60].to_vec()));
    out
}

/// Every key (root, KEKs, data keys, audit keys) the holder of `root` and a copy of the
/// vault's files can unwrap: what a tamperer holding that root would have.
fn material(m: &FaultyStorage<MemoryStorage>, root: &[u8; 32]) -> Vec<[u8; 32]> {
    let hdr = m.raw_header().unwrap();
    let vid = hdr[5..21].to_vec();
    let keks = keks_by_hand(&hdr, root);
    let mut keys: Vec<[u8; 32]> = vec![*root];
    keys.extend(keks.iter().map(|(_, k)| *k));
    for (k, e) in m.dump() {
        if k[0] != b'k' {
            continue;
        }
        for (aad, w) in wrapped_keys(&vid, &k, &e) {
            for (_, kek) in &keks {
                if let Some(pt) = aes_open(&hkdf(kek, b"medvault/v1/subject-wrap"), &w, &aad) {
                    keys.push(pt.try_into().unwrap());
                }
            }
        }
    }
    keys
}

#[test]
fn after_rotate_all_nothing_from_before_opens_what_is_written_afterwards() {
    let m = FaultyStorage::memory();
    let old_root = [1u8; 32];
    let v = Vault::create_in(
        Box::new(m.clone()),
        KeySource::raw(old_root),
        VaultOptions::default(),
    )
    .unwrap();
    let mut all: Vec<(RecordKey, Value)> =
        (0..6).map(|i| put(&v, &format!("p{i}"), "o1")).collect();
    let old_header = m.raw_header().unwrap();
    let old = material(&m, &old_root);
    assert!(
        old.len() > 1 + 6,
        "the old root holder has the KEK and every subject key"
    );

    let new_root = [2u8; 32];
    let rep = v
        .rotate_all(&ctx(), KeySource::raw(new_root), kdf(), &mut |_| {})
        .unwrap();
    assert_eq!(rep.subject_entries_rewrapped, 6);
    assert_eq!(rep.data.records, 6);
    // Written afterwards: an existing subject and a new one.
    all.push(put(&v, "p0", "o2"));
    all.push(put(&v, "p-new", "o1"));
    let after_hdr = m.raw_header().unwrap();

    // Oracle 1: no old key unwraps any key of the new header or of any subject entry.
    let vid = after_hdr[5..21].to_vec();
    let mut wrapped: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (k, e) in m.dump() {
        if k[0] == b'k' {
            wrapped.extend(wrapped_keys(&vid, &k, &e));
        }
    }
    assert!(!wrapped.is_empty());
    for key in &old {
        assert!(
            keks_by_hand(&after_hdr, key).is_empty(),
            "an old key opens the new header"
        );
        for derived in [
            *key,
            hkdf(key, b"medvault/v1/subject-wrap"),
            hkdf(key, b"medvault/v1/kek"),
        ] {
            for (aad, w) in &wrapped {
                assert!(
                    aes_open(&derived, w, aad).is_none(),
                    "an old key unwraps a new key"
                );
            }
        }
    }
    // Oracle 2: the data keys now in force (unwrapped by hand with the new root) are all
    // new; each subject holds one version, so every record (it opens, below) is sealed
    // under a data key created by the rotation or after it.
    let new = material(&m, &new_root);
    let new_vid = &after_hdr[5..21];
    let mut deks = Vec::new();
    for (k, e) in m.dump() {
        if k[0] == b'k' {
            let keks = keks_by_hand(&after_hdr, &new_root);
            for (aad, w) in wrapped_keys(new_vid, &k, &e) {
                if !aad.starts_with(b"medvault/v1/dek") {
                    continue;
                }
                let kek = hkdf(&keks[0].1, b"medvault/v1/subject-wrap");
                deks.push(aes_open(&kek, &w, &aad).expect("the new root unwraps every data key"));
            }
        }
    }
    assert_eq!(
        deks.len(),
        7,
        "one data-key version per subject after rotate_all"
    );
    for d in &deks {
        assert!(
            !old.iter().any(|o| o.as_slice() == d.as_slice()),
            "a data key from before survives"
        );
        assert!(new.iter().any(|n| n.as_slice() == d.as_slice()));
    }
    // The old root opens nothing; the old header put back is refused.
    drop(v);
    assert!(matches!(
        open(&m, KeySource::raw(old_root)),
        Err(Error::WrongKey)
    ));
    m.raw_set_header(&old_header);
    let r = open(&m, KeySource::raw(old_root));
    assert!(is_put_back_refusal(&r), "{:?}", r.as_ref().map(|_| ()));
    m.raw_set_header(&after_hdr);
    let v = open(&m, KeySource::raw(new_root)).unwrap();
    for (k, val) in &all {
        let got: Value = v.get(&ctx(), k).unwrap();
        assert_eq!(&got, val);
    }
    assert!(v.verify(&ctx(), None).unwrap() > 0);
}

/// The breaker trial's variant (F1 of 2026-12-02): the header *and* the anchor of their
/// time copied before `rotate root` (or `rotate kek`) and both put back afterwards. The
/// anchor alone names the old generations, but the applied marker and `zkeygen` in the
/// record store remember the finished rotation: the revoked passphrase is refused, and the
/// live files put back open again with the current one.
#[test]
fn a_header_put_back_with_the_anchor_of_its_time_is_refused() {
    for rotation in ["root", "kek"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        let v = Vault::create(&path, KeySource::passphrase("old"), kdf()).unwrap();
        let mut all = vec![put(&v, "p1", "o1"), put(&v, "p2", "o1")];
        v.sync().unwrap();
        let old_header = std::fs::read(path.join("header")).unwrap();
        let old_anchor = std::fs::read(path.join("anchor")).unwrap();
        match rotation {
            "root" => {
                v.rotate_root_key(&ctx(), KeySource::passphrase("new"), kdf(), &mut |_| {})
                    .unwrap();
            }
            _ => {
                v.rotate_vault_kek(&ctx(), &mut |_| {}).unwrap();
            }
        }
        all.push(put(&v, "p3", "o1"));
        drop(v);
        let live_header = std::fs::read(path.join("header")).unwrap();
        let live_anchor = std::fs::read(path.join("anchor")).unwrap();
        std::fs::write(path.join("header"), &old_header).unwrap();
        std::fs::write(path.join("anchor"), &old_anchor).unwrap();
        let r = Vault::open(&path, KeySource::passphrase("old"));
        assert!(
            is_put_back_refusal(&r),
            "{rotation}: the old passphrase on the put-back header and anchor: {:?}",
            r.as_ref().map(|_| ())
        );
        std::fs::write(path.join("header"), &live_header).unwrap();
        std::fs::write(path.join("anchor"), &live_anchor).unwrap();
        let now = if rotation == "root" { "new" } else { "old" };
        let v = Vault::open(&path, KeySource::passphrase(now)).unwrap();
        for (k, val) in &all {
            let got: Value = v.get(&ctx(), k).unwrap();
            assert_eq!(&got, val, "{rotation}");
        }
        assert!(v.verify(&ctx(), None).unwrap() > 0);
    }
}

/// Breaker trial 2026-12-02, finding 8: after `rotate kek` (same passphrase), the live
/// header put on the store, anchor and log of before left every subject entry under a
/// KEK generation the header does not hold: every read failed while `verify` said
/// "intact". Verify now checks each subject entry's KEK generation.
#[test]
fn verify_names_subject_entries_under_a_kek_the_header_does_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let v = Vault::create(&path, KeySource::passphrase("pw"), kdf()).unwrap();
    put(&v, "p1", "o1");
    put(&v, "p2", "o1");
    drop(v);
    let before = dir.path().join("before");
    common::copy_tree(&path, &before);
    let v = Vault::open(&path, KeySource::passphrase("pw")).unwrap();
    v.rotate_vault_kek(&ctx(), &mut |_| {}).unwrap();
    drop(v);
    std::fs::copy(path.join("header"), before.join("header")).unwrap();
    let v = Vault::open(&before, KeySource::passphrase("pw")).unwrap();
    match v.verify(&ctx(), None) {
        Err(e @ Error::Integrity { .. }) => {
            assert!(e.to_string().contains("2 subject key entries"), "{e}")
        }
        other => panic!("verify of a header over older entries: {other:?}"),
    }
    // The vault as it was left verifies.
    drop(v);
    let v = Vault::open(&path, KeySource::passphrase("pw")).unwrap();
    assert!(v.verify(&ctx(), None).unwrap() > 0);
}
