//! A caller can match the typed sub-kinds of [`Error`] (issue 11): each case below
//! provokes a real failure through the public API and matches the variant and the
//! sub-kind it must carry. The oracle is the tampering itself (which bytes were changed,
//! which entries were deleted), not the code that reports it.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use common::{RecordLayout, ctx, memory_vault, raw_get, raw_with_prefix};
use medvault::danger::RawAccess;
use medvault::{AccessContext, Denial, Error, LogFault, Purpose, RecordKey, Structure};
use serde_json::{Value, json};

#[test]
fn a_tampered_field_envelope_is_structure_field_envelope() {
    let (storage, v) = memory_vault();
    let k = RecordKey::new("p1", "Observation", "o1");
    v.put(&ctx(), &k, &json!({"code": "85354-9", "value": 120}))
        .unwrap();
    let records = raw_with_prefix(&storage, b'r');
    assert_eq!(records.len(), 1);
    let (rkey, _) = &records[0];
    let mut value = raw_get(&storage, rkey);
    let layout = RecordLayout::parse(&value).expect("a well-formed record value");
    // The last byte of the first field envelope: its GCM tag.
    let last = layout.field_ranges()[0].end - 1;
    value[last] ^= 0x01;
    storage.raw_put(rkey, &value);
    let got = v.get::<Value>(&ctx(), &k);
    assert!(
        matches!(
            got,
            Err(Error::Integrity {
                structure: Structure::FieldEnvelope,
                ..
            })
        ),
        "{got:?}"
    );
}

#[test]
fn a_truncated_log_is_log_tampered_truncated_tail_at_the_first_missing_entry() {
    let (storage, v) = memory_vault();
    for i in 0..4 {
        let k = RecordKey::new("p1", "Observation", format!("o{i}"));
        v.put(&ctx(), &k, &json!({"value": i})).unwrap();
    }
    let len = v.log_len();
    // Underneath the open vault (nothing appended since), cut the last two entries off
    // the access log (storage v2: the log store's frames, docs/FORMAT.md "Log segment
    // files"; the memory backend keeps them as a list).
    let log = storage.memory_log();
    let mut frames = log.frames();
    assert_eq!(frames.len() as u64, len);
    frames.truncate(frames.len() - 2);
    log.set_frames(frames);
    match v.verify(&ctx(), None) {
        Err(Error::LogTampered {
            seq,
            fault: LogFault::TruncatedTail,
        }) => assert_eq!(seq, len - 2),
        other => panic!(
            "expected LogTampered(TruncatedTail) at {}, got {other:?}",
            len - 2
        ),
    }
}

#[test]
fn break_the_glass_without_reason_is_denial_break_glass_without_reason() {
    let (_storage, v) = memory_vault();
    let k = RecordKey::new("p1", "Observation", "o1");
    v.put(&ctx(), &k, &json!({"value": 1})).unwrap();
    for reason in [None, Some("   ")] {
        let mut er = AccessContext::new("er-doc-7", Purpose::Emergency);
        if let Some(r) = reason {
            er = er.with_reason(r);
        }
        let got = v.get::<Value>(&er, &k);
        assert!(
            matches!(
                got,
                Err(Error::AccessDenied(Denial::BreakGlassWithoutReason))
            ),
            "reason {reason:?}: {got:?}"
        );
    }
    // With a reason, the same read succeeds.
    let er = AccessContext::new("er-doc-7", Purpose::Emergency).with_reason("unconscious patient");
    assert_eq!(v.get::<Value>(&er, &k).unwrap(), json!({"value": 1}));
}
