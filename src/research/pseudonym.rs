//! Per-project pseudonyms and the sealed records of the research guard
//! (docs/FORMAT.md "Research project seed" and "Research objection").

use crate::crypto::{AeadKey, MacKey, SecretKey, derive_key};

/// Format version of a stored project seed.
pub(crate) const PROJECT_KEY_FORMAT: u8 = 1;
/// Format version of a stored objection marker.
pub(crate) const OBJECTION_FORMAT: u8 = 1;

/// The key sealing project seeds: `HKDF(vault secret, "medvault/v1/research-seed")`.
pub(crate) fn project_seed_key(vault_secret: &SecretKey) -> AeadKey {
    AeadKey::new(&derive_key(vault_secret, &[b"medvault/v1/research-seed"]))
}

/// AAD of a project seed: label, format, vault id, storage key of the seed.
pub(crate) fn project_seed_aad(vault_id: &[u8; 16], storage_key: &[u8]) -> Vec<u8> {
    let mut a = b"medvault/v1/research-seed".to_vec();
    a.push(PROJECT_KEY_FORMAT);
    a.extend_from_slice(vault_id);
    a.extend_from_slice(storage_key);
    a
}

/// The key sealing objection markers: `HKDF(vault secret, "medvault/v1/research-objection")`.
pub(crate) fn objection_key(vault_secret: &SecretKey) -> AeadKey {
    AeadKey::new(&derive_key(
        vault_secret,
        &[b"medvault/v1/research-objection"],
    ))
}

/// AAD of an objection marker: label, format, vault id, storage key of the marker.
pub(crate) fn objection_aad(vault_id: &[u8; 16], storage_key: &[u8]) -> Vec<u8> {
    let mut a = b"medvault/v1/research-objection".to_vec();
    a.push(OBJECTION_FORMAT);
    a.extend_from_slice(vault_id);
    a.extend_from_slice(storage_key);
    a
}

/// The pseudonym function of one research project: HMAC-SHA-256 (RFC 2104) keyed with
/// `HKDF-SHA256(IKM = project seed, info = "medvault/v1/research-pseudonym" || project)`
/// (RFC 5869). The seed is 32 random bytes sealed in the vault; without it the mapping
/// cannot be recomputed. The key is zeroized on drop; `Debug` shows nothing of it.
pub struct ProjectPseudonyms {
    mac: MacKey,
}

impl std::fmt::Debug for ProjectPseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectPseudonyms([redacted])")
    }
}

impl ProjectPseudonyms {
    /// The pseudonym function of `project` from its 32-byte seed.
    pub(crate) fn new(seed: &SecretKey, project: &str) -> Self {
        let key = derive_key(
            seed,
            &[b"medvault/v1/research-pseudonym", project.as_bytes()],
        );
        ProjectPseudonyms {
            mac: MacKey::new(&key),
        }
    }

    /// The pseudonym of logical id `id` (a patient id, a resource id, a reference):
    /// the first 128 bits of `HMAC(key, len || "id" || len || id)`, formatted as a
    /// lower-case UUID-shaped string (8-4-4-4-12 hex digits), a valid FHIR `id`.
    pub fn id(&self, id: &str) -> String {
        self.tagged(b"id", id)
    }

    /// The pseudonym of a reference that names no plain id (e.g. a conditional reference
    /// `Practitioner?identifier=...`): as [`ProjectPseudonyms::id`] with label `ref`.
    pub fn reference(&self, reference: &str) -> String {
        self.tagged(b"ref", reference)
    }

    /// The date shift of patient `subject` in this project, in days, -182 to +182: the
    /// first 8 bytes of `HMAC(key, len || "date-shift" || len || subject)` as a
    /// big-endian integer, modulo 365, minus 182.
    pub fn shift_days(&self, subject: &str) -> i64 {
        let m = self.mac.mac_parts(&[b"date-shift", subject.as_bytes()]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&m[..8]);
        (u64::from_be_bytes(b) % 365) as i64 - 182
    }

    fn tagged(&self, label: &[u8], id: &str) -> String {
        let m = self.mac.mac_parts(&[label, id.as_bytes()]);
        let h = crate::audit::hex(&m[..16]);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}
