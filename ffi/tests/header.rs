//! Guards that include/medvault.h is the header cbindgen generates from the source today
//! (a stale header would let C callers build against a different ABI).
//! Regenerate with `MEDVAULT_BLESS_HEADER=1 cargo test -p medvault-ffi --test header`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is the report

use std::path::Path;

#[test]
fn committed_header_matches_cbindgen_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/medvault.h");
    if std::env::var_os("MEDVAULT_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/medvault.h is stale: regenerate it with \
         MEDVAULT_BLESS_HEADER=1 cargo test -p medvault-ffi --test header"
    );
}

#[test]
fn the_c_test_calls_every_function_of_the_header() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(dir.join("include/medvault.h")).unwrap();
    let c_test = std::fs::read_to_string(dir.join("tests/c/null_and_bad_handles.c")).unwrap();
    // Declarations in the header: `medvault_name(` at the start of a name.
    let mut names: Vec<&str> = header
        .match_indices("medvault_")
        .filter_map(|(i, _)| {
            let rest = &header[i..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            rest[end..].starts_with('(').then(|| &rest[..end])
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 20, "too few functions found: {names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !c_test.contains(&format!("{n}(")))
        .collect();
    assert!(missing.is_empty(), "not called by the C test: {missing:?}");
}
