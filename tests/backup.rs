//! Guards issue "backup, restore and retention" acceptance 1, 2 and 4 (acceptance 3,
//! SIGKILL, is in tests/backup_crash.rs): an online backup under four writer threads
//! restores, elsewhere, exactly the state at its checkpoint; a patient erased after the
//! backup does not come back (the erasure ledger re-applies the erasure); a pruned log
//! verifies from its prune record, a changed prune record is detected, a legal hold stops
//! a prune. Oracles: the writers know what they wrote; the live vault's own log says
//! which writes precede the checkpoint; the backup files are altered by raw bytes; the
//! record store is altered through sled directly.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{care, options, raw_key};
use medvault::{
    AccessContext, Action, Error, LogQuery, Purpose, RecordKey, RestoreOptions, Vault, VaultOptions,
};
use serde_json::{Value, json};

fn admin() -> AccessContext {
    AccessContext::new("backup-operator", Purpose::Administration)
}

fn restore_opts(ledger: Option<&Path>) -> RestoreOptions {
    RestoreOptions {
        ledger: ledger.map(Path::to_path_buf),
        vault: VaultOptions {
            opener: admin(),
            ..options()
        },
        ..RestoreOptions::default()
    }
}

/// Restore options without an erasure ledger, said so.
fn without_ledger() -> RestoreOptions {
    RestoreOptions {
        without_ledger: true,
        ..restore_opts(None)
    }
}

/// A new vault at `path` holding one record, `p/Patient/p`.
fn one_patient_vault(path: &Path) -> Vault {
    let v = Vault::create_with(path, raw_key(), options()).unwrap();
    v.put(
        &admin(),
        &RecordKey::new("p", "Patient", "p"),
        &json!({"x": 1}),
    )
    .unwrap();
    v
}

fn small_segments() -> VaultOptions {
    let mut o = options();
    o.sled.log_segment_bytes = 4096;
    o
}

#[test]
fn backup_under_four_writers_restores_exactly_the_checkpointed_state() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clinic");
    let sets = dir.path().join("backups");
    let ledger = dir.path().join("erasures.ledger");
    let vault = Arc::new(Vault::create_with(&src, raw_key(), small_segments()).unwrap());
    vault.update_erasure_ledger(&admin(), &ledger).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (v, stop) = (vault.clone(), stop.clone());
            std::thread::spawn(move || {
                let ctx = care(&format!("writer-{t}"));
                let mut written = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) || i < 40 {
                    let key = RecordKey::new(format!("p{t}"), "Observation", format!("t{t}-{i}"));
                    let value = json!({"t": t, "i": i, "pad": "x".repeat((i % 50) as usize)});
                    v.put(&ctx, &key, &value).unwrap();
                    written.push((key, value));
                    i += 1;
                }
                written
            })
        })
        .collect();
    // Backups while the writers run: the second reuses the first's full segments.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let first = vault.backup(&admin(), &sets).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let report = vault.backup(&admin(), &sets).unwrap();
    stop.store(true, Ordering::SeqCst);
    let written: Vec<(RecordKey, Value)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(first.segments_copied >= 1);
    assert!(
        report.segments_reused >= 1,
        "the second backup reuses full segments of the first: {report:?}"
    );
    // Which writes precede the checkpoint: the live log's write entries, by seq.
    let cp = report.checkpoint.clone();
    let entries = vault
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Write),
                ..LogQuery::default()
            },
        )
        .unwrap();
    let seq_of: std::collections::HashMap<String, u64> = entries
        .iter()
        .filter_map(|e| {
            let id = e.target.as_ref()?.record_id.clone()?;
            Some((id, e.seq))
        })
        .collect();
    let backups_logged = vault
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Backup),
                ..LogQuery::default()
            },
        )
        .unwrap();
    assert_eq!(backups_logged.len(), 2);
    assert!(backups_logged[1].note.contains(&report.backup_id));
    drop(vault);

    let dest = dir.path().join("restored-elsewhere");
    let r = Vault::restore(&report.dir, &dest, raw_key(), restore_opts(Some(&ledger))).unwrap();
    assert_eq!(r.checkpoint, cp);
    let restored = Vault::open_with(&dest, raw_key(), options()).unwrap();
    assert_eq!(restored.path(), Some(dest.as_path()));
    restored.verify(&admin(), Some(&cp)).unwrap();
    let reader = care("auditor");
    let mut before = 0;
    for (key, value) in &written {
        let seq = seq_of[&key.record_id];
        let got: medvault::Result<Value> = restored.get(&reader, key);
        if seq < cp.next_seq {
            assert_eq!(
                &got.unwrap(),
                value,
                "{} written before the checkpoint",
                key.record_id
            );
            before += 1;
        } else {
            assert!(
                matches!(got, Err(Error::NotFound)),
                "{} written after the checkpoint must not be restored",
                key.record_id
            );
        }
    }
    assert!(
        before > 0 && before < written.len(),
        "the backup ran while writes went on"
    );
    assert_eq!(restored.stats().unwrap().records, before as u64);
    let restores = restored
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Restore),
                ..LogQuery::default()
            },
        )
        .unwrap();
    assert_eq!(restores.len(), 1);
    assert!(restores[0].note.contains(&report.backup_id));
}

#[test]
fn a_patient_erased_after_the_backup_stays_erased_through_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clinic");
    let sets = dir.path().join("backups");
    let ledger = dir.path().join("erasures.ledger");
    let vault = Vault::create_with(&src, raw_key(), options()).unwrap();
    let clerk = admin();
    let k1 = RecordKey::new("erased-patient", "Patient", "a");
    let k2 = RecordKey::new("kept-patient", "Patient", "b");
    vault.put(&clerk, &k1, &json!({"name": "Tuesday"})).unwrap();
    vault.put(&clerk, &k2, &json!({"name": "Stays"})).unwrap();
    vault.update_erasure_ledger(&clerk, &ledger).unwrap();
    let report = vault.backup(&clerk, &sets).unwrap();
    // Erased after the backup (Monday's backup, Tuesday's erasure).
    vault.erase_subject(&clerk, "erased-patient").unwrap();
    assert_eq!(vault.update_erasure_ledger(&clerk, &ledger).unwrap(), 1);
    let vault_id = vault.vault_id();
    drop(vault);

    // Without the ledger: refused, and says why.
    let dest = dir.path().join("restored");
    let r = Vault::restore(&report.dir, &dest, raw_key(), restore_opts(None));
    match r {
        Err(Error::InvalidInput(i)) => assert!(i.detail.contains("ledger"), "{i}"),
        other => panic!("a restore without a ledger is refused, gave {other:?}"),
    }
    assert!(!dest.exists());

    // A forged ledger (found by the breaker trial): the bare first line names only the
    // public vault id, so anyone can write one; with no MACed line it must be refused,
    // else it would pass for "no erasure since" and bring the patient back.
    let forged = dir.path().join("forged.ledger");
    let first = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    for text in [format!("{first}\n"), format!("{first}\r\n"), first.clone()] {
        std::fs::write(&forged, text).unwrap();
        let r = Vault::restore(&report.dir, &dest, raw_key(), restore_opts(Some(&forged)));
        assert!(
            matches!(r, Err(Error::Integrity { .. })),
            "a ledger without a MACed line is refused, gave {r:?}"
        );
        assert!(!dest.exists());
    }

    // With it: the erasure is re-applied before the vault is usable.
    let r = Vault::restore(&report.dir, &dest, raw_key(), restore_opts(Some(&ledger))).unwrap();
    assert_eq!((r.erasures_applied, r.erasures_present), (1, 0));
    // The ledger says how recent it is: its last update came after the erasure.
    let (checked_seq, _) = r.ledger_checked.unwrap();
    assert!(checked_seq > report.checkpoint.next_seq, "{checked_seq}");
    assert_eq!(r.vault_id, vault_id);
    let v = Vault::open_with(&dest, raw_key(), options()).unwrap();
    let got: medvault::Result<Value> = v.get(&care("nurse"), &k1);
    assert!(
        matches!(got, Err(Error::NotFound)),
        "mechanism: the erasure ledger; the erased patient must not read, gave {got:?}"
    );
    assert!(v.is_erased(&clerk, "erased-patient").unwrap());
    let kept: Value = v.get(&care("nurse"), &k2).unwrap();
    assert_eq!(kept, json!({"name": "Stays"}));
    v.verify(&clerk, Some(&report.checkpoint)).unwrap();
    let erasures = v
        .audit_query(
            &clerk,
            &LogQuery {
                action: Some(Action::Erase),
                ..LogQuery::default()
            },
        )
        .unwrap();
    assert!(erasures.iter().any(|e| e.note.contains("erasure ledger")));
    drop(v);

    // The control: the same backup restored without the ledger brings the patient back,
    // so the ledger (not something in the backup) is what kept the patient erased.
    let dest2 = dir.path().join("restored-without-ledger");
    Vault::restore(&report.dir, &dest2, raw_key(), without_ledger()).unwrap();
    let v2 = Vault::open_with(&dest2, raw_key(), options()).unwrap();
    let back: Value = v2.get(&care("nurse"), &k1).unwrap();
    assert_eq!(back, json!({"name": "Tuesday"}));
}

#[test]
fn a_backup_of_another_vault_or_an_altered_backup_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = Vault::create_with(dir.path().join("a"), raw_key(), options()).unwrap();
    let b = one_patient_vault(&dir.path().join("b"));
    let ledger_a = dir.path().join("a.ledger");
    a.update_erasure_ledger(&admin(), &ledger_a).unwrap();
    let rb = b.backup(&admin(), &dir.path().join("sets")).unwrap();
    let dest = dir.path().join("dest");
    // B's backup with A's ledger: the expected vault is A's.
    match Vault::restore(&rb.dir, &dest, raw_key(), restore_opts(Some(&ledger_a))) {
        Err(Error::InvalidInput(i)) => assert!(i.detail.contains("other"), "{i}"),
        other => panic!("another vault's backup is refused, gave {other:?}"),
    }
    let mut o = without_ledger();
    o.expect_vault = Some(a.vault_id());
    assert!(matches!(
        Vault::restore(&rb.dir, &dest, raw_key(), o.clone()),
        Err(Error::InvalidInput(_))
    ));
    // The backup set (the DEST of `backup`) named instead of one of its backups
    // (new-user trial 2026-12-02: it was called an incomplete backup, exit 4): the
    // error says so and names the backup inside.
    match Vault::restore(&dir.path().join("sets"), &dest, raw_key(), without_ledger()) {
        Err(Error::InvalidInput(i)) => {
            let id = rb.dir.file_name().unwrap().to_str().unwrap();
            assert!(
                i.detail.contains("backup set") && i.detail.contains(id),
                "{i}"
            );
        }
        other => panic!("a backup set is not a backup, gave {other:?}"),
    }
    assert!(!dest.exists());
    o.other_vault = true;
    // Altered: one byte of a log segment, then the manifest gone.
    let seg = std::fs::read_dir(rb.dir.join("log"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let orig = std::fs::read(&seg).unwrap();
    let mut bytes = orig.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    assert!(matches!(
        Vault::restore(&rb.dir, &dest, raw_key(), o.clone()),
        Err(Error::Integrity { .. })
    ));
    assert!(!dest.exists());
    std::fs::write(&seg, &orig).unwrap();
    let manifest = rb.dir.join(medvault::backup::MANIFEST_FILE);
    let text = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    match Vault::restore(&rb.dir, &dest, raw_key(), o.clone()) {
        Err(e @ Error::Integrity { .. }) => assert!(e.to_string().contains("incomplete")),
        other => panic!("a backup without its manifest is incomplete, gave {other:?}"),
    }
    assert!(!dest.exists());
    std::fs::write(&manifest, &text).unwrap();
    // Restored on purpose: B's state, at a new path.
    Vault::restore(&rb.dir, &dest, raw_key(), o).unwrap();
    let v = Vault::open_with(&dest, raw_key(), options()).unwrap();
    assert_eq!(v.vault_id(), b.vault_id());
}

/// The frames of the log of `vault_dir`, as (segment path, offset, length) from the
/// documented layout (docs/FORMAT.md "Log segment files": a 41-byte segment header,
/// then frames `u32 len || len bytes`).
fn frames_of(vault_dir: &Path) -> Vec<(std::path::PathBuf, usize, usize)> {
    let mut segs: Vec<_> = std::fs::read_dir(vault_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let mut out = Vec::new();
    for s in segs {
        let b = std::fs::read(&s).unwrap();
        let mut at = 41;
        while at + 4 <= b.len() {
            let n = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
            out.push((s.clone(), at, 4 + n));
            at += 4 + n;
        }
    }
    out
}

#[test]
fn a_pruned_log_verifies_and_its_prune_record_is_guarded_and_a_hold_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clinic");
    let v = Vault::create_with(&path, raw_key(), small_segments()).unwrap();
    let ctx = admin();
    for i in 0..120 {
        let k = RecordKey::new(format!("p{}", i % 7), "Observation", format!("o{i}"));
        v.put(&care("nurse"), &k, &json!({"i": i, "pad": "y".repeat(40)}))
            .unwrap();
    }
    assert_eq!(
        v.retention_days().unwrap(),
        medvault::DEFAULT_RETENTION_DAYS
    );
    v.set_retention_days(&ctx, 30).unwrap();
    let segments = |p: &Path| std::fs::read_dir(p.join("log")).unwrap().count();
    let before = segments(&path);
    assert!(before > 3, "small segments: {before}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Nothing is older than 30 days yet.
    assert_eq!(v.prune_log(&ctx, Some(now)).unwrap().segments_dropped, 0);
    // A legal hold stops the prune.
    v.set_legal_hold(&ctx, "case-2026-17", "litigation hold from counsel")
        .unwrap();
    let held = v.prune_log(&ctx, Some(now + 31 * 86_400_000)).unwrap();
    assert_eq!(held.segments_dropped, 0);
    assert_eq!(held.held_by, vec!["case-2026-17".to_owned()]);
    assert_eq!(segments(&path), before);
    v.lift_legal_hold(&ctx, "case-2026-17", "case closed")
        .unwrap();
    // A break-the-glass access awaiting review keeps its segment and every later one.
    let er = AccessContext::new("dr-7", Purpose::Emergency).with_reason("unconscious patient");
    let _: Value = v
        .get(&er, &RecordKey::new("p1", "Observation", "o1"))
        .unwrap();
    let er_seq = v.log_len() - 1;
    for i in 0..60 {
        let k = RecordKey::new("late", "Observation", format!("l{i}"));
        v.put(&care("nurse"), &k, &json!({"pad": "z".repeat(60)}))
            .unwrap();
    }
    let later = now + 31 * 86_400_000;
    let r = v.prune_log(&ctx, Some(later)).unwrap();
    assert_eq!(r.kept_for_review, Some(er_seq));
    assert!(r.first_kept <= er_seq && r.segments_dropped > 0, "{r:?}");
    v.verify(&ctx, None).unwrap();
    let start = r.first_kept;
    // Every remaining segment starts at or after the prune point (file names are the
    // first seq, docs/FORMAT.md).
    for e in std::fs::read_dir(path.join("log")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name == "tree" {
            continue; // the Merkle tree node file (docs/FORMAT.md "Tree node file")
        }
        let first: u64 = name.trim_end_matches(".seg").parse().unwrap();
        assert!(first >= start);
    }
    let prunes = v
        .audit_query(
            &ctx,
            &LogQuery {
                action: Some(Action::Prune),
                ..LogQuery::default()
            },
        )
        .unwrap();
    let record = prunes
        .iter()
        .find(|e| e.note.starts_with("prune record"))
        .unwrap();
    assert!(record.note.contains(&format!("first_kept={start} ")));
    let record_seq = record.seq;
    drop(v);
    // Reopens and verifies from the prune point.
    let v = Vault::open_with(&path, raw_key(), small_segments()).unwrap();
    v.verify(&ctx, None).unwrap();
    drop(v);

    // Tamper 1: a byte of the prune entry in its segment: the chain breaks.
    // The frame with seq = record_seq, counting frames from the first kept.
    let (seg, at, len) = frames_of(&path)[(record_seq - start) as usize].clone();
    let orig = std::fs::read(&seg).unwrap();
    let mut bytes = orig.clone();
    bytes[at + len / 2] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let r = Vault::open_with(&path, raw_key(), small_segments()).and_then(|v| v.verify(&ctx, None));
    assert!(
        matches!(
            r,
            Err(Error::LogTampered { .. }) | Err(Error::Integrity { .. })
        ),
        "a changed prune entry is detected, gave {r:?}"
    );
    // Flip it back (the open above appended to the last segment: keep those bytes).
    let mut now_bytes = std::fs::read(&seg).unwrap();
    now_bytes[at + len / 2] ^= 0x20;
    assert_eq!(&now_bytes[..orig.len()], &orig[..]);
    std::fs::write(&seg, &now_bytes).unwrap();
    Vault::open_with(&path, raw_key(), small_segments())
        .unwrap()
        .verify(&ctx, None)
        .unwrap();

    // Tamper 2: the stored prune record moved to a later segment start (to hide more of
    // the log): the state digest catches it.
    {
        let db = sled::open(path.join("db")).unwrap();
        let mut rec = db.get(b"zprune").unwrap().unwrap().to_vec();
        assert_eq!(rec[0], 1, "prune record version (docs/FORMAT.md)");
        let first = u64::from_be_bytes(rec[1..9].try_into().unwrap());
        assert_eq!(first, start);
        rec[1..9].copy_from_slice(&(start + 1).to_be_bytes());
        db.insert(b"zprune", rec).unwrap();
        db.flush().unwrap();
    }
    let r = Vault::open_with(&path, raw_key(), small_segments()).and_then(|v| v.verify(&ctx, None));
    assert!(
        matches!(
            r,
            Err(Error::Integrity { .. }) | Err(Error::LogTampered { .. })
        ),
        "a changed prune record is detected, gave {r:?}"
    );
}

#[test]
fn the_erasure_ledger_detects_a_changed_line_and_survives_a_torn_append() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::create_with(dir.path().join("v"), raw_key(), options()).unwrap();
    let ledger = dir.path().join("ledger");
    let clerk = admin();
    for p in ["a", "b"] {
        vault
            .put(&clerk, &RecordKey::new(p, "Patient", p), &json!({"p": p}))
            .unwrap();
    }
    let report = vault.backup(&clerk, &dir.path().join("sets")).unwrap();
    vault.erase_subject(&clerk, "a").unwrap();
    assert_eq!(vault.update_erasure_ledger(&clerk, &ledger).unwrap(), 1);
    let good = std::fs::read_to_string(&ledger).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("medvault-erasure-ledger 1 "));
    assert!(lines[1].starts_with("erase "));
    assert!(
        lines[2].starts_with("checked "),
        "every update ends with a checked line"
    );
    // A torn append (half a line, no newline): ignored by restore, cut by the next update.
    std::fs::write(&ledger, format!("{good}erase 0011")).unwrap();
    vault.erase_subject(&clerk, "b").unwrap();
    assert_eq!(vault.update_erasure_ledger(&clerk, &ledger).unwrap(), 1);
    let after = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        after.starts_with(&good) && after.lines().count() == 5,
        "{after}"
    );
    // One hex digit of the first erasure's pseudonym changed: the ledger is refused.
    let mut bad = after.clone().into_bytes();
    let at = good.find("erase ").unwrap() + 6;
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&ledger, &bad).unwrap();
    let dest = dir.path().join("dest");
    match Vault::restore(&report.dir, &dest, raw_key(), restore_opts(Some(&ledger))) {
        Err(Error::Integrity { structure, .. }) => {
            assert_eq!(structure, medvault::Structure::ErasureLedger)
        }
        other => panic!("a changed ledger line is refused, gave {other:?}"),
    }
    assert!(!dest.exists());
    std::fs::write(&ledger, &after).unwrap();
    let r = Vault::restore(&report.dir, &dest, raw_key(), restore_opts(Some(&ledger))).unwrap();
    assert_eq!(r.erasures_applied, 2);
}

#[test]
fn prune_on_open_runs_the_retention_prune_at_every_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    drop(Vault::create_with(&path, raw_key(), small_segments()).unwrap());
    let mut o = small_segments();
    o.prune_on_open = true;
    let v = Vault::open_with(&path, raw_key(), o).unwrap();
    assert!(v.warnings().is_empty(), "{:?}", v.warnings());
    let prunes = v
        .audit_query(
            &admin(),
            &LogQuery {
                action: Some(Action::Prune),
                ..LogQuery::default()
            },
        )
        .unwrap();
    // Nothing is a year old in a new vault: the prune ran and says so.
    assert_eq!(prunes.len(), 1);
    assert!(
        prunes[0].note.contains("nothing older than 365 days"),
        "{}",
        prunes[0].note
    );
}

/// The frames of every segment file in `vault_dir/log`, sliced by their length field as
/// docs/FORMAT.md "Log segment files" lays them out (41-byte segment header, then
/// `u32 len || len bytes` per frame), not by the engine's decoder: `(first seq of the
/// segment, frames)`, by segment.
fn raw_segment_frames(vault_dir: &Path) -> Vec<(u64, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(vault_dir.join("log")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "seg") {
            continue;
        }
        let first: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let b = std::fs::read(&p).unwrap();
        let mut frames = Vec::new();
        let mut at = 41;
        while at + 4 <= b.len() {
            let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            frames.push(b[at..at + 4 + len].to_vec());
            at += 4 + len;
        }
        out.push((first, frames));
    }
    out.sort_by_key(|(s, _)| *s);
    out
}

/// Issue 19 follow-up: a backup of a pruned vault carries the Merkle tree (`log/tree`),
/// so the restored vault opens, verifies, and proves entries that were pruned before the
/// backup. Oracle: medvault-verify on the signed checkpoint and proofs, and an RFC 9162
/// tree built by medvault-verify's `MemoryTree` over the raw frame bytes saved before the
/// prune and read from the restored segments.
#[test]
fn a_backup_of_a_pruned_log_restores_with_its_tree_and_proves_pruned_entries() {
    use medvault_verify::{Checkpoint, ConsistencyProof, InclusionProof, MemoryTree, VerifierKey};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clinic");
    let sets = dir.path().join("backups");
    let ledger = dir.path().join("erasures.ledger");
    let v = Vault::create_with(&path, raw_key(), small_segments()).unwrap();
    let ctx = admin();
    for i in 0..120 {
        let k = RecordKey::new(format!("p{}", i % 7), "Observation", format!("o{i}"));
        v.put(&care("nurse"), &k, &json!({"i": i, "pad": "y".repeat(40)}))
            .unwrap();
    }
    v.set_retention_days(&ctx, 30).unwrap();
    let before_prune = v.signed_checkpoint(&ctx).unwrap();
    let vkey = v.verifier_key(&ctx).unwrap();
    v.sync().unwrap();
    // Every frame so far, by seq, before any is pruned.
    let mut frames: Vec<Vec<u8>> = raw_segment_frames(&path)
        .into_iter()
        .flat_map(|(_, f)| f)
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let pruned = v.prune_log(&ctx, Some(now + 31 * 86_400_000)).unwrap();
    assert!(
        pruned.segments_dropped > 0 && pruned.first_kept > 0,
        "{pruned:?}"
    );
    v.update_erasure_ledger(&ctx, &ledger).unwrap();
    let report = v.backup(&admin(), &sets).unwrap();
    drop(v);

    let dest = dir.path().join("restored");
    let mut opts = restore_opts(Some(&ledger));
    opts.vault = VaultOptions {
        opener: admin(),
        ..small_segments()
    };
    Vault::restore(&report.dir, &dest, raw_key(), opts).unwrap();
    let r = Vault::open_with(&dest, raw_key(), small_segments()).unwrap();
    r.verify(&ctx, None).unwrap();
    r.verify(&ctx, Some(&report.checkpoint)).unwrap();
    assert!(
        report.dir.join("log/tree").exists(),
        "the backup carries the tree node file"
    );
    let signed = r.signed_checkpoint(&ctx).unwrap();
    assert_eq!(r.verifier_key(&ctx).unwrap(), vkey);
    r.sync().unwrap();

    // The oracle tree: the frames saved before the prune up to the prune point, then the
    // restored segments' frames.
    let restored = raw_segment_frames(&dest);
    assert!(
        restored[0].0 >= pruned.first_kept,
        "pruned segments stay pruned"
    );
    frames.truncate(restored[0].0 as usize);
    for (first, f) in restored {
        assert_eq!(first as usize, frames.len(), "segments continue the log");
        frames.extend(f);
    }
    let mut model = MemoryTree::new();
    for f in &frames {
        model.push(medvault_verify::leaf_hash(f)).unwrap();
    }
    let vk = VerifierKey::parse(&vkey).unwrap();
    let old = Checkpoint::open(&before_prune.note, &vk).unwrap();
    let new = Checkpoint::open(&signed.note, &vk).unwrap();
    assert_eq!(model.root_at(old.tree_size).unwrap(), old.root);
    assert_eq!(model.root_at(new.tree_size).unwrap(), new.root);
    // The restored log extends the checkpoint signed before the prune.
    let proof = r
        .prove_consistency(&ctx, old.tree_size, Some(new.tree_size))
        .unwrap();
    old.verify_extends(&new, &ConsistencyProof::from_text(&proof).unwrap())
        .unwrap();
    // A pruned entry, and one kept, are proved in the restored tree.
    for seq in [
        0,
        pruned.first_kept - 1,
        pruned.first_kept,
        new.tree_size - 1,
    ] {
        let text = r.prove_inclusion(&ctx, seq, Some(new.tree_size)).unwrap();
        let (p, leaf) = InclusionProof::from_text(&text).unwrap();
        assert_eq!(
            leaf,
            medvault_verify::leaf_hash(&frames[seq as usize]),
            "entry {seq}"
        );
        p.verify(&leaf, &new.root).unwrap();
    }
}

/// The names in directory `p`, sorted (empty when it does not exist).
fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_backup_into_its_vault_or_a_restore_into_its_backup_is_refused_before_anything_is_written() {
    // Guards the breaker finding: `backup VAULT VAULT/sets` was accepted (the backup set
    // then sits inside what it copies), and so was `restore BACKUP BACKUP/x`. Oracle: the
    // directory listings before and after.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clinic");
    let v = one_patient_vault(&src);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let (top, log) = (names(&src), names(&src.join("log")));
    for dest in [
        src.clone(),
        src.join("sets"),
        src.join("log").join("sets"),
        src.join("missing").join("..").join("sets"),
        dir.path().join(".").join("clinic").join("sets"),
        link.join("sets"),
        link.clone(),
    ] {
        match v.backup(&admin(), &dest) {
            Err(Error::InvalidInput(i)) => {
                assert_eq!(i.kind, medvault::InputKind::Backup);
                assert!(i.detail.contains("vault directory"), "{i}");
            }
            other => panic!("a backup into {dest:?} is refused, gave {other:?}"),
        }
        assert_eq!(
            names(&src),
            top,
            "nothing written into the vault for {dest:?}"
        );
        assert_eq!(names(&src.join("log")), log, "{dest:?}");
    }
    // A sibling whose name starts with the vault's is outside it.
    let sets = dir.path().join("clinic-sets");
    let rb = v.backup(&admin(), &sets).unwrap();
    let inside = names(&rb.dir);
    let o = without_ledger();
    for dest in [rb.dir.join("restored"), rb.dir.join("log").join("restored")] {
        match Vault::restore(&rb.dir, &dest, raw_key(), o.clone()) {
            Err(Error::InvalidInput(i)) => assert!(i.detail.contains("backup directory"), "{i}"),
            other => panic!("a restore into {dest:?} is refused, gave {other:?}"),
        }
        assert!(!dest.exists());
        assert_eq!(names(&rb.dir), inside, "nothing written into the backup");
    }
    Vault::restore(&rb.dir, &dir.path().join("restored"), raw_key(), o).unwrap();
}

#[test]
fn errors_name_what_exists_and_what_is_missing() {
    // Guards the breaker findings: a second legal hold of one name said "a vault already
    // exists"; a restore of a missing backup directory, or with a missing ledger file,
    // was reported as an integrity failure (tampering) instead of "not found".
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create_with(dir.path().join("clinic"), raw_key(), options()).unwrap();
    v.set_legal_hold(&admin(), "case-1", "litigation").unwrap();
    let e = v
        .set_legal_hold(&admin(), "case-1", "litigation")
        .unwrap_err();
    assert_eq!(e.kind_name(), "already_exists");
    assert_eq!(e.to_string(), "a legal hold named case-1 already exists");
    assert_eq!(v.legal_holds(&admin()).unwrap().len(), 1);

    let dest = dir.path().join("restored");
    let r = Vault::restore(
        &dir.path().join("no-such-backup"),
        &dest,
        raw_key(),
        without_ledger(),
    );
    assert!(matches!(r, Err(Error::NotFound)), "{r:?}");
    let rb = v.backup(&admin(), &dir.path().join("sets")).unwrap();
    let missing = dir.path().join("no-such.ledger");
    let r = Vault::restore(&rb.dir, &dest, raw_key(), restore_opts(Some(&missing)));
    assert!(matches!(r, Err(Error::NotFound)), "{r:?}");
    assert!(!dest.exists() && !missing.exists());
    // The destination exists: said as such.
    let e = Vault::restore(&rb.dir, dir.path(), raw_key(), restore_opts(None)).unwrap_err();
    assert_eq!(e.kind_name(), "already_exists");
    assert!(e.to_string().contains("restore destination"), "{e}");
}

#[test]
fn a_manifest_with_crlf_line_ends_or_a_file_listed_twice_is_refused() {
    // Guards the breaker finding: the MANIFEST parser read CR LF line ends and a file line
    // given twice (its MAC is over the re-encoded text, so both passed it). Oracle: the
    // manifest's own lines, edited as text; the untouched manifest restores.
    let dir = tempfile::tempdir().unwrap();
    let v = one_patient_vault(&dir.path().join("clinic"));
    let rb = v.backup(&admin(), &dir.path().join("sets")).unwrap();
    let path = rb.dir.join(medvault::backup::MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let file_line = text.lines().find(|l| l.starts_with("file ")).unwrap();
    let created_line = text.lines().find(|l| l.starts_with("created_ms ")).unwrap();
    let dest = dir.path().join("restored");
    let o = without_ledger();
    for (what, bad) in [
        ("CR LF line ends", text.replace('\n', "\r\n")),
        ("one CR LF", text.replacen('\n', "\r\n", 1)),
        (
            "a file line twice",
            text.replacen(file_line, &format!("{file_line}\n{file_line}"), 1),
        ),
        (
            "a file line after the MAC",
            format!(
                "{}{file_line}\n",
                text.replacen(&format!("{file_line}\n"), "", 1)
            ),
        ),
        ("no final newline", text.trim_end().to_owned()),
        (
            "a word added",
            text.replacen(created_line, &format!("{created_line} extra"), 1),
        ),
    ] {
        assert_ne!(bad, text, "{what}");
        std::fs::write(&path, &bad).unwrap();
        match Vault::restore(&rb.dir, &dest, raw_key(), o.clone()) {
            Err(e @ Error::Integrity { .. }) => {
                assert!(
                    e.to_string().contains("MANIFEST is malformed"),
                    "{what}: {e}"
                )
            }
            other => panic!("{what}: refused as malformed, gave {other:?}"),
        }
        assert!(!dest.exists());
    }
    std::fs::write(&path, &text).unwrap();
    Vault::restore(&rb.dir, &dest, raw_key(), o).unwrap();
}
