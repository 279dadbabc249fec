//! The `model` target: operation sequences against a `BTreeMap` model.

use std::collections::BTreeMap;

use medvault::storage::MemoryStorage;
use medvault::testing::fuzz::Input;
use medvault::{
    AccessContext, Action, Checkpoint, KdfParams, KeySource, Purpose, RecordKey, RotationScope,
    Vault, VaultOptions,
};
use serde_json::{Value, json};

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

pub(crate) fn project(v: &Value, names: &[&str]) -> Value {
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
    /// Subjects erased and not re-admitted since: the vault refuses writes for them.
    erased: std::collections::BTreeSet<String>,
}

impl Model {
    fn wrote(&mut self, subject: &str) {
        self.keyed.entry(subject.to_owned()).or_insert(1);
    }

    fn records_of(&self, subject: &str) -> u64 {
        self.records.keys().filter(|k| k.subject == subject).count() as u64
    }
}

/// Re-admits `subject` when the model has it erased (the erasure memory is lifted).
fn readmit(v: &Vault, m: &mut Model, subject: &str) {
    if m.erased.remove(subject) {
        let dpo = AccessContext::new("dpo", Purpose::PatientRequest);
        v.readmit_subject(&dpo, subject, "the patient came back")
            .unwrap_or_else(|e| panic!("model: readmit failed: {e}"));
    }
}

/// The model's vault options: the smallest key cache (32 KiB, about 14 subjects), so
/// that the model's 20 subjects make the cache evict and reload keys.
fn model_options() -> VaultOptions {
    VaultOptions {
        key_cache_bytes: 0,
        ..VaultOptions::default()
    }
}

fn open_model_vault(mem: &MemoryStorage, root: [u8; 32]) -> Vault {
    Vault::open_in(Box::new(mem.clone()), KeySource::raw(root), model_options())
        .unwrap_or_else(|e| panic!("model: reopen failed: {e}"))
}

fn expect_err<T>(r: medvault::Result<T>, kind: &str, what: &str) {
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
/// get_fields, delete, erase (remembered: a later write is refused until re-admission),
/// records_of, subjects, reopen, verify (with and without a
/// checkpoint), checkpoint, data-key rotation (all or one subject), root-key rotation,
/// key retirement, and invalid calls — on a vault over memory storage and on a
/// `BTreeMap` model; every answer must match the model.
pub fn check_model(data: &[u8]) {
    let mut inp = Input::new(data);
    let mem = MemoryStorage::new();
    let mut v = Vault::create_in(
        Box::new(mem.clone()),
        KeySource::raw(MODEL_ROOT),
        model_options(),
    )
    .unwrap_or_else(|e| panic!("model: create failed: {e}"));
    let ctx = AccessContext::new("model", Purpose::Care);
    let mut m = Model {
        records: BTreeMap::new(),
        keyed: BTreeMap::new(),
        root: MODEL_ROOT,
        root_rotations: 0,
        erased: std::collections::BTreeSet::new(),
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
                if m.erased.contains(&k.subject) {
                    // Refused for an erased subject, accepted once it is re-admitted.
                    expect_err(v.put(&ctx, &k, &val), "subject_erased", "put, erased");
                    readmit(&v, &mut m, &k.subject);
                }
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
                if items.iter().any(|(k, _)| m.erased.contains(&k.subject)) {
                    let r = v.put_many(&ctx, items.iter().map(|(k, x)| (k, x)), Action::Import);
                    expect_err(r, "subject_erased", "put_many, erased");
                    for (k, _) in &items {
                        readmit(&v, &mut m, &k.subject);
                    }
                }
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
                    m.erased.insert(s);
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
                let unknown = !matches!(scope, RotationScope::All) && !m.keyed.contains_key(&s);
                let result = v.rotate_data_keys(&maint, &scope, &mut |_| {});
                if unknown {
                    // An unknown (or erased) subject is refused before anything is written.
                    assert!(
                        matches!(result, Err(medvault::Error::NotFound)),
                        "model: rotating an unknown subject gave {:?}",
                        result.map(|_| ())
                    );
                    assert!(!v.data_key_rotation_pending().unwrap_or(true));
                    continue;
                }
                let report =
                    result.unwrap_or_else(|e| panic!("model: rotate_data_keys failed: {e}"));
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
                // Root-key rotation: one header write (the vault secret and the KEK
                // rewrapped, no subject entry), the old key refused from the next open
                // on; every second time also a vault-KEK rotation, which rewraps every
                // subject entry and no record.
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
                assert_eq!(n, 2, "model: keys rewrapped by a root rotation");
                m.root = next;
                if m.root_rotations.is_multiple_of(2) {
                    let n = v
                        .rotate_vault_kek(&maint, &mut |_| {})
                        .unwrap_or_else(|e| panic!("model: rotate_vault_kek failed: {e}"));
                    assert_eq!(n, m.keyed.len() as u64, "model: entries rewrapped");
                }
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
