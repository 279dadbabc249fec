//! One module per group of commands; each function runs one command and returns what the
//! process should report.

pub mod audit;
pub mod backup;
pub mod records;
pub mod research;
pub mod review;
pub mod rotate;
pub mod transfer;
pub mod vault;

use crate::args::{AuditCommand, Command, RotateCommand};
use crate::exit::CliResult;

/// Runs a parsed command.
pub fn run(command: Command) -> CliResult {
    match command {
        Command::Init { vault, kdf, access } => vault::init(&vault, kdf, &access),
        Command::Import {
            vault,
            paths,
            batch,
            strict,
            reject_file,
            skip_invalid: _,
            json,
            access,
        } => transfer::import(
            &vault,
            &paths,
            batch,
            strict,
            reject_file.as_deref(),
            json,
            &access,
        ),
        Command::Get {
            vault,
            subject,
            collection,
            record_id,
            fields,
            pretty,
            access,
        } => records::get(
            &vault,
            &subject,
            collection.as_deref(),
            record_id.as_deref(),
            &fields,
            pretty,
            &access,
        ),
        Command::Put {
            vault,
            subject,
            collection,
            record_id,
            access,
        } => records::put(&vault, &subject, &collection, &record_id, &access),
        Command::Delete {
            vault,
            subject,
            collection,
            record_id,
            access,
        } => records::delete(&vault, &subject, &collection, &record_id, &access),
        Command::Export {
            vault,
            subjects: _,
            research: true,
            project,
            authorization,
            spec,
            out,
            json,
            access,
        } => research::export(
            research::ExportArgs {
                vault: &vault,
                project: project.as_deref(),
                authorization: authorization.as_deref(),
                spec: spec.as_deref(),
                out: out.as_deref(),
                json,
            },
            &access,
        ),
        Command::Export {
            vault,
            subjects,
            access,
            ..
        } => transfer::export(&vault, &subjects, &access),
        Command::Subjects { vault, access } => records::subjects(&vault, &access),
        Command::Find {
            vault,
            collection,
            index,
            values,
            list,
            access,
        } => records::find(
            &vault,
            collection.as_deref(),
            index.as_deref(),
            &values,
            list,
            &access,
        ),
        Command::Erase {
            vault,
            subject,
            yes,
            access,
        } => records::erase(&vault, &subject, yes, &access),
        Command::Readmit {
            vault,
            subject,
            access,
        } => records::readmit(&vault, &subject, &access),
        Command::Rotate(RotateCommand::Root { vault, kdf, access }) => {
            rotate::root(&vault, kdf, &access)
        }
        Command::Rotate(RotateCommand::Kek { vault, access }) => rotate::kek(&vault, &access),
        Command::Rotate(RotateCommand::All {
            vault,
            resume,
            kdf,
            access,
        }) => {
            if resume {
                rotate::resume_all(&vault, &access)
            } else {
                rotate::all(&vault, kdf, &access)
            }
        }
        Command::Rotate(RotateCommand::Data {
            vault,
            resume,
            subjects,
            access,
        }) => rotate::data(&vault, resume, &subjects, &access),
        Command::Audit(AuditCommand::Verify {
            vault,
            checkpoint,
            access,
        }) => audit::verify(&vault, checkpoint.as_deref(), &access),
        Command::Audit(AuditCommand::Checkpoint {
            vault,
            signed,
            append,
            exec,
            access,
        }) => {
            if signed || append.is_some() || exec.is_some() {
                audit::signed_checkpoint(&vault, append.as_deref(), exec.as_deref(), &access)
            } else {
                audit::checkpoint(&vault, &access)
            }
        }
        Command::Audit(AuditCommand::Prove {
            vault,
            entry,
            size,
            entry_out,
            from,
            to,
            access,
        }) => audit::prove(
            &vault,
            audit::ProofAsk {
                entry,
                size,
                entry_out,
                from,
                to,
            },
            &access,
        ),
        Command::Audit(AuditCommand::Key { vault, all, access }) => {
            audit::key(&vault, all, &access)
        }
        Command::Audit(AuditCommand::Log {
            vault,
            subject,
            actor,
            purpose,
            action,
            since,
            until,
            json,
            auditor,
            auditor_purpose,
            roles,
        }) => audit::log(
            &vault,
            audit::Filter {
                subject,
                actor,
                purpose,
                action,
                since,
                until,
            },
            json,
            audit::Auditor {
                actor: auditor,
                purpose: auditor_purpose,
                roles,
            },
        ),
        Command::Audit(AuditCommand::Governance(g)) => review::run(g),
        Command::Audit(AuditCommand::Retention(r)) => backup::run(r),
        Command::Backup {
            vault,
            dest,
            ledger,
            access,
        } => backup::backup(&vault, &dest, ledger.as_deref(), &access),
        Command::ErasureLedger {
            vault,
            ledger,
            access,
        } => backup::ledger(&vault, &ledger, &access),
        Command::Restore {
            backup: b,
            dest,
            ledger,
            without_ledger,
            vault_id,
            other_vault,
            access,
        } => backup::restore(
            backup::RestoreArgs {
                backup: &b,
                dest: &dest,
                ledger: ledger.as_deref(),
                without_ledger,
                vault_id: vault_id.as_deref(),
                other_vault,
            },
            &access,
        ),
        Command::Policy(p) => review::policy(p),
        Command::Research(r) => research::run(r),
        Command::Stats {
            vault,
            json,
            access,
        } => vault::stats(&vault, json, &access),
        Command::Demo {
            patients,
            data,
            dir,
            seed,
            postgres,
        } => {
            let source = match (&data, patients) {
                (Some(d), _) => crate::demo::Source::Dir(d),
                (None, Some(n)) => crate::demo::Source::Synthetic(n),
                (None, None) => crate::demo::Source::Auto,
            };
            crate::demo::run(source, dir.as_deref(), seed, postgres)
        }
    }
}
