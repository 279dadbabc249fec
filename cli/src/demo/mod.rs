//! `medvault demo`: the whole promise of medvault, shown and measured in one run. On
//! the shared data set's real Synthea FHIR exports when found (else on synthetic
//! patients) it imports through the library path behind `medvault import` and checks
//! every resource byte for byte against its input line; installs the default clinic
//! policy and reads as several roles for several purposes (some denied by the policy);
//! breaks the glass and has the access reviewed; rotates the root key and the data keys;
//! erases a patient and shows a re-import does not bring it back; makes a research
//! export and scans it for identities; verifies the access log; attacks copies of the
//! vault; scans every vault file for the patients' identifiers; and prints a one-screen
//! report. Every figure in the report is measured in this run.

mod bench;
mod dataset;
mod input;
mod scan;
mod size;
mod tamper;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medvault::audit::report::Verdict;
use medvault::research::{CollectionSpec, DataSpec, DateRule, ResearchRequest};
use medvault::{
    AccessContext, Action, Denial, Error, KdfParams, KeySource, LogQuery, Outcome, Policy, Purpose,
    RecordKey, RotationScope, Vault, VaultOptions,
};
use medvault_fhir::{self as fhir, ImportOptions, ImportSource};
use serde_json::Value;

use crate::exit::{CliResult, Failure};
use crate::progress::{self, Unit};

/// Used when MEDVAULT_PASSPHRASE is not set. The demo vault holds synthetic data only.
const DEMO_PASSPHRASE: &str = "medvault demo passphrase (synthetic data only)";
/// The root key after rotation, when MEDVAULT_NEW_PASSPHRASE is not set.
const DEMO_NEW_PASSPHRASE: &str = "medvault demo passphrase, rotated";
/// Point reads timed for the reads/s figure (fewer when the vault holds fewer records).
const POINT_READS: usize = 5000;
/// Synthetic patients when neither `--patients` nor real data is there.
const DEFAULT_PATIENTS: usize = 1000;

/// Where the demo's patients come from.
pub enum Source<'a> {
    /// The shared data set's Synthea exports when found, else synthetic patients.
    Auto,
    /// `n` synthetic patients.
    Synthetic(usize),
    /// The NDJSON files of this directory.
    Dir(&'a Path),
}

/// Runs the demo on `source` (`seed`: the synthetic generator's), in `dir` (kept) or in a
/// temporary directory (removed at the end). With `postgres`, the vault is kept at that
/// URL (docs/POSTGRES.md).
pub fn run(
    source: Source<'_>,
    dir: Option<&Path>,
    seed: u64,
    postgres: Option<String>,
) -> CliResult {
    if let Source::Synthetic(n) = source
        && n < 4
    {
        return Err(Failure::usage("the demo needs at least 4 patients"));
    }
    let _temp;
    let root: PathBuf = match dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                return Err(Failure::usage(format!(
                    "--dir {} is not empty; give a new or empty directory",
                    d.display()
                )));
            }
            std::fs::create_dir_all(d)?;
            d.to_path_buf()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("medvault-demo-")
                .tempdir()?;
            let p = t.path().to_path_buf();
            _temp = t;
            p
        }
    };
    let pass = std::env::var("MEDVAULT_PASSPHRASE").unwrap_or_else(|_| DEMO_PASSPHRASE.into());
    let new_pass =
        std::env::var("MEDVAULT_NEW_PASSPHRASE").unwrap_or_else(|_| DEMO_NEW_PASSPHRASE.into());
    let demo = Demo {
        root,
        pass,
        new_pass,
        kept: dir.is_some(),
        postgres,
    };
    let report = demo.run(source, seed)?;
    crate::out!("{report}")?;
    Ok(())
}

struct Demo {
    root: PathBuf,
    pass: String,
    new_pass: String,
    kept: bool,
    /// The URL of a PostgreSQL vault, instead of `root/vault`.
    postgres: Option<String>,
}

fn step(what: &str) {
    eprintln!("demo: {what}");
}

fn rate(n: u64, secs: f64) -> String {
    let r = n as f64 / secs.max(1e-9);
    if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The policy rule named by an access denial, or what else the result was.
fn denial(r: &medvault::Result<impl Sized>) -> String {
    match r {
        Err(Error::AccessDenied(Denial::Policy { rule, .. })) => format!("DENIED (rule {rule})"),
        Err(Error::AccessDenied(d)) => format!("DENIED ({d})"),
        Err(e) => format!("failed: {e}"),
        Ok(_) => "ALLOWED".to_owned(),
    }
}

fn is_denied(r: &medvault::Result<impl Sized>) -> bool {
    matches!(r, Err(Error::AccessDenied(_)))
}

/// What an auditor does with `medvault-verify` alone: opens both signed checkpoints with
/// the vault's public keys (one per signing-key generation), checks the consistency proof between them, and the inclusion
/// proof of an entry whose stored bytes it was given.
fn auditor_checks(
    vkeys: &[String],
    first: &str,
    later: &str,
    consistency: &str,
    inclusion: Option<&(String, Vec<u8>)>,
) -> Result<(), medvault_verify::Error> {
    use medvault_verify::{Checkpoint, ConsistencyProof, InclusionProof, VerifierKey, leaf_hash};
    let keys = vkeys
        .iter()
        .map(|k| VerifierKey::parse(k))
        .collect::<Result<Vec<_>, _>>()?;
    let (c1, _) = Checkpoint::open_any(first, &keys)?;
    let (c2, _) = Checkpoint::open_any(later, &keys)?;
    c1.verify_extends(&c2, &ConsistencyProof::from_text(consistency)?)?;
    if let Some((text, entry)) = inclusion {
        let (proof, leaf) = InclusionProof::from_text(text)?;
        if leaf != leaf_hash(entry) {
            return Err(medvault_verify::Error::Rejected(
                "the entry is not the proven leaf",
            ));
        }
        proof.verify(&leaf, &c2.root)?;
    }
    Ok(())
}

/// The actors of the demo: each authenticated by the clinic's software in a role of the
/// default clinic policy (`Policy::default_clinic`, docs/POLICY.md), acting for a
/// purpose of use.
struct Actors {
    ops: AccessContext,
    admin: AccessContext,
    privacy: AccessContext,
    nurse: AccessContext,
    clerk: AccessContext,
    researcher: AccessContext,
    er_doctor: AccessContext,
    dpo: AccessContext,
}

impl Actors {
    fn new() -> Self {
        Actors {
            ops: AccessContext::new("ops.import-job", Purpose::Maintenance)
                .with_role("integration"),
            admin: AccessContext::new("admin.keys", Purpose::Maintenance)
                .with_role("administration"),
            privacy: AccessContext::new("privacy.officer", Purpose::Administration)
                .with_role("administration"),
            nurse: AccessContext::new("nurse.okafor", Purpose::Care).with_role("care"),
            clerk: AccessContext::new("clerk.billing-2", Purpose::Billing).with_role("billing"),
            researcher: AccessContext::new("researcher.study-17", Purpose::Research)
                .with_role("research"),
            er_doctor: AccessContext::new("dr.er-night", Purpose::Emergency).with_role("care"),
            dpo: AccessContext::new("dpo.requests", Purpose::PatientRequest).with_role("dpo"),
        }
    }
}

/// Loads (or writes, for synthetic patients) the demo's input. Returns the input, the
/// directories to import, and a line saying what it is.
fn load(source: Source<'_>, root: &Path, seed: u64) -> CliResult<(input::Input, String)> {
    let synthetic = |n: usize| -> CliResult<(input::Input, String)> {
        let dir = root.join("input");
        let ds = dataset::write(&dir, n, seed)?;
        let mut inp = input::read(&[dir])?;
        // The generator also knows each patient's birth date and e-mail address.
        inp.needles.extend(ds.needles);
        inp.needles.sort();
        inp.needles.dedup();
        let what = format!("{n} synthetic patients (seed {seed})");
        Ok((inp, what))
    };
    match source {
        Source::Synthetic(n) => synthetic(n),
        Source::Dir(d) => {
            let inp = input::read(&[d.to_path_buf()])?;
            let what = format!("{} patients from {}", inp.patients.len(), d.display());
            Ok((inp, what))
        }
        Source::Auto => match input::find_real() {
            Some(dirs) => {
                let inp = input::read(&dirs)?;
                let what = format!(
                    "{} patients of the shared data set's Synthea FHIR R4 exports ({})",
                    inp.patients.len(),
                    dirs.iter()
                        .filter_map(|d| d.file_name().and_then(|n| n.to_str()))
                        .collect::<Vec<_>>()
                        .join(" + ")
                );
                Ok((inp, what))
            }
            None => {
                let (inp, what) = synthetic(DEFAULT_PATIENTS)?;
                Ok((
                    inp,
                    format!("{what} (the shared data set ../shared/data was not found)"),
                ))
            }
        },
    }
}

impl Demo {
    fn run(&self, source: Source<'_>, seed: u64) -> CliResult<String> {
        let t_all = Instant::now();
        let mut r = String::new();
        let w = |r: &mut String, line: String| {
            r.push_str(&line);
            r.push('\n');
        };
        let a = Actors::new();
        let key = || KeySource::passphrase(self.pass.as_str());
        let new_key = || KeySource::passphrase(self.new_pass.as_str());
        let mut failures: Vec<&'static str> = Vec::new();

        // 1. The input, as FHIR Bulk Data NDJSON files.
        step("reading the input");
        let (inp, what) = load(source, &self.root, seed)?;
        let resources = inp.resources();
        w(
            &mut r,
            format!(
                "medvault demo: {what}: {resources} distinct FHIR resources in {} lines ({}), {} NDJSON in {} files",
                inp.lines_read,
                if inp.lines_read > resources {
                    "some resources appear in two files, byte-identical: they are one record"
                } else {
                    "each resource once"
                },
                crate::human::bytes(inp.bytes),
                inp.files.len()
            ),
        );

        // 2. The vault, under the real default Argon2id cost and the default policy.
        step("creating the vault (Argon2id, RFC 9106 defaults) with the default clinic policy");
        let vault_dir = match &self.postgres {
            Some(url) => PathBuf::from(url),
            None => self.root.join("vault"),
        };
        let kdf = KdfParams::default();
        let t = Instant::now();
        let vault = crate::backend::create(
            &vault_dir,
            key(),
            VaultOptions {
                kdf,
                opener: a.ops.clone(),
                policy: Some(Policy::default_clinic()),
                ..VaultOptions::default()
            },
        )??;
        w(
            &mut r,
            format!(
                "  vault      created in {:.0} ms (Argon2id m={} MiB t={} p={} included); \
                 policy: the default clinic policy (docs/POLICY.md)",
                t.elapsed().as_secs_f64() * 1000.0,
                kdf.memory_kib / 1024,
                kdf.iterations,
                kdf.lanes
            ),
        );

        // 3. Import through the library path of `medvault import`.
        step("importing");
        let import = |v: &Vault| -> CliResult<(fhir::ImportReport, f64)> {
            let source = ImportSource::new(&inp.files)?;
            let bar = progress::bar(source.total_bytes(), Unit::Bytes);
            let t = Instant::now();
            let rep = fhir::import(v, &a.ops, source, ImportOptions::default(), &mut |p| {
                bar.set_position(p.bytes_read)
            });
            bar.finish_and_clear();
            Ok((rep?, t.elapsed().as_secs_f64()))
        };
        let (imported, secs) = import(&vault)?;
        if imported.records != resources || imported.rejected > 0 {
            return Err(Failure::other(format!(
                "demo: imported {} resources ({} rejected) of {resources} in the input",
                imported.records, imported.rejected
            )));
        }
        w(
            &mut r,
            format!(
                "  import     {} records in {secs:.2} s = {} records/s ({:.1} MiB/s, {} atomic batches, one log entry per record; \
                 role integration, purpose HSYSADMIN)",
                imported.records,
                rate(imported.records, secs),
                mib(imported.bytes) / secs.max(1e-9),
                imported.batches
            ),
        );

        // The auditor's first signed checkpoint and the vault's public key, kept outside.
        // (The PostgreSQL log store keeps no Merkle tree yet: no signed checkpoint there.)
        let signed = if self.postgres.is_none() {
            Some((
                vault.verifier_key(&a.privacy)?,
                vault.signed_checkpoint(&a.privacy)?,
            ))
        } else {
            None
        };

        // 4. Exactness: every resource read back against its input line, byte for byte.
        step("reading every resource back (a right-of-access copy per patient)");
        let t = Instant::now();
        let mut all_keys: Vec<RecordKey> = Vec::with_capacity(resources as usize);
        let mut per_subject: Vec<(String, usize)> = Vec::new();
        let (mut exact, mut differ) = (0u64, 0u64);
        for s in vault.subjects(&a.dpo)? {
            let recs = vault.export_records_of_json(&a.dpo, &s)?;
            per_subject.push((s.clone(), recs.len()));
            for (k, text) in recs {
                let want = inp.lines.get(&(k.collection.clone(), k.record_id.clone()));
                if want.is_some_and(|l| l.as_slice() == text.as_str().as_bytes()) {
                    exact += 1;
                } else {
                    differ += 1;
                }
                all_keys.push(k);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        w(
            &mut r,
            format!(
                "  exactness  {exact} of {resources} resources read back byte for byte equal to their input line \
                 ({differ} differ; {} subjects, dpo role, purpose PATRQT, {secs:.2} s)",
                per_subject.len()
            ),
        );
        if exact != resources || differ > 0 {
            failures.push("a resource read back differs from its input line");
        }

        // 5. Reads by several roles for several purposes, under the policy.
        step("reading as a nurse, a billing clerk, a researcher, an emergency doctor");
        let patients: std::collections::BTreeSet<&str> =
            inp.patients.iter().map(String::as_str).collect();
        let mut by_size: Vec<&(String, usize)> = per_subject
            .iter()
            .filter(|(s, _)| patients.contains(s.as_str()))
            .collect();
        by_size.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        if by_size.len() < 4 {
            return Err(Failure::other("demo: fewer than 4 patients were imported"));
        }
        let first = by_size[0].0.as_str();
        let whole = vault.records_of_json(&a.nurse, first, None)?;
        let same = whole.len() == by_size[0].1
            && whole.iter().all(|(k, t)| {
                inp.lines
                    .get(&(k.collection.clone(), k.record_id.clone()))
                    .is_some_and(|l| l.as_slice() == t.as_str().as_bytes())
            });
        w(
            &mut r,
            format!(
                "  reads      nurse (role care, TREAT): whole record of patient #1, {} resources, byte-equal to the input: {}",
                whole.len(),
                if same { "yes" } else { "NO" }
            ),
        );
        if !same {
            failures.push("the nurse's read differs from the input");
        }
        let of_type = |subject: &str, collection: &str| {
            all_keys
                .iter()
                .find(|k| k.subject == subject && k.collection == collection)
                .cloned()
        };
        let patient_rec = |subject: &str| RecordKey::new(subject, "Patient", subject);
        if let Some(enc) = of_type(first, "Encounter") {
            let text = vault.get_json(&a.clerk, &enc)?;
            let v: serde_json::Map<String, Value> = serde_json::from_str(text.as_str())
                .map_err(|_| Failure::other("demo: a record read back is not JSON"))?;
            let full = inp
                .lines
                .get(&(enc.collection.clone(), enc.record_id.clone()))
                .and_then(|l| serde_json::from_slice::<serde_json::Map<String, Value>>(l).ok())
                .map(|m| m.len())
                .unwrap_or(0);
            w(
                &mut r,
                format!(
                    "             billing clerk (role billing, HPAYMT): an Encounter of patient #1 returns {} of its {full} fields [{}] (rule billing-claims)",
                    v.len(),
                    v.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if let Some(cond) = of_type(first, "Condition") {
            let res = vault.get_json(&a.clerk, &cond);
            w(
                &mut r,
                format!("             billing clerk, a Condition: {}", denial(&res)),
            );
            if !is_denied(&res) {
                failures.push("the billing clerk read a Condition");
            }
        }
        let res = vault.get_json(&a.researcher, &patient_rec(first));
        w(
            &mut r,
            format!(
                "             researcher (role research, HRESCH), patient #1 directly: {} (research data leaves only through the research export, below)",
                denial(&res)
            ),
        );
        if !is_denied(&res) {
            failures.push("the researcher read a patient directly");
        }
        let third = patient_rec(by_size[2].0.as_str());
        let btg = a
            .er_doctor
            .clone()
            .with_reason("unconscious patient in the ER, no consent possible");
        let glass = vault.get_json(&btg, &third);
        let no_reason = vault.get_json(&a.er_doctor, &third);
        w(
            &mut r,
            format!(
                "             emergency doctor (role care, ETREAT): break-the-glass read of patient #3 with a reason: {}; without a reason: {}",
                if glass.is_ok() { "ok" } else { "FAILED" },
                denial(&no_reason)
            ),
        );
        if glass.is_err() || !is_denied(&no_reason) {
            failures.push("break-the-glass did not behave as the policy says");
        }
        let queue = vault.review_queue(&a.privacy, Some(u64::MAX))?;
        let mine: Vec<_> = queue
            .iter()
            .filter(|e| e.actor == a.er_doctor.actor)
            .collect();
        let glass_seq = mine.first().map(|e| e.seq);
        for e in &mine {
            vault.close_review(
                &a.privacy,
                e.seq,
                Verdict::Justified,
                "ER admission confirmed by the duty manager",
            )?;
        }
        let left = vault
            .review_queue(&a.privacy, Some(u64::MAX))?
            .iter()
            .filter(|e| e.actor == a.er_doctor.actor)
            .count();
        let logged = vault.audit_query(
            &a.privacy,
            &LogQuery {
                actor: Some(a.er_doctor.actor.clone()),
                action: Some(Action::Read),
                ..LogQuery::default()
            },
        )?;
        let denied_logged = logged
            .iter()
            .filter(|e| e.outcome == Outcome::Denied)
            .count();
        w(
            &mut r,
            format!(
                "             review: {} break-the-glass access(es) in the queue, closed as justified by the privacy officer; {left} left open \
                 (access log: {} ok, {denied_logged} denied entry)",
                mine.len(),
                logged.len() - denied_logged
            ),
        );
        if mine.is_empty() || left > 0 {
            failures.push("the break-the-glass access was not queued and reviewed");
        }
        let n = POINT_READS.min(all_keys.len());
        let stride = (all_keys.len() / n.max(1)).max(1);
        let t = Instant::now();
        for k in all_keys.iter().step_by(stride).take(n) {
            vault.get_json(&a.nurse, k)?;
        }
        let secs = t.elapsed().as_secs_f64();
        w(
            &mut r,
            format!(
                "             point reads, all fields, each with its log entry: {n} in {secs:.2} s = {} reads/s",
                rate(n as u64, secs)
            ),
        );

        // 6. Key rotation.
        step("rotating the root key and the data keys");
        let t = Instant::now();
        let rewrapped = vault.rotate_root_key(&a.admin, new_key(), kdf, &mut |_| {})?;
        let root_secs = t.elapsed().as_secs_f64();
        let bar = progress::bar(resources, Unit::Items("records"));
        let t = Instant::now();
        let rotated = vault.rotate_data_keys(&a.admin, &RotationScope::All, &mut |p| {
            bar.set_length(p.total);
            bar.set_position(p.done);
        });
        bar.finish_and_clear();
        let rotated = rotated?;
        let data_secs = t.elapsed().as_secs_f64();
        let again = vault.records_of_json(&a.nurse, first, None)?;
        let still_same = again.len() == whole.len()
            && whole.iter().all(|(k, t)| {
                again
                    .iter()
                    .any(|(k2, t2)| k2 == k && t2.as_str() == t.as_str())
            });
        w(
            &mut r,
            format!(
                "  rotation   root key: {rewrapped} keys rewrapped (vault secret and key-encryption key) in {:.0} ms (new Argon2id included), no record touched",
                root_secs * 1000.0
            ),
        );
        w(
            &mut r,
            format!(
                "             data keys: {} records of {} subjects re-encrypted in {data_secs:.2} s = {} records/s; \
                 patient #1 reads the same: {}",
                rotated.records,
                rotated.subjects,
                rate(rotated.records, data_secs),
                if still_same { "yes" } else { "NO" }
            ),
        );
        if !still_same {
            failures.push("a record changed across key rotation");
        }

        // 7. Erasure (crypto-shredding) of one patient, and a re-import.
        step("erasing one patient, then importing the same files again");
        let gone = by_size[3].0.clone();
        let gone_rec = patient_rec(&gone);
        let backups = self.root.join("backups");
        let backup = if self.postgres.is_none() {
            Some(vault.backup(&a.privacy, &backups)?)
        } else {
            None
        };
        let db_before_erase = vault.stats()?.disk_bytes;
        let t = Instant::now();
        let erased = vault.erase_subject(
            &a.dpo
                .clone()
                .with_reason("GDPR art. 17 request of the patient"),
            &gone,
        )?;
        let erase_secs = t.elapsed().as_secs_f64();
        let not_found = |v: &Vault| {
            matches!(
                v.get_json(&a.nurse, &gone_rec),
                Err(Error::NotFound | Error::SubjectErased)
            )
        };
        let gone_now = not_found(&vault);
        w(
            &mut r,
            format!(
                "  erasure    patient #4 (dpo role, PATRQT, with a reason): {erased} records and its keys destroyed in {erase_secs:.2} s; get afterwards: {}",
                if gone_now {
                    "not found"
                } else {
                    "STILL READABLE"
                }
            ),
        );
        w(
            &mut r,
            format!(
                "             (erasure purges: the whole database, {} before, is rewritten without the \
                 deleted ciphertext so none lingers in free pages; its cost follows the vault's size, \
                 not the patient's {erased} records)",
                crate::human::bytes(db_before_erase)
            ),
        );
        let (again, _) = import(&vault)?;
        let gone_after_reimport = not_found(&vault);
        w(
            &mut r,
            format!(
                "             re-import of the same files: {} created, {} unchanged, refused {} records (lines) of the erased patient; patient #4 afterwards: {}",
                again.records,
                again.unchanged,
                again.refused_erased,
                if gone_after_reimport {
                    "not found"
                } else {
                    "BACK"
                }
            ),
        );
        // A resource present in two input files is refused twice.
        if !gone_now || !gone_after_reimport || again.refused_erased < erased || again.records > 0 {
            failures.push("an erased patient was readable or came back");
        }
        if let Some(b) = &backup {
            // The erasure ledger is kept apart from the backups (docs/BACKUP.md).
            let ledger = self.root.join("erasure-ledger");
            vault.update_erasure_ledger(&a.dpo, &ledger)?;
            let restored_dir = self.root.join("restored");
            let rep = Vault::restore(
                &b.dir,
                &restored_dir,
                new_key(),
                medvault::RestoreOptions {
                    ledger: Some(ledger),
                    vault: VaultOptions {
                        opener: a.ops.clone(),
                        ..VaultOptions::default()
                    },
                    ..medvault::RestoreOptions::default()
                },
            )?;
            let restored = Vault::open_with(
                &restored_dir,
                new_key(),
                VaultOptions {
                    opener: a.ops.clone(),
                    ..VaultOptions::default()
                },
            )?;
            let back = !not_found(&restored);
            let first_there = restored.get_json(&a.nurse, &patient_rec(first)).is_ok();
            w(
                &mut r,
                format!(
                    "  backup     taken before the erasure ({} pairs, commit lock held {} ms); restored with the erasure ledger: \
                     {} erasure(s) re-applied, patient #4 in the restored vault: {}, patient #1: {}",
                    b.pairs,
                    b.lock_held_ms,
                    rep.erasures_applied,
                    if back { "BACK" } else { "not found" },
                    if first_there { "readable" } else { "MISSING" }
                ),
            );
            if back || !first_there {
                failures.push("a restore brought an erased patient back or lost a patient");
            }
        }

        // 8. A research export through the guard, scanned for identities.
        step("exporting for research");
        let spec = DataSpec {
            collections: ["Patient", "Condition"]
                .into_iter()
                .map(|c| CollectionSpec {
                    collection: c.to_owned(),
                    fields: vec!["*".to_owned()],
                })
                .collect(),
            dates: DateRule::Year,
            postal_digits: 0,
            quasi_identifiers: Vec::new(),
            keep_identifiers: Vec::new(),
            reference_year: None,
        };
        let req = ResearchRequest {
            project: "study-17".to_owned(),
            authorization: "ethics committee approval EC-2026-042".to_owned(),
            spec,
        };
        let export = vault.research_export(&a.researcher, &req)?;
        let research_dir = self.root.join("research");
        std::fs::create_dir_all(&research_dir)?;
        let mut ndjson = String::new();
        for (_, text) in &export.resources {
            ndjson.push_str(text.as_str());
            ndjson.push('\n');
        }
        std::fs::write(research_dir.join("export.ndjson"), ndjson)?;
        std::fs::write(research_dir.join("manifest.json"), export.manifest_json())?;
        let leaks = scan::scan(&research_dir, &inp.needles)?;
        let m = &export.manifest;
        w(
            &mut r,
            format!(
                "  research   researcher (role research, HRESCH), project study-17: {} patients and {} resources exported \
                 (k = {} required, {} achieved; {} patients suppressed), dates to the year, ids pseudonymized; \
                 identity scan of the export: {} hits for {} names and identifiers",
                m.patients,
                m.records,
                m.k_required,
                m.k_achieved,
                m.suppressed_patients,
                leaks.hits,
                inp.needles.len()
            ),
        );
        if leaks.hits > 0 {
            failures.push("the research export holds an identifier");
        }

        // 9. Access-log verification and a checkpoint kept outside the vault.
        step("verifying the access log");
        let t = Instant::now();
        let entries = vault.verify(&a.privacy, None)?;
        let secs = t.elapsed().as_secs_f64();
        let cp = vault.checkpoint(&a.privacy)?;
        let cp_file = self.root.join("checkpoint.txt");
        std::fs::write(&cp_file, cp.to_text())?;
        w(
            &mut r,
            format!(
                "  audit      {entries} access-log entries (seq 0 to {}) verified in {:.0} ms = {} entries/s;",
                entries.saturating_sub(1),
                secs * 1000.0,
                rate(entries, secs),
            ),
        );
        w(
            &mut r,
            format!(
                "             the verification and the checkpoint are logged too ({} more), so the \
                 checkpoint token pins the first {} entries",
                cp.next_seq.saturating_sub(entries),
                cp.next_seq
            ),
        );
        if let Some((vkey, first_cp)) = &signed {
            // The auditor, holding only the public key and the first checkpoint, checks that
            // today's log extends it and that the break-the-glass entry is in it.
            let later_cp = vault.signed_checkpoint(&a.privacy)?;
            let consistency = vault.prove_consistency(
                &a.privacy,
                first_cp.tree_size,
                Some(later_cp.tree_size),
            )?;
            let inclusion = match glass_seq {
                Some(seq) => Some((
                    vault.prove_inclusion(&a.privacy, seq, Some(later_cp.tree_size))?,
                    vault.entry_bytes(&a.privacy, seq)?,
                )),
                None => None,
            };
            // The root-key rotation turned the signing key over; the auditor keeps every
            // public key the vault published (`medvault audit key --all`).
            let mut keys = vec![vkey.to_string()];
            keys.extend(vault.checkpoint_keys()?.into_iter().map(|k| k.verifier_key));
            let proven = auditor_checks(
                &keys,
                &first_cp.note,
                &later_cp.note,
                &consistency,
                inclusion.as_ref(),
            );
            w(
                &mut r,
                format!(
                    "             proven to an auditor without the key (medvault-verify, public key only): the log at {} entries extends \
                     the checkpoint taken after the import ({} entries), and the break-the-glass entry is in it: {}",
                    later_cp.tree_size,
                    first_cp.tree_size,
                    match &proven {
                        Ok(()) => "yes".to_owned(),
                        Err(e) => format!("NO ({e})"),
                    }
                ),
            );
            if proven.is_err() {
                failures.push("the auditor's proof check failed");
            }
        } else {
            w(
                &mut r,
                "             proof to an auditor: not on PostgreSQL yet (its log store keeps no Merkle tree: docs/POSTGRES.md)"
                    .to_owned(),
            );
        }
        vault.sync()?;
        drop(vault);
        if let Some(url) = &self.postgres {
            return self.finish_on_postgres(r, url, &inp, failures, t_all);
        }
        w(&mut r, size::explain(&vault_dir, inp.bytes)?);

        // 10. Attacks on copies, each read back whole by the dpo role (right of access: it
        // reads every record, and its audit capability verifies the log).
        step("attacking copies of the vault");
        let old_key_refused = matches!(Vault::open(&vault_dir, key()), Err(Error::WrongKey));
        let pristine = self.root.join("copy-before-more-work");
        tamper::copy_dir(&vault_dir, &pristine)?;
        let mut attacks = vec![
            tamper::header_byte(
                &vault_dir,
                &self.root.join("copy-header"),
                new_key(),
                &a.dpo,
            )?,
            tamper::stored_value(
                &vault_dir,
                &self.root.join("copy-record"),
                b'r',
                "one bit of a record ciphertext flipped",
                new_key(),
                &a.dpo,
            )?,
            tamper::log_frame_byte(
                &vault_dir,
                &self.root.join("copy-log"),
                "one bit of an access-log entry flipped",
                new_key(),
                &a.dpo,
            )?,
            tamper::raw_file_byte(
                &vault_dir,
                &self.root.join("copy-raw"),
                new_key(),
                &a.dpo,
                &cp,
            )?,
        ];
        {
            let vault = Vault::open_with(
                &vault_dir,
                new_key(),
                VaultOptions {
                    opener: a.ops.clone(),
                    ..VaultOptions::default()
                },
            )?;
            vault.get_json(&a.nurse, &patient_rec(first))?;
            let later = vault.checkpoint(&a.dpo)?;
            drop(vault);
            attacks.push(tamper::rollback(&pristine, new_key(), &a.dpo, &later));
        }
        let caught = attacks.iter().filter(|a| a.detected).count();
        w(
            &mut r,
            format!(
                "  tampering  detected {caught} of {} attacks on copies (old passphrase refused after rotation: {}):",
                attacks.len(),
                if old_key_refused { "yes" } else { "NO" }
            ),
        );
        for a in &attacks {
            w(&mut r, format!("             - {}: {}", a.what, a.answer));
        }
        if caught == attacks.len() {
            w(
                &mut r,
                "             tampering detected in every copy".to_owned(),
            );
        } else {
            failures.push("an attack on a copy was not detected");
        }
        if !old_key_refused {
            failures.push("the old passphrase still opens the vault");
        }

        // 11. Plaintext scan of every vault file; the input files are the control.
        step("scanning every vault file for the patients' names and identifiers");
        let t = Instant::now();
        let in_vault = scan::scan(&vault_dir, &inp.needles)?;
        let secs = t.elapsed().as_secs_f64();
        let control_hits = scan::scan_files(&inp.files, &inp.needles)?.hits;
        w(
            &mut r,
            format!(
                "  plaintext scan: {} hits for {} names and identifiers in {} vault files ({}, {:.2} s); \
                 control: {} of them found in the NDJSON input",
                in_vault.hits,
                inp.needles.len(),
                in_vault.files,
                crate::human::bytes(in_vault.bytes),
                secs,
                control_hits
            ),
        );
        if in_vault.hits > 0 {
            failures.push("a vault file holds a patient's identifier in clear");
        }
        if control_hits != inp.needles.len() {
            failures.push("the scan's control did not find every identifier in the input");
        }

        for line in bench::lines() {
            w(&mut r, line);
        }
        let mut tail = String::new();
        let _ = write!(tail, "  total      {:.1} s", t_all.elapsed().as_secs_f64());
        if self.kept {
            let _ = write!(
                tail,
                "; kept in {} (passphrase now from MEDVAULT_NEW_PASSPHRASE or the demo's rotated one)",
                self.root.display()
            );
        }
        w(&mut r, tail);
        if !failures.is_empty() {
            crate::out!("{r}")?;
            return Err(Failure::new(
                crate::exit::Code::Integrity,
                format!("demo: a check failed: {}", failures.join("; ")),
            ));
        }
        Ok(r)
    }
}

impl Demo {
    /// The end of the story on PostgreSQL: the old passphrase refused after rotation, and
    /// the plaintext scan of every byte the vault's tables hold (the server's view); the
    /// attacks on file copies do not apply (postgres/tests/backend.rs tampers as a DBA).
    fn finish_on_postgres(
        &self,
        mut r: String,
        url: &str,
        inp: &input::Input,
        mut failures: Vec<&'static str>,
        t_all: Instant,
    ) -> CliResult<String> {
        let w = |r: &mut String, line: String| {
            r.push_str(&line);
            r.push('\n');
        };
        let key = KeySource::passphrase(self.pass.as_str());
        let old_key_refused = matches!(
            crate::backend::open(Path::new(url), key, VaultOptions::default())?,
            Err(Error::WrongKey)
        );
        w(
            &mut r,
            format!(
                "  storage    PostgreSQL ({}); old passphrase refused after rotation: {}",
                crate::backend::shown(Path::new(url)),
                if old_key_refused { "yes" } else { "NO" }
            ),
        );
        step("scanning every byte of the vault's tables for the patients' names and identifiers");
        let view = self.root.join("server-view");
        std::fs::create_dir_all(&view)?;
        crate::backend::server_view(url, &view.join("rows.bin"))?;
        let t = Instant::now();
        let in_vault = scan::scan(&view, &inp.needles)?;
        let secs = t.elapsed().as_secs_f64();
        let control = scan::scan_files(&inp.files, &inp.needles)?;
        w(
            &mut r,
            format!(
                "  plaintext scan: {} hits for {} names and identifiers in the vault's table rows ({}, {:.2} s); \
                 control: {} of them found in the NDJSON input",
                in_vault.hits,
                inp.needles.len(),
                crate::human::bytes(in_vault.bytes),
                secs,
                control.hits
            ),
        );
        w(
            &mut r,
            format!("  total      {:.1} s", t_all.elapsed().as_secs_f64()),
        );
        if in_vault.hits > 0 {
            failures.push("a table row holds a patient's identifier in clear");
        }
        if control.hits != inp.needles.len() {
            failures.push("the scan's control did not find every identifier in the input");
        }
        if !old_key_refused {
            failures.push("the old passphrase still opens the vault");
        }
        if !failures.is_empty() {
            crate::out!("{r}")?;
            return Err(Failure::new(
                crate::exit::Code::Integrity,
                format!("demo: a check failed: {}", failures.join("; ")),
            ));
        }
        Ok(r)
    }
}
