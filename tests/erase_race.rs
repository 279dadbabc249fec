//! Guards the erase/write race: a writer that read a subject's key entry from storage just
//! before an erasure must not cache those destroyed keys and commit a record under them
//! (an orphan record that no key opens). After any interleaving, every stored record opens.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use medvault::danger::RawAccess;
use std::sync::Arc;

use medvault::storage::MemoryStorage;
use medvault::{AccessContext, Error, KeySource, Purpose, RecordKey, Vault, VaultOptions};
use serde_json::{Value, json};

#[test]
fn records_written_around_erasures_always_open() {
    for round in 0..20 {
        let m = MemoryStorage::new();
        let opts = VaultOptions {
            key_cache_bytes: 0, // the minimum (32 KiB, about 14 subjects): force cache misses, so loads go to storage
            ..VaultOptions::default()
        };
        let v = Arc::new(
            Vault::create_in(Box::new(m.clone()), KeySource::raw([round; 32]), opts).unwrap(),
        );
        let ctx = AccessContext::new("race", Purpose::Care);
        let writers: Vec<_> = (0..3)
            .map(|t| {
                let (v, ctx) = (v.clone(), ctx.clone());
                std::thread::spawn(move || {
                    for i in 0..300 {
                        // Touch many subjects so the target subject keeps leaving the cache.
                        let s = if i % 3 == 0 {
                            "target".to_string()
                        } else {
                            format!("other-{t}-{i}")
                        };
                        let k = RecordKey::new(s, "Observation", format!("o{t}-{i}"));
                        match v.put(&ctx, &k, &json!({"i": i})) {
                            // Refused once the target is erased (erasure memory).
                            Ok(()) | Err(Error::NotFound | Error::SubjectErased) => {}
                            Err(e) => panic!("put failed: {e}"),
                        }
                    }
                })
            })
            .collect();
        for _ in 0..30 {
            match v.erase_subject(&ctx, "target") {
                Ok(_) | Err(Error::NotFound) => {}
                Err(e) => panic!("erase failed: {e}"),
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        // Every record of the target subject that exists must open.
        let recs: Vec<(RecordKey, Value)> = v.records_of(&ctx, "target", None).unwrap();
        let stored = m.dump().iter().filter(|(k, _)| k[0] == b'r').count();
        let total: usize = v
            .subjects(&ctx)
            .unwrap()
            .iter()
            .map(|s| v.records_of::<Value>(&ctx, s, None).unwrap().len())
            .sum();
        assert_eq!(
            total,
            stored,
            "round {round}: {} orphan records",
            stored - total
        );
        drop(recs);
    }
}
