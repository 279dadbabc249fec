//! What new-user trials of the command met (issue 21's operator items, second round):
//! open warnings shown, import summaries that name what they skipped and count a
//! re-import honestly, forged headers reported as integrity failures, plain subject ids,
//! no stale reject file, errors that name the record, a usage error for `--fields`
//! alone. Oracles: inputs and expectations written out here (file names, line numbers,
//! counts the test knows it wrote), raw header bytes with the checksum recomputed by
//! SHA-256 as a tamperer would, and the access log read back as JSON Lines.
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[path = "../../tests/common/mod.rs"]
mod common;
#[allow(dead_code)] // the runner's helpers this file does not use
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use support::{Medvault, code, one_error_line as error_line, s, stderr, stdout};

const PA: &str =
    r#"{"resourceType":"Patient","id":"pa","name":[{"family":"Okafor"}],"birthDate":"1970-01-01"}"#;
const PB: &str =
    r#"{"resourceType":"Patient","id":"pb","name":[{"family":"Lind"}],"birthDate":"1981-02-03"}"#;
const PB_CHANGED: &str =
    r#"{"resourceType":"Patient","id":"pb","name":[{"family":"Lind"}],"birthDate":"1981-02-04"}"#;
const OBS: &str = r#"{"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/pa"}}"#;

fn write_lines(path: &Path, lines: &[&str]) -> PathBuf {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// A vault with the cheapest KDF in a new temporary directory.
fn vault() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    Medvault::new().init_fast(&vault);
    (tmp, vault)
}

/// The `import` entries of the access log (`audit log --json`, one JSON object a line).
/// Only those naming a record (writes): an import's `unchanged=K` note names none.
fn import_entries(mv: &Medvault, vault: &Path) -> usize {
    mv.ok(&["audit", "log", s(vault), "--action", "import", "--json"])
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["action"] == "import" && !v["subject_pseudonym"].is_null()
        })
        .count()
}

#[test]
fn open_warnings_of_the_vault_are_shown_on_stderr() {
    let (_tmp, vault) = vault();
    let mv = Medvault::new();
    // What a umask-022 copy (`cp -r` by another tool) leaves: readable by others.
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(vault.join("header"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = mv.run(&["stats", s(&vault)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("medvault: warning: "))
        .collect();
    // One warning per exposed entry, each naming it and its mode (0755, 0644).
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("{} is accessible", s(&vault))) && w.contains("755")),
        "{err}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("header is accessible") && w.contains("644")),
        "{err}"
    );
    // An owner-only vault draws none.
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(vault.join("header"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = mv.run(&["stats", s(&vault)]);
    assert!(!stderr(&out).contains("accessible"), "{}", stderr(&out));
}

#[test]
fn import_summary_names_each_file_and_line_it_skipped() {
    let (tmp, vault) = vault();
    let mv = Medvault::new();
    // Line 2 and line 4 of a.ndjson are valid JSON but no resource (a Bulk Data log
    // line has no resourceType); b.ndjson has none.
    let a = write_lines(
        &tmp.path().join("a.ndjson"),
        &[PA, r#"{"kind":"log"}"#, PB, r#"{"kind":"log"}"#],
    );
    let b = write_lines(&tmp.path().join("b.ndjson"), &[OBS]);
    let summary = mv.ok(&["import", s(&vault), s(&a), s(&b)]);
    assert!(summary.contains("from 2 files ("), "{summary}");
    assert!(summary.contains("skipped 2"), "{summary}");
    // The skipped positions are named with their file.
    let skip_lines: Vec<&str> = summary.lines().filter(|l| l.contains("a.ndjson")).collect();
    assert!(
        skip_lines
            .iter()
            .any(|l| l.contains("lines 2, 4") || (l.contains("line 2") && l.contains("line 4"))),
        "{summary}"
    );
    assert!(
        !summary.contains("b.ndjson"),
        "b.ndjson skipped nothing: {summary}"
    );

    // One file: singular, and a size in bytes, not "(0.0 MiB)".
    let one = mv.ok(&["import", s(&vault), s(&b)]);
    assert!(one.contains("from 1 file ("), "{one}");
    let size = OBS.len() + 1;
    assert!(one.contains(&format!("({size} B)")), "{one}");
    // --json names them too.
    let json: serde_json::Value =
        serde_json::from_str(&mv.ok(&["import", s(&vault), s(&a), "--json"])).unwrap();
    let skips = json["skipped_in"].as_array().unwrap();
    assert_eq!(skips.len(), 1, "{json}");
    assert_eq!(skips[0]["file"], s(&a));
    assert_eq!(skips[0]["count"], 2);
}

#[test]
fn reimport_counts_unchanged_and_replaced_not_created() {
    let (tmp, vault) = vault();
    let mv = Medvault::new();
    let input = write_lines(&tmp.path().join("in.ndjson"), &[PA, PB, OBS]);
    let first = mv.ok(&["import", s(&vault), s(&input)]);
    assert!(first.contains("created 3, "), "{first}");
    assert_eq!(import_entries(&mv, &vault), 3);

    // The same file again: nothing created, nothing written.
    let again = mv.ok(&["import", s(&vault), s(&input)]);
    assert!(again.contains("created 0, "), "{again}");
    assert!(again.contains("unchanged 3"), "{again}");
    assert_eq!(
        import_entries(&mv, &vault),
        3,
        "unchanged records are not rewritten"
    );

    // One resource changed: it replaces the stored one, the others are unchanged.
    let changed = write_lines(&tmp.path().join("in2.ndjson"), &[PA, PB_CHANGED, OBS]);
    let json: serde_json::Value =
        serde_json::from_str(&mv.ok(&["import", s(&vault), s(&changed), "--json"])).unwrap();
    assert_eq!(json["created"], 0, "{json}");
    assert_eq!(json["replaced"], 1, "{json}");
    assert_eq!(json["unchanged"], 2, "{json}");
    assert_eq!(import_entries(&mv, &vault), 4);
    let pb = mv.ok(&["get", s(&vault), "pb", "Patient", "pb"]);
    assert_eq!(pb.trim_end(), PB_CHANGED);
}

/// Under the default policy the importer role (`integration`) may write but not read: a
/// re-import still counts unchanged, writes nothing and logs no denial (the vault
/// compares inside the write). Oracle: the counts the test knows it wrote, and the
/// access log read back by an administrator.
#[test]
fn a_write_only_reimport_counts_unchanged_without_a_denial() {
    let (tmp, vault) = vault();
    let admin = Medvault::new()
        .env("MEDVAULT_ACTOR", Some("admin-1"))
        .env("MEDVAULT_PURPOSE", Some("administration"))
        .env("MEDVAULT_ROLES", Some("administration"));
    let policy = tmp.path().join("policy.json");
    std::fs::write(&policy, admin.ok(&["policy", "default"])).unwrap();
    admin.ok(&["policy", "set", s(&vault), s(&policy)]);
    let etl = Medvault::new();
    let input = write_lines(&tmp.path().join("in.ndjson"), &[PA, PB, OBS]);
    let args = [
        "import",
        s(&vault),
        s(&input),
        "--actor",
        "int-1",
        "--purpose",
        "maintenance",
        "--role",
        "integration",
    ];
    let first = etl.ok(&args);
    assert!(
        first.contains("created 3, replaced 0, unchanged 0"),
        "{first}"
    );
    for _ in 0..2 {
        let again = etl.ok(&args);
        assert!(
            again.contains("created 0, replaced 0, unchanged 3"),
            "{again}"
        );
    }
    let log: Vec<serde_json::Value> = admin
        .ok(&["audit", "log", s(&vault), "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let int: Vec<&serde_json::Value> = log.iter().filter(|e| e["actor"] == "int-1").collect();
    let written = int
        .iter()
        .filter(|e| e["action"] == "import" && !e["subject_pseudonym"].is_null())
        .count();
    assert_eq!(written, 3, "only the first import wrote: {int:?}");
    let notes: Vec<&serde_json::Value> = int
        .iter()
        .filter(|e| e["action"] == "import" && e["subject_pseudonym"].is_null())
        .map(|e| &e["note"])
        .collect();
    assert_eq!(notes, ["unchanged=3", "unchanged=3"], "{int:?}");
    // No denial, and nothing read or searched first.
    assert!(
        int.iter()
            .all(|e| e["outcome"] == "ok" && e["action"] != "search" && e["action"] != "read"),
        "{int:?}"
    );
}

/// A copy of `vault` whose header has `bytes` at `offset`, with the unkeyed checksum
/// recomputed (docs/FORMAT.md "Header": the last 32 bytes are SHA-256 of the rest).
fn forged(vault: &Path, to: &Path, offset: usize, bytes: &[u8]) {
    common::copy_tree(vault, to);
    let header = to.join("header");
    let mut h = std::fs::read(&header).unwrap();
    assert_eq!(&h[1..5], b"MDVH");
    h[offset..offset + bytes.len()].copy_from_slice(bytes);
    let n = h.len();
    let sum = Sha256::digest(&h[..n - 32]);
    h[n - 32..].copy_from_slice(&sum);
    std::fs::write(&header, &h).unwrap();
}

#[test]
fn a_header_with_zero_argon2id_passes_is_an_integrity_failure() {
    let (tmp, vault) = vault();
    let mv = Medvault::new();
    // RootSpec at offset 21: kind (1), memory KiB (4), iterations t (4) at 26, lanes (4).
    for (name, offset) in [("t0", 26), ("p0", 30), ("m0", 22)] {
        let copy = tmp.path().join(name);
        forged(&vault, &copy, offset, &0u32.to_be_bytes());
        let out = mv.run(&["stats", s(&copy)]);
        assert_eq!(code(&out), 4, "{name}: {}", stderr(&out));
        let line = error_line(&out);
        assert!(line.contains("header"), "{line}");
        assert!(line.contains("Argon2id"), "{line}");
        assert!(!line.contains("invalid input"), "{line}");
    }
}

#[test]
#[ignore = "needs a core change (see the report of branch ops): the key check binds vault_id, \
            so a changed vault_id is indistinguishable from a wrong key today"]
fn a_header_with_a_changed_vault_id_is_an_integrity_failure() {
    let (tmp, vault) = vault();
    let copy = tmp.path().join("vid");
    forged(&vault, &copy, 5, &[0u8; 16]);
    let out = Medvault::new().run(&["stats", s(&copy)]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(error_line(&out).contains("vault_id"), "{}", stderr(&out));
}

#[test]
fn subjects_prints_ids_as_plain_text() {
    let (_tmp, vault) = vault();
    let mv = Medvault::new();
    let v = s(&vault);
    for subject in ["Zoë Ångström", "urn:uuid:1f0e", "tab\there"] {
        let out = mv.run_with_stdin(&["put", v, subject, "Note", "n1"], br#"{"text":"x"}"#);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let listed = mv.ok(&["subjects", v]);
    let lines: Vec<&str> = listed.lines().collect();
    // Sorted by UTF-8 bytes; printable ids exactly as stored.
    assert_eq!(
        lines,
        ["Zoë Ångström", r"tab\there", "urn:uuid:1f0e"],
        "{listed}"
    );
    // No Rust escape syntax anywhere (`\u{9}`), nor in what put said.
    assert!(!listed.contains("\\u{"), "{listed}");
    let said = stdout(&mv.run_with_stdin(&["put", v, "bell\u{7}", "Note", "n1"], br#"{"a":1}"#));
    assert!(said.contains(r"bell\u0007"), "{said}");
    assert!(!said.contains("\\u{"), "{said}");
}

#[test]
fn a_clean_import_removes_the_reject_file_of_an_earlier_one() {
    let (tmp, vault) = vault();
    let mv = Medvault::new();
    let rejects = PathBuf::from(format!("{}.rejects.ndjson", s(&vault)));
    let bad = write_lines(&tmp.path().join("bad.ndjson"), &[PA, "{not json"]);
    let out = mv.run(&["import", s(&vault), s(&bad)]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert!(
        error_line(&out).contains("1 line or entry rejected"),
        "{}",
        stderr(&out)
    );
    let written = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(written.contains("bad.ndjson"), "{written}");

    let good = write_lines(&tmp.path().join("good.ndjson"), &[PB]);
    let summary = mv.ok(&["import", s(&vault), s(&good)]);
    assert!(!rejects.exists(), "stale reject file left: {summary}");
    assert!(summary.contains("removed"), "{summary}");
    assert!(summary.contains(s(&rejects)), "{summary}");

    // A file at --reject-file that is not a reject file is left alone.
    let keep = tmp.path().join("notes.txt");
    std::fs::write(&keep, "my notes\n").unwrap();
    mv.ok(&["import", s(&vault), s(&good), "--reject-file", s(&keep)]);
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "my notes\n");
}

#[test]
fn get_and_delete_of_a_missing_record_name_it() {
    let (_tmp, vault) = vault();
    let mv = Medvault::new();
    let v = s(&vault);
    let out = mv.run_with_stdin(&["put", v, "pa", "Patient", "pa"], PA.as_bytes());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for cmd in ["get", "delete"] {
        let out = mv.run(&[cmd, v, "pa", "Observation", "nope"]);
        assert_eq!(code(&out), 5, "{}", stderr(&out));
        let line = error_line(&out);
        assert!(line.contains("Observation/nope"), "{cmd}: {line}");
        assert!(line.contains("subject pa"), "{cmd}: {line}");
    }
    let out = mv.run(&["get", v, "pa", "--fields", "name", "Observation", "nope"]);
    assert!(
        error_line(&out).contains("Observation/nope"),
        "{}",
        stderr(&out)
    );
    // Likewise a subject without records, for get and export.
    let out = mv.run(&["get", v, "ghost"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        error_line(&out).contains("subject ghost"),
        "{}",
        stderr(&out)
    );
    let out = mv.run(&["export", v, "pa", "ghost"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        error_line(&out).contains("subject ghost"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fields_without_a_record_id_is_a_usage_error_naming_what_is_missing() {
    let (_tmp, vault) = vault();
    let mv = Medvault::new();
    let v = s(&vault);
    let out = mv.run(&["get", v, "pa", "--fields", "name"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let line = error_line(&out);
    assert!(line.contains("--fields"), "{line}");
    assert!(line.contains("missing COLLECTION and RECORD_ID"), "{line}");
    let out = mv.run(&["get", v, "pa", "Patient", "--fields", "name"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("missing RECORD_ID"),
        "only what is missing: {line}"
    );
}
