//! # medvault-testkit
//!
//! Test support for medvault, never published: the model-based and tamper fuzz targets'
//! checks ([`check_model`], [`check_tamper`]), which need only the public API, the
//! dispatch over every fuzz target ([`TARGETS`], [`check`]) and the whole seed corpus
//! ([`seeds`]). The decoder targets' checks reach crate-private code, so they stay in the
//! core behind its `testing` feature (`medvault::testing::fuzz`).
//!
//! Each `check_*` function takes the fuzzer's bytes and *panics* when a property fails
//! (that is how libFuzzer learns of a bug); returning normally means the input was
//! handled correctly. `fuzz/` runs them under libFuzzer, `tests/fuzz_seeds.rs` replays
//! the committed seeds (`fuzz/seeds/<target>/`) under `cargo test`. What each target
//! checks is in `fuzz/README.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

mod model;
mod tamper;

use medvault::testing::fuzz::{check_decoder, decoder_seeds};

pub use model::check_model;
pub use tamper::{
    SEGMENT_HEADER_BYTES, SegmentFile, check_tamper, fix_check, frame_seq, renumber, segment_paths,
};

/// Every fuzz target, by name (one directory of seeds and one fuzz target each).
pub const TARGETS: &[&str] = &[
    "header",
    "index",
    "subject_entry",
    "record",
    "log",
    "checkpoint",
    "segment",
    "anchor",
    "model",
    "tamper",
];

/// Runs the check of `target` on `data`. Returns `false` for an unknown target name.
pub fn check(target: &str, data: &[u8]) -> bool {
    match target {
        "model" => check_model(data),
        "tamper" => check_tamper(data),
        _ => return check_decoder(target, data),
    }
    true
}

/// A valid input for every target and mode: the seed corpus committed under
/// `fuzz/seeds/<target>/` (regenerate with `MEDVAULT_BLESS=1 cargo test --test
/// fuzz_seeds`). The decoder targets' seeds come from
/// `medvault::testing::fuzz::decoder_seeds` (random nonces: each generation differs in
/// bytes but not in meaning); the model and tamper seeds are byte strings from a fixed
/// generator (xorshift) plus short hand-written ones. Returns `(target, name, bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = decoder_seeds();
    // model and tamper: byte strings from a fixed generator (xorshift), plus short
    // hand-written ones that hit each operation.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut pseudo = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    let every_op: Vec<u8> = (0u8..15).flat_map(|op| [op, 1, 0, 1, 2, 7, 1, 3]).collect();
    out.push(("model", "every-op".into(), every_op));
    out.push((
        "model",
        "put-reopen-get".into(),
        vec![0, 1, 0, 0, 1, 0, 5, 8, 2, 1, 0, 0, 4, 1, 0, 0, 5, 1, 9, 1],
    ));
    for i in 0..4 {
        out.push(("model", format!("random-{i}"), pseudo(64 + 64 * i)));
    }
    out.push(("tamper", "nothing".into(), Vec::new()));
    for op in 0u8..9 {
        out.push((
            "tamper",
            format!("op-{op}"),
            vec![op, 3, 0, 10, 7, 5, 1, 2, 3],
        ));
    }
    for i in 0..4 {
        out.push(("tamper", format!("random-{i}"), pseudo(16 + 16 * i)));
    }
    out
}
