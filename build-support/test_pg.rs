// The PostgreSQL probe of the build scripts whose crates have tests on a real server
// (docs/POSTGRES.md), included by their `build.rs` (`include!`). Tests that need the
// server carry `#[cfg_attr(no_test_pg, ignore = "skipped: no PostgreSQL
// (MEDVAULT_TEST_PG unset)")]`: without `MEDVAULT_TEST_PG`, `cargo test` lists them as
// ignored with that message instead of passing them without running. Under `CI=true`
// the cfg is never set: the tests run and fail on the missing server
// (`medvault_postgres::testdb::server`). Nothing here affects what a crate's code does.

/// Sets `cfg(no_test_pg)` when `MEDVAULT_TEST_PG` is unset (never under `CI=true`).
fn probe_test_pg() {
    println!("cargo::rustc-check-cfg=cfg(no_test_pg)");
    println!("cargo::rerun-if-env-changed=MEDVAULT_TEST_PG");
    println!("cargo::rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if std::env::var_os("MEDVAULT_TEST_PG").is_none() && !ci {
        println!("cargo::rustc-cfg=no_test_pg");
    }
}
