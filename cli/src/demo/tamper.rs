//! Tampering with copies of the demo vault, as an attacker with write access to the files
//! would, and what the vault says about each copy. Nothing here touches the original.

use std::path::Path;

use medvault::storage::{SledOptions, SledStorage, Storage, WriteBatch};
use medvault::{AccessContext, Checkpoint, Error, KeySource, Vault};
use medvault_fhir::{self as fhir, ExportError};

use crate::exit::{CliResult, Failure};

/// One attack and the vault's answer.
pub struct Attack {
    pub what: &'static str,
    /// How it was caught (the error kind), or why it was not.
    pub answer: String,
    pub detected: bool,
}

/// Copies a (closed) vault directory.
pub fn copy_dir(from: &Path, to: &Path) -> CliResult {
    for file in super::scan::files_under(from)? {
        let rel = file
            .strip_prefix(from)
            .map_err(|_| Failure::other("copy: path outside the vault"))?;
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&file, &dest)?;
    }
    Ok(())
}

/// What the vault said, with the exit code `medvault` would give. Only an integrity
/// failure counts as detected: any other error would hide tampering behind noise.
fn answer_of(r: Result<(), Error>) -> (String, bool) {
    match r {
        Ok(()) => (
            "NOT detected: everything opened and verified".to_owned(),
            false,
        ),
        Err(e) => {
            let code = crate::exit::code_of(&e);
            (
                format!("exit {} - {e}", code as u8),
                code == crate::exit::Code::Integrity,
            )
        }
    }
}

/// Opens `copy` and reads every record of every subject, then verifies the access log
/// (against `checkpoint` when given).
fn read_everything(
    copy: &Path,
    key: KeySource,
    ctx: &AccessContext,
    checkpoint: Option<&Checkpoint>,
) -> Result<(), Error> {
    let vault = Vault::open(copy, key)?;
    match fhir::export_ndjson(&vault, ctx, &[], &mut std::io::sink(), &mut |_| {}) {
        Ok(_) => {}
        Err(ExportError::Vault(e)) => return Err(e),
        Err(ExportError::Output(e)) => return Err(e.into()),
        // Not reachable: every subject is exported, none named.
        Err(ExportError::NoRecords { .. }) => return Err(Error::NotFound),
    }
    vault.verify(ctx, checkpoint).map(|_| ())
}

/// Flips one bit of the header file.
pub fn header_byte(
    vault: &Path,
    copy: &Path,
    key: KeySource,
    ctx: &AccessContext,
) -> CliResult<Attack> {
    copy_dir(vault, copy)?;
    let path = copy.join("header");
    let mut bytes = std::fs::read(&path)?;
    let i = bytes.len() / 2;
    bytes[i] ^= 0x04;
    std::fs::write(&path, bytes)?;
    let (answer, detected) = answer_of(read_everything(copy, key, ctx, None));
    Ok(Attack {
        what: "one bit of the header flipped",
        answer,
        detected,
    })
}

/// Flips one bit of a stored value (the first under `prefix`), written back through sled
/// so that sled's own (non-cryptographic) checksums still match.
pub fn stored_value(
    vault: &Path,
    copy: &Path,
    prefix: u8,
    what: &'static str,
    key: KeySource,
    ctx: &AccessContext,
) -> CliResult<Attack> {
    copy_dir(vault, copy)?;
    {
        let st = SledStorage::open(copy, &SledOptions::default())
            .map_err(|e| Failure::other(e.to_string()))?;
        let found = st.scan(&[prefix], Some(&[prefix + 1])).nth(3);
        let (k, mut v) = match found {
            Some(Ok(kv)) => kv,
            _ => return Err(Failure::other("tamper: no value to flip")),
        };
        let i = v.len() - 20;
        v[i] ^= 0x01;
        let mut b = WriteBatch::new();
        b.put(k, v);
        st.apply(b).map_err(|e| Failure::other(e.to_string()))?;
        st.flush().map_err(|e| Failure::other(e.to_string()))?;
    }
    let (answer, detected) = answer_of(read_everything(copy, key, ctx, None));
    Ok(Attack {
        what,
        answer,
        detected,
    })
}

/// Flips one bit in the sealed body of the fourth access-log entry, in the log's first
/// segment file (`log/<20 zeros>.seg`, docs/FORMAT.md "Log segment files": a 41-byte
/// header, then frames `u32 len || version || flags || u64 seq || body || link[32] ||
/// check[8]`), and recomputes the frame's unkeyed check as an attacker can: only the
/// keyed chain link can tell.
pub fn log_frame_byte(
    vault: &Path,
    copy: &Path,
    what: &'static str,
    key: KeySource,
    ctx: &AccessContext,
) -> CliResult<Attack> {
    use sha2::{Digest, Sha256};
    copy_dir(vault, copy)?;
    let seg = copy.join("log").join(format!("{:020}.seg", 0));
    let mut b = std::fs::read(&seg)?;
    let mut at = 41usize;
    for _ in 0..3 {
        let len = b
            .get(at..at + 4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .ok_or_else(|| Failure::other("tamper: the log has too few entries"))?;
        at += 4 + len;
    }
    let len = b
        .get(at..at + 4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .ok_or_else(|| Failure::other("tamper: the log has too few entries"))?;
    let end = at + 4 + len;
    if end > b.len() || len < 60 {
        return Err(Failure::other("tamper: no log entry to flip"));
    }
    b[at + 20] ^= 0x01;
    let sum = Sha256::digest(&b[at..end - 8]);
    b[end - 8..end].copy_from_slice(&sum[..8]);
    std::fs::write(&seg, &b)?;
    let (answer, detected) = answer_of(read_everything(copy, key, ctx, None));
    Ok(Attack {
        what,
        answer,
        detected,
    })
}

/// Flips one bit of a record ciphertext where it lies in sled's files, raw (sled's own
/// checksums then no longer match): the bytes of one stored value are located in the
/// files and one bit in the middle of every copy of them is flipped.
pub fn raw_file_byte(
    vault: &Path,
    copy: &Path,
    key: KeySource,
    ctx: &AccessContext,
    checkpoint: &Checkpoint,
) -> CliResult<Attack> {
    copy_dir(vault, copy)?;
    let value = {
        let st = SledStorage::open(copy, &SledOptions::default())
            .map_err(|e| Failure::other(e.to_string()))?;
        match st.scan(b"r", Some(b"s")).nth(3) {
            Some(Ok((_, v))) => v,
            _ => return Err(Failure::other("tamper: no record to flip")),
        }
    };
    if value.len() < 128 {
        return Err(Failure::other("tamper: record too short to locate"));
    }
    let mid = value.len() / 2;
    let needle = &value[mid - 32..mid + 32];
    let mut flipped = 0;
    for file in super::scan::files_under(&copy.join("db"))? {
        let mut bytes = std::fs::read(&file)?;
        let at: Vec<usize> = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i)
            .collect();
        for i in &at {
            bytes[i + 32] ^= 0x01;
        }
        if !at.is_empty() {
            flipped += at.len();
            std::fs::write(&file, bytes)?;
        }
    }
    if flipped == 0 {
        return Err(Failure::other(
            "tamper: record bytes not found in sled's files",
        ));
    }
    let (answer, detected) = answer_of(read_everything(copy, key, ctx, Some(checkpoint)));
    Ok(Attack {
        what: "one bit of a record ciphertext flipped raw in sled's files",
        answer,
        detected,
    })
}

/// Verifies an older copy of the whole directory against a later checkpoint.
pub fn rollback(old: &Path, key: KeySource, ctx: &AccessContext, later: &Checkpoint) -> Attack {
    let r = Vault::open(old, key).and_then(|v| v.verify(ctx, Some(later)).map(|_| ()));
    let (answer, detected) = answer_of(r);
    Attack {
        what: "whole directory rolled back to an older copy",
        answer,
        detected,
    }
}
