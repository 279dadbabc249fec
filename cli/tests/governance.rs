//! The governance commands end to end: `policy default|set|show`, roles on the command
//! line, a denial's exit code, `audit review` (list and close), `audit report`,
//! `audit alerts`, `audit export --format fhir`.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[allow(dead_code)] // the shared runner has helpers this file does not use
mod support;

use serde_json::Value;
use support::Medvault;

#[test]
fn policy_roles_review_report_alerts_and_fhir_export() {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v");
    let vs = v.to_str().unwrap();
    let admin = Medvault::new()
        .env("MEDVAULT_ACTOR", Some("admin-1"))
        .env("MEDVAULT_PURPOSE", Some("administration"))
        .env("MEDVAULT_ROLES", Some("administration"));
    admin.init_fast(&v);
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, admin.ok(&["policy", "default"])).unwrap();
    let out = admin.ok(&["policy", "set", vs, policy.to_str().unwrap()]);
    assert!(out.contains("version 1"), "{out}");
    assert!(admin.ok(&["policy", "show", vs]).starts_with("{"));

    let as_role = |actor: &str, purpose: &str, role: &str| {
        Medvault::new()
            .env("MEDVAULT_ACTOR", Some(actor))
            .env("MEDVAULT_PURPOSE", Some(purpose))
            .env("MEDVAULT_ROLES", Some(role))
    };
    let rec = br#"{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"}],"identifier":[{"value":"M1"}]}"#;
    let put = as_role("etl", "maintenance", "integration")
        .run_with_stdin(&["put", vs, "p1", "Patient", "p1"], rec);
    assert_eq!(
        put.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    // Billing sees the identifiers only.
    let got: Value = serde_json::from_str(
        &as_role("clerk", "billing", "billing").ok(&["get", vs, "p1", "Patient", "p1"]),
    )
    .unwrap();
    assert!(got.get("name").is_none() && got.get("identifier").is_some());
    // Research is refused: the access-denied exit code, the rule on stderr.
    let denied = as_role("res", "research", "research").run(&["get", vs, "p1", "Patient", "p1"]);
    // docs/CLI.md, "Exit codes": 6 is access denied.
    assert_eq!(denied.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("deny-by-default"));
    assert!(denied.stdout.is_empty(), "a denied get prints nothing");
    // A field-level refusal: billing asks for a field its rule does not grant.
    let denied = as_role("clerk", "billing", "billing")
        .run(&["get", vs, "p1", "Patient", "p1", "--fields", "name"]);
    assert_eq!(denied.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("field-not-granted"));
    // Break the glass, then review.
    as_role("dr-er", "emergency", "care")
        .env("MEDVAULT_REASON", Some("code blue"))
        .ok(&["get", vs, "p1", "Patient", "p1"]);
    let queue = admin.ok(&["audit", "review", vs, "--json"]);
    let items: Vec<Value> = queue
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["actor"], "dr-er");
    assert_eq!(items[0]["reason"], "code blue");
    let seq = items[0]["seq"].as_u64().unwrap().to_string();
    admin.ok(&[
        "audit",
        "review",
        vs,
        "--close",
        &seq,
        "--verdict",
        "justified",
        "--comment",
        "ok",
    ]);
    assert!(admin.ok(&["audit", "review", vs]).contains("0 pending"));
    // The report, as text and FHIR.
    let text = admin.ok(&["audit", "report", vs, "p1"]);
    for who in ["etl", "clerk", "res", "dr-er"] {
        assert!(text.contains(who), "{who} missing: {text}");
    }
    let bundle: Value =
        serde_json::from_str(&admin.ok(&["audit", "report", vs, "p1", "--format", "fhir"]))
            .unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    // The write, billing's read, research's denial, billing's field-level denial, the
    // emergency read, and the text report just made (a logged disclosure).
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 6);
    // Alerts include the emergency access.
    let alerts = admin.ok(&["audit", "alerts", vs, "--json"]);
    assert!(alerts.contains("emergency_access"), "{alerts}");
    // FHIR export: one AuditEvent per patient access, reports included.
    let export = admin.ok(&["audit", "export", vs, "--format", "fhir"]);
    let events: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= 5);
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent"));
    // Care may not change the policy.
    let refused =
        as_role("dr-a", "care", "care").run(&["policy", "set", vs, policy.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(6));
}
