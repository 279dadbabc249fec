//! Shared by the integration tests: where the real FHIR data lives, and a runner for the
//! built `medvault` binary with a clean environment.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The folder holding `13-patients/` and `1144-patients/`: `$MEDVAULT_FHIR_DATA`, else
/// `$CARGO_MANIFEST_DIR/../shared/data/fhir-r4-ndjson`. `None` (with a note on stderr)
/// when absent, so the calling test can skip; under `CI=true` absence is a failure.
pub fn fhir_data() -> Option<PathBuf> {
    let dir = match std::env::var_os("MEDVAULT_FHIR_DATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fhir-r4-ndjson"),
    };
    if dir.join("13-patients").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CI=true but the FHIR test data is missing at {} (set MEDVAULT_FHIR_DATA)",
            dir.display()
        );
    }
    eprintln!(
        "note: skipping, FHIR test data not found at {} (set MEDVAULT_FHIR_DATA)",
        dir.display()
    );
    None
}

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
    /// A maintenance operator with passphrase `pw`.
    pub fn new() -> Self {
        Medvault {
            env: vec![
                ("MEDVAULT_PASSPHRASE".into(), "pw".into()),
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

    /// Runs `medvault ARGS` with `stdin` fed in.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
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
        let mut child = cmd.spawn().expect("spawn medvault");
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
        self.ok(&[
            "init",
            p,
            "--kdf-memory",
            "1",
            "--kdf-iterations",
            "1",
            "--kdf-lanes",
            "1",
        ]);
    }
}

/// Parses NDJSON into `(resourceType, id) -> resource`; panics on a duplicate.
pub fn by_type_and_id(ndjson: &str) -> HashMap<(String, String), serde_json::Value> {
    let mut map = HashMap::new();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let t = v["resourceType"].as_str().expect("resourceType").to_owned();
        let id = v["id"].as_str().expect("id").to_owned();
        assert!(map.insert((t, id), v).is_none(), "duplicate resource");
    }
    map
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Returns the needles found in any file under `dir` (as bytes, anywhere). Needles are
/// grouped by their first 4 bytes so that one pass per file suffices.
pub fn needles_found_under(dir: &Path, needles: &[String]) -> Vec<String> {
    let mut by_prefix: HashMap<[u8; 4], Vec<&[u8]>> = HashMap::new();
    for n in needles {
        let b = n.as_bytes();
        assert!(b.len() >= 4, "needle too short to be meaningful");
        by_prefix
            .entry([b[0], b[1], b[2], b[3]])
            .or_default()
            .push(b);
    }
    let mut found = Vec::new();
    for file in files_under(dir) {
        let bytes = std::fs::read(&file).expect("read vault file");
        for i in 0..bytes.len().saturating_sub(3) {
            let key = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
            if let Some(cands) = by_prefix.get(&key) {
                for c in cands {
                    if bytes[i..].starts_with(c) {
                        found.push(String::from_utf8_lossy(c).into_owned());
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}
