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
    // A clean import leaves no reject file of an earlier one (fhir::RejectFile::finish).
    let removed = rejects
        .removed_stale()
        .then(|| reject_path.display().to_string());
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
    let mut out = crate::output::stdout();
    let written = report.records + report.replaced;
    if json {
        let skipped_in: Vec<serde_json::Value> = report
            .skipped_in
            .iter()
            .map(|k| {
                serde_json::json!({
                    "file": k.path.display().to_string(),
                    "count": k.count,
                    "positions": k.positions.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "why": k.why,
                })
            })
            .collect();
        let v = serde_json::json!({
            "records": report.records,
            "created": report.records,
            "replaced": report.replaced,
            "unchanged": report.unchanged,
            "compared": report.compared,
            "per_type": report.per_type,
            "skipped": report.skipped,
            "skipped_in": skipped_in,
            "rejected": report.rejected,
            "refused_erased": report.refused_erased,
            "reject_file": (report.rejected > 0).then(|| reject_path.display().to_string()),
            "reject_file_removed": removed,
            "batches": report.batches,
            "bytes": report.bytes,
            "seconds": secs,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "imported {} from {} ({}) in {secs:.2} s: {:.0} records/s, {}",
            crate::human::count(written, "record"),
            crate::human::count(files as u64, "file"),
            crate::human::bytes(report.bytes),
            written as f64 / secs.max(1e-9),
            crate::human::count_as(report.batches, "atomic batch", "atomic batches")
        )?;
        for (t, n) in &report.per_type {
            writeln!(out, "  {t:<28} {n:>9}")?;
        }
        writeln!(
            out,
            "created {}, replaced {}, unchanged {}, skipped {}, rejected {}",
            report.records, report.replaced, report.unchanged, report.skipped, report.rejected
        )?;
        if report.refused_erased > 0 {
            writeln!(
                out,
                "refused {}: their patient was erased and the vault remembers it (`medvault readmit` if the patient returns; each refusal is in the access log)",
                crate::human::count(report.refused_erased, "record")
            )?;
        }
        // Unindented: the indented lines above are the per-type table.
        for k in &report.skipped_in {
            writeln!(
                out,
                "skipped in {}: {} ({}): {}",
                k.path.display(),
                crate::human::count_as(k.count, "position", "positions"),
                positions(&k.positions, k.count),
                k.why
            )?;
        }
        if let Some(p) = &removed {
            writeln!(out, "removed the reject file of an earlier import: {p}")?;
        }
    }
    if report.rejected > 0 {
        return Err(Failure::new(
            Code::Rejected,
            format!(
                "{} rejected, listed in {}; every valid resource was imported",
                crate::human::count_as(report.rejected, "line or entry", "lines or entries"),
                reject_path.display()
            ),
        ));
    }
    Ok(())
}

/// The kept positions of a file's skips, `count` in all: `lines 2, 4`, or each position
/// as `fhir::Position` writes it (`line 3, Bundle.entry[0]`; `Bundle.entry[2]`), with
/// `...` when more were skipped than kept.
fn positions(kept: &[fhir::Position], count: u64) -> String {
    let lines: Option<Vec<u64>> = kept
        .iter()
        .map(|p| match p {
            fhir::Position::Line(n) => Some(*n),
            _ => None,
        })
        .collect();
    let mut text = match lines {
        Some(ns) => {
            let ns: Vec<String> = ns.iter().map(u64::to_string).collect();
            let word = if ns.len() == 1 { "line" } else { "lines" };
            format!("{word} {}", ns.join(", "))
        }
        None => kept
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    };
    if count > kept.len() as u64 {
        text.push_str(", ...");
    }
    text
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
    let mut out = std::io::BufWriter::with_capacity(1 << 20, crate::output::stdout());
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
