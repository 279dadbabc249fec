//! The access log: append-only, sealed, hash-chained, committed with the data change it
//! records by the commit protocol (docs/DESIGN-storage.md; docs/FORMAT.md "Access-log
//! entry", docs/FORMAT.md "Log segment files", docs/FORMAT.md "Checkpoint").
//!
//! Invariants kept here: sequence numbers are gapless and strictly increasing (one commit
//! lock assigns them and applies the batch); each entry's link is
//! `HMAC(chain key, prev link || version || flags || seq || sealed body)`; the log's end
//! is remembered by the applied marker and the anchor (src/commit/); a checkpoint held
//! elsewhere pins a prefix of the chain against a rollback of the whole directory.

pub mod alerts;
mod entry;
pub mod fhir_audit_event;
pub mod report;

pub(crate) use entry::decode_body;
#[cfg(feature = "testing")]
pub(crate) use entry::parse_target;
#[cfg(test)]
pub(crate) use entry::test_clock;
pub use entry::{Action, LogEntry, Outcome, Target};
pub(crate) use entry::{PendingEntry, hex, now_ms, open_target, seal_target};

use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::commit::{Committer, Sealer};
use crate::crypto::{AeadKey, MacKey, SecretKey, ct_eq, derive_key};
use crate::error::{Error, InputKind, LogFault, Result, Structure};
use crate::logstore::LogStore;
pub(crate) use entry::{ENTRY_VERSION, MAX_BODY};

/// Head format version.
pub const HEAD_VERSION: u8 = 1;
/// Checkpoint format version.
pub const CHECKPOINT_VERSION: u8 = 1;
/// Entries sealed under one log key before the next is derived: 2^30, far below the
/// 2^32 random-nonce bound of NIST SP 800-38D section 8.3.
pub const ENTRIES_PER_LOG_KEY: u64 = 1 << 30;
const CHECKPOINT_LEN: usize = 1 + 16 + 8 + 32 + 32;

/// A token pinning the access log at one point: `(vault_id, next_seq, last link)` and a
/// MAC under a key derived from the vault secret. Kept by an operator outside the vault,
/// it lets `verify` detect a rollback of the whole directory or a deleted log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The vault it belongs to.
    pub vault_id: crate::VaultId,
    /// Number of entries the log held (the next sequence number).
    pub next_seq: u64,
    /// Link of entry `next_seq - 1` (genesis link when empty).
    pub link: [u8; 32],
    mac: [u8; 32],
}

impl Checkpoint {
    /// Binary form (docs/FORMAT.md "Checkpoint"): 89 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CHECKPOINT_LEN);
        b.push(CHECKPOINT_VERSION);
        b.extend_from_slice(self.vault_id.as_bytes());
        b.extend_from_slice(&self.next_seq.to_be_bytes());
        b.extend_from_slice(&self.link);
        b.extend_from_slice(&self.mac);
        b
    }

    /// Parses the binary form. [`Error::Integrity`] when malformed (the MAC is checked
    /// by `verify`, which holds the key).
    pub fn from_bytes(b: &[u8]) -> Result<Checkpoint> {
        let mut r = Reader::new(b, Structure::Checkpoint);
        let v = r.u8()?;
        if v != CHECKPOINT_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "checkpoint",
                version: v,
            });
        }
        let cp = Checkpoint {
            vault_id: crate::VaultId::from(r.array::<16>()?),
            next_seq: r.u64()?,
            link: r.array()?,
            mac: r.array()?,
        };
        r.finish()?;
        Ok(cp)
    }

    /// Text form: `mvcp1:` followed by the lower-case hex of [`Checkpoint::to_bytes`].
    pub fn to_text(&self) -> String {
        format!("mvcp1:{}", hex(&self.to_bytes()))
    }

    /// Parses the text form (surrounding whitespace ignored). Fails with
    /// [`Error::InvalidInput`] ([`InputKind::Checkpoint`]); given a signed checkpoint note
    /// instead (`Vault::signed_checkpoint`, whose first line is the origin
    /// `medvault/<vault id>`), the message says it is checked with `medvault-verify`.
    pub fn from_text(s: &str) -> Result<Checkpoint> {
        let s = s.trim();
        // A signed note opens with its origin line (`medvault_verify::VaultId::origin`).
        if s.starts_with("medvault/") {
            return Err(Error::invalid(
                InputKind::Checkpoint,
                "this is a signed checkpoint (a note of `audit checkpoint --signed`): it is \
                 checked with medvault-verify and the vault's verifier key (docs/VERIFY.md); \
                 here a checkpoint is the mvcp1: token of `audit checkpoint`",
            ));
        }
        let h = s.strip_prefix("mvcp1:").ok_or_else(|| {
            Error::invalid(InputKind::Checkpoint, "a checkpoint starts with mvcp1:")
        })?;
        if h.len() != CHECKPOINT_LEN * 2 {
            return Err(Error::invalid(
                InputKind::Checkpoint,
                "checkpoint has the wrong length",
            ));
        }
        // Hex digits only: `from_str_radix` alone would also take a sign ("+1").
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(
                InputKind::Checkpoint,
                "checkpoint is not hex",
            ));
        }
        let mut b = Vec::with_capacity(CHECKPOINT_LEN);
        for i in (0..h.len()).step_by(2) {
            b.push(
                u8::from_str_radix(&h[i..i + 2], 16)
                    .map_err(|_| Error::invalid(InputKind::Checkpoint, "checkpoint is not hex"))?,
            );
        }
        Checkpoint::from_bytes(&b)
    }
}

/// The access log's keys of one open vault: sealing and opening entry bodies, and
/// checkpoints. The log itself (frames, chain, head) is the commit protocol's
/// ([`crate::commit::Committer`]); the frames live in a [`LogStore`].
pub(crate) struct AuditLog {
    vault_id: crate::VaultId,
    secret_for_seal: SecretKey,
    checkpoint_key: MacKey,
    /// Log keys by key segment, shared rather than cloned per entry: an `AeadKey` clone
    /// copies (and on drop zeroizes) the whole AES key schedule.
    seal_keys: Mutex<Vec<(u64, Arc<AeadKey>)>>,
}

fn body_aad(vault_id: &crate::VaultId, seq: u64) -> Vec<u8> {
    let mut aad = b"medvault/v1/log-entry".to_vec();
    aad.push(ENTRY_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

impl AuditLog {
    /// Sets up the log keys, derived from the vault secret.
    pub fn new(vault_id: crate::VaultId, vault_secret: &SecretKey) -> Self {
        AuditLog {
            vault_id,
            secret_for_seal: derive_key(vault_secret, &[b"medvault/v1/log-seal"]),
            checkpoint_key: MacKey::new(&derive_key(vault_secret, &[b"medvault/v1/checkpoint"])),
            seal_keys: Mutex::new(Vec::new()),
        }
    }

    /// The log key sealing entry `seq`: HKDF(vault secret, "log-seal" || seq / 2^30).
    fn seal_key(&self, seq: u64) -> Arc<AeadKey> {
        let segment = seq / ENTRIES_PER_LOG_KEY;
        let mut keys = self.seal_keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = keys.iter().find(|(s, _)| *s == segment) {
            return k.clone();
        }
        let k = Arc::new(AeadKey::new(&derive_key(
            &self.secret_for_seal,
            &[&segment.to_be_bytes()],
        )));
        keys.push((segment, k.clone()));
        k
    }

    /// A checkpoint of `head` (`(next_seq, last link)`, from the committer).
    pub fn checkpoint(&self, head: (u64, [u8; 32])) -> Checkpoint {
        let (next_seq, link) = head;
        Checkpoint {
            vault_id: self.vault_id,
            next_seq,
            link,
            mac: self.checkpoint_mac(next_seq, &link),
        }
    }

    /// A checkpoint MACed under this log's key for an arbitrary `(next_seq, link)`: lets
    /// the fuzz harness (`crate::testing::fuzz`) reach the checkpoint comparisons of `verify`.
    #[cfg(feature = "testing")]
    pub(crate) fn checkpoint_at(&self, next_seq: u64, link: [u8; 32]) -> Checkpoint {
        self.checkpoint((next_seq, link))
    }

    fn checkpoint_mac(&self, next_seq: u64, link: &[u8; 32]) -> [u8; 32] {
        self.checkpoint_key.mac_raw(&[
            b"medvault/v1/checkpoint",
            &[CHECKPOINT_VERSION],
            self.vault_id.as_bytes(),
            &next_seq.to_be_bytes(),
            link,
        ])
    }

    /// Verifies the whole log, the anchor, the applied marker and the record store
    /// against the state digest ([`Committer::verify`]), pinned to `checkpoint` when one
    /// is given. Returns the number of entries verified. Errors: [`Error::InvalidInput`]
    /// for another vault's checkpoint, [`Error::Integrity`] for a checkpoint failing its
    /// MAC, and those of [`Committer::verify`].
    pub fn verify(&self, committer: &Committer, checkpoint: Option<&Checkpoint>) -> Result<u64> {
        if let Some(cp) = checkpoint {
            if cp.vault_id != self.vault_id {
                return Err(Error::invalid(
                    InputKind::Checkpoint,
                    "the checkpoint belongs to another vault",
                ));
            }
            if !ct_eq(&self.checkpoint_mac(cp.next_seq, &cp.link), &cp.mac) {
                return Err(Error::integrity(Structure::Checkpoint, "MAC mismatch"));
            }
        }
        Ok(committer
            .verify(checkpoint.map(|cp| (cp.next_seq, cp.link)))?
            .entries)
    }

    /// Opens and decodes one frame's entry. Errors: [`Error::LogTampered`] when its body
    /// fails authentication; a malformed body.
    pub fn entry_of(&self, frame: &crate::logstore::Frame) -> Result<LogEntry> {
        let pt = self
            .open(frame.seq, &frame.body)
            .ok_or(Error::LogTampered {
                seq: frame.seq,
                fault: LogFault::BodyAuthentication,
            })?;
        let (body, _) = crate::commit::changes::split(&pt)?;
        Ok(decode_body(frame.seq, body)?.entry)
    }

    /// Reads and opens entries from `from` on, calling `f` with each decoded entry and
    /// its still-sealed target until it returns `false`. Checks each body's seal (not
    /// the chain: see `verify`).
    pub fn for_each(
        &self,
        log: &dyn LogStore,
        from: u64,
        mut f: impl FnMut(LogEntry, Option<Vec<u8>>) -> Result<bool>,
    ) -> Result<()> {
        for item in log.read(from)? {
            let (frame, _) = item?;
            let seq = frame.seq;
            let pt = self.open(seq, &frame.body).ok_or(Error::LogTampered {
                seq,
                fault: LogFault::BodyAuthentication,
            })?;
            let (body, _) = crate::commit::changes::split(&pt)?;
            let body = decode_body(seq, body)?;
            if !f(body.entry, body.sealed_target)? {
                break;
            }
        }
        Ok(())
    }
}

impl Sealer for AuditLog {
    fn seal(&self, seq: u64, body: &[u8]) -> Vec<u8> {
        self.seal_key(seq)
            .seal(&body_aad(&self.vault_id, seq), body)
    }

    fn open(&self, seq: u64, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() > MAX_BODY + 64 {
            return None;
        }
        self.seal_key(seq)
            .open(&body_aad(&self.vault_id, seq), sealed)
    }

    fn not_applied_of(&self, body: &[u8]) -> Option<u64> {
        let e = decode_body(0, body).ok()?.entry;
        if e.action != Action::Recovery {
            return None;
        }
        e.note
            .strip_prefix("entry ")?
            .strip_suffix(" not applied")?
            .parse()
            .ok()
    }

    fn not_applied_body(&self, seq: u64) -> Zeroizing<Vec<u8>> {
        let ctx = crate::context::AccessContext::new(
            crate::vault::SYSTEM_ACTOR,
            crate::context::Purpose::Maintenance,
        );
        let mut e = PendingEntry::new(
            &ctx,
            Action::Recovery,
            Outcome::Failed("not_applied".into()),
        );
        e.note = format!("entry {seq} not applied");
        e.body()
    }
}
