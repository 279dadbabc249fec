//! The import report against what the test wrote: a re-import counts what the vault
//! already holds as unchanged (and writes nothing for it), changed text as replaced;
//! skipped positions are named by file and line; a clean import removes the stale
//! reject file of an earlier one and leaves any other file alone. Oracles: the inputs
//! written out here, and the access log read through the core's `audit_query`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is the report

use std::path::{Path, PathBuf};

use medvault::{AccessContext, Action, KdfParams, KeySource, LogQuery, Purpose, Vault};
use medvault_fhir::{ImportOptions, ImportReport, ImportSource, Position, RejectFile};

const PA: &str = r#"{"resourceType":"Patient","id":"pa","birthDate":"1970-01-01"}"#;
const PB: &str = r#"{"resourceType":"Patient","id":"pb","birthDate":"1981-02-03"}"#;
const PB2: &str = r#"{"resourceType":"Patient","id":"pb","birthDate":"1981-02-04"}"#;
const OBS: &str =
    r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/pa"}}"#;
const LOG_LINE: &str = r#"{"kind":"bulk-export log"}"#;

fn ctx() -> AccessContext {
    AccessContext::new("importer", Purpose::Maintenance)
}

fn file(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn import(vault: &Vault, paths: &[PathBuf]) -> ImportReport {
    let source = ImportSource::new(paths).unwrap();
    medvault_fhir::import(vault, &ctx(), source, ImportOptions::default(), &mut |_| {}).unwrap()
}

fn entries(vault: &Vault, action: Action) -> Vec<medvault::LogEntry> {
    let q = LogQuery {
        action: Some(action),
        ..LogQuery::default()
    };
    vault.audit_query(&ctx(), &q).unwrap()
}

fn count(vault: &Vault, action: Action) -> usize {
    entries(vault, action).len()
}

/// `import` entries naming a record (writes), and the notes of those naming none.
fn imports(vault: &Vault) -> (usize, Vec<String>) {
    let all = entries(vault, Action::Import);
    let written = all.iter().filter(|e| e.subject_pseudonym.is_some()).count();
    let notes = all
        .into_iter()
        .filter(|e| e.subject_pseudonym.is_none())
        .map(|e| e.note)
        .collect();
    (written, notes)
}

/// A new vault under a raw key (no KDF) in a new temporary directory.
fn vault() -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::create(
        dir.path().join("v"),
        KeySource::raw([3; 32]),
        KdfParams::default(),
    );
    (dir, v.unwrap())
}

#[test]
fn a_reimport_is_unchanged_and_a_changed_resource_replaced() {
    let (dir, vault) = vault();
    let input = file(dir.path(), "in.ndjson", &[PA, PB, OBS]);

    let first = import(&vault, std::slice::from_ref(&input));
    assert_eq!((first.records, first.replaced, first.unchanged), (3, 0, 0));
    assert_eq!(imports(&vault), (3, vec![]));

    let again = import(&vault, std::slice::from_ref(&input));
    assert_eq!((again.records, again.replaced, again.unchanged), (0, 0, 3));
    assert!(again.per_type.is_empty(), "{:?}", again.per_type);
    assert_eq!(
        imports(&vault),
        (3, vec!["unchanged=3".to_owned()]),
        "nothing written again; the unchanged ones noted"
    );

    let changed = file(dir.path(), "changed.ndjson", &[PA, PB2, OBS]);
    let third = import(&vault, &[changed]);
    assert_eq!((third.records, third.replaced, third.unchanged), (0, 1, 2));
    assert_eq!(
        imports(&vault),
        (4, vec!["unchanged=3".to_owned(), "unchanged=2".to_owned()])
    );
    // The import reads nothing first: no read, no search but this test's log queries.
    assert_eq!(count(&vault, Action::Read), 0);
    let searches = entries(&vault, Action::Search);
    assert!(
        searches
            .iter()
            .all(|e| e.note.starts_with("access-log query")),
        "{searches:?}"
    );
    let stored = vault
        .get_json(&ctx(), &medvault::RecordKey::new("pb", "Patient", "pb"))
        .unwrap();
    assert_eq!(stored.as_str(), PB2);

    // A new resource of a subject the vault holds is created.
    let more = file(
        dir.path(),
        "more.ndjson",
        &[r#"{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/pb"}}"#],
    );
    let fourth = import(&vault, &[more]);
    assert_eq!(
        (fourth.records, fourth.replaced, fourth.unchanged),
        (1, 0, 0)
    );
}

#[test]
fn skipped_positions_are_named_by_file() {
    let (dir, vault) = vault();
    let a = file(dir.path(), "a.ndjson", &[PA, LOG_LINE, PB, LOG_LINE]);
    let b = file(dir.path(), "b.ndjson", &[OBS]);
    let c = file(dir.path(), "c.ndjson", &[LOG_LINE]);
    let r = import(&vault, &[a.clone(), b, c.clone()]);
    assert_eq!(r.skipped, 3);
    let named: Vec<(&Path, u64, &[Position])> = r
        .skipped_in
        .iter()
        .map(|k| (k.path.as_path(), k.count, k.positions.as_slice()))
        .collect();
    assert_eq!(
        named,
        [
            (a.as_path(), 2, &[Position::Line(2), Position::Line(4)][..]),
            (c.as_path(), 1, &[Position::Line(1)][..]),
        ]
    );
    assert!(
        r.skipped_in[0].why.contains("resourceType"),
        "{}",
        r.skipped_in[0].why
    );
}

#[test]
fn a_clean_run_removes_a_stale_reject_file_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // A reject file as an earlier run wrote it.
    let stale = dir.path().join("v.rejects.ndjson");
    std::fs::write(
        &stale,
        "{\"resourceType\":\"OperationOutcome\",\"issue\":[]}\n",
    )
    .unwrap();
    let mut sink = RejectFile::new(&stale);
    sink.finish().unwrap();
    assert!(sink.removed_stale());
    assert!(!stale.exists());
    // Nothing there: nothing to do.
    let mut sink = RejectFile::new(&stale);
    sink.finish().unwrap();
    assert!(!sink.removed_stale());

    // Another file, and a link to a reject file, are left alone.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "mine\n").unwrap();
    let mut sink = RejectFile::new(&notes);
    sink.finish().unwrap();
    assert!(!sink.removed_stale());
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine\n");
    let target = dir.path().join("target.ndjson");
    std::fs::write(&target, "{\"resourceType\":\"OperationOutcome\"}\n").unwrap();
    let link = dir.path().join("link.ndjson");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let mut sink = RejectFile::new(&link);
    sink.finish().unwrap();
    assert!(!sink.removed_stale());
    assert!(link.exists() && target.exists());
}
