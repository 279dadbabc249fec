//! The patient's access report (GDPR art. 15, French public health code L.1111-19):
//! every access to one subject's records, as text, JSON and a FHIR Bundle of AuditEvent
//! resources; and the break-the-glass review queue. Built by `Vault::access_report` and
//! `Vault::review_queue` from the access log.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Value, json};

use super::entry::{Action, LogEntry, Outcome};
use super::fhir_audit_event::{audit_event, rfc3339_ms};

/// One access in a patient's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessRecord {
    /// The log entry's sequence number.
    pub seq: u64,
    /// When, ms since the Unix epoch, UTC.
    pub time_ms: u64,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// Who (the actor id the application gave).
    pub actor: String,
    /// In which roles.
    pub roles: Vec<String>,
    /// Why: the HL7 v3 PurposeOfUse code.
    pub purpose: String,
    /// The free-text reason (break-the-glass).
    pub reason: Option<String>,
    /// What was done.
    pub action: Action,
    /// What kind of data: the collection (FHIR resourceType), `None`: all the patient's
    /// records.
    pub collection: Option<String>,
    /// The record id, when one record.
    pub record_id: Option<String>,
    /// The fields read or written (empty: none or all, per the action).
    pub fields: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether the data left the vault (an export: a disclosure).
    pub disclosure: bool,
}

/// A patient's access report.
#[derive(Clone, Debug, Serialize)]
pub struct AccessReport {
    /// The subject (patient) id.
    pub subject: String,
    /// When the report was made, RFC 3339 UTC.
    pub generated: String,
    /// Every access, in log order.
    pub accesses: Vec<AccessRecord>,
    #[serde(skip)]
    pub(crate) entries: Vec<LogEntry>,
    #[serde(skip)]
    pub(crate) created: Vec<bool>,
    #[serde(skip)]
    pub(crate) vault_id: [u8; 16],
}

/// Whether each entry's write created its record (no earlier write since the last
/// delete), over entries in log order.
pub(crate) fn creations(entries: &[LogEntry]) -> Vec<bool> {
    let mut live: HashSet<(String, String, String)> = HashSet::new();
    entries
        .iter()
        .map(|e| {
            let Some(t) = &e.target else { return false };
            let (Some(c), Some(id)) = (&t.collection, &t.record_id) else {
                return false;
            };
            let k = (t.subject.clone(), c.clone(), id.clone());
            match (e.action, &e.outcome) {
                (Action::Write | Action::Import, Outcome::Ok) => live.insert(k),
                (Action::Delete, Outcome::Ok) => {
                    live.remove(&k);
                    false
                }
                _ => false,
            }
        })
        .collect()
}

/// Whether `e` is an access to a patient's data (what the report lists): a read,
/// write, import, delete, erasure, export or search naming the subject, or a review.
pub(crate) fn is_access(e: &LogEntry) -> bool {
    e.subject_pseudonym.is_some()
        && matches!(
            e.action,
            Action::Read
                | Action::Write
                | Action::Import
                | Action::Delete
                | Action::Erase
                | Action::Export
                | Action::Search
        )
}

impl AccessReport {
    pub(crate) fn build(
        subject: &str,
        vault_id: [u8; 16],
        now_ms: u64,
        all: Vec<LogEntry>,
    ) -> AccessReport {
        let created_all = creations(&all);
        let mut entries = Vec::new();
        let mut created = Vec::new();
        for (e, c) in all.into_iter().zip(created_all) {
            if is_access(&e) {
                entries.push(e);
                created.push(c);
            }
        }
        let accesses = entries
            .iter()
            .map(|e| {
                let t = e.target.as_ref();
                AccessRecord {
                    seq: e.seq,
                    time_ms: e.time_ms,
                    time: rfc3339_ms(e.time_ms),
                    actor: e.actor.clone(),
                    roles: e.roles.clone(),
                    purpose: e.purpose_of_use().to_owned(),
                    reason: e.reason.clone(),
                    action: e.action,
                    collection: t.and_then(|t| t.collection.clone()),
                    record_id: t.and_then(|t| t.record_id.clone()),
                    fields: t.map(|t| t.fields.clone()).unwrap_or_default(),
                    outcome: e.outcome.clone(),
                    disclosure: e.action == Action::Export,
                }
            })
            .collect();
        AccessReport {
            subject: subject.to_owned(),
            generated: rfc3339_ms(now_ms),
            accesses,
            entries,
            created,
            vault_id,
        }
    }

    /// Readable text: a header and one line per access (date, actor, roles, purpose,
    /// action, data, outcome). Control characters of caller-given text are escaped.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Access report for patient {} (generated {}): {} accesses",
            esc(&self.subject),
            self.generated,
            self.accesses.len()
        );
        for a in &self.accesses {
            let data = match (&a.collection, &a.record_id) {
                (Some(c), Some(id)) => format!("{}/{}", esc(c), esc(id)),
                (Some(c), None) => format!("all {} records", esc(c)),
                _ => "all records".to_owned(),
            };
            let fields = if a.fields.is_empty() {
                String::new()
            } else {
                format!(" [{}]", esc(&a.fields.join(",")))
            };
            let outcome = match &a.outcome {
                Outcome::Ok => "ok".to_owned(),
                Outcome::Denied => "DENIED".to_owned(),
                Outcome::Failed(k) => format!("failed:{k}"),
            };
            let _ = write!(
                s,
                "{}  {}  roles={}  purpose={}  {}{}  {}{}  {}",
                a.time,
                esc(&a.actor),
                esc(&a.roles.join(",")),
                esc(&a.purpose),
                a.action.name(),
                if a.disclosure { " (disclosure)" } else { "" },
                data,
                fields,
                outcome
            );
            if let Some(r) = &a.reason {
                let _ = write!(s, "  reason={:?}", r);
            }
            s.push('\n');
        }
        s
    }

    /// JSON: `{subject, generated, accesses: [AccessRecord...]}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A FHIR R4 Bundle (type `collection`) of one AuditEvent per access
    /// (`crate::audit::fhir_audit_event`).
    pub fn to_fhir_bundle(&self) -> Value {
        let entry: Vec<Value> = self
            .entries
            .iter()
            .zip(&self.created)
            .map(|(e, c)| json!({"resource": audit_event(e, &self.vault_id, *c)}))
            .collect();
        json!({
            "resourceType": "Bundle",
            "type": "collection",
            "timestamp": self.generated,
            "total": entry.len(),
            "entry": entry,
        })
    }
}

fn esc(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The verdict of a break-the-glass review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The emergency access was justified.
    Justified,
    /// It was not: a matter for the data-protection officer.
    Unjustified,
}

impl Verdict {
    /// `justified` / `unjustified`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Justified => "justified",
            Verdict::Unjustified => "unjustified",
        }
    }
}

impl std::str::FromStr for Verdict {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Verdict> {
        match s.trim().to_ascii_lowercase().as_str() {
            "justified" => Ok(Verdict::Justified),
            "unjustified" => Ok(Verdict::Unjustified),
            _ => Err(crate::Error::invalid(
                crate::InputKind::Policy,
                "verdict is justified or unjustified",
            )),
        }
    }
}

/// A pending break-the-glass access.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EmergencyAccess {
    /// The entry's sequence number (what a verdict names).
    pub seq: u64,
    /// When, ms since the Unix epoch, UTC.
    pub time_ms: u64,
    /// Who.
    pub actor: String,
    /// In which roles.
    pub roles: Vec<String>,
    /// Whose record (`None` when the subject has since been erased).
    pub subject: Option<String>,
    /// The stated reason.
    pub reason: Option<String>,
    /// What was done.
    pub action: Action,
    /// What was read or written: `collection/record_id [fields]`.
    pub what: String,
    /// Unreviewed for longer than the policy's `review_delay_hours`.
    pub overdue: bool,
}

/// The prefix of a review entry's note; the reviewed sequence number follows.
pub(crate) const REVIEW_NOTE: &str = "review of #";

/// The sequence number a review entry's note names.
pub(crate) fn reviewed_seq(e: &LogEntry) -> Option<u64> {
    if e.action != Action::Review {
        return None;
    }
    let rest = e.note.strip_prefix(REVIEW_NOTE)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Whether `e` is a break-the-glass access that needs review.
pub(crate) fn is_emergency_access(e: &LogEntry) -> bool {
    e.purpose_code.is_none()
        && e.purpose == crate::Purpose::Emergency
        && e.outcome == Outcome::Ok
        && e.subject_pseudonym.is_some()
        && e.action != Action::Review
}

/// The pending emergency accesses of `entries` (log order).
pub(crate) fn pending(entries: &[LogEntry], now_ms: u64, delay_ms: u64) -> Vec<EmergencyAccess> {
    let reviewed: HashSet<u64> = entries.iter().filter_map(reviewed_seq).collect();
    entries
        .iter()
        .filter(|e| is_emergency_access(e) && !reviewed.contains(&e.seq))
        .map(|e| {
            let t = e.target.as_ref();
            let mut what = match t {
                Some(t) => match (&t.collection, &t.record_id) {
                    (Some(c), Some(id)) => format!("{c}/{id}"),
                    (Some(c), None) => format!("all {c} records"),
                    _ => "all records".to_owned(),
                },
                None => "(erased subject)".to_owned(),
            };
            if let Some(t) = t
                && !t.fields.is_empty()
            {
                what.push_str(&format!(" [{}]", t.fields.join(",")));
            }
            EmergencyAccess {
                seq: e.seq,
                time_ms: e.time_ms,
                actor: e.actor.clone(),
                roles: e.roles.clone(),
                subject: t.map(|t| t.subject.clone()),
                reason: e.reason.clone(),
                action: e.action,
                what,
                overdue: now_ms.saturating_sub(e.time_ms) > delay_ms,
            }
        })
        .collect()
}
