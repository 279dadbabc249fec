//! medvault on PostgreSQL: the record store ([`PgStorage`], medvault's `Storage` trait)
//! and the access log ([`PgLog`], its `LogStore` trait) in the tables of one schema per
//! vault, holding only what the file backend would show a disk thief: keyed-hash keys,
//! sealed values, sealed log frames and MACed anchors (docs/POSTGRES.md lists every
//! column).
//!
//! * **One transaction per commit.** [`PgLog::append`] keeps a commit's frames in memory;
//!   the record-store batch that follows ([`PgStorage::apply`], with the applied marker)
//!   inserts them and applies the batch in one database transaction, so a change and its
//!   log entry land together or not at all. Frames of commits that change nothing (reads)
//!   are inserted by the next batch or by [`PgLog::sync`] (the group commit), whichever
//!   comes first.
//! * **Sharding.** Every record-store row carries the subject tag of its key
//!   (`records.tag`, the distribution key); with [`PgOptions::partitions`] the table is
//!   hash-partitioned by it (PostgreSQL's declarative partitioning, "Table Partitioning").
//! * **In use.** A handle holds a session-level advisory lock (PostgreSQL "Advisory
//!   Locks") named by the vault's schema for its whole life: one handle at a time, like
//!   the file lock of the sled backend.
//!
//! Entry points: [`create_with`] and [`open_with`] (a `postgres://` URL where the file
//! backend takes a directory), or [`PgStorage::create`] / [`PgStorage::open`] with
//! `Vault::create_in` / `Vault::open_in`.

#![forbid(unsafe_code)]

mod log;
mod pool;
mod storage;

pub use log::PgLog;
pub use storage::{PgStorage, tag_of};

use medvault::{Error, KeySource, StorageError, Vault, VaultOptions};

/// Whether `s` names a PostgreSQL vault (`postgres://` or `postgresql://`), not a path.
pub fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Where a vault lives on a server: the connection settings and the schema that holds
/// its tables (one vault per schema; several vaults share a database).
#[derive(Clone)]
pub struct PgTarget {
    /// Connection settings (host or socket directory, user, database, password...).
    pub config: postgres::Config,
    /// The vault's name, which is its schema's name: 1 to 63 of `[a-z0-9_]`, not
    /// starting with a digit. Default `medvault`.
    pub vault: String,
}

impl std::fmt::Debug for PgTarget {
    // The config may hold a password: only the vault name is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

/// The vault name used when a URL names none.
pub const DEFAULT_VAULT: &str = "medvault";

impl PgTarget {
    /// Parses `postgres://[user[:password]@]host[:port]/database[?options]`
    /// (libpq's URI form, as `postgres::Config` reads it; a socket directory is a
    /// percent-encoded host such as `%2Frun%2Fpostgresql`). medvault's own options are
    /// taken out of the query before the rest is handed to the client: `vault=NAME` (the
    /// schema, default [`DEFAULT_VAULT`]) and `partitions=N` (hash partitions of
    /// `records` for a vault created by this URL, 0 = not partitioned, at most 1024).
    /// Returns the target and the partition count. Errors: [`Error::Storage`] for
    /// another scheme, a bad vault name or partition count, or a URL the client refuses
    /// (the message never repeats the URL, which may hold a password).
    pub fn parse(url: &str) -> medvault::Result<(PgTarget, u32)> {
        if !is_url(url) {
            return Err(invalid("not a postgres:// URL"));
        }
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut vault = DEFAULT_VAULT.to_string();
        let mut partitions = 0u32;
        let mut rest = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("vault", v)) => vault = v.to_string(),
                Some(("partitions", n)) => {
                    partitions = n
                        .parse()
                        .ok()
                        .filter(|n| *n <= 1024)
                        .ok_or_else(|| invalid("partitions must be a number from 0 to 1024"))?;
                }
                _ => rest.push(part),
            }
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config: postgres::Config = url
            .parse()
            .map_err(|_| invalid("the postgres:// URL is malformed (libpq URI form)"))?;
        Ok((PgTarget::new(config, &vault)?, partitions))
    }

    /// A target from client settings and a vault name (checked as in [`PgTarget::parse`]).
    pub fn new(config: postgres::Config, vault: &str) -> medvault::Result<PgTarget> {
        let ok = !vault.is_empty()
            && vault.len() <= 63
            && !vault.as_bytes()[0].is_ascii_digit()
            && vault
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(invalid(
                "a vault name is 1 to 63 of a-z, 0-9 and _, not starting with a digit",
            ));
        }
        Ok(PgTarget {
            config,
            vault: vault.to_string(),
        })
    }
}

/// Tuning of the PostgreSQL backend.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Most connections a handle opens (the pool's bound), at least 1. Default 8.
    pub pool_size: usize,
    /// Hash partitions of `records` by subject tag when the vault's tables are created
    /// (0: one plain table). Ignored when they exist. Default 0.
    pub partitions: u32,
    /// How long opening waits for another handle's advisory lock before "the vault is
    /// in use". Default 5 s.
    pub lock_wait: std::time::Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 8,
            partitions: 0,
            lock_wait: std::time::Duration::from_secs(5),
        }
    }
}

/// Creates a vault at `url` (see [`PgTarget::parse`]): its schema and tables, then the
/// vault as `Vault::create_in` does. Errors: those of `create_in`
/// ([`Error::AlreadyExists`] when the schema holds a vault), [`Error::Storage`] when the
/// server cannot be reached or the URL is bad.
pub fn create_with(url: &str, key: KeySource, options: VaultOptions) -> medvault::Result<Vault> {
    let (target, partitions) = PgTarget::parse(url)?;
    let pg = PgOptions {
        partitions,
        ..PgOptions::default()
    };
    let storage = PgStorage::create(&target, &pg)?;
    Vault::create_in(Box::new(storage), key, options)
}

/// Opens the vault at `url`. Errors: [`Error::NotFound`] (no vault under that name), then
/// those of `Vault::open_in`.
pub fn open_with(url: &str, key: KeySource, options: VaultOptions) -> medvault::Result<Vault> {
    let (target, _) = PgTarget::parse(url)?;
    let storage = PgStorage::open(&target, &PgOptions::default())?;
    Vault::open_in(Box::new(storage), key, options)
}

/// A bad URL or vault name: a storage-configuration error ([`Error::Storage`]).
fn invalid(what: &'static str) -> Error {
    Error::Storage(StorageError::new(what))
}

/// A client error as a storage error: the SQLSTATE and the server's primary message only
/// (its DETAIL may quote key bytes), or the client's own message.
pub(crate) fn pg_error(e: postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) => StorageError::new(format!(
            "postgres: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        )),
        None => StorageError::new(format!("postgres: {e}")),
    }
}

pub mod testdb;

/// Every byte the tables of the vault at `url` hold (header, records' tags, keys and
/// values, log frames, anchor slots, meta), concatenated row after row: what the server
/// stores for this vault, for a plaintext scan. Takes no lock; reads a consistent
/// snapshot (one REPEATABLE READ transaction).
pub fn server_view(url: &str) -> medvault::Result<Vec<u8>> {
    let (target, _) = PgTarget::parse(url)?;
    let mut client = target.config.connect(postgres::NoTls).map_err(pg_error)?;
    let s = storage::quoted(&target.vault);
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(pg_error)?;
    let mut out = Vec::new();
    for sql in [
        format!("SELECT bytes FROM {s}.header"),
        format!("SELECT tag || key || value FROM {s}.records"),
        format!("SELECT int8send(seq) || frame FROM {s}.log"),
        format!("SELECT bytes FROM {s}.anchor"),
        format!("SELECT convert_to(name || value, 'UTF8') FROM {s}.meta"),
    ] {
        for row in tx.query(&sql, &[]).map_err(pg_error)? {
            let b: Vec<u8> = row.try_get(0).map_err(pg_error)?;
            out.extend_from_slice(&b);
        }
    }
    tx.commit().map_err(pg_error)?;
    Ok(out)
}
