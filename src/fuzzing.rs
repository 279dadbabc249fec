//! Entry points for the fuzz targets under `fuzz/` and for `tests/fuzz_seeds.rs`.
//!
//! **Not API.** Hidden from the docs, exempt from semver, and only here because the
//! decoders it reaches are crate-private. Each `check_*` function takes the fuzzer's
//! bytes and *panics* when a property fails (that is how libFuzzer learns of a bug);
//! returning normally means the input was handled correctly, which for hostile input
//! usually means a typed error. The same functions replay the committed seed corpus
//! (`fuzz/seeds/<target>/`) under a plain `cargo test`. What each target checks is in
//! `fuzz/README.md`.
//!
//! Inputs are decoded by a small byte cursor ([`Input`]), which plays the role
//! `arbitrary::Unstructured` plays elsewhere: hand-rolled so that the library gains no
//! dependency and committed seeds keep their meaning across `arbitrary` releases.
//! Every target that needs keys uses fixed fixture keys, so seeds built by [`seeds`]
//! get past authentication and the fuzzer can mutate from there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::audit::{AuditLog, ENTRY_PREFIX, HEAD_KEY, PendingEntry, decode_body, parse_target};
use crate::crypto::{AeadKey, KdfParams, KeySource, SecretKey, sha256};
use crate::header::{Header, header_mac_key};
use crate::keyring::{Keyring, SubjectTag};
use crate::record::{
    Binding, PlainField, RecordKey, join_fields, parse_meta, parse_record, seal_record,
    split_fields,
};
use crate::storage::{MemoryStorage, Storage, WriteBatch};
use crate::{AccessContext, Action, Checkpoint, Error, Outcome, Purpose, Target, Vault};
use crate::{LogQuery, RotationScope, VaultOptions};

/// The targets, by name (one directory of seeds and one fuzz target each).
pub const TARGETS: &[&str] = &[
    "header",
    "index",
    "subject_entry",
    "record",
    "log",
    "checkpoint",
    "model",
    "tamper",
];

/// Runs the check of `target` on `data`. Returns `false` for an unknown target name.
pub fn check(target: &str, data: &[u8]) -> bool {
    match target {
        "header" => check_header(data),
        "index" => check_index(data),
        "subject_entry" => check_subject_entry(data),
        "record" => check_record(data),
        "log" => check_log(data),
        "checkpoint" => check_checkpoint(data),
        "model" => check_model(data),
        "tamper" => check_tamper(data),
        _ => return false,
    }
    true
}

// ----- fixture keys ------------------------------------------------------------------

const ROOT: [u8; 32] = [0x5a; 32];
const NEXT_ROOT: [u8; 32] = [0xa5; 32];
const PASSPHRASE: &str = "fuzz";
const VAULT_ID: [u8; 16] = [0x42; 16];
const VAULT_SECRET: [u8; 32] = [0x33; 32];
const DEK_V1: [u8; 32] = [0x44; 32];
const DEK_V2: [u8; 32] = [0x45; 32];
const AUDIT_KEY: [u8; 32] = [0x46; 32];
const TAG: SubjectTag = [0x77; 16];
const SUBJECT: &str = "fuzz-subject";
const STORAGE_KEY: &[u8] = b"r-fuzz-storage-key";

fn root() -> SecretKey {
    SecretKey::from_bytes(ROOT)
}

fn dek(version: u32) -> Option<AeadKey> {
    match version {
        1 => Some(AeadKey::new(&SecretKey::from_bytes(DEK_V1))),
        2 => Some(AeadKey::new(&SecretKey::from_bytes(DEK_V2))),
        _ => None,
    }
}

fn audit_key() -> AeadKey {
    AeadKey::new(&SecretKey::from_bytes(AUDIT_KEY))
}

/// A byte cursor over the fuzzer's input: reads past the end yield zeros, so every
/// input decodes to something.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        &self.data[start..end]
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// Panics unless `e` is one of the typed errors a decoder may return for bad bytes.
fn assert_decode_error(e: &Error, what: &str) {
    assert!(
        matches!(
            e,
            Error::Integrity { .. }
                | Error::UnsupportedVersion { .. }
                | Error::UnknownKeyVersion(_)
                | Error::WrongKey
                | Error::ExcessiveWork(_)
                | Error::InvalidInput(_)
                | Error::LogTampered { .. }
                | Error::NotFound
        ),
        "{what}: unexpected error kind {}",
        e.kind_name()
    );
}

// ----- header ------------------------------------------------------------------------

fn cheap(p: &KdfParams) -> bool {
    p.memory_kib <= 256 && p.iterations <= 2 && p.lanes <= 2
}

/// Header target. `data[0]` picks a mode, the rest is a header file: mode 0 as given;
/// 1 with its SHA-256 checksum recomputed (to reach the parser); 2 with the MAC under the
/// fixture root recomputed too (to reach the key check, bridges and wrapped secret).
///
/// Properties: `decode`/`unlock` never panic and fail with a typed error; an unlocked
/// header re-encodes to exactly the input (the encoding is canonical); a wrong key is
/// `WrongKey` only when the header itself is intact.
pub fn check_header(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.byte() % 3;
    let mut bytes = inp.rest().to_vec();
    if mode >= 1 && bytes.len() >= 64 {
        let n = bytes.len();
        if mode == 2 {
            let mac = header_mac_key(&root()).mac_raw(&[&bytes[..n - 64]]);
            bytes[n - 64..n - 32].copy_from_slice(&mac);
        }
        let sum = sha256(&[&bytes[..n - 32]]);
        bytes[n - 32..].copy_from_slice(&sum);
    }
    let decoded = Header::decode(&bytes);
    if let Err(e) = &decoded {
        assert_decode_error(e, "header decode");
    }
    let mut sources = vec![KeySource::raw(ROOT), KeySource::raw(NEXT_ROOT)];
    if let Ok((h, _)) = &decoded {
        let specs = std::iter::once(&h.root).chain(h.pending.as_ref().map(|p| &p.next));
        if specs.filter_map(|s| s.kdf.as_ref()).all(|(p, _)| cheap(p)) {
            sources.push(KeySource::passphrase(PASSPHRASE));
        }
    }
    for source in &sources {
        match Header::unlock(&bytes, source) {
            Ok((h, u)) => {
                let (d, _) = decoded
                    .as_ref()
                    .unwrap_or_else(|_| panic!("header: unlock succeeded where decode failed"));
                assert_eq!(d, &h, "header: unlock and decode disagree");
                assert_eq!(
                    h.encode(&u.root),
                    bytes,
                    "header: an unlocked header does not re-encode to its bytes"
                );
                assert_eq!(
                    h.pending.is_some(),
                    u.next_root.is_some(),
                    "header: pending rotation without a next root"
                );
            }
            Err(e) => assert_decode_error(&e, "header unlock"),
        }
    }
}

// ----- subject entry -----------------------------------------------------------------

fn fixture_keyring(with_next: bool) -> Keyring {
    let next = SecretKey::from_bytes(NEXT_ROOT);
    Keyring::new(VAULT_ID, &root(), 0, with_next.then_some((&next, 1)), 16)
}

/// Subject-entry target (wrapped DEKs, wrapped audit key, sealed subject id). `data[0]`
/// bit 0: a root-key rotation is pending (entries may be wrapped under generation 0 or
/// 1). The rest is the stored entry of the fixture subject.
///
/// Properties: decode never panics and fails with a typed error; a decoded entry
/// re-encodes (fresh nonces) to an entry that decodes to the same subject, current
/// version and keys.
pub fn check_subject_entry(data: &[u8]) {
    let mut inp = Input::new(data);
    let with_next = inp.byte() & 1 == 1;
    let bytes = inp.rest();
    let ring = fixture_keyring(with_next);
    let keys = match ring.decode_entry(&TAG, bytes) {
        Ok(k) => k,
        Err(e) => return assert_decode_error(&e, "subject entry"),
    };
    let again = ring.encode_entry(&keys);
    let back = ring
        .decode_entry(&TAG, &again)
        .unwrap_or_else(|e| panic!("subject entry: re-encoded entry fails: {e}"));
    assert_eq!(keys.subject.as_str(), back.subject.as_str());
    let (a, b) = (keys.lock(), back.lock());
    assert_eq!(a.current, b.current);
    assert_eq!(a.versions.len(), b.versions.len());
    for ((x, _, _), (y, _, _)) in a.versions.iter().zip(&b.versions) {
        assert_eq!(x.version, y.version);
        let env = x.aead.seal(b"probe", b"same key");
        assert!(
            y.aead.open(b"probe", &env).is_some(),
            "subject entry: DEK changed on re-encode"
        );
    }
    let env = keys.audit.seal(b"probe", b"same key");
    assert!(back.audit.open(b"probe", &env).is_some());
}

// ----- record ------------------------------------------------------------------------

/// Opens a stored record value the way the vault does (docs/FORMAT.md §5): meta first
/// (bound to the storage key), ids checked by the caller, then the wanted fields.
fn open_record(bytes: &[u8], want: Option<&[&str]>) -> crate::Result<(RecordKey, Vec<PlainField>)> {
    let sealed = parse_record(bytes)?;
    let dek = dek(sealed.key_version).ok_or(Error::UnknownKeyVersion(sealed.key_version))?;
    let placeholder = RecordKey::new(SUBJECT, "", "");
    let bind = Binding {
        vault_id: &VAULT_ID,
        storage_key: STORAGE_KEY,
        key: &placeholder,
        key_version: sealed.key_version,
    };
    let meta = sealed.open_meta(&dek, &bind)?;
    let key = RecordKey::new(SUBJECT, meta.collection.clone(), meta.record_id.clone());
    let bind = Binding { key: &key, ..bind };
    let fields = sealed.open_fields(&dek, &bind, &meta, want)?;
    Ok((key, fields))
}

fn seal_fixture_record(key: &RecordKey, version: u32, fields: &[PlainField]) -> Vec<u8> {
    let bind = Binding {
        vault_id: &VAULT_ID,
        storage_key: STORAGE_KEY,
        key,
        key_version: version,
    };
    let dek = dek(version).unwrap_or_else(|| panic!("no fixture DEK {version}"));
    seal_record(&dek, &bind, fields)
}

/// Record target. `data[0] % 3` picks a mode:
/// 0. the rest is a stored record value under the fixture DEKs (versions 1, 2): parse,
///    open meta and fields, rebuild the JSON. An opened record re-sealed and reopened
///    gives the same value; opening one field gives that field of the full value.
/// 1. the rest is an opened meta block (`data[1]` = expected field count): parser only.
/// 2. the rest is CBOR: as one field's value, it decodes (or is refused) without panic;
///    a decoded value survives split → join unchanged. The CBOR is also decoded to a
///    generic value and split into fields (the hand-rolled CBOR walker of `split_fields`)
///    and joined back to the same encoding.
pub fn check_record(data: &[u8]) {
    let mut inp = Input::new(data);
    match inp.byte() % 3 {
        0 => {
            let bytes = inp.rest();
            let (key, fields) = match open_record(bytes, None) {
                Ok(x) => x,
                Err(e) => return assert_decode_error(&e, "record value"),
            };
            let value: Value = match join_fields(&fields) {
                Ok(v) => v,
                Err(e) => return assert_decode_error(&e, "record fields"),
            };
            let version = parse_record(bytes).map(|s| s.key_version).unwrap_or(1);
            let resealed = seal_fixture_record(&key, version, &fields);
            let (_, back) = open_record(&resealed, None)
                .unwrap_or_else(|e| panic!("record: re-sealed record fails: {e}"));
            let back: Value =
                join_fields(&back).unwrap_or_else(|e| panic!("record: re-sealed fields fail: {e}"));
            assert_eq!(back, value, "record: value changed on re-seal");
            if let Some(first) = fields.first() {
                let name = first.name.as_str();
                let (_, one) = open_record(bytes, Some(&[name]))
                    .unwrap_or_else(|e| panic!("record: one field fails: {e}"));
                let one: Value = join_fields(&one)
                    .unwrap_or_else(|e| panic!("record: one field does not join: {e}"));
                assert_eq!(one.get(name), value.get(name), "record: field differs");
                assert_eq!(one.as_object().map(|m| m.len()), Some(1));
            }
        }
        1 => {
            let n = usize::from(inp.byte());
            match parse_meta(inp.rest(), n) {
                Ok(m) => assert_eq!(m.names.len(), n),
                Err(e) => assert_decode_error(&e, "record meta"),
            }
        }
        _ => {
            let cbor = inp.rest();
            let one = [PlainField {
                name: "f".to_owned(),
                value: zeroize::Zeroizing::new(cbor.to_vec()),
            }];
            match join_fields::<Value>(&one) {
                Ok(v) => {
                    let fields = split_fields(&v)
                        .unwrap_or_else(|e| panic!("record: a decoded map does not split: {e}"));
                    let back: Value = join_fields(&fields)
                        .unwrap_or_else(|e| panic!("record: split fields do not join: {e}"));
                    assert_eq!(back, v, "record: split/join changed the value");
                }
                Err(e) => assert_decode_error(&e, "field value"),
            }
            if let Ok(v) = ciborium::from_reader::<ciborium::Value, _>(cbor)
                && let Ok(fields) = split_fields(&v)
            {
                let back: ciborium::Value = join_fields(&fields)
                    .unwrap_or_else(|e| panic!("record: split CBOR does not join: {e}"));
                let (mut x, mut y) = (Vec::new(), Vec::new());
                let _ = ciborium::into_writer(&v, &mut x);
                let _ = ciborium::into_writer(&back, &mut y);
                assert_eq!(x, y, "record: split/join changed a CBOR map");
            }
        }
    }
}

// ----- access log --------------------------------------------------------------------

fn log_entry_key(seq: u64) -> Vec<u8> {
    let mut k = vec![ENTRY_PREFIX];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn fixture_log(mem: &MemoryStorage) -> crate::Result<AuditLog> {
    AuditLog::open(VAULT_ID, &SecretKey::from_bytes(VAULT_SECRET), mem)
}

/// Splits `bytes` into u16-length-prefixed chunks.
fn chunks(inp: &mut Input<'_>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !inp.is_empty() && out.len() < 256 {
        let n = usize::from(inp.u16());
        out.push(inp.bytes(n).to_vec());
    }
    out
}

/// Frames chunks as [`chunks`] reads them.
fn frame(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let n = u16::try_from(p.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&p[..usize::from(n)]);
    }
    out
}

/// Access-log target. `data[0] % 3` picks a mode:
/// 0. the rest is a stored log: u16-length-prefixed chunks, the first the head value
///    (empty: no head), then entries `0, 1, ...` (empty: entry missing). Opening reads
///    the head; `verify` walks the chain. When `verify` passes, every entry decodes,
///    every target opens under the fixture audit key, one more entry appended on top
///    verifies too, and a checkpoint of the log verifies.
/// 1. the rest is an opened entry body: decoded, and re-encoded to the same bytes.
/// 2. the rest is an opened target: parsed, sealed again and reopened unchanged.
pub fn check_log(data: &[u8]) {
    let mut inp = Input::new(data);
    match inp.byte() % 3 {
        0 => {
            let parts = chunks(&mut inp);
            let mem = MemoryStorage::new();
            let mut it = parts.into_iter();
            if let Some(head) = it.next()
                && !head.is_empty()
            {
                mem.raw_put(HEAD_KEY, &head);
            }
            for (seq, e) in it.enumerate() {
                if !e.is_empty() {
                    mem.raw_put(&log_entry_key(seq as u64), &e);
                }
            }
            let log = match fixture_log(&mem) {
                Ok(l) => l,
                Err(e) => return assert_decode_error(&e, "access-log head"),
            };
            let n = match log.verify(&mem, None) {
                Ok(n) => n,
                Err(e) => {
                    assert_decode_error(&e, "access-log verify");
                    // Reading entries without the chain check must not panic either.
                    if let Err(e) = log.for_each(&mem, 0, |_, _| Ok(true)) {
                        assert_decode_error(&e, "access-log read");
                    }
                    return;
                }
            };
            let mut seen = 0u64;
            log.for_each(&mem, 0, |e, sealed| {
                assert_eq!(e.seq, seen, "access log: entries out of order");
                seen += 1;
                if let (Some(tag), Some(sealed)) = (e.subject_pseudonym, sealed)
                    && !sealed.is_empty()
                {
                    crate::audit::open_target(&audit_key(), &VAULT_ID, &tag, &sealed)
                        .unwrap_or_else(|e| panic!("access log: verified target fails: {e}"));
                }
                Ok(true)
            })
            .unwrap_or_else(|e| panic!("access log: verified log does not read: {e}"));
            assert_eq!(
                seen, n,
                "access log: verify and read disagree on the length"
            );
            let cp = log.checkpoint();
            let ctx = AccessContext::new("fuzz", Purpose::Maintenance);
            let e = PendingEntry::new(&ctx, Action::Verify, Outcome::Ok);
            log.commit(&mem, WriteBatch::new(), &[e])
                .unwrap_or_else(|e| panic!("access log: append failed: {e}"));
            assert_eq!(
                log.verify(&mem, Some(&cp))
                    .unwrap_or_else(|e| panic!("access log: append broke the chain: {e}")),
                n + 1
            );
        }
        1 => {
            let pt = inp.rest();
            match decode_body(0, pt) {
                Ok(b) => {
                    let e = b.entry;
                    let outcome_len = match &e.outcome {
                        Outcome::Failed(k) => k.len(),
                        _ => 0,
                    };
                    if outcome_len <= 64 && e.note.len() <= 1024 {
                        let p = PendingEntry {
                            time_ms: e.time_ms,
                            ctx_actor: e.actor.clone(),
                            purpose: e.purpose,
                            reason: e.reason.clone(),
                            action: e.action,
                            outcome: e.outcome.clone(),
                            subject: e
                                .subject_pseudonym
                                .map(|t| (t, b.sealed_target.clone().unwrap_or_default())),
                            note: e.note.clone(),
                        };
                        assert_eq!(&p.body()[..], pt, "access log: body does not re-encode");
                    }
                }
                Err(e) => assert_decode_error(&e, "access-log body"),
            }
        }
        _ => match parse_target(inp.rest()) {
            Ok(t) => {
                let sealed = crate::audit::seal_target(&audit_key(), &VAULT_ID, &TAG, &t);
                let back = crate::audit::open_target(&audit_key(), &VAULT_ID, &TAG, &sealed)
                    .unwrap_or_else(|e| panic!("access log: target does not reopen: {e}"));
                assert_eq!(back, t, "access log: target changed on re-seal");
            }
            Err(e) => assert_decode_error(&e, "access-log target"),
        },
    }
}

// ----- checkpoint --------------------------------------------------------------------

/// A fixture log of three entries and the genuine `(next_seq, link)` after each.
fn checkpoint_fixture() -> (MemoryStorage, AuditLog, Vec<Checkpoint>) {
    let mem = MemoryStorage::new();
    let log = match fixture_log(&mem) {
        Ok(l) => l,
        Err(e) => panic!("checkpoint fixture: {e}"),
    };
    let ctx = AccessContext::new("fuzz", Purpose::Maintenance);
    let mut genuine = vec![log.checkpoint()];
    for _ in 0..3 {
        let e = PendingEntry::new(&ctx, Action::Verify, Outcome::Ok);
        if let Err(e) = log.commit(&mem, WriteBatch::new(), &[e]) {
            panic!("checkpoint fixture: {e}");
        }
        genuine.push(log.checkpoint());
    }
    (mem, log, genuine)
}

/// Checkpoint target. `data[0] % 2` picks a mode:
/// 0. the rest is parsed as the binary form and (when UTF-8) as the text form. A parsed
///    checkpoint re-encodes to the same bytes, and to the same text up to case and
///    surrounding white space (one checkpoint, one text).
/// 1. the rest is `next_seq (8) || link (32)`, MACed under the fixture log's checkpoint
///    key: `verify` accepts it iff it names a point the log really passed through.
pub fn check_checkpoint(data: &[u8]) {
    let mut inp = Input::new(data);
    if inp.byte().is_multiple_of(2) {
        let bytes = inp.rest();
        match Checkpoint::from_bytes(bytes) {
            Ok(cp) => {
                assert_eq!(
                    cp.to_bytes(),
                    bytes,
                    "checkpoint: binary form not canonical"
                );
                assert_eq!(Checkpoint::from_text(&cp.to_text()).ok(), Some(cp));
            }
            Err(e) => assert_decode_error(&e, "checkpoint bytes"),
        }
        if let Ok(s) = std::str::from_utf8(bytes) {
            match Checkpoint::from_text(s) {
                Ok(cp) => {
                    assert_eq!(
                        cp.to_text(),
                        s.trim().to_ascii_lowercase(),
                        "checkpoint: two texts for one checkpoint"
                    );
                }
                Err(e) => assert_decode_error(&e, "checkpoint text"),
            }
        }
    } else {
        let next_seq = u64::from_be_bytes(inp.bytes(8).try_into().unwrap_or([0; 8]));
        let mut link = [0u8; 32];
        let l = inp.bytes(32);
        link[..l.len()].copy_from_slice(l);
        let (mem, log, genuine) = checkpoint_fixture();
        let cp = log.checkpoint_at(next_seq, link);
        let is_genuine = genuine
            .iter()
            .any(|g| g.next_seq == next_seq && g.link == link);
        match log.verify(&mem, Some(&cp)) {
            Ok(n) => {
                assert!(is_genuine, "checkpoint: a forged point verifies");
                assert_eq!(n, 3);
            }
            Err(e) => {
                assert!(!is_genuine, "checkpoint: a genuine point fails: {e}");
                assert_decode_error(&e, "checkpoint verify");
            }
        }
    }
}

// ----- blind indexes -----------------------------------------------------------------

fn index_registry(mem: &MemoryStorage) -> crate::Result<crate::index::Registry> {
    crate::index::Registry::load(mem, &SecretKey::from_bytes(VAULT_SECRET), VAULT_ID)
}

/// Index target. `data[0] % 3` picks a mode:
/// 0. the rest is a reverse entry (a record's list of index entries): decoded, and
///    re-encoded to the same bytes.
/// 1. the rest is `index id (8) || sealed definition`, loaded as the vault does at open
///    under the fixture vault secret; a loaded definition re-seals and reloads to the
///    same spec and build state.
/// 2. the rest is an index path (UTF-8): parsed, and its text form parses back to it.
pub fn check_index(data: &[u8]) {
    let mut inp = Input::new(data);
    match inp.byte() % 3 {
        0 => {
            let bytes = inp.rest();
            match crate::index::decode_reverse(bytes) {
                Ok(entries) => assert_eq!(
                    crate::index::encode_reverse(&entries),
                    bytes,
                    "index: reverse entry does not re-encode"
                ),
                Err(e) => assert_decode_error(&e, "index reverse entry"),
            }
        }
        1 => {
            let id = inp.bytes(crate::index::INDEX_ID_LEN).to_vec();
            let sealed = inp.rest();
            let mem = MemoryStorage::new();
            let mut key = vec![b'i'];
            key.extend_from_slice(&id);
            mem.raw_put(&key, sealed);
            let reg = match index_registry(&mem) {
                Ok(r) => r,
                Err(e) => return assert_decode_error(&e, "index definition"),
            };
            let defs = reg.snapshot().defs;
            assert_eq!(defs.len(), 1, "index: one stored definition, one loaded");
            for d in defs.iter() {
                let again = MemoryStorage::new();
                again.raw_put(&crate::index::def_key(&d.id), &reg.seal(d));
                let back = index_registry(&again)
                    .unwrap_or_else(|e| panic!("index: re-sealed definition fails: {e}"));
                let b = back.snapshot().defs;
                assert_eq!(b.len(), 1);
                assert_eq!(b[0].spec, d.spec, "index: spec changed on re-seal");
                assert_eq!(b[0].state, d.state, "index: state changed on re-seal");
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(inp.rest()) {
                match crate::IndexPath::parse(text) {
                    Ok(p) => assert_eq!(
                        crate::IndexPath::parse(&p.to_string()).ok(),
                        Some(p),
                        "index: a path does not survive its text form"
                    ),
                    Err(e) => assert_decode_error(&e, "index path"),
                }
            }
        }
    }
}

// ----- model-based: operation sequences against a BTreeMap ---------------------------

const SUBJECTS: usize = 20;
const COLLECTIONS: &[&str] = &["Observation", "Condition"];
const RECORD_IDS: &[&str] = &["1", "2", "3"];
const FIELDS: &[&str] = &["a", "b", "c", "d"];
const MODEL_ROOT: [u8; 32] = [0x6d; 32];

fn subject_name(i: usize) -> String {
    format!("s{i}")
}

fn gen_key(inp: &mut Input<'_>) -> RecordKey {
    // Three subjects take most picks so that operations collide; the rest exercise the
    // key cache (16 subjects) and its eviction.
    let b = inp.byte();
    let s = if b < 192 {
        usize::from(b) % 3
    } else {
        usize::from(b) % SUBJECTS
    };
    RecordKey::new(
        subject_name(s),
        COLLECTIONS[inp.below(COLLECTIONS.len())],
        RECORD_IDS[inp.below(RECORD_IDS.len())],
    )
}

fn gen_scalar(inp: &mut Input<'_>) -> Value {
    match inp.below(7) {
        0 => json!(i64::from(inp.byte() as i8)),
        1 => json!(format!("v{}", inp.byte())),
        2 => json!(inp.byte() & 1 == 1),
        3 => Value::Null,
        4 => json!([inp.byte(), inp.byte()]),
        5 => json!(f64::from(inp.byte()) / 4.0),
        _ => json!({"nested": {"deep": inp.byte()}}),
    }
}

fn gen_value(inp: &mut Input<'_>) -> Value {
    let mut m = serde_json::Map::new();
    for _ in 0..1 + inp.below(4) {
        let name = FIELDS[inp.below(FIELDS.len())];
        let v = gen_scalar(inp);
        m.insert(name.to_owned(), v);
    }
    Value::Object(m)
}

fn project(v: &Value, names: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(o) = v.as_object() {
        for n in names {
            if let Some(x) = o.get(*n) {
                m.insert((*n).to_owned(), x.clone());
            }
        }
    }
    Value::Object(m)
}

struct Model {
    records: BTreeMap<RecordKey, Value>,
    /// Subjects holding keys (written since creation or their last erasure), with the
    /// current data-key version of each (the only one held: a rotation retires the old).
    keyed: BTreeMap<String, u32>,
    /// The root key the vault opens with (changed by root-key rotation).
    root: [u8; 32],
    root_rotations: u8,
}

impl Model {
    fn wrote(&mut self, subject: &str) {
        self.keyed.entry(subject.to_owned()).or_insert(1);
    }

    fn records_of(&self, subject: &str) -> u64 {
        self.records.keys().filter(|k| k.subject == subject).count() as u64
    }
}

fn open_model_vault(mem: &MemoryStorage, root: [u8; 32]) -> Vault {
    Vault::open_in(
        Box::new(mem.clone()),
        KeySource::raw(root),
        VaultOptions::default(),
    )
    .unwrap_or_else(|e| panic!("model: reopen failed: {e}"))
}

fn expect_err<T>(r: crate::Result<T>, kind: &str, what: &str) {
    match r {
        Ok(_) => panic!("model: {what} succeeded, expected {kind}"),
        Err(e) => assert_eq!(e.kind_name(), kind, "model: {what}"),
    }
}

/// Checks every model record and the subject list against the vault.
fn check_all(v: &Vault, m: &Model, ctx: &AccessContext) {
    for (k, want) in &m.records {
        let got: Value = v
            .get(ctx, k)
            .unwrap_or_else(|e| panic!("model: acknowledged record unreadable: {e}"));
        assert_eq!(&got, want, "model: record differs");
    }
    let stats = v
        .stats()
        .unwrap_or_else(|e| panic!("model: stats failed: {e}"));
    assert_eq!(stats.records, m.records.len() as u64, "model: record count");
    assert_eq!(stats.subjects, m.keyed.len() as u64, "model: subject count");
    assert!(
        !v.data_key_rotation_pending().unwrap_or(true),
        "model: a rotation left pending"
    );
}

/// Model-based target: replays a sequence of operations — put, put_many, get,
/// get_fields, delete, erase, records_of, subjects, reopen, verify (with and without a
/// checkpoint), checkpoint, data-key rotation (all or one subject), root-key rotation,
/// key retirement, and invalid calls — on a vault over memory storage and on a
/// `BTreeMap` model; every answer must match the model.
pub fn check_model(data: &[u8]) {
    let mut inp = Input::new(data);
    let mem = MemoryStorage::new();
    let mut v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(MODEL_ROOT),
        VaultOptions::default(),
    )
    .unwrap_or_else(|e| panic!("model: create failed: {e}"));
    let ctx = AccessContext::new("model", Purpose::Care);
    let mut m = Model {
        records: BTreeMap::new(),
        keyed: BTreeMap::new(),
        root: MODEL_ROOT,
        root_rotations: 0,
    };
    let maint = AccessContext::new("ops", Purpose::Maintenance);
    let mut checkpoint: Option<Checkpoint> = None;
    let mut ops = 0;
    while !inp.is_empty() && ops < 64 {
        ops += 1;
        match inp.below(15) {
            0 => {
                let k = gen_key(&mut inp);
                let val = gen_value(&mut inp);
                v.put(&ctx, &k, &val)
                    .unwrap_or_else(|e| panic!("model: put failed: {e}"));
                m.wrote(&k.subject);
                m.records.insert(k, val);
            }
            1 => {
                let n = inp.below(5);
                let items: Vec<(RecordKey, Value)> = (0..n)
                    .map(|_| (gen_key(&mut inp), gen_value(&mut inp)))
                    .collect();
                let got = v
                    .put_many(&ctx, items.iter().map(|(k, x)| (k, x)), Action::Import)
                    .unwrap_or_else(|e| panic!("model: put_many failed: {e}"));
                assert_eq!(got, n);
                for (k, x) in items {
                    m.wrote(&k.subject);
                    m.records.insert(k, x);
                }
            }
            2 => {
                let k = gen_key(&mut inp);
                let r = v.get::<Value>(&ctx, &k);
                match m.records.get(&k) {
                    Some(want) => assert_eq!(
                        &r.unwrap_or_else(|e| panic!("model: get failed: {e}")),
                        want
                    ),
                    None => expect_err(r, "not_found", "get of an absent record"),
                }
            }
            3 => {
                let k = gen_key(&mut inp);
                let mask = inp.byte();
                let names: Vec<&str> = FIELDS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, n)| *n)
                    .collect();
                let r = v.get_fields::<Value>(&ctx, &k, &names);
                match m.records.get(&k) {
                    Some(want) => assert_eq!(
                        r.unwrap_or_else(|e| panic!("model: get_fields failed: {e}")),
                        project(want, &names)
                    ),
                    None => expect_err(r, "not_found", "get_fields of an absent record"),
                }
            }
            4 => {
                let k = gen_key(&mut inp);
                let r = v.delete(&ctx, &k);
                match m.records.remove(&k) {
                    Some(_) => r.unwrap_or_else(|e| panic!("model: delete failed: {e}")),
                    None => expect_err(r, "not_found", "delete of an absent record"),
                }
            }
            5 => {
                let s = gen_key(&mut inp).subject;
                let erase_ctx = AccessContext::new("dpo", Purpose::PatientRequest);
                let r = v.erase_subject(&erase_ctx, &s);
                if m.keyed.remove(&s).is_some() {
                    let before = m.records.len();
                    m.records.retain(|k, _| k.subject != s);
                    let n = r.unwrap_or_else(|e| panic!("model: erase failed: {e}"));
                    assert_eq!(n, (before - m.records.len()) as u64, "model: erase count");
                } else {
                    expect_err(r, "not_found", "erase of an unknown subject");
                }
            }
            6 => {
                let s = gen_key(&mut inp).subject;
                let coll = match inp.below(3) {
                    0 => None,
                    i => Some(COLLECTIONS[i - 1]),
                };
                let mut got: Vec<(RecordKey, Value)> = v
                    .records_of(&ctx, &s, coll)
                    .unwrap_or_else(|e| panic!("model: records_of failed: {e}"));
                got.sort_by(|a, b| a.0.cmp(&b.0));
                let want: Vec<(RecordKey, Value)> = m
                    .records
                    .iter()
                    .filter(|(k, _)| k.subject == s && coll.is_none_or(|c| k.collection == c))
                    .map(|(k, x)| (k.clone(), x.clone()))
                    .collect();
                assert_eq!(got, want, "model: records_of");
            }
            7 => {
                let mut got = v
                    .subjects(&ctx)
                    .unwrap_or_else(|e| panic!("model: subjects failed: {e}"));
                got.sort();
                let want: Vec<String> = m.keyed.keys().cloned().collect();
                assert_eq!(got, want, "model: subjects");
            }
            8 => {
                drop(v);
                if m.root != MODEL_ROOT {
                    expect_err(
                        Vault::open_in(
                            Box::new(mem.clone()),
                            KeySource::raw(MODEL_ROOT),
                            VaultOptions::default(),
                        ),
                        "wrong_key",
                        "open with the root key rotated away",
                    );
                }
                v = open_model_vault(&mem, m.root);
                check_all(&v, &m, &ctx);
            }
            9 => {
                let before = v.log_len();
                let with_cp = inp.byte() & 1 == 1;
                let n = v
                    .verify(&ctx, if with_cp { checkpoint.as_ref() } else { None })
                    .unwrap_or_else(|e| panic!("model: verify failed: {e}"));
                assert_eq!(n, before, "model: verify count");
            }
            10 => {
                let cp = v
                    .checkpoint(&ctx)
                    .unwrap_or_else(|e| panic!("model: checkpoint failed: {e}"));
                assert_eq!(cp.next_seq, v.log_len());
                checkpoint = Some(cp);
            }
            11 => {
                // Data-key rotation of every subject or of one (maybe unknown) subject:
                // every record is re-encrypted under a new version, old ones retired.
                let s = gen_key(&mut inp).subject;
                let scope = if inp.byte() & 1 == 0 {
                    RotationScope::All
                } else {
                    RotationScope::Subjects(vec![s.clone()])
                };
                let report = v
                    .rotate_data_keys(&maint, &scope, &mut |_| {})
                    .unwrap_or_else(|e| panic!("model: rotate_data_keys failed: {e}"));
                let in_scope: Vec<String> = m
                    .keyed
                    .keys()
                    .filter(|k| matches!(scope, RotationScope::All) || **k == s)
                    .cloned()
                    .collect();
                let records: u64 = in_scope.iter().map(|k| m.records_of(k)).sum();
                assert_eq!(report.subjects, in_scope.len() as u64, "model: rotated");
                assert_eq!(report.records, records, "model: re-encrypted");
                for k in in_scope {
                    if let Some(ver) = m.keyed.get_mut(&k) {
                        *ver += 1;
                    }
                }
                assert!(!v.data_key_rotation_pending().unwrap_or(true));
            }
            12 => {
                // Root-key rotation: every subject entry rewrapped, the old key refused
                // from the next open on.
                m.root_rotations = m.root_rotations.wrapping_add(1);
                let next = [0x80 | (m.root_rotations & 0x7f); 32];
                let n = v
                    .rotate_root_key(
                        &maint,
                        KeySource::raw(next),
                        KdfParams::default(),
                        &mut |_| {},
                    )
                    .unwrap_or_else(|e| panic!("model: rotate_root_key failed: {e}"));
                assert_eq!(n, m.keyed.len() as u64, "model: entries rewrapped");
                m.root = next;
            }
            13 => {
                // Retiring a version: the current one is refused, others are unknown
                // (rotation already retired them).
                let s = gen_key(&mut inp).subject;
                let pick = inp.byte() % 3;
                let r = match m.keyed.get(&s) {
                    None => {
                        expect_err(
                            v.retire_key_version(&maint, &s, 1),
                            "not_found",
                            "retire for an unknown subject",
                        );
                        continue;
                    }
                    Some(cur) => {
                        let ver = (*cur + u32::from(pick)).saturating_sub(1);
                        (ver == *cur, v.retire_key_version(&maint, &s, ver))
                    }
                };
                match r {
                    (true, r) => expect_err(r, "invalid_input", "retire the current version"),
                    (false, r) => expect_err(r, "unknown_key_version", "retire a retired one"),
                }
            }
            _ => {
                let k = gen_key(&mut inp);
                match inp.below(5) {
                    0 => expect_err(
                        v.put(&ctx, &RecordKey::new("", "c", "r"), &json!({"a": 1})),
                        "invalid_input",
                        "put with an empty subject",
                    ),
                    1 => expect_err(
                        v.put(
                            &ctx,
                            &RecordKey::new(k.subject.clone(), "c", "x".repeat(257)),
                            &json!({"a": 1}),
                        ),
                        "invalid_input",
                        "put with an over-long id",
                    ),
                    2 => expect_err(
                        v.put(&ctx, &k, &json!([1, 2])),
                        "invalid_input",
                        "put of a non-map",
                    ),
                    3 => expect_err(
                        v.get::<Value>(&AccessContext::new("dr", Purpose::Emergency), &k),
                        "access_denied",
                        "break-the-glass without a reason",
                    ),
                    _ => expect_err(
                        v.get::<Value>(&AccessContext::new(" ", Purpose::Care), &k),
                        "invalid_input",
                        "empty actor",
                    ),
                }
            }
        }
    }
    check_all(&v, &m, &ctx);
    let before = v.log_len();
    assert_eq!(
        v.verify(&ctx, checkpoint.as_ref())
            .unwrap_or_else(|e| panic!("model: final verify failed: {e}")),
        before
    );
}

// ----- tamper: mutate a real vault's stored bytes ------------------------------------

const TAMPER_ROOT: [u8; 32] = [0x7a; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Header,
    Key(Vec<u8>),
}

struct TamperFixture {
    mem: MemoryStorage,
    /// Header, head, log entries, subject entries, records, in a fixed logical order.
    items: Vec<Item>,
    records: BTreeMap<RecordKey, Value>,
    subjects: BTreeSet<String>,
    actors: BTreeSet<String>,
}

fn tamper_fixture() -> &'static TamperFixture {
    static F: OnceLock<TamperFixture> = OnceLock::new();
    F.get_or_init(build_tamper_fixture)
}

fn build_tamper_fixture() -> TamperFixture {
    let mem = MemoryStorage::new();
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(TAMPER_ROOT),
        VaultOptions::default(),
    )
    .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    let nurse = AccessContext::new("nurse-1", Purpose::Care);
    let btg = AccessContext::new("dr-7", Purpose::Emergency).with_reason("emergency");
    let dpo = AccessContext::new("dpo", Purpose::PatientRequest);
    let puts: Vec<(RecordKey, Value)> = vec![
        (
            RecordKey::new("alice", "Observation", "1"),
            json!({"a": 1, "b": "alice-one", "c": [1, 2]}),
        ),
        (
            RecordKey::new("alice", "Observation", "2"),
            json!({"a": 2, "b": "alice-two"}),
        ),
        (
            RecordKey::new("bob", "Condition", "1"),
            json!({"a": 3, "d": {"x": null}}),
        ),
        (
            RecordKey::new("carol", "Observation", "1"),
            json!({"b": "carol"}),
        ),
        (RecordKey::new("dave", "Observation", "1"), json!({"a": 4})),
    ];
    let mut subject_keys = Vec::new();
    let mut record_keys = Vec::new();
    let mut records = BTreeMap::new();
    for (k, val) in &puts {
        let before: BTreeSet<Vec<u8>> = mem.dump().into_iter().map(|(k, _)| k).collect();
        v.put(&nurse, k, val)
            .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
        for (key, _) in mem.dump() {
            if before.contains(&key) {
                continue;
            }
            match key.first() {
                Some(b'k') => subject_keys.push(key),
                Some(b'r') => record_keys.push(key),
                _ => {}
            }
        }
        records.insert(k.clone(), val.clone());
    }
    let _: Value = v
        .get(&nurse, &puts[0].0)
        .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    let _: Value = v
        .get_fields(&btg, &puts[2].0, &["a"])
        .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    // bob's record moves to data-key version 2 (version 1 retired): a subject entry and
    // a record that have been through a rotation.
    let maint = AccessContext::new("ops", Purpose::Maintenance);
    v.rotate_data_keys(
        &maint,
        &RotationScope::Subjects(vec!["bob".to_owned()]),
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    v.erase_subject(&dpo, "dave")
        .unwrap_or_else(|e| panic!("tamper fixture: {e}"));
    records.remove(&puts[4].0);
    drop(v);
    let live: BTreeSet<Vec<u8>> = mem.dump().into_iter().map(|(k, _)| k).collect();
    let mut items = vec![Item::Header, Item::Key(HEAD_KEY.to_vec())];
    items.extend(
        live.iter()
            .filter(|k| k.first() == Some(&ENTRY_PREFIX))
            .cloned()
            .map(Item::Key),
    );
    items.extend(
        subject_keys
            .into_iter()
            .chain(record_keys)
            .filter(|k| live.contains(k))
            .map(Item::Key),
    );
    TamperFixture {
        mem,
        items,
        records,
        subjects: ["alice", "bob", "carol"].map(str::to_owned).into(),
        actors: ["medvault", "nurse-1", "dr-7", "dpo", "ops", "tamper"]
            .map(str::to_owned)
            .into(),
    }
}

fn read_item(mem: &MemoryStorage, item: &Item) -> Option<Vec<u8>> {
    match item {
        Item::Header => mem.raw_header(),
        Item::Key(k) => mem.get(k).ok().flatten(),
    }
}

fn write_item(mem: &MemoryStorage, item: &Item, value: Option<&[u8]>) {
    match (item, value) {
        (Item::Header, Some(v)) => mem.raw_set_header(v),
        (Item::Header, None) => mem.raw_set_header(&[]),
        (Item::Key(k), Some(v)) => mem.raw_put(k, v),
        (Item::Key(k), None) => mem.raw_delete(k),
    }
}

fn is_log_key(k: &[u8]) -> bool {
    k == HEAD_KEY || k.first() == Some(&ENTRY_PREFIX)
}

/// Tamper target: a real vault (memory storage, raw key; three live subjects, one
/// erased, one data-key-rotated, four records, reads including break-the-glass) has its
/// stored bytes mutated
/// per the input — flip, set, truncate or extend a byte string, delete a value, copy or
/// swap values between items, plant a copy under a new key, recompute the header's
/// checksum — and is then opened and used. Every call must return the right data or an
/// error: a record read equals what was written, listings hold only genuine records and
/// subjects, access-log entries name only genuine actors, before and after a data-key
/// rotation over the tampered data; a changed log fails `verify` and an untouched log
/// passes it. Never a panic, never a hang.
pub fn check_tamper(data: &[u8]) {
    let fx = tamper_fixture();
    let mem = fx.mem.deep_clone();
    let mut inp = Input::new(data);
    let n_items = fx.items.len();
    let mut touched = Vec::new();
    for _ in 0..8 {
        if inp.is_empty() {
            break;
        }
        let op = inp.below(9);
        let item = fx.items[inp.below(n_items)].clone();
        let cur = read_item(&mem, &item);
        match op {
            0..=3 => {
                let Some(mut b) = cur else { continue };
                let at = usize::from(inp.u16()) % b.len().max(1);
                let x = inp.byte();
                match op {
                    0 if !b.is_empty() => b[at] ^= x.max(1),
                    1 if !b.is_empty() => b[at] = x,
                    2 => b.truncate(at),
                    _ => b.extend_from_slice(inp.bytes(usize::from(x % 64))),
                }
                write_item(&mem, &item, Some(&b));
            }
            4 => write_item(&mem, &item, None),
            5 | 6 => {
                let other = fx.items[inp.below(n_items)].clone();
                let theirs = read_item(&mem, &other);
                write_item(&mem, &item, theirs.as_deref());
                if op == 6 {
                    write_item(&mem, &other, cur.as_deref());
                    touched.push(other);
                }
            }
            7 => {
                // Plant a copy under a new key sharing the item's prefix: a record moved
                // within its subject, a subject entry under another tag, a log entry far
                // beyond the head.
                let (Item::Key(k), Some(val)) = (&item, cur) else {
                    continue;
                };
                let mut nk = k.clone();
                if k.first() == Some(&ENTRY_PREFIX) {
                    nk = log_entry_key(10_000 + u64::from(inp.byte()));
                } else if let Some(last) = nk.last_mut() {
                    *last ^= inp.byte().max(1);
                }
                let planted = Item::Key(nk);
                write_item(&mem, &planted, Some(&val));
                touched.push(planted);
                continue;
            }
            _ => {
                let Some(mut b) = mem.raw_header() else {
                    continue;
                };
                if b.len() >= 32 {
                    let n = b.len();
                    let sum = sha256(&[&b[..n - 32]]);
                    b[n - 32..].copy_from_slice(&sum);
                    mem.raw_set_header(&b);
                }
                touched.push(Item::Header);
                continue;
            }
        }
        touched.push(item);
    }
    let log_changed = touched.iter().any(|it| match it {
        Item::Key(k) if is_log_key(k) => read_item(&mem, it) != read_item(&fx.mem, it),
        _ => false,
    });

    let v = match Vault::open_in(
        Box::new(mem.clone()),
        KeySource::raw(TAMPER_ROOT),
        VaultOptions::default(),
    ) {
        Ok(v) => v,
        Err(e) => return assert_decode_error(&e, "tamper: open"),
    };
    let ctx = AccessContext::new("tamper", Purpose::Care);
    check_tampered_reads(&v, fx, &ctx);
    // A data-key rotation over tampered data re-encrypts only what opens, or stops
    // with an error; either way the reads that follow are still right or errors.
    let maint = AccessContext::new("tamper", Purpose::Maintenance);
    if let Err(e) = v.rotate_data_keys(&maint, &RotationScope::All, &mut |_| {})
        && !matches!(e, Error::KeyInUse { .. })
    {
        assert_decode_error(&e, "tamper: rotate_data_keys");
    }
    check_tampered_reads(&v, fx, &ctx);
    let fresh = RecordKey::new("alice", "Observation", "fresh");
    let val = json!({"a": 99});
    if v.put(&ctx, &fresh, &val).is_ok() {
        match v.get::<Value>(&ctx, &fresh) {
            Ok(got) => assert_eq!(got, val, "tamper: a fresh write reads back wrong"),
            Err(e) => assert_decode_error(&e, "tamper: get after put"),
        }
    }
    match v.verify(&ctx, None) {
        Ok(_) => assert!(!log_changed, "tamper: a changed access log verifies"),
        Err(e) => {
            assert!(log_changed, "tamper: an untouched access log fails: {e}");
            assert_decode_error(&e, "tamper: verify");
        }
    }
}

/// Every read of the tampered vault returns the right data or a typed error.
fn check_tampered_reads(v: &Vault, fx: &TamperFixture, ctx: &AccessContext) {
    for (k, want) in &fx.records {
        match v.get::<Value>(ctx, k) {
            Ok(got) => assert_eq!(&got, want, "tamper: a read returned wrong data"),
            Err(e) => assert_decode_error(&e, "tamper: get"),
        }
        match v.get_fields::<Value>(ctx, k, &["b"]) {
            Ok(got) => assert_eq!(got, project(want, &["b"]), "tamper: wrong field"),
            Err(e) => assert_decode_error(&e, "tamper: get_fields"),
        }
    }
    for s in &fx.subjects {
        match v.records_of::<Value>(ctx, s, None) {
            Ok(list) => {
                let mut seen = BTreeSet::new();
                for (k, got) in list {
                    assert_eq!(
                        fx.records.get(&k),
                        Some(&got),
                        "tamper: a listing returned wrong data"
                    );
                    assert_eq!(&k.subject, s, "tamper: a listing crossed subjects");
                    assert!(seen.insert(k), "tamper: a record listed twice");
                }
            }
            Err(e) => assert_decode_error(&e, "tamper: records_of"),
        }
    }
    match v.subjects(ctx) {
        Ok(list) => {
            for s in list {
                assert!(fx.subjects.contains(&s), "tamper: a forged subject listed");
            }
        }
        Err(e) => assert_decode_error(&e, "tamper: subjects"),
    }
    match v.audit_query(ctx, &LogQuery::default()) {
        Ok(entries) => {
            for e in entries {
                assert!(fx.actors.contains(&e.actor), "tamper: a forged log entry");
                if let Some(t) = e.target {
                    assert!(
                        fx.subjects.contains(&t.subject) || t.subject == "dave",
                        "tamper: a forged log target"
                    );
                }
            }
        }
        Err(e) => assert_decode_error(&e, "tamper: audit_query"),
    }
}

// ----- seeds -------------------------------------------------------------------------

/// A valid input for every target and mode, built with the fixture keys: the seed
/// corpus committed under `fuzz/seeds/<target>/` (regenerate with
/// `MEDVAULT_BLESS=1 cargo test --test fuzz_seeds`). Nonces are random, so each
/// generation differs in bytes but not in meaning. Returns `(target, name, bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let with_mode = |mode: u8, b: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(b);
        v
    };

    // header
    let expect = |r: crate::Result<(Header, crate::header::Unlocked)>| match r {
        Ok(x) => x,
        Err(e) => panic!("seed: {e}"),
    };
    let (h, u) = expect(Header::create(&KeySource::raw(ROOT), KdfParams::default()));
    let raw = h.encode(&u.root);
    for mode in 0..3 {
        out.push(("header", format!("raw-mode{mode}"), with_mode(mode, &raw)));
    }
    let (h, u) = expect(Header::create(
        &KeySource::passphrase(PASSPHRASE),
        KdfParams::insecure_for_tests(),
    ));
    out.push((
        "header",
        "passphrase".into(),
        with_mode(0, &h.encode(&u.root)),
    ));
    let (h, u) = expect(Header::create(&KeySource::raw(ROOT), KdfParams::default()));
    if let Ok((hp, _)) = h.begin_rotation(&u.root, &KeySource::raw(NEXT_ROOT), KdfParams::default())
    {
        out.push((
            "header",
            "rotating".into(),
            with_mode(2, &hp.encode(&u.root)),
        ));
    }

    // subject entry
    for (name, with_next, versions) in [("one-version", false, 1), ("two-versions", true, 2)] {
        let ring = fixture_keyring(with_next);
        let keys = match ring.load_or_create(&TAG, SUBJECT, |_| Ok(None)) {
            Ok(k) => k,
            Err(e) => panic!("seed: {e}"),
        };
        for _ in 1..versions {
            let _ = ring.add_version(&keys);
        }
        out.push((
            "subject_entry",
            name.into(),
            with_mode(u8::from(with_next), &ring.encode_entry(&keys)),
        ));
    }

    // record
    let key = RecordKey::new(SUBJECT, "Observation", "obs-1");
    let value = json!({"code": "85354-9", "value": 120, "note": null, "list": [1, 2.5, "x"]});
    let fields = match split_fields(&value) {
        Ok(f) => f,
        Err(e) => panic!("seed: {e}"),
    };
    for version in [1, 2] {
        out.push((
            "record",
            format!("value-v{version}"),
            with_mode(0, &seal_fixture_record(&key, version, &fields)),
        ));
    }
    let mut meta = Vec::new();
    for s in ["Observation", "obs-1"] {
        crate::codec::put_lp16(&mut meta, s.as_bytes());
    }
    meta.extend_from_slice(&2u16.to_be_bytes());
    for s in ["code", "value"] {
        crate::codec::put_lp16(&mut meta, s.as_bytes());
    }
    let mut m = vec![1, 2];
    m.extend_from_slice(&meta);
    out.push(("record", "meta".into(), m));
    for (i, f) in fields.iter().enumerate() {
        out.push(("record", format!("cbor-{i}"), with_mode(2, &f.value)));
    }
    let mut whole = Vec::new();
    let _ = ciborium::into_writer(&value, &mut whole);
    out.push(("record", "cbor-map".into(), with_mode(2, &whole)));

    // log
    let mem = MemoryStorage::new();
    if let Ok(log) = fixture_log(&mem) {
        let ctx = AccessContext::new("nurse", Purpose::Care);
        let btg = AccessContext::new("dr", Purpose::Emergency).with_reason("why");
        let t = Target {
            subject: SUBJECT.into(),
            collection: Some("Observation".into()),
            record_id: Some("obs-1".into()),
            fields: vec!["code".into(), "value".into()],
        };
        let mut e1 = PendingEntry::new(&ctx, Action::Write, Outcome::Ok);
        e1.subject = Some((
            TAG,
            crate::audit::seal_target(&audit_key(), &VAULT_ID, &TAG, &t),
        ));
        let mut e2 = PendingEntry::new(&btg, Action::Read, Outcome::Failed("not_found".into()));
        e2.subject = Some((TAG, Vec::new()));
        e2.note = "note".into();
        let e3 = PendingEntry::new(&ctx, Action::Verify, Outcome::Denied);
        let bodies: Vec<Vec<u8>> = [&e1, &e2, &e3].iter().map(|e| e.body().to_vec()).collect();
        if log.commit(&mem, WriteBatch::new(), &[e1, e2, e3]).is_ok() {
            let mut parts = vec![mem.get(HEAD_KEY).ok().flatten().unwrap_or_default()];
            for seq in 0..3 {
                parts.push(
                    mem.get(&log_entry_key(seq))
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                );
            }
            out.push(("log", "three-entries".into(), with_mode(0, &frame(&parts))));
            out.push((
                "log",
                "head-only-empty".into(),
                with_mode(0, &frame(&parts[..1])),
            ));
        }
        for (i, b) in bodies.iter().enumerate() {
            out.push(("log", format!("body-{i}"), with_mode(1, b)));
        }
        let mut pt = Vec::new();
        for s in [SUBJECT, "Observation", "obs-1"] {
            crate::codec::put_lp16(&mut pt, s.as_bytes());
        }
        pt.extend_from_slice(&1u16.to_be_bytes());
        crate::codec::put_lp16(&mut pt, b"code");
        out.push(("log", "target".into(), with_mode(2, &pt)));
    }

    // checkpoint
    let (_, _, genuine) = checkpoint_fixture();
    if let Some(cp) = genuine.last() {
        out.push(("checkpoint", "bytes".into(), with_mode(0, &cp.to_bytes())));
        out.push((
            "checkpoint",
            "text".into(),
            with_mode(0, cp.to_text().as_bytes()),
        ));
    }
    for (i, g) in genuine.iter().enumerate() {
        let mut b = vec![1];
        b.extend_from_slice(&g.next_seq.to_be_bytes());
        b.extend_from_slice(&g.link);
        out.push(("checkpoint", format!("point-{i}"), b));
    }

    // index
    let mem = MemoryStorage::new();
    if let Ok(reg) = index_registry(&mem) {
        let specs = [
            crate::IndexSpec::new(
                "Patient",
                "by-name",
                &["name[].family", "birthDate"],
                crate::Normalization::Name,
            ),
            crate::IndexSpec::new(
                "Observation",
                "by-code",
                &["code.coding[].code"],
                crate::Normalization::Identifier,
            )
            .map(|s| s.truncated(20)),
        ];
        for (i, spec) in specs.into_iter().flatten().enumerate() {
            for (j, state) in [
                crate::index::BuildState::Ready,
                crate::index::BuildState::Building {
                    cursor: Some(vec![b'r'; 33]),
                },
            ]
            .into_iter()
            .enumerate()
            {
                let def = reg.make(spec.clone(), state);
                let mut b = vec![1];
                b.extend_from_slice(&def.id);
                b.extend_from_slice(&reg.seal(&def));
                out.push(("index", format!("def-{i}-{j}"), b));
            }
            for (k, p) in spec.parts.iter().enumerate() {
                let text = p.to_string();
                out.push((
                    "index",
                    format!("path-{i}-{k}"),
                    with_mode(2, text.as_bytes()),
                ));
            }
        }
        // Entries are index id (8) || value hash (1 to 16 bytes).
        let fwd = vec![vec![7u8; 8 + 16], vec![9u8; 8 + 3]];
        out.push((
            "index",
            "reverse".into(),
            with_mode(0, &crate::index::encode_reverse(&fwd)),
        ));
    }

    // model and tamper: byte strings from a fixed generator (xorshift), plus short
    // hand-written ones that hit each operation.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut pseudo = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    let every_op: Vec<u8> = (0u8..15).flat_map(|op| [op, 1, 0, 1, 2, 7, 1, 3]).collect();
    out.push(("model", "every-op".into(), every_op));
    out.push((
        "model",
        "put-reopen-get".into(),
        vec![0, 1, 0, 0, 1, 0, 5, 8, 2, 1, 0, 0, 4, 1, 0, 0, 5, 1, 9, 1],
    ));
    for i in 0..4 {
        out.push(("model", format!("random-{i}"), pseudo(64 + 64 * i)));
    }
    out.push(("tamper", "nothing".into(), Vec::new()));
    for op in 0u8..9 {
        out.push((
            "tamper",
            format!("op-{op}"),
            vec![op, 3, 0, 10, 7, 5, 1, 2, 3],
        ));
    }
    for i in 0..4 {
        out.push(("tamper", format!("random-{i}"), pseudo(16 + 16 * i)));
    }
    out
}
