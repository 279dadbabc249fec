//! Fuzz target `anchor`: see fuzz/README.md and `medvault::testing::fuzz::check_anchor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::testing::fuzz::check_anchor(data);
});
