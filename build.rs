//! Test probes (README "Test data"; docs/POSTGRES.md): see build-support/.

include!("build-support/shared_data.rs");
include!("build-support/test_pg.rs");

fn main() {
    probe_shared_data();
    probe_test_pg();
}
