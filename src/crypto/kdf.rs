//! Argon2id passphrase stretching (RFC 9106) with caps on attacker-chosen work.
//!
//! The parameters are stored in the vault header; a header is read before it is
//! authenticated, so parameters from disk are capped here: a tampered file cannot make
//! `open` allocate unbounded memory or spin for hours.

use zeroize::Zeroizing;

use super::{KEY_LEN, Passphrase, SecretKey};
use crate::error::{Error, InputKind, Result};

/// Salt length in bytes (RFC 9106 section 3.1 recommends 128 bits).
pub const SALT_LEN: usize = 16;
/// Cap on memory read from disk: 4 GiB, in KiB.
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Cap on iterations read from disk.
pub const MAX_ITERATIONS: u32 = 64;
/// Cap on lanes (parallelism) read from disk.
pub const MAX_LANES: u32 = 64;
/// Default budget on the Argon2id work a header may ask for, in KiB-passes
/// ([`KdfParams::work`]): four times the default cost (64 MiB x 3 passes), e.g.
/// 256 MiB x 3 or 64 MiB x 12. A header asking for more is refused with
/// [`Error::ExcessiveWork`] before any work, unless the caller raised the budget
/// (`VaultOptions::max_kdf_work`), as age bounds the scrypt work factor it accepts.
pub const DEFAULT_MAX_KDF_WORK: u64 = 4 * 64 * 1024 * 3;
/// Floor on memory: 8 KiB per lane is Argon2's own minimum.
pub const MIN_MEMORY_KIB: u32 = 8;

/// Argon2id cost parameters (RFC 9106 section 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory size `m` in KiB.
    pub memory_kib: u32,
    /// Number of passes `t`.
    pub iterations: u32,
    /// Degree of parallelism `p` (lanes).
    pub lanes: u32,
}

impl Default for KdfParams {
    /// RFC 9106 section 4, second recommended option: m = 64 MiB, t = 3, p = 4.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            lanes: 4,
        }
    }
}

impl KdfParams {
    /// The work these parameters cost, in KiB-passes: `memory_kib x iterations`. Lanes
    /// split the memory between them (RFC 9106 section 3.2) and do not add blocks to
    /// compute, so they do not count (the default, 64 MiB x 3, is 196,608).
    pub fn work(&self) -> u64 {
        u64::from(self.memory_kib) * u64::from(self.iterations)
    }

    /// [`KdfParams::check`], then the work against `max_work` (KiB-passes):
    /// [`Error::ExcessiveWork`] when [`KdfParams::work`] exceeds it.
    pub fn check_within(&self, max_work: u64) -> Result<()> {
        self.check()?;
        if self.work() > max_work {
            return Err(Error::ExcessiveWork(
                "Argon2id work (memory x passes) above the budget; raise VaultOptions::max_kdf_work to open this vault",
            ));
        }
        Ok(())
    }

    /// Checks the parameters against the caps. Fails with [`Error::ExcessiveWork`] when
    /// one exceeds its cap and [`Error::InvalidInput`] when one is below Argon2's minimum.
    pub fn check(&self) -> Result<()> {
        if self.memory_kib > MAX_MEMORY_KIB {
            return Err(Error::ExcessiveWork("memory above 4 GiB"));
        }
        if self.iterations > MAX_ITERATIONS {
            return Err(Error::ExcessiveWork("more than 64 iterations"));
        }
        if self.lanes > MAX_LANES {
            return Err(Error::ExcessiveWork("more than 64 lanes"));
        }
        if self.iterations == 0 || self.lanes == 0 || self.memory_kib < MIN_MEMORY_KIB * self.lanes
        {
            return Err(Error::invalid(
                InputKind::KdfParams,
                "Argon2id parameters below the minimum (t >= 1, p >= 1, m >= 8*p KiB)",
            ));
        }
        Ok(())
    }

    /// Derives a 256-bit root key from `passphrase` and `salt` with Argon2id v1.3.
    /// Checks the caps first.
    pub fn derive(&self, passphrase: &Passphrase, salt: &[u8; SALT_LEN]) -> Result<SecretKey> {
        self.check()?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.lanes, Some(KEY_LEN))
                .map_err(|_| {
                    Error::invalid(InputKind::KdfParams, "Argon2id parameters rejected")
                })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase.expose_secret(), salt, out.as_mut())
            .map_err(|_| {
                Error::invalid(
                    InputKind::KdfParams,
                    "Argon2id rejected the passphrase or salt",
                )
            })?;
        Ok(SecretKey::from_bytes(*out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_excessive_work() {
        let p = KdfParams {
            memory_kib: MAX_MEMORY_KIB + 1,
            iterations: 1,
            lanes: 1,
        };
        assert!(matches!(p.check(), Err(Error::ExcessiveWork(_))));
        let p = KdfParams {
            memory_kib: 64,
            iterations: 65,
            lanes: 1,
        };
        assert!(matches!(p.check(), Err(Error::ExcessiveWork(_))));
        let p = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            lanes: 65,
        };
        assert!(matches!(p.check(), Err(Error::ExcessiveWork(_))));
        let p = KdfParams {
            memory_kib: 64,
            iterations: 0,
            lanes: 1,
        };
        assert!(matches!(p.check(), Err(Error::InvalidInput(_))));
        assert!(KdfParams::default().check().is_ok());
    }

    #[test]
    fn derivation_is_deterministic_and_salted() {
        let p = crate::danger::insecure_kdf_params();
        let pw = Passphrase::new("correct horse");
        let a = p.derive(&pw, &[1; SALT_LEN]).unwrap();
        let b = p.derive(&pw, &[1; SALT_LEN]).unwrap();
        let c = p.derive(&pw, &[2; SALT_LEN]).unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), c.expose_secret());
    }
}
