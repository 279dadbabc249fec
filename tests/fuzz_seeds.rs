//! Replays every fuzz target's committed seed corpus (`fuzz/seeds/<target>/`) and a
//! freshly built set of seeds through the same checks the fuzz targets run
//! (`medvault_testkit`, and through it `medvault::testing::fuzz`), so the corpus is exercised by a plain `cargo test` on stable.
//!
//! `MEDVAULT_BLESS=1 cargo test --test fuzz_seeds` rewrites the generated seeds (files
//! named `gen-*`); seeds added by hand or minimized from a crash keep their names.

use std::path::{Path, PathBuf};

use medvault_testkit as fuzzing;

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

fn bless() -> bool {
    std::env::var_os("MEDVAULT_BLESS").is_some_and(|v| v == "1")
}

fn replay(target: &str) {
    let fresh: Vec<(String, Vec<u8>)> = fuzzing::seeds()
        .into_iter()
        .filter(|(t, _, _)| *t == target)
        .map(|(_, name, bytes)| (name, bytes))
        .collect();
    assert!(!fresh.is_empty(), "no generated seed for {target}");
    let dir = seed_dir(target);
    if bless() {
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (name, bytes) in &fresh {
            std::fs::write(dir.join(format!("gen-{name}")), bytes).expect("write a seed");
        }
    }
    for (name, bytes) in &fresh {
        eprintln!("{target}: generated seed {name}");
        assert!(fuzzing::check(target, bytes));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (seeds missing?)", dir.display()))
        .map(|e| e.expect("read the seed directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no committed seed", dir.display());
    for f in &files {
        eprintln!("{target}: {}", f.display());
        let bytes = std::fs::read(f).expect("read a seed");
        assert!(fuzzing::check(target, &bytes));
    }
}

#[test]
fn every_target_has_seeds() {
    for t in fuzzing::TARGETS {
        assert!(seed_dir(t).is_dir() || bless(), "fuzz/seeds/{t} is missing");
    }
}

macro_rules! seed_tests {
    ($($name:ident => $target:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay($target);
            }
        )*
    };
}

seed_tests!(
    seeds_header => "header",
    seeds_index => "index",
    seeds_subject_entry => "subject_entry",
    seeds_record => "record",
    seeds_log => "log",
    seeds_checkpoint => "checkpoint",
    seeds_segment => "segment",
    seeds_anchor => "anchor",
    seeds_model => "model",
    seeds_tamper => "tamper",
);
