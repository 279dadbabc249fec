//! A bounded connection pool: at most `max` connections to one vault's schema, each with
//! the vault's statements prepared once when it connects. A caller waits (on a condition
//! variable) when every connection is taken; a connection found closed is dropped and
//! its slot freed, so the pool heals after a server restart. Every new connection first
//! confirms that the handle still holds the vault's advisory lock ([`VaultLock`]): a
//! restart ends the session that held it, and no connection made after a restart writes
//! before the lock is taken again.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use medvault::StorageError;
use postgres::{Client, Config, NoTls, Statement};

use crate::pg_error;

/// The statements of one connection, prepared against the vault's schema (table names
/// schema-qualified, so no `search_path` is relied on). Column meanings: docs/POSTGRES.md.
pub(crate) struct Stmts {
    pub get: Statement,
    pub scan_to: Statement,
    pub scan_open: Statement,
    pub last_in: Statement,
    pub delete: Statement,
    pub upsert: Statement,
    pub log_insert: Statement,
    pub log_read: Statement,
    pub log_has: Statement,
    pub anchor_read: Statement,
    pub anchor_write: Statement,
    pub header_read: Statement,
    pub header_write: Statement,
}

/// One pooled connection.
pub(crate) struct Conn {
    pub client: Client,
    pub st: Stmts,
}

impl Conn {
    fn connect(config: &Config, schema: &str) -> Result<Conn, StorageError> {
        let mut client = config.connect(NoTls).map_err(pg_error)?;
        let s = schema;
        let mut p = |sql: String| client.prepare(&sql).map_err(pg_error);
        let st = Stmts {
            get: p(format!(
                "SELECT value FROM {s}.records WHERE tag = $1 AND key = $2"
            ))?,
            scan_to: p(format!(
                "SELECT tag, key, value FROM {s}.records WHERE key >= $1 AND key < $2 \
                 ORDER BY key LIMIT $3"
            ))?,
            scan_open: p(format!(
                "SELECT tag, key, value FROM {s}.records WHERE key >= $1 ORDER BY key LIMIT $2"
            ))?,
            last_in: p(format!(
                "SELECT tag, key, value FROM {s}.records WHERE key >= $1 AND key < $2 \
                 ORDER BY key DESC LIMIT 1"
            ))?,
            delete: p(format!(
                "DELETE FROM {s}.records WHERE (tag, key) IN \
                 (SELECT * FROM unnest($1::bytea[], $2::bytea[]))"
            ))?,
            upsert: p(format!(
                "INSERT INTO {s}.records (tag, key, value) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) \
                 ON CONFLICT (tag, key) DO UPDATE SET value = EXCLUDED.value"
            ))?,
            log_insert: p(format!(
                "INSERT INTO {s}.log (seq, frame) SELECT * FROM unnest($1::int8[], $2::bytea[])"
            ))?,
            log_read: p(format!(
                "SELECT seq, frame FROM {s}.log WHERE seq >= $1 AND seq < $2 \
                 ORDER BY seq LIMIT $3"
            ))?,
            log_has: p(format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.log WHERE seq = $1)"
            ))?,
            anchor_read: p(format!("SELECT slot, bytes FROM {s}.anchor"))?,
            anchor_write: p(format!(
                "INSERT INTO {s}.anchor (slot, bytes) VALUES ($1, $2) \
                 ON CONFLICT (slot) DO UPDATE SET bytes = EXCLUDED.bytes"
            ))?,
            header_read: p(format!("SELECT bytes FROM {s}.header WHERE id = 1"))?,
            header_write: p(format!(
                "INSERT INTO {s}.header (id, bytes) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET bytes = EXCLUDED.bytes"
            ))?,
        };
        Ok(Conn { client, st })
    }
}

/// The vault's session-level advisory lock (docs/POSTGRES.md "In use: the advisory
/// lock"), held by a connection of its own for the handle's life.
pub(crate) struct VaultLock {
    session: Mutex<Client>,
    key: i64,
}

impl VaultLock {
    /// The lock held by `session` (which took `pg_try_advisory_lock(key)`).
    pub(crate) fn new(session: Client, key: i64) -> VaultLock {
        VaultLock {
            session: Mutex::new(session),
            key,
        }
    }

    /// Checks that the session holding the lock is alive (a session lock lasts as long
    /// as its session). When the server ended it (a restart), takes the lock again on a
    /// new session; fails with "the vault is in use" when another handle took it
    /// meanwhile (this handle's state may be stale: it must not write), or with the
    /// server's error when it cannot be reached.
    fn confirm(&self, config: &Config) -> Result<(), StorageError> {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if session.is_valid(Duration::from_secs(10)).is_ok() {
            return Ok(());
        }
        let mut fresh = config.connect(NoTls).map_err(pg_error)?;
        let got: bool = fresh
            .query_one("SELECT pg_try_advisory_lock($1)", &[&self.key])
            .map_err(pg_error)?
            .get(0);
        if !got {
            return Err(StorageError::new(
                "the vault is in use: the server ended this handle's session (a restart?) \
                 and another handle took the vault's advisory lock meanwhile; reopen the \
                 vault",
            ));
        }
        *session = fresh;
        Ok(())
    }
}

struct State {
    idle: Vec<Conn>,
    /// Connections open (idle or lent).
    open: usize,
}

/// See the module docs.
pub(crate) struct Pool {
    config: Config,
    schema: String,
    max: usize,
    lock: VaultLock,
    state: Mutex<State>,
    freed: Condvar,
}

/// A connection lent by the pool; returned on drop (dropped instead when closed).
struct Lent<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut s = self.pool.lock();
        match self.conn.take() {
            Some(c) if !c.client.is_closed() => s.idle.push(c),
            _ => s.open = s.open.saturating_sub(1),
        }
        self.pool.freed.notify_one();
    }
}

impl Pool {
    /// A pool of at most `max` (at least 1) connections to `schema` (a quoted
    /// identifier), for the handle that holds `lock`.
    pub(crate) fn new(config: Config, schema: String, max: usize, lock: VaultLock) -> Pool {
        Pool {
            config,
            schema,
            max: max.max(1),
            lock,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lends a connection: an idle one, a new one while fewer than `max` are open (once
    /// the vault's lock is confirmed, [`VaultLock::confirm`]), or the next one returned.
    /// Errors: connecting or preparing failed, the lock lost to another handle.
    fn get(&self) -> Result<Lent<'_>, StorageError> {
        let mut s = self.lock();
        loop {
            if let Some(c) = s.idle.pop() {
                if c.client.is_closed() {
                    s.open = s.open.saturating_sub(1);
                    continue;
                }
                return Ok(Lent {
                    pool: self,
                    conn: Some(c),
                });
            }
            if s.open < self.max {
                s.open += 1;
                drop(s);
                let conn = Conn::connect(&self.config, &self.schema)
                    .and_then(|c| self.lock.confirm(&self.config).map(|()| c));
                return match conn {
                    Ok(c) => Ok(Lent {
                        pool: self,
                        conn: Some(c),
                    }),
                    Err(e) => {
                        let mut s = self.lock();
                        s.open = s.open.saturating_sub(1);
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            s = self.freed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs `f` on a lent connection (see [`Pool::get`]), which returns to the pool
    /// afterwards, also when `f` fails (dropped instead when the server closed it).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut lent = self.get()?;
        match lent.conn.as_mut() {
            Some(c) => f(c),
            None => Err(StorageError::new("connection pool: an empty slot was lent")),
        }
    }

    /// Closes every idle connection (lent ones close when returned after this).
    pub(crate) fn clear(&self) {
        let mut s = self.lock();
        let n = s.idle.len();
        s.idle.clear();
        s.open = s.open.saturating_sub(n);
    }
}
