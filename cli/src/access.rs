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
    for r in args.roles.iter().filter(|r| !r.trim().is_empty()) {
        ctx = ctx.with_role(r.trim());
    }
    if let Some(c) = args.purpose_code.clone().filter(|c| !c.trim().is_empty()) {
        ctx = ctx.with_purpose_code(c.trim());
    }
    if let Some(r) = args.reason.clone().filter(|r| !r.trim().is_empty()) {
        ctx = ctx.with_reason(r);
    }
    Ok(ctx)
}

/// What to tell an operator whose vault at `dir` is in use: the holder's pid and what to
/// do. The pid comes from the kernel's table of file locks (Linux `/proc/locks`, see
/// proc(5)), else from the lock file if the core wrote it there; without either, the
/// message says how to find the holder.
// TODO(core, issue 21 "in use names the holder"): the core takes the lock (DirLock in
// storage/sled_backend.rs) but does not write the holder's pid into the lock file; where
// /proc/locks is missing (not Linux), a `pid N` (or bare number) written there by the core
// would be named here without a change.
pub fn lock_holder_hint(dir: &Path) -> String {
    // The lock file of the directory lock (`medvault::storage::DirLock`).
    let lock = dir.join("lock");
    let pid = flock_holder(&lock).or_else(|| {
        let bytes = std::fs::read(&lock).ok()?;
        let text = String::from_utf8(bytes.into_iter().take(64).collect()).ok()?;
        text.trim()
            .trim_start_matches("pid")
            .trim()
            .parse::<u32>()
            .ok()
    });
    match pid {
        Some(pid) => format!(
            " (held by process {pid}); wait for it to finish, or stop that process if it is stuck \
             (e.g. `kill {pid}`), then retry"
        ),
        None => format!(
            "; another medvault command or application has it open: wait for it to finish, \
             or find the holder's pid with `fuser -v {}` (or `lsof`) and stop it if it is stuck",
            lock.display()
        ),
    }
}

/// The pid holding a `flock` on `file`, from `/proc/locks` (lines like
/// `1: FLOCK  ADVISORY  WRITE 22981 fe:00:5612241 0 EOF`: pid, then device major:minor
/// in hex and inode). `None` off Linux or when no holder is listed.
fn flock_holder(file: &Path) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(file).ok()?;
        let dev = meta.dev();
        // The Linux dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let want = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        let table = std::fs::read_to_string("/proc/locks").ok()?;
        table.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Blocked waiters are listed as `N: -> FLOCK ...`: not holders.
            (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
                .then(|| f.get(4)?.parse().ok())
                .flatten()
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        None
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
    let url = crate::backend::url(path).is_some();
    // Checked before the passphrase is asked for (a URL: by the open itself).
    if !url {
        let header = SledStorage::read_header_at(path)
            .map_err(|e| Failure::other(format!("open {}: {e}", path.display())))?;
        if header.is_none() {
            return Err(Failure::new(
                Code::NotFound,
                format!("no vault at {}", path.display()),
            ));
        }
    }
    let shown = crate::backend::shown(path);
    let key = secrets::root_key(Path::new(&shown))?;
    // A command is a short-lived process: every log entry, a read's included, is on disk
    // before the command returns (and before a read prints anything).
    let options = VaultOptions {
        opener: opener(ctx),
        durability: Durability::Every,
        ..VaultOptions::default()
    };
    let vault = crate::backend::open(path, key, options)?.map_err(|e| {
        if url && matches!(e, medvault::Error::NotFound) {
            return Failure::new(Code::NotFound, format!("no vault at {shown}"));
        }
        let mut f = crate::exit::open_failure(e);
        if f.code == Code::InUse && !url {
            f.message.push_str(&lock_holder_hint(path));
        }
        f.context(format!("open {shown}"))
    })?;
    // What the vault found amiss without refusing to open (e.g. files others can read).
    for w in vault.warnings() {
        eprintln!("medvault: warning: {w}");
    }
    Ok(vault)
}
