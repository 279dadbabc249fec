//! `medvault-verify`: checks a vault's signed checkpoints and its inclusion and consistency
//! proofs with the vault's public key only. Exit status: 0 verified, 1 verification failed
//! (or malformed input), 2 usage error or unreadable file. Formats: `docs/VERIFY.md`.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use medvault_verify::{Checkpoint, ConsistencyProof, InclusionProof, VerifierKey, leaf_hash};

/// Largest input file read, in bytes (checkpoints and proofs are far smaller).
const MAX_FILE: u64 = 64 * 1024;
/// Largest log entry file read for `--entry`, in bytes.
const MAX_ENTRY: u64 = 64 * 1024 * 1024;

#[derive(Parser)]
#[command(
    name = "medvault-verify",
    version,
    about = "Check a medvault access log's signed checkpoints and Merkle proofs without any secret"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
#[group(required = true, multiple = true)]
struct KeyArg {
    /// A verifier key of the vault: `medvault/<vault id>+<key id>+<base64 key>`.
    /// Repeat it for every key the vault published (one per signing-key generation: a
    /// root-key rotation turns the key over), so checkpoints on both sides of a rotation
    /// can be checked together
    #[arg(long)]
    key: Vec<String>,
    /// A file of verifier keys, one per line (repeatable)
    #[arg(long)]
    key_file: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a signed checkpoint and print what it states
    Checkpoint {
        #[command(flatten)]
        key: KeyArg,
        /// The signed checkpoint file
        checkpoint: PathBuf,
    },
    /// Verify that a log entry is in the log a checkpoint commits to
    Inclusion {
        #[command(flatten)]
        key: KeyArg,
        /// The signed checkpoint file
        #[arg(long)]
        checkpoint: PathBuf,
        /// The inclusion proof file
        #[arg(long)]
        proof: PathBuf,
        /// The log entry's exact bytes; its leaf hash must be the proof's
        #[arg(long)]
        entry: Option<PathBuf>,
    },
    /// Verify that a later checkpoint extends an earlier one (no history rewritten)
    Consistency {
        #[command(flatten)]
        key: KeyArg,
        /// The earlier signed checkpoint file
        #[arg(long)]
        old: PathBuf,
        /// The later signed checkpoint file
        #[arg(long)]
        new: PathBuf,
        /// The consistency proof file
        #[arg(long)]
        proof: PathBuf,
    },
}

/// Why the command failed: an input it could not read (exit 2) or a check that did not
/// hold (exit 1).
enum Failure {
    Input(String),
    Verify(String),
}

fn read(path: &Path, limit: u64) -> Result<Vec<u8>, Failure> {
    let what = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Failure::Input(format!("{what}: {e}")))?;
    if meta.len() > limit {
        return Err(Failure::Input(format!("{what}: larger than {limit} bytes")));
    }
    std::fs::read(path).map_err(|e| Failure::Input(format!("{what}: {e}")))
}

fn read_text(path: &Path) -> Result<String, Failure> {
    String::from_utf8(read(path, MAX_FILE)?)
        .map_err(|_| Failure::Verify(format!("{}: not UTF-8 text", path.display())))
}

fn verify_err(context: &str) -> impl Fn(medvault_verify::Error) -> Failure + '_ {
    move |e| Failure::Verify(format!("{context}: {e}"))
}

/// Every key given, in order: each `--key`, then each non-empty line of each
/// `--key-file`.
fn load_key(arg: &KeyArg) -> Result<Vec<VerifierKey>, Failure> {
    let mut keys = Vec::new();
    for k in &arg.key {
        keys.push(VerifierKey::parse(k).map_err(verify_err("key"))?);
    }
    for p in &arg.key_file {
        let text = read_text(p)?;
        let what = p.display().to_string();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            keys.push(VerifierKey::parse(line.trim()).map_err(verify_err(&what))?);
        }
    }
    if keys.is_empty() {
        return Err(Failure::Input("no key given".into()));
    }
    Ok(keys)
}

/// Opens a signed checkpoint with whichever of `keys` signed it.
fn load_checkpoint(path: &Path, keys: &[VerifierKey]) -> Result<Checkpoint, Failure> {
    let note = read_text(path)?;
    Checkpoint::open_any(&note, keys)
        .map(|(cp, _)| cp)
        .map_err(verify_err(&path.display().to_string()))
}

fn describe(cp: &Checkpoint) -> String {
    let root = cp
        .root
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    format!(
        "vault {} size {} root {root} time {}",
        cp.vault_id, cp.tree_size, cp.time
    )
}

fn run(cli: Cli) -> Result<String, Failure> {
    match cli.command {
        Command::Checkpoint { key, checkpoint } => {
            let key = load_key(&key)?;
            let cp = load_checkpoint(&checkpoint, &key)?;
            Ok(format!("OK checkpoint {}", describe(&cp)))
        }
        Command::Inclusion {
            key,
            checkpoint,
            proof,
            entry,
        } => {
            let key = load_key(&key)?;
            let cp = load_checkpoint(&checkpoint, &key)?;
            let (p, leaf) =
                InclusionProof::from_text(&read_text(&proof)?).map_err(verify_err("proof"))?;
            if let Some(entry) = entry
                && leaf_hash(&read(&entry, MAX_ENTRY)?) != leaf
            {
                return Err(Failure::Verify(
                    "entry: its leaf hash is not the one the proof names".into(),
                ));
            }
            if p.tree_size != cp.tree_size {
                return Err(Failure::Verify(format!(
                    "proof is for tree size {}, the checkpoint has {}",
                    p.tree_size, cp.tree_size
                )));
            }
            p.verify(&leaf, &cp.root).map_err(verify_err("inclusion"))?;
            Ok(format!(
                "OK inclusion of entry {} in {}",
                p.leaf_index,
                describe(&cp)
            ))
        }
        Command::Consistency {
            key,
            old,
            new,
            proof,
        } => {
            let key = load_key(&key)?;
            let old_cp = load_checkpoint(&old, &key)?;
            let new_cp = load_checkpoint(&new, &key)?;
            let p =
                ConsistencyProof::from_text(&read_text(&proof)?).map_err(verify_err("proof"))?;
            old_cp
                .verify_extends(&new_cp, &p)
                .map_err(verify_err("consistency"))?;
            Ok(format!(
                "OK consistency: {} extends {}",
                describe(&new_cp),
                describe(&old_cp)
            ))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(Failure::Verify(msg)) => {
            eprintln!("medvault-verify: FAILED: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Input(msg)) => {
            eprintln!("medvault-verify: cannot read input: {msg}");
            ExitCode::from(2)
        }
    }
}
