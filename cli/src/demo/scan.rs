//! The plaintext scan: does any file under a directory contain any of a set of strings
//! (names, identifiers) as raw bytes? One pass per file: a 2^24-bit filter on the first
//! three bytes of every needle, then a map from four-byte prefixes to candidates.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::exit::CliResult;

/// What a scan saw and found.
pub struct ScanResult {
    pub files: usize,
    pub bytes: u64,
    /// Distinct needles found at least once.
    pub hits: usize,
}

/// Scans every file under `dir` (recursively) for `needles` (each at least 4 bytes;
/// shorter ones are ignored, as they would match by chance).
pub fn scan(dir: &Path, needles: &[String]) -> CliResult<ScanResult> {
    scan_files(&files_under(dir)?, needles)
}

/// [`scan`] over the given files.
pub fn scan_files(files: &[PathBuf], needles: &[String]) -> CliResult<ScanResult> {
    let mut filter = vec![0u64; (1 << 24) / 64];
    let mut by_prefix: HashMap<[u8; 4], Vec<usize>> = HashMap::new();
    for (i, n) in needles.iter().enumerate() {
        if let [a, b, c, d, ..] = *n.as_bytes() {
            let k = prefix3(a, b, c);
            filter[k / 64] |= 1 << (k % 64);
            by_prefix.entry([a, b, c, d]).or_default().push(i);
        }
    }
    let mut found: HashSet<usize> = HashSet::new();
    let mut result = ScanResult {
        files: 0,
        bytes: 0,
        hits: 0,
    };
    for file in files {
        let bytes = std::fs::read(file)?;
        result.files += 1;
        result.bytes += bytes.len() as u64;
        for (i, w) in bytes.windows(4).enumerate() {
            let k = prefix3(w[0], w[1], w[2]);
            if filter[k / 64] & (1 << (k % 64)) == 0 {
                continue;
            }
            if let Some(cands) = by_prefix.get(&[w[0], w[1], w[2], w[3]]) {
                for &c in cands {
                    if bytes[i..].starts_with(needles[c].as_bytes()) {
                        found.insert(c);
                    }
                }
            }
        }
    }
    result.hits = found.len();
    Ok(result)
}

fn prefix3(a: u8, b: u8, c: u8) -> usize {
    (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> CliResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
