//! Guards invariants 2 and 3 (binding, fail closed): a flipped, truncated or moved byte
//! of a stored record, field envelope or subject key entry is an error, never data and
//! never a panic (issue 2, acceptance 2). The cases on one stored value run on memory
//! storage and on PostgreSQL, where the tamperer is a DBA writing SQL (tests/pg_dba;
//! issue 17 acceptance 1); those that move values between vaults or reopen over the
//! same bytes run on memory storage only (the DBA cases of postgres/tests/backend.rs
//! cover rows of another vault and reopening).

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;
mod pg_dba;

use common::{RecordLayout, ctx, memory_vault, raw_get, raw_key, raw_with_prefix, reopen};
use medvault::danger::RawAccess;
use medvault::storage::MemoryStorage;
use medvault::{Error, RecordKey, Result, Vault, VaultOptions};
use serde_json::{Value, json};

const ALL: [&str; 4] = ["code", "note", "status", "value"];

fn record() -> Value {
    json!({"code": "85354-9", "status": "final", "value": 120, "note": "felt dizzy"})
}

fn other_record() -> Value {
    json!({"code": "8867-4", "status": "amended", "value": 72, "note": "resting"})
}

fn key(subject: &str, id: &str) -> RecordKey {
    RecordKey::new(subject, "Observation", id)
}

/// The storage key of the only record of `storage` written since `before` was dumped.
fn new_record_key(storage: &dyn RawAccess, before: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let fresh: Vec<Vec<u8>> = raw_with_prefix(storage, b'r')
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !before.iter().any(|(b, _)| b == k))
        .collect();
    assert_eq!(fresh.len(), 1, "expected exactly one new record");
    fresh.into_iter().next().unwrap()
}

/// Puts `value` at `k` and returns its storage key.
fn put(storage: &dyn RawAccess, vault: &Vault, k: &RecordKey, value: &Value) -> Vec<u8> {
    let before = raw_with_prefix(storage, b'r');
    vault.put(&ctx(), k, value).unwrap();
    new_record_key(storage, &before)
}

fn is_integrity<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Integrity { .. }))
}

/// Every read path of record `k` fails with `Error::Integrity`.
fn assert_reads_fail(vault: &Vault, k: &RecordKey, why: &str) {
    let whole: Result<Value> = vault.get(&ctx(), k);
    assert!(is_integrity(&whole), "{why}: get gave {whole:?}");
    let fields: Result<Value> = vault.get_fields(&ctx(), k, &ALL);
    assert!(
        is_integrity(&fields),
        "{why}: get_fields(all) gave {fields:?}"
    );
    let scan: Result<Vec<(RecordKey, Value)>> = vault.records_of(&ctx(), &k.subject, None);
    assert!(is_integrity(&scan), "{why}: records_of gave {scan:?}");
}

fn every_flipped_byte_of_a_record_value_fails_closed(storage: &dyn RawAccess, vault: &Vault) {
    let k = key("alice", "o1");
    let sk = put(storage, vault, &k, &record());
    let orig = raw_get(storage, &sk);
    let layout = RecordLayout::parse(&orig).unwrap();
    assert_eq!(layout.encode(), orig, "test parser agrees with the format");
    assert_eq!(layout.fields.len(), ALL.len());
    // Bodies of the envelopes of fields other than "code" (stored in name order).
    let others: Vec<_> = layout.field_ranges().into_iter().skip(1).collect();

    for i in 0..orig.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut t = orig.clone();
            t[i] ^= mask;
            storage.raw_put(&sk, &t);
            let why = format!("byte {i} ^ {mask:#04x}");
            if i == 0 {
                // The format version byte: an unknown version is its own error.
                let r: Result<Value> = vault.get(&ctx(), &k);
                assert!(
                    matches!(
                        r,
                        Err(Error::UnsupportedVersion {
                            what: "record value",
                            ..
                        })
                    ),
                    "{why}: {r:?}"
                );
                continue;
            }
            assert_reads_fail(vault, &k, &why);
            // One field alone: it fails unless the flip is inside another field's
            // envelope, which this read does not depend on (field-level sealing); then it
            // returns exactly the authentic field, never altered data.
            let one: Result<Value> = vault.get_fields(&ctx(), &k, &["code"]);
            if others.iter().any(|r| r.contains(&i)) {
                assert_eq!(one.unwrap(), json!({"code": "85354-9"}), "{why}");
            } else {
                assert!(is_integrity(&one), "{why}: get_fields(code) gave {one:?}");
            }
        }
    }
    storage.raw_put(&sk, &orig);
    let back: Value = vault.get(&ctx(), &k).unwrap();
    assert_eq!(back, record());
}

fn every_truncation_and_extension_of_a_record_value_fails_closed(
    storage: &dyn RawAccess,
    vault: &Vault,
) {
    let k = key("alice", "o1");
    let sk = put(storage, vault, &k, &record());
    let orig = raw_get(storage, &sk);
    for n in 0..orig.len() {
        storage.raw_put(&sk, &orig[..n]);
        let why = format!("truncated to {n} bytes");
        assert_reads_fail(vault, &k, &why);
        let one: Result<Value> = vault.get_fields(&ctx(), &k, &["code"]);
        assert!(is_integrity(&one), "{why}: {one:?}");
    }
    for extra in [&[0u8][..], &[0xff; 7], &orig[..]] {
        let mut t = orig.clone();
        t.extend_from_slice(extra);
        storage.raw_put(&sk, &t);
        assert_reads_fail(vault, &k, &format!("{} bytes appended", extra.len()));
    }
}

fn unknown_record_format_version_is_unsupported(storage: &dyn RawAccess, vault: &Vault) {
    let k = key("alice", "o1");
    let sk = put(storage, vault, &k, &record());
    let orig = raw_get(storage, &sk);
    // 1 is the CBOR record format of earlier builds, 2 the exact-JSON format with a
    // random nonce and the whole AAD per field: refused, not misread.
    for v in [0u8, 1, 2, 4, 0x7f, 0xff] {
        let mut t = orig.clone();
        t[0] = v;
        storage.raw_put(&sk, &t);
        for r in [
            vault.get::<Value>(&ctx(), &k).map(|_| ()),
            vault.get_fields::<Value>(&ctx(), &k, &["code"]).map(|_| ()),
            vault.records_of::<Value>(&ctx(), "alice", None).map(|_| ()),
        ] {
            assert!(
                matches!(r, Err(Error::UnsupportedVersion { version, .. }) if version == v),
                "version {v}: {r:?}"
            );
        }
    }
}

#[test]
fn record_values_moved_between_records_subjects_and_vaults_fail() {
    let (storage, vault) = memory_vault();
    let a1 = key("alice", "o1");
    let a2 = key("alice", "o2");
    let b1 = key("bob", "o1");
    let sk_a1 = put(&storage, &vault, &a1, &record());
    let sk_a2 = put(&storage, &vault, &a2, &other_record());
    let sk_b1 = put(&storage, &vault, &b1, &other_record());
    let v_a1 = raw_get(&storage, &sk_a1);
    let v_a2 = raw_get(&storage, &sk_a2);
    let v_b1 = raw_get(&storage, &sk_b1);

    // Two records of one subject, swapped.
    storage.raw_put(&sk_a1, &v_a2);
    storage.raw_put(&sk_a2, &v_a1);
    assert_reads_fail(&vault, &a1, "records swapped (a1)");
    assert_reads_fail(&vault, &a2, "records swapped (a2)");
    storage.raw_put(&sk_a1, &v_a1);
    storage.raw_put(&sk_a2, &v_a2);

    // Same collection and record id, another subject.
    storage.raw_put(&sk_a1, &v_b1);
    assert_reads_fail(&vault, &a1, "bob's record under alice");
    storage.raw_put(&sk_a1, &v_a1);
    storage.raw_put(&sk_b1, &v_a1);
    assert_reads_fail(&vault, &b1, "alice's record under bob");
    storage.raw_put(&sk_b1, &v_b1);

    // Another vault under the same raw root key (different vault_id): the same logical
    // record, its value moved over; then also its subject key entry.
    let (storage2, vault2) = memory_vault();
    assert_ne!(vault.vault_id(), vault2.vault_id());
    let sk2 = put(&storage2, &vault2, &a1, &record());
    assert_ne!(sk2, sk_a1, "storage keys are keyed per vault");
    storage.raw_put(&sk_a1, &raw_get(&storage2, &sk2));
    assert_reads_fail(&vault, &a1, "record from another vault");
    let (k1, _) = raw_with_prefix(&storage, b'k')
        .into_iter()
        .find(|(k, _)| k[1..17] == sk_a1[1..17])
        .unwrap();
    let (_, kv2) = raw_with_prefix(&storage2, b'k')
        .into_iter()
        .find(|(k, _)| k[1..17] == sk2[1..17])
        .unwrap();
    storage.raw_put(&k1, &kv2);
    drop(vault);
    let vault = reopen(&storage);
    assert_reads_fail(&vault, &a1, "record and key entry from another vault");

    // Untouched records of other subjects still read back.
    let b: Value = vault.get(&ctx(), &b1).unwrap();
    assert_eq!(b, other_record());
}

fn field_envelopes_swapped_or_moved_fail(storage: &dyn RawAccess, vault: &Vault) {
    let a1 = key("alice", "o1");
    let a2 = key("alice", "o2");
    let sk1 = put(storage, vault, &a1, &record());
    let sk2 = put(storage, vault, &a2, &other_record());
    let orig1 = raw_get(storage, &sk1);
    let l1 = RecordLayout::parse(&orig1).unwrap();
    let l2 = RecordLayout::parse(&raw_get(storage, &sk2)).unwrap();

    // Two fields of one record swapped ("code" <-> "note").
    let mut t = l1.clone();
    t.fields.swap(0, 1);
    storage.raw_put(&sk1, &t.encode());
    assert_reads_fail(vault, &a1, "fields swapped");
    for f in ["code", "note"] {
        let r: Result<Value> = vault.get_fields(&ctx(), &a1, &[f]);
        assert!(is_integrity(&r), "fields swapped, get_fields({f}): {r:?}");
    }

    // One field copied over another of the same record.
    let mut t = l1.clone();
    t.fields[3] = t.fields[2].clone();
    storage.raw_put(&sk1, &t.encode());
    let r: Result<Value> = vault.get_fields(&ctx(), &a1, &["value"]);
    assert!(is_integrity(&r), "field copied over another: {r:?}");

    // The same field name moved from another record of the subject.
    let mut t = l1.clone();
    t.fields[0] = l2.fields[0].clone();
    storage.raw_put(&sk1, &t.encode());
    assert_reads_fail(vault, &a1, "field from another record");
    let r: Result<Value> = vault.get_fields(&ctx(), &a1, &["code"]);
    assert!(is_integrity(&r), "field from another record: {r:?}");

    // The meta block moved from another record.
    let mut t = l1.clone();
    t.meta = l2.meta.clone();
    storage.raw_put(&sk1, &t.encode());
    assert_reads_fail(vault, &a1, "meta from another record");

    // Whole envelopes dropped (fewer fields than the meta names).
    let mut t = l1.clone();
    t.fields.pop();
    storage.raw_put(&sk1, &t.encode());
    assert_reads_fail(vault, &a1, "field envelope removed");

    storage.raw_put(&sk1, &orig1);
    let back: Value = vault.get(&ctx(), &a1).unwrap();
    assert_eq!(back, record());
}

#[test]
fn record_relabelled_to_another_held_key_version_fails() {
    // A tiny message bound makes every write rotate the subject's data key, so the
    // subject holds several versions.
    let storage = MemoryStorage::new();
    let opts = VaultOptions {
        dek_message_bound: 2,
        ..common::options()
    };
    let vault = Vault::create_in(Box::new(storage.clone()), raw_key(), opts).unwrap();
    let a1 = key("alice", "o1");
    let sk1 = put(&storage, &vault, &a1, &record());
    for i in 2..6 {
        vault
            .put(&ctx(), &key("alice", &format!("o{i}")), &other_record())
            .unwrap();
    }
    let orig = raw_get(&storage, &sk1);
    let l = RecordLayout::parse(&orig).unwrap();
    let versions: Vec<u32> = raw_with_prefix(&storage, b'r')
        .iter()
        .map(|(_, v)| RecordLayout::parse(v).unwrap().key_version)
        .collect();
    assert!(
        versions.iter().any(|v| *v != l.key_version),
        "records use several key versions: {versions:?}"
    );
    for v in versions.into_iter().filter(|v| *v != l.key_version) {
        let mut t = l.clone();
        t.key_version = v;
        storage.raw_put(&sk1, &t.encode());
        assert_reads_fail(&vault, &a1, &format!("relabelled to key version {v}"));
    }
    storage.raw_put(&sk1, &orig);
    let back: Value = vault.get(&ctx(), &a1).unwrap();
    assert_eq!(back, record());
}

#[test]
fn every_flipped_byte_of_a_subject_key_entry_fails_closed() {
    let (storage, vault) = memory_vault();
    let a1 = key("alice", "o1");
    vault.put(&ctx(), &a1, &record()).unwrap();
    drop(vault);
    let keys = raw_with_prefix(&storage, b'k');
    assert_eq!(keys.len(), 1);
    let (kk, orig) = keys.into_iter().next().unwrap();
    for i in 0..orig.len() {
        let mut t = orig.clone();
        t[i] ^= 0x01;
        storage.raw_put(&kk, &t);
        // A fresh handle: the unwrapped keys are not cached.
        let vault = reopen(&storage);
        let why = format!("subject entry byte {i}");
        let r: Result<Value> = vault.get(&ctx(), &a1);
        let w = vault.put(&ctx(), &key("alice", "o9"), &record());
        if i == 0 {
            assert!(
                matches!(
                    r,
                    Err(Error::UnsupportedVersion {
                        what: "subject entry",
                        ..
                    })
                ),
                "{why}: {r:?}"
            );
            assert!(
                matches!(w, Err(Error::UnsupportedVersion { .. })),
                "{why}: {w:?}"
            );
        } else {
            // Every other byte (generation, current version, key versions, usage
            // marks, wrapped keys, sealed subject id) is covered by an authentication
            // tag: a flip is corruption, never a silent change of key state.
            assert!(is_integrity(&r), "{why}: get gave {r:?}");
            assert!(is_integrity(&w), "{why}: put gave {w:?}");
            let s: Result<Vec<(RecordKey, Value)>> = vault.records_of(&ctx(), "alice", None);
            assert!(is_integrity(&s), "{why}: records_of gave {s:?}");
            let l: Result<Vec<String>> = vault.subjects(&ctx());
            assert!(is_integrity(&l), "{why}: subjects gave {l:?}");
        }
    }
    storage.raw_put(&kk, &orig);
    let vault = reopen(&storage);
    let back: Value = vault.get(&ctx(), &a1).unwrap();
    assert_eq!(back, record());
    assert!(
        vault
            .get::<Value>(&ctx(), &key("alice", "o9"))
            .is_err_and(|e| matches!(e, Error::NotFound)),
        "no write went through a tampered key entry"
    );
}

/// The log head left the record store with storage v2; what open trusts in its place is
/// the applied marker (`'a'`, docs/FORMAT.md "Applied marker", MACed) and the anchor.
/// Every flipped byte of the marker fails open.
#[test]
fn every_flipped_byte_of_the_applied_marker_fails_open() {
    let (storage, vault) = memory_vault();
    vault.put(&ctx(), &key("alice", "o1"), &record()).unwrap();
    drop(vault);
    let marker = raw_get(&storage, b"a");
    assert_eq!(marker.len(), 129, "docs/FORMAT.md: the marker is 129 bytes");
    for i in 0..marker.len() {
        let mut t = marker.clone();
        t[i] ^= 0x01;
        storage.raw_put(b"a", &t);
        let r = Vault::open_in(Box::new(storage.clone()), raw_key(), common::options());
        assert!(
            matches!(r, Err(Error::Integrity { .. })),
            "marker byte {i}: {:?}",
            r.map(|_| ())
        );
    }
    storage.raw_put(b"a", &marker);
    let vault = reopen(&storage);
    assert!(vault.verify(&ctx(), None).is_ok());
}

/// The anchor (docs/FORMAT.md "Anchor file") is a lower bound kept in two slots: a flipped
/// byte in one slot leaves the other in force (a legitimate state after a torn slot
/// write), so open succeeds and every read is unchanged; the same byte flipped in both
/// slots leaves no valid anchor and open fails.
#[test]
fn every_flipped_byte_of_the_anchor_is_harmless_or_fails_open() {
    use medvault::logstore::LogStore;
    let (storage, vault) = memory_vault();
    let k = key("alice", "o1");
    vault.put(&ctx(), &k, &record()).unwrap();
    drop(vault);
    let log = storage.memory_log();
    let slots = log.read_anchor().unwrap();
    let (s0, s1) = (slots[0].clone().unwrap(), slots[1].clone().unwrap());
    assert_eq!(
        (s0.len(), s1.len()),
        (193, 193),
        "docs/FORMAT.md: 193-byte slots"
    );
    for i in 0..s0.len() {
        for which in [0usize, 1, 2] {
            let (mut a, mut b) = (s0.clone(), s1.clone());
            if which != 1 {
                a[i] ^= 0x01;
            }
            if which != 0 {
                b[i] ^= 0x01;
            }
            log.set_anchor([Some(a), Some(b)]);
            let r = Vault::open_in(Box::new(storage.clone()), raw_key(), common::options());
            match (which, r) {
                (2, r) => assert!(
                    matches!(r, Err(Error::Integrity { .. })),
                    "anchor byte {i} in both slots: {:?}",
                    r.map(|_| ())
                ),
                (_, Ok(v)) => {
                    let got: serde_json::Value = v.get(&ctx(), &k).unwrap();
                    assert_eq!(got, record(), "anchor byte {i}, slot {which}");
                }
                (_, Err(e)) => panic!("anchor byte {i}, slot {which} alone: {e:?}"),
            }
        }
    }
    log.set_anchor([Some(s0), Some(s1)]);
    let vault = reopen(&storage);
    assert!(vault.verify(&ctx(), None).is_ok());
}

on_every_backend!(
    every_flipped_byte_of_a_record_value_fails_closed,
    every_truncation_and_extension_of_a_record_value_fails_closed,
    unknown_record_format_version_is_unsupported,
    field_envelopes_swapped_or_moved_fail,
);
