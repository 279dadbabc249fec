//! Shared helpers of the integration tests: where the CC0 synthetic FHIR data lives.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

/// The directory of one FHIR NDJSON data set (`13-patients`, `1144-patients`), from
/// `$MEDVAULT_FHIR_DATA` or `$CARGO_MANIFEST_DIR/../shared/data/fhir-r4-ndjson`. `None`
/// (with a note on stderr) when absent, so the caller skips; under `CI=true` absence
/// is a failure.
pub fn fhir_data(set: &str) -> Option<PathBuf> {
    let base = std::env::var_os("MEDVAULT_FHIR_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fhir-r4-ndjson")
        });
    let d = base.join(set);
    if d.is_dir() {
        return Some(d);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "test data missing under CI: {}",
        d.display()
    );
    eprintln!("skipping: {} not found", d.display());
    None
}

/// Every file under `dir`, recursively, with its bytes.
pub fn read_all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let b = std::fs::read(&p).expect("read file");
                out.push((p, b));
            }
        }
    }
    out
}

/// The needles (non-empty) that occur somewhere in `hay`: one pass per distinct needle
/// length, each window looked up in a hash set, so thousands of needles cost little.
pub fn find_needles<'a>(hay: &[u8], needles: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
    use std::collections::{BTreeMap, HashSet};
    let mut by_len: BTreeMap<usize, HashSet<&[u8]>> = BTreeMap::new();
    for n in needles.iter().filter(|n| !n.is_empty()) {
        by_len.entry(n.len()).or_default().insert(n.as_slice());
    }
    let mut found = Vec::new();
    for (len, set) in by_len {
        for w in hay.windows(len) {
            if let Some(n) = set.get(w) {
                found.push(*n);
            }
        }
    }
    found
}
