//! Governance commands (docs/POLICY.md): `audit review`, `audit report`, `audit alerts`,
//! `audit export --format fhir`, and `policy show|set|default`.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use medvault::audit::report::Verdict;
use medvault::{LogQuery, Policy};

use crate::access;
use crate::args::AccessArgs;
use crate::clock;
use crate::commands::audit::escape;
use crate::exit::{CliResult, Failure};

/// Largest policy file read.
const MAX_POLICY_FILE: u64 = 1 << 20;

/// `medvault audit review|report|alerts|export`.
#[derive(Subcommand, Debug)]
pub enum GovernanceCommand {
    /// List pending break-the-glass accesses (who, whose record, when, reason, what was
    /// read; overdue ones flagged), or close one with --close SEQ --verdict.
    Review {
        vault: PathBuf,
        /// Close the review of the access at this log sequence number.
        #[arg(long, value_name = "SEQ")]
        close: Option<u64>,
        /// justified or unjustified (with --close).
        #[arg(long)]
        verdict: Option<String>,
        /// The reviewer's comment, recorded with the verdict.
        #[arg(long, default_value = "")]
        comment: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// The access report of one patient: every access to their records.
    Report {
        vault: PathBuf,
        /// The patient (subject id).
        subject: String,
        /// text, json or fhir (a Bundle of AuditEvent).
        #[arg(long, default_value = "text")]
        format: String,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Run the automated controls over the access log (thresholds from the policy).
    Alerts {
        vault: PathBuf,
        /// JSON Lines output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Export the access log: --format fhir writes NDJSON of FHIR R4 AuditEvent (IHE
    /// BALP profiles) for the entries naming a patient; jsonl writes every entry.
    Export {
        vault: PathBuf,
        /// fhir or jsonl.
        #[arg(long, default_value = "fhir")]
        format: String,
        /// Only entries about this subject.
        #[arg(long)]
        subject: Option<String>,
        /// Only entries at or after T (RFC 3339 UTC, a date, or epoch ms).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only entries before T.
        #[arg(long, value_name = "T")]
        until: Option<String>,
        #[command(flatten)]
        access: AccessArgs,
    },
}

/// `medvault policy show|set|default`.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the vault's access policy as pure JSON on stdout (feedable back to `policy
    /// set`); its version goes to stderr (`policy version N`).
    Show {
        vault: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Install FILE (JSON) as the next policy version (needs the `policy` capability
    /// once a policy is installed).
    Set {
        vault: PathBuf,
        file: PathBuf,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print the default clinic policy (JSON), to edit and `set`.
    Default,
}

fn time(s: &Option<String>, flag: &str) -> CliResult<Option<u64>> {
    s.as_deref()
        .map(|t| {
            clock::parse_ms(t).ok_or_else(|| {
                Failure::usage(format!(
                    "{flag}: expected a UTC time like 2024-08-06T18:12:57Z, a date, or epoch milliseconds"
                ))
            })
        })
        .transpose()
}

fn json_out(v: Result<serde_json::Value, serde_json::Error>, out: &mut impl Write) -> CliResult {
    let v = v.map_err(|e| Failure::other(format!("JSON: {e}")))?;
    serde_json::to_writer(&mut *out, &v).map_err(|e| Failure::other(format!("JSON: {e}")))?;
    writeln!(out)?;
    Ok(())
}

/// Runs a governance command.
pub fn run(cmd: GovernanceCommand) -> CliResult {
    let mut out = std::io::BufWriter::new(crate::output::stdout());
    match cmd {
        GovernanceCommand::Review {
            vault,
            close,
            verdict,
            comment,
            json,
            access,
        } => {
            let (ctx, vault) = access::open(&vault, &access)?;
            if let Some(seq) = close {
                let verdict: Verdict = verdict
                    .as_deref()
                    .ok_or_else(|| Failure::usage("--close needs --verdict justified|unjustified"))?
                    .parse()
                    .map_err(|_| Failure::usage("--verdict: justified or unjustified"))?;
                match vault.close_review(&ctx, seq, verdict, &comment) {
                    Ok(()) => {}
                    Err(medvault::Error::NotFound) => {
                        return Err(not_pending(&vault, &ctx, seq));
                    }
                    Err(e) => return Err(e.into()),
                }
                writeln!(out, "review of #{seq} closed: {}", verdict.name())?;
            } else {
                let q = vault.review_queue(&ctx, None)?;
                for a in &q {
                    if json {
                        json_out(serde_json::to_value(a), &mut out)?;
                        continue;
                    }
                    writeln!(
                        out,
                        "#{:<8} {} {:<16} roles={} patient={} {} {} reason={:?}{}",
                        a.seq,
                        clock::format_ms(a.time_ms),
                        escape(&a.actor),
                        escape(&a.roles.join(",")),
                        escape(a.subject.as_deref().unwrap_or("(erased)")),
                        a.action.name(),
                        escape(&a.what),
                        a.reason.as_deref().unwrap_or(""),
                        if a.overdue { " OVERDUE" } else { "" }
                    )?;
                }
                if !json {
                    let overdue = q.iter().filter(|a| a.overdue).count();
                    writeln!(out, "{} pending, {overdue} overdue", q.len())?;
                }
            }
        }
        GovernanceCommand::Report {
            vault,
            subject,
            format,
            access,
        } => {
            let (ctx, vault) = access::open(&vault, &access)?;
            let report = vault.access_report(&ctx, &subject)?;
            match format.as_str() {
                "text" => out.write_all(report.to_text().as_bytes())?,
                "json" => json_out(Ok(report.to_json()), &mut out)?,
                "fhir" => json_out(Ok(report.to_fhir_bundle()), &mut out)?,
                _ => return Err(Failure::usage("--format: text, json or fhir")),
            }
        }
        GovernanceCommand::Alerts {
            vault,
            json,
            access,
        } => {
            let (ctx, vault) = access::open(&vault, &access)?;
            let alerts = vault.alerts(&ctx)?;
            for a in &alerts {
                if json {
                    json_out(serde_json::to_value(a), &mut out)?;
                } else {
                    writeln!(
                        out,
                        "#{:<8} {} {:<20} {:<16} {} {}",
                        a.seq,
                        clock::format_ms(a.time_ms),
                        format!("{:?}", a.kind),
                        escape(&a.actor),
                        escape(a.subject.as_deref().unwrap_or("-")),
                        escape(&a.detail)
                    )?;
                }
            }
            if !json {
                writeln!(out, "{} alerts", alerts.len())?;
            }
        }
        GovernanceCommand::Export {
            vault,
            format,
            subject,
            since,
            until,
            access,
        } => {
            let q = LogQuery {
                subject,
                since_ms: time(&since, "--since")?,
                until_ms: time(&until, "--until")?,
                ..LogQuery::default()
            };
            let (ctx, vault) = access::open(&vault, &access)?;
            match format.as_str() {
                "fhir" => {
                    vault.audit_export_fhir(&ctx, &q, &mut out)?;
                }
                "jsonl" => {
                    vault.audit_export_jsonl(&ctx, &q, &mut out)?;
                }
                _ => return Err(Failure::usage("--format: fhir or jsonl")),
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Why `audit review --close SEQ` found nothing to close: the review of `seq` was
/// already closed (by whom, when, with which verdict, from the log's review entry), or
/// `seq` is no pending break-the-glass access at all.
fn not_pending(vault: &medvault::Vault, ctx: &medvault::AccessContext, seq: u64) -> Failure {
    let q = LogQuery {
        action: Some(medvault::Action::Review),
        ..LogQuery::default()
    };
    let prefix = format!("review of #{seq}: ");
    let closed = vault.audit_query(ctx, &q).ok().and_then(|entries| {
        entries
            .into_iter()
            .find(|e| e.outcome == medvault::Outcome::Ok && e.note.starts_with(&prefix))
    });
    let message = match closed {
        Some(e) => format!(
            "the review of #{seq} is already closed: {} by {} at {}",
            escape(&e.note[prefix.len()..]),
            escape(&e.actor),
            clock::format_ms(e.time_ms)
        ),
        None => format!(
            "#{seq} is not a pending break-the-glass access (`medvault audit review VAULT` \
             lists them)"
        ),
    };
    Failure::new(crate::exit::Code::NotFound, message)
}

/// Runs a policy command.
pub fn policy(cmd: PolicyCommand) -> CliResult {
    match cmd {
        PolicyCommand::Default => crate::outln!("{}", Policy::default_clinic().to_json())?,
        PolicyCommand::Show { vault, access } => {
            let (_ctx, vault) = access::open(&vault, &access)?;
            match vault.policy() {
                // Pure JSON on stdout, so that `policy show V > f.json` then
                // `policy set V f.json` works; the version is for the operator's eyes.
                Some((v, p)) => {
                    eprintln!("medvault: policy version {v}");
                    let mut out = crate::output::stdout();
                    writeln!(out, "{}", p.to_json())?;
                    out.flush()?;
                }
                None => eprintln!(
                    "medvault: no access policy installed: every access is allowed and logged \
                     (`medvault policy default` prints one to start from)"
                ),
            }
        }
        PolicyCommand::Set {
            vault,
            file,
            access,
        } => {
            let mut raw = Vec::new();
            std::fs::File::open(&file)
                .and_then(|f| {
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(f, MAX_POLICY_FILE + 1),
                        &mut raw,
                    )
                })
                .map_err(|e| Failure::other(format!("policy {}: {e}", file.display())))?;
            let text = String::from_utf8(raw)
                .ok()
                .filter(|t| t.len() as u64 <= MAX_POLICY_FILE)
                .ok_or_else(|| {
                    Failure::other(format!("policy {}: not a policy file", file.display()))
                })?;
            let policy = Policy::from_json(&text)?;
            let (ctx, vault) = access::open(&vault, &access)?;
            let v = vault.set_policy(&ctx, policy)?;
            crate::outln!("access policy version {v} installed")?;
        }
    }
    Ok(())
}
