//! The storage key space: every key prefix and key constructor of the one sled tree (or
//! any [`crate::storage::Storage`]), in one place. docs/FORMAT.md "Storage key space (one
//! sled tree)" is the table of this module; a test checks that the table lists exactly
//! the prefixes defined here.
//!
//! Logical ids never reach a key: subjects and records are named by keyed pseudonyms
//! (`subject_tag`, `record_tag`, HMAC-SHA256 under the pseudonym key, truncated to 128
//! bits; docs/FORMAT.md "Keys derived from the vault secret").

use crate::crypto::MacKey;
use crate::keyring::SubjectTag;
use crate::record::RecordKey;

/// `'c'`: the data-key rotation state, present only while a rotation is pending
/// (docs/FORMAT.md "Data-key rotation state (`'c'`), version 1").
pub(crate) const ROTATION_STATE: &[u8] = b"c";
/// `'a'`: the applied marker, written in every batch that changes the record store
/// (docs/FORMAT.md "Applied marker"). The access log itself is not in the record store.
pub(crate) const APPLIED_MARKER: &[u8] = crate::commit::MARKER_KEY;
/// `'e' || subject_tag (16)`: the erasure mark of an erased subject (docs/FORMAT.md
/// "Erasure mark"), written in the erasure's own commit and deleted only
/// by an explicit re-admission.
pub(crate) const ERASED_PREFIX: u8 = b'e';
/// `'g'`: the sealed access policy (docs/FORMAT.md "Access policy (`'g'`), version 1").
pub(crate) const POLICY: &[u8] = b"g";
/// `'h' || hold name (1..=64 bytes of [A-Za-z0-9._-])`: a legal hold on the access log
/// (docs/FORMAT.md "Legal hold"); while one exists, no log segment is pruned.
pub(crate) const LEGAL_HOLD_PREFIX: u8 = b'h';
/// `'i' || index_id (8)`: a blind-index definition (docs/INDEXES.md).
pub(crate) const INDEX_DEF_PREFIX: u8 = b'i';
/// `'k' || subject_tag (16)`: a subject key entry.
pub(crate) const SUBJECT_PREFIX: u8 = b'k';
/// `'n' || u32 generation`: a checkpoint signing key (docs/FORMAT.md "Checkpoint
/// signing key").
pub(crate) const SIGNING_KEY_PREFIX: u8 = b'n';
/// `'o' || subject_tag (16)`: a subject's sealed objection to secondary use
/// (docs/FORMAT.md "Research objection").
pub(crate) const OBJECTION_PREFIX: u8 = b'o';
/// `'p'`: empty; present from an erasure until the purge that follows it has completed.
pub(crate) const PURGE_PENDING: &[u8] = b"p";
/// `'r' || subject_tag (16) || record_tag (16)`: a record value.
pub(crate) const RECORD_PREFIX: u8 = b'r';
/// `'s' || project_tag (16)`: a research project's sealed pseudonym seed
/// (docs/FORMAT.md "Research project seed").
pub(crate) const RESEARCH_SEED_PREFIX: u8 = b's';
/// `'z' || setting name`: a vault setting (docs/FORMAT.md "Vault settings").
#[allow(dead_code)] // the prefix of RETENTION and PRUNE_POINT; listed in ALL_PREFIXES
pub(crate) const SETTINGS_PREFIX: u8 = b'z';
/// `"zretention"`: the access-log retention period, `u32` days big-endian.
pub(crate) const RETENTION: &[u8] = b"zretention";
/// `"zkeygen"`: `u32 root generation || u32 KEK generation` (big-endian) of the last
/// finished key rotations, written by each rotation's "finished" commit (docs/FORMAT.md
/// "Vault settings"). Under the state digest; open refuses a header older than it.
pub(crate) const KEY_GENERATIONS: &[u8] = b"zkeygen";

/// Encodes the `zkeygen` value.
pub(crate) fn encode_key_generations((root, kek): (u32, u32)) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&root.to_be_bytes());
    b[4..].copy_from_slice(&kek.to_be_bytes());
    b
}

/// Decodes the `zkeygen` value; `None` when it is not 8 bytes.
pub(crate) fn decode_key_generations(b: &[u8]) -> Option<(u32, u32)> {
    let b: [u8; 8] = b.try_into().ok()?;
    Some((
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

/// `"zrotall"`: present while a compromise response ([`crate::Vault::rotate_all`]) is in
/// progress: `u32 root generation || u32 KEK generation` (big-endian) when it started
/// (docs/FORMAT.md "Vault settings"). Open warns while it exists.
pub(crate) const ROTATE_ALL: &[u8] = b"zrotall";

/// `"zprune"`: the prune record (docs/FORMAT.md "Prune record"): where the log starts.
pub(crate) const PRUNE_POINT: &[u8] = b"zprune";
/// `'x' || index_id || value_hash || subject_tag || record_tag`: a blind-index entry.
pub(crate) const INDEX_ENTRY_PREFIX: u8 = b'x';
/// `'y' || subject_tag || record_tag`: the index-entry keys of one record.
pub(crate) const REVERSE_PREFIX: u8 = b'y';

/// Every prefix byte in use, sorted (what docs/FORMAT.md's key-space table must list).
#[cfg(test)]
pub(crate) const ALL_PREFIXES: [u8; 15] = [
    APPLIED_MARKER[0],
    ROTATION_STATE[0],
    ERASED_PREFIX,
    POLICY[0],
    LEGAL_HOLD_PREFIX,
    INDEX_DEF_PREFIX,
    SUBJECT_PREFIX,
    SIGNING_KEY_PREFIX,
    OBJECTION_PREFIX,
    PURGE_PENDING[0],
    RECORD_PREFIX,
    RESEARCH_SEED_PREFIX,
    INDEX_ENTRY_PREFIX,
    REVERSE_PREFIX,
    SETTINGS_PREFIX,
];

/// Length of a record storage key: prefix, subject tag, record tag.
pub(crate) const RECORD_KEY_LEN: usize = 1 + 16 + 16;

/// `[prefix, prefix + 1)`: the scan bounds of every key under a one-byte prefix.
pub(crate) fn prefix_range(prefix: u8) -> ([u8; 1], [u8; 1]) {
    ([prefix], [prefix + 1])
}

/// The keyed pseudonym of a subject:
/// `mac_parts(pseudonym key; "subject", subject)[0..16]`.
pub(crate) fn subject_tag(pseudonyms: &MacKey, subject: &str) -> SubjectTag {
    let m = pseudonyms.mac_parts(&[b"subject", subject.as_bytes()]);
    let mut t = [0u8; 16];
    t.copy_from_slice(&m[..16]);
    SubjectTag::from(t)
}

/// Storage key of record `key` of the subject tagged `tag`:
/// `'r' || subject_tag || mac_parts(pseudonym key; "record", subject, collection,
/// record_id)[0..16]`.
pub(crate) fn record(pseudonyms: &MacKey, tag: &SubjectTag, key: &RecordKey) -> Vec<u8> {
    let m = pseudonyms.mac_parts(&[
        b"record",
        key.subject.as_bytes(),
        key.collection.as_bytes(),
        key.record_id.as_bytes(),
    ]);
    let mut k = Vec::with_capacity(RECORD_KEY_LEN);
    k.push(RECORD_PREFIX);
    k.extend_from_slice(tag.as_ref());
    k.extend_from_slice(&m[..16]);
    k
}

/// Prefix of every record of a subject: `'r' || subject_tag`.
pub(crate) fn subject_records(tag: &SubjectTag) -> Vec<u8> {
    let mut p = Vec::with_capacity(17);
    p.push(RECORD_PREFIX);
    p.extend_from_slice(tag.as_ref());
    p
}

/// Storage key of a research project's seed: `'e' || mac_parts(pseudonym key;
/// "research-project", project)[0..16]`.
pub(crate) fn research_seed(pseudonyms: &MacKey, project: &str) -> Vec<u8> {
    let m = pseudonyms.mac_parts(&[b"research-project", project.as_bytes()]);
    let mut k = Vec::with_capacity(17);
    k.push(RESEARCH_SEED_PREFIX);
    k.extend_from_slice(&m[..16]);
    k
}

/// Storage key of a subject's objection to secondary use: `'o' || subject_tag`.
pub(crate) fn objection(tag: &SubjectTag) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(OBJECTION_PREFIX);
    k.extend_from_slice(tag.as_ref());
    k
}

/// Storage key of a subject entry: `'k' || subject_tag`.
pub(crate) fn subject_entry(tag: &SubjectTag) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(SUBJECT_PREFIX);
    k.extend_from_slice(tag.as_ref());
    k
}

/// Storage key of a subject's erasure mark: `'e' || subject_tag`.
pub(crate) fn erasure_mark(tag: &SubjectTag) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(ERASED_PREFIX);
    k.extend_from_slice(tag.as_ref());
    k
}

/// The record-store keys outside the state digest besides the applied marker: the
/// purge marker, which the purge removes without a commit (docs/FORMAT.md "State
/// digest").
pub(crate) fn outside_digest(key: &[u8]) -> bool {
    key == PURGE_PENDING
}

/// Storage key of a blind-index definition: `'i' || index_id`.
pub(crate) fn index_def(id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(INDEX_DEF_PREFIX);
    k.extend_from_slice(id);
    k
}

/// `'x' || index_id || value_hash`: the part of a forward key before the record
/// suffix, also the prefix a lookup scans.
pub(crate) fn index_entry_prefix(id: &[u8], hash: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + id.len() + hash.len());
    p.push(INDEX_ENTRY_PREFIX);
    p.extend_from_slice(id);
    p.extend_from_slice(hash);
    p
}

/// Forward key: `'x' || entry (index_id || value_hash) || subject_tag || record_tag`,
/// where `suffix` is a record storage key without its `'r'` prefix.
pub(crate) fn index_entry(entry: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + entry.len() + suffix.len());
    k.push(INDEX_ENTRY_PREFIX);
    k.extend_from_slice(entry);
    k.extend_from_slice(suffix);
    k
}

/// Reverse key of a record: `'y' || subject_tag || record_tag` (`suffix` is the record
/// storage key without its `'r'` prefix).
pub(crate) fn reverse(suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + suffix.len());
    k.push(REVERSE_PREFIX);
    k.extend_from_slice(suffix);
    k
}

/// Prefix of every reverse key of a subject: `'y' || subject_tag`.
pub(crate) fn subject_reverse(tag: &SubjectTag) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(REVERSE_PREFIX);
    k.extend_from_slice(tag.as_ref());
    k
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The prefix bytes listed in docs/FORMAT.md's key-space table, read from the
    /// Markdown source (an oracle independent of this module).
    fn documented_prefixes() -> BTreeSet<u8> {
        let doc = include_str!("../docs/FORMAT.md");
        let mut in_table = false;
        let mut out = BTreeSet::new();
        for line in doc.lines() {
            if line.starts_with('#') {
                in_table = line.contains("Storage key space");
                continue;
            }
            if !in_table {
                continue;
            }
            if let Some(rest) = line.strip_prefix("| `'") {
                let c = rest.as_bytes()[0];
                assert_eq!(rest.as_bytes()[1], b'\'', "malformed key cell: {line}");
                assert!(out.insert(c), "prefix {:?} listed twice", c as char);
            }
        }
        out
    }

    #[test]
    fn format_md_key_space_table_matches_the_module() {
        let documented = documented_prefixes();
        let defined: BTreeSet<u8> = ALL_PREFIXES.iter().copied().collect();
        assert_eq!(defined.len(), ALL_PREFIXES.len(), "a prefix defined twice");
        assert_eq!(
            documented.iter().map(|c| *c as char).collect::<String>(),
            defined.iter().map(|c| *c as char).collect::<String>(),
            "docs/FORMAT.md key-space table vs src/keyspace.rs"
        );
    }

    #[test]
    fn record_keys_have_the_documented_shape() {
        let k = MacKey::new(&crate::crypto::SecretKey::from_bytes([7u8; 32]));
        let tag = subject_tag(&k, "alice");
        let rk = record(&k, &tag, &RecordKey::new("alice", "Observation", "1"));
        assert_eq!(rk.len(), RECORD_KEY_LEN);
        assert_eq!(rk[0], b'r');
        assert_eq!(&rk[1..17], tag.as_ref());
        assert!(rk.starts_with(&subject_records(&tag)));
        assert_eq!(subject_entry(&tag)[0], b'k');
    }
}
