//! The façade: the only way into a vault. Every data-touching call takes an
//! [`AccessContext`] and leaves exactly one access-log entry, committed in the same atomic
//! batch as the change it records; a read's entry is appended before its plaintext is
//! returned, and a read whose entry cannot be appended returns nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::{
    Action, AuditLog, Checkpoint, LogEntry, Outcome, PendingEntry, Target, open_target, seal_target,
};
use crate::context::{AccessContext, Purpose};
use crate::crypto::{KdfParams, KeySource, MacKey, RootKey, SecretKey, derive_key};
use crate::error::{Error, Result};
use crate::header::Header;
use crate::keyring::{Keyring, SubjectKeys, SubjectTag, entry_key};
use crate::record::{
    Binding, PlainField, RecordKey, join_fields, parse_record, seal_record, split_fields,
    validate_id,
};
use crate::storage::{DirLock, SledOptions, SledStorage, Storage, WriteBatch, prefix_end};

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
    /// Subjects whose unwrapped keys are cached (LRU-ish; evicted keys are zeroized).
    pub key_cache_subjects: usize,
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
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            kdf: KdfParams::default(),
            durability: Durability::default(),
            key_cache_subjects: 4096,
            sled: SledOptions::default(),
            dek_message_bound: DEFAULT_DEK_MESSAGE_BOUND,
            opener: AccessContext::new(SYSTEM_ACTOR, Purpose::Maintenance),
            purge_after_erase: true,
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
}

/// Filter of [`Vault::audit_query`]; every `Some` must match.
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
pub struct Vault {
    /// Copied out of the header: it never changes, and every seal needs it (no lock).
    vault_id: [u8; 16],
    storage: Box<dyn Storage>,
    header: Mutex<Header>,
    root: Mutex<RootKey>,
    vault_secret: SecretKey,
    pseudonyms: MacKey,
    keyring: Keyring,
    log: AuditLog,
    options: VaultOptions,
    /// Held while a batch is prepared and applied: orders key entries and log entries.
    commit_lock: Mutex<()>,
    /// Held by key operations (rotations, retirement): one at a time.
    key_op_lock: Mutex<()>,
    /// Held while an index is added (built) or dropped: one at a time.
    index_op_lock: Mutex<()>,
    /// Blind-index definitions (docs/INDEXES.md).
    indexes: crate::index::Registry,
    applied: AtomicU64,
    durable: AtomicU64,
    flush_lock: Mutex<()>,
    path: Option<PathBuf>,
}

mod find;
mod rotation;
pub use rotation::{Progress, RotationReport, RotationScope};

const RECORD_PREFIX: u8 = b'r';
/// Present from an erasure until the purge that follows it has completed.
const PURGE_PENDING: &[u8] = b"p";
const SUBJECT_PREFIX: u8 = b'k';

impl Vault {
    /// Creates a vault in directory `path` (created if missing; must not hold a vault)
    /// with the default options but for `kdf`. See [`Vault::create_with`].
    pub fn create(path: impl AsRef<Path>, key: KeySource, kdf: KdfParams) -> Result<Vault> {
        Vault::create_with(
            path,
            key,
            VaultOptions {
                kdf,
                ..VaultOptions::default()
            },
        )
    }

    /// Creates a vault on sled in directory `path`: a random 128-bit vault_id, the header
    /// (docs/FORMAT.md §2) and a first access-log entry. Fails with
    /// [`Error::AlreadyExists`] when `path` holds a vault, [`Error::ExcessiveWork`] or
    /// [`Error::InvalidInput`] for bad KDF parameters.
    pub fn create_with(
        path: impl AsRef<Path>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let path = path.as_ref();
        std::fs::create_dir_all(path)?;
        if SledStorage::read_header_at(path)?.is_some() {
            return Err(Error::AlreadyExists);
        }
        let storage = SledStorage::open(path, &options.sled)?;
        let mut v = Vault::create_in(Box::new(storage), key, options)?;
        v.path = Some(path.to_path_buf());
        Ok(v)
    }

    /// Creates a vault in any [`Storage`] (e.g. [`crate::storage::MemoryStorage`]).
    /// What a create interrupted before writing its header left behind is cleared; a
    /// store without a header but with records or keys (a vault whose header was lost)
    /// fails with [`Error::AlreadyExists`] and is left as it is.
    pub fn create_in(
        storage: Box<dyn Storage>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        if storage.read_header()?.is_some() {
            return Err(Error::AlreadyExists);
        }
        options.opener.validate()?;
        clear_interrupted_create(storage.as_ref())?;
        let (header, unlocked) = Header::create(&key, options.kdf)?;
        let bytes = header.encode(&unlocked.root);
        let opener = options.opener.clone();
        let v = Vault::assemble(
            storage,
            header,
            unlocked.root,
            None,
            unlocked.vault_secret,
            options,
        )?;
        // The first log entry (and so the head) exists before the header: a header
        // without a head means the log was deleted.
        let mut e = PendingEntry::new(&opener, Action::Create, Outcome::Ok);
        e.note = format!("format {}", crate::header::HEADER_VERSION);
        v.commit(WriteBatch::new(), vec![e], &[], true)?;
        v.storage.flush()?;
        v.storage.write_header(&bytes)?;
        Ok(v)
    }

    /// Opens the vault in directory `path` with default options.
    /// See [`Vault::open_with`].
    pub fn open(path: impl AsRef<Path>, key: KeySource) -> Result<Vault> {
        Vault::open_with(path, key, VaultOptions::default())
    }

    /// Opens the vault in directory `path`. The header is read and the key checked
    /// before the database is opened, so a wrong key changes no file. Fails with
    /// [`Error::NotFound`] (no vault there), [`Error::WrongKey`], [`Error::Integrity`]
    /// (corrupted header, missing access log), [`Error::ExcessiveWork`].
    pub fn open_with(
        path: impl AsRef<Path>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let path = path.as_ref();
        if SledStorage::read_header_at(path)?.is_none() {
            return Err(Error::NotFound);
        }
        // Lock first, then read the header: a root-key rotation in another handle holds
        // the lock until its final header is written.
        let lock = DirLock::acquire(path)?;
        let bytes = SledStorage::read_header_at(path)?.ok_or(Error::NotFound)?;
        let (header, unlocked) = Header::unlock(&bytes, &key)?;
        let storage = SledStorage::open_locked(path, lock, &options.sled)?;
        let mut v = Vault::finish_open(Box::new(storage), header, unlocked, options)?;
        v.path = Some(path.to_path_buf());
        Ok(v)
    }

    /// Opens a vault held in any [`Storage`].
    pub fn open_in(
        storage: Box<dyn Storage>,
        key: KeySource,
        options: VaultOptions,
    ) -> Result<Vault> {
        let bytes = storage.read_header()?.ok_or(Error::NotFound)?;
        let (header, unlocked) = Header::unlock(&bytes, &key)?;
        Vault::finish_open(storage, header, unlocked, options)
    }

    fn finish_open(
        storage: Box<dyn Storage>,
        header: Header,
        unlocked: crate::header::Unlocked,
        options: VaultOptions,
    ) -> Result<Vault> {
        options.opener.validate()?;
        if storage.get(crate::audit::HEAD_KEY)?.is_none() {
            return Err(Error::integrity(
                "access-log head missing: the log was deleted",
            ));
        }
        let opener = options.opener.clone();
        let v = Vault::assemble(
            storage,
            header,
            unlocked.root,
            unlocked.next_root,
            unlocked.vault_secret,
            options,
        )?;
        v.commit(
            WriteBatch::new(),
            vec![PendingEntry::new(&opener, Action::Open, Outcome::Ok)],
            &[],
            false,
        )?;
        // An erasure whose purge did not complete (crash, kill): finish it now, so the
        // erased subject's bytes do not outlive the interruption.
        if v.storage.get(PURGE_PENDING)?.is_some() && v.options.purge_after_erase {
            v.purge(&opener)?;
        }
        Ok(v)
    }

    fn assemble(
        storage: Box<dyn Storage>,
        header: Header,
        root: RootKey,
        next_root: Option<RootKey>,
        vault_secret: SecretKey,
        options: VaultOptions,
    ) -> Result<Vault> {
        let next = match (&next_root, &header.pending) {
            (Some(k), Some(p)) => Some((k, p.next.generation)),
            _ => None,
        };
        let keyring = Keyring::new(
            header.vault_id,
            &root,
            header.root.generation,
            next,
            options.key_cache_subjects,
        );
        let log = AuditLog::open(header.vault_id, &vault_secret, storage.as_ref())?;
        let pseudonyms = MacKey::new(&derive_key(&vault_secret, &[b"medvault/v1/pseudonym"]));
        let indexes =
            crate::index::Registry::load(storage.as_ref(), &vault_secret, header.vault_id)?;
        Ok(Vault {
            vault_id: header.vault_id,
            storage,
            header: Mutex::new(header),
            root: Mutex::new(root),
            vault_secret,
            pseudonyms,
            keyring,
            log,
            options,
            commit_lock: Mutex::new(()),
            key_op_lock: Mutex::new(()),
            index_op_lock: Mutex::new(()),
            indexes,
            applied: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            path: None,
        })
    }

    /// The vault's random 128-bit id.
    pub fn vault_id(&self) -> [u8; 16] {
        self.vault_id
    }

    /// The directory of a sled-backed vault.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    // ----- pseudonyms and storage keys -------------------------------------------------

    /// The keyed pseudonym of a subject: HMAC-SHA256(pseudonym key, "subject", id)[..16].
    pub(crate) fn subject_tag(&self, subject: &str) -> SubjectTag {
        let m = self.pseudonyms.mac_parts(&[b"subject", subject.as_bytes()]);
        let mut t = [0u8; 16];
        t.copy_from_slice(&m[..16]);
        t
    }

    fn record_storage_key(&self, tag: &SubjectTag, key: &RecordKey) -> Vec<u8> {
        let m = self.pseudonyms.mac_parts(&[
            b"record",
            key.subject.as_bytes(),
            key.collection.as_bytes(),
            key.record_id.as_bytes(),
        ]);
        let mut k = Vec::with_capacity(33);
        k.push(RECORD_PREFIX);
        k.extend_from_slice(tag);
        k.extend_from_slice(&m[..16]);
        k
    }

    fn subject_records_prefix(tag: &SubjectTag) -> Vec<u8> {
        let mut p = Vec::with_capacity(17);
        p.push(RECORD_PREFIX);
        p.extend_from_slice(tag);
        p
    }

    fn read_fn(&self) -> impl Fn(&[u8]) -> Result<Option<Vec<u8>>> + '_ {
        |k| Ok(self.storage.get(k)?)
    }

    // ----- commit ------------------------------------------------------------------------

    /// Applies `batch` with `entries` and the key entries of `subjects` that changed,
    /// atomically; then flushes per the durability option (`is_write` marks a change).
    fn commit(
        &self,
        batch: WriteBatch,
        entries: Vec<PendingEntry>,
        subjects: &[&Arc<SubjectKeys>],
        is_write: bool,
    ) -> Result<u64> {
        self.commit_checked(batch, entries, subjects, &[], is_write)
    }

    /// [`Vault::commit`], also checking under the commit lock that every `(subject, key
    /// version)` in `uses` still exists: a data-key rotation may have retired a version
    /// between sealing and commit. Fails with [`Error::UnknownKeyVersion`] then.
    fn commit_checked(
        &self,
        batch: WriteBatch,
        entries: Vec<PendingEntry>,
        subjects: &[&Arc<SubjectKeys>],
        uses: &[(SubjectTag, u32)],
        is_write: bool,
    ) -> Result<u64> {
        self.commit_with(batch, entries, subjects, uses, is_write, |_| Ok(()))
    }

    /// The one commit path. `prepare` runs under the commit lock, before the batch is
    /// applied, for writes that must see storage unchanged by concurrent commits (e.g. a
    /// re-encryption that must not overwrite a newer record).
    fn commit_with(
        &self,
        mut batch: WriteBatch,
        entries: Vec<PendingEntry>,
        subjects: &[&Arc<SubjectKeys>],
        uses: &[(SubjectTag, u32)],
        is_write: bool,
        prepare: impl FnOnce(&mut WriteBatch) -> Result<()>,
    ) -> Result<u64> {
        let seq;
        {
            let _g = lock(&self.commit_lock);
            prepare(&mut batch)?;
            for (tag, v) in uses {
                if let Some(k) = subjects.iter().find(|k| k.tag == *tag)
                    && !k.has_version(*v)
                {
                    return Err(Error::UnknownKeyVersion(*v));
                }
            }
            let mut written = Vec::new();
            for k in subjects {
                let st = k.lock();
                if st.erased {
                    return Err(Error::NotFound);
                }
                let dirty = st.dirty;
                drop(st);
                if dirty {
                    batch.put(entry_key(&k.tag), self.keyring.encode_entry(k));
                    written.push(*k);
                }
            }
            match self.log.commit(self.storage.as_ref(), batch, &entries) {
                Ok(s) => seq = s,
                Err(e) => {
                    for k in written {
                        k.lock().dirty = true;
                    }
                    return Err(e);
                }
            }
            self.applied.fetch_add(1, Ordering::SeqCst);
        }
        let flush = match self.options.durability {
            Durability::Every => true,
            Durability::Writes => is_write,
            Durability::Background => false,
        };
        if flush {
            self.group_flush()?;
        }
        Ok(seq)
    }

    /// Group commit: one flush covers every batch applied before it started.
    fn group_flush(&self) -> Result<()> {
        let ticket = self.applied.load(Ordering::SeqCst);
        let _f = lock(&self.flush_lock);
        if self.durable.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let target = self.applied.load(Ordering::SeqCst);
        self.storage.flush()?;
        self.durable.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// Flushes every committed operation to disk (fsync). Returns when durable.
    pub fn sync(&self) -> Result<()> {
        self.applied.fetch_add(1, Ordering::SeqCst);
        self.group_flush()
    }

    /// Builds a log entry naming `target` (sealed under the subject's audit key).
    fn entry_for(
        &self,
        ctx: &AccessContext,
        action: Action,
        outcome: Outcome,
        keys: Option<&SubjectKeys>,
        tag: Option<SubjectTag>,
        target: Option<&Target>,
    ) -> PendingEntry {
        let mut e = PendingEntry::new(ctx, action, outcome);
        match (keys, target) {
            (Some(k), Some(t)) => {
                k.count_audit(1);
                let sealed = seal_target(&k.audit, &self.vault_id(), &k.tag, t);
                e.subject = Some((k.tag, sealed));
            }
            _ => e.subject = tag.map(|t| (t, Vec::new())),
        }
        e
    }

    /// Logs a failed or denied attempt (best effort: the caller's error is what matters).
    fn log_failure<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        tag: Option<SubjectTag>,
        r: &Result<T>,
    ) {
        let e = self.entry_for(ctx, action, Outcome::of(r), None, tag, None);
        let _ = self.commit(WriteBatch::new(), vec![e], &[], false);
    }

    /// [`Vault::guarded`] for an operation on one record: a failure is logged naming the
    /// record (sealed under the subject's audit key when the subject exists), so a
    /// failed or denied attempt on a patient's file shows up in that patient's trail.
    fn guarded_record<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        key: &RecordKey,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let r = ctx.validate().and_then(|_| f());
        if r.is_err() {
            let tag = self.subject_tag(&key.subject);
            let keys = if key.validate().is_ok() {
                self.keyring.load(&tag, self.read_fn()).ok().flatten()
            } else {
                None
            };
            let target = Target {
                subject: key.subject.clone(),
                collection: Some(key.collection.clone()),
                record_id: Some(key.record_id.clone()),
                fields: Vec::new(),
            };
            let e = self.entry_for(
                ctx,
                action,
                Outcome::of(&r),
                keys.as_deref(),
                Some(tag),
                Some(&target),
            );
            let subs: Vec<&Arc<SubjectKeys>> = keys.iter().collect();
            let _ = self.commit(WriteBatch::new(), vec![e], &subs, false);
        }
        r
    }

    /// Validates the context and runs `f`; a failure before commit is logged.
    fn guarded<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        tag: Option<SubjectTag>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let r = ctx.validate().and_then(|_| f());
        if r.is_err() {
            self.log_failure(ctx, action, tag, &r);
        }
        r
    }

    // ----- writes ------------------------------------------------------------------------

    /// Stores `value` as record `key`, replacing any previous version. `T`'s top level
    /// must serialize to a map or struct; each top-level field is sealed separately with
    /// AES-256-GCM under the subject's current data key (created on the subject's first
    /// write). Logged as `write`. Fails with [`Error::InvalidInput`] (ids too long or
    /// empty, not a map, over 64 MiB), [`Error::AccessDenied`], [`Error::Storage`].
    pub fn put<T: Serialize + ?Sized>(
        &self,
        ctx: &AccessContext,
        key: &RecordKey,
        value: &T,
    ) -> Result<()> {
        self.write_records(ctx, std::iter::once((key, value)), Action::Write)
            .map(|_| ())
    }

    /// Stores many records in one atomic commit (all or none), each with its own log
    /// entry (`action`: [`Action::Write`] or [`Action::Import`]). Returns the number of
    /// records written. This is the bulk path of `import`.
    pub fn put_many<'a, T: Serialize + ?Sized + 'a>(
        &self,
        ctx: &AccessContext,
        items: impl IntoIterator<Item = (&'a RecordKey, &'a T)>,
        action: Action,
    ) -> Result<usize> {
        if !matches!(action, Action::Write | Action::Import) {
            return Err(Error::invalid("put_many logs a write or an import"));
        }
        self.write_records(ctx, items, action)
    }

    fn write_records<'a, T: Serialize + ?Sized + 'a>(
        &self,
        ctx: &AccessContext,
        items: impl IntoIterator<Item = (&'a RecordKey, &'a T)>,
        action: Action,
    ) -> Result<usize> {
        let items: Vec<(&RecordKey, &T)> = items.into_iter().collect();
        // A concurrent data-key rotation may retire the version a record was sealed
        // under before the commit; the commit refuses it and the records are resealed.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.write_records_once(ctx, &items, action) {
                Err(Error::UnknownKeyVersion(_)) if attempts < 4 => continue,
                r => {
                    if r.is_err() {
                        self.log_failure(ctx, action, None, &r);
                    }
                    return r;
                }
            }
        }
    }

    fn write_records_once<T: Serialize + ?Sized>(
        &self,
        ctx: &AccessContext,
        items: &[(&RecordKey, &T)],
        action: Action,
    ) -> Result<usize> {
        ctx.validate()?;
        let mut batch = WriteBatch::new();
        let mut entries = Vec::with_capacity(items.len());
        let mut subjects: Vec<Arc<SubjectKeys>> = Vec::new();
        let mut uses: Vec<(SubjectTag, u32)> = Vec::new();
        let vid = self.vault_id();
        let snap = self.indexes.snapshot();
        let mut staged = Vec::with_capacity(items.len());
        for (key, value) in items {
            key.validate()?;
            let fields = split_fields(*value)?;
            let tag = self.subject_tag(&key.subject);
            let keys = match subjects.iter().find(|k| k.tag == tag) {
                Some(k) => k.clone(),
                None => {
                    let k = self
                        .keyring
                        .load_or_create(&tag, &key.subject, self.read_fn())?;
                    if k.current_usage() > self.options.dek_message_bound {
                        self.keyring.add_version(&k)?;
                    }
                    subjects.push(k.clone());
                    k
                }
            };
            let dek = keys.current_dek(fields.len() as u64 + 1)?;
            if !uses.contains(&(tag, dek.version)) {
                uses.push((tag, dek.version));
            }
            let sk = self.record_storage_key(&tag, key);
            let bind = Binding {
                vault_id: &vid,
                storage_key: &sk,
                key,
                key_version: dek.version,
            };
            batch.put(
                sk.clone(),
                seal_record(&dek.aead, &bind, self.log.len(), &fields),
            );
            let target = Target {
                subject: key.subject.clone(),
                collection: Some(key.collection.clone()),
                record_id: Some(key.record_id.clone()),
                fields: fields.iter().map(|f| f.name.clone()).collect(),
            };
            staged.push(self.stage_index(&snap, sk, &key.collection, fields)?);
            entries.push(self.entry_for(
                ctx,
                action,
                Outcome::Ok,
                Some(&keys),
                None,
                Some(&target),
            ));
        }
        let n = entries.len();
        if n == 0 {
            return Ok(0);
        }
        let refs: Vec<&Arc<SubjectKeys>> = subjects.iter().collect();
        // Index entries are computed under the commit lock's view of the definitions (an
        // index added since the snapshot is applied too) and replace the old ones.
        self.commit_with(batch, entries, &refs, &uses, true, |b| {
            self.apply_index(&snap, &mut staged, b)
        })?;
        Ok(n)
    }

    /// Deletes record `key`. Logged as `delete`. Fails with [`Error::NotFound`] when
    /// there is no such record.
    pub fn delete(&self, ctx: &AccessContext, key: &RecordKey) -> Result<()> {
        let tag = self.subject_tag(&key.subject);
        let r = self.guarded_record(ctx, Action::Delete, key, || {
            key.validate()?;
            let sk = self.record_storage_key(&tag, key);
            if self.storage.get(&sk)?.is_none() {
                return Err(Error::NotFound);
            }
            let keys = self
                .keyring
                .load(&tag, self.read_fn())?
                .ok_or_else(|| Error::integrity("record without subject keys"))?;
            let mut batch = WriteBatch::new();
            batch.delete(sk.clone());
            let target = Target {
                subject: key.subject.clone(),
                collection: Some(key.collection.clone()),
                record_id: Some(key.record_id.clone()),
                fields: Vec::new(),
            };
            let e = self.entry_for(
                ctx,
                Action::Delete,
                Outcome::Ok,
                Some(&keys),
                None,
                Some(&target),
            );
            Ok((batch, e, keys, sk))
        })?;
        let (batch, e, keys, sk) = r;
        let res = self
            .commit_with(batch, vec![e], &[&keys], &[], true, |b| {
                // Under the commit lock: the entries of the version being deleted.
                crate::index::unindex(self.storage.as_ref(), &sk[1..], b)
            })
            .map(|_| ());
        if res.is_err() {
            self.log_failure(ctx, Action::Delete, Some(tag), &res);
        }
        res
    }

    /// Erases a subject (GDPR art. 17) by crypto-shredding: its data keys, audit key and
    /// every record are deleted in one atomic commit. Its access-log entries stay
    /// verifiable but name it only by its keyed pseudonym. Returns the number of records
    /// erased. Fails with [`Error::NotFound`] for an unknown subject.
    pub fn erase_subject(&self, ctx: &AccessContext, subject: &str) -> Result<u64> {
        let tag = self.subject_tag(subject);
        let r = self.guarded(ctx, Action::Erase, Some(tag), || {
            validate_id("subject", subject)?;
            let _g = lock(&self.commit_lock);
            let ek = entry_key(&tag);
            if self.storage.get(&ek)?.is_none() {
                return Err(Error::NotFound);
            }
            let mut batch = WriteBatch::new();
            let prefix = Self::subject_records_prefix(&tag);
            let end = prefix_end(&prefix);
            let mut n = 0u64;
            for item in self.storage.scan(&prefix, end.as_deref()) {
                let (k, _) = item?;
                batch.delete(k);
                n += 1;
            }
            crate::index::unindex_subject(self.storage.as_ref(), &tag, &mut batch)?;
            batch.delete(ek);
            // Until a purge has rewritten the database, sled's files still hold the
            // erased bytes: the marker makes the next open finish the job after a crash.
            batch.put(PURGE_PENDING.to_vec(), Vec::new());
            let mut e = PendingEntry::new(ctx, Action::Erase, Outcome::Ok);
            e.subject = Some((tag, Vec::new()));
            e.note = format!("records={n}");
            // No load may read the entry now and cache it after the erasure.
            let _loading = self.keyring.loading();
            let cached = self.keyring.cached(&tag);
            if let Some(k) = &cached {
                k.lock().erased = true;
            }
            if let Err(err) = self.log.commit(self.storage.as_ref(), batch, &[e]) {
                if let Some(k) = &cached {
                    k.lock().erased = false;
                }
                // A failed batch may still have been applied in part (a backend without
                // atomic batches, or a torn write): the subject entry may be gone from
                // storage. Drop the cached keys so the next use reloads them from
                // storage instead of writing records under keys no entry holds.
                self.keyring.evict(&tag);
                return Err(err);
            }
            self.applied.fetch_add(1, Ordering::SeqCst);
            self.keyring.evict(&tag);
            Ok(n)
        })?;
        self.group_flush()?;
        if self.options.purge_after_erase {
            self.purge_storage()?;
        }
        Ok(r)
    }

    /// Rewrites the database so that no vault file holds deleted or erased data any more
    /// (sled keeps removed values in its log segments until they are cleaned). Blocks
    /// every other call while it runs; O(size of the vault). Logged as `erase` with a
    /// note. See SECURITY.md for what remains outside the vault (backups, the disk).
    pub fn purge(&self, ctx: &AccessContext) -> Result<()> {
        self.guarded(ctx, Action::Erase, None, || self.purge_storage())?;
        let mut e = PendingEntry::new(ctx, Action::Erase, Outcome::Ok);
        e.note = "storage purged".into();
        self.commit(WriteBatch::new(), vec![e], &[], true)?;
        Ok(())
    }

    fn purge_storage(&self) -> Result<()> {
        let _g = lock(&self.commit_lock);
        self.storage.purge()?;
        let mut done = WriteBatch::new();
        done.delete(PURGE_PENDING.to_vec());
        self.storage.apply(done)?;
        self.storage.flush()?;
        Ok(())
    }

    // ----- reads -------------------------------------------------------------------------

    /// Reads record `key` whole into `T` (e.g. `serde_json::Value` or the caller's
    /// struct). Logged as `read`, naming every field, before the value is returned.
    /// Fails with [`Error::NotFound`], [`Error::Integrity`] (tampered or corrupted),
    /// [`Error::UnknownKeyVersion`], [`Error::AccessDenied`].
    pub fn get<T: DeserializeOwned>(&self, ctx: &AccessContext, key: &RecordKey) -> Result<T> {
        self.read_record(ctx, key, None)
    }

    /// Reads only the named top-level fields of record `key` (absent names are skipped)
    /// into `T`; the other fields are not decrypted. Logged as `read`, naming the fields
    /// returned.
    pub fn get_fields<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        key: &RecordKey,
        fields: &[&str],
    ) -> Result<T> {
        self.read_record(ctx, key, Some(fields))
    }

    fn read_record<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        key: &RecordKey,
        want: Option<&[&str]>,
    ) -> Result<T> {
        let tag = self.subject_tag(&key.subject);
        let (value, keys, names) = self.guarded_record(ctx, Action::Read, key, || {
            key.validate()?;
            let sk = self.record_storage_key(&tag, key);
            let mut attempts = 0;
            loop {
                attempts += 1;
                let bytes = self.storage.get(&sk)?.ok_or(Error::NotFound)?;
                let keys = self
                    .keyring
                    .load(&tag, self.read_fn())?
                    .ok_or_else(|| Error::integrity("record without subject keys"))?;
                match self.open_record(&keys, &sk, Some(key), &bytes, want) {
                    // A data-key rotation re-encrypted the record and retired the version
                    // between our two reads: read the record again.
                    Err(Error::UnknownKeyVersion(_)) if attempts < 4 => continue,
                    Err(e) => return Err(e),
                    Ok((fields, _)) => {
                        let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
                        let value: T = join_fields(&fields)?;
                        return Ok((value, keys, names));
                    }
                }
            }
        })?;
        let target = Target {
            subject: key.subject.clone(),
            collection: Some(key.collection.clone()),
            record_id: Some(key.record_id.clone()),
            fields: names,
        };
        let e = self.entry_for(
            ctx,
            Action::Read,
            Outcome::Ok,
            Some(&keys),
            None,
            Some(&target),
        );
        self.commit(WriteBatch::new(), vec![e], &[&keys], false)?;
        Ok(value)
    }

    /// Opens a stored record value: its meta block and the wanted fields. When `expect`
    /// is given, the sealed ids must equal it.
    fn open_record(
        &self,
        keys: &SubjectKeys,
        storage_key: &[u8],
        expect: Option<&RecordKey>,
        bytes: &[u8],
        want: Option<&[&str]>,
    ) -> Result<(Vec<PlainField>, RecordKey)> {
        self.open_record_of(keys, storage_key, expect, bytes, want, None)?
            .ok_or_else(|| Error::integrity("record meta: unexpected collection"))
    }

    /// [`Vault::open_record`] that returns `None`, without opening any field, when the
    /// record's collection is not `only_collection`.
    fn open_record_of(
        &self,
        keys: &SubjectKeys,
        storage_key: &[u8],
        expect: Option<&RecordKey>,
        bytes: &[u8],
        want: Option<&[&str]>,
        only_collection: Option<&str>,
    ) -> Result<Option<(Vec<PlainField>, RecordKey)>> {
        let sealed = parse_record(bytes)?;
        let dek = keys.dek(sealed.key_version)?;
        let vid = self.vault_id();
        // The meta block is bound to the storage key, which is a keyed hash of the ids.
        let placeholder = RecordKey::new(keys.subject.as_str(), "", "");
        let bind = Binding {
            vault_id: &vid,
            storage_key,
            key: expect.unwrap_or(&placeholder),
            key_version: sealed.key_version,
        };
        let meta = sealed.open_meta(&dek.aead, &bind)?;
        let key = RecordKey {
            subject: keys.subject.to_string(),
            collection: meta.collection.clone(),
            record_id: meta.record_id.clone(),
        };
        if let Some(e) = expect
            && *e != key
        {
            return Err(Error::integrity(
                "record meta: ids do not match the record key",
            ));
        }
        if only_collection.is_some_and(|c| c != key.collection) {
            return Ok(None);
        }
        let bind = Binding { key: &key, ..bind };
        let fields = sealed.open_fields(&dek.aead, &bind, &meta, want)?;
        Ok(Some((fields, key)))
    }

    /// Reads every record of `subject` (optionally only of `collection`), each into `T`,
    /// in storage order. One `read` entry names the subject and the number of records,
    /// appended before anything is returned. Returns an empty list for an unknown subject.
    pub fn records_of<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        subject: &str,
        collection: Option<&str>,
    ) -> Result<Vec<(RecordKey, T)>> {
        self.scan_subject(ctx, subject, collection, Action::Read)
    }

    /// [`Vault::records_of`] for taking the records out of the vault (a FHIR export, a
    /// GDPR art. 15/20 copy): logged as `export` instead of `read`.
    pub fn export_records_of<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        subject: &str,
    ) -> Result<Vec<(RecordKey, T)>> {
        self.scan_subject(ctx, subject, None, Action::Export)
    }

    fn scan_subject<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        subject: &str,
        collection: Option<&str>,
        action: Action,
    ) -> Result<Vec<(RecordKey, T)>> {
        let tag = self.subject_tag(subject);
        let (out, keys) = self.guarded(ctx, action, Some(tag), || {
            validate_id("subject", subject)?;
            let Some(keys) = self.keyring.load(&tag, self.read_fn())? else {
                return Ok((Vec::new(), None));
            };
            let prefix = Self::subject_records_prefix(&tag);
            let end = prefix_end(&prefix);
            let mut out = Vec::new();
            for item in self.storage.scan(&prefix, end.as_deref()) {
                let (k, v) = item?;
                if let Some((fields, key)) =
                    self.open_record_of(&keys, &k, None, &v, None, collection)?
                {
                    out.push((key, join_fields::<T>(&fields)?));
                }
            }
            Ok((out, Some(keys)))
        })?;
        let target = Target {
            subject: subject.to_owned(),
            collection: collection.map(str::to_owned),
            record_id: None,
            fields: Vec::new(),
        };
        let mut e = self.entry_for(
            ctx,
            action,
            Outcome::Ok,
            keys.as_deref(),
            Some(tag),
            Some(&target),
        );
        e.note = format!("records={}", out.len());
        let subs: Vec<&Arc<SubjectKeys>> = keys.iter().collect();
        self.commit(WriteBatch::new(), vec![e], &subs, false)?;
        Ok(out)
    }

    /// Lists every subject id (decrypted from the keyring; erased subjects are gone).
    /// Logged as `search`.
    pub fn subjects(&self, ctx: &AccessContext) -> Result<Vec<String>> {
        let out = self.guarded(ctx, Action::Search, None, || {
            let mut out = Vec::new();
            for item in self
                .storage
                .scan(&[SUBJECT_PREFIX], Some(&[SUBJECT_PREFIX + 1]))
            {
                let (k, v) = item?;
                let tag: SubjectTag = k
                    .get(1..17)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| Error::integrity("subject entry key malformed"))?;
                let keys = match self.keyring.cached(&tag) {
                    Some(k) => k,
                    None => Arc::new(self.keyring.decode_entry(&tag, &v)?),
                };
                out.push(keys.subject.to_string());
            }
            Ok(out)
        })?;
        let mut e = PendingEntry::new(ctx, Action::Search, Outcome::Ok);
        e.note = format!("list subjects: {}", out.len());
        self.commit(WriteBatch::new(), vec![e], &[], false)?;
        Ok(out)
    }

    // ----- access log --------------------------------------------------------------------

    /// Walks the whole access log (docs/FORMAT.md §6-§8) and, with a checkpoint, checks
    /// that the log still extends it. Returns the number of entries verified (before this
    /// call's own `verify` entry is appended). Fails with [`Error::LogTampered`] naming
    /// the first bad sequence number and what is wrong with it.
    pub fn verify(&self, ctx: &AccessContext, checkpoint: Option<&Checkpoint>) -> Result<u64> {
        let n = self.guarded(ctx, Action::Verify, None, || {
            self.log.verify(self.storage.as_ref(), checkpoint)
        })?;
        let mut e = PendingEntry::new(ctx, Action::Verify, Outcome::Ok);
        e.note = format!("entries={n}");
        self.commit(WriteBatch::new(), vec![e], &[], false)?;
        Ok(n)
    }

    /// Issues a checkpoint of the log (after appending the `checkpoint` entry) for an
    /// operator to keep outside the vault.
    pub fn checkpoint(&self, ctx: &AccessContext) -> Result<Checkpoint> {
        self.guarded(ctx, Action::Checkpoint, None, || Ok(()))?;
        let e = PendingEntry::new(ctx, Action::Checkpoint, Outcome::Ok);
        self.commit(WriteBatch::new(), vec![e], &[], true)?;
        Ok(self.log.checkpoint())
    }

    /// Number of access-log entries.
    pub fn log_len(&self) -> u64 {
        self.log.len()
    }

    /// Returns the access-log entries matching `q`, decoded; targets are shown for
    /// subjects still held (erased ones show only the pseudonym). The query is itself
    /// logged (`search`), after the results are gathered.
    pub fn audit_query(&self, ctx: &AccessContext, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let want_tag = q.subject.as_deref().map(|s| self.subject_tag(s));
        let out = self.guarded(ctx, Action::Search, None, || {
            let vid = self.vault_id();
            let mut out = Vec::new();
            self.log
                .for_each(self.storage.as_ref(), 0, |mut e, sealed| {
                    let keep = want_tag.is_none_or(|t| e.subject_pseudonym == Some(t))
                        && q.actor.as_deref().is_none_or(|a| a == e.actor)
                        && q.purpose.is_none_or(|p| p == e.purpose)
                        && q.action.is_none_or(|a| a == e.action)
                        && q.since_ms.is_none_or(|t| e.time_ms >= t)
                        && q.until_ms.is_none_or(|t| e.time_ms < t);
                    if !keep {
                        return Ok(true);
                    }
                    if let (Some(tag), Some(sealed)) = (e.subject_pseudonym, sealed)
                        && !sealed.is_empty()
                        && let Some(keys) = self.keyring.load(&tag, self.read_fn())?
                    {
                        // The entry itself was authenticated under the log key, so a
                        // target that does not open was sealed under the audit key of an
                        // earlier, erased incarnation of this subject id (same pseudonym,
                        // new keys): it stays unlinked, like any erased subject's.
                        e.target = match open_target(&keys.audit, &vid, &tag, &sealed) {
                            Ok(t) => Some(t),
                            Err(Error::Integrity { .. }) => None,
                            Err(other) => return Err(other),
                        };
                    }
                    out.push(e);
                    Ok(true)
                })?;
            Ok(out)
        })?;
        let mut e = PendingEntry::new(ctx, Action::Search, Outcome::Ok);
        e.note = format!("access-log query: {} entries", out.len());
        self.commit(WriteBatch::new(), vec![e], &[], false)?;
        Ok(out)
    }

    /// Writes the entries matching `q` as JSON Lines (one [`LogEntry`] per line).
    /// Logged as `export`. Returns the number of lines.
    pub fn audit_export_jsonl(
        &self,
        ctx: &AccessContext,
        q: &LogQuery,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let entries = self.audit_query(ctx, q)?;
        let mut e = PendingEntry::new(ctx, Action::Export, Outcome::Ok);
        e.note = format!("access-log export: {} entries", entries.len());
        self.commit(WriteBatch::new(), vec![e], &[], false)?;
        for entry in &entries {
            serde_json::to_writer(&mut *out, entry)
                .map_err(|e| Error::invalid(format!("JSON: {e}")))?;
            out.write_all(b"\n")?;
        }
        Ok(entries.len() as u64)
    }

    // ----- keys --------------------------------------------------------------------------

    /// Counts and sizes (no plaintext; not logged).
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats {
            log_entries: self.log.len(),
            disk_bytes: self.storage.size_on_disk()?,
            root_generation: lock(&self.header).root.generation,
            ..Stats::default()
        };
        for item in self
            .storage
            .scan(&[SUBJECT_PREFIX], Some(&[SUBJECT_PREFIX + 1]))
        {
            item?;
            s.subjects += 1;
        }
        for item in self
            .storage
            .scan(&[RECORD_PREFIX], Some(&[RECORD_PREFIX + 1]))
        {
            item?;
            s.records += 1;
        }
        Ok(s)
    }
}

/// Clears what a create interrupted before its header was written left in a store that
/// has no header: at most the first log entry and the head, sealed under a vault secret
/// that was never stored, so no vault. A headless store holding anything more is a vault
/// whose header was lost: [`Error::AlreadyExists`], and nothing is changed.
fn clear_interrupted_create(storage: &dyn Storage) -> Result<()> {
    let first_entry = [crate::audit::ENTRY_PREFIX, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut leftovers = WriteBatch::new();
    for item in storage.scan(&[], None) {
        let (k, _) = item?;
        if k != crate::audit::HEAD_KEY && k != first_entry {
            return Err(Error::AlreadyExists);
        }
        leftovers.delete(k);
    }
    if !leftovers.is_empty() {
        storage.apply(leftovers)?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
