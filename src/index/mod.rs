//! Blind indexes: find records by a field's value without decrypting the vault.
//!
//! For each declared index ([`IndexSpec`]), a record yields normalized value tuples; each
//! tuple is hashed with HMAC-SHA256 under a key derived from the vault secret, separate
//! per (collection, index), truncated to the index's bits, and stored as an empty-valued
//! storage key `x || index_id || value_hash || subject_tag || record_tag`. A lookup hashes
//! the query the same way, prefix-scans the candidates, decrypts each and drops the false
//! positives (truncation makes them; so could a record replaced since). Entries are
//! written, replaced and removed in the same atomic batch as their record. Byte layouts,
//! leakage and how to choose a truncation: docs/INDEXES.md.

mod normalize;
mod spec;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

use crate::codec::{Reader, put_lp16};
use crate::crypto::{AeadKey, MacKey, SecretKey, derive_key};
use crate::error::{Error, Result, Structure};
use crate::keyring::SubjectTag;
use crate::keyspace;
use crate::record::PlainField;
use crate::storage::{Storage, WriteBatch, prefix_end};

pub use normalize::Normalization;
pub use spec::{
    IndexPath, IndexSpec, MAX_PARTS, MAX_PATH_LEN, MAX_SEGMENTS, MAX_VALUES_PER_RECORD,
};

/// Format version of a sealed index definition.
pub const INDEX_DEF_VERSION: u8 = 1;
/// Format version of a reverse entry.
pub const REVERSE_ENTRY_VERSION: u8 = 1;
/// Length of an index id in storage keys.
pub const INDEX_ID_LEN: usize = 8;
/// Length of the record suffix of a forward entry: subject tag and record tag.
const SUFFIX_LEN: usize = 32;

/// An index's 8-byte id in storage keys (a keyed hash of collection and name).
pub(crate) type IndexId = [u8; INDEX_ID_LEN];

/// Whether an index covers every record of its collection yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BuildState {
    /// Every record of the collection has its entries.
    Ready,
    /// Being built by [`crate::Vault::add_index`]: records up to `cursor` (a record
    /// storage key, inclusive) are indexed, and every record written since the
    /// definition was committed.
    Building { cursor: Option<Vec<u8>> },
}

/// The state of one index, from [`crate::Vault::indexes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexStatus {
    /// Its definition.
    pub spec: IndexSpec,
    /// True once every record of the collection is indexed; until then `find` refuses
    /// it (use `find_by_scan`) and `add_index` with the same spec resumes the build.
    pub built: bool,
}

/// What [`crate::Vault::verify_indexes`] found. All counts but `records` and `entries`
/// are zero in a consistent vault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexCheck {
    /// Records opened.
    pub records: u64,
    /// Forward index entries found.
    pub entries: u64,
    /// Entries a record should have (for a built index) and does not.
    pub missing: u64,
    /// Entries with no record, or whose record no longer yields that value.
    pub dangling: u64,
    /// Records whose reverse entry does not list exactly their forward entries, plus
    /// reverse entries without a record.
    pub reverse_mismatches: u64,
}

impl IndexCheck {
    /// True when nothing is missing, dangling or mismatched.
    pub fn is_consistent(&self) -> bool {
        self.missing == 0 && self.dangling == 0 && self.reverse_mismatches == 0
    }
}

/// A loaded index: its definition, id, value-hash key and build state.
pub(crate) struct IndexDef {
    pub spec: IndexSpec,
    pub id: IndexId,
    value_key: MacKey,
    pub state: BuildState,
}

impl IndexDef {
    fn new(secret: &SecretKey, spec: IndexSpec, state: BuildState) -> IndexDef {
        // index_key = HKDF(vault secret, "medvault/v1/index" || lp(collection) || lp(name))
        let c = spec.collection.as_bytes();
        let n = spec.name.as_bytes();
        let key = derive_key(
            secret,
            &[
                b"medvault/v1/index",
                &(c.len() as u32).to_be_bytes(),
                c,
                &(n.len() as u32).to_be_bytes(),
                n,
            ],
        );
        IndexDef {
            id: index_id(secret, &spec.collection, &spec.name),
            value_key: MacKey::new(&key),
            spec,
            state,
        }
    }

    /// Bytes of value hash stored: ceil(bits / 8).
    pub fn hash_len(&self) -> usize {
        usize::from(self.spec.bits()).div_ceil(8)
    }

    /// HMAC-SHA256(index key, lp(v1) || lp(v2) ...) keeping the top `bits` bits: the
    /// first ceil(bits/8) bytes, the unused low bits of the last byte set to zero.
    pub fn hash(&self, tuple: &[Zeroizing<String>]) -> Vec<u8> {
        let parts: Vec<&[u8]> = tuple.iter().map(|s| s.as_bytes()).collect();
        let full = self.value_key.mac_parts(&parts);
        let bits = usize::from(self.spec.bits());
        let mut h = full[..self.hash_len()].to_vec();
        if bits % 8 != 0
            && let Some(last) = h.last_mut()
        {
            *last &= 0xffu8 << (8 - bits % 8);
        }
        h
    }

    /// `index_id || value_hash`: the part of a forward key before the record suffix,
    /// also the prefix a lookup scans.
    pub fn entry_prefix(&self, hash: &[u8]) -> Vec<u8> {
        keyspace::index_entry_prefix(&self.id, hash)
    }

    /// The index entries (`index_id || value_hash`, without prefix and suffix) of a
    /// record's fields.
    pub fn entries_of(&self, fields: &[PlainField]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for t in self.spec.tuples(fields)? {
            let mut e = Vec::with_capacity(INDEX_ID_LEN + self.hash_len());
            e.extend_from_slice(&self.id);
            e.extend_from_slice(&self.hash(&t));
            out.push(e);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    pub fn built(&self) -> bool {
        self.state == BuildState::Ready
    }
}

/// The 8-byte id of index `name` of `collection`:
/// HMAC-SHA256(HKDF(vault secret, "medvault/v1/index-id"), lp(collection) || lp(name))[..8].
pub(crate) fn index_id(secret: &SecretKey, collection: &str, name: &str) -> IndexId {
    let k = MacKey::new(&derive_key(secret, &[b"medvault/v1/index-id"]));
    let m = k.mac_parts(&[collection.as_bytes(), name.as_bytes()]);
    let mut id = [0u8; INDEX_ID_LEN];
    id.copy_from_slice(&m[..INDEX_ID_LEN]);
    id
}

/// The record suffix (`subject_tag || record_tag`) of a forward key.
pub(crate) fn suffix_of_forward(key: &[u8]) -> Result<&[u8]> {
    key.len()
        .checked_sub(SUFFIX_LEN)
        .filter(|s| *s > INDEX_ID_LEN)
        .and_then(|s| key.get(s..))
        .ok_or_else(|| Error::integrity(Structure::IndexEntry, "storage key malformed"))
}

/// Reverse-entry value: `version (1) || count u16 || count × (len u8 || entry)`, where
/// each entry is `index_id || value_hash` (9 to 24 bytes).
pub(crate) fn encode_reverse(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + entries.len() * 25);
    v.push(REVERSE_ENTRY_VERSION);
    v.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for e in entries {
        v.push(e.len() as u8);
        v.extend_from_slice(e);
    }
    v
}

/// Decodes a reverse entry (bounded; never panics on input from disk).
pub(crate) fn decode_reverse(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader::new(bytes, Structure::IndexReverseEntry);
    let v = r.u8()?;
    if v != REVERSE_ENTRY_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "index reverse entry",
            version: v,
        });
    }
    let n = usize::from(r.u16()?);
    if n.saturating_mul(1 + INDEX_ID_LEN + 1) > r.remaining() {
        return Err(Error::integrity(Structure::IndexReverseEntry, "bad count"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::from(r.u8()?);
        if !(INDEX_ID_LEN + 1..=INDEX_ID_LEN + 16).contains(&len) {
            return Err(Error::integrity(
                Structure::IndexReverseEntry,
                "bad entry length",
            ));
        }
        out.push(r.bytes(len)?.to_vec());
    }
    r.finish()?;
    Ok(out)
}

/// Queues the removal of a record's index entries (forward keys and reverse entry), read
/// from its reverse entry. Call under the commit lock.
pub(crate) fn unindex(storage: &dyn Storage, suffix: &[u8], batch: &mut WriteBatch) -> Result<()> {
    let rk = keyspace::reverse(suffix);
    if let Some(v) = storage.get(&rk)? {
        for e in decode_reverse(&v)? {
            batch.delete(keyspace::index_entry(&e, suffix));
        }
        batch.delete(rk);
    }
    Ok(())
}

/// Queues the removal of every index entry of a subject. Call under the commit lock.
pub(crate) fn unindex_subject(
    storage: &dyn Storage,
    tag: &SubjectTag,
    batch: &mut WriteBatch,
) -> Result<u64> {
    let prefix = keyspace::subject_reverse(tag);
    let end = prefix_end(&prefix);
    let mut n = 0;
    for item in storage.scan(&prefix, end.as_deref()) {
        let (k, v) = item?;
        let suffix = k
            .get(1..)
            .filter(|s| s.len() == SUFFIX_LEN)
            .ok_or_else(|| {
                Error::integrity(Structure::IndexReverseEntry, "storage key malformed")
            })?;
        for e in decode_reverse(&v)? {
            batch.delete(keyspace::index_entry(&e, suffix));
            n += 1;
        }
        batch.delete(k);
    }
    Ok(n)
}

/// Sealing of index definitions: AES-256-GCM under HKDF(vault secret,
/// "medvault/v1/index-def"), AAD = "medvault/v1/index-def" || vault_id || index_id ||
/// version.
pub(crate) struct DefCodec {
    aead: AeadKey,
    vault_id: crate::VaultId,
}

impl DefCodec {
    pub fn new(secret: &SecretKey, vault_id: crate::VaultId) -> Self {
        DefCodec {
            aead: AeadKey::new(&derive_key(secret, &[b"medvault/v1/index-def"])),
            vault_id,
        }
    }

    fn aad(&self, id: &IndexId) -> Vec<u8> {
        let mut a = Vec::with_capacity(21 + 16 + INDEX_ID_LEN + 1);
        a.extend_from_slice(b"medvault/v1/index-def");
        a.extend_from_slice(self.vault_id.as_bytes());
        a.extend_from_slice(id);
        a.push(INDEX_DEF_VERSION);
        a
    }

    /// `version (1) || envelope`; the plaintext is `lp16 collection || lp16 name ||
    /// normalization u8 || bits u8 (0 = 128) || part count u8 || parts (lp16 path text)
    /// || state u8 (0 ready, 1 building) || [building: has_cursor u8 || lp16 cursor]`.
    pub fn seal(&self, def: &IndexDef) -> Vec<u8> {
        let s = &def.spec;
        let mut pt = Zeroizing::new(Vec::with_capacity(128));
        put_lp16(&mut pt, s.collection.as_bytes());
        put_lp16(&mut pt, s.name.as_bytes());
        pt.push(s.normalization.code());
        pt.push(s.truncate_bits.unwrap_or(0));
        pt.push(s.parts.len() as u8);
        for p in &s.parts {
            put_lp16(&mut pt, p.to_string().as_bytes());
        }
        match &def.state {
            BuildState::Ready => pt.push(0),
            BuildState::Building { cursor } => {
                pt.push(1);
                match cursor {
                    None => pt.push(0),
                    Some(c) => {
                        pt.push(1);
                        put_lp16(&mut pt, c);
                    }
                }
            }
        }
        let mut v = vec![INDEX_DEF_VERSION];
        self.aead.seal_into(&self.aad(&def.id), &pt, &mut v);
        v
    }

    /// Opens a definition stored under `i || id`. [`Error::Integrity`] when it fails to
    /// open or parse, or was moved to another id.
    fn open(&self, secret: &SecretKey, id: &IndexId, bytes: &[u8]) -> Result<IndexDef> {
        let (&v, env) = bytes
            .split_first()
            .ok_or_else(|| Error::integrity(Structure::IndexDefinition, "empty"))?;
        if v != INDEX_DEF_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "index definition",
                version: v,
            });
        }
        let pt = self
            .aead
            .open(&self.aad(id), env)
            .ok_or_else(|| Error::integrity(Structure::IndexDefinition, "authentication failed"))?;
        let mut r = Reader::new(&pt, Structure::IndexDefinition);
        let collection = r.str16()?.to_owned();
        let name = r.str16()?.to_owned();
        let normalization = Normalization::from_code(r.u8()?)
            .ok_or_else(|| Error::integrity(Structure::IndexDefinition, "unknown normalization"))?;
        let bits = r.u8()?;
        let n = usize::from(r.u8()?);
        if n > MAX_PARTS {
            return Err(Error::integrity(
                Structure::IndexDefinition,
                "too many parts",
            ));
        }
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            parts.push(
                IndexPath::parse(r.str16()?)
                    .map_err(|_| Error::integrity(Structure::IndexDefinition, "bad path"))?,
            );
        }
        let state = match r.u8()? {
            0 => BuildState::Ready,
            1 => BuildState::Building {
                cursor: match r.u8()? {
                    0 => None,
                    1 => Some(r.lp16()?.to_vec()),
                    _ => {
                        return Err(Error::integrity(
                            Structure::IndexDefinition,
                            "bad cursor flag",
                        ));
                    }
                },
            },
            _ => return Err(Error::integrity(Structure::IndexDefinition, "bad state")),
        };
        r.finish()?;
        let spec = IndexSpec {
            name,
            collection,
            parts,
            normalization,
            truncate_bits: (bits != 0).then_some(bits),
        };
        spec.validate()
            .map_err(|_| Error::integrity(Structure::IndexDefinition, "out of bounds"))?;
        let def = IndexDef::new(secret, spec, state);
        if def.id != *id {
            return Err(Error::integrity(
                Structure::IndexDefinition,
                "stored under another id",
            ));
        }
        Ok(def)
    }
}

/// The loaded index definitions, shared by every call. Writers snapshot it outside the
/// commit lock and re-check the generation under it; definitions change only under the
/// commit lock, so a commit always indexes with the definitions current when it applies.
pub(crate) struct Registry {
    /// The definitions and their generation, changed together.
    defs: RwLock<(u64, Arc<Vec<Arc<IndexDef>>>)>,
    /// True once the vault held an index definition or entry: from then on every write
    /// looks up its record's reverse entry (a vault without indexes pays nothing).
    used: AtomicBool,
    codec: DefCodec,
    secret: SecretKey,
}

/// A consistent view of the registry.
pub(crate) struct Snapshot {
    pub generation: u64,
    pub defs: Arc<Vec<Arc<IndexDef>>>,
}

impl Snapshot {
    /// The definitions covering `collection`.
    pub fn of<'a>(&'a self, collection: &'a str) -> impl Iterator<Item = &'a Arc<IndexDef>> {
        self.defs
            .iter()
            .filter(move |d| d.spec.collection == collection)
    }
}

impl Registry {
    /// Loads every definition (`i` prefix). Fails with [`Error::Integrity`] when one does
    /// not open.
    pub fn load(
        storage: &dyn Storage,
        secret: &SecretKey,
        vault_id: crate::VaultId,
    ) -> Result<Self> {
        let codec = DefCodec::new(secret, vault_id);
        let mut defs = Vec::new();
        for item in storage.scan(
            &[keyspace::INDEX_DEF_PREFIX],
            Some(&[keyspace::INDEX_DEF_PREFIX + 1]),
        ) {
            let (k, v) = item?;
            let id: IndexId = k.get(1..).and_then(|s| s.try_into().ok()).ok_or_else(|| {
                Error::integrity(Structure::IndexDefinition, "storage key malformed")
            })?;
            defs.push(Arc::new(codec.open(secret, &id, &v)?));
        }
        let mut reverse = storage.scan(
            &[keyspace::REVERSE_PREFIX],
            Some(&[keyspace::REVERSE_PREFIX + 1]),
        );
        let used = !defs.is_empty() || reverse.next().transpose()?.is_some();
        drop(reverse);
        Ok(Registry {
            used: AtomicBool::new(used),
            defs: RwLock::new((0, Arc::new(defs))),
            codec,
            secret: secret.clone(),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.defs.read().unwrap_or_else(|p| p.into_inner());
        Snapshot {
            generation: g.0,
            defs: g.1.clone(),
        }
    }

    /// The definition of `name` in `collection`.
    pub fn get(&self, collection: &str, name: &str) -> Option<Arc<IndexDef>> {
        self.snapshot()
            .defs
            .iter()
            .find(|d| d.spec.collection == collection && d.spec.name == name)
            .cloned()
    }

    /// A definition for `spec` in `state` (not yet registered).
    pub fn make(&self, spec: IndexSpec, state: BuildState) -> IndexDef {
        IndexDef::new(&self.secret, spec, state)
    }

    /// The sealed storage value of `def`.
    pub fn seal(&self, def: &IndexDef) -> Vec<u8> {
        self.codec.seal(def)
    }

    /// Adds or replaces (same id) a definition. Call under the commit lock, after the
    /// batch persisting it was applied.
    pub fn install(&self, def: IndexDef) {
        let mut g = self.defs.write().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<Arc<IndexDef>> = g.1.iter().filter(|d| d.id != def.id).cloned().collect();
        v.push(Arc::new(def));
        *g = (g.0 + 1, Arc::new(v));
        self.used.store(true, Ordering::SeqCst);
    }

    /// Replaces the build state of a definition (entries do not depend on it, so the
    /// generation stays).
    pub fn set_state(&self, id: &IndexId, state: BuildState) {
        let mut g = self.defs.write().unwrap_or_else(|p| p.into_inner());
        let v: Vec<Arc<IndexDef>> =
            g.1.iter()
                .map(|d| {
                    if d.id == *id {
                        Arc::new(IndexDef {
                            spec: d.spec.clone(),
                            id: d.id,
                            value_key: d.value_key.clone(),
                            state: state.clone(),
                        })
                    } else {
                        d.clone()
                    }
                })
                .collect();
        *g = (g.0, Arc::new(v));
    }

    /// See the `used` field.
    pub fn ever_used(&self) -> bool {
        self.used.load(Ordering::SeqCst)
    }
}

/// Merges reverse lists while a batch is built, so that a record written twice in one
/// batch has the second write's entries replace the first's.
#[derive(Default)]
pub(crate) struct ReverseCache {
    lists: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl ReverseCache {
    /// Replaces the index entries of the record with storage-key suffix `suffix` by
    /// `entries` (for the collections indexed; others keep none): queues the deletes of
    /// old forward keys, the puts of new ones and the new reverse entry.
    pub fn replace(
        &mut self,
        storage: &dyn Storage,
        suffix: &[u8],
        entries: Vec<Vec<u8>>,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let rk = keyspace::reverse(suffix);
        let old = match self.lists.get(&rk) {
            Some(l) => l.clone(),
            None => match storage.get(&rk)? {
                Some(v) => decode_reverse(&v)?,
                None => Vec::new(),
            },
        };
        for e in &old {
            if !entries.contains(e) {
                batch.delete(keyspace::index_entry(e, suffix));
            }
        }
        for e in &entries {
            if !old.contains(e) {
                batch.put(keyspace::index_entry(e, suffix), Vec::new());
            }
        }
        if entries.is_empty() {
            if !old.is_empty() {
                batch.delete(rk.clone());
            }
        } else if entries != old {
            batch.put(rk.clone(), encode_reverse(&entries));
        }
        self.lists.insert(rk, entries);
        Ok(())
    }

    /// Adds `entries` to a record's list (an index build), keeping the others.
    pub fn add(
        &mut self,
        storage: &dyn Storage,
        suffix: &[u8],
        entries: Vec<Vec<u8>>,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let rk = keyspace::reverse(suffix);
        let mut list = match self.lists.get(&rk) {
            Some(l) => l.clone(),
            None => match storage.get(&rk)? {
                Some(v) => decode_reverse(&v)?,
                None => Vec::new(),
            },
        };
        for e in entries {
            if !list.contains(&e) {
                list.push(e);
            }
        }
        self.replace(storage, suffix, list, batch)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    fn def(bits: Option<u8>) -> IndexDef {
        let mut s =
            IndexSpec::new("Patient", "family", &["name[].family"], Normalization::Name).unwrap();
        s.truncate_bits = bits;
        IndexDef::new(&SecretKey::from_bytes([7; 32]), s, BuildState::Ready)
    }

    #[test]
    fn truncation_keeps_top_bits() {
        let t = vec![Zeroizing::new("pena909".to_owned())];
        let full = def(None).hash(&t);
        assert_eq!(full.len(), 16);
        let h = def(Some(13)).hash(&t);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0], full[0]);
        assert_eq!(h[1], full[1] & 0xf8);
        let h = def(Some(16)).hash(&t);
        assert_eq!(h, full[..2]);
        // Different (collection, name): different key, different id.
        let mut s = def(None).spec;
        s.name = "given".into();
        let other = IndexDef::new(&SecretKey::from_bytes([7; 32]), s, BuildState::Ready);
        assert_ne!(other.hash(&t), full);
        assert_ne!(other.id, def(None).id);
    }

    #[test]
    fn compound_framing_is_unambiguous() {
        let d = def(None);
        let a = d.hash(&[Zeroizing::new("ab".into()), Zeroizing::new("c".into())]);
        let b = d.hash(&[Zeroizing::new("a".into()), Zeroizing::new("bc".into())]);
        assert_ne!(a, b);
    }

    #[test]
    fn reverse_roundtrip_and_bounds() {
        let e = vec![vec![1u8; 24], vec![2u8; 9]];
        let b = encode_reverse(&e);
        assert_eq!(decode_reverse(&b).unwrap(), e);
        for n in 0..b.len() {
            assert!(decode_reverse(&b[..n]).is_err());
        }
        let mut bad = b.clone();
        bad[3] = 30;
        assert!(decode_reverse(&bad).is_err());
        let mut bad = b.clone();
        bad[0] = 2;
        assert!(matches!(
            decode_reverse(&bad),
            Err(Error::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn definition_seal_open_and_tamper() {
        let secret = SecretKey::from_bytes([7; 32]);
        let codec = DefCodec::new(&secret, crate::VaultId::from([1; 16]));
        let mut d = def(Some(16));
        d.state = BuildState::Building {
            cursor: Some(vec![b'r'; 33]),
        };
        let sealed = codec.seal(&d);
        let back = codec.open(&secret, &d.id, &sealed).unwrap();
        assert_eq!(back.spec, d.spec);
        assert_eq!(back.state, d.state);
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(
                codec.open(&secret, &d.id, &t).is_err(),
                "flip at {i} accepted"
            );
        }
        assert!(codec.open(&secret, &[0; 8], &sealed).is_err());
        let other = DefCodec::new(&secret, crate::VaultId::from([2; 16]));
        assert!(other.open(&secret, &d.id, &sealed).is_err());
    }
}
