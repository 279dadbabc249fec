//! placeholder
use crate::exit::CliResult;
use std::path::Path;
pub fn run(_patients: usize, _dir: Option<&Path>, _seed: u64) -> CliResult {
    Ok(())
}
