//! The command line, as clap types. Secrets never come from here: the passphrase and raw
//! keys are read from the environment or a no-echo prompt (see `secrets`).

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use medvault::Purpose;

/// An encrypted, access-logged store for patient records.
#[derive(Parser, Debug)]
#[command(
    name = "medvault",
    version,
    about,
    after_help = "The root key comes from MEDVAULT_PASSPHRASE, MEDVAULT_KEY_FILE (32 raw bytes or \
64 hex characters) or a no-echo prompt; never from the command line.\n\
Exit codes: 0 ok, 1 other error, 2 usage, 3 wrong key, 4 integrity failure, 5 not found, \
6 access denied. See docs/CLI.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Who is acting and why; required by every command that opens a vault.
#[derive(Args, Debug, Clone)]
pub struct AccessArgs {
    /// Unique id of the acting user or system, recorded in the access log.
    #[arg(long, env = "MEDVAULT_ACTOR")]
    pub actor: Option<String>,
    /// Why: care, emergency (break-the-glass), administration, billing, research,
    /// patient-request, maintenance.
    #[arg(long, env = "MEDVAULT_PURPOSE", value_parser = parse_purpose)]
    pub purpose: Option<Purpose>,
    /// Free-text reason (required with --purpose emergency).
    #[arg(long, env = "MEDVAULT_REASON")]
    pub reason: Option<String>,
}

/// Argon2id cost of a new passphrase (RFC 9106). Defaults: 64 MiB, 3 passes, 4 lanes.
#[derive(Args, Debug, Clone, Copy)]
pub struct KdfArgs {
    /// Argon2id memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub kdf_memory: u32,
    /// Argon2id passes.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub kdf_iterations: u32,
    /// Argon2id lanes (parallelism).
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub kdf_lanes: u32,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new vault (directory) protected by a passphrase or raw key.
    Init {
        vault: PathBuf,
        #[command(flatten)]
        kdf: KdfArgs,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Import FHIR R4 NDJSON files, Bundles (.json) or directories of them.
    Import {
        vault: PathBuf,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Records per atomic batch (1 to 100000).
        #[arg(
            long,
            value_name = "N",
            default_value_t = medvault_fhir::import::DEFAULT_BATCH_RECORDS,
            value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize)
        )]
        batch: usize,
        /// Skip (and count) invalid input lines instead of stopping at the first.
        #[arg(long)]
        skip_invalid: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print a record (JSON), or the records of a subject (NDJSON).
    Get {
        vault: PathBuf,
        subject: String,
        collection: Option<String>,
        record_id: Option<String>,
        /// Only these top-level fields (the others are not decrypted); needs RECORD_ID.
        #[arg(long, value_delimiter = ',', requires = "record_id")]
        fields: Vec<String>,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Store a record read as one JSON object from stdin (replaces any previous version).
    Put {
        vault: PathBuf,
        subject: String,
        collection: String,
        record_id: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Delete one record.
    Delete {
        vault: PathBuf,
        subject: String,
        collection: String,
        record_id: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Write the records of the given subjects (default: all) to stdout as FHIR NDJSON.
    Export {
        vault: PathBuf,
        subjects: Vec<String>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Find records through a blind index (NDJSON on stdout; logged as a search, never
    /// with the value). A compound index takes one VALUE per part, e.g.
    /// `find V Patient family-birthdate Smith 1970-01-01`. `find V --list` shows indexes.
    Find {
        vault: PathBuf,
        /// The collection (FHIR resourceType), e.g. Patient.
        #[arg(required_unless_present = "list")]
        collection: Option<String>,
        /// The index name, e.g. identifier, family, given, birthdate, family-birthdate, code.
        #[arg(required_unless_present = "list")]
        index: Option<String>,
        /// The value(s) looked up.
        #[arg(required_unless_present = "list")]
        values: Vec<String>,
        /// List the indexes defined in the vault instead.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// List the subject ids held (one per line; logged as a search).
    Subjects {
        vault: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Erase a subject by destroying its keys and records (crypto-shredding).
    Erase {
        vault: PathBuf,
        subject: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Rotate the root key or the data keys.
    #[command(subcommand)]
    Rotate(RotateCommand),
    /// Verify, checkpoint or query the access log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print counts and sizes (no patient data).
    Stats {
        vault: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Run the end-to-end demonstration on synthetic patients and print a report.
    Demo {
        /// Number of synthetic patients.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        patients: usize,
        /// Work in this directory (created; must be empty) instead of a temporary one,
        /// and keep it.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = 20_240_806)]
        seed: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum RotateCommand {
    /// Rewrap every subject's data keys under a new root key (new passphrase from
    /// MEDVAULT_NEW_PASSPHRASE, MEDVAULT_NEW_KEY_FILE or a prompt). Records are untouched.
    Root {
        vault: PathBuf,
        #[command(flatten)]
        kdf: KdfArgs,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Re-encrypt records under fresh data keys, in resumable batches.
    Data {
        vault: PathBuf,
        /// Only finish a rotation that was interrupted; start none.
        #[arg(long)]
        resume: bool,
        /// Only these subjects (default: all).
        #[arg(long = "subject", value_name = "SUBJECT")]
        subjects: Vec<String>,
        #[command(flatten)]
        access: AccessArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the whole access log; with --checkpoint, also detect a rollback or deletion.
    Verify {
        vault: PathBuf,
        /// A checkpoint token file written by `audit checkpoint`.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print a checkpoint token of the access log, to keep outside the vault.
    Checkpoint {
        vault: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print access-log entries. --actor and --purpose FILTER here; the auditor is named
    /// by --auditor/--auditor-purpose or MEDVAULT_ACTOR/MEDVAULT_PURPOSE.
    Log {
        vault: PathBuf,
        /// Only entries about this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only entries by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries with this purpose.
        #[arg(long, value_parser = parse_purpose)]
        purpose: Option<Purpose>,
        /// Only entries with this action (read, write, import, erase, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only entries at or after T (RFC 3339 UTC like 2024-08-06T18:12:57Z, a date,
        /// or milliseconds since the Unix epoch).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only entries before T.
        #[arg(long, value_name = "T")]
        until: Option<String>,
        /// JSON Lines output.
        #[arg(long)]
        json: bool,
        /// Who is reading the log (default MEDVAULT_ACTOR).
        #[arg(long, value_name = "ACTOR")]
        auditor: Option<String>,
        /// Why (default MEDVAULT_PURPOSE).
        #[arg(long, value_name = "PURPOSE", value_parser = parse_purpose)]
        auditor_purpose: Option<Purpose>,
    },
}

fn parse_purpose(s: &str) -> Result<Purpose, String> {
    s.parse::<Purpose>().map_err(|e| e.to_string())
}
