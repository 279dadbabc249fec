//! The `medvault-verify` command: exit 0 and an `OK` line when everything verifies, exit 1
//! with `FAILED` and the reason when a check fails, exit 2 when an input cannot be read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failure report

use std::path::Path;
use std::process::{Command, Output};

use ed25519_dalek::SigningKey;
use medvault_verify::{
    Checkpoint, MemoryTree, VaultId, leaf_hash, prove_consistency, prove_inclusion,
};

const BIN: &str = env!("CARGO_BIN_EXE_medvault-verify");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn entry(i: u64) -> Vec<u8> {
    format!("sealed entry {i}").into_bytes()
}

struct Fixture {
    dir: tempfile::TempDir,
    vkey: String,
}

impl Fixture {
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[42; 32]);
    let vault = VaultId([0xab; 16]);
    let mut t = MemoryTree::new();
    for i in 0..10 {
        t.push(leaf_hash(&entry(i))).unwrap();
    }
    let cp = |size: u64| Checkpoint {
        vault_id: vault,
        tree_size: size,
        root: t.root_at(size).unwrap(),
        time: 1_796_000_000 + size,
    };
    let d = dir.path();
    write(d, "old.cp", cp(4).sign(&key).unwrap());
    write(d, "new.cp", cp(10).sign(&key).unwrap());
    write(d, "entry6", entry(6));
    write(d, "entry7", entry(7));
    let incl = prove_inclusion(&t, 6, 10).unwrap();
    write(d, "incl.proof", incl.to_text(&leaf_hash(&entry(6))));
    write(
        d,
        "cons.proof",
        prove_consistency(&t, 4, 10).unwrap().to_text(),
    );
    let vkey = Checkpoint::verifier_key(vault, &key).unwrap().to_string();
    write(d, "vkey", format!("{vkey}\n"));
    Fixture { dir, vkey }
}

fn assert_ok(o: &Output, starts: &str) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.starts_with(starts), "{out}");
}

fn assert_failed(o: &Output, code: i32, says: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(says), "stderr: {err}");
}

#[test]
fn everything_verifies() {
    let f = fixture();
    let o = run(&["checkpoint", "--key", &f.vkey, &f.p("new.cp")]);
    assert_ok(
        &o,
        &format!("OK checkpoint vault {} size 10 root ", "ab".repeat(16)),
    );
    let o = run(&["checkpoint", "--key-file", &f.p("vkey"), &f.p("old.cp")]);
    assert_ok(&o, "OK checkpoint");
    let o = run(&[
        "inclusion",
        "--key",
        &f.vkey,
        "--checkpoint",
        &f.p("new.cp"),
        "--proof",
        &f.p("incl.proof"),
        "--entry",
        &f.p("entry6"),
    ]);
    assert_ok(&o, "OK inclusion of entry 6 in vault");
    let o = run(&[
        "consistency",
        "--key",
        &f.vkey,
        "--old",
        &f.p("old.cp"),
        "--new",
        &f.p("new.cp"),
        "--proof",
        &f.p("cons.proof"),
    ]);
    assert_ok(&o, "OK consistency:");
}

#[test]
fn failures_exit_non_zero_with_the_reason() {
    let f = fixture();
    let d = f.dir.path();
    // A tampered checkpoint (tree size changed).
    let cp = std::fs::read_to_string(d.join("new.cp")).unwrap();
    write(d, "bad.cp", cp.replacen("\n10\n", "\n11\n", 1));
    let o = run(&["checkpoint", "--key", &f.vkey, &f.p("bad.cp")]);
    assert_failed(&o, 1, "FAILED");
    assert_failed(&o, 1, "signature");

    // The wrong entry for the proof.
    let o = run(&[
        "inclusion",
        "--key",
        &f.vkey,
        "--checkpoint",
        &f.p("new.cp"),
        "--proof",
        &f.p("incl.proof"),
        "--entry",
        &f.p("entry7"),
    ]);
    assert_failed(&o, 1, "leaf hash");

    // The inclusion proof against a checkpoint of another size.
    let o = run(&[
        "inclusion",
        "--key",
        &f.vkey,
        "--checkpoint",
        &f.p("old.cp"),
        "--proof",
        &f.p("incl.proof"),
    ]);
    assert_failed(&o, 1, "tree size");

    // One changed hash byte in the consistency proof.
    let proof = std::fs::read_to_string(d.join("cons.proof")).unwrap();
    let last = proof.trim_end().rsplit('\n').next().unwrap().to_owned();
    let flipped = if last.starts_with('A') {
        last.replacen('A', "B", 1)
    } else {
        format!("A{}", &last[1..])
    };
    write(d, "bad.proof", proof.replace(&last, &flipped));
    let o = run(&[
        "consistency",
        "--key",
        &f.vkey,
        "--old",
        &f.p("old.cp"),
        "--new",
        &f.p("new.cp"),
        "--proof",
        &f.p("bad.proof"),
    ]);
    assert_failed(&o, 1, "consistency");

    // Old and new swapped.
    let o = run(&[
        "consistency",
        "--key",
        &f.vkey,
        "--old",
        &f.p("new.cp"),
        "--new",
        &f.p("old.cp"),
        "--proof",
        &f.p("cons.proof"),
    ]);
    assert_failed(&o, 1, "FAILED");

    // A key of another vault.
    let other = Checkpoint::verifier_key(VaultId([1; 16]), &SigningKey::from_bytes(&[42; 32]))
        .unwrap()
        .to_string();
    let o = run(&["checkpoint", "--key", &other, &f.p("new.cp")]);
    assert_failed(&o, 1, "FAILED");

    // A malformed key and a missing file.
    let o = run(&["checkpoint", "--key", "nonsense", &f.p("new.cp")]);
    assert_failed(&o, 1, "key");
    let o = run(&["checkpoint", "--key", &f.vkey, &f.p("absent.cp")]);
    assert_failed(&o, 2, "cannot read input");
}
