//! `get`, `put`, `delete`, `erase`: one subject's records.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use medvault::{Error, RecordKey};
use serde_json::Value;

use crate::access;
use crate::args::AccessArgs;
use crate::exit::{CliResult, Code, Failure};

/// Largest JSON document `put` reads from stdin (the record size cap of the library).
const MAX_STDIN: u64 = medvault::record::MAX_RECORD_BYTES as u64;

/// `medvault get VAULT SUBJECT [COLLECTION [RECORD_ID]] [--fields a,b]`: one record as
/// JSON, or every record of the subject (of the collection) as NDJSON, Patient first.
pub fn get(
    path: &Path,
    subject: &str,
    collection: Option<&str>,
    record_id: Option<&str>,
    fields: &[String],
    pretty: bool,
    args: &AccessArgs,
) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let mut out = std::io::stdout().lock();
    if let (Some(collection), Some(record_id)) = (collection, record_id) {
        let key = RecordKey::new(subject, collection, record_id);
        let value: Value = if fields.is_empty() {
            vault.get(&ctx, &key)
        } else {
            let names: Vec<&str> = fields.iter().map(String::as_str).collect();
            vault.get_fields(&ctx, &key, &names)
        }
        .map_err(|e| not_found_as(e, "no such record"))?;
        write_json(&mut out, &value, pretty)?;
    } else {
        let mut records = vault.records_of::<Value>(&ctx, subject, collection)?;
        if records.is_empty() {
            return Err(Failure::new(Code::NotFound, "no records for this subject"));
        }
        medvault_fhir::export::sort_patient_first(&mut records);
        for (_, value) in &records {
            write_json(&mut out, value, pretty)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn write_json(out: &mut dyn Write, value: &Value, pretty: bool) -> CliResult {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(|_| Failure::other("JSON encoding failed"))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn not_found_as(e: Error, what: &str) -> Failure {
    match e {
        Error::NotFound => Failure::new(Code::NotFound, what),
        e => e.into(),
    }
}

/// `medvault put VAULT SUBJECT COLLECTION RECORD_ID` with one JSON object on stdin.
pub fn put(
    path: &Path,
    subject: &str,
    collection: &str,
    record_id: &str,
    args: &AccessArgs,
) -> CliResult {
    let ctx = access::context(args)?;
    let mut text = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_STDIN {
        return Err(Failure::other("the record on stdin is larger than 64 MiB"));
    }
    // The parser's message is not echoed: it may quote the input.
    let value: Value = serde_json::from_slice(&text).map_err(|e| {
        Failure::other(format!(
            "stdin is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(Failure::other("the record on stdin must be a JSON object"));
    }
    // A FHIR resource carries its own type and id: they must name the same record as the
    // command line, or an export would not import back to the same place.
    if let Some(t) = value.get("resourceType")
        && t.as_str() != Some(collection)
    {
        return Err(Failure::other(
            "the resource's resourceType differs from COLLECTION",
        ));
    }
    if let Some(id) = value.get("id")
        && id.as_str() != Some(record_id)
    {
        return Err(Failure::other("the resource's id differs from RECORD_ID"));
    }
    let vault = access::open_vault(path, &ctx)?;
    vault.put(
        &ctx,
        &RecordKey::new(subject, collection, record_id),
        &value,
    )?;
    Ok(())
}

/// `medvault find VAULT COLLECTION INDEX VALUE...`: the matching records as NDJSON; or
/// `--list`: the indexes (collection, name, parts, normalization, bits, state).
pub fn find(
    path: &Path,
    collection: Option<&str>,
    index: Option<&str>,
    values: &[String],
    list: bool,
    args: &AccessArgs,
) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let mut out = std::io::stdout().lock();
    if list {
        for s in vault.indexes() {
            let parts: Vec<String> = s.spec.parts.iter().map(|p| p.to_string()).collect();
            writeln!(
                out,
                "{}\t{}\t{}\t{:?}\t{}\t{}",
                s.spec.collection,
                s.spec.name,
                parts.join(" + "),
                s.spec.normalization,
                s.spec
                    .truncate_bits
                    .map_or("128".to_owned(), |b| b.to_string()),
                if s.built { "built" } else { "building" }
            )?;
        }
        out.flush()?;
        return Ok(());
    }
    let (Some(collection), Some(index)) = (collection, index) else {
        return Err(Failure::usage("find needs COLLECTION INDEX VALUE..."));
    };
    if values.is_empty() {
        return Err(Failure::usage("find needs at least one VALUE"));
    }
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let found: Vec<(RecordKey, Value)> = vault.find(&ctx, collection, index, &values)?;
    if found.is_empty() {
        return Err(Failure::new(Code::NotFound, "no record matches"));
    }
    for (_, value) in &found {
        write_json(&mut out, value, false)?;
    }
    out.flush()?;
    Ok(())
}

/// `medvault delete VAULT SUBJECT COLLECTION RECORD_ID`.
pub fn delete(
    path: &Path,
    subject: &str,
    collection: &str,
    record_id: &str,
    args: &AccessArgs,
) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    vault
        .delete(&ctx, &RecordKey::new(subject, collection, record_id))
        .map_err(|e| not_found_as(e, "no such record"))?;
    Ok(())
}

/// `medvault subjects VAULT`: every subject id, sorted, one per line.
pub fn subjects(path: &Path, args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let mut ids = vault.subjects(&ctx)?;
    ids.sort();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for id in ids {
        writeln!(out, "{}", crate::commands::audit::escape(&id))?;
    }
    out.flush()?;
    Ok(())
}

/// `medvault erase VAULT SUBJECT`: crypto-shredding, after a confirmation on a terminal.
pub fn erase(path: &Path, subject: &str, yes: bool, args: &AccessArgs) -> CliResult {
    let ctx = access::context(args)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "erase destroys the subject's keys for good; pass --yes to confirm",
            ));
        }
        eprint!(
            "Erase every record of this subject and destroy its keys? Type the subject id to confirm: "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != subject {
            return Err(Failure::other("not confirmed; nothing erased"));
        }
    }
    let vault = access::open_vault(path, &ctx)?;
    let n = vault
        .erase_subject(&ctx, subject)
        .map_err(|e| not_found_as(e, "no such subject"))?;
    println!("erased {n} records; the subject's data keys are destroyed");
    Ok(())
}
