//! The access log's Merkle tree (issue 18, acceptance 4): the cost of appending frames
//! with the tree against the same appends without it (`log_append/*`: one commit's frame
//! per append, without and with the fdatasync a durable commit waits for), and proving
//! (and verifying) inclusion in a log of 1M entries from the node file on disk
//! (`tree/prove_inclusion_1M`). `entry_append/*` appends access-log entries as a vault
//! does, through the commit protocol (entry sealed, chained, framed and written, no
//! fdatasync: `Background`'s path), with and without the tree. Never asserts a time (STYLE.md, benchmarks); the lead
//! reads the ratio of `with_tree` to `without_tree` (target: at most 1.10) and the proof
//! time (target: under 1 ms).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use medvault::logstore::tree::LogTree;
use medvault::logstore::{FRAME_VERSION, Frame, LogStore, SegmentLog, SegmentOptions};
use medvault_verify::leaf_hash;

/// Not a power of two, so every proof also folds a right-edge subtree.
const MILLION: u64 = 1_000_000;
/// A typical sealed entry body (an ~80-byte entry plus the envelope and change list).
const BODY: usize = 160;

fn log(dir: &std::path::Path, tree: bool) -> SegmentLog {
    let log = SegmentLog::create(
        dir,
        medvault::VaultId::from([7; 16]),
        SegmentOptions::default(),
    )
    .expect("create log");
    if tree { log } else { log.without_tree() }
}

fn frame(seq: u64) -> Frame {
    Frame {
        seq,
        version: FRAME_VERSION,
        flags: 0,
        body: vec![(seq % 251) as u8; BODY],
        link: [(seq % 253) as u8; 32],
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("log_append");
    for (name, tree, sync) in [
        ("without_tree", false, false),
        ("with_tree", true, false),
        ("without_tree+fdatasync", false, true),
        ("with_tree+fdatasync", true, true),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = log(dir.path(), tree);
        let mut seq = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                let end = l.append(&[frame(seq)]).expect("append");
                if sync {
                    l.sync().expect("sync");
                }
                seq += 1;
                black_box(end)
            })
        });
    }
    g.finish();
}

fn prove(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = LogTree::open_file(dir.path(), medvault::VaultId::from([7; 16])).expect("tree file");
    let leaves: Vec<[u8; 32]> = (0..MILLION).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    for chunk in leaves.chunks(4096) {
        tree.append_leaves(chunk).expect("append leaves");
    }
    tree.sync().expect("sync");
    let root = tree.root();
    let mut i = 0u64;
    c.bench_function("tree/prove_inclusion_1M", |b| {
        b.iter(|| {
            i = (i + 7919) % MILLION;
            let p = tree.prove_inclusion(i, MILLION).expect("prove");
            black_box(p.verify(&leaves[i as usize], &root).is_ok())
        })
    });
    c.bench_function("tree/prove_consistency_1M", |b| {
        b.iter(|| {
            i = (i + 7919) % MILLION;
            black_box(tree.prove_consistency(i + 1, MILLION).expect("prove"))
        })
    });
}

/// One access-log entry appended as a vault appends it (sealed, chained, framed, written;
/// no fdatasync, as under `Background`), with and without the tree.
fn entry_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("entry_append");
    for (name, tree) in [("without_tree", false), ("with_tree", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let appender = medvault::testing::bench::EntryAppender::new(
            medvault::VaultId::from([7; 16]),
            Arc::new(log(dir.path(), tree)),
        )
        .expect("start the log");
        g.bench_function(name, |b| {
            b.iter(|| black_box(appender.append().expect("append")))
        });
    }
    g.finish();
}

criterion_group!(benches, append, entry_append, prove);
criterion_main!(benches);
