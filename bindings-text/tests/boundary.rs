//! The shared text boundary against literal oracles: JSON texts and error kinds written
//! out here, and records read back through the core's own typed API (`Vault::get`), not
//! through this crate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is the report

use medvault::{AccessContext, Action, KeySource, Purpose, RecordKey, Vault};
use medvault_bindings_text as text;

fn vault() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create(
        dir.path().join("v"),
        KeySource::raw([9; 32]),
        medvault::KdfParams::default(),
    )
    .unwrap();
    (dir, v)
}

#[test]
fn a_record_goes_in_and_comes_back_as_the_same_text() {
    let (_d, v) = vault();
    let ctx = AccessContext::new("nurse-1", Purpose::Care);
    let key = RecordKey::new("p-1", "Observation", "o-1");
    let written = r#"{"value":1.50,"code":"x","who":"Zo\u00eb"}"#;
    text::put_text(&v, &ctx, &key, written).unwrap();
    // Exact text back: tokens and member order as written.
    assert_eq!(*text::get_text(&v, &ctx, &key, None).unwrap(), written);
    assert_eq!(
        *text::get_text(&v, &ctx, &key, Some(&["code", "absent"])).unwrap(),
        r#"{"code":"x"}"#
    );
    // The core's typed read as the independent path.
    let typed: serde_json::Value = v.get(&ctx, &key).unwrap();
    assert_eq!(typed["who"], "Zoë");
    let list = v.records_of_json(&ctx, "p-1", None).unwrap();
    assert_eq!(
        *text::list_text(&list).unwrap(),
        format!(
            r#"[{{"subject":"p-1","collection":"Observation","record_id":"o-1","value":{written}}}]"#
        )
    );
}

#[test]
fn malformed_input_is_invalid_input_and_names_no_content() {
    let (_d, v) = vault();
    let ctx = AccessContext::new("nurse-1", Purpose::Care);
    let key = RecordKey::new("p-1", "Observation", "o-1");
    let e = text::put_text(&v, &ctx, &key, r#"{"secret-value": "#).unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    assert!(e.message().starts_with("invalid input: the record"), "{e}");
    assert!(!e.message().contains("secret"), "{e}");

    let e = text::log_query(Some(r#"{"actor": "a", "colour": "red"}"#)).unwrap_err();
    assert_eq!(e.kind(), "invalid_input");
    let e = text::log_query(Some("{")).unwrap_err();
    assert!(e.message().contains("line 1, column 1"), "{e}");
    assert_eq!(
        text::checkpoint(Some("mvcp1:zz")).unwrap_err().kind(),
        "invalid_input"
    );
    // A vault error keeps the core's kind name.
    let missing = RecordKey::new("p-1", "Observation", "nope");
    assert_eq!(
        text::get_text(&v, &ctx, &missing, None).unwrap_err().kind(),
        "not_found"
    );
}

#[test]
fn a_log_query_selects_what_it_names() {
    let q = text::log_query(Some(
        r#"{"actor":"a","purpose":"care","action":"read","since_ms":5}"#,
    ))
    .unwrap();
    assert_eq!(q.actor.as_deref(), Some("a"));
    assert_eq!(q.purpose, Some(Purpose::Care));
    assert_eq!(q.action, Some(Action::Read));
    assert_eq!((q.since_ms, q.until_ms, q.subject), (Some(5), None, None));
}
