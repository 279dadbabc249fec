//! The vault header: format version, vault_id, how the root key is obtained (Argon2id
//! parameters and salt, or raw), a key-check value, and the keys the root key wraps: the
//! vault secret and the vault key-encryption key (KEK, which wraps every subject entry),
//! plus the next KEK while a KEK rotation is pending. Authenticated twice: an unkeyed
//! SHA-256 checksum tells corruption from a wrong key, and an HMAC under a root-derived
//! key authenticates the content once the key is known. Layout in docs/FORMAT.md "Header".
//!
//! A root-key rotation (or passphrase change) replaces the header in one atomic write,
//! rewrapping only these two or three keys: no header ever wraps one root key under
//! another, so no copy of a header taken at any instant gives an old root's holder the
//! new root (the rotation bridge of header version 1 did; issue 14).

use crate::codec::Reader;
use crate::crypto::kdf::SALT_LEN;
use crate::crypto::{
    AeadKey, KdfParams, KeySource, MacKey, RootKey, SecretKey, aead::OVERHEAD, ct_eq, derive_key,
    sha256,
};
use crate::error::{Error, InputKind, Result, Structure};

/// Header format version written by this build (2: root wraps the vault KEK; no root
/// bridge).
pub const HEADER_VERSION: u8 = 2;
const MAGIC: &[u8; 4] = b"MDVH";
/// Length of a wrapped 256-bit key: nonce (12) + key (32) + tag (16).
pub const WRAPPED_LEN: usize = 32 + OVERHEAD;

/// How one generation of the root key is obtained and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RootSpec {
    /// Argon2id parameters and salt, or `None` for a raw key.
    pub kdf: Option<(KdfParams, [u8; SALT_LEN])>,
    /// Root-key generation, incremented by each root-key rotation.
    pub generation: u32,
    /// HMAC(HKDF(root, "key-check"), vault_id || generation).
    pub key_check: [u8; 32],
}

/// One vault KEK generation as the header stores it: wrapped under the root key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WrappedKek {
    /// KEK generation (0 at create, +1 per KEK rotation); subject entries name it.
    pub generation: u32,
    /// The KEK wrapped under the root's wrapping key, AAD [`kek_aad`].
    pub wrapped: [u8; WRAPPED_LEN],
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub vault_id: crate::VaultId,
    pub root: RootSpec,
    /// The vault secret (from which pseudonym, log and index keys derive) wrapped under
    /// the root key.
    pub wrapped_secret: [u8; WRAPPED_LEN],
    /// The vault KEK in force.
    pub kek: WrappedKek,
    /// The next vault KEK while a KEK rotation is pending (subject entries are being
    /// rewrapped from `kek` to it).
    pub next_kek: Option<WrappedKek>,
}

/// One unwrapped vault KEK generation.
#[derive(Clone)]
pub(crate) struct Kek {
    pub generation: u32,
    pub key: SecretKey,
}

/// Keys recovered by unlocking a header.
pub(crate) struct Unlocked {
    /// The root key.
    pub root: RootKey,
    /// The vault KEK in force.
    pub kek: Kek,
    /// The next vault KEK, while a KEK rotation is pending.
    pub next_kek: Option<Kek>,
    /// The vault secret.
    pub vault_secret: SecretKey,
}

/// The AEAD key that wraps keys under a root key: HKDF(root, "medvault/v1/kek").
pub(crate) fn wrapping_key(root: &RootKey) -> AeadKey {
    AeadKey::new(&derive_key(root.secret(), &[b"medvault/v1/kek"]))
}

fn key_check(root: &RootKey, vault_id: &crate::VaultId, generation: u32) -> [u8; 32] {
    MacKey::new(&derive_key(root.secret(), &[b"medvault/v1/key-check"]))
        .mac_parts(&[vault_id.as_bytes(), &generation.to_be_bytes()])
}

/// The key of the header MAC: HKDF(root, "medvault/v1/header-mac").
pub(crate) fn header_mac_key(root: &RootKey) -> MacKey {
    MacKey::new(&derive_key(root.secret(), &[b"medvault/v1/header-mac"]))
}

/// Wraps a 256-bit key under `kek` with the given AAD; returns the fixed-size envelope.
pub(crate) fn wrap_key(kek: &AeadKey, aad: &[u8], key: &SecretKey) -> [u8; WRAPPED_LEN] {
    let env = kek.seal(aad, key.expose_secret());
    let mut out = [0u8; WRAPPED_LEN];
    out.copy_from_slice(&env);
    out
}

/// Unwraps a key wrapped by [`wrap_key`]; `None` when the tag does not verify.
pub(crate) fn unwrap_key(kek: &AeadKey, aad: &[u8], wrapped: &[u8]) -> Option<SecretKey> {
    let pt = kek.open(aad, wrapped)?;
    let arr: [u8; 32] = pt.as_slice().try_into().ok()?;
    Some(SecretKey::from_bytes(arr))
}

fn secret_aad(vault_id: &crate::VaultId, generation: u32) -> Vec<u8> {
    let mut aad = b"medvault/v1/vault-secret".to_vec();
    aad.push(HEADER_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}

/// AAD of a vault KEK wrapped under root generation `root_gen`:
/// `"medvault/v1/vault-kek" || u8 header version || vault_id || u32 root_gen || u32 kek_gen`.
fn kek_aad(vault_id: &crate::VaultId, root_gen: u32, kek_gen: u32) -> Vec<u8> {
    let mut aad = b"medvault/v1/vault-kek".to_vec();
    aad.push(HEADER_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(&root_gen.to_be_bytes());
    aad.extend_from_slice(&kek_gen.to_be_bytes());
    aad
}

/// Derives the root key for `spec` from `source`. A passphrase for a raw-key vault (or
/// the reverse) is a wrong key.
fn derive_root(spec: &RootSpec, source: &KeySource, max_work: u64) -> Result<RootKey> {
    match (&spec.kdf, source) {
        (Some((params, salt)), KeySource::Passphrase(p)) => {
            params.check_within(max_work)?;
            params.derive(p, salt).map(RootKey::from_secret)
        }
        (None, KeySource::Raw(k)) => Ok(k.clone()),
        _ => Err(Error::WrongKey),
    }
}

impl RootSpec {
    /// A new spec for `source`: fresh salt, the given KDF parameters for a passphrase.
    /// Returns the spec and the root key.
    pub fn new(
        source: &KeySource,
        kdf: KdfParams,
        vault_id: &crate::VaultId,
        generation: u32,
    ) -> Result<(RootSpec, RootKey)> {
        let (kdf, root) = match source {
            KeySource::Passphrase(p) => {
                let mut salt = [0u8; SALT_LEN];
                crate::crypto::random_bytes(&mut salt);
                let root = RootKey::from_secret(kdf.derive(p, &salt)?);
                (Some((kdf, salt)), root)
            }
            KeySource::Raw(k) => (None, k.clone()),
        };
        let key_check = key_check(&root, vault_id, generation);
        Ok((
            RootSpec {
                kdf,
                generation,
                key_check,
            },
            root,
        ))
    }

    fn matches(&self, root: &RootKey, vault_id: &crate::VaultId) -> bool {
        ct_eq(&key_check(root, vault_id, self.generation), &self.key_check)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match &self.kdf {
            Some((p, salt)) => {
                out.push(1);
                out.extend_from_slice(&p.memory_kib.to_be_bytes());
                out.extend_from_slice(&p.iterations.to_be_bytes());
                out.extend_from_slice(&p.lanes.to_be_bytes());
                out.extend_from_slice(salt);
            }
            None => {
                out.push(0);
                out.extend_from_slice(&[0u8; 12 + SALT_LEN]);
            }
        }
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.key_check);
    }

    fn decode(r: &mut Reader<'_>) -> Result<RootSpec> {
        let kind = r.u8()?;
        let memory_kib = r.u32()?;
        let iterations = r.u32()?;
        let lanes = r.u32()?;
        let salt: [u8; SALT_LEN] = r.array()?;
        let kdf = match kind {
            0 => {
                // A raw-key spec has no parameters: anything but zeros would give one
                // header two encodings (found by the `header` fuzz target).
                if memory_kib != 0 || iterations != 0 || lanes != 0 || salt != [0; SALT_LEN] {
                    return Err(Error::integrity(
                        Structure::Header,
                        "raw-key spec carries key-derivation parameters",
                    ));
                }
                None
            }
            1 => Some((
                KdfParams {
                    memory_kib,
                    iterations,
                    lanes,
                },
                salt,
            )),
            _ => {
                return Err(Error::integrity(
                    Structure::Header,
                    "unknown key-derivation kind",
                ));
            }
        };
        Ok(RootSpec {
            kdf,
            generation: r.u32()?,
            key_check: r.array()?,
        })
    }
}

fn wrap_kek(root: &RootKey, vault_id: &crate::VaultId, root_gen: u32, kek: &Kek) -> WrappedKek {
    WrappedKek {
        generation: kek.generation,
        wrapped: wrap_key(
            &wrapping_key(root),
            &kek_aad(vault_id, root_gen, kek.generation),
            &kek.key,
        ),
    }
}

fn unwrap_kek(
    root: &AeadKey,
    vault_id: &crate::VaultId,
    root_gen: u32,
    w: &WrappedKek,
) -> Result<Kek> {
    let key = unwrap_key(root, &kek_aad(vault_id, root_gen, w.generation), &w.wrapped)
        .ok_or_else(|| Error::integrity(Structure::Header, "wrapped vault key-encryption key"))?;
    Ok(Kek {
        generation: w.generation,
        key,
    })
}

impl Header {
    /// Creates a header for a new vault (root and KEK generation 0, a random vault
    /// secret and KEK). Returns it with the unlocked keys.
    pub fn create(source: &KeySource, kdf: KdfParams) -> Result<(Header, Unlocked)> {
        let mut id = [0u8; 16];
        crate::crypto::random_bytes(&mut id);
        let vault_id = crate::VaultId::from(id);
        let (root_spec, root) = RootSpec::new(source, kdf, &vault_id, 0)?;
        let vault_secret = SecretKey::random();
        let kek = Kek {
            generation: 0,
            key: SecretKey::random(),
        };
        let wrapped_secret = wrap_key(
            &wrapping_key(&root),
            &secret_aad(&vault_id, 0),
            &vault_secret,
        );
        Ok((
            Header {
                vault_id,
                root: root_spec,
                wrapped_secret,
                kek: wrap_kek(&root, &vault_id, 0, &kek),
                next_kek: None,
            },
            Unlocked {
                root,
                kek,
                next_kek: None,
                vault_secret,
            },
        ))
    }

    /// A root-key rotation in one step: a header for a new root (generation + 1) from
    /// `source`, wrapping the same vault secret and KEK(s), and the new root key. O(1):
    /// two or three keys are rewrapped whatever the vault's size. Fails with
    /// [`Error::InvalidInput`] when the generation is exhausted, or when `keks` do not
    /// match the header's generations.
    pub fn with_new_root(
        &self,
        source: &KeySource,
        kdf: KdfParams,
        kek: &Kek,
        next_kek: Option<&Kek>,
        vault_secret: &SecretKey,
    ) -> Result<(Header, RootKey)> {
        let next_gen = self.root.generation.checked_add(1).ok_or_else(|| {
            Error::invalid(InputKind::KeyOperation, "root-key generation exhausted")
        })?;
        if kek.generation != self.kek.generation
            || next_kek.map(|k| k.generation) != self.next_kek.as_ref().map(|k| k.generation)
        {
            return Err(Error::invalid(
                InputKind::KeyOperation,
                "key-encryption keys do not match the header",
            ));
        }
        let vid = self.vault_id;
        let (spec, root) = RootSpec::new(source, kdf, &vid, next_gen)?;
        let h = Header {
            vault_id: vid,
            root: spec,
            wrapped_secret: wrap_key(
                &wrapping_key(&root),
                &secret_aad(&vid, next_gen),
                vault_secret,
            ),
            kek: wrap_kek(&root, &vid, next_gen, kek),
            next_kek: next_kek.map(|k| wrap_kek(&root, &vid, next_gen, k)),
        };
        Ok((h, root))
    }

    /// Starts a KEK rotation: the header with `next` (generation = current + 1) wrapped
    /// under `root` beside the current KEK. Fails with [`Error::InvalidInput`] when one is
    /// already pending or the generation does not follow.
    pub fn with_next_kek(&self, root: &RootKey, next: &Kek) -> Result<Header> {
        if self.next_kek.is_some() {
            return Err(Error::invalid(
                InputKind::KeyOperation,
                "a key-encryption-key rotation is already pending",
            ));
        }
        if Some(next.generation) != self.kek.generation.checked_add(1) {
            return Err(Error::invalid(
                InputKind::KeyOperation,
                "key-encryption-key generation exhausted",
            ));
        }
        let mut h = self.clone();
        h.next_kek = Some(wrap_kek(root, &self.vault_id, self.root.generation, next));
        Ok(h)
    }

    /// Finishes a KEK rotation: the next KEK becomes the one in force and the old one is
    /// dropped from the header. Both are wrapped under the same root with their
    /// generation in the AAD, so the wrapped bytes move as they are.
    pub fn with_next_kek_promoted(&self) -> Result<Header> {
        let next = self.next_kek.clone().ok_or_else(|| {
            Error::invalid(
                InputKind::KeyOperation,
                "no key-encryption-key rotation is pending",
            )
        })?;
        let mut h = self.clone();
        h.kek = next;
        h.next_kek = None;
        Ok(h)
    }

    /// Serializes the header, MACed under `root`.
    pub fn encode(&self, root: &RootKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        out.push(HEADER_VERSION);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.vault_id.as_bytes());
        self.root.encode(&mut out);
        out.extend_from_slice(&self.wrapped_secret);
        out.extend_from_slice(&self.kek.generation.to_be_bytes());
        out.extend_from_slice(&self.kek.wrapped);
        match &self.next_kek {
            None => out.push(0),
            Some(k) => {
                out.push(1);
                out.extend_from_slice(&k.generation.to_be_bytes());
                out.extend_from_slice(&k.wrapped);
            }
        }
        let mac = header_mac_key(root).mac_raw(&[&out]);
        out.extend_from_slice(&mac);
        let sum = sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checksums a header without any key. Fails with
    /// [`Error::UnsupportedVersion`], or [`Error::Integrity`] for a bad checksum, magic,
    /// KEK generations out of order, or truncation. Also returns the length of the MACed
    /// prefix.
    pub fn decode(bytes: &[u8]) -> Result<(Header, usize)> {
        let version = *bytes
            .first()
            .ok_or_else(|| Error::integrity(Structure::Header, "empty"))?;
        if bytes.len() < 64 + 1 + MAGIC.len() {
            return Err(Error::integrity(Structure::Header, "truncated"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if !ct_eq(&sha256(&[body]), sum) {
            return Err(Error::integrity(Structure::Header, "checksum mismatch"));
        }
        if version != HEADER_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "header",
                version,
            });
        }
        let mac_at = body.len() - 32;
        let mut r = Reader::new(&body[..mac_at], Structure::Header);
        r.u8()?;
        if r.bytes(4)? != MAGIC {
            return Err(Error::integrity(Structure::Header, "bad magic"));
        }
        let vault_id = crate::VaultId::from(r.array::<16>()?);
        let root = RootSpec::decode(&mut r)?;
        let wrapped_secret = r.array()?;
        let kek = WrappedKek {
            generation: r.u32()?,
            wrapped: r.array()?,
        };
        let next_kek = match r.u8()? {
            0 => None,
            1 => {
                let k = WrappedKek {
                    generation: r.u32()?,
                    wrapped: r.array()?,
                };
                if Some(k.generation) != kek.generation.checked_add(1) {
                    return Err(Error::integrity(
                        Structure::Header,
                        "next key-encryption key does not follow the current one",
                    ));
                }
                Some(k)
            }
            _ => return Err(Error::integrity(Structure::Header, "bad next-KEK flag")),
        };
        r.finish()?;
        Ok((
            Header {
                vault_id,
                root,
                wrapped_secret,
                kek,
                next_kek,
            },
            mac_at,
        ))
    }

    /// Decodes `bytes` and unlocks them with `source`: checksum ([`Error::Integrity`]),
    /// KDF caps ([`Error::ExcessiveWork`]), key check ([`Error::WrongKey`]), then the
    /// header MAC and the wrapped keys ([`Error::Integrity`]).
    #[cfg(any(test, feature = "testing"))]
    pub fn unlock(bytes: &[u8], source: &KeySource) -> Result<(Header, Unlocked)> {
        Header::unlock_within(bytes, source, crate::crypto::DEFAULT_MAX_KDF_WORK)
    }

    /// [`Header::unlock`] with a budget on the Argon2id work (KiB-passes, see
    /// [`KdfParams::work`]): a header asking for more fails with
    /// [`Error::ExcessiveWork`] before any derivation.
    pub fn unlock_within(
        bytes: &[u8],
        source: &KeySource,
        max_work: u64,
    ) -> Result<(Header, Unlocked)> {
        let (h, mac_at) = Header::decode(bytes)?;
        let vid = h.vault_id;
        let root = derive_root(&h.root, source, max_work)?;
        if !h.root.matches(&root, &vid) {
            return Err(Error::WrongKey);
        }
        if !header_mac_key(&root).verify_raw(&[&bytes[..mac_at]], &bytes[mac_at..mac_at + 32]) {
            return Err(Error::integrity(Structure::Header, "MAC mismatch"));
        }
        let wk = wrapping_key(&root);
        let g = h.root.generation;
        let vault_secret = unwrap_key(&wk, &secret_aad(&vid, g), &h.wrapped_secret)
            .ok_or_else(|| Error::integrity(Structure::Header, "wrapped vault secret"))?;
        let kek = unwrap_kek(&wk, &vid, g, &h.kek)?;
        let next_kek = match &h.next_kek {
            Some(w) => Some(unwrap_kek(&wk, &vid, g, w)?),
            None => None,
        };
        Ok((
            h,
            Unlocked {
                root,
                kek,
                next_kek,
                vault_secret,
            },
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    fn pw(s: &str) -> KeySource {
        KeySource::passphrase(s)
    }

    #[test]
    fn create_unlock_wrong_key_and_flips() {
        let kdf = crate::danger::insecure_kdf_params();
        let (h, u) = Header::create(&pw("right"), kdf).unwrap();
        let bytes = h.encode(&u.root);
        let (h2, u2) = Header::unlock(&bytes, &pw("right")).unwrap();
        assert_eq!(h, h2);
        assert_eq!(
            u.vault_secret.expose_secret(),
            u2.vault_secret.expose_secret()
        );
        assert!(matches!(
            Header::unlock(&bytes, &pw("wrong")),
            Err(Error::WrongKey)
        ));
        assert!(matches!(
            Header::unlock(&bytes, &KeySource::raw([0; 32])),
            Err(Error::WrongKey)
        ));
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            match Header::unlock(&t, &pw("right")) {
                Err(Error::Integrity { .. }) => {}
                other => panic!("flip at {i}: {:?}", other.map(|_| ())),
            }
        }
        for n in 0..bytes.len() {
            assert!(Header::unlock(&bytes[..n], &pw("right")).is_err());
        }
    }

    /// Re-MACs and re-checksums a tampered header under `root`, as only a holder of the
    /// root key could.
    fn reseal(bytes: &mut [u8], root: &RootKey) {
        let n = bytes.len();
        let mac = header_mac_key(root).mac_raw(&[&bytes[..n - 64]]);
        bytes[n - 64..n - 32].copy_from_slice(&mac);
        let sum = sha256(&[&bytes[..n - 32]]);
        bytes[n - 32..].copy_from_slice(&sum);
    }

    #[test]
    fn raw_spec_with_parameters_is_refused() {
        let (h, u) = Header::create(&KeySource::raw([9; 32]), KdfParams::default()).unwrap();
        let bytes = h.encode(&u.root);
        // version (1) + magic (4) + vault_id (16), then kind (1) and 12 + 16 zero bytes.
        for at in 22..22 + 12 + SALT_LEN {
            let mut t = bytes.clone();
            t[at] = 1;
            reseal(&mut t, &u.root);
            match Header::unlock(&t, &KeySource::raw([9; 32])) {
                Err(Error::Integrity { .. }) => {}
                other => panic!("byte {at}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn root_rotation_rewraps_the_same_keks_and_the_old_key_opens_nothing() {
        let kdf = crate::danger::insecure_kdf_params();
        let (h, u) = Header::create(&pw("old"), kdf).unwrap();
        let next = Kek {
            generation: 1,
            key: SecretKey::random(),
        };
        let h = h.with_next_kek(&u.root, &next).unwrap();
        let (h2, new_root) = h
            .with_new_root(
                &KeySource::raw([7; 32]),
                kdf,
                &u.kek,
                Some(&next),
                &u.vault_secret,
            )
            .unwrap();
        let bytes = h2.encode(&new_root);
        assert!(matches!(
            Header::unlock(&bytes, &pw("old")),
            Err(Error::WrongKey)
        ));
        let (d, c) = Header::unlock(&bytes, &KeySource::raw([7; 32])).unwrap();
        assert_eq!(d.root.generation, 1);
        assert_eq!(
            c.vault_secret.expose_secret(),
            u.vault_secret.expose_secret()
        );
        assert_eq!(c.kek.key.expose_secret(), u.kek.key.expose_secret());
        assert_eq!(
            c.next_kek.unwrap().key.expose_secret(),
            next.key.expose_secret()
        );
        // Promotion moves the next KEK into force; the old one is gone from the header.
        let p = d.with_next_kek_promoted().unwrap();
        let (_, e) = Header::unlock(&p.encode(&new_root), &KeySource::raw([7; 32])).unwrap();
        assert_eq!(e.kek.generation, 1);
        assert_eq!(e.kek.key.expose_secret(), next.key.expose_secret());
        assert!(e.next_kek.is_none());
    }
}
