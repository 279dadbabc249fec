//! Crash safety of key rotation (issue 4, acceptance 1; issue 14, acceptance 4): a child
//! process rotating the data keys of the 1,144 patients is killed (SIGKILL) at 30 random
//! instants; children rotating the root key, and the vault KEK, over and over are killed
//! until at least 30 kills have landed inside a rotation of each kind, under
//! `Durability::Writes` and `Durability::Every`. After each kill the vault opens (with
//! exactly one root key, and its header is never refused as put back), every record opens
//! with exactly one key version, and a resumed rotation finishes.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::crash::{CrashChild, child_command, child_env};
use medvault::{
    AccessContext, Action, Durability, Error, KeySource, Purpose, RecordKey, RotationScope, Vault,
    VaultOptions,
};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const CHILD_ENV: &str = "MEDVAULT_ROTATION_CHILD";
const DIR_ENV: &str = "MEDVAULT_ROTATION_DIR";
const KEY_ENV: &str = "MEDVAULT_ROTATION_KEY";
const DURABILITY_ENV: &str = "MEDVAULT_ROTATION_DURABILITY";
/// Kills that must land inside a rotation, per rotation kind and durability.
const INSIDE: usize = 30;
/// Give up (fail) after this many kills.
const MAX_KILLS: usize = 150;

fn ctx() -> AccessContext {
    AccessContext::new("rotation-crash-test", Purpose::Maintenance)
}

fn data_dir() -> PathBuf {
    common::fhir_data_dir().join("1144-patients")
}

/// The raw root key of generation `g`.
fn key(g: u32) -> KeySource {
    let mut k = [0x5a; 32];
    k[..4].copy_from_slice(&g.to_be_bytes());
    KeySource::raw(k)
}

fn options(durability: Durability) -> VaultOptions {
    VaultOptions {
        durability,
        // 1,144 subjects: 18 batches, so kills land between batches too.
        kek_rewrap_batch: 64,
        ..VaultOptions::default()
    }
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

/// The child: runs the rotation named by `CHILD_ENV` until killed (or done). "root" and
/// "kek" rotate over and over, printing `start N` before and `rotated N` after each
/// rotation to generation N.
#[test]
#[ignore = "child process of the crash tests"]
fn rotation_child() {
    let Some((kind, dir)) = child_env(CHILD_ENV, DIR_ENV) else {
        return;
    };
    let g: u32 = std::env::var(KEY_ENV).unwrap().parse().unwrap();
    let durability = match std::env::var(DURABILITY_ENV).as_deref() {
        Ok("every") => Durability::Every,
        _ => Durability::Writes,
    };
    let v = Vault::open_with(&dir, key(g), options(durability)).unwrap();
    println!("ready");
    match kind.as_str() {
        "data" => {
            v.rotate_data_keys(&ctx(), &RotationScope::All, &mut |_| {})
                .unwrap();
        }
        "root" => {
            for n in g + 1.. {
                println!("start {n}");
                v.rotate_root_key(
                    &ctx(),
                    key(n),
                    medvault::danger::insecure_kdf_params(),
                    &mut |_| {},
                )
                .unwrap();
                println!("rotated {n}");
            }
        }
        _ => loop {
            let n = v.stats().unwrap().kek_generation + 1;
            println!("start {n}");
            v.rotate_vault_kek(&ctx(), &mut |_| {}).unwrap();
            println!("rotated {n}");
        },
    }
    println!("done");
}

/// Every record written to a test vault, in order.
type Records = Vec<(RecordKey, Value)>;

/// A vault of the test data's patients in a fresh temporary folder: (the folder, kept
/// alive by the caller; the vault's path; every record written).
fn fixture() -> (tempfile::TempDir, PathBuf, Records) {
    let data = data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("v");
    let all = build(&dir, &data);
    (tmp, dir, all)
}

/// Starts the child, waits for it to have opened the vault, kills it after `delay`.
/// Returns its stdout after the ready line.
fn run_and_kill(kind: &str, dir: &Path, g: u32, durability: &str, delay: Duration) -> String {
    let mut child = CrashChild::spawn(
        child_command("rotation_child")
            .env(CHILD_ENV, kind)
            .env(DIR_ENV, dir)
            .env(KEY_ENV, g.to_string())
            .env(DURABILITY_ENV, durability),
    );
    assert!(
        child.wait_ready(),
        "the rotation child did not start (it must print ready before the kill)"
    );
    let killed = child.kill_after(delay);
    assert!(
        killed.finished_or_killed(),
        "the rotation child died by itself: {}",
        killed.stderr
    );
    killed.stdout
}

/// From a looping child's output: the last generation it finished rotating to, and
/// whether it was killed inside a rotation (its last line is `start N`).
fn last_rotation(stdout: &str, from: u32) -> (u32, bool) {
    let mut done = from;
    let mut inside = false;
    for l in stdout.lines() {
        if let Some(n) = l.strip_prefix("rotated ") {
            done = n.trim().parse().unwrap();
            inside = false;
        } else if l.starts_with("start ") {
            inside = true;
        }
    }
    (done, inside)
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn data_key_rotation_survives_sigkill_30_times() {
    let (_tmp, dir, all) = fixture();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xD47A);
    let (mut interrupted, mut finished) = (0, 0);
    for _ in 0..30 {
        let out = run_and_kill(
            "data",
            &dir,
            0,
            "writes",
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
        } else if out.contains("done") {
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

/// Kills a child rotating the root key over and over until [`INSIDE`] kills landed inside
/// a rotation. After each: exactly one of the two candidate keys opens (the other is a
/// wrong key, never an integrity error), every record opens, the log verifies.
fn root_rotation_survives(durability: &str, seed: u64) {
    let (_tmp, dir, all) = fixture();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut g = 0u32;
    let (mut inside, mut old_key, mut new_key) = (0, 0, 0);
    for kill in 0.. {
        assert!(
            kill < MAX_KILLS,
            "only {inside} kills inside a root rotation"
        );
        if inside >= INSIDE {
            break;
        }
        let out = run_and_kill(
            "root",
            &dir,
            g,
            durability,
            Duration::from_millis(rng.gen_range(5..60)),
        );
        let (done, mid) = last_rotation(&out, g);
        // The header is replaced in one step: the last finished generation's key, or
        // (killed between the header write and the `rotated` line) the next one.
        let v = match Vault::open(&dir, key(done)) {
            Ok(v) => {
                g = done;
                old_key += usize::from(mid);
                v
            }
            Err(Error::WrongKey) if mid => {
                new_key += 1;
                g = done + 1;
                Vault::open(&dir, key(g)).unwrap()
            }
            Err(e) => panic!("after a kill ({out:?}): the vault does not open: {e}"),
        };
        inside += usize::from(mid);
        check(&v, &all);
        v.verify(&ctx(), None).unwrap();
        assert_eq!(v.stats().unwrap().root_generation, g);
        drop(v);
        // Exactly one key opens: the other candidate is a wrong key.
        let other = if g == done { done + 1 } else { done };
        assert!(matches!(
            Vault::open(&dir, key(other)),
            Err(Error::WrongKey)
        ));
    }
    eprintln!(
        "root-key rotation ({durability}): {inside} kills inside a rotation ({old_key} left the old key, {new_key} the new one); generation {g}"
    );
}

/// Kills a child rotating the vault KEK over and over until [`INSIDE`] kills landed
/// inside a rotation. After each: the vault opens, every record opens (entries under
/// either KEK), a pending rotation resumes and finishes, the log verifies.
fn kek_rotation_survives(durability: &str, seed: u64) {
    let (_tmp, dir, all) = fixture();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut inside, mut pending) = (0, 0);
    for kill in 0.. {
        assert!(
            kill < MAX_KILLS,
            "only {inside} kills inside a KEK rotation"
        );
        if inside >= INSIDE {
            break;
        }
        let out = run_and_kill(
            "kek",
            &dir,
            0,
            durability,
            Duration::from_millis(rng.gen_range(5..150)),
        );
        let (_, mid) = last_rotation(&out, 0);
        inside += usize::from(mid);
        let v = Vault::open(&dir, key(0))
            .unwrap_or_else(|e| panic!("after a kill ({out:?}): the vault does not open: {e}"));
        check(&v, &all);
        if v.vault_kek_rotation_pending() {
            pending += 1;
            let before = v.stats().unwrap().kek_generation;
            v.rotate_vault_kek(&ctx(), &mut |_| {}).unwrap();
            assert!(!v.vault_kek_rotation_pending());
            assert_eq!(v.stats().unwrap().kek_generation, before + 1);
            check(&v, &all);
        }
        v.verify(&ctx(), None).unwrap();
    }
    eprintln!(
        "vault-KEK rotation ({durability}): {inside} kills inside a rotation, {pending} left it pending and were resumed"
    );
    assert!(pending >= 1, "no kill left a KEK rotation pending");
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn root_key_rotation_survives_sigkill_inside_30_times_durability_writes() {
    root_rotation_survives("writes", 0x2007);
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn root_key_rotation_survives_sigkill_inside_30_times_durability_every() {
    root_rotation_survives("every", 0x2008);
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn kek_rotation_survives_sigkill_inside_30_times_durability_writes() {
    kek_rotation_survives("writes", 0x4E4B);
}

#[test]
#[cfg_attr(
    missing_fhir_ndjson,
    ignore = "needs fhir-r4-ndjson (README: Test data)"
)]
fn kek_rotation_survives_sigkill_inside_30_times_durability_every() {
    kek_rotation_survives("every", 0x4E4C);
}
