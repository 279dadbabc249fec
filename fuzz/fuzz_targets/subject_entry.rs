//! Fuzz target `subject_entry`: see fuzz/README.md and `medvault::fuzzing::check_subject_entry`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::fuzzing::check_subject_entry(data);
});
