//! Fuzz target `tamper`: see fuzz/README.md and `medvault_testkit::check_tamper`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault_testkit::check_tamper(data);
});
