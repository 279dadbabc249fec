//! Fuzz target `log`: see fuzz/README.md and `medvault::fuzzing::check_log`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_log(data);
});
