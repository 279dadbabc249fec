//! The Merkle tree over the access log (docs/VERIFY.md "The tree"; RFC 9162, section
//! "Definition of the Merkle Tree"): one leaf per frame, the leaf being the frame's exact
//! bytes as stored in its segment (docs/FORMAT.md "Log segment files"), so that an
//! auditor handed a frame cut out of a segment file hashes it without any key.
//!
//! The tree is kept apart from the segments, in its own node store: every perfect-subtree
//! hash, appended in the order [`Frontier::push_visit`] completes them (the post-order of
//! a Merkle mountain range), so that node `(level, index)` sits at a position computed in
//! O(1) ([`node_pos`]) and a proof costs O(log n) reads of 32 bytes. Dropping whole old
//! segments (a retention prune) leaves the tree whole. On disk the store is
//! `VAULT/log/tree` (docs/FORMAT.md "Tree node file"); in memory a vector.
//!
//! Durability: the node file is written with every append and fdatasynced only at a
//! segment rollover and when the anchor is synced (a clean close), after which its header
//! records the tree size made durable. Open trusts the nodes up to that size and rebuilds
//! the rest from the frames past it (none after a clean close; at most the last segment
//! after a crash), then cuts the tree to the log's end: the tree never holds a leaf the
//! log lost. The anchor binds the root of the durable log (docs/FORMAT.md "Anchor file").

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use medvault_verify::{
    ConsistencyProof, Frontier, Hash, InclusionProof, NodeSource, SourceError, empty_root,
    leaf_hash, prove_consistency, prove_inclusion,
};

use super::{Frame, corrupt, io_error};
use crate::crypto::sha256;
use crate::error::{Error, Result};

/// Name of the tree node file inside `VAULT/log/`.
pub const TREE_FILE: &str = "tree";
/// Magic bytes opening the tree node file.
pub const TREE_MAGIC: [u8; 8] = *b"MVLOGTRE";
/// Tree node file format version.
pub const TREE_VERSION: u8 = 1;
/// Bytes before the first node: magic (8), version (1), vault id (16), durable size (8),
/// check (8), reserved zero (23).
pub const TREE_HEADER_LEN: u64 = 64;
const HASH: u64 = 32;

/// The leaf hash of a frame: SHA-256(0x00 || the frame's encoded bytes).
pub fn frame_leaf(frame: &Frame) -> Hash {
    let mut b = Vec::with_capacity(frame.encoded_len());
    frame.encode_into(&mut b);
    leaf_hash(&b)
}

/// Nodes stored for a tree of `size` leaves: 2·size − popcount(size) (every leaf and every
/// completed perfect subtree above one). `None` past 2^63 leaves.
pub fn nodes_for(size: u64) -> Option<u64> {
    size.checked_mul(2)
        .map(|d| d - u64::from(size.count_ones()))
}

/// Position, in append order, of the perfect subtree at `level` and `index` (over leaves
/// `[index·2^level, (index+1)·2^level)`): it is stored right after its last leaf and
/// the `level − 1` subtrees under it that end there. `None` on overflow.
pub fn node_pos(level: u32, index: u64) -> Option<u64> {
    let last = index
        .checked_add(1)?
        .checked_mul(1u64.checked_shl(level)?)?
        .checked_sub(1)?;
    nodes_for(last)?.checked_add(u64::from(level))
}

/// Where a tree's hashes live.
trait NodeStore: Send {
    /// Nodes stored.
    fn len(&self) -> u64;
    /// The node at `pos` (< len).
    fn read(&self, pos: u64) -> Result<Hash>;
    /// Appends `nodes` (a multiple of 32 bytes) at the end.
    fn append(&mut self, nodes: &[u8]) -> Result<()>;
    /// Keeps only the first `len` nodes.
    fn truncate(&mut self, len: u64) -> Result<()>;
    /// Writes buffered nodes out (to the page cache; not durable).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Makes every node durable and records that the first `size` leaves' nodes are.
    fn sync(&mut self, size: u64) -> Result<()>;
    /// The tree size recorded durable by the last [`NodeStore::sync`] (0 if none, or if
    /// the record is damaged).
    fn durable(&self) -> u64;
}

#[derive(Default)]
struct MemoryNodes(Vec<Hash>);

impl NodeStore for MemoryNodes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read(&self, pos: u64) -> Result<Hash> {
        usize::try_from(pos)
            .ok()
            .and_then(|p| self.0.get(p))
            .copied()
            .ok_or_else(|| corrupt("access-log tree: a node is missing"))
    }
    fn append(&mut self, nodes: &[u8]) -> Result<()> {
        for c in nodes.chunks_exact(HASH as usize) {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            self.0.push(h);
        }
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> Result<()> {
        self.0.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
    fn sync(&mut self, _size: u64) -> Result<()> {
        Ok(())
    }
    fn durable(&self) -> u64 {
        // Memory: every node is "durable" for as long as the store lives.
        u64::MAX
    }
}

/// Nodes buffered before one `pwrite` (a group commit's worth, usually far less).
const PENDING_MAX: usize = 64 << 10;

struct FileNodes {
    file: File,
    /// Nodes held: in the file, then in `pending`.
    len: u64,
    /// Nodes in the file.
    written: u64,
    /// Nodes appended but not yet written (written at [`NodeStore::flush`], at a sync, or
    /// when 64 KiB gather): one `pwrite` per group commit instead of one per append.
    pending: Vec<u8>,
    durable: u64,
    vault_id: crate::VaultId,
}

/// The first 41 bytes of a tree node file: magic, version, `vault_id`, the `durable` size
/// and the check (docs/FORMAT.md "Tree node file").
pub fn encode_tree_header(vault_id: &crate::VaultId, durable: u64) -> [u8; 41] {
    let mut h = [0u8; 41];
    h[..8].copy_from_slice(&TREE_MAGIC);
    h[8] = TREE_VERSION;
    h[9..25].copy_from_slice(vault_id.as_bytes());
    h[25..33].copy_from_slice(&durable.to_be_bytes());
    let check = sha256(&[&h[..33]]);
    h[33..].copy_from_slice(&check[..8]);
    h
}

/// Decodes the first 41 bytes of a tree node file: `Ok(Some(durable size))`, `Ok(None)`
/// when only the durable-size record is damaged (its check fails: a torn header write),
/// or an error when the file is not this vault's tree.
pub fn decode_tree_header(
    h: &[u8],
    vault_id: &crate::VaultId,
) -> std::result::Result<Option<u64>, &'static str> {
    let h = h.get(..41).ok_or("tree header truncated")?;
    if h[..8] != TREE_MAGIC {
        return Err("not a medvault tree node file (bad magic)");
    }
    if h[8] != TREE_VERSION {
        return Err("tree node file has an unknown version");
    }
    if h[9..25] != *vault_id.as_bytes() {
        return Err("tree node file belongs to another vault");
    }
    if sha256(&[&h[..33]])[..8] != h[33..41] {
        return Ok(None);
    }
    let mut d = [0u8; 8];
    d.copy_from_slice(&h[25..33]);
    Ok(Some(u64::from_be_bytes(d)))
}

impl FileNodes {
    fn open(path: &Path, vault_id: crate::VaultId) -> Result<FileNodes> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io_error)?;
                let mut h = vec![0u8; TREE_HEADER_LEN as usize];
                h[..41].copy_from_slice(&encode_tree_header(&vault_id, 0));
                f.write_all_at(&h, 0).map_err(io_error)?;
                f.sync_data().map_err(io_error)?;
                if let Some(dir) = path.parent() {
                    File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(io_error)?;
                }
                f
            }
            Err(e) => return Err(io_error(e)),
        };
        let size = file.metadata().map_err(io_error)?.len();
        let mut h = [0u8; 41];
        if size < TREE_HEADER_LEN {
            return Err(corrupt("access-log tree: the node file's header is cut"));
        }
        file.read_exact_at(&mut h, 0).map_err(io_error)?;
        let durable = decode_tree_header(&h, &vault_id)
            .map_err(|e| corrupt(format!("access-log tree: {e}")))?
            .unwrap_or(0);
        let len = (size - TREE_HEADER_LEN) / HASH;
        Ok(FileNodes {
            file,
            len,
            written: len,
            pending: Vec::new(),
            durable,
            vault_id,
        })
    }

    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = TREE_HEADER_LEN + self.written * HASH;
        if let Err(e) = self.file.write_all_at(&self.pending, at) {
            // Leave no partial node behind; the nodes stay pending for the next try.
            let _ = self.file.set_len(at);
            return Err(io_error(e));
        }
        self.written = self.len;
        self.pending.clear();
        Ok(())
    }
}

impl NodeStore for FileNodes {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, pos: u64) -> Result<Hash> {
        if pos >= self.len {
            return Err(corrupt("access-log tree: a node is missing"));
        }
        let mut h = [0u8; 32];
        if pos >= self.written {
            let at = ((pos - self.written) * HASH) as usize;
            h.copy_from_slice(
                self.pending
                    .get(at..at + HASH as usize)
                    .ok_or_else(|| corrupt("access-log tree: a node is missing"))?,
            );
            return Ok(h);
        }
        self.file
            .read_exact_at(&mut h, TREE_HEADER_LEN + pos * HASH)
            .map_err(io_error)?;
        Ok(h)
    }
    fn append(&mut self, nodes: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(nodes);
        self.len += nodes.len() as u64 / HASH;
        if self.pending.len() >= PENDING_MAX {
            // A failure here keeps the nodes pending (the append stands; the next write
            // or sync retries and reports it).
            let _ = self.write_pending();
        }
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        if len >= self.written {
            self.pending
                .truncate(((len - self.written) * HASH) as usize);
        } else {
            self.pending.clear();
            self.file
                .set_len(TREE_HEADER_LEN + len * HASH)
                .map_err(io_error)?;
            self.written = len;
        }
        self.len = len;
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.write_pending()
    }
    fn sync(&mut self, size: u64) -> Result<()> {
        self.write_pending()?;
        self.file.sync_data().map_err(io_error)?;
        if size != self.durable {
            let h = encode_tree_header(&self.vault_id, size);
            self.file.write_all_at(&h[25..], 25).map_err(io_error)?;
            self.file.sync_data().map_err(io_error)?;
            self.durable = size;
        }
        Ok(())
    }
    fn durable(&self) -> u64 {
        self.durable
    }
}

struct State {
    frontier: Frontier,
    store: Box<dyn NodeStore>,
}

/// The Merkle tree of one log store. Appends come from the log store under its own
/// append lock, in sequence order; proofs and roots may be asked at any time, for any
/// size up to the current one.
pub struct LogTree {
    state: Mutex<State>,
}

impl std::fmt::Debug for LogTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTree")
            .field("size", &self.size())
            .finish()
    }
}

struct Reader<'a>(&'a dyn NodeStore);

impl NodeSource for Reader<'_> {
    fn node(&self, level: u32, index: u64) -> std::result::Result<Hash, SourceError> {
        let pos = node_pos(level, index).ok_or("node position overflows")?;
        self.0.read(pos).map_err(|e| Box::new(e) as SourceError)
    }
}

fn tree_error(e: medvault_verify::Error) -> Error {
    match e {
        medvault_verify::Error::Range(what) => {
            Error::invalid(crate::error::InputKind::Checkpoint, what)
        }
        other => corrupt(format!("access-log tree: {other}")),
    }
}

/// The frontier of the first `size` leaves, read from the stored nodes (one read per
/// set bit of `size`).
fn frontier_at(store: &dyn NodeStore, size: u64) -> Result<Frontier> {
    let mut nodes = Vec::with_capacity(size.count_ones() as usize);
    let mut start = 0u64;
    for level in (0..64u32).rev() {
        if size & (1u64 << level) != 0 {
            let pos = node_pos(level, start >> level)
                .ok_or_else(|| corrupt("access-log tree: size out of range"))?;
            nodes.push(store.read(pos)?);
            start += 1u64 << level;
        }
    }
    Frontier::from_parts(size, nodes).map_err(tree_error)
}

/// Largest tree size whose nodes all fit in `len` stored nodes.
fn size_within(len: u64) -> u64 {
    // nodes_for is increasing; size <= len. Binary search.
    let (mut lo, mut hi) = (0u64, len.min(u64::MAX / 2));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if nodes_for(mid).is_some_and(|n| n <= len) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

impl LogTree {
    /// An empty in-memory tree.
    pub fn memory() -> LogTree {
        LogTree::with_store(Box::new(MemoryNodes::default()), Frontier::new())
    }

    fn with_store(store: Box<dyn NodeStore>, frontier: Frontier) -> LogTree {
        LogTree {
            state: Mutex::new(State { frontier, store }),
        }
    }

    /// Opens (or creates, empty) the node file `log_dir/tree` of vault `vault_id`. The
    /// tree holds the leaves recorded durable; [`LogTree::catch_up`] brings it to the
    /// log's end. Errors: the file is another vault's, of another version, or cut inside
    /// its header ([`Error::Integrity`]); I/O.
    pub fn open_file(log_dir: &Path, vault_id: crate::VaultId) -> Result<LogTree> {
        let mut store = FileNodes::open(&log_dir.join(TREE_FILE), vault_id)?;
        let size = size_within(store.len()).min(store.durable());
        store.truncate(nodes_for(size).unwrap_or(0))?;
        let frontier = frontier_at(&store, size)?;
        Ok(LogTree::with_store(Box::new(store), frontier))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of leaves (frames) in the tree.
    pub fn size(&self) -> u64 {
        self.lock().frontier.size()
    }

    /// The tree size whose nodes are known durable (the whole tree in memory).
    pub fn durable_size(&self) -> u64 {
        let s = self.lock();
        s.store.durable().min(s.frontier.size())
    }

    /// Appends the leaf hashes of frames that follow the tree's last leaf. All or
    /// nothing: on an error the tree is as it was.
    pub fn append_leaves(&self, leaves: &[Hash]) -> Result<()> {
        let mut s = self.lock();
        let mut frontier = s.frontier.clone();
        let mut out = Vec::with_capacity(leaves.len() * 64);
        for leaf in leaves {
            frontier
                .push_visit(*leaf, |_, _, h| out.extend_from_slice(h))
                .map_err(tree_error)?;
        }
        s.store.append(&out)?;
        s.frontier = frontier;
        Ok(())
    }

    /// Appends the frames' leaves (see [`LogTree::append_leaves`]).
    pub fn append_frames(&self, frames: &[Frame]) -> Result<()> {
        let leaves: Vec<Hash> = frames.iter().map(frame_leaf).collect();
        self.append_leaves(&leaves)
    }

    /// Cuts the tree back to its first `size` leaves (a no-op if it is not longer).
    pub fn cut(&self, size: u64) -> Result<()> {
        let mut s = self.lock();
        if size >= s.frontier.size() {
            return Ok(());
        }
        let frontier = frontier_at(s.store.as_ref(), size)?;
        s.store.truncate(nodes_for(size).unwrap_or(0))?;
        s.frontier = frontier;
        if s.store.durable() > size {
            // Nodes appended after the cut are not durable until the next sync.
            s.store.sync(size)?;
        }
        Ok(())
    }

    /// Brings the tree to exactly `end` leaves: cuts leaves past it (the log lost them),
    /// then appends the leaves of the frames `read(size)` yields from the tree's size up to
    /// `end`. Errors: a frame out of sequence, or missing before `end`
    /// ([`Error::Integrity`]); what `read` reports.
    pub fn catch_up<I>(&self, end: u64, read: impl FnOnce(u64) -> Result<I>) -> Result<()>
    where
        I: Iterator<Item = Result<Frame>>,
    {
        self.cut(end)?;
        let from = self.size();
        if from == end {
            return Ok(());
        }
        let mut next = from;
        let mut batch = Vec::with_capacity(1024);
        for f in read(from)? {
            let f = f?;
            if next >= end {
                break;
            }
            if f.seq != next {
                return Err(corrupt(
                    "access-log tree: a frame is out of sequence while rebuilding",
                ));
            }
            batch.push(frame_leaf(&f));
            next += 1;
            if batch.len() == 1024 {
                self.append_leaves(&batch)?;
                batch.clear();
            }
        }
        self.append_leaves(&batch)?;
        if next != end {
            return Err(corrupt(
                "access-log tree: frames are missing to rebuild it (segments dropped before \
                 the tree was durable)",
            ));
        }
        Ok(())
    }

    /// Empties the tree.
    pub fn reset(&self) -> Result<()> {
        self.cut(0)
    }

    /// Writes the nodes buffered since the last write to the node file (one `pwrite`; not
    /// durable: see [`LogTree::sync`]). The log store calls it at each log sync, so the
    /// file lags the log by at most the commits of one group commit.
    pub fn flush(&self) -> Result<()> {
        self.lock().store.flush()
    }

    /// Makes the whole tree durable (fdatasync) and records its size as durable.
    pub fn sync(&self) -> Result<()> {
        let mut s = self.lock();
        let size = s.frontier.size();
        s.store.sync(size)
    }

    /// The root hash (RFC 9162 MTH) of the whole tree; the empty root for size 0.
    pub fn root(&self) -> Hash {
        self.lock().frontier.root()
    }

    /// The root hash of the first `size` leaves: O(log size) node reads, none for the
    /// current size. Errors: `size` past the tree ([`Error::Invalid`]); a node unreadable.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        let s = self.lock();
        if size == s.frontier.size() {
            return Ok(s.frontier.root());
        }
        if size > s.frontier.size() {
            return Err(tree_error(medvault_verify::Error::Range(
                "tree size is past the log",
            )));
        }
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(frontier_at(s.store.as_ref(), size)?.root())
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162
    /// "Merkle Inclusion Proofs"). Errors: `index >= size` or `size` past the tree
    /// ([`Error::Invalid`]); a node unreadable ([`Error::Integrity`] or I/O).
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<InclusionProof> {
        let s = self.lock();
        if size > s.frontier.size() {
            return Err(tree_error(medvault_verify::Error::Range(
                "tree size is past the log",
            )));
        }
        prove_inclusion(&Reader(s.store.as_ref()), index, size).map_err(tree_error)
    }

    /// The consistency proof between the trees of the first `old` and `new` leaves (RFC
    /// 9162 "Merkle Consistency Proofs"). Errors: `old == 0`, `old > new` or `new` past the
    /// tree ([`Error::Invalid`]); a node unreadable.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<ConsistencyProof> {
        let s = self.lock();
        if new > s.frontier.size() {
            return Err(tree_error(medvault_verify::Error::Range(
                "tree size is past the log",
            )));
        }
        prove_consistency(&Reader(s.store.as_ref()), old, new).map_err(tree_error)
    }

    /// The stored leaf hash of leaf `index` (< size).
    pub fn leaf(&self, index: u64) -> Result<Hash> {
        let s = self.lock();
        if index >= s.frontier.size() {
            return Err(tree_error(medvault_verify::Error::Range(
                "leaf index is past the log",
            )));
        }
        let pos = node_pos(0, index).ok_or_else(|| corrupt("access-log tree: out of range"))?;
        s.store.read(pos)
    }
}

/// Checks a tree node file on its own, without the log (a backup's copy, docs/BACKUP.md):
/// it names `vault_id`, records exactly `size` leaves durable, holds exactly the
/// `nodes_for(size)` nodes of those leaves (64-byte header + 32 bytes a node, nothing
/// more), and every stored perfect-subtree node is the RFC 9162 hash of its two children
/// (recomputed from the stored leaves). Returns the root of the `size` leaves (RFC 9162
/// MTH), which the caller compares with a root it trusts (the anchor's): with every
/// inner node consistent, that root pins every leaf, those of pruned frames included.
/// One sequential read of the file. Errors: [`Error::Integrity`] naming what is wrong;
/// I/O.
pub fn check_tree_file(path: &Path, vault_id: &crate::VaultId, size: u64) -> Result<Hash> {
    use std::io::Read;
    let bad = |what: &str| corrupt(format!("access-log tree file: {what}"));
    let file = File::open(path).map_err(io_error)?;
    let want = nodes_for(size)
        .and_then(|n| n.checked_mul(HASH))
        .and_then(|n| n.checked_add(TREE_HEADER_LEN))
        .ok_or_else(|| bad("size out of range"))?;
    if file.metadata().map_err(io_error)?.len() != want {
        return Err(bad(
            "its length does not match its tree size (cut or extended)",
        ));
    }
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut h = [0u8; TREE_HEADER_LEN as usize];
    r.read_exact(&mut h).map_err(io_error)?;
    match decode_tree_header(&h, vault_id) {
        Ok(Some(d)) if d == size => {}
        Ok(_) => return Err(bad("its header does not record the expected tree size")),
        Err(e) => return Err(bad(e)),
    }
    if h[41..].iter().any(|&b| b != 0) {
        return Err(bad("reserved header bytes are set"));
    }
    let mut frontier = Frontier::new();
    let mut next = || -> Result<Hash> {
        let mut n = [0u8; 32];
        r.read_exact(&mut n).map_err(io_error)?;
        Ok(n)
    };
    for _ in 0..size {
        let leaf = next()?;
        // push_visit reports the leaf, then each subtree it completes, in file order.
        let mut parents = Vec::new();
        frontier
            .push_visit(leaf, |level, _, h| {
                if level > 0 {
                    parents.push(*h);
                }
            })
            .map_err(tree_error)?;
        for p in parents {
            if next()? != p {
                return Err(bad(
                    "a stored node is not the hash of its children (altered)",
                ));
            }
        }
    }
    Ok(frontier.root())
}

/// Checks, frame by frame in sequence order from 0, that every node the tree stores is
/// the one the frames give ([`LogTree::checker`]).
pub struct TreeChecker<'a> {
    tree: &'a LogTree,
    frontier: Frontier,
}

fn tree_mismatch(seq: u64) -> Error {
    corrupt(format!(
        "the Merkle tree (log/tree) does not match the log at entry {seq}: altered (delete \
         log/tree to rebuild it from the log)"
    ))
}

impl LogTree {
    /// A [`TreeChecker`] over this tree from leaf 0 (used by a full verify, under the
    /// commit lock).
    pub fn checker(&self) -> TreeChecker<'_> {
        TreeChecker {
            tree: self,
            frontier: Frontier::new(),
        }
    }

    /// A [`TreeChecker`] whose first frame is leaf `first` (a log pruned before it: the
    /// stored subtrees before `first` are taken as they are, their frames being gone).
    /// Errors: `first` past the tree, or a node unreadable.
    pub fn checker_from(&self, first: u64) -> Result<TreeChecker<'_>> {
        if first > self.size() {
            return Err(tree_mismatch(self.size()));
        }
        let frontier = frontier_at(self.lock().store.as_ref(), first)?;
        Ok(TreeChecker {
            tree: self,
            frontier,
        })
    }
}

impl TreeChecker<'_> {
    /// Checks the next frame's leaf and every node it completes against the stored ones.
    /// Errors: [`Error::Integrity`] naming the entry whose node differs or is missing.
    pub fn push(&mut self, frame: &Frame) -> Result<()> {
        let seq = self.frontier.size();
        let s = self.tree.lock();
        let mut ok = true;
        self.frontier
            .push_visit(frame_leaf(frame), |level, index, h| {
                ok &= node_pos(level, index)
                    .and_then(|p| s.store.read(p).ok())
                    .is_some_and(|stored| stored == *h);
            })
            .map_err(tree_error)?;
        if ok { Ok(()) } else { Err(tree_mismatch(seq)) }
    }

    /// Ends the check: the tree must hold exactly the frames pushed.
    pub fn finish(self) -> Result<()> {
        if self.frontier.size() != self.tree.size() {
            return Err(tree_mismatch(self.frontier.size()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use medvault_verify::MemoryTree;

    #[test]
    fn node_positions_follow_the_append_order() {
        // Oracle: the order in which Frontier::push_visit reports nodes.
        let mut f = Frontier::new();
        let mut order = Vec::new();
        for i in 0..300u64 {
            f.push_visit([i as u8; 32], |l, idx, _| order.push((l, idx)))
                .unwrap();
            assert_eq!(nodes_for(i + 1), Some(order.len() as u64));
        }
        for (pos, (l, idx)) in order.iter().enumerate() {
            assert_eq!(
                node_pos(*l, *idx),
                Some(pos as u64),
                "level {l} index {idx}"
            );
        }
        for n in 0..600u64 {
            let s = size_within(n);
            assert!(nodes_for(s).unwrap() <= n && nodes_for(s + 1).unwrap() > n);
        }
    }

    #[test]
    fn file_tree_matches_the_memory_tree_and_survives_reopen_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let id = crate::VaultId::from([5; 16]);
        let leaves: Vec<Hash> = (0..77u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut model = MemoryTree::new();
        let t = LogTree::open_file(dir.path(), id).unwrap();
        for chunk in leaves.chunks(5) {
            t.append_leaves(chunk).unwrap();
            for l in chunk {
                model.push(*l).unwrap();
            }
        }
        assert_eq!(t.root(), model.root());
        t.sync().unwrap();
        drop(t);
        let t = LogTree::open_file(dir.path(), id).unwrap();
        assert_eq!(t.size(), 77);
        for size in 1..=77 {
            assert_eq!(t.root_at(size).unwrap(), model.root_at(size).unwrap());
            for i in [0, size / 2, size - 1] {
                assert_eq!(
                    t.prove_inclusion(i, size).unwrap(),
                    prove_inclusion(&model, i, size).unwrap()
                );
            }
            assert_eq!(
                t.prove_consistency(size.div_ceil(3), size).unwrap(),
                prove_consistency(&model, size.div_ceil(3), size).unwrap()
            );
        }
        t.cut(40).unwrap();
        assert_eq!(t.root(), model.root_at(40).unwrap());
        t.append_leaves(&leaves[40..50]).unwrap();
        assert_eq!(t.root(), model.root_at(50).unwrap());
        // Not synced since the cut: a reopen trusts only the 40 leaves the cut recorded
        // durable, and the caller rebuilds the rest from the log.
        drop(t);
        let t = LogTree::open_file(dir.path(), id).unwrap();
        assert_eq!(t.size(), 40);
        assert_eq!(t.root(), model.root_at(40).unwrap());
        t.append_leaves(&leaves[40..50]).unwrap();
        t.sync().unwrap();
        drop(t);
        let t = LogTree::open_file(dir.path(), id).unwrap();
        assert_eq!(t.size(), 50);
        assert_eq!(t.root(), model.root_at(50).unwrap());
        // Another vault's tree file is refused.
        assert!(LogTree::open_file(dir.path(), crate::VaultId::from([6; 16])).is_err());
    }

    #[test]
    fn a_tree_file_checked_alone_gives_the_model_root_and_refuses_any_change() {
        // Oracle: medvault-verify's MemoryTree over the same leaves.
        let dir = tempfile::tempdir().unwrap();
        let id = crate::VaultId::from([7; 16]);
        let leaves: Vec<Hash> = (0..45u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut model = MemoryTree::new();
        let t = LogTree::open_file(dir.path(), id).unwrap();
        t.append_leaves(&leaves).unwrap();
        for l in &leaves {
            model.push(*l).unwrap();
        }
        t.sync().unwrap();
        drop(t);
        let path = dir.path().join(TREE_FILE);
        assert_eq!(check_tree_file(&path, &id, 45).unwrap(), model.root());
        // Another size, another vault: refused.
        assert!(check_tree_file(&path, &id, 44).is_err());
        assert!(check_tree_file(&path, &crate::VaultId::from([8; 16]), 45).is_err());
        let good = std::fs::read(&path).unwrap();
        // Any changed byte of any node or of the header: refused or another root.
        for at in (0..good.len()).step_by(7) {
            let mut b = good.clone();
            b[at] ^= 1;
            std::fs::write(&path, &b).unwrap();
            match check_tree_file(&path, &id, 45) {
                Err(_) => {}
                Ok(root) => assert_ne!(root, model.root(), "byte {at}"),
            }
        }
        // Cut or extended: refused.
        std::fs::write(&path, &good[..good.len() - 32]).unwrap();
        assert!(check_tree_file(&path, &id, 45).is_err());
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 32]);
        std::fs::write(&path, &longer).unwrap();
        assert!(check_tree_file(&path, &id, 45).is_err());
    }
}
