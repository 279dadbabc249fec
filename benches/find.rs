//! Find by identifier over a vault of synthetic patients (100,000 by default; set
//! `MEDVAULT_BENCH_PATIENTS` to change): the blind index (`find`) against a full
//! decrypting scan (`find_by_scan`, which opens the indexed fields of every record).
//! The vault is built once per run, in a temporary directory. Issue 8, acceptance 3:
//! the ratio scan / find should be at least 1000.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use medvault::{
    AccessContext, Action, Durability, KeySource, Purpose, RecordKey, Vault, VaultOptions,
};
use medvault_fhir::{default_indexes, synth};
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    vault: Vault,
    mrns: Vec<String>,
}

fn ctx() -> AccessContext {
    AccessContext::new("bench", Purpose::Care)
}

fn build() -> Fixture {
    let n: usize = std::env::var("MEDVAULT_BENCH_PATIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::create_with(
        dir.path().join("v"),
        KeySource::raw([0x42; 32]),
        VaultOptions {
            durability: Durability::Background,
            ..VaultOptions::default()
        },
    )
    .expect("create");
    for s in default_indexes() {
        vault.add_index(&ctx(), s, &mut |_| {}).expect("add_index");
    }
    let started = Instant::now();
    let mut mrns = Vec::with_capacity(n);
    let mut chunk: Vec<(RecordKey, Value)> = Vec::with_capacity(1000);
    let flush = |chunk: &mut Vec<(RecordKey, Value)>| {
        vault
            .put_many(&ctx(), chunk.iter().map(|(k, v)| (k, v)), Action::Import)
            .expect("put_many");
        chunk.clear();
    };
    for p in synth::generate(n, 2024) {
        let patient = p.resources.into_iter().next().expect("a Patient first");
        mrns.push(
            patient["identifier"][1]["value"]
                .as_str()
                .expect("MRN")
                .to_owned(),
        );
        chunk.push((RecordKey::new(p.id.clone(), "Patient", p.id), patient));
        if chunk.len() == 1000 {
            flush(&mut chunk);
        }
    }
    flush(&mut chunk);
    vault.sync().expect("sync");
    let stats = vault.stats().expect("stats");
    eprintln!(
        "built {n} patients in {:.1} s ({} records, {:.0} MiB on disk, 6 default indexes)",
        started.elapsed().as_secs_f64(),
        stats.records,
        stats.disk_bytes as f64 / (1024.0 * 1024.0)
    );
    Fixture {
        _dir: dir,
        vault,
        mrns,
    }
}

fn find_by_identifier(c: &mut Criterion) {
    let f = build();
    let mut i = 0usize;
    let mut next = || {
        i = (i + 7919) % f.mrns.len();
        f.mrns[i].as_str()
    };
    // One manual measurement of each, for the ratio printed at the end.
    let t = Instant::now();
    let finds = 2000;
    for _ in 0..finds {
        let r: Vec<(RecordKey, Value)> = f
            .vault
            .find(&ctx(), "Patient", "identifier", &[next()])
            .expect("find");
        assert!(!r.is_empty());
    }
    let per_find = t.elapsed() / finds;
    let t = Instant::now();
    let scans = 3;
    for _ in 0..scans {
        let r: Vec<(RecordKey, Value)> = f
            .vault
            .find_by_scan(&ctx(), "Patient", "identifier", &[next()])
            .expect("scan");
        assert!(!r.is_empty());
    }
    let per_scan = t.elapsed() / scans;

    let mut g = c.benchmark_group("find_by_identifier");
    g.bench_function("blind_index", |b| {
        b.iter(|| {
            let r: Vec<(RecordKey, Value)> = f
                .vault
                .find(&ctx(), "Patient", "identifier", &[next()])
                .expect("find");
            black_box(r)
        })
    });
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("decrypting_scan", |b| {
        b.iter(|| {
            let r: Vec<(RecordKey, Value)> = f
                .vault
                .find_by_scan(&ctx(), "Patient", "identifier", &[next()])
                .expect("scan");
            black_box(r)
        })
    });
    g.finish();
    eprintln!(
        "find by identifier over {} patients: index {:.1} us, scan {:.1} ms, ratio {:.0}x",
        f.mrns.len(),
        per_find.as_secs_f64() * 1e6,
        per_scan.as_secs_f64() * 1e3,
        per_scan.as_secs_f64() / per_find.as_secs_f64()
    );
}

criterion_group!(benches, find_by_identifier);
criterion_main!(benches);
