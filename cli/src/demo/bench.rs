//! The demo's comparison with SQLCipher: SQLCipher is an optional, heavy build (the
//! `compare-sqlcipher` feature of the workspace's benchmarks), so the demo does not run
//! it; it reports the figures of the last `cargo bench --features compare-sqlcipher
//! --bench compare` run on this machine (its JSON summary, `target/compare.json`, or
//! `$MEDVAULT_BENCH_JSON`), saying when it ran and on how many records, or says how to
//! take them.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn summary_path() -> PathBuf {
    match std::env::var_os("MEDVAULT_BENCH_JSON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/compare.json"),
    }
}

/// Report lines: one per workload measured against SQLCipher, with the goal of
/// ../shared/DESIGN.md and whether it holds.
pub fn lines() -> Vec<String> {
    let path = summary_path();
    let how = "cargo bench --features compare-sqlcipher --bench compare";
    let Some(json) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return vec![format!(
            "  vs SQLCipher: not measured here (SQLCipher is an optional build); `{how}` measures it, BENCHMARKS.md has the last table"
        )];
    };
    if json["config"]["sqlcipher_built"] != Value::Bool(true) {
        return vec![format!(
            "  vs SQLCipher: the last compare run ({}) was built without SQLCipher; `{how}` measures it",
            path.display()
        )];
    }
    let when = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| {
            let days = (d.as_secs() / 86_400) as i64;
            let (y, m, dd) = medvault::civil::civil_from_days(days);
            format!("{y:04}-{m:02}-{dd:02}")
        })
        .unwrap_or_else(|| "unknown date".to_owned());
    let mut out = vec![format!(
        "  vs SQLCipher (last `{how}` on this machine, {when}, {} records x {} rounds; not this run):",
        json["config"]["records"], json["config"]["rounds"]
    )];
    for row in json["rows"].as_array().into_iter().flatten() {
        let sqlcipher = row["sqlcipher"].as_str().unwrap_or_default();
        if sqlcipher.is_empty() {
            continue;
        }
        out.push(format!(
            "             {}: medvault {}, SQLCipher {}, figure {} (goal {}{})",
            row["workload"].as_str().unwrap_or_default(),
            row["medvault"].as_str().unwrap_or_default(),
            sqlcipher,
            row["ratio_text"].as_str().unwrap_or_default(),
            row["goal"].as_str().unwrap_or_default(),
            if row["holds"] == Value::Bool(true) {
                ", holds"
            } else {
                ", NOT met"
            }
        ));
    }
    out
}
