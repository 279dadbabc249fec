//! Tree maintenance and proof costs: appending leaves to the compact frontier, and proving
//! inclusion in a log of 1M entries from a store of perfect-subtree hashes. Never asserts
//! a time (STYLE.md, benchmarks).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use medvault_verify::{Frontier, MemoryTree, NodeSource, leaf_hash, prove_inclusion};

/// Not a power of two, so every proof also folds one right-edge subtree.
const MILLION: u64 = 1_000_000;

fn leaves(n: u64) -> Vec<[u8; 32]> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn append(c: &mut Criterion) {
    let hashes = leaves(4096);
    c.bench_function("frontier push 4096 leaves", |b| {
        b.iter_batched(
            Frontier::new,
            |mut f| {
                for h in &hashes {
                    f.push(*h).ok();
                }
                black_box(f.root())
            },
            BatchSize::SmallInput,
        )
    });
}

fn prove(c: &mut Criterion) {
    let mut tree = MemoryTree::new();
    for h in leaves(MILLION) {
        tree.push(h).ok();
    }
    let root = tree.root();
    let mut i = 0u64;
    c.bench_function("prove+verify inclusion in 1M leaves", |b| {
        b.iter(|| {
            i = (i + 7919) % MILLION;
            let p = prove_inclusion(&tree, i, MILLION);
            if let (Ok(p), Ok(leaf)) = (&p, tree.node(0, i)) {
                black_box(p.verify(&leaf, &root).is_ok());
            }
            black_box(p)
        })
    });
}

criterion_group!(benches, append, prove);
criterion_main!(benches);
