//! **Not API.** Hooks for `benches/` only: hidden from the docs, outside every semver
//! promise, and free to change or vanish in any release. Do not use it in applications:
//! it skips the access log and the keyring, which is exactly what a vault must never do.
//!
//! It exists so that the `compare` bench can measure the *field-encryption tax* on its
//! own (DESIGN.md, "Performance goals", first row): the record codec and AEAD work of a
//! put or get, with no access-log entry, against raw sled storing the same records. It
//! runs the same code as [`crate::Vault`] (pseudonymous storage key, exact-JSON field split,
//! one AES-256-GCM envelope per field plus the sealed meta block, AAD binding) with one
//! data key held in memory instead of a subject's keys from the keyring.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto::{AeadKey, MacKey, SecretKey};
use crate::error::{Error, Result, Structure};
use crate::record::{Binding, RecordKey, from_json, parse_record, seal_record, split_fields};

/// Seals and opens record values the way a vault does, under one in-memory data key,
/// without keyring or access log. Not API (see the module docs).
pub struct RecordSealer {
    vault_id: crate::VaultId,
    pseudonyms: MacKey,
    dek: AeadKey,
    key_version: u32,
}

impl Default for RecordSealer {
    fn default() -> Self {
        RecordSealer::new()
    }
}

impl RecordSealer {
    /// A sealer with a random vault id, pseudonym key and data key (version 1).
    pub fn new() -> Self {
        let mut vault_id = [0u8; 16];
        crate::crypto::random_bytes(&mut vault_id);
        RecordSealer {
            vault_id: crate::VaultId::from(vault_id),
            pseudonyms: MacKey::new(&SecretKey::random()),
            dek: AeadKey::new(&SecretKey::random()),
            key_version: 1,
        }
    }

    /// The storage key a vault gives `key`: `'r' || subject tag (16) || record tag (16)`,
    /// two HMAC-SHA256 pseudonyms (33 bytes), made by the vault's own key-space code
    /// (`crate::keyspace::record`).
    pub fn storage_key(&self, key: &RecordKey) -> Vec<u8> {
        let tag = crate::keyspace::subject_tag(&self.pseudonyms, &key.subject);
        crate::keyspace::record(&self.pseudonyms, &tag, key)
    }

    /// Seals `value` as record `key`: returns `(storage key, record value)` as a vault
    /// would store them (docs/FORMAT.md "Record value"). Fails like [`crate::Vault::put`] on input.
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        key: &RecordKey,
        value: &T,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        key.validate()?;
        let fields = split_fields(value)?;
        let sk = self.storage_key(key);
        let bind = Binding {
            vault_id: &self.vault_id,
            storage_key: &sk,
            key,
            key_version: self.key_version,
        };
        let v = seal_record(&self.dek, &bind, 1, &fields);
        Ok((sk, v))
    }

    /// Opens a record value sealed by [`RecordSealer::seal`] for `key` stored under
    /// `storage_key`: the meta block, then the fields named in `want` (all when `None`),
    /// into `T`. Fails with [`Error::Integrity`] on any tampering.
    pub fn open<T: DeserializeOwned>(
        &self,
        key: &RecordKey,
        storage_key: &[u8],
        bytes: &[u8],
        want: Option<&[&str]>,
    ) -> Result<T> {
        let sealed = parse_record(bytes)?;
        if sealed.key_version != self.key_version {
            return Err(Error::UnknownKeyVersion(sealed.key_version));
        }
        let bind = Binding {
            vault_id: &self.vault_id,
            storage_key,
            key,
            key_version: sealed.key_version,
        };
        let meta = sealed.open_meta(&self.dek, &bind)?;
        if meta.collection != key.collection || meta.record_id != key.record_id {
            return Err(Error::integrity(
                Structure::RecordMeta,
                "ids do not match the record key",
            ));
        }
        // As a vault read does: every field decrypted in place into one output buffer.
        let (text, _) = sealed.open_json(&self.dek, &bind, &meta, want)?;
        from_json(&text)
    }
}

/// An access-log appender the way a vault appends: the commit protocol
/// ([`crate::commit::Committer`]) over a fresh memory record store and `log`, with a
/// real entry sealer (AES-256-GCM bound to the sequence number) and chain keys derived
/// from a random vault secret. `benches/merkle.rs` appends through it with and without
/// the Merkle tree. Not API (see the module docs).
pub struct EntryAppender {
    committer: crate::commit::Committer,
    entry: crate::audit::PendingEntry,
}

impl EntryAppender {
    /// Starts an empty log on `log` with one entry (as a new vault starts with its create
    /// entry).
    ///
    /// Errors: the log is not empty, or its first durable write fails.
    pub fn new(
        vault_id: crate::VaultId,
        log: std::sync::Arc<dyn crate::logstore::LogStore>,
    ) -> Result<Self> {
        let mut secret = [0u8; 32];
        crate::crypto::random_bytes(&mut secret);
        let secret = SecretKey::from_bytes(secret);
        let parts = crate::commit::Parts {
            vault_id,
            keys: crate::commit::CommitKeys::derive(&vault_id, &secret),
            sealer: std::sync::Arc::new(crate::audit::AuditLog::new(vault_id, &secret)),
            records: std::sync::Arc::new(crate::storage::MemoryStorage::new()),
            log,
            excluded: crate::keyspace::outside_digest,
        };
        let ctx =
            crate::AccessContext::new("dr-bench", crate::Purpose::Care).with_role("physician");
        let mut entry =
            crate::audit::PendingEntry::new(&ctx, crate::Action::Read, crate::Outcome::Ok);
        entry.note = "Observation/obs-000123".to_owned();
        Ok(EntryAppender {
            committer: crate::commit::Committer::create(parts, vec![entry.body()])?,
            entry,
        })
    }

    /// Appends one read's entry (no record change, no fdatasync: a `Background`
    /// commit); returns its sequence number.
    pub fn append(&self) -> Result<u64> {
        Ok(self
            .committer
            .commit(crate::storage::WriteBatch::new(), vec![self.entry.body()])?
            .first)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_open_roundtrip_and_binding() {
        let s = RecordSealer::new();
        let key = RecordKey::new("p1", "Observation", "o1");
        let v = json!({"code": "85354-9", "value": 120, "note": "x"});
        let (sk, bytes) = s.seal(&key, &v).unwrap();
        assert_eq!(sk.len(), 33);
        let all: serde_json::Value = s.open(&key, &sk, &bytes, None).unwrap();
        assert_eq!(all, v);
        let one: serde_json::Value = s.open(&key, &sk, &bytes, Some(&["value"])).unwrap();
        assert_eq!(one, json!({"value": 120}));
        let other = RecordKey::new("p1", "Observation", "o2");
        let r: Result<serde_json::Value> = s.open(&other, &sk, &bytes, None);
        assert!(matches!(r, Err(Error::Integrity { .. })));
    }
}
