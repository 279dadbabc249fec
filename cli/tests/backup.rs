//! `medvault backup`, `restore`, `erasure-ledger` and `audit prune|retention|hold`
//! (issue 19): a backup restores elsewhere and verifies; an erasure after the backup is
//! re-applied from the ledger; a restore without ledger is refused unless told; a legal
//! hold is listed and stops a prune. Oracles: the record the test put, the exit codes,
//! the access log's JSON lines.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[allow(dead_code)] // the runner's helpers this file does not use
mod support;

use serde_json::Value;
use support::{Medvault, code, s, stderr};

const P1: &str = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Gone"}]}"#;
const P2: &str = r#"{"resourceType":"Patient","id":"p2","name":[{"family":"Stays"}]}"#;

#[test]
fn backup_restore_with_the_ledger_and_retention_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    let v = s(&vault);
    let sets = tmp.path().join("sets");
    let ledger = tmp.path().join("erasures.ledger");
    let mv = Medvault::new();
    mv.init_fast(&vault);
    for (id, body) in [("p1", P1), ("p2", P2)] {
        let out = mv.run_with_stdin(&["put", v, id, "Patient", id], body.as_bytes());
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let printed = mv.ok(&["backup", v, s(&sets), "--ledger", s(&ledger)]);
    let dir = printed
        .lines()
        .find_map(|l| l.strip_prefix("backup "))
        .unwrap()
        .to_owned();
    assert!(printed.contains("checkpoint mvcp1:"), "{printed}");
    mv.ok(&["erase", v, "p1", "--yes"]);
    assert!(
        mv.ok(&["erasure-ledger", v, s(&ledger)])
            .starts_with("1 erasures added")
    );

    // Without --ledger: refused, nothing written.
    let dest = tmp.path().join("restored");
    let out = mv.run(&["restore", &dir, s(&dest)]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("ledger"), "{}", stderr(&out));
    assert!(!dest.exists());
    let done = mv.ok(&["restore", &dir, s(&dest), "--ledger", s(&ledger)]);
    assert!(done.contains("re-applied from the ledger: 1"), "{done}");
    let d = s(&dest);
    mv.ok(&["audit", "verify", d]);
    let out = mv.run(&["get", d, "p1", "Patient", "p1"]);
    assert_ne!(code(&out), 0, "the erased patient does not come back");
    let p2: Value = serde_json::from_str(&mv.ok(&["get", d, "p2", "Patient", "p2"])).unwrap();
    assert_eq!(p2["name"][0]["family"], "Stays");
    let log = mv.ok(&["audit", "log", d, "--action", "restore", "--json"]);
    assert!(log.contains("restored from backup"), "{log}");

    // Retention and legal holds.
    assert!(mv.ok(&["audit", "retention", v]).contains("365 days"));
    assert!(
        mv.ok(&["audit", "retention", v, "--days", "30"])
            .contains("30 days")
    );
    let held = Medvault::new().env("MEDVAULT_REASON", Some("litigation"));
    held.ok(&["audit", "hold", "set", v, "case-1"]);
    assert!(mv.ok(&["audit", "hold", "list", v]).starts_with("case-1\t"));
    assert!(
        mv.ok(&["audit", "prune", v])
            .contains("legal hold in force (case-1)")
    );
    held.ok(&["audit", "hold", "lift", v, "case-1"]);
    assert!(mv.ok(&["audit", "prune", v]).contains("pruned 0 entries"));
    let log = mv.ok(&["audit", "log", v, "--action", "legal_hold", "--json"]);
    assert_eq!(log.lines().count(), 2, "{log}");
}
