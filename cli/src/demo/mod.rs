//! `medvault demo`: the whole promise of medvault, shown and measured in one run on
//! synthetic patients. It writes FHIR NDJSON, imports it through the library path behind
//! `medvault import`, reads as several actors for several purposes (one refused), rotates
//! the root key and the data keys, erases a patient, verifies the access log, attacks
//! copies of the vault, scans every vault file for the patients' identifiers, and prints
//! a one-screen report. Every figure in the report is measured in this run.

mod dataset;
mod scan;
mod size;
mod tamper;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medvault::{
    AccessContext, Action, Error, KdfParams, KeySource, LogQuery, Outcome, Purpose, RecordKey,
    RotationScope, Vault, VaultOptions,
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

/// Runs the demo with `patients` synthetic patients from `seed`, in `dir` (kept) or in a
/// temporary directory (removed at the end).
pub fn run(patients: usize, dir: Option<&Path>, seed: u64) -> CliResult {
    if patients < 4 {
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
    };
    let report = demo.run(patients, seed)?;
    crate::out!("{report}")?;
    Ok(())
}

struct Demo {
    root: PathBuf,
    pass: String,
    new_pass: String,
    kept: bool,
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

impl Demo {
    fn run(&self, patients: usize, seed: u64) -> CliResult<String> {
        let t_all = Instant::now();
        let mut r = String::new();
        let w = |r: &mut String, line: String| {
            r.push_str(&line);
            r.push('\n');
        };
        let ops = AccessContext::new("ops.import-job", Purpose::Maintenance);
        let nurse = AccessContext::new("nurse.okafor", Purpose::Care);
        let clerk = AccessContext::new("clerk.billing-2", Purpose::Billing);
        let researcher = AccessContext::new("researcher.study-17", Purpose::Research);
        let er_doctor = AccessContext::new("dr.er-night", Purpose::Emergency);
        let dpo = AccessContext::new("dpo.audit", Purpose::Administration);
        let key = || KeySource::passphrase(self.pass.as_str());
        let new_key = || KeySource::passphrase(self.new_pass.as_str());

        // 1. Synthetic input, as NDJSON files.
        step("generating synthetic patients");
        let input = self.root.join("input");
        let ds = dataset::write(&input, patients, seed)?;
        let records = ds.keys.len() as u64;
        w(
            &mut r,
            format!(
                "medvault demo: {patients} synthetic patients (seed {seed}), {records} FHIR resources, \
                 {} NDJSON in {} files",
                crate::human::bytes(ds.bytes),
                ds.files
            ),
        );

        // 2. The vault, under the real default Argon2id cost.
        step("creating the vault (Argon2id, RFC 9106 defaults)");
        let vault_dir = self.root.join("vault");
        let kdf = KdfParams::default();
        let t = Instant::now();
        let vault = Vault::create_with(
            &vault_dir,
            key(),
            VaultOptions {
                kdf,
                opener: ops.clone(),
                ..VaultOptions::default()
            },
        )?;
        w(
            &mut r,
            format!(
                "  vault      created in {:.0} ms (Argon2id m={} MiB t={} p={} included)",
                t.elapsed().as_secs_f64() * 1000.0,
                kdf.memory_kib / 1024,
                kdf.iterations,
                kdf.lanes
            ),
        );

        // 3. Import through the library path of `medvault import`.
        step("importing");
        let source = ImportSource::new(std::slice::from_ref(&input))?;
        let bar = progress::bar(source.total_bytes(), Unit::Bytes);
        let t = Instant::now();
        let imported = fhir::import(&vault, &ops, source, ImportOptions::default(), &mut |p| {
            bar.set_position(p.bytes_read)
        });
        bar.finish_and_clear();
        let imported = imported?;
        let secs = t.elapsed().as_secs_f64();
        if imported.records != records || imported.per_type != ds.per_type || imported.rejected > 0
        {
            return Err(Failure::other(
                "demo: import counts differ from what was generated",
            ));
        }
        w(
            &mut r,
            format!(
                "  import     {} records in {secs:.2} s = {} records/s ({:.1} MiB/s, {} atomic batches, one log entry per record)",
                imported.records,
                rate(imported.records, secs),
                mib(imported.bytes) / secs.max(1e-9),
                imported.batches
            ),
        );

        // 4. Reads by several actors for several purposes.
        step("reading as a nurse, a billing clerk, a researcher, an emergency doctor");
        let first = &ds.patients[0];
        let whole: Vec<(RecordKey, Value)> = vault.records_of(&nurse, first, None)?;
        let mut same = whole.len() == ds.first_patient.len();
        for res in &ds.first_patient {
            let id = res["id"].as_str().unwrap_or_default();
            same &= whole.iter().any(|(k, v)| k.record_id == id && v == res);
        }
        w(
            &mut r,
            format!(
                "  reads      nurse (care): whole record of patient #1, {} resources, equal to the input: {}",
                whole.len(),
                if same { "yes" } else { "NO" }
            ),
        );
        if !same {
            return Err(Failure::other(
                "demo: a record read back differs from the input",
            ));
        }
        let billing_fields = ["resourceType", "id", "status", "class", "period"];
        let mut billed = 0;
        let mut fields_seen = std::collections::BTreeSet::new();
        for k in ds
            .keys
            .iter()
            .filter(|k| k.subject == ds.patients[1] && k.collection == "Encounter")
        {
            let v: serde_json::Map<String, Value> = vault.get_fields(&clerk, k, &billing_fields)?;
            fields_seen.extend(v.keys().cloned());
            billed += 1;
        }
        w(
            &mut r,
            format!(
                "             billing clerk: {billed} Encounters of patient #2, only fields [{}] decrypted",
                fields_seen.into_iter().collect::<Vec<_>>().join(", ")
            ),
        );
        let t = Instant::now();
        let mut conditions = 0usize;
        for p in &ds.patients {
            conditions += vault
                .records_of::<Value>(&researcher, p, Some("Condition"))?
                .len();
        }
        let secs = t.elapsed().as_secs_f64();
        w(
            &mut r,
            format!(
                "             researcher: {conditions} Conditions of {patients} patients in {secs:.2} s"
            ),
        );
        let btg = er_doctor
            .clone()
            .with_reason("unconscious patient in the ER, no consent possible");
        let third = RecordKey::new(ds.patients[2].as_str(), "Patient", ds.patients[2].as_str());
        let _: Value = vault.get(&btg, &third)?;
        let denied = vault.get::<Value>(&er_doctor, &third);
        if !matches!(denied, Err(Error::AccessDenied(_))) {
            return Err(Failure::other(
                "demo: break-the-glass without a reason was not refused",
            ));
        }
        let logged = vault.audit_query(
            &dpo,
            &LogQuery {
                actor: Some(er_doctor.actor.clone()),
                action: Some(Action::Read),
                ..LogQuery::default()
            },
        )?;
        let denied_logged = logged
            .iter()
            .filter(|e| e.outcome == Outcome::Denied)
            .count();
        let ok_logged = logged.iter().filter(|e| e.outcome == Outcome::Ok).count();
        w(
            &mut r,
            format!(
                "             emergency doctor: break-the-glass read with a reason: ok; without a reason: DENIED \
                 (access log: {ok_logged} ok, {denied_logged} denied entry)"
            ),
        );
        let n = POINT_READS.min(ds.keys.len());
        let stride = (ds.keys.len() / n).max(1);
        let t = Instant::now();
        for k in ds.keys.iter().step_by(stride).take(n) {
            let _: Value = vault.get(&nurse, k)?;
        }
        let secs = t.elapsed().as_secs_f64();
        w(
            &mut r,
            format!(
                "             point reads, all fields, each with its log entry: {n} in {secs:.2} s = {} reads/s",
                rate(n as u64, secs)
            ),
        );

        // 5. Key rotation.
        step("rotating the root key and the data keys");
        let t = Instant::now();
        let rewrapped = vault.rotate_root_key(&ops, new_key(), kdf, &mut |_| {})?;
        let root_secs = t.elapsed().as_secs_f64();
        let bar = progress::bar(records, Unit::Items("records"));
        let t = Instant::now();
        let rotated = vault.rotate_data_keys(&ops, &RotationScope::All, &mut |p| {
            bar.set_length(p.total);
            bar.set_position(p.done);
        });
        bar.finish_and_clear();
        let rotated = rotated?;
        let data_secs = t.elapsed().as_secs_f64();
        let again: Vec<(RecordKey, Value)> = vault.records_of(&nurse, first, None)?;
        let still_same = again.len() == whole.len()
            && whole
                .iter()
                .all(|(k, v)| again.iter().any(|(k2, v2)| k2 == k && v2 == v));
        w(
            &mut r,
            format!(
                "  rotation   root key: {rewrapped} subject keys rewrapped in {:.0} ms (new Argon2id included), no record touched",
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
            return Err(Failure::other("demo: a record changed across key rotation"));
        }

        // 6. Erasure (crypto-shredding) of one patient.
        step("erasing one patient");
        let gone = &ds.patients[3];
        let patient_rec = RecordKey::new(gone.as_str(), "Patient", gone.as_str());
        let db_before_erase = vault.stats()?.disk_bytes;
        let t = Instant::now();
        let erased = vault.erase_subject(&ops.clone().with_reason("GDPR art. 17 request"), gone)?;
        let erase_secs = t.elapsed().as_secs_f64();
        let after = vault.get::<Value>(&nurse, &patient_rec);
        let not_found = matches!(after, Err(Error::NotFound));
        w(
            &mut r,
            format!(
                "  erasure    patient #4: {erased} records and its keys destroyed in {erase_secs:.2} s; get afterwards: {}",
                if not_found {
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
        if !not_found {
            return Err(Failure::other("demo: an erased patient is still readable"));
        }

        // 7. Access-log verification and a checkpoint kept outside the vault.
        step("verifying the access log");
        let t = Instant::now();
        let entries = vault.verify(&dpo, None)?;
        let secs = t.elapsed().as_secs_f64();
        let cp = vault.checkpoint(&dpo)?;
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
        vault.sync()?;
        drop(vault);
        w(&mut r, size::explain(&vault_dir, ds.bytes)?);

        // 8. Attacks on copies.
        step("attacking copies of the vault");
        let old_key_refused = matches!(Vault::open(&vault_dir, key()), Err(Error::WrongKey));
        let pristine = self.root.join("copy-before-more-work");
        tamper::copy_dir(&vault_dir, &pristine)?;
        let mut attacks = vec![
            tamper::header_byte(&vault_dir, &self.root.join("copy-header"), new_key(), &dpo)?,
            tamper::stored_value(
                &vault_dir,
                &self.root.join("copy-record"),
                b'r',
                "one bit of a record ciphertext flipped",
                new_key(),
                &dpo,
            )?,
            tamper::log_frame_byte(
                &vault_dir,
                &self.root.join("copy-log"),
                "one bit of an access-log entry flipped",
                new_key(),
                &dpo,
            )?,
            tamper::raw_file_byte(
                &vault_dir,
                &self.root.join("copy-raw"),
                new_key(),
                &dpo,
                &cp,
            )?,
        ];
        {
            let vault = Vault::open(&vault_dir, new_key())?;
            let _: Value = vault.get(
                &nurse,
                &RecordKey::new(first.as_str(), "Patient", first.as_str()),
            )?;
            let later = vault.checkpoint(&dpo)?;
            drop(vault);
            attacks.push(tamper::rollback(&pristine, new_key(), &dpo, &later));
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
        }

        // 9. Plaintext scan of every vault file; the input files are the control.
        step("scanning every vault file for the patients' names and identifiers");
        let t = Instant::now();
        let in_vault = scan::scan(&vault_dir, &ds.needles)?;
        let secs = t.elapsed().as_secs_f64();
        let control = scan::scan(&input, &ds.needles)?;
        w(
            &mut r,
            format!(
                "  plaintext scan: {} hits for {} names and identifiers in {} vault files ({}, {:.2} s); \
                 control: {} of them found in the NDJSON input",
                in_vault.hits,
                ds.needles.len(),
                in_vault.files,
                crate::human::bytes(in_vault.bytes),
                secs,
                control.hits
            ),
        );

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
        let ok = caught == attacks.len()
            && in_vault.hits == 0
            && control.hits == ds.needles.len()
            && old_key_refused;
        if !ok {
            crate::out!("{r}")?;
            return Err(Failure::new(
                crate::exit::Code::Integrity,
                "demo: a check failed (see the report above)",
            ));
        }
        Ok(r)
    }
}
