//! The `medvault` command on a `postgres://` URL (issue 17: init, import, export, verify
//! and stats on the PostgreSQL backend), against the server of `MEDVAULT_TEST_PG`. The
//! oracle is the input: the NDJSON lines imported are the lines exported, as JSON values.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // the runner's helpers this file does not use
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use support::resource_values as values;

fn data() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let d = match (
        std::env::var_os("MEDVAULT_FHIR_DATA"),
        std::env::var_os("MEDVAULT_SHARED_DATA"),
    ) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(s)) => PathBuf::from(s).join("fhir-r4-ndjson"),
        (None, None) => root.join("shared/data/fhir-r4-ndjson"),
    };
    d.join("1144-patients")
}

fn medvault(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medvault"))
        .args(args)
        .env(
            "MEDVAULT_PASSPHRASE",
            "a passphrase for the postgres test vault",
        )
        .env_remove("MEDVAULT_KEY_FILE")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = medvault(args);
    assert!(
        out.status.success(),
        "medvault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn init_import_export_verify_on_a_postgres_url() {
    let Some(srv) = medvault_postgres::testdb::server().unwrap() else {
        return;
    };
    let t = srv.fresh();
    let url = srv.url_of(&t);
    let who = ["--actor", "ops.import", "--purpose", "maintenance"];
    let mut init = vec![
        "init",
        url.as_str(),
        "--kdf-memory",
        "8",
        "--allow-weak-passphrase",
    ];
    init.extend(who);
    assert!(ok(&init).contains("created vault postgres://"));
    let dir = data();
    let mut import = vec!["import", url.as_str(), dir.to_str().unwrap()];
    import.extend(who);
    ok(&import);
    let mut verify = vec!["audit", "verify", url.as_str()];
    verify.extend(who);
    assert!(ok(&verify).contains("access log intact"));
    let mut export = vec!["export", url.as_str()];
    export.extend(who);
    let exported = values(&ok(&export));
    let mut input = BTreeSet::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "ndjson") {
            input.extend(values(&std::fs::read_to_string(p).unwrap()));
        }
    }
    assert_eq!(input.len(), 1144);
    assert_eq!(exported, input);
    // A second init on the same URL: "already exists" (exit 9).
    assert_eq!(medvault(&init).status.code(), Some(9));
    srv.drop_vault(&t).unwrap();
}

/// `medvault demo --postgres URL`: the whole demo with its vault on the server; every
/// check of its report passes (it exits non-zero otherwise), among them the plaintext
/// scan of the vault's table rows against the generated names and identifiers.
#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn the_demo_runs_on_postgres() {
    let Some(srv) = medvault_postgres::testdb::server().unwrap() else {
        return;
    };
    let t = srv.fresh();
    let url = srv.url_of(&t);
    let report = ok(&["demo", "--patients", "8", "--postgres", url.as_str()]);
    assert!(report.contains("storage    PostgreSQL"), "{report}");
    assert!(report.contains("plaintext scan: 0 hits"), "{report}");
    assert!(
        report.contains("old passphrase refused after rotation: yes"),
        "{report}"
    );
    srv.drop_vault(&t).unwrap();
}
