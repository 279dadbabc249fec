//! Verification of inclusion and consistency proofs exactly as RFC 9162 specifies them
//! ("Verifying an Inclusion Proof", "Verifying Consistency between Two Tree Heads"), and the
//! proof files of `docs/VERIFY.md`. The verifiers take raw bytes for roots and the leaf hash
//! so that a value of the wrong length is simply a mismatch, as in transparency-dev's
//! verifier whose test vectors we pass.

use crate::error::Error;
use crate::hash::{Hash, node_hash};
use crate::note::{b64_decode_hash, b64_encode, parse_decimal};

/// Longest inclusion proof of a tree of at most 2^64 - 1 leaves.
const MAX_INCLUSION_HASHES: usize = 64;
/// Longest consistency proof (RFC 9162: at most about 2 * log2 n components).
const MAX_CONSISTENCY_HASHES: usize = 128;
/// First line of an inclusion proof file.
const INCLUSION_HEADER: &str = "medvault-inclusion-proof/v1";
/// First line of a consistency proof file.
const CONSISTENCY_HEADER: &str = "medvault-consistency-proof/v1";
/// Largest proof file accepted, in bytes (128 hashes of 45 characters fit many times).
pub(crate) const MAX_PROOF_FILE: usize = 64 * 1024;

fn as_hash(bytes: &[u8], what: &'static str) -> Result<Hash, Error> {
    Hash::try_from(bytes).map_err(|_| Error::Rejected(what))
}

/// Checks that `leaf_hash` is the leaf at `leaf_index` of the tree of `tree_size` leaves
/// whose root is `root`, by RFC 9162 "Verifying an Inclusion Proof" (the bit-walk over
/// `fn`/`sn`). `proof` is the audit path, leaf level first, each component 32 bytes.
///
/// Fails with [`Error::Rejected`] if `leaf_index >= tree_size`, if the leaf hash or a
/// proof component is not 32 bytes, if the proof is too long or too short for the sizes,
/// or if the computed root differs from `root`.
pub fn verify_inclusion(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &[u8],
    proof: &[impl AsRef<[u8]>],
    root: &[u8],
) -> Result<(), Error> {
    if leaf_index >= tree_size {
        return Err(Error::Rejected("leaf index is not below the tree size"));
    }
    let mut r = as_hash(leaf_hash, "leaf hash is not 32 bytes")?;
    let mut f_n = leaf_index;
    let mut s_n = tree_size - 1;
    for p in proof {
        let p = as_hash(p.as_ref(), "proof component is not 32 bytes")?;
        if s_n == 0 {
            return Err(Error::Rejected("inclusion proof is too long"));
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(&p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, &p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(Error::Rejected("inclusion proof is too short"));
    }
    if r.as_slice() != root {
        return Err(Error::Rejected("inclusion proof does not lead to the root"));
    }
    Ok(())
}

/// Checks that the tree of `size1` leaves with root `root1` is a prefix of the tree of
/// `size2` leaves with root `root2`, by RFC 9162 "Verifying Consistency between Two Tree
/// Heads". Equal sizes need an empty proof and equal roots.
///
/// Fails with [`Error::Rejected`] if `size1 > size2`, if `size1 == 0` (every tree extends
/// the empty one, so such a proof proves nothing and is refused, as transparency-dev's
/// vectors require; [`crate::Checkpoint::verify_extends`] handles that case without a
/// proof), if the proof is empty when it must not be, has a component that is not 32
/// bytes, is too long or short, or if either computed root differs.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[impl AsRef<[u8]>],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), Error> {
    if size1 > size2 {
        return Err(Error::Rejected("the first tree is larger than the second"));
    }
    if size1 == 0 {
        return Err(Error::Rejected(
            "a consistency proof from the empty tree proves nothing",
        ));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(Error::Rejected("equal sizes need an empty proof"));
        }
        if root1 != root2 {
            return Err(Error::Rejected("equal sizes but different roots"));
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(Error::Rejected("empty consistency proof"));
    }
    let mut path = Vec::with_capacity(proof.len() + 1);
    // A power-of-two first tree is a complete subtree of the second: its root is the
    // proof's implicit first component (RFC 9162, step 2).
    if size1.is_power_of_two() {
        path.push(as_hash(root1, "first root is not 32 bytes")?);
    }
    for p in proof {
        path.push(as_hash(p.as_ref(), "proof component is not 32 bytes")?);
    }
    let mut f_n = size1 - 1;
    let mut s_n = size2 - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (first, rest) = path
        .split_first()
        .ok_or(Error::Rejected("empty consistency proof"))?;
    let mut f_r = *first;
    let mut s_r = *first;
    for c in rest {
        if s_n == 0 {
            return Err(Error::Rejected("consistency proof is too long"));
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(Error::Rejected("consistency proof is too short"));
    }
    if f_r.as_slice() != root1 {
        return Err(Error::Rejected(
            "consistency proof does not lead to the first root",
        ));
    }
    if s_r.as_slice() != root2 {
        return Err(Error::Rejected(
            "consistency proof does not lead to the second root",
        ));
    }
    Ok(())
}

/// An inclusion proof (RFC 9162 "Merkle Inclusion Proofs"): the audit path of the leaf at
/// `leaf_index` in the tree of `tree_size` leaves, leaf level first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// 0-based index of the leaf (the log entry's position).
    pub leaf_index: u64,
    /// Number of leaves of the tree the proof is for (a checkpoint's tree size).
    pub tree_size: u64,
    /// The audit path, leaf level first.
    pub hashes: Vec<Hash>,
}

impl InclusionProof {
    /// [`verify_inclusion`] of this proof for `leaf_hash` against `root`.
    pub fn verify(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), Error> {
        verify_inclusion(
            self.leaf_index,
            self.tree_size,
            leaf_hash,
            &self.hashes,
            root,
        )
    }

    /// The proof file of `docs/VERIFY.md` ("Inclusion proof file"), with the leaf hash it
    /// proves: header, `index`, `size`, `leaf`, then one base64 hash a line.
    pub fn to_text(&self, leaf_hash: &Hash) -> String {
        let mut s = format!(
            "{INCLUSION_HEADER}\nindex {}\nsize {}\nleaf {}\n",
            self.leaf_index,
            self.tree_size,
            b64_encode(leaf_hash)
        );
        push_hashes(&mut s, &self.hashes);
        s
    }

    /// Parses an inclusion proof file; returns the proof and the leaf hash it names.
    /// Fails with [`Error::Malformed`] (naming the line) on any deviation from the format,
    /// on more than 64 hashes or more than 64 KiB.
    pub fn from_text(text: &str) -> Result<(Self, Hash), Error> {
        const W: &str = "inclusion proof";
        let mut lines = checked_lines(text, W)?;
        expect_header(&mut lines, INCLUSION_HEADER, W)?;
        let leaf_index = keyed_decimal(&mut lines, "index", W)?;
        let tree_size = keyed_decimal(&mut lines, "size", W)?;
        let (n, v) = keyed(&mut lines, "leaf", W)?;
        let leaf = b64_decode_hash(v).ok_or(Error::malformed(W, n, "bad base64 leaf hash"))?;
        let hashes = rest_hashes(lines, MAX_INCLUSION_HASHES, W)?;
        Ok((
            Self {
                leaf_index,
                tree_size,
                hashes,
            },
            leaf,
        ))
    }
}

/// A consistency proof (RFC 9162 "Merkle Consistency Proofs") between the tree of
/// `old_size` leaves and the tree of `new_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Size of the earlier tree.
    pub old_size: u64,
    /// Size of the later tree (`>= old_size`).
    pub new_size: u64,
    /// The proof components in RFC 9162 order.
    pub hashes: Vec<Hash>,
}

impl ConsistencyProof {
    /// [`verify_consistency`] of this proof between `old_root` and `new_root`.
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), Error> {
        verify_consistency(
            self.old_size,
            self.new_size,
            &self.hashes,
            old_root,
            new_root,
        )
    }

    /// The proof file of `docs/VERIFY.md` ("Consistency proof file"): header, `old-size`,
    /// `new-size`, then one base64 hash a line.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{CONSISTENCY_HEADER}\nold-size {}\nnew-size {}\n",
            self.old_size, self.new_size
        );
        push_hashes(&mut s, &self.hashes);
        s
    }

    /// Parses a consistency proof file. Fails with [`Error::Malformed`] (naming the line)
    /// on any deviation from the format, on more than 128 hashes or more than 64 KiB.
    pub fn from_text(text: &str) -> Result<Self, Error> {
        const W: &str = "consistency proof";
        let mut lines = checked_lines(text, W)?;
        expect_header(&mut lines, CONSISTENCY_HEADER, W)?;
        let old_size = keyed_decimal(&mut lines, "old-size", W)?;
        let new_size = keyed_decimal(&mut lines, "new-size", W)?;
        let hashes = rest_hashes(lines, MAX_CONSISTENCY_HASHES, W)?;
        Ok(Self {
            old_size,
            new_size,
            hashes,
        })
    }
}

type Lines<'a> = std::iter::Enumerate<std::str::Split<'a, char>>;

fn push_hashes(s: &mut String, hashes: &[Hash]) {
    for h in hashes {
        s.push_str(&b64_encode(h));
        s.push('\n');
    }
}

/// Bounds the size, requires a final newline and returns (1-based) numbered lines.
fn checked_lines<'a>(text: &'a str, what: &'static str) -> Result<Lines<'a>, Error> {
    if text.len() > MAX_PROOF_FILE {
        return Err(Error::malformed(what, 0, "larger than 64 KiB"));
    }
    let body =
        text.strip_suffix('\n')
            .ok_or(Error::malformed(what, 0, "does not end with a newline"))?;
    Ok(body.split('\n').enumerate())
}

fn expect_header(lines: &mut Lines<'_>, header: &str, what: &'static str) -> Result<(), Error> {
    match lines.next() {
        Some((_, l)) if l == header => Ok(()),
        _ => Err(Error::malformed(what, 1, "unknown header or version")),
    }
}

fn keyed<'a>(
    lines: &mut Lines<'a>,
    key: &'static str,
    what: &'static str,
) -> Result<(usize, &'a str), Error> {
    let (i, line) = lines
        .next()
        .ok_or(Error::malformed(what, 0, "ends before a required line"))?;
    let value = line
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(Error::malformed(what, i + 1, "unexpected key"))?;
    Ok((i + 1, value))
}

fn keyed_decimal(
    lines: &mut Lines<'_>,
    key: &'static str,
    what: &'static str,
) -> Result<u64, Error> {
    let (n, v) = keyed(lines, key, what)?;
    parse_decimal(v).ok_or(Error::malformed(what, n, "not a canonical decimal number"))
}

fn rest_hashes(lines: Lines<'_>, max: usize, what: &'static str) -> Result<Vec<Hash>, Error> {
    let mut hashes = Vec::new();
    for (i, line) in lines {
        if hashes.len() == max {
            return Err(Error::malformed(what, i + 1, "too many hashes"));
        }
        hashes.push(b64_decode_hash(line).ok_or(Error::malformed(
            what,
            i + 1,
            "not a base64 SHA-256 hash",
        ))?);
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HASH_LEN;

    #[test]
    fn hash_len_is_sha256() {
        assert_eq!(HASH_LEN, 32);
    }

    #[test]
    fn inclusion_file_round_trip_and_strictness() {
        let p = InclusionProof {
            leaf_index: 2,
            tree_size: 3,
            hashes: vec![[7; 32]],
        };
        let text = p.to_text(&[9; 32]);
        assert_eq!(
            text,
            "medvault-inclusion-proof/v1\nindex 2\nsize 3\n\
             leaf CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\
             BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
        );
        assert_eq!(InclusionProof::from_text(&text).ok(), Some((p, [9; 32])));
        for bad in [
            text.replace("/v1", "/v2"),
            text.replace("index 2", "index 02"),
            text.replace("size 3", "size  3"),
            text.trim_end().to_owned(),
            format!("{text}\n"),
            text.replace("Bwc=", "Bwd="),
        ] {
            assert!(InclusionProof::from_text(&bad).is_err(), "{bad:?}");
        }
    }
}
