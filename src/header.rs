//! The vault header: format version, vault_id, how the root key is obtained (Argon2id
//! parameters and salt, or raw), a key-check value, the vault secret wrapped under the
//! root key, and an optional pending root-key rotation. Authenticated twice: an unkeyed
//! SHA-256 checksum tells corruption from a wrong key, and an HMAC under a root-derived
//! key authenticates the content once the key is known. Layout in docs/FORMAT.md "Header".

use crate::codec::Reader;
use crate::crypto::kdf::SALT_LEN;
use crate::crypto::{
    AeadKey, KdfParams, KeySource, MacKey, RootKey, SecretKey, aead::OVERHEAD, ct_eq, derive_key,
    sha256,
};
use crate::error::{Error, InputKind, Result, Structure};

/// Header format version written by this build.
pub const HEADER_VERSION: u8 = 1;
const MAGIC: &[u8; 4] = b"MDVH";
/// Length of a wrapped 256-bit key: nonce (12) + key (32) + tag (16).
pub const WRAPPED_LEN: usize = 32 + OVERHEAD;
const ROOT_SPEC_LEN: usize = 1 + 12 + SALT_LEN + 4 + 32;

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

/// A root-key rotation in progress: the next root and two bridges, so that either the
/// old or the new root key opens the vault until the rotation completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingRoot {
    pub next: RootSpec,
    /// The next root key wrapped under the current one.
    pub new_under_old: [u8; WRAPPED_LEN],
    /// The current root key wrapped under the next one.
    pub old_under_new: [u8; WRAPPED_LEN],
}

/// The decoded header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub vault_id: crate::VaultId,
    pub root: RootSpec,
    /// The vault secret (from which pseudonym, log and index keys derive) wrapped under
    /// the current root key.
    pub wrapped_secret: [u8; WRAPPED_LEN],
    pub pending: Option<PendingRoot>,
}

/// Keys recovered by unlocking a header.
pub(crate) struct Unlocked {
    /// The current root key.
    pub root: RootKey,
    /// The next root key, when a rotation is pending.
    pub next_root: Option<RootKey>,
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

fn bridge_aad(vault_id: &crate::VaultId, from: u32, to: u32) -> Vec<u8> {
    let mut aad = b"medvault/v1/root-bridge".to_vec();
    aad.push(HEADER_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(&from.to_be_bytes());
    aad.extend_from_slice(&to.to_be_bytes());
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

impl Header {
    /// Creates a header for a new vault. Returns it with the unlocked keys.
    pub fn create(source: &KeySource, kdf: KdfParams) -> Result<(Header, Unlocked)> {
        let mut id = [0u8; 16];
        crate::crypto::random_bytes(&mut id);
        let vault_id = crate::VaultId::from(id);
        let (root_spec, root) = RootSpec::new(source, kdf, &vault_id, 0)?;
        let vault_secret = SecretKey::random();
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
                pending: None,
            },
            Unlocked {
                root,
                next_root: None,
                vault_secret,
            },
        ))
    }

    /// Starts a root-key rotation: returns a header with a pending next root (bridges
    /// both ways) and the next root key.
    pub fn begin_rotation(
        &self,
        current: &RootKey,
        source: &KeySource,
        kdf: KdfParams,
    ) -> Result<(Header, RootKey)> {
        let g = self.root.generation;
        let next_gen = g.checked_add(1).ok_or_else(|| {
            Error::invalid(InputKind::KeyOperation, "root-key generation exhausted")
        })?;
        let (next, next_root) = RootSpec::new(source, kdf, &self.vault_id, next_gen)?;
        let new_under_old = wrap_key(
            &wrapping_key(current),
            &bridge_aad(&self.vault_id, g, next_gen),
            next_root.secret(),
        );
        let old_under_new = wrap_key(
            &wrapping_key(&next_root),
            &bridge_aad(&self.vault_id, next_gen, g),
            current.secret(),
        );
        let mut h = self.clone();
        h.pending = Some(PendingRoot {
            next,
            new_under_old,
            old_under_new,
        });
        Ok((h, next_root))
    }

    /// Completes a root-key rotation: the pending root becomes current and the vault
    /// secret is rewrapped under it.
    pub fn finish_rotation(&self, next_root: &RootKey, vault_secret: &SecretKey) -> Result<Header> {
        let p = self.pending.as_ref().ok_or_else(|| {
            Error::invalid(InputKind::KeyOperation, "no root-key rotation is pending")
        })?;
        let wrapped_secret = wrap_key(
            &wrapping_key(next_root),
            &secret_aad(&self.vault_id, p.next.generation),
            vault_secret,
        );
        Ok(Header {
            vault_id: self.vault_id,
            root: p.next.clone(),
            wrapped_secret,
            pending: None,
        })
    }

    /// Serializes the header, MACed under `root` (the current root key).
    pub fn encode(&self, root: &RootKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.push(HEADER_VERSION);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.vault_id.as_bytes());
        self.root.encode(&mut out);
        out.extend_from_slice(&self.wrapped_secret);
        match &self.pending {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                p.next.encode(&mut out);
                out.extend_from_slice(&p.new_under_old);
                out.extend_from_slice(&p.old_under_new);
            }
        }
        let mac = header_mac_key(root).mac_raw(&[&out]);
        out.extend_from_slice(&mac);
        let sum = sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// Parses and checksums a header without any key. Fails with
    /// [`Error::UnsupportedVersion`], or [`Error::Integrity`] for a bad checksum, magic or
    /// truncation. Also returns the length of the MACed prefix.
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
        let pending = match r.u8()? {
            0 => None,
            1 => Some(PendingRoot {
                next: RootSpec::decode(&mut r)?,
                new_under_old: r.array()?,
                old_under_new: r.array()?,
            }),
            _ => return Err(Error::integrity(Structure::Header, "bad pending flag")),
        };
        r.finish()?;
        let _ = ROOT_SPEC_LEN;
        Ok((
            Header {
                vault_id,
                root,
                wrapped_secret,
                pending,
            },
            mac_at,
        ))
    }

    /// Decodes `bytes` and unlocks them with `source`: checksum ([`Error::Integrity`]),
    /// KDF caps ([`Error::ExcessiveWork`]), key check ([`Error::WrongKey`]), then the
    /// header MAC and the wrapped vault secret ([`Error::Integrity`]). During a pending
    /// root-key rotation either the old or the new key opens.
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
        let derived = derive_root(&h.root, source, max_work);
        let (root, next_root) = match derived {
            Ok(k) if h.root.matches(&k, &vid) => {
                let next = match &h.pending {
                    Some(p) => Some(
                        unwrap_key(
                            &wrapping_key(&k),
                            &bridge_aad(&vid, h.root.generation, p.next.generation),
                            &p.new_under_old,
                        )
                        .map(RootKey::from_secret)
                        .ok_or_else(|| Error::integrity(Structure::Header, "root bridge"))?,
                    ),
                    None => None,
                };
                (k, next)
            }
            first => {
                // Not the current root: during a rotation it may be the next one.
                let p = match &h.pending {
                    Some(p) => p,
                    None => return Err(first.err().unwrap_or(Error::WrongKey)),
                };
                let k = derive_root(&p.next, source, max_work)?;
                if !p.next.matches(&k, &vid) {
                    return Err(Error::WrongKey);
                }
                let old = unwrap_key(
                    &wrapping_key(&k),
                    &bridge_aad(&vid, p.next.generation, h.root.generation),
                    &p.old_under_new,
                )
                .ok_or_else(|| Error::integrity(Structure::Header, "root bridge"))?;
                (RootKey::from_secret(old), Some(k))
            }
        };
        if !header_mac_key(&root).verify_raw(&[&bytes[..mac_at]], &bytes[mac_at..mac_at + 32]) {
            return Err(Error::integrity(Structure::Header, "MAC mismatch"));
        }
        let vault_secret = unwrap_key(
            &wrapping_key(&root),
            &secret_aad(&vid, h.root.generation),
            &h.wrapped_secret,
        )
        .ok_or_else(|| Error::integrity(Structure::Header, "wrapped vault secret"))?;
        Ok((
            h,
            Unlocked {
                root,
                next_root,
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
    fn rotation_opens_with_either_key() {
        let kdf = crate::danger::insecure_kdf_params();
        let (h, u) = Header::create(&pw("old"), kdf).unwrap();
        let (hp, next) = h
            .begin_rotation(&u.root, &KeySource::raw([7; 32]), kdf)
            .unwrap();
        let bytes = hp.encode(&u.root);
        let (_, a) = Header::unlock(&bytes, &pw("old")).unwrap();
        let (_, b) = Header::unlock(&bytes, &KeySource::raw([7; 32])).unwrap();
        assert_eq!(
            a.root.secret().expose_secret(),
            b.root.secret().expose_secret()
        );
        assert_eq!(
            a.next_root.unwrap().secret().expose_secret(),
            b.next_root.unwrap().secret().expose_secret()
        );
        let done = hp.finish_rotation(&next, &u.vault_secret).unwrap();
        let bytes = done.encode(&next);
        assert!(matches!(
            Header::unlock(&bytes, &pw("old")),
            Err(Error::WrongKey)
        ));
        let (_, c) = Header::unlock(&bytes, &KeySource::raw([7; 32])).unwrap();
        assert_eq!(
            c.vault_secret.expose_secret(),
            u.vault_secret.expose_secret()
        );
    }
}
