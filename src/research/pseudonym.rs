//! Per-project pseudonyms and the sealed records of the research guard
//! (docs/FORMAT.md "Research project seed" and "Research objection").

use crate::crypto::{AeadKey, MacKey, SecretKey, derive_key};
use crate::error::{Error, Result, Structure};

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

/// The stored value of a project seed: `format || envelope` (docs/FORMAT.md "Research
/// project seed"); `storage_key` is the seed's key (`'s' || project_tag`).
pub(crate) fn seal_seed(
    vault_secret: &SecretKey,
    vault_id: &[u8; 16],
    storage_key: &[u8],
    seed: &SecretKey,
) -> Vec<u8> {
    let mut v = vec![PROJECT_KEY_FORMAT];
    v.extend_from_slice(&project_seed_key(vault_secret).seal(
        &project_seed_aad(vault_id, storage_key),
        seed.expose_secret(),
    ));
    v
}

/// Opens a stored project seed. [`Error::UnsupportedVersion`] for another format byte;
/// [`Error::Integrity`] ([`Structure::ResearchSeed`]) when it does not open (modified,
/// moved to another project's key, or from another vault).
pub(crate) fn open_seed(
    vault_secret: &SecretKey,
    vault_id: &[u8; 16],
    storage_key: &[u8],
    bytes: &[u8],
) -> Result<SecretKey> {
    let bad = || Error::integrity(Structure::ResearchSeed, "authentication failed");
    let (f, env) = bytes.split_first().ok_or_else(bad)?;
    if *f != PROJECT_KEY_FORMAT {
        return Err(Error::UnsupportedVersion {
            what: "research project seed",
            version: *f,
        });
    }
    let pt = project_seed_key(vault_secret)
        .open(&project_seed_aad(vault_id, storage_key), env)
        .ok_or_else(bad)?;
    let seed: [u8; 32] = pt.as_slice().try_into().map_err(|_| bad())?;
    Ok(SecretKey::from_bytes(seed))
}

/// The stored value of an objection marker: `format || envelope` sealing `0x01`
/// (docs/FORMAT.md "Research objection"); `storage_key` is `'o' || subject_tag`.
pub(crate) fn seal_objection(
    vault_secret: &SecretKey,
    vault_id: &[u8; 16],
    storage_key: &[u8],
) -> Vec<u8> {
    let mut v = vec![OBJECTION_FORMAT];
    v.extend_from_slice(
        &objection_key(vault_secret).seal(&objection_aad(vault_id, storage_key), &[1u8]),
    );
    v
}

/// Checks a stored objection marker. [`Error::UnsupportedVersion`] for another format
/// byte; [`Error::Integrity`] ([`Structure::ResearchObjection`]) when it does not open
/// (modified, moved to another subject, from another vault) or does not seal `0x01`.
pub(crate) fn open_objection(
    vault_secret: &SecretKey,
    vault_id: &[u8; 16],
    storage_key: &[u8],
    bytes: &[u8],
) -> Result<()> {
    let bad = || Error::integrity(Structure::ResearchObjection, "authentication failed");
    let (f, env) = bytes.split_first().ok_or_else(bad)?;
    if *f != OBJECTION_FORMAT {
        return Err(Error::UnsupportedVersion {
            what: "research objection",
            version: *f,
        });
    }
    let pt = objection_key(vault_secret)
        .open(&objection_aad(vault_id, storage_key), env)
        .ok_or_else(bad)?;
    if pt.as_slice() == [1u8] {
        Ok(())
    } else {
        Err(bad())
    }
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

/// Golden files of the research formats (docs/FORMAT.md "Research project seed",
/// "Research objection") and of the pseudonym function (a change would break every
/// project's cohort continuity), built with fixed keys and the seeded test CSPRNG.
/// `MEDVAULT_BLESS=1 cargo test --lib research_golden` rewrites them.
#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use crate::crypto::test_rng;

    const SECRET: [u8; 32] = [0x5a; 32];
    const VAULT_ID: [u8; 16] = [0x0f; 16];
    const SEED_KEY: &[u8] = b"e0123456789abcdef";
    const OBJECTION_KEY: &[u8] = b"ofedcba9876543210";

    fn golden_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
    }

    fn built() -> Vec<(&'static str, Vec<u8>)> {
        let _rng = test_rng::seed(0x7265_7365_6172_6368); // "research"
        let secret = SecretKey::from_bytes(SECRET);
        let seed = SecretKey::from_bytes([0x33; 32]);
        let names = ProjectPseudonyms::new(&seed, "P-GOLDEN");
        let mut text = String::new();
        for id in ["patient-1", "b0a2c1d3-0000-4000-8000-000000000001", ""] {
            text.push_str(&format!("id {id:?} {}\n", names.id(id)));
        }
        let r = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999957795";
        text.push_str(&format!("ref {r:?} {}\n", names.reference(r)));
        for s in ["patient-1", "patient-2"] {
            text.push_str(&format!("shift {s:?} {}\n", names.shift_days(s)));
        }
        vec![
            (
                "research_seed.bin",
                seal_seed(&secret, &VAULT_ID, SEED_KEY, &seed),
            ),
            (
                "research_objection.bin",
                seal_objection(&secret, &VAULT_ID, OBJECTION_KEY),
            ),
            ("research_pseudonyms.txt", text.into_bytes()),
        ]
    }

    /// The pseudonym as docs/FORMAT.md "Research project seed" writes it, computed here
    /// with the `hkdf` and `hmac` crates directly (RFC 5869 expand with an empty salt;
    /// RFC 2104 over length-framed parts).
    #[test]
    fn pseudonyms_follow_the_documented_construction() {
        use hmac::Mac;
        let seed = [0x33u8; 32];
        let project = "P-GOLDEN";
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, &seed);
        let mut key = [0u8; 32];
        let info = [
            b"medvault/v1/research-pseudonym".as_slice(),
            project.as_bytes(),
        ]
        .concat();
        hk.expand(&info, &mut key).unwrap();
        let names = ProjectPseudonyms::new(&SecretKey::from_bytes(seed), project);
        for id in ["patient-1", "x", ""] {
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            for part in [b"id".as_slice(), id.as_bytes()] {
                m.update(&(part.len() as u32).to_be_bytes());
                m.update(part);
            }
            let tag = m.finalize().into_bytes();
            let hex: String = tag[..16].iter().map(|b| format!("{b:02x}")).collect();
            let want = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            assert_eq!(names.id(id), want);
        }
    }

    #[test]
    fn research_golden_files_are_unchanged_and_decode() {
        let built = built();
        if std::env::var_os("MEDVAULT_BLESS").is_some_and(|v| v == "1") {
            for (name, bytes) in &built {
                std::fs::write(golden_dir().join(name), bytes).unwrap();
            }
            return;
        }
        for (name, bytes) in &built {
            let g = std::fs::read(golden_dir().join(name)).unwrap();
            assert!(
                g == *bytes,
                "{name} changed: an on-disk format or the pseudonym function changed; \
                 bump its version (docs/FORMAT.md) or regenerate with MEDVAULT_BLESS=1"
            );
        }
        // The committed files decode with the current decoders, and only in place.
        let secret = SecretKey::from_bytes(SECRET);
        let seed = std::fs::read(golden_dir().join("research_seed.bin")).unwrap();
        let opened = open_seed(&secret, &VAULT_ID, SEED_KEY, &seed).unwrap();
        assert_eq!(opened.expose_secret(), &[0x33; 32]);
        assert!(matches!(
            open_seed(&secret, &VAULT_ID, OBJECTION_KEY, &seed),
            Err(Error::Integrity {
                structure: Structure::ResearchSeed,
                ..
            })
        ));
        assert!(open_seed(&secret, &[0; 16], SEED_KEY, &seed).is_err());
        let obj = std::fs::read(golden_dir().join("research_objection.bin")).unwrap();
        open_objection(&secret, &VAULT_ID, OBJECTION_KEY, &obj).unwrap();
        assert!(matches!(
            open_objection(&secret, &VAULT_ID, SEED_KEY, &obj),
            Err(Error::Integrity {
                structure: Structure::ResearchObjection,
                ..
            })
        ));
        let mut v2 = obj.clone();
        v2[0] = 2;
        assert!(matches!(
            open_objection(&secret, &VAULT_ID, OBJECTION_KEY, &v2),
            Err(Error::UnsupportedVersion { .. })
        ));
        // Every flipped byte fails closed.
        for i in 0..seed.len() {
            let mut t = seed.clone();
            t[i] ^= 0x01;
            assert!(
                open_seed(&secret, &VAULT_ID, SEED_KEY, &t).is_err(),
                "byte {i}"
            );
        }
    }
}
