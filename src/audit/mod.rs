//! The access log: append-only, sealed, hash-chained, committed atomically with the data
//! change it records (docs/FORMAT.md "Access-log entry",
//! docs/FORMAT.md "Log head", docs/FORMAT.md "Checkpoint").
//!
//! Invariants kept here: sequence numbers are gapless and strictly increasing (one commit
//! lock assigns them and applies the batch); each entry's link is
//! `HMAC(chain key, prev link || seq || sealed body)`; the head (next seq, last link) is
//! MACed and written in the same atomic batch as every entry; a checkpoint held elsewhere
//! pins a prefix of the chain against a rollback of the whole directory.

mod entry;

pub(crate) use entry::decode_body;
#[cfg(feature = "testing")]
pub(crate) use entry::parse_target;
#[cfg(test)]
pub(crate) use entry::test_clock;
pub use entry::{Action, LogEntry, Outcome, Target};
pub(crate) use entry::{PendingEntry, hex, open_target, seal_target};

use std::sync::{Arc, Mutex, MutexGuard};

use crate::codec::{Reader, put_lp32};
use crate::crypto::{AeadKey, MacKey, SecretKey, ct_eq, derive_key};
use crate::error::{Error, InputKind, LogFault, Result, Structure};
use crate::keyspace;
use crate::storage::{Storage, WriteBatch};
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
    pub vault_id: [u8; 16],
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
        b.extend_from_slice(&self.vault_id);
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
            vault_id: r.array()?,
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

    /// Parses the text form (surrounding whitespace ignored).
    pub fn from_text(s: &str) -> Result<Checkpoint> {
        let h = s.trim().strip_prefix("mvcp1:").ok_or_else(|| {
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

struct Chain {
    next_seq: u64,
    link: [u8; 32],
}

/// The access log of one open vault.
pub(crate) struct AuditLog {
    vault_id: [u8; 16],
    secret_for_seal: SecretKey,
    chain_key: MacKey,
    head_key: MacKey,
    checkpoint_key: MacKey,
    /// Log keys by segment, shared rather than cloned per entry: an `AeadKey` clone
    /// copies (and on drop zeroizes) the whole AES key schedule.
    seal_keys: Mutex<Vec<(u64, Arc<AeadKey>)>>,
    chain: Mutex<Chain>,
}

fn body_aad(vault_id: &[u8; 16], seq: u64) -> Vec<u8> {
    let mut aad = b"medvault/v1/log-entry".to_vec();
    aad.push(ENTRY_VERSION);
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

impl AuditLog {
    /// Sets up the log keys (derived from the vault secret) and reads the head.
    /// A vault without a head (new) starts at the genesis link.
    pub fn open(
        vault_id: [u8; 16],
        vault_secret: &SecretKey,
        storage: &dyn Storage,
    ) -> Result<Self> {
        let log = AuditLog {
            vault_id,
            secret_for_seal: derive_key(vault_secret, &[b"medvault/v1/log-seal"]),
            chain_key: MacKey::new(&derive_key(vault_secret, &[b"medvault/v1/log-chain"])),
            head_key: MacKey::new(&derive_key(vault_secret, &[b"medvault/v1/log-head"])),
            checkpoint_key: MacKey::new(&derive_key(vault_secret, &[b"medvault/v1/checkpoint"])),
            seal_keys: Mutex::new(Vec::new()),
            chain: Mutex::new(Chain {
                next_seq: 0,
                link: [0; 32],
            }),
        };
        let (next_seq, link) = match storage.get(keyspace::LOG_HEAD)? {
            Some(bytes) => log.decode_head(&bytes)?,
            None => (0, log.genesis()),
        };
        *log.lock_chain() = Chain { next_seq, link };
        Ok(log)
    }

    fn lock_chain(&self) -> MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn genesis(&self) -> [u8; 32] {
        self.chain_key
            .mac_parts(&[b"medvault/v1/genesis", &self.vault_id])
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

    fn link(&self, prev: &[u8; 32], seq: u64, sealed: &[u8]) -> [u8; 32] {
        self.chain_key
            .mac_raw(&[prev, &[ENTRY_VERSION], &seq.to_be_bytes(), sealed])
    }

    fn head_mac(&self, next_seq: u64, link: &[u8; 32]) -> [u8; 32] {
        self.head_key.mac_raw(&[
            b"medvault/v1/head",
            &[HEAD_VERSION],
            &self.vault_id,
            &next_seq.to_be_bytes(),
            link,
        ])
    }

    fn encode_head(&self, next_seq: u64, link: &[u8; 32]) -> Vec<u8> {
        let mut h = Vec::with_capacity(73);
        h.push(HEAD_VERSION);
        h.extend_from_slice(&next_seq.to_be_bytes());
        h.extend_from_slice(link);
        h.extend_from_slice(&self.head_mac(next_seq, link));
        h
    }

    fn decode_head(&self, bytes: &[u8]) -> Result<(u64, [u8; 32])> {
        let mut r = Reader::new(bytes, Structure::LogHead);
        let v = r.u8()?;
        if v != HEAD_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "access-log head",
                version: v,
            });
        }
        let next_seq = r.u64()?;
        let link: [u8; 32] = r.array()?;
        let mac: [u8; 32] = r.array()?;
        r.finish()?;
        if !ct_eq(&self.head_mac(next_seq, &link), &mac) {
            return Err(Error::integrity(Structure::LogHead, "MAC mismatch"));
        }
        Ok((next_seq, link))
    }

    /// Appends `entries` to `batch` (sealed, chained, with the new head) and applies the
    /// batch atomically. Returns the sequence number of the first entry. On failure
    /// nothing is applied and the chain state is unchanged.
    pub fn commit(
        &self,
        storage: &dyn Storage,
        mut batch: WriteBatch,
        entries: &[PendingEntry],
    ) -> Result<u64> {
        let mut chain = self.lock_chain();
        let first = chain.next_seq;
        let mut seq = first;
        let mut link = chain.link;
        for e in entries {
            let body = e.body();
            let sealed = self
                .seal_key(seq)
                .seal(&body_aad(&self.vault_id, seq), &body);
            link = self.link(&link, seq, &sealed);
            let mut value = Vec::with_capacity(sealed.len() + 40);
            value.push(ENTRY_VERSION);
            put_lp32(&mut value, &sealed);
            value.extend_from_slice(&link);
            batch.put(keyspace::log_entry(seq), value);
            seq += 1;
        }
        batch.put(keyspace::LOG_HEAD.to_vec(), self.encode_head(seq, &link));
        storage.apply(batch)?;
        chain.next_seq = seq;
        chain.link = link;
        Ok(first)
    }

    /// Number of entries (the next sequence number).
    pub fn len(&self) -> u64 {
        self.lock_chain().next_seq
    }

    /// A checkpoint of the current head.
    pub fn checkpoint(&self) -> Checkpoint {
        let c = self.lock_chain();
        let mac = self.checkpoint_mac(c.next_seq, &c.link);
        Checkpoint {
            vault_id: self.vault_id,
            next_seq: c.next_seq,
            link: c.link,
            mac,
        }
    }

    /// A checkpoint MACed under this log's key for an arbitrary `(next_seq, link)`: lets
    /// the fuzz harness (`crate::testing::fuzz`) reach the checkpoint comparisons of `verify`.
    #[cfg(feature = "testing")]
    pub(crate) fn checkpoint_at(&self, next_seq: u64, link: [u8; 32]) -> Checkpoint {
        Checkpoint {
            vault_id: self.vault_id,
            next_seq,
            link,
            mac: self.checkpoint_mac(next_seq, &link),
        }
    }

    fn checkpoint_mac(&self, next_seq: u64, link: &[u8; 32]) -> [u8; 32] {
        self.checkpoint_key.mac_raw(&[
            b"medvault/v1/checkpoint",
            &[CHECKPOINT_VERSION],
            &self.vault_id,
            &next_seq.to_be_bytes(),
            link,
        ])
    }

    /// Walks the whole chain from storage. Returns the number of entries verified, or
    /// [`Error::LogTampered`] naming the first bad sequence number and what is wrong.
    pub fn verify(&self, storage: &dyn Storage, checkpoint: Option<&Checkpoint>) -> Result<u64> {
        let bad = |seq: u64, fault: LogFault| Error::LogTampered { seq, fault };
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
        let head = storage
            .get(keyspace::LOG_HEAD)?
            .ok_or_else(|| bad(0, LogFault::HeadMissing))?;
        let (head_seq, head_link) = self
            .decode_head(&head)
            .map_err(|_| bad(0, LogFault::HeadMac))?;
        let mut expected = 0u64;
        let mut link = self.genesis();
        let mut cp_link_ok = checkpoint.is_none_or(|cp| cp.next_seq == 0 && cp.link == link);
        let start = [keyspace::LOG_ENTRY_PREFIX];
        let end = [keyspace::LOG_ENTRY_PREFIX + 1];
        for item in storage.scan(&start, Some(&end)) {
            let (k, v) = item?;
            let seq = match <[u8; 8]>::try_from(&k[1..]) {
                Ok(b) => u64::from_be_bytes(b),
                Err(_) => return Err(bad(expected, LogFault::MalformedKey)),
            };
            if seq != expected {
                return Err(bad(expected, LogFault::EntryMissing));
            }
            let mut r = Reader::new(&v, Structure::LogEntry);
            let parsed = (|| -> Result<(u8, &[u8], [u8; 32])> {
                let ver = r.u8()?;
                let sealed = r.lp32(MAX_BODY)?;
                let l: [u8; 32] = r.array()?;
                r.finish()?;
                Ok((ver, sealed, l))
            })();
            let (ver, sealed, stored_link) =
                parsed.map_err(|_| bad(seq, LogFault::EntryMalformed))?;
            if ver != ENTRY_VERSION {
                return Err(bad(seq, LogFault::UnknownVersion));
            }
            link = self.link(&link, seq, sealed);
            if !ct_eq(&link, &stored_link) {
                return Err(bad(seq, LogFault::LinkMismatch));
            }
            expected += 1;
            if let Some(cp) = checkpoint
                && cp.next_seq == expected
            {
                if !ct_eq(&cp.link, &link) {
                    return Err(bad(seq, LogFault::DivergesFromCheckpoint));
                }
                cp_link_ok = true;
            }
        }
        if expected < head_seq {
            return Err(bad(expected, LogFault::TruncatedTail));
        }
        if expected > head_seq {
            return Err(bad(head_seq, LogFault::BeyondHead));
        }
        if !ct_eq(&link, &head_link) {
            return Err(bad(expected.saturating_sub(1), LogFault::HeadMismatch));
        }
        if let Some(cp) = checkpoint
            && (!cp_link_ok || cp.next_seq > expected)
        {
            return Err(bad(expected, LogFault::ShorterThanCheckpoint));
        }
        Ok(expected)
    }

    /// Reads and opens entries in `[from, to)`, calling `f` with each decoded entry and
    /// its still-sealed target. Checks each body's seal (not the chain: see `verify`).
    pub fn for_each(
        &self,
        storage: &dyn Storage,
        from: u64,
        mut f: impl FnMut(LogEntry, Option<Vec<u8>>) -> Result<bool>,
    ) -> Result<()> {
        let start = keyspace::log_entry(from);
        let end = [keyspace::LOG_ENTRY_PREFIX + 1];
        for item in storage.scan(&start, Some(&end)) {
            let (k, v) = item?;
            let seq = <[u8; 8]>::try_from(&k[1..])
                .map(u64::from_be_bytes)
                .map_err(|_| Error::integrity(Structure::LogEntry, "storage key malformed"))?;
            let mut r = Reader::new(&v, Structure::LogEntry);
            let ver = r.u8()?;
            if ver != ENTRY_VERSION {
                return Err(Error::UnsupportedVersion {
                    what: "access-log entry",
                    version: ver,
                });
            }
            let sealed = r.lp32(MAX_BODY)?;
            let pt = self
                .seal_key(seq)
                .open(&body_aad(&self.vault_id, seq), sealed)
                .ok_or(Error::LogTampered {
                    seq,
                    fault: LogFault::BodyAuthentication,
                })?;
            let body = decode_body(seq, &pt)?;
            if !f(body.entry, body.sealed_target)? {
                break;
            }
        }
        Ok(())
    }
}
