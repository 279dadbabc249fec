//! Fuzz target `checkpoint`: see fuzz/README.md and `medvault::fuzzing::check_checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_checkpoint(data);
});
