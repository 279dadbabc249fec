//! Online backup and restore (docs/BACKUP.md; the bytes in docs/FORMAT.md "Backup
//! directory" and "Erasure ledger").
//!
//! A backup is a directory of ciphertext only: the header, every record-store pair
//! (`records`), the log segments up to the captured end (`log/`), the Merkle tree node
//! file cut to that end (`log/tree`: the frames of pruned segments are gone, so open
//! could not rebuild it), an anchor naming exactly the captured point, and a `MANIFEST` listing each file's SHA-256 and size, MACed under
//! a key derived from the vault secret, written last. A backup without its manifest, or
//! whose files do not match it, is incomplete and never restored.
//!
//! Consistency: the record store has no snapshot, so the pairs are scanned under the
//! commit lock (every commit waits for that one scan; reads wait too, since they log).
//! Everything else — segment copies, hashing, the manifest — runs after the lock is
//! released: log frames before the captured end never change (the log is append-only and
//! a failed append is cut back only past its own start).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::commit::{Erasure, Flush};
use super::{Vault, VaultOptions, lock};
use crate::audit::{Action, AuditLog, Checkpoint, Outcome, PendingEntry, hex};
use crate::commit::CommitKeys;
use crate::context::AccessContext;
use crate::crypto::{KeySource, MacKey, SecretKey, ct_eq, derive_key, random_bytes};
use crate::error::{Error, Existing, InputKind, Result, Structure};
use crate::header::Header;
use crate::ids::SubjectTag;
use crate::keyspace;
use crate::logstore::anchor::AnchorState;
use crate::logstore::frame::{Decoded, SEGMENT_HEADER_LEN, decode_frame};
use crate::logstore::tree::{
    TREE_FILE, TREE_HEADER_LEN, check_tree_file, encode_tree_header, nodes_for,
};
use crate::logstore::{ANCHOR_FILE, LOG_DIR, LogPos, parse_segment_name, segment_name};
use crate::storage::private_fs::create_private_dir;
use crate::storage::{HEADER_FILE, SledStorage, Storage, WriteBatch};

/// Name of the manifest file in a backup directory (written last).
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Name of the record-store pairs file in a backup directory.
pub const RECORDS_FILE: &str = "records";
/// First line of a manifest (format version 1).
const MANIFEST_MAGIC: &str = "medvault-backup 1";
/// Magic at the start of the records file.
const RECORDS_MAGIC: &[u8; 8] = b"MVBKREC1";
/// First word of an erasure ledger's first line (format version 1).
const LEDGER_MAGIC: &str = "medvault-erasure-ledger 1";
/// Pairs per batch when a restore loads the record store.
const RESTORE_BATCH: usize = 1024;
/// Present in a directory a restore is building from before its header is written until
/// just before it is renamed into place: [`Vault::open`] refuses such a directory (an
/// interrupted restore, whose erasures may not be re-applied yet).
pub(crate) const RESTORE_INCOMPLETE_FILE: &str = "restore-incomplete";

/// What [`Vault::backup`] wrote.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The backup's random id (32 hex digits), also its directory name under DEST.
    pub backup_id: String,
    /// The backup directory (`DEST/<backup_id>`).
    pub dir: PathBuf,
    /// The checkpoint of the captured state: the log up to (not including) entry
    /// `checkpoint.next_seq`. Keep it apart from the backup to detect a swapped one.
    pub checkpoint: Checkpoint,
    /// Record-store pairs copied.
    pub pairs: u64,
    /// Log segments copied byte for byte.
    pub segments_copied: u64,
    /// Full log segments reused from an earlier backup in DEST (hard links).
    pub segments_reused: u64,
    /// Milliseconds the commit lock was held (the record-store scan).
    pub lock_held_ms: u64,
}

/// Options of [`Vault::restore`].
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// The erasure ledger to apply (docs/BACKUP.md "Erasure ledger"). Without one the
    /// restore is refused unless `without_ledger`.
    pub ledger: Option<PathBuf>,
    /// Restore without an erasure ledger: a patient erased after the backup comes back.
    /// Say so only when no erasure can have happened since (or none matters).
    pub without_ledger: bool,
    /// The vault the caller expects the backup to be of (else the ledger's vault).
    pub expect_vault: Option<crate::VaultId>,
    /// Accept a backup of another vault than the expected one.
    pub other_vault: bool,
    /// Options to open the restored vault with (its `opener` is the restore's actor).
    pub vault: VaultOptions,
}

/// What [`Vault::restore`] did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The restored backup's id.
    pub backup_id: String,
    /// The vault the backup is of.
    pub vault_id: crate::VaultId,
    /// The backup's checkpoint (the restored log extends it).
    pub checkpoint: Checkpoint,
    /// Erasures of the ledger applied because the backup predates them.
    pub erasures_applied: u64,
    /// Erasures of the ledger the backup already held.
    pub erasures_present: u64,
    /// The ledger's last `checked` line `(log seq, time ms UTC)`: erasures after it are
    /// not in the ledger (docs/BACKUP.md). `None` without a ledger.
    pub ledger_checked: Option<(u64, u64)>,
}

/// One parsed manifest.
struct Manifest {
    vault_id: crate::VaultId,
    backup_id: String,
    created_ms: u64,
    log_start: (u64, [u8; 32]),
    log_end: LogPos,
    applied_next: u64,
    checkpoint: Checkpoint,
    /// Relative path -> (sha256, size).
    files: BTreeMap<String, ([u8; 32], u64)>,
}

fn bad_backup(what: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::integrity(Structure::Backup, what)
}

fn io(e: std::io::Error) -> Error {
    Error::Storage(crate::error::StorageError::from(e))
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn manifest_key(secret: &SecretKey) -> MacKey {
    MacKey::new(&derive_key(secret, &[b"medvault/v1/backup-manifest"]))
}

fn ledger_key(secret: &SecretKey) -> MacKey {
    MacKey::new(&derive_key(secret, &[b"medvault/v1/erasure-ledger"]))
}

fn sync_dir(p: &Path) -> Result<()> {
    File::open(p).and_then(|d| d.sync_all()).map_err(io)
}

/// SHA-256 and length of a file's contents.
fn hash_file(p: &Path) -> Result<([u8; 32], u64)> {
    let mut f = File::open(p).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().into(), n))
}

/// A new owner-only file (`create_new`, 0600).
fn new_file(p: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .map_err(io)
}

/// Copies the first `len` bytes of `from` to a new file `to`, fsynced; returns its hash.
fn copy_prefix(from: &Path, to: &Path, len: u64) -> Result<[u8; 32]> {
    let src = File::open(from).map_err(io)?;
    let mut r = src.take(len);
    let mut dst = new_file(to)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).map_err(io)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        dst.write_all(&buf[..k]).map_err(io)?;
        n += k as u64;
    }
    if n != len {
        return Err(bad_backup("a log segment is shorter than the captured end"));
    }
    dst.sync_all().map_err(io)?;
    Ok(h.finalize().into())
}

/// `p` made absolute with symbolic links, `.` and `..` resolved: the longest prefix that
/// exists is canonicalized and the rest (not created yet, so holding no link) is appended
/// lexically.
fn resolve(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_err(io)?.join(p)
    };
    let parts: Vec<Component<'_>> = abs.components().collect();
    for k in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..k].iter().collect();
        if let Ok(mut out) = fs::canonicalize(&prefix) {
            for c in &parts[k..] {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                }
            }
            return Ok(out);
        }
    }
    Ok(abs)
}

/// Refuses a destination `dest` equal to or inside the directory `dir` it would copy
/// from, both resolved (symbolic links, `.`, `..`; a part of `dest` not created yet is
/// taken as written). `role` names the two for the message, e.g. `("backup", "vault")`.
/// [`Vault::backup`] checks its destination against the vault's directory and
/// [`Vault::restore`] against the backup directory, before writing anything; a caller
/// that writes elsewhere first (the CLI's `backup --ledger`) calls it before that.
///
/// Errors: [`Error::InvalidInput`] ([`InputKind::Backup`]) naming both paths;
/// [`Error::Storage`] when the current directory is needed and unreadable.
pub fn check_destination(dest: &Path, dir: &Path, role: (&str, &str)) -> Result<()> {
    let (d, inner) = (resolve(dir)?, resolve(dest)?);
    if inner.starts_with(&d) {
        return Err(Error::invalid(
            InputKind::Backup,
            format!(
                "the {} destination {} is {} {} directory {}: it must be outside what it \
                 copies",
                role.0,
                dest.display(),
                if inner == d { "the" } else { "inside the" },
                role.1,
                dir.display()
            ),
        ));
    }
    Ok(())
}

impl Manifest {
    /// The text before the `mac` line.
    fn body(&self) -> String {
        let mut s = String::new();
        s.push_str(MANIFEST_MAGIC);
        s.push('\n');
        s.push_str(&format!("vault {}\n", hex(self.vault_id.as_bytes())));
        s.push_str(&format!("backup {}\n", self.backup_id));
        s.push_str(&format!("created_ms {}\n", self.created_ms));
        s.push_str(&format!(
            "log_start {} {}\n",
            self.log_start.0,
            hex(&self.log_start.1)
        ));
        s.push_str(&format!(
            "log_end {} {} {}\n",
            self.log_end.next_seq, self.log_end.segment, self.log_end.offset
        ));
        s.push_str(&format!("applied {}\n", self.applied_next));
        s.push_str(&format!("checkpoint {}\n", self.checkpoint.to_text()));
        for (name, (h, n)) in &self.files {
            s.push_str(&format!("file {} {} {}\n", hex(h), n, name));
        }
        s
    }

    fn mac(&self, key: &MacKey) -> [u8; 32] {
        key.mac_raw(&[
            b"medvault/v1/backup-manifest",
            self.vault_id.as_bytes(),
            self.body().as_bytes(),
        ])
    }

    fn encode(&self, key: &MacKey) -> String {
        format!("{}mac {}\n", self.body(), hex(&self.mac(key)))
    }

    /// Parses a manifest (the MAC is checked by the caller, which needs the header).
    fn parse(text: &str) -> Result<(Manifest, [u8; 32])> {
        let bad = || bad_backup("MANIFEST is malformed");
        if text.contains('\r') {
            return Err(bad_backup(
                "MANIFEST is malformed (a CR: lines end in LF only)",
            ));
        }
        let mut lines = text.lines();
        if lines.next() != Some(MANIFEST_MAGIC) {
            return Err(bad_backup("MANIFEST has an unknown format"));
        }
        let mut field = |name: &str| -> Result<Vec<String>> {
            let l = lines.next().ok_or_else(bad)?;
            let mut w = l.split(' ');
            if w.next() != Some(name) {
                return Err(bad());
            }
            Ok(w.map(str::to_owned).collect())
        };
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let v = field("vault")?;
        let vault_id =
            crate::VaultId::from(unhex::<16>(v.first().ok_or_else(bad)?).ok_or_else(bad)?);
        let b = field("backup")?;
        let backup_id = b.first().ok_or_else(bad)?.clone();
        if unhex::<16>(&backup_id).is_none() {
            return Err(bad());
        }
        let c = field("created_ms")?;
        let created_ms = num(c.first().ok_or_else(bad)?)?;
        let ls = field("log_start")?;
        if ls.len() != 2 {
            return Err(bad());
        }
        let log_start = (num(&ls[0])?, unhex::<32>(&ls[1]).ok_or_else(bad)?);
        let le = field("log_end")?;
        if le.len() != 3 {
            return Err(bad());
        }
        let log_end = LogPos {
            next_seq: num(&le[0])?,
            segment: num(&le[1])?,
            offset: num(&le[2])?,
        };
        let ap = field("applied")?;
        let applied_next = num(ap.first().ok_or_else(bad)?)?;
        let cp = field("checkpoint")?;
        let checkpoint = Checkpoint::from_text(cp.first().ok_or_else(bad)?).map_err(|_| bad())?;
        let mut files = BTreeMap::new();
        let mut mac = None;
        for l in lines {
            let w: Vec<&str> = l.split(' ').collect();
            match w.as_slice() {
                ["file", h, n, name] if mac.is_none() => {
                    let h = unhex::<32>(h).ok_or_else(bad)?;
                    if files.insert((*name).to_owned(), (h, num(n)?)).is_some() {
                        return Err(bad_backup(format!(
                            "MANIFEST is malformed ({name} is listed twice)"
                        )));
                    }
                }
                ["mac", m] if mac.is_none() => mac = Some(unhex::<32>(m).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        let mac = mac.ok_or_else(|| bad_backup("MANIFEST is cut (no MAC line)"))?;
        let m = Manifest {
            vault_id,
            backup_id,
            created_ms,
            log_start,
            log_end,
            applied_next,
            checkpoint,
            files,
        };
        // The MAC covers the canonical text re-encoded from what was parsed, so a parser
        // that tolerated variants (CR LF line ends, a file listed twice, extra words, a
        // line after the MAC, upper-case hex, leading zeros) would accept text no backup
        // wrote under a valid MAC: only the exact encoding is a manifest.
        if format!("{}mac {}\n", m.body(), hex(&mac)) != text {
            return Err(bad_backup(
                "MANIFEST is malformed (not in the one encoding a backup writes)",
            ));
        }
        Ok((m, mac))
    }
}

/// A valid file name of a backup: `header`, `anchor`, `records`, `log/tree` or
/// `log/<segment>`.
fn allowed_name(name: &str) -> bool {
    match name.strip_prefix("log/") {
        Some(TREE_FILE) => true,
        Some(seg) => parse_segment_name(seg).is_some(),
        None => matches!(name, "header" | "anchor" | "records"),
    }
}

/// Earlier complete backups' full segments in `dest`: segment name -> (hash, size, path).
/// Best effort: a backup whose manifest does not parse or verify is ignored.
fn reusable_segments(dest: &Path, key: &MacKey) -> HashMap<String, ([u8; 32], u64, PathBuf)> {
    let mut out = HashMap::new();
    let Ok(rd) = fs::read_dir(dest) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let Ok(text) = fs::read_to_string(dir.join(MANIFEST_FILE)) else {
            continue;
        };
        let Ok((m, mac)) = Manifest::parse(&text) else {
            continue;
        };
        if !ct_eq(&m.mac(key), &mac) {
            continue;
        }
        for (name, (h, n)) in m.files {
            if let Some(seg) = name.strip_prefix("log/").and_then(parse_segment_name)
                && seg < m.log_end.segment
            {
                out.insert(name.clone(), (h, n, dir.join(&name)));
            }
        }
    }
    out
}

impl Vault {
    /// Takes an online backup into the backup set directory `dest` (created 0700 if
    /// missing): a new directory `dest/<backup id>` holding the header, every
    /// record-store pair, the log segments up to the captured end, an anchor naming that
    /// point and a MACed `MANIFEST` (docs/BACKUP.md, docs/FORMAT.md "Backup directory").
    /// Ciphertext only. Other threads keep reading and writing: the commit lock is held
    /// only while the record store is scanned (reported as `lock_held_ms`). Full log
    /// segments byte-identical to one in an earlier backup in `dest` are hard-linked.
    /// Logged as `backup` (after the capture; the note names the backup id and the
    /// captured log end). Under an access policy, needs the `audit` capability.
    ///
    /// Errors: [`Error::InvalidInput`] for a vault not in a directory, or `dest` inside
    /// the vault's directory ([`check_destination`], before anything is written); [`Error::Storage`]
    /// for I/O (the partial directory `dest/.partial-<id>` is removed on a clean error; a
    /// killed backup leaves it, without a manifest: never restorable).
    pub fn backup(&self, ctx: &AccessContext, dest: &Path) -> Result<BackupReport> {
        let report = self.guarded(ctx, Action::Backup, None, || {
            self.require_capability(ctx, "audit")?;
            let _m = lock(&self.maintenance_lock);
            self.backup_inner(dest)
        })?;
        self.log_only(
            ctx,
            Action::Backup,
            format!(
                "backup {} log_end={} pairs={} segments copied={} reused={}",
                report.backup_id,
                report.checkpoint.next_seq,
                report.pairs,
                report.segments_copied,
                report.segments_reused
            ),
            Flush::Write,
        )?;
        Ok(report)
    }

    fn backup_inner(&self, dest: &Path) -> Result<BackupReport> {
        let src = self
            .path()
            .ok_or_else(|| {
                Error::invalid(InputKind::Output, "backup needs a vault in a directory")
            })?
            .to_path_buf();
        check_destination(dest, &src, ("backup", "vault"))?;
        create_private_dir(dest).map_err(io)?;
        let mut id = [0u8; 16];
        random_bytes(&mut id);
        let backup_id = hex(&id);
        let tmp = dest.join(format!(".partial-{backup_id}"));
        let r = self.write_backup(&src, dest, &tmp, &backup_id);
        if r.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        r
    }

    fn write_backup(
        &self,
        src: &Path,
        dest: &Path,
        tmp: &Path,
        backup_id: &str,
    ) -> Result<BackupReport> {
        let key = manifest_key(&self.vault_secret);
        let reusable = reusable_segments(dest, &key);
        create_private_dir(tmp).map_err(io)?;
        create_private_dir(&tmp.join(LOG_DIR)).map_err(io)?;
        let mut files = BTreeMap::new();
        // The capture: under the commit lock, the record store is exactly the changes
        // before the marker the capture's anchor names.
        let started = std::time::Instant::now();
        let (capture, header, pairs, records_hash, records_len) = {
            let _g = lock(&self.commit_lock);
            let capture = self.committer.capture();
            // The tree's nodes of the captured leaves reach the node file now; nodes
            // before them never change afterwards (the tree is cut only past the log's
            // end), so the file is copied after the lock like the segments.
            if let Some(t) = self.committer.log().tree() {
                t.flush()?;
            }
            let header = self
                .storage
                .read_header()?
                .ok_or_else(|| bad_backup("the vault has no header"))?;
            let mut w = HashingWriter::new(new_file(&tmp.join(RECORDS_FILE))?);
            w.write_all(RECORDS_MAGIC).map_err(io)?;
            let mut pairs = 0u64;
            for kv in self.storage.scan(&[], None) {
                let (k, v) = kv?;
                w.write_all(&(k.len() as u32).to_be_bytes()).map_err(io)?;
                w.write_all(&k).map_err(io)?;
                w.write_all(&(v.len() as u32).to_be_bytes()).map_err(io)?;
                w.write_all(&v).map_err(io)?;
                pairs += 1;
            }
            let (h, n) = w.finish()?;
            (capture, header, pairs, h, n)
        };
        let lock_held_ms = started.elapsed().as_millis() as u64;
        files.insert(RECORDS_FILE.to_owned(), (records_hash, records_len));
        let mut f = new_file(&tmp.join(HEADER_FILE))?;
        f.write_all(&header).map_err(io)?;
        f.sync_all().map_err(io)?;
        files.insert(
            HEADER_FILE.to_owned(),
            (Sha256::digest(&header).into(), header.len() as u64),
        );
        let mut f = new_file(&tmp.join(ANCHOR_FILE))?;
        f.write_all(&capture.anchor).map_err(io)?;
        f.sync_all().map_err(io)?;
        files.insert(
            ANCHOR_FILE.to_owned(),
            (
                Sha256::digest(&capture.anchor).into(),
                capture.anchor.len() as u64,
            ),
        );
        // Segments, outside the lock: frames before the captured end never change. (A
        // prune, which would delete some, waits: the maintenance lock is held.)
        let log_start = self.committer.log_start();
        let log_dir = src.join(LOG_DIR);
        let mut segs: Vec<u64> = fs::read_dir(&log_dir)
            .map_err(io)?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(parse_segment_name))
            .filter(|&s| s >= log_start.0 && s <= capture.end.segment)
            .collect();
        segs.sort_unstable();
        let (mut copied, mut reused) = (0u64, 0u64);
        for s in segs {
            let name = format!("{LOG_DIR}/{}", segment_name(s));
            let from = src.join(&name);
            let to = tmp.join(&name);
            if s < capture.end.segment {
                let (h, n) = hash_file(&from)?;
                let linked = match reusable.get(&name) {
                    Some((rh, rn, p)) if *rh == h && *rn == n => {
                        // Linked only if the earlier copy still holds those bytes.
                        hash_file(p).ok() == Some((h, n)) && fs::hard_link(p, &to).is_ok()
                    }
                    _ => false,
                };
                if linked {
                    reused += 1;
                } else {
                    let h2 = copy_prefix(&from, &to, n)?;
                    if h2 != h {
                        return Err(bad_backup("a full log segment changed while copied"));
                    }
                    copied += 1;
                }
                files.insert(name, (h, n));
            } else {
                let h = copy_prefix(&from, &to, capture.end.offset)?;
                files.insert(name, (h, capture.end.offset));
                copied += 1;
            }
        }
        if self.committer.log().tree().is_some() {
            let name = format!("{LOG_DIR}/{TREE_FILE}");
            let h = copy_tree(
                &src.join(&name),
                &tmp.join(&name),
                &self.vault_id,
                capture.end.next_seq,
                &capture.tree_root,
            )?;
            files.insert(name, h);
        }
        sync_dir(&tmp.join(LOG_DIR))?;
        let checkpoint = self.log.checkpoint((capture.end.next_seq, capture.link));
        let m = Manifest {
            vault_id: self.vault_id,
            backup_id: backup_id.to_owned(),
            created_ms: crate::audit::now_ms(),
            log_start,
            log_end: capture.end,
            applied_next: capture.applied_next,
            checkpoint: checkpoint.clone(),
            files,
        };
        sync_dir(tmp)?;
        let dir = dest.join(backup_id);
        fs::rename(tmp, &dir).map_err(io)?;
        sync_dir(dest)?;
        // The manifest last, under its final name only once whole: until it exists the
        // backup is incomplete, whatever its directory is called.
        let part = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let mut f = new_file(&part)?;
        f.write_all(m.encode(&key).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&part, dir.join(MANIFEST_FILE)).map_err(io)?;
        sync_dir(&dir)?;
        Ok(BackupReport {
            backup_id: backup_id.to_owned(),
            dir,
            checkpoint,
            pairs,
            segments_copied: copied,
            segments_reused: reused,
            lock_held_ms,
        })
    }
}

/// Copies the tree node file `from` cut to the nodes of its first `size` leaves, with a
/// header recording `size` durable (docs/FORMAT.md "Tree node file"), fsynced; then checks
/// the copy (every inner node, and its root against `root`, the captured anchor's).
/// Returns the copy's SHA-256 and size.
fn copy_tree(
    from: &Path,
    to: &Path,
    vault_id: &crate::VaultId,
    size: u64,
    root: &[u8; 32],
) -> Result<([u8; 32], u64)> {
    let nodes = nodes_for(size)
        .and_then(|n| n.checked_mul(32))
        .ok_or_else(|| bad_backup("the log is too long for its tree"))?;
    let mut src = File::open(from).map_err(io)?;
    let mut skip = [0u8; TREE_HEADER_LEN as usize];
    src.read_exact(&mut skip).map_err(io)?;
    let mut w = HashingWriter::new(new_file(to)?);
    let mut header = [0u8; TREE_HEADER_LEN as usize];
    header[..41].copy_from_slice(&encode_tree_header(vault_id, size));
    w.write_all(&header).map_err(io)?;
    let n = std::io::copy(&mut src.take(nodes), &mut w).map_err(io)?;
    if n != nodes {
        return Err(bad_backup(
            "the tree node file is shorter than the captured log",
        ));
    }
    let h = w.finish()?;
    let got = check_tree_file(to, vault_id, size)?;
    if *root != [0; 32] && !ct_eq(&got, root) {
        return Err(bad_backup(
            "the copied tree does not give the captured root (changed while copied)",
        ));
    }
    Ok(h)
}

/// A writer that hashes what it writes, then fsyncs.
struct HashingWriter {
    w: BufWriter<File>,
    h: Sha256,
    n: u64,
}

impl HashingWriter {
    fn new(f: File) -> Self {
        HashingWriter {
            w: BufWriter::with_capacity(1 << 20, f),
            h: Sha256::new(),
            n: 0,
        }
    }

    fn finish(self) -> Result<([u8; 32], u64)> {
        let f = self.w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        Ok((self.h.finalize().into(), self.n))
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.w.write(buf)?;
        self.h.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

// ----- erasure ledger ----------------------------------------------------------------

/// One erasure of an [`ErasureLedger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The erased subject's keyed pseudonym.
    pub tag: SubjectTag,
    /// When it was erased (ms since the Unix epoch, UTC).
    pub erased_at_ms: u64,
    /// Sequence number of the erasure's `erase` entry in the vault's log.
    pub log_seq: u64,
    /// The chain link of that entry (zero when it had been pruned at export): tells a
    /// backup holding this very erasure from one whose log forked before it.
    pub link: [u8; 32],
}

/// The erasure ledger: an append-only text file the operator keeps apart from backups
/// (docs/BACKUP.md "Erasure ledger", docs/FORMAT.md "Erasure ledger"). Each line is
/// MACed under a key derived from the vault secret and chained to the previous line's
/// MAC, so a line removed, changed or moved is detected.
#[derive(Clone, Debug)]
pub struct ErasureLedger {
    /// The vault it belongs to.
    pub vault_id: crate::VaultId,
    /// The erasures, in file order.
    pub entries: Vec<LedgerEntry>,
    /// The last `checked` line: `(log seq, time in ms since the Unix epoch, UTC)` at
    /// which the vault last brought the ledger up to date. `None` for a ledger with no
    /// MACed line at all, which no update writes (every update ends with a `checked`
    /// line): restore refuses it, since anyone can write a bare first line.
    pub checked: Option<(u64, u64)>,
    last_mac: [u8; 32],
    /// Bytes of the file up to the last whole line (a torn last line is past it).
    valid_len: u64,
}

fn ledger_line_mac(key: &MacKey, prev: &[u8; 32], line: &str) -> [u8; 32] {
    key.mac_raw(&[b"medvault/v1/erasure-ledger", prev, line.as_bytes()])
}

fn ledger_genesis(key: &MacKey, vault_id: &crate::VaultId) -> [u8; 32] {
    key.mac_raw(&[b"medvault/v1/erasure-ledger/genesis", vault_id.as_bytes()])
}

impl ErasureLedger {
    /// The vault id a ledger file names (its first line), without checking any MAC.
    /// [`Error::Integrity`] when the file is not a ledger.
    pub fn vault_of(path: &Path) -> Result<crate::VaultId> {
        let text = fs::read_to_string(path).map_err(io)?;
        let first = text.lines().next().unwrap_or_default();
        let id = first
            .strip_prefix(LEDGER_MAGIC)
            .map(str::trim)
            .and_then(unhex::<16>)
            .ok_or_else(|| Error::integrity(Structure::ErasureLedger, "not an erasure ledger"))?;
        Ok(crate::VaultId::from(id))
    }

    /// Reads and checks a ledger with the vault secret. A missing file is an empty
    /// ledger. Errors: [`Error::Integrity`] naming the first bad line (a MAC failure: a
    /// line changed, removed or moved; or another vault's ledger).
    fn load(path: &Path, vault_id: &crate::VaultId, secret: &SecretKey) -> Result<Self> {
        let key = ledger_key(secret);
        let mut last_mac = ledger_genesis(&key, vault_id);
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ErasureLedger {
                    vault_id: *vault_id,
                    entries: Vec::new(),
                    checked: None,
                    last_mac,
                    valid_len: 0,
                });
            }
            Err(e) => return Err(io(e)),
        };
        let bad = |n: usize, what: &str| {
            Error::integrity(Structure::ErasureLedger, format!("line {n}: {what}"))
        };
        let mut lines = text.split_inclusive('\n');
        let first = lines.next().unwrap_or_default();
        if first.trim_end() != format!("{LEDGER_MAGIC} {}", hex(vault_id.as_bytes())) {
            return Err(bad(1, "not this vault's erasure ledger"));
        }
        let mut entries = Vec::new();
        let mut checked = None;
        let mut valid_len = first.len();
        for (i, l) in lines.enumerate() {
            let n = i + 2;
            // A last line without its newline is a torn append: not an entry (the next
            // update cuts it and appends the erasure again).
            let Some(l) = l.strip_suffix('\n') else {
                break;
            };
            let (body, mac) = l.rsplit_once(" mac ").ok_or_else(|| bad(n, "malformed"))?;
            let mac = unhex::<32>(mac).ok_or_else(|| bad(n, "malformed"))?;
            if !ct_eq(&ledger_line_mac(&key, &last_mac, body), &mac) {
                return Err(bad(n, "fails its MAC (changed, removed, moved or forged)"));
            }
            last_mac = mac;
            valid_len += l.len() + 1;
            let w: Vec<&str> = body.split(' ').collect();
            if let ["checked", seq, at] = w.as_slice() {
                checked = Some((
                    seq.parse().map_err(|_| bad(n, "malformed"))?,
                    at.parse().map_err(|_| bad(n, "malformed"))?,
                ));
                continue;
            }
            let ["erase", tag, at, seq, link] = w.as_slice() else {
                return Err(bad(n, "malformed"));
            };
            entries.push(LedgerEntry {
                tag: SubjectTag::from(unhex::<16>(tag).ok_or_else(|| bad(n, "malformed"))?),
                erased_at_ms: at.parse().map_err(|_| bad(n, "malformed"))?,
                log_seq: seq.parse().map_err(|_| bad(n, "malformed"))?,
                link: unhex::<32>(link).ok_or_else(|| bad(n, "malformed"))?,
            });
        }
        Ok(ErasureLedger {
            vault_id: *vault_id,
            entries,
            checked,
            last_mac,
            valid_len: valid_len as u64,
        })
    }
}

impl Vault {
    /// Brings the erasure ledger at `path` up to date with this vault's erasure memory:
    /// appends one MACed, chained line per erasure mark not yet in it (creating the file,
    /// 0600, when missing), fsynced. Returns the number of lines added. Run it after
    /// every erasure (or nightly, before the backup) and keep the file apart from the
    /// backups (docs/BACKUP.md "Erasure ledger"). Logged as `export`. Under an access
    /// policy, needs a role allowed to erase.
    ///
    /// Errors: [`Error::Integrity`] when the existing ledger fails its checks (another
    /// vault's, or a line changed/removed); [`Error::Storage`] for I/O.
    pub fn update_erasure_ledger(&self, ctx: &AccessContext, path: &Path) -> Result<u64> {
        let n = self.guarded(ctx, Action::Export, None, || {
            self.decide(ctx)?.check_erase()?;
            self.append_ledger(path)
        })?;
        self.log_only(
            ctx,
            Action::Export,
            format!("erasure ledger updated: {n} added"),
            Flush::Read,
        )?;
        Ok(n)
    }

    fn append_ledger(&self, path: &Path) -> Result<u64> {
        let ledger = ErasureLedger::load(path, &self.vault_id, &self.vault_secret)?;
        let key = ledger_key(&self.vault_secret);
        let have: std::collections::HashSet<(SubjectTag, u64)> =
            ledger.entries.iter().map(|e| (e.tag, e.log_seq)).collect();
        let mut out = String::new();
        if !path.exists() {
            out.push_str(&format!(
                "{LEDGER_MAGIC} {}\n",
                hex(self.vault_id.as_bytes())
            ));
        }
        let mut last = ledger.last_mac;
        let mut added = 0u64;
        let start = self.committer.log_start().0;
        for m in self.erasure_marks()? {
            if have.contains(&(m.pseudonym, m.log_seq)) {
                continue;
            }
            let link = if m.log_seq >= start {
                match self.committer.log().read(m.log_seq)?.next() {
                    Some(Ok((f, _))) if f.seq == m.log_seq => f.link,
                    Some(Err(e)) => return Err(e),
                    _ => [0u8; 32],
                }
            } else {
                [0u8; 32]
            };
            let body = format!(
                "erase {} {} {} {}",
                hex(m.pseudonym.as_ref()),
                m.erased_at_ms,
                m.log_seq,
                hex(&link)
            );
            let mac = ledger_line_mac(&key, &last, &body);
            out.push_str(&format!("{body} mac {}\n", hex(&mac)));
            last = mac;
            added += 1;
        }
        // Every update ends with a MACed `checked` line, erasures added or not: a ledger
        // says how recent it is, and one with no MACed line (a bare first line anyone can
        // write) is refused at restore.
        let body = format!(
            "checked {} {}",
            self.committer.end(),
            crate::audit::now_ms()
        );
        let mac = ledger_line_mac(&key, &last, &body);
        out.push_str(&format!("{body} mac {}\n", hex(&mac)));
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        // A torn last line (an append cut by a crash) goes before the new lines.
        if f.metadata().map_err(io)?.len() > ledger.valid_len && ledger.valid_len > 0 {
            f.set_len(ledger.valid_len).map_err(io)?;
        }
        f.write_all(out.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(added)
    }
}

// ----- restore -----------------------------------------------------------------------

/// The checked contents of a backup, before anything is written.
struct Checked {
    manifest: Manifest,
    header: Vec<u8>,
    /// Link of each frame whose seq a ledger entry names (for "already erased?").
    links: HashMap<u64, [u8; 32]>,
    ledger: Option<ErasureLedger>,
}

/// Checks a backup directory: manifest MAC, every file's size and hash (and no other
/// segment), the header unlocks with `key` and names the manifest's vault, the chain
/// from the backup's log start to its end, and the checkpoint.
fn check_backup(
    backup: &Path,
    key: &KeySource,
    opts: &RestoreOptions,
) -> Result<(Checked, SecretKey)> {
    let text = match fs::read_to_string(backup.join(MANIFEST_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A backup set (the DEST of `backup`) holds backups, each its own directory:
            // the caller named the set, not an incomplete backup.
            let inside: Vec<String> = fs::read_dir(backup)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .filter(|e| e.path().join(MANIFEST_FILE).is_file())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            if !inside.is_empty() {
                let mut inside = inside;
                inside.sort();
                return Err(Error::invalid(
                    InputKind::Backup,
                    format!(
                        "{} is a backup set, not one backup: name one of its backups, e.g. \
                         {} (it holds {})",
                        backup.display(),
                        backup.join(&inside[0]).display(),
                        inside.join(", ")
                    ),
                ));
            }
            return Err(bad_backup(
                "incomplete: no MANIFEST (a backup interrupted before its end, never usable)",
            ));
        }
        Err(e) => return Err(io(e)),
    };
    let (manifest, mac) = Manifest::parse(&text)?;
    let header = fs::read(backup.join(HEADER_FILE))
        .map_err(|_| bad_backup("incomplete: the header is missing"))?;
    let (h, unlocked) = Header::unlock_within(&header, key, opts.vault.max_kdf_work)?;
    if h.vault_id != manifest.vault_id {
        return Err(bad_backup(
            "the header names another vault than the MANIFEST",
        ));
    }
    let secret = unlocked.vault_secret;
    if !ct_eq(&manifest.mac(&manifest_key(&secret)), &mac) {
        return Err(bad_backup(
            "MANIFEST fails its MAC (altered, or another vault's)",
        ));
    }
    // The vault: the caller's, else the ledger's.
    let ledger_vault = match &opts.ledger {
        Some(p) if p.exists() => Some(ErasureLedger::vault_of(p)?),
        _ => None,
    };
    let expected = opts.expect_vault.or(ledger_vault);
    if let Some(want) = expected
        && want != manifest.vault_id
        && !opts.other_vault
    {
        return Err(Error::invalid(
            InputKind::Backup,
            format!(
                "the backup is of vault {}, not of the expected vault {want} (pass \
                 --other-vault / RestoreOptions::other_vault to restore it anyway)",
                manifest.vault_id
            ),
        ));
    }
    let ledger = match &opts.ledger {
        // A ledger that is not there is not an empty one: the restore would bring back
        // every erasure it should hold.
        Some(p) if !p.exists() => return Err(Error::NotFound),
        Some(p) => {
            if ledger_vault.is_some_and(|v| v != manifest.vault_id) {
                return Err(Error::invalid(
                    InputKind::Backup,
                    "the erasure ledger belongs to another vault than the backup: it cannot be applied",
                ));
            }
            let l = ErasureLedger::load(p, &manifest.vault_id, &secret)?;
            if l.checked.is_none() {
                return Err(Error::integrity(
                    Structure::ErasureLedger,
                    "the erasure ledger holds no checked line: every update by the vault \
                     writes one, so this file was not written by it (or was cut back to its \
                     first line); restoring with it could bring back erased patients",
                ));
            }
            Some(l)
        }
        None if opts.without_ledger => None,
        None => {
            return Err(Error::invalid(
                InputKind::Backup,
                "no erasure ledger given: restoring without it would bring back every patient \
                 erased since the backup was taken; pass the ledger (--ledger FILE), or \
                 --without-ledger if no erasure can have happened since",
            ));
        }
    };
    // Files: exactly the manifest's, each with its size and hash.
    for name in manifest.files.keys() {
        if !allowed_name(name) {
            return Err(bad_backup("MANIFEST names an unexpected file"));
        }
    }
    for needed in [HEADER_FILE, ANCHOR_FILE, RECORDS_FILE] {
        if !manifest.files.contains_key(needed) {
            return Err(bad_backup(format!("MANIFEST does not list {needed}")));
        }
    }
    for e in
        fs::read_dir(backup.join(LOG_DIR)).map_err(|_| bad_backup("incomplete: log/ is missing"))?
    {
        let e = e.map_err(io)?;
        let name = format!("{LOG_DIR}/{}", e.file_name().to_string_lossy());
        if !manifest.files.contains_key(&name) {
            return Err(bad_backup(format!("{name} is not in the MANIFEST (added)")));
        }
    }
    for (name, (h, n)) in &manifest.files {
        let p = backup.join(name);
        let got =
            hash_file(&p).map_err(|_| bad_backup(format!("incomplete: {name} is missing")))?;
        if got != (*h, *n) {
            return Err(bad_backup(format!(
                "{name} does not match the MANIFEST (cut or altered)"
            )));
        }
    }
    // The chain, from the log start to the end, and the checkpoint.
    let keys = CommitKeys::derive(&manifest.vault_id, &secret);
    let want: std::collections::HashSet<u64> = ledger
        .iter()
        .flat_map(|l| l.entries.iter().map(|e| e.log_seq))
        .collect();
    let mut links = HashMap::new();
    let (mut expected_seq, mut link) = manifest.log_start;
    let segs: Vec<u64> = manifest
        .files
        .keys()
        .filter_map(|n| n.strip_prefix("log/").and_then(parse_segment_name))
        .collect();
    for s in segs {
        if s != expected_seq {
            return Err(bad_backup(format!(
                "log segment {s} does not continue the log at {expected_seq}"
            )));
        }
        let bytes = fs::read(backup.join(LOG_DIR).join(segment_name(s))).map_err(io)?;
        let (id, first) = crate::logstore::frame::decode_segment_header(&bytes)
            .map_err(|_| bad_backup(format!("log segment {s}: bad header")))?;
        if id != manifest.vault_id || first != s {
            return Err(bad_backup(format!(
                "log segment {s}: another vault's or moved"
            )));
        }
        let mut at = SEGMENT_HEADER_LEN;
        while at < bytes.len() {
            let Decoded::Frame(f, n) = decode_frame(&bytes[at..]) else {
                return Err(bad_backup(format!("log entry {expected_seq} is damaged")));
            };
            if f.seq != expected_seq {
                return Err(bad_backup(format!("log entry {expected_seq} is missing")));
            }
            link = keys.link(&link, f.version, f.flags, f.seq, &f.body);
            if !ct_eq(&link, &f.link) {
                return Err(bad_backup(format!(
                    "log entry {expected_seq} does not chain"
                )));
            }
            if want.contains(&f.seq) {
                links.insert(f.seq, link);
            }
            expected_seq += 1;
            at += n;
        }
    }
    if expected_seq != manifest.log_end.next_seq {
        return Err(bad_backup("the log does not end where the MANIFEST says"));
    }
    let log = AuditLog::new(manifest.vault_id, &secret);
    if log.checkpoint((expected_seq, link)) != manifest.checkpoint {
        return Err(bad_backup("the log does not match the backup's checkpoint"));
    }
    // The tree: consistent, of exactly the captured leaves, and giving the root the
    // captured anchor binds. Without it only a log kept whole since entry 0 can be
    // restored (open rebuilds the tree from the frames).
    let anchor = fs::read(backup.join(ANCHOR_FILE)).map_err(io)?;
    let slot = AnchorState::decode(
        keys.anchor_key(),
        &manifest.vault_id,
        anchor
            .get(..crate::logstore::anchor::SLOT_LEN)
            .unwrap_or(&anchor),
    )
    .map_err(|e| bad_backup(format!("anchor: {e}")))?;
    if slot.log_end != manifest.log_end || !ct_eq(&slot.log_link, &link) {
        return Err(bad_backup("the anchor does not name the backup's log end"));
    }
    let tree_name = format!("{LOG_DIR}/{TREE_FILE}");
    if manifest.files.contains_key(&tree_name) {
        let root = check_tree_file(&backup.join(&tree_name), &manifest.vault_id, expected_seq)
            .map_err(|e| bad_backup(format!("{tree_name}: {e}")))?;
        if slot.tree_root != [0; 32] && !ct_eq(&root, &slot.tree_root) {
            return Err(bad_backup(format!(
                "{tree_name} does not give the root the backup's anchor binds (altered or \
                 swapped)"
            )));
        }
    } else if manifest.log_start.0 > 0 {
        return Err(bad_backup(format!(
            "the backup holds no {tree_name} and its log was pruned before entry {}: the \
             Merkle tree cannot be rebuilt (a backup taken before backups carried the tree)",
            manifest.log_start.0
        )));
    }
    Ok((
        Checked {
            manifest,
            header,
            links,
            ledger,
        },
        secret,
    ))
}

/// Reads the records file: every `(key, value)` pair, in file order, streamed.
fn read_pairs(path: &Path, mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<()>) -> Result<()> {
    let bad = || bad_backup("records file is malformed");
    let file = File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| bad())?;
    if &magic != RECORDS_MAGIC {
        return Err(bad());
    }
    let mut at = RECORDS_MAGIC.len() as u64;
    let mut take = |at: &mut u64| -> Result<Vec<u8>> {
        let mut l = [0u8; 4];
        r.read_exact(&mut l).map_err(|_| bad())?;
        let n = u64::from(u32::from_be_bytes(l));
        // Bounded by what the file still holds before allocating.
        if *at + 4 + n > total {
            return Err(bad());
        }
        let mut v = vec![0u8; n as usize];
        r.read_exact(&mut v).map_err(|_| bad())?;
        *at += 4 + n;
        Ok(v)
    };
    while at < total {
        let k = take(&mut at)?;
        let v = take(&mut at)?;
        f(k, v)?;
    }
    Ok(())
}

/// The directory a restore into `dest` builds in: `.<dest name>.restore-partial` beside
/// `dest`. A killed restore leaves it; the next restore into `dest` removes it.
pub fn restore_partial_dir(dest: &Path) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::invalid(InputKind::Backup, "the restore destination has no name"))?;
    let parent = dest.parent().unwrap_or_else(|| Path::new("."));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    Ok(parent.join(format!(".{}.restore-partial", name.to_string_lossy())))
}

impl Vault {
    /// Restores the backup directory `backup` into the new directory `dest`
    /// (docs/BACKUP.md "Restore"). Before anything is written it checks the backup
    /// against its MACed manifest (every file's size and SHA-256), the log chain against
    /// the backup's checkpoint, the vault id (another vault's backup is refused unless
    /// `opts.other_vault`) and the erasure ledger (required unless
    /// `opts.without_ledger`). It then builds the vault in a sibling directory
    /// ([`restore_partial_dir`]), opens and verifies it against the checkpoint, erases
    /// every subject the ledger says was erased after the backup (keys and records
    /// destroyed, storage purged), logs `restore` naming the backup, and only then
    /// renames it to `dest`: a killed restore leaves no `dest`.
    ///
    /// Errors: [`Error::NotFound`] when `backup` is not a directory or the ledger file
    /// does not exist; [`Error::InvalidInput`] ([`InputKind::Backup`]) when `dest` is
    /// inside `backup` ([`check_destination`]); [`Error::AlreadyExists`]
    /// ([`Existing::RestoreDestination`]) when `dest` exists; [`Error::Integrity`]
    /// ([`Structure::Backup`]: incomplete or altered backup; [`Structure::ErasureLedger`]);
    /// [`Error::InvalidInput`] ([`InputKind::Backup`]: another vault, no ledger);
    /// [`Error::WrongKey`]; [`Error::Storage`]; those of [`Vault::verify`].
    pub fn restore(
        backup: &Path,
        dest: &Path,
        key: KeySource,
        opts: RestoreOptions,
    ) -> Result<RestoreReport> {
        if !backup.is_dir() {
            return Err(Error::NotFound);
        }
        check_destination(dest, backup, ("restore", "backup"))?;
        if fs::symlink_metadata(dest).is_ok() {
            return Err(Error::AlreadyExists(Existing::RestoreDestination));
        }
        let (checked, _secret) = check_backup(backup, &key, &opts)?;
        let partial = restore_partial_dir(dest)?;
        if fs::symlink_metadata(&partial).is_ok() {
            fs::remove_dir_all(&partial).map_err(io)?;
        }
        let r = build_restore(backup, dest, &partial, key, &opts, &checked);
        if r.is_err() {
            let _ = fs::remove_dir_all(&partial);
        }
        r
    }
}

fn build_restore(
    backup: &Path,
    dest: &Path,
    partial: &Path,
    key: KeySource,
    opts: &RestoreOptions,
    c: &Checked,
) -> Result<RestoreReport> {
    let m = &c.manifest;
    create_private_dir(partial).map_err(io)?;
    new_file(&partial.join(RESTORE_INCOMPLETE_FILE))?
        .sync_all()
        .map_err(io)?;
    sync_dir(partial)?;
    {
        let storage = SledStorage::open(partial, &opts.vault.sled)?;
        let mut batch = WriteBatch::new();
        read_pairs(&backup.join(RECORDS_FILE), |k, v| {
            batch.put(k, v);
            if batch.len() >= RESTORE_BATCH {
                storage.apply(std::mem::take(&mut batch))?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            storage.apply(batch)?;
        }
        storage.flush()?;
    }
    create_private_dir(&partial.join(LOG_DIR)).map_err(io)?;
    for name in m.files.keys().filter(|n| n.starts_with("log/")) {
        let to = partial.join(name);
        fs::copy(backup.join(name), &to).map_err(io)?;
        fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).map_err(io)?;
        File::open(&to).and_then(|f| f.sync_all()).map_err(io)?;
    }
    sync_dir(&partial.join(LOG_DIR))?;
    let anchor = fs::read(backup.join(ANCHOR_FILE)).map_err(io)?;
    let mut f = new_file(&partial.join(ANCHOR_FILE))?;
    f.write_all(&anchor).map_err(io)?;
    f.sync_all().map_err(io)?;
    // The header last: until it exists, the directory is no vault at all.
    SledStorage::write_header_at(partial, &c.header)?;
    sync_dir(partial)?;
    let ctx = opts.vault.opener.clone();
    let (applied, present) = {
        let v = Vault::open_restoring(partial, key, opts.vault.clone())?;
        // The restore's own check, whatever the restored policy lets the actor do.
        let n = v.log.verify(&v.committer, Some(&m.checkpoint))?;
        v.check_policy_version()?;
        v.check_prune_record()?;
        v.log_only(
            &ctx,
            Action::Verify,
            format!("entries={n}; restore of backup {}", m.backup_id),
            Flush::Read,
        )?;
        let r = v.apply_ledger(&ctx, c)?;
        v.log_only(
            &ctx,
            Action::Restore,
            format!(
                "restored from backup {} (log_end={}, taken at {} ms); erasures of the ledger \
                 applied={} already_in_backup={}{}",
                m.backup_id,
                m.log_end.next_seq,
                m.created_ms,
                r.0,
                r.1,
                if c.ledger.is_none() {
                    "; restored WITHOUT an erasure ledger"
                } else {
                    ""
                }
            ),
            Flush::Write,
        )?;
        v.sync()?;
        r
    };
    // Complete: erasures re-applied and durable. Only now may the directory be opened.
    fs::remove_file(partial.join(RESTORE_INCOMPLETE_FILE)).map_err(io)?;
    sync_dir(partial)?;
    fs::rename(partial, dest).map_err(io)?;
    sync_dir(
        dest.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    Ok(RestoreReport {
        backup_id: m.backup_id.clone(),
        vault_id: m.vault_id,
        checkpoint: m.checkpoint.clone(),
        erasures_applied: applied,
        erasures_present: present,
        ledger_checked: c.ledger.as_ref().and_then(|l| l.checked),
    })
}

impl Vault {
    /// Applies the ledger to a vault just restored from `c`'s backup: every erasure the
    /// backup does not hold (its entry is past the backup's applied point, or the entry
    /// at that seq has another link: a fork) is done again by tag. Returns `(applied,
    /// already present)`.
    fn apply_ledger(&self, ctx: &AccessContext, c: &Checked) -> Result<(u64, u64)> {
        let Some(ledger) = &c.ledger else {
            return Ok((0, 0));
        };
        let (mut applied, mut present) = (0u64, 0u64);
        let mut done = std::collections::HashSet::new();
        for e in &ledger.entries {
            let in_backup = e.log_seq < c.manifest.applied_next
                && match c.links.get(&e.log_seq) {
                    Some(l) => e.link == [0u8; 32] || ct_eq(l, &e.link),
                    // Pruned before the backup's log start: held by the backup.
                    None => e.log_seq < c.manifest.log_start.0,
                };
            if in_backup || !done.insert(e.tag) {
                present += u64::from(in_backup);
                continue;
            }
            // Already erased in this copy (a later erasure of the same subject)?
            if self.erasure_mark_of(&e.tag)?.is_some()
                && self
                    .storage
                    .get(&keyspace::subject_entry(&e.tag))?
                    .is_none()
            {
                present += 1;
                continue;
            }
            self.erase_tag_restored(ctx, &e.tag, e.log_seq)?;
            applied += 1;
        }
        if applied > 0 {
            self.purge_storage()?;
        }
        Ok((applied, present))
    }

    /// Erases `tag` by pseudonym only (a ledger's erasure re-applied at restore): keys,
    /// records, index entries and objection go, and the mark comes, in one commit whose
    /// `erase` entry names the ledger's original entry.
    fn erase_tag_restored(
        &self,
        ctx: &AccessContext,
        tag: &SubjectTag,
        orig_seq: u64,
    ) -> Result<()> {
        let mut e = PendingEntry::new(ctx, Action::Erase, Outcome::Ok);
        e.subject = Some((*tag, Vec::new()));
        self.commit_with(
            WriteBatch::new(),
            vec![e],
            &[],
            &[],
            Flush::Caller,
            Some(Erasure { tag: *tag }),
            |batch, entries| {
                let at = entries.first().map(|e| e.time_ms).unwrap_or_default();
                let seq = self.next_log_seq();
                let n = self.erase_tag_in(batch, tag, at, seq)?;
                batch.put(keyspace::PURGE_PENDING.to_vec(), Vec::new());
                for e in entries {
                    e.note = format!(
                        "records={n}; erasure ledger: erased at entry {orig_seq} after the backup, re-applied at restore"
                    );
                }
                Ok(())
            },
        )?;
        self.group_flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use crate::logstore::tree::LogTree;
    use medvault_verify::{MemoryTree, leaf_hash};

    #[test]
    fn the_tree_copy_is_cut_to_the_capture_and_refused_under_another_root() {
        // Oracle: medvault-verify's MemoryTree over the same leaves.
        let dir = tempfile::tempdir().unwrap();
        let id = crate::VaultId::from([9; 16]);
        let leaves: Vec<[u8; 32]> = (0..30u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut model = MemoryTree::new();
        for l in &leaves {
            model.push(*l).unwrap();
        }
        let t = LogTree::open_file(dir.path(), id).unwrap();
        t.append_leaves(&leaves).unwrap();
        t.flush().unwrap(); // written, not synced: the live file's header says 0 durable
        let from = dir.path().join(TREE_FILE);
        let to = dir.path().join("copy");
        // Captured at 21 leaves; the live tree has 30 by the time it is copied.
        let root = model.root_at(21).unwrap();
        let (h, n) = copy_tree(&from, &to, &id, 21, &root).unwrap();
        let bytes = fs::read(&to).unwrap();
        assert_eq!((h, n), (Sha256::digest(&bytes).into(), bytes.len() as u64));
        assert_eq!(n, 64 + 32 * (2 * 21 - 3)); // 2·size − popcount(21) nodes
        assert_eq!(check_tree_file(&to, &id, 21).unwrap(), root);
        // Another root (an altered or swapped tree): refused.
        fs::remove_file(&to).unwrap();
        let other = model.root_at(20).unwrap();
        assert!(copy_tree(&from, &to, &id, 21, &other).is_err());
        // A capture past the file: refused.
        fs::remove_file(&to).unwrap();
        assert!(copy_tree(&from, &to, &id, 31, &root).is_err());
    }
}
