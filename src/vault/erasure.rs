//! Erasure memory: the vault remembers which subjects it erased, by keyed pseudonym
//! only, so that no write re-creates an erased patient by accident (a re-import of the
//! source files, a late write from a client); an explicit, logged re-admission lifts
//! the refusal. SECURITY.md "Erasure memory"; docs/FORMAT.md "Erasure mark".
//!
//! An erasure mark is the storage entry `'e' || subject_tag` holding when, and at which
//! access-log sequence number, the subject was erased, MACed under a key derived from the
//! vault secret. It is put in the very batch that deletes the subject's keys and records
//! (one atomic commit), so no crash leaves a subject erased but not remembered. It holds
//! no identity: the tag is `HMAC(pseudonym key; "subject", id)` truncated, computable
//! only with the vault secret and the id itself.
//!
//! Invariant: for one tag, a subject key entry (`'k'`) and an erasure mark (`'e'`) never
//! coexist. Erasure deletes the first and puts the second in one batch; a write that
//! would create a subject key entry is refused while the mark exists (checked before
//! keys are created, and again under the commit lock); a re-admission deletes the mark.
//! Only a torn batch (a backend without atomic batches, simulated by
//! `danger::FaultyStorage`) can leave both: the mark is first in the batch, so the
//! subject is then remembered before any of it is destroyed; it stays usable under its
//! surviving keys (reads and writes), and retrying the erasure completes it.
//!
//! For restore (issue "backup, restore and retention"): the marks are a list of
//! `(tag, erased at, log seq)` that needs no identity to be applied. A restore can
//! re-apply the marks of the live vault or of a separately kept ledger to a restored
//! copy with [`Vault::erasure_marks`] and the tag-only erasure primitive
//! ([`Vault::erase_tag_in`]).

use serde::Serialize;

use super::Vault;
use super::commit::Flush;
use crate::audit::{Action, Outcome, PendingEntry};
use crate::codec::Reader;
use crate::context::{AccessContext, MAX_REASON_LEN};
use crate::crypto::{MacKey, ct_eq, derive_key};
use crate::error::{Error, InputKind, Result, Structure};
use crate::ids::SubjectTag;
use crate::json::JsonText;
use crate::keyspace;
use crate::record::{RecordKey, validate_id};
use crate::storage::{WriteBatch, prefix_end};

/// Format version of an erasure mark (docs/FORMAT.md "Erasure mark").
const MARK_VERSION: u8 = 1;
/// Encoded length: version, time, seq, MAC.
const MARK_LEN: usize = 1 + 8 + 8 + 32;

/// One remembered erasure, as [`Vault::erased_subjects`] lists it: the subject's keyed
/// pseudonym (never its id), when it was erased and the access-log entry that records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ErasedSubject {
    /// The subject's keyed pseudonym (docs/FORMAT.md "Storage key space"), the same as
    /// [`crate::LogEntry::subject_pseudonym`] in its log entries.
    #[serde(serialize_with = "ser_tag")]
    pub pseudonym: SubjectTag,
    /// Time of the erasure, milliseconds since the Unix epoch, UTC (the time of its
    /// access-log entry).
    pub erased_at_ms: u64,
    /// Sequence number of the erasure's `erase` access-log entry.
    pub log_seq: u64,
}

fn ser_tag<S: serde::Serializer>(t: &SubjectTag, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

impl Vault {
    fn erasure_mac_key(&self) -> MacKey {
        MacKey::new(&derive_key(
            &self.vault_secret,
            &[b"medvault/v1/erasure-mark"],
        ))
    }

    fn mark_mac(&self, key: &MacKey, tag: &SubjectTag, body: &[u8]) -> [u8; 32] {
        key.mac_raw(&[self.vault_id().as_bytes(), tag.as_bytes(), body])
    }

    /// The value of `tag`'s erasure mark: `0x01 || u64 erased_at_ms || u64 log_seq ||
    /// MAC`, the MAC = `mac_raw(erasure-mark key; vault_id || subject_tag || preceding
    /// bytes)`.
    fn encode_mark(&self, tag: &SubjectTag, erased_at_ms: u64, log_seq: u64) -> Vec<u8> {
        let mut b = Vec::with_capacity(MARK_LEN);
        b.push(MARK_VERSION);
        b.extend_from_slice(&erased_at_ms.to_be_bytes());
        b.extend_from_slice(&log_seq.to_be_bytes());
        let mac = self.mark_mac(&self.erasure_mac_key(), tag, &b);
        b.extend_from_slice(&mac);
        b
    }

    fn decode_mark(&self, key: &MacKey, tag: &SubjectTag, bytes: &[u8]) -> Result<ErasedSubject> {
        let mut r = Reader::new(bytes, Structure::ErasureMark);
        let v = r.u8()?;
        if v != MARK_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "erasure mark",
                version: v,
            });
        }
        let erased_at_ms = r.u64()?;
        let log_seq = r.u64()?;
        let mac: [u8; 32] = r.array()?;
        r.finish()?;
        let body = &bytes[..MARK_LEN - 32];
        if !ct_eq(&self.mark_mac(key, tag, body), &mac) {
            return Err(Error::integrity(Structure::ErasureMark, "MAC mismatch"));
        }
        Ok(ErasedSubject {
            pseudonym: *tag,
            erased_at_ms,
            log_seq,
        })
    }

    /// The erasure mark of `tag`, if the subject was erased and not re-admitted. A mark
    /// that fails its MAC is [`Error::Integrity`] (never silently "not erased").
    pub(super) fn erasure_mark_of(&self, tag: &SubjectTag) -> Result<Option<ErasedSubject>> {
        match self.storage.get(&keyspace::erasure_mark(tag))? {
            None => Ok(None),
            Some(b) => self.decode_mark(&self.erasure_mac_key(), tag, &b).map(Some),
        }
    }

    /// Adds to an erasure's `batch` the mark of `tag`, naming the entry `log_seq` that
    /// the same commit appends. Called under the commit lock.
    pub(super) fn stage_erasure_mark(
        &self,
        batch: &mut WriteBatch,
        tag: &SubjectTag,
        erased_at_ms: u64,
        log_seq: u64,
    ) {
        batch.put(
            keyspace::erasure_mark(tag),
            self.encode_mark(tag, erased_at_ms, log_seq),
        );
    }

    /// Every erasure mark, in tag order (not logged: the crate's own use, e.g. applying
    /// the live vault's erasures to a restored copy).
    pub(crate) fn erasure_marks(&self) -> Result<Vec<ErasedSubject>> {
        let key = self.erasure_mac_key();
        let (start, end) = keyspace::prefix_range(keyspace::ERASED_PREFIX);
        let mut out = Vec::new();
        for item in self.storage.scan(&start, Some(&end)) {
            let (k, v) = item?;
            let tag = k
                .get(1..)
                .and_then(|s| SubjectTag::try_from(s).ok())
                .ok_or_else(|| Error::integrity(Structure::ErasureMark, "storage key malformed"))?;
            out.push(self.decode_mark(&key, &tag, &v)?);
        }
        Ok(out)
    }

    /// Adds to `batch` the erasure mark of `tag` and the deletion of everything stored
    /// under it (records, their index entries, the subject key entry); returns the number of
    /// records. Needs only the tag, not the subject id. Called under the commit lock.
    pub(crate) fn erase_tag_in(
        &self,
        batch: &mut WriteBatch,
        tag: &SubjectTag,
        erased_at_ms: u64,
        log_seq: u64,
    ) -> Result<u64> {
        // The mark first: a backend that tears a batch (applies a prefix of it, as
        // `danger::FaultyStorage` simulates) then never destroys keys it has not
        // remembered. An atomic backend (sled) applies all of it or nothing.
        self.stage_erasure_mark(batch, tag, erased_at_ms, log_seq);
        let mut n = 0u64;
        let prefix = keyspace::subject_records(tag);
        let end = prefix_end(&prefix);
        for item in self.storage.scan(&prefix, end.as_deref()) {
            let (k, _) = item?;
            batch.delete(k);
            n += 1;
        }
        crate::index::unindex_subject(self.storage.as_ref(), tag, batch)?;
        batch.delete(keyspace::subject_entry(tag));
        // Its objection to secondary use goes with it (docs/RESEARCH.md).
        batch.delete(keyspace::objection(tag));
        Ok(n)
    }

    /// The next access-log sequence number: under the commit lock, the sequence number
    /// the first entry of the commit being prepared will get.
    pub(super) fn next_log_seq(&self) -> u64 {
        self.committer.end()
    }

    /// Whether writing `tag`'s key entry would create it for an erased subject: a mark
    /// exists and no key entry does. Called under the commit lock for every key entry
    /// about to be written (a mark is looked up first: almost always absent).
    pub(super) fn creates_erased_subject(&self, tag: &SubjectTag) -> Result<bool> {
        Ok(self.erasure_mark_of(tag)?.is_some()
            && self.storage.get(&keyspace::subject_entry(tag))?.is_none())
    }

    /// Refuses the creation of a subject key entry for an erased subject (checked before
    /// keys are created, so that nothing is sealed for nothing).
    pub(super) fn refuse_if_erased(&self, tag: &SubjectTag) -> Result<()> {
        match self.erasure_mark_of(tag)? {
            Some(_) => Err(Error::SubjectErased),
            None => Ok(()),
        }
    }

    /// Logs the failure of a write of `items`. When it was refused for an erased subject
    /// ([`Error::SubjectErased`], or [`Error::NotFound`] from keys erased while the write
    /// was in flight), one entry per erased subject of the batch names it by pseudonym,
    /// outcome `subject_erased`, and `r` becomes [`Error::SubjectErased`]; otherwise one
    /// entry naming no subject.
    pub(super) fn log_write_failure<T>(
        &self,
        ctx: &AccessContext,
        action: Action,
        items: &[(&RecordKey, &JsonText)],
        r: &mut Result<T>,
    ) {
        if matches!(r, Err(Error::SubjectErased) | Err(Error::NotFound)) {
            let mut erased: Vec<SubjectTag> = Vec::new();
            for (k, _) in items {
                let tag = self.subject_tag(&k.subject);
                if !erased.contains(&tag) && matches!(self.erasure_mark_of(&tag), Ok(Some(_))) {
                    erased.push(tag);
                }
            }
            if !erased.is_empty() {
                *r = Err(Error::SubjectErased);
                let entries = erased
                    .into_iter()
                    .map(|tag| {
                        let mut e = PendingEntry::new(ctx, action, Outcome::of(r));
                        e.subject = Some((tag, Vec::new()));
                        e.note = "refused: subject erased".to_owned();
                        e
                    })
                    .collect();
                let _ = self.commit(WriteBatch::new(), entries, &[], Flush::Read);
                return;
            }
        }
        self.log_failure(ctx, action, None, r);
    }

    /// Whether `subject` was erased and not re-admitted since: a lookup in the erasure
    /// memory, e.g. for an import to set aside an erased patient's records. Logged as
    /// `search`, naming the subject by pseudonym. Under an access policy, needs a role
    /// allowed to erase, the `audit` capability, or a purpose that may write some
    /// collection (an importer, whose writes for an erased subject are refused anyway);
    /// otherwise [`Error::AccessDenied`] (research and billing under the default
    /// policy). Fails with [`Error::InvalidInput`] (id empty or too long), [`Error::Integrity`] (a mark fails its MAC),
    /// [`Error::Storage`].
    ///
    /// ```
    /// # fn main() -> medvault::Result<()> {
    /// use medvault::{AccessContext, KeySource, Purpose, RecordKey, Vault, VaultOptions};
    /// let v = Vault::create_in(
    ///     Box::new(medvault::storage::MemoryStorage::new()),
    ///     KeySource::raw([1; 32]),
    ///     VaultOptions::default(),
    /// )?;
    /// let dpo = AccessContext::new("dpo", Purpose::PatientRequest);
    /// v.put(&dpo, &RecordKey::new("p1", "Patient", "p1"), &serde_json::json!({"a": 1}))?;
    /// assert!(!v.is_erased(&dpo, "p1")?);
    /// v.erase_subject(&dpo, "p1")?;
    /// assert!(v.is_erased(&dpo, "p1")?);
    /// # Ok(()) }
    /// ```
    pub fn is_erased(&self, ctx: &AccessContext, subject: &str) -> Result<bool> {
        let tag = self.subject_tag(subject);
        let erased = self.guarded(ctx, Action::Search, Some(tag), || {
            validate_id("subject", subject)?;
            // Under a policy, whether a patient was erased is itself personal data: who
            // may erase or audit may ask, and so may a writer (an importer), whose
            // writes for an erased subject are refused anyway.
            let d = self.decide(ctx)?;
            if let Err(denied) = d.check_erase()
                && self.require_capability(ctx, "audit").is_err()
                && d.check_writes_something().is_err()
            {
                return Err(denied);
            }
            Ok(self.erasure_mark_of(&tag)?.is_some())
        })?;
        let mut e = PendingEntry::new(ctx, Action::Search, Outcome::Ok);
        e.subject = Some((tag, Vec::new()));
        e.note = format!("erasure memory lookup: erased={erased}");
        self.commit(WriteBatch::new(), vec![e], &[], Flush::Read)?;
        Ok(erased)
    }

    /// Every subject the vault remembers as erased (pseudonyms, times and log sequence
    /// numbers; no identity), in pseudonym order. Logged as `search`. Under an access
    /// policy, needs a role allowed to erase. Fails with [`Error::AccessDenied`],
    /// [`Error::Integrity`] when a mark fails its MAC, [`Error::Storage`].
    pub fn erased_subjects(&self, ctx: &AccessContext) -> Result<Vec<ErasedSubject>> {
        let out = self.guarded(ctx, Action::Search, None, || {
            // Under a policy: who may erase may see what was erased.
            self.decide(ctx)?.check_erase()?;
            self.erasure_marks()
        })?;
        self.log_only(
            ctx,
            Action::Search,
            format!("list erased subjects: {}", out.len()),
            Flush::Read,
        )?;
        Ok(out)
    }

    /// Re-admits an erased subject: the patient has really returned, so writes for
    /// `subject` are accepted again (a new incarnation with new keys; nothing of the
    /// erased one comes back). Deletes the erasure mark in one commit with a `readmit`
    /// access-log entry that names the subject by pseudonym, whose reason is `reason`
    /// and whose note names the erasure it lifts (`erased_seq=N`): who re-admitted
    /// (the context's actor) and why.
    ///
    /// Fails with [`Error::InvalidInput`] ([`InputKind::Context`]: `reason` empty or
    /// over 1024 bytes; [`InputKind::Id`]: bad subject id), [`Error::NotFound`] when the
    /// subject is not remembered as erased, [`Error::AccessDenied`] under an access
    /// policy for a role not allowed to erase, [`Error::Integrity`] when its mark fails
    /// its MAC, [`Error::Storage`]. A failed attempt is logged.
    ///
    /// ```
    /// # fn main() -> medvault::Result<()> {
    /// use medvault::{AccessContext, Error, KeySource, Purpose, RecordKey, Vault, VaultOptions};
    /// use serde_json::json;
    /// let v = Vault::create_in(
    ///     Box::new(medvault::storage::MemoryStorage::new()),
    ///     KeySource::raw([1; 32]),
    ///     VaultOptions::default(),
    /// )?;
    /// let clerk = AccessContext::new("clerk-7", Purpose::Administration);
    /// let key = RecordKey::new("p1", "Patient", "p1");
    /// v.put(&clerk, &key, &json!({"name": "A"}))?;
    /// v.erase_subject(&clerk, "p1")?;
    /// // A re-import of the old files is refused...
    /// assert!(matches!(v.put(&clerk, &key, &json!({"name": "A"})), Err(Error::SubjectErased)));
    /// // ...until the patient is re-admitted, with a reason.
    /// v.readmit_subject(&clerk, "p1", "patient returned for care, consent on file")?;
    /// v.put(&clerk, &key, &json!({"name": "A"}))?;
    /// # Ok(()) }
    /// ```
    pub fn readmit_subject(&self, ctx: &AccessContext, subject: &str, reason: &str) -> Result<()> {
        let tag = self.subject_tag(subject);
        let erased = self.guarded(ctx, Action::Readmit, Some(tag), || {
            validate_id("subject", subject)?;
            // Under a policy, re-admission takes the authority of erasure.
            self.decide(ctx)?.check_erase()?;
            if reason.trim().is_empty() {
                return Err(Error::invalid(
                    InputKind::Context,
                    "a re-admission needs a reason",
                ));
            }
            if reason.len() > MAX_REASON_LEN {
                return Err(Error::invalid(
                    InputKind::Context,
                    "reason longer than 1024 bytes",
                ));
            }
            self.erasure_mark_of(&tag)?.ok_or(Error::NotFound)
        })?;
        let mut e = PendingEntry::new(ctx, Action::Readmit, Outcome::Ok);
        e.reason = Some(reason.to_owned());
        e.subject = Some((tag, Vec::new()));
        e.note = format!("erased_seq={}", erased.log_seq);
        let mut batch = WriteBatch::new();
        batch.delete(keyspace::erasure_mark(&tag));
        let r = self.commit_with(batch, vec![e], &[], &[], Flush::Write, None, |_, _| {
            // Under the commit lock: a concurrent re-admission may have won.
            match self.erasure_mark_of(&tag)? {
                Some(_) => Ok(()),
                None => Err(Error::NotFound),
            }
        });
        if r.is_err() {
            self.log_failure(ctx, Action::Readmit, Some(tag), &r);
        }
        r.map(|_| ())
    }
}
