//! `medvault erase` is remembered and `medvault readmit` lifts it (issue 21: "an import
//! or put for an erased subject is refused with a clear message unless the caller says
//! the patient has returned"): a put and an import of the erased patient are refused
//! (the import counts them and goes on), readmit needs --reason, and the access log
//! names who re-admitted and why.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[allow(dead_code)] // the runner's helpers this file does not use
mod support;

use std::path::Path;

use serde_json::Value;
use support::Medvault;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const PATIENT: &str = r#"{"resourceType":"Patient","id":"p-erased","name":[{"family":"Gone"}]}"#;

#[test]
fn erase_is_remembered_and_readmit_lifts_it_with_a_logged_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    let v = s(&vault);
    let mv = Medvault::new();
    mv.init_fast(&vault);
    let put = ["put", v, "p-erased", "Patient", "p-erased"];
    let out = mv.run_with_stdin(&put, PATIENT.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    let erased = mv.ok(&["erase", v, "p-erased", "--yes"]);
    assert!(erased.contains("medvault readmit"), "{erased}");

    // A put of the erased patient is refused, saying why.
    let out = mv.run_with_stdin(&put, PATIENT.as_bytes());
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("erased") && err.contains("readmit"), "{err}");

    // An import of a file holding the patient and another one: the erased patient's
    // record is refused and counted, the other imported.
    let file = tmp.path().join("in.ndjson");
    std::fs::write(
        &file,
        format!(
            "{PATIENT}\n{}\n",
            r#"{"resourceType":"Patient","id":"p-other"}"#
        ),
    )
    .unwrap();
    let json: Value = serde_json::from_str(&mv.ok(&["import", v, s(&file), "--json"])).unwrap();
    assert_eq!(json["refused_erased"], 1, "{json}");
    assert_eq!(json["created"], 1, "{json}");
    let printed = mv.ok(&["import", v, s(&file)]);
    assert!(printed.contains("refused 1 record"), "{printed}");
    let subjects = mv.ok(&["subjects", v]);
    assert_eq!(subjects.lines().collect::<Vec<_>>(), vec!["p-other"]);

    // readmit needs a reason (usage error, nothing changed).
    let out = mv.run(&["readmit", v, "p-erased"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", out);
    // A subject never erased: not found.
    let out = mv
        .clone_with_reason("returned")
        .run(&["readmit", v, "p-never"]);
    assert_eq!(out.status.code(), Some(5));

    let reason = "patient returned; identity re-verified at the desk";
    let done = mv.clone_with_reason(reason).ok(&["readmit", v, "p-erased"]);
    assert!(done.contains("re-admitted"), "{done}");
    let out = mv.run_with_stdin(&put, PATIENT.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = mv.ok(&["audit", "log", v, "--action", "readmit", "--json"]);
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok: Vec<&Value> = entries.iter().filter(|e| e["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 1, "{log}");
    assert_eq!(ok[0]["actor"], "test-operator");
    assert_eq!(ok[0]["reason"], reason);
}

trait WithReason {
    fn clone_with_reason(&self, reason: &str) -> Medvault;
}

impl WithReason for Medvault {
    fn clone_with_reason(&self, reason: &str) -> Medvault {
        Medvault::new().env("MEDVAULT_REASON", Some(reason))
    }
}
