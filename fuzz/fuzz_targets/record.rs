//! Fuzz target `record`: see fuzz/README.md and `medvault::fuzzing::check_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_record(data);
});
