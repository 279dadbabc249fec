//! The keyring: one set of keys per subject, stored only wrapped under the root key.
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
use crate::crypto::{AeadKey, RootKey, SecretKey};
use crate::error::{Error, InputKind, Result, Structure};
use crate::header::{WRAPPED_LEN, unwrap_key, wrap_key, wrapping_key};
use crate::keyspace;

/// Subject-entry format version.
pub const SUBJECT_ENTRY_VERSION: u8 = 1;
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
    pub audit: AeadKey,
    state: Mutex<KeyState>,
}

impl SubjectKeys {
    pub fn lock(&self) -> MutexGuard<'_, KeyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Counts `messages` against the audit key.
    pub fn count_audit(&self, messages: u64) {
        let mut s = self.lock();
        s.audit_used = s.audit_used.saturating_add(messages);
        if s.audit_used > s.audit_mark {
            s.dirty = true;
        }
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

fn dek_aad(vault_id: &crate::VaultId, tag: &SubjectTag, version: u32, root_gen: u32) -> Vec<u8> {
    let mut aad = b"medvault/v1/dek".to_vec();
    aad.push(SUBJECT_ENTRY_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(tag.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&root_gen.to_be_bytes());
    aad
}

fn audit_aad(vault_id: &crate::VaultId, tag: &SubjectTag, root_gen: u32) -> Vec<u8> {
    let mut aad = b"medvault/v1/audit-key".to_vec();
    aad.push(SUBJECT_ENTRY_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(tag.as_bytes());
    aad.extend_from_slice(&root_gen.to_be_bytes());
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

/// The key-encryption side of the keyring: the root key's wrapping key (and, during a
/// root-key rotation, the next one) plus the cache of unwrapped subject keys.
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
}

struct Cache {
    map: HashMap<SubjectTag, (Arc<SubjectKeys>, u64)>,
    tick: u64,
    capacity: usize,
}

impl Keyring {
    pub fn new(
        vault_id: crate::VaultId,
        root: &RootKey,
        generation: u32,
        next: Option<(&RootKey, u32)>,
        capacity: usize,
    ) -> Self {
        Keyring {
            vault_id,
            keks: Mutex::new(Keks {
                current: (generation, Arc::new(wrapping_key(root))),
                next: next.map(|(k, g)| (g, Arc::new(wrapping_key(k)))),
            }),
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                tick: 0,
                capacity: capacity.max(16),
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

    /// The wrapping key for writing: the next root during a rotation, else the current.
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
                "wrapped under an unknown root generation",
            )),
        }
    }

    /// Installs the next root key for a rotation (`Some`) or promotes it (`None`:
    /// rotation finished, the next root becomes current).
    pub fn set_next_root(&self, next: Option<(&RootKey, u32)>) {
        let mut k = self.keks();
        match next {
            Some((key, g)) => k.next = Some((g, Arc::new(wrapping_key(key)))),
            None => {
                if let Some(n) = k.next.take() {
                    k.current = n;
                }
            }
        }
    }

    /// Looks a subject up in the cache.
    pub fn cached(&self, tag: &SubjectTag) -> Option<Arc<SubjectKeys>> {
        let mut c = self.cache();
        c.tick += 1;
        let t = c.tick;
        c.map.get_mut(tag).map(|(k, used)| {
            *used = t;
            k.clone()
        })
    }

    fn insert(&self, keys: Arc<SubjectKeys>) {
        let mut c = self.cache();
        c.tick += 1;
        let t = c.tick;
        if c.map.len() >= c.capacity {
            // Evict the least recently used quarter, keeping entries not yet persisted.
            let mut ages: Vec<(u64, SubjectTag)> = c
                .map
                .iter()
                .filter(|(_, (k, _))| !k.lock().dirty)
                .map(|(tag, (_, used))| (*used, *tag))
                .collect();
            ages.sort_unstable();
            let n = (c.capacity / 4).max(1);
            for (_, tag) in ages.into_iter().take(n) {
                c.map.remove(&tag);
            }
        }
        c.map.insert(keys.tag, (keys, t));
    }

    /// Removes a subject from the cache (erasure; its keys are zeroized when the last
    /// user drops them).
    pub fn evict(&self, tag: &SubjectTag) {
        self.cache().map.remove(tag);
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

    /// Serializes a subject entry under the write root generation, advancing usage marks
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
        if s.audit_used >= s.audit_mark {
            s.audit_mark = s.audit_used.saturating_add(USAGE_RESERVE);
        }
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
