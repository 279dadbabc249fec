//! docs/COMPLIANCE.md (issue 15 acceptance 5): every row carried by medvault names at
//! least one test, every test named there (`path::name`) exists in that file as a
//! `#[test]` function, and rows carried by the application name none.
//!
//! Oracle: the source text of the named files, searched for `#[test]` followed by
//! `fn name(`, independent of the document's parser.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use common::workspace_root;

/// The `path::name` references in backticks of one table row.
fn references(row: &str) -> Vec<(String, String)> {
    row.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|s| s.split_once(".rs::"))
        .map(|(p, n)| (format!("{p}.rs"), n.to_owned()))
        .collect()
}

/// Whether `src` defines `name` as a test: the `fn name(` line follows a `#[test]`
/// attribute (other attributes may sit between, over several lines, e.g. a
/// `#[cfg_attr(..., ignore = "...")]` broken by rustfmt), or `fn name(` exists and
/// `name` is listed, one per line, in an `on_every_backend!(` invocation (which makes
/// it the tests `name::memory` and `name::postgres`, tests/pg_dba).
fn defines_test(src: &str, name: &str) -> bool {
    let lines: Vec<&str> = src.lines().map(str::trim).collect();
    let defined = lines.iter().any(|l| l.starts_with(&format!("fn {name}(")));
    let per_backend = lines.iter().enumerate().any(|(i, l)| {
        *l == "on_every_backend!("
            && lines[i + 1..]
                .iter()
                .take_while(|p| **p != ");")
                .any(|p| *p == format!("{name},"))
    });
    (defined && per_backend)
        || lines.iter().enumerate().any(|(i, l)| {
            l.starts_with(&format!("fn {name}("))
                && lines[..i]
                    .iter()
                    .rev()
                    .take_while(|p| !p.is_empty() && !p.ends_with('}') && !p.ends_with(';'))
                    .any(|p| *p == "#[test]")
        })
}

#[test]
fn every_test_named_in_compliance_md_exists() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/COMPLIANCE.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for row in doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| duty"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[1].starts_with("---") {
            continue;
        }
        let refs = references(row);
        match cells[2] {
            "medvault" => assert!(
                !refs.is_empty(),
                "row carried by medvault names no test: {row}"
            ),
            "application" => assert!(refs.is_empty(), "an application row names a test: {row}"),
            other => panic!("carried by must be medvault or application, got {other:?}"),
        }
        for (path, name) in refs {
            named += 1;
            let src = std::fs::read_to_string(root.join(&path))
                .unwrap_or_else(|_| panic!("{path} (named in COMPLIANCE.md) does not exist"));
            if !defines_test(&src, &name) {
                missing.push(format!("{path}::{name}"));
            }
        }
    }
    assert!(named > 20, "only {named} tests named");
    assert!(
        missing.is_empty(),
        "named in COMPLIANCE.md but not found: {missing:?}"
    );
}

#[test]
fn the_checker_rejects_a_name_that_is_not_a_test() {
    let src = "#[test]\nfn real() {}\nfn helper() {}\n#[test]\n#[ignore]\nfn later() {}\n";
    assert!(defines_test(src, "real"));
    assert!(defines_test(src, "later"));
    assert!(!defines_test(src, "helper"));
    assert!(!defines_test(src, "absent"));
}
