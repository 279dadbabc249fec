//! Fuzz target `header`: see fuzz/README.md and `medvault::fuzzing::check_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_header(data);
});
