//! Fuzz target `segment`: see fuzz/README.md and `medvault::testing::fuzz::check_segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::testing::fuzz::check_segment(data);
});
