//! Exact fidelity of `medvault import` / `export` on real FHIR data (issue 12 acceptance
//! 1 and 2), and the bulk-import rules of docs/FHIR.md: rejects to an OperationOutcome
//! reject file, `--strict`, exit codes, honest duplicate counts, regular files only.
//!
//! The oracle is never the code under test: exported lines are compared byte for byte
//! with the input lines, and with `fhir/tests/oracle/fhir_oracle.py` (Python's own JSON
//! parser keeping number text, member order and duplicates).
#![allow(clippy::unwrap_used)] // tests: a failure should abort the test with its message

#[path = "../../tests/common/mod.rs"]
mod common;
// Shared with cli.rs; not every helper is used here.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{fhir_data_dir, fhir_external_dir, workspace_root};
use serde_json::Value;
use support::{Medvault, s, stderr};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Runs the independent Python oracle. Panics when `python3` cannot be run: the tests
/// that call it are marked `ignore` when build.rs found no `python3`
/// (`cfg(missing_python3)`), and under `CI=true` it is required.
fn oracle(export: &Path, inputs: &[PathBuf], minified: bool) -> BTreeMap<String, Value> {
    let script = workspace_root().join("fhir/tests/oracle/fhir_oracle.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg("--export").arg(export);
    if minified {
        cmd.arg("--minified");
    }
    cmd.args(inputs);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "python3 (the independent FHIR oracle) cannot be run: {e}{}",
            if ci() { "; required under CI=true" } else { "" }
        )
    });
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("oracle failed: {}", String::from_utf8_lossy(&out.stderr)))
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn count(o: &BTreeMap<String, Value>, k: &str) -> u64 {
    o[k].as_u64().unwrap()
}

/// Created, replaced, unchanged, skipped and rejected, from the `created N, replaced M,
/// unchanged U, skipped K, rejected R` line of the summary (each number found by its
/// name).
fn summary(stdout: &str) -> (u64, u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("created "))
        .unwrap_or_else(|| panic!("no summary line in {stdout}"));
    let n = |name: &str| -> u64 {
        line.split(", ")
            .find_map(|part| part.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (
        n("created"),
        n("replaced"),
        n("unchanged"),
        n("skipped"),
        n("rejected"),
    )
}

/// Acceptance 1: every file of r4/ (Bundle.ndjson by its rule) and bundles/, default
/// flags, no rejection; the export equals the input resource by resource, number text
/// included, by the Python oracle.
#[test]
#[cfg_attr(
    any(missing_fhir_external, missing_python3),
    ignore = "needs fhir-r4-external and python3 (README: Test data)"
)]
fn external_corpus_round_trips_exactly() {
    let ext = fhir_external_dir();
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    let mv = Medvault::new();
    mv.init_fast(&vault);
    let inputs = [ext.join("r4"), ext.join("bundles")];
    let out = mv.run(&["import", s(&vault), s(&inputs[0]), s(&inputs[1])]);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), Some(0), "{printed}\n{}", stderr(&out));
    let (created, replaced, unchanged, skipped, rejected) = summary(&printed);
    assert_eq!(rejected, 0);
    // Document and message Bundles are kept whole under their patient, found by id; a
    // urn:uuid subject outside any Bundle is filed under that uuid.
    for (subject, collection, id, has) in [
        ("d1", "Bundle", "father", "\"document\""),
        (
            "pat1",
            "Bundle",
            "10bb101f-a121-4264-a920-67be9cb82c74",
            "\"message\"",
        ),
        (
            "e11037dd-9b76-42bb-92cb-9109a7b4ab71",
            "Encounter",
            "d16e8808-cbec-4f3e-9e00-c16604f36008",
            "urn:uuid:e11037dd",
        ),
    ] {
        let got = mv.ok(&["get", s(&vault), subject, collection, id]);
        assert!(got.contains(has), "{collection}/{id}");
    }
    let export = tmp.path().join("export.ndjson");
    std::fs::write(&export, mv.ok(&["export", s(&vault)])).unwrap();
    let o = oracle(&export, &inputs, false);
    eprintln!(
        "fhir-r4-external: created {created}, replaced {replaced}, unchanged {unchanged}, skipped {skipped}, rejected {rejected}; oracle {o:?}"
    );
    assert_eq!(count(&o, "expected"), created, "{o:?}");
    // A resource met again with the same text is unchanged (not written again).
    assert_eq!(count(&o, "replaced"), replaced, "{o:?}");
    assert_eq!(count(&o, "unchanged"), unchanged, "{o:?}");
    assert_eq!(count(&o, "skipped"), skipped, "{o:?}");
    assert_eq!(count(&o, "missing_or_changed"), 0, "{o:?}");
    assert_eq!(count(&o, "unexpected"), 0, "{o:?}");
    assert_eq!(count(&o, "exact"), created, "{o:?}");
}

/// Acceptance 2: fhir-r4-ndjson (7,160 resources of 13 patients; 1,144 Patients), each
/// set into a vault of its own: every exported line is byte-identical to its minified
/// input line (compared as bytes, no parser), and the oracle agrees.
#[test]
#[cfg_attr(
    any(missing_fhir_ndjson, missing_python3),
    ignore = "needs fhir-r4-ndjson and python3 (README: Test data)"
)]
fn ndjson_corpus_exports_byte_identical_lines() {
    let data = fhir_data_dir();
    for (set, resources) in [("13-patients", 7160), ("1144-patients", 1144)] {
        let input = data.join(set);
        let tmp = tempfile::tempdir().unwrap();
        let vault = tmp.path().join("v");
        let mv = Medvault::new();
        mv.init_fast(&vault);
        let printed = mv.ok(&["import", s(&vault), s(&input)]);
        let (created, replaced, unchanged, skipped, rejected) = summary(&printed);
        assert_eq!(
            (created, replaced, unchanged, rejected),
            (resources, 0, 0, 0),
            "{printed}"
        );

        let mut input_lines: Vec<Vec<u8>> = Vec::new();
        for e in std::fs::read_dir(&input).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() == "log.ndjson" || p.extension().unwrap() != "ndjson" {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                input_lines.push(line.to_vec());
            }
        }
        let exported = mv.ok(&["export", s(&vault)]);
        let mut output_lines: Vec<Vec<u8>> = exported
            .as_bytes()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        input_lines.sort();
        output_lines.sort();
        assert_eq!(input_lines.len() as u64, resources);
        assert_eq!(output_lines.len(), input_lines.len());
        let differing = input_lines
            .iter()
            .zip(&output_lines)
            .filter(|(a, b)| a != b)
            .count();

        let export = tmp.path().join("export.ndjson");
        std::fs::write(&export, &exported).unwrap();
        let o = oracle(&export, std::slice::from_ref(&input), true);
        eprintln!(
            "fhir-r4-ndjson/{set}: created {created}, skipped {skipped}, rejected {rejected}, \
             byte-identical {}; oracle {o:?}",
            input_lines.len() - differing
        );
        assert_eq!(
            differing, 0,
            "{set}: {differing} exported lines differ from their input line"
        );
        assert_eq!(count(&o, "exact"), resources, "{o:?}");
        assert_eq!(count(&o, "not_byte_identical"), 0, "{o:?}");
        assert_eq!(count(&o, "missing_or_changed"), 0, "{o:?}");
    }
}

/// A bad line never aborts the import: valid resources are committed, every bad
/// position is one OperationOutcome in the reject file naming file, line and reason,
/// exit 7. `--strict` stops at the first (exit 1) after committing what came before.
#[test]
fn rejects_go_to_the_reject_file_and_strict_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let lines = [
        r#"{"resourceType":"Patient","id":"p1","birthDate":"1970-01-01"}"#,
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"valueQuantity":{"value":1.50}}"#,
        r#"{"resourceType":"Observation","id":"o2","status":"final","status":"SECRET-93718"}"#,
        r#"{"resourceType":"Observation","id":"bad_id!"}"#,
        r#"{"resourceType":"Observation","id":"o3" SECRET-93718"#,
        r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p2"}},"x",{"resource":{"resourceType":"Patient","id":"p3","a":{"b":1,"b":2}}}]}"#,
        r#"{"resourceType":"Observation","id":"o4","subject":{"reference":"Patient/p2"}}"#,
    ];
    std::fs::write(input.join("a.ndjson"), lines.join("\n")).unwrap();
    let vault = tmp.path().join("v");
    let mv = Medvault::new();
    mv.init_fast(&vault);

    let out = mv.run(&["import", s(&vault), s(&input)]);
    assert_eq!(code(&out), Some(7), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(summary(&printed), (4, 0, 0, 0, 5), "{printed}");
    let reject_path = tmp.path().join("v.rejects.ndjson");
    let rejects = std::fs::read_to_string(&reject_path).unwrap();
    assert!(!rejects.contains("SECRET"), "reject file quotes input");
    assert!(!stderr(&out).contains("SECRET"));
    let outcomes: Vec<Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = [
        (3, None, "structure"),
        (4, None, "invalid"),
        (5, None, "structure"),
        (6, Some(1), "structure"),
        (6, Some(2), "structure"),
    ];
    assert_eq!(outcomes.len(), expected.len(), "{rejects}");
    for (o, (line, entry, code)) in outcomes.iter().zip(expected) {
        assert_eq!(o["resourceType"], "OperationOutcome");
        let issue = &o["issue"][0];
        assert_eq!(issue["severity"], "error");
        assert_eq!(issue["code"], code, "{o}");
        let loc: Vec<&str> = issue["location"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(loc[0].ends_with("a.ndjson"), "{o}");
        assert_eq!(loc[1], format!("line {line}"), "{o}");
        match entry {
            Some(i) => {
                assert_eq!(loc[2], format!("entry {i}"));
                assert_eq!(
                    issue["expression"][0],
                    format!("Bundle.entry[{i}].resource")
                );
            }
            None => assert_eq!(loc.len(), 2, "{o}"),
        }
        assert!(
            issue["details"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
    }
    let exported = mv.ok(&["export", s(&vault)]);
    assert_eq!(exported.lines().count(), 4);
    assert!(exported.contains(lines[1]), "number text kept: {exported}");

    // --strict: stops at line 3, after committing lines 1 and 2.
    let vault2 = tmp.path().join("v2");
    mv.init_fast(&vault2);
    let out = mv.run(&["import", s(&vault2), s(&input), "--strict"]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(err.contains("a.ndjson") && err.contains("line 3"), "{err}");
    assert!(err.contains("2 records committed"), "{err}");
    assert!(!tmp.path().join("v2.rejects.ndjson").exists());
    assert_eq!(mv.ok(&["export", s(&vault2)]).lines().count(), 2);
}

/// The same resourceType/id twice in one import: the later one wins, counted as
/// replaced; filed under another patient, the earlier copy is removed from the first.
#[test]
fn duplicate_ids_are_counted_and_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.ndjson");
    std::fs::write(
        &a,
        concat!(
            r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/pa"},"valueInteger":1}"#,
            "\n",
            r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/pa"},"valueInteger":2}"#,
            "\n",
            r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/pb"},"valueInteger":3}"#,
            "\n",
        ),
    )
    .unwrap();
    let vault = tmp.path().join("v");
    let mv = Medvault::new();
    mv.init_fast(&vault);
    let printed = mv.ok(&["import", s(&vault), s(&a)]);
    assert_eq!(summary(&printed), (1, 2, 0, 0, 0), "{printed}");
    let exported = mv.ok(&["export", s(&vault)]);
    assert_eq!(exported.lines().count(), 1, "{exported}");
    assert!(exported.contains(r#""valueInteger":3"#));
    assert_eq!(code(&mv.run(&["export", s(&vault), "pa"])), Some(5));
    assert!(
        mv.ok(&["export", s(&vault), "pb"])
            .contains(r#""valueInteger":3"#)
    );
}

/// Only regular files are read: a FIFO or a link to /dev/zero is refused at once when
/// named, and rejected (the rest imported) when found in a directory.
#[cfg(unix)]
#[test]
fn devices_fifos_and_links_to_them_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("v");
    let mv = Medvault::new();
    mv.init_fast(&vault);
    let zero = tmp.path().join("zero.ndjson");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let out = mv.run(&["import", s(&vault), s(&zero)]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );

    let dir = tmp.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("good.ndjson"),
        r#"{"resourceType":"Patient","id":"p1"}"#,
    )
    .unwrap();
    let fifo = dir.join("pipe.ndjson");
    let made = Command::new("mkfifo").arg(&fifo).status();
    // mkfifo is POSIX (coreutils): its absence is a broken environment, not a skip.
    assert!(
        made.is_ok_and(|s| s.success()),
        "mkfifo failed: the FIFO case cannot run"
    );
    let out = mv.run(&["import", s(&vault), s(&fifo)]);
    assert_eq!(code(&out), Some(1));
    assert!(stderr(&out).contains("not a regular file"));
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.json")).unwrap();
    let out = mv.run(&["import", s(&vault), s(&dir)]);
    assert_eq!(code(&out), Some(7), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(summary(&printed), (1, 0, 0, 0, 2), "{printed}");
}

/// The oracle is not vacuous: it sees a changed number text, a changed member order and
/// a missing resource, and accepts an equal export written with other whitespace and
/// escapes.
#[test]
#[cfg_attr(missing_python3, ignore = "needs python3 (README: Test data)")]
fn the_oracle_sees_number_text_and_member_order() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.ndjson");
    std::fs::write(
        &input,
        concat!(
            r#"{"resourceType":"Observation","id":"a","v":1.50,"x":1,"y":2}"#,
            "\n",
            r#"{"resourceType":"Patient","id":"p","name":"\u00e9"}"#,
            "\n"
        ),
    )
    .unwrap();
    let cases = [
        (
            "{\"resourceType\":\"Observation\",\"id\":\"a\",\"v\":1.50,\"x\":1,\"y\":2}\n{ \"resourceType\": \"Patient\", \"id\": \"p\", \"name\": \"é\" }\n",
            0,
        ),
        (
            "{\"resourceType\":\"Observation\",\"id\":\"a\",\"v\":1.5,\"x\":1,\"y\":2}\n{\"resourceType\":\"Patient\",\"id\":\"p\",\"name\":\"é\"}\n",
            1,
        ),
        (
            "{\"resourceType\":\"Observation\",\"id\":\"a\",\"v\":1.50,\"y\":2,\"x\":1}\n{\"resourceType\":\"Patient\",\"id\":\"p\",\"name\":\"é\"}\n",
            1,
        ),
        (
            "{\"resourceType\":\"Observation\",\"id\":\"a\",\"v\":1.50,\"x\":1,\"y\":2}\n",
            1,
        ),
    ];
    for (export_text, changed) in cases {
        let export = tmp.path().join("out.ndjson");
        std::fs::write(&export, export_text).unwrap();
        let o = oracle(&export, std::slice::from_ref(&input), false);
        assert_eq!(
            count(&o, "missing_or_changed"),
            changed,
            "{export_text}: {o:?}"
        );
    }
}
