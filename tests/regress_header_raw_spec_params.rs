//! Guards: a header whose raw-key root spec carries non-zero Argon2id parameters or salt
//! must be refused (found by the `header` fuzz target: such bytes were accepted and
//! re-encoded differently, so one header had two encodings).

use medvault::testing::fuzz as fuzzing;

/// The minimized fuzz input (`fuzz/seeds/header/crash-raw-spec-with-kdf-params`): mode
/// byte 2 (the harness recomputes MAC and checksum under the fixture root key), then a
/// pending rotation to a raw key whose spec has a stray byte in its parameters.
const CRASH: &[u8] = include_bytes!("../fuzz/seeds/header/crash-raw-spec-with-kdf-params");

#[test]
fn raw_spec_with_kdf_parameters_is_refused() {
    // Panics (a property failure) if the header is accepted and re-encodes differently.
    fuzzing::check_header(CRASH);
}
