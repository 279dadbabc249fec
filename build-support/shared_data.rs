// The test-data probe shared by the build scripts of the workspace's crates (README
// "Test data"), included by each one's `build.rs` (`include!`). Tests that need a data
// set of `../shared/data` carry `#[cfg_attr(missing_<set>, ignore = "...")]`: when the
// set is absent, [`probe_shared_data`] sets `cfg(missing_<set>)`, so `cargo test`
// reports those tests as *ignored* in its own summary instead of passing them without
// running. Under `CI=true` it never sets them: the tests run and fail on the missing
// data. Nothing here affects what a crate's code does.
//
// Where each set is looked for: `$<VAR>` if set, else `$MEDVAULT_SHARED_DATA/<dir>`,
// else `<workspace>/../shared/data/<dir>`; `tests/common/mod.rs` (`shared_data`)
// resolves them the same way.

use std::path::PathBuf;

/// (cfg set when absent, variable naming the folder, folder under the shared data).
const SETS: [(&str, &str, &str); 3] = [
    (
        "missing_fhir_ndjson",
        "MEDVAULT_FHIR_DATA",
        "fhir-r4-ndjson",
    ),
    (
        "missing_fhir_external",
        "MEDVAULT_FHIR_EXTERNAL",
        "fhir-r4-external",
    ),
    (
        "missing_rfc9162_vectors",
        "MEDVAULT_RFC9162_VECTORS",
        "rfc9162-vectors",
    ),
];

/// Sets `cfg(missing_<set>)` for each data set of [`SETS`] that is absent (never under
/// `CI=true`), and tells cargo when to rerun. Returns whether `CI=true`.
fn probe_shared_data() -> bool {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest
        .ancestors()
        .find(|a| a.join("Cargo.lock").is_file())
        .unwrap_or(&manifest)
        .to_path_buf();
    // `<workspace>/../shared`, spelled without `..` so that its ancestors are plain.
    let beside = workspace.parent().unwrap_or(&workspace).join("shared");
    let shared = std::env::var_os("MEDVAULT_SHARED_DATA").map(PathBuf::from);
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={}", workspace.join("build-support/shared_data.rs").display());
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=MEDVAULT_SHARED_DATA");
    for (cfg, var, dir) in SETS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        let path = match (std::env::var_os(var), &shared) {
            (Some(p), _) => PathBuf::from(p),
            (None, Some(s)) => s.join(dir),
            (None, None) => beside.join("data").join(dir),
        };
        // Rerun when the data arrives or goes: watch the set's folder, or (default
        // location only) the nearest existing folder of `../shared/data` above it.
        let mut watch = vec![path.clone()];
        if std::env::var_os(var).is_none() && shared.is_none() {
            watch.extend([beside.join("data"), beside.clone()]);
        }
        if let Some(w) = watch.iter().find(|w| w.is_dir()) {
            println!("cargo::rerun-if-changed={}", w.display());
        }
        if !path.is_dir() && !ci {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    ci
}
