//! Blind-index maintenance and lookups on the façade: index entries staged with each
//! write and applied under the commit lock, `find` (hash the query, decrypt the
//! candidates, drop false positives), index builds for existing records, and a checker.
//! Formats and leakage: docs/INDEXES.md.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::commit::{Flush, noted};
use super::governance::{Decision, OpenFor};
use super::records::typed;
use super::{Vault, lock};
use crate::audit::{Action, Outcome, Target};
use crate::context::AccessContext;
use crate::error::{Error, Existing, InputKind, Result, Structure};
use crate::index::{
    BuildState, IndexCheck, IndexDef, IndexSpec, IndexStatus, ReverseCache, Snapshot,
    decode_reverse, suffix_of_forward,
};
use crate::json::JsonText;
use crate::keyring::{SubjectKeys, SubjectTag};
use crate::keyspace;
use crate::record::{PlainField, RecordKey, join_json};
use crate::storage::{WriteBatch, prefix_end};

use super::Progress;

/// Records read per atomic batch while an index is built.
const BUILD_BATCH: usize = 512;
/// Attempts to open a record that a concurrent data-key rotation re-encrypts.
const OPEN_ATTEMPTS: usize = 4;

/// A record being written, with what its index entries need.
pub(super) struct Staged {
    /// Record storage key without its `r` prefix: `subject_tag || record_tag`.
    suffix: Vec<u8>,
    collection: String,
    fields: Vec<PlainField>,
    /// `index_id || value_hash` per entry, computed against the writer's snapshot.
    entries: Vec<Vec<u8>>,
}

/// A record opened from the bytes read during an index build: the bytes (compared
/// again under the commit lock), its collection and the fields opened.
type StoredRecord = (Vec<u8>, String, Vec<PlainField>);

impl Vault {
    /// Under a policy, a lookup in `collection` is refused unless every field the index
    /// looks at may be read (a lookup on a field one may not read would reveal its
    /// value); the records found are then opened for the caller, narrowed to the granted
    /// fields by [`Vault::with_opened`].
    fn check_lookup(
        &self,
        decision: &Decision,
        collection: &str,
        index_fields: &[&str],
    ) -> Result<()> {
        let f = decision.read_filter(collection)?;
        if index_fields.iter().any(|x| !f.allows(x)) {
            return Err(Error::AccessDenied(crate::error::Denial::Policy {
                rule: "field-not-granted".to_owned(),
                version: self.policy.version(),
            }));
        }
        Ok(())
    }
}

/// A record opened for a lookup.
struct Opened {
    key: RecordKey,
    fields: Vec<PlainField>,
    keys: Arc<SubjectKeys>,
}

fn entries_for(snap: &Snapshot, collection: &str, fields: &[PlainField]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for d in snap.of(collection) {
        out.extend(d.entries_of(fields)?);
    }
    Ok(out)
}

impl Vault {
    /// Computes a written record's index entries (outside the commit lock).
    pub(super) fn stage_index(
        &self,
        snap: &Snapshot,
        storage_key: Vec<u8>,
        collection: &str,
        fields: Vec<PlainField>,
    ) -> Result<Staged> {
        let entries = entries_for(snap, collection, &fields)?;
        let mut suffix = storage_key;
        suffix.remove(0);
        Ok(Staged {
            suffix,
            collection: collection.to_owned(),
            fields,
            entries,
        })
    }

    /// Under the commit lock: recomputes the entries if the definitions changed since
    /// `snap`, and queues each record's entries in place of its old ones.
    pub(super) fn apply_index(
        &self,
        snap: &Snapshot,
        staged: &mut [Staged],
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let current = self.indexes.snapshot();
        if current.generation != snap.generation {
            for s in staged.iter_mut() {
                s.entries = entries_for(&current, &s.collection, &s.fields)?;
            }
        }
        if !self.indexes.ever_used() {
            return Ok(()); // no index was ever defined: no entry to replace
        }
        let mut rc = ReverseCache::default();
        for s in staged.iter_mut() {
            let entries = std::mem::take(&mut s.entries);
            rc.replace(self.storage.as_ref(), &s.suffix, entries, batch)?;
        }
        Ok(())
    }

    /// Opens the record with storage-key suffix `suffix` (`want`: only those fields).
    /// `None` when it no longer exists or its subject was erased.
    fn open_by_suffix(
        &self,
        reader: &OpenFor<'_>,
        suffix: &[u8],
        want: Option<&[&str]>,
    ) -> Result<Option<Opened>> {
        let tag: SubjectTag = suffix
            .get(..16)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| Error::integrity(Structure::IndexEntry, "storage key malformed"))?;
        let mut sk = Vec::with_capacity(1 + suffix.len());
        sk.push(keyspace::RECORD_PREFIX);
        sk.extend_from_slice(suffix);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(bytes) = self.storage.get(&sk)? else {
                return Ok(None);
            };
            let Some(keys) = self.keyring.load(&tag, self.read_fn())? else {
                return Ok(None);
            };
            match self.open_record(reader, &keys, &sk, None, &bytes, want) {
                // Re-encrypted and its old version retired between our reads: read again.
                Err(Error::UnknownKeyVersion(_)) if attempts < OPEN_ATTEMPTS => continue,
                Err(e) => return Err(e),
                Ok((fields, key)) => return Ok(Some(Opened { key, fields, keys })),
            }
        }
    }

    /// Finds the records of `collection` whose index `index` holds `values` (one value
    /// per part of the index, in the order of its parts; normalized as the index says),
    /// each read whole into `T`.
    ///
    /// Hashes the query, scans the candidates (about R / 2^bits false ones for an index
    /// truncated to `bits` over R entries, docs/INDEXES.md), decrypts each and keeps only
    /// those whose own values match, so the result is exact. Logged before returning: one
    /// `search` entry whose note names the collection, the index and the counts of
    /// candidates and matches (never the value nor its hash), and one `read` entry per
    /// record returned. Fails with [`Error::NotFound`] for an unknown index,
    /// [`Error::InvalidInput`] for a wrong number of values or an index still being
    /// built (see [`Vault::add_index`], [`Vault::find_by_scan`]), [`Error::Integrity`]
    /// when a candidate fails to open.
    pub fn find<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        collection: &str,
        index: &str,
        values: &[&str],
    ) -> Result<Vec<(RecordKey, T)>> {
        typed(self.find_json(ctx, collection, index, values)?)
    }

    /// [`Vault::find`] returning each record's exact JSON text (see [`Vault::get_json`]).
    pub fn find_json(
        &self,
        ctx: &AccessContext,
        collection: &str,
        index: &str,
        values: &[&str],
    ) -> Result<Vec<(RecordKey, JsonText)>> {
        let (found, candidates) = self.guarded(ctx, Action::Search, None, || {
            let def = self.indexes.get(collection, index).ok_or(Error::NotFound)?;
            let decision = self.decide(ctx)?;
            self.check_lookup(&decision, collection, &def.spec.fields())?;
            let reader = OpenFor::Caller(&decision);
            if !def.built() {
                return Err(Error::invalid(
                    InputKind::Index,
                    "index still being built: resume it with add_index, or use find_by_scan",
                ));
            }
            let Some(q) = def.spec.query(values)? else {
                return Ok((Vec::new(), 0));
            };
            let prefix = def.entry_prefix(&def.hash(&q));
            let end = prefix_end(&prefix);
            let mut found = Vec::new();
            let mut candidates = 0u64;
            for item in self.storage.scan(&prefix, end.as_deref()) {
                let (k, _) = item?;
                candidates += 1;
                let suffix = suffix_of_forward(&k)?;
                if suffix.len() + prefix.len() != k.len() {
                    return Err(Error::integrity(
                        Structure::IndexEntry,
                        "storage key malformed",
                    ));
                }
                let Some(o) = self.open_by_suffix(&reader, suffix, None)? else {
                    continue;
                };
                if o.key.collection == collection && def.spec.tuples(&o.fields)?.contains(&q) {
                    found.push(o);
                }
            }
            Ok((found, candidates))
        })?;
        self.log_found(ctx, collection, index, "find", candidates, found)
    }

    /// Answers the same query as [`Vault::find`] without the index entries: decrypts the
    /// index's fields of every record of the vault (records of other collections
    /// included: a record's collection is sealed) and keeps the matches. O(records);
    /// for an index still being built, and as the baseline of the `find` benchmark.
    /// Logged like `find`. Fails with [`Error::NotFound`] for an unknown index.
    pub fn find_by_scan<T: DeserializeOwned>(
        &self,
        ctx: &AccessContext,
        collection: &str,
        index: &str,
        values: &[&str],
    ) -> Result<Vec<(RecordKey, T)>> {
        typed(self.find_by_scan_json(ctx, collection, index, values)?)
    }

    /// [`Vault::find_by_scan`] returning each record's exact JSON text.
    pub fn find_by_scan_json(
        &self,
        ctx: &AccessContext,
        collection: &str,
        index: &str,
        values: &[&str],
    ) -> Result<Vec<(RecordKey, JsonText)>> {
        let (found, candidates) = self.guarded(ctx, Action::Search, None, || {
            let def = self.indexes.get(collection, index).ok_or(Error::NotFound)?;
            let Some(q) = def.spec.query(values)? else {
                return Ok((Vec::new(), 0));
            };
            let want = def.spec.fields();
            let decision = self.decide(ctx)?;
            self.check_lookup(&decision, collection, &want)?;
            let reader = OpenFor::Caller(&decision);
            let mut found = Vec::new();
            let mut candidates = 0u64;
            for item in self.storage.scan(
                &[keyspace::RECORD_PREFIX],
                Some(&[keyspace::RECORD_PREFIX + 1]),
            ) {
                let (k, v) = item?;
                candidates += 1;
                let Some((_, coll, fields)) = self.open_stored(&k, &v, &want)? else {
                    continue;
                };
                if coll == collection
                    && def.spec.tuples(&fields)?.contains(&q)
                    && let Some(full) = self.open_by_suffix(&reader, &k[1..], None)?
                {
                    found.push(full);
                }
            }
            Ok((found, candidates))
        })?;
        self.log_found(ctx, collection, index, "find by scan", candidates, found)
    }

    /// Appends the `search` entry and one `read` entry per record found, then returns
    /// the records.
    fn log_found(
        &self,
        ctx: &AccessContext,
        collection: &str,
        index: &str,
        how: &str,
        candidates: u64,
        found: Vec<Opened>,
    ) -> Result<Vec<(RecordKey, JsonText)>> {
        let mut out = Vec::with_capacity(found.len());
        let mut entries = Vec::with_capacity(found.len() + 1);
        let search = noted(
            ctx,
            Action::Search,
            format!(
                "{how}: collection={collection} index={index} candidates={candidates} matches={}",
                found.len()
            ),
        );
        entries.push(search);
        let mut subjects: Vec<Arc<SubjectKeys>> = Vec::new();
        for o in found {
            let value = join_json(&o.fields)?;
            let target = Target {
                subject: o.key.subject.clone(),
                collection: Some(o.key.collection.clone()),
                record_id: Some(o.key.record_id.clone()),
                fields: o.fields.iter().map(|f| f.name.clone()).collect(),
            };
            let mut e = self.entry_for(
                ctx,
                Action::Read,
                Outcome::Ok,
                Some(&o.keys),
                None,
                Some(&target),
            );
            e.note = how.to_owned();
            entries.push(e);
            if !subjects.iter().any(|k| k.tag == o.keys.tag) {
                subjects.push(o.keys);
            }
            out.push((o.key, value));
        }
        let refs: Vec<&Arc<SubjectKeys>> = subjects.iter().collect();
        self.commit(WriteBatch::new(), entries, &refs, Flush::Read)?;
        Ok(out)
    }

    /// The indexes defined, sorted by collection then name, with their build state. Not
    /// logged (definitions hold no patient data).
    pub fn indexes(&self) -> Vec<IndexStatus> {
        let mut v: Vec<IndexStatus> = self
            .indexes
            .snapshot()
            .defs
            .iter()
            .map(|d| IndexStatus {
                spec: d.spec.clone(),
                built: d.built(),
            })
            .collect();
        v.sort_by(|a, b| {
            (&a.spec.collection, &a.spec.name).cmp(&(&b.spec.collection, &b.spec.name))
        });
        v
    }

    /// Adds a blind index and builds it for the records already stored; returns the
    /// number of records that received entries in this call.
    ///
    /// The sealed definition is committed first, so every write from then on indexes
    /// too; then every record of the vault is read in atomic batches of 512 (records of
    /// other collections are opened only to learn their collection, which is sealed)
    /// and the batch that adds a batch's entries advances a persisted cursor. Reads and
    /// writes go on meanwhile. Interrupted (error, kill), the index stays "being built"
    /// ([`IndexStatus::built`] false, `find` refuses it) and calling `add_index` again
    /// with the same spec resumes after the cursor. Called for an index already built
    /// with the same spec, returns 0. `progress` gets records scanned / total.
    /// Logged as `write` entries whose notes name the index (one per batch). Fails with
    /// [`Error::AlreadyExists`] when an index of that name exists in that collection
    /// with another spec, [`Error::InvalidInput`] for a bad spec.
    pub fn add_index(
        &self,
        ctx: &AccessContext,
        spec: IndexSpec,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        self.guarded(ctx, Action::Write, None, || {
            spec.validate()?;
            let _op = lock(&self.index_op_lock);
            let def = match self.indexes.get(&spec.collection, &spec.name) {
                Some(d) if d.spec == spec => d,
                Some(_) => {
                    return Err(Error::AlreadyExists(Existing::Index {
                        collection: spec.collection.clone(),
                        name: spec.name.clone(),
                    }));
                }
                None => {
                    let def = self
                        .indexes
                        .make(spec.clone(), BuildState::Building { cursor: None });
                    if self.indexes.snapshot().defs.iter().any(|d| d.id == def.id) {
                        // Two (collection, name) pairs with one 64-bit id: never seen.
                        return Err(Error::AlreadyExists(Existing::Index {
                            collection: spec.collection.clone(),
                            name: spec.name.clone(),
                        }));
                    }
                    let mut batch = WriteBatch::new();
                    batch.put(keyspace::index_def(&def.id), self.indexes.seal(&def));
                    self.commit(
                        batch,
                        vec![noted(
                            ctx,
                            Action::Write,
                            format!(
                                "index {}/{} defined: parts={} bits={}",
                                spec.collection,
                                spec.name,
                                spec.parts.len(),
                                spec.bits()
                            ),
                        )],
                        &[],
                        Flush::Write,
                    )?;
                    // Installed under the commit lock: a commit either applied before
                    // (and the build below reads it) or indexes with this definition.
                    let _g = lock(&self.commit_lock);
                    self.indexes.install(def);
                    drop(_g);
                    self.indexes
                        .get(&spec.collection, &spec.name)
                        .ok_or_else(|| Error::integrity(Structure::IndexDefinition, "vanished"))?
                }
            };
            self.build_index(ctx, &def, progress)
        })
    }

    /// Opens record `k` read as `v` (only the fields `want`), re-reading it when a
    /// concurrent data-key rotation re-encrypted it and retired the version. Returns the
    /// bytes opened, the collection and the fields; `None` when the record or its
    /// subject is gone.
    fn open_stored(&self, k: &[u8], v: &[u8], want: &[&str]) -> Result<Option<StoredRecord>> {
        let tag: SubjectTag = k
            .get(1..17)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| Error::integrity(Structure::RecordValue, "storage key malformed"))?;
        let mut bytes = v.to_vec();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(keys) = self.keyring.load(&tag, self.read_fn())? else {
                return Ok(None);
            };
            match self.open_record(&OpenFor::Vault, &keys, k, None, &bytes, Some(want)) {
                Ok((fields, key)) => return Ok(Some((bytes, key.collection, fields))),
                Err(Error::UnknownKeyVersion(_)) if attempts < OPEN_ATTEMPTS => {
                    match self.storage.get(k)? {
                        Some(b) => bytes = b,
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn build_index(
        &self,
        ctx: &AccessContext,
        def: &IndexDef,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let BuildState::Building { cursor } = &def.state else {
            return Ok(0);
        };
        let mut cursor = cursor.clone();
        let start_of = |c: &Option<Vec<u8>>| match c {
            Some(c) => {
                let mut s = c.clone();
                s.push(0); // the smallest key after the cursor
                s
            }
            None => vec![keyspace::RECORD_PREFIX],
        };
        let end = [keyspace::RECORD_PREFIX + 1];
        let started = Instant::now();
        let mut total = 0u64;
        for item in self.storage.scan(&start_of(&cursor), Some(&end)) {
            item?;
            total += 1;
        }
        let mut done = 0u64;
        let mut indexed = 0u64;
        let want = def.spec.fields();
        let report = |done: u64, total: u64, progress: &mut dyn FnMut(Progress)| {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            progress(Progress {
                done,
                total: total.max(done),
                rate_per_sec: done as f64 / secs,
            });
        };
        report(0, total, progress);
        loop {
            let mut items = Vec::with_capacity(BUILD_BATCH);
            for item in self
                .storage
                .scan(&start_of(&cursor), Some(&end))
                .take(BUILD_BATCH)
            {
                items.push(item?);
            }
            let Some((last, _)) = items.last() else { break };
            let next_cursor = Some(last.clone());
            let scanned = items.len() as u64;
            let mut staged = Vec::new();
            for (k, v) in &items {
                let Some((bytes, collection, fields)) = self.open_stored(k, v, &want)? else {
                    continue;
                };
                if collection != def.spec.collection {
                    continue;
                }
                let entries = def.entries_of(&fields)?;
                if !entries.is_empty() {
                    staged.push((k.clone(), bytes, entries));
                }
            }
            let state = BuildState::Building {
                cursor: next_cursor.clone(),
            };
            let next = self.indexes.make(def.spec.clone(), state.clone());
            let mut batch = WriteBatch::new();
            batch.put(keyspace::index_def(&def.id), self.indexes.seal(&next));
            let e = noted(
                ctx,
                Action::Write,
                format!(
                    "index {}/{}: {} of {total} records scanned",
                    def.spec.collection,
                    def.spec.name,
                    done + items.len() as u64
                ),
            );
            let mut added = 0u64;
            self.commit_with(batch, vec![e], &[], &[], Flush::Write, None, |b, _| {
                let mut rc = ReverseCache::default();
                for (k, read, entries) in &staged {
                    // A record rewritten since it was read was indexed by that write
                    // (committed after the definition); a deleted one needs nothing.
                    if self.storage.get(k)?.as_deref() != Some(read.as_slice()) {
                        continue;
                    }
                    rc.add(self.storage.as_ref(), &k[1..], entries.clone(), b)?;
                    added += 1;
                }
                Ok(())
            })?;
            indexed += added;
            self.indexes.set_state(&def.id, state);
            cursor = next_cursor;
            done += scanned;
            report(done, total, progress);
        }
        let mut batch = WriteBatch::new();
        let ready = self.indexes.make(def.spec.clone(), BuildState::Ready);
        batch.put(keyspace::index_def(&def.id), self.indexes.seal(&ready));
        let e = noted(
            ctx,
            Action::Write,
            format!(
                "index {}/{} built: {indexed} records indexed",
                def.spec.collection, def.spec.name
            ),
        );
        self.commit(batch, vec![e], &[], Flush::Write)?;
        self.indexes.set_state(&def.id, BuildState::Ready);
        Ok(indexed)
    }

    /// Checks every blind index against the records: decrypts every record's indexed
    /// fields, recomputes its entries and compares them with the stored forward and
    /// reverse entries. Holds the commit lock throughout (writes wait), so the answer is
    /// exact; O(records). Logged as `verify` with the counts. See [`IndexCheck`].
    pub fn verify_indexes(&self, ctx: &AccessContext) -> Result<IndexCheck> {
        let check = self.guarded(ctx, Action::Verify, None, || {
            let _g = lock(&self.commit_lock);
            let snap = self.indexes.snapshot();
            let built: HashSet<[u8; 8]> = snap
                .defs
                .iter()
                .filter(|d| d.built())
                .map(|d| d.id)
                .collect();
            let mut want: Vec<&str> = snap.defs.iter().flat_map(|d| d.spec.fields()).collect();
            want.sort_unstable();
            want.dedup();
            let mut check = IndexCheck::default();
            let mut expected: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
            for item in self.storage.scan(
                &[keyspace::RECORD_PREFIX],
                Some(&[keyspace::RECORD_PREFIX + 1]),
            ) {
                let (k, _) = item?;
                check.records += 1;
                let suffix = &k[1..];
                let o = self
                    .open_by_suffix(&OpenFor::Vault, suffix, Some(&want))?
                    .ok_or_else(|| {
                        Error::integrity(Structure::SubjectEntry, "missing for a stored record")
                    })?;
                let entries = entries_for(&snap, &o.key.collection, &o.fields)?;
                expected.insert(suffix.to_vec(), entries.into_iter().collect());
            }
            let mut actual: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
            for item in self.storage.scan(
                &[keyspace::INDEX_ENTRY_PREFIX],
                Some(&[keyspace::INDEX_ENTRY_PREFIX + 1]),
            ) {
                let (k, _) = item?;
                check.entries += 1;
                let suffix = suffix_of_forward(&k)?;
                let entry = k[1..k.len() - suffix.len()].to_vec();
                actual.entry(suffix.to_vec()).or_default().insert(entry);
            }
            let none = HashSet::new();
            for (suffix, exp) in &expected {
                let act = actual.get(suffix).unwrap_or(&none);
                check.missing += exp
                    .iter()
                    .filter(|e| {
                        !act.contains(*e) && e.get(..8).is_some_and(|id| built.contains(id))
                    })
                    .count() as u64;
            }
            for (suffix, act) in &actual {
                let exp = expected.get(suffix).unwrap_or(&none);
                check.dangling += act.iter().filter(|e| !exp.contains(*e)).count() as u64;
            }
            let mut seen = HashSet::new();
            for item in self.storage.scan(
                &[keyspace::REVERSE_PREFIX],
                Some(&[keyspace::REVERSE_PREFIX + 1]),
            ) {
                let (k, v) = item?;
                let suffix = k[1..].to_vec();
                let listed: HashSet<Vec<u8>> = decode_reverse(&v)?.into_iter().collect();
                let act = actual.get(&suffix).unwrap_or(&none);
                if listed != *act || !expected.contains_key(&suffix) {
                    check.reverse_mismatches += 1;
                }
                seen.insert(suffix);
            }
            check.reverse_mismatches += actual.keys().filter(|s| !seen.contains(*s)).count() as u64;
            Ok(check)
        })?;
        self.log_only(
            ctx,
            Action::Verify,
            format!(
                "indexes: records={} entries={} missing={} dangling={} reverse_mismatches={}",
                check.records,
                check.entries,
                check.missing,
                check.dangling,
                check.reverse_mismatches
            ),
            Flush::Read,
        )?;
        Ok(check)
    }
}
