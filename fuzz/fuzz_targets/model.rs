//! Fuzz target `model`: see fuzz/README.md and `medvault_testkit::check_model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault_testkit::check_model(data);
});
