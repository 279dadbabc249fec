//! `import` and `export`, through the library's FHIR import/export path (the one the demo
//! uses too).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medvault_fhir::{self as fhir, ImportOptions, ImportSource};

use crate::access;
use crate::args::AccessArgs;
use crate::exit::{CliResult, Failure};
use crate::progress::{self, Unit};

/// `medvault import VAULT PATH...`: prints the per-type counts on stdout.
pub fn import(
    path: &Path,
    inputs: &[PathBuf],
    batch: usize,
    skip_invalid: bool,
    json: bool,
    args: &AccessArgs,
) -> CliResult {
    let ctx = access::context(args)?;
    let source = ImportSource::new(inputs)?;
    let files = source.files().count();
    let vault = access::open_vault(path, &ctx)?;
    let bar = progress::bar(source.total_bytes(), Unit::Bytes);
    let started = Instant::now();
    let options = ImportOptions {
        batch_records: batch.max(1),
        skip_invalid,
        ..ImportOptions::default()
    };
    let result = fhir::import(&vault, &ctx, source, options, &mut |p| {
        bar.set_position(p.bytes_read);
        bar.set_message(format!("{} records", p.records));
    });
    bar.finish_and_clear();
    let report = result?;
    let secs = started.elapsed().as_secs_f64();
    for e in &report.invalid {
        eprintln!("medvault: warning: skipped: {e}");
    }
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "records": report.records,
            "per_type": report.per_type,
            "skipped": report.skipped,
            "invalid": report.invalid_count,
            "batches": report.batches,
            "bytes": report.bytes,
            "seconds": secs,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "imported {} records from {files} files ({:.1} MiB) in {secs:.2} s: {:.0} records/s, {} atomic batches",
        report.records,
        report.bytes as f64 / (1024.0 * 1024.0),
        report.records as f64 / secs.max(1e-9),
        report.batches
    )?;
    for (t, n) in &report.per_type {
        writeln!(out, "  {t:<28} {n:>9}")?;
    }
    if report.skipped > 0 {
        writeln!(
            out,
            "skipped {} lines or entries that are not FHIR resources",
            report.skipped
        )?;
    }
    if report.invalid_count > 0 {
        writeln!(
            out,
            "skipped {} invalid lines or entries",
            report.invalid_count
        )?;
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
        "exported {} records of {} subjects",
        report.records, report.subjects
    );
    Ok(())
}
