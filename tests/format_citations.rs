//! Every `docs/FORMAT.md "Heading"` cited in the sources names a heading that exists in
//! docs/FORMAT.md (cited by name, not by number: section numbers were off by one for a
//! long time), and no source cites FORMAT.md by section number any more.

use std::fs;
use std::path::{Path, PathBuf};

/// The headings of docs/FORMAT.md without their `#` marks and section numbers.
fn headings(doc: &str) -> Vec<String> {
    doc.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            let t = l.trim_start_matches('#').trim();
            // "10. Storage key space" / "7.1 Body plaintext" -> the name.
            let name = t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
            name.trim().to_owned()
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A source with comment markers and line breaks inside comments folded to spaces, so
/// that a citation broken over two comment lines reads as one.
fn folded(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("//!")
            .or_else(|| t.strip_prefix("///"))
            .or_else(|| t.strip_prefix("//"))
            .unwrap_or(t);
        out.push_str(t.trim());
        out.push(' ');
    }
    out
}

#[test]
fn every_cited_format_heading_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/FORMAT.md")).expect("docs/FORMAT.md");
    let heads = headings(&doc);
    assert!(heads.iter().any(|h| h.starts_with("Record value")));
    let mut files = Vec::new();
    for d in ["src", "tests", "benches", "cli", "fhir", "testkit"] {
        rust_files(&root.join(d), &mut files);
    }
    let marker = "docs/FORMAT.md \"";
    let mut cited = 0;
    let mut bad = Vec::new();
    for f in &files {
        // This file names the patterns it looks for.
        if f.ends_with("tests/format_citations.rs") {
            continue;
        }
        let text = folded(&fs::read_to_string(f).expect("source"));
        if text.contains("FORMAT.md §") {
            bad.push(format!("{}: cites FORMAT.md by number", f.display()));
        }
        let mut rest = text.as_str();
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let Some(end) = rest.find('"') else { break };
            let name = &rest[..end];
            if !name.is_empty() {
                cited += 1;
                if !heads.iter().any(|h| h.starts_with(name)) {
                    bad.push(format!("{}: no heading {name:?}", f.display()));
                }
            }
            rest = &rest[end..];
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert!(
        cited >= 10,
        "only {cited} citations found: is the scan broken?"
    );
}
