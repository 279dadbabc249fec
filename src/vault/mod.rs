//! The façade: the only way into a vault. Every data-touching call takes an
//! [`AccessContext`] and leaves exactly one access-log entry, committed in the same atomic
//! batch as the change it records; a read's entry is appended before its plaintext is
//! returned, and a read whose entry cannot be appended returns nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::audit::{Action, AuditLog};
use crate::commit::{Committer, Flusher};
use crate::context::{AccessContext, Purpose};
use crate::crypto::{KdfParams, MacKey, RootKey, SecretKey};
use crate::error::Result;
use crate::header::Header;
use crate::keyring::{Keyring, SubjectTag};
use crate::keyspace;
use crate::record::RecordKey;
use crate::storage::{SledOptions, Storage};

/// The actor recorded for opening and creating a vault when the caller names none.
pub const SYSTEM_ACTOR: &str = "medvault";
/// Default bound on messages sealed under one data key before it is rotated on the next
/// write: 2^28, one sixteenth of the 2^32 random-nonce bound of NIST SP 800-38D §8.3.
pub const DEFAULT_DEK_MESSAGE_BOUND: u64 = 1 << 28;

/// When a committed operation is on disk. See SECURITY.md "Durability".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit, reads' log entries included, is flushed (fsync) before the call
    /// returns. Concurrent commits share one flush (group commit).
    Every,
    /// Writes, deletes, erasures and key operations are flushed before the call returns;
    /// a read's log entry is appended before the read returns and reaches disk with the
    /// next flush (the next write, [`Vault::sync`], or sled's background flush within
    /// `flush_every_ms`, 500 ms by default).
    #[default]
    Writes,
    /// Nothing is flushed by a call: sled's background flush (every `flush_every_ms`) or
    /// [`Vault::sync`] makes commits durable. Each commit stays atomic.
    Background,
}

/// Options of [`Vault::create_with`] and [`Vault::open_with`].
#[derive(Clone, Debug)]
pub struct VaultOptions {
    /// Argon2id parameters for a passphrase at `create` (ignored at open: the header's
    /// parameters are used). Default: RFC 9106's second recommendation.
    pub kdf: KdfParams,
    /// When commits are flushed.
    pub durability: Durability,
    /// Memory budget, in bytes, of the cache of unwrapped subject keys (least recently
    /// used subjects are evicted first; evicted keys are zeroized when no call uses them
    /// any more). Default [`crate::DEFAULT_KEY_CACHE_BYTES`] (256 MiB: every subject of a
    /// 100,000-patient clinic, about 2.3 KB each with one data-key version); values
    /// under 32 KiB are raised to 32 KiB. A subject missing from the cache costs a
    /// storage read and the unwrapping of its keys (AES-256-GCM opens and key
    /// schedules) on its next use.
    pub key_cache_bytes: usize,
    /// sled tuning (page cache, background flush).
    pub sled: SledOptions,
    /// Messages sealed under a data key after which the next write rotates it.
    pub dek_message_bound: u64,
    /// Who opens or creates the vault, recorded in the `open`/`create` log entry.
    pub opener: AccessContext,
    /// Purge the storage after each erasure ([`Vault::purge`]), so that no vault file
    /// keeps the erased subject's ciphertexts or wrapped keys. Costs a rewrite of the
    /// whole database per erasure; turn off to erase many subjects, then purge once.
    pub purge_after_erase: bool,
    /// An access policy to install at `create` (version 1, logged as a policy change by
    /// `opener`). `None` (the default): no policy; every access is allowed and logged,
    /// until [`Vault::set_policy`] installs one. Ignored at open.
    pub policy: Option<crate::policy::Policy>,
    /// Budget on the Argon2id work a header read at open may ask for, in KiB-passes
    /// (memory in KiB x passes, [`KdfParams::work`]). Default
    /// [`crate::DEFAULT_MAX_KDF_WORK`] (four times the default cost); a header over it
    /// fails with [`crate::Error::ExcessiveWork`] before any work. Raise it to open a
    /// vault created with a higher cost on purpose. The hard caps of
    /// [`KdfParams::check`] apply whatever the budget.
    pub max_kdf_work: u64,
    /// Automatic retention: at every open of a vault in a directory, prune the access log
    /// as [`Vault::prune_log`] does (as the opener; under a policy it needs the `audit`
    /// capability). A prune that fails does not fail the open: it becomes one of
    /// [`Vault::warnings`]. Default off (a prune reads the whole log).
    pub prune_on_open: bool,
    /// Subject entries rewrapped per atomic batch by [`Vault::rotate_vault_kek`] (one
    /// scan and one commit each). Default [`crate::KEK_REWRAP_BATCH`]; 0 counts as 1.
    pub kek_rewrap_batch: usize,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            kdf: KdfParams::default(),
            durability: Durability::default(),
            key_cache_bytes: crate::keyring::DEFAULT_KEY_CACHE_BYTES,
            sled: SledOptions::default(),
            dek_message_bound: DEFAULT_DEK_MESSAGE_BOUND,
            opener: AccessContext::new(SYSTEM_ACTOR, Purpose::Maintenance),
            purge_after_erase: true,
            policy: None,
            max_kdf_work: crate::crypto::DEFAULT_MAX_KDF_WORK,
            prune_on_open: false,
            kek_rewrap_batch: rotation::KEK_REWRAP_BATCH,
        }
    }
}

/// Counts describing a vault, from [`Vault::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Subjects holding keys.
    pub subjects: u64,
    /// Records.
    pub records: u64,
    /// Access-log entries.
    pub log_entries: u64,
    /// Bytes on disk (0 for memory storage).
    pub disk_bytes: u64,
    /// Current root-key generation.
    pub root_generation: u32,
    /// Current vault key-encryption-key generation.
    pub kek_generation: u32,
}

/// Filter of [`Vault::audit_query`]; every `Some` must match.
///
/// ```
/// # fn main() -> medvault::Result<()> {
/// use medvault::{AccessContext, Action, KeySource, LogQuery, Purpose, RecordKey, Vault};
/// let v = Vault::create_in(
///     Box::new(medvault::storage::MemoryStorage::new()),
///     KeySource::raw([1; 32]),
///     medvault::VaultOptions::default(),
/// )?;
/// let nurse = AccessContext::new("nurse-42", Purpose::Care);
/// let key = RecordKey::new("p1", "Observation", "bp-1");
/// v.put(&nurse, &key, &serde_json::json!({"value": 120}))?;
/// let _: serde_json::Value = v.get(&nurse, &key)?;
/// // Who read patient p1's records? (The query is itself logged.)
/// let dpo = AccessContext::new("dpo-1", Purpose::PatientRequest);
/// let q = LogQuery {
///     subject: Some("p1".into()),
///     action: Some(Action::Read),
///     ..LogQuery::default()
/// };
/// let reads = v.audit_query(&dpo, &q)?;
/// assert_eq!(reads.len(), 1);
/// assert_eq!(reads[0].actor, "nurse-42");
/// let target = reads[0].target.as_ref().and_then(|t| t.record_id.as_deref());
/// assert_eq!(target, Some("bp-1"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Only entries about this subject (matched by pseudonym).
    pub subject: Option<String>,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries with this purpose.
    pub purpose: Option<Purpose>,
    /// Only entries with this action.
    pub action: Option<Action>,
    /// Only entries at or after this time (ms since the Unix epoch, UTC).
    pub since_ms: Option<u64>,
    /// Only entries before this time (ms since the Unix epoch, UTC).
    pub until_ms: Option<u64>,
}

/// An open vault. `Send + Sync`: share it between threads behind an `Arc`.
///
/// ```
/// # fn main() -> medvault::Result<()> {
/// use medvault::{AccessContext, KeySource, Purpose, RecordKey, Vault};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("clinic");
/// let key = || KeySource::raw([9; 32]); // e.g. from a KMS
/// {
///     let v = Vault::create(&path, key(), medvault::danger::insecure_kdf_params())?;
///     let ctx = AccessContext::new("clerk-1", Purpose::Administration);
///     let k = RecordKey::new("p1", "Patient", "p1");
///     v.put(&ctx, &k, &serde_json::json!({"resourceType": "Patient", "id": "p1"}))?;
/// } // dropped: flushed and unlocked
/// let v = Vault::open(&path, key())?;
/// let ctx = AccessContext::new("nurse-42", Purpose::Care);
/// assert_eq!(v.subjects(&ctx)?, vec!["p1".to_owned()]);
/// v.verify(&ctx, None)?; // the access log is intact
/// # Ok(()) }
/// ```
pub struct Vault {
    /// Copied out of the header: it never changes, and every seal needs it (no lock).
    vault_id: crate::VaultId,
    storage: Arc<dyn Storage>,
    header: Mutex<Header>,
    root: Mutex<RootKey>,
    vault_secret: SecretKey,
    pseudonyms: MacKey,
    keyring: Keyring,
    log: Arc<AuditLog>,
    /// The commit protocol over the record store and the log store
    /// (docs/DESIGN-storage.md). Drops after the flusher (field order), which syncs.
    committer: Arc<Committer>,
    /// The group commit on a timer (`flush_every_ms`): `Background`'s flush, and what
    /// carries reads' entries to disk under `Writes`.
    _flusher: Option<Flusher>,
    options: VaultOptions,
    /// Held while a batch is prepared and applied: orders key entries and log entries.
    commit_lock: Mutex<()>,
    /// Held by key operations (rotations, retirement): one at a time.
    key_op_lock: Mutex<()>,
    /// Held while an index is added (built) or dropped: one at a time.
    index_op_lock: Mutex<()>,
    /// Held by a backup and a prune: a prune never drops a segment a backup copies.
    maintenance_lock: Mutex<()>,
    /// Blind-index definitions (docs/INDEXES.md).
    indexes: crate::index::Registry,
    /// The access policy in force (docs/POLICY.md).
    policy: crate::policy::PolicyCell,
    path: Option<PathBuf>,
    /// What open found amiss but did not refuse (see [`Vault::warnings`]).
    warnings: Vec<String>,
}

mod audit;
mod backup;
mod commit;
mod erasure;
mod find;
mod governance;
mod open;
mod records;
mod research;
mod retention;
mod rotation;
mod signing;
pub use backup::{
    BackupReport, ErasureLedger, LedgerEntry, MANIFEST_FILE, RECORDS_FILE, RestoreOptions,
    RestoreReport, check_destination, restore_partial_dir,
};
pub use erasure::ErasedSubject;
pub use records::{SubjectRecords, WriteOutcome};
pub use retention::{DEFAULT_RETENTION_DAYS, LegalHold, PruneReport};
pub use rotation::{
    KEK_REWRAP_BATCH, Progress, RotateAllPhase, RotateAllReport, RotationReport, RotationScope,
};
pub use signing::{CheckpointKey, SignedCheckpoint};

impl Vault {
    /// The vault's random 128-bit id.
    pub fn vault_id(&self) -> crate::VaultId {
        self.vault_id
    }

    /// What [`Vault::open`] found amiss without refusing to open, one sentence each, for
    /// the caller to show (the CLI prints them on stderr): a key rotation that was
    /// interrupted and must be resumed (which command resumes it), and every entry of the
    /// vault directory that group or others may access (the directory, `header`,
    /// `lock`, `db/`), with its mode and the fix. Modes are left as found: the operator
    /// decides. Empty for a vault with no pending rotation whose files are owner-only.
    ///
    /// ```
    /// # fn main() -> medvault::Result<()> {
    /// use medvault::{KeySource, Vault};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("v");
    /// let key = || KeySource::raw([7; 32]);
    /// drop(Vault::create(&path, key(), medvault::danger::insecure_kdf_params())?);
    /// // A fresh vault is owner-only whatever the umask.
    /// assert!(Vault::open(&path, key())?.warnings().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The directory of a sled-backed vault.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The keyed pseudonym of a subject (docs/FORMAT.md "Storage key space").
    pub(crate) fn subject_tag(&self, subject: &str) -> SubjectTag {
        keyspace::subject_tag(&self.pseudonyms, subject)
    }

    /// The storage key of record `key` of the subject tagged `tag`.
    fn record_storage_key(&self, tag: &SubjectTag, key: &RecordKey) -> Vec<u8> {
        keyspace::record(&self.pseudonyms, tag, key)
    }

    fn read_fn(&self) -> impl Fn(&[u8]) -> Result<Option<Vec<u8>>> + '_ {
        |k| Ok(self.storage.get(k)?)
    }

    /// Counts and sizes (no plaintext; not logged).
    pub fn stats(&self) -> Result<Stats> {
        // One lock: two temporaries of the same statement would deadlock.
        let (root_generation, kek_generation) = {
            let h = lock(&self.header);
            (h.root.generation, h.kek.generation)
        };
        let mut s = Stats {
            log_entries: self.committer.end(),
            disk_bytes: self.storage.size_on_disk()? + self.committer.log().size_on_disk()?,
            root_generation,
            kek_generation,
            ..Stats::default()
        };
        let (start, end) = keyspace::prefix_range(keyspace::SUBJECT_PREFIX);
        for item in self.storage.scan(&start, Some(&end)) {
            item?;
            s.subjects += 1;
        }
        let (start, end) = keyspace::prefix_range(keyspace::RECORD_PREFIX);
        for item in self.storage.scan(&start, Some(&end)) {
            item?;
            s.records += 1;
        }
        Ok(s)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
