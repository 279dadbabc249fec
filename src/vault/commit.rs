//! The commit path: the one place where a vault operation reaches storage together with
//! its access-log entries. Every operation — writes, reads' log entries, key operations,
//! index builds and erasure — goes through [`Vault::commit_with`] (directly or through
//! its shorthands [`Vault::commit`], [`Vault::commit_checked`], [`Vault::log_only`]).
//!
//! Under the commit lock, in this order: `prepare` adds what must see storage unchanged
//! by concurrent commits; data-key versions used by sealed values are re-checked; the key
//! entries of subjects whose state changed are added; an erasure marks its subject's
//! cached keys erased; the batch and the entries are applied atomically
//! ([`crate::audit::AuditLog::commit`]). Then the batch is flushed per [`Flush`] and the
//! vault's [`Durability`] (group commit: one flush covers every batch applied before it
//! started).
//!
//! Failure logging ([`Vault::guarded`], [`Vault::log_failure`]) and the log-entry
//! builders sit here too, since every entry they make is committed through this path.

use std::sync::Arc;

use super::{Durability, Vault, lock};
use crate::audit::{Action, Outcome, PendingEntry, Target, seal_target};
use crate::context::AccessContext;
use crate::error::{Error, Result};
use crate::keyring::{SubjectKeys, SubjectTag};
use crate::keyspace;
use crate::record::RecordKey;
use crate::storage::WriteBatch;

/// When a commit is flushed to disk, given the vault's [`Durability`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flush {
    /// Only a log entry of a read or query: flushed under [`Durability::Every`].
    Read,
    /// A change: flushed under [`Durability::Every`] and [`Durability::Writes`].
    Write,
    /// Not flushed by the commit: the caller flushes (erasure flushes whatever the
    /// durability, after its failure, if any, has been logged).
    Caller,
}

/// What an erasure commit does to its subject's keys besides applying its batch.
pub(super) struct Erasure {
    /// The erased subject.
    pub tag: SubjectTag,
}

impl Vault {
    /// Applies `batch` with `entries` and the key entries of `subjects` that changed,
    /// atomically; then flushes per `flush`.
    pub(super) fn commit(
        &self,
        batch: WriteBatch,
        entries: Vec<PendingEntry>,
        subjects: &[&Arc<SubjectKeys>],
        flush: Flush,
    ) -> Result<u64> {
        self.commit_checked(batch, entries, subjects, &[], flush)
    }

    /// Commits only `ctx`'s entry for `action` (outcome ok) with `note`: the operation
    /// changes nothing else (queries, checks, markers of progress).
    pub(super) fn log_only(
        &self,
        ctx: &AccessContext,
        action: Action,
        note: impl Into<String>,
        flush: Flush,
    ) -> Result<u64> {
        self.commit(
            WriteBatch::new(),
            vec![noted(ctx, action, note)],
            &[],
            flush,
        )
    }

    /// [`Vault::commit`], also checking under the commit lock that every `(subject, key
    /// version)` in `uses` still exists: a data-key rotation may have retired a version
    /// between sealing and commit. Fails with [`Error::UnknownKeyVersion`] then.
    pub(super) fn commit_checked(
        &self,
        batch: WriteBatch,
        entries: Vec<PendingEntry>,
        subjects: &[&Arc<SubjectKeys>],
        uses: &[(SubjectTag, u32)],
        flush: Flush,
    ) -> Result<u64> {
        self.commit_with(batch, entries, subjects, uses, flush, None, |_, _| Ok(()))
    }

    /// The one commit path. `prepare` runs under the commit lock, before the batch is
    /// applied, for writes that must see storage unchanged by concurrent commits (e.g. a
    /// re-encryption that must not overwrite a newer record, an erasure's record scan);
    /// it may complete the entries (e.g. a count in a note). With `erasure`, the subject's
    /// cached keys are marked erased (no later commit may use them) and evicted once the
    /// batch is applied; if applying fails they are evicted too, since a failed batch may
    /// have been applied in part.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit_with(
        &self,
        mut batch: WriteBatch,
        mut entries: Vec<PendingEntry>,
        subjects: &[&Arc<SubjectKeys>],
        uses: &[(SubjectTag, u32)],
        flush: Flush,
        erasure: Option<Erasure>,
        prepare: impl FnOnce(&mut WriteBatch, &mut [PendingEntry]) -> Result<()>,
    ) -> Result<u64> {
        let done;
        {
            let _g = lock(&self.commit_lock);
            prepare(&mut batch, &mut entries)?;
            // Every entry records the policy version in force at its commit (a policy
            // change's own entry already carries the new one).
            let pv = self.policy.version();
            for e in entries.iter_mut() {
                e.policy_version = e.policy_version.max(pv);
            }
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
                // A key entry about to be created must not re-create an erased subject
                // (an erasure may have committed since the write checked; erasure.rs).
                if dirty && self.creates_erased_subject(&k.tag)? {
                    self.keyring.evict(&k.tag);
                    return Err(Error::SubjectErased);
                }
                if dirty {
                    batch.put(
                        keyspace::subject_entry(&k.tag),
                        self.keyring.encode_entry(k),
                    );
                    written.push(*k);
                }
            }
            // No load may read an erased subject's entry now and cache it after the
            // erasure.
            let _loading = erasure.as_ref().map(|_| self.keyring.loading());
            let erased = erasure.as_ref().and_then(|e| self.keyring.cached(&e.tag));
            if let Some(k) = &erased {
                k.lock().erased = true;
            }
            let bodies = entries.iter().map(PendingEntry::body).collect();
            match self.committer.commit(batch, bodies) {
                Ok(c) => done = c,
                Err(e) => {
                    for k in written {
                        k.lock().dirty = true;
                    }
                    if let Some(er) = &erasure {
                        if let Some(k) = &erased {
                            k.lock().erased = false;
                        }
                        // A failed batch may still have been applied in part (a backend
                        // without atomic batches, or a torn write): the subject entry may
                        // be gone from storage. Drop the cached keys so the next use
                        // reloads them from storage instead of writing records under keys
                        // no entry holds.
                        self.keyring.evict(&er.tag);
                    }
                    return Err(e);
                }
            }
            if let Some(er) = &erasure {
                self.keyring.evict(&er.tag);
            }
        }
        let flush = match (flush, self.options.durability) {
            (Flush::Caller, _) => false,
            (_, Durability::Every) => true,
            (f, Durability::Writes) => f == Flush::Write,
            (_, Durability::Background) => false,
        };
        if flush {
            self.committer.make_durable(done.end)?;
        }
        Ok(done.first)
    }

    /// Group commit (docs/DESIGN-storage.md "Commit protocol"): returns once every commit
    /// so far is durable in the log and the record store and the anchor names it; one
    /// fdatasync covers every commit since the last.
    pub(super) fn group_flush(&self) -> Result<()> {
        self.committer.make_durable(self.committer.end())
    }

    /// Flushes every committed operation to disk (fdatasync of the log, flush of the
    /// record store, the anchor synced). Returns when durable.
    pub fn sync(&self) -> Result<()> {
        self.committer.sync_all()
    }

    /// Builds a log entry naming `target` (sealed under the subject's audit key).
    pub(super) fn entry_for(
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
                // Under the subject's log-target key (XChaCha20-Poly1305, random 192-bit
                // nonces): no usage count, so a read writes nothing to the record store.
                let sealed = seal_target(&k.target, &self.vault_id(), &k.tag, t);
                e.subject = Some((k.tag, sealed));
            }
            _ => e.subject = tag.map(|t| (t, Vec::new())),
        }
        e
    }

    /// Logs a failed or denied attempt (best effort: the caller's error is what matters).
    pub(super) fn log_failure<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        tag: Option<SubjectTag>,
        r: &Result<T>,
    ) {
        let mut e = self.entry_for(ctx, action, Outcome::of(r), None, tag, None);
        e.note = denial_note(r);
        let _ = self.commit(WriteBatch::new(), vec![e], &[], Flush::Read);
    }

    /// Logs a failed or denied attempt concerning several subjects: one entry per tag
    /// (`None`: naming no subject), all in one commit (best effort, like
    /// [`Vault::log_failure`]).
    pub(super) fn log_failures<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        tags: &[Option<SubjectTag>],
        r: &Result<T>,
    ) {
        let entries = tags
            .iter()
            .map(|tag| {
                let mut e = self.entry_for(ctx, action, Outcome::of(r), None, *tag, None);
                e.note = denial_note(r);
                e
            })
            .collect();
        let _ = self.commit(WriteBatch::new(), entries, &[], Flush::Read);
    }

    /// [`Vault::guarded`] for an operation on one record: a failure is logged naming the
    /// record (sealed under the subject's audit key when the subject exists), so a
    /// failed or denied attempt on a patient's file shows up in that patient's trail.
    pub(super) fn guarded_record<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        key: &RecordKey,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let r = ctx
            .validate()
            .and_then(|_| self.authorize(ctx))
            .and_then(|_| f());
        if r.is_err() {
            let tag = self.subject_tag(&key.subject);
            let keys = if key.validate().is_ok() {
                self.keyring.load(&tag, self.read_fn()).ok().flatten()
            } else {
                None
            };
            let target = record_target(key, Vec::new());
            let mut e = self.entry_for(
                ctx,
                action,
                Outcome::of(&r),
                keys.as_deref(),
                Some(tag),
                Some(&target),
            );
            e.note = denial_note(&r);
            let subs: Vec<&Arc<SubjectKeys>> = keys.iter().collect();
            let _ = self.commit(WriteBatch::new(), vec![e], &subs, Flush::Read);
        }
        r
    }

    /// Validates the context and runs `f`; a failure before commit is logged.
    pub(super) fn guarded<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        tag: Option<SubjectTag>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let r = ctx
            .validate()
            .and_then(|_| self.authorize(ctx))
            .and_then(|_| f());
        if r.is_err() {
            self.log_failure(ctx, action, tag, &r);
        }
        r
    }
}

/// The note of a failed attempt's entry: the policy rule that refused it, if any.
fn denial_note<T>(r: &Result<T>) -> String {
    match r {
        Err(Error::AccessDenied(crate::error::Denial::Policy { rule, .. })) => {
            format!("denied by rule {rule}")
        }
        _ => String::new(),
    }
}

/// An entry of `ctx` for `action`, outcome ok, naming no subject, with `note`.
pub(super) fn noted(ctx: &AccessContext, action: Action, note: impl Into<String>) -> PendingEntry {
    let mut e = PendingEntry::new(ctx, action, Outcome::Ok);
    e.note = note.into();
    e
}

/// The log target naming record `key` and the fields `fields`.
pub(super) fn record_target(key: &RecordKey, fields: Vec<String>) -> Target {
    Target {
        subject: key.subject.clone(),
        collection: Some(key.collection.clone()),
        record_id: Some(key.record_id.clone()),
        fields,
    }
}
