//! The crate's one error type. Messages name what failed and where; they only ever carry
//! public data (sizes, indexes, line numbers), never key material.

/// Everything that can go wrong while hashing, proving, parsing or verifying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A proof, root or consistency check does not hold: the log or the proof was changed,
    /// or they do not belong together. The text says which check failed.
    #[error("verification failed: {0}")]
    Rejected(&'static str),
    /// No signature line on the note verifies under the given key (none present for the
    /// key's name and key ID, or the Ed25519 signature is wrong).
    #[error("signature: {0}")]
    Signature(&'static str),
    /// A text input (checkpoint, note, proof file, verifier key) is not in the documented
    /// format; `what` names the element, `line` is 1-based (0 when not line-bound).
    #[error("malformed {what} (line {line}): {detail}")]
    Malformed {
        /// The format element: "checkpoint", "note", "inclusion proof", ...
        what: &'static str,
        /// 1-based line number in the input, 0 when the fault is not on one line.
        line: usize,
        /// What is wrong, in words.
        detail: &'static str,
    },
    /// API misuse: an index or size outside the tree (leaf index >= tree size, old size >
    /// new size, a size beyond the source).
    #[error("out of range: {0}")]
    Range(&'static str),
    /// The [`crate::NodeSource`] failed to produce a node hash.
    #[error("node source: {0}")]
    Source(#[source] crate::SourceError),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, line: usize, detail: &'static str) -> Self {
        Error::Malformed { what, line, detail }
    }
}
