//! **Dangerous knobs for tests** (rustls's model): fault injection over any storage
//! backend, raw access to a memory store's bytes, and low-cost KDF parameters. Nothing here is needed to use a
//! vault, and everything here can break the guarantees a vault gives (a fault plan makes
//! every commit fail; raw access rewrites sealed bytes behind the access log). Only
//! tests, fuzzers and benchmarks should name this module.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::KdfParams;
use crate::error::StorageError;
use crate::logstore::{Frame, FrameIter, LogPos, LogStore, Recovered};
use crate::storage::{KeyValue, MemoryStorage, ScanIter, Storage, WriteBatch};

pub use crate::storage::memory::RawAccess;

/// Low-cost Argon2id parameters for tests and examples only (m = 64 KiB, t = 1, p = 1):
/// they offer no real resistance to guessing a passphrase. Never use them for a real
/// vault; the default ([`KdfParams::default`]) is RFC 9106's second recommended option.
///
/// ```
/// let p = medvault::danger::insecure_kdf_params();
/// assert_eq!((p.memory_kib, p.iterations, p.lanes), (64, 1, 1));
/// ```
pub fn insecure_kdf_params() -> KdfParams {
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    }
}

/// Which faults a [`FaultyStorage`] injects.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Fail every batch once this many batches have been applied.
    pub fail_writes_after: Option<u64>,
    /// Fail every read (`read_header`, `get`, `scan`, `last_in`).
    pub fail_reads: bool,
    /// Fail `flush`.
    pub fail_flush: bool,
    /// When the write fault fires, first apply this many operations of the failing batch
    /// (a torn write, as a non-atomic backend would leave on a crash) before reporting
    /// the error.
    pub torn_ops: usize,
    /// Fail header writes.
    pub fail_header_writes: bool,
    /// Fail every access-log append once this many appends have succeeded (the log store
    /// the wrapped backend hands out is wrapped too). Nothing of a failed append is kept.
    pub fail_log_appends_after: Option<u64>,
    /// Fail the access log's `sync` (fdatasync).
    pub fail_log_sync: bool,
    /// Fail anchor writes and anchor syncs.
    pub fail_anchor_writes: bool,
    /// Fail the I/O call with this index (0-based, counted from when the plan was set)
    /// among every call that writes or syncs, on both stores: the record store's
    /// `apply`, `flush` and `write_header`, and the log store's `append`, `sync`,
    /// `write_anchor`, `sync_anchor` and `drop_before`. Each call is counted once, whether it fails or
    /// not; [`FaultHandle::io_calls`] reads the count, so a test can run an operation
    /// once without faults to learn how many calls it makes, then fail each in turn.
    pub fail_io_call: Option<u64>,
    /// With [`FaultPlan::fail_io_call`]: every counted call from that index on fails too
    /// (a disk that went away), instead of that one call only (a transient error).
    pub fail_io_sticky: bool,
}

#[derive(Default)]
struct Faults {
    plan: FaultPlan,
    batches: u64,
    appends: u64,
    io_calls: u64,
}

impl Faults {
    /// Counts one writing or syncing I/O call; true when the plan fails it.
    fn io_call_fails(&mut self) -> bool {
        let n = self.io_calls;
        self.io_calls += 1;
        match self.plan.fail_io_call {
            Some(at) if self.plan.fail_io_sticky => n >= at,
            Some(at) => n == at,
            None => false,
        }
    }

    fn reset(&mut self, plan: FaultPlan) {
        self.plan = plan;
        self.batches = 0;
        self.appends = 0;
        self.io_calls = 0;
    }
}

/// A [`Storage`] that injects the faults of a [`FaultPlan`] into any backend `S` (the
/// memory backend, sled, ...): failed reads, writes from the N-th batch on, torn batches,
/// failed flushes and header writes. Clones share the fault state (and, when `S`'s clones
/// share their data, as [`MemoryStorage`]'s do, the data), so a test can change the plan
/// while a vault holds the store. Injected failures are [`StorageError`]s
/// (`"injected fault: ..."`).
#[derive(Clone)]
pub struct FaultyStorage<S> {
    inner: S,
    faults: Arc<Mutex<Faults>>,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner` with no fault planned.
    pub fn new(inner: S) -> Self {
        FaultyStorage {
            inner,
            faults: Arc::default(),
        }
    }

    /// Replaces the fault plan and resets the batch, append and I/O-call counters.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.lock().reset(plan);
    }

    /// Writing or syncing I/O calls made on both stores since the plan was set (see
    /// [`FaultPlan::fail_io_call`]).
    pub fn io_calls(&self) -> u64 {
        self.lock().io_calls
    }

    /// A handle that changes this store's fault plan after the store itself was handed
    /// to a vault (for backends that cannot be cloned, such as sled).
    pub fn handle(&self) -> FaultHandle {
        FaultHandle {
            faults: self.faults.clone(),
        }
    }

    /// The wrapped backend (no fault injected through it).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, Faults> {
        // A panic while holding the lock (a test assertion) leaves plain data behind.
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reads_fail(&self) -> bool {
        self.lock().plan.fail_reads
    }
}

/// Changes the fault plan of the [`FaultyStorage`] it came from
/// ([`FaultyStorage::handle`]).
#[derive(Clone)]
pub struct FaultHandle {
    faults: Arc<Mutex<Faults>>,
}

impl FaultHandle {
    /// Replaces the fault plan and resets the batch, append and I/O-call counters.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset(plan);
    }

    /// Writing or syncing I/O calls made on both stores since the plan was set (see
    /// [`FaultPlan::fail_io_call`]).
    pub fn io_calls(&self) -> u64 {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .io_calls
    }
}

impl FaultyStorage<MemoryStorage> {
    /// A fresh memory store behind a fault injector.
    pub fn memory() -> Self {
        FaultyStorage::new(MemoryStorage::new())
    }
}

impl<S> std::ops::Deref for FaultyStorage<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

fn injected(what: &str) -> StorageError {
    StorageError::new(format!("injected fault: {what}"))
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn read_header(&self) -> Result<Option<Vec<u8>>, StorageError> {
        if self.reads_fail() {
            return Err(injected("read"));
        }
        self.inner.read_header()
    }

    fn write_header(&self, bytes: &[u8]) -> Result<(), StorageError> {
        {
            let mut f = self.lock();
            if f.io_call_fails() {
                return Err(injected("I/O call (header write)"));
            }
            if f.plan.fail_header_writes {
                return Err(injected("header write"));
            }
        }
        self.inner.write_header(bytes)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if self.reads_fail() {
            return Err(injected("read"));
        }
        self.inner.get(key)
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>) -> ScanIter<'_> {
        if self.reads_fail() {
            return Box::new(std::iter::once(Err(injected("read"))));
        }
        self.inner.scan(start, end)
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        if self.reads_fail() {
            return Err(injected("read"));
        }
        self.inner.last_in(start, end)
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let torn = {
            let mut f = self.lock();
            if f.io_call_fails() {
                return Err(injected("I/O call (apply)"));
            }
            let fire = matches!(f.plan.fail_writes_after, Some(n) if f.batches >= n);
            f.batches += 1;
            fire.then_some(f.plan.torn_ops)
        };
        let Some(torn) = torn else {
            return self.inner.apply(batch);
        };
        if torn > 0 {
            let mut part = WriteBatch::new();
            part.ops = batch.ops.into_iter().take(torn).collect();
            self.inner.apply(part)?;
        }
        Err(injected("write"))
    }

    fn flush(&self) -> Result<(), StorageError> {
        let mut f = self.lock();
        if f.io_call_fails() {
            return Err(injected("I/O call (flush)"));
        }
        if f.plan.fail_flush {
            return Err(injected("flush"));
        }
        drop(f);
        self.inner.flush()
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.inner.size_on_disk()
    }

    fn purge(&self) -> Result<(), StorageError> {
        self.inner.purge()
    }

    fn log_store(
        &self,
        vault_id: crate::VaultId,
        create: bool,
    ) -> crate::Result<Arc<dyn crate::logstore::LogStore>> {
        Ok(Arc::new(FaultyLog {
            inner: self.inner.log_store(vault_id, create)?,
            faults: self.faults.clone(),
        }))
    }
}

/// The log store of a [`FaultyStorage`]: injects the plan's log faults (appends from the
/// N-th on, sync, anchor writes) into the backend's own log store, sharing the plan.
struct FaultyLog {
    inner: Arc<dyn LogStore>,
    faults: Arc<Mutex<Faults>>,
}

impl FaultyLog {
    fn lock(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn injected_log(what: &str) -> crate::Error {
    crate::Error::Storage(injected(what))
}

impl LogStore for FaultyLog {
    fn recover(&self, from: &LogPos) -> crate::Result<Recovered> {
        if self.lock().plan.fail_reads {
            return Err(injected_log("log read"));
        }
        self.inner.recover(from)
    }

    fn append(&self, frames: &[Frame]) -> crate::Result<LogPos> {
        {
            let mut f = self.lock();
            if f.io_call_fails() {
                return Err(injected_log("I/O call (log append)"));
            }
            let fire = matches!(f.plan.fail_log_appends_after, Some(n) if f.appends >= n);
            if fire {
                return Err(injected_log("log append"));
            }
            f.appends += 1;
        }
        self.inner.append(frames)
    }

    fn sync(&self) -> crate::Result<()> {
        let mut f = self.lock();
        if f.io_call_fails() {
            return Err(injected_log("I/O call (log sync)"));
        }
        if f.plan.fail_log_sync {
            return Err(injected_log("log sync"));
        }
        drop(f);
        self.inner.sync()
    }

    fn end(&self) -> LogPos {
        self.inner.end()
    }

    fn read(&self, from_seq: u64) -> crate::Result<FrameIter<'_>> {
        if self.lock().plan.fail_reads {
            return Err(injected_log("log read"));
        }
        self.inner.read(from_seq)
    }

    fn read_anchor(&self) -> crate::Result<[Option<Vec<u8>>; 2]> {
        if self.lock().plan.fail_reads {
            return Err(injected_log("anchor read"));
        }
        self.inner.read_anchor()
    }

    fn write_anchor(&self, slot: usize, bytes: &[u8]) -> crate::Result<()> {
        let mut f = self.lock();
        if f.io_call_fails() {
            return Err(injected_log("I/O call (anchor write)"));
        }
        if f.plan.fail_anchor_writes {
            return Err(injected_log("anchor write"));
        }
        drop(f);
        self.inner.write_anchor(slot, bytes)
    }

    fn sync_anchor(&self) -> crate::Result<()> {
        let mut f = self.lock();
        if f.io_call_fails() {
            return Err(injected_log("I/O call (anchor sync)"));
        }
        if f.plan.fail_anchor_writes {
            return Err(injected_log("anchor sync"));
        }
        drop(f);
        self.inner.sync_anchor()
    }

    fn size_on_disk(&self) -> crate::Result<u64> {
        self.inner.size_on_disk()
    }

    fn tree(&self) -> Option<&crate::logstore::tree::LogTree> {
        self.inner.tree()
    }

    fn drop_before(&self, first_kept: u64) -> crate::Result<u64> {
        {
            let mut f = self.lock();
            if f.io_call_fails() {
                return Err(injected_log("I/O call (drop segments)"));
            }
        }
        self.inner.drop_before(first_kept)
    }
}
