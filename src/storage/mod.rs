//! The storage layer: an ordered map of opaque byte keys to opaque byte values, plus one
//! header slot. It knows nothing of keys or records and only ever sees ciphertext,
//! keyed hashes and counters, so a backend (sled, memory, later a server) learns nothing
//! a file on disk would not show.
//!
//! Contract every backend keeps: `apply` is atomic (all operations of a batch or none,
//! also across a crash); `write_header` replaces the header atomically and durably;
//! `flush` makes every applied batch durable.

pub(crate) mod memory;
pub mod private_fs;
mod sled_backend;

pub use memory::MemoryStorage;
pub use sled_backend::{DB_DIR, DirLock, HEADER_FILE, LOCK_FILE, SledOptions, SledStorage};

use crate::error::StorageError;

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace `key` with `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(Vec<u8>),
}

/// A set of writes applied atomically by [`Storage::apply`].
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// The writes, applied in order.
    pub ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Queues an insert.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(Op::Put(key, value));
    }

    /// Queues a removal.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(Op::Delete(key));
    }

    /// Number of queued writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when no write is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key-value pair read from a scan.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// An iterator over a key range, in ascending key order.
pub type ScanIter<'a> = Box<dyn Iterator<Item = Result<KeyValue, StorageError>> + Send + 'a>;

/// What medvault needs of a storage backend. See the module docs for the contract.
pub trait Storage: Send + Sync {
    /// Reads the header slot; `None` when no vault was created here.
    fn read_header(&self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces the header slot atomically and durably.
    fn write_header(&self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Reads one value.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Iterates over keys in `[start, end)` (`end = None`: to the end), ascending.
    fn scan(&self, start: &[u8], end: Option<&[u8]>) -> ScanIter<'_>;
    /// The last pair in `[start, end)`, if any.
    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KeyValue>, StorageError>;
    /// Applies a batch atomically.
    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError>;
    /// Makes every applied batch durable (fsync).
    fn flush(&self) -> Result<(), StorageError>;
    /// Bytes used on disk (0 for memory backends).
    fn size_on_disk(&self) -> Result<u64, StorageError>;
    /// Rewrites the store so that no file holds deleted data any more (log-structured
    /// backends keep it until compaction). Logical content is unchanged. Default: no-op,
    /// right for backends that delete in place.
    fn purge(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// The log store that goes with this record store (docs/DESIGN-storage.md): segment
    /// files beside sled, a memory log beside a memory store, a table of the same server
    /// later. With `create`, an empty log for a new vault (replacing whatever a create
    /// interrupted before its header left); otherwise the existing one, not yet
    /// recovered. Default: this backend keeps no log, an [`crate::Error::Storage`] error.
    fn log_store(
        &self,
        vault_id: crate::VaultId,
        create: bool,
    ) -> crate::Result<std::sync::Arc<dyn crate::logstore::LogStore>> {
        let _ = (vault_id, create);
        Err(StorageError::new("this storage backend keeps no access log").into())
    }
}

/// Smallest key strictly greater than every key starting with `prefix`, or `None`
/// when `prefix` is all `0xff` (then the range runs to the end).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_works() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
