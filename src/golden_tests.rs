//! Golden files: pin every persisted format (docs/FORMAT.md) byte for byte.
//!
//! Each structure is built deterministically — fixed keys, a seeded ChaCha20 in place of
//! the CSPRNG (`crypto::test_rng`, compiled only into this crate's unit tests) and a fixed
//! clock (`audit::entry::test_clock`) — through the same internal functions the vault
//! uses, and compared with the files committed under `tests/golden/`. A changed encoder
//! fails `golden_encoders_are_unchanged`; `golden_files_decode` checks that the
//! committed files still decode to the known content with the current decoders.
//!
//! Covered: header (raw key, passphrase, pending vault-KEK rotation), subject entry, record
//! value (meta + field envelopes), the access log as a segment file (header and frames),
//! the anchor file, the applied marker, checkpoint (binary and text), data-key rotation
//! state, blind-index definitions, forward entries (keys only) and reverse entry, and the
//! storage keys of the golden vault. `golden_files_decode_by_hand` is the independent
//! oracle: it decodes the record, segment, marker and anchor from docs/FORMAT.md with
//! the RustCrypto primitives alone.
//!
//! Regenerating: `MEDVAULT_BLESS=1 cargo test --lib golden` rewrites the files. Needing
//! to do so means an on-disk format changed: bump the version byte of that structure
//! (and keep a decoder for the old one) and update docs/FORMAT.md in the same commit.
//! The vault scenario below also pins the storage keys (`storage_keys.txt`): keyed
//! pseudonyms and key prefixes are a format too.

#![allow(clippy::unwrap_used)] // tests: a failure should abort the test

use crate::audit::test_clock;
use crate::crypto::test_rng;
use crate::danger::{FaultPlan, FaultyStorage, RawAccess};
use crate::header::Header;
use crate::keyring::{Keyring, SubjectTag};
use crate::storage::MemoryStorage;
use crate::{
    AccessContext, Action, Checkpoint, Error, IndexSpec, KdfParams, KeySource, LogEntry,
    Normalization, Outcome, Purpose, RecordKey, RotationScope, Target, Vault, VaultOptions,
};

const RNG_SEED: u64 = 0x6d65_6476_6175_6c74; // "medvault"
const CLOCK_MS: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z
const ROOT: [u8; 32] = [0x11; 32];
const NEXT_ROOT: [u8; 32] = [0x22; 32];
const PASSPHRASE: &str = "golden passphrase";
const SUBJECT: &str = "patient-golden";

macro_rules! golden {
    ($($name:literal),* $(,)?) => {
        const GOLDEN: &[(&str, &[u8])] = &[
            $(($name, include_bytes!(concat!("../tests/golden/", $name)))),*
        ];
    };
}

golden!(
    "header_raw.bin",
    "header_passphrase.bin",
    "header_rotating.bin",
    "subject_entry.bin",
    "record.bin",
    "applied_marker.bin",
    "log_segment.bin",
    "anchor.bin",
    "index_def_0.bin",
    "index_def_1.bin",
    "index_entry_0.bin",
    "index_entry_1.bin",
    "index_reverse.bin",
    "rotation_state.bin",
    "checkpoint.bin",
    "checkpoint.txt",
    "storage_keys.txt",
);

fn golden(name: &str) -> &'static [u8] {
    GOLDEN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no golden file {name}"))
}

fn record_key() -> RecordKey {
    RecordKey::new(SUBJECT, "Observation", "bp-1")
}

/// The record as exact JSON text (a decimal with a trailing zero, a `\u` escape): the
/// field plaintexts in record.bin are these member values byte for byte.
const RECORD_TEXT: &str = r#"{"resourceType":"Observation","id":"bp-1","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"value":120,"unit":"mm[Hg]","final":true,"ratio":1.50,"note":"caf\u00e9 12345678901234567890123"}"#;

fn record_text() -> crate::json::JsonText {
    crate::json::JsonText::parse(RECORD_TEXT).unwrap()
}

fn record_value() -> serde_json::Value {
    serde_json::from_str(RECORD_TEXT).unwrap()
}

fn nurse() -> AccessContext {
    AccessContext::new("nurse-42", Purpose::Care)
}

fn ops() -> AccessContext {
    AccessContext::new("ops", Purpose::Maintenance)
}

fn index_specs() -> Vec<IndexSpec> {
    vec![
        IndexSpec::new("Observation", "by-unit", &["unit"], Normalization::Exact).unwrap(),
        IndexSpec::new("Observation", "by-id", &["id"], Normalization::Identifier)
            .unwrap()
            .truncated(24),
    ]
}

fn doctor_btg() -> AccessContext {
    AccessContext::new("dr-7", Purpose::Emergency).with_reason("unconscious on arrival")
}

/// Builds every golden structure. Returns `(file name, bytes)` in [`GOLDEN`] order.
fn build_all() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let _clock = test_clock::set(CLOCK_MS);

    // A vault on memory storage, driven through the public API (so through exactly the
    // encoders the vault uses): create, write, read, break-the-glass read of one field,
    // a failed read, a checkpoint.
    let _rng = test_rng::seed(RNG_SEED);
    let mem = FaultyStorage::memory();
    // Every commit leads its own group commit: the anchor's counter does not depend on
    // when a background flush happens to run.
    let v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        golden_options(),
    )
    .unwrap();
    v.put_json(&nurse(), &record_key(), &record_text()).unwrap();
    let _: serde_json::Value = v.get(&nurse(), &record_key()).unwrap();
    let _: serde_json::Value = v
        .get_fields(&doctor_btg(), &record_key(), &["value"])
        .unwrap();
    let missing = RecordKey::new(SUBJECT, "Observation", "nope");
    assert!(matches!(
        v.get::<serde_json::Value>(&nurse(), &missing),
        Err(Error::NotFound)
    ));
    let cp = v.checkpoint(&nurse()).unwrap();
    // A data-key rotation of the subject, interrupted after its start was persisted
    // (the next batch fails), pins the rotation state.
    mem.set_faults(FaultPlan {
        fail_writes_after: Some(1),
        ..FaultPlan::default()
    });
    let scope = RotationScope::Subjects(vec![SUBJECT.to_owned()]);
    assert!(matches!(
        v.rotate_data_keys(&ops(), &scope, &mut |_| {}),
        Err(Error::Storage(_))
    ));
    mem.set_faults(FaultPlan::default());
    // Two blind indexes over the record (one full-length, one truncated) pin the index
    // definition, forward-entry keys and reverse-entry formats.
    for spec in index_specs() {
        assert_eq!(v.add_index(&ops(), spec, &mut |_| {}).unwrap(), 1);
    }
    drop(v);

    out.push(("header_raw.bin".to_owned(), mem.raw_header().unwrap()));
    drop(_rng);

    // A passphrase header (low-cost Argon2id parameters, so the test stays fast).
    let _rng = test_rng::seed(RNG_SEED + 1);
    let (h, u) = Header::create(
        &KeySource::passphrase(PASSPHRASE),
        crate::danger::insecure_kdf_params(),
    )
    .unwrap();
    out.push(("header_passphrase.bin".to_owned(), h.encode(&u.root)));
    drop(_rng);

    // A header with a vault-KEK rotation pending (KEK generation 0 -> 1, raw ROOT).
    let _rng = test_rng::seed(RNG_SEED + 2);
    let (h, u) = Header::create(&KeySource::raw(ROOT), KdfParams::default()).unwrap();
    let next = crate::header::Kek {
        generation: 1,
        key: crate::crypto::SecretKey::random(),
    };
    let hp = h.with_next_kek(&u.root, &next).unwrap();
    out.push(("header_rotating.bin".to_owned(), hp.encode(&u.root)));
    drop(_rng);

    let mut keys_txt = String::new();
    let mut named = Vec::new();
    let (mut defs, mut fwd) = (0, 0);
    for (k, val) in mem.dump() {
        let name = match k.first() {
            Some(b'i') => {
                defs += 1;
                format!("index_def_{}.bin", defs - 1)
            }
            Some(b'x') => {
                fwd += 1;
                format!("index_entry_{}.bin", fwd - 1)
            }
            Some(b'y') => "index_reverse.bin".to_owned(),
            Some(b'a') => "applied_marker.bin".to_owned(),
            Some(b'k') => "subject_entry.bin".to_owned(),
            Some(b'r') => "record.bin".to_owned(),
            Some(b'c') => "rotation_state.bin".to_owned(),
            _ => panic!("unexpected storage key"),
        };
        keys_txt.push_str(&format!("{} {name}\n", crate::audit::hex(&k)));
        named.push((name, val));
    }
    out.extend(named);
    // The access log as a segment file would hold it, and the anchor file.
    let (h, _) = Header::unlock(&mem.raw_header().unwrap(), &KeySource::raw(ROOT)).unwrap();
    let mut seg = crate::logstore::frame::encode_segment_header(&h.vault_id, 0).to_vec();
    for f in mem.memory_log().frames() {
        f.encode_into(&mut seg);
    }
    out.push(("log_segment.bin".to_owned(), seg));
    let slots = crate::logstore::LogStore::read_anchor(mem.memory_log()).unwrap();
    let mut anchor = vec![0u8; 4096];
    anchor[..193].copy_from_slice(slots[0].as_ref().unwrap());
    anchor.extend_from_slice(slots[1].as_ref().unwrap());
    out.push(("anchor.bin".to_owned(), anchor));
    out.push(("checkpoint.bin".to_owned(), cp.to_bytes()));
    out.push((
        "checkpoint.txt".to_owned(),
        format!("{}\n", cp.to_text()).into_bytes(),
    ));
    out.push(("storage_keys.txt".to_owned(), keys_txt.into_bytes()));
    out
}

fn golden_options() -> VaultOptions {
    VaultOptions {
        durability: crate::Durability::Every,
        ..VaultOptions::default()
    }
}

fn golden_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The encoders still produce the committed bytes. On failure: if the format change is
/// intended, bump its version and regenerate (see the module docs).
#[test]
fn golden_encoders_are_unchanged() {
    let built = build_all();
    if std::env::var_os("MEDVAULT_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        for (name, bytes) in &built {
            std::fs::write(golden_dir().join(name), bytes).unwrap();
        }
        eprintln!("golden files rewritten under {}", golden_dir().display());
        return;
    }
    let mut names: Vec<&str> = built.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = GOLDEN.iter().map(|(n, _)| *n).collect();
    want.sort_unstable();
    assert_eq!(names, want, "the set of persisted structures changed");
    for (name, bytes) in &built {
        let g = golden(name);
        if g != bytes.as_slice() {
            let at = g
                .iter()
                .zip(bytes.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(bytes.len()));
            panic!(
                "{name}: the encoder output differs from tests/golden/{name} at byte {at} \
                 (golden {} bytes, now {} bytes). A format change needs a version bump; \
                 regenerate with MEDVAULT_BLESS=1 (see src/golden_tests.rs).",
                g.len(),
                bytes.len()
            );
        }
    }
}

/// A memory store holding exactly the committed golden vault.
fn golden_vault_storage() -> FaultyStorage<MemoryStorage> {
    let mem = FaultyStorage::memory();
    mem.raw_set_header(golden("header_raw.bin"));
    let keys = std::str::from_utf8(golden("storage_keys.txt")).unwrap();
    for line in keys.lines() {
        let (hexkey, name) = line.split_once(' ').unwrap();
        let key: Vec<u8> = (0..hexkey.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hexkey[i..i + 2], 16).unwrap())
            .collect();
        mem.raw_put(&key, golden(name));
    }
    let seg = golden("log_segment.bin");
    let mut at = crate::logstore::frame::SEGMENT_HEADER_LEN;
    let mut frames = Vec::new();
    while at < seg.len() {
        match crate::logstore::frame::decode_frame(&seg[at..]) {
            crate::logstore::frame::Decoded::Frame(f, n) => {
                frames.push(f);
                at += n;
            }
            other => panic!("log_segment.bin: {other:?}"),
        }
    }
    mem.memory_log().set_frames(frames);
    let a = golden("anchor.bin");
    mem.memory_log()
        .set_anchor([Some(a[..193].to_vec()), Some(a[4096..4096 + 193].to_vec())]);
    mem
}

/// The committed files decode, with today's decoders, to the content they were made
/// from: header keys, the record, every access-log entry, the chain and the checkpoint.
#[test]
fn golden_files_decode() {
    // Header of the vault: the raw key opens it, another key is a wrong key.
    let (h, unlocked) = Header::unlock(golden("header_raw.bin"), &KeySource::raw(ROOT)).unwrap();
    assert_eq!(h.root.generation, 0);
    assert!(h.root.kdf.is_none());
    assert!(h.next_kek.is_none());
    assert_eq!(h.kek.generation, 0);
    assert!(matches!(
        Header::unlock(golden("header_raw.bin"), &KeySource::raw(NEXT_ROOT)),
        Err(Error::WrongKey)
    ));

    // Subject entry: unwraps under the vault KEK, names the subject, one DEK version.
    let keyring = Keyring::new(h.vault_id, &unlocked.kek, None, 16);
    let keys_txt = std::str::from_utf8(golden("storage_keys.txt")).unwrap();
    let entry_key = keys_txt
        .lines()
        .find_map(|l| l.strip_suffix(" subject_entry.bin"))
        .unwrap();
    let tag: [u8; 16] = (1..17)
        .map(|i| u8::from_str_radix(&entry_key[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .try_into()
        .unwrap();
    let tag = SubjectTag::from(tag);
    let sk = keyring
        .decode_entry(&tag, golden("subject_entry.bin"))
        .unwrap();
    assert_eq!(sk.subject.as_str(), SUBJECT);
    assert_eq!(sk.lock().current, 1);
    assert!(sk.dek(1).is_ok());

    // Record value: structure parses with key version 1 and eight field envelopes.
    let rec = crate::record::parse_record(golden("record.bin")).unwrap();
    assert_eq!(rec.key_version, 1);

    // Checkpoint: binary and text forms agree.
    let cp = Checkpoint::from_bytes(golden("checkpoint.bin")).unwrap();
    let txt = std::str::from_utf8(golden("checkpoint.txt")).unwrap();
    assert_eq!(Checkpoint::from_text(txt).unwrap(), cp);
    assert_eq!(cp.vault_id, h.vault_id);
    assert_eq!(
        cp.next_seq, 6,
        "the checkpoint precedes the rotation's entry"
    );

    // The whole vault, reassembled from the files, opens and reads back.
    let mem = golden_vault_storage();
    assert!(matches!(
        Vault::open_in(
            Box::new(mem.clone()),
            KeySource::raw(NEXT_ROOT),
            VaultOptions::default()
        ),
        Err(Error::WrongKey)
    ));
    let v = Vault::open_in(
        Box::new(mem.clone()),
        KeySource::raw(ROOT),
        VaultOptions::default(),
    )
    .unwrap();
    assert!(v.data_key_rotation_pending().unwrap());
    let got = v.get_json(&nurse(), &record_key()).unwrap();
    assert_eq!(got.as_str(), RECORD_TEXT);
    assert_eq!(
        got.deserialize::<serde_json::Value>().unwrap(),
        record_value()
    );
    // The golden log: 16 entries, plus this open's and this read's.
    assert_eq!(v.verify(&nurse(), Some(&cp)).unwrap(), 18);
    // The blind indexes: both built, both find the record, consistent with it.
    let built: Vec<bool> = v.indexes().iter().map(|s| s.built).collect();
    assert_eq!(built, vec![true, true]);
    for (index, value) in [("by-unit", "mm[Hg]"), ("by-id", "BP-1")] {
        let found: Vec<(RecordKey, serde_json::Value)> =
            v.find(&nurse(), "Observation", index, &[value]).unwrap();
        assert_eq!(found, vec![(record_key(), record_value())], "{index}");
    }
    assert!(v.verify_indexes(&ops()).unwrap().is_consistent());
    let entries = v
        .audit_query(&nurse(), &crate::LogQuery::default())
        .unwrap();
    let target = |fields: &[&str]| {
        Some(Target {
            subject: SUBJECT.to_owned(),
            collection: Some("Observation".to_owned()),
            record_id: Some("bp-1".to_owned()),
            fields: fields.iter().map(|s| s.to_string()).collect(),
        })
    };
    // In the record's own member order (exact JSON keeps it).
    let all_fields = [
        "resourceType",
        "id",
        "code",
        "value",
        "unit",
        "final",
        "ratio",
        "note",
    ];
    type Expected<'a> = (
        &'a str,
        Purpose,
        Option<&'a str>,
        Action,
        Outcome,
        Option<Target>,
    );
    let expect: Vec<Expected<'_>> = vec![
        (
            "medvault",
            Purpose::Maintenance,
            None,
            Action::Create,
            Outcome::Ok,
            None,
        ),
        (
            "nurse-42",
            Purpose::Care,
            None,
            Action::Write,
            Outcome::Ok,
            target(&all_fields),
        ),
        (
            "nurse-42",
            Purpose::Care,
            None,
            Action::Read,
            Outcome::Ok,
            target(&all_fields),
        ),
        (
            "dr-7",
            Purpose::Emergency,
            Some("unconscious on arrival"),
            Action::Read,
            Outcome::Ok,
            target(&["value"]),
        ),
        (
            "nurse-42",
            Purpose::Care,
            None,
            Action::Read,
            Outcome::Failed("not_found".to_owned()),
            Some(Target {
                subject: SUBJECT.to_owned(),
                collection: Some("Observation".to_owned()),
                record_id: Some("nope".to_owned()),
                fields: Vec::new(),
            }),
        ),
        (
            "nurse-42",
            Purpose::Care,
            None,
            Action::Checkpoint,
            Outcome::Ok,
            None,
        ),
        (
            "ops",
            Purpose::Maintenance,
            None,
            Action::KeyRotation,
            Outcome::Ok,
            None,
        ),
    ];
    for (i, (actor, purpose, reason, action, outcome, target)) in expect.into_iter().enumerate() {
        let e: &LogEntry = &entries[i];
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.time_ms, CLOCK_MS, "entry {i}");
        assert_eq!(e.actor, actor, "entry {i}");
        assert_eq!(e.purpose, purpose, "entry {i}");
        assert_eq!(e.reason.as_deref(), reason, "entry {i}");
        assert_eq!(e.action, action, "entry {i}");
        assert_eq!(e.outcome, outcome, "entry {i}");
        assert_eq!(e.target, target, "entry {i}");
    }
    assert_eq!(entries[0].note, "format 2");
    assert_eq!(entries[6].note, "data-key rotation started");
    // The rotation's next commit was logged (step 1) but its batch failed (step 2): the
    // committer logs that it was not applied, then the rotation logs its failure.
    assert_eq!(entries[7].note, "data key v2 created");
    assert_eq!(entries[8].action, Action::Recovery);
    assert_eq!(
        entries[8].outcome,
        Outcome::Failed("not_applied".to_owned())
    );
    assert_eq!(entries[8].note, "entry 7 not applied");
    assert_eq!(entries[9].action, Action::KeyRotation);
    assert_eq!(entries[9].outcome, Outcome::Failed("storage".to_owned()));
    for e in &entries[10..16] {
        assert_eq!((e.actor.as_str(), e.action), ("ops", Action::Write));
        assert!(e.note.contains("by-unit") || e.note.contains("by-id"));
    }
    // The persisted rotation state resumes: the subject's one record is re-encrypted.
    let report = v
        .rotate_data_keys(&ops(), &RotationScope::All, &mut |_| {})
        .unwrap();
    assert_eq!((report.subjects, report.records), (1, 1));
    assert!(!v.data_key_rotation_pending().unwrap());
    let got: serde_json::Value = v.get(&nurse(), &record_key()).unwrap();
    assert_eq!(got, record_value());
    assert_eq!(
        entries[4].subject_pseudonym,
        Some(tag),
        "a failed read names the subject by pseudonym"
    );

    // The passphrase header: Argon2id parameters as written, the passphrase opens it.
    let (h, _) = Header::unlock(
        golden("header_passphrase.bin"),
        &KeySource::passphrase(PASSPHRASE),
    )
    .unwrap();
    let (params, _salt) = h.root.kdf.unwrap();
    assert_eq!(params, crate::danger::insecure_kdf_params());
    assert!(matches!(
        Header::unlock(
            golden("header_passphrase.bin"),
            &KeySource::passphrase("wrong")
        ),
        Err(Error::WrongKey)
    ));

    // The KEK-rotating header: the root opens it and unwraps both KEK generations;
    // no other key opens it (no root is wrapped under another).
    let (h, a) = Header::unlock(golden("header_rotating.bin"), &KeySource::raw(ROOT)).unwrap();
    assert!(matches!(
        Header::unlock(golden("header_rotating.bin"), &KeySource::raw(NEXT_ROOT)),
        Err(Error::WrongKey)
    ));
    assert_eq!(h.kek.generation, 0);
    assert_eq!(h.next_kek.as_ref().unwrap().generation, 1);
    assert_eq!(a.next_kek.as_ref().unwrap().generation, 1);
    assert_ne!(
        a.kek.key.expose_secret(),
        a.next_kek.as_ref().unwrap().key.expose_secret()
    );
}

/// A flipped bit in any golden structure is refused (the golden files double as
/// known-good inputs for the flip test of each format).
#[test]
fn golden_files_refuse_flips() {
    let bytes = golden("record.bin");
    for i in 0..bytes.len() {
        let mem = golden_vault_storage();
        let keys_txt = std::str::from_utf8(golden("storage_keys.txt")).unwrap();
        let rk = keys_txt
            .lines()
            .find_map(|l| l.strip_suffix(" record.bin"))
            .unwrap();
        let rk: Vec<u8> = (0..rk.len())
            .step_by(2)
            .map(|j| u8::from_str_radix(&rk[j..j + 2], 16).unwrap())
            .collect();
        let mut t = bytes.to_vec();
        t[i] ^= 0x80;
        mem.raw_put(&rk, &t);
        let v =
            Vault::open_in(Box::new(mem), KeySource::raw(ROOT), VaultOptions::default()).unwrap();
        match v.get::<serde_json::Value>(&nurse(), &record_key()) {
            Err(Error::Integrity { .. }) | Err(Error::UnsupportedVersion { .. }) => {}
            Err(Error::UnknownKeyVersion(_)) => {}
            other => panic!("flip at {i}: {:?}", other.map(|_| ())),
        }
    }
}

/// An independent oracle for the storage-v2 goldens: every byte of the record value, the
/// log segment, the applied marker and the anchor decoded by hand from docs/FORMAT.md,
/// with the RustCrypto primitives called directly (HKDF-SHA256, AES-256-GCM,
/// HMAC-SHA256, SHA-256) — none of medvault's decoders, key derivations or AEAD
/// wrappers. Root key → wrapping key → vault secret (header) and data key (subject
/// entry) → record meta and fields, checked against the exact JSON text; chain key →
/// every frame's link; marker and anchor MACs, positions, links and the state digest.
#[test]
fn golden_files_decode_by_hand() {
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    fn hkdf(ikm: &[u8], info: &[u8]) -> [u8; 32] {
        let mut k = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, ikm)
            .expand(info, &mut k)
            .unwrap();
        k
    }
    fn open(key: &[u8; 32], env: &[u8], aad: &[u8]) -> Vec<u8> {
        Aes256Gcm::new_from_slice(key)
            .unwrap()
            .decrypt(
                Nonce::from_slice(&env[..12]),
                Payload {
                    msg: &env[12..],
                    aad,
                },
            )
            .expect("envelope opens under the documented key and AAD")
    }
    fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
    /// `mac_parts`: every part framed as `u32 len || part`.
    fn hmac_parts(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
        let mut framed = Vec::new();
        for p in parts {
            framed.extend_from_slice(&(p.len() as u32).to_be_bytes());
            framed.extend_from_slice(p);
        }
        hmac(key, &[&framed])
    }
    fn be64(b: &[u8]) -> u64 {
        u64::from_be_bytes(b[..8].try_into().unwrap())
    }
    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes(b[..4].try_into().unwrap())
    }
    fn put_lp16(out: &mut Vec<u8>, x: &[u8]) {
        out.extend_from_slice(&(x.len() as u16).to_be_bytes());
        out.extend_from_slice(x);
    }
    fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    // Header ("Header", version 2): vault_id at 5..21, wrapped vault secret at 86..146,
    // KEK generation at 146..150, wrapped KEK at 150..210, next-KEK flag at 210.
    let hdr = golden("header_raw.bin");
    assert_eq!(hdr[0], 2);
    assert_eq!(hdr.len(), 211 + 64, "no next KEK: flag, MAC, checksum");
    assert_eq!(hdr[210], 0);
    let vault_id = &hdr[5..21];
    let root_wrap = hkdf(&ROOT, b"medvault/v1/kek");
    let mut aad = b"medvault/v1/vault-secret".to_vec();
    aad.push(2);
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&0u32.to_be_bytes());
    let secret: [u8; 32] = open(&root_wrap, &hdr[86..146], &aad).try_into().unwrap();
    let kek_aad = |vid: &[u8], root_gen: u32, kek_gen: u32| {
        let mut aad = b"medvault/v1/vault-kek".to_vec();
        aad.push(2);
        aad.extend_from_slice(vid);
        aad.extend_from_slice(&root_gen.to_be_bytes());
        aad.extend_from_slice(&kek_gen.to_be_bytes());
        aad
    };
    assert_eq!(be32(&hdr[146..]), 0, "KEK generation 0");
    let vault_kek = open(&root_wrap, &hdr[150..210], &kek_aad(vault_id, 0, 0));
    let kek = hkdf(&vault_kek, b"medvault/v1/subject-wrap");
    // Header MAC and checksum.
    assert_eq!(
        hdr[211..243],
        hmac(&hkdf(&ROOT, b"medvault/v1/header-mac"), &[&hdr[..211]])
    );
    assert_eq!(hdr[243..], Sha256::digest(&hdr[..243])[..]);
    // The KEK-rotating header: both KEKs wrapped under the root, generations 0 and 1.
    let rot = golden("header_rotating.bin");
    assert_eq!(rot.len(), 275 + 64);
    assert_eq!(rot[210], 1);
    assert_eq!(be32(&rot[211..]), 1);
    let k0 = open(&root_wrap, &rot[150..210], &kek_aad(&rot[5..21], 0, 0));
    let k1 = open(&root_wrap, &rot[215..275], &kek_aad(&rot[5..21], 0, 1));
    assert_ne!(k0, k1);

    // Storage keys of the golden vault.
    let keys: Vec<(Vec<u8>, &str)> = std::str::from_utf8(golden("storage_keys.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, n) = l.split_once(' ').unwrap();
            (unhex(k), n)
        })
        .collect();
    let key_of = |name: &str| keys.iter().find(|(_, n)| *n == name).unwrap().0.clone();

    // Subject entry ("Subject key entry"): DEK version 1 under the wrapping key.
    let sk = key_of("subject_entry.bin");
    let tag = &sk[1..17];
    let e = golden("subject_entry.bin");
    assert_eq!(e[0], 2);
    let g = be32(&e[1..]);
    assert_eq!(g, 0);
    let n_versions = u16::from_be_bytes([e[9], e[10]]) as usize;
    let (mut dek, mut found) = ([0u8; 32], false);
    for i in 0..n_versions {
        let at = 11 + i * 72;
        let version = be32(&e[at..]);
        let mut aad = b"medvault/v1/dek".to_vec();
        aad.push(2);
        aad.extend_from_slice(vault_id);
        aad.extend_from_slice(tag);
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(&g.to_be_bytes());
        if version == 1 {
            dek = open(&kek, &e[at + 12..at + 72], &aad).try_into().unwrap();
            found = true;
        }
    }
    assert!(found, "the subject entry holds data-key version 1");

    // Record value ("Record value", version 3): varint lengths, envelopes without a
    // nonce (derived from the record nonce and the envelope's index), the fields' AAD a
    // SHA-256 binding digest followed by the field name.
    fn leb(b: &[u8], at: &mut usize) -> usize {
        let (mut x, mut shift) = (0usize, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            x |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return x;
            }
            shift += 7;
        }
    }
    fn lpv(b: &[u8], at: &mut usize) -> Vec<u8> {
        let n = leb(b, at);
        let v = b[*at..*at + n].to_vec();
        *at += n;
        v
    }
    fn nonce_at(record_nonce: &[u8], index: u32) -> [u8; 12] {
        let mut n: [u8; 12] = record_nonce.try_into().unwrap();
        for (b, x) in n[8..].iter_mut().zip(index.to_be_bytes()) {
            *b ^= x;
        }
        n
    }
    fn open_detached(key: &[u8; 32], nonce: &[u8; 12], sealed: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut env = nonce.to_vec();
        env.extend_from_slice(sealed);
        open(key, &env, aad)
    }
    let rk = key_of("record.bin");
    let r = golden("record.bin");
    assert_eq!(r[0], 0x03, "record value version 3");
    let v = be32(&r[1..]);
    assert_eq!(v, 1, "sealed under data-key version 1");
    let w = be64(&r[5..]);
    let record_nonce = &r[13..25];
    let mut at = 25;
    let meta_sealed = lpv(r, &mut at);
    let n = leb(r, &mut at);
    let envs: Vec<Vec<u8>> = (0..n).map(|_| lpv(r, &mut at)).collect();
    assert_eq!(at, r.len(), "no trailing bytes");
    let mut aad = b"medvault/v1/record-meta".to_vec();
    aad.push(3);
    aad.extend_from_slice(vault_id);
    aad.extend_from_slice(&v.to_be_bytes());
    aad.extend_from_slice(&w.to_be_bytes());
    aad.extend_from_slice(record_nonce);
    put_lp16(&mut aad, &rk);
    let meta = open_detached(&dek, &nonce_at(record_nonce, 0), &meta_sealed, &aad);
    let mut m = 0;
    assert_eq!(lpv(&meta, &mut m), b"Observation");
    assert_eq!(lpv(&meta, &mut m), b"bp-1");
    assert_eq!(leb(&meta, &mut m), n);
    let names: Vec<Vec<u8>> = (0..n).map(|_| lpv(&meta, &mut m)).collect();
    assert_eq!(m, meta.len());
    let mut h = Sha256::new();
    let mut lp = |b: &[u8]| {
        h.update((b.len() as u16).to_be_bytes());
        h.update(b);
    };
    lp(b"medvault/v1/record-binding");
    lp(&[3]);
    lp(vault_id);
    lp(&rk);
    lp(SUBJECT.as_bytes());
    lp(b"Observation");
    lp(b"bp-1");
    lp(&v.to_be_bytes());
    lp(&w.to_be_bytes());
    lp(record_nonce);
    lp(&(n as u16).to_be_bytes());
    for name in &names {
        lp(name);
    }
    let digest = h.finalize();
    let mut text = b"{".to_vec();
    for (i, (name, env)) in names.iter().zip(&envs).enumerate() {
        let mut aad = digest.to_vec();
        aad.extend_from_slice(name);
        if i > 0 {
            text.push(b',');
        }
        text.push(b'"');
        text.extend_from_slice(name);
        text.extend_from_slice(b"\":");
        text.extend_from_slice(&open_detached(
            &dek,
            &nonce_at(record_nonce, i as u32 + 1),
            env,
            &aad,
        ));
    }
    text.push(b'}');
    assert_eq!(std::str::from_utf8(&text).unwrap(), RECORD_TEXT);

    // Log segment ("Log segment files"): header, then frames chained from genesis.
    let seg = golden("log_segment.bin");
    assert_eq!(&seg[..8], b"MVLOGSEG");
    assert_eq!(seg[8], 1);
    assert_eq!(&seg[9..25], vault_id);
    assert_eq!(be64(&seg[25..]), 0);
    assert_eq!(seg[33..41], Sha256::digest(&seg[..33])[..8]);
    let chain = hkdf(&secret, b"medvault/v1/log-chain");
    let mut link = hmac_parts(&chain, &[b"medvault/v1/genesis", vault_id]);
    let mut at = 41;
    let mut links = vec![link];
    let mut flags_by_seq = Vec::new();
    let mut frame_bytes: Vec<Vec<u8>> = Vec::new();
    while at < seg.len() {
        let len = be32(&seg[at..]) as usize;
        let f = &seg[at..at + 4 + len];
        let seq = be64(&f[6..]);
        assert_eq!(seq, links.len() as u64 - 1, "gapless from 0");
        assert_eq!(f[4], 1, "frame version");
        assert_eq!(f[5] & !1, 0, "only the CHANGE flag");
        let body = &f[14..f.len() - 40];
        assert_eq!(f[f.len() - 8..], Sha256::digest(&f[..f.len() - 8])[..8]);
        link = hmac(&chain, &[&link, &[1], &[f[5]], &seq.to_be_bytes(), body]);
        assert_eq!(f[f.len() - 40..f.len() - 8], link, "link of frame {seq}");
        links.push(link);
        flags_by_seq.push(f[5]);
        frame_bytes.push(f.to_vec());
        at += 4 + len;
    }
    let frames = flags_by_seq.len() as u64;
    assert_eq!(
        frames, 16,
        "create, write, 3 reads, checkpoint, 2 of the rotation, not applied, its failure, \
         6 index ops"
    );
    assert_eq!(flags_by_seq[7], 1, "the rotation's logged change");
    assert_eq!(flags_by_seq[8], 0, "its not-applied entry is not a change");
    assert_eq!(flags_by_seq[1], 1, "the write is a change");
    assert_eq!(flags_by_seq[2], 0, "a read is not");
    assert_eq!(w, 1, "the record's version is its write's sequence number");

    // Applied marker ("Applied marker", 129 bytes) and the state digest.
    let mk = golden("applied_marker.bin");
    assert_eq!(mk.len(), 129);
    assert_eq!(mk[0], 2);
    assert_eq!(
        be32(&mk[89..]),
        0,
        "root generation 0: no root rotation finished"
    );
    assert_eq!(be32(&mk[93..]), 0, "KEK generation 0");
    let marker_key = hkdf(&secret, b"medvault/v1/applied-marker");
    assert_eq!(
        mk[97..],
        hmac(
            &marker_key,
            &[b"medvault/v1/applied-marker", vault_id, &mk[..97]]
        )
    );
    let m_next = be64(&mk[1..]);
    assert_eq!(be64(&mk[9..]), 0, "segment 0");
    assert!(m_next <= frames);
    assert_eq!(mk[25..57], links[m_next as usize], "the marker's link");
    let dk = hkdf(&secret, b"medvault/v1/state-digest");
    let mut digest = [0u8; 32];
    for (k, name) in &keys {
        if k[0] == b'a' || k[0] == b'p' {
            continue;
        }
        let t = hmac_parts(&dk, &[k, golden(name)]);
        digest.iter_mut().zip(t).for_each(|(d, x)| *d ^= x);
    }
    assert_eq!(
        mk[57..89],
        digest,
        "state digest = XOR of the live pairs' terms"
    );

    // Anchor ("Anchor file"): two 193-byte slots at 0 and 4096; the newer is in force.
    let a = golden("anchor.bin");
    let anchor_key = hkdf(&secret, b"medvault/v1/anchor");
    let mut newest: Option<&[u8]> = None;
    for (i, slot) in [&a[..193], &a[4096..4096 + 193]].into_iter().enumerate() {
        assert_eq!(slot[0], 2);
        assert_eq!(be32(&slot[137..]), 0, "root generation 0");
        assert_eq!(be32(&slot[141..]), 0, "KEK generation 0");
        assert_eq!(
            slot[161..],
            hmac(
                &anchor_key,
                &[b"medvault/v1/anchor", vault_id, &slot[..161]]
            )
        );
        assert_eq!(be64(&slot[1..]) % 2, i as u64, "slot = counter mod 2");
        assert!(slot[145..161].iter().all(|&b| b == 0), "reserved bytes");
        if newest.is_none_or(|n| be64(&n[1..]) < be64(&slot[1..])) {
            newest = Some(slot);
        }
    }
    let s = newest.unwrap();
    assert_eq!(be64(&s[9..]), frames, "anchored at the log's end");
    // The golden vault lives on the memory backend, whose log positions use segment 0
    // and the frame index as offset (src/logstore/memory.rs); a segment file's offset is
    // in bytes.
    assert_eq!(be64(&s[17..]), 0, "segment 0");
    assert_eq!(
        be64(&s[25..]),
        frames,
        "offset of the end (memory log: frames)"
    );
    assert_eq!(s[33..65], links[frames as usize]);
    assert_eq!(be64(&s[65..]), m_next);
    assert_eq!(s[73..105], mk[57..89]);
    // The Merkle root of the whole log, by RFC 9162's recursive definition over the
    // frames' bytes as the segment holds them.
    fn mth(d: &[Vec<u8>]) -> [u8; 32] {
        match d.len() {
            0 => Sha256::digest([]).into(),
            1 => Sha256::new()
                .chain_update([0])
                .chain_update(&d[0])
                .finalize()
                .into(),
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                Sha256::new()
                    .chain_update([1])
                    .chain_update(mth(&d[..k]))
                    .chain_update(mth(&d[k..]))
                    .finalize()
                    .into()
            }
        }
    }
    assert_eq!(s[105..137], mth(&frame_bytes), "Merkle root of the log");
}
