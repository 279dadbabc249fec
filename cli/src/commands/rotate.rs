//! `rotate root`, `rotate kek`, `rotate data` and `rotate all`: the key lifecycle.

use std::path::Path;
use std::time::Instant;

use medvault::{KeySource, RotateAllReport, RotationScope};

use crate::access;
use crate::args::{AccessArgs, KdfArgs};
use crate::exit::{CliResult, Code, Failure};
use crate::progress::{self, Unit};
use crate::secrets;

/// The new root key (and its KDF parameters) for `root` and `all`.
fn next_key(
    path: &Path,
    kdf: &KdfArgs,
    ctx: &medvault::AccessContext,
) -> Result<(KeySource, medvault::KdfParams), Failure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let new_key =
        secrets::next_root_key(kdf.allow_weak_passphrase, &[&name, &ctx.actor, "medvault"])?;
    let params = match new_key {
        KeySource::Passphrase(_) => {
            secrets::kdf_params(kdf.kdf_memory, kdf.kdf_iterations, kdf.kdf_lanes)?
        }
        _ => medvault::KdfParams::default(),
    };
    Ok((new_key, params))
}

/// `medvault rotate root VAULT`: rewraps the vault secret and key-encryption key under a
/// new root key (one header write).
pub fn root(path: &Path, kdf: KdfArgs, args: &AccessArgs) -> CliResult {
    let ctx = access::context_for(args, secrets::KeyNeed::OpenAndNext)?;
    let vault = access::open_vault(path, &ctx)?;
    let (new_key, params) = next_key(path, &kdf, &ctx)?;
    let started = Instant::now();
    let n = vault.rotate_root_key(&ctx, new_key, params, &mut |_| {})?;
    crate::outln!(
        "root key rotated: {} rewrapped in {:.3} s; the old key no longer opens the vault \
         (a copy of the header taken before still holds the vault key-encryption key: \
         after a suspected compromise, run `medvault rotate all`)",
        crate::human::count_as(n, "key", "keys"),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// `medvault rotate kek VAULT`: rewraps every subject entry under a new vault
/// key-encryption key (finishes an interrupted one first).
pub fn kek(path: &Path, args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let resumed = vault.vault_kek_rotation_pending();
    let bar = progress::bar(0, Unit::Items("subject key entries"));
    let started = Instant::now();
    let result = vault.rotate_vault_kek(&ctx, &mut |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    });
    bar.finish_and_clear();
    let n = result?;
    let secs = started.elapsed().as_secs_f64();
    crate::outln!(
        "{}: {} rewrapped in {secs:.2} s ({:.0}/s); records untouched",
        if resumed {
            "interrupted key-encryption-key rotation finished"
        } else {
            "vault key-encryption key rotated"
        },
        crate::human::count_as(n, "subject key entry", "subject key entries"),
        n as f64 / secs.max(1e-9)
    )?;
    Ok(())
}

/// `medvault rotate all VAULT`: root key, vault key-encryption key and every data key.
pub fn all(path: &Path, kdf: KdfArgs, args: &AccessArgs) -> CliResult {
    let ctx = access::context_for(args, secrets::KeyNeed::OpenAndNext)?;
    let vault = access::open_vault(path, &ctx)?;
    let (new_key, params) = next_key(path, &kdf, &ctx)?;
    report_all(
        "all keys rotated",
        "new root key, ",
        "; nothing copied before opens data written from now on",
        |progress| vault.rotate_all(&ctx, new_key, params, progress),
    )
}

/// `medvault rotate all VAULT --resume`: finishes a compromise response interrupted after
/// its new root key was in place (the KEK and data-key phases).
pub fn resume_all(path: &Path, args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    report_all(
        "interrupted compromise response finished",
        "",
        "",
        |progress| vault.resume_rotate_all(&ctx, progress),
    )
}

/// Runs a `rotate all` (or its resumption) under a progress bar and prints what it did:
/// `what` first, then `head`, the counts, and `tail`.
fn report_all(
    what: &str,
    head: &str,
    tail: &str,
    run: impl FnOnce(&mut dyn FnMut(medvault::Progress)) -> medvault::Result<RotateAllReport>,
) -> CliResult {
    let bar = progress::bar(0, Unit::Items("keys and records"));
    let started = Instant::now();
    let result = run(&mut |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    });
    bar.finish_and_clear();
    let r = result?;
    crate::outln!(
        "{what} in {:.2} s: {head}{} rewrapped under a new key-encryption key, {} \
         re-encrypted under new data keys of {}{tail}",
        started.elapsed().as_secs_f64(),
        crate::human::count_as(
            r.subject_entries_rewrapped,
            "subject key entry",
            "subject key entries"
        ),
        crate::human::count(r.data.records, "record"),
        crate::human::count(r.data.subjects, "subject"),
    )?;
    Ok(())
}

/// `medvault rotate data VAULT [--resume] [--subject S]...`: re-encrypts records under
/// new data keys. An interrupted rotation is finished first; `--resume` does only that.
pub fn data(path: &Path, resume: bool, subjects: &[String], args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let scope = if subjects.is_empty() {
        RotationScope::All
    } else {
        // The core rotates the subjects it holds and passes over the others in silence; a
        // name the vault does not hold is an operator's mistake, said before any work.
        let held: std::collections::HashSet<String> = vault.subjects(&ctx)?.into_iter().collect();
        let unknown: Vec<String> = subjects
            .iter()
            .filter(|s| !held.contains(*s))
            .map(|s| crate::commands::audit::escape(s).into_owned())
            .collect();
        if !unknown.is_empty() {
            return Err(Failure::new(
                Code::NotFound,
                format!(
                    "no such subject: {}; nothing rotated (`medvault subjects VAULT` lists them)",
                    unknown.join(", ")
                ),
            ));
        }
        RotationScope::Subjects(subjects.to_vec())
    };
    let run = |what: &str| -> CliResult {
        let bar = progress::bar(0, Unit::Items("records"));
        let started = Instant::now();
        let result = vault.rotate_data_keys(&ctx, &scope, &mut |p| {
            bar.set_length(p.total);
            bar.set_position(p.done);
        });
        bar.finish_and_clear();
        let r = result?;
        let secs = started.elapsed().as_secs_f64();
        crate::outln!(
            "{what}: {}, {} re-encrypted in {secs:.2} s ({:.0} records/s); old data-key versions retired",
            crate::human::count(r.subjects, "subject"),
            crate::human::count(r.records, "record"),
            r.records as f64 / secs.max(1e-9)
        )?;
        Ok(())
    };
    let pending = vault.data_key_rotation_pending()?;
    if pending {
        run("interrupted data-key rotation finished")?;
    } else if resume {
        crate::outln!("no data-key rotation pending")?;
    }
    if !resume {
        run("data keys rotated")?;
    }
    Ok(())
}
