//! `audit verify`, `audit checkpoint`, `audit log`: the access log.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use medvault::{Action, Checkpoint, LogQuery, Outcome, Purpose};

use crate::access;
use crate::args::AccessArgs;
use crate::clock;
use crate::exit::{CliResult, Failure};

/// Largest checkpoint file read (a token is 185 characters).
const MAX_CHECKPOINT_FILE: u64 = 4096;

/// `medvault audit verify VAULT [--checkpoint FILE]`.
pub fn verify(path: &Path, checkpoint: Option<&Path>, args: &AccessArgs) -> CliResult {
    let ctx = access::context(args)?;
    let cp =
        match checkpoint {
            Some(file) => {
                // Bounded read: /dev/zero or a pipe report 0 bytes and never end.
                let mut raw = Vec::new();
                std::fs::File::open(file)
                    .and_then(|f| {
                        std::io::Read::read_to_end(
                            &mut std::io::Read::take(f, MAX_CHECKPOINT_FILE + 1),
                            &mut raw,
                        )
                    })
                    .map_err(|e| Failure::other(format!("checkpoint {}: {e}", file.display())))?;
                let text = match String::from_utf8(raw) {
                    Ok(t) if t.len() as u64 <= MAX_CHECKPOINT_FILE => t,
                    _ => {
                        return Err(Failure::other(format!(
                            "checkpoint {}: not a checkpoint file",
                            file.display()
                        )));
                    }
                };
                Some(Checkpoint::from_text(&text).map_err(|e| {
                    Failure::from(e).context(format!("checkpoint {}", file.display()))
                })?)
            }
            None => None,
        };
    let vault = access::open_vault(path, &ctx)?;
    let started = Instant::now();
    let n = vault.verify(&ctx, cp.as_ref())?;
    let secs = started.elapsed().as_secs_f64();
    match &cp {
        Some(c) => crate::outln!(
            "access log intact: {n} entries verified in {secs:.3} s; it extends the checkpoint, \
             which pinned its first {} entries",
            c.next_seq
        )?,
        None => crate::outln!("access log intact: {n} entries verified in {secs:.3} s")?,
    }
    Ok(())
}

/// `medvault audit checkpoint VAULT`: the token on stdout.
pub fn checkpoint(path: &Path, args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let cp = vault.checkpoint(&ctx)?;
    crate::outln!("{}", cp.to_text())?;
    Ok(())
}

/// `medvault audit checkpoint VAULT --signed [--append FILE] [--exec CMD]`: the signed
/// note on stdout, appended to FILE, piped to CMD (witnessing, docs/VERIFY.md).
pub fn signed_checkpoint(
    path: &Path,
    append: Option<&Path>,
    exec: Option<&str>,
    args: &AccessArgs,
) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let cp = vault.signed_checkpoint(&ctx)?;
    drop(vault);
    if let Some(file) = append {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(file)
            .and_then(|mut f| {
                f.write_all(cp.note.as_bytes())?;
                f.sync_data()
            })
            .map_err(|e| Failure::other(format!("--append {}: {e}", file.display())))?;
    }
    if let Some(cmd) = exec {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Failure::other(format!("--exec: cannot run sh: {e}")))?;
        let wrote = child
            .stdin
            .take()
            .map(|mut i| i.write_all(cp.note.as_bytes()));
        let status = child
            .wait()
            .map_err(|e| Failure::other(format!("--exec: {e}")))?;
        if let Some(Err(e)) = wrote {
            return Err(Failure::other(format!(
                "--exec: the command did not take the checkpoint: {e}"
            )));
        }
        if !status.success() {
            return Err(Failure::other(format!(
                "--exec: the command failed ({status}); the checkpoint (size {}) is issued \
                 and logged but was not shipped",
                cp.tree_size
            )));
        }
    }
    crate::out!("{}", cp.note)?;
    Ok(())
}

/// What `audit prove` was asked, as typed.
pub struct ProofAsk {
    pub entry: Option<u64>,
    pub size: Option<u64>,
    pub entry_out: Option<std::path::PathBuf>,
    pub from: Option<u64>,
    pub to: Option<u64>,
}

/// `medvault audit prove VAULT --entry N [--size S] [--entry-out FILE]` or `--from A --to
/// B`: the proof file (docs/VERIFY.md "Proof files") on stdout.
pub fn prove(path: &Path, ask: ProofAsk, args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let text = match (ask.entry, ask.from, ask.to) {
        (Some(n), None, None) => {
            let text = vault.prove_inclusion(&ctx, n, ask.size)?;
            if let Some(file) = &ask.entry_out {
                let bytes = vault.entry_bytes(&ctx, n)?;
                std::fs::write(file, bytes)
                    .map_err(|e| Failure::other(format!("--entry-out {}: {e}", file.display())))?;
            }
            text
        }
        (None, Some(a), Some(b)) => vault.prove_consistency(&ctx, a, Some(b))?,
        _ => {
            return Err(Failure::usage(
                "give --entry N [--size S], or --from A --to B",
            ));
        }
    };
    crate::out!("{text}")?;
    Ok(())
}

/// `medvault audit key VAULT [--all]`: the verifier key(s).
pub fn key(path: &Path, all: bool, args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let current = vault.verifier_key(&ctx)?;
    if !all {
        crate::outln!("{current}")?;
        return Ok(());
    }
    for k in vault.checkpoint_keys()? {
        let state = if k.current { "current" } else { "retired" };
        crate::outln!("{} {state} {}", k.generation, k.verifier_key)?;
    }
    Ok(())
}

/// Filters of `audit log`, as typed.
pub struct Filter {
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub purpose: Option<Purpose>,
    pub action: Option<Action>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Who reads the log with `audit log`, as typed (`--auditor`, `--auditor-purpose`,
/// `--role`; the role already falls back to MEDVAULT_ROLES through clap).
pub struct Auditor {
    pub actor: Option<String>,
    pub purpose: Option<Purpose>,
    pub roles: Vec<String>,
}

/// `medvault audit log VAULT [filters] [--json]`.
pub fn log(path: &Path, filter: Filter, json: bool, auditor: Auditor) -> CliResult {
    let env = AccessArgs {
        actor: auditor
            .actor
            .or_else(|| std::env::var("MEDVAULT_ACTOR").ok()),
        purpose: match auditor.purpose {
            Some(p) => Some(p),
            None => match std::env::var("MEDVAULT_PURPOSE") {
                Ok(s) => Some(s.parse::<Purpose>().map_err(|_| {
                    Failure::usage(format!(
                        "MEDVAULT_PURPOSE: unknown purpose; expected one of {}",
                        crate::args::purpose_names().join(", ")
                    ))
                })?),
                Err(_) => None,
            },
        },
        reason: std::env::var("MEDVAULT_REASON").ok(),
        roles: auditor.roles,
        purpose_code: std::env::var("MEDVAULT_PURPOSE_CODE").ok(),
    };
    let ctx = access::context(&env).map_err(|f| {
        Failure::usage(format!(
            "{} (for `audit log`, name the auditor with --auditor/--auditor-purpose; --actor and --purpose filter)",
            f.message
        ))
    })?;
    let time = |s: &Option<String>, flag: &str| -> CliResult<Option<u64>> {
        s.as_deref()
            .map(|t| {
                clock::parse_ms(t).ok_or_else(|| {
                    Failure::usage(format!(
                        "{flag}: expected a UTC time like 2024-08-06T18:12:57Z, a date, or epoch milliseconds"
                    ))
                })
            })
            .transpose()
    };
    let q = LogQuery {
        subject: filter.subject,
        actor: filter.actor,
        purpose: filter.purpose,
        action: filter.action,
        since_ms: time(&filter.since, "--since")?,
        until_ms: time(&filter.until, "--until")?,
    };
    let vault = access::open_vault(path, &ctx)?;
    let mut out = std::io::BufWriter::new(crate::output::stdout());
    if json {
        vault.audit_export_jsonl(&ctx, &q, &mut out)?;
        out.flush()?;
        return Ok(());
    }
    let entries = vault.audit_query(&ctx, &q)?;
    if !entries.is_empty() {
        writeln!(
            out,
            "{:>8} {:<24} {:<16} {:<15} {:<12} {:<7} TARGET",
            "SEQ", "TIME (UTC)", "ACTOR", "PURPOSE", "ACTION", "OUTCOME"
        )?;
    }
    for e in entries {
        let outcome = match &e.outcome {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Denied => "DENIED".to_owned(),
            Outcome::Failed(k) => format!("failed:{k}"),
        };
        let mut what = String::new();
        if let Some(t) = &e.target {
            what.push_str(&t.subject);
            for part in [&t.collection, &t.record_id].into_iter().flatten() {
                what.push('/');
                what.push_str(part);
            }
            if !t.fields.is_empty() {
                what.push_str(&format!(" [{}]", t.fields.join(",")));
            }
        } else if let Some(p) = &e.subject_pseudonym {
            what = format!("subject#{}", crate::commands::vault::hex(p.as_bytes()));
        }
        // Actor ids, ids and notes come from callers: escape control characters so a
        // crafted value cannot forge a line of the trail or drive the terminal.
        write!(
            out,
            "{:>8} {} {:<16} {:<15} {:<12} {:<7} {}",
            e.seq,
            clock::format_ms(e.time_ms),
            escape(&e.actor),
            e.purpose.name(),
            e.action.name(),
            outcome,
            escape(&what)
        )?;
        if let Some(r) = &e.reason {
            write!(out, " reason=\"{}\"", escape(r))?;
        }
        if !e.note.is_empty() {
            write!(out, " ({})", escape(&e.note))?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

/// `s` with control characters escaped as JSON escapes them (see [`crate::human::escape`]).
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    crate::human::escape(s)
}
