//! Key lifecycle: root-key rotation (one header write, O(1)), vault-KEK rotation (rewrap
//! every subject entry, no record touched, resumable), data-key rotation (re-encrypt
//! online in resumable batches), retirement of old data-key versions, and `rotate_all`.
//!
//! Safe at every instant: a root-key rotation is one atomic header replacement (no header
//! wraps one root under another); during a KEK rotation the header wraps both KEKs under
//! the root, so entries under either open; a data-key version is removed only in the same
//! atomic batch that proves no record uses it, so every record always opens with exactly
//! one held version; the data-key rotation cursor is persisted with each subject's
//! completion.

use std::sync::Arc;
use std::time::Instant;

use super::commit::{Flush, noted};
use super::governance::OpenFor;
use super::{Vault, lock};
use crate::audit::{Action, Outcome, PendingEntry, Target};
use crate::codec::Reader;
use crate::context::AccessContext;
use crate::crypto::{KdfParams, KeySource, MacKey, SecretKey, ct_eq, derive_key};
use crate::error::{Error, InputKind, Result, Structure};
use crate::header::Kek;
use crate::keyring::{SubjectKeys, SubjectTag};
use crate::keyspace;
use crate::record::{Binding, parse_record, seal_record};
use crate::storage::{WriteBatch, prefix_end};

/// Storage key of the persisted data-key rotation state.
/// Rotation-state format version.
pub const ROTATION_STATE_VERSION: u8 = 1;
/// Records re-encrypted per atomic batch.
const REKEY_BATCH: usize = 512;
/// Subjects rotated together: one commit adds their new versions, one retires the old
/// ones and advances the cursor past the group.
const SUBJECT_GROUP: usize = 128;

/// A re-encryption batch being built.
#[derive(Default)]
struct Rekey {
    batch: WriteBatch,
    expected: Vec<(Vec<u8>, Vec<u8>)>,
    uses: Vec<(SubjectTag, u32)>,
    entries: Vec<PendingEntry>,
}
/// Subject entries rewrapped per atomic batch during a vault-KEK rotation (one scan and
/// one commit each; ~200 bytes an entry, so ~1.6 MB a batch). Below the 8,192 changes
/// one log entry lists (docs/FORMAT.md "Change list"), so every rewrap stays listed.
pub const KEK_REWRAP_BATCH: usize = 8000;

/// Which subjects a data-key rotation covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationScope {
    /// Every subject of the vault.
    All,
    /// Only these subject ids.
    Subjects(Vec<String>),
}

/// Progress of a long key operation, reported through a callback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Units done (records for a data-key rotation, subject entries for a root-key one).
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// Units per second since the operation started.
    pub rate_per_sec: f64,
}

/// What a data-key rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Subjects that received a new data-key version.
    pub subjects: u64,
    /// Records re-encrypted under a new version.
    pub records: u64,
}

struct RotationState {
    /// `None`: all subjects.
    subjects: Option<Vec<SubjectTag>>,
    /// Last subject completed (rotated and old versions retired).
    cursor: Option<SubjectTag>,
}

struct Meter {
    start: Instant,
    done: u64,
    total: u64,
}

impl Meter {
    fn progress(&self) -> Progress {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        Progress {
            done: self.done,
            total: self.total,
            rate_per_sec: self.done as f64 / secs,
        }
    }

    fn tick(&mut self, n: u64, progress: &mut dyn FnMut(Progress)) {
        self.done += n;
        progress(self.progress());
    }
}

impl Vault {
    /// A `key_rotation` entry naming `keys`' subject (sealed under its audit key).
    fn subject_key_entry(
        &self,
        ctx: &AccessContext,
        keys: &SubjectKeys,
        note: String,
    ) -> PendingEntry {
        let target = Target {
            subject: keys.subject.to_string(),
            ..Target::default()
        };
        let mut e = self.entry_for(
            ctx,
            Action::KeyRotation,
            Outcome::Ok,
            Some(keys),
            None,
            Some(&target),
        );
        e.note = note;
        e
    }

    fn rotation_mac_key(&self) -> MacKey {
        MacKey::new(&derive_key(
            &self.vault_secret,
            &[b"medvault/v1/rotation-state"],
        ))
    }

    fn encode_rotation_state(&self, st: &RotationState) -> Vec<u8> {
        let mut b = vec![ROTATION_STATE_VERSION];
        match &st.subjects {
            None => b.push(0),
            Some(tags) => {
                b.push(1);
                b.extend_from_slice(&(tags.len() as u32).to_be_bytes());
                for t in tags {
                    b.extend_from_slice(t.as_bytes());
                }
            }
        }
        match &st.cursor {
            None => b.push(0),
            Some(t) => {
                b.push(1);
                b.extend_from_slice(t.as_bytes());
            }
        }
        let mac = self
            .rotation_mac_key()
            .mac_raw(&[self.vault_id().as_bytes(), &b]);
        b.extend_from_slice(&mac);
        b
    }

    fn load_rotation_state(&self) -> Result<Option<RotationState>> {
        let Some(bytes) = self.storage.get(keyspace::ROTATION_STATE)? else {
            return Ok(None);
        };
        if bytes.len() < 33 {
            return Err(Error::integrity(Structure::RotationState, "truncated"));
        }
        let (body, mac) = bytes.split_at(bytes.len() - 32);
        if !ct_eq(
            &self
                .rotation_mac_key()
                .mac_raw(&[self.vault_id().as_bytes(), body]),
            mac,
        ) {
            return Err(Error::integrity(Structure::RotationState, "MAC mismatch"));
        }
        let mut r = Reader::new(body, Structure::RotationState);
        let v = r.u8()?;
        if v != ROTATION_STATE_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "rotation state",
                version: v,
            });
        }
        let subjects = match r.u8()? {
            0 => None,
            1 => {
                let n = r.u32()? as usize;
                if n.saturating_mul(16) > r.remaining() {
                    return Err(Error::integrity(
                        Structure::RotationState,
                        "bad subject count",
                    ));
                }
                let mut tags = Vec::with_capacity(n);
                for _ in 0..n {
                    tags.push(SubjectTag::from(r.array::<16>()?));
                }
                Some(tags)
            }
            _ => return Err(Error::integrity(Structure::RotationState, "bad scope")),
        };
        let cursor = match r.u8()? {
            0 => None,
            1 => Some(SubjectTag::from(r.array::<16>()?)),
            _ => {
                return Err(Error::integrity(
                    Structure::RotationState,
                    "bad cursor flag",
                ));
            }
        };
        r.finish()?;
        Ok(Some(RotationState { subjects, cursor }))
    }

    /// True when a data-key rotation was started and not finished (e.g. the process was
    /// killed); [`Vault::rotate_data_keys`] resumes it.
    pub fn data_key_rotation_pending(&self) -> Result<bool> {
        Ok(self.storage.get(keyspace::ROTATION_STATE)?.is_some())
    }

    fn all_subject_tags(&self) -> Result<Vec<SubjectTag>> {
        let mut tags = Vec::new();
        for item in self.storage.scan(
            &[keyspace::SUBJECT_PREFIX],
            Some(&[keyspace::SUBJECT_PREFIX + 1]),
        ) {
            let (k, _) = item?;
            let t: SubjectTag = k
                .get(1..17)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| {
                    Error::integrity(Structure::SubjectEntry, "storage key malformed")
                })?;
            tags.push(t);
        }
        Ok(tags)
    }

    fn count_records(&self, tag: &SubjectTag) -> Result<u64> {
        let prefix = keyspace::subject_records(tag);
        let end = prefix_end(&prefix);
        let mut n = 0;
        for item in self.storage.scan(&prefix, end.as_deref()) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Counts a subject's records sealed under a version other than `keep` (or equal to
    /// `only`, when given).
    fn count_on_versions(&self, tag: &SubjectTag, only: Option<u32>, keep: u32) -> Result<u64> {
        let prefix = keyspace::subject_records(tag);
        let end = prefix_end(&prefix);
        let mut n = 0;
        for item in self.storage.scan(&prefix, end.as_deref()) {
            let (_, v) = item?;
            let kv = parse_record(&v)?.key_version;
            if only.map_or(kv != keep, |o| kv == o) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Rotates the data keys of `scope` online: each subject gets a new DEK version, its
    /// records are re-encrypted under it in atomic batches of 256 (reads and writes go on
    /// meanwhile), then its old versions are retired in the batch that advances the
    /// persisted cursor. A rotation interrupted (e.g. killed) is resumed by the next call,
    /// whatever its `scope`, before anything else. `progress` gets records done / total.
    /// Logged as `key_rotation` (one entry per batch and per subject). Fails with
    /// [`Error::NotFound`], before anything is written, when `scope` names a subject
    /// that has no keys (never written, or erased).
    pub fn rotate_data_keys(
        &self,
        ctx: &AccessContext,
        scope: &RotationScope,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RotationReport> {
        let r = self.guarded(ctx, Action::KeyRotation, None, || {
            // Under a policy, key operations need the `keys` capability.
            self.require_capability(ctx, "keys")?;
            let _k = lock(&self.key_op_lock);
            let state = match self.load_rotation_state()? {
                Some(s) => s,
                None => {
                    let subjects = match scope {
                        RotationScope::All => None,
                        RotationScope::Subjects(ids) => {
                            let mut tags = Vec::with_capacity(ids.len());
                            for id in ids {
                                crate::record::validate_id("subject", id)?;
                                let tag = self.subject_tag(id);
                                // An unknown (or erased) subject is the caller's mistake:
                                // refused before any state is written.
                                if self.storage.get(&keyspace::subject_entry(&tag))?.is_none() {
                                    return Err(Error::NotFound);
                                }
                                tags.push(tag);
                            }
                            tags.sort_unstable();
                            tags.dedup();
                            Some(tags)
                        }
                    };
                    let st = RotationState {
                        subjects,
                        cursor: None,
                    };
                    let mut batch = WriteBatch::new();
                    batch.put(
                        keyspace::ROTATION_STATE.to_vec(),
                        self.encode_rotation_state(&st),
                    );
                    self.commit(
                        batch,
                        vec![noted(ctx, Action::KeyRotation, "data-key rotation started")],
                        &[],
                        Flush::Write,
                    )?;
                    st
                }
            };
            self.run_data_rotation(ctx, state, progress)
        })?;
        Ok(r)
    }

    fn run_data_rotation(
        &self,
        ctx: &AccessContext,
        mut state: RotationState,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RotationReport> {
        let mut tags = match &state.subjects {
            Some(t) => t.clone(),
            None => self.all_subject_tags()?,
        };
        tags.sort_unstable();
        if let Some(c) = state.cursor {
            tags.retain(|t| *t > c);
        }
        let mut meter = Meter {
            start: Instant::now(),
            done: 0,
            total: 0,
        };
        for t in &tags {
            meter.total += self.count_records(t)?;
        }
        progress(Progress {
            done: 0,
            total: meter.total,
            rate_per_sec: 0.0,
        });
        let mut report = RotationReport::default();
        for group in tags.chunks(SUBJECT_GROUP) {
            let mut held = Vec::with_capacity(group.len());
            for tag in group {
                if let Some(keys) = self.keyring.load(tag, self.read_fn())? {
                    held.push(keys);
                }
            }
            self.add_versions(ctx, &held)?;
            report.records += self.reencrypt(ctx, &held, &mut meter, progress)?;
            report.subjects += held.len() as u64;
            state.cursor = group.last().copied();
            self.retire_old_versions(ctx, &held, &state, &mut meter, progress)?;
        }
        let mut batch = WriteBatch::new();
        batch.delete(keyspace::ROTATION_STATE.to_vec());
        self.commit(
            batch,
            vec![noted(
                ctx,
                Action::KeyRotation,
                format!(
                    "data-key rotation finished: subjects={} records={}",
                    report.subjects, report.records
                ),
            )],
            &[],
            Flush::Write,
        )?;
        Ok(report)
    }

    /// Gives each subject a new data-key version, unless a resumed rotation (or an
    /// automatic rotation) already left it with more than one; one commit, one entry
    /// per subject.
    fn add_versions(&self, ctx: &AccessContext, held: &[Arc<SubjectKeys>]) -> Result<()> {
        let mut entries = Vec::new();
        let mut touched = Vec::new();
        for keys in held {
            if keys.versions().len() == 1 {
                let v = self.keyring.add_version(keys)?;
                let e = self.subject_key_entry(ctx, keys, format!("data key v{v} created"));
                entries.push(e);
                touched.push(keys);
            }
        }
        if !entries.is_empty() {
            self.commit(WriteBatch::new(), entries, &touched, Flush::Read)?;
        }
        Ok(())
    }

    /// Re-encrypts every record of `held` not under its subject's current version, in
    /// atomic batches of [`REKEY_BATCH`] records; a record rewritten concurrently since it
    /// was read is left alone (compare-and-set under the commit lock). Returns the number
    /// of records re-encrypted.
    fn reencrypt(
        &self,
        ctx: &AccessContext,
        held: &[Arc<SubjectKeys>],
        meter: &mut Meter,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let vid = self.vault_id();
        let mut rekeyed = 0u64;
        let mut pending = Rekey::default();
        for keys in held {
            let prefix = keyspace::subject_records(&keys.tag);
            let end = prefix_end(&prefix);
            let current = keys.current_dek(0)?.version;
            let mut count = 0u64;
            for item in self.storage.scan(&prefix, end.as_deref()) {
                let (k, v) = item?;
                meter.tick(1, &mut |_| {});
                if parse_record(&v)?.key_version == current {
                    continue;
                }
                let (fields, key) = self.open_record(&OpenFor::Vault, keys, &k, None, &v, None)?;
                let dek = keys.current_dek(fields.len() as u64 + 1)?;
                let bind = Binding {
                    vault_id: &vid,
                    storage_key: &k,
                    key: &key,
                    key_version: dek.version,
                };
                pending.batch.put(
                    k.clone(),
                    seal_record(&dek.aead, &bind, self.committer.end(), &fields),
                );
                pending.expected.push((k, v));
                pending.uses.push((keys.tag, dek.version));
                count += 1;
                if pending.expected.len() >= REKEY_BATCH {
                    rekeyed += self.commit_rekey(ctx, std::mem::take(&mut pending), held)?;
                    progress(meter.progress());
                }
            }
            if count > 0 {
                let e = self.subject_key_entry(
                    ctx,
                    keys,
                    format!("re-encrypted {count} records under v{current}"),
                );
                pending.entries.push(e);
            }
        }
        rekeyed += self.commit_rekey(ctx, pending, held)?;
        progress(meter.progress());
        Ok(rekeyed)
    }

    fn commit_rekey(
        &self,
        ctx: &AccessContext,
        p: Rekey,
        held: &[Arc<SubjectKeys>],
    ) -> Result<u64> {
        if p.expected.is_empty() && p.entries.is_empty() {
            return Ok(0);
        }
        let n = p.expected.len() as u64;
        let mut entries = p.entries;
        if entries.is_empty() {
            entries.push(noted(
                ctx,
                Action::KeyRotation,
                format!("re-encrypted {n} records"),
            ));
        }
        let mut uses = p.uses;
        uses.sort_unstable();
        uses.dedup();
        let refs: Vec<&Arc<SubjectKeys>> = held.iter().collect();
        let expected = p.expected;
        self.commit_with(p.batch, entries, &refs, &uses, Flush::Read, None, |b, _| {
            // Keep only records nobody rewrote since we read them: a concurrent write is
            // already under the current version (or is caught before retirement).
            let mut stale = Vec::new();
            for (k, old) in &expected {
                if self.storage.get(k)?.as_deref() != Some(old.as_slice()) {
                    stale.push(k.clone());
                }
            }
            if !stale.is_empty() {
                b.ops.retain(|op| match op {
                    crate::storage::Op::Put(k, _) => !stale.contains(k),
                    crate::storage::Op::Delete(_) => true,
                });
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// Retires every version but the current one of each subject of `held`, in the batch
    /// that advances the rotation cursor, and only if no record uses them (checked under
    /// the commit lock); records written concurrently under an old version are
    /// re-encrypted first.
    fn retire_old_versions(
        &self,
        ctx: &AccessContext,
        held: &[Arc<SubjectKeys>],
        state: &RotationState,
        meter: &mut Meter,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        for _ in 0..8 {
            let mut batch = WriteBatch::new();
            batch.put(
                keyspace::ROTATION_STATE.to_vec(),
                self.encode_rotation_state(state),
            );
            let e = noted(
                ctx,
                Action::KeyRotation,
                format!("retired old data-key versions of {} subjects", held.len()),
            );
            let refs: Vec<&Arc<SubjectKeys>> = held.iter().collect();
            let mut in_use = false;
            let r = self.commit_with(batch, vec![e], &refs, &[], Flush::Write, None, |b, _| {
                for keys in held {
                    let current = keys.current_dek(0)?.version;
                    if self.count_on_versions(&keys.tag, None, current)? > 0 {
                        in_use = true;
                        return Err(Error::KeyInUse {
                            version: 0,
                            records: 0,
                        });
                    }
                }
                for keys in held {
                    let current = keys.current_dek(0)?.version;
                    let old: Vec<u32> = keys
                        .versions()
                        .into_iter()
                        .filter(|v| *v != current)
                        .collect();
                    for v in &old {
                        self.keyring.remove_version(keys, *v)?;
                    }
                    if !old.is_empty() {
                        b.put(
                            keyspace::subject_entry(&keys.tag),
                            self.keyring.encode_entry(keys),
                        );
                    }
                }
                Ok(())
            });
            match r {
                Ok(_) => return Ok(()),
                Err(Error::KeyInUse { .. }) if in_use => {
                    // Rare (a write raced the rotation): not counted as progress again.
                    let mut quiet = Meter {
                        start: Instant::now(),
                        done: meter.done,
                        total: meter.total,
                    };
                    self.reencrypt(ctx, held, &mut quiet, &mut |_| {})?;
                    let _ = &progress;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::integrity(
            Structure::RotationState,
            "records keep appearing under an old version",
        ))
    }

    /// Destroys data-key `version` of `subject`. Refused with [`Error::KeyInUse`]
    /// (naming how many records still use it) while any record is sealed under it, and
    /// with [`Error::InvalidInput`] for the current version. Logged as `key_rotation`.
    pub fn retire_key_version(
        &self,
        ctx: &AccessContext,
        subject: &str,
        version: u32,
    ) -> Result<()> {
        let tag = self.subject_tag(subject);
        let keys = self.guarded(ctx, Action::KeyRotation, Some(tag), || {
            // Under a policy, key operations need the `keys` capability.
            self.require_capability(ctx, "keys")?;
            crate::record::validate_id("subject", subject)?;
            let _k = lock(&self.key_op_lock);
            let keys = self
                .keyring
                .load(&tag, self.read_fn())?
                .ok_or(Error::NotFound)?;
            if !keys.has_version(version) {
                return Err(Error::UnknownKeyVersion(version));
            }
            if keys.current_dek(0)?.version == version {
                return Err(Error::invalid(
                    InputKind::KeyOperation,
                    "cannot retire the current data-key version",
                ));
            }
            let e = self.subject_key_entry(ctx, &keys, format!("retired data-key v{version}"));
            self.commit_with(
                WriteBatch::new(),
                vec![e],
                &[&keys],
                &[],
                Flush::Write,
                None,
                |b, _| {
                    let records = self.count_on_versions(&tag, Some(version), 0)?;
                    if records > 0 {
                        return Err(Error::KeyInUse { version, records });
                    }
                    self.keyring.remove_version(&keys, version)?;
                    b.put(
                        keyspace::subject_entry(&tag),
                        self.keyring.encode_entry(&keys),
                    );
                    Ok(())
                },
            )?;
            Ok(keys)
        })?;
        drop(keys);
        Ok(())
    }

    /// Rotates the root key to `new_key` (also: a passphrase change, or a switch between
    /// passphrase and raw key). O(1) whatever the vault's size: the root wraps only the
    /// vault secret and the vault KEK(s) (docs/FORMAT.md "Header"), so the rotation is
    /// one atomic header replacement and no subject entry or record is touched. Returns
    /// the number of keys rewrapped (2, or 3 while a KEK rotation is pending). `kdf`
    /// applies when `new_key` is a passphrase; `progress` gets 0/1 then 1/1.
    ///
    /// Crash safety: before the header write only the old key opens the vault, after it
    /// only the new one; no header ever wraps one root under another. Logged as
    /// `key_rotation` ("started" before, "finished" after the write); the anchor then
    /// records the new root generation, and open refuses an older header put back
    /// ([`Error::Integrity`]). What this does and does not protect against: SECURITY.md
    /// "Key rotations". Fails with [`Error::InvalidInput`] when the generation is
    /// exhausted, [`Error::ExcessiveWork`] for KDF parameters over the caps.
    pub fn rotate_root_key(
        &self,
        ctx: &AccessContext,
        new_key: KeySource,
        kdf: KdfParams,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        self.guarded(ctx, Action::KeyRotation, None, || {
            // Under a policy, key operations need the `keys` capability.
            self.require_capability(ctx, "keys")?;
            let _k = lock(&self.key_op_lock);
            let header = lock(&self.header).clone();
            let next_gen = header.root.generation.saturating_add(1);
            progress(Progress {
                done: 0,
                total: 1,
                rate_per_sec: 0.0,
            });
            // Step 1: the new header, wrapping the same vault secret and KEK(s).
            let (kek, next_kek) = self.keyring.kek_secrets();
            let (new_header, new_root) = header.with_new_root(
                &new_key,
                kdf,
                &kek,
                next_kek.as_ref(),
                &self.vault_secret,
            )?;
            let rewrapped = 2 + u64::from(next_kek.is_some());
            self.log_only(
                ctx,
                Action::KeyRotation,
                format!("root-key rotation to generation {next_gen} started"),
                Flush::Write,
            )?;
            // Step 2: one atomic header replacement (the commit point of the rotation).
            self.storage.write_header(&new_header.encode(&new_root))?;
            *lock(&self.header) = new_header;
            *lock(&self.root) = new_root;
            // Step 3: the "finished" commit records the new generation in the record store
            // (`zkeygen`, applied marker); the anchor with the next durable commit.
            self.committer
                .raise_key_generations((next_gen, self.committer.key_generations().1));
            self.commit_rotation_finished(
                ctx,
                format!(
                    "root-key rotation to generation {next_gen} finished: {rewrapped} keys rewrapped"
                ),
            )?;
            // The checkpoint signing key turns over with the root key (issue 18).
            self.rotate_signing_key(ctx)?;
            self.sync()?;
            progress(Progress {
                done: 1,
                total: 1,
                rate_per_sec: 0.0,
            });
            Ok(rewrapped)
        })
    }

    /// Commits the "finished" entry of a root or KEK rotation (after its header write and
    /// [`Committer::raise_key_generations`](crate::commit::Committer::raise_key_generations))
    /// as a change: it writes the generations to `zkeygen` (under the state digest), so the
    /// applied marker written with it records them too. From then on a header older than
    /// them is refused at open even when the anchor of its time is put back with it
    /// (docs/FORMAT.md "Vault settings").
    fn commit_rotation_finished(&self, ctx: &AccessContext, note: String) -> Result<u64> {
        let (root, kek) = self.committer.key_generations();
        let mut batch = WriteBatch::new();
        batch.put(
            keyspace::KEY_GENERATIONS.to_vec(),
            keyspace::encode_key_generations((root, kek)).to_vec(),
        );
        self.commit(
            batch,
            vec![noted(ctx, Action::KeyRotation, note)],
            &[],
            Flush::Write,
        )
    }

    /// True when a vault-KEK rotation was started and not finished (e.g. the process was
    /// killed); [`Vault::rotate_vault_kek`] resumes it.
    pub fn vault_kek_rotation_pending(&self) -> bool {
        lock(&self.header).next_kek.is_some()
    }

    /// Rotates the vault key-encryption key (the response to its suspected compromise):
    /// a new KEK is wrapped under the root beside the old one (one atomic header write),
    /// every subject entry is rewrapped from the old KEK to the new one without building
    /// its keys or touching any record, in atomic batches of
    /// [`VaultOptions::kek_rewrap_batch`](super::VaultOptions::kek_rewrap_batch) read and
    /// written under the commit lock (reads and writes go on meanwhile; entries written
    /// meanwhile are already under the new KEK), then a second header write drops the
    /// old KEK and the anchor records the new generation. Returns the number of subject
    /// entries rewrapped; `progress` gets entries done / total.
    ///
    /// Resumable: killed at any point, the vault opens with either header (entries under
    /// either KEK open), and the next call finishes the rotation. Logged as
    /// `key_rotation` (started, one entry per batch, finished). Fails with
    /// [`Error::InvalidInput`] when the KEK generation is exhausted, [`Error::Integrity`]
    /// on a subject entry that does not unwrap.
    pub fn rotate_vault_kek(
        &self,
        ctx: &AccessContext,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        self.guarded(ctx, Action::KeyRotation, None, || {
            self.require_capability(ctx, "keys")?;
            let _k = lock(&self.key_op_lock);
            let header = lock(&self.header).clone();
            let root = lock(&self.root).clone();
            let next_gen = match &header.next_kek {
                Some(n) => {
                    self.log_only(
                        ctx,
                        Action::KeyRotation,
                        format!(
                            "vault key-encryption-key rotation to generation {} resumed",
                            n.generation
                        ),
                        Flush::Write,
                    )?;
                    n.generation
                }
                None => {
                    let next = Kek {
                        generation: header.kek.generation.checked_add(1).ok_or_else(|| {
                            Error::invalid(
                                InputKind::KeyOperation,
                                "key-encryption-key generation exhausted",
                            )
                        })?,
                        key: SecretKey::random(),
                    };
                    let pending = header.with_next_kek(&root, &next)?;
                    self.log_only(
                        ctx,
                        Action::KeyRotation,
                        format!(
                            "vault key-encryption-key rotation to generation {} started",
                            next.generation
                        ),
                        Flush::Write,
                    )?;
                    self.storage.write_header(&pending.encode(&root))?;
                    *lock(&self.header) = pending;
                    self.keyring.set_next_kek(Some(&next));
                    next.generation
                }
            };
            let rewrapped = self.rewrap_subject_entries(ctx, next_gen, progress)?;
            // Every rewrapped entry durable before the header stops holding the old KEK.
            self.sync()?;
            let done = lock(&self.header).with_next_kek_promoted()?;
            self.storage.write_header(&done.encode(&root))?;
            *lock(&self.header) = done;
            self.keyring.set_next_kek(None);
            self.committer
                .raise_key_generations((self.committer.key_generations().0, next_gen));
            self.commit_rotation_finished(
                ctx,
                format!(
                    "vault key-encryption-key rotation to generation {next_gen} finished: \
                     {rewrapped} subject entries rewrapped"
                ),
            )?;
            self.sync()?;
            Ok(rewrapped)
        })
    }

    /// Rewraps every subject entry not yet under KEK `next_gen`, in batches scanned and
    /// written under the commit lock (so no concurrent commit's entry is overwritten).
    fn rewrap_subject_entries(
        &self,
        ctx: &AccessContext,
        next_gen: u32,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let (start, end) = keyspace::prefix_range(keyspace::SUBJECT_PREFIX);
        let mut meter = Meter {
            start: Instant::now(),
            done: 0,
            total: self.count_keys(&start, &end)?,
        };
        progress(meter.progress());
        let mut from = start.to_vec();
        let mut rewrapped = 0u64;
        let batch = self.options.kek_rewrap_batch.max(1);
        loop {
            let mut seen = 0u64;
            let mut n = 0u64;
            let mut last: Option<Vec<u8>> = None;
            let e = noted(
                ctx,
                Action::KeyRotation,
                format!("subject entries rewrapped under key-encryption key {next_gen}"),
            );
            self.commit_with(
                WriteBatch::new(),
                vec![e],
                &[],
                &[],
                Flush::Read,
                None,
                |b, es| {
                    for item in self.storage.scan(&from, Some(&end)) {
                        let (k, v) = item?;
                        seen += 1;
                        let tag: SubjectTag = k
                            .get(1..17)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| {
                                Error::integrity(Structure::SubjectEntry, "storage key malformed")
                            })?;
                        if let Some(w) = self.keyring.rewrap_entry(&tag, &v)? {
                            b.put(k.clone(), w);
                            n += 1;
                        }
                        last = Some(k);
                        if seen as usize >= batch {
                            break;
                        }
                    }
                    if let Some(e) = es.first_mut() {
                        e.note = format!(
                            "{n} subject entries rewrapped under key-encryption key {next_gen}"
                        );
                    }
                    Ok(())
                },
            )?;
            rewrapped += n;
            meter.tick(seen, progress);
            match last {
                Some(k) if seen as usize >= batch => {
                    from = k;
                    from.push(0);
                }
                _ => return Ok(rewrapped),
            }
        }
    }

    fn count_keys(&self, start: &[u8], end: &[u8]) -> Result<u64> {
        let mut n = 0;
        for item in self.storage.scan(start, Some(end)) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// The compromise response (`medvault rotate all`): rotates the root key to
    /// `new_key` ([`Vault::rotate_root_key`]), then the vault KEK
    /// ([`Vault::rotate_vault_kek`]), then every data key ([`Vault::rotate_data_keys`]
    /// with [`RotationScope::All`]), online. Afterwards data written is sealed under data
    /// keys created after the KEK rotation finished, wrapped only under the new KEK,
    /// itself wrapped only under the new root: no key material from before the call
    /// opens it (SECURITY.md "Key rotations" says what stays readable to an old key
    /// holder). Interrupted, it is resumed by calling it again with the same `new_key`
    /// (a root rotation already done is then done once more, harmlessly), or by the
    /// individual rotations. `progress` gets each phase's progress in turn.
    pub fn rotate_all(
        &self,
        ctx: &AccessContext,
        new_key: KeySource,
        kdf: KdfParams,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RotateAllReport> {
        // Remembered until the last phase is done, so that an interruption between the
        // phases is named at open and resumed by `resume_rotate_all`.
        let started = {
            let h = lock(&self.header);
            (h.root.generation, h.kek.generation)
        };
        let mut batch = WriteBatch::new();
        batch.put(
            keyspace::ROTATE_ALL.to_vec(),
            keyspace::encode_key_generations(started).to_vec(),
        );
        self.commit(
            batch,
            vec![noted(
                ctx,
                Action::KeyRotation,
                "compromise response (rotate all) started: root key, vault KEK, data keys",
            )],
            &[],
            Flush::Write,
        )?;
        let keys = self.rotate_root_key(ctx, new_key, kdf, progress)?;
        let mut r = self.finish_rotate_all(ctx, progress)?;
        r.root_keys_rewrapped = keys;
        Ok(r)
    }

    /// Where an interrupted [`Vault::rotate_all`] stands: `None` when none is pending,
    /// else whether its root-key phase finished (the header's root generation passed
    /// the one it started from).
    pub fn rotate_all_pending(&self) -> Result<Option<RotateAllPhase>> {
        let Some(b) = self.storage.get(keyspace::ROTATE_ALL)? else {
            return Ok(None);
        };
        let (root, _) = keyspace::decode_key_generations(&b).ok_or_else(|| {
            Error::integrity(
                Structure::RecordStore,
                "the rotate-all state is not 8 bytes",
            )
        })?;
        Ok(Some(if lock(&self.header).root.generation > root {
            RotateAllPhase::RootDone
        } else {
            RotateAllPhase::RootNotDone
        }))
    }

    /// Finishes a [`Vault::rotate_all`] that was interrupted after its root-key phase:
    /// the vault-KEK rotation (resumed if one is pending, skipped if it finished, else a
    /// new one) and a data-key
    /// rotation of every subject (resumed if one is pending, else a new one; so a
    /// response interrupted after its data phase but before its last entry rotates the
    /// data keys once more). Fails with [`Error::InvalidInput`] when none is pending, or
    /// when its root-key phase did not finish (the new root key is not in place: run
    /// `rotate_all` again with a new key).
    pub fn resume_rotate_all(
        &self,
        ctx: &AccessContext,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RotateAllReport> {
        match self.rotate_all_pending()? {
            Some(RotateAllPhase::RootDone) => self.finish_rotate_all(ctx, progress),
            Some(RotateAllPhase::RootNotDone) => Err(Error::invalid(
                InputKind::KeyOperation,
                "the interrupted rotate all did not put its new root key in place: run it \
                 again with a new passphrase or key",
            )),
            None => Err(Error::invalid(
                InputKind::KeyOperation,
                "no interrupted rotate all to resume",
            )),
        }
    }

    /// The KEK and data-key phases of `rotate_all`, then the end of its state.
    fn finish_rotate_all(
        &self,
        ctx: &AccessContext,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RotateAllReport> {
        // The KEK phase is done when the header's KEK generation passed the one the
        // response started from and no KEK rotation is pending: not run twice.
        let started_kek = match self.storage.get(keyspace::ROTATE_ALL)? {
            Some(b) => keyspace::decode_key_generations(&b).map_or(0, |(_, k)| k),
            None => 0,
        };
        let kek_done =
            lock(&self.header).kek.generation > started_kek && !self.vault_kek_rotation_pending();
        let entries = if kek_done {
            0
        } else {
            self.rotate_vault_kek(ctx, progress)?
        };
        let data = self.rotate_data_keys(ctx, &RotationScope::All, progress)?;
        let mut batch = WriteBatch::new();
        batch.delete(keyspace::ROTATE_ALL.to_vec());
        self.commit(
            batch,
            vec![noted(
                ctx,
                Action::KeyRotation,
                "compromise response (rotate all) finished",
            )],
            &[],
            Flush::Write,
        )?;
        Ok(RotateAllReport {
            root_keys_rewrapped: 0,
            subject_entries_rewrapped: entries,
            data,
        })
    }

    /// Checks that every subject key entry names a vault-KEK generation the header holds
    /// (the one in force, or the next one while a KEK rotation is pending), reading only
    /// each entry's generation field (docs/FORMAT.md "Subject key entry"). A header put
    /// back from before a KEK rotation over newer entries (or newer entries over an older
    /// store) leaves the log intact while every read of those subjects fails: `verify`
    /// says so. Errors: [`Error::Integrity`] ([`Structure::SubjectEntry`]) with the count.
    pub(super) fn check_subject_entry_generations(&self) -> Result<()> {
        let held: Vec<u32> = {
            let h = lock(&self.header);
            std::iter::once(h.kek.generation)
                .chain(h.next_kek.as_ref().map(|k| k.generation))
                .collect()
        };
        let (start, end) = keyspace::prefix_range(keyspace::SUBJECT_PREFIX);
        let mut bad = 0u64;
        for item in self.storage.scan(&start, Some(&end)) {
            let (_, v) = item?;
            let generation = v
                .get(1..5)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            if !generation.is_some_and(|g| held.contains(&g)) {
                bad += 1;
            }
        }
        if bad > 0 {
            return Err(Error::integrity(
                Structure::SubjectEntry,
                format!(
                    "{bad} subject key entries are wrapped under a key-encryption-key \
                     generation the header does not hold (held: {held:?}): a header or \
                     entries put back from another time"
                ),
            ));
        }
        Ok(())
    }

    /// Records in the record store the key generations of the header in force when they
    /// are above what it holds (`zkeygen`): a root or KEK rotation killed after its header
    /// write and before its "finished" entry. Called at open, so that from then on the
    /// header of before that rotation, put back with its anchor, is refused.
    pub(super) fn record_header_generations(&self, ctx: &AccessContext) -> Result<()> {
        let (root, kek) = {
            let h = lock(&self.header);
            (h.root.generation, h.kek.generation)
        };
        let stored = match self.storage.get(keyspace::KEY_GENERATIONS)? {
            Some(b) => keyspace::decode_key_generations(&b).unwrap_or((0, 0)),
            None => (0, 0),
        };
        if root > stored.0 || kek > stored.1 {
            self.commit_rotation_finished(
                ctx,
                format!(
                    "key generations recorded at open: root {root}, key-encryption key {kek} \
                     (the rotation's \"finished\" entry was lost to an interruption)"
                ),
            )?;
        }
        Ok(())
    }
}

/// How far an interrupted [`Vault::rotate_all`] got ([`Vault::rotate_all_pending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateAllPhase {
    /// The new root key is not in place: run `rotate_all` again with a new key.
    RootNotDone,
    /// The new root key is in place; the KEK and data-key phases remain
    /// ([`Vault::resume_rotate_all`]).
    RootDone,
}

/// What [`Vault::rotate_all`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotateAllReport {
    /// Keys rewrapped under the new root (the vault secret and KEK(s)).
    pub root_keys_rewrapped: u64,
    /// Subject entries rewrapped under the new vault KEK.
    pub subject_entries_rewrapped: u64,
    /// The data-key rotation.
    pub data: RotationReport,
}
