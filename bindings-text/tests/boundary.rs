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

#[test]
fn the_access_context_carries_roles_and_purpose_code() {
    let ctx = text::access_context(
        "dr-a",
        "TREAT",
        Some("ward round"),
        &["care", "research"],
        Some("PUBHLTH"),
    )
    .unwrap();
    // The expected context typed out with the core's builder.
    let want = AccessContext::new("dr-a", Purpose::Care)
        .with_reason("ward round")
        .with_role("care")
        .with_role("research")
        .with_purpose_code("PUBHLTH");
    assert_eq!(ctx, want);
    let bare = text::access_context("n", "billing", None, &[], None).unwrap();
    assert_eq!(bare, AccessContext::new("n", Purpose::Billing));
    assert_eq!(
        text::access_context("n", "curiosity", None, &[], None)
            .unwrap_err()
            .kind(),
        "invalid_input"
    );
}

#[test]
fn a_policy_denial_names_its_rule_and_an_erased_subject_its_kind() {
    let (_d, v) = vault();
    let admin =
        text::access_context("admin", "administration", None, &["administration"], None).unwrap();
    assert_eq!(
        text::set_policy(&v, &admin, &text::default_policy_text()).unwrap(),
        1
    );
    let dr = text::access_context("dr", "care", None, &["care"], None).unwrap();
    let key = RecordKey::new("p-1", "Patient", "p-1");
    text::put_text(&v, &dr, &key, r#"{"id":"p-1","name":"A"}"#).unwrap();
    // Research reads nothing directly (docs/POLICY.md: no rule for HRESCH).
    let research = text::access_context("r", "research", None, &["research"], None).unwrap();
    let e = text::get_text(&v, &research, &key, None).unwrap_err();
    assert_eq!(
        (e.kind(), e.rule()),
        ("access_denied", Some("deny-by-default"))
    );
    let no_role = text::access_context("n", "care", None, &[], None).unwrap();
    let e = text::get_text(&v, &no_role, &key, None).unwrap_err();
    assert_eq!(e.rule(), Some("no-role"));
    // Not a policy denial: no rule.
    let e = text::get_text(&v, &dr, &RecordKey::new("p-1", "Patient", "x"), None).unwrap_err();
    assert_eq!((e.kind(), e.rule()), ("not_found", None));
    // A write of an erased subject keeps its own kind.
    let dpo = text::access_context("dpo", "patient-request", None, &["dpo"], None).unwrap();
    assert_eq!(v.erase_subject(&dpo, "p-1").unwrap(), 1);
    let e = text::put_text(&v, &dr, &key, r#"{"id":"p-1"}"#).unwrap_err();
    assert_eq!((e.kind(), e.rule()), ("subject_erased", None));
    assert!(
        text::set_policy(&v, &admin, "{not json")
            .unwrap_err()
            .message()
            .starts_with("invalid input")
    );
}
