//! medvault checkpoints: C2SP `tlog-checkpoint` notes (origin, tree size, root hash) with
//! two extension lines, the format version and the signing time, signed as a C2SP
//! `signed-note` with the vault's Ed25519 key. Layout and rationale: `docs/VERIFY.md`.

use ed25519_dalek::SigningKey;

use crate::error::Error;
use crate::hash::Hash;
use crate::note::{VerifierKey, b64_decode_hash, b64_encode, open_note, parse_decimal, sign_note};
use crate::proof::ConsistencyProof;

/// The extension line that names this format's version (4th line of the note text).
pub const CHECKPOINT_VERSION_LINE: &str = "medvault-checkpoint/v1";
/// Prefix of every medvault origin (and key name): `medvault/` + 32 lowercase hex digits.
const ORIGIN_PREFIX: &str = "medvault/";

/// A vault's random 128-bit identifier, written as 32 lowercase hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VaultId(pub [u8; 16]);

impl std::fmt::Display for VaultId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl VaultId {
    fn parse_hex(s: &str) -> Option<Self> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    /// The checkpoint origin and signing key name of this vault: `medvault/<hex id>`.
    pub fn origin(&self) -> String {
        format!("{ORIGIN_PREFIX}{self}")
    }
}

/// A signed tree head of a vault's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The vault the log belongs to.
    pub vault_id: VaultId,
    /// Number of log entries (leaves) covered.
    pub tree_size: u64,
    /// RFC 9162 root hash of those entries.
    pub root: Hash,
    /// When the vault signed it: Unix time, whole seconds, UTC (as the vault's clock says;
    /// not verified, only signed).
    pub time: u64,
}

impl Checkpoint {
    /// The note text (what is signed): origin, size, base64 root, version line, `time <t>`,
    /// each line ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{CHECKPOINT_VERSION_LINE}\ntime {}\n",
            self.vault_id.origin(),
            self.tree_size,
            b64_encode(&self.root),
            self.time
        )
    }

    /// Parses a note text as written by [`Checkpoint::body`]. Fails with
    /// [`Error::Malformed`] (naming the line) on an origin that is not `medvault/<32 hex>`,
    /// a non-canonical size or time, a root that is not base64 of 32 bytes, a missing or
    /// unknown version line, or any extra line.
    pub fn parse_body(text: &str) -> Result<Self, Error> {
        const W: &str = "checkpoint";
        let body =
            text.strip_suffix('\n')
                .ok_or(Error::malformed(W, 0, "does not end with a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, version, time] = lines.as_slice() else {
            return Err(Error::malformed(W, 0, "expected exactly 5 lines"));
        };
        let vault_id = origin
            .strip_prefix(ORIGIN_PREFIX)
            .and_then(VaultId::parse_hex)
            .ok_or(Error::malformed(
                W,
                1,
                "origin is not medvault/<32 hex digits>",
            ))?;
        let tree_size = parse_decimal(size).ok_or(Error::malformed(
            W,
            2,
            "tree size is not canonical decimal",
        ))?;
        let root = b64_decode_hash(root).ok_or(Error::malformed(
            W,
            3,
            "root is not base64 of 32 bytes",
        ))?;
        if *version != CHECKPOINT_VERSION_LINE {
            return Err(Error::malformed(W, 4, "unknown checkpoint version"));
        }
        let time = time
            .strip_prefix("time ")
            .and_then(parse_decimal)
            .ok_or(Error::malformed(W, 5, "expected time <unix seconds>"))?;
        Ok(Self {
            vault_id,
            tree_size,
            root,
            time,
        })
    }

    /// The signed checkpoint: [`Checkpoint::body`] as a signed note under `key`, key name =
    /// origin. The engine calls this with the key it unsealed; the key is borrowed only.
    pub fn sign(&self, key: &SigningKey) -> Result<String, Error> {
        sign_note(&self.body(), &self.vault_id.origin(), key)
    }

    /// The verifier key an auditor needs for this vault's checkpoints (name = origin).
    pub fn verifier_key(vault_id: VaultId, key: &SigningKey) -> Result<VerifierKey, Error> {
        VerifierKey::new(&vault_id.origin(), key.verifying_key())
    }

    /// Verifies a signed checkpoint under `key` and parses it. Fails with
    /// [`Error::Signature`] if no signature of `key` verifies, with [`Error::Malformed`] if
    /// the note or body is malformed, and with [`Error::Rejected`] if the key's name is not
    /// the checkpoint's origin (a key of another vault) or a size-0 checkpoint does not carry
    /// the empty root.
    pub fn open(note: &str, key: &VerifierKey) -> Result<Self, Error> {
        let text = open_note(note, key)?;
        let cp = Self::parse_body(text)?;
        if key.name() != cp.vault_id.origin() {
            return Err(Error::Rejected(
                "the key's name is not the checkpoint's origin",
            ));
        }
        if cp.tree_size == 0 && cp.root != crate::hash::empty_root() {
            return Err(Error::Rejected("an empty log must have the empty root"));
        }
        Ok(cp)
    }

    /// Verifies a signed checkpoint under whichever of `keys` signed it, and parses it:
    /// an auditor holds one verifier key per signing-key generation of the vault (a
    /// root-key rotation turns the key over), and a checkpoint is signed by one of them.
    /// Returns the checkpoint and the index in `keys` of the first key it opens under
    /// ([`Checkpoint::open`]).
    ///
    /// When no key opens it, fails with the most telling of the keys' errors: an error
    /// after a signature verified (a malformed body: [`Error::Malformed`]; the key's name
    /// is not the origin, or a size-0 checkpoint without the empty root:
    /// [`Error::Rejected`]) before a mere [`Error::Signature`] of another key; among equals,
    /// the first key's. Fails with [`Error::Rejected`] for an empty `keys`.
    pub fn open_any(note: &str, keys: &[VerifierKey]) -> Result<(Self, usize), Error> {
        let mut best: Option<Error> = None;
        for (i, key) in keys.iter().enumerate() {
            match Self::open(note, key) {
                Ok(cp) => return Ok((cp, i)),
                Err(e) => {
                    let telling = !matches!(e, Error::Signature(_));
                    if best.is_none() || (telling && matches!(best, Some(Error::Signature(_)))) {
                        best = Some(e);
                    }
                }
            }
        }
        Err(best.unwrap_or(Error::Rejected("no verifier key given")))
    }

    /// Checks that `later` extends `self`: the same vault, a size at least as large, and
    /// `proof` a valid consistency proof between the two roots (RFC 9162). An older size of
    /// 0 needs an empty proof (every log extends the empty one); equal sizes need equal
    /// roots and an empty proof. The signatures must have been checked by
    /// [`Checkpoint::open`]. Fails with [`Error::Rejected`] saying which check failed: a
    /// failure means the log between the two checkpoints was rewritten or the proof is not
    /// for them.
    pub fn verify_extends(
        &self,
        later: &Checkpoint,
        proof: &ConsistencyProof,
    ) -> Result<(), Error> {
        if self.vault_id != later.vault_id {
            return Err(Error::Rejected("the checkpoints are of different vaults"));
        }
        if self.tree_size > later.tree_size {
            return Err(Error::Rejected("the later checkpoint has fewer entries"));
        }
        if proof.old_size != self.tree_size || proof.new_size != later.tree_size {
            return Err(Error::Rejected(
                "the proof's sizes are not the checkpoints' sizes",
            ));
        }
        if self.tree_size == 0 {
            if !proof.hashes.is_empty() {
                return Err(Error::Rejected("a proof from the empty log must be empty"));
            }
            return Ok(());
        }
        proof.verify(&self.root, &later.root)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a failure report
mod tests {
    use super::*;

    const VAULT: VaultId = VaultId([0x42; 16]);

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            vault_id: VAULT,
            tree_size: size,
            root: [0x0a; 32],
            time: 1_796_164_382,
        }
    }

    #[test]
    fn open_any_finds_the_signing_key_among_several_and_keeps_the_telling_error() {
        let (old, new) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let other = SigningKey::from_bytes(&[3; 32]);
        let vk = |k: &SigningKey| Checkpoint::verifier_key(VAULT, k).unwrap();
        let keys = [vk(&old), vk(&new)];
        // Signed by either generation: opened, and the index says by which.
        assert_eq!(
            Checkpoint::open_any(&cp(5).sign(&old).unwrap(), &keys).unwrap(),
            (cp(5), 0)
        );
        assert_eq!(
            Checkpoint::open_any(&cp(6).sign(&new).unwrap(), &keys).unwrap(),
            (cp(6), 1)
        );
        // Signed by a key not given: a signature error.
        assert!(matches!(
            Checkpoint::open_any(&cp(5).sign(&other).unwrap(), &keys),
            Err(Error::Signature(_))
        ));
        // The signing key is last, its signature verifies but the checkpoint is refused
        // (size 0 without the empty root): that error, not the other key's signature one.
        assert!(matches!(
            Checkpoint::open_any(&cp(0).sign(&new).unwrap(), &keys),
            Err(Error::Rejected("an empty log must have the empty root"))
        ));
        assert!(matches!(
            Checkpoint::open_any(&cp(5).sign(&old).unwrap(), &[]),
            Err(Error::Rejected(_))
        ));
    }
}
