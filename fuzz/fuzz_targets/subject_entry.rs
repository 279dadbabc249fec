//! Fuzz target `subject_entry`: see fuzz/README.md and `medvault::testing::fuzz::check_subject_entry`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::testing::fuzz::check_subject_entry(data);
});
