//! `cargo bench --bench compare [--features compare-sqlcipher]`: medvault against raw sled
//! (no encryption, no log) and SQLCipher 4 on the same records, in one process,
//! interleaved and repeated; prints every ratio of DESIGN.md's "Performance goals" table
//! (medians over the rounds) and writes the same as JSON.
//!
//! Environment (all optional):
//! * `MEDVAULT_BENCH_RECORDS` records per round (default 100000; ten per subject);
//! * `MEDVAULT_BENCH_ROUNDS` rounds (default 5); `MEDVAULT_BENCH_READS` random point reads
//!   per system and round (default 20000); `MEDVAULT_BENCH_SYNC_PUTS` /
//!   `MEDVAULT_BENCH_BG_PUTS` single-op puts with / without an fsync each (2000 / 20000);
//! * `MEDVAULT_BENCH_CACHE_MB` page-cache budget of sled (raw and medvault) and SQLCipher
//!   alike (default 256, sled's default in medvault);
//! * `MEDVAULT_BENCH_ONLY=medvault` runs the medvault columns only (the scale run);
//! * `MEDVAULT_BENCH_DIR` where databases are built (default: the system temp dir);
//! * `MEDVAULT_BENCH_JSON` output path (default `target/compare.json`).
//!
//! Without the `compare-sqlcipher` feature the SQLCipher columns print "not built".

mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use medvault::storage::SledOptions;
use medvault::testing::bench::RecordSealer;
use medvault::{
    AccessContext, Action, Durability, KdfParams, KeySource, Purpose, RecordKey, RotationScope,
    Vault, VaultOptions,
};
use serde_json::json;
use workload::{
    ONE_FIELD, OneField, Rec, env_u64, from_plain, key, plain, raw_key, record, sample,
};

const ROOT_KEY: [u8; 32] = [0x42; 32];
const ROOT_KEY_2: [u8; 32] = [0x43; 32];

struct Cfg {
    n: u64,
    rounds: usize,
    reads: usize,
    sync_puts: u64,
    bg_puts: u64,
    cache_bytes: u64,
    only_medvault: bool,
    dir: PathBuf,
    json: PathBuf,
    /// Subjects of the key-hierarchy vault (root-key change and vault-KEK rewrap measured
    /// at this size, not extrapolated); 0 skips it.
    key_subjects: u64,
}

impl Cfg {
    fn from_env() -> Cfg {
        let json = std::env::var_os("MEDVAULT_BENCH_JSON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
                target.join("compare.json")
            });
        Cfg {
            n: env_u64("MEDVAULT_BENCH_RECORDS", 100_000).max(10),
            rounds: env_u64("MEDVAULT_BENCH_ROUNDS", 5).max(1) as usize,
            reads: env_u64("MEDVAULT_BENCH_READS", 20_000).max(1) as usize,
            sync_puts: env_u64("MEDVAULT_BENCH_SYNC_PUTS", 2_000).max(1),
            bg_puts: env_u64("MEDVAULT_BENCH_BG_PUTS", 20_000).max(1),
            cache_bytes: env_u64("MEDVAULT_BENCH_CACHE_MB", 256) * 1024 * 1024,
            only_medvault: std::env::var("MEDVAULT_BENCH_ONLY").is_ok_and(|s| s == "medvault"),
            dir: std::env::var_os("MEDVAULT_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            json,
            key_subjects: env_u64("MEDVAULT_BENCH_KEY_SUBJECTS", 1_000_000),
        }
    }
}

/// A record written by the single-op put workloads: an existing subject, a new record id.
fn extra_key(i: u64, subjects: u64) -> RecordKey {
    RecordKey::new(
        workload::subject(i.wrapping_mul(7919) % subjects),
        "Observation",
        format!("extra-{i:010}"),
    )
}

fn ctx() -> AccessContext {
    AccessContext::new("bench-clinician", Purpose::Care)
}

/// Medians (and every round's value) of named figures.
#[derive(Default)]
struct Figures(BTreeMap<String, Vec<f64>>);

impl Figures {
    fn add(&mut self, name: &str, v: f64) {
        self.0.entry(name.to_owned()).or_default().push(v);
    }
    /// Records ops per wall-clock second under `name` and ops per CPU-second of the
    /// whole process (every thread, sled's included) under `name.cpu`.
    fn rate(&mut self, name: &str, ops: u64, t: Span) {
        self.add(name, ops as f64 / t.wall.as_secs_f64());
        if t.cpu > 0.0 {
            self.add(&format!("{name}.cpu"), ops as f64 / t.cpu);
        }
    }
    fn median(&self, name: &str) -> Option<f64> {
        let v = self.0.get(name)?;
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        Some(if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        })
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn sled_open(path: &Path, cache: u64) -> sled::Db {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache)
        .flush_every_ms(Some(500))
        .open()
        .expect("open sled")
}

fn vault_options(cfg: &Cfg, durability: Durability) -> VaultOptions {
    VaultOptions {
        durability,
        sled: SledOptions {
            cache_bytes: cfg.cache_bytes,
            ..SledOptions::default()
        },
        ..VaultOptions::default()
    }
}

#[cfg(feature = "compare-sqlcipher")]
mod sqlc {
    //! SQLCipher 4 through rusqlite: one table keyed by the three ids, the record as a
    //! JSON blob (the same bytes raw sled holds), WAL mode, a raw key (no PBKDF2).
    use super::*;
    use rusqlite::{Connection, params};

    pub const BUILT: bool = true;

    pub struct Db {
        conn: Connection,
    }

    const KEY_PRAGMA: &str =
        "PRAGMA key = \"x'4242424242424242424242424242424242424242424242424242424242424242'\";";

    impl Db {
        pub fn open(path: &Path, cache_bytes: u64) -> Option<Db> {
            let conn = Connection::open(path).expect("open sqlcipher");
            conn.execute_batch(KEY_PRAGMA).expect("key");
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .expect("wal");
            assert_eq!(mode.to_lowercase(), "wal");
            conn.execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -{};",
                cache_bytes / 1024
            ))
            .expect("pragmas");
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS records (subject TEXT NOT NULL, collection TEXT NOT NULL, \
                 record_id TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (subject, collection, record_id))",
            )
            .expect("create table");
            Some(Db { conn })
        }

        pub fn version(&self) -> String {
            self.conn
                .query_row("PRAGMA cipher_version", [], |r| r.get::<_, String>(0))
                .unwrap_or_else(|_| "NOT SQLCIPHER".into())
        }

        pub fn set_full_sync(&self, full: bool) {
            let s = if full { "FULL" } else { "NORMAL" };
            self.conn
                .execute_batch(&format!("PRAGMA synchronous = {s}"))
                .expect("synchronous");
        }

        pub fn bulk_insert(&mut self, n: u64) {
            let tx = self.conn.transaction().expect("begin");
            {
                let mut st = tx
                    .prepare_cached("INSERT INTO records VALUES (?1, ?2, ?3, ?4)")
                    .expect("prepare");
                for i in 0..n {
                    let k = key(i);
                    st.execute(params![
                        k.subject,
                        k.collection,
                        k.record_id,
                        plain(&record(i))
                    ])
                    .expect("insert");
                }
            }
            tx.commit().expect("commit");
        }

        pub fn insert_one(&self, k: &RecordKey, r: &Rec) {
            let mut st = self
                .conn
                .prepare_cached("INSERT INTO records VALUES (?1, ?2, ?3, ?4)")
                .expect("prepare");
            st.execute(params![k.subject, k.collection, k.record_id, plain(r)])
                .expect("insert");
        }

        pub fn get(&self, k: &RecordKey) -> Rec {
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT body FROM records WHERE subject = ?1 AND collection = ?2 AND record_id = ?3",
                )
                .expect("prepare");
            let b: Vec<u8> = st
                .query_row(params![k.subject, k.collection, k.record_id], |r| r.get(0))
                .expect("get");
            from_plain(&b)
        }

        pub fn scan(&self) -> u64 {
            let mut st = self
                .conn
                .prepare("SELECT subject, collection, record_id, body FROM records")
                .expect("prepare");
            let mut rows = st.query([]).expect("query");
            let mut n = 0;
            while let Some(row) = rows.next().expect("row") {
                let _k: (String, String, String) = (
                    row.get(0).expect("s"),
                    row.get(1).expect("c"),
                    row.get(2).expect("r"),
                );
                let b: &[u8] = row.get_ref(3).expect("body").as_blob().expect("blob");
                let r: Rec = from_plain(b);
                std::hint::black_box(r);
                n += 1;
            }
            n
        }

        pub fn checkpoint(&self) {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .expect("checkpoint");
        }

        pub fn close(self) {
            self.conn.close().map_err(|(_, e)| e).expect("close");
        }

        /// Opens and reads one row: the cost to first data after the key is known.
        pub fn open_and_touch(path: &Path, cache_bytes: u64) -> Db {
            let db = Db::open(path, cache_bytes).expect("open");
            let _: i64 = db
                .conn
                .query_row(
                    "SELECT count(*) FROM (SELECT 1 FROM records LIMIT 1)",
                    [],
                    |r| r.get(0),
                )
                .expect("touch");
            db
        }
    }
}

#[cfg(not(feature = "compare-sqlcipher"))]
mod sqlc {
    //! Stand-in when the `compare-sqlcipher` feature is off: `open` makes no database,
    //! so no other method is ever reached.
    use super::*;

    pub const BUILT: bool = false;

    pub struct Db {
        _never: (),
    }

    const NOT_BUILT: &str = "SQLCipher is not built (feature compare-sqlcipher)";

    impl Db {
        pub fn open(_: &Path, _: u64) -> Option<Db> {
            None
        }
        pub fn version(&self) -> String {
            unreachable!("{NOT_BUILT}")
        }
        pub fn set_full_sync(&self, _: bool) {
            unreachable!("{NOT_BUILT}")
        }
        pub fn bulk_insert(&mut self, _: u64) {
            unreachable!("{NOT_BUILT}")
        }
        pub fn insert_one(&self, _: &RecordKey, _: &Rec) {
            unreachable!("{NOT_BUILT}")
        }
        pub fn get(&self, _: &RecordKey) -> Rec {
            unreachable!("{NOT_BUILT}")
        }
        pub fn scan(&self) -> u64 {
            unreachable!("{NOT_BUILT}")
        }
        pub fn checkpoint(&self) {
            unreachable!("{NOT_BUILT}")
        }
        pub fn close(self) {
            unreachable!("{NOT_BUILT}")
        }
        pub fn open_and_touch(_: &Path, _: u64) -> Db {
            unreachable!("{NOT_BUILT}")
        }
    }
}

/// Wall-clock time and CPU time (user + system, all threads) of one measured span.
#[derive(Clone, Copy)]
struct Span {
    wall: Duration,
    cpu: f64,
}

impl Span {
    fn secs(&self) -> f64 {
        self.wall.as_secs_f64()
    }
}

/// CPU seconds used so far by this process, all threads (`/proc/self/stat` utime +
/// stime, 10 ms ticks); 0 where unavailable. On a shared machine, ops per CPU-second is
/// steadier than ops per wall-clock second.
fn cpu_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = s.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Span) {
    let c = cpu_secs();
    let t = Instant::now();
    let r = f();
    let wall = t.elapsed();
    (
        r,
        Span {
            wall,
            cpu: cpu_secs() - c,
        },
    )
}

/// The key hierarchy at `cfg.key_subjects` subjects (default 1M, one small record each,
/// imported in batches of 1,000 under `Durability::Background`), measured once, not
/// extrapolated: a root-key change with a raw key (so the figure is what follows the
/// KDF; issue 14: <= 50 ms) and a vault-KEK rotation rewrapping every subject entry
/// (<= 10 s).
fn key_hierarchy(cfg: &Cfg, fig: &mut Figures) {
    let n = cfg.key_subjects;
    if n == 0 {
        return;
    }
    let base = cfg
        .dir
        .join(format!("medvault-compare-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let cx = ctx();
    let t = Instant::now();
    let vault = Vault::create_with(
        base.join("v"),
        KeySource::raw(ROOT_KEY),
        vault_options(cfg, Durability::Background),
    )
    .expect("create key vault");
    let mut i = 0u64;
    while i < n {
        let end = (i + 1000).min(n);
        let batch: Vec<(RecordKey, serde_json::Value)> = (i..end)
            .map(|s| {
                (
                    RecordKey::new(format!("subject-{s:08}"), "Patient", "p"),
                    serde_json::json!({"resourceType": "Patient", "id": "p"}),
                )
            })
            .collect();
        vault
            .put_many(&cx, batch.iter().map(|(k, r)| (k, r)), Action::Import)
            .expect("key vault import");
        i = end;
    }
    vault.sync().expect("sync");
    eprintln!(
        "  key hierarchy: {n} subjects written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (_, t) = timed(|| {
        vault
            .rotate_root_key(
                &cx,
                KeySource::raw(ROOT_KEY_2),
                KdfParams::default(),
                &mut |_| {},
            )
            .expect("rotate root key")
    });
    fig.add("key_hierarchy.root_rotation_ms", t.wall.as_secs_f64() * 1e3);
    let (rewrapped, t) = timed(|| {
        vault
            .rotate_vault_kek(&cx, &mut |_| {})
            .expect("rotate vault KEK")
    });
    fig.rate("key_hierarchy.kek_rotation", rewrapped, t);
    fig.add("key_hierarchy.kek_rotation_s", t.wall.as_secs_f64());
    fig.add("key_hierarchy.subjects", rewrapped as f64);
    drop(vault);
    let _ = std::fs::remove_dir_all(&base);
}

/// One round: every workload on every system, in an order that rotates with the round.
fn round(cfg: &Cfg, r: usize, fig: &mut Figures, notes: &mut BTreeMap<String, String>) {
    let base = cfg
        .dir
        .join(format!("medvault-compare-{}-{r}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("bench dir");
    let n = cfg.n;
    let subjects = n.div_ceil(workload::RECORDS_PER_SUBJECT);
    let cx = ctx();
    let raw = !cfg.only_medvault;
    let flip = r % 2 == 1; // alternate which system goes first

    // --- field-encryption tax: put, no log (raw sled vs record codec + sled) -----------
    let sealer = RecordSealer::new();
    let sled_db = raw.then(|| sled_open(&base.join("sled"), cfg.cache_bytes));
    let nolog_db = raw.then(|| sled_open(&base.join("nolog"), cfg.cache_bytes));
    let tax_put_sled = |db: &sled::Db| {
        let (_, t) = timed(|| {
            for i in 0..n {
                let k = key(i);
                db.insert(raw_key(&k), plain(&record(i))).expect("insert");
            }
        });
        t
    };
    let tax_put_mv = |db: &sled::Db| {
        let (_, t) = timed(|| {
            for i in 0..n {
                let (sk, v) = sealer.seal(&key(i), &record(i)).expect("seal");
                db.insert(sk, v).expect("insert");
            }
        });
        t
    };
    if let (Some(s), Some(m)) = (&sled_db, &nolog_db) {
        if flip {
            fig.rate("tax.put.medvault_nolog", n, tax_put_mv(m));
            fig.rate("tax.put.sled", n, tax_put_sled(s));
        } else {
            fig.rate("tax.put.sled", n, tax_put_sled(s));
            fig.rate("tax.put.medvault_nolog", n, tax_put_mv(m));
        }
    }

    // --- import: put_many (1000 per commit, with log) vs SQLCipher bulk transaction ----
    let vpath = base.join("vault");
    let sqlc_path = base.join("sqlcipher.db");
    let mut sq = if raw {
        sqlc::Db::open(&sqlc_path, cfg.cache_bytes)
    } else {
        None
    };
    if let Some(s) = &sq {
        notes.insert("sqlcipher_version".into(), s.version());
    }
    let import_mv = |fig: &mut Figures| {
        let (v, t) = timed(|| {
            let v = Vault::create_with(
                &vpath,
                KeySource::raw(ROOT_KEY),
                vault_options(cfg, Durability::Writes),
            )
            .expect("create vault");
            let mut i = 0;
            while i < n {
                let end = (i + 1000).min(n);
                let ks: Vec<RecordKey> = (i..end).map(key).collect();
                let rs: Vec<Rec> = (i..end).map(record).collect();
                v.put_many(&cx, ks.iter().zip(rs.iter()), Action::Import)
                    .expect("put_many");
                i = end;
            }
            v
        });
        fig.rate("import.medvault", n, t);
        v
    };
    let import_sq = |fig: &mut Figures, sq: &mut Option<sqlc::Db>| {
        if let Some(s) = sq {
            let (_, t) = timed(|| s.bulk_insert(n));
            fig.rate("import.sqlcipher", n, t);
        }
    };
    let vault = if flip {
        import_sq(fig, &mut sq);
        import_mv(fig)
    } else {
        let v = import_mv(fig);
        import_sq(fig, &mut sq);
        v
    };

    // --- disk use after import (everything flushed) -------------------------------------
    let plain: u64 = (0..n).map(|i| plain(&record(i)).len() as u64).sum();
    vault.sync().expect("sync");
    fig.add("disk.medvault", dir_bytes(&vpath) as f64 / plain as f64);
    if let Some(s) = &sled_db {
        s.flush().expect("flush");
        fig.add(
            "disk.sled",
            dir_bytes(&base.join("sled")) as f64 / plain as f64,
        );
    }
    if let Some(m) = &nolog_db {
        m.flush().expect("flush");
        fig.add(
            "disk.medvault_nolog",
            dir_bytes(&base.join("nolog")) as f64 / plain as f64,
        );
    }
    if let Some(s) = &sq {
        s.checkpoint();
        let mut b = std::fs::metadata(&sqlc_path).map(|m| m.len()).unwrap_or(0);
        for ext in ["-wal", "-shm"] {
            let mut p = sqlc_path.clone().into_os_string();
            p.push(ext);
            b += std::fs::metadata(PathBuf::from(p))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        fig.add("disk.sqlcipher", b as f64 / plain as f64);
    }
    notes.insert(
        "plaintext_bytes_per_record".into(),
        format!("{}", plain / n),
    );

    // --- field-encryption tax: get one field / all fields, no log ----------------------
    let picks = sample(n, cfg.reads, 0x5eed + r as u64);
    let m = picks.len() as u64;
    if let (Some(s), Some(nl)) = (&sled_db, &nolog_db) {
        let sk: Vec<(RecordKey, Vec<u8>)> = picks
            .iter()
            .map(|&i| {
                let k = key(i);
                let s = sealer.storage_key(&k);
                (k, s)
            })
            .collect();
        let rk: Vec<Vec<u8>> = picks.iter().map(|&i| raw_key(&key(i))).collect();
        let sled_one = || {
            timed(|| {
                for k in &rk {
                    let v = s.get(k).expect("get").expect("present");
                    std::hint::black_box(from_plain::<OneField>(&v));
                }
            })
            .1
        };
        let sled_all = || {
            timed(|| {
                for k in &rk {
                    let v = s.get(k).expect("get").expect("present");
                    std::hint::black_box(from_plain::<Rec>(&v));
                }
            })
            .1
        };
        let mv_one = || {
            timed(|| {
                for (k, st) in &sk {
                    let v = nl.get(st).expect("get").expect("present");
                    let o: OneField = sealer.open(k, st, &v, Some(&[ONE_FIELD])).expect("open");
                    std::hint::black_box(o);
                }
            })
            .1
        };
        let mv_all = || {
            timed(|| {
                for (k, st) in &sk {
                    let v = nl.get(st).expect("get").expect("present");
                    let o: Rec = sealer.open(k, st, &v, None).expect("open");
                    std::hint::black_box(o);
                }
            })
            .1
        };
        if flip {
            fig.rate("tax.get_one.medvault_nolog", m, mv_one());
            fig.rate("tax.get_one.sled", m, sled_one());
            fig.rate("tax.get_all.medvault_nolog", m, mv_all());
            fig.rate("tax.get_all.sled", m, sled_all());
        } else {
            fig.rate("tax.get_one.sled", m, sled_one());
            fig.rate("tax.get_one.medvault_nolog", m, mv_one());
            fig.rate("tax.get_all.sled", m, sled_all());
            fig.rate("tax.get_all.medvault_nolog", m, mv_all());
        }
    }

    // --- point read, all fields, with its log entry, vs SQLCipher point get ------------
    let keys: Vec<RecordKey> = picks.iter().map(|&i| key(i)).collect();
    let mv_read = |fig: &mut Figures| {
        let mut lat = Vec::with_capacity(keys.len());
        let (_, t) = timed(|| {
            for k in &keys {
                let t0 = Instant::now();
                let v: Rec = vault.get(&cx, k).expect("get");
                std::hint::black_box(v);
                lat.push(t0.elapsed());
            }
        });
        fig.rate("point_read.medvault", m, t);
        lat.sort_unstable();
        fig.add("point_read.medvault.p50_us", percentile(&lat, 0.50));
        fig.add("point_read.medvault.p99_us", percentile(&lat, 0.99));
    };
    let sq_read = |fig: &mut Figures, sq: &Option<sqlc::Db>| {
        if let Some(s) = sq {
            let (_, t) = timed(|| {
                for k in &keys {
                    std::hint::black_box(s.get(k));
                }
            });
            fig.rate("point_read.sqlcipher", m, t);
        }
    };
    if flip {
        sq_read(fig, &sq);
        mv_read(fig);
    } else {
        mv_read(fig);
        sq_read(fig, &sq);
    }

    // --- single-op atomic put + log, fsync per commit (Writes vs WAL FULL) -------------
    let p = cfg.sync_puts;
    let mv_put = |fig: &mut Figures, v: &Vault, from: u64, count: u64, name: &str| {
        let (_, t) = timed(|| {
            for i in from..from + count {
                v.put(&cx, &extra_key(i, subjects), &record(i))
                    .expect("put");
            }
        });
        fig.rate(name, count, t);
    };
    let sq_put = |fig: &mut Figures, sq: &Option<sqlc::Db>, from: u64, count: u64, full: bool| {
        if let Some(s) = sq {
            s.set_full_sync(full);
            let (_, t) = timed(|| {
                for i in from..from + count {
                    s.insert_one(&extra_key(i, subjects), &record(i));
                }
            });
            let name = if full {
                "single_put.sqlcipher.full"
            } else {
                "single_put.sqlcipher.normal"
            };
            fig.rate(name, count, t);
            s.set_full_sync(false);
        }
    };
    if flip {
        sq_put(fig, &sq, 0, p, true);
        mv_put(fig, &vault, 0, p, "single_put.medvault.writes");
    } else {
        mv_put(fig, &vault, 0, p, "single_put.medvault.writes");
        sq_put(fig, &sq, 0, p, true);
    }

    // --- verify -------------------------------------------------------------------------
    let (entries, t) = timed(|| vault.verify(&cx, None).expect("verify"));
    fig.rate("verify.medvault", entries, t);
    notes.insert("log_entries_verified".into(), entries.to_string());

    // --- data-key rotation of every subject, point reads served meanwhile -------------
    // Same durability as the import (Writes): its throughput is compared with the import's.
    {
        let stop = AtomicBool::new(false);
        let served = AtomicU64::new(0);
        let (report, t) = std::thread::scope(|sc| {
            sc.spawn(|| {
                let mut j = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let k = &keys[j % keys.len()];
                    let v: Rec = vault.get(&cx, k).expect("read during rotation");
                    std::hint::black_box(v);
                    served.fetch_add(1, Ordering::Relaxed);
                    j += 1;
                }
            });
            let r = timed(|| {
                vault
                    .rotate_data_keys(&cx, &RotationScope::All, &mut |_| {})
                    .expect("rotate data keys")
            });
            stop.store(true, Ordering::Relaxed);
            r
        });
        fig.rate("dek_rotation.medvault", report.records, t);
        fig.add(
            "dek_rotation.reads_served_per_s",
            served.load(Ordering::Relaxed) as f64 / t.secs(),
        );
        notes.insert(
            "dek_rotation".into(),
            format!(
                "{} subjects, {} records re-encrypted",
                report.subjects, report.records
            ),
        );
    }

    // --- open time (raw key: no KDF) ------------------------------------------------------
    vault.sync().expect("sync");
    drop(vault);
    let (vault, t) = timed(|| {
        Vault::open_with(
            &vpath,
            KeySource::raw(ROOT_KEY),
            vault_options(cfg, Durability::Background),
        )
        .expect("open vault")
    });
    fig.add("open.medvault_s", t.secs());
    if let Some(s) = sled_db {
        s.flush().expect("flush");
        drop(s);
        let (s, t) = timed(|| sled_open(&base.join("sled"), cfg.cache_bytes));
        fig.add("open.sled_s", t.secs());
        drop(s);
    }
    if let Some(s) = sq.take() {
        s.close();
        let (s, t) = timed(|| sqlc::Db::open_and_touch(&sqlc_path, cfg.cache_bytes));
        fig.add("open.sqlcipher_s", t.secs());
        sq = Some(s);
    }
    let sled_db = raw.then(|| sled_open(&base.join("sled"), cfg.cache_bytes));

    // --- single-op atomic put + log, no fsync per commit (Background vs WAL NORMAL) ----
    let q = cfg.bg_puts;
    if flip {
        sq_put(fig, &sq, p, q, false);
        mv_put(fig, &vault, p, q, "single_put.medvault.background");
    } else {
        mv_put(fig, &vault, p, q, "single_put.medvault.background");
        sq_put(fig, &sq, p, q, false);
    }

    // --- full scan decrypting every field -----------------------------------------------
    let mv_scan = |fig: &mut Figures| {
        // Subjects read 256 at a time: one access-log commit per batch (one read entry
        // per subject in it), each record deserialized into the same struct as the
        // other systems.
        let (count, t) = timed(|| {
            let mut count = 0u64;
            let subjects = vault.subjects(&cx).expect("subjects");
            for batch in subjects.chunks(256) {
                let names: Vec<&str> = batch.iter().map(String::as_str).collect();
                let read = vault
                    .records_of_subjects_json(&cx, &names, None, medvault::Action::Read)
                    .expect("scan");
                for (_, records) in read {
                    for (k, text) in records {
                        let r: Rec = text.deserialize().expect("decode");
                        count += 1;
                        std::hint::black_box((k, r));
                    }
                }
            }
            count
        });
        fig.rate("scan.medvault", count, t);
    };
    let sled_scan = |fig: &mut Figures| {
        if let Some(s) = &sled_db {
            let (count, t) = timed(|| {
                let mut count = 0u64;
                for kv in s.iter() {
                    let (_, v) = kv.expect("iter");
                    std::hint::black_box(from_plain::<Rec>(&v));
                    count += 1;
                }
                count
            });
            fig.rate("scan.sled", count, t);
        }
    };
    let sq_scan = |fig: &mut Figures, sq: &Option<sqlc::Db>| {
        if let Some(s) = sq {
            let (count, t) = timed(|| s.scan());
            fig.rate("scan.sqlcipher", count, t);
        }
    };
    if flip {
        sq_scan(fig, &sq);
        sled_scan(fig);
        mv_scan(fig);
    } else {
        mv_scan(fig);
        sled_scan(fig);
        sq_scan(fig, &sq);
    }

    // --- vault-KEK rotation: rewrap every subject entry (the root change is O(1)) -----
    {
        let (rewrapped, t) = timed(|| {
            vault
                .rotate_vault_kek(&cx, &mut |_| {})
                .expect("rotate vault KEK")
        });
        fig.rate("kek_rotation.medvault", rewrapped, t);
        fig.add("kek_rotation.subjects", rewrapped as f64);
    }

    drop((vault, sled_db, nolog_db));
    if let Some(s) = sq {
        s.close();
    }
    let _ = std::fs::remove_dir_all(&base);
}

fn fmt_rate(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 1e6 => format!("{:.2}M/s", x / 1e6),
        Some(x) if x >= 1e3 => format!("{:.1}k/s", x / 1e3),
        Some(x) => format!("{x:.0}/s"),
        None => "-".into(),
    }
}

struct Row {
    workload: &'static str,
    sled: String,
    medvault: String,
    sqlcipher: String,
    ratio: Option<f64>,
    ratio_text: String,
    goal: &'static str,
    holds: Option<bool>,
}

fn main() {
    let cfg = Cfg::from_env();
    eprintln!(
        "compare: {} records ({} subjects) x {} rounds, {} reads, {} fsync'd puts, {} background puts, cache {} MiB; SQLCipher {}",
        cfg.n,
        cfg.n.div_ceil(workload::RECORDS_PER_SUBJECT),
        cfg.rounds,
        cfg.reads,
        cfg.sync_puts,
        cfg.bg_puts,
        cfg.cache_bytes >> 20,
        if sqlc::BUILT {
            "built"
        } else {
            "not built (enable feature compare-sqlcipher)"
        }
    );
    let mut fig = Figures::default();
    let mut notes = BTreeMap::new();
    let started = Instant::now();
    key_hierarchy(&cfg, &mut fig);
    for r in 0..cfg.rounds {
        let t = Instant::now();
        round(&cfg, r, &mut fig, &mut notes);
        eprintln!(
            "  round {}/{} done in {:.1} s",
            r + 1,
            cfg.rounds,
            t.elapsed().as_secs_f64()
        );
    }
    let sq_missing = if !sqlc::BUILT {
        "not built"
    } else if cfg.only_medvault {
        "not run"
    } else {
        "-"
    };
    let med = |k: &str| fig.median(k);
    let sqr = |k: &str| {
        med(k)
            .map(|v| fmt_rate(Some(v)))
            .unwrap_or_else(|| sq_missing.into())
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let row = |workload,
               sled: String,
               medvault: String,
               sqlcipher: String,
               ratio: Option<f64>,
               goal,
               min: f64| Row {
        workload,
        sled,
        medvault,
        sqlcipher,
        ratio,
        ratio_text: ratio
            .map(|r| format!("{r:.2}"))
            .unwrap_or_else(|| "n/a".into()),
        goal,
        holds: ratio.map(|r| r >= min),
    };
    let mut rows = vec![
        row(
            "field-encryption tax, put (no log)",
            fmt_rate(med("tax.put.sled")),
            fmt_rate(med("tax.put.medvault_nolog")),
            "".into(),
            ratio(med("tax.put.medvault_nolog"), med("tax.put.sled")),
            ">= 0.8",
            0.8,
        ),
        row(
            "field-encryption tax, get one field (no log)",
            fmt_rate(med("tax.get_one.sled")),
            fmt_rate(med("tax.get_one.medvault_nolog")),
            "".into(),
            ratio(med("tax.get_one.medvault_nolog"), med("tax.get_one.sled")),
            ">= 0.85",
            0.85,
        ),
        row(
            "field-encryption tax, get all 12 fields (no log)",
            fmt_rate(med("tax.get_all.sled")),
            fmt_rate(med("tax.get_all.medvault_nolog")),
            "".into(),
            ratio(med("tax.get_all.medvault_nolog"), med("tax.get_all.sled")),
            ">= 0.5",
            0.5,
        ),
        row(
            "import: put_many(1000)+log [Writes] vs bulk txn [WAL NORMAL]",
            "".into(),
            fmt_rate(med("import.medvault")),
            sqr("import.sqlcipher"),
            ratio(med("import.medvault"), med("import.sqlcipher")),
            ">= 1.0",
            1.0,
        ),
        row(
            "point read all fields + log entry vs point get",
            "".into(),
            fmt_rate(med("point_read.medvault")),
            sqr("point_read.sqlcipher"),
            ratio(med("point_read.medvault"), med("point_read.sqlcipher")),
            ">= 2.0",
            2.0,
        ),
        row(
            "single put+log, fsync each: [Writes] vs [WAL FULL]",
            "".into(),
            fmt_rate(med("single_put.medvault.writes")),
            sqr("single_put.sqlcipher.full"),
            ratio(
                med("single_put.medvault.writes"),
                med("single_put.sqlcipher.full"),
            ),
            ">= 3.0",
            3.0,
        ),
        row(
            "single put+log, no fsync: [Background] vs [WAL NORMAL]",
            "".into(),
            fmt_rate(med("single_put.medvault.background")),
            sqr("single_put.sqlcipher.normal"),
            ratio(
                med("single_put.medvault.background"),
                med("single_put.sqlcipher.normal"),
            ),
            ">= 3.0",
            3.0,
        ),
        row(
            "full scan decrypting every field (records/s)",
            fmt_rate(med("scan.sled")),
            fmt_rate(med("scan.medvault")),
            sqr("scan.sqlcipher"),
            ratio(med("scan.medvault"), med("scan.sqlcipher")),
            ">= 1.0",
            1.0,
        ),
    ];
    let kek_secs = med("key_hierarchy.kek_rotation_s");
    let kek_n = med("key_hierarchy.subjects");
    rows.push(Row {
        workload: "vault-KEK rotation: rewrap every subject entry (measured)",
        sled: "".into(),
        medvault: format!(
            "{} ({} entries; {} in the rounds' vault)",
            fmt_rate(med("key_hierarchy.kek_rotation")),
            kek_n.map(|v| format!("{v:.0}")).unwrap_or_default(),
            fmt_rate(med("kek_rotation.medvault"))
        ),
        sqlcipher: "".into(),
        ratio: kek_secs,
        ratio_text: kek_secs
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "n/a".into()),
        goal: "<= 10 s at 1M",
        holds: kek_secs.zip(kek_n).map(|(s, n)| n >= 1e6 && s <= 10.0),
    });
    let root_ms = med("key_hierarchy.root_rotation_ms");
    rows.push(Row {
        workload: "passphrase / root-key change, after the KDF (measured)",
        sled: "".into(),
        medvault: format!(
            "{} subjects",
            kek_n.map(|v| format!("{v:.0}")).unwrap_or_default()
        ),
        sqlcipher: "".into(),
        ratio: root_ms,
        ratio_text: root_ms
            .map(|s| format!("{s:.1} ms"))
            .unwrap_or_else(|| "n/a".into()),
        goal: "<= 50 ms at 1M",
        holds: root_ms.zip(kek_n).map(|(s, n)| n >= 1e6 && s <= 50.0),
    });
    let dek = ratio(med("dek_rotation.medvault"), med("import.medvault"));
    rows.push(Row {
        workload: "data-key rotation [Writes] vs import, reads served meanwhile",
        sled: "".into(),
        medvault: format!(
            "{} (+{} reads)",
            fmt_rate(med("dek_rotation.medvault")),
            fmt_rate(med("dek_rotation.reads_served_per_s"))
        ),
        sqlcipher: "".into(),
        ratio: dek,
        ratio_text: dek
            .map(|r| format!("{r:.2}"))
            .unwrap_or_else(|| "n/a".into()),
        goal: ">= 0.5",
        holds: dek.map(|r| r >= 0.5),
    });
    let verify = med("verify.medvault");
    rows.push(Row {
        workload: "verify of the access log (entries/s)",
        sled: "".into(),
        medvault: fmt_rate(verify),
        sqlcipher: "".into(),
        ratio: verify,
        ratio_text: verify
            .map(|v| format!("{:.2}M/s", v / 1e6))
            .unwrap_or_default(),
        goal: ">= 1M/s",
        holds: verify.map(|v| v >= 1e6),
    });
    let secs = |k: &str, miss: &str| {
        med(k)
            .map(|s| format!("{:.1} ms", s * 1e3))
            .unwrap_or_else(|| miss.into())
    };
    let open = med("open.medvault_s");
    rows.push(Row {
        workload: "open after the KDF (raw key)",
        sled: secs("open.sled_s", ""),
        medvault: secs("open.medvault_s", "-"),
        sqlcipher: secs("open.sqlcipher_s", sq_missing),
        ratio: open,
        ratio_text: open.map(|s| format!("{:.3} s", s)).unwrap_or_default(),
        goal: "<= 0.5 s",
        holds: open.map(|s| s <= 0.5),
    });
    let x = |k: &str, miss: &str| {
        med(k)
            .map(|v| format!("{v:.2}x"))
            .unwrap_or_else(|| miss.into())
    };
    let disk = med("disk.medvault");
    rows.push(Row {
        workload: "disk use / plaintext bytes",
        sled: x("disk.sled", ""),
        medvault: x("disk.medvault", "-"),
        sqlcipher: x("disk.sqlcipher", sq_missing),
        ratio: disk,
        ratio_text: disk.map(|v| format!("{v:.2}x")).unwrap_or_default(),
        goal: "<= 2.0x",
        holds: disk.map(|v| v <= 2.0),
    });

    // --- print ----------------------------------------------------------------------------
    let hdr = [
        "workload",
        "raw sled",
        "medvault",
        "SQLCipher",
        "ratio/figure",
        "goal",
        "holds",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.to_string(),
                r.sled.clone(),
                r.medvault.clone(),
                r.sqlcipher.clone(),
                r.ratio_text.clone(),
                r.goal.to_string(),
                match r.holds {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut w = hdr.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let parts: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<width$}", width = w[i]))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    println!();
    println!("{}", line(&hdr.map(String::from)));
    println!(
        "|{}|",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for c in &cells {
        println!("{}", line(c));
    }
    // CPU-normalized ratios: ops per CPU-second of the whole process (all threads).
    let cpu_pairs: [(&str, &str, &str, f64); 9] = [
        (
            "tax put (no log) / raw sled",
            "tax.put.medvault_nolog",
            "tax.put.sled",
            0.8,
        ),
        (
            "tax get one field / raw sled",
            "tax.get_one.medvault_nolog",
            "tax.get_one.sled",
            0.85,
        ),
        (
            "tax get all fields / raw sled",
            "tax.get_all.medvault_nolog",
            "tax.get_all.sled",
            0.5,
        ),
        (
            "import / SQLCipher bulk",
            "import.medvault",
            "import.sqlcipher",
            1.0,
        ),
        (
            "point read+log / SQLCipher get",
            "point_read.medvault",
            "point_read.sqlcipher",
            2.0,
        ),
        (
            "single put [Writes] / [FULL]",
            "single_put.medvault.writes",
            "single_put.sqlcipher.full",
            3.0,
        ),
        (
            "single put [Background] / [NORMAL]",
            "single_put.medvault.background",
            "single_put.sqlcipher.normal",
            3.0,
        ),
        (
            "full scan / SQLCipher scan",
            "scan.medvault",
            "scan.sqlcipher",
            1.0,
        ),
        (
            "data-key rotation / import",
            "dek_rotation.medvault",
            "import.medvault",
            0.5,
        ),
    ];
    let mut cpu_rows = Vec::new();
    println!();
    println!(
        "per CPU-second of the whole process (steadier on a shared machine; fsync waits cost no CPU):"
    );
    println!("| ratio | medvault ops/CPU-s | other ops/CPU-s | ratio | goal | holds |");
    println!("|---|---|---|---|---|---|");
    for (label, a, b, min) in cpu_pairs {
        let (x, y) = (med(&format!("{a}.cpu")), med(&format!("{b}.cpu")));
        let r = ratio(x, y);
        println!(
            "| {label} | {} | {} | {} | >= {min} | {} |",
            fmt_rate(x).replace("/s", ""),
            y.map(|v| fmt_rate(Some(v)).replace("/s", ""))
                .unwrap_or_else(|| sq_missing.into()),
            r.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into()),
            r.map(|v| if v >= min { "yes" } else { "NO" })
                .unwrap_or("-"),
        );
        cpu_rows.push(json!({"ratio": label, "medvault_per_cpu_s": x, "other_per_cpu_s": y, "value": r, "goal_min": min}));
    }
    if let Some(v) = med("verify.medvault.cpu") {
        println!(
            "| verify entries / CPU-s | {} | | {:.2}M | >= 1M | {} |",
            fmt_rate(Some(v)).replace("/s", ""),
            v / 1e6,
            if v >= 1e6 { "yes" } else { "NO" }
        );
    }

    let p50 = med("point_read.medvault.p50_us");
    let p99 = med("point_read.medvault.p99_us");
    let hwm = vm_hwm_kib();
    println!();
    println!(
        "medians of {} rounds, {} records; medvault point read p50 {:.1} us, p99 {:.1} us; import {}; peak RSS (VmHWM) {} MiB; total {:.0} s",
        cfg.rounds,
        cfg.n,
        p50.unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN),
        fmt_rate(med("import.medvault")),
        hwm.map(|k| k / 1024).unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    println!(
        "durability: medvault import & fsync'd puts = Durability::Writes (fsync per commit, group commit); \
         'no fsync' puts = Durability::Background (sled flush every 500 ms); SQLCipher WAL, synchronous NORMAL \
         (bulk, no-fsync puts) / FULL (fsync'd puts); cache {} MiB each",
        cfg.cache_bytes >> 20
    );
    for (k, v) in &notes {
        println!("note: {k} = {v}");
    }

    // --- JSON -------------------------------------------------------------------------------
    let medians: BTreeMap<&String, f64> = fig
        .0
        .keys()
        .filter_map(|k| fig.median(k).map(|m| (k, m)))
        .collect();
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({"workload": r.workload, "raw_sled": r.sled, "medvault": r.medvault,
                   "sqlcipher": r.sqlcipher, "ratio": r.ratio, "ratio_text": r.ratio_text,
                   "goal": r.goal, "holds": r.holds})
        })
        .collect();
    let doc = json!({
        "config": {"records": cfg.n, "subjects": cfg.n.div_ceil(workload::RECORDS_PER_SUBJECT),
                   "rounds": cfg.rounds, "reads": cfg.reads, "sync_puts": cfg.sync_puts,
                   "bg_puts": cfg.bg_puts, "cache_bytes": cfg.cache_bytes,
                   "only_medvault": cfg.only_medvault, "sqlcipher_built": sqlc::BUILT},
        "durability": {
            "import.medvault": "Writes", "import.sqlcipher": "WAL, synchronous=NORMAL, one transaction",
            "single_put.medvault.writes": "Writes (fsync per commit)",
            "single_put.sqlcipher.full": "WAL, synchronous=FULL",
            "single_put.medvault.background": "Background (sled flush every 500 ms)",
            "single_put.sqlcipher.normal": "WAL, synchronous=NORMAL",
            "dek_rotation.medvault": "Writes",
            "kek_rotation.medvault": "Background (header writes are always fsync'd)",
            "key_hierarchy": "Background import; root change and KEK rotation fsync their header writes and log entries"
        },
        "rows": json_rows,
        "cpu_normalized_rows": cpu_rows,
        "medians": medians,
        "rounds": fig.0,
        "notes": notes,
        "peak_rss_kib": hwm,
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    if let Some(parent) = cfg.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match std::fs::write(&cfg.json, serde_json::to_vec_pretty(&doc).expect("json")) {
        Ok(()) => println!("wrote {}", cfg.json.display()),
        Err(e) => eprintln!("could not write {}: {e}", cfg.json.display()),
    }
}
