//! Records: writes (`put`, `put_many`), deletes, erasure and purge, reads (`get`,
//! `get_fields`, `records_of`, `export_records_of`) and the subject list. Every call
//! commits its entries through the commit path (`commit.rs`).

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::commit::{Erasure, Flush, noted, record_target};
use super::governance::OpenFor;
use super::{Vault, lock};
use crate::audit::{Action, Outcome, PendingEntry, Target};
use crate::context::AccessContext;
use crate::crypto::AeadKey;
use crate::error::{Denial, Error, InputKind, Result, Structure};
use crate::json::JsonText;
use crate::keyring::{SubjectKeys, SubjectTag};
use crate::keyspace;
use crate::record::{
    Binding, Meta, PlainField, RecordKey, SealedRecord, from_json, parse_record, seal_record,
    split_json, validate_id,
};
use crate::storage::{WriteBatch, prefix_end};

/// One subject's records from [`Vault::records_of_subjects_json`]: the subject id as
/// given, and each record's key with its exact JSON text, in storage order.
pub type SubjectRecords = (String, Vec<(RecordKey, JsonText)>);

/// What [`Vault::put_many_json_outcomes`] did with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The vault held no record under its key: written.
    Created,
    /// The vault held the record with other text: written over it.
    Replaced,
    /// The vault held the record with this exact text: not written (no new ciphertext,
    /// no log entry of its own).
    Unchanged,
}

impl Vault {
    // ----- writes ------------------------------------------------------------------------

    /// Stores `value` as record `key`, replacing any previous version. `T`'s top level
    /// must serialize to a map or struct; it is written as JSON by serde_json (so Rust
    /// numbers take serde_json's text) and stored as [`Vault::put_json`] stores text.
    /// Logged as `write`. Fails with [`Error::InvalidInput`] (ids too long or empty, not
    /// a map, a member name twice, over 64 MiB), [`Error::AccessDenied`],
    /// [`Error::Storage`].
    pub fn put<T: Serialize + ?Sized>(
        &self,
        ctx: &AccessContext,
        key: &RecordKey,
        value: &T,
    ) -> Result<()> {
        self.write_records(ctx, std::iter::once((key, value)), Action::Write)
            .map(|_| ())
    }

    /// Stores the exact JSON text `record` (an object) as record `key`, replacing any
    /// previous version: each top-level member is sealed separately with AES-256-GCM
    /// under the subject's current data key (created on the subject's first write), its
    /// plaintext being the member's value text byte for byte (number and string tokens
    /// as written, member order kept), so [`Vault::get_json`] returns `record` exactly.
    /// Logged as `write`. Fails like [`Vault::put`].
    pub fn put_json(&self, ctx: &AccessContext, key: &RecordKey, record: &JsonText) -> Result<()> {
        self.write_texts(ctx, vec![(key, record)], Action::Write, false)
            .map(|_| ())
    }

    /// Stores many records in one atomic commit (all or none), each with its own log
    /// entry (`action`: [`Action::Write`] or [`Action::Import`]). Returns the number of
    /// records written.
    pub fn put_many<'a, T: Serialize + ?Sized + 'a>(
        &self,
        ctx: &AccessContext,
        items: impl IntoIterator<Item = (&'a RecordKey, &'a T)>,
        action: Action,
    ) -> Result<usize> {
        check_write_action(action)?;
        self.write_records(ctx, items, action)
    }

    /// [`Vault::put_many`] of exact JSON texts (see [`Vault::put_json`]): the bulk path
    /// of `import`.
    pub fn put_many_json<'a>(
        &self,
        ctx: &AccessContext,
        items: impl IntoIterator<Item = (&'a RecordKey, &'a JsonText)>,
        action: Action,
    ) -> Result<usize> {
        check_write_action(action)?;
        self.write_texts(ctx, items.into_iter().collect(), action, false)
            .map(|(n, _)| n)
    }

    /// [`Vault::put_many_json`] that leaves a record whose stored text is already
    /// `record`'s exact text unchanged: the vault compares each record with the version
    /// it holds (decrypting it as the vault's own work: nothing stored reaches the
    /// caller) and writes only the records it creates or replaces, in one atomic commit
    /// (all or none), each with its own log entry (`action`: [`Action::Write`] or
    /// [`Action::Import`]). An unchanged record gets no new ciphertext and no entry of
    /// its own: one entry of `action` without a subject notes how many were unchanged
    /// (`unchanged=K`). The records compared as unchanged are checked, under the commit
    /// lock, to be stored still as they were compared (else the batch is compared and
    /// sealed again). Only a context allowed to write every record learns the outcomes:
    /// the write policy is checked before any comparison (docs/POLICY.md, "What a
    /// writer learns"). Returns one [`WriteOutcome`] per item, in order (a key given
    /// twice is compared with its earlier item). Fails like [`Vault::put_many`].
    pub fn put_many_json_outcomes<'a>(
        &self,
        ctx: &AccessContext,
        items: impl IntoIterator<Item = (&'a RecordKey, &'a JsonText)>,
        action: Action,
    ) -> Result<Vec<WriteOutcome>> {
        check_write_action(action)?;
        self.write_texts(ctx, items.into_iter().collect(), action, true)
            .map(|(_, o)| o)
    }

    fn write_records<'a, T: Serialize + ?Sized + 'a>(
        &self,
        ctx: &AccessContext,
        items: impl IntoIterator<Item = (&'a RecordKey, &'a T)>,
        action: Action,
    ) -> Result<usize> {
        let texts: Result<Vec<(&RecordKey, JsonText)>> = items
            .into_iter()
            .map(|(k, v)| Ok((k, JsonText::from_serialize(v)?)))
            .collect();
        match texts {
            Ok(texts) => self
                .write_texts(
                    ctx,
                    texts.iter().map(|(k, t)| (*k, t)).collect(),
                    action,
                    false,
                )
                .map(|(n, _)| n),
            Err(e) => {
                let r = Err(e);
                self.log_failure(ctx, action, None, &r);
                r
            }
        }
    }

    fn write_texts(
        &self,
        ctx: &AccessContext,
        items: Vec<(&RecordKey, &JsonText)>,
        action: Action,
        compare: bool,
    ) -> Result<(usize, Vec<WriteOutcome>)> {
        // A concurrent data-key rotation may retire the version a record was sealed
        // under before the commit; the commit refuses it and the records are resealed.
        // With `compare`, a record compared as unchanged and stored otherwise at the
        // commit is refused the same way, and the batch compared again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.write_records_once(ctx, &items, action, compare) {
                Err(Error::UnknownKeyVersion(_)) if attempts < 4 => continue,
                mut r => {
                    if r.is_err() {
                        self.log_write_failure(ctx, action, &items, &mut r);
                    }
                    return r;
                }
            }
        }
    }

    fn write_records_once(
        &self,
        ctx: &AccessContext,
        items: &[(&RecordKey, &JsonText)],
        action: Action,
        compare: bool,
    ) -> Result<(usize, Vec<WriteOutcome>)> {
        ctx.validate()?;
        // The write choke point: every put (typed or exact JSON, one or many, write or
        // import) comes through here, and the policy decides each record's fields.
        let decision = self.decide(ctx)?;
        let mut batch = WriteBatch::new();
        let mut entries = Vec::with_capacity(items.len());
        let mut subjects: Vec<Arc<SubjectKeys>> = Vec::new();
        let mut uses: Vec<(SubjectTag, u32)> = Vec::new();
        let vid = self.vault_id();
        let snap = self.indexes.snapshot();
        let mut staged = Vec::with_capacity(items.len());
        // With `compare`: each item's outcome; what each key holds after the items so
        // far; the stored bytes of the records left unchanged, checked at the commit.
        let mut outcomes = Vec::new();
        let mut held: std::collections::HashMap<Vec<u8>, &JsonText> =
            std::collections::HashMap::new();
        let mut unchanged: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (key, value) in items {
            key.validate()?;
            let fields = split_json(value)?;
            let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
            decision.check_write(&key.collection, Some(&names))?;
            let tag = self.subject_tag(&key.subject);
            let keys = match subjects.iter().find(|k| k.tag == tag) {
                Some(k) => k.clone(),
                None => {
                    if self.keyring.load(&tag, self.read_fn())?.is_none() {
                        // A new subject key entry: not for an erased subject.
                        self.refuse_if_erased(&tag)?;
                    }
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
            let sk = self.record_storage_key(&tag, key);
            if compare {
                let outcome = match held.get(&sk) {
                    Some(t) if t.as_str() == value.as_str() => WriteOutcome::Unchanged,
                    Some(_) => WriteOutcome::Replaced,
                    None => match self.storage.get(&sk)? {
                        None => WriteOutcome::Created,
                        Some(bytes) => {
                            if self.stored_text_is(&keys, &sk, key, &bytes, value)? {
                                unchanged.push((sk.clone(), bytes));
                                WriteOutcome::Unchanged
                            } else {
                                WriteOutcome::Replaced
                            }
                        }
                    },
                };
                held.insert(sk.clone(), *value);
                outcomes.push(outcome);
                if outcome == WriteOutcome::Unchanged {
                    continue;
                }
            }
            let dek = keys.current_dek(fields.len() as u64 + 1)?;
            if !uses.contains(&(tag, dek.version)) {
                uses.push((tag, dek.version));
            }
            let bind = Binding {
                vault_id: &vid,
                storage_key: &sk,
                key,
                key_version: dek.version,
            };
            batch.put(
                sk.clone(),
                seal_record(&dek.aead, &bind, self.committer.end(), &fields),
            );
            let target = record_target(key, fields.iter().map(|f| f.name.clone()).collect());
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
        let same = outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Unchanged)
            .count();
        if same > 0 {
            // Unchanged records are not writes: one entry, naming no subject, says how
            // many were left as they were.
            entries.push(noted(ctx, action, format!("unchanged={same}")));
        }
        if entries.is_empty() {
            return Ok((0, outcomes));
        }
        let refs: Vec<&Arc<SubjectKeys>> = subjects.iter().collect();
        // Index entries are computed under the commit lock's view of the definitions (an
        // index added since the snapshot is applied too) and replace the old ones.
        self.commit_with(batch, entries, &refs, &uses, Flush::Write, None, |b, _| {
            // A record compared as unchanged must be stored still as it was compared
            // (a concurrent write or re-encryption may have replaced it since): else
            // the caller compares and seals again (`write_texts`).
            for (sk, bytes) in &unchanged {
                if self.storage.get(sk)?.as_deref() != Some(bytes.as_slice()) {
                    return Err(Error::UnknownKeyVersion(0));
                }
            }
            self.apply_index(&snap, &mut staged, b)
        })?;
        Ok((n, outcomes))
    }

    /// Whether the stored record `bytes` (at `sk`, of `key`) holds exactly `text`:
    /// opened as the vault's own work (nothing of it leaves the vault). A record that
    /// fails its integrity check is not `text` (the write replaces it, as any write
    /// does); other errors (a retired key version: resealed meanwhile) are returned.
    fn stored_text_is(
        &self,
        keys: &SubjectKeys,
        sk: &[u8],
        key: &RecordKey,
        bytes: &[u8],
        text: &JsonText,
    ) -> Result<bool> {
        let opened = self.with_opened(
            keys,
            sk,
            Some(key),
            bytes,
            &Opening {
                reader: &OpenFor::Vault,
                fields: None,
                only_collection: None,
            },
            |sealed, dek, bind, meta, _, want| sealed.open_json(dek, bind, meta, want),
        );
        match opened {
            Ok(Some((stored, _))) => Ok(stored.as_str() == text.as_str()),
            Ok(None) | Err(Error::Integrity { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes record `key`. Logged as `delete`. Fails with [`Error::NotFound`] when
    /// there is no such record.
    pub fn delete(&self, ctx: &AccessContext, key: &RecordKey) -> Result<()> {
        let tag = self.subject_tag(&key.subject);
        let r = self.guarded_record(ctx, Action::Delete, key, || {
            key.validate()?;
            self.decide(ctx)?.check_write(&key.collection, None)?;
            let sk = self.record_storage_key(&tag, key);
            if self.storage.get(&sk)?.is_none() {
                return Err(Error::NotFound);
            }
            let keys = self.keyring.load(&tag, self.read_fn())?.ok_or_else(|| {
                Error::integrity(Structure::SubjectEntry, "missing for a stored record")
            })?;
            let mut batch = WriteBatch::new();
            batch.delete(sk.clone());
            let target = record_target(key, Vec::new());
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
            .commit_with(batch, vec![e], &[&keys], &[], Flush::Write, None, |b, _| {
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
    /// verifiable but name it only by its keyed pseudonym. The vault remembers the
    /// erasure (an erasure mark keyed by the pseudonym, in the same commit): later writes
    /// for `subject` fail with [`Error::SubjectErased`] until
    /// [`Vault::readmit_subject`]. Returns the number of records erased. Fails with
    /// [`Error::NotFound`] for an unknown subject.
    pub fn erase_subject(&self, ctx: &AccessContext, subject: &str) -> Result<u64> {
        let tag = self.subject_tag(subject);
        let r = self.guarded(ctx, Action::Erase, Some(tag), || {
            validate_id("subject", subject)?;
            self.decide(ctx)?.check_erase()?;
            let mut e = PendingEntry::new(ctx, Action::Erase, Outcome::Ok);
            e.subject = Some((tag, Vec::new()));
            let mut n = 0u64;
            let erasure = Erasure { tag };
            // Flushed below whatever the durability, as every erasure is.
            self.commit_with(
                WriteBatch::new(),
                vec![e],
                &[],
                &[],
                Flush::Caller,
                Some(erasure),
                |batch, entries| {
                    let ek = keyspace::subject_entry(&tag);
                    if self.storage.get(&ek)?.is_none() {
                        return Err(Error::NotFound);
                    }
                    // Records, index entries and keys go, and the erasure mark comes, in
                    // this one batch: the erasure is remembered (erasure.rs).
                    let at = entries.first().map(|e| e.time_ms).unwrap_or_default();
                    let seq = self.next_log_seq();
                    n = self.erase_tag_in(batch, &tag, at, seq)?;
                    // Until a purge has rewritten the database, sled's files still hold
                    // the erased bytes: the marker makes the next open finish the job
                    // after a crash.
                    batch.put(keyspace::PURGE_PENDING.to_vec(), Vec::new());
                    for e in entries {
                        e.note = format!("records={n}");
                    }
                    Ok(())
                },
            )?;
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
        self.log_only(ctx, Action::Erase, "storage purged", Flush::Write)?;
        Ok(())
    }

    pub(super) fn purge_storage(&self) -> Result<()> {
        let _g = lock(&self.commit_lock);
        self.storage.purge()?;
        let mut done = WriteBatch::new();
        done.delete(keyspace::PURGE_PENDING.to_vec());
        self.storage.apply(done)?;
        self.storage.flush()?;
        Ok(())
    }

    // ----- reads -------------------------------------------------------------------------

    /// Reads record `key` whole into `T` (e.g. `serde_json::Value` or the caller's
    /// struct), through serde_json from the record's exact text ([`Vault::get_json`]).
    /// Logged as `read`, naming every field, before the value is returned. Fails with
    /// [`Error::NotFound`], [`Error::Integrity`] (tampered or corrupted),
    /// [`Error::UnknownKeyVersion`], [`Error::AccessDenied`], [`Error::InvalidInput`]
    /// when `T` does not fit the record.
    pub fn get<T: DeserializeOwned>(&self, ctx: &AccessContext, key: &RecordKey) -> Result<T> {
        from_json(&self.read_record(ctx, key, None)?)
    }

    /// Reads record `key` whole as the exact JSON text it was stored with: the same
    /// number and string tokens and member order, byte for byte (whitespace outside
    /// strings aside). The fields are decrypted straight into the returned text. Logged
    /// and failing like [`Vault::get`].
    pub fn get_json(&self, ctx: &AccessContext, key: &RecordKey) -> Result<JsonText> {
        self.read_record(ctx, key, None)
    }

    /// Reads only the named top-level fields of record `key` (absent names are skipped;
    /// names compared after unescaping) into `T`; the other fields are not decrypted.
    /// Logged as `read`, naming the fields returned.
    pub fn get_fields<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        key: &RecordKey,
        fields: &[&str],
    ) -> Result<T> {
        from_json(&self.read_record(ctx, key, Some(fields))?)
    }

    /// [`Vault::get_fields`] as exact JSON text: an object of the named members, in
    /// stored order, each byte for byte as stored.
    pub fn get_fields_json(
        &self,
        ctx: &AccessContext,
        key: &RecordKey,
        fields: &[&str],
    ) -> Result<JsonText> {
        self.read_record(ctx, key, Some(fields))
    }

    fn read_record(
        &self,
        ctx: &AccessContext,
        key: &RecordKey,
        want: Option<&[&str]>,
    ) -> Result<JsonText> {
        let tag = self.subject_tag(&key.subject);
        let (value, keys, names) = self.guarded_record(ctx, Action::Read, key, || {
            key.validate()?;
            let decision = self.decide(ctx)?;
            let reader = OpenFor::Caller(&decision);
            // Refused before the lookup, so that a denied caller does not learn whether
            // the record exists; `with_opened` narrows the fields it opens.
            reader.narrow(&key.collection, want)?;
            let sk = self.record_storage_key(&tag, key);
            let mut attempts = 0;
            loop {
                attempts += 1;
                let bytes = self.storage.get(&sk)?.ok_or(Error::NotFound)?;
                let keys = self.keyring.load(&tag, self.read_fn())?.ok_or_else(|| {
                    Error::integrity(Structure::SubjectEntry, "missing for a stored record")
                })?;
                let opened = self
                    .with_opened(
                        &keys,
                        &sk,
                        Some(key),
                        &bytes,
                        &Opening {
                            reader: &reader,
                            fields: want,
                            only_collection: None,
                        },
                        |sealed, dek, bind, meta, _, want| {
                            let (text, picked) = sealed.open_json(dek, bind, meta, want)?;
                            let names = picked.into_iter().map(|i| meta.name(i).to_owned());
                            Ok((text, names.collect::<Vec<String>>()))
                        },
                    )
                    .and_then(|o| {
                        o.ok_or_else(|| {
                            Error::integrity(Structure::RecordMeta, "unexpected collection")
                        })
                    });
                match opened {
                    // A data-key rotation re-encrypted the record and retired the version
                    // between our two reads: read the record again.
                    Err(Error::UnknownKeyVersion(_)) if attempts < 4 => continue,
                    Err(e) => return Err(e),
                    Ok((text, names)) => return Ok((text, keys, names)),
                }
            }
        })?;
        let target = record_target(key, names);
        let e = self.entry_for(
            ctx,
            Action::Read,
            Outcome::Ok,
            Some(&keys),
            None,
            Some(&target),
        );
        self.commit(WriteBatch::new(), vec![e], &[&keys], Flush::Read)?;
        Ok(value)
    }

    /// Opens a stored record value for `reader`: its meta block and the wanted fields
    /// (`want`, narrowed by the policy for a caller). When `expect` is given, the sealed
    /// ids must equal it.
    pub(super) fn open_record(
        &self,
        reader: &OpenFor<'_>,
        keys: &SubjectKeys,
        storage_key: &[u8],
        expect: Option<&RecordKey>,
        bytes: &[u8],
        want: Option<&[&str]>,
    ) -> Result<(Vec<PlainField>, RecordKey)> {
        self.with_opened(
            keys,
            storage_key,
            expect,
            bytes,
            &Opening {
                reader,
                fields: want,
                only_collection: None,
            },
            |sealed, dek, bind, meta, key, want| {
                Ok((sealed.open_fields(dek, bind, meta, want)?, key))
            },
        )?
        .ok_or_else(|| Error::integrity(Structure::RecordMeta, "unexpected collection"))
    }

    /// The read choke point: the one function that decrypts a stored record's fields.
    /// Parses a stored record value, opens its meta block, checks its ids (against
    /// `expect` when given), then asks the policy what `what.reader` may open of a record
    /// of that collection ([`OpenFor::narrow`]: refused, or the fields narrowed) and hands
    /// the record to `open` with the fields to open (the last argument, which `open` must
    /// pass on). `None`, without opening any field, when the record's collection is not
    /// `what.only_collection`.
    pub(super) fn with_opened<R>(
        &self,
        keys: &SubjectKeys,
        storage_key: &[u8],
        expect: Option<&RecordKey>,
        bytes: &[u8],
        what: &Opening<'_>,
        open: impl FnOnce(
            &SealedRecord<'_>,
            &AeadKey,
            &Binding<'_>,
            &Meta,
            RecordKey,
            Option<&[&str]>,
        ) -> Result<R>,
    ) -> Result<Option<R>> {
        let only_collection = what.only_collection;
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
                Structure::RecordMeta,
                "ids do not match the record key",
            ));
        }
        if only_collection.is_some_and(|c| c != key.collection) {
            return Ok(None);
        }
        let narrowed = what.reader.narrow(&key.collection, what.fields)?;
        let names: Option<Vec<&str>> = narrowed
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect());
        let want = match &names {
            Some(n) => Some(n.as_slice()),
            None => what.fields,
        };
        let bind = Binding { key: &key, ..bind };
        let r = open(&sealed, &dek.aead, &bind, &meta, key.clone(), want)?;
        Ok(Some(r))
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
        typed(self.scan_subject(ctx, subject, collection, Action::Read)?)
    }

    /// [`Vault::records_of`] as exact JSON texts (see [`Vault::get_json`]).
    pub fn records_of_json(
        &self,
        ctx: &AccessContext,
        subject: &str,
        collection: Option<&str>,
    ) -> Result<Vec<(RecordKey, JsonText)>> {
        self.scan_subject(ctx, subject, collection, Action::Read)
    }

    /// [`Vault::records_of`] for taking the records out of the vault (a FHIR export, a
    /// GDPR art. 15/20 copy): logged as `export` instead of `read`.
    pub fn export_records_of<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        subject: &str,
    ) -> Result<Vec<(RecordKey, T)>> {
        typed(self.scan_subject(ctx, subject, None, Action::Export)?)
    }

    /// [`Vault::export_records_of`] as exact JSON texts: what an export writes, byte for
    /// byte what was imported.
    pub fn export_records_of_json(
        &self,
        ctx: &AccessContext,
        subject: &str,
    ) -> Result<Vec<(RecordKey, JsonText)>> {
        self.scan_subject(ctx, subject, None, Action::Export)
    }

    fn scan_subject(
        &self,
        ctx: &AccessContext,
        subject: &str,
        collection: Option<&str>,
        action: Action,
    ) -> Result<Vec<(RecordKey, JsonText)>> {
        let mut all = self.scan_subjects(ctx, &[subject], collection, action)?;
        Ok(all.pop().map(|(_, records)| records).unwrap_or_default())
    }

    /// Reads every record of each subject of `subjects` (optionally only of
    /// `collection`) as exact JSON texts, in one commit of the access log: the bulk read
    /// behind a full scan or an export, which reads the subjects a batch at a time
    /// instead of paying a log commit (and its flush) per subject. Each subject still
    /// gets its own entry of `action` ([`Action::Read`] or [`Action::Export`]), naming
    /// the subject (sealed under its audit key, so its access report shows the read and
    /// its erasure unlinks it) and the number of records, exactly as
    /// [`Vault::records_of_json`] or [`Vault::export_records_of_json`] logs it; all the
    /// entries are appended before anything is returned. Returns, in the order given,
    /// each subject with its records in storage order (empty for an unknown or erased
    /// subject). The policy decides as for [`Vault::records_of`]: a purpose that may
    /// not read `collection` is refused for the whole batch, and a failed or denied
    /// batch logs a failed or denied entry naming each subject it concerned.
    ///
    /// Memory holds the records of the whole batch: pass batches of a few hundred
    /// subjects. Fails with [`Error::InvalidInput`] (an id empty or over 256 bytes,
    /// another action), [`Error::AccessDenied`], [`Error::Integrity`] (then nothing of
    /// the batch is returned), [`Error::Storage`].
    pub fn records_of_subjects_json(
        &self,
        ctx: &AccessContext,
        subjects: &[&str],
        collection: Option<&str>,
        action: Action,
    ) -> Result<Vec<SubjectRecords>> {
        if !matches!(action, Action::Read | Action::Export) {
            return Err(Error::invalid(
                InputKind::Action,
                "a scan logs a read or an export",
            ));
        }
        self.scan_subjects(ctx, subjects, collection, action)
    }

    fn scan_subjects(
        &self,
        ctx: &AccessContext,
        subjects: &[&str],
        collection: Option<&str>,
        action: Action,
    ) -> Result<Vec<SubjectRecords>> {
        // The subject a failure concerns (when it is known), else every subject.
        let mut failed_at: Option<SubjectTag> = None;
        let r = ctx
            .validate()
            .and_then(|_| self.authorize(ctx))
            .and_then(|_| {
                for s in subjects {
                    validate_id("subject", s)?;
                }
                let decision = self.decide(ctx)?;
                decision.check_read(collection)?;
                let reader = OpenFor::Caller(&decision);
                let mut out = Vec::with_capacity(subjects.len());
                for subject in subjects {
                    let tag = self.subject_tag(subject);
                    failed_at = Some(tag);
                    let (records, keys) = self.read_subject(&reader, &tag, collection)?;
                    out.push((tag, *subject, records, keys));
                }
                failed_at = None;
                Ok(out)
            });
        let read = match r {
            Ok(read) => read,
            Err(e) => {
                let r = Err(e);
                let tags: Vec<Option<SubjectTag>> = match (failed_at, subjects.is_empty()) {
                    (Some(t), _) => vec![Some(t)],
                    (None, true) => vec![None],
                    (None, false) => subjects.iter().map(|s| Some(self.subject_tag(s))).collect(),
                };
                self.log_failures(ctx, action, &tags, &r);
                return r;
            }
        };
        let mut entries = Vec::with_capacity(read.len());
        for (tag, subject, records, keys) in &read {
            let target = Target {
                subject: (*subject).to_owned(),
                collection: collection.map(str::to_owned),
                record_id: None,
                fields: Vec::new(),
            };
            let mut e = self.entry_for(
                ctx,
                action,
                Outcome::Ok,
                keys.as_deref(),
                Some(*tag),
                Some(&target),
            );
            e.note = format!("records={}", records.len());
            entries.push(e);
        }
        let subs: Vec<&Arc<SubjectKeys>> = read.iter().filter_map(|r| r.3.as_ref()).collect();
        if !entries.is_empty() {
            self.commit(WriteBatch::new(), entries, &subs, Flush::Read)?;
        }
        Ok(read
            .into_iter()
            .map(|(_, s, records, _)| (s.to_owned(), records))
            .collect())
    }

    /// Opens every record of subject `tag` (only of `collection` when given) for
    /// `reader`, in storage order; no log entry. Records of a collection the purpose may
    /// not read are left out of a whole-subject read (and never decrypted). Empty, with
    /// no keys, for a subject without keys (unknown or erased).
    #[allow(clippy::type_complexity)]
    fn read_subject(
        &self,
        reader: &OpenFor<'_>,
        tag: &SubjectTag,
        collection: Option<&str>,
    ) -> Result<(Vec<(RecordKey, JsonText)>, Option<Arc<SubjectKeys>>)> {
        let Some(keys) = self.keyring.load(tag, self.read_fn())? else {
            return Ok((Vec::new(), None));
        };
        let prefix = keyspace::subject_records(tag);
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        for item in self.storage.scan(&prefix, end.as_deref()) {
            let (k, v) = item?;
            let opened = self.with_opened(
                &keys,
                &k,
                None,
                &v,
                &Opening {
                    reader,
                    fields: None,
                    only_collection: collection,
                },
                |sealed, dek, bind, meta, key, want| {
                    Ok((key, sealed.open_json(dek, bind, meta, want)?.0))
                },
            );
            match opened {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(Error::AccessDenied(Denial::Policy { .. })) if collection.is_none() => {}
                Err(e) => return Err(e),
            }
        }
        Ok((out, Some(keys)))
    }

    /// Lists every subject id (decrypted from the keyring; erased subjects are gone).
    /// Logged as `search`. Under a policy, subject ids identify patients: listing them
    /// needs a purpose that may read some collection, or a role with the `keys` or
    /// `audit` capability (per-subject key operations, access reports); otherwise
    /// [`Error::AccessDenied`] naming the rule.
    pub fn subjects(&self, ctx: &AccessContext) -> Result<Vec<String>> {
        let out = self.guarded(ctx, Action::Search, None, || {
            if let Err(denied) = self.decide(ctx)?.check_read(None)
                && self.require_capability(ctx, "keys").is_err()
                && self.require_capability(ctx, "audit").is_err()
            {
                return Err(denied);
            }
            let mut out = Vec::new();
            let (start, end) = keyspace::prefix_range(keyspace::SUBJECT_PREFIX);
            for item in self.storage.scan(&start, Some(&end)) {
                let (k, v) = item?;
                let tag: SubjectTag =
                    k.get(1..17)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| {
                            Error::integrity(Structure::SubjectEntry, "storage key malformed")
                        })?;
                let keys = match self.keyring.cached(&tag) {
                    Some(k) => k,
                    None => Arc::new(self.keyring.decode_entry(&tag, &v)?),
                };
                out.push(keys.subject.to_string());
            }
            Ok(out)
        })?;
        self.log_only(
            ctx,
            Action::Search,
            format!("list subjects: {}", out.len()),
            Flush::Read,
        )?;
        Ok(out)
    }
}

fn check_write_action(action: Action) -> Result<()> {
    if matches!(action, Action::Write | Action::Import) {
        Ok(())
    } else {
        Err(Error::invalid(
            InputKind::Action,
            "put_many logs a write or an import",
        ))
    }
}

/// Deserializes each record's text into `T`.
pub(super) fn typed<T: DeserializeOwned>(
    records: Vec<(RecordKey, JsonText)>,
) -> Result<Vec<(RecordKey, T)>> {
    records
        .into_iter()
        .map(|(k, t)| Ok((k, from_json(&t)?)))
        .collect()
}

/// What [`Vault::with_opened`] opens, and for whom.
pub(super) struct Opening<'a> {
    /// Whose read it is (the policy narrows a caller's).
    pub reader: &'a OpenFor<'a>,
    /// The fields asked for (`None`: all).
    pub fields: Option<&'a [&'a str]>,
    /// Only a record of this collection is opened (`None`: any).
    pub only_collection: Option<&'a str>,
}
