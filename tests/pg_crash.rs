//! Guards crash atomicity and durability on the PostgreSQL backend (issue 17, acceptance
//! 3): a client killed with SIGKILL mid-commit, and a server restarted (`pg_ctl -m fast
//! restart`) mid-import, leave a vault where every acknowledged write reads back exactly,
//! `verify` passes, records and write entries match one to one, batches are whole, the
//! `log` table has no gap, and an import resumes without rewriting what is already there.
//! A handle that carries on after a restart still holds its vault (a second handle is
//! refused): the restart ended the session holding its advisory lock, and the handle used
//! to write on without it.
//! Needs `MEDVAULT_TEST_PG` (skipped with a message without it, required under `CI=true`).
//! The restart test also needs the server's data directory (`$MEDVAULT_TEST_PG/data`, as
//! `.ci/postgres` makes it) and `pg_ctl` on `PATH`.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::crash::{CrashChild, assert_records_match_entries, child_command};
use common::{care, options, raw_key};
use medvault::json::JsonText;
use medvault::{Action, LogQuery, Outcome, RecordKey, Vault, WriteOutcome};
use medvault_postgres::testdb::{self, TestServer};
use medvault_postgres::{PgOptions, PgStorage, PgTarget};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const ENV_URL: &str = "MEDVAULT_PGCRASH_URL";
const ENV_SEED: &str = "MEDVAULT_PGCRASH_SEED";
const CHILD: &str = "pg_crash_child";
const COLLECTION: &str = "Observation";

/// One test at a time: the restart test cuts every session of the server.
static SERVER: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERVER.lock().unwrap_or_else(|p| p.into_inner())
}

/// The value written under record id `id` (a function of the id, so that the parent
/// knows what an acknowledged write must read back).
fn value_of(id: &str) -> Value {
    let h = id
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    json!({"id": id, "note": "x".repeat((h % 300) as usize)})
}

/// The batch of a record id written by `put_many` (`r<seed>-<i>-b<n>-<j>` →
/// (`r<seed>-<i>-b<n>`, n)); `None` for a single put.
fn batch_of(id: &str) -> Option<(&str, usize)> {
    let (batch, _) = id.rsplit_once('-')?;
    let (_, n) = batch.rsplit_once("-b")?;
    Some((batch, n.parse().ok()?))
}

fn open_url(url: &str) -> medvault::Result<Vault> {
    let (target, _) = PgTarget::parse(url)?;
    let storage = PgStorage::open(&target, &PgOptions::default())?;
    Vault::open_in(Box::new(storage), raw_key(), options())
}

fn create(srv: &TestServer, target: &PgTarget) -> Vault {
    Vault::create_in(Box::new(srv.create(target).unwrap()), raw_key(), options()).unwrap()
}

/// The child: opens the vault, prints `ready`, then writes until killed, printing `ACK
/// <subject> <record_id>` for each record of a write acknowledged (returned `Ok`):
/// single puts, 4-record and 40-record `put_many` imports in turn. Does nothing unless
/// started by the SIGKILL test.
#[test]
#[ignore = "child process of the PostgreSQL SIGKILL test"]
fn pg_crash_child() {
    let (Ok(url), Ok(seed)) = (std::env::var(ENV_URL), std::env::var(ENV_SEED)) else {
        return;
    };
    let seed: u64 = seed.parse().unwrap();
    let vault = open_url(&url).unwrap();
    let ctx = care("pg-crash-writer");
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    for i in 0u64.. {
        let subject = format!("patient-{}", (seed + i) % 6);
        let n = match i % 4 {
            1 => 4,
            3 => 40,
            _ => 1,
        };
        let keys: Vec<RecordKey> = (0..n)
            .map(|j| {
                let id = if n == 1 {
                    format!("r{seed}-{i}")
                } else {
                    format!("r{seed}-{i}-b{n}-{j}")
                };
                RecordKey::new(subject.as_str(), COLLECTION, id)
            })
            .collect();
        let values: Vec<Value> = keys.iter().map(|k| value_of(&k.record_id)).collect();
        if n == 1 {
            vault.put(&ctx, &keys[0], &values[0]).unwrap();
        } else {
            vault
                .put_many(&ctx, keys.iter().zip(&values), Action::Import)
                .unwrap();
        }
        for k in &keys {
            writeln!(out, "ACK {} {}", k.subject, k.record_id).unwrap();
        }
        out.flush().unwrap();
    }
}

/// Opens the vault after a kill or a restart and checks it: the `log` table has no gap;
/// the vault opens and verifies (chain, state digest, applied marker: no record without
/// its entry, no change whose entry is missing); every record has exactly one write or
/// import entry (entries recorded as not applied left out) and every such entry its
/// record; each record reads back the value of its id exactly; batches are whole; every
/// acknowledged write is present. Returns the number of records.
fn check(srv: &TestServer, target: &PgTarget, acked: &BTreeSet<RecordKey>, round: &str) -> usize {
    let (rows, end) = srv.log_rows(target).unwrap();
    assert_eq!(rows, end, "{round}: the log table has a gap");
    let auditor = care("pg-crash-auditor");
    let v = Vault::open_in(Box::new(srv.open(target).unwrap()), raw_key(), options())
        .unwrap_or_else(|e| panic!("{round}: reopen: {e}"));
    let n = v
        .verify(&auditor, None)
        .unwrap_or_else(|e| panic!("{round}: verify: {e}"));
    assert_eq!(n + 1, v.log_len(), "{round}");

    let entries = v.audit_query(&auditor, &LogQuery::default()).unwrap();
    let not_applied: BTreeSet<u64> = entries
        .iter()
        .filter(|e| e.action == Action::Recovery)
        .map(|e| {
            assert_eq!(e.outcome, Outcome::Failed("not_applied".into()), "{round}");
            e.note
                .strip_prefix("entry ")
                .and_then(|n| n.strip_suffix(" not applied"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{round}: recovery note {:?}", e.note))
        })
        .collect();
    let mut written: BTreeMap<RecordKey, u32> = BTreeMap::new();
    for e in &entries {
        if not_applied.contains(&e.seq) || !matches!(e.action, Action::Write | Action::Import) {
            continue;
        }
        if e.outcome != Outcome::Ok {
            continue; // a write that failed (the server went away): no change
        }
        // An import's "unchanged=K" entry names no record: nothing was written.
        let Some(t) = e.target.as_ref().filter(|t| t.record_id.is_some()) else {
            assert!(e.note.starts_with("unchanged="), "{round}: {e:?}");
            continue;
        };
        let k = RecordKey::new(
            t.subject.as_str(),
            t.collection.clone().unwrap(),
            t.record_id.clone().unwrap(),
        );
        *written.entry(k).or_default() += 1;
    }
    let twice: Vec<_> = written.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "{round}: writes logged twice: {twice:?}");

    let mut present = BTreeSet::new();
    for s in v.subjects(&auditor).unwrap() {
        for (k, val) in v.records_of::<Value>(&auditor, &s, None).unwrap() {
            assert_eq!(
                val,
                value_of(&k.record_id),
                "{round}: {k:?} reads back otherwise"
            );
            present.insert(k);
        }
    }
    let logged: BTreeSet<RecordKey> = written.into_keys().collect();
    assert_records_match_entries(&present, &logged, round);
    let lost: Vec<_> = acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "{round}: acknowledged writes lost: {lost:?}"
    );
    let mut batches: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for k in &present {
        if let Some((b, size)) = batch_of(&k.record_id) {
            batches.entry(b).or_insert((0, size)).0 += 1;
        }
    }
    let torn: Vec<_> = batches.iter().filter(|(_, (n, size))| n != size).collect();
    assert!(torn.is_empty(), "{round}: torn batches: {torn:?}");
    drop(v);
    let (rows, end) = srv.log_rows(target).unwrap();
    assert_eq!(
        rows, end,
        "{round}: the log table has a gap after the checks"
    );
    present.len()
}

/// The `ACK` lines of a child's output that it printed whole (a line cut by the kill has
/// no newline: its write was not acknowledged).
fn acks(stdout: &str) -> Vec<RecordKey> {
    stdout
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n')?.strip_prefix("ACK "))
        .map(|rest| {
            let (s, id) = rest.split_once(' ').unwrap();
            RecordKey::new(s, COLLECTION, id)
        })
        .collect()
}

/// A client writing to a PostgreSQL vault (puts and `put_many` imports) is killed with
/// SIGKILL at random moments, 24 times: after each kill the vault passes [`check`].
#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn acknowledged_writes_survive_sigkill_on_postgres() {
    let Some(srv) = testdb::server().unwrap() else {
        return;
    };
    let _one = serial();
    const ROUNDS: u64 = 24;
    let target = srv.fresh();
    drop(create(&srv, &target));
    let url = srv.url_of(&target);
    let mut rng = StdRng::seed_from_u64(0x9c_c4a5);
    let mut acked = BTreeSet::new();
    let (mut kills_in_writes, mut kills_in_open, mut records) = (0, 0, 0);
    for round in 0..ROUNDS {
        let mut child = CrashChild::spawn(
            child_command(CHILD)
                .env(ENV_URL, &url)
                .env(ENV_SEED, round.to_string()),
        );
        // Every fourth kill may land while the child connects and opens the vault
        // (recovery included); the others while it writes.
        let in_open = round % 4 == 0;
        let delay = if in_open {
            rng.gen_range(0..60)
        } else {
            assert!(
                child.wait_ready(),
                "round {round}: the child failed to open"
            );
            rng.gen_range(5..150)
        };
        let out = child.kill_after(Duration::from_millis(delay));
        assert!(
            !out.exited_first && out.by_sigkill(),
            "round {round}: the child exited by itself ({:?}): {}",
            out.status,
            out.stderr
        );
        let new = acks(&out.stdout);
        if !new.is_empty() {
            kills_in_writes += 1;
        } else if in_open {
            kills_in_open += 1;
        }
        acked.extend(new);
        records = check(&srv, &target, &acked, &format!("round {round}"));
    }
    eprintln!(
        "postgres: {ROUNDS} kills, {kills_in_writes} after acknowledged writes, {kills_in_open} before the first; {} acknowledged, {records} records",
        acked.len()
    );
    assert!(
        kills_in_writes >= ROUNDS / 2,
        "most kills should land while the child writes ({kills_in_writes} of {ROUNDS})"
    );
    assert!(records >= acked.len());
    srv.drop_vault(&target).unwrap();
}

/// A second handle on the vault at `target`, waiting 300 ms for its lock.
fn second_handle(target: &PgTarget) -> medvault::Result<PgStorage> {
    let options = PgOptions {
        lock_wait: Duration::from_millis(300),
        ..PgOptions::default()
    };
    PgStorage::open(target, &options)
}

/// The keys of import batch `i` (20 records of one of 5 patients).
fn import_batch(i: u64) -> Vec<RecordKey> {
    (0..20)
        .map(|j| {
            RecordKey::new(
                format!("patient-{}", i % 5),
                COLLECTION,
                format!("imp{i}-b20-{j}"),
            )
        })
        .collect()
}

/// Writes import batch `i` as the import does (`put_many_json_outcomes`: a record
/// already stored with the same text is left unchanged).
fn import(vault: &Vault, i: u64) -> medvault::Result<Vec<WriteOutcome>> {
    let keys = import_batch(i);
    let texts: Vec<JsonText> = keys
        .iter()
        .map(|k| JsonText::from_serialize(&value_of(&k.record_id)).unwrap())
        .collect();
    vault.put_many_json_outcomes(
        &care("pg-importer"),
        keys.iter().zip(&texts),
        Action::Import,
    )
}

/// The server is restarted while a handle imports batch after batch: each failed batch
/// fails with a storage error (no panic), a batch that failed is retried (after reopening
/// when the handle says to), and the import carries on after the restart. Then the
/// import is run again over every batch (the resume): the batches acknowledged before are
/// left unchanged, and the vault passes [`check`] with every batch acknowledged.
#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn a_server_restart_mid_import_fails_cleanly_and_the_import_resumes() {
    let Some(srv) = testdb::server().unwrap() else {
        return;
    };
    let _one = serial();
    let target = srv.fresh();
    let url = srv.url_of(&target);
    let vault = create(&srv, &target);
    let done = AtomicU64::new(0);
    let restarted = AtomicBool::new(false);
    let (acked, errors, reopened, batches, held) =
        std::thread::scope(|s| {
            let importer = s.spawn(|| {
            let mut vault = Some(vault);
            let mut acked = BTreeSet::new();
            let mut errors = Vec::new();
            let (mut reopened, mut after_restart) = (0, 0);
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut i = 0;
            // Until 30 batches went in after the restart.
            while after_restart < 30 {
                assert!(Instant::now() < deadline, "the import did not carry on: {errors:?}");
                let Some(v) = vault.as_ref() else {
                    // The handle asked to be reopened: reopen until the server is back.
                    match open_url(&url) {
                        Ok(v) => {
                            vault = Some(v);
                            reopened += 1;
                        }
                        Err(e) => {
                            errors.push(format!("reopen: {e}"));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    continue;
                };
                match import(v, i) {
                    Ok(outcomes) => {
                        // A first try is created; a retry of a batch whose commit took
                        // effect although it failed is unchanged, never half of each.
                        let created = outcomes.iter().all(|o| *o == WriteOutcome::Created);
                        let same = outcomes.iter().all(|o| *o == WriteOutcome::Unchanged);
                        assert!(created || same, "batch {i}: {outcomes:?}");
                        acked.extend(import_batch(i));
                        i += 1;
                        done.store(i, Ordering::SeqCst);
                        if restarted.load(Ordering::SeqCst) {
                            after_restart += 1;
                        }
                    }
                    Err(e) => {
                        assert!(
                            matches!(e, medvault::Error::Storage(_)),
                            "batch {i}: a restart should fail a write with a storage error: {e:?}"
                        );
                        let text = e.to_string();
                        if text.contains("reopen") {
                            vault = None;
                        } else {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        errors.push(format!("batch {i}: {text}"));
                    }
                }
            }
            (acked, errors, reopened, i, vault)
        });
            // Restart once the import is under way.
            while done.load(Ordering::SeqCst) < 20 && !importer.is_finished() {
                std::thread::sleep(Duration::from_millis(5));
            }
            srv.restart().unwrap();
            restarted.store(true, Ordering::SeqCst);
            importer.join().unwrap()
        });
    eprintln!(
        "postgres restart: {batches} batches acknowledged, {reopened} reopens, errors: {errors:?}"
    );
    assert!(
        !errors.is_empty(),
        "the restart should have cut the import (no write failed)"
    );
    // The handle that carried on still holds the vault: a second handle is refused, as
    // before the restart (the server ended the session that held the advisory lock).
    let second = second_handle(&target);
    assert!(
        second.is_err(),
        "a second handle opened the vault while the first still writes to it"
    );
    drop(second);
    drop(held);
    // The resume: every batch again, on a new handle.
    let vault = open_url(&url).unwrap();
    for i in 0..batches {
        let outcomes = import(&vault, i).unwrap();
        assert!(
            outcomes.iter().all(|o| *o == WriteOutcome::Unchanged),
            "batch {i} was changed by the resume: {outcomes:?}"
        );
    }
    drop(vault);
    let records = check(&srv, &target, &acked, "after the restart");
    assert_eq!(records, acked.len());
    srv.drop_vault(&target).unwrap();
}

/// A handle that carries on after a server restart still holds its vault: a second
/// handle is refused, as before the restart. (The restart ends the session holding the
/// advisory lock; the handle used to go on writing without it, so a second process could
/// open the vault and write beside it.)
#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn a_handle_keeps_its_vault_across_a_server_restart() {
    let Some(srv) = testdb::server().unwrap() else {
        return;
    };
    let _one = serial();
    let target = srv.fresh();
    let vault = create(&srv, &target);
    let ctx = care("pg-restart-writer");
    let key = |i: u32| RecordKey::new("patient-0", COLLECTION, format!("r{i}"));
    vault.put(&ctx, &key(0), &value_of("r0")).unwrap();
    srv.restart().unwrap();
    // Writes fail (a storage error) until the pool has replaced its dead connections.
    let mut failed = 0;
    while let Err(e) = vault.put(&ctx, &key(1), &value_of("r1")) {
        assert!(matches!(e, medvault::Error::Storage(_)), "{e:?}");
        failed += 1;
        assert!(failed < 20, "the handle does not recover: {e}");
    }
    let second = second_handle(&target);
    let Err(e) = second else {
        panic!("a second handle opened the vault beside one that writes to it");
    };
    assert!(e.to_string().contains("in use"), "{e}");
    for i in 0..2 {
        let id = format!("r{i}");
        assert_eq!(vault.get::<Value>(&ctx, &key(i)).unwrap(), value_of(&id));
    }
    drop(vault);
    let acked = BTreeSet::from([key(0), key(1)]);
    assert_eq!(check(&srv, &target, &acked, "after the restart"), 2);
    srv.drop_vault(&target).unwrap();
}
