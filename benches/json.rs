//! Criterion benches of exact JSON (`medvault::json`), on the import and read hot paths:
//! parsing minified NDJSON lines (compact input is taken as it is) and an indented
//! Bundle (whitespace removed), building the tree, splitting the top-level members and
//! joining them back; serde_json's `Value` parse of the same bytes as a yardstick.
//! Input: ../shared/data (Synthea DocumentReference and Encounter lines, an HL7 Bundle)
//! when present, otherwise a synthetic resource.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medvault::json::JsonText;

fn load(rel: &str) -> Option<Vec<u8>> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data")
            .join(rel),
    )
    .ok()
}

fn synthetic() -> Vec<u8> {
    let mut s = String::from(r#"{"resourceType":"Encounter","id":"e-1","entry":["#);
    for i in 0..200 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"code":"c{i}","value":{i}.50,"note":"caf\u00e9 \"{i}\"","when":"2024-01-01T00:00:00Z"}}"#
        ));
    }
    s.push_str("]}");
    s.into_bytes()
}

/// Lines of an NDJSON file (up to `max`), or the synthetic resource.
fn lines(rel: &str, max: usize) -> Vec<Vec<u8>> {
    match load(rel) {
        Some(b) => b
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .take(max)
            .map(<[u8]>::to_vec)
            .collect(),
        None => vec![synthetic()],
    }
}

fn bench_set(c: &mut Criterion, name: &str, inputs: &[Vec<u8>]) {
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group(format!("json/{name}"));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for i in inputs {
                black_box(JsonText::parse(black_box(i)).ok());
            }
        })
    });
    let texts: Vec<JsonText> = inputs
        .iter()
        .filter_map(|i| JsonText::parse(i).ok())
        .collect();
    g.bench_function("tree", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(t.tree());
            }
        })
    });
    g.bench_function("members+join", |b| {
        b.iter(|| {
            for t in &texts {
                if let Ok(m) = t.members() {
                    black_box(JsonText::from_members(m.map(|(n, v)| (n.raw(), v))).ok());
                }
            }
        })
    });
    g.bench_function("serde_json_value_parse", |b| {
        b.iter(|| {
            for i in inputs {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(i)).ok());
            }
        })
    });
    g.finish();
}

fn ndjson(c: &mut Criterion) {
    let docs = lines(
        "fhir-r4-ndjson/13-patients/DocumentReference.000.ndjson",
        200,
    );
    bench_set(c, "ndjson_documentreference", &docs);
    let enc = lines("fhir-r4-ndjson/13-patients/Encounter.000.ndjson", 500);
    bench_set(c, "ndjson_encounter", &enc);
}

fn bundle(c: &mut Criterion) {
    let b = load("fhir-r4-external/bundles/hl7-r4-examples__Bundle-bundle-example.json")
        .map(|b| medvault::json::strip_bom(&b).to_vec())
        .unwrap_or_else(synthetic);
    bench_set(c, "indented_bundle", &[b]);
}

criterion_group!(benches, ndjson, bundle);
criterion_main!(benches);
