//! The default backend: one sled 0.34 tree inside the vault directory, plus the header
//! as a small file beside it (`VAULT/header`), so a wrong key is detected before sled is
//! opened at all and no file changes.
//!
//! Every structure shares one tree: an atomic `Batch` within one tree is far cheaper than
//! a transaction over two (DESIGN.md, storage facts).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{KeyValue, ScanIter, Storage, WriteBatch};
use crate::error::StorageError;

/// Name of the header file inside a vault directory.
pub const HEADER_FILE: &str = "header";
/// Name of the sled directory inside a vault directory.
pub const DB_DIR: &str = "db";

/// Tuning of the sled backend.
#[derive(Clone, Debug)]
pub struct SledOptions {
    /// Page-cache budget in bytes (sled's `cache_capacity`). Bounds resident memory.
    pub cache_bytes: u64,
    /// Period of sled's background flush in milliseconds; `None` disables it.
    pub flush_every_ms: Option<u64>,
    /// Bound of one access-log segment file in bytes (the unit a retention prune drops,
    /// docs/BACKUP.md "Retention"). Default 64 MiB.
    pub log_segment_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_bytes: 256 * 1024 * 1024,
            flush_every_ms: Some(500),
            log_segment_bytes: crate::logstore::SegmentOptions::default().max_segment_bytes,
        }
    }
}

/// A vault directory backed by sled.
pub struct SledStorage {
    dir: PathBuf,
    options: SledOptions,
    /// Replaced only by [`Storage::purge`], under the write lock.
    db: RwLock<sled::Db>,
    /// Held for the handle's life: one process at a time reads the header and writes.
    _lock: DirLock,
}

/// Name of the lock file inside a vault directory.
pub const LOCK_FILE: &str = "lock";

/// An exclusive advisory lock (`flock`) on `VAULT/lock`, taken **before** the header is
/// read: a second process cannot read a header that a root-key rotation in the first is
/// about to replace, and then write under a root generation that no longer exists.
pub struct DirLock {
    _file: fs::File,
}

impl DirLock {
    /// Takes the lock of the vault at `dir`, waiting up to 5 s for another handle or
    /// process to release it; then fails with "the vault is in use". Creates the (empty)
    /// lock file when missing.
    pub fn acquire(dir: &Path) -> Result<DirLock, StorageError> {
        let file = super::private_fs::open_private(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            &dir.join(LOCK_FILE),
        )?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    record_holder(&file)?;
                    return Ok(DirLock { _file: file });
                }
                Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = match read_holder(&file) {
                        Some(pid) if pid == std::process::id() => {
                            "another handle in this process".to_string()
                        }
                        Some(pid) => format!("process {pid}"),
                        None => "another process".to_string(),
                    };
                    return Err(StorageError::new(format!(
                        "the vault is in use: it is locked by {holder}; close that handle or \
                         let that process finish, then retry (the lock is released when \
                         it exits, also on a crash)"
                    )));
                }
                Err(fs::TryLockError::Error(e)) => return Err(e.into()),
            }
        }
    }
}

/// Writes this process's id (decimal ASCII, then a newline) into the lock file just
/// locked, for the "in use" message of the next process. Informational only: the lock is
/// the `flock`, not the contents.
fn record_holder(mut file: &fs::File) -> Result<(), StorageError> {
    use std::io::Seek;
    file.set_len(0)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    Ok(())
}

/// The pid a lock holder wrote with [`record_holder`]; `None` when absent or malformed.
fn read_holder(mut file: &fs::File) -> Option<u32> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(0)).ok()?;
    let mut s = String::new();
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// How long an open waits for sled's file lock to be released (see `open_db`).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Directory of a purge's copy while it is written; `COMPLETE` marks it finished.
const PURGE_DIR: &str = "db.purge";
/// Directory of the pre-purge database while the copy is swapped in.
const OLD_DIR: &str = "db.old";
/// Directory a new database is created in before it is renamed to `db/`.
const INIT_DIR: &str = "db.init";
const COMPLETE: &str = "COMPLETE";

impl SledStorage {
    /// Opens (creating if needed) the sled tree under `dir/db`, first finishing or
    /// rolling back a purge that a crash interrupted.
    pub fn open(dir: &Path, options: &SledOptions) -> Result<Self, StorageError> {
        let lock = DirLock::acquire(dir)?;
        Self::open_locked(dir, lock, options)
    }

    /// [`SledStorage::open`] with the directory lock already taken.
    pub fn open_locked(
        dir: &Path,
        lock: DirLock,
        options: &SledOptions,
    ) -> Result<Self, StorageError> {
        Self::recover_purge(dir)?;
        if !dir.join(DB_DIR).exists() {
            Self::init_db(dir, options)?;
        }
        let db = Self::open_db(&dir.join(DB_DIR), options)?;
        // sled creates its files with the umask's modes: bring them to owner-only.
        super::private_fs::restrict_tree(&dir.join(DB_DIR))?;
        Ok(SledStorage {
            dir: dir.to_path_buf(),
            options: options.clone(),
            db: RwLock::new(db),
            _lock: lock,
        })
    }

    /// Creates a new sled database so that `db/` never holds a half-created one: sled
    /// writes its `conf` file and first segment without making them atomic, and a
    /// process killed while sled created them left files that sled refuses at the next
    /// open (a create retried after the kill then failed). The database is created in
    /// `db.init/` (a leftover one removed first), flushed and closed, then renamed to
    /// `db/` and the directory synced.
    fn init_db(dir: &Path, options: &SledOptions) -> Result<(), StorageError> {
        let tmp = dir.join(INIT_DIR);
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        {
            let db = Self::open_db(&tmp, options)?;
            db.flush()?;
        }
        fs::rename(&tmp, dir.join(DB_DIR))?;
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Opens sled, waiting up to [`LOCK_WAIT`] for its file lock: sled releases the lock
    /// from background threads a moment after the last handle is dropped (sled issue
    /// #1234), so a vault closed and reopened at once in one process can find it still
    /// held. Past the wait, the vault is in use by another handle or process.
    fn open_db(path: &Path, options: &SledOptions) -> Result<sled::Db, StorageError> {
        remove_interrupted_snapshots(path)?;
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(options.cache_bytes)
            .flush_every_ms(options.flush_every_ms);
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            // sled 0.34 panics on some truncated database files instead of returning an
            // error; a damaged vault must be an integrity error, never a crash.
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
                .map_err(|_| {
                StorageError::corrupt("the database files are damaged (sled refused them)")
            })?;
            match opened {
                Ok(db) => return Ok(db),
                // sled 0.34 reports a held lock only through this message.
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if start.elapsed() >= LOCK_WAIT {
                        return Err(StorageError::new(
                            "the vault is in use: its database is locked by another open \
                             handle or process",
                        ));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                // At open, sled reports a damaged `conf` file (or a database of another
                // sled version, which no vault has: the version is pinned) as
                // Unsupported: a vault's files damaged, an integrity failure.
                Err(sled::Error::Unsupported(_)) => {
                    return Err(StorageError::corrupt(
                        "the database files are damaged (sled cannot read its configuration)",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Purge swap protocol: (1) copy live pairs to `db.purge`, flush, write
    /// `db.purge/COMPLETE`; (2) rename `db` to `db.old`; (3) rename `db.purge` to `db`;
    /// (4) delete `db.old`. A crash before (2) leaves `db` intact (drop the copy); between
    /// (2) and (3) the complete copy is renamed into place; after (3) `db.old` is deleted.
    fn recover_purge(dir: &Path) -> Result<(), StorageError> {
        let db = dir.join(DB_DIR);
        let purge = dir.join(PURGE_DIR);
        let old = dir.join(OLD_DIR);
        if !db.exists() {
            if purge.join(COMPLETE).exists() {
                fs::rename(&purge, &db)?;
            } else if old.exists() {
                fs::rename(&old, &db)?;
            }
        }
        if purge.exists() {
            fs::remove_dir_all(&purge)?;
        }
        if old.exists() {
            fs::remove_dir_all(&old)?;
        }
        Ok(())
    }

    fn db(&self) -> std::sync::RwLockReadGuard<'_, sled::Db> {
        self.db.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the header file of the vault at `dir` without opening sled; `None` when the
    /// file does not exist. Bounded: a header larger than 64 KiB is refused.
    pub fn read_header_at(dir: &Path) -> Result<Option<Vec<u8>>, StorageError> {
        let path = dir.join(HEADER_FILE);
        match fs::symlink_metadata(&path) {
            // A FIFO, device or symlink (to /dev/zero, say) could hang or never end.
            Ok(m) if !m.file_type().is_file() => {
                return Err(StorageError::corrupt("the header is not a regular file"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(fs::File::open(path)?, 64 * 1024 + 1),
            &mut bytes,
        )?;
        if bytes.len() > 64 * 1024 {
            return Err(StorageError::corrupt("header file larger than 64 KiB"));
        }
        Ok(Some(bytes))
    }

    /// Atomically replaces the header file of `dir`: write a temporary file, fsync it,
    /// rename it over the old one, fsync the directory.
    pub fn write_header_at(dir: &Path, bytes: &[u8]) -> Result<(), StorageError> {
        let tmp = dir.join("header.tmp");
        {
            let mut f = super::private_fs::create_private_file(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join(HEADER_FILE))?;
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

fn pair(r: sled::Result<(sled::IVec, sled::IVec)>) -> Result<KeyValue, StorageError> {
    let (k, v) = r?;
    Ok((k.to_vec(), v.to_vec()))
}

impl Storage for SledStorage {
    fn read_header(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Self::read_header_at(&self.dir)
    }

    fn write_header(&self, bytes: &[u8]) -> Result<(), StorageError> {
        Self::write_header_at(&self.dir, bytes)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db().get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>) -> ScanIter<'_> {
        let db = self.db();
        match end {
            Some(end) => Box::new(db.range(start.to_vec()..end.to_vec()).map(pair)),
            None => Box::new(db.range(start.to_vec()..).map(pair)),
        }
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        match self.db().range(start.to_vec()..end.to_vec()).next_back() {
            Some(r) => Ok(Some(pair(r)?)),
            None => Ok(None),
        }
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut b = sled::Batch::default();
        for op in batch.ops {
            match op {
                super::Op::Put(k, v) => b.insert(k, v),
                super::Op::Delete(k) => b.remove(k),
            }
        }
        self.db().apply_batch(b)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db().flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(self.db().size_on_disk()?)
    }

    /// sled is log-structured: removed values stay in its segment files until they are
    /// cleaned. A purge copies the live pairs into a fresh database and swaps it in
    /// (protocol at `recover_purge`), so no file of the vault holds deleted data.
    /// Blocks every other storage call meanwhile.
    fn log_store(
        &self,
        vault_id: crate::VaultId,
        create: bool,
    ) -> crate::Result<std::sync::Arc<dyn crate::logstore::LogStore>> {
        use crate::logstore::{SegmentLog, SegmentOptions};
        let seg = SegmentOptions {
            max_segment_bytes: self.options.log_segment_bytes,
        };
        let log = if create {
            // Only reached without a header: what an interrupted create left is no vault.
            for p in [crate::logstore::LOG_DIR, crate::logstore::ANCHOR_FILE] {
                let path = self.dir.join(p);
                if path.is_dir() {
                    fs::remove_dir_all(&path)?;
                } else if path.exists() {
                    fs::remove_file(&path)?;
                }
            }
            SegmentLog::create(&self.dir, vault_id, seg)?
        } else {
            SegmentLog::open(&self.dir, vault_id, seg)?
        };
        Ok(std::sync::Arc::new(log))
    }

    fn purge(&self) -> Result<(), StorageError> {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        guard.flush()?;
        let purge = self.dir.join(PURGE_DIR);
        if purge.exists() {
            fs::remove_dir_all(&purge)?;
        }
        {
            let fresh = Self::open_db(&purge, &self.options)?;
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            for item in guard.iter() {
                let (k, v) = item?;
                batch.insert(k, v);
                n += 1;
                if n.is_multiple_of(4096) {
                    fresh.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            fresh.apply_batch(batch)?;
            fresh.flush()?;
        }
        fs::File::create(purge.join(COMPLETE))?.sync_all()?;
        fs::File::open(&purge)?.sync_all()?;
        let db = self.dir.join(DB_DIR);
        let old = self.dir.join(OLD_DIR);
        fs::rename(&db, &old)?;
        fs::rename(&purge, &db)?;
        fs::remove_file(db.join(COMPLETE))?;
        fs::File::open(&self.dir)?.sync_all()?;
        *guard = Self::open_db(&db, &self.options)?;
        super::private_fs::restrict_tree(&db)?;
        fs::remove_dir_all(&old)?;
        Ok(())
    }
}

/// Removes the snapshot files sled 0.34.7 left half-written when its process was killed.
///
/// sled writes a snapshot (at every open whose log advanced) to `snap.<lsn>.generating`,
/// fsyncs it and renames it to `snap.<lsn>`; old snapshots are removed only after the
/// rename. But it reads back the *last name in sort order* among all `snap.*` files,
/// `.generating` ones included (`pagecache/snapshot.rs` `read_snapshot`), so a snapshot
/// write cut by a kill sorts last and fails sled's CRC: sled then refuses the whole
/// database as corrupt, though no data was lost (sled issue #1527). A `.generating` file
/// is never the snapshot in force — the rename is what makes a snapshot — so removing it
/// leaves sled the previous snapshot and its log, from which it rebuilds the same state.
/// Nothing else is touched. Errors: the directory cannot be listed or a file removed.
fn remove_interrupted_snapshots(path: &Path) -> Result<(), StorageError> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
