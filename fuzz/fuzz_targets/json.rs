//! Fuzz target `json`: any bytes through `medvault::json::JsonText::parse`, checked
//! against serde_json (verdict and meaning) by `medvault::json::testing::check`. Seeds:
//! fuzz/seeds/json/ (replayed by tests/json_exact.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    medvault::json::testing::check(data);
});
