//! The incremental tree builder: the compact range [0, n) of the tree, that is the roots of
//! the perfect subtrees that the binary decomposition of n gives (one per set bit of n, at
//! most 64, in practice log2 n). Appending touches only these; the root is folded from them;
//! nothing is recomputed when a log is reopened if they are stored beside its size.

use crate::error::Error;
use crate::hash::{Hash, empty_root, node_hash};

/// Compact range of a tree of `size` leaves: the hashes of its maximal perfect subtrees,
/// left (largest) to right (smallest). Invariant: `nodes.len() == size.count_ones()`.
///
/// The same shape as Trillian's / transparency-dev's `compact.Range` starting at 0, and as
/// the "frontier" of RFC 9162 logs; restore one with [`Frontier::from_parts`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree (size 0, no nodes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a frontier from its stored parts: `size` leaves and the perfect-subtree
    /// hashes as [`Frontier::nodes`] returned them. Fails with [`Error::Malformed`] unless
    /// `nodes.len()` equals the number of set bits of `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Result<Self, Error> {
        if nodes.len() != size.count_ones() as usize {
            return Err(Error::malformed(
                "frontier",
                0,
                "node count differs from the set bits of the size",
            ));
        }
        Ok(Self { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree hashes, largest (leftmost) first; what to store beside the size.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends one leaf hash (see [`crate::leaf_hash`]). Costs one SHA-256 per subtree it
    /// completes (amortised < 2). Fails with [`Error::Range`] at 2^64 - 1 leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<(), Error> {
        self.push_visit(leaf, |_, _, _| {})
    }

    /// Like [`Frontier::push`], and calls `visit(level, index, hash)` for the new leaf
    /// (level 0, index = old size) and for every perfect subtree it completes (level l,
    /// index i: the subtree over leaves [i * 2^l, (i + 1) * 2^l)). An engine that stores
    /// these nodes can answer every proof with [`crate::NodeSource`] reads only.
    pub fn push_visit(
        &mut self,
        leaf: Hash,
        mut visit: impl FnMut(u32, u64, &Hash),
    ) -> Result<(), Error> {
        let index = self.size;
        let new_size = index
            .checked_add(1)
            .ok_or(Error::Range("tree size would exceed 2^64 - 1"))?;
        visit(0, index, &leaf);
        let mut hash = leaf;
        let mut level = 0u32;
        // Each set low bit of the old size is a perfect subtree of that height waiting for a
        // right sibling of the same height: the new leaf (merged so far) completes it.
        while (index >> level) & 1 == 1 {
            let left = self
                .nodes
                .pop()
                .ok_or(Error::Range("frontier lost its invariant"))?;
            hash = node_hash(&left, &hash);
            level += 1;
            visit(level, index >> level, &hash);
        }
        self.nodes.push(hash);
        self.size = new_size;
        Ok(())
    }

    /// The tree's root hash (RFC 9162 MTH); [`crate::empty_root`] for size 0. Costs one
    /// SHA-256 per node beyond the first (at most 63).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}
