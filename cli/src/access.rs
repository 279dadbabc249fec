//! The access context of a command, from --actor/--purpose/--reason or MEDVAULT_ACTOR,
//! MEDVAULT_PURPOSE, MEDVAULT_REASON, and the opening of a vault under it.

use std::path::Path;

use medvault::storage::SledStorage;
use medvault::{AccessContext, Durability, Purpose, SYSTEM_ACTOR, Vault, VaultOptions};

use crate::args::AccessArgs;
use crate::exit::{CliResult, Code, Failure};
use crate::secrets;

/// Builds the context of a command that opens an existing vault; see [`context_for`].
pub fn context(args: &AccessArgs) -> CliResult<AccessContext> {
    context_for(args, secrets::KeyNeed::Open)
}

/// Builds the context; fails with one usage error naming *every* missing requirement
/// (actor, purpose, and the key sources `need` asks for when none is set and there is no
/// terminal to prompt on), so that one run tells the operator all that is needed.
/// The context is not validated here: the vault validates it and logs a refusal (e.g.
/// break-the-glass without a reason), which an early check here would hide.
pub fn context_for(args: &AccessArgs, need: secrets::KeyNeed) -> CliResult<AccessContext> {
    let actor = args.actor.clone().filter(|a| !a.trim().is_empty());
    let mut missing = Vec::new();
    if actor.is_none() {
        missing.push("an actor (--actor or MEDVAULT_ACTOR)".to_owned());
    }
    if args.purpose.is_none() {
        missing.push(format!(
            "a purpose (--purpose or MEDVAULT_PURPOSE: one of {})",
            crate::args::purpose_names().join(", ")
        ));
    }
    missing.extend(secrets::missing_keys(need));
    let (Some(actor), Some(purpose), true) = (actor, args.purpose, missing.is_empty()) else {
        return Err(Failure::usage(format!("missing {}", missing.join("; "))));
    };
    let mut ctx = AccessContext::new(actor, purpose);
    if let Some(r) = args.reason.clone().filter(|r| !r.trim().is_empty()) {
        ctx = ctx.with_reason(r);
    }
    Ok(ctx)
}

/// What to tell an operator whose vault at `dir` is in use: the holder's pid when the
/// lock file names one, and how to find it otherwise.
// TODO(core, issue 21 "in use names the holder"): the core takes the lock (DirLock in
// storage/sled_backend.rs) but does not write the holder's pid into the lock file yet;
// once it writes `pid N` (or just the number) this names it without a change here.
pub fn lock_holder_hint(dir: &Path) -> String {
    // The lock file of the directory lock (`medvault::storage::DirLock`).
    let lock = dir.join("lock");
    let pid = std::fs::read(&lock).ok().and_then(|b| {
        let text = String::from_utf8(b.into_iter().take(64).collect()).ok()?;
        let digits = text.trim().trim_start_matches("pid").trim();
        digits.parse::<u32>().ok()
    });
    match pid {
        Some(pid) => {
            format!(" (held by process {pid}); wait for it to finish, or stop it if it is stuck")
        }
        None => format!(
            "; another medvault command or application has it open: wait for it to finish, \
             or find the holder's pid with `fuser -v {}` (or `lsof`) and stop it if it is stuck",
            lock.display()
        ),
    }
}

/// The context recorded in the vault's `open` entry: the caller's when it is valid;
/// otherwise the system actor, so that the refused operation that follows is itself
/// logged under the caller's name rather than failing unrecorded at open.
pub fn opener(ctx: &AccessContext) -> AccessContext {
    if ctx.validate().is_ok() {
        ctx.clone()
    } else {
        AccessContext::new(SYSTEM_ACTOR, Purpose::Maintenance)
            .with_reason("opened for a request whose access context was refused")
    }
}

/// The access context of `args` and the vault at `path` opened under it (see
/// [`context`] and [`open_vault`]).
pub fn open(path: &Path, args: &AccessArgs) -> CliResult<(AccessContext, Vault)> {
    let ctx = context(args)?;
    let vault = open_vault(path, &ctx)?;
    Ok((ctx, vault))
}

/// Opens the vault at `path` with the root key from the environment or a prompt.
pub fn open_vault(path: &Path, ctx: &AccessContext) -> CliResult<Vault> {
    // Checked before the passphrase is asked for.
    let header = SledStorage::read_header_at(path)
        .map_err(|e| Failure::other(format!("open {}: {e}", path.display())))?;
    if header.is_none() {
        return Err(Failure::new(
            Code::NotFound,
            format!("no vault at {}", path.display()),
        ));
    }
    let key = secrets::root_key(path)?;
    // A command is a short-lived process: every log entry, a read's included, is on disk
    // before the command returns (and before a read prints anything).
    let options = VaultOptions {
        opener: opener(ctx),
        durability: Durability::Every,
        ..VaultOptions::default()
    };
    Vault::open_with(path, key, options).map_err(|e| {
        let mut f = Failure::from(e);
        if f.code == Code::InUse {
            f.message.push_str(&lock_holder_hint(path));
        }
        f.context(format!("open {}", path.display()))
    })
}
