//! The SIGKILL crash-test harness: a test binary re-runs itself as a child that runs
//! one `#[ignore]`d child test alone, the parent optionally waits until the child says
//! it is ready, lets it work for a while, then kills it with SIGKILL (`Child::kill` on
//! Unix: no destructor, no flush, no unwinding) and checks what the child left on disk.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use medvault::RecordKey;

/// A command that runs this test binary's ignored test `child_test`, alone and with
/// its output uncaptured, stdout and stderr piped. The caller adds the child's
/// environment and passes it to [`CrashChild::spawn`].
pub fn child_command(child_test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        child_test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// In a child test: its role (the value of `role_var`) and the vault folder (the value
/// of `dir_var`), or `None` when the test runs on its own rather than as a child (it
/// should then return at once).
pub fn child_env(role_var: &str, dir_var: &str) -> Option<(String, PathBuf)> {
    let role = std::env::var(role_var).ok()?;
    let dir = PathBuf::from(std::env::var_os(dir_var).unwrap());
    Some((role, dir))
}

/// A running child.
pub struct CrashChild {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

/// What a killed child left: whether it had exited by itself before the kill, its exit
/// status, and its stdout (after the ready line, when [`CrashChild::wait_ready`] was
/// called) and stderr.
pub struct Killed {
    pub exited_first: bool,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Killed {
    /// True when the child died of SIGKILL (signal 9).
    pub fn by_sigkill(&self) -> bool {
        self.status.signal() == Some(9)
    }

    /// True when the child either died of SIGKILL or exited successfully by itself. The
    /// two cannot be told apart by `exited_first` alone: a child that exits between the
    /// check and the kill is a zombie that SIGKILL does not touch, and `wait` returns its
    /// own exit status (found as a flaky "died by itself" with an empty stderr).
    pub fn finished_or_killed(&self) -> bool {
        self.status.success() || self.by_sigkill()
    }
}

impl CrashChild {
    /// Starts `cmd` (made by [`child_command`]).
    pub fn spawn(cmd: &mut Command) -> CrashChild {
        let mut child = cmd.spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        CrashChild { child, stdout }
    }

    /// Reads the child's stdout until a line containing `ready`; false when the
    /// output ended first (the child exited or failed before it was ready).
    pub fn wait_ready(&mut self) -> bool {
        let mut line = String::new();
        while self.stdout.read_line(&mut line).unwrap() > 0 {
            if line.contains("ready") {
                return true;
            }
            line.clear();
        }
        false
    }

    /// Reads the child's stdout up to and including the first line equal to `line`
    /// (trimmed), and returns the lines read; stops early when the output ends. Lets a
    /// test kill a child at a point of its progress rather than after a time, which a
    /// loaded or an idle machine would move.
    #[allow(dead_code)]
    pub fn read_through(&mut self, line: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buf = String::new();
        while self.stdout.read_line(&mut buf).unwrap() > 0 {
            let got = buf.trim().to_owned();
            buf.clear();
            let hit = got == line;
            lines.push(got);
            if hit {
                break;
            }
        }
        lines
    }

    /// Lets the child run for `delay`, then kills it with SIGKILL and collects what it
    /// printed.
    pub fn kill_after(mut self, delay: Duration) -> Killed {
        std::thread::sleep(delay);
        let exited_first = self.child.try_wait().unwrap().is_some();
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        let mut stdout = String::new();
        let _ = self.stdout.read_to_string(&mut stdout);
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        Killed {
            exited_first,
            status,
            stdout,
            stderr,
        }
    }
}

/// Asserts that the records `present` after a crash and those `logged` (with an applied
/// write entry) are the same: no record without its entry, no entry without its record.
/// `round` names the round in the messages.
pub fn assert_records_match_entries(
    present: &BTreeSet<RecordKey>,
    logged: &BTreeSet<RecordKey>,
    round: &str,
) {
    let unlogged: Vec<_> = present.difference(logged).collect();
    assert!(
        unlogged.is_empty(),
        "{round}: records without a write entry: {unlogged:?}"
    );
    let missing: Vec<_> = logged.difference(present).collect();
    assert!(
        missing.is_empty(),
        "{round}: write entries without a record: {missing:?}"
    );
}
