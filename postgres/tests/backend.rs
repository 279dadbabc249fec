//! The PostgreSQL backend against a real server (`MEDVAULT_TEST_PG`; skipped with a
//! message without it, failing under `CI=true`): a round trip across reopen, the "in
//! use" lock, a DBA's UPDATE, DELETE and re-INSERT of rows caught by verify or open (the
//! tampering is plain SQL written here, not the backend's code), and a byte scan of a
//! `pg_dump` after importing the 1144-patient data set (issue 17, acceptance 6).

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use medvault::{AccessContext, Error, KeySource, Purpose, RecordKey, Vault, VaultOptions};
use medvault_postgres::testdb::{TestServer, server};
use medvault_postgres::{PgOptions, PgStorage, PgTarget};
use serde_json::{Value, json};

fn options() -> VaultOptions {
    VaultOptions {
        kdf: medvault::danger::insecure_kdf_params(),
        ..VaultOptions::default()
    }
}

fn key() -> KeySource {
    KeySource::raw([0x42; 32])
}

fn ctx() -> AccessContext {
    AccessContext::new("test-clinician", Purpose::Care)
}

fn rk(subject: &str, id: &str) -> RecordKey {
    RecordKey::new(subject, "Observation", id)
}

/// A vault on a fresh schema with three records of two subjects, one read, and a
/// second version of `alice/1`; returns the vault, its target, and the first value of
/// alice/1's row as stored before the second write.
fn fixture(srv: &TestServer) -> (Vault, PgTarget, Vec<u8>, Vec<u8>) {
    let t = srv.fresh();
    let v = Vault::create_in(Box::new(srv.create(&t).unwrap()), key(), options()).unwrap();
    v.put(&ctx(), &rk("alice", "1"), &json!({"code": "a", "v": 1}))
        .unwrap();
    let (sk, old) = only_new_row(srv, &t, &[]);
    v.put(&ctx(), &rk("alice", "2"), &json!({"code": "b"}))
        .unwrap();
    v.put(&ctx(), &rk("bob", "1"), &json!({"code": "c"}))
        .unwrap();
    let _: Value = v.get(&ctx(), &rk("bob", "1")).unwrap();
    v.put(&ctx(), &rk("alice", "1"), &json!({"code": "a", "v": 2}))
        .unwrap();
    v.sync().unwrap();
    v.verify(&ctx(), None).unwrap();
    (v, t, sk, old)
}

/// The `(key, value)` rows of `records` under prefix `r`, by plain SQL.
fn record_rows(srv: &TestServer, t: &PgTarget) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = srv.client().unwrap();
    c.query(
        &format!(
            "SELECT key, value FROM \"{}\".records WHERE substring(key from 1 for 1) = 'r' ORDER BY key",
            t.vault
        ),
        &[],
    )
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn only_new_row(
    srv: &TestServer,
    t: &PgTarget,
    before: &[(Vec<u8>, Vec<u8>)],
) -> (Vec<u8>, Vec<u8>) {
    let fresh: Vec<_> = record_rows(srv, t)
        .into_iter()
        .filter(|(k, _)| !before.iter().any(|(b, _)| b == k))
        .collect();
    assert_eq!(fresh.len(), 1);
    fresh.into_iter().next().unwrap()
}

fn sql(srv: &TestServer, t: &PgTarget, statement: &str) -> u64 {
    let s = statement.replace("$S", &format!("\"{}\"", t.vault));
    srv.client().unwrap().execute(s.as_str(), &[]).unwrap()
}

fn assert_caught(v: &Vault, srv: &TestServer, t: &PgTarget, what: &str) {
    let r = v.verify(&ctx(), None);
    if r.is_ok() {
        // Nothing the handle saw: the reopen must refuse then.
        let reopened = PgStorage::open(t, &srv.options())
            .and_then(|s| Vault::open_in(Box::new(s), key(), options()));
        panic!("{what}: verify passed (a reopen gave {:?})", reopened.err());
    }
    assert!(
        matches!(r, Err(Error::Integrity { .. } | Error::LogTampered { .. })),
        "{what}: {r:?}"
    );
}

fn with_server(f: impl FnOnce(&TestServer)) {
    if let Some(srv) = server().unwrap() {
        f(&srv);
    }
}

#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn records_survive_a_reopen_and_verify() {
    with_server(|srv| {
        let (v, t, _, _) = fixture(srv);
        drop(v);
        let v = Vault::open_in(Box::new(srv.open(&t).unwrap()), key(), options()).unwrap();
        let got: Value = v.get(&ctx(), &rk("alice", "1")).unwrap();
        assert_eq!(got, json!({"code": "a", "v": 2}));
        assert_eq!(
            v.records_of::<Value>(&ctx(), "alice", None).unwrap().len(),
            2
        );
        v.verify(&ctx(), None).unwrap();
        // The log rows are gapless from 0 and as many as the vault's entries.
        let mut c = srv.client().unwrap();
        let row = c
            .query_one(
                &format!(
                    "SELECT count(*), min(seq), max(seq) FROM \"{}\".log",
                    t.vault
                ),
                &[],
            )
            .unwrap();
        let (n, lo, hi): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!((lo, hi), (0, n - 1));
        if srv.partitions() > 0 {
            // Every partition is a table of its own; the rows spread over more than one.
            let used: i64 = c
                .query_one(
                    &format!(
                        "SELECT count(DISTINCT tableoid) FROM \"{}\".records",
                        t.vault
                    ),
                    &[],
                )
                .unwrap()
                .get(0);
            assert!(used > 1, "rows in {used} partition(s)");
        }
        drop(v);
        srv.drop_vault(&t).unwrap();
    });
}

#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn a_second_handle_finds_the_vault_in_use() {
    with_server(|srv| {
        let (v, t, _, _) = fixture(srv);
        let short = PgOptions {
            lock_wait: std::time::Duration::from_millis(200),
            ..srv.options()
        };
        let e = PgStorage::open(&t, &short).unwrap_err();
        assert!(e.to_string().contains("the vault is in use"), "{e}");
        drop(v);
        // Released with the handle.
        PgStorage::open(&t, &short).unwrap();
        srv.drop_vault(&t).unwrap();
    });
}

#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn a_missing_vault_is_not_found() {
    with_server(|srv| {
        let t = srv.fresh();
        assert!(matches!(
            PgStorage::open(&t, &srv.options()),
            Err(Error::NotFound)
        ));
    });
}

#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn a_dba_updating_deleting_or_reinserting_rows_is_caught() {
    with_server(|srv| {
        type Tamper = fn(&TestServer, &PgTarget, &[u8], &[u8]);
        let cases: Vec<(&str, Tamper)> = vec![
            ("a record value with one byte changed", |s, t, k, _| {
                let n = sql(
                    s,
                    t,
                    &format!(
                        "UPDATE $S.records SET value = set_byte(value, 40, get_byte(value, 40) # 1) WHERE key = '\\x{}'",
                        hex(k)
                    ),
                );
                assert_eq!(n, 1);
            }),
            ("a record row deleted", |s, t, k, _| {
                assert_eq!(
                    sql(
                        s,
                        t,
                        &format!("DELETE FROM $S.records WHERE key = '\\x{}'", hex(k))
                    ),
                    1
                );
            }),
            (
                "a record rolled back to its earlier value (re-inserted)",
                |s, t, k, old| {
                    sql(
                        s,
                        t,
                        &format!("DELETE FROM $S.records WHERE key = '\\x{}'", hex(k)),
                    );
                    let tag = &k[1..17];
                    assert_eq!(
                        sql(
                            s,
                            t,
                            &format!(
                                "INSERT INTO $S.records (tag, key, value) VALUES ('\\x{}', '\\x{}', '\\x{}')",
                                hex(tag),
                                hex(k),
                                hex(old)
                            )
                        ),
                        1
                    );
                },
            ),
            ("a subject key entry deleted", |s, t, k, _| {
                let mut e = vec![b'k'];
                e.extend_from_slice(&k[1..17]);
                assert_eq!(
                    sql(
                        s,
                        t,
                        &format!("DELETE FROM $S.records WHERE key = '\\x{}'", hex(&e))
                    ),
                    1
                );
            }),
            ("a row moved to another subject tag", |s, t, k, _| {
                assert_eq!(
                    sql(
                        s,
                        t,
                        &format!(
                            "UPDATE $S.records SET tag = '\\x{}' WHERE key = '\\x{}'",
                            "00".repeat(16),
                            hex(k)
                        )
                    ),
                    1
                );
            }),
            ("a log row deleted", |s, t, _, _| {
                assert_eq!(sql(s, t, "DELETE FROM $S.log WHERE seq = 2"), 1);
            }),
            ("a log frame with one body byte changed", |s, t, _, _| {
                assert_eq!(
                    sql(
                        s,
                        t,
                        "UPDATE $S.log SET frame = set_byte(frame, 20, get_byte(frame, 20) # 1) WHERE seq = 3"
                    ),
                    1
                );
            }),
            ("two log rows swapped", |s, t, _, _| {
                sql(s, t, "ALTER TABLE $S.log DROP CONSTRAINT log_seq_check");
                sql(s, t, "UPDATE $S.log SET seq = -1 WHERE seq = 2");
                sql(s, t, "UPDATE $S.log SET seq = 2 WHERE seq = 3");
                sql(s, t, "UPDATE $S.log SET seq = 3 WHERE seq = -1");
            }),
            (
                "a log row re-inserted past the end (a copy of the last)",
                |s, t, _, _| {
                    sql(
                        s,
                        t,
                        "INSERT INTO $S.log (seq, frame) SELECT seq + 1, frame FROM $S.log ORDER BY seq DESC LIMIT 1",
                    );
                },
            ),
        ];
        for (what, tamper) in cases {
            let (v, t, sk, old) = fixture(srv);
            tamper(srv, &t, &sk, &old);
            if what.contains("past the end") {
                // verify walks the frames the handle appended; a row past them is seen
                // by the next open, which must refuse to go on from it.
                drop(v);
                let r = PgStorage::open(&t, &srv.options())
                    .and_then(|s| Vault::open_in(Box::new(s), key(), options()));
                assert!(
                    matches!(r, Err(Error::Integrity { .. } | Error::LogTampered { .. })),
                    "{what}: open gave {:?}",
                    r.as_ref().err()
                );
            } else {
                assert_caught(&v, srv, &t, what);
                drop(v);
            }
            srv.drop_vault(&t).unwrap();
        }
    });
}

/// A foreign row: the record of another vault copied in under its own key.
#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn a_row_from_another_vault_is_caught() {
    with_server(|srv| {
        let (v, t, _, _) = fixture(srv);
        let (w, u, _, _) = fixture(srv);
        drop(w);
        sql(
            srv,
            &t,
            &format!(
                "INSERT INTO $S.records SELECT * FROM \"{}\".records r \
                 WHERE substring(r.key from 1 for 1) = 'r' \
                 ON CONFLICT (tag, key) DO NOTHING",
                u.vault
            ),
        );
        assert_caught(&v, srv, &t, "rows of another vault inserted");
        drop(v);
        srv.drop_vault(&t).unwrap();
        srv.drop_vault(&u).unwrap();
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The shared data set (README "Test data"): `$MEDVAULT_FHIR_DATA`, else
/// `$MEDVAULT_SHARED_DATA/fhir-r4-ndjson`, else `../shared/data/fhir-r4-ndjson` beside
/// the workspace. `None` (reported as skipped; a failure under CI=true) when absent.
fn fhir_data() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = std::env::var_os("MEDVAULT_FHIR_DATA")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("MEDVAULT_SHARED_DATA")
                .map(|s| PathBuf::from(s).join("fhir-r4-ndjson"))
        })
        .unwrap_or_else(|| root.join("../shared/data/fhir-r4-ndjson"));
    if p.join("1144-patients").is_dir() {
        return Some(p);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "test data not found at {} (required under CI=true)",
        p.display()
    );
    eprintln!("skipped: test data not found at {}", p.display());
    None
}

/// The identifying strings of a Patient: names, every identifier value, birth date,
/// every telecom value (phones), and its id.
fn identifying(p: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |s: Option<&str>| {
        if let Some(s) = s.filter(|s| s.len() >= 4) {
            out.insert(s.to_owned());
        }
    };
    for name in p["name"].as_array().into_iter().flatten() {
        add(name["family"].as_str());
        for g in name["given"].as_array().into_iter().flatten() {
            add(g.as_str());
        }
    }
    for id in p["identifier"].as_array().into_iter().flatten() {
        add(id["value"].as_str());
    }
    for t in p["telecom"].as_array().into_iter().flatten() {
        add(t["value"].as_str());
    }
    add(p["birthDate"].as_str());
    add(p["id"].as_str());
    out
}

/// `pg_dump` on PATH, else the newest under /usr/lib/postgresql/*/bin.
fn pg_dump() -> PathBuf {
    if let Some(p) = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pg_dump"))
        .find(|p| p.is_file())
    {
        return p;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pg_dump"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .expect("pg_dump not found (install postgresql-client)")
}

/// Every `\x<hex>` run of a plain-format dump decoded to bytes (how pg_dump writes
/// bytea), so that plaintext stored in a bytea column would be found too.
fn decoded_bytea(dump: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= dump.len() {
        if dump[i] == b'\\' && dump.get(i + 1) == Some(&b'x') {
            let mut j = i + 2;
            while j + 1 < dump.len()
                && dump[j].is_ascii_hexdigit()
                && dump[j + 1].is_ascii_hexdigit()
            {
                let h = std::str::from_utf8(&dump[j..j + 2]).unwrap();
                out.push(u8::from_str_radix(h, 16).unwrap());
                j += 2;
            }
            out.push(b'\n');
            i = j.max(i + 2);
        } else {
            i += 1;
        }
    }
    out
}

#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn a_pg_dump_after_importing_1144_patients_holds_no_identifier() {
    with_server(|srv| {
        let Some(data) = fhir_data() else { return };
        let dir = data.join("1144-patients");
        const ACTOR: &str = "dr-quintessa-marlowe-7731";
        let t = srv.fresh();
        let v = Vault::create_in(Box::new(srv.create(&t).unwrap()), key(), options()).unwrap();
        let who = AccessContext::new(ACTOR, Purpose::Administration);
        let source = medvault_fhir::ImportSource::new(std::slice::from_ref(&dir)).unwrap();
        let report =
            medvault_fhir::import(&v, &who, source, Default::default(), &mut |_| {}).unwrap();
        assert_eq!(report.records, 1144);
        let first = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(&first).unwrap();
        let patients: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(patients.len(), 1144);
        let id = patients[0]["id"].as_str().unwrap();
        let _: Value = v.get(&who, &RecordKey::new(id, "Patient", id)).unwrap();
        v.sync().unwrap();
        let mut needles: BTreeSet<String> = patients.iter().flat_map(identifying).collect();
        needles.insert(ACTOR.to_owned());
        let needles: Vec<String> = needles.into_iter().collect();
        assert!(needles.len() > 5 * 1144, "{} needles", needles.len());

        // A canary in a bytea column of the same schema: the scan must find it, so a
        // plaintext in any bytea column would be found too.
        let canary = patients[1]["name"][0]["family"]
            .as_str()
            .unwrap()
            .to_owned();
        sql(srv, &t, "CREATE TABLE $S.canary (b bytea)");
        sql(
            srv,
            &t,
            &format!(
                "INSERT INTO $S.canary VALUES ('\\x{}')",
                hex(canary.as_bytes())
            ),
        );
        let out = std::process::Command::new(pg_dump())
            .args(dump_args(srv, &t))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut hay = out.stdout.clone();
        hay.extend(decoded_bytea(&out.stdout));
        let ac = AhoCorasick::new(&needles).unwrap();
        let mut found: BTreeSet<usize> = ac
            .find_overlapping_iter(&hay)
            .map(|m| m.pattern().as_usize())
            .collect();
        let canary_at = needles.iter().position(|n| *n == canary).unwrap();
        assert!(
            found.remove(&canary_at),
            "the scan does not see the canary: it would miss plaintext"
        );
        assert!(
            found.is_empty(),
            "{} identifying strings in the dump ({} bytes), e.g. kind of needle #{}",
            found.len(),
            hay.len(),
            found.iter().next().unwrap()
        );
        // Control: every needle is in the source.
        let src = AhoCorasick::new(&needles).unwrap();
        let in_src: BTreeSet<usize> = src
            .find_overlapping_iter(text.as_bytes())
            .map(|m| m.pattern().as_usize())
            .collect();
        assert_eq!(
            in_src.len(),
            needles.len() - 1,
            "the actor id is the one needle not in the source"
        );
        drop(v);
        srv.drop_vault(&t).unwrap();
    });
}

/// pg_dump arguments for the schema of `t`: the server's host, port, user and database.
fn dump_args(srv: &TestServer, t: &PgTarget) -> Vec<String> {
    let c = srv.config();
    let mut a = vec!["--no-owner".to_owned(), format!("--schema={}", t.vault)];
    match c.get_hosts().first() {
        Some(postgres::config::Host::Unix(p)) => a.push(format!("--host={}", p.display())),
        Some(postgres::config::Host::Tcp(h)) => a.push(format!("--host={h}")),
        None => {}
    }
    if let Some(p) = c.get_ports().first() {
        a.push(format!("--port={p}"));
    }
    if let Some(u) = c.get_user() {
        a.push(format!("--username={u}"));
    }
    a.push(c.get_dbname().unwrap_or("postgres").to_owned());
    a
}

/// The core refuses a URL where it takes a directory (no directory named `postgres:`),
/// and this crate's entry points open it.
#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn a_url_opens_through_this_crate_and_is_refused_by_the_core() {
    with_server(|srv| {
        let t = srv.fresh();
        let url = srv.url_of(&t);
        let r = Vault::create_with(&url, key(), options());
        assert!(matches!(r, Err(Error::Storage(_))), "{:?}", r.err());
        assert!(!Path::new("postgres:").exists());
        {
            let v = medvault_postgres::create_with(&url, key(), options()).unwrap();
            v.put(&ctx(), &rk("carol", "1"), &json!({"x": 1})).unwrap();
        }
        assert!(matches!(
            medvault_postgres::create_with(&url, key(), options()),
            Err(Error::AlreadyExists(medvault::Existing::Vault))
        ));
        let v = medvault_postgres::open_with(&url, key(), options()).unwrap();
        let got: Value = v.get(&ctx(), &rk("carol", "1")).unwrap();
        assert_eq!(got, json!({"x": 1}));
        drop(v);
        assert!(matches!(
            medvault_postgres::open_with(&url, KeySource::raw([1; 32]), options()),
            Err(Error::WrongKey)
        ));
        srv.drop_vault(&t).unwrap();
    });
}
