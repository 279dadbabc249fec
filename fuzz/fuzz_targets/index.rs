//! Fuzz target `index`: see fuzz/README.md and `medvault::fuzzing::check_index`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_index(data);
});
