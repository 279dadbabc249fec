//! Crash safety of key rotation (issue 4, acceptance 1): a child process rotating the data
//! keys of the 1,144 patients is killed (SIGKILL) at 30 random instants, a child rotating
//! the root key at 20; after each kill the vault opens, every record opens with exactly
//! one key version, and a resumed rotation finishes.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::crash::{CrashChild, child_command, child_env};
use medvault::{AccessContext, Action, Error, KeySource, Purpose, RecordKey, RotationScope, Vault};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const CHILD_ENV: &str = "MEDVAULT_ROTATION_CHILD";
const DIR_ENV: &str = "MEDVAULT_ROTATION_DIR";
const KEY_ENV: &str = "MEDVAULT_ROTATION_KEY";

fn ctx() -> AccessContext {
    AccessContext::new("rotation-crash-test", Purpose::Maintenance)
}

fn data_dir() -> Option<PathBuf> {
    Some(common::fhir_data_dir()?.join("1144-patients"))
}

fn key(generation: u8) -> KeySource {
    KeySource::raw([generation; 32])
}

/// Imports the 1,144 Patient resources; returns their keys and values.
fn build(dir: &Path, data: &Path) -> Vec<(RecordKey, Value)> {
    let v = Vault::create_with(dir, key(0), medvault::VaultOptions::default()).unwrap();
    let text = std::fs::read_to_string(data.join("Patient.000.ndjson")).unwrap();
    let all: Vec<(RecordKey, Value)> = text
        .lines()
        .map(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            let id = r["id"].as_str().unwrap().to_owned();
            (RecordKey::new(id.clone(), "Patient", id), r)
        })
        .collect();
    for chunk in all.chunks(500) {
        v.put_many(&ctx(), chunk.iter().map(|(k, r)| (k, r)), Action::Import)
            .unwrap();
    }
    assert_eq!(all.len(), 1144);
    all
}

/// Every record opens and equals its input; every stored record names one key version
/// that its subject still holds (checked by the read itself).
fn check(v: &Vault, all: &[(RecordKey, Value)]) {
    for (k, r) in all {
        let got: Value = v.get(&ctx(), k).unwrap();
        assert_eq!(&got, r);
    }
}

/// The child: runs the rotation named by `CHILD_ENV` until killed (or done).
#[test]
#[ignore = "child process of the crash tests"]
fn rotation_child() {
    let Some((kind, dir)) = child_env(CHILD_ENV, DIR_ENV) else {
        return;
    };
    let g: u8 = std::env::var(KEY_ENV).unwrap().parse().unwrap();
    let v = Vault::open(&dir, key(g)).unwrap();
    println!("ready");
    match kind.as_str() {
        "data" => {
            v.rotate_data_keys(&ctx(), &RotationScope::All, &mut |_| {})
                .unwrap();
        }
        _ => rotate_root(&v, g),
    }
    println!("done");
}

/// Every record written to a test vault, in order.
type Records = Vec<(RecordKey, Value)>;

/// A vault of the test data's patients in a fresh temporary folder: (the folder, kept
/// alive by the caller; the vault's path; every record written). `None` (skip) without
/// the test data.
fn fixture() -> Option<(tempfile::TempDir, PathBuf, Records)> {
    let data = data_dir()?;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let all = build(&dir, &data);
    Some((tmp, dir, all))
}

/// Rotates `v`'s root key from `key(g)` to `key(g + 1)`.
fn rotate_root(v: &Vault, g: u8) {
    v.rotate_root_key(
        &ctx(),
        key(g + 1),
        medvault::danger::insecure_kdf_params(),
        &mut |_| {},
    )
    .unwrap();
}

/// Starts the child, waits for it to have opened the vault, kills it after `delay`.
/// Returns whether it had finished before the kill.
fn run_and_kill(kind: &str, dir: &Path, g: u8, delay: Duration) -> bool {
    let mut child = CrashChild::spawn(
        child_command("rotation_child")
            .env(CHILD_ENV, kind)
            .env(DIR_ENV, dir)
            .env(KEY_ENV, g.to_string()),
    );
    child.wait_ready();
    child.kill_after(delay).stdout.contains("done")
}

#[test]
fn data_key_rotation_survives_sigkill_30_times() {
    let Some((_tmp, dir, all)) = fixture() else {
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xD47A);
    let (mut interrupted, mut finished) = (0, 0);
    for _ in 0..30 {
        let done = run_and_kill(
            "data",
            &dir,
            0,
            Duration::from_millis(rng.gen_range(0..200)),
        );
        let v = Vault::open(&dir, key(0)).unwrap();
        check(&v, &all);
        if v.data_key_rotation_pending().unwrap() {
            interrupted += 1;
            v.rotate_data_keys(&ctx(), &RotationScope::All, &mut |_| {})
                .unwrap();
            assert!(!v.data_key_rotation_pending().unwrap());
            check(&v, &all);
        } else if done {
            finished += 1;
        }
        v.verify(&ctx(), None).unwrap();
    }
    eprintln!(
        "data-key rotation: {interrupted} kills mid-rotation, {finished} runs finished first"
    );
    assert!(
        interrupted >= 10,
        "only {interrupted} of 30 kills hit a rotation in progress"
    );
}

#[test]
fn root_key_rotation_survives_sigkill_20_times() {
    let Some((_tmp, dir, all)) = fixture() else {
        return;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x2007);
    let mut g = 0u8;
    let (mut both, mut old_only, mut new_only) = (0, 0, 0);
    for _ in 0..20 {
        run_and_kill("root", &dir, g, Duration::from_millis(rng.gen_range(0..60)));
        // One handle at a time (sled locks the directory): first the old key.
        let v = match Vault::open(&dir, key(g)) {
            Ok(v) => v,
            Err(Error::WrongKey) => {
                // The rotation had finished: only the new key opens.
                let v = Vault::open(&dir, key(g + 1)).unwrap();
                new_only += 1;
                g += 1;
                check(&v, &all);
                v.verify(&ctx(), None).unwrap();
                continue;
            }
            Err(e) => panic!("vault does not open with the old key: {e}"),
        };
        // Opened with the old key: the rotation is pending (both keys open) or never began.
        check(&v, &all);
        drop(v);
        match Vault::open(&dir, key(g + 1)) {
            Ok(v) => {
                both += 1;
                check(&v, &all);
            }
            Err(Error::WrongKey) => old_only += 1,
            Err(e) => panic!("unexpected error opening with the new key: {e}"),
        }
        let v = Vault::open(&dir, key(g)).unwrap();
        rotate_root(&v, g);
        drop(v);
        assert!(matches!(Vault::open(&dir, key(g)), Err(Error::WrongKey)));
        g += 1;
        let v = Vault::open(&dir, key(g)).unwrap();
        check(&v, &all);
        v.verify(&ctx(), None).unwrap();
    }
    eprintln!(
        "root-key rotation kills: {both} mid-rotation (both keys open), {old_only} before it began, {new_only} after it finished"
    );
    assert!(both >= 1, "no kill hit a root-key rotation in progress");
}
