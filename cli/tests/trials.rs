//! What the third round of new-user and security trials of the command met: `policy
//! show` output that `policy set` could not read back, a closed stdout reported as an
//! error, `audit log` without `--role`, a reject file written through a symbolic link
//! (and world-readable) and an empty file deleted as a "stale reject file", and bare
//! "not found" messages. Oracles: JSON parsed by serde_json from the bytes the command
//! printed, file modes and link targets read back with std::fs, exit codes and stderr
//! as docs/CLI.md states them, inputs written out here.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[allow(dead_code)] // the runner's helpers this file does not use
mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Medvault, PASSPHRASE, code, s, stderr};

/// An administrator under the default clinic policy.
fn admin() -> Medvault {
    Medvault::new()
        .env("MEDVAULT_ACTOR", Some("admin-1"))
        .env("MEDVAULT_PURPOSE", Some("administration"))
        .env("MEDVAULT_ROLES", Some("administration"))
}

/// A vault with the cheapest KDF in a new temporary directory (no policy).
fn vault() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    Medvault::new().init_fast(&vault);
    (tmp, vault)
}

/// `n` small Patients as NDJSON, written by the test (ids p0..p{n-1}).
fn patients(path: &Path, n: usize) -> PathBuf {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            r#"{{"resourceType":"Patient","id":"p{i}","name":[{{"family":"Fam{i}"}}]}}"#
        ));
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

#[test]
fn policy_show_output_feeds_back_into_policy_set() {
    let (tmp, v) = vault();
    let a = admin();
    let file = tmp.path().join("default.json");
    std::fs::write(&file, a.ok(&["policy", "default"])).unwrap();
    a.ok(&["policy", "set", s(&v), s(&file)]);
    // `medvault policy show V > f.json`: stdout alone, parsed as JSON by serde_json.
    let shown = a.run(&["policy", "show", s(&v)]);
    assert_eq!(code(&shown), 0, "{}", stderr(&shown));
    let json: Value = serde_json::from_slice(&shown.stdout)
        .unwrap_or_else(|e| panic!("policy show is not pure JSON ({e})"));
    assert_eq!(json["roles"]["administration"]["capabilities"][0], "policy");
    assert!(
        stderr(&shown).contains("policy version 1"),
        "{}",
        stderr(&shown)
    );
    // `medvault policy set V f.json` takes it back as version 2.
    let f = tmp.path().join("f.json");
    std::fs::write(&f, &shown.stdout).unwrap();
    let set = a.ok(&["policy", "set", s(&v), s(&f)]);
    assert!(set.contains("version 2"), "{set}");
    assert!(stderr(&a.run(&["policy", "show", s(&v)])).contains("policy version 2"));
}

#[test]
fn a_policy_that_locks_everyone_out_is_refused_by_policy_set() {
    let (tmp, v) = vault();
    let a = admin();
    let file = tmp.path().join("default.json");
    std::fs::write(&file, a.ok(&["policy", "default"])).unwrap();
    a.ok(&["policy", "set", s(&v), s(&file)]);
    let mut p: Value = serde_json::from_str(&a.ok(&["policy", "default"])).unwrap();
    p["roles"]["administration"]["capabilities"] = serde_json::json!(["keys", "audit"]);
    let locked = tmp.path().join("locked.json");
    std::fs::write(&locked, p.to_string()).unwrap();
    let out = a.run(&["policy", "set", s(&v), s(&locked)]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("`policy` capability"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&a.run(&["policy", "show", s(&v)])).contains("policy version 1"));
}

/// Runs `medvault ARGS` with stdout a pipe whose reader reads `keep` bytes (0: none)
/// and then closes it, as `| head -c keep` does; returns the exit code and stderr.
fn with_closed_stdout(mv_env: &[(&str, &str)], args: &[&str], keep: usize) -> (i32, String) {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medvault"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MEDVAULT_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("MEDVAULT_PASSPHRASE", PASSPHRASE);
    for (k, val) in mv_env {
        cmd.env(k, val);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The Command held the only other copy of the write end; it is gone with `cmd`.
    drop(cmd);
    let mut first = vec![0; keep];
    reader.read_exact(&mut first).unwrap();
    drop(reader);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().expect("exited, not killed"), err)
}

#[test]
fn a_closed_stdout_ends_every_output_command_quietly_with_exit_0() {
    let (tmp, v) = vault();
    let mv = Medvault::new();
    // 2000 records: an import entry each, so the log and the export are far beyond a
    // pipe's 64 KiB buffer and the command is still writing when the reader leaves.
    let input = patients(&tmp.path().join("p.ndjson"), 2000);
    mv.ok(&["import", s(&v), s(&input)]);
    // RUST_BACKTRACE set, as a debugging operator has it: still not a word on stderr.
    let env = [
        ("MEDVAULT_ACTOR", "auditor"),
        ("MEDVAULT_PURPOSE", "maintenance"),
        ("RUST_BACKTRACE", "1"),
    ];
    let vs = s(&v);
    let cases: [(&[&str], usize); 10] = [
        (&["audit", "log", vs, "--json"], 100),
        (&["audit", "log", vs], 100),
        (&["audit", "export", vs, "--format", "jsonl"], 100),
        (&["audit", "export", vs, "--format", "fhir"], 100),
        (&["export", vs], 100),
        // Small outputs: the reader is gone before the first write.
        (&["audit", "report", vs, "p1", "--format", "json"], 0),
        (&["subjects", vs], 0),
        (&["policy", "default"], 0),
        (&["audit", "checkpoint", vs], 0),
        (&["stats", vs], 0),
    ];
    for (args, keep) in cases {
        let (rc, err) = with_closed_stdout(&env, args, keep);
        assert_eq!(rc, 0, "medvault {args:?}: exit {rc}: {err}");
        assert!(err.is_empty(), "medvault {args:?} said: {err}");
    }
}

#[test]
fn audit_log_takes_role_like_every_other_audit_command() {
    let (tmp, v) = vault();
    let a = admin();
    let file = tmp.path().join("default.json");
    std::fs::write(&file, a.ok(&["policy", "default"])).unwrap();
    a.ok(&["policy", "set", s(&v), s(&file)]);
    // No MEDVAULT_ROLES: the role comes from --role.
    let no_env = Medvault::new().env("MEDVAULT_ROLES", None);
    let args = [
        "audit",
        "log",
        s(&v),
        "--json",
        "--auditor",
        "dpo-1",
        "--auditor-purpose",
        "patient-request",
    ];
    let refused = no_env.run(&args);
    assert_eq!(code(&refused), 6, "{}", stderr(&refused));
    let mut with_role = args.to_vec();
    with_role.extend(["--role", "dpo"]);
    let lines = no_env.ok(&with_role);
    let entries: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        entries.iter().any(|e| e["action"] == "policy_change"),
        "{lines}"
    );
    // The same as other audit commands: the flag is documented in --help.
    let help = Medvault::new().ok(&["audit", "log", "--help"]);
    assert!(help.contains("--role"), "{help}");
}

const BAD: &str = "{not json\n";

#[test]
fn the_reject_file_is_never_written_through_a_symbolic_link_and_is_private() {
    let (tmp, v) = vault();
    let mv = Medvault::new();
    let bad = tmp.path().join("bad.ndjson");
    std::fs::write(&bad, BAD).unwrap();
    // A link at the reject path, to a file of someone else's.
    let target = tmp.path().join("precious.txt");
    std::fs::write(&target, "keep me\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = tmp.path().join("rejects.ndjson");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = mv.run(&["import", s(&v), s(&bad), "--reject-file", s(&link)]);
    assert_ne!(code(&out), 0);
    assert_ne!(code(&out), 7, "rejects were 'written': {}", stderr(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), target);
    // A dangling link is refused too (nothing is created at its target).
    let nowhere = tmp.path().join("nowhere.ndjson");
    let dangling = tmp.path().join("dangling.ndjson");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    let out = mv.run(&["import", s(&v), s(&bad), "--reject-file", s(&dangling)]);
    assert_ne!(code(&out), 7, "{}", stderr(&out));
    assert!(!nowhere.exists());

    // A new reject file, and one written over an old world-readable one: mode 0600.
    let fresh = tmp.path().join("fresh.ndjson");
    let out = mv.run(&["import", s(&v), s(&bad), "--reject-file", s(&fresh)]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&fresh), 0o600);
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = mv.run(&["import", s(&v), s(&bad), "--reject-file", s(&fresh)]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_eq!(mode(&fresh), 0o600);
    let written = std::fs::read_to_string(&fresh).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(written.starts_with(r#"{"resourceType":"OperationOutcome""#));
}

#[test]
fn a_clean_import_deletes_only_a_real_reject_file() {
    let (tmp, v) = vault();
    let mv = Medvault::new();
    let good = patients(&tmp.path().join("good.ndjson"), 1);
    // An empty regular file is anyone's: left alone.
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    mv.ok(&["import", s(&v), s(&good), "--reject-file", s(&empty)]);
    assert!(
        empty.exists(),
        "an empty file given as --reject-file was deleted"
    );
    // A link to a real reject file is left alone too (neither the link nor its target).
    let real = tmp.path().join("real.ndjson");
    std::fs::write(
        &real,
        "{\"resourceType\":\"OperationOutcome\",\"issue\":[]}\n",
    )
    .unwrap();
    let link = tmp.path().join("link.ndjson");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    mv.ok(&["import", s(&v), s(&good), "--reject-file", s(&link)]);
    assert!(real.exists() && std::fs::symlink_metadata(&link).is_ok());
    // The real reject file itself, named directly, is removed.
    let summary = mv.ok(&["import", s(&v), s(&good), "--reject-file", s(&real)]);
    assert!(!real.exists(), "{summary}");
}

#[test]
fn research_object_names_the_missing_subject() {
    let (_tmp, v) = vault();
    let out = Medvault::new()
        .env("MEDVAULT_PURPOSE", Some("patient-request"))
        .run(&["research", "object", s(&v), "nonexist"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("nonexist"), "{}", stderr(&out));
}

#[test]
fn closing_a_closed_review_says_it_is_closed_by_whom() {
    let (tmp, v) = vault();
    let a = admin();
    let file = tmp.path().join("default.json");
    std::fs::write(&file, a.ok(&["policy", "default"])).unwrap();
    a.ok(&["policy", "set", s(&v), s(&file)]);
    let vs = s(&v);
    let care = Medvault::new()
        .env("MEDVAULT_ACTOR", Some("dr-er"))
        .env("MEDVAULT_PURPOSE", Some("emergency"))
        .env("MEDVAULT_ROLES", Some("care"))
        .env("MEDVAULT_REASON", Some("code blue"));
    let rec = br#"{"resourceType":"Patient","id":"p1"}"#;
    let put = care.run_with_stdin(&["put", vs, "p1", "Patient", "p1"], rec);
    assert_eq!(code(&put), 0, "{}", stderr(&put));
    let queue = a.ok(&["audit", "review", vs, "--json"]);
    let item: Value = serde_json::from_str(queue.lines().next().unwrap()).unwrap();
    let seq = item["seq"].as_u64().unwrap().to_string();
    let close = [
        "audit",
        "review",
        vs,
        "--close",
        &seq,
        "--verdict",
        "justified",
    ];
    a.ok(&close);
    let again = a.run(&close);
    assert_eq!(code(&again), 5, "{}", stderr(&again));
    let err = stderr(&again);
    assert!(
        err.contains("already closed") && err.contains("admin-1") && err.contains("justified"),
        "{err}"
    );
    // A sequence number that never was a break-the-glass access says so.
    let never = a.run(&[
        "audit",
        "review",
        vs,
        "--close",
        "1",
        "--verdict",
        "justified",
    ]);
    assert_eq!(code(&never), 5);
    assert!(
        stderr(&never).contains("not a pending"),
        "{}",
        stderr(&never)
    );
}
