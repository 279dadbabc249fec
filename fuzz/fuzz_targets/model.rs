//! Fuzz target `model`: see fuzz/README.md and `medvault::fuzzing::check_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_model(data);
});
