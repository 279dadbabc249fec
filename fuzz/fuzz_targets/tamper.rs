//! Fuzz target `tamper`: see fuzz/README.md and `medvault::fuzzing::check_tamper`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_tamper(data);
});
