//! Automated controls over the access log (CNIL 2021 recommendation on logging:
//! "contrôles automatisés"), with thresholds from the policy
//! ([`crate::policy::AlertThresholds`]). [`evaluate`] is a pure function of the entries;
//! `Vault::alerts` runs it over the vault's log.
//!
//! Rules (docs/POLICY.md "Alerts"):
//! * `too_many_patients`: an actor reads (read or export, outcome ok) more than
//!   `max_patients_per_window` distinct patients within `window_minutes`; once per
//!   crossing.
//! * `outside_hours`: a read, write, delete, export or erasure of a patient's data by a
//!   person outside `[hours_start_utc, hours_end_utc)` UTC (imports excluded).
//! * `no_care_relationship`: a care (TREAT) read of a patient by an actor who never
//!   wrote any of that patient's records before (first contact).
//! * `repeated_denials`: more than `max_denials_per_window` denied attempts by one
//!   actor within `window_minutes`; once per crossing.
//! * `emergency_access`: every break-the-glass (ETREAT) access.

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::Serialize;

use super::entry::{Action, LogEntry, Outcome, hex};
use crate::context::Purpose;
use crate::policy::AlertThresholds;

/// Which rule fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// More distinct patients read than the threshold within the window.
    TooManyPatients,
    /// Access outside the declared hours.
    OutsideHours,
    /// Care read without a prior care relationship (the actor never wrote the
    /// patient's records).
    NoCareRelationship,
    /// Denied attempts above the threshold within the window.
    RepeatedDenials,
    /// A break-the-glass access.
    EmergencyAccess,
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// The rule.
    pub kind: AlertKind,
    /// The log entry that triggered it.
    pub seq: u64,
    /// Its time, ms since the Unix epoch, UTC.
    pub time_ms: u64,
    /// The actor.
    pub actor: String,
    /// The patient, when one and not erased.
    pub subject: Option<String>,
    /// What, for people.
    pub detail: String,
}

fn alert(kind: AlertKind, e: &LogEntry, detail: String) -> Alert {
    Alert {
        kind,
        seq: e.seq,
        time_ms: e.time_ms,
        actor: e.actor.clone(),
        subject: e.target.as_ref().map(|t| t.subject.clone()),
        detail,
    }
}

/// Runs every rule over `entries` (log order).
pub fn evaluate(entries: &[LogEntry], th: &AlertThresholds) -> Vec<Alert> {
    let window = th.window_minutes.saturating_mul(60_000);
    let mut out = Vec::new();
    // Per actor: recent (time, patient pseudonym) reads, and the end of the last
    // crossing's window.
    let mut reads: BTreeMap<&str, VecDeque<(u64, String)>> = BTreeMap::new();
    let mut read_quiet_until: BTreeMap<&str, u64> = BTreeMap::new();
    let mut denials: BTreeMap<&str, VecDeque<u64>> = BTreeMap::new();
    let mut denial_quiet_until: BTreeMap<&str, u64> = BTreeMap::new();
    let mut cared: HashSet<(&str, String)> = HashSet::new();
    for e in entries {
        let pseudo = e.subject_pseudonym.map(|p| hex(p.as_bytes()));
        let actor = e.actor.as_str();
        let t = e.time_ms;
        let emergency = e.purpose_code.is_none() && e.purpose == Purpose::Emergency;
        if e.outcome == Outcome::Denied {
            let q = denials.entry(actor).or_default();
            q.push_back(t);
            while q.front().is_some_and(|&x| x + window < t) {
                q.pop_front();
            }
            if q.len() > th.max_denials_per_window
                && denial_quiet_until.get(actor).is_none_or(|&u| t > u)
            {
                out.push(alert(
                    AlertKind::RepeatedDenials,
                    e,
                    format!(
                        "{} denied attempts within {} min",
                        q.len(),
                        th.window_minutes
                    ),
                ));
                denial_quiet_until.insert(actor, t + window);
            }
            continue;
        }
        let Some(pseudo) = pseudo else { continue };
        if e.outcome != Outcome::Ok || e.action == Action::Review {
            continue;
        }
        if emergency {
            out.push(alert(
                AlertKind::EmergencyAccess,
                e,
                format!(
                    "break-the-glass {}: {}",
                    e.action.name(),
                    e.reason.as_deref().unwrap_or("")
                ),
            ));
        }
        let hour = ((t / 3_600_000) % 24) as u8;
        let inside = if th.hours_start_utc <= th.hours_end_utc {
            hour >= th.hours_start_utc && hour < th.hours_end_utc
        } else {
            hour >= th.hours_start_utc || hour < th.hours_end_utc
        };
        if !inside
            && matches!(
                e.action,
                Action::Read | Action::Write | Action::Delete | Action::Export | Action::Erase
            )
        {
            out.push(alert(
                AlertKind::OutsideHours,
                e,
                format!(
                    "{} at {:02}h UTC, outside {:02}h-{:02}h",
                    e.action.name(),
                    hour,
                    th.hours_start_utc,
                    th.hours_end_utc
                ),
            ));
        }
        match e.action {
            Action::Write => {
                cared.insert((actor, pseudo.clone()));
            }
            Action::Read
                if !emergency
                    && e.purpose_of_use() == "TREAT"
                    && !cared.contains(&(actor, pseudo.clone())) =>
            {
                out.push(alert(
                    AlertKind::NoCareRelationship,
                    e,
                    "care read by an actor who never wrote this patient's records".into(),
                ));
                // One alert per (actor, patient) pair.
                cared.insert((actor, pseudo.clone()));
            }
            _ => {}
        }
        if matches!(e.action, Action::Read | Action::Export) {
            let q = reads.entry(actor).or_default();
            q.push_back((t, pseudo));
            while q.front().is_some_and(|(x, _)| x + window < t) {
                q.pop_front();
            }
            let distinct: HashSet<&String> = q.iter().map(|(_, p)| p).collect();
            if distinct.len() > th.max_patients_per_window
                && read_quiet_until.get(actor).is_none_or(|&u| t > u)
            {
                out.push(alert(
                    AlertKind::TooManyPatients,
                    e,
                    format!(
                        "{} distinct patients within {} min",
                        distinct.len(),
                        th.window_minutes
                    ),
                ));
                read_quiet_until.insert(actor, t + window);
            }
        }
    }
    out
}
