//! The command line, as clap types. Secrets never come from here: the passphrase and raw
//! keys are read from the environment or a no-echo prompt (see `secrets`).

use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use medvault::{Action, Purpose};

/// An encrypted, access-logged store for patient records.
#[derive(Parser, Debug)]
#[command(
    name = "medvault",
    version,
    about,
    after_help = "In a command's usage, <ARG> is required and [ARG] optional; options marked \
[required] may come from their environment variable instead.\n\
The root key comes from MEDVAULT_PASSPHRASE, MEDVAULT_KEY_FILE (32 raw bytes or \
64 hex characters) or a no-echo prompt; never from the command line.\n\
Exit codes: 0 ok, 1 other error, 2 usage, 3 wrong key, 4 integrity failure, 5 not found, \
6 access denied, 7 import rejected some input, 8 vault in use, 9 vault already exists, \
10 weak passphrase refused, 11 no such index, 12 refused by a legal hold, 70 internal error. See docs/CLI.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Who is acting and why; required by every command that opens a vault.
#[derive(Args, Debug, Clone)]
pub struct AccessArgs {
    /// [required] Unique id of the acting user or system, recorded in the access log.
    #[arg(long, env = "MEDVAULT_ACTOR")]
    pub actor: Option<String>,
    /// [required] Why: the purpose of use recorded in the access log (emergency is
    /// break-the-glass and needs --reason).
    #[arg(long, env = "MEDVAULT_PURPOSE", value_parser = PurposeParser)]
    pub purpose: Option<Purpose>,
    /// Free-text reason (required with --purpose emergency).
    #[arg(long, env = "MEDVAULT_REASON")]
    pub reason: Option<String>,
    /// A role the actor holds (repeatable, or comma-separated in MEDVAULT_ROLES); what
    /// the vault's access policy allows depends on it (docs/POLICY.md).
    #[arg(long = "role", env = "MEDVAULT_ROLES", value_delimiter = ',')]
    pub roles: Vec<String>,
    /// A custom PurposeOfUse code declared by the vault's policy, refining --purpose.
    #[arg(long, env = "MEDVAULT_PURPOSE_CODE")]
    pub purpose_code: Option<String>,
}

/// A new passphrase: its strength check and its Argon2id cost (RFC 9106). Defaults:
/// 64 MiB, 3 passes, 4 lanes.
#[derive(Args, Debug, Clone, Copy)]
pub struct KdfArgs {
    /// Accept a passphrase that the strength estimate (zxcvbn) calls very weak.
    #[arg(long)]
    pub allow_weak_passphrase: bool,
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
        /// The vault directory to create (must not hold a vault).
        vault: PathBuf,
        #[command(flatten)]
        kdf: KdfArgs,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Import FHIR R4 NDJSON files, Bundles (.json) or directories of them.
    Import {
        /// The vault directory.
        vault: PathBuf,
        /// FHIR R4 NDJSON files, .json resources or Bundles, or directories of them.
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
        /// Stop at the first invalid line or entry (batches committed before it stay).
        /// Default: reject it to the reject file, import everything valid, exit 7.
        #[arg(long)]
        strict: bool,
        /// Where rejected lines and entries go, one FHIR OperationOutcome per line
        /// (created at the first reject) [default: VAULT.rejects.ndjson].
        #[arg(long, value_name = "PATH")]
        reject_file: Option<PathBuf>,
        /// Accepted for compatibility: skipping (rejecting) invalid input is the default.
        #[arg(long, hide = true)]
        skip_invalid: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print a record (JSON), or the records of a subject (NDJSON).
    Get {
        /// The vault directory.
        vault: PathBuf,
        /// The subject (patient) id.
        subject: String,
        /// The collection (FHIR resourceType), e.g. Observation; default: all.
        collection: Option<String>,
        /// The record id within the collection; default: every record.
        record_id: Option<String>,
        /// Only these top-level fields (the others are not decrypted); needs COLLECTION
        /// and RECORD_ID.
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Store a record read as one JSON object from stdin (replaces any previous version).
    Put {
        /// The vault directory.
        vault: PathBuf,
        /// The subject (patient) id.
        subject: String,
        /// The collection (FHIR resourceType), e.g. Observation.
        collection: String,
        /// The record id within the collection.
        record_id: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Delete one record.
    Delete {
        /// The vault directory.
        vault: PathBuf,
        /// The subject (patient) id.
        subject: String,
        /// The collection (FHIR resourceType), e.g. Observation.
        collection: String,
        /// The record id within the collection.
        record_id: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Write the records of the given subjects (default: all) to stdout as FHIR NDJSON;
    /// with --research, a research export through the guard instead (docs/RESEARCH.md).
    Export {
        /// The vault directory.
        vault: PathBuf,
        /// Subject ids to export; default: all.
        subjects: Vec<String>,
        /// A research export (needs --purpose research, --project, --authorization,
        /// --spec and --out): minimized FHIR NDJSON and a manifest, logged as a
        /// disclosure.
        #[arg(long, conflicts_with = "subjects")]
        research: bool,
        /// The research project id.
        #[arg(long, requires = "research")]
        project: Option<String>,
        /// The authorization reference (regulator decision, ethics approval).
        #[arg(long, requires = "research")]
        authorization: Option<String>,
        /// The data specification (JSON file).
        #[arg(long, value_name = "FILE", requires = "research")]
        spec: Option<PathBuf>,
        /// The output directory of a research export.
        #[arg(long, value_name = "DIR", requires = "research")]
        out: Option<PathBuf>,
        /// Print a research export's manifest as JSON.
        #[arg(long, requires = "research")]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Find records through a blind index (NDJSON on stdout; logged as a search, never
    /// with the value). A compound index takes one VALUE per part, e.g.
    /// `find V Patient family-birthdate Smith 1970-01-01`. `find V --list` shows indexes.
    Find {
        /// The vault directory.
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
        /// The vault directory.
        vault: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Erase a subject by destroying its keys and records (crypto-shredding). The vault
    /// remembers the erasure (by keyed pseudonym only): later writes and imports for the
    /// subject are refused until `medvault readmit`.
    Erase {
        /// The vault directory.
        vault: PathBuf,
        /// The subject (patient) id to erase.
        subject: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Re-admit an erased subject who has returned: lift the erasure memory so that its
    /// records may be written or imported again (a new record, under new keys; nothing
    /// erased comes back). Requires --reason; who and why are in the access log.
    Readmit {
        /// The vault directory.
        vault: PathBuf,
        /// The erased subject (patient) id.
        subject: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Take an online, consistent backup of VAULT into the backup set DEST (a new
    /// directory DEST/<id>, ciphertext only, with a MACed manifest; full log segments
    /// of an earlier backup in DEST are reused). Prints its directory and checkpoint.
    Backup {
        /// The vault directory.
        vault: PathBuf,
        /// The backup set directory (created if missing).
        dest: PathBuf,
        /// Bring this erasure ledger up to date first (keep it apart from DEST).
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Restore the backup directory BACKUP into the new directory DEST: checked against
    /// its manifest and checkpoint first, every erasure of the ledger re-applied, logged.
    Restore {
        /// A backup directory (DEST/<id> of `backup`).
        backup: PathBuf,
        /// The new vault directory (must not exist).
        dest: PathBuf,
        /// The erasure ledger (required unless --without-ledger).
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        /// Restore without an erasure ledger: patients erased since the backup come back.
        #[arg(long)]
        without_ledger: bool,
        /// The vault the backup must be of (32 hex digits; default: the ledger's).
        #[arg(long, value_name = "ID")]
        vault_id: Option<String>,
        /// Accept a backup of another vault than expected.
        #[arg(long)]
        other_vault: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Append the vault's erasures not yet in LEDGER to it (MACed, chained lines; keep it
    /// apart from the backups: docs/BACKUP.md).
    ErasureLedger {
        /// The vault directory.
        vault: PathBuf,
        /// The ledger file (created if missing).
        ledger: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Rotate the root key (passphrase), the vault key-encryption key, the data keys, or
    /// all three (the response to a suspected compromise).
    #[command(subcommand)]
    Rotate(RotateCommand),
    /// Verify, checkpoint or query the access log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show or change the vault's access policy (docs/POLICY.md).
    #[command(subcommand)]
    Policy(crate::commands::review::PolicyCommand),
    /// Research export guard: patients' objections, project key destruction
    /// (docs/RESEARCH.md; the export itself is `export --research`).
    #[command(subcommand)]
    Research(crate::commands::research::ResearchCommand),
    /// Print counts and sizes (no patient data).
    Stats {
        /// The vault directory.
        vault: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Run the end-to-end demonstration and print a report: on the shared data set's
    /// Synthea FHIR exports (../shared/data/fhir-r4-ndjson) when found, else on 1000
    /// synthetic patients.
    Demo {
        /// Use this many synthetic patients instead of the shared data set.
        #[arg(long, value_name = "N", conflicts_with = "data")]
        patients: Option<usize>,
        /// Import the FHIR NDJSON files of this directory instead of the shared data set.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Work in this directory (created; must be empty) instead of a temporary one,
        /// and keep it.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = 20_240_806)]
        seed: u64,
        /// Keep the vault on PostgreSQL at this URL (docs/POSTGRES.md; it must not
        /// hold a vault) instead of a directory. The attacks on file copies are then
        /// left out, and the plaintext scan reads every byte of the vault's tables.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RotateCommand {
    /// Change the root key or passphrase (new one from MEDVAULT_NEW_PASSPHRASE,
    /// MEDVAULT_NEW_KEY_FILE or a prompt): one header write, whatever the vault's size.
    /// Someone who copied the header before still holds the vault key-encryption key:
    /// after a suspected compromise use `rotate all`.
    Root {
        /// The vault directory.
        vault: PathBuf,
        #[command(flatten)]
        kdf: KdfArgs,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Rewrap every subject's keys under a new vault key-encryption key, online and
    /// resumable (rerun to finish an interrupted one). Records are untouched.
    Kek {
        /// The vault directory.
        vault: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Compromise response: a new root key or passphrase, a new vault key-encryption
    /// key and new data keys for every subject (records re-encrypted), online. Data
    /// written afterwards opens with no key material from before (SECURITY.md "Key
    /// rotations"). Interrupted after its new root key was in place, `--resume` finishes
    /// it (open warns until then).
    All {
        /// The vault directory.
        vault: PathBuf,
        /// Only finish an interrupted one (no new passphrase asked): the vault
        /// key-encryption key and data keys it had not rotated yet.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        kdf: KdfArgs,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Re-encrypt records under fresh data keys, in resumable batches.
    Data {
        /// The vault directory.
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
        /// The vault directory.
        vault: PathBuf,
        /// A checkpoint token file written by `audit checkpoint`.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print a checkpoint of the access log, to keep outside the vault: the MAC token
    /// (mvcp1:, for `audit verify --checkpoint`) or, with --signed, a signed checkpoint
    /// anyone can check with `medvault-verify` and the vault's public key (docs/VERIFY.md).
    Checkpoint {
        /// The vault directory.
        vault: PathBuf,
        /// Issue a signed checkpoint (C2SP signed note, Ed25519) instead of the MAC token.
        #[arg(long)]
        signed: bool,
        /// Also append the signed checkpoint to FILE (created 0644 if missing); implies
        /// --signed. For shipping checkpoints off the host (witnessing).
        #[arg(long, value_name = "FILE")]
        append: Option<PathBuf>,
        /// Also pipe the signed checkpoint to `sh -c CMD` on its standard input; implies
        /// --signed. A command that fails fails this one (exit 1).
        #[arg(long, value_name = "CMD")]
        exec: Option<String>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print a Merkle proof of the access log for `medvault-verify` (docs/VERIFY.md
    /// "Proof files"): --entry N [--size S] an inclusion proof, --from A --to B a
    /// consistency proof.
    Prove {
        /// The vault directory.
        vault: PathBuf,
        /// Inclusion proof of entry N (0-based sequence number).
        #[arg(long, value_name = "N", conflicts_with_all = ["from", "to"], required_unless_present = "from")]
        entry: Option<u64>,
        /// Tree size of the inclusion proof: the size of the checkpoint you hold
        /// (default: the log's length now).
        #[arg(long, value_name = "S", requires = "entry")]
        size: Option<u64>,
        /// Also write entry N's exact bytes (sealed, as stored) to FILE, for
        /// `medvault-verify inclusion --entry FILE`.
        #[arg(long, value_name = "FILE", requires = "entry")]
        entry_out: Option<PathBuf>,
        /// Consistency proof from tree size A (the older checkpoint's)...
        #[arg(long, value_name = "A", requires = "to")]
        from: Option<u64>,
        /// ... to tree size B (the newer checkpoint's).
        #[arg(long, value_name = "B", requires = "from")]
        to: Option<u64>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print the vault's checkpoint verifier key (public; docs/VERIFY.md "Verifier key"),
    /// made if the vault has none yet. With --all, every key, oldest first, one a line.
    Key {
        /// The vault directory.
        vault: PathBuf,
        /// Every key the vault made (older ones verify checkpoints signed before a
        /// root-key rotation), as `generation current|retired key`.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print access-log entries. --actor and --purpose FILTER here; the auditor is named
    /// by --auditor/--auditor-purpose/--role or MEDVAULT_ACTOR/MEDVAULT_PURPOSE/
    /// MEDVAULT_ROLES.
    Log {
        /// The vault directory.
        vault: PathBuf,
        /// Only entries about this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only entries by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries with this purpose.
        #[arg(long, value_parser = PurposeParser)]
        purpose: Option<Purpose>,
        /// Only entries with this action.
        #[arg(long, value_parser = ActionParser)]
        action: Option<Action>,
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
        /// [required, or MEDVAULT_ACTOR] Who is reading the log.
        #[arg(long, value_name = "ACTOR")]
        auditor: Option<String>,
        /// [required, or MEDVAULT_PURPOSE] Why the log is read.
        #[arg(long, value_name = "PURPOSE", value_parser = PurposeParser)]
        auditor_purpose: Option<Purpose>,
        /// A role the auditor holds (repeatable, or comma-separated in MEDVAULT_ROLES),
        /// as for every other command; under an access policy, reading the log needs a
        /// role with the `audit` capability (docs/POLICY.md).
        #[arg(long = "role", env = "MEDVAULT_ROLES", value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Governance commands: break-the-glass review, patient access report, alerts,
    /// FHIR AuditEvent export (docs/POLICY.md).
    #[command(flatten)]
    Governance(crate::commands::review::GovernanceCommand),
    /// Retention: prune, retention period, legal holds (docs/BACKUP.md).
    #[command(flatten)]
    Retention(crate::commands::backup::RetentionCommand),
}

/// The names `--purpose` accepts, in [`Purpose::ALL`] order.
pub fn purpose_names() -> Vec<&'static str> {
    Purpose::ALL.into_iter().map(Purpose::name).collect()
}

/// Parses a purpose name; clap lists the accepted names in `--help` and in its error.
#[derive(Clone, Copy, Debug)]
pub struct PurposeParser;

impl TypedValueParser for PurposeParser {
    type Value = Purpose;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Purpose, clap::Error> {
        let text = value.to_str().unwrap_or_default();
        text.parse::<Purpose>()
            .map_err(|_| invalid_value(cmd, arg, text, &purpose_names()))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Purpose::ALL.into_iter().map(|p| {
            let v = PossibleValue::new(p.name());
            match p {
                Purpose::Emergency => v.alias("break-the-glass").help("break-the-glass"),
                _ => v,
            }
        })))
    }
}

/// Parses an access-log action name (`--action`), listing the accepted names.
#[derive(Clone, Copy, Debug)]
pub struct ActionParser;

impl TypedValueParser for ActionParser {
    type Value = Action;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Action, clap::Error> {
        let text = value.to_str().unwrap_or_default();
        text.parse::<Action>().map_err(|_| {
            let names: Vec<&str> = all_actions().map(Action::name).collect();
            invalid_value(cmd, arg, text, &names)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            all_actions().map(|a| PossibleValue::new(a.name())),
        ))
    }
}

/// Every access-log action, in code order (the core keeps its list private; its codes
/// are one byte).
fn all_actions() -> impl Iterator<Item = Action> {
    (0..=u8::MAX).filter_map(Action::from_code)
}

/// clap's own "invalid value" error (exit 2), with the accepted values listed.
fn invalid_value(
    cmd: &clap::Command,
    arg: Option<&clap::Arg>,
    value: &str,
    accepted: &[&str],
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut e = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
    if let Some(arg) = arg {
        e.insert(
            ContextKind::InvalidArg,
            ContextValue::String(arg.to_string()),
        );
    }
    e.insert(
        ContextKind::InvalidValue,
        ContextValue::String(value.to_owned()),
    );
    e.insert(
        ContextKind::ValidValue,
        ContextValue::Strings(accepted.iter().map(|s| (*s).to_owned()).collect()),
    );
    e
}
