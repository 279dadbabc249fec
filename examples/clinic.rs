//! A small clinic application embedding medvault: the front desk registers a patient, a
//! doctor records a visit, billing sees only what it needs, the patient asks for a copy
//! of their data and then for erasure, and the data-protection officer reviews who
//! accessed the record. Run with `cargo run --release --example clinic`.
//!
//! The root key comes from the clinic's key-management service; here a random one stands
//! in for it. Every call names who acts and why, and leaves an access-log entry.

use medvault::{AccessContext, KeySource, LogQuery, Purpose, RecordKey, Vault};
use medvault_fhir::{self as fhir, ImportOptions, ImportSource, synth};
use serde::{Deserialize, Serialize};

/// The clinic's own record type for a visit (not FHIR: any serde type is a record).
#[derive(Serialize, Deserialize, Debug)]
struct Visit {
    date: String,
    reason: String,
    notes: String,
    billing_code: String,
    fee_cents: u64,
}

/// What billing may see of a visit.
#[derive(Deserialize, Debug)]
struct BillingView {
    billing_code: String,
    fee_cents: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;

    // A raw 256-bit root key as a KMS would hand it over (no passphrase, no KDF).
    let mut kms_key = zeroize::Zeroizing::new([0u8; 32]);
    rand::Rng::fill(&mut rand::thread_rng(), &mut kms_key[..]);
    let vault = Vault::create(
        dir.path().join("clinic-vault"),
        KeySource::raw(*kms_key),
        medvault::KdfParams::default(),
    )?;

    // Existing records arrive as a FHIR export from the previous system: imported through
    // the same path as `medvault import`.
    let export_dir = dir.path().join("previous-system-export");
    std::fs::create_dir_all(&export_dir)?;
    let mut ndjson = String::new();
    let patients: Vec<_> = synth::generate(3, 7).collect();
    for p in &patients {
        for r in &p.resources {
            ndjson.push_str(&serde_json::to_string(r)?);
            ndjson.push('\n');
        }
    }
    std::fs::write(export_dir.join("export.ndjson"), ndjson)?;
    let migration = AccessContext::new("it.migration", Purpose::Maintenance);
    let report = fhir::import(
        &vault,
        &migration,
        ImportSource::new(&[export_dir])?,
        ImportOptions::default(),
        &mut |_| {},
    )?;
    println!(
        "imported {} FHIR resources: {:?}",
        report.records, report.per_type
    );

    // A doctor records today's visit of the first patient.
    let patient = patients[0].id.as_str();
    let doctor = AccessContext::new("dr.martin", Purpose::Care);
    let visit_key = RecordKey::new(patient, "Visit", "2024-08-06-1");
    vault.put(
        &doctor,
        &visit_key,
        &Visit {
            date: "2024-08-06".into(),
            reason: "follow-up, blood pressure".into(),
            notes: "BP 128/82, continue lisinopril 10 mg".into(),
            billing_code: "99213".into(),
            fee_cents: 9_500,
        },
    )?;

    // Billing decrypts only the two fields it needs; the notes stay sealed.
    let billing = AccessContext::new("billing.anna", Purpose::Billing);
    let bill: BillingView =
        vault.get_fields(&billing, &visit_key, &["billing_code", "fee_cents"])?;
    println!(
        "billing sees: code {} fee {} cents",
        bill.billing_code, bill.fee_cents
    );

    // The patient asks for a copy of everything held about them (GDPR art. 15).
    let request = AccessContext::new("frontdesk.lee", Purpose::PatientRequest)
        .with_reason("patient's art. 15 access request, ticket 4711");
    let mut copy = Vec::new();
    let exported = fhir::export_ndjson(
        &vault,
        &request,
        &[patient.to_owned()],
        &mut copy,
        &mut |_| {},
    )?;
    println!(
        "copy for the patient: {} records, {} bytes of NDJSON",
        exported.records,
        copy.len()
    );

    // The data-protection officer reviews who accessed this patient and why.
    let dpo = AccessContext::new("dpo.kim", Purpose::Administration);
    let trail = vault.audit_query(
        &dpo,
        &LogQuery {
            subject: Some(patient.to_owned()),
            ..LogQuery::default()
        },
    )?;
    println!("access log for the patient: {} entries", trail.len());
    for e in trail.iter().filter(|e| e.actor != "it.migration") {
        println!(
            "  #{} {} ({}) {}",
            e.seq,
            e.actor,
            e.purpose,
            e.action.name()
        );
    }

    // Then asks for erasure (GDPR art. 17): the subject's keys are destroyed.
    let erased = vault.erase_subject(&request, patient)?;
    let after = vault.get::<Visit>(&doctor, &visit_key);
    println!(
        "erased {erased} records; reading the visit now: {}",
        match after {
            Err(medvault::Error::NotFound) => "not found".to_owned(),
            other => format!("{:?}", other.map(|_| "still readable")),
        }
    );

    // The log is still complete and verifiable; the checkpoint goes to off-site storage.
    let entries = vault.verify(&dpo, None)?;
    let checkpoint = vault.checkpoint(&dpo)?;
    println!(
        "access log verified: {entries} entries; checkpoint {}...",
        &checkpoint.to_text()[..16]
    );
    Ok(())
}
