//! Access-log entries as FHIR R4 AuditEvent resources following the IHE Basic Audit Log
//! Patterns (BALP) profiles, for an audit record repository or a SIEM
//! (docs/AUDIT_EVENTS.md).
//!
//! Mapping of entries that name a subject (the others are not patient accesses and are
//! not exported in this form):
//!
//! | entry | BALP profile | type | subtype | action |
//! |---|---|---|---|---|
//! | read of one record | `IHE.BasicAudit.PatientRead` | `rest` | `read` | R |
//! | read of a subject's records, search | `IHE.BasicAudit.PatientQuery` | `rest` | `search` | E |
//! | first write or import of a record | `IHE.BasicAudit.PatientCreate` | `rest` | `create` | C |
//! | later write or import of it | `IHE.BasicAudit.PatientUpdate` | `rest` | `update` | U |
//! | delete, erase | `IHE.BasicAudit.PatientDelete` | `rest` | `delete` | D |
//! | export (disclosure), access report | `IHE.BasicAudit.PrivacyDisclosure.Source` | DCM `110106` Export | ISO 21089 `disclose` | R |
//! | review of a break-the-glass access | (none: `rest` `read`, no profile) | | | |
//!
//! A denied or failed attempt is exported with the same type and subtype, outcome `4`
//! (denied) or `8` (failed), and **no** profile: BALP's profiles describe successful
//! operations. What is included: the entry's sequence number (in `id`), time, actor id
//! and roles, PurposeOfUse code and break-the-glass reason, the subject id (or, for an
//! erased subject, only its keyed pseudonym), collection, record id and field names, the
//! policy version. What is not: any record content, network addresses (medvault is a
//! library and does not see them), the application's user directory.

use serde_json::{Value, json};

use super::entry::{Action, LogEntry, Outcome, hex};

/// Canonical URL prefix of the BALP profiles.
pub const BALP: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";
/// Identifier system of subject ids (the application's own patient ids).
pub const SUBJECT_SYSTEM: &str = "urn:medvault:subject";
/// Identifier system of erased subjects' keyed pseudonyms.
pub const PSEUDONYM_SYSTEM: &str = "urn:medvault:subject-pseudonym";
/// Identifier system of actor ids.
pub const ACTOR_SYSTEM: &str = "urn:medvault:actor";
/// Code system of the roles of an access policy.
pub const ROLE_SYSTEM: &str = "urn:medvault:role";

/// What an entry maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interaction {
    /// BALP PatientRead.
    Read,
    /// BALP PatientQuery.
    Query,
    /// BALP PatientCreate.
    Create,
    /// BALP PatientUpdate.
    Update,
    /// BALP PatientDelete.
    Delete,
    /// BALP PrivacyDisclosure (at the source).
    Disclosure,
    /// Not a BALP pattern (e.g. a review).
    Other,
}

impl Interaction {
    /// The BALP profile of a successful entry.
    pub fn profile(self) -> Option<String> {
        let name = match self {
            Interaction::Read => "IHE.BasicAudit.PatientRead",
            Interaction::Query => "IHE.BasicAudit.PatientQuery",
            Interaction::Create => "IHE.BasicAudit.PatientCreate",
            Interaction::Update => "IHE.BasicAudit.PatientUpdate",
            Interaction::Delete => "IHE.BasicAudit.PatientDelete",
            Interaction::Disclosure => "IHE.BasicAudit.PrivacyDisclosure.Source",
            Interaction::Other => return None,
        };
        Some(format!("{BALP}{name}"))
    }

    /// The interaction of `e`; `created` says whether a write creates its record.
    pub fn of(e: &LogEntry, created: bool) -> Interaction {
        let one_record = e.target.as_ref().is_some_and(|t| t.record_id.is_some());
        match e.action {
            Action::Read if one_record => Interaction::Read,
            Action::Read | Action::Search => Interaction::Query,
            Action::Write | Action::Import if created => Interaction::Create,
            Action::Write | Action::Import => Interaction::Update,
            Action::Delete | Action::Erase => Interaction::Delete,
            Action::Export => Interaction::Disclosure,
            _ => Interaction::Other,
        }
    }
}

/// RFC 3339 UTC time (`YYYY-MM-DDThh:mm:ss.mmmZ`) of milliseconds since the Unix epoch,
/// by the proleptic Gregorian civil-from-days algorithm (H. Hinnant, "chrono-Compatible
/// Low-Level Date Algorithms").
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms % 1000
    )
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// The AuditEvent of entry `e` of vault `vault_id`. `created`: whether a write created
/// its record (the caller tracks it over the log; see [`Interaction::of`]).
pub fn audit_event(e: &LogEntry, vault_id: &[u8; 16], created: bool) -> Value {
    let it = Interaction::of(e, created);
    let vault = hex(vault_id);
    let (type_, subtype, action) = match it {
        Interaction::Disclosure => (
            coding(
                "http://dicom.nema.org/resources/ontology/DCM",
                "110106",
                "Export",
            ),
            vec![
                coding(
                    "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle",
                    "disclose",
                    "Disclose Record Lifecycle Event",
                ),
                coding("http://hl7.org/fhir/restful-interaction", "read", "read"),
            ],
            "R",
        ),
        other => {
            let (code, action) = match other {
                Interaction::Query => ("search", "E"),
                Interaction::Create => ("create", "C"),
                Interaction::Update => ("update", "U"),
                Interaction::Delete => ("delete", "D"),
                _ => ("read", "R"),
            };
            (
                coding(
                    "http://terminology.hl7.org/CodeSystem/audit-event-type",
                    "rest",
                    "Restful Operation",
                ),
                vec![coding(
                    "http://hl7.org/fhir/restful-interaction",
                    code,
                    code,
                )],
                action,
            )
        }
    };
    let (outcome, outcome_desc) = match &e.outcome {
        Outcome::Ok => ("0", None),
        Outcome::Denied => ("4", Some(format!("denied: {}", e.note))),
        Outcome::Failed(k) => ("8", Some(format!("failed: {k}"))),
    };
    let mut purpose = json!({"coding": [{
        "system": crate::policy::PURPOSE_OF_USE_SYSTEM,
        "code": e.purpose_of_use(),
    }]});
    if let Some(r) = &e.reason {
        purpose["text"] = Value::String(r.clone());
    }
    let roles: Vec<Value> = e
        .roles
        .iter()
        .map(|r| json!({"coding": [{"system": ROLE_SYSTEM, "code": r}]}))
        .collect();
    let mut user = json!({
        "type": {"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "humanuser",
            "human user",
        )]},
        "who": {"identifier": {"system": ACTOR_SYSTEM, "value": e.actor}},
        "requestor": true,
        "purposeOfUse": [purpose.clone()],
    });
    if !roles.is_empty() {
        user["role"] = Value::Array(roles);
    }
    let server = json!({
        "type": {"coding": [coding(
            "http://dicom.nema.org/resources/ontology/DCM", "110152", "Destination Role ID",
        )]},
        "who": {"display": format!("medvault vault {vault}")},
        "requestor": false,
    });
    let client = json!({
        "type": {"coding": [coding(
            "http://dicom.nema.org/resources/ontology/DCM", "110153", "Source Role ID",
        )]},
        "who": {"display": "application embedding medvault"},
        "requestor": false,
    });
    let patient_id = match (&e.target, &e.subject_pseudonym) {
        (Some(t), _) => json!({"system": SUBJECT_SYSTEM, "value": t.subject}),
        (None, Some(p)) => json!({"system": PSEUDONYM_SYSTEM, "value": hex(p.as_bytes())}),
        (None, None) => json!({"system": PSEUDONYM_SYSTEM, "value": "unknown"}),
    };
    let mut entities = vec![json!({
        "what": {"identifier": patient_id},
        "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person"),
        "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient"),
    })];
    if let Some(t) = &e.target {
        let what = match (&t.collection, &t.record_id) {
            (Some(c), Some(id)) => json!({"reference": format!("{c}/{id}")}),
            (Some(c), None) => json!({"display": format!("{c} records of the patient")}),
            _ => json!({"display": "records of the patient"}),
        };
        let mut data = json!({
            "what": what,
            "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"),
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "4", "Domain Resource"),
        });
        if !t.fields.is_empty() {
            data["detail"] = json!([{"type": "fields", "valueString": t.fields.join(",")}]);
        }
        if it == Interaction::Query {
            data["role"] = coding(
                "http://terminology.hl7.org/CodeSystem/object-role",
                "24",
                "Query",
            );
            data["query"] = Value::String(base64_std(
                format!(
                    "{}?patient={}",
                    t.collection.as_deref().unwrap_or("*"),
                    t.subject
                )
                .as_bytes(),
            ));
        }
        entities.push(data);
    } else if it == Interaction::Query {
        entities.push(json!({
            "what": {"display": "records of the patient"},
            "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object"),
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "24", "Query"),
            "query": base64_std(b"*"),
        }));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": format!("{vault}-{}", e.seq),
        "type": type_,
        "subtype": subtype,
        "action": action,
        "recorded": rfc3339_ms(e.time_ms),
        "outcome": outcome,
        "purposeOfEvent": [purpose],
        "agent": [user, client, server],
        "source": {
            "observer": {"display": format!("medvault vault {vault}")},
            "type": [coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server",
            )],
        },
        "entity": entities,
    });
    if let Some(d) = outcome_desc {
        ev["outcomeDesc"] = Value::String(d);
    }
    if e.outcome == Outcome::Ok
        && let Some(p) = it.profile()
    {
        ev["meta"] = json!({"profile": [p]});
    }
    ev
}

/// Standard base64 with padding (RFC 4648 section 4), for `entity.query`.
fn base64_std(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        // Published instants: the Unix epoch, 2000-03-01 (leap-year boundary), and
        // 2024-08-06T18:12:57Z = 1722967977 s (date -u -d @1722967977).
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_722_967_977_123), "2024-08-06T18:12:57.123Z");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        // RFC 4648 section 10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_std(i.as_bytes()), o);
        }
    }
}
