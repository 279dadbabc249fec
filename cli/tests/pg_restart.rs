//! Guards `medvault import` on a `postgres://` URL across a server restart (issue 17,
//! acceptance 3): `pg_ctl -m fast restart` mid-import makes the import fail cleanly (an
//! error and exit status 1, no panic) or carry on; every batch it reported committed is
//! there, nothing half-applied; re-running the import resumes (what is there is left
//! unchanged, the rest created), and the vault verifies and exports the input. Alone in
//! its file: the restart cuts every session of the server (`MEDVAULT_TEST_PG`).

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/common/mod.rs"]
mod common;
#[allow(dead_code)] // the runner's helpers this file does not use
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::fhir_data_dir;
use serde_json::Value;
use support::{FAST_KDF, Medvault, resource_values as values};

#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn a_server_restart_mid_import_fails_cleanly_and_a_rerun_resumes() {
    let Some(srv) = medvault_postgres::testdb::server().unwrap() else {
        return;
    };
    let t = srv.fresh();
    let url = srv.url_of(&t);
    let m = Medvault::new();
    let mut init = vec!["init", url.as_str()];
    init.extend_from_slice(&FAST_KDF);
    m.ok(&init);
    let dir = fhir_data_dir().join("13-patients");
    let dir = dir.to_str().unwrap();
    let import = ["import", url.as_str(), dir, "--batch", "10", "--json"];

    let child = m.command(&import).spawn().unwrap();
    // Restart once a few dozen batches are in (a batch is 10 entries and more).
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.log_rows(&t).unwrap().0 < 400 {
        assert!(Instant::now() < deadline, "the import did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.restart().unwrap();
    let first = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Records the import said it committed before the error (all of them when it
    // carried on to the end).
    let committed: usize = match first.status.code() {
        Some(0) => {
            let report: Value = serde_json::from_slice(&first.stdout).unwrap();
            report["records"].as_u64().unwrap() as usize
        }
        Some(1) => {
            // "medvault: error: storage: postgres: ... (N records committed before it)"
            let n = stderr
                .rsplit_once('(')
                .and_then(|(_, r)| r.split_once(" records committed before it"))
                .map(|(n, _)| n.parse().unwrap());
            assert!(
                stderr.starts_with("medvault: error: storage: "),
                "not a clean storage error: {stderr}"
            );
            n.unwrap_or_else(|| panic!("no committed count: {stderr}"))
        }
        other => panic!("import exited with {other:?}: {stderr}"),
    };
    let export = ["export", url.as_str()];
    let before = values(&m.ok(&export));
    let mut input = BTreeSet::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "ndjson") {
            input.extend(values(&std::fs::read_to_string(p).unwrap()));
        }
    }
    // Nothing half-applied or altered: every record exported is an input line, and
    // batches of 10 went in whole (so at least what was reported committed is there).
    assert!(before.is_subset(&input), "records that are not input lines");
    assert!(
        before.len() >= committed,
        "{} records after the restart, {committed} reported committed",
        before.len()
    );
    assert!(
        before.len() < input.len(),
        "the restart came after the import finished ({} records)",
        before.len()
    );

    // The re-run resumes: what is there is unchanged, the rest is created.
    let again: Value = serde_json::from_str(&m.ok(&import)).unwrap();
    assert_eq!(
        again["unchanged"].as_u64(),
        Some(before.len() as u64),
        "{again}"
    );
    assert_eq!(
        again["created"].as_u64(),
        Some((input.len() - before.len()) as u64),
        "{again}"
    );
    assert_eq!(again["replaced"].as_u64(), Some(0), "{again}");
    assert!(
        m.ok(&["audit", "verify", url.as_str()])
            .contains("access log intact")
    );
    let after = values(&m.ok(&export));
    assert_eq!(after, input);
    let (rows, end) = srv.log_rows(&t).unwrap();
    assert_eq!(rows, end, "the log table has a gap");
    eprintln!(
        "import cut by the restart: exit {:?}, {committed} reported committed, {} present; the re-run left {} unchanged and created {}",
        first.status.code(),
        before.len(),
        again["unchanged"],
        again["created"]
    );
    srv.drop_vault(&t).unwrap();
}
