//! The research export guard on the command line (docs/RESEARCH.md):
//! `medvault export --research` and `medvault research object|destroy-key`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use medvault::research::{DataSpec, ResearchRequest};

use crate::access;
use crate::args::AccessArgs;
use crate::exit::{CliResult, Failure};

/// Upper bound of a data-specification file, in bytes.
const MAX_SPEC_FILE: u64 = 1 << 20;

/// `medvault research ...`.
#[derive(Subcommand, Debug)]
pub enum ResearchCommand {
    /// Record (or with --withdraw, withdraw) a patient's objection to the secondary use
    /// of their data (GDPR art. 21): they are left out of every later research export.
    /// Needs --purpose patient-request.
    Object {
        /// The vault directory.
        vault: PathBuf,
        /// The patient (subject id).
        subject: String,
        /// Withdraw the objection instead.
        #[arg(long)]
        withdraw: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Destroy a research project's pseudonym key: its exports can no longer be linked
    /// to patients, and a later export for the project gets new pseudonyms. Needs the
    /// `keys` capability under a policy.
    DestroyKey {
        /// The vault directory.
        vault: PathBuf,
        /// The project id.
        #[arg(long)]
        project: String,
        #[command(flatten)]
        access: AccessArgs,
    },
}

/// Runs a research command.
pub fn run(cmd: ResearchCommand) -> CliResult {
    match cmd {
        ResearchCommand::Object {
            vault,
            subject,
            withdraw,
            access,
        } => {
            let (ctx, vault) = access::open(&vault, &access)?;
            vault
                .set_research_objection(&ctx, &subject, !withdraw)
                .map_err(|e| {
                    crate::commands::records::not_found_as(e, || {
                        format!("no subject {}", crate::human::escape(&subject))
                    })
                })?;
            crate::outln!(
                "objection to secondary use {} (logged)",
                if withdraw { "withdrawn" } else { "recorded" }
            )?;
        }
        ResearchCommand::DestroyKey {
            vault,
            project,
            access,
        } => {
            let (ctx, vault) = access::open(&vault, &access)?;
            vault.destroy_research_key(&ctx, &project)?;
            crate::outln!(
                "research project key destroyed (logged); its pseudonyms are unrecoverable"
            )?;
        }
    }
    Ok(())
}

/// What `medvault export --research` was given.
pub struct ExportArgs<'a> {
    /// The vault directory.
    pub vault: &'a Path,
    /// `--project`.
    pub project: Option<&'a str>,
    /// `--authorization`.
    pub authorization: Option<&'a str>,
    /// `--spec FILE` (JSON, docs/RESEARCH.md "The data specification").
    pub spec: Option<&'a Path>,
    /// `--out DIR`.
    pub out: Option<&'a Path>,
    /// Print the manifest as JSON instead of a summary.
    pub json: bool,
}

/// `medvault export VAULT --research ...`: writes `<resourceType>.ndjson` files and
/// `manifest.json` into `--out`, which must be new or an empty directory (created 0700;
/// files created new, 0600, never through a symbolic link). A missing project, authorization or specification is
/// passed to the vault as empty, so the refusal is the guard's, and logged.
pub fn export(a: ExportArgs<'_>, args: &AccessArgs) -> CliResult {
    let out = a
        .out
        .ok_or_else(|| Failure::usage("export --research needs --out DIR"))?;
    let spec = match a.spec {
        Some(p) => read_spec(p)?,
        None => DataSpec {
            collections: Vec::new(),
            dates: Default::default(),
            postal_digits: medvault::research::DEFAULT_POSTAL_DIGITS,
            quasi_identifiers: Vec::new(),
            keep_identifiers: Vec::new(),
            reference_year: None,
        },
    };
    let req = ResearchRequest {
        project: a.project.unwrap_or_default().to_owned(),
        authorization: a.authorization.unwrap_or_default().to_owned(),
        spec,
    };
    // Checked before the export, so that a disclosure is not logged for data that
    // cannot be written.
    let existed = check_out_dir(out)?;
    let (ctx, vault) = access::open(a.vault, args)?;
    let x = vault.research_export(&ctx, &req)?;
    make_out_dir(out, existed)?;
    let mut files: std::collections::BTreeMap<&str, std::fs::File> = Default::default();
    for (ty, text) in &x.resources {
        if !ty.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Failure::other(
                "a collection name is not a FHIR resource type",
            ));
        }
        let f = match files.get_mut(ty.as_str()) {
            Some(f) => f,
            None => {
                let f = private_file(&out.join(format!("{ty}.ndjson")))?;
                files.entry(ty.as_str()).or_insert(f)
            }
        };
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
    }
    for f in files.values_mut() {
        f.sync_all()?;
    }
    let manifest = x.manifest_json();
    let mut m = private_file(&out.join("manifest.json"))?;
    m.write_all(manifest.as_bytes())?;
    m.write_all(b"\n")?;
    m.sync_all()?;
    let mf = &x.manifest;
    if a.json {
        crate::outln!("{manifest}")?;
    } else {
        crate::outln!(
            "research export for project {}: {} patients, {} resources in {} (k achieved {}, required {}; {} patients suppressed, {} excluded by objection); logged as a disclosure",
            mf.project,
            mf.patients,
            mf.records,
            out.display(),
            mf.k_achieved,
            mf.k_required,
            mf.suppressed_patients,
            mf.excluded_objections
        )?;
    }
    Ok(())
}

fn read_spec(p: &Path) -> CliResult<DataSpec> {
    let mut raw = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_SPEC_FILE + 1), &mut raw)
        })
        .map_err(|e| Failure::other(format!("spec {}: {e}", p.display())))?;
    if raw.len() as u64 > MAX_SPEC_FILE {
        return Err(Failure::usage("the specification file is over 1 MiB"));
    }
    serde_json::from_slice(&raw)
        .map_err(|e| Failure::usage(format!("specification {}: {e}", p.display())))
}

/// `--out DIR` must be new or an empty directory (not a symlink): no stale file of an
/// earlier export (an objector's data) survives next to the new one, and no file is
/// written through a planted link. Returns whether it exists.
fn check_out_dir(out: &Path) -> CliResult<bool> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::other(format!("--out {}: {e}", out.display()))),
        Ok(m) if !m.is_dir() => Err(Failure::usage(format!(
            "--out {} is not a directory (or is a symbolic link); give a new or empty directory",
            out.display()
        ))),
        Ok(_) => {
            let mut entries = std::fs::read_dir(out)
                .map_err(|e| Failure::other(format!("--out {}: {e}", out.display())))?;
            if entries.next().is_some() {
                return Err(Failure::usage(format!(
                    "--out {} is not empty; give a new or empty directory",
                    out.display()
                )));
            }
            Ok(true)
        }
    }
}

/// Creates `out` (its parents as needed) readable by the owner only (0700 on Unix); an
/// existing empty `out` is made 0700.
fn make_out_dir(out: &Path, existed: bool) -> CliResult {
    let fail = |e: std::io::Error| Failure::other(format!("cannot create {}: {e}", out.display()));
    if existed {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        return Ok(());
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(out).map_err(fail)
}

/// Creates `path`, which must not exist (no symbolic link is followed: `O_EXCL`),
/// readable and writable by the owner only (0600 on Unix).
fn private_file(path: &Path) -> CliResult<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))
}
