//! `medvault audit checkpoint --signed --append/--exec`, `audit key`, `audit prove`
//! (issue 18): the files they write are what docs/VERIFY.md describes and what
//! `medvault-verify` accepts. Checked with the medvault-verify library and, when the
//! workspace build has made it (`cargo test --workspace`), its binary too.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[allow(dead_code)] // the runner's helpers this file does not use
mod support;

use std::path::{Path, PathBuf};

use medvault_verify::{Checkpoint, ConsistencyProof, InclusionProof, VerifierKey, leaf_hash};
use support::{Medvault, s};

/// The `medvault-verify` binary beside `medvault`, when the build made it.
fn verifier_binary() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_BIN_EXE_medvault")).with_file_name("medvault-verify");
    p.exists().then_some(p)
}

fn verify_bin(args: &[&str]) -> Option<String> {
    let bin = verifier_binary()?;
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "medvault-verify {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn signed_checkpoints_are_witnessed_and_proofs_verify() {
    let mv = Medvault::new();
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    let v = s(&vault);
    mv.init_fast(&vault);
    for i in 0..3 {
        mv.run_with_stdin(
            &["put", v, &format!("p{i}"), "Patient", &format!("p{i}")],
            br#"{"resourceType":"Patient"}"#,
        );
    }
    let witness = tmp.path().join("witness.log");
    let shipped = tmp.path().join("shipped.txt");
    let first = mv.ok(&[
        "audit",
        "checkpoint",
        v,
        "--append",
        s(&witness),
        "--exec",
        &format!("cat > '{}'", shipped.display()),
    ]);
    assert_eq!(std::fs::read_to_string(&shipped).unwrap(), first);
    let key = mv.ok(&["audit", "key", v]);
    let key_file = tmp.path().join("vault.vkey");
    std::fs::write(&key_file, &key).unwrap();
    let vk = VerifierKey::parse(key.trim_end()).unwrap();
    let c1 = Checkpoint::open(&first, &vk).unwrap();

    mv.run_with_stdin(&["put", v, "p9", "Patient", "p9"], b"{}");
    let second = mv.ok(&[
        "audit",
        "checkpoint",
        v,
        "--signed",
        "--append",
        s(&witness),
    ]);
    let c2 = Checkpoint::open(&second, &vk).unwrap();
    // The witness file holds both notes, one after the other, as issued.
    assert_eq!(
        std::fs::read_to_string(&witness).unwrap(),
        format!("{first}{second}")
    );
    // Without --signed the MAC token is unchanged.
    assert!(mv.ok(&["audit", "checkpoint", v]).starts_with("mvcp1:"));

    let consistency = mv.ok(&[
        "audit",
        "prove",
        v,
        "--from",
        &c1.tree_size.to_string(),
        "--to",
        &c2.tree_size.to_string(),
    ]);
    c1.verify_extends(&c2, &ConsistencyProof::from_text(&consistency).unwrap())
        .unwrap();
    let entry_file = tmp.path().join("entry.bin");
    let inclusion = mv.ok(&[
        "audit",
        "prove",
        v,
        "--entry",
        "2",
        "--size",
        &c2.tree_size.to_string(),
        "--entry-out",
        s(&entry_file),
    ]);
    let (p, leaf) = InclusionProof::from_text(&inclusion).unwrap();
    assert_eq!(leaf, leaf_hash(&std::fs::read(&entry_file).unwrap()));
    p.verify(&leaf, &c2.root).unwrap();

    // The same files through the standalone binary.
    let files = [
        ("cp1", &first),
        ("cp2", &second),
        ("con", &consistency),
        ("inc", &inclusion),
    ];
    for (n, t) in files {
        std::fs::write(tmp.path().join(n), t).unwrap();
    }
    let f = |n: &str| tmp.path().join(n).display().to_string();
    let kf = s(&key_file);
    if let Some(out) = verify_bin(&[
        "consistency",
        "--key-file",
        kf,
        "--old",
        &f("cp1"),
        "--new",
        &f("cp2"),
        "--proof",
        &f("con"),
    ]) {
        assert!(out.starts_with("OK consistency"), "{out}");
        let out = verify_bin(&[
            "inclusion",
            "--key-file",
            kf,
            "--checkpoint",
            &f("cp2"),
            "--proof",
            &f("inc"),
            "--entry",
            s(&entry_file),
        ])
        .unwrap();
        assert!(out.starts_with("OK inclusion of entry 2"), "{out}");
    } else {
        eprintln!("medvault-verify binary not built: checked with its library only");
    }

    // After a root-key rotation, --all lists the old key as retired.
    let rotated = Medvault::new().env("MEDVAULT_NEW_PASSPHRASE", Some(support::PASSPHRASE_2));
    let mut args = vec!["rotate", "root", v];
    args.extend_from_slice(&support::FAST_KDF);
    rotated.ok(&args);
    let mv2 = Medvault::new().env("MEDVAULT_PASSPHRASE", Some(support::PASSPHRASE_2));
    let all = mv2.ok(&["audit", "key", v, "--all"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2, "{all}");
    assert_eq!(lines[0], format!("1 retired {}", key.trim_end()));
    assert!(lines[1].starts_with("2 current medvault/"), "{all}");

    // An auditor links checkpoints across the rotation (found by the new-user trial:
    // medvault-verify took one key, so cp2, signed before the rotation, and cp3, after,
    // could not be checked together): both published keys are given.
    let cp3 = mv2.ok(&["audit", "checkpoint", v, "--signed"]);
    std::fs::write(tmp.path().join("cp3"), &cp3).unwrap();
    let size2 = std::fs::read_to_string(tmp.path().join("cp2"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let size3 = cp3.lines().nth(1).unwrap().to_owned();
    let con = mv2.ok(&["audit", "prove", v, "--from", &size2, "--to", &size3]);
    std::fs::write(tmp.path().join("con23"), &con).unwrap();
    let new_key = mv2.ok(&["audit", "key", v]);
    std::fs::write(tmp.path().join("new.vkey"), &new_key).unwrap();
    if let Some(out) = verify_bin(&[
        "consistency",
        "--key-file",
        kf,
        "--key-file",
        &f("new.vkey"),
        "--old",
        &f("cp2"),
        "--new",
        &f("cp3"),
        "--proof",
        &f("con23"),
    ]) {
        assert!(out.starts_with("OK consistency"), "{out}");
        // With the new key alone, the checkpoint from before the rotation is refused.
        let bin = verifier_binary().unwrap();
        let out = std::process::Command::new(bin)
            .args([
                "consistency",
                "--key-file",
                &f("new.vkey"),
                "--old",
                &f("cp2"),
                "--new",
                &f("cp3"),
                "--proof",
                &f("con23"),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn a_failing_exec_fails_the_command() {
    let mv = Medvault::new();
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    mv.init_fast(&vault);
    let out = mv.run(&["audit", "checkpoint", s(&vault), "--exec", "exit 3"]);
    assert_eq!(support::code(&out), 1, "{}", support::stderr(&out));
    assert!(support::stderr(&out).contains("--exec"));
}
