//! The tree's proofs against test vectors others wrote: transparency-dev's inclusion and
//! consistency vectors (RFC 9162 trees), read from `../shared/data/rfc9162-vectors`
//! relative to the repository root. Every happy case must verify, every `wantErr` case be
//! rejected; for happy cases over the RFC 6962 test leaves, our prover must also produce
//! exactly the vector's proof. Skipped (with a notice) when the data is absent, failing
//! under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use medvault_verify::{
    MemoryTree, leaf_hash, prove_consistency, prove_inclusion, verify_consistency, verify_inclusion,
};
use serde_json::Value;

fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..") // repository root
        .join("../shared/data/rfc9162-vectors");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data missing under CI: {}", dir.display());
    }
    eprintln!("SKIPPED: {} is absent", dir.display());
    None
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn b64(v: &Value) -> Vec<u8> {
    Base64::decode_vec(v.as_str().unwrap()).unwrap()
}

fn proof(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().map(b64).collect(),
        _ => panic!("proof is neither null nor an array"),
    }
}

/// The RFC 6962 test leaves the vectors' trees are built from (transparency-dev
/// `testonly.LeafInputs`, see tests/published.rs).
fn rfc6962_tree() -> MemoryTree {
    let leaves: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let mut t = MemoryTree::new();
    for l in leaves {
        t.push(leaf_hash(l)).unwrap();
    }
    t
}

#[test]
fn inclusion_vectors() {
    let Some(dir) = data_dir() else { return };
    let tree = rfc6962_tree();
    let (mut happy, mut rejected, mut regenerated) = (0, 0, 0);
    for path in json_files(&dir.join("inclusion")) {
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let (idx, size) = (
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
        );
        let (root, leaf, p) = (b64(&v["root"]), b64(&v["leafHash"]), proof(&v["proof"]));
        let result = verify_inclusion(idx, size, &leaf, &p, &root);
        if v["wantErr"].as_bool().unwrap() {
            assert!(result.is_err(), "accepted {}", path.display());
            rejected += 1;
        } else {
            result.unwrap_or_else(|e| panic!("rejected {}: {e}", path.display()));
            happy += 1;
            if size <= tree.size() && tree.root_at(size).unwrap().as_slice() == root {
                let ours = prove_inclusion(&tree, idx, size).unwrap();
                assert_eq!(
                    ours.hashes.iter().map(|h| h.to_vec()).collect::<Vec<_>>(),
                    p
                );
                regenerated += 1;
            }
        }
    }
    eprintln!(
        "inclusion vectors: {happy} verified, {rejected} rejected, {regenerated} regenerated"
    );
    assert!(happy >= 5 && rejected >= 50 && regenerated >= 4);
}

#[test]
fn consistency_vectors() {
    let Some(dir) = data_dir() else { return };
    let tree = rfc6962_tree();
    let (mut happy, mut rejected, mut regenerated) = (0, 0, 0);
    for path in json_files(&dir.join("consistency")) {
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let (s1, s2) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        let (r1, r2, p) = (b64(&v["root1"]), b64(&v["root2"]), proof(&v["proof"]));
        let result = verify_consistency(s1, s2, &p, &r1, &r2);
        if v["wantErr"].as_bool().unwrap() {
            assert!(result.is_err(), "accepted {}", path.display());
            rejected += 1;
        } else {
            result.unwrap_or_else(|e| panic!("rejected {}: {e}", path.display()));
            happy += 1;
            if s2 <= tree.size()
                && tree.root_at(s1).unwrap().as_slice() == r1
                && tree.root_at(s2).unwrap().as_slice() == r2
            {
                let ours = prove_consistency(&tree, s1, s2).unwrap();
                assert_eq!(
                    ours.hashes.iter().map(|h| h.to_vec()).collect::<Vec<_>>(),
                    p
                );
                regenerated += 1;
            }
        }
    }
    eprintln!(
        "consistency vectors: {happy} verified, {rejected} rejected, {regenerated} regenerated"
    );
    assert!(happy >= 5 && rejected >= 50 && regenerated >= 4);
}
