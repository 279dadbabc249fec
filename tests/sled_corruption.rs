//! Guards the classification of corruption found by sled's own checksums (a bit flipped
//! raw in its files): it is an integrity failure (`Error::Integrity`), like a failed AEAD
//! tag, not a generic storage error, so operators and the CLI (exit code 4) see tampering.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

use medvault::storage::{SledOptions, SledStorage, Storage};
use medvault::{AccessContext, Error, KeySource, Purpose, RecordKey, Vault};
use serde_json::{Value, json};

#[test]
fn a_raw_bit_flip_in_sled_files_is_an_integrity_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let ctx = AccessContext::new("tester", Purpose::Maintenance);
    let key = RecordKey::new("p1", "Observation", "o1");
    {
        let v = Vault::create(
            &dir,
            KeySource::passphrase("pw"),
            medvault::danger::insecure_kdf_params(),
        )
        .unwrap();
        let note = "x".repeat(400);
        v.put(&ctx, &key, &json!({"status": "final", "note": note}))
            .unwrap();
        v.sync().unwrap();
    }
    // The stored value's bytes, to find them in sled's files.
    let value = {
        let st = SledStorage::open(&dir, &SledOptions::default()).unwrap();
        let (_, v) = st.scan(b"r", Some(b"s")).next().unwrap().unwrap();
        v
    };
    let mid = value.len() / 2;
    let needle = &value[mid - 32..mid + 32];
    let mut flipped = 0;
    let mut stack = vec![dir.join("db")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let mut bytes = std::fs::read(&p).unwrap();
            let hits: Vec<usize> = (0..bytes.len().saturating_sub(63))
                .filter(|&i| &bytes[i..i + 64] == needle)
                .collect();
            for i in &hits {
                bytes[i + 32] ^= 0x01;
            }
            if !hits.is_empty() {
                flipped += hits.len();
                std::fs::write(&p, bytes).unwrap();
            }
        }
    }
    assert!(
        flipped > 0,
        "the record's bytes were not found in sled's files"
    );

    let r = Vault::open(&dir, KeySource::passphrase("pw")).and_then(|v| v.get::<Value>(&ctx, &key));
    assert!(
        matches!(r, Err(Error::Integrity { .. })),
        "expected an integrity failure, got {:?}",
        r.map(|_| "a value")
    );
}
