//! `get`, `put`, `delete`, `erase`: one subject's records.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use medvault::json::JsonText;
use medvault::{Error, RecordKey};

use crate::access;
use crate::args::AccessArgs;
use crate::commands::audit::escape;
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
    // Checked before the vault is opened (and the passphrase asked for).
    if !fields.is_empty() && record_id.is_none() {
        let missing = if collection.is_none() {
            "COLLECTION and RECORD_ID"
        } else {
            "RECORD_ID"
        };
        return Err(Failure::usage(format!(
            "--fields needs one record: missing {missing} (get VAULT SUBJECT COLLECTION \
             RECORD_ID --fields a,b; without --fields, get prints whole records)"
        )));
    }
    let (ctx, vault) = access::open(path, args)?;
    let mut out = crate::output::stdout();
    if let (Some(collection), Some(record_id)) = (collection, record_id) {
        let key = RecordKey::new(subject, collection, record_id);
        let value = if fields.is_empty() {
            vault.get_json(&ctx, &key)
        } else {
            let names: Vec<&str> = fields.iter().map(String::as_str).collect();
            vault.get_fields_json(&ctx, &key, &names)
        }
        .map_err(|e| not_found_as(e, || no_record(&key)))?;
        write_json(&mut out, &value, pretty)?;
    } else {
        let mut records = vault.records_of_json(&ctx, subject, collection)?;
        if records.is_empty() {
            let what = match collection {
                Some(c) => format!("no {} records", escape(c)),
                None => "no records".to_owned(),
            };
            return Err(Failure::new(
                Code::NotFound,
                format!("{what} of subject {}", escape(subject)),
            ));
        }
        medvault_fhir::export::sort_patient_first(&mut records);
        for (_, value) in &records {
            write_json(&mut out, value, pretty)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Writes a record's exact text (indented when `pretty`, tokens unchanged) and a newline.
fn write_json(out: &mut dyn Write, value: &JsonText, pretty: bool) -> CliResult {
    if pretty {
        writeln!(out, "{}", value.pretty().as_str())?;
    } else {
        writeln!(out, "{}", value.as_str())?;
    }
    Ok(())
}

/// `e`, with a "not found" that names what was not found (`what()`).
pub fn not_found_as(e: Error, what: impl FnOnce() -> String) -> Failure {
    match e {
        Error::NotFound => Failure::new(Code::NotFound, what()),
        e => e.into(),
    }
}

/// `no record COLLECTION/RECORD_ID of subject SUBJECT` (ids escaped for the terminal).
fn no_record(key: &RecordKey) -> String {
    format!(
        "no record {}/{} of subject {}",
        escape(&key.collection),
        escape(&key.record_id),
        escape(&key.subject)
    )
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
    // The error names a byte offset and depth, never the input.
    let value = JsonText::parse(&text)
        .map_err(|e| Failure::other(format!("stdin is not a valid JSON record: {e}")))?;
    let tree = value.tree();
    if tree.as_object().is_none() {
        return Err(Failure::other("the record on stdin must be a JSON object"));
    }
    // A FHIR resource carries its own type and id: they must name the same record as the
    // command line, or an export would not import back to the same place.
    if let Some(t) = tree.get("resourceType")
        && !t.is_str(collection)
    {
        return Err(Failure::other(
            "the resource's resourceType differs from COLLECTION",
        ));
    }
    if let Some(id) = tree.get("id")
        && !id.is_str(record_id)
    {
        return Err(Failure::other("the resource's id differs from RECORD_ID"));
    }
    let vault = access::open_vault(path, &ctx)?;
    let fields = tree.as_object().map_or(0, |o| o.len());
    vault.put_json(
        &ctx,
        &RecordKey::new(subject, collection, record_id),
        &value,
    )?;
    crate::outln!(
        "stored record {}/{} of subject {} ({}, {}); any previous version is replaced",
        escape(collection),
        escape(record_id),
        escape(subject),
        crate::human::count(fields as u64, "field"),
        crate::human::bytes(text.len() as u64)
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
    let mut out = crate::output::stdout();
    if list {
        let rows: Vec<Vec<String>> = vault
            .indexes()
            .iter()
            .map(|s| {
                let parts: Vec<String> = s.spec.parts.iter().map(|p| p.to_string()).collect();
                vec![
                    s.spec.collection.clone(),
                    s.spec.name.clone(),
                    parts.join(" + "),
                    format!("{:?}", s.spec.normalization),
                    s.spec
                        .truncate_bits
                        .map_or("128".to_owned(), |b| b.to_string()),
                    if s.built { "built" } else { "building" }.to_owned(),
                ]
            })
            .collect();
        if rows.is_empty() {
            writeln!(out, "no indexes defined (import defines the FHIR defaults)")?;
        } else {
            crate::human::table(
                &mut out,
                &[
                    "COLLECTION",
                    "INDEX",
                    "PARTS",
                    "NORMALIZATION",
                    "BITS",
                    "STATE",
                ],
                &rows,
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
    let found = vault
        .find_json(&ctx, collection, index, &values)
        .map_err(|e| find_failure(&vault, collection, index, values.len(), e))?;
    if found.is_empty() {
        return Err(Failure::new(Code::NotFound, "no record matches"));
    }
    for (_, value) in &found {
        write_json(&mut out, value, false)?;
    }
    out.flush()?;
    Ok(())
}

/// The failure of a `find` that the vault refused: an unknown index gets its own code
/// and the names of the collection's indexes; a wrong number of values is a usage error
/// naming the parts.
fn find_failure(
    vault: &medvault::Vault,
    collection: &str,
    index: &str,
    given: usize,
    e: Error,
) -> Failure {
    let defined = vault.indexes();
    let spec = defined
        .iter()
        .find(|s| s.spec.collection == collection && s.spec.name == index);
    match (spec, e) {
        (None, Error::NotFound) => {
            let names: Vec<&str> = defined
                .iter()
                .filter(|s| s.spec.collection == collection)
                .map(|s| s.spec.name.as_str())
                .collect();
            let known = if names.is_empty() {
                format!("{collection} has none (`find VAULT --list` shows every index)")
            } else {
                format!("{collection} has {}", names.join(", "))
            };
            Failure::new(
                Code::NoSuchIndex,
                format!(
                    "no index {} on {}: {known}",
                    escape(index),
                    escape(collection)
                ),
            )
        }
        (Some(s), _) if s.spec.parts.len() != given => {
            let parts: Vec<String> = s.spec.parts.iter().map(|p| p.to_string()).collect();
            Failure::usage(format!(
                "index {index} takes {} values, one per part ({}); {given} given",
                parts.len(),
                parts.join(", ")
            ))
        }
        (_, e) => e.into(),
    }
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
    let key = RecordKey::new(subject, collection, record_id);
    vault
        .delete(&ctx, &key)
        .map_err(|e| not_found_as(e, || no_record(&key)))?;
    crate::outln!(
        "deleted record {}/{} of subject {}",
        escape(collection),
        escape(record_id),
        escape(subject)
    )?;
    Ok(())
}

/// `medvault subjects VAULT`: every subject id, sorted, one per line.
pub fn subjects(path: &Path, args: &AccessArgs) -> CliResult {
    let (ctx, vault) = access::open(path, args)?;
    let mut ids = vault.subjects(&ctx)?;
    ids.sort();
    let mut out = std::io::BufWriter::new(crate::output::stdout());
    // A header only for a person: scripts read one id per line.
    if std::io::stdout().is_terminal() {
        writeln!(
            out,
            "SUBJECT ({})",
            crate::human::count(ids.len() as u64, "subject")
        )?;
    }
    for id in ids {
        writeln!(out, "{}", escape(&id))?;
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
        .map_err(|e| not_found_as(e, || format!("no subject {}", escape(subject))))?;
    crate::outln!(
        "erased subject {}: {}; its data keys are destroyed and the database rewritten without them; \
         the vault remembers the erasure and refuses to re-create the subject (`medvault readmit` if the patient returns)",
        escape(subject),
        crate::human::count(n, "record")
    )?;
    // Backups taken before still hold the subject's keys: only the erasure ledger kept
    // apart from them stops a restore from bringing the patient back (docs/BACKUP.md).
    crate::outln!(
        "backups taken before this erasure still hold the subject's keys: bring the erasure \
         ledger kept apart from them up to date now (`medvault erasure-ledger VAULT LEDGER`), \
         or a restore of one of them brings the patient back (docs/BACKUP.md)"
    )?;
    Ok(())
}

/// `medvault readmit VAULT SUBJECT --reason R`: lifts the erasure memory of a subject.
pub fn readmit(path: &Path, subject: &str, args: &AccessArgs) -> CliResult {
    let Some(reason) = args.reason.clone().filter(|r| !r.trim().is_empty()) else {
        return Err(Failure::usage(
            "readmit needs --reason: why the erased patient is re-admitted (it is logged)",
        ));
    };
    let ctx = access::context(args)?;
    let vault = access::open_vault(path, &ctx)?;
    vault
        .readmit_subject(&ctx, subject, &reason)
        .map_err(|e| not_found_as(e, || "this subject is not remembered as erased".to_owned()))?;
    crate::outln!(
        "re-admitted subject {}: its records may be written or imported again (the re-admission is in the access log)",
        escape(subject)
    )?;
    Ok(())
}
