//! Criterion benches of the vault operations, each with its access-log entry: put, get of
//! all fields, get of one field, the scan of one subject (`records_of`), a full scan of
//! every subject in batches (`records_of_subjects_json`), random reads with the key
//! cache at its default and smallest byte budgets, a batched import (`put_many` of 1000),
//! `verify`, open after the KDF, root-key and data-key rotation; on the ~1 KiB 12-field
//! records of `workload` and on synthetic FHIR patients (`fhir::synth::generate`); the log
//! store's read paths (`logstore/*`: the backward probe for the last entries, tail
//! recovery, the forward walk); plus the record codec alone (`codec/*`, through the hidden
//! `testing::bench`, feature `testing`).
//!
//! Vaults use a raw root key (no Argon2id) and live in a temporary directory.

mod workload;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use medvault::testing::bench::RecordSealer;
use medvault::{
    AccessContext, Action, Durability, KeySource, Purpose, RecordKey, Vault, VaultOptions,
};
use serde_json::Value;
use workload::{ONE_FIELD, OneField, Rec, key, record, sample};

/// Records in the vault the read benches run against (1000 subjects).
const PRELOAD: u64 = 10_000;

fn ctx() -> AccessContext {
    AccessContext::new("bench-clinician", Purpose::Care)
}

fn new_vault(dir: &std::path::Path, durability: Durability) -> Vault {
    let opts = VaultOptions {
        durability,
        ..VaultOptions::default()
    };
    Vault::create_with(dir.join("v"), KeySource::raw([0x42; 32]), opts).expect("create vault")
}

fn preload(v: &Vault, n: u64) {
    let c = ctx();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let keys: Vec<RecordKey> = chunk.iter().map(|&i| key(i)).collect();
        let recs: Vec<Rec> = chunk.iter().map(|&i| record(i)).collect();
        v.put_many(&c, keys.iter().zip(recs.iter()), Action::Import)
            .expect("preload");
    }
}

fn records(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = new_vault(dir.path(), Durability::Writes);
    preload(&v, PRELOAD);
    let cx = ctx();
    let keys = sample(PRELOAD, 4096, 7);
    let next = AtomicU64::new(0);
    let pick = || key(keys[(next.fetch_add(1, Ordering::Relaxed) % 4096) as usize]);

    let mut g = c.benchmark_group("vault/1KiB_12fields");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_all_fields", |b| {
        b.iter_batched(
            pick,
            |k| v.get::<Rec>(&cx, &k).expect("get"),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("get_one_field", |b| {
        b.iter_batched(
            pick,
            |k| {
                v.get_fields::<OneField>(&cx, &k, &[ONE_FIELD])
                    .expect("get_fields")
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("records_of_subject_10", |b| {
        let mut s = 0u64;
        b.iter(|| {
            s = (s + 37) % (PRELOAD / workload::RECORDS_PER_SUBJECT);
            let out: Vec<(RecordKey, Rec)> = v
                .records_of(&cx, &workload::subject(s), None)
                .expect("records_of");
            black_box(out.len())
        })
    });
    // The full-scan path: every subject, 256 per access-log commit.
    let subjects: Vec<String> = (0..PRELOAD / workload::RECORDS_PER_SUBJECT)
        .map(workload::subject)
        .collect();
    g.throughput(Throughput::Elements(PRELOAD));
    g.sample_size(10);
    g.bench_function(
        format!("scan_{PRELOAD}_records_256_subjects_per_commit"),
        |b| {
            b.iter(|| {
                let mut n = 0usize;
                for batch in subjects.chunks(256) {
                    let names: Vec<&str> = batch.iter().map(String::as_str).collect();
                    for (_, records) in v
                        .records_of_subjects_json(&cx, &names, None, Action::Read)
                        .expect("scan")
                    {
                        for (_, text) in records {
                            n += black_box(text.deserialize::<Rec>().expect("decode"))
                                .mrn
                                .len();
                        }
                    }
                }
                n
            })
        },
    );
    g.throughput(Throughput::Elements(1));
    g.sample_size(100);
    // New records above the preload, so each put is an insert.
    let fresh = AtomicU64::new(PRELOAD);
    g.bench_function("put/durability_writes", |b| {
        b.iter_batched(
            || {
                let i = fresh.fetch_add(1, Ordering::Relaxed);
                (key(i), record(i))
            },
            |(k, r)| v.put(&cx, &k, &r).expect("put"),
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(1000));
    g.sample_size(20);
    g.bench_function("put_many_1000", |b| {
        b.iter_batched(
            || {
                let start = fresh.fetch_add(1000, Ordering::Relaxed);
                let ks: Vec<RecordKey> = (start..start + 1000).map(key).collect();
                let rs: Vec<Rec> = (start..start + 1000).map(record).collect();
                (ks, rs)
            },
            |(ks, rs)| {
                v.put_many(&cx, ks.iter().zip(rs.iter()), Action::Import)
                    .expect("put_many")
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    drop(v);

    let dir2 = tempfile::tempdir().expect("tempdir");
    let bg = new_vault(dir2.path(), Durability::Background);
    let fresh = AtomicU64::new(0);
    let mut g = c.benchmark_group("vault/1KiB_12fields");
    g.throughput(Throughput::Elements(1));
    g.bench_function("put/durability_background", |b| {
        b.iter_batched(
            || {
                let i = fresh.fetch_add(1, Ordering::Relaxed);
                (key(i), record(i))
            },
            |(k, r)| bg.put(&cx, &k, &r).expect("put"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The record codec alone (no storage, no log): what the field-encryption tax is made of.
fn codec(c: &mut Criterion) {
    let sealer = RecordSealer::new();
    let k = key(12_345);
    let r = record(12_345);
    let (sk, sealed) = sealer.seal(&k, &r).expect("seal");
    let plain = workload::plain(&r);
    let mut g = c.benchmark_group("codec/1KiB_12fields");
    g.throughput(Throughput::Elements(1));
    g.bench_function("json_encode_plain", |b| {
        b.iter(|| workload::plain(black_box(&r)))
    });
    g.bench_function("json_decode_plain", |b| {
        b.iter(|| workload::from_plain::<Rec>(black_box(&plain)))
    });
    g.bench_function("seal_record", |b| {
        b.iter(|| sealer.seal(black_box(&k), black_box(&r)))
    });
    g.bench_function("open_all_fields", |b| {
        b.iter(|| {
            sealer
                .open::<Rec>(&k, &sk, black_box(&sealed), None)
                .expect("open")
        })
    });
    g.bench_function("open_one_field", |b| {
        b.iter(|| {
            sealer
                .open::<OneField>(&k, &sk, black_box(&sealed), Some(&[ONE_FIELD]))
                .expect("open")
        })
    });
    g.finish();
}

/// Random reads over 1000 subjects with a key cache that holds them all (the default
/// budget) and with the smallest one (32 KiB, ~14 subjects: nearly every read unwraps the
/// subject's keys): the cost the byte-sized cache removes.
fn key_cache(c: &mut Criterion) {
    let cx = ctx();
    let mut g = c.benchmark_group("vault/key_cache");
    g.throughput(Throughput::Elements(1));
    for (name, bytes) in [
        ("default", medvault::DEFAULT_KEY_CACHE_BYTES),
        ("minimum", 0),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = VaultOptions {
            durability: Durability::Writes,
            key_cache_bytes: bytes,
            ..VaultOptions::default()
        };
        let v = Vault::create_with(dir.path().join("v"), KeySource::raw([0x42; 32]), opts)
            .expect("create vault");
        preload(&v, PRELOAD);
        let keys = sample(PRELOAD, 4096, 11);
        let next = AtomicU64::new(0);
        g.bench_function(format!("get_all_fields_random_subject/{name}"), |b| {
            b.iter(|| {
                let k = key(keys[(next.fetch_add(1, Ordering::Relaxed) % 4096) as usize]);
                v.get::<Rec>(&cx, &k).expect("get")
            })
        });
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = new_vault(dir.path(), Durability::Background);
    preload(&v, PRELOAD);
    let cx = ctx();
    let mut g = c.benchmark_group("vault/verify");
    // Each verify appends one entry: the log grows by the sample count, negligibly.
    g.throughput(Throughput::Elements(v.log_len()));
    g.sample_size(20);
    g.bench_function(format!("log_{}_entries", v.log_len()), |b| {
        b.iter(|| v.verify(&cx, None).expect("verify"))
    });
    g.finish();
}

/// Open after the KDF (raw root key) of a vault of `PRELOAD` records: sled's own open,
/// the anchor and marker checks, the tail recovery and the policy-version check, which
/// reads the log's last entries backward from its end (never the whole log).
fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    drop({
        let v = new_vault(dir.path(), Durability::Writes);
        preload(&v, PRELOAD);
        v
    });
    let mut g = c.benchmark_group("vault/open");
    g.sample_size(20);
    g.bench_function(format!("raw_key_{PRELOAD}_records"), |b| {
        b.iter(|| {
            Vault::open_with(
                dir.path().join("v"),
                KeySource::raw([0x42; 32]),
                VaultOptions::default(),
            )
            .expect("open")
        })
    });
    g.finish();
}

/// The log store's paths open and verify use: the backward probe for the last entries
/// (`read_back`), the tail recovery from a remembered position, and the forward walk.
fn logstore(c: &mut Criterion) {
    use medvault::logstore::{FRAME_VERSION, Frame, LogPos, LogStore, SegmentLog};
    let dir = tempfile::tempdir().expect("tempdir");
    let id = medvault::VaultId::from([7; 16]);
    let n = 100_000u64;
    let end = {
        let log = SegmentLog::create(dir.path(), id, Default::default()).expect("create log");
        let mut end = log.end();
        for first in (0..n).step_by(1000) {
            let frames: Vec<Frame> = (first..first + 1000)
                .map(|seq| Frame {
                    seq,
                    version: FRAME_VERSION,
                    flags: 0,
                    body: vec![seq as u8; 270],
                    link: [1; 32],
                })
                .collect();
            end = log.append(&frames).expect("append");
        }
        log.sync().expect("sync");
        end
    };
    let log = SegmentLog::open(dir.path(), id, Default::default()).expect("open log");
    log.recover(&end).expect("recover");
    let mut g = c.benchmark_group("logstore/100k_frames");
    g.bench_function("read_back_64", |b| {
        b.iter(|| black_box(log.read_back(64).expect("read_back")))
    });
    g.bench_function("recover_from_end", |b| {
        b.iter(|| black_box(log.recover(&end).expect("recover")))
    });
    let near_end = LogPos {
        next_seq: n - 1000,
        segment: 0,
        offset: end.offset - 1000 * (54 + 270),
    };
    g.bench_function("recover_last_1000", |b| {
        b.iter(|| black_box(log.recover(&near_end).expect("recover")))
    });
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("read_all", |b| {
        b.iter(|| {
            let mut k = 0u64;
            for f in log.read(0).expect("read") {
                black_box(f.expect("frame"));
                k += 1;
            }
            k
        })
    });
    g.finish();
}

fn rotation(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = new_vault(dir.path(), Durability::Writes);
    preload(&v, PRELOAD);
    let cx = ctx();
    let mut g = c.benchmark_group("vault/rotation");
    g.sample_size(10);
    let subjects = PRELOAD / workload::RECORDS_PER_SUBJECT;
    // A root-key change is one header write (O(1)): one element per rotation. Alternates
    // between two raw root keys (no KDF), so each iteration is a full rotation.
    g.throughput(Throughput::Elements(1));
    let mut flip = false;
    g.bench_function(format!("root_key_change_{subjects}_subjects"), |b| {
        b.iter(|| {
            flip = !flip;
            let k = if flip { [0x43; 32] } else { [0x42; 32] };
            v.rotate_root_key(
                &cx,
                KeySource::raw(k),
                medvault::KdfParams::default(),
                &mut |_| {},
            )
            .expect("rotate root key")
        })
    });
    // Vault-KEK rotation: every subject entry rewrapped, no record touched.
    g.throughput(Throughput::Elements(subjects));
    g.bench_function(format!("vault_kek_rewrap_{subjects}_subjects"), |b| {
        b.iter(|| {
            v.rotate_vault_kek(&cx, &mut |_| {})
                .expect("rotate vault KEK")
        })
    });
    g.throughput(Throughput::Elements(PRELOAD));
    g.bench_function(format!("data_keys_reencrypt_{PRELOAD}_records"), |b| {
        b.iter(|| {
            v.rotate_data_keys(&cx, &medvault::RotationScope::All, &mut |_| {})
                .expect("rotate data keys")
        })
    });
    g.finish();
}

fn fhir(c: &mut Criterion) {
    let patients: Vec<_> = medvault_fhir::synth::generate(200, 1).collect();
    let split = |p: &medvault_fhir::synth::SynthPatient| -> Vec<(RecordKey, Value)> {
        p.resources
            .iter()
            .map(|r| {
                let ty = r["resourceType"].as_str().unwrap_or("Unknown").to_owned();
                let id = r["id"].as_str().unwrap_or("none").to_owned();
                (RecordKey::new(p.id.clone(), ty, id), r.clone())
            })
            .collect()
    };
    let all: Vec<Vec<(RecordKey, Value)>> = patients.iter().map(split).collect();
    let resources: u64 = all.iter().map(|p| p.len() as u64).sum();
    let cx = ctx();

    let mut g = c.benchmark_group("vault/fhir");
    g.sample_size(20);
    g.throughput(Throughput::Elements(resources));
    g.bench_function(format!("import_200_patients_{resources}_resources"), |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("tempdir"),
            |dir| {
                let v = new_vault(dir.path(), Durability::Writes);
                for p in &all {
                    v.put_many(&cx, p.iter().map(|(k, r)| (k, r)), Action::Import)
                        .expect("import");
                }
                dir
            },
            BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let v = new_vault(dir.path(), Durability::Writes);
    for p in &all {
        v.put_many(&cx, p.iter().map(|(k, r)| (k, r)), Action::Import)
            .expect("import");
    }
    let flat: Vec<&RecordKey> = all.iter().flatten().map(|(k, _)| k).collect();
    let next = AtomicU64::new(0);
    g.throughput(Throughput::Elements(1));
    g.sample_size(50);
    g.bench_function("get_resource_all_fields", |b| {
        b.iter(|| {
            let k = flat[(next.fetch_add(7919, Ordering::Relaxed) as usize) % flat.len()];
            v.get::<Value>(&cx, k).expect("get")
        })
    });
    g.bench_function("records_of_patient", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 13) % patients.len();
            let out: Vec<(RecordKey, Value)> = v
                .records_of(&cx, &patients[i].id, None)
                .expect("records_of");
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(
    benches, codec, records, key_cache, verify, open, logstore, rotation, fhir
);
criterion_main!(benches);
