//! The tamper suite's second backend: a vault on PostgreSQL (`MEDVAULT_TEST_PG`), and a
//! DBA who changes its rows with plain SQL ([`PgDba`], medvault's `RawAccess` for tamper
//! tests), bypassing the backend's code. Used by the tests that run on every backend
//! (`on_every_backend!`); compiled only by the test files that name it.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]
// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use medvault::Vault;
use medvault::danger::RawAccess;
use medvault::storage::KeyValue;
use medvault_postgres::PgTarget;
use medvault_postgres::testdb::TestServer;

/// A DBA's session on one vault's schema. Drops the schema when dropped.
pub struct PgDba {
    srv: TestServer,
    target: PgTarget,
    client: Mutex<postgres::Client>,
}

impl PgDba {
    fn sql(&self, statement: &str) -> String {
        statement.replace("$S", &format!("\"{}\"", self.target.vault))
    }

    /// The vault at the same place, reopened (the previous handle must be dropped).
    pub fn reopen(&self) -> medvault::Result<Vault> {
        let s = self.srv.open(&self.target)?;
        Vault::open_in(
            Box::new(s),
            crate::common::raw_key(),
            crate::common::options(),
        )
    }
}

impl Drop for PgDba {
    fn drop(&mut self) {
        let _ = self.srv.drop_vault(&self.target);
    }
}

impl RawAccess for PgDba {
    fn dump(&self) -> Vec<KeyValue> {
        let q = self.sql("SELECT key, value FROM $S.records ORDER BY key");
        let mut c = self.client.lock().unwrap();
        c.query(q.as_str(), &[])
            .unwrap()
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// `UPDATE` of the row with that key, or an `INSERT` under the key's subject tag
    /// (docs/POSTGRES.md "Tag rule") when there is none.
    fn raw_put(&self, key: &[u8], value: &[u8]) {
        let mut c = self.client.lock().unwrap();
        let n = c
            .execute(
                self.sql("UPDATE $S.records SET value = $2 WHERE key = $1")
                    .as_str(),
                &[&key, &value],
            )
            .unwrap();
        if n == 0 {
            let tag = medvault_postgres::tag_of(key);
            c.execute(
                self.sql("INSERT INTO $S.records (tag, key, value) VALUES ($1, $2, $3)")
                    .as_str(),
                &[&tag, &key, &value],
            )
            .unwrap();
        }
    }

    fn raw_delete(&self, key: &[u8]) {
        let q = self.sql("DELETE FROM $S.records WHERE key = $1");
        self.client
            .lock()
            .unwrap()
            .execute(q.as_str(), &[&key])
            .unwrap();
    }

    fn raw_header(&self) -> Option<Vec<u8>> {
        let q = self.sql("SELECT bytes FROM $S.header WHERE id = 1");
        let mut c = self.client.lock().unwrap();
        c.query_opt(q.as_str(), &[]).unwrap().map(|r| r.get(0))
    }

    fn raw_set_header(&self, bytes: &[u8]) {
        let q = self.sql("UPDATE $S.header SET bytes = $1 WHERE id = 1");
        self.client
            .lock()
            .unwrap()
            .execute(q.as_str(), &[&bytes])
            .unwrap();
    }
}

/// A new vault on a fresh schema of the test server, with test options, and the DBA of
/// its schema; `None` when `MEDVAULT_TEST_PG` is unset (outside CI).
pub fn pg_vault() -> Option<(PgDba, Vault)> {
    let srv = medvault_postgres::testdb::server().unwrap()?;
    let target = srv.fresh();
    let storage = srv.create(&target).unwrap();
    let vault = Vault::create_in(
        Box::new(storage),
        crate::common::raw_key(),
        crate::common::options(),
    )
    .unwrap();
    let client = Mutex::new(srv.client().unwrap());
    Some((
        PgDba {
            srv,
            target,
            client,
        },
        vault,
    ))
}

/// Runs the test function `$name(&dyn RawAccess, &Vault)` on a fresh vault of every
/// backend, as `$name::memory` and `$name::postgres` (the latter listed as ignored
/// without `MEDVAULT_TEST_PG`, required under `CI=true`).
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn memory() {
                let (storage, vault) = $crate::common::memory_vault();
                super::$name(&storage, &vault);
            }

            #[test]
            #[cfg_attr(
                no_test_pg,
                ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)"
            )]
            fn postgres() {
                let Some((dba, vault)) = $crate::pg_dba::pg_vault() else {
                    return;
                };
                super::$name(&dba, &vault);
                drop(vault);
                drop(dba);
            }
        }
    )*};
}
