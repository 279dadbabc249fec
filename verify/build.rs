//! Test-data probe (README "Test data"): see ../build-support/shared_data.rs.

include!("../build-support/shared_data.rs");

fn main() {
    probe_shared_data();
}
