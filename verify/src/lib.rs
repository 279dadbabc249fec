//! # medvault-verify
//!
//! Checks medvault's access log without any secret: the Merkle tree of RFC 9162 (Certificate
//! Transparency version 2.0, section "Merkle Trees") over the sealed log entries, inclusion
//! and consistency proofs, and checkpoints (signed tree heads) in the C2SP `tlog-checkpoint`
//! / `signed-note` text format with an Ed25519 signature (RFC 8032).
//!
//! The crate has no dependency on the engine: an auditor, a regulator or a patient's lawyer
//! builds it alone and checks what a vault exports with the vault's public key. The engine
//! uses the same crate to maintain the tree ([`Frontier`]), to answer proofs through
//! [`NodeSource`] and to sign checkpoints ([`Checkpoint::sign`], the one place a key enters,
//! passed in by the caller and never kept).
//!
//! ```
//! use medvault_verify::{leaf_hash, prove_inclusion, MemoryTree};
//!
//! # fn main() -> Result<(), medvault_verify::Error> {
//! let mut tree = MemoryTree::new();
//! for entry in [b"entry 0".as_slice(), b"entry 1", b"entry 2"] {
//!     tree.push(leaf_hash(entry))?;
//! }
//! let root = tree.root();
//! let proof = prove_inclusion(&tree, 1, tree.size())?;
//! proof.verify(&leaf_hash(b"entry 1"), &root)?;
//! assert!(proof.verify(&leaf_hash(b"entry X"), &root).is_err());
//! # Ok(()) }
//! ```
//!
//! Formats (checkpoint, proofs, verifier key, the `medvault-verify` command): `docs/VERIFY.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::unwrap_used)]

mod checkpoint;
mod error;
mod frontier;
mod hash;
mod note;
mod proof;
mod prove;

pub use checkpoint::{CHECKPOINT_VERSION_LINE, Checkpoint, VaultId};
pub use error::Error;
pub use frontier::Frontier;
pub use hash::{HASH_LEN, Hash, empty_root, leaf_hash, node_hash};
pub use note::{VerifierKey, open_note, sign_note};
pub use proof::{ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion};
pub use prove::{MemoryTree, NodeSource, SourceError, prove_consistency, prove_inclusion};
