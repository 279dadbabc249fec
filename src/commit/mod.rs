//! The commit protocol across the two stores: the log (segment files) and the record
//! store (sled). The one place where sequence numbers are assigned, entries chained,
//! batches applied and made durable; the argument that it keeps invariant 4 at every
//! crash point is in docs/DESIGN-storage.md, "Commit protocol".
//!
//! Under the commit lock: assign seqs, seal and chain the entries, update the state
//! digest, (1) append the frames to the log, (2) apply the batch with the applied marker
//! to the record store. Outside it, per durability mode, one leader at a time (group
//! commit): (3) fdatasync the log, (4) flush the record store if a batch was applied
//! since the last flush, (5) write the anchor. A log write is never behind the record
//! store it describes; the record store is never behind the anchor.

pub mod changes;
pub mod digest;
pub mod marker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use zeroize::Zeroizing;

use crate::crypto::{MacKey, SecretKey, ct_eq, derive_key};
use crate::error::{Error, InputKind, LogFault, Result, Structure};
use crate::logstore::anchor::{self, AnchorState};
use crate::logstore::{FLAG_CHANGE, FRAME_VERSION, Frame, LogPos, LogStore, Recovered};
use crate::storage::{Op, Storage, WriteBatch};
pub use digest::StateDigest;
pub use marker::{MARKER_KEY, Marker};

/// The keys of the commit protocol, derived from the vault secret with HKDF-SHA256
/// (RFC 5869): the chain key (`"medvault/v1/log-chain"`), the state-digest key
/// (`"medvault/v1/state-digest"`), the applied-marker key (`"medvault/v1/applied-marker"`)
/// and the anchor key (`"medvault/v1/anchor"`).
pub struct CommitKeys {
    chain: MacKey,
    digest: MacKey,
    marker: MacKey,
    anchor: MacKey,
    genesis: [u8; 32],
}

impl CommitKeys {
    /// Derives the keys of the vault `vault_id` from its secret.
    pub fn derive(vault_id: &crate::VaultId, secret: &SecretKey) -> Self {
        let chain = MacKey::new(&derive_key(secret, &[b"medvault/v1/log-chain"]));
        let genesis = chain.mac_parts(&[b"medvault/v1/genesis", vault_id.as_bytes()]);
        CommitKeys {
            chain,
            digest: MacKey::new(&derive_key(secret, &[b"medvault/v1/state-digest"])),
            marker: MacKey::new(&derive_key(secret, &[b"medvault/v1/applied-marker"])),
            anchor: MacKey::new(&derive_key(secret, &[b"medvault/v1/anchor"])),
            genesis,
        }
    }

    /// The link of a frame: `HMAC-SHA256(chain key, prev || u8 version || u8 flags ||
    /// u64 seq || body)`.
    pub fn link(&self, prev: &[u8; 32], version: u8, flags: u8, seq: u64, body: &[u8]) -> [u8; 32] {
        self.chain
            .mac_raw(&[prev, &[version, flags], &seq.to_be_bytes(), body])
    }

    /// The anchor key (docs/FORMAT.md "Anchor file"): checks a backup's anchor slot.
    pub fn anchor_key(&self) -> &MacKey {
        &self.anchor
    }

    /// The link before the first entry: `HMAC(chain key, lp("medvault/v1/genesis") ||
    /// lp(vault_id))`.
    pub fn genesis(&self) -> [u8; 32] {
        self.genesis
    }

    /// The state-digest term of a stored pair: the keyed digest a write entry carries.
    pub fn term(&self, key: &[u8], value: &[u8]) -> [u8; 32] {
        StateDigest::term(&self.digest, key, value)
    }
}

/// What the commit protocol needs from the access-log layer: sealing entry bodies, and
/// the body of the entry that records a change as not applied.
pub trait Sealer: Send + Sync {
    /// Seals the plaintext body of entry `seq` (AEAD, bound to `seq`).
    fn seal(&self, seq: u64, body: &[u8]) -> Vec<u8>;
    /// Opens the sealed body of entry `seq`; `None` when it fails authentication.
    fn open(&self, seq: u64, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
    /// The plaintext body of an entry saying that the change logged at `seq` did not
    /// reach the record store (outcome failed, `not_applied`).
    fn not_applied_body(&self, seq: u64) -> Zeroizing<Vec<u8>>;
    /// The `seq` an opened entry body (change list stripped) says was not applied, when
    /// it is such an entry ([`Sealer::not_applied_body`]).
    fn not_applied_of(&self, body: &[u8]) -> Option<u64>;
}

/// The result of a commit: the entries' sequence numbers `first..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Sequence number of the first entry of the commit.
    pub first: u64,
    /// One past the last: pass it to [`Committer::make_durable`].
    pub end: u64,
}

/// What open found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Bytes of a torn last append cut off the log.
    pub cut_bytes: u64,
    /// Logged changes that never reached the record store (a crash between steps 1 and
    /// 2); an entry saying so was appended for each.
    pub not_applied: Vec<u64>,
}

/// What `verify` checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Entries whose chain was checked (the whole log).
    pub entries: u64,
    /// Pairs of the record store whose digest terms were recomputed.
    pub pairs: u64,
}

struct Head {
    end: LogPos,
    link: [u8; 32],
    digest: StateDigest,
    applied: Marker,
    /// A batch was applied since the last record-store flush.
    dirty: bool,
    /// A logged change could neither be applied nor recorded as not applied: no commit
    /// nor anchor is written until the vault reopens (and recovery records it).
    poisoned: bool,
}

#[derive(Default)]
struct SyncState {
    durable: u64,
    leader: bool,
}

/// Which record-store keys stay outside the state digest (the applied marker always).
pub type Excluded = fn(&[u8]) -> bool;

/// The record-store scan of `verify`, cut into key ranges that its threads take in
/// turn: everything before `r`, `r` (records, the bulk of the store) in 32 ranges of its
/// next byte, then `s` to the end.
struct ScanWork {
    bounds: Vec<Vec<u8>>,
    next: std::sync::atomic::AtomicUsize,
    stop: std::sync::atomic::AtomicBool,
}

impl ScanWork {
    fn new() -> Self {
        let mut bounds = vec![Vec::new(), b"r".to_vec()];
        bounds.extend((1..32u8).map(|i| vec![b'r', i * 8]));
        bounds.push(b"s".to_vec());
        ScanWork {
            bounds,
            next: Default::default(),
            stop: Default::default(),
        }
    }
}

/// Sets its flag when dropped: `verify` returning (early, on an error) stops the scan.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Where `verify` gets the record-store scan from.
enum Scanned<'scope> {
    /// A thread scanning meanwhile.
    Thread(std::thread::ScopedJoinHandle<'scope, Result<(StateDigest, u64)>>),
    /// No thread could be started: this thread scans every range after the chain.
    Later,
}

/// What a [`Committer`] is built from.
pub struct Parts {
    /// The vault's id (bound into the marker's and the anchor's MACs).
    pub vault_id: crate::VaultId,
    /// The protocol's keys.
    pub keys: CommitKeys,
    /// Seals entry bodies.
    pub sealer: Arc<dyn Sealer>,
    /// The record store.
    pub records: Arc<dyn Storage>,
    /// The log store.
    pub log: Arc<dyn LogStore>,
    /// Record-store keys outside the state digest.
    pub excluded: Excluded,
}

/// The commit protocol of one open vault. See the module docs.
pub struct Committer {
    vault_id: crate::VaultId,
    keys: CommitKeys,
    sealer: Arc<dyn Sealer>,
    records: Arc<dyn Storage>,
    log: Arc<dyn LogStore>,
    excluded: Excluded,
    head: Mutex<Head>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    anchor_counter: AtomicU64,
    /// Where the log starts after a prune (docs/BACKUP.md "Retention"): the first kept
    /// sequence number and the link before it; `None`: from the genesis link at 0.
    log_start: Mutex<Option<(u64, [u8; 32])>>,
    /// `root_generation << 32 | kek_generation` written into each anchor.
    key_generations: AtomicU64,
}

fn pack_generations((root, kek): (u32, u32)) -> u64 {
    (u64::from(root) << 32) | u64::from(kek)
}

/// A consistent point of both stores, taken under the commit lock for a backup
/// (docs/BACKUP.md): the log end, its link, the applied marker, and an anchor slot
/// (counter 0) naming exactly that point, MACed for this vault.
#[derive(Clone, Debug)]
pub struct Capture {
    /// End of the log (every frame before it is in the capture).
    pub end: LogPos,
    /// Link of the last frame before `end`.
    pub link: [u8; 32],
    /// The applied marker's next seq: every change logged before it is in the record
    /// store.
    pub applied_next: u64,
    /// The encoded anchor slot 0 (docs/FORMAT.md "Anchor file") for the captured point.
    pub anchor: Vec<u8>,
    /// The RFC 9162 root of the log's first `end.next_seq` frames, as the anchor binds it
    /// (all zero when the log store keeps no tree).
    pub tree_root: [u8; 32],
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Committer {
    fn new(p: Parts, head: Head, counter: u64, generations: (u32, u32)) -> Self {
        Committer {
            vault_id: p.vault_id,
            keys: p.keys,
            sealer: p.sealer,
            records: p.records,
            log: p.log,
            excluded: p.excluded,
            sync: Mutex::new(SyncState {
                durable: head.end.next_seq,
                leader: false,
            }),
            head: Mutex::new(head),
            synced: Condvar::new(),
            anchor_counter: AtomicU64::new(counter),
            log_start: Mutex::new(None),
            key_generations: AtomicU64::new(pack_generations(generations)),
        }
    }

    /// The `(root, KEK)` generations the next anchor records: at open, those of the
    /// anchor in force (the last finished rotations the vault knows of).
    pub fn key_generations(&self) -> (u32, u32) {
        let g = self.key_generations.load(Ordering::SeqCst);
        ((g >> 32) as u32, g as u32)
    }

    /// Raises the `(root, KEK)` generations the next anchor records (never lowers them:
    /// a lower pair is ignored). Called once a rotation's new header is written.
    pub fn raise_key_generations(&self, generations: (u32, u32)) {
        self.key_generations
            .fetch_max(pack_generations(generations), Ordering::SeqCst);
    }

    fn is_excluded(&self, key: &[u8]) -> bool {
        key == MARKER_KEY || (self.excluded)(key)
    }

    /// Starts the log of a new vault: commits `entries` (e.g. the create entry) with
    /// the first applied marker, and makes everything durable, anchor included. The log
    /// must be empty; the record store may already hold pairs (they enter the digest).
    pub fn create(p: Parts, entries: Vec<Zeroizing<Vec<u8>>>) -> Result<Self> {
        let end = p.log.end();
        if end.next_seq != 0 {
            return Err(Error::invalid(
                InputKind::Output,
                "the access log of a new vault is not empty",
            ));
        }
        let link = p.keys.genesis();
        let mut digest = StateDigest::default();
        for kv in p.records.scan(&[], None) {
            let (k, v) = kv?;
            if k != MARKER_KEY && !(p.excluded)(&k) {
                digest.toggle(&p.keys.term(&k, &v));
            }
        }
        let head = Head {
            end,
            link,
            digest,
            applied: Marker {
                pos: end,
                link,
                digest: digest.0,
                generations: (0, 0),
            },
            dirty: false,
            poisoned: false,
        };
        let c = Committer::new(p, head, 0, (0, 0));
        let done = c.commit_inner(WriteBatch::new(), entries, true, |_, _, _| Ok(()))?;
        c.make_durable(done.end)?;
        c.log.sync_anchor()?;
        Ok(c)
    }

    /// Opens the commit protocol over existing stores (docs/DESIGN-storage.md, "Open"):
    /// reads the anchor and the applied marker, seeks the log tail from the later of the
    /// two, cuts a torn last append, and records as not applied every logged change past
    /// the marker. Cost: the record store's `get` of one key plus the frames past that
    /// position, never a log scan.
    ///
    /// Errors ([`Error::Integrity`], each naming what): the anchor or marker missing or
    /// failing its MAC; "record store is behind the log" (rolled back or cut: its
    /// marker is older than the anchor); "record store is ahead of the log" (the log
    /// was cut or rolled back below the marker); "access log is behind its anchor"; a
    /// frame past the remembered position that does not chain.
    pub fn open(p: Parts) -> Result<(Self, Opened)> {
        let (vault_id, keys, records, log) = (&p.vault_id, &p.keys, &p.records, &p.log);
        let anchor = anchor::newest(&keys.anchor, vault_id, &log.read_anchor()?)
            .map_err(|e| Error::integrity(Structure::Anchor, e))?;
        let marker = match records.get(MARKER_KEY)? {
            Some(b) => Some(
                Marker::decode(&keys.marker, vault_id, &b)
                    .map_err(|e| Error::integrity(Structure::AppliedMarker, e))?,
            ),
            None => None,
        };
        let (anchor, marker) = match (anchor, marker) {
            (Some(a), Some(m)) => (a, m),
            (None, _) => {
                return Err(Error::integrity(
                    Structure::Anchor,
                    "missing (deleted, or replaced by an empty file)",
                ));
            }
            (Some(_), None) => {
                return Err(Error::integrity(
                    Structure::RecordStore,
                    "behind the log: it has no applied marker (cut, replaced or emptied)",
                ));
            }
        };
        if marker.pos.next_seq < anchor.applied_next {
            return Err(Error::integrity(
                Structure::RecordStore,
                format!(
                    "behind the log: rolled back or cut (it holds changes up to entry {}, the \
                 anchor says {})",
                    marker.pos.next_seq, anchor.applied_next
                ),
            ));
        }
        if marker.pos.next_seq == anchor.applied_next && !ct_eq(&marker.digest, &anchor.digest) {
            return Err(Error::integrity(
                Structure::RecordStore,
                "does not match the anchor's state digest",
            ));
        }
        let from_marker = marker.pos.next_seq >= anchor.log_end.next_seq;
        let (from, from_link) = if from_marker {
            (marker.pos, marker.link)
        } else {
            (anchor.log_end, anchor.log_link)
        };
        let (frames, end, cut_bytes) = match log.recover(&from)? {
            Recovered::Tail {
                frames,
                end,
                cut_bytes,
            } => (frames, end, cut_bytes),
            Recovered::Missing(why) if from_marker => {
                return Err(Error::integrity(
                    Structure::RecordStore,
                    format!("ahead of the log: the log was cut or rolled back ({why})"),
                ));
            }
            Recovered::Missing(why) => {
                return Err(Error::integrity(
                    Structure::LogSegment,
                    format!("the access log is behind its anchor: cut or rolled back ({why})"),
                ));
            }
        };
        // The tree must give the root the anchor bound for the durable log.
        if anchor.tree_root != [0; 32]
            && let Some(tree) = log.tree()
            && !ct_eq(&tree.root_at(anchor.log_end.next_seq)?, &anchor.tree_root)
        {
            return Err(Error::integrity(
                Structure::LogSegment,
                "the Merkle tree (log/tree) does not give the anchor's root: altered or \
                 swapped (delete log/tree to rebuild it from the log)",
            ));
        }
        let mut link = from_link;
        let mut not_applied = Vec::new();
        for (_, f) in &frames {
            let want = keys.link(&link, f.version, f.flags, f.seq, &f.body);
            if !ct_eq(&want, &f.link) {
                return Err(Error::LogTampered {
                    seq: f.seq,
                    fault: LogFault::LinkMismatch,
                });
            }
            link = want;
            if f.flags & FLAG_CHANGE != 0 && f.seq >= marker.pos.next_seq {
                not_applied.push(f.seq);
            }
        }
        let head = Head {
            end,
            link,
            digest: StateDigest(marker.digest),
            applied: marker,
            dirty: false,
            poisoned: false,
        };
        // The generations of the last finished rotations: the anchor's, or the applied
        // marker's when higher (an anchor put back from an older copy names older ones).
        let generations = (
            anchor.root_generation.max(marker.generations.0),
            anchor.kek_generation.max(marker.generations.1),
        );
        let c = Committer::new(p, head, anchor.counter, generations);
        if !not_applied.is_empty() {
            let mut h = lock(&c.head);
            c.append_not_applied(&mut h, &not_applied)?;
        }
        // Make the recovered tail (and any recovery entries) durable and anchored, so a
        // second crash cannot cut what this open has already relied on.
        let end = c.end();
        c.make_durable(end)?;
        Ok((
            c,
            Opened {
                cut_bytes,
                not_applied,
            },
        ))
    }

    /// Commits `entries` with `batch` (steps 1 and 2). `prepare` runs under the commit
    /// lock before anything is written: it may add to the batch and the entries after
    /// reading the record store unchanged by concurrent commits. A non-empty batch is a
    /// change: its entries are flagged, and the applied marker joins the batch. Returns
    /// the sequence numbers taken; durability is [`Committer::make_durable`]'s.
    ///
    /// Errors: the log append failed (nothing happened); the batch failed to apply (its
    /// entries are in the log, followed by one "not applied" entry each); the vault is
    /// poisoned by an earlier failure that could not be recorded (reopen it).
    pub fn commit_with<F>(
        &self,
        batch: WriteBatch,
        entries: Vec<Zeroizing<Vec<u8>>>,
        prepare: F,
    ) -> Result<Committed>
    where
        F: FnOnce(&mut WriteBatch, &mut Vec<Zeroizing<Vec<u8>>>, &dyn Storage) -> Result<()>,
    {
        self.commit_inner(batch, entries, false, prepare)
    }

    /// [`Committer::commit_with`] without a `prepare` step.
    pub fn commit(&self, batch: WriteBatch, entries: Vec<Zeroizing<Vec<u8>>>) -> Result<Committed> {
        self.commit_inner(batch, entries, false, |_, _, _| Ok(()))
    }

    fn commit_inner<F>(
        &self,
        mut batch: WriteBatch,
        mut entries: Vec<Zeroizing<Vec<u8>>>,
        force_marker: bool,
        prepare: F,
    ) -> Result<Committed>
    where
        F: FnOnce(&mut WriteBatch, &mut Vec<Zeroizing<Vec<u8>>>, &dyn Storage) -> Result<()>,
    {
        let mut h = lock(&self.head);
        if h.poisoned {
            return Err(poisoned());
        }
        prepare(&mut batch, &mut entries, self.records.as_ref())?;
        if entries.is_empty() {
            return Err(Error::invalid(
                InputKind::Output,
                "a commit without an access-log entry",
            ));
        }
        let change = !batch.is_empty() || force_marker;
        let (digest, listed) = if change {
            self.digest_after(h.digest, &batch)?
        } else {
            (h.digest, Vec::new())
        };
        // Every entry carries its share of the commit's change list, sealed with it.
        let lists = changes::spread(&listed, entries.len());
        for (body, list) in entries.iter_mut().zip(lists) {
            changes::append(body, list);
        }
        let flags = if change { FLAG_CHANGE } else { 0 };
        let first = h.end.next_seq;
        let mut link = h.link;
        let mut frames = Vec::with_capacity(entries.len());
        for (i, body) in entries.iter().enumerate() {
            let seq = first + i as u64;
            let sealed = self.sealer.seal(seq, body);
            link = self.keys.link(&link, FRAME_VERSION, flags, seq, &sealed);
            frames.push(Frame {
                seq,
                version: FRAME_VERSION,
                flags,
                body: sealed,
                link,
            });
        }
        drop(entries);
        // Step 1: the log first, so it is never behind the record store it describes.
        let end = self.log.append(&frames)?;
        h.end = end;
        h.link = link;
        if change {
            let marker = Marker {
                pos: end,
                link,
                digest: digest.0,
                generations: self.key_generations(),
            };
            batch.put(
                MARKER_KEY.to_vec(),
                marker.encode(&self.keys.marker, &self.vault_id),
            );
            // Step 2.
            if let Err(e) = self.records.apply(batch) {
                let seqs: Vec<u64> = (first..end.next_seq).collect();
                if self.append_not_applied(&mut h, &seqs).is_err() {
                    h.poisoned = true;
                }
                return Err(e.into());
            }
            h.digest = digest;
            h.applied = marker;
            h.dirty = true;
        }
        Ok(Committed {
            first,
            end: end.next_seq,
        })
    }

    /// The digest after applying `batch` to the current content: every replaced or
    /// deleted value's term out, every put value's term in. Reads each key's old value
    /// (under the commit lock, so nothing changes meanwhile); later ops of the batch see
    /// earlier ones.
    /// Also returns the change list: each key the batch leaves changed (in batch order,
    /// last write wins), with the digest term of its new value or `None` when deleted.
    fn digest_after(
        &self,
        mut d: StateDigest,
        batch: &WriteBatch,
    ) -> Result<(StateDigest, Vec<changes::Change>)> {
        let mut seen: std::collections::HashMap<&[u8], Option<&[u8]>> =
            std::collections::HashMap::new();
        let mut listed = Vec::with_capacity(batch.len());
        for op in &batch.ops {
            let (key, new) = match op {
                Op::Put(k, v) => (k.as_slice(), Some(v.as_slice())),
                Op::Delete(k) => (k.as_slice(), None),
            };
            if self.is_excluded(key) {
                continue;
            }
            let old_term = match seen.get(key) {
                Some(Some(v)) => Some(self.keys.term(key, v)),
                Some(None) => None,
                None => self.records.get(key)?.map(|v| self.keys.term(key, &v)),
            };
            if let Some(t) = old_term {
                d.toggle(&t);
            }
            let new_term = new.map(|v| self.keys.term(key, v));
            if let Some(t) = &new_term {
                d.toggle(t);
            }
            if seen.insert(key, new).is_some() {
                listed.retain(|(k, _): &changes::Change| k.as_slice() != key);
            }
            listed.push((key.to_vec(), new_term));
        }
        Ok((d, listed))
    }

    /// Appends one "not applied" entry per sequence number (no change flag).
    fn append_not_applied(&self, h: &mut Head, seqs: &[u64]) -> Result<()> {
        let mut link = h.link;
        let mut frames = Vec::with_capacity(seqs.len());
        for (i, &of) in seqs.iter().enumerate() {
            let seq = h.end.next_seq + i as u64;
            let mut body = self.sealer.not_applied_body(of);
            changes::append(&mut body, Some(&[]));
            let sealed = self.sealer.seal(seq, &body);
            link = self.keys.link(&link, FRAME_VERSION, 0, seq, &sealed);
            frames.push(Frame {
                seq,
                version: FRAME_VERSION,
                flags: 0,
                body: sealed,
                link,
            });
        }
        let end = self.log.append(&frames)?;
        h.end = end;
        h.link = link;
        Ok(())
    }

    /// Group commit (steps 3-5): returns once every entry before `upto` is durable in the
    /// log, every batch applied before it is flushed, and the anchor names that point.
    /// One caller at a time leads; the others wait and are covered by its fdatasync when
    /// their entries preceded it, or lead the next round.
    pub fn make_durable(&self, upto: u64) -> Result<()> {
        let mut s = lock(&self.sync);
        loop {
            if s.durable >= upto {
                return Ok(());
            }
            if !s.leader {
                break;
            }
            s = self.synced.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.leader = true;
        drop(s);
        let r = self.lead();
        let mut s = lock(&self.sync);
        s.leader = false;
        if let Ok(n) = r {
            s.durable = s.durable.max(n);
        }
        self.synced.notify_all();
        r.map(|_| ())
    }

    fn lead(&self) -> Result<u64> {
        let (end, link, applied, dirty) = {
            let mut h = lock(&self.head);
            if h.poisoned {
                return Err(poisoned());
            }
            let snap = (h.end, h.link, h.applied, h.dirty);
            h.dirty = false;
            snap
        };
        let restore_dirty = || lock(&self.head).dirty |= dirty;
        // Step 3: covers every frame appended so far, `end` included.
        if let Err(e) = self.log.sync() {
            restore_dirty();
            return Err(e);
        }
        // Step 4: every batch applied before the snapshot, the marker `applied` included.
        if dirty && let Err(e) = self.records.flush() {
            restore_dirty();
            return Err(e.into());
        }
        // Step 5: the anchor names only what steps 3 and 4 made durable.
        let counter = self.anchor_counter.fetch_add(1, Ordering::SeqCst) + 1;
        let a = AnchorState {
            counter,
            log_end: end,
            log_link: link,
            applied_next: applied.pos.next_seq,
            digest: applied.digest,
            root_generation: self.key_generations().0,
            kek_generation: self.key_generations().1,
            tree_root: match self.log.tree() {
                Some(t) => t.root_at(end.next_seq)?,
                None => [0; 32],
            },
        };
        self.log
            .write_anchor(a.slot(), &a.encode(&self.keys.anchor, &self.vault_id))?;
        Ok(end.next_seq)
    }

    /// Makes everything committed so far durable, the anchor file included (fsync).
    pub fn sync_all(&self) -> Result<()> {
        self.make_durable(self.end())?;
        self.log.sync_anchor()
    }

    /// The next sequence number (entries in the log).
    pub fn end(&self) -> u64 {
        lock(&self.head).end.next_seq
    }

    /// `(next_seq, last link)`: what a checkpoint pins.
    pub fn head(&self) -> (u64, [u8; 32]) {
        let h = lock(&self.head);
        (h.end.next_seq, h.link)
    }

    /// A [`Capture`] of the current state. Call it while no commit can run (the vault's
    /// commit lock held), so that the record store holds exactly the changes before the
    /// marker the anchor names. Takes the head lock briefly; writes nothing.
    pub fn capture(&self) -> Capture {
        let h = lock(&self.head);
        // The generations are read after nothing can lower them: a rotation writes its
        // header before it raises them, and the caller reads the header after this
        // capture, so the backup's header is never older than its anchor says.
        let (root_generation, kek_generation) = self.key_generations();
        let a = AnchorState {
            counter: 0,
            log_end: h.end,
            log_link: h.link,
            applied_next: h.applied.pos.next_seq,
            digest: h.applied.digest,
            root_generation,
            kek_generation,
            // The tree is in step with the head (appended under its lock): its frontier,
            // no read. Zero (no check at open) only if a store keeps no tree.
            tree_root: self
                .log
                .tree()
                .and_then(|t| t.root_at(h.end.next_seq).ok())
                .unwrap_or([0; 32]),
        };
        Capture {
            end: h.end,
            link: h.link,
            applied_next: h.applied.pos.next_seq,
            anchor: a.encode(&self.keys.anchor, &self.vault_id).to_vec(),
            tree_root: a.tree_root,
        }
    }

    /// Sets where the log starts after a prune: `verify` then walks the chain from
    /// `(first kept seq, link before it)` instead of the genesis link at 0.
    pub fn set_log_start(&self, start: Option<(u64, [u8; 32])>) {
        *lock(&self.log_start) = start;
    }

    /// Where the log starts: `(first seq, link before it)`; `(0, genesis)` unpruned.
    pub fn log_start(&self) -> (u64, [u8; 32]) {
        lock(&self.log_start).unwrap_or((0, self.keys.genesis()))
    }

    /// The log store (for reading entries).
    pub fn log(&self) -> &dyn LogStore {
        self.log.as_ref()
    }

    /// The keys (for the per-key digests write entries carry).
    pub fn keys(&self) -> &CommitKeys {
        &self.keys
    }

    /// Checks, in one pass each: the whole chain from the genesis link (every frame,
    /// every segment), that it ends at the head; the anchor (its position in the chain,
    /// its link, not past the record store); the applied marker (its link in the chain);
    /// and the record store against the state digest, recomputed from a scan. Holds the
    /// commit lock throughout, so it sees one state.
    ///
    /// Errors: [`Error::LogTampered`] naming the first bad entry; [`Error::Integrity`]
    /// naming the anchor, the marker, or "record store does not match the state digest".
    ///
    /// `pin`, when given, is a checkpoint's `(next_seq, link)`: the chain must contain
    /// entry `next_seq - 1` with that link (the genesis link for 0), else
    /// [`Error::LogTampered`] "log is shorter than the checkpoint" or "log diverges from
    /// the checkpoint".
    pub fn verify(&self, pin: Option<(u64, [u8; 32])>) -> Result<Verified> {
        let h = lock(&self.head);
        // The record-store scan does not depend on the chain: a second thread scans key
        // ranges while this one walks the log, then this one takes the ranges left (all
        // of them if no thread can be started). XOR makes the digest order-free, so the
        // two shares combine. Both see the state the commit lock holds still.
        let work = ScanWork::new();
        std::thread::scope(|s| {
            let _stop = StopOnDrop(&work.stop);
            let scan = std::thread::Builder::new()
                .name("medvault-verify-scan".into())
                .spawn_scoped(s, || self.scan_share(&work));
            let scanned = match scan {
                Ok(t) => Scanned::Thread(t),
                Err(_) => Scanned::Later,
            };
            self.verify_locked(&h, pin, &work, scanned)
        })
    }

    /// Scans the ranges of `work` not yet taken, recomputing their share of the state
    /// digest; returns it with the pairs counted. Stops early once `work.stop` is set.
    fn scan_share(&self, work: &ScanWork) -> Result<(StateDigest, u64)> {
        let mut d = StateDigest::default();
        let mut pairs = 0u64;
        while !work.stop.load(Ordering::Relaxed) {
            let i = work.next.fetch_add(1, Ordering::Relaxed);
            let Some(start) = work.bounds.get(i) else {
                break;
            };
            let end = work.bounds.get(i + 1).map(Vec::as_slice);
            for kv in self.records.scan(start, end) {
                let (k, v) = kv?;
                if self.is_excluded(&k) {
                    continue;
                }
                d.toggle(&self.keys.term(&k, &v));
                pairs += 1;
            }
        }
        Ok((d, pairs))
    }

    fn verify_locked(
        &self,
        h: &Head,
        pin: Option<(u64, [u8; 32])>,
        work: &ScanWork,
        scanned: Scanned<'_>,
    ) -> Result<Verified> {
        let anchor = anchor::newest(&self.keys.anchor, &self.vault_id, &self.log.read_anchor()?)
            .map_err(|e| Error::integrity(Structure::Anchor, e))?
            .ok_or_else(|| Error::integrity(Structure::Anchor, "missing (deleted)"))?;
        let bad = |seq: u64, fault: LogFault| Error::LogTampered { seq, fault };
        let (start, start_link) = self.log_start();
        let mut expected = start;
        let mut link = start_link;
        let mut anchor_ok = anchor.log_end.next_seq == start && anchor.log_link == link;
        let mut marker_ok = h.applied.pos.next_seq == start && h.applied.link == link;
        let mut pin_ok = pin.is_none_or(|(n, l)| n == start && ct_eq(&l, &link));
        // A checkpoint from before the prune point cannot be checked any more: its entry
        // is gone. It is not "shorter" (the log went on); it pins nothing left.
        if let Some((n, _)) = pin
            && n < start
        {
            pin_ok = true;
        }
        let mut tree = match self.log.tree() {
            Some(t) => Some(t.checker_from(start)?),
            None => None,
        };
        // A log store that cannot even start reading (every segment gone) is missing its
        // first entry.
        let frames = self.log.read(start).map_err(|e| match e {
            Error::Integrity { .. } => bad(start, LogFault::EntryMissing),
            e => e,
        })?;
        for item in frames {
            let (f, pos) = item.map_err(|e| match e {
                Error::Integrity { .. } => bad(expected, LogFault::EntryMalformed),
                e => e,
            })?;
            if f.seq != expected {
                return Err(bad(expected, LogFault::EntryMissing));
            }
            link = self.keys.link(&link, f.version, f.flags, f.seq, &f.body);
            if !ct_eq(&link, &f.link) {
                return Err(bad(f.seq, LogFault::LinkMismatch));
            }
            if let Some(t) = tree.as_mut() {
                t.push(&f)?;
            }
            expected += 1;
            if pos == anchor.log_end {
                anchor_ok = ct_eq(&link, &anchor.log_link);
            }
            if pos == h.applied.pos {
                marker_ok = ct_eq(&link, &h.applied.link);
            }
            if let Some((n, l)) = pin
                && n == expected
            {
                if !ct_eq(&l, &link) {
                    return Err(bad(f.seq, LogFault::DivergesFromCheckpoint));
                }
                pin_ok = true;
            }
            if expected >= h.end.next_seq {
                break;
            }
        }
        if expected < h.end.next_seq {
            return Err(bad(expected, LogFault::TruncatedTail));
        }
        if !ct_eq(&link, &h.link) {
            return Err(bad(expected.saturating_sub(1), LogFault::HeadMismatch));
        }
        if !pin_ok {
            return Err(bad(expected, LogFault::ShorterThanCheckpoint));
        }
        if let Some(t) = tree {
            t.finish()?;
        }
        if !anchor_ok {
            return Err(Error::integrity(
                Structure::Anchor,
                "does not name a point of this log (forged, or from another copy)",
            ));
        }
        if anchor.applied_next > h.applied.pos.next_seq {
            return Err(Error::integrity(
                Structure::RecordStore,
                "behind the anchor",
            ));
        }
        if !marker_ok {
            return Err(Error::integrity(
                Structure::AppliedMarker,
                "does not name a point of this log",
            ));
        }
        let stored = self
            .records
            .get(MARKER_KEY)?
            .ok_or_else(|| Error::integrity(Structure::AppliedMarker, "missing"))?;
        let m = Marker::decode(&self.keys.marker, &self.vault_id, &stored)
            .map_err(|e| Error::integrity(Structure::AppliedMarker, e))?;
        if m != h.applied {
            return Err(Error::integrity(
                Structure::AppliedMarker,
                "replaced while the vault was open",
            ));
        }
        let (mut d, mut pairs) = self.scan_share(work)?;
        if let Scanned::Thread(t) = scanned {
            let (d2, p2) = t.join().unwrap_or_else(|_| {
                Err(Error::Storage(crate::error::StorageError::new(
                    "the record-store scan of verify stopped",
                )))
            })?;
            d.toggle(&d2.0);
            pairs += p2;
        }
        if !ct_eq(&d.0, &h.digest.0) {
            return Err(Error::integrity(
                Structure::RecordStore,
                format!(
                    "does not match the state digest: {}",
                    self.name_differences()
                ),
            ));
        }
        Ok(Verified {
            entries: expected - start,
            pairs,
        })
    }
}

impl Committer {
    /// The diagnostic pass after a state-digest mismatch: replays the change lists of
    /// the whole log into the expected digest term of every key, compares with a scan,
    /// and names what differs: records and subject entries by storage key (hex, never a
    /// logical id), index entries as a category. Best effort: a failure to read says so.
    fn name_differences(&self) -> String {
        let mut expect: std::collections::BTreeMap<Vec<u8>, [u8; 32]> = Default::default();
        let mut unlisted = false;
        let replay = (|| -> Result<()> {
            // Change lists by seq, then those of commits later logged as not applied
            // dropped: what remains, in order, is what the store must hold.
            let mut lists = std::collections::BTreeMap::new();
            for item in self.log.read(self.log_start().0)? {
                let (f, _) = item?;
                let Some(pt) = self.sealer.open(f.seq, &f.body) else {
                    return Err(Error::integrity(
                        Structure::LogEntry,
                        "fails authentication",
                    ));
                };
                let (body, list) = changes::split(&pt)?;
                if let Some(of) = self.sealer.not_applied_of(body) {
                    lists.remove(&of);
                }
                if f.flags & FLAG_CHANGE != 0 {
                    lists.insert(f.seq, list);
                }
            }
            for list in lists.into_values() {
                match list {
                    None => unlisted = true,
                    Some(list) => {
                        for (k, t) in list {
                            match t {
                                Some(t) => {
                                    expect.insert(k, t);
                                }
                                None => {
                                    expect.remove(&k);
                                }
                            }
                        }
                    }
                }
            }
            Ok(())
        })();
        if replay.is_err() {
            return "a record, subject entry or index entry was added, removed, rolled back \
                    or altered (the log's change lists could not be read to say which)"
                .into();
        }
        let mut found = Vec::new();
        let mut index = false;
        let mut note = |k: &[u8], what: &str| {
            if matches!(k.first(), Some(b'x' | b'y')) {
                index = true;
            } else if found.len() < 8 {
                found.push(format!("{} {} {what}", key_kind(k), crate::audit::hex(k)));
            }
        };
        for kv in self.records.scan(&[], None) {
            let Ok((k, v)) = kv else {
                return "the record store could not be scanned to say which key differs".into();
            };
            if self.is_excluded(&k) {
                continue;
            }
            match expect.remove(&k) {
                None => note(
                    &k,
                    "is not written by any logged change (added or resurrected)",
                ),
                Some(t) if !ct_eq(&t, &self.keys.term(&k, &v)) => note(
                    &k,
                    "differs from its last logged write (altered or rolled back)",
                ),
                Some(_) => {}
            }
        }
        for k in expect.keys() {
            note(k, "is missing (deleted)");
        }
        if index {
            found.push("index entries differ".into());
        }
        if found.is_empty() {
            found.push(if unlisted {
                "a change too large to list in the log differs".into()
            } else {
                "the digest differs but no key does (digest or marker forged)".into()
            });
        }
        found.join("; ")
    }
}

/// What a record-store key holds, by its prefix (docs/FORMAT.md "Storage key space").
fn key_kind(k: &[u8]) -> &'static str {
    match k.first() {
        Some(b'r') => "record",
        Some(b'k') => "subject entry",
        Some(b'i') => "index definition",
        Some(b'c') => "rotation state",
        _ => "key",
    }
}

impl Drop for Committer {
    /// A clean close leaves everything durable and the anchor synced (best effort: a
    /// failure here leaves what a crash would, which open handles).
    fn drop(&mut self) {
        let _ = self.sync_all();
    }
}

/// A thread that runs the group commit every period while its [`Committer`] lives: the
/// `Background` durability mode's flush, and the one that carries reads' entries to disk
/// under `Writes`. Stops (and is joined) on drop.
pub struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts a [`Flusher`] for `committer` with period `every`. It holds only a weak
    /// reference, so dropping the committer ends it too. Errors: the thread could not be
    /// spawned.
    pub fn spawn_flusher(
        committer: &Arc<Committer>,
        every: std::time::Duration,
    ) -> Result<Flusher> {
        let weak = Arc::downgrade(committer);
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let s2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("medvault-group-commit".into())
            .spawn(move || {
                loop {
                    {
                        let (m, cv) = &*s2;
                        let g = lock(m);
                        let (g, _) = cv
                            .wait_timeout_while(g, every, |stopped| !*stopped)
                            .unwrap_or_else(|p| p.into_inner());
                        if *g {
                            return;
                        }
                    }
                    let Some(c) = weak.upgrade() else { return };
                    // A failure leaves the durable point where it was; the next round or
                    // an explicit sync retries and reports it.
                    let _ = c.make_durable(c.end());
                }
            })
            .map_err(|e| Error::Storage(crate::error::StorageError::from(e)))?;
        Ok(Flusher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poisoned() -> Error {
    Error::Storage(crate::error::StorageError::new(
        "a logged change could not be applied nor recorded as not applied; reopen the vault \
         to recover",
    ))
}

#[cfg(test)]
mod tests;
