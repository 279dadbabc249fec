//! The sealed policy record (docs/FORMAT.md "Access policy"): storage key `'g'`, value
//! `format (1) || u32 version (BE) || envelope`, the envelope AES-256-GCM under
//! `HKDF(vault secret, "medvault/v1/policy")` with AAD
//! `"medvault/v1/policy" || format || vault_id (16) || u32 version (BE)`, sealing the
//! policy's JSON form.

use std::sync::{Arc, RwLock};

use super::{MAX_POLICY_BYTES, Policy};
use crate::codec::Reader;
use crate::crypto::{AeadKey, SecretKey, derive_key};
use crate::error::{Error, Result, Structure};
use crate::keyspace;
use crate::storage::Storage;

/// Format version of the policy record.
pub(crate) const POLICY_FORMAT: u8 = 1;

fn policy_key(vault_secret: &SecretKey) -> AeadKey {
    AeadKey::new(&derive_key(vault_secret, &[b"medvault/v1/policy"]))
}

fn aad(vault_id: &[u8; 16], version: u32) -> Vec<u8> {
    let mut a = b"medvault/v1/policy".to_vec();
    a.push(POLICY_FORMAT);
    a.extend_from_slice(vault_id);
    a.extend_from_slice(&version.to_be_bytes());
    a
}

/// The stored value of policy `version`.
pub(crate) fn seal_policy(
    vault_secret: &SecretKey,
    vault_id: &[u8; 16],
    version: u32,
    policy: &Policy,
) -> Vec<u8> {
    let json = zeroize::Zeroizing::new(policy.to_json().into_bytes());
    let mut v = vec![POLICY_FORMAT];
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&policy_key(vault_secret).seal(&aad(vault_id, version), &json));
    v
}

/// Reads and opens the stored policy. `Ok(None)`: no policy installed.
/// [`Error::Integrity`] ([`Structure::Policy`]) when it does not open: modified, or
/// sealed by another vault, or its version number changed.
pub(crate) fn load_policy(
    storage: &dyn Storage,
    vault_secret: &SecretKey,
    vault_id: &[u8; 16],
) -> Result<Option<(u32, Policy)>> {
    let Some(bytes) = storage.get(keyspace::POLICY)? else {
        return Ok(None);
    };
    let mut r = Reader::new(&bytes, Structure::Policy);
    let f = r.u8()?;
    if f != POLICY_FORMAT {
        return Err(Error::UnsupportedVersion {
            what: "access policy",
            version: f,
        });
    }
    let version = r.u32()?;
    let env = r.bytes(r.remaining())?;
    if env.len() > MAX_POLICY_BYTES + 64 {
        return Err(Error::integrity(Structure::Policy, "too large"));
    }
    let pt = policy_key(vault_secret)
        .open(&aad(vault_id, version), env)
        .ok_or_else(|| {
            Error::integrity(
                Structure::Policy,
                "authentication failed (modified, or from another vault)",
            )
        })?;
    let text =
        std::str::from_utf8(&pt).map_err(|_| Error::integrity(Structure::Policy, "not UTF-8"))?;
    let policy: Policy = serde_json::from_str(text)
        .map_err(|_| Error::integrity(Structure::Policy, "malformed JSON"))?;
    Ok(Some((version, policy)))
}

/// The policy in force in an open vault: `(version, policy)`, `None` when none is
/// installed (every access allowed, as before policies existed: version 0).
#[derive(Default)]
pub(crate) struct PolicyCell(RwLock<Option<(u32, Arc<Policy>)>>);

impl PolicyCell {
    pub(crate) fn new(p: Option<(u32, Policy)>) -> Self {
        PolicyCell(RwLock::new(p.map(|(v, p)| (v, Arc::new(p)))))
    }

    /// The policy in force.
    pub(crate) fn get(&self) -> Option<(u32, Arc<Policy>)> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Its version (0: none).
    pub(crate) fn version(&self) -> u32 {
        self.get().map_or(0, |(v, _)| v)
    }

    pub(crate) fn set(&self, v: Option<(u32, Arc<Policy>)>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = v;
    }
}
