//! `backup`, `restore`, `erasure-ledger`, and the retention commands under `audit`:
//! `audit prune`, `audit retention`, `audit hold set|lift|list` (docs/BACKUP.md).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use medvault::{Durability, RestoreOptions, Vault, VaultId, VaultOptions};

use crate::access;
use crate::args::AccessArgs;
use crate::exit::{CliResult, Code, Failure};

/// The retention commands, flattened into `medvault audit`.
#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Drop whole access-log segments older than the retention period (never while a
    /// legal hold exists, never an unreviewed break-the-glass access). Export the log
    /// first (`audit log --json`, `audit fhir`) to archive it (docs/BACKUP.md).
    Prune {
        /// The vault directory.
        vault: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print the access-log retention period, or set it with --days.
    Retention {
        /// The vault directory.
        vault: PathBuf,
        /// New period in days (1 to 36500; default of a vault: 365).
        #[arg(long, value_name = "N")]
        days: Option<u32>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Legal holds: while one exists, nothing is pruned.
    #[command(subcommand)]
    Hold(HoldCommand),
}

/// `audit hold ...`.
#[derive(Subcommand, Debug)]
pub enum HoldCommand {
    /// Set a legal hold NAME (A-Z a-z 0-9 . _ -, up to 64), with --reason.
    Set {
        /// The vault directory.
        vault: PathBuf,
        /// The hold's name, e.g. a case number.
        name: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Lift the legal hold NAME, with --reason.
    Lift {
        /// The vault directory.
        vault: PathBuf,
        /// The hold's name.
        name: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// List the legal holds in force.
    List {
        /// The vault directory.
        vault: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
}

/// `medvault backup VAULT DEST`: prints the backup's directory and checkpoint.
pub fn backup(vault: &Path, dest: &Path, ledger: Option<&Path>, args: &AccessArgs) -> CliResult {
    // Before the vault is opened and the ledger written (a PostgreSQL vault has no
    // directory to be inside: the library refuses its backup).
    if crate::backend::url(vault).is_none() {
        check_destination(dest, vault, ("backup", "vault"))?;
    }
    let (ctx, v) = access::open(vault, args)?;
    if let Some(l) = ledger {
        let n = v.update_erasure_ledger(&ctx, l)?;
        eprintln!("erasure ledger {}: {n} erasures added", l.display());
    }
    let r = v.backup(&ctx, dest)?;
    crate::outln!("backup {}", r.dir.display())?;
    crate::outln!("checkpoint {}", r.checkpoint.to_text())?;
    eprintln!(
        "{} record-store pairs, {} log segments copied, {} reused; commit lock held {} ms",
        r.pairs, r.segments_copied, r.segments_reused, r.lock_held_ms
    );
    Ok(())
}

/// `medvault erasure-ledger VAULT LEDGER`.
pub fn ledger(vault: &Path, ledger: &Path, args: &AccessArgs) -> CliResult {
    let (ctx, v) = access::open(vault, args)?;
    let n = v.update_erasure_ledger(&ctx, ledger)?;
    crate::outln!("{n} erasures added to {}", ledger.display())?;
    Ok(())
}

/// What `restore` was told.
pub struct RestoreArgs<'a> {
    pub backup: &'a Path,
    pub dest: &'a Path,
    pub ledger: Option<&'a Path>,
    pub without_ledger: bool,
    pub vault_id: Option<&'a str>,
    pub other_vault: bool,
}

/// A vault id as printed (32 hexadecimal digits).
fn parse_vault_id(s: &str) -> CliResult<VaultId> {
    let s = s.trim();
    let bad = || Failure::usage("--vault-id: 32 hexadecimal digits");
    if s.len() != 32 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut b = [0u8; 16];
    for (i, o) in b.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(VaultId::from(b))
}

/// `medvault restore BACKUP DEST`.
pub fn restore(a: RestoreArgs<'_>, args: &AccessArgs) -> CliResult {
    let ctx = access::context(args)?;
    // Before the key is asked for (the library checks the same, with bare errors).
    if !a.backup.is_dir() {
        return Err(Failure::new(
            Code::NotFound,
            format!("restore: no backup directory at {}", a.backup.display()),
        ));
    }
    if let Some(l) = a.ledger.filter(|l| !l.exists()) {
        return Err(Failure::new(
            Code::NotFound,
            format!(
                "restore: no erasure ledger at {} (`medvault erasure-ledger VAULT FILE` writes \
                 one; --without-ledger restores without it)",
                l.display()
            ),
        ));
    }
    check_destination(a.dest, a.backup, ("restore", "backup"))?;
    let expect_vault = match a.vault_id {
        Some(s) => Some(parse_vault_id(s)?),
        None => None,
    };
    let key = crate::secrets::root_key(a.backup)?;
    let opts = RestoreOptions {
        ledger: a.ledger.map(Path::to_path_buf),
        without_ledger: a.without_ledger,
        expect_vault,
        other_vault: a.other_vault,
        vault: VaultOptions {
            opener: access::opener(&ctx),
            durability: Durability::Every,
            ..VaultOptions::default()
        },
    };
    let r = Vault::restore(a.backup, a.dest, key, opts)
        .map_err(|e| Failure::from(e).context(format!("restore {}", a.backup.display())))?;
    crate::outln!(
        "restored backup {} of vault {} into {}: verified against its checkpoint ({} \
         entries); erasures re-applied from the ledger: {}, already in the backup: {}",
        r.backup_id,
        r.vault_id,
        a.dest.display(),
        r.checkpoint.next_seq,
        r.erasures_applied,
        r.erasures_present
    )?;
    if let Some((seq, ms)) = r.ledger_checked {
        let days = (ms / 86_400_000) as i64;
        let (y, m, d) = medvault::civil::civil_from_days(days);
        let secs = (ms / 1000) % 86_400;
        crate::outln!(
            "the ledger was last brought up to date at log entry {seq} ({y:04}-{m:02}-{d:02} \
             {:02}:{:02}:{:02} UTC): an erasure after that is not in it",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )?;
    }
    if a.ledger.is_none() {
        eprintln!(
            "warning: restored WITHOUT an erasure ledger: a patient erased after this backup \
             was taken is back in {}",
            a.dest.display()
        );
    }
    Ok(())
}

/// [`medvault::backup::check_destination`], refused as a usage error (exit 2): the
/// command line names a destination inside what it copies.
fn check_destination(dest: &Path, dir: &Path, role: (&str, &str)) -> CliResult {
    medvault::backup::check_destination(dest, dir, role).map_err(|e| match e {
        medvault::Error::InvalidInput(i) => Failure::usage(i.detail),
        e => e.into(),
    })
}

/// `audit hold set|lift VAULT NAME`: `change` with the context's reason, then "legal hold
/// NAME `done`".
fn change_hold(
    vault: &Path,
    name: &str,
    access: &AccessArgs,
    done: &str,
    change: fn(&Vault, &medvault::AccessContext, &str, &str) -> medvault::Result<()>,
) -> CliResult {
    let (ctx, v) = access::open(vault, access)?;
    let reason = ctx.reason.clone().unwrap_or_default();
    change(&v, &ctx, name, &reason)?;
    crate::outln!("legal hold {name} {done}")?;
    Ok(())
}

/// Runs a retention command.
pub fn run(c: RetentionCommand) -> CliResult {
    match c {
        RetentionCommand::Prune { vault, access } => {
            let (ctx, v) = access::open(&vault, &access)?;
            let r = v.prune_log(&ctx, None)?;
            if !r.held_by.is_empty() {
                return Err(Failure::new(
                    Code::Held,
                    format!(
                        "audit prune {}: nothing pruned: legal hold in force ({}); the hold \
                         must be lifted first (`audit hold lift`)",
                        vault.display(),
                        r.held_by.join(", ")
                    ),
                ));
            }
            crate::outln!(
                "pruned {} entries ({} segments) older than {} days; the log now starts \
                 at entry {}{}",
                r.entries_dropped,
                r.segments_dropped,
                r.retention_days,
                r.first_kept,
                match r.kept_for_review {
                    Some(s) => format!(
                        "; kept from the break-the-glass access at entry {s}, not yet reviewed"
                    ),
                    None => String::new(),
                }
            )?;
            Ok(())
        }
        RetentionCommand::Retention {
            vault,
            days,
            access,
        } => {
            let (ctx, v) = access::open(&vault, &access)?;
            if let Some(d) = days {
                v.set_retention_days(&ctx, d)?;
            }
            crate::outln!("retention: {} days", v.retention_days()?)?;
            Ok(())
        }
        RetentionCommand::Hold(HoldCommand::Set {
            vault,
            name,
            access,
        }) => change_hold(&vault, &name, &access, "set", Vault::set_legal_hold),
        RetentionCommand::Hold(HoldCommand::Lift {
            vault,
            name,
            access,
        }) => change_hold(&vault, &name, &access, "lifted", Vault::lift_legal_hold),
        RetentionCommand::Hold(HoldCommand::List { vault, access }) => {
            let (ctx, v) = access::open(&vault, &access)?;
            for h in v.legal_holds(&ctx)? {
                crate::outln!(
                    "{}\tset {}\t{}",
                    h.name,
                    crate::clock::format_ms(h.set_at_ms),
                    h.reason
                )?;
            }
            Ok(())
        }
    }
}
