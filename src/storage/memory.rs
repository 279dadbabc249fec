//! An in-memory backend for tests, with fault injection: it can fail reads, fail writes
//! from the N-th batch on, or tear a batch (apply only its first operations, as a
//! non-atomic backend would on a crash). Clones share the same state, so a test can
//! "reopen" a vault over the same bytes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{KeyValue, Op, ScanIter, Storage, WriteBatch};
use crate::error::StorageError;

/// Which faults a [`MemoryStorage`] injects.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Fail every batch once this many batches have been applied.
    pub fail_writes_after: Option<u64>,
    /// Fail every read (`get`, `scan`, `last_in`).
    pub fail_reads: bool,
    /// Fail `flush`.
    pub fail_flush: bool,
    /// When the write fault fires, first apply this many operations of the failing batch
    /// (a torn write) before reporting the error.
    pub torn_ops: usize,
    /// Fail header writes.
    pub fail_header_writes: bool,
}

#[derive(Default)]
struct State {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    header: Option<Vec<u8>>,
    batches: u64,
    faults: FaultPlan,
}

/// Shared in-memory storage. See the module docs.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
}

impl MemoryStorage {
    /// An empty store without faults.
    pub fn new() -> Self {
        MemoryStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (a test assertion) leaves plain data behind.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the fault plan and resets the batch counter.
    pub fn set_faults(&self, faults: FaultPlan) {
        let mut s = self.lock();
        s.faults = faults;
        s.batches = 0;
    }

    /// A copy of every key-value pair (for tamper tests).
    pub fn dump(&self) -> Vec<KeyValue> {
        self.lock()
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Overwrites one raw pair, bypassing the vault (for tamper tests).
    pub fn raw_put(&self, key: &[u8], value: &[u8]) {
        self.lock().map.insert(key.to_vec(), value.to_vec());
    }

    /// Removes one raw pair, bypassing the vault (for tamper tests).
    pub fn raw_delete(&self, key: &[u8]) {
        self.lock().map.remove(key);
    }

    /// The header bytes, bypassing the vault (for tamper tests).
    pub fn raw_header(&self) -> Option<Vec<u8>> {
        self.lock().header.clone()
    }

    /// Overwrites the header bytes, bypassing the vault (for tamper tests).
    pub fn raw_set_header(&self, bytes: &[u8]) {
        self.lock().header = Some(bytes.to_vec());
    }

    /// A deep copy with its own state (a "backup" of the whole store).
    pub fn deep_clone(&self) -> Self {
        let s = self.lock();
        MemoryStorage {
            state: Arc::new(Mutex::new(State {
                map: s.map.clone(),
                header: s.header.clone(),
                batches: 0,
                faults: FaultPlan::default(),
            })),
        }
    }
}

fn injected(what: &str) -> StorageError {
    StorageError::new(format!("injected fault: {what}"))
}

impl Storage for MemoryStorage {
    fn read_header(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let s = self.lock();
        if s.faults.fail_reads {
            return Err(injected("read"));
        }
        Ok(s.header.clone())
    }

    fn write_header(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut s = self.lock();
        if s.faults.fail_header_writes {
            return Err(injected("header write"));
        }
        s.header = Some(bytes.to_vec());
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let s = self.lock();
        if s.faults.fail_reads {
            return Err(injected("read"));
        }
        Ok(s.map.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>) -> ScanIter<'_> {
        let s = self.lock();
        if s.faults.fail_reads {
            return Box::new(std::iter::once(Err(injected("read"))));
        }
        // Snapshot the range: the lock is not held while the caller iterates.
        let items: Vec<_> = match end {
            Some(end) => s
                .map
                .range(start.to_vec()..end.to_vec())
                .map(|(k, v)| Ok((k.clone(), v.clone())))
                .collect(),
            None => s
                .map
                .range(start.to_vec()..)
                .map(|(k, v)| Ok((k.clone(), v.clone())))
                .collect(),
        };
        Box::new(items.into_iter())
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        let s = self.lock();
        if s.faults.fail_reads {
            return Err(injected("read"));
        }
        Ok(s.map
            .range(start.to_vec()..end.to_vec())
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut s = self.lock();
        let fire = matches!(s.faults.fail_writes_after, Some(n) if s.batches >= n);
        s.batches += 1;
        let limit = if fire { s.faults.torn_ops } else { usize::MAX };
        for op in batch.ops.into_iter().take(limit) {
            match op {
                Op::Put(k, v) => {
                    s.map.insert(k, v);
                }
                Op::Delete(k) => {
                    s.map.remove(&k);
                }
            }
        }
        if fire {
            return Err(injected("write"));
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        if self.lock().faults.fail_flush {
            return Err(injected("flush"));
        }
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(0)
    }
}
