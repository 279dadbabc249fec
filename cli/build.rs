//! Test-data probe (README "Test data"): see ../build-support/shared_data.rs. Here also:
//! `cfg(missing_python3)` when `python3` cannot be run (the FHIR oracle of
//! tests/fidelity.rs), and `cfg(no_test_pg)` without MEDVAULT_TEST_PG
//! (../build-support/test_pg.rs).

include!("../build-support/shared_data.rs");
include!("../build-support/test_pg.rs");

fn main() {
    let ci = probe_shared_data();
    probe_test_pg();
    // The independent FHIR oracle of tests/fidelity.rs is a Python 3 script (standard
    // library only).
    println!("cargo::rustc-check-cfg=cfg(missing_python3)");
    println!("cargo::rerun-if-env-changed=PATH");
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python && !ci {
        println!("cargo::rustc-cfg=missing_python3");
    }
}
