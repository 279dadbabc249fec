//! The verifiable access log, vault side (docs/VERIFY.md, issue 18): the vault's Ed25519
//! checkpoint signing keys, signed checkpoints (C2SP `tlog-checkpoint` + `signed-note`,
//! made by `medvault-verify`'s [`medvault_verify::Checkpoint::sign`]) and the inclusion
//! and consistency proofs an auditor checks with `medvault-verify`, holding only the
//! vault's public key.
//!
//! Signing keys live in the record store under `'n' || u32 generation` (docs/FORMAT.md
//! "Checkpoint signing key"): the public key in clear, the private half (the 32-byte
//! Ed25519 seed, RFC 8032) sealed with AES-256-GCM under `HKDF(vault secret,
//! "medvault/v1/checkpoint-signing-key")`, the AAD binding the vault id, the generation
//! and the public key. The first key is made at the first use; a root-key rotation makes
//! a new one and drops the private half of every older one, keeping its public key for
//! the verifiers of older checkpoints. Every key made is logged (`key rotation`).

use ed25519_dalek::SigningKey;
use medvault_verify::{Checkpoint as TreeHead, VerifierKey};
use zeroize::Zeroizing;

use super::commit::{Flush, noted};
use super::{Vault, lock};
use crate::audit::Action;
use crate::context::AccessContext;
use crate::crypto::{AeadKey, derive_key, random_bytes};
use crate::error::{Error, InputKind, Result, Structure};
use crate::keyspace::SIGNING_KEY_PREFIX;
use crate::logstore::tree::LogTree;
use crate::storage::WriteBatch;

/// Format version of a stored signing key.
pub const SIGNING_KEY_VERSION: u8 = 1;
const LABEL: &[u8] = b"medvault/v1/checkpoint-signing-key";
/// `version || created_ms || public key || state`.
const FIXED_LEN: usize = 1 + 8 + 32 + 1;
/// Envelope of a 32-byte seed: nonce, ciphertext, tag.
const SEALED_SEED_LEN: usize = 12 + 32 + 16;

/// One of the vault's checkpoint signing keys, as a verifier needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointKey {
    /// Generation: 1 for the first key, +1 per root-key rotation.
    pub generation: u32,
    /// When it was made: ms since the Unix epoch, UTC.
    pub created_ms: u64,
    /// The public key as a signed-note verifier key (docs/VERIFY.md "Verifier key"):
    /// `medvault/<vault id>+<key id>+<base64(0x01 || public key)>`.
    pub verifier_key: String,
    /// Whether the vault signs with it now (the others only verify old checkpoints).
    pub current: bool,
}

/// A signed checkpoint as the vault issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The signed note (docs/VERIFY.md "Checkpoint format"), newline-terminated text.
    pub note: String,
    /// Entries covered (the checkpoint's own `checkpoint` entry is the last).
    pub tree_size: u64,
    /// RFC 9162 root hash of those entries.
    pub root: [u8; 32],
    /// Signing time, Unix seconds, UTC.
    pub time: u64,
    /// Generation of the signing key.
    pub generation: u32,
}

struct StoredKey {
    generation: u32,
    created_ms: u64,
    public: ed25519_dalek::VerifyingKey,
    /// `None`: retired (public half only).
    private: Option<SigningKey>,
}

fn storage_key(generation: u32) -> Vec<u8> {
    let mut k = vec![SIGNING_KEY_PREFIX];
    k.extend_from_slice(&generation.to_be_bytes());
    k
}

fn bad(what: &'static str) -> Error {
    Error::integrity(Structure::Checkpoint, what)
}

fn no_tree() -> Error {
    Error::invalid(
        InputKind::KeyOperation,
        "this vault's log store keeps no Merkle tree: no signed checkpoints nor proofs",
    )
}

fn verify_error(e: medvault_verify::Error) -> Error {
    Error::invalid(InputKind::Checkpoint, e.to_string())
}

impl Vault {
    fn signing_seal_key(&self) -> AeadKey {
        AeadKey::new(&derive_key(&self.vault_secret, &[LABEL]))
    }

    fn signing_aad(&self, generation: u32, public: &[u8; 32]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(LABEL.len() + 1 + 16 + 4 + 32);
        aad.extend_from_slice(LABEL);
        aad.push(SIGNING_KEY_VERSION);
        aad.extend_from_slice(self.vault_id.as_bytes());
        aad.extend_from_slice(&generation.to_be_bytes());
        aad.extend_from_slice(public);
        aad
    }

    fn encode_signing_key(&self, k: &StoredKey) -> Vec<u8> {
        let public = k.public.to_bytes();
        let mut b = Vec::with_capacity(FIXED_LEN + SEALED_SEED_LEN);
        b.push(SIGNING_KEY_VERSION);
        b.extend_from_slice(&k.created_ms.to_be_bytes());
        b.extend_from_slice(&public);
        match &k.private {
            Some(sk) => {
                b.push(1);
                let seed = Zeroizing::new(sk.to_bytes());
                self.signing_seal_key().seal_into(
                    &self.signing_aad(k.generation, &public),
                    seed.as_slice(),
                    &mut b,
                );
            }
            None => b.push(0),
        }
        b
    }

    fn decode_signing_key(&self, key: &[u8], b: &[u8]) -> Result<StoredKey> {
        let generation = match key {
            [SIGNING_KEY_PREFIX, g @ ..] if g.len() == 4 => {
                u32::from_be_bytes([g[0], g[1], g[2], g[3]])
            }
            _ => return Err(bad("a signing-key storage key is malformed")),
        };
        if b.len() < FIXED_LEN {
            return Err(bad("a signing key is truncated"));
        }
        if b[0] != SIGNING_KEY_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "checkpoint signing key",
                version: b[0],
            });
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[1..9]);
        let mut public = [0u8; 32];
        public.copy_from_slice(&b[9..41]);
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| bad("a signing key's public half is not an Ed25519 point"))?;
        let private = match (b[41], b.len() - FIXED_LEN) {
            (0, 0) => None,
            (1, SEALED_SEED_LEN) => {
                let seed = self
                    .signing_seal_key()
                    .open(&self.signing_aad(generation, &public), &b[FIXED_LEN..])
                    .ok_or_else(|| bad("a signing key fails to open (altered or moved)"))?;
                let mut s = Zeroizing::new([0u8; 32]);
                s.copy_from_slice(&seed);
                let sk = SigningKey::from_bytes(&s);
                if sk.verifying_key() != verifying {
                    return Err(bad("a signing key's halves do not match"));
                }
                Some(sk)
            }
            _ => return Err(bad("a signing key is malformed")),
        };
        Ok(StoredKey {
            generation,
            created_ms: u64::from_be_bytes(t),
            public: verifying,
            private,
        })
    }

    /// Every stored signing key, by generation.
    fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        let start = [SIGNING_KEY_PREFIX];
        let end = [SIGNING_KEY_PREFIX + 1];
        let mut out = Vec::new();
        for kv in self.storage.scan(&start, Some(&end)) {
            let (k, v) = kv?;
            out.push(self.decode_signing_key(&k, &v)?);
        }
        out.sort_by_key(|k| k.generation);
        Ok(out)
    }

    /// The batch that makes signing key `generation` (random, from the OS-seeded CSPRNG)
    /// current and retires every older one (public half kept).
    fn new_signing_key_batch(&self, old: &[StoredKey]) -> Result<(WriteBatch, u32)> {
        let generation = match old.last() {
            Some(k) => k
                .generation
                .checked_add(1)
                .ok_or_else(|| bad("signing-key generations exhausted"))?,
            None => 1,
        };
        let mut batch = WriteBatch::new();
        for k in old.iter().filter(|k| k.private.is_some()) {
            let retired = StoredKey {
                generation: k.generation,
                created_ms: k.created_ms,
                public: k.public,
                private: None,
            };
            batch.put(storage_key(k.generation), self.encode_signing_key(&retired));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        random_bytes(seed.as_mut_slice());
        let sk = SigningKey::from_bytes(&seed);
        let new = StoredKey {
            generation,
            created_ms: crate::audit::now_ms(),
            public: sk.verifying_key(),
            private: Some(sk),
        };
        batch.put(storage_key(generation), self.encode_signing_key(&new));
        Ok((batch, generation))
    }

    /// Makes a new signing key with a root-key rotation (the caller holds the key-op
    /// lock): logged as `key rotation`, "checkpoint signing key generation N".
    pub(super) fn rotate_signing_key(&self, ctx: &AccessContext) -> Result<u32> {
        let old = self.signing_keys()?;
        let (batch, generation) = self.new_signing_key_batch(&old)?;
        let e = noted(
            ctx,
            Action::KeyRotation,
            format!(
                "checkpoint signing key generation {generation} made with the root key; \
                 older ones kept for verification only"
            ),
        );
        self.commit(batch, vec![e], &[], Flush::Write)?;
        Ok(generation)
    }

    /// The current signing key, made (and logged) if the vault has none yet.
    fn current_signing_key(&self, ctx: &AccessContext) -> Result<(u32, SigningKey)> {
        let find = |keys: Vec<StoredKey>| {
            keys.into_iter()
                .next_back()
                .and_then(|k| k.private.map(|p| (k.generation, p)))
        };
        if let Some(k) = find(self.signing_keys()?) {
            return Ok(k);
        }
        let _k = lock(&self.key_op_lock);
        let keys = self.signing_keys()?;
        if !keys.is_empty() {
            return find(keys).ok_or_else(|| bad("the newest signing key has no private half"));
        }
        let (batch, generation) = self.new_signing_key_batch(&keys)?;
        let e = noted(
            ctx,
            Action::KeyRotation,
            format!("checkpoint signing key generation {generation} made"),
        );
        self.commit(batch, vec![e], &[], Flush::Write)?;
        find(self.signing_keys()?).ok_or_else(|| bad("the new signing key is missing"))
    }

    fn tree(&self) -> Result<&LogTree> {
        self.committer.log().tree().ok_or_else(no_tree)
    }

    fn verify_vault_id(&self) -> medvault_verify::VaultId {
        medvault_verify::VaultId(*self.vault_id.as_bytes())
    }

    /// Issues a signed checkpoint (docs/VERIFY.md "Checkpoint format"): appends the
    /// `checkpoint` entry, makes the log durable through it, and signs the tree head of
    /// the log up to and including that entry with the current Ed25519 key (made and
    /// logged first if the vault has none). Errors: the log store keeps no tree
    /// ([`Error::InvalidInput`]); a signing key that fails to open ([`Error::Integrity`]);
    /// storage.
    pub fn signed_checkpoint(&self, ctx: &AccessContext) -> Result<SignedCheckpoint> {
        self.guarded(ctx, Action::Checkpoint, None, || self.tree().map(|_| ()))?;
        let (generation, key) = self.current_signing_key(ctx)?;
        let seq = self.log_only(
            ctx,
            Action::Checkpoint,
            format!("signed checkpoint, key generation {generation}"),
            Flush::Write,
        )?;
        let tree_size = seq + 1;
        let root = self.tree()?.root_at(tree_size)?;
        let time = crate::audit::now_ms() / 1000;
        let head = TreeHead {
            vault_id: self.verify_vault_id(),
            tree_size,
            root,
            time,
        };
        let note = head.sign(&key).map_err(verify_error)?;
        Ok(SignedCheckpoint {
            note,
            tree_size,
            root,
            time,
            generation,
        })
    }

    /// The current checkpoint verifier key (docs/VERIFY.md "Verifier key"), made and
    /// logged if the vault has none yet. What an auditor needs to check signed
    /// checkpoints; not secret.
    pub fn verifier_key(&self, ctx: &AccessContext) -> Result<String> {
        self.guarded(ctx, Action::Checkpoint, None, || Ok(()))?;
        let (_, key) = self.current_signing_key(ctx)?;
        Ok(
            VerifierKey::new(&self.verify_vault_id().origin(), key.verifying_key())
                .map_err(verify_error)?
                .to_string(),
        )
    }

    /// Every checkpoint key the vault made, oldest first, the current one last (older
    /// ones verify checkpoints signed before a root-key rotation). Empty until the
    /// first signed checkpoint or [`Vault::verifier_key`]. Not logged: public data.
    pub fn checkpoint_keys(&self) -> Result<Vec<CheckpointKey>> {
        let keys = self.signing_keys()?;
        let last = keys.last().map(|k| k.generation);
        keys.into_iter()
            .map(|k| {
                Ok(CheckpointKey {
                    generation: k.generation,
                    created_ms: k.created_ms,
                    verifier_key: VerifierKey::new(&self.verify_vault_id().origin(), k.public)
                        .map_err(verify_error)?
                        .to_string(),
                    current: Some(k.generation) == last,
                })
            })
            .collect()
    }

    /// The inclusion proof of entry `index` in the log's first `size` entries (RFC 9162
    /// "Merkle Inclusion Proofs"), as the proof file of docs/VERIFY.md "Inclusion proof
    /// file" (with the entry's leaf hash). `size` defaults to the log's length now; pass
    /// the size of the checkpoint the auditor holds. Logged (`verify`, with the numbers).
    /// Errors: `index >= size` or `size` past the log ([`Error::InvalidInput`]); a tree
    /// node unreadable.
    pub fn prove_inclusion(
        &self,
        ctx: &AccessContext,
        index: u64,
        size: Option<u64>,
    ) -> Result<String> {
        let text = self.guarded(ctx, Action::Verify, None, || {
            let tree = self.tree()?;
            let size = size.unwrap_or_else(|| self.committer.end());
            let proof = tree.prove_inclusion(index, size)?;
            Ok(proof.to_text(&tree.leaf(index)?))
        })?;
        self.log_only(
            ctx,
            Action::Verify,
            format!(
                "inclusion proof of entry {index} at size {}",
                size.map_or("now".into(), |s| s.to_string())
            ),
            Flush::Read,
        )?;
        Ok(text)
    }

    /// The consistency proof between the log's first `old` and first `new` entries (RFC
    /// 9162 "Merkle Consistency Proofs"), as the proof file of docs/VERIFY.md
    /// "Consistency proof file". `new` defaults to the log's length now. Logged
    /// (`verify`). Errors: `old == 0`, `old > new` or `new` past the log
    /// ([`Error::InvalidInput`]); a tree node unreadable.
    pub fn prove_consistency(
        &self,
        ctx: &AccessContext,
        old: u64,
        new: Option<u64>,
    ) -> Result<String> {
        let text = self.guarded(ctx, Action::Verify, None, || {
            let new = new.unwrap_or_else(|| self.committer.end());
            Ok(self.tree()?.prove_consistency(old, new)?.to_text())
        })?;
        self.log_only(
            ctx,
            Action::Verify,
            format!(
                "consistency proof from size {old} to {}",
                new.map_or("now".into(), |s| s.to_string())
            ),
            Flush::Read,
        )?;
        Ok(text)
    }

    /// The exact bytes of entry `seq` as its segment stores them (the tree's leaf: its
    /// leaf hash is SHA-256(0x00 || these bytes)), for `medvault-verify inclusion --entry`.
    /// Sealed: nothing readable without the key. Logged (`verify`).
    pub fn entry_bytes(&self, ctx: &AccessContext, seq: u64) -> Result<Vec<u8>> {
        let bytes = self.guarded(ctx, Action::Verify, None, || {
            if seq >= self.committer.end() {
                return Err(Error::invalid(
                    InputKind::Checkpoint,
                    "entry is past the log",
                ));
            }
            let mut frames = self.committer.log().read(seq)?;
            match frames.next() {
                Some(Ok((f, _))) if f.seq == seq => {
                    let mut b = Vec::with_capacity(f.encoded_len());
                    f.encode_into(&mut b);
                    Ok(b)
                }
                Some(Err(e)) => Err(e),
                _ => Err(Error::integrity(
                    Structure::LogSegment,
                    "the entry is not in the log (dropped by a retention prune?)",
                )),
            }
        })?;
        self.log_only(
            ctx,
            Action::Verify,
            format!("entry {seq} exported for an inclusion proof"),
            Flush::Read,
        )?;
        Ok(bytes)
    }
}
