//! Automated controls (issue 15 acceptance 4): one test per alert rule on a generated
//! log. The generator below builds access-log entries and knows which of them must
//! raise which alert (the oracle); `medvault::audit::alerts::evaluate` must find exactly
//! those. A last test runs the rules through a vault with its policy's thresholds.

// Tests: a failure should abort the test with the panic message.
#![allow(clippy::unwrap_used)]

mod common;

use common::{options, raw_key};
use medvault::audit::alerts::{AlertKind, evaluate};
use medvault::policy::AlertThresholds;
use medvault::storage::MemoryStorage;
use medvault::{
    AccessContext, Action, LogEntry, Outcome, Policy, Purpose, RecordKey, Target, Vault,
    VaultOptions,
};
use serde_json::{Value, json};

const H: u64 = 3_600_000;
const MIN: u64 = 60_000;
/// 2024-08-06T00:00:00Z.
const DAY: u64 = 1_722_902_400_000;

/// A generated log: entries in time order, sequence numbers assigned.
#[derive(Default)]
struct Gen {
    entries: Vec<LogEntry>,
}

impl Gen {
    fn push(
        &mut self,
        t: u64,
        actor: &str,
        purpose: Purpose,
        action: Action,
        outcome: Outcome,
        patient: Option<&str>,
    ) -> u64 {
        let seq = self.entries.len() as u64;
        let mut tag = [0u8; 16];
        if let Some(p) = patient {
            tag[..p.len().min(16)].copy_from_slice(&p.as_bytes()[..p.len().min(16)]);
        }
        self.entries.push(LogEntry {
            seq,
            time_ms: t,
            actor: actor.to_owned(),
            purpose,
            reason: (purpose == Purpose::Emergency).then(|| "emergency".to_owned()),
            action,
            outcome,
            subject_pseudonym: patient.map(|_| medvault::SubjectTag::from(tag)),
            target: patient.map(|p| Target {
                subject: p.to_owned(),
                collection: Some("Patient".into()),
                record_id: Some(p.to_owned()),
                fields: vec![],
            }),
            note: String::new(),
            roles: vec!["care".into()],
            purpose_code: None,
            policy_version: 1,
        });
        seq
    }

    fn read(&mut self, t: u64, actor: &str, patient: &str) -> u64 {
        self.push(
            t,
            actor,
            Purpose::Care,
            Action::Read,
            Outcome::Ok,
            Some(patient),
        )
    }
    fn write(&mut self, t: u64, actor: &str, patient: &str) -> u64 {
        self.push(
            t,
            actor,
            Purpose::Care,
            Action::Write,
            Outcome::Ok,
            Some(patient),
        )
    }
}

fn th() -> AlertThresholds {
    AlertThresholds {
        max_patients_per_window: 3,
        window_minutes: 60,
        hours_start_utc: 6,
        hours_end_utc: 20,
        max_denials_per_window: 2,
    }
}

fn fired(g: &Gen, kind: AlertKind) -> Vec<u64> {
    evaluate(&g.entries, &th())
        .into_iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.seq)
        .collect()
}

#[test]
fn too_many_distinct_patients_in_a_window() {
    let mut g = Gen::default();
    let t0 = DAY + 10 * H;
    // dr-a writes then reads 3 patients (at the threshold): nothing.
    for p in ["p1", "p2", "p3"] {
        g.write(t0, "dr-a", p);
        g.read(t0 + MIN, "dr-a", p);
    }
    // Re-reading one of them stays at 3.
    g.read(t0 + 2 * MIN, "dr-a", "p1");
    // The 4th distinct patient within the hour crosses it.
    g.write(t0 + 3 * MIN, "dr-a", "p4");
    let cross = g.read(t0 + 4 * MIN, "dr-a", "p4");
    // A 5th in the same window: same crossing, no second alert.
    g.write(t0 + 5 * MIN, "dr-a", "p5");
    g.read(t0 + 6 * MIN, "dr-a", "p5");
    // Another actor reading 3: nothing.
    for p in ["p1", "p2", "p3"] {
        g.write(t0, "dr-b", p);
        g.read(t0 + 7 * MIN, "dr-b", p);
    }
    assert_eq!(fired(&g, AlertKind::TooManyPatients), vec![cross]);
}

#[test]
fn access_outside_declared_hours() {
    let mut g = Gen::default();
    g.write(DAY + 9 * H, "dr-a", "p1");
    let inside = g.read(DAY + 19 * H + 59 * MIN, "dr-a", "p1");
    let late = g.read(DAY + 20 * H, "dr-a", "p1");
    let night = g.read(DAY + 3 * H, "dr-a", "p1");
    // Imports at night are the system's batch work: no alert.
    g.push(
        DAY + 2 * H,
        "etl",
        Purpose::Maintenance,
        Action::Import,
        Outcome::Ok,
        Some("p2"),
    );
    let fired = fired(&g, AlertKind::OutsideHours);
    assert_eq!(fired, vec![late, night]);
    assert!(!fired.contains(&inside));
}

#[test]
fn access_without_a_prior_care_relationship() {
    let mut g = Gen::default();
    let t = DAY + 10 * H;
    g.write(t, "dr-a", "p1");
    g.read(t + MIN, "dr-a", "p1"); // dr-a wrote p1's record before: fine
    let stranger = g.read(t + 2 * MIN, "dr-b", "p1"); // dr-b never did
    g.read(t + 3 * MIN, "dr-b", "p1"); // once per pair
    // Billing reads are not care reads: not this rule's concern.
    g.push(
        t + 4 * MIN,
        "clerk",
        Purpose::Billing,
        Action::Read,
        Outcome::Ok,
        Some("p1"),
    );
    assert_eq!(fired(&g, AlertKind::NoCareRelationship), vec![stranger]);
}

#[test]
fn repeated_denials() {
    let mut g = Gen::default();
    let t = DAY + 10 * H;
    let deny = |g: &mut Gen, t: u64, who: &str| {
        g.push(
            t,
            who,
            Purpose::Research,
            Action::Read,
            Outcome::Denied,
            Some("p1"),
        )
    };
    deny(&mut g, t, "r-1");
    deny(&mut g, t + MIN, "r-1");
    let third = deny(&mut g, t + 2 * MIN, "r-1");
    deny(&mut g, t + 3 * MIN, "r-1"); // same crossing
    // Two denials an hour apart each: never more than 2 in a window.
    deny(&mut g, t, "r-2");
    deny(&mut g, t + 61 * MIN, "r-2");
    deny(&mut g, t + 122 * MIN, "r-2");
    assert_eq!(fired(&g, AlertKind::RepeatedDenials), vec![third]);
}

#[test]
fn every_emergency_access() {
    let mut g = Gen::default();
    let t = DAY + 10 * H;
    g.write(t, "dr-a", "p1");
    let e1 = g.push(
        t + MIN,
        "dr-er",
        Purpose::Emergency,
        Action::Read,
        Outcome::Ok,
        Some("p1"),
    );
    let e2 = g.push(
        t + 2 * MIN,
        "dr-er",
        Purpose::Emergency,
        Action::Read,
        Outcome::Ok,
        Some("p2"),
    );
    // A refused break-the-glass attempt is a denial, not an access.
    g.push(
        t + 3 * MIN,
        "dr-er",
        Purpose::Emergency,
        Action::Read,
        Outcome::Denied,
        Some("p3"),
    );
    assert_eq!(fired(&g, AlertKind::EmergencyAccess), vec![e1, e2]);
}

#[test]
fn the_vault_runs_the_rules_with_the_policys_thresholds() {
    let mut policy = Policy::default_clinic();
    // Whole-day hours: the test must not depend on the wall clock.
    policy.alerts.hours_start_utc = 0;
    policy.alerts.hours_end_utc = 24;
    policy.alerts.max_denials_per_window = 1;
    let admin = AccessContext::new("admin", Purpose::Administration).with_role("administration");
    let v = Vault::create_in(
        Box::new(MemoryStorage::new()),
        raw_key(),
        VaultOptions {
            policy: Some(policy),
            opener: admin.clone(),
            ..options()
        },
    )
    .unwrap();
    let dr_a = AccessContext::new("dr-a", Purpose::Care).with_role("care");
    let dr_b = AccessContext::new("dr-b", Purpose::Care).with_role("care");
    let k = RecordKey::new("p1", "Patient", "p1");
    v.put(&dr_a, &k, &json!({"id": "p1"})).unwrap();
    let _: Value = v.get(&dr_a, &k).unwrap();
    let _: Value = v.get(&dr_b, &k).unwrap();
    let r = AccessContext::new("r", Purpose::Research).with_role("research");
    assert!(v.get::<Value>(&r, &k).is_err());
    assert!(v.get::<Value>(&r, &k).is_err());
    let er = AccessContext::new("dr-er", Purpose::Emergency)
        .with_role("care")
        .with_reason("code blue");
    let _: Value = v.get(&er, &k).unwrap();
    let alerts = v.alerts(&admin).unwrap();
    let kinds: Vec<(AlertKind, &str)> = alerts.iter().map(|a| (a.kind, a.actor.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (AlertKind::NoCareRelationship, "dr-b"),
            (AlertKind::RepeatedDenials, "r"),
            (AlertKind::EmergencyAccess, "dr-er"),
        ]
    );
    assert_eq!(alerts[2].subject.as_deref(), Some("p1"));
    // Care may not run the controls.
    assert!(v.alerts(&dr_a).is_err());
}
