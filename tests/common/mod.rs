//! Shared helpers of the integration tests: test vaults, access contexts, the lookup of
//! the FHIR test data, file walking and hashing, a parser of the record-value layout
//! (docs/FORMAT.md "Record value") for tamper tests, and the SIGKILL crash-test harness
//! ([`crash`]).

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]
// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

pub mod crash;

use medvault::danger::RawAccess;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use medvault::storage::MemoryStorage;
use medvault::{
    AccessContext, Durability, KeySource, LogEntry, LogQuery, Purpose, Vault, VaultOptions,
};
use sha2::{Digest, Sha256};

/// The raw root key of test vaults (no KDF: tests stay fast).
pub const RAW_KEY: [u8; 32] = [0x42; 32];

/// A key source for [`RAW_KEY`].
pub fn raw_key() -> KeySource {
    KeySource::raw(RAW_KEY)
}

/// Options for test vaults: cheap KDF, default durability.
pub fn options() -> VaultOptions {
    VaultOptions {
        kdf: medvault::danger::insecure_kdf_params(),
        ..VaultOptions::default()
    }
}

/// Options with a chosen durability.
pub fn options_with(durability: Durability) -> VaultOptions {
    VaultOptions {
        durability,
        ..options()
    }
}

/// A care context for `actor`.
pub fn care(actor: &str) -> AccessContext {
    AccessContext::new(actor, Purpose::Care)
}

/// The default test actor's context.
pub fn ctx() -> AccessContext {
    care("test-clinician")
}

/// A new vault in fresh memory storage; the storage handle shares its state.
pub fn memory_vault() -> (MemoryStorage, Vault) {
    let storage = MemoryStorage::new();
    let vault = Vault::create_in(Box::new(storage.clone()), raw_key(), options()).unwrap();
    (storage, vault)
}

/// Reopens the vault held in `storage` (the previous handle must be dropped).
pub fn reopen(storage: &MemoryStorage) -> Vault {
    Vault::open_in(Box::new(storage.clone()), raw_key(), options()).unwrap()
}

/// Every access-log entry (the query itself is logged after the results are gathered).
pub fn all_entries(vault: &Vault) -> Vec<LogEntry> {
    vault.audit_query(&ctx(), &LogQuery::default()).unwrap()
}

/// The workspace root: the nearest folder at or above the test's package that holds
/// the workspace's `Cargo.lock` (this file is also compiled by `cli/tests`).
pub fn workspace_root() -> PathBuf {
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR"));
    pkg.ancestors()
        .find(|a| a.join("Cargo.lock").is_file())
        .unwrap_or(pkg)
        .to_path_buf()
}

/// Where a data set of the shared test data lives (README "Test data"; build.rs
/// resolves it the same way): `$var` if set, else `$MEDVAULT_SHARED_DATA/<dir>`, else
/// `<workspace root>/../shared/data/<dir>`. Panics when it is absent: a test that needs
/// it is marked `#[cfg_attr(missing_<set>, ignore = ...)]`, so it only runs without
/// its data when asked to (`--include-ignored`) or under `CI=true`, and then must fail.
pub fn shared_data(var: &str, dir: &str) -> PathBuf {
    let path = match (
        std::env::var_os(var),
        std::env::var_os("MEDVAULT_SHARED_DATA"),
    ) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(s)) => PathBuf::from(s).join(dir),
        (None, None) => workspace_root().join("../shared/data").join(dir),
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        path.is_dir(),
        "test data not found at {} (set {var} or MEDVAULT_SHARED_DATA; README \"Test data\"){}",
        path.display(),
        if ci { "; required under CI=true" } else { "" }
    );
    path
}

/// The FHIR R4 NDJSON test data (Synthea): `$MEDVAULT_FHIR_DATA`, else
/// `fhir-r4-ndjson` of the shared data ([`shared_data`]).
pub fn fhir_data_dir() -> PathBuf {
    shared_data("MEDVAULT_FHIR_DATA", "fhir-r4-ndjson")
}

/// The external FHIR corpus (HL7, Microsoft, Google, SMART...):
/// `$MEDVAULT_FHIR_EXTERNAL`, else `fhir-r4-external` of the shared data.
pub fn fhir_external_dir() -> PathBuf {
    shared_data("MEDVAULT_FHIR_EXTERNAL", "fhir-r4-external")
}

/// Every regular file under `dir`, recursively, with its bytes, sorted by path.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// SHA-256 of every file under `dir`, by path relative to `dir`.
pub fn hash_tree(dir: &Path) -> BTreeMap<PathBuf, [u8; 32]> {
    files_under(dir)
        .into_iter()
        .map(|(p, bytes)| {
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            (rel, Sha256::digest(&bytes).into())
        })
        .collect()
}

/// Copies directory `from` to `to` recursively (`to` must not exist).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// True when `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Raw pairs of `storage` (any backend with raw access) whose key starts with `prefix` byte.
pub fn raw_with_prefix(storage: &dyn RawAccess, prefix: u8) -> Vec<(Vec<u8>, Vec<u8>)> {
    storage
        .dump()
        .into_iter()
        .filter(|(k, _)| k.first() == Some(&prefix))
        .collect()
}

/// A record value split into its parts (docs/FORMAT.md "Record value", version 3): `u8
/// version, u32 key_version, u64 record version, 12-byte record nonce, varint len +
/// sealed meta, varint n, n × (varint len + field envelope)`. Varints are unsigned
/// LEB128, decoded here by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLayout {
    pub version: u8,
    pub key_version: u32,
    /// Record version (u64) and record nonce (12 bytes), as stored.
    pub stamp: Vec<u8>,
    pub meta: Vec<u8>,
    pub fields: Vec<Vec<u8>>,
}

/// Appends `x` as an unsigned LEB128 varint.
pub fn put_leb128(out: &mut Vec<u8>, mut x: usize) {
    loop {
        let b = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

impl RecordLayout {
    /// Parses a stored record value; `None` when malformed.
    pub fn parse(b: &[u8]) -> Option<RecordLayout> {
        let mut pos = 0usize;
        let take = |pos: &mut usize, n: usize| -> Option<Vec<u8>> {
            let s = b.get(*pos..pos.checked_add(n)?)?;
            *pos += n;
            Some(s.to_vec())
        };
        let leb = |pos: &mut usize| -> Option<usize> {
            let mut x = 0usize;
            for i in 0..5 {
                let byte = *b.get(*pos)?;
                *pos += 1;
                x |= usize::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    return Some(x);
                }
            }
            None
        };
        let version = take(&mut pos, 1)?[0];
        let key_version = u32::from_be_bytes(take(&mut pos, 4)?.try_into().ok()?);
        let stamp = take(&mut pos, 20)?;
        let mlen = leb(&mut pos)?;
        let meta = take(&mut pos, mlen)?;
        let n = leb(&mut pos)?;
        let mut fields = Vec::new();
        for _ in 0..n {
            let flen = leb(&mut pos)?;
            fields.push(take(&mut pos, flen)?);
        }
        (pos == b.len()).then_some(RecordLayout {
            version,
            key_version,
            stamp,
            meta,
            fields,
        })
    }

    /// Encodes the parts back into a record value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.version];
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out.extend_from_slice(&self.stamp);
        put_leb128(&mut out, self.meta.len());
        out.extend_from_slice(&self.meta);
        put_leb128(&mut out, self.fields.len());
        for f in &self.fields {
            put_leb128(&mut out, f.len());
            out.extend_from_slice(f);
        }
        out
    }

    /// Byte ranges of each field envelope's body (after its length prefix) in the
    /// encoded value.
    pub fn field_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let len_of = |x: usize| {
            let mut v = Vec::new();
            put_leb128(&mut v, x);
            v.len()
        };
        let mut pos =
            1 + 4 + 20 + len_of(self.meta.len()) + self.meta.len() + len_of(self.fields.len());
        self.fields
            .iter()
            .map(|f| {
                let start = pos + len_of(f.len());
                pos = start + f.len();
                start..pos
            })
            .collect()
    }
}

/// The raw value at `key` in `storage` (any backend with raw access; panics when
/// absent).
pub fn raw_get(storage: &dyn RawAccess, key: &[u8]) -> Vec<u8> {
    storage
        .dump()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap()
}

/// Parses NDJSON into `(resourceType, id) -> resource`; panics on a duplicate.
pub fn by_type_and_id(ndjson: &str) -> HashMap<(String, String), serde_json::Value> {
    let mut map = HashMap::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let t = v["resourceType"].as_str().expect("resourceType").to_owned();
        let id = v["id"].as_str().expect("id").to_owned();
        assert!(map.insert((t, id), v).is_none(), "duplicate resource");
    }
    map
}

/// Returns the needles found in any file under `dir` (as bytes, anywhere). Needles are
/// grouped by their first 4 bytes so that one pass per file suffices.
pub fn needles_found_under(dir: &Path, needles: &[String]) -> Vec<String> {
    let mut by_prefix: HashMap<[u8; 4], Vec<&[u8]>> = HashMap::new();
    for n in needles {
        let b = n.as_bytes();
        assert!(b.len() >= 4, "needle too short to be meaningful");
        by_prefix
            .entry([b[0], b[1], b[2], b[3]])
            .or_default()
            .push(b);
    }
    let mut found = Vec::new();
    for (_, bytes) in files_under(dir) {
        for i in 0..bytes.len().saturating_sub(3) {
            let key = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
            if let Some(cands) = by_prefix.get(&key) {
                for c in cands {
                    if bytes[i..].starts_with(c) {
                        found.push(String::from_utf8_lossy(c).into_owned());
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}
