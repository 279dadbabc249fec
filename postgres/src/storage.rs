//! [`PgStorage`]: the record store in table `records` of the vault's schema, the header
//! in `header`; the schema (docs/POSTGRES.md) is created here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use medvault::storage::{KeyValue, Op, ScanIter, Storage, WriteBatch};
use medvault::{Error, StorageError};
use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};

use crate::pool::{Pool, VaultLock};
use crate::{PgOptions, PgTarget, pg_error};

/// Rows fetched per round trip by a scan.
const PAGE: i64 = 1024;

/// Layout version of the tables (table `meta`, row `layout`).
pub(crate) const LAYOUT: &str = "1";

/// The subject tag a record-store key is distributed by (docs/FORMAT.md "Storage key
/// space"): bytes 1..17 of a key under `'r'` (record), `'k'` (subject key entry), `'e'`
/// (erasure mark), `'o'` (research objection) and `'y'` (reverse index entry), each
/// `prefix || subject_tag (16) || ...`; the 16 bytes before the last 16 of a key under
/// `'x'` (blind-index entry, `'x' || index_id || value_hash || subject_tag ||
/// record_tag`); empty for every other key (the vault's global rows: applied marker,
/// policy, index definitions, rotation state, research seeds, and prefixes this rule
/// does not know), which all go to one partition. Part of the stored layout: a row whose
/// tag differs from this rule fails every scan (tampering).
pub fn tag_of(key: &[u8]) -> &[u8] {
    match key.first() {
        Some(b'r' | b'k' | b'e' | b'o' | b'y') if key.len() >= 17 => &key[1..17],
        Some(b'x') if key.len() >= 1 + 9 + 32 => &key[key.len() - 32..key.len() - 16],
        _ => &[],
    }
}

/// State shared by a [`PgStorage`] and its [`crate::PgLog`]: the pool and the log's
/// frames not yet inserted.
pub(crate) struct Shared {
    pub pool: Pool,
    pub log: Mutex<LogState>,
    /// The vault's schema as a quoted SQL identifier (`"name"`).
    pub schema: String,
    /// The schema's plain name.
    pub name: String,
}

/// The log's in-memory tail (see [`crate::PgLog`]).
#[derive(Default)]
pub(crate) struct LogState {
    /// Frames appended but not yet inserted: `(seq, encoded frame)`, consecutive.
    pub pending: Vec<(i64, Vec<u8>)>,
    /// Sequence number of the next frame.
    pub end: u64,
    /// A COMMIT failed without telling whether it took effect: the log refuses appends
    /// until the vault reopens (and recovers from what the server holds).
    pub poisoned: bool,
}

impl Shared {
    pub(crate) fn log_state(&self) -> MutexGuard<'_, LogState> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Inserts `pending` frames within `tx`.
pub(crate) fn insert_frames(
    tx: &mut postgres::Transaction<'_>,
    stmt: &postgres::Statement,
    pending: &[(i64, Vec<u8>)],
) -> Result<(), StorageError> {
    if pending.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = pending.iter().map(|(s, _)| *s).collect();
    let frames: Vec<&[u8]> = pending.iter().map(|(_, f)| f.as_slice()).collect();
    tx.execute(stmt, &[&seqs, &frames]).map_err(pg_error)?;
    Ok(())
}

/// The record store of one vault on PostgreSQL. See the crate docs.
pub struct PgStorage {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("schema", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// The advisory-lock key of a vault: the first 8 bytes of
/// SHA-256("medvault/v1/pg-vault-lock" || 0x00 || database || 0x00 || schema), as a
/// big-endian i64 (one 64-bit key space per database, shared with other applications:
/// the hash makes a collision with their keys improbable).
fn lock_key(database: &str, schema: &str) -> i64 {
    let h = Sha256::new()
        .chain_update(b"medvault/v1/pg-vault-lock\0")
        .chain_update(database.as_bytes())
        .chain_update(b"\0")
        .chain_update(schema.as_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_be_bytes(b)
}

/// `name` as a quoted SQL identifier (names are checked to `[a-z0-9_]` by
/// [`PgTarget::new`], so no quote needs doubling).
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// Whether the vault's tables exist (the `meta` table is created last).
fn exists(client: &mut Client, schema: &str) -> Result<bool, StorageError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables \
             WHERE schemaname = $1 AND tablename = 'meta')",
            &[&schema],
        )
        .map_err(pg_error)?;
    Ok(row.get(0))
}

/// Creates the schema and its tables in one transaction (docs/POSTGRES.md "Schema").
fn create_tables(client: &mut Client, schema: &str, partitions: u32) -> Result<(), StorageError> {
    let s = schema;
    let mut tx = client.transaction().map_err(pg_error)?;
    let partitioned = if partitions > 0 {
        " PARTITION BY HASH (tag)"
    } else {
        ""
    };
    let mut ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE {s}.header (
             id smallint PRIMARY KEY CHECK (id = 1),
             bytes bytea NOT NULL);
         CREATE TABLE {s}.records (
             tag bytea NOT NULL,
             key bytea NOT NULL,
             value bytea NOT NULL,
             PRIMARY KEY (tag, key)){partitioned};
         CREATE INDEX records_key ON {s}.records (key);
         CREATE TABLE {s}.log (
             seq bigint PRIMARY KEY CHECK (seq >= 0),
             frame bytea NOT NULL);
         CREATE TABLE {s}.anchor (
             slot smallint PRIMARY KEY CHECK (slot IN (0, 1)),
             bytes bytea NOT NULL);
         ALTER TABLE {s}.records ALTER COLUMN tag SET STORAGE PLAIN;
         ALTER TABLE {s}.records ALTER COLUMN key SET STORAGE PLAIN;"
    );
    for i in 0..partitions {
        ddl.push_str(&format!(
            "CREATE TABLE {s}.records_p{i} PARTITION OF {s}.records \
             FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i});"
        ));
    }
    ddl.push_str(&format!(
        "CREATE TABLE {s}.meta (name text PRIMARY KEY, value text NOT NULL);
         INSERT INTO {s}.meta VALUES ('layout', '{LAYOUT}'), ('tag_rule', '1'),
             ('partitions', '{partitions}');"
    ));
    tx.batch_execute(&ddl).map_err(pg_error)?;
    tx.commit().map_err(pg_error)
}

impl PgStorage {
    /// Connects to `target`, takes the vault's advisory lock, and creates the schema and
    /// tables when missing (with `options.partitions` hash partitions). The vault itself
    /// is created by `Vault::create_in` on the result. Errors: the server unreachable,
    /// the vault in use (after `options.lock_wait`), DDL refused.
    pub fn create(target: &PgTarget, options: &PgOptions) -> medvault::Result<PgStorage> {
        let mut lock = Self::lock(target, options)?;
        if !exists(&mut lock.0, &target.vault)? {
            create_tables(&mut lock.0, &quoted(&target.vault), options.partitions)?;
        }
        Self::finish(target, options, lock)
    }

    /// Connects to the existing vault at `target` and takes its advisory lock. Errors:
    /// [`Error::NotFound`] when its tables do not exist; the server unreachable; the
    /// vault in use; a table layout of another version.
    pub fn open(target: &PgTarget, options: &PgOptions) -> medvault::Result<PgStorage> {
        let mut lock = Self::lock(target, options)?;
        if !exists(&mut lock.0, &target.vault)? {
            return Err(Error::NotFound);
        }
        Self::finish(target, options, lock)
    }

    fn finish(
        target: &PgTarget,
        options: &PgOptions,
        (mut lock, key): (Client, i64),
    ) -> medvault::Result<Self> {
        let layout: Option<String> = lock
            .query_opt(
                &format!(
                    "SELECT value FROM {}.meta WHERE name = 'layout'",
                    quoted(&target.vault)
                ),
                &[],
            )
            .map_err(pg_error)?
            .map(|r| r.get(0));
        if layout.as_deref() != Some(LAYOUT) {
            return Err(StorageError::corrupt(
                "the vault's tables have another layout version (table meta)",
            )
            .into());
        }
        // The advisory lock is held by one session of the previous handle, its writes run
        // on its other pooled sessions: a handle killed mid-commit can release the lock
        // (its lock session ends) while a transaction of another of its sessions is still
        // in flight on the server. SHARE mode conflicts with the ROW EXCLUSIVE every
        // writer holds until its transaction ends, so this waits for such a transaction
        // to commit or abort before the log's end is read (else this handle appends at a
        // seq that transaction then takes: "duplicate key ... log_pkey").
        let s = quoted(&target.vault);
        lock.batch_execute(&format!(
            "BEGIN; LOCK TABLE {s}.header, {s}.records, {s}.log, {s}.anchor IN SHARE MODE; COMMIT;"
        ))
        .map_err(pg_error)?;
        Ok(PgStorage {
            shared: Arc::new(Shared {
                // The pool holds the lock's session for the handle's life.
                pool: Pool::new(
                    target.config.clone(),
                    quoted(&target.vault),
                    options.pool_size,
                    VaultLock::new(lock, key),
                ),
                log: Mutex::new(LogState::default()),
                schema: quoted(&target.vault),
                name: target.vault.clone(),
            }),
        })
    }

    /// Connects and takes the vault's session-level advisory lock, retrying until
    /// `options.lock_wait` has passed. Returns the session and the lock's key.
    fn lock(target: &PgTarget, options: &PgOptions) -> Result<(Client, i64), StorageError> {
        let mut client = target.config.connect(NoTls).map_err(pg_error)?;
        let db = target
            .config
            .get_dbname()
            .or(target.config.get_user())
            .unwrap_or("");
        let key = lock_key(db, &target.vault);
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .map_err(pg_error)?
                .get(0);
            if got {
                return Ok((client, key));
            }
            if start.elapsed() >= options.lock_wait {
                return Err(StorageError::new(
                    "the vault is in use: another handle holds its advisory lock on the \
                     server; close that handle or let that process finish, then retry \
                     (the lock is released when its session ends, also on a crash)",
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Drops every idle pooled connection (after a server restart, say; closed ones are
    /// also dropped when next found).
    pub fn reset_pool(&self) {
        self.shared.pool.clear();
    }

    /// The vault's name (its schema's).
    pub fn vault_name(&self) -> &str {
        &self.shared.name
    }

    fn scan_page(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<KeyValue>, StorageError> {
        let rows = self.shared.pool.with(|c| {
            match end {
                Some(e) => c.client.query(&c.st.scan_to, &[&start, &e, &PAGE]),
                None => c.client.query(&c.st.scan_open, &[&start, &PAGE]),
            }
            .map_err(pg_error)
        })?;
        rows.into_iter().map(checked_row).collect()
    }
}

/// A `(tag, key, value)` row as a pair, after checking that its tag is the one its key
/// names ([`tag_of`]): a row moved to another tag would be invisible to point reads.
fn checked_row(row: postgres::Row) -> Result<KeyValue, StorageError> {
    let tag: Vec<u8> = row.try_get(0).map_err(pg_error)?;
    let key: Vec<u8> = row.try_get(1).map_err(pg_error)?;
    let value: Vec<u8> = row.try_get(2).map_err(pg_error)?;
    if tag != tag_of(&key) {
        return Err(StorageError::corrupt(
            "a records row's subject tag does not match its key (table records)",
        ));
    }
    Ok((key, value))
}

/// Pages through `[start, end)` in key order, [`PAGE`] rows per round trip.
struct Pages<'a> {
    storage: &'a PgStorage,
    next: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    buf: VecDeque<KeyValue>,
}

impl Iterator for Pages<'_> {
    type Item = Result<KeyValue, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(kv) = self.buf.pop_front() {
            return Some(Ok(kv));
        }
        let start = self.next.take()?;
        match self.storage.scan_page(&start, self.end.as_deref()) {
            Ok(rows) => {
                if rows.len() as i64 == PAGE
                    && let Some((k, _)) = rows.last()
                {
                    // The smallest key after `k`.
                    let mut n = k.clone();
                    n.push(0);
                    self.next = Some(n);
                }
                self.buf = rows.into();
                self.buf.pop_front().map(Ok)
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl Storage for PgStorage {
    fn read_header(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let row = self
            .shared
            .pool
            .with(|c| c.client.query_opt(&c.st.header_read, &[]).map_err(pg_error))?;
        row.map(|r| r.try_get(0).map_err(pg_error)).transpose()
    }

    fn write_header(&self, bytes: &[u8]) -> Result<(), StorageError> {
        self.shared.pool.with(|c| {
            c.client
                .execute(&c.st.header_write, &[&bytes])
                .map_err(pg_error)
                .map(|_| ())
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tag = tag_of(key);
        let row = self.shared.pool.with(|c| {
            c.client
                .query_opt(&c.st.get, &[&tag, &key])
                .map_err(pg_error)
        })?;
        row.map(|r| r.try_get(0).map_err(pg_error)).transpose()
    }

    fn scan(&self, start: &[u8], end: Option<&[u8]>) -> ScanIter<'_> {
        Box::new(Pages {
            storage: self,
            next: Some(start.to_vec()),
            end: end.map(<[u8]>::to_vec),
            buf: VecDeque::new(),
        })
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        let row = self.shared.pool.with(|c| {
            c.client
                .query_opt(&c.st.last_in, &[&start, &end])
                .map_err(pg_error)
        })?;
        row.map(checked_row).transpose()
    }

    /// One transaction: the log frames appended since the last insert (the commit's own
    /// among them), then the batch, collapsed to its final state per key (the last op on
    /// a key wins, as applying the ops in order would leave it): one DELETE and one
    /// upsert, each over arrays. On failure before COMMIT nothing is written and the
    /// frames stay pending; a failed COMMIT (outcome unknown) poisons the log until the
    /// vault reopens.
    fn apply(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for op in batch.ops {
            match op {
                Op::Put(k, v) => last.insert(k, Some(v)),
                Op::Delete(k) => last.insert(k, None),
            };
        }
        let (mut dt, mut dk) = (Vec::new(), Vec::new());
        let (mut pt, mut pk, mut pv) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in &last {
            match v {
                Some(v) => {
                    pt.push(tag_of(k));
                    pk.push(k.as_slice());
                    pv.push(v.as_slice());
                }
                None => {
                    dt.push(tag_of(k));
                    dk.push(k.as_slice());
                }
            }
        }
        let mut log = self.shared.log_state();
        if log.poisoned {
            return Err(crate::log::poisoned());
        }
        let committed = self.shared.pool.with(|c| {
            let mut tx = c.client.transaction().map_err(pg_error)?;
            insert_frames(&mut tx, &c.st.log_insert, &log.pending)?;
            if !dk.is_empty() {
                tx.execute(&c.st.delete, &[&dt, &dk]).map_err(pg_error)?;
            }
            if !pk.is_empty() {
                tx.execute(&c.st.upsert, &[&pt, &pk, &pv])
                    .map_err(pg_error)?;
            }
            Ok(tx.commit())
        })?;
        match committed {
            Ok(()) => {
                log.pending.clear();
                Ok(())
            }
            Err(e) => {
                log.poisoned = true;
                Err(pg_error(e))
            }
        }
    }

    /// Nothing to do: a COMMIT returns after the server made it durable
    /// (`synchronous_commit` on, the default; docs/POSTGRES.md "Durability").
    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Bytes of `records` and `header` (with their partitions, indexes and TOAST).
    fn size_on_disk(&self) -> Result<u64, StorageError> {
        relation_bytes(&self.shared, &["records", "header"])
    }

    /// `VACUUM FULL` of `records`: rewrites the table (and each partition) so that no
    /// data file keeps a deleted row's bytes. WAL segments and backups still may until
    /// they are recycled (docs/POSTGRES.md "Erasure").
    fn purge(&self) -> Result<(), StorageError> {
        let sql = format!("VACUUM FULL {}.records", self.shared.schema);
        self.shared
            .pool
            .with(|c| c.client.batch_execute(&sql).map_err(pg_error))
    }

    fn log_store(
        &self,
        vault_id: medvault::VaultId,
        create: bool,
    ) -> medvault::Result<Arc<dyn medvault::logstore::LogStore>> {
        Ok(Arc::new(crate::PgLog::new(
            self.shared.clone(),
            vault_id,
            create,
        )?))
    }
}

/// Sum of `pg_total_relation_size` over the vault's tables named `names` and their
/// partitions.
pub(crate) fn relation_bytes(shared: &Shared, names: &[&str]) -> Result<u64, StorageError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let schema = shared.name.clone();
    let row = shared.pool.with(|c| {
        c.client
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind = 'r' AND (c.relname = ANY($2) \
                 OR c.oid IN (SELECT inhrelid FROM pg_catalog.pg_inherits i \
                 JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
                 WHERE p.relnamespace = n.oid AND p.relname = ANY($2)))",
                &[&schema, &names],
            )
            .map_err(pg_error)
    })?;
    let n: i64 = row.try_get(0).map_err(pg_error)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
