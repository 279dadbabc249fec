//! Proof generation (RFC 9162 "Merkle Inclusion Proofs" PATH and "Merkle Consistency
//! Proofs" SUBPROOF) from any store of perfect-subtree hashes. A proof needs O(log n) node
//! reads: every component is a perfect subtree except at most one right-edge subtree, which
//! is folded from at most log2 n perfect ones.

use crate::error::Error;
use crate::frontier::Frontier;
use crate::hash::{Hash, node_hash};
use crate::proof::{ConsistencyProof, InclusionProof};

/// The error a [`NodeSource`] reports (an I/O or integrity failure of its store).
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Read access to the hashes of a tree's perfect subtrees: what the engine implements over
/// its log store, and all that proof generation needs.
pub trait NodeSource {
    /// The hash of the perfect subtree at `level` (0 = leaf hashes) and `index`, i.e. over
    /// leaves `[index * 2^level, (index + 1) * 2^level)`. Called only for subtrees that lie
    /// entirely inside the tree size the proof is asked for; fails (with any error) if the
    /// node is missing or unreadable.
    fn node(&self, level: u32, index: u64) -> Result<Hash, SourceError>;
}

/// Largest power of two strictly below `n` (`n >= 2`): RFC 9162's split point k.
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `[start, start + len)`, `len >= 1`, `start` aligned as RFC 9162's
/// recursion leaves it.
fn subtree<S: NodeSource + ?Sized>(src: &S, start: u64, len: u64) -> Result<Hash, Error> {
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let level = len.trailing_zeros();
        return src.node(level, start >> level).map_err(Error::Source);
    }
    if len < 2 {
        return Err(Error::Range("empty subtree"));
    }
    let k = split(len);
    let left = subtree(src, start, k)?;
    let right = subtree(src, start + k, len - k)?;
    Ok(node_hash(&left, &right))
}

/// The inclusion proof of the leaf at `leaf_index` in the tree of the first `tree_size`
/// leaves of `src` (RFC 9162 PATH(m, D[n])). Fails with [`Error::Range`] if
/// `leaf_index >= tree_size`, with [`Error::Source`] if a node read fails.
pub fn prove_inclusion<S: NodeSource + ?Sized>(
    src: &S,
    leaf_index: u64,
    tree_size: u64,
) -> Result<InclusionProof, Error> {
    if leaf_index >= tree_size {
        return Err(Error::Range("leaf index is not below the tree size"));
    }
    // Walk down from the root, collecting siblings; the proof lists them leaf level first.
    let mut hashes = Vec::new();
    let (mut m, mut start, mut n) = (leaf_index, 0u64, tree_size);
    while n > 1 {
        let k = split(n);
        if m < k {
            hashes.push(subtree(src, start + k, n - k)?);
            n = k;
        } else {
            hashes.push(subtree(src, start, k)?);
            m -= k;
            start += k;
            n -= k;
        }
    }
    hashes.reverse();
    Ok(InclusionProof {
        leaf_index,
        tree_size,
        hashes,
    })
}

/// The consistency proof between the trees of the first `old_size` and `new_size` leaves
/// of `src` (RFC 9162 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)); empty when the sizes are
/// equal. Fails with [`Error::Range`] if `old_size == 0` (nothing to prove: see
/// [`crate::verify_consistency`]) or `old_size > new_size`, with [`Error::Source`] if a
/// node read fails.
pub fn prove_consistency<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, Error> {
    if old_size == 0 {
        return Err(Error::Range(
            "old size 0: every tree extends the empty tree",
        ));
    }
    if old_size > new_size {
        return Err(Error::Range("old size is larger than new size"));
    }
    let mut hashes = Vec::new();
    let (mut m, mut start, mut n, mut complete) = (old_size, 0u64, new_size, true);
    // SUBPROOF appends after its recursive call: gather top-down, then reverse.
    while m != n {
        let k = split(n);
        if m <= k {
            hashes.push(subtree(src, start + k, n - k)?);
            n = k;
        } else {
            hashes.push(subtree(src, start, k)?);
            m -= k;
            start += k;
            n -= k;
            complete = false;
        }
    }
    if !complete {
        hashes.push(subtree(src, start, n)?);
    }
    hashes.reverse();
    Ok(ConsistencyProof {
        old_size,
        new_size,
        hashes,
    })
}

/// An in-memory tree keeping every perfect-subtree hash (2n hashes, 64 bytes a leaf): a
/// [`NodeSource`] for tests, benches and small logs, and the model of what an engine's
/// store keeps on disk.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one leaf hash, storing every perfect subtree it completes.
    pub fn push(&mut self, leaf: Hash) -> Result<(), Error> {
        let levels = &mut self.levels;
        self.frontier.push_visit(leaf, |level, _index, hash| {
            let level = level as usize;
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            // Nodes of a level complete in index order, so the index is the length.
            levels[level].push(*hash);
        })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root hash of the whole tree (RFC 9162 MTH).
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Root hash of the tree of the first `size` leaves; fails with [`Error::Range`] if
    /// `size` exceeds the tree.
    pub fn root_at(&self, size: u64) -> Result<Hash, Error> {
        if size > self.size() {
            return Err(Error::Range("size beyond the tree"));
        }
        if size == 0 {
            return Ok(crate::hash::empty_root());
        }
        subtree(self, 0, size)
    }
}

#[derive(Debug)]
struct MissingNode;

impl std::fmt::Display for MissingNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("node not in the tree")
    }
}

impl std::error::Error for MissingNode {}

impl NodeSource for MemoryTree {
    fn node(&self, level: u32, index: u64) -> Result<Hash, SourceError> {
        let level = usize::try_from(level).map_err(|_| MissingNode)?;
        let index = usize::try_from(index).map_err(|_| MissingNode)?;
        self.levels
            .get(level)
            .and_then(|l| l.get(index))
            .copied()
            .ok_or_else(|| Box::new(MissingNode) as SourceError)
    }
}
