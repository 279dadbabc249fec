//! Guards the record API against an in-memory model (issue 2, acceptance 1): any
//! sequence of put / get / get_fields / delete / records_of / erase / readmit / reopen
//! gives the answers of a `BTreeMap`, on memory storage, on sled and on PostgreSQL (when
//! `MEDVAULT_TEST_PG` names a server; issue 17 acceptance 1). Erased subjects are
//! remembered: a put for one is refused until it is re-admitted.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::{ctx, options, raw_key};
use medvault::storage::MemoryStorage;
use medvault::{Error, RecordKey, Vault};
use medvault_postgres::PgTarget;
use medvault_postgres::testdb::TestServer;
use proptest::prelude::*;
use serde_json::{Map, Value};

#[derive(Clone, Debug)]
enum Op {
    Put(RecordKey, Map<String, Value>),
    Get(RecordKey),
    GetFields(RecordKey, Vec<String>),
    Delete(RecordKey),
    RecordsOf(String, Option<String>),
    Erase(String),
    Readmit(String),
    Reopen,
}

// Small sets, so that keys, subjects and field names collide.
const SUBJECTS: [&str; 3] = ["alice", "bob", "zoë"];
const COLLECTIONS: [&str; 2] = ["Observation", "Condition"];
const IDS: [&str; 3] = ["1", "2", "x-3"];
const FIELDS: [&str; 7] = ["a", "b", "code", "value", "名前", "deceasedDateTime", ""];

fn subject() -> impl Strategy<Value = String> {
    prop::sample::select(&SUBJECTS[..]).prop_map(str::to_owned)
}

fn record_key() -> impl Strategy<Value = RecordKey> {
    (
        subject(),
        prop::sample::select(&COLLECTIONS[..]),
        prop::sample::select(&IDS[..]),
    )
        .prop_map(|(s, c, i)| RecordKey::new(s, c, i))
}

fn field_name() -> impl Strategy<Value = String> {
    prop::sample::select(&FIELDS[..]).prop_map(str::to_owned)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn document() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(field_name(), json_value(), 1..=5)
        .prop_map(|m| m.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (record_key(), document()).prop_map(|(k, d)| Op::Put(k, d)),
        3 => record_key().prop_map(Op::Get),
        3 => (record_key(), prop::collection::vec(field_name(), 0..4))
            .prop_map(|(k, f)| Op::GetFields(k, f)),
        2 => record_key().prop_map(Op::Delete),
        2 => (subject(), prop::option::of(prop::sample::select(&COLLECTIONS[..])))
            .prop_map(|(s, c)| Op::RecordsOf(s, c.map(str::to_owned))),
        1 => subject().prop_map(Op::Erase),
        1 => subject().prop_map(Op::Readmit),
        1 => Just(Op::Reopen),
    ]
}

/// Where a vault lives, so that it can be reopened over the same bytes.
enum Backend {
    Memory(MemoryStorage),
    Sled(PathBuf),
    Postgres(Box<(TestServer, PgTarget)>),
}

impl Backend {
    fn create(&self) -> Vault {
        match self {
            Backend::Memory(s) => Vault::create_in(Box::new(s.clone()), raw_key(), options()),
            Backend::Sled(p) => Vault::create_with(p, raw_key(), options()),
            Backend::Postgres(b) => {
                let (srv, t) = b.as_ref();
                Vault::create_in(Box::new(srv.create(t).unwrap()), raw_key(), options())
            }
        }
        .unwrap()
    }

    fn open(&self) -> Vault {
        match self {
            Backend::Memory(s) => Vault::open_in(Box::new(s.clone()), raw_key(), options()),
            Backend::Sled(p) => Vault::open_with(p, raw_key(), options()),
            Backend::Postgres(b) => {
                let (srv, t) = b.as_ref();
                Vault::open_in(Box::new(srv.open(t).unwrap()), raw_key(), options())
            }
        }
        .unwrap()
    }
}

/// Runs `ops` against a vault on `backend` and against the model, comparing every answer.
fn run(backend: &Backend, ops: &[Op]) {
    let c = ctx();
    let mut vault = Some(backend.create());
    let mut model: BTreeMap<RecordKey, Map<String, Value>> = BTreeMap::new();
    let mut subjects: BTreeSet<String> = BTreeSet::new();
    let mut erased: BTreeSet<String> = BTreeSet::new();
    for (step, op) in ops.iter().enumerate() {
        let v = vault.as_ref().unwrap();
        let at = format!("step {step}: {op:?}");
        match op {
            Op::Put(k, d) => {
                let got = v.put(&c, k, d);
                if erased.contains(&k.subject) {
                    assert!(matches!(got, Err(Error::SubjectErased)), "{at}: {got:?}");
                } else {
                    got.unwrap();
                    model.insert(k.clone(), d.clone());
                    subjects.insert(k.subject.clone());
                }
            }
            Op::Get(k) => {
                let got = v.get::<Value>(&c, k);
                match model.get(k) {
                    Some(d) => assert_eq!(got.unwrap(), Value::Object(d.clone()), "{at}"),
                    None => assert!(matches!(got, Err(Error::NotFound)), "{at}: {got:?}"),
                }
            }
            Op::GetFields(k, names) => {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let got = v.get_fields::<Value>(&c, k, &refs);
                match model.get(k) {
                    Some(d) => {
                        let want: Map<String, Value> = d
                            .iter()
                            .filter(|(n, _)| names.contains(n))
                            .map(|(n, x)| (n.clone(), x.clone()))
                            .collect();
                        assert_eq!(got.unwrap(), Value::Object(want), "{at}");
                    }
                    None => assert!(matches!(got, Err(Error::NotFound)), "{at}: {got:?}"),
                }
            }
            Op::Delete(k) => {
                let got = v.delete(&c, k);
                match model.remove(k) {
                    Some(_) => got.unwrap(),
                    None => assert!(matches!(got, Err(Error::NotFound)), "{at}: {got:?}"),
                }
            }
            Op::RecordsOf(s, coll) => {
                let mut got = v.records_of::<Value>(&c, s, coll.as_deref()).unwrap();
                got.sort_by(|a, b| a.0.cmp(&b.0));
                let want: Vec<(RecordKey, Value)> = model
                    .iter()
                    .filter(|(k, _)| {
                        k.subject == *s && coll.as_ref().is_none_or(|c| *c == k.collection)
                    })
                    .map(|(k, d)| (k.clone(), Value::Object(d.clone())))
                    .collect();
                assert_eq!(got, want, "{at}");
            }
            Op::Erase(s) => {
                let got = v.erase_subject(&c, s);
                let n = model.keys().filter(|k| k.subject == *s).count() as u64;
                if subjects.remove(s) {
                    assert_eq!(got.unwrap(), n, "{at}");
                    model.retain(|k, _| k.subject != *s);
                    erased.insert(s.clone());
                } else {
                    assert!(matches!(got, Err(Error::NotFound)), "{at}: {got:?}");
                }
            }
            Op::Readmit(s) => {
                let got = v.readmit_subject(&c, s, "the patient came back");
                if erased.remove(s) {
                    got.unwrap();
                } else {
                    assert!(matches!(got, Err(Error::NotFound)), "{at}: {got:?}");
                }
            }
            Op::Reopen => {
                drop(vault.take());
                vault = Some(backend.open());
            }
        }
    }
    let v = vault.unwrap();
    let listed: BTreeSet<String> = v.subjects(&c).unwrap().into_iter().collect();
    assert_eq!(listed, subjects, "subjects() after the sequence");
    for s in SUBJECTS {
        assert_eq!(
            v.is_erased(&c, s).unwrap(),
            erased.contains(s),
            "is_erased({s})"
        );
    }
    assert_eq!(v.erased_subjects(&c).unwrap().len(), erased.len());
    assert_eq!(v.stats().unwrap().records, model.len() as u64);
    v.verify(&c, None).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_vault_behaves_like_a_btreemap(ops in prop::collection::vec(op(), 1..40)) {
        run(&Backend::Memory(MemoryStorage::new()), &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn sled_vault_behaves_like_a_btreemap(ops in prop::collection::vec(op(), 1..25)) {
        let tmp = tempfile::tempdir().unwrap();
        run(&Backend::Sled(tmp.path().join("v")), &ops);
    }
}

/// The same sequences on PostgreSQL, one fresh schema per case (dropped after it).
#[test]
#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL (MEDVAULT_TEST_PG unset)")]
fn postgres_vault_behaves_like_a_btreemap() {
    let Some(srv) = medvault_postgres::testdb::server().unwrap() else {
        return;
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 16,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..25), |ops| {
            let t = srv.fresh();
            let backend = Backend::Postgres(Box::new((srv.clone(), t.clone())));
            run(&backend, &ops);
            srv.drop_vault(&t).unwrap();
            Ok(())
        })
        .unwrap();
}
