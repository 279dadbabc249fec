//! Test support: the PostgreSQL server the tests run against, named by the environment
//! variable `MEDVAULT_TEST_PG` (a `postgres://` URL, or the directory of a server's Unix
//! socket, then user `$PGUSER` or `postgres`, database `$PGDATABASE` or `postgres`). Not
//! API; for this workspace's tests (medvault's and this crate's).
//!
//! Without the variable a test is skipped with the message [`SKIPPED`]; under `CI=true`
//! its absence is an error ([`server`]). With `MEDVAULT_TEST_PG_PARTITIONS=N` every vault
//! a test creates has its `records` table hash-partitioned into `N` partitions.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{PgOptions, PgStorage, PgTarget};

/// What a test prints when it is skipped for want of a server.
pub const SKIPPED: &str = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)";

/// The server named by `MEDVAULT_TEST_PG`.
#[derive(Clone, Debug)]
pub struct TestServer {
    base: PgTarget,
    partitions: u32,
}

/// The test server: `Ok(None)` (after printing [`SKIPPED`]) when `MEDVAULT_TEST_PG` is
/// unset; `Err` when it is unset under `CI=true`, malformed, or names a bad partition
/// count.
pub fn server() -> Result<Option<TestServer>, String> {
    let Some(v) = std::env::var_os("MEDVAULT_TEST_PG") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            return Err(format!("{SKIPPED}: required under CI=true"));
        }
        eprintln!("{SKIPPED}");
        return Ok(None);
    };
    let v = v.to_string_lossy().into_owned();
    let (base, mut partitions) = if crate::is_url(&v) {
        PgTarget::parse(&v).map_err(|e| format!("MEDVAULT_TEST_PG: {e}"))?
    } else {
        let mut c = postgres::Config::new();
        c.host_path(&v)
            .user(std::env::var("PGUSER").as_deref().unwrap_or("postgres"))
            .dbname(std::env::var("PGDATABASE").as_deref().unwrap_or("postgres"));
        (
            PgTarget::new(c, crate::DEFAULT_VAULT).map_err(|e| e.to_string())?,
            0,
        )
    };
    if let Some(p) = std::env::var_os("MEDVAULT_TEST_PG_PARTITIONS") {
        partitions = p
            .to_string_lossy()
            .parse()
            .map_err(|_| "MEDVAULT_TEST_PG_PARTITIONS is not a number".to_string())?;
    }
    Ok(Some(TestServer { base, partitions }))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestServer {
    /// A target for a vault of its own: a fresh schema name (`t_<pid>_<n>_<nanos>`), its
    /// schema dropped first should it exist.
    pub fn fresh(&self) -> PgTarget {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("t_{}_{n}_{nanos}", std::process::id());
        let mut t = self.base.clone();
        t.vault = name;
        let _ = self.drop_vault(&t);
        t
    }

    /// The options vaults of the tests are created with (the partition count).
    pub fn options(&self) -> PgOptions {
        PgOptions {
            partitions: self.partitions,
            ..PgOptions::default()
        }
    }

    /// Hash partitions of the vaults tests create (0: none).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Creates the tables of `target` (not the vault) and returns the storage.
    pub fn create(&self, target: &PgTarget) -> medvault::Result<PgStorage> {
        PgStorage::create(target, &self.options())
    }

    /// Opens the storage of `target`.
    pub fn open(&self, target: &PgTarget) -> medvault::Result<PgStorage> {
        PgStorage::open(target, &self.options())
    }

    /// The client settings of the server.
    pub fn config(&self) -> &postgres::Config {
        &self.base.config
    }

    /// A plain client to the server (for tampering and inspection).
    pub fn client(&self) -> Result<postgres::Client, postgres::Error> {
        self.base.config.connect(postgres::NoTls)
    }

    /// Drops the schema of `target` and everything in it.
    pub fn drop_vault(&self, target: &PgTarget) -> Result<(), postgres::Error> {
        let mut c = self.client()?;
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            target.vault
        ))
    }

    /// A `postgres://` URL for `target` (without a password: tests run on trust or peer
    /// authentication), with the partition count of this server's vaults.
    pub fn url_of(&self, target: &PgTarget) -> String {
        let c = &self.base.config;
        let host = match c.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.to_string_lossy().replace('/', "%2F"),
            None => "localhost".to_string(),
        };
        let port = c
            .get_ports()
            .first()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let user = c.get_user().unwrap_or("postgres");
        let db = c.get_dbname().unwrap_or("postgres");
        format!(
            "postgres://{user}@{host}{port}/{db}?vault={}&partitions={}",
            target.vault, self.partitions
        )
    }

    /// Restarts the server (`pg_ctl -m fast -w restart`: every session is terminated and
    /// the transactions in flight rolled back, then the server starts again), as the
    /// cluster's owner: `postgres` when run as root, as `.ci/postgres` runs the cluster
    /// then. Needs `MEDVAULT_TEST_PG` to be the socket directory that `.ci/postgres`
    /// made (the data directory `data` and the log `server.log` in it) and `pg_ctl` on
    /// `PATH`. Errors: the server is named by a URL, or `pg_ctl` failed (its output).
    pub fn restart(&self) -> Result<(), String> {
        let dir = std::path::PathBuf::from(
            std::env::var_os("MEDVAULT_TEST_PG").ok_or("MEDVAULT_TEST_PG is unset")?,
        );
        let data = dir.join("data");
        if !data.is_dir() {
            return Err(format!(
                "restarting the server needs its data directory at {} (.ci/postgres)",
                data.display()
            ));
        }
        let (data, log) = (data.display().to_string(), dir.join("server.log"));
        let log = log.display().to_string();
        let args = ["-D", &data, "-l", &log, "-m", "fast", "-w", "restart"];
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut cmd = if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", "pg_ctl"]);
            c
        } else {
            std::process::Command::new("pg_ctl")
        };
        let out = cmd
            .args(args)
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl restart: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Rows of the `log` table of `target` and one past its largest seq, read with plain
    /// SQL: equal when the log has no gap.
    pub fn log_rows(&self, target: &PgTarget) -> Result<(i64, i64), postgres::Error> {
        let row = self.client()?.query_one(
            format!(
                "SELECT count(*), coalesce(max(seq) + 1, 0) FROM \"{}\".log",
                target.vault
            )
            .as_str(),
            &[],
        )?;
        Ok((row.get(0), row.get(1)))
    }
}
