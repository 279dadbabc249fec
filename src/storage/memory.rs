//! An in-memory backend for tests and examples. Clones share the same state, so a test
//! can "reopen" a vault over the same bytes. Fault injection is a wrapper over any
//! backend ([`crate::danger::FaultyStorage`]); raw access to the bytes is
//! [`crate::danger::RawAccess`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{KeyValue, Op, ScanIter, Storage, WriteBatch};
use crate::error::StorageError;

#[derive(Default)]
struct State {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    header: Option<Vec<u8>>,
}

/// Shared in-memory storage. See the module docs.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
    /// The access log kept with this store (shared by clones, like the data).
    log: crate::logstore::MemoryLog,
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

    /// A deep copy with its own state (a "backup" of the whole store).
    pub fn deep_clone(&self) -> Self {
        let s = self.lock();
        MemoryStorage {
            state: Arc::new(Mutex::new(State {
                map: s.map.clone(),
                header: s.header.clone(),
            })),
            log: self.log.deep_clone(),
        }
    }

    /// The access log kept with this store (for tests that tamper with it).
    pub fn memory_log(&self) -> &crate::logstore::MemoryLog {
        &self.log
    }
}

impl Storage for MemoryStorage {
    fn log_store(
        &self,
        _vault_id: crate::VaultId,
        create: bool,
    ) -> crate::Result<Arc<dyn crate::logstore::LogStore>> {
        if create {
            self.log.reset();
        }
        Ok(Arc::new(self.log.clone()))
    }

    fn read_header(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let s = self.lock();
        Ok(s.header.clone())
    }

    fn write_header(&self, bytes: &[u8]) -> Result<(), StorageError> {
        self.lock().header = Some(bytes.to_vec());
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let s = self.lock();
        Ok(s.map.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>) -> ScanIter<'_> {
        let s = self.lock();
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
        Ok(s.map
            .range(start.to_vec()..end.to_vec())
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut s = self.lock();
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    s.map.insert(k, v);
                }
                Op::Delete(k) => {
                    s.map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        Ok(0)
    }
}

/// Raw access to a [`MemoryStorage`]'s bytes, bypassing the vault (for tamper tests).
/// Dangerous: re-exported as [`crate::danger::RawAccess`], to be named only by tests.
pub trait RawAccess {
    /// A copy of every key-value pair (for tamper tests).
    fn dump(&self) -> Vec<KeyValue>;

    /// Overwrites one raw pair, bypassing the vault (for tamper tests).
    fn raw_put(&self, key: &[u8], value: &[u8]);

    /// Removes one raw pair, bypassing the vault (for tamper tests).
    fn raw_delete(&self, key: &[u8]);

    /// The header bytes, bypassing the vault (for tamper tests).
    fn raw_header(&self) -> Option<Vec<u8>>;

    /// Overwrites the header bytes, bypassing the vault (for tamper tests).
    fn raw_set_header(&self, bytes: &[u8]);
}

impl RawAccess for MemoryStorage {
    /// A copy of every key-value pair (for tamper tests).
    fn dump(&self) -> Vec<KeyValue> {
        self.lock()
            .map
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Overwrites one raw pair, bypassing the vault (for tamper tests).
    fn raw_put(&self, key: &[u8], value: &[u8]) {
        self.lock().map.insert(key.to_vec(), value.to_vec());
    }

    /// Removes one raw pair, bypassing the vault (for tamper tests).
    fn raw_delete(&self, key: &[u8]) {
        self.lock().map.remove(key);
    }

    /// The header bytes, bypassing the vault (for tamper tests).
    fn raw_header(&self) -> Option<Vec<u8>> {
        self.lock().header.clone()
    }

    /// Overwrites the header bytes, bypassing the vault (for tamper tests).
    fn raw_set_header(&self, bytes: &[u8]) {
        self.lock().header = Some(bytes.to_vec());
    }
}
