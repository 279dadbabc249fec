//! Guards issue "storage v2" (records bound to the log): a storage tamperer without the
//! key puts back, deletes, splices or resurrects stored values, or cuts and rolls back
//! the files; each named case fails on read (splice, dropped field) or fails `verify` /
//! open (the others), naming what differs. The oracle is the raw bytes the test itself
//! saved and put back, and the documented record layout (tests/common `RecordLayout`).
//! The cases on stored values run on memory storage and on PostgreSQL, where the
//! tamperer is a DBA writing SQL (tests/pg_dba; issue 17 acceptance 1); the cases on
//! files run on sled.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;
mod pg_dba;

use common::{RecordLayout, ctx, options, raw_get, raw_key, raw_with_prefix};
use medvault::danger::RawAccess;
use medvault::{Error, IndexSpec, Normalization, RecordKey, Result, Vault};
use serde_json::{Value, json};

fn key(id: &str) -> RecordKey {
    RecordKey::new("alice", "Patient", id)
}

fn is_integrity<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Integrity { .. }))
}

/// `verify` fails with an integrity error whose text contains every one of `words`.
fn verify_fails_naming(vault: &Vault, words: &[&str]) {
    let r = vault.verify(&ctx(), None);
    let msg = match &r {
        Err(e @ Error::Integrity { .. }) => e.to_string(),
        other => panic!("verify should fail with an integrity error, gave {other:?}"),
    };
    for w in words {
        assert!(msg.contains(w), "verify's error does not name {w:?}: {msg}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn only_record(storage: &dyn RawAccess) -> (Vec<u8>, Vec<u8>) {
    let r = raw_with_prefix(storage, b'r');
    assert_eq!(r.len(), 1);
    r.into_iter().next().unwrap()
}

fn record_rollback_fails_verify(storage: &dyn RawAccess, vault: &Vault) {
    vault
        .put(&ctx(), &key("p1"), &json!({"birthDate": "1970-01-01"}))
        .unwrap();
    let (sk, old) = only_record(storage);
    vault
        .put(&ctx(), &key("p1"), &json!({"birthDate": "1980-02-02"}))
        .unwrap();
    vault.verify(&ctx(), None).unwrap();
    storage.raw_put(&sk, &old);
    // A read alone does not know the latest write (SECURITY.md says so); verify does.
    verify_fails_naming(vault, &["record", &hex(&sk), "rolled back"]);
}

fn a_record_spliced_from_two_writes_fails_on_read(storage: &dyn RawAccess, vault: &Vault) {
    let k = key("p1");
    vault
        .put(
            &ctx(),
            &k,
            &json!({"birthDate": "1970-01-01", "name": "Ann"}),
        )
        .unwrap();
    let (sk, first) = only_record(storage);
    vault
        .put(
            &ctx(),
            &k,
            &json!({"birthDate": "1980-02-02", "name": "Bea"}),
        )
        .unwrap();
    let second = raw_get(storage, &sk);
    let a = RecordLayout::parse(&first).unwrap();
    let mut b = RecordLayout::parse(&second).unwrap();
    // birthDate (stored first, names in order) of write 1, the rest of write 2.
    b.fields[0] = a.fields[0].clone();
    storage.raw_put(&sk, &b.encode());
    let r: Result<Value> = vault.get(&ctx(), &k);
    assert!(is_integrity(&r), "a spliced record read as {r:?}");
    let r: Result<Value> = vault.get_fields(&ctx(), &k, &["birthDate"]);
    assert!(is_integrity(&r), "a spliced field read as {r:?}");
}

fn a_dropped_field_fails_on_read(storage: &dyn RawAccess, vault: &Vault) {
    let k = key("p1");
    vault
        .put(
            &ctx(),
            &k,
            &json!({"birthDate": "1970-01-01", "name": "Ann"}),
        )
        .unwrap();
    let (sk, orig) = only_record(storage);
    let mut l = RecordLayout::parse(&orig).unwrap();
    l.fields.remove(0);
    storage.raw_put(&sk, &l.encode());
    let r: Result<Value> = vault.get(&ctx(), &k);
    assert!(
        is_integrity(&r),
        "a record with a dropped field read as {r:?}"
    );
    let r: Result<Value> = vault.get_fields(&ctx(), &k, &["name"]);
    assert!(is_integrity(&r), "{r:?}");
}

fn record_deletion_fails_verify(storage: &dyn RawAccess, vault: &Vault) {
    vault.put(&ctx(), &key("p1"), &json!({"a": 1})).unwrap();
    let (sk, _) = only_record(storage);
    storage.raw_delete(&sk);
    verify_fails_naming(vault, &["record", &hex(&sk), "missing"]);
}

fn subject_entry_deletion_fails_verify(storage: &dyn RawAccess, vault: &Vault) {
    vault.put(&ctx(), &key("p1"), &json!({"a": 1})).unwrap();
    let subj = raw_with_prefix(storage, b'k');
    assert_eq!(subj.len(), 1);
    storage.raw_delete(&subj[0].0);
    verify_fails_naming(vault, &["subject entry", &hex(&subj[0].0), "missing"]);
}

fn index_entry_deletion_fails_verify(storage: &dyn RawAccess, vault: &Vault) {
    let spec =
        IndexSpec::new("Patient", "family", &["name[].family"], Normalization::Name).unwrap();
    vault.add_index(&ctx(), spec, &mut |_| {}).unwrap();
    vault
        .put(&ctx(), &key("p1"), &json!({"name": [{"family": "Smith"}]}))
        .unwrap();
    let entries = raw_with_prefix(storage, b'x');
    assert!(!entries.is_empty(), "the index wrote no entry");
    vault.verify(&ctx(), None).unwrap();
    storage.raw_delete(&entries[0].0);
    verify_fails_naming(vault, &["index entries"]);
}

fn resurrection_of_an_erased_subject_fails_verify(storage: &dyn RawAccess, vault: &Vault) {
    vault.put(&ctx(), &key("p1"), &json!({"a": 1})).unwrap();
    let before: Vec<_> = storage
        .dump()
        .into_iter()
        .filter(|(k, _)| matches!(k.first(), Some(b'k' | b'r')))
        .collect();
    assert_eq!(before.len(), 2);
    vault.erase_subject(&ctx(), "alice").unwrap();
    vault.verify(&ctx(), None).unwrap();
    for (k, v) in &before {
        storage.raw_put(k, v);
    }
    verify_fails_naming(vault, &["added or resurrected"]);
}

on_every_backend!(
    record_rollback_fails_verify,
    a_record_spliced_from_two_writes_fails_on_read,
    a_dropped_field_fails_on_read,
    record_deletion_fails_verify,
    subject_entry_deletion_fails_verify,
    index_entry_deletion_fails_verify,
    resurrection_of_an_erased_subject_fails_verify,
);

// ----- the files of a vault on disk --------------------------------------------------

fn disk_vault(dir: &std::path::Path, records: usize) {
    let v = Vault::create_with(dir, raw_key(), options()).unwrap();
    for i in 0..records {
        v.put(
            &ctx(),
            &key(&format!("p{i}")),
            &json!({"n": i, "pad": "x".repeat(200)}),
        )
        .unwrap();
    }
}

fn open_disk(dir: &std::path::Path) -> Result<Vault> {
    Vault::open_with(dir, raw_key(), options())
}

fn cut(path: &std::path::Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn the_sled_file_cut_to_4_kib_fails_open() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("v");
    disk_vault(&dir, 40);
    let db = dir.join("db").join("db");
    assert!(std::fs::metadata(&db).unwrap().len() > 4096);
    cut(&db, 4096);
    let r = open_disk(&dir);
    assert!(
        is_integrity(&r),
        "a vault whose sled file was cut opened: {:?}",
        r.err()
    );
}

#[test]
fn the_log_cut_fails_open() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("v");
    disk_vault(&dir, 20);
    let seg = dir.join("log").join(format!("{:020}.seg", 0));
    let len = std::fs::metadata(&seg).unwrap().len();
    cut(&seg, len / 2);
    let r = open_disk(&dir);
    let msg = format!("{:?}", r.as_ref().err());
    assert!(is_integrity(&r), "a vault whose log was cut opened: {msg}");
    assert!(
        msg.contains("ahead of the log") || msg.contains("behind its anchor"),
        "{msg}"
    );
}

#[test]
fn an_anchor_rollback_alone_changes_nothing_and_with_sled_rolled_back_fails_open() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("v");
    disk_vault(&dir, 5);
    let old_anchor = std::fs::read(dir.join("anchor")).unwrap();
    let old_copy = d.path().join("old");
    common::copy_tree(&dir, &old_copy);
    {
        let v = open_disk(&dir).unwrap();
        for i in 5..10 {
            v.put(&ctx(), &key(&format!("p{i}")), &json!({"n": i}))
                .unwrap();
        }
    }
    // The anchor alone put back: every read is unchanged, and verify passes.
    std::fs::write(dir.join("anchor"), &old_anchor).unwrap();
    {
        let v = open_disk(&dir).unwrap();
        for i in 0..10 {
            let got: Value = v.get(&ctx(), &key(&format!("p{i}"))).unwrap();
            assert_eq!(got["n"], json!(i));
        }
        v.verify(&ctx(), None).unwrap();
    }
    // The record store put back from the older copy, with the current anchor: refused.
    std::fs::remove_dir_all(dir.join("db")).unwrap();
    common::copy_tree(&old_copy.join("db"), &dir.join("db"));
    let r = open_disk(&dir);
    let msg = format!("{:?}", r.as_ref().err());
    assert!(is_integrity(&r), "a rolled-back record store opened: {msg}");
    assert!(msg.contains("behind the log"), "{msg}");
}

// ----- issue 13 acceptance 3: a tamper sweep over every file a vault really has ------

fn relative_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// What the tampered vault did: whether every read returned exactly the truth, and
/// whether verify passed.
enum Outcome {
    OpenRefused(Error),
    Opened {
        reads_exact: bool,
        wrong_as_good: usize,
        verify: Result<u64>,
    },
}

fn try_vault(
    dir: &std::path::Path,
    truth: &std::collections::BTreeMap<RecordKey, Value>,
) -> Outcome {
    let v = match open_disk(dir) {
        Ok(v) => v,
        Err(e) => return Outcome::OpenRefused(e),
    };
    let mut reads_exact = true;
    let mut wrong_as_good = 0;
    for (k, want) in truth {
        match v.get::<Value>(&ctx(), k) {
            Ok(got) if &got == want => {}
            Ok(_) => {
                reads_exact = false;
                wrong_as_good += 1;
            }
            Err(_) => reads_exact = false,
        }
    }
    for s in ["alice", "bob", "carol"] {
        let want: Vec<&RecordKey> = truth.keys().filter(|k| k.subject == s).collect();
        match v.records_of::<Value>(&ctx(), s, None) {
            Ok(list) => {
                // (Listed in storage-key order: compare as sorted lists.)
                let mut got: Vec<&RecordKey> = list.iter().map(|(k, _)| k).collect();
                got.sort();
                if got != want || list.iter().any(|(k, x)| truth.get(k) != Some(x)) {
                    reads_exact = false;
                }
            }
            Err(_) => reads_exact = false,
        }
    }
    let verify = v.verify(&ctx(), None);
    Outcome::Opened {
        reads_exact,
        wrong_as_good,
        verify,
    }
}

/// Every file of a real vault directory (header, lock, anchor, log segment, sled's
/// files), each alone: put back from an older copy of the vault, cut to 4 KiB, cut to
/// half, deleted, and flipped at 100 random places. Each case either changes nothing
/// any read returns, or makes open or verify fail with an integrity error (a deleted
/// header is "no vault here": `NotFound`); a read that returned an older or altered
/// value as good must be followed by a failing verify.
#[test]
fn every_vault_file_tampered_is_caught_or_harmless() {
    use rand::{Rng, SeedableRng};
    let d = tempfile::tempdir().unwrap();
    let live = d.path().join("live");
    let old = d.path().join("old");
    let work = d.path().join("work");
    let mut truth = std::collections::BTreeMap::new();
    let rk = |s: &str, i: usize| RecordKey::new(s, "Observation", format!("o{i}"));
    {
        let v = Vault::create_with(&live, raw_key(), options()).unwrap();
        for i in 0..12 {
            let s = ["alice", "bob", "carol"][i % 3];
            let val = json!({"n": i, "pad": "x".repeat(300), "gen": 1});
            v.put(&ctx(), &rk(s, i), &val).unwrap();
            truth.insert(rk(s, i), val);
        }
    }
    common::copy_tree(&live, &old);
    {
        let v = open_disk(&live).unwrap();
        for i in (0..12).step_by(2) {
            let s = ["alice", "bob", "carol"][i % 3];
            let val = json!({"n": i, "gen": 2});
            v.put(&ctx(), &rk(s, i), &val).unwrap();
            truth.insert(rk(s, i), val);
        }
        v.delete(&ctx(), &rk("bob", 1)).unwrap();
        truth.remove(&rk("bob", 1));
        for i in 12..16 {
            let val = json!({"n": i, "gen": 2});
            v.put(&ctx(), &rk("carol", i), &val).unwrap();
            truth.insert(rk("carol", i), val);
        }
    }
    let files = relative_files(&live);
    assert!(
        files.iter().any(|f| f.starts_with("log")) && files.iter().any(|f| f.starts_with("db")),
        "{files:?}"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7a3e);
    let (mut refused, mut verify_failed, mut harmless) = (0, 0, 0);
    for f in &files {
        for attack in ["rollback", "cut 4 KiB", "cut half", "delete", "flip 100"] {
            let _ = std::fs::remove_dir_all(&work);
            common::copy_tree(&live, &work);
            let p = work.join(f);
            let len = std::fs::metadata(&p).unwrap().len();
            match attack {
                "rollback" => match std::fs::read(old.join(f)) {
                    Ok(b) => std::fs::write(&p, b).unwrap(),
                    Err(_) => std::fs::remove_file(&p).unwrap(),
                },
                "cut 4 KiB" => cut(&p, len.min(4096)),
                "cut half" => cut(&p, len / 2),
                "delete" => std::fs::remove_file(&p).unwrap(),
                _ => {
                    let mut b = std::fs::read(&p).unwrap();
                    if !b.is_empty() {
                        for _ in 0..100 {
                            let at = rng.gen_range(0..b.len());
                            b[at] ^= rng.gen_range(1..=255u8);
                        }
                    }
                    std::fs::write(&p, b).unwrap();
                }
            }
            let what = format!("{} {attack}", f.display());
            match try_vault(&work, &truth) {
                Outcome::OpenRefused(e) => {
                    let ok = matches!(e, Error::Integrity { .. } | Error::LogTampered { .. })
                        || (f.as_os_str() == "header"
                            && matches!(e, Error::NotFound | Error::WrongKey));
                    assert!(
                        ok,
                        "{what}: open failed, but not as an integrity error: {e:?}"
                    );
                    refused += 1;
                }
                Outcome::Opened {
                    reads_exact,
                    wrong_as_good,
                    verify,
                } => match verify {
                    Err(Error::Integrity { .. } | Error::LogTampered { .. }) => verify_failed += 1,
                    Err(e) => panic!("{what}: verify failed, but not as an integrity error: {e:?}"),
                    Ok(_) => {
                        assert!(
                            reads_exact && wrong_as_good == 0,
                            "{what}: reads changed ({wrong_as_good} wrong values served as \
                             good) and verify passed"
                        );
                        harmless += 1;
                    }
                },
            }
        }
    }
    eprintln!(
        "tamper sweep over {} files: {refused} refused at open, {verify_failed} failed \
         verify, {harmless} changed nothing a read returns",
        files.len()
    );
}

// ----- deleted objections and erasure marks ------------------------------------------

/// A closed disk vault with patient `objector` objecting to research (an `'o'` key) and
/// patient `gone` erased (an `'e'` key); then the keys of the record store (sled, read
/// with sled itself, not medvault) that start with `prefix` are deleted.
fn delete_marker_keys(dir: &std::path::Path, prefix: u8) {
    {
        let v = Vault::create_with(dir, raw_key(), options()).unwrap();
        let pr = medvault::AccessContext::new("dpo-1", medvault::Purpose::PatientRequest);
        for s in ["objector", "gone", "stays"] {
            v.put(&ctx(), &RecordKey::new(s, "Patient", s), &json!({"a": 1}))
                .unwrap();
        }
        v.set_research_objection(&pr, "objector", true).unwrap();
        v.erase_subject(&pr, "gone").unwrap();
        v.verify(&ctx(), None).unwrap();
    }
    let db = sled::open(dir.join("db")).unwrap();
    let keys: Vec<_> = db
        .scan_prefix([prefix])
        .map(|r| r.unwrap().0.to_vec())
        .collect();
    assert_eq!(keys.len(), 1, "one {:?} key", prefix as char);
    db.remove(&keys[0]).unwrap();
    db.flush().unwrap();
}

/// The state digest covers the whole record store: deleting a research objection
/// (the patient would silently re-enter research exports) or an erasure mark (the
/// erased patient could be re-created by a re-import) from a closed vault's files is
/// reported by `verify` as an integrity error naming the deleted key (`'o'` is 0x6f,
/// `'e'` 0x65). Open alone does not notice (SECURITY.md "What is not protected": a read
/// does not know the latest state; run `verify`).
#[test]
fn a_deleted_objection_or_erasure_mark_fails_verify() {
    for prefix in [b'o', b'e'] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        delete_marker_keys(&path, prefix);
        let v = open_disk(&path).unwrap();
        verify_fails_naming(
            &v,
            &[
                "state digest",
                &format!("key {:02x}", prefix),
                "missing (deleted)",
            ],
        );
    }
}
