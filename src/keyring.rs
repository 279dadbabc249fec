//! The keyring: one set of keys per subject, stored only wrapped under the vault
//! key-encryption key (KEK), itself wrapped under the root key in the header.
//!
//! A subject entry (docs/FORMAT.md "Subject key entry") holds every live data-key (DEK) version, the
//! subject's audit key (seals the identifying part of its access-log entries, so that
//! erasure unlinks them) and the subject's logical id sealed under the audit key. Each
//! key has a usage counter whose high-water mark is persisted ahead of use, so a crash can
//! only over-count. Unwrapped keys sit in a bounded cache and are zeroized on eviction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use zeroize::Zeroizing;

use crate::codec::{Reader, put_lp32};
use crate::crypto::{AeadKey, SecretKey, XAeadKey, derive_key};
use crate::error::{Error, InputKind, Result, Structure};
use crate::header::{Kek, WRAPPED_LEN, unwrap_key, wrap_key};
use crate::keyspace;

/// Subject-entry format version (2: keys wrapped under the vault KEK, whose generation
/// the entry names).
pub const SUBJECT_ENTRY_VERSION: u8 = 2;
/// How many messages a persisted usage mark runs ahead of actual use.
pub(crate) const USAGE_RESERVE: u64 = 1 << 16;
/// Most DEK versions a subject may hold at once (old ones are retired after rotation).
pub const MAX_DEK_VERSIONS: usize = 64;

pub use crate::ids::SubjectTag;

/// One version of a subject's data key.
pub(crate) struct Dek {
    pub version: u32,
    key: SecretKey,
    pub aead: AeadKey,
}

/// Mutable key state of one subject.
pub(crate) struct KeyState {
    pub current: u32,
    pub versions: Vec<(Arc<Dek>, u64, u64)>, // (key, used, persisted mark)
    pub audit_used: u64,
    pub audit_mark: u64,
    /// The stored entry is missing or behind (new subject, or a mark was passed).
    pub dirty: bool,
    /// Erased: no further commit may use these keys.
    pub erased: bool,
}

/// The keys of one subject.
pub(crate) struct SubjectKeys {
    pub tag: SubjectTag,
    pub subject: Zeroizing<String>,
    audit_key: SecretKey,
    /// Seals the subject's id in its key entry (AES-256-GCM, counted: `audit_used`).
    pub audit: AeadKey,
    /// Seals the targets of the subject's access-log entries: XChaCha20-Poly1305 under
    /// `derive(audit key, "medvault/v1/log-target-key")`, random 192-bit nonces, no count
    /// (crypto/xaead.rs). Destroyed with the audit key at erasure.
    pub target: XAeadKey,
    state: Mutex<KeyState>,
}

impl SubjectKeys {
    pub fn lock(&self) -> MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Memory the key cache counts for these keys, in bytes: the structure, the subject
    /// id, each data-key version (key, expanded AES-GCM key schedule, counters) and the
    /// cache's own map slot and reference counts. An estimate from the types' sizes
    /// (allocator overhead not included), taken when the keys enter the cache.
    pub fn cached_bytes(&self) -> usize {
        use std::mem::size_of;
        let versions = self.lock().versions.len();
        // Arc allocations carry two reference counts.
        const ARC: usize = 2 * size_of::<usize>();
        ARC + size_of::<SubjectKeys>()
            + self.subject.capacity()
            + versions * (size_of::<(Arc<Dek>, u64, u64)>() + ARC + size_of::<Dek>())
            + size_of::<(SubjectTag, (Arc<SubjectKeys>, u64, usize))>()
    }

    /// The current DEK, with `messages` counted against it.
    pub fn current_dek(&self, messages: u64) -> Result<Arc<Dek>> {
        let mut s = self.lock();
        if s.erased {
            return Err(Error::NotFound);
        }
        let cur = s.current;
        let mut need_persist = false;
        let dek = match s.versions.iter_mut().find(|(d, _, _)| d.version == cur) {
            Some((d, used, mark)) => {
                *used = used.saturating_add(messages);
                if *used > *mark {
                    need_persist = true;
                }
                d.clone()
            }
            None => return Err(Error::UnknownKeyVersion(cur)),
        };
        if need_persist {
            s.dirty = true;
        }
        Ok(dek)
    }

    /// The DEK of `version`, for opening. A version this subject never had (0, or above
    /// the highest issued, which is always held: it is current) can only come from a
    /// corrupted or tampered value: [`Error::Integrity`]. A version issued and since
    /// retired is [`Error::UnknownKeyVersion`].
    pub fn dek(&self, version: u32) -> Result<Arc<Dek>> {
        let s = self.lock();
        if let Some((d, _, _)) = s.versions.iter().find(|(d, _, _)| d.version == version) {
            return Ok(d.clone());
        }
        let highest = s.versions.iter().map(|(d, _, _)| d.version).max();
        if version == 0 || highest.is_none_or(|h| version > h) {
            return Err(Error::integrity(
                Structure::SubjectEntry,
                "data-key version never issued for this subject",
            ));
        }
        Err(Error::UnknownKeyVersion(version))
    }

    /// True when DEK `version` is still held.
    pub fn has_version(&self, version: u32) -> bool {
        self.lock()
            .versions
            .iter()
            .any(|(d, _, _)| d.version == version)
    }

    /// Every held DEK version, ascending.
    pub fn versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .lock()
            .versions
            .iter()
            .map(|(d, _, _)| d.version)
            .collect();
        v.sort_unstable();
        v
    }

    /// Usage of the current DEK (messages sealed, upper bound).
    pub fn current_usage(&self) -> u64 {
        let s = self.lock();
        s.versions
            .iter()
            .find(|(d, _, _)| d.version == s.current)
            .map(|v| v.1)
            .unwrap_or(0)
    }
}

fn dek_aad(vault_id: &crate::VaultId, tag: &SubjectTag, version: u32, kek_gen: u32) -> Vec<u8> {
    let mut aad = b"medvault/v1/dek".to_vec();
    aad.push(SUBJECT_ENTRY_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(tag.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&kek_gen.to_be_bytes());
    aad
}

/// The log-target key of a subject ([`SubjectKeys::target`]).
fn target_key(audit_key: &SecretKey) -> XAeadKey {
    XAeadKey::new(&derive_key(audit_key, &[b"medvault/v1/log-target-key"]))
}

fn audit_aad(vault_id: &crate::VaultId, tag: &SubjectTag, kek_gen: u32) -> Vec<u8> {
    let mut aad = b"medvault/v1/audit-key".to_vec();
    aad.push(SUBJECT_ENTRY_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(tag.as_bytes());
    aad.extend_from_slice(&kek_gen.to_be_bytes());
    aad
}

/// AAD of the sealed subject id: it also covers `entry`, every byte of the subject entry
/// before the sealed id, so the id's tag authenticates the whole entry (the current
/// version and the usage marks are not inside any other tag).
fn id_aad(vault_id: &crate::VaultId, tag: &SubjectTag, entry: &[u8]) -> Vec<u8> {
    let mut aad = b"medvault/v1/subject-id".to_vec();
    aad.push(SUBJECT_ENTRY_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(tag.as_bytes());
    aad.extend_from_slice(entry);
    aad
}

/// The key-encryption side of the keyring: the vault KEK's wrapping key (and, during a
/// KEK rotation, the next one) plus the cache of unwrapped subject keys.
pub(crate) struct Keyring {
    vault_id: crate::VaultId,
    keks: Mutex<Keks>,
    cache: Mutex<Cache>,
    /// Serializes cache misses (loads and first-write creations) with erasures.
    create: Mutex<()>,
}

struct Keks {
    current: (u32, Arc<AeadKey>),
    next: Option<(u32, Arc<AeadKey>)>,
    /// The unwrapped KEKs themselves, for rewrapping them under a new root.
    secrets: (Kek, Option<Kek>),
}

/// The AEAD key that wraps subject keys under a vault KEK: HKDF(KEK,
/// "medvault/v1/subject-wrap").
fn subject_wrapping_key(kek: &Kek) -> (u32, Arc<AeadKey>) {
    (
        kek.generation,
        Arc::new(AeadKey::new(&derive_key(
            &kek.key,
            &[b"medvault/v1/subject-wrap"],
        ))),
    )
}

/// Default budget of the key cache, in bytes: 256 MiB, which holds the unwrapped keys of
/// every subject of a 100,000-patient clinic (one data-key version each: about 2.3 KB
/// per subject, dominated by two expanded AES-256-GCM key schedules; see
/// [`SubjectKeys::cached_bytes`]), so a scan or random reads over such a clinic unwrap
/// each subject's keys once.
pub const DEFAULT_KEY_CACHE_BYTES: usize = 256 << 20;

/// The smallest key-cache budget accepted (smaller settings are raised to it): 32 KiB, about 14 subjects.
pub const MIN_KEY_CACHE_BYTES: usize = 32 << 10;

struct Cache {
    /// Per subject: its keys, when last used, and the bytes counted for it.
    map: HashMap<SubjectTag, (Arc<SubjectKeys>, u64, usize)>,
    tick: u64,
    /// Sum of the bytes counted for the entries in `map`.
    bytes: usize,
    /// Budget in bytes.
    capacity: usize,
}

impl Keyring {
    /// A keyring over vault KEK `kek` (and `next`, while a KEK rotation is pending)
    /// caching subjects up to `cache_bytes` of keys.
    pub fn new(
        vault_id: crate::VaultId,
        kek: &Kek,
        next: Option<&Kek>,
        cache_bytes: usize,
    ) -> Self {
        Keyring {
            vault_id,
            keks: Mutex::new(Keks {
                current: subject_wrapping_key(kek),
                next: next.map(subject_wrapping_key),
                secrets: (kek.clone(), next.cloned()),
            }),
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                tick: 0,
                bytes: 0,
                capacity: cache_bytes.max(MIN_KEY_CACHE_BYTES),
            }),
            create: Mutex::new(()),
        }
    }

    fn keks(&self) -> MutexGuard<'_, Keks> {
        self.keks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The wrapping key for writing: the next KEK during a rotation, else the current.
    fn write_kek(&self) -> (u32, Arc<AeadKey>) {
        let k = self.keks();
        k.next.clone().unwrap_or_else(|| k.current.clone())
    }

    fn kek_for(&self, generation: u32) -> Result<Arc<AeadKey>> {
        let k = self.keks();
        if k.current.0 == generation {
            return Ok(k.current.1.clone());
        }
        match &k.next {
            Some((g, kek)) if *g == generation => Ok(kek.clone()),
            _ => Err(Error::integrity(
                Structure::SubjectEntry,
                "wrapped under an unknown key-encryption-key generation",
            )),
        }
    }

    /// Installs the next vault KEK of a KEK rotation (`Some`): entries are written under
    /// it from now on, and read under either. `None` promotes it (rotation finished: the
    /// old KEK is dropped and zeroized).
    pub fn set_next_kek(&self, next: Option<&Kek>) {
        let mut k = self.keks();
        match next {
            Some(n) => {
                k.next = Some(subject_wrapping_key(n));
                k.secrets.1 = Some(n.clone());
            }
            None => {
                if let Some(n) = k.next.take() {
                    k.current = n;
                }
                if let Some(n) = k.secrets.1.take() {
                    k.secrets.0 = n;
                }
            }
        }
    }

    /// The unwrapped vault KEK in force and the pending next one (to rewrap them under a
    /// new root key).
    pub fn kek_secrets(&self) -> (Kek, Option<Kek>) {
        self.keks().secrets.clone()
    }

    /// Rewraps a stored subject entry under the write KEK without building its keys:
    /// every wrapped key is unwrapped and wrapped again, the subject id re-sealed (its
    /// AAD covers the entry), versions and usage marks copied as they are. `Ok(None)`
    /// when the entry is already under the write KEK. [`Error::Integrity`] on any
    /// failure, as [`Keyring::decode_entry`].
    pub fn rewrap_entry(&self, tag: &SubjectTag, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
        let (to_gen, to) = self.write_kek();
        let bad = |what: &'static str| Error::integrity(Structure::SubjectEntry, what);
        let mut r = Reader::new(bytes, Structure::SubjectEntry);
        let v = r.u8()?;
        if v != SUBJECT_ENTRY_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "subject entry",
                version: v,
            });
        }
        let from_gen = r.u32()?;
        if from_gen == to_gen {
            return Ok(None);
        }
        let from = self.kek_for(from_gen)?;
        let current = r.u32()?;
        let n = r.u16()? as usize;
        if n == 0 || n > MAX_DEK_VERSIONS {
            return Err(bad("bad number of key versions"));
        }
        let mut out = Vec::with_capacity(bytes.len());
        out.push(SUBJECT_ENTRY_VERSION);
        out.extend_from_slice(&to_gen.to_be_bytes());
        out.extend_from_slice(&current.to_be_bytes());
        out.extend_from_slice(&(n as u16).to_be_bytes());
        for _ in 0..n {
            let version = r.u32()?;
            let mark = r.u64()?;
            let wrapped = r.bytes(WRAPPED_LEN)?;
            let key = unwrap_key(
                &from,
                &dek_aad(&self.vault_id, tag, version, from_gen),
                wrapped,
            )
            .ok_or_else(|| bad("wrapped data key"))?;
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&mark.to_be_bytes());
            out.extend_from_slice(&wrap_key(
                &to,
                &dek_aad(&self.vault_id, tag, version, to_gen),
                &key,
            ));
        }
        let audit_mark = r.u64()?;
        let wrapped = r.bytes(WRAPPED_LEN)?;
        let audit_key = unwrap_key(&from, &audit_aad(&self.vault_id, tag, from_gen), wrapped)
            .ok_or_else(|| bad("wrapped audit key"))?;
        out.extend_from_slice(&audit_mark.to_be_bytes());
        out.extend_from_slice(&wrap_key(
            &to,
            &audit_aad(&self.vault_id, tag, to_gen),
            &audit_key,
        ));
        let covered = bytes
            .get(..bytes.len() - r.remaining())
            .ok_or_else(|| bad("truncated"))?;
        let sealed_id = r.lp32(4096)?;
        r.finish()?;
        let audit = AeadKey::new(&audit_key);
        let id = audit
            .open(&id_aad(&self.vault_id, tag, covered), sealed_id)
            .ok_or_else(|| bad("sealed subject id"))?;
        let resealed = audit.seal(&id_aad(&self.vault_id, tag, &out), &id);
        put_lp32(&mut out, &resealed);
        Ok(Some(out))
    }

    /// Looks a subject up in the cache.
    pub fn cached(&self, tag: &SubjectTag) -> Option<Arc<SubjectKeys>> {
        let mut c = self.cache();
        c.tick += 1;
        let t = c.tick;
        c.map.get_mut(tag).map(|(k, used, _)| {
            *used = t;
            k.clone()
        })
    }

    fn insert(&self, keys: Arc<SubjectKeys>) {
        let size = keys.cached_bytes();
        let mut c = self.cache();
        c.tick += 1;
        let t = c.tick;
        if c.bytes + size > c.capacity {
            // Evict the least recently used entries down to three quarters of the budget
            // (amortizes the sort), keeping entries not yet persisted.
            let mut ages: Vec<(u64, SubjectTag, usize)> = c
                .map
                .iter()
                .filter(|(_, (k, _, _))| !k.lock().dirty)
                .map(|(tag, (_, used, bytes))| (*used, *tag, *bytes))
                .collect();
            ages.sort_unstable();
            let target = (c.capacity / 4 * 3).saturating_sub(size);
            for (_, tag, bytes) in ages {
                if c.bytes <= target {
                    break;
                }
                c.map.remove(&tag);
                c.bytes = c.bytes.saturating_sub(bytes);
            }
        }
        c.bytes += size;
        if let Some((_, _, old)) = c.map.insert(keys.tag, (keys, t, size)) {
            c.bytes = c.bytes.saturating_sub(old);
        }
    }

    /// Bytes the cache counts for the subjects it holds, and how many it holds.
    #[cfg(test)]
    fn cache_usage(&self) -> (usize, usize) {
        let c = self.cache();
        (c.bytes, c.map.len())
    }

    /// Removes a subject from the cache (erasure; its keys are zeroized when the last
    /// user drops them).
    pub fn evict(&self, tag: &SubjectTag) {
        let mut c = self.cache();
        if let Some((_, _, bytes)) = c.map.remove(tag) {
            c.bytes = c.bytes.saturating_sub(bytes);
        }
    }

    /// Loads a subject's keys (cache, then storage). `Ok(None)` when the subject has none.
    pub fn load(
        &self,
        tag: &SubjectTag,
        read: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<Arc<SubjectKeys>>> {
        if let Some(k) = self.cached(tag) {
            return Ok(Some(k));
        }
        let _g = self.loading();
        self.load_locked(tag, read)
    }

    /// Serializes cache misses with erasure: the read of a key entry and its insertion
    /// into the cache happen under this lock, and an erasure holds it while it deletes
    /// the entry and evicts it. So no load can read an entry before an erasure and cache
    /// it after (which would let a writer seal a record under destroyed keys).
    pub fn loading(&self) -> MutexGuard<'_, ()> {
        self.create.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_locked(
        &self,
        tag: &SubjectTag,
        read: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<Arc<SubjectKeys>>> {
        if let Some(k) = self.cached(tag) {
            return Ok(Some(k));
        }
        let Some(bytes) = read(&keyspace::subject_entry(tag))? else {
            return Ok(None);
        };
        let keys = Arc::new(self.decode_entry(tag, &bytes)?);
        self.insert(keys.clone());
        Ok(Some(keys))
    }

    /// Loads a subject's keys, creating them (dirty, persisted with the next commit) on
    /// the subject's first write.
    pub fn load_or_create(
        &self,
        tag: &SubjectTag,
        subject: &str,
        read: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>,
    ) -> Result<Arc<SubjectKeys>> {
        if let Some(k) = self.cached(tag) {
            return Ok(k);
        }
        let _g = self.loading();
        if let Some(k) = self.load_locked(tag, &read)? {
            return Ok(k);
        }
        let dek = SecretKey::random();
        let audit_key = SecretKey::random();
        let keys = Arc::new(SubjectKeys {
            tag: *tag,
            subject: Zeroizing::new(subject.to_owned()),
            audit: AeadKey::new(&audit_key),
            target: target_key(&audit_key),
            audit_key,
            state: Mutex::new(KeyState {
                current: 1,
                versions: vec![(
                    Arc::new(Dek {
                        version: 1,
                        aead: AeadKey::new(&dek),
                        key: dek,
                    }),
                    0,
                    0,
                )],
                audit_used: 0,
                audit_mark: 0,
                dirty: true,
                erased: false,
            }),
        });
        self.insert(keys.clone());
        Ok(keys)
    }

    /// Adds a fresh DEK version and makes it current; returns the new version.
    pub fn add_version(&self, keys: &SubjectKeys) -> Result<u32> {
        let mut s = keys.lock();
        if s.versions.len() >= MAX_DEK_VERSIONS {
            return Err(Error::invalid(
                InputKind::KeyOperation,
                "too many live data-key versions; retire old versions first",
            ));
        }
        let next = s
            .versions
            .iter()
            .map(|(d, _, _)| d.version)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| Error::invalid(InputKind::KeyOperation, "data-key version exhausted"))?;
        let k = SecretKey::random();
        s.versions.push((
            Arc::new(Dek {
                version: next,
                aead: AeadKey::new(&k),
                key: k,
            }),
            0,
            0,
        ));
        s.current = next;
        s.dirty = true;
        Ok(next)
    }

    /// Removes DEK `version` (it must not be current).
    pub fn remove_version(&self, keys: &SubjectKeys, version: u32) -> Result<()> {
        let mut s = keys.lock();
        if s.current == version {
            return Err(Error::invalid(
                InputKind::KeyOperation,
                "cannot retire the current data-key version",
            ));
        }
        let before = s.versions.len();
        s.versions.retain(|(d, _, _)| d.version != version);
        if s.versions.len() == before {
            return Err(Error::UnknownKeyVersion(version));
        }
        s.dirty = true;
        Ok(())
    }

    /// Serializes a subject entry under the write KEK generation, advancing usage marks
    /// by [`USAGE_RESERVE`]. Marks the keys clean.
    pub fn encode_entry(&self, keys: &SubjectKeys) -> Vec<u8> {
        let (gen_, kek) = self.write_kek();
        let tag = &keys.tag;
        let mut s = keys.lock();
        let mut out = Vec::with_capacity(256);
        out.push(SUBJECT_ENTRY_VERSION);
        out.extend_from_slice(&gen_.to_be_bytes());
        out.extend_from_slice(&s.current.to_be_bytes());
        out.extend_from_slice(&(s.versions.len() as u16).to_be_bytes());
        for (d, used, mark) in s.versions.iter_mut() {
            if *used >= *mark {
                *mark = used.saturating_add(USAGE_RESERVE);
            }
            out.extend_from_slice(&d.version.to_be_bytes());
            out.extend_from_slice(&mark.to_be_bytes());
            out.extend_from_slice(&wrap_key(
                &kek,
                &dek_aad(&self.vault_id, tag, d.version, gen_),
                &d.key,
            ));
        }
        // The audit key seals only the subject id below, once per entry written: counted
        // exactly, and the count is persisted with the seal it counts (no reservation).
        s.audit_used = s.audit_used.saturating_add(1);
        s.audit_mark = s.audit_mark.max(s.audit_used);
        out.extend_from_slice(&s.audit_mark.to_be_bytes());
        out.extend_from_slice(&wrap_key(
            &kek,
            &audit_aad(&self.vault_id, tag, gen_),
            &keys.audit_key,
        ));
        let sealed_id = keys
            .audit
            .seal(&id_aad(&self.vault_id, tag, &out), keys.subject.as_bytes());
        put_lp32(&mut out, &sealed_id);
        s.dirty = false;
        out
    }

    /// Decodes and unwraps a subject entry. [`Error::Integrity`] on any failure.
    pub fn decode_entry(&self, tag: &SubjectTag, bytes: &[u8]) -> Result<SubjectKeys> {
        let mut r = Reader::new(bytes, Structure::SubjectEntry);
        let v = r.u8()?;
        if v != SUBJECT_ENTRY_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "subject entry",
                version: v,
            });
        }
        let gen_ = r.u32()?;
        let kek = self.kek_for(gen_)?;
        let current = r.u32()?;
        let n = r.u16()? as usize;
        if n == 0 || n > MAX_DEK_VERSIONS {
            return Err(Error::integrity(
                Structure::SubjectEntry,
                "bad number of key versions",
            ));
        }
        let mut versions = Vec::with_capacity(n);
        for _ in 0..n {
            let version = r.u32()?;
            let mark = r.u64()?;
            let wrapped = r.bytes(WRAPPED_LEN)?;
            let key = unwrap_key(&kek, &dek_aad(&self.vault_id, tag, version, gen_), wrapped)
                .ok_or_else(|| Error::integrity(Structure::SubjectEntry, "wrapped data key"))?;
            versions.push((
                Arc::new(Dek {
                    version,
                    aead: AeadKey::new(&key),
                    key,
                }),
                mark,
                mark,
            ));
        }
        if !versions.iter().any(|(d, _, _)| d.version == current) {
            return Err(Error::integrity(
                Structure::SubjectEntry,
                "current version missing",
            ));
        }
        let audit_mark = r.u64()?;
        let wrapped = r.bytes(WRAPPED_LEN)?;
        let audit_key = unwrap_key(&kek, &audit_aad(&self.vault_id, tag, gen_), wrapped)
            .ok_or_else(|| Error::integrity(Structure::SubjectEntry, "wrapped audit key"))?;
        let audit = AeadKey::new(&audit_key);
        let covered = bytes
            .get(..bytes.len() - r.remaining())
            .ok_or_else(|| Error::integrity(Structure::SubjectEntry, "truncated"))?;
        let sealed_id = r.lp32(4096)?;
        r.finish()?;
        let id = audit
            .open(&id_aad(&self.vault_id, tag, covered), sealed_id)
            .ok_or_else(|| Error::integrity(Structure::SubjectEntry, "sealed subject id"))?;
        let subject = std::str::from_utf8(&id)
            .map_err(|_| Error::integrity(Structure::SubjectEntry, "subject id not UTF-8"))?;
        Ok(SubjectKeys {
            tag: *tag,
            subject: Zeroizing::new(subject.to_owned()),
            target: target_key(&audit_key),
            audit_key,
            audit,
            state: Mutex::new(KeyState {
                current,
                versions,
                audit_used: audit_mark,
                audit_mark,
                dirty: false,
                erased: false,
            }),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod cache_tests {
    use super::*;

    fn keyring(cache_bytes: usize) -> Keyring {
        let kek = crate::header::Kek {
            generation: 0,
            key: crate::crypto::SecretKey::from_bytes([9; 32]),
        };
        Keyring::new(crate::VaultId::from([3; 16]), &kek, None, cache_bytes)
    }

    fn tag(i: u32) -> SubjectTag {
        let mut t = [0u8; 16];
        t[..4].copy_from_slice(&i.to_be_bytes());
        SubjectTag::from(t)
    }

    fn add(k: &Keyring, i: u32, clean: bool) -> Arc<SubjectKeys> {
        let keys = k
            .load_or_create(&tag(i), &format!("patient-{i:06}"), |_| Ok(None))
            .unwrap();
        if clean {
            keys.lock().dirty = false;
        }
        keys
    }

    #[test]
    fn the_default_budget_holds_a_100k_patient_clinic() {
        let k = keyring(DEFAULT_KEY_CACHE_BYTES);
        let one = add(&k, 1, true);
        let size = one.cached_bytes();
        // The estimate counts at least the two expanded AES-256-GCM keys (data key and
        // audit key) and the two raw keys, as the compiler lays them out.
        let floor = 2 * std::mem::size_of::<AeadKey>() + 2 * std::mem::size_of::<SecretKey>();
        assert!(size >= floor, "{size} < {floor}");
        assert!(
            100_000 * size <= DEFAULT_KEY_CACHE_BYTES,
            "100k subjects of {size} bytes exceed the default budget"
        );
    }

    #[test]
    fn the_cache_keeps_to_its_byte_budget_least_recently_used_first() {
        let budget = 64 << 10;
        let k = keyring(budget);
        let size = add(&k, 0, true).cached_bytes();
        let fits = budget / size;
        assert!(fits >= 8, "{fits}");
        for i in 1..(4 * fits as u32) {
            add(&k, i, true);
            // Subject 0 is used all along: never the least recently used.
            assert!(k.cached(&tag(0)).is_some(), "a subject in use was evicted");
            let (bytes, held) = k.cache_usage();
            assert!(bytes <= budget, "{bytes} over {budget} after {i}");
            assert_eq!(bytes, held * size, "bytes counted = entries held x size");
        }
        assert!(k.cached(&tag(1)).is_none(), "an old subject still held");
        let last = 4 * fits as u32 - 1;
        assert!(k.cached(&tag(last)).is_some(), "the newest subject evicted");
        k.evict(&tag(last));
        let (bytes, held) = k.cache_usage();
        assert_eq!(bytes, held * size, "evict uncounts");
    }

    #[test]
    fn keys_not_yet_persisted_are_never_evicted() {
        let k = keyring(0); // raised to the minimum
        let n = 2 * MIN_KEY_CACHE_BYTES / add(&k, 0, false).cached_bytes();
        for i in 1..n as u32 {
            add(&k, i, false);
        }
        for i in 0..n as u32 {
            assert!(k.cached(&tag(i)).is_some(), "dirty subject {i} evicted");
        }
    }
}
