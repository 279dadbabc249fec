//! `import` and `export`, through the library's FHIR import/export path (the one the demo
//! uses too).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medvault_fhir::{self as fhir, ImportOptions, ImportSource, RejectFile};

use crate::access;
use crate::args::AccessArgs;
use crate::exit::{CliResult, Code, Failure};
use crate::progress::{self, Unit};

/// `medvault import VAULT PATH...`: prints the summary on stdout; rejects go to the
/// reject file (docs/FHIR.md sections 6 and 7).
pub fn import(
    path: &Path,
    inputs: &[PathBuf],
    batch: usize,
    strict: bool,
    reject_file: Option<&Path>,
    json: bool,
    args: &AccessArgs,
) -> CliResult {
    let ctx = access::context(args)?;
    let source = ImportSource::new(inputs)?;
    let files = source.files().count();
    let vault = access::open_vault(path, &ctx)?;
    let reject_path = match reject_file {
        Some(p) => p.to_path_buf(),
        None => {
            let mut p = path.as_os_str().to_owned();
            p.push(".rejects.ndjson");
            PathBuf::from(p)
        }
    };
    let mut rejects = RejectFile::new(&reject_path);
    let bar = progress::bar(source.total_bytes(), Unit::Bytes);
    let started = Instant::now();
    let options = ImportOptions {
        batch_records: batch.max(1),
        strict,
        ..ImportOptions::default()
    };
    let result = fhir::import_with(
        &vault,
        &ctx,
        source,
        options,
        &mut |p| {
            bar.set_position(p.bytes_read);
            bar.set_message(format!("{} records", p.records));
        },
        &mut rejects,
    );
    bar.finish_and_clear();
    let flushed = rejects.finish();
    let report = result?;
    flushed.map_err(|e| Failure::other(format!("cannot write {}: {e}", reject_path.display())))?;
    let secs = started.elapsed().as_secs_f64();
    for e in &report.rejects {
        eprintln!("medvault: warning: rejected: {e}");
    }
    if report.rejected > report.rejects.len() as u64 {
        eprintln!(
            "medvault: warning: ... and {} more rejects",
            report.rejected - report.rejects.len() as u64
        );
    }
    let mut out = std::io::stdout().lock();
    let written = report.records + report.replaced;
    if json {
        let v = serde_json::json!({
            "records": report.records,
            "created": report.records,
            "replaced": report.replaced,
            "per_type": report.per_type,
            "skipped": report.skipped,
            "rejected": report.rejected,
            "reject_file": (report.rejected > 0).then(|| reject_path.display().to_string()),
            "batches": report.batches,
            "bytes": report.bytes,
            "seconds": secs,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "imported {} records from {} ({}) in {secs:.2} s: {:.0} records/s, {} atomic batches",
            report.records,
            crate::human::count(files as u64, "file"),
            crate::human::bytes(report.bytes),
            written as f64 / secs.max(1e-9),
            report.batches
        )?;
        for (t, n) in &report.per_type {
            writeln!(out, "  {t:<28} {n:>9}")?;
        }
        writeln!(
            out,
            "created {}, replaced {} (same resourceType/id again in this import), skipped {}, rejected {}",
            report.records, report.replaced, report.skipped, report.rejected
        )?;
    }
    if report.rejected > 0 {
        return Err(Failure::new(
            Code::Rejected,
            format!(
                "{} lines or entries rejected, listed in {}; every valid resource was imported",
                report.rejected,
                reject_path.display()
            ),
        ));
    }
    Ok(())
}

/// `medvault export VAULT [SUBJECT...]`: FHIR NDJSON on stdout.
pub fn export(path: &Path, subjects: &[String], args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let total = if subjects.is_empty() {
        vault.stats()?.subjects
    } else {
        subjects.len() as u64
    };
    let bar = progress::bar(total, Unit::Items("subjects"));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let result = fhir::export_ndjson(&vault, &ctx, subjects, &mut out, &mut |p| {
        bar.set_position(p.subjects_done);
    });
    bar.finish_and_clear();
    let report = result.map_err(Failure::from)?;
    eprintln!(
        "exported {} of {}",
        crate::human::count(report.records, "record"),
        crate::human::count(report.subjects, "subject")
    );
    Ok(())
}
