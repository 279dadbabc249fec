//! Fuzz target `log`: see fuzz/README.md and `medvault::testing::fuzz::check_log`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::testing::fuzz::check_log(data);
});
