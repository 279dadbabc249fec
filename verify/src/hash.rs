//! RFC 9162 section "Merkle Trees" hashing with SHA-256 (FIPS 180-4): leaves and interior
//! nodes are domain-separated by a 0x00 / 0x01 prefix so that no leaf can pass for a node.

use sha2::{Digest, Sha256};

/// Length in bytes of every hash in the tree (SHA-256 output).
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; HASH_LEN];

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162, "Definition of the
/// Merkle Tree": MTH({}) = HASH()).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Leaf hash of one log entry: SHA-256(0x00 || `leaf`), `leaf` being the entry's exact
/// bytes (RFC 9162, "Definition of the Merkle Tree": MTH({d(0)}) = HASH(0x00 || d(0))).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 || `left` || `right`) (RFC 9162, "Definition of the
/// Merkle Tree": MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}
