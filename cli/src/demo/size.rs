//! Where a vault's bytes go: live data per kind of key (records, access log, blind
//! indexes, keys), measured by a scan of the closed vault's store, against its size on
//! disk and the size of the input.

use std::path::Path;

use medvault::Error;
use medvault::storage::{SledOptions, SledStorage, Storage};

use crate::exit::CliResult;
use crate::human::bytes;

/// One report line (wrapped) explaining why the vault at `dir` (closed) is larger than
/// its `input_bytes` of NDJSON input. Key prefixes: docs/FORMAT.md "Storage key space".
pub fn explain(dir: &Path, input_bytes: u64) -> CliResult<String> {
    let store = SledStorage::open(dir, &SledOptions::default()).map_err(Error::from)?;
    let (mut records, mut log, mut log_entries, mut indexes, mut keys, mut other) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for item in store.scan(b"", None) {
        let (k, v) = item.map_err(Error::from)?;
        let n = (k.len() + v.len()) as u64;
        match k.first() {
            Some(b'r') => records += n,
            Some(b'x' | b'y' | b'i') => indexes += n,
            Some(b'k') => keys += n,
            _ => other += n,
        }
    }
    // The access log is not in the store (storage v2): its segment files, frame by frame
    // (docs/FORMAT.md "Log segment files": a 41-byte header, then `u32 len || len bytes`).
    let mut log_files = 0u64;
    if let Ok(entries) = std::fs::read_dir(dir.join("log")) {
        for e in entries.flatten() {
            let b = std::fs::read(e.path())?;
            log_files += b.len() as u64;
            let mut at = 41usize;
            while let Some(l) = b.get(at..at + 4) {
                let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                if at + 4 + len > b.len() {
                    break;
                }
                log += (4 + len) as u64;
                log_entries += 1;
                at += 4 + len;
            }
        }
    }
    let on_disk = store.size_on_disk().map_err(Error::from)? + log_files;
    drop(store);
    let live = records + log + indexes + keys + other;
    let per_entry = log.checked_div(log_entries).unwrap_or(0);
    Ok(format!(
        "  size       {} on disk for {} of input. Live data {}: records {} (each top-level \
         field sealed on its own: nonce, tag, key version), access log {} ({log_entries} \
         entries of about {per_entry} B: who, why, what, when, sealed and HMAC-chained), \
         blind indexes {}, keys and state {}; the other {} is the store's free space and \
         old page versions (sled is log-structured), reclaimed as it compacts",
        bytes(on_disk),
        bytes(input_bytes),
        bytes(live),
        bytes(records),
        bytes(log),
        bytes(indexes),
        bytes(keys + other),
        bytes(on_disk.saturating_sub(live)),
    ))
}
