//! The CLI tests' own helper: a runner of the built `medvault` binary. The helpers shared
//! with the core's tests (test data lookup, file walking) are `tests/common` at the top
//! level, included by path.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The cheapest Argon2id parameters, as `init` and `rotate root` options.
pub const FAST_KDF: [&str; 6] = [
    "--kdf-memory",
    "1",
    "--kdf-iterations",
    "1",
    "--kdf-lanes",
    "1",
];

/// The tests' passphrase: strong enough for `init`'s strength check (zxcvbn score 3 or
/// more), so that no test needs `--allow-weak-passphrase` but the one about it.
pub const PASSPHRASE: &str = "tepid walrus quantum ferry 93";
/// A second strong passphrase (`rotate root`).
pub const PASSPHRASE_2: &str = "glacier obelisk marmalade 4417";

/// Runs the built `medvault` binary with only the MEDVAULT_* variables given here (the
/// caller's environment could otherwise leak a passphrase or an actor into a test).
pub struct Medvault {
    env: Vec<(String, String)>,
}

impl Default for Medvault {
    fn default() -> Self {
        Medvault::new()
    }
}

impl Medvault {
    /// A maintenance operator with passphrase [`PASSPHRASE`].
    pub fn new() -> Self {
        Medvault {
            env: vec![
                ("MEDVAULT_PASSPHRASE".into(), PASSPHRASE.into()),
                ("MEDVAULT_ACTOR".into(), "test-operator".into()),
                ("MEDVAULT_PURPOSE".into(), "maintenance".into()),
            ],
        }
    }

    /// Sets (or with `None` removes) a variable.
    pub fn env(mut self, key: &str, value: Option<&str>) -> Self {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.into(), v.into()));
        }
        self
    }

    /// `medvault ARGS` with this environment, stdin, stdout and stderr piped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_medvault"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("MEDVAULT_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env_remove("CI");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `medvault ARGS` with `stdin` fed in.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.command(args).spawn().expect("spawn medvault");
        {
            let mut i = child.stdin.take().expect("stdin");
            // A command that does not read stdin may have exited already.
            let _ = i.write_all(stdin);
        }
        child.wait_with_output().expect("wait for medvault")
    }

    /// Runs `medvault ARGS` with empty stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"")
    }

    /// Runs and asserts exit status 0; returns stdout as text.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "medvault {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Creates a vault at `path` with the cheapest Argon2id parameters.
    pub fn init_fast(&self, path: &Path) {
        let p = path.to_str().expect("UTF-8 path");
        let mut args = vec!["init", p];
        args.extend_from_slice(&FAST_KDF);
        self.ok(&args);
    }
}

/// Each FHIR resource line of `ndjson` (a JSON object with a `resourceType`) as its
/// JSON value's compact text: what an export must give back of an import, compared as
/// JSON values (member order and spacing aside).
pub fn resource_values(ndjson: &str) -> std::collections::BTreeSet<String> {
    ndjson
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("resourceType").is_some())
        .map(|v| v.to_string())
        .collect()
}

/// `p` as `&str` (the tests' paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The exit code of a run that exited (was not killed).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

/// stderr of a run, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout of a run, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error line of a failed run: exactly one line, `medvault: error: ...`, besides any
/// `medvault: warning: ...` lines.
pub fn one_error_line(out: &Output) -> String {
    let err = stderr(out);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("medvault: warning:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err}");
    assert!(errors[0].starts_with("medvault: error: "), "{err}");
    errors[0].to_owned()
}
