//! Criterion benches of the cryptographic primitives every vault operation is built from:
//! AES-256-GCM seal/open of 64 B and 1 KiB (one field envelope), the HMAC-SHA256 keyed
//! pseudonym of a subject id, and one Argon2id derivation with the default parameters.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medvault::KdfParams;
use medvault::Passphrase;
use medvault::testing::crypto::{AeadKey, MacKey, SecretKey};

fn aead(c: &mut Criterion) {
    let key = AeadKey::new(&SecretKey::random());
    let aad = b"medvault/v1/field\x01vault-id-16byte patient-00000001 Observation obs-1 note";
    let mut g = c.benchmark_group("aes256gcm");
    for size in [64usize, 1024] {
        let pt = vec![0x5au8; size];
        let env = key.seal(aad, &pt);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("seal/{size}B"), |b| {
            b.iter(|| key.seal(black_box(aad), black_box(&pt)))
        });
        g.bench_function(format!("open/{size}B"), |b| {
            b.iter(|| key.open(black_box(aad), black_box(&env)))
        });
    }
    g.finish();
}

fn pseudonym(c: &mut Criterion) {
    let mac = MacKey::new(&SecretKey::random());
    c.bench_function("hmac_sha256/subject_pseudonym", |b| {
        b.iter(|| mac.mac_parts(&[b"subject", black_box(b"patient-00001234")]))
    });
}

fn argon2(c: &mut Criterion) {
    let mut g = c.benchmark_group("argon2id");
    g.sample_size(10);
    let params = KdfParams::default();
    let pass = Passphrase::new("correct horse battery staple");
    let salt = [7u8; 16];
    g.bench_function("default_m64MiB_t3_p4", |b| {
        b.iter(|| params.derive(black_box(&pass), black_box(&salt)))
    });
    g.finish();
}

criterion_group!(benches, aead, pseudonym, argon2);
criterion_main!(benches);
