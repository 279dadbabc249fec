//! The access context of a command, from --actor/--purpose/--reason or MEDVAULT_ACTOR,
//! MEDVAULT_PURPOSE, MEDVAULT_REASON, and the opening of a vault under it.

use std::path::Path;

use medvault::storage::SledStorage;
use medvault::{AccessContext, Durability, Purpose, SYSTEM_ACTOR, Vault, VaultOptions};

use crate::args::AccessArgs;
use crate::exit::{CliResult, Code, Failure};
use crate::secrets;

/// Builds the context; fails with a usage error when the actor or purpose is missing.
/// The context is not validated here: the vault validates it and logs a refusal (e.g.
/// break-the-glass without a reason), which an early check here would hide.
pub fn context(args: &AccessArgs) -> CliResult<AccessContext> {
    let actor = args
        .actor
        .clone()
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| Failure::usage("no actor: pass --actor or set MEDVAULT_ACTOR"))?;
    let purpose = args
        .purpose
        .ok_or_else(|| Failure::usage("no purpose: pass --purpose or set MEDVAULT_PURPOSE"))?;
    let mut ctx = AccessContext::new(actor, purpose);
    if let Some(r) = args.reason.clone().filter(|r| !r.trim().is_empty()) {
        ctx = ctx.with_reason(r);
    }
    Ok(ctx)
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
    Vault::open_with(path, key, options)
        .map_err(|e| Failure::from(e).context(format!("open {}", path.display())))
}
