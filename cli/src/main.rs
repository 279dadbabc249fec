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
mod backend;
mod clock;
mod commands;
mod demo;
mod exit;
mod human;
mod output;
mod progress;
mod secrets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_panics();
    // clap exits with 2 on a malformed command line, 0 for --help and --version.
    let cli = args::Cli::parse();
    match std::panic::catch_unwind(|| commands::run(cli.command)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): not an error of ours, whatever
        // layer wrapped the write error (output.rs); the same for every command.
        Ok(Err(failure)) if failure.broken_pipe || output::closed() => ExitCode::SUCCESS,
        Ok(Err(failure)) => failure.report(),
        // `println!` panics on a closed stdout: the same quiet end.
        Err(payload) if print_panic_on_closed_pipe(payload.as_ref()) => ExitCode::SUCCESS,
        Err(_) => {
            let at = LAST_PANIC
                .lock()
                .ok()
                .and_then(|p| p.clone())
                .unwrap_or_else(|| "an unknown place".to_owned());
            exit::Failure::new(
                exit::Code::Internal,
                format!(
                    "internal error: medvault panicked at {at} (a bug: please report it; \
                     RUST_BACKTRACE=1 shows the details)"
                ),
            )
            .report()
        }
    }
}

/// True when a caught panic is `print!`'s on a closed stdout (see `output`).
fn print_panic_on_closed_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    output::note_print_panic(message)
}

/// Where the last panic happened (`file:line`), recorded by the hook of [`quiet_panics`].
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Keeps panic text off stderr. Some panics are caught and turned into errors (sled 0.34
/// panics on some damaged files; the storage layer reports that as an integrity
/// failure), and a third-party message printed before our one-line error would only
/// confuse, or quote data. The hook records where the panic happened; `main` prints a
/// one-line internal error for a panic that nothing caught. With RUST_BACKTRACE set, the
/// default hook runs as well, for whoever debugs.
fn quiet_panics() {
    let default = std::panic::take_hook();
    let debugging = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
        }
        // `print!` on a closed stdout is no bug: main ends quietly (output.rs).
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if debugging && !output::note_print_panic(message) {
            default(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_caught_panic_is_recorded_with_its_place() {
        super::quiet_panics();
        let caught = std::panic::catch_unwind(|| panic!("a third party's text"));
        assert!(caught.is_err());
        let at = super::LAST_PANIC.lock().unwrap().clone().unwrap();
        assert!(at.starts_with("cli/src/main.rs:"), "{at}");
    }
}
