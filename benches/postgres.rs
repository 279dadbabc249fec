//! `cargo bench --bench postgres`: the PostgreSQL backend next to the sled backend on the
//! same machine (issue 17): import, point read with its log entry, and single put, each
//! with 1, 4 and 16 concurrent clients, on synthetic FHIR R4 resources
//! (`medvault_fhir::synth`, about 1 KiB of JSON each). Prints one table (workload x
//! backend x clients -> ops/s) and writes it, with every round's figures, the latencies
//! and the server's settings, to `target/postgres-bench.json`.
//!
//! **Clients are threads sharing one `Vault` handle in one process.** A vault is served by
//! one handle at a time (the sled file lock, PostgreSQL's advisory lock); several
//! processes on one vault are not built yet (docs/POSTGRES.md "Not done (issue 17,
//! second half)").
//!
//! Each (round, clients, backend) gets a fresh vault (raw root key, no KDF), then: import
//! every resource with `put_many` batches split among the clients; point reads of random
//! imported resources (`get_json`); single `put`s of new Observations into existing
//! patients. Every vault runs `Durability::Writes` (the default): a write returns after
//! its commit is on disk; a read's log entry is appended before the read returns and
//! reaches disk with the next flush (next write, group commit or the 500 ms timer).
//!
//! Environment (all optional):
//! * `MEDVAULT_BENCH_PG`: the server, a `postgres://` URL or a Unix socket directory (then
//!   user `$PGUSER` or `postgres`, database `$PGDATABASE` or `postgres`); else
//!   `MEDVAULT_TEST_PG` (as `.ci/postgres` exports it); neither: the PostgreSQL column
//!   is skipped with a message;
//! * `MEDVAULT_BENCH_PATIENTS` synthetic patients imported per vault (default 2000, about
//!   45k resources); `MEDVAULT_BENCH_BATCH` resources per `put_many` (default 250);
//! * `MEDVAULT_BENCH_READS` point reads (default 150000) and `MEDVAULT_BENCH_PUTS` single
//!   puts (default 10000) per vault, split among the clients;
//! * `MEDVAULT_BENCH_CLIENTS` client counts (default `1,4,16`); `MEDVAULT_BENCH_ROUNDS`
//!   (default 1; medians over rounds);
//! * `MEDVAULT_BENCH_PG_POOL` the PostgreSQL handle's pool size (default 8, the default
//!   of `PgOptions`);
//! * `MEDVAULT_BENCH_DIR` where sled vaults are built (default the temp dir);
//!   `MEDVAULT_BENCH_JSON` output (default `target/postgres-bench.json`).

mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use medvault::json::JsonText;
use medvault::storage::Storage;
use medvault::{
    AccessContext, Action, Durability, KeySource, Purpose, RecordKey, Vault, VaultOptions,
};
use medvault_postgres::{PgOptions, PgStorage, PgTarget};
use serde_json::{Value, json};
use workload::{env_u64, sample};

const ROOT_KEY: [u8; 32] = [0x42; 32];

/// The three workloads, in the order they run on each vault.
const WORKLOADS: [(&str, &str); 3] = [
    (
        "import",
        "put_many batches, one log entry per resource; Writes: fsync per commit",
    ),
    (
        "point_read",
        "get_json of a random resource + its read entry; Writes: entry not fsync'd per read",
    ),
    (
        "single_put",
        "put of one new Observation + its entry; Writes: fsync per commit",
    ),
];

const BACKENDS: [&str; 2] = ["sled", "postgres"];

struct Cfg {
    patients: u64,
    batch: usize,
    reads: usize,
    puts: usize,
    clients: Vec<usize>,
    rounds: usize,
    pool: usize,
    dir: PathBuf,
    json: PathBuf,
}

impl Cfg {
    fn from_env() -> Cfg {
        let clients = std::env::var("MEDVAULT_BENCH_CLIENTS")
            .ok()
            .map(|s| {
                s.split(',')
                    .filter_map(|c| c.trim().parse().ok())
                    .filter(|&c: &usize| c > 0)
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec![1, 4, 16]);
        let json = std::env::var_os("MEDVAULT_BENCH_JSON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
                    .join("postgres-bench.json")
            });
        Cfg {
            patients: env_u64("MEDVAULT_BENCH_PATIENTS", 2_000).max(1),
            batch: env_u64("MEDVAULT_BENCH_BATCH", 250).max(1) as usize,
            reads: env_u64("MEDVAULT_BENCH_READS", 150_000).max(1) as usize,
            puts: env_u64("MEDVAULT_BENCH_PUTS", 10_000).max(1) as usize,
            clients,
            rounds: env_u64("MEDVAULT_BENCH_ROUNDS", 1).max(1) as usize,
            pool: env_u64("MEDVAULT_BENCH_PG_POOL", 8).max(1) as usize,
            dir: std::env::var_os("MEDVAULT_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            json,
        }
    }
}

/// The PostgreSQL server the bench runs against, and where its name came from.
struct PgServer {
    base: PgTarget,
    partitions: u32,
    from: &'static str,
}

/// The server named by `MEDVAULT_BENCH_PG`, else `MEDVAULT_TEST_PG`; `None` when neither
/// is set.
fn pg_server() -> Option<PgServer> {
    let (from, v) = ["MEDVAULT_BENCH_PG", "MEDVAULT_TEST_PG"]
        .into_iter()
        .find_map(|name| Some((name, std::env::var(name).ok()?)))?;
    let (base, partitions) = if medvault_postgres::is_url(&v) {
        PgTarget::parse(&v).unwrap_or_else(|e| panic!("{from}: {e}"))
    } else {
        let mut c = postgres::Config::new();
        c.host_path(&v)
            .user(std::env::var("PGUSER").as_deref().unwrap_or("postgres"))
            .dbname(std::env::var("PGDATABASE").as_deref().unwrap_or("postgres"));
        let t = PgTarget::new(c, medvault_postgres::DEFAULT_VAULT).expect("default vault name");
        (t, 0)
    };
    Some(PgServer {
        base,
        partitions,
        from,
    })
}

impl PgServer {
    fn client(&self) -> postgres::Client {
        self.base
            .config
            .connect(postgres::NoTls)
            .expect("connect to the PostgreSQL server")
    }

    fn drop_schema(&self, vault: &str) {
        self.client()
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{vault}\" CASCADE"))
            .expect("drop the bench schema");
    }

    /// The settings that bound the figures (synchronous_commit, fsync...), as the
    /// server reports them.
    fn settings(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut c = self.client();
        if let Ok(row) = c.query_one("SHOW server_version", &[]) {
            out.insert("server_version".into(), row.get::<_, String>(0));
        }
        let names = [
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "commit_delay",
            "commit_siblings",
            "full_page_writes",
            "shared_buffers",
            "max_connections",
        ];
        let rows = c
            .query(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1)",
                &[&names.as_slice()],
            )
            .expect("read pg_settings");
        for r in rows {
            out.insert(r.get(0), r.get(1));
        }
        out
    }
}

/// The resources every vault imports, and the new Observations the single puts write.
struct Data {
    import: Vec<(RecordKey, JsonText)>,
    puts: Vec<(RecordKey, JsonText)>,
    bytes: usize,
}

fn text(v: &Value) -> JsonText {
    JsonText::parse(serde_json::to_vec(v).expect("JSON")).expect("valid JSON")
}

fn data(cfg: &Cfg) -> Data {
    let mut import = Vec::new();
    let mut observations = Vec::new();
    let mut bytes = 0;
    for p in medvault_fhir::synth::generate(cfg.patients as usize, 17) {
        for r in &p.resources {
            let ty = r["resourceType"].as_str().unwrap_or("Unknown").to_owned();
            let id = r["id"].as_str().unwrap_or("none").to_owned();
            if ty == "Observation" {
                observations.push((p.id.clone(), r.clone()));
            }
            let t = text(r);
            bytes += t.as_str().len();
            import.push((RecordKey::new(p.id.clone(), ty, id), t));
        }
    }
    assert!(!observations.is_empty(), "synth makes Observations");
    let puts = (0..cfg.puts)
        .map(|i| {
            let (subject, obs) = &observations[i.wrapping_mul(7919) % observations.len()];
            let mut obs = obs.clone();
            let id = format!("bench-put-{i:08}");
            obs["id"] = json!(id);
            (
                RecordKey::new(subject.clone(), "Observation", id),
                text(&obs),
            )
        })
        .collect();
    Data {
        import,
        puts,
        bytes,
    }
}

/// A vault on one backend, and what is removed after it.
struct Bed {
    vault: Option<Vault>,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

fn vault_options() -> VaultOptions {
    VaultOptions {
        durability: Durability::Writes,
        ..VaultOptions::default()
    }
}

fn open_bed(backend: &str, cfg: &Cfg, pg: Option<&PgServer>, label: &str) -> Bed {
    match (backend, pg) {
        ("sled", _) => {
            let dir = tempfile::Builder::new()
                .prefix("medvault-pgbench-")
                .tempdir_in(&cfg.dir)
                .expect("tempdir");
            let vault = Vault::create_with(
                dir.path().join("v"),
                KeySource::raw(ROOT_KEY),
                vault_options(),
            )
            .expect("create sled vault");
            Bed {
                vault: Some(vault),
                _dir: Some(dir),
                schema: None,
            }
        }
        (_, Some(pg)) => {
            let name = format!("bench_{}_{label}", std::process::id());
            pg.drop_schema(&name);
            let mut target = pg.base.clone();
            target.vault = name.clone();
            let options = PgOptions {
                pool_size: cfg.pool,
                partitions: pg.partitions,
                ..PgOptions::default()
            };
            let storage: Box<dyn Storage> =
                Box::new(PgStorage::create(&target, &options).expect("create tables"));
            let vault = Vault::create_in(storage, KeySource::raw(ROOT_KEY), vault_options())
                .expect("create PostgreSQL vault");
            Bed {
                vault: Some(vault),
                _dir: None,
                schema: Some(name),
            }
        }
        _ => unreachable!("PostgreSQL beds are opened only with a server"),
    }
}

impl Bed {
    fn vault(&self) -> &Vault {
        self.vault.as_ref().expect("open until closed")
    }

    /// Closes the vault (releasing its lock), then removes its schema.
    fn close(mut self, pg: Option<&PgServer>) {
        if let Some(v) = self.vault.take() {
            v.sync().expect("sync");
        }
        if let (Some(s), Some(pg)) = (self.schema.take(), pg) {
            pg.drop_schema(&s);
        }
    }
}

/// Wall time of a run, and each call's latency.
struct Measured {
    wall: Duration,
    lat: Vec<Duration>,
}

/// Runs `f` on every item, the items dealt round-robin to `clients` threads that share
/// whatever `f` borrows (the one vault handle); the clock runs from before the first
/// spawn to the last join.
fn run_clients<T: Sync>(clients: usize, items: &[T], f: impl Fn(&T) + Sync) -> Measured {
    let t = Instant::now();
    let lat = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let f = &f;
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(items.len() / clients + 1);
                    for item in items.iter().skip(c).step_by(clients) {
                        let t0 = Instant::now();
                        f(item);
                        lat.push(t0.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::with_capacity(items.len());
        for h in handles {
            all.extend(h.join().expect("client thread"));
        }
        all
    });
    Measured {
        wall: t.elapsed(),
        lat,
    }
}

fn percentile_us(lat: &mut [Duration], p: f64) -> f64 {
    if lat.is_empty() {
        return f64::NAN;
    }
    lat.sort_unstable();
    let i = ((lat.len() - 1) as f64 * p).round() as usize;
    lat[i].as_secs_f64() * 1e6
}

/// Every round's value of every figure (`workload/backend/clients[.p50_us|.p99_us]`).
#[derive(Default)]
struct Figures(BTreeMap<String, Vec<f64>>);

impl Figures {
    fn record(&mut self, name: &str, ops: usize, mut m: Measured) {
        let rate = ops as f64 / m.wall.as_secs_f64();
        let p50 = percentile_us(&mut m.lat, 0.50);
        let p99 = percentile_us(&mut m.lat, 0.99);
        eprintln!("  {name}: {rate:.0} ops/s (per call p50 {p50:.0} us, p99 {p99:.0} us)");
        for (k, v) in [
            (name.to_owned(), rate),
            (format!("{name}.p50_us"), p50),
            (format!("{name}.p99_us"), p99),
        ] {
            self.0.entry(k).or_default().push(v);
        }
    }

    fn median(&self, name: &str) -> Option<f64> {
        let mut s = self.0.get(name)?.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        Some(if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        })
    }
}

/// The three workloads on one fresh vault.
fn run_bed(cfg: &Cfg, d: &Data, vault: &Vault, prefix: &str, clients: usize, fig: &mut Figures) {
    let cx = AccessContext::new("bench-clinician", Purpose::Care);
    let batches: Vec<&[(RecordKey, JsonText)]> = d.import.chunks(cfg.batch).collect();
    let m = run_clients(clients, &batches, |b| {
        vault
            .put_many_json(&cx, b.iter().map(|(k, t)| (k, t)), Action::Import)
            .expect("put_many");
    });
    fig.record(&format!("import/{prefix}"), d.import.len(), m);

    let seed = 0x5eed ^ clients as u64;
    let picks: Vec<&RecordKey> = sample(d.import.len() as u64, cfg.reads, seed)
        .into_iter()
        .map(|i| &d.import[i as usize].0)
        .collect();
    let m = run_clients(clients, &picks, |k| {
        std::hint::black_box(vault.get_json(&cx, k).expect("get"));
    });
    fig.record(&format!("point_read/{prefix}"), picks.len(), m);

    let m = run_clients(clients, &d.puts, |(k, t)| {
        vault.put_json(&cx, k, t).expect("put");
    });
    fig.record(&format!("single_put/{prefix}"), d.puts.len(), m);
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn rate(v: Option<f64>) -> String {
    match v {
        None => "skipped".into(),
        Some(r) if r >= 10_000.0 => format!("{:.1}k/s", r / 1e3),
        Some(r) => format!("{r:.0}/s"),
    }
}

fn main() {
    // `cargo bench -- --list` (test discovery) must not run the whole bench.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cfg = Cfg::from_env();
    let pg = pg_server();
    let t_total = Instant::now();
    let load_start = loadavg();
    let settings = pg.as_ref().map(PgServer::settings).unwrap_or_default();
    match &pg {
        Some(p) => eprintln!(
            "PostgreSQL {} from {} (synchronous_commit={}, fsync={}, pool {}, partitions {})",
            settings.get("server_version").map_or("?", |s| s.as_str()),
            p.from,
            settings
                .get("synchronous_commit")
                .map_or("?", |s| s.as_str()),
            settings.get("fsync").map_or("?", |s| s.as_str()),
            cfg.pool,
            p.partitions
        ),
        None => eprintln!(
            "PostgreSQL: skipped (MEDVAULT_BENCH_PG and MEDVAULT_TEST_PG unset); sled only"
        ),
    }
    let d = data(&cfg);
    eprintln!(
        "{} patients, {} resources ({} bytes of JSON each on average), {} reads, {} puts",
        cfg.patients,
        d.import.len(),
        d.bytes / d.import.len().max(1),
        cfg.reads,
        cfg.puts
    );
    let mut fig = Figures::default();
    for round in 0..cfg.rounds {
        for (ci, &clients) in cfg.clients.iter().enumerate() {
            let mut order = BACKENDS.to_vec();
            if (round + ci) % 2 == 1 {
                order.reverse(); // alternate which backend goes first
            }
            for backend in order {
                if backend == "postgres" && pg.is_none() {
                    continue;
                }
                eprintln!("round {round}, {backend}, {clients} clients");
                let bed = open_bed(backend, &cfg, pg.as_ref(), &format!("r{round}_c{clients}"));
                let prefix = format!("{backend}/{clients}");
                run_bed(&cfg, &d, bed.vault(), &prefix, clients, &mut fig);
                bed.close(pg.as_ref());
            }
        }
    }

    // The table: one row per workload and client count, one column per backend.
    let mut lines = vec![
        "| workload | durability | clients | sled | PostgreSQL | PostgreSQL / sled |".to_owned(),
        "|---|---|---|---|---|---|".to_owned(),
    ];
    let mut rows = Vec::new();
    for (w, durability) in WORKLOADS {
        for &c in &cfg.clients {
            let s = fig.median(&format!("{w}/sled/{c}"));
            let p = fig.median(&format!("{w}/postgres/{c}"));
            let ratio = match (s, p) {
                (Some(s), Some(p)) => format!("{:.2}", p / s),
                _ => String::new(),
            };
            lines.push(format!(
                "| {w} | {durability} | {c} | {} | {} | {ratio} |",
                rate(s),
                rate(p)
            ));
            rows.push(json!({
                "workload": w, "durability": durability, "clients": c,
                "sled_ops_per_s": s, "postgres_ops_per_s": p,
                "sled_p50_us": fig.median(&format!("{w}/sled/{c}.p50_us")),
                "sled_p99_us": fig.median(&format!("{w}/sled/{c}.p99_us")),
                "postgres_p50_us": fig.median(&format!("{w}/postgres/{c}.p50_us")),
                "postgres_p99_us": fig.median(&format!("{w}/postgres/{c}.p99_us")),
            }));
        }
    }
    let notes = [
        "clients = threads sharing one Vault handle in one process (one handle per vault: \
         sled file lock / PostgreSQL advisory lock; several processes per vault not built)"
            .to_owned(),
        format!(
            "{} resources imported per vault in put_many batches of {}; import ops = resources, \
             latencies per batch",
            d.import.len(),
            cfg.batch
        ),
        format!(
            "PostgreSQL: pool {} connections, synchronous_commit={}; sled: default options \
             (256 MiB cache, 500 ms flush timer)",
            cfg.pool,
            settings
                .get("synchronous_commit")
                .map_or("n/a", |s| s.as_str())
        ),
        format!(
            "medians of {} round(s); {} cores; load average {} at start, {} at end; total {:.0} s",
            cfg.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_start,
            loadavg(),
            t_total.elapsed().as_secs_f64()
        ),
    ];
    println!();
    for l in &lines {
        println!("{l}");
    }
    for n in &notes {
        println!("note: {n}");
    }

    let out = json!({
        "table": lines,
        "rows": rows,
        "notes": notes,
        "rounds": fig.0,
        "postgres": pg.as_ref().map(|p| json!({
            "from": p.from,
            "partitions": p.partitions,
            "pool_size": cfg.pool,
            "settings": settings,
        })),
        "settings": {
            "patients": cfg.patients, "resources": d.import.len(), "batch": cfg.batch,
            "reads": cfg.reads, "puts": cfg.puts, "clients": cfg.clients, "rounds": cfg.rounds,
            "durability": "Writes",
        },
    });
    if let Some(parent) = cfg.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut bytes = serde_json::to_vec_pretty(&out).expect("JSON");
    bytes.push(b'\n');
    match std::fs::write(&cfg.json, bytes) {
        Ok(()) => eprintln!("wrote {}", cfg.json.display()),
        Err(e) => eprintln!("could not write {}: {e}", cfg.json.display()),
    }
}
