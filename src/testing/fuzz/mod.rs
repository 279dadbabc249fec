//! Entry points for the decoder fuzz targets under `fuzz/` and for the seed tests.
//!
//! **Not API.** Compiled only with the `testing` feature, hidden from the docs, exempt
//! from semver, and only in the core crate because the decoders it reaches are
//! crate-private. Each `check_*` function takes the fuzzer's bytes and *panics* when a
//! property fails (that is how libFuzzer learns of a bug); returning normally means the
//! input was handled correctly, which for hostile input usually means a typed error. The
//! same functions replay the committed seed corpus (`fuzz/seeds/<target>/`) under a plain
//! `cargo test`. What each target checks is in `fuzz/README.md`. The model-based and
//! tamper targets, which need only the public API, live in `medvault-testkit`.
//!
//! Inputs are decoded by a small byte cursor ([`Input`]), which plays the role
//! `arbitrary::Unstructured` plays elsewhere: hand-rolled so that the library gains no
//! dependency and committed seeds keep their meaning across `arbitrary` releases.
//! Every target that needs keys uses fixed fixture keys, so seeds built by
//! [`decoder_seeds`] get past authentication and the fuzzer can mutate from there.

use crate::danger::RawAccess;

use std::sync::Arc;

use crate::audit::{AuditLog, PendingEntry, decode_body, parse_target};
use crate::commit::{CommitKeys, Committer, Parts};
use crate::crypto::{AeadKey, KdfParams, KeySource, RootKey, SecretKey, sha256};
use crate::header::{Header, header_mac_key};
use crate::json::{JsonText, unescape};
use crate::keyring::{Keyring, SubjectTag};
use crate::logstore::anchor::SLOT_LEN;
use crate::logstore::frame::{Decoded, decode_frame};
use crate::logstore::{Frame, LogStore, MemoryLog};
use crate::record::{
    Binding, PlainField, RecordKey, join_json, parse_meta, parse_record, seal_record, split_json,
};
use crate::storage::{MemoryStorage, Storage, WriteBatch};
use crate::{AccessContext, Action, Checkpoint, Error, Outcome, Purpose, Target};

mod logstore;
mod seeds;

pub use logstore::{check_anchor, check_segment};
pub use seeds::decoder_seeds;

/// Runs the decoder check of `target` on `data`. Returns `false` for a name that is not
/// a decoder target.
pub fn check_decoder(target: &str, data: &[u8]) -> bool {
    match target {
        "header" => check_header(data),
        "index" => check_index(data),
        "subject_entry" => check_subject_entry(data),
        "record" => check_record(data),
        "log" => check_log(data),
        "checkpoint" => check_checkpoint(data),
        "segment" => check_segment(data),
        "anchor" => check_anchor(data),
        _ => return false,
    }
    true
}

/// The storage key of the applied marker (docs/FORMAT.md "Applied marker"): the one
/// record-store key that belongs to the commit protocol rather than to the data.
pub const APPLIED_MARKER_KEY: &[u8] = crate::keyspace::APPLIED_MARKER;

// ----- fixture keys ------------------------------------------------------------------

const ROOT: [u8; 32] = [0x5a; 32];
const NEXT_ROOT: [u8; 32] = [0xa5; 32];
const PASSPHRASE: &str = "fuzz";
const VAULT_ID: crate::VaultId = crate::VaultId::from_bytes([0x42; 16]);
const VAULT_SECRET: [u8; 32] = [0x33; 32];
const DEK_V1: [u8; 32] = [0x44; 32];
const DEK_V2: [u8; 32] = [0x45; 32];
const AUDIT_KEY: [u8; 32] = [0x46; 32];
const TAG: SubjectTag = SubjectTag::from_bytes([0x77; 16]);
const SUBJECT: &str = "fuzz-subject";
const STORAGE_KEY: &[u8] = b"r-fuzz-storage-key";

fn root() -> RootKey {
    RootKey::from_bytes(ROOT)
}

fn dek(version: u32) -> Option<AeadKey> {
    match version {
        1 => Some(AeadKey::new(&SecretKey::from_bytes(DEK_V1))),
        2 => Some(AeadKey::new(&SecretKey::from_bytes(DEK_V2))),
        _ => None,
    }
}

/// The fixture subject's log-target key (the fuzz checks seal and open targets only).
fn audit_key() -> crate::crypto::XAeadKey {
    crate::crypto::XAeadKey::new(&SecretKey::from_bytes(AUDIT_KEY))
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

/// Panics unless `e` is one of the typed errors a decoder may return for bad bytes;
/// `what` names the call in the panic message.
pub fn assert_decode_error(e: &Error, what: &str) {
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
/// fixture root recomputed too (to reach the key check and the wrapped secret and KEKs).
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
    if let Ok((h, _)) = &decoded
        && h.root.kdf.as_ref().is_none_or(|(p, _)| cheap(p))
    {
        sources.push(KeySource::passphrase(PASSPHRASE));
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
                    h.next_kek.as_ref().map(|k| k.generation),
                    u.next_kek.as_ref().map(|k| k.generation),
                    "header: pending KEK rotation without a next KEK"
                );
                assert_eq!(h.kek.generation, u.kek.generation);
            }
            Err(e) => assert_decode_error(&e, "header unlock"),
        }
    }
}

// ----- subject entry -----------------------------------------------------------------

/// The fixture vault KEKs: generation 0 (the bytes of `ROOT`) and 1 (`NEXT_ROOT`).
fn fixture_kek(generation: u32) -> crate::header::Kek {
    crate::header::Kek {
        generation,
        key: SecretKey::from_bytes(if generation == 0 { ROOT } else { NEXT_ROOT }),
    }
}

fn fixture_keyring(with_next: bool) -> Keyring {
    let next = fixture_kek(1);
    Keyring::new(VAULT_ID, &fixture_kek(0), with_next.then_some(&next), 16)
}

/// Subject-entry target (wrapped DEKs, wrapped audit key, sealed subject id). `data[0]`
/// bit 0: a vault-KEK rotation is pending (entries may be wrapped under KEK generation 0
/// or 1). The rest is the stored entry of the fixture subject.
///
/// Properties: decode never panics and fails with a typed error; a decoded entry
/// re-encodes (fresh nonces) to an entry that decodes to the same subject, current
/// version and keys; during a KEK rotation, rewrapping it without decoding
/// (`rewrap_entry`) gives an entry under generation 1 that decodes to the same keys, and
/// an entry that does not decode is never rewrapped into a new one (one already under
/// generation 1 is left untouched, `Ok(None)`, whether it decodes or not).
pub fn check_subject_entry(data: &[u8]) {
    let mut inp = Input::new(data);
    let with_next = inp.byte() & 1 == 1;
    let bytes = inp.rest();
    let ring = fixture_keyring(with_next);
    let rewrapped = if with_next {
        match ring.rewrap_entry(&TAG, bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                assert_decode_error(&e, "subject entry rewrap");
                None
            }
        }
    } else {
        None
    };
    let keys = match ring.decode_entry(&TAG, bytes) {
        Ok(k) => k,
        Err(e) => {
            // `Ok(None)` leaves an entry already under the new KEK untouched (rewrap
            // does not decode it: damage stays for decode to report); what must not
            // happen is a new entry made from one that does not decode.
            assert!(
                !matches!(rewrapped, Some(Some(_))),
                "subject entry: rewrapped an entry that does not decode"
            );
            return assert_decode_error(&e, "subject entry");
        }
    };
    if let Some(r) = rewrapped {
        let r = r.unwrap_or_else(|| bytes.to_vec());
        assert_eq!(r.get(1..5), Some(&1u32.to_be_bytes()[..]));
        let back = ring
            .decode_entry(&TAG, &r)
            .unwrap_or_else(|e| panic!("subject entry: rewrapped entry fails: {e}"));
        assert_eq!(keys.subject.as_str(), back.subject.as_str());
        assert_eq!(keys.versions(), back.versions());
    }
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

/// Opens a stored record value the way the vault does (docs/FORMAT.md "Record value"): meta first
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
    seal_record(&dek, &bind, 1, fields)
}

/// Record target. `data[0] % 3` picks a mode:
/// 0. the rest is a stored record value under the fixture DEKs (versions 1, 2): parse,
///    open meta and fields, rebuild the JSON text. An opened record re-sealed and
///    reopened gives the same text byte for byte, opened field by field or straight
///    into one buffer; opening one field gives exactly that member.
/// 1. the rest is an opened meta block (`data[1]` = expected field count): parser only.
/// 2. the rest is JSON text: as one field's value it joins into a record or is refused
///    without panic; as a record (an object) it splits into fields that join back to
///    its canonical text byte for byte, and seal/open leaves it unchanged.
pub fn check_record(data: &[u8]) {
    let mut inp = Input::new(data);
    match inp.byte() % 3 {
        0 => {
            let bytes = inp.rest();
            let (key, fields) = match open_record(bytes, None) {
                Ok(x) => x,
                Err(e) => return assert_decode_error(&e, "record value"),
            };
            let text = match join_json(&fields) {
                Ok(v) => v,
                Err(e) => return assert_decode_error(&e, "record fields"),
            };
            let version = parse_record(bytes).map(|s| s.key_version).unwrap_or(1);
            let resealed = seal_fixture_record(&key, version, &fields);
            let back = reopen_json(&resealed, None);
            assert!(back == text, "record: text changed on re-seal");
            if let Some(first) = fields.first() {
                let name = unescape(&first.name).to_string();
                let one = reopen_json(bytes, Some(&[name.as_str()]));
                let (n, v) = one
                    .members()
                    .ok()
                    .and_then(|mut m| m.next())
                    .unwrap_or_else(|| panic!("record: one field missing"));
                assert_eq!(n.raw(), first.name, "record: field name differs");
                assert_eq!(v.as_bytes(), &first.value[..], "record: field differs");
            }
        }
        1 => {
            let n = usize::from(inp.byte());
            match parse_meta(inp.rest(), n) {
                Ok(m) => assert_eq!(m.len(), n),
                Err(e) => assert_decode_error(&e, "record meta"),
            }
        }
        _ => {
            let rest = inp.rest();
            let one = [PlainField {
                name: "f".to_owned(),
                value: zeroize::Zeroizing::new(rest.to_vec()),
            }];
            match join_json(&one) {
                Ok(t) => {
                    let canonical = JsonText::parse(rest).unwrap_or_else(|e| {
                        panic!("record: joined a field that does not parse: {e}")
                    });
                    assert_eq!(t.as_str(), format!("{{\"f\":{}}}", canonical.as_str()));
                }
                Err(e) => assert_decode_error(&e, "field value"),
            }
            if let Ok(text) = JsonText::parse(rest)
                && let Ok(fields) = split_json(&text)
            {
                let back = join_json(&fields)
                    .unwrap_or_else(|e| panic!("record: split fields do not join: {e}"));
                assert!(back == text, "record: split/join changed the text");
                let key = RecordKey::new(SUBJECT, "c", "r");
                let sealed = seal_fixture_record(&key, 1, &fields);
                assert!(
                    reopen_json(&sealed, None) == text,
                    "record: seal/open changed the text"
                );
            }
        }
    }
}

/// Opens a record sealed under the fixture keys straight into JSON text, and checks it
/// against the field-by-field path.
fn reopen_json(bytes: &[u8], want: Option<&[&str]>) -> JsonText {
    let (key, fields) =
        open_record(bytes, want).unwrap_or_else(|e| panic!("record: does not reopen: {e}"));
    let joined = join_json(&fields).unwrap_or_else(|e| panic!("record: does not join: {e}"));
    let version = parse_record(bytes).map(|s| s.key_version).unwrap_or(1);
    let dek = dek(version).unwrap_or_else(|| panic!("no fixture DEK {version}"));
    let sealed = parse_record(bytes).unwrap_or_else(|e| panic!("record: does not parse: {e}"));
    let bind = Binding {
        vault_id: &VAULT_ID,
        storage_key: STORAGE_KEY,
        key: &key,
        key_version: version,
    };
    let meta = sealed
        .open_meta(&dek, &bind)
        .unwrap_or_else(|e| panic!("record: meta does not reopen: {e}"));
    let (direct, _) = sealed
        .open_json(&dek, &bind, &meta, want)
        .unwrap_or_else(|e| panic!("record: does not open into one buffer: {e}"));
    assert!(direct == joined, "record: the two read paths differ");
    direct
}

// ----- access log --------------------------------------------------------------------

fn fixture_parts(mem: &MemoryStorage, log: &MemoryLog) -> (Arc<AuditLog>, Parts) {
    let secret = SecretKey::from_bytes(VAULT_SECRET);
    let audit = Arc::new(AuditLog::new(VAULT_ID, &secret));
    let parts = Parts {
        vault_id: VAULT_ID,
        keys: CommitKeys::derive(&VAULT_ID, &secret),
        sealer: audit.clone(),
        records: Arc::new(mem.clone()),
        log: Arc::new(log.clone()),
        excluded: crate::keyspace::outside_digest,
    };
    (audit, parts)
}

/// A fixture vault's commit protocol over fresh memory stores, started with `entries`.
fn fixture_committer(
    entries: &[PendingEntry],
) -> (MemoryStorage, MemoryLog, Arc<AuditLog>, Committer) {
    let mem = MemoryStorage::new();
    let log = MemoryLog::new();
    let (audit, parts) = fixture_parts(&mem, &log);
    let bodies = entries.iter().map(PendingEntry::body).collect();
    let c = Committer::create(parts, bodies)
        .unwrap_or_else(|e| panic!("log fixture: create failed: {e}"));
    (mem, log, audit, c)
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
/// 0. the rest is a stored log: u16-length-prefixed chunks, the first the anchor file
///    (both slots, 193 bytes each, back to back), the second the applied marker (empty:
///    none), then frames `0, 1, ...` as a segment holds them (a chunk that is not a
///    frame is left out). Open seeks the tail and recovers; `verify` walks the chain,
///    the anchor, the marker and the state digest. When both pass, every entry decodes,
///    every target opens under the fixture audit key, and one more entry appended on
///    top verifies against a checkpoint of the log before it.
/// 1. the rest is an opened entry body: decoded, and re-encoded to the same bytes.
/// 2. the rest is an opened target: parsed, sealed again and reopened unchanged.
pub fn check_log(data: &[u8]) {
    let mut inp = Input::new(data);
    match inp.byte() % 3 {
        0 => {
            let parts = chunks(&mut inp);
            let mem = MemoryStorage::new();
            let log = MemoryLog::new();
            let mut it = parts.into_iter();
            let anchor = it.next().unwrap_or_default();
            let slot = |i: usize| {
                anchor
                    .get(i * SLOT_LEN..(i + 1) * SLOT_LEN)
                    .map(<[u8]>::to_vec)
            };
            log.set_anchor([slot(0), slot(1)]);
            if let Some(m) = it.next()
                && !m.is_empty()
            {
                mem.raw_put(APPLIED_MARKER_KEY, &m);
            }
            let frames: Vec<Frame> = it
                .filter_map(|c| match decode_frame(&c) {
                    Decoded::Frame(f, _) => Some(f),
                    _ => None,
                })
                .collect();
            log.set_frames(frames);
            let (audit, parts) = fixture_parts(&mem, &log);
            let committer = match Committer::open(parts) {
                Ok((c, _)) => c,
                Err(e) => return assert_decode_error(&e, "access-log open"),
            };
            let n = match audit.verify(&committer, None) {
                Ok(n) => n,
                Err(e) => {
                    assert_decode_error(&e, "access-log verify");
                    // Reading entries without the chain check must not panic either.
                    if let Err(e) = audit.for_each(committer.log(), 0, |_, _| Ok(true)) {
                        assert_decode_error(&e, "access-log read");
                    }
                    return;
                }
            };
            let mut seen = 0u64;
            audit
                .for_each(committer.log(), 0, |e, sealed| {
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
            let cp = audit.checkpoint(committer.head());
            let ctx = AccessContext::new("fuzz", Purpose::Maintenance);
            let e = PendingEntry::new(&ctx, Action::Verify, Outcome::Ok);
            committer
                .commit(WriteBatch::new(), vec![e.body()])
                .unwrap_or_else(|e| panic!("access log: append failed: {e}"));
            assert_eq!(
                audit
                    .verify(&committer, Some(&cp))
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
                            roles: e.roles.clone(),
                            purpose_code: e.purpose_code.clone(),
                            policy_version: e.policy_version,
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

/// A fixture log of three entries and the genuine checkpoints: before the first entry
/// (the genesis point) and after each.
fn checkpoint_fixture() -> (Committer, Arc<AuditLog>, Vec<Checkpoint>) {
    let ctx = AccessContext::new("fuzz", Purpose::Maintenance);
    let (_, _, audit, c) =
        fixture_committer(&[PendingEntry::new(&ctx, Action::Verify, Outcome::Ok)]);
    let genesis = audit.checkpoint((0, c.keys().genesis()));
    let mut genuine = vec![genesis, audit.checkpoint(c.head())];
    for _ in 0..2 {
        let e = PendingEntry::new(&ctx, Action::Verify, Outcome::Ok);
        if let Err(e) = c.commit(WriteBatch::new(), vec![e.body()]) {
            panic!("checkpoint fixture: {e}");
        }
        genuine.push(audit.checkpoint(c.head()));
    }
    (c, audit, genuine)
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
        let (committer, log, genuine) = checkpoint_fixture();
        let cp = log.checkpoint_at(next_seq, link);
        let is_genuine = genuine
            .iter()
            .any(|g| g.next_seq == next_seq && g.link == link);
        match log.verify(&committer, Some(&cp)) {
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
                again.raw_put(&crate::keyspace::index_def(&d.id), &reg.seal(d));
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
