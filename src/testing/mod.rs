//! Test, fuzz and bench support: compiled only with the `testing` cargo feature.
//!
//! **Not API.** Hidden from the docs, outside every semver promise, free to change or
//! vanish in any release, and never built into an application (the feature is off by
//! default; only `fuzz/`, `medvault-testkit` and this crate's own tests and benches turn
//! it on). It reaches crate-private decoders and skips the access log and the keyring,
//! which is exactly what a vault must never do.
//!
//! * [`fuzz`]: the decoder fuzz targets' checks and seeds;
//! * [`bench`]: the record codec on its own, for `benches/`;
//! * [`rogue`]: a key holder rewriting logged history (issue 18's acceptance test).

pub mod bench;
/// The crypto primitives, for `benches/primitives.rs` only (crate-private otherwise).
pub mod crypto {
    pub use crate::crypto::{AeadKey, MacKey, SecretKey};
}
pub mod fuzz;
pub mod rogue;
