//! `medvault`: the operator's command for an encrypted, access-logged patient-record
//! vault. Commands, environment variables and exit codes: docs/CLI.md.
//!
//! Secrets come from the environment or a no-echo prompt, never from arguments; errors
//! are one line on stderr that names no record content; progress bars appear only on a
//! terminal.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

mod access;
mod args;
mod clock;
mod commands;
mod demo;
mod exit;
mod progress;
mod secrets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap exits with 2 on a malformed command line, 0 for --help and --version.
    let cli = args::Cli::parse();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): not an error of ours.
        Err(failure) if failure.broken_pipe => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
