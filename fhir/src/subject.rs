//! The subject (patient compartment) a resource is filed under: docs/FHIR.md section 4.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::scan::{Facts, RefFacts, SUBJECT_FIELDS};

/// Subject for resources that belong to no patient (Organization, Practitioner,
/// Location, ...).
///
/// Contains `':'`, which a FHIR id (`[A-Za-z0-9\-\.]{1,64}`, FHIR R4 "id") can never
/// contain, so it cannot collide with a Patient id.
pub const SHARED_SUBJECT: &str = "urn:medvault:shared";

/// Prefix of the pseudonymous placeholder subjects for a patient known only by an
/// identifier or an unresolvable reference (docs/FHIR.md section 4).
pub const PLACEHOLDER_PREFIX: &str = "urn:medvault:patient:";

/// Prefix of the subject of a resource whose patient is a contained Patient without an
/// identifier: the resource is its own compartment.
pub const CONTAINED_PREFIX: &str = "urn:medvault:contained:";

/// FHIR R4 "id": `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Resource type names are `[A-Z][A-Za-z]{0,63}` (FHIR R4 "Resource"); enforced because
/// the type becomes a storage collection name.
pub fn is_valid_resource_type(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.as_bytes()[0].is_ascii_uppercase()
        && t.bytes().all(|b| b.is_ascii_alphabetic())
}

/// `urn:medvault:patient:<32 hex>` over `kind \0 text`.
pub fn placeholder(kind: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    let d = h.finalize();
    let mut s = String::with_capacity(PLACEHOLDER_PREFIX.len() + 32);
    s.push_str(PLACEHOLDER_PREFIX);
    for b in &d[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What a Bundle's `fullUrl` names, for resolving `urn:` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrnTarget {
    /// A Patient entry with this record id.
    Patient(String),
    /// An entry of another type.
    Other,
}

/// The reference-resolution context of one Bundle (and its enclosing Bundles).
#[derive(Debug, Default)]
pub struct BundleCtx<'p> {
    /// `urn:` fullUrls of the entries.
    pub urns: HashMap<String, UrnTarget>,
    /// `Patient?<query>` of the Patient entries created or updated conditionally
    /// (`request.ifNoneExist`, `request.url`) -> their record id.
    pub conditional: HashMap<String, String>,
    /// The enclosing Bundle, for a nested one.
    pub parent: Option<&'p BundleCtx<'p>>,
    /// Number of enclosing Bundles (0 at the top).
    pub depth: usize,
}

impl BundleCtx<'_> {
    fn urn(&self, u: &str) -> Option<&UrnTarget> {
        self.urns
            .get(u)
            .or_else(|| self.parent.and_then(|p| p.urn(u)))
    }

    fn conditional(&self, q: &str) -> Option<&str> {
        self.conditional
            .get(q)
            .map(String::as_str)
            .or_else(|| self.parent.and_then(|p| p.conditional(q)))
    }
}

enum Resolved {
    Patient(String),
    NotPatient,
}

/// The subject of a resource: its own record id for a Patient, else the first patient
/// its references name (docs/FHIR.md section 4), else [`SHARED_SUBJECT`].
///
/// `collection` and `record_id` are the resource's own key (used for the subject of a
/// resource whose patient is contained); `ctx` is the Bundle it was read from, if any.
pub fn subject_of(
    facts: &Facts,
    collection: &str,
    record_id: &str,
    ctx: Option<&BundleCtx<'_>>,
) -> String {
    patient_of(facts, collection, record_id, ctx).unwrap_or_else(|| SHARED_SUBJECT.to_owned())
}

/// Like [`subject_of`], `None` where that gives [`SHARED_SUBJECT`].
pub fn patient_of(
    facts: &Facts,
    collection: &str,
    record_id: &str,
    ctx: Option<&BundleCtx<'_>>,
) -> Option<String> {
    if collection == "Patient" {
        return Some(record_id.to_owned());
    }
    for (field, r) in &facts.compartment {
        if let Resolved::Patient(s) = resolve(r, Some(*field), facts, collection, record_id, ctx) {
            return Some(s);
        }
    }
    for r in &facts.other {
        if let Resolved::Patient(s) = resolve(r, None, facts, collection, record_id, ctx) {
            return Some(s);
        }
    }
    None
}

/// `field`: the compartment field index, `None` for a reference elsewhere (only certain
/// Patient references count there).
fn resolve(
    r: &RefFacts,
    field: Option<usize>,
    facts: &Facts,
    collection: &str,
    record_id: &str,
    ctx: Option<&BundleCtx<'_>>,
) -> Resolved {
    let compartment = field.is_some();
    let typed_patient = r.target_type.as_deref() == Some("Patient");
    let untyped_or_patient = r.target_type.is_none() || typed_patient;
    let Some(reference) = r.reference.as_deref() else {
        // Logical reference by identifier only.
        let patient_field = field.map(|i| SUBJECT_FIELDS[i]) == Some("patient");
        return match &r.identifier {
            Some(tok) if compartment && (typed_patient || patient_field) => {
                Resolved::Patient(placeholder("identifier", tok))
            }
            _ => Resolved::NotPatient,
        };
    };
    if let Some(local) = reference.strip_prefix('#') {
        if !compartment {
            return Resolved::NotPatient;
        }
        let found = facts
            .contained
            .iter()
            .find(|c| c.id.as_deref() == Some(local));
        return match found {
            Some(c) if c.resource_type.as_deref() == Some("Patient") => {
                Resolved::Patient(match &c.identifier {
                    Some(tok) => placeholder("identifier", tok),
                    None => format!("{CONTAINED_PREFIX}{collection}/{record_id}"),
                })
            }
            _ => Resolved::NotPatient,
        };
    }
    if reference.starts_with("urn:") {
        return match ctx.and_then(|c| c.urn(reference)) {
            Some(UrnTarget::Patient(id)) => Resolved::Patient(id.clone()),
            Some(UrnTarget::Other) => Resolved::NotPatient,
            None if compartment && untyped_or_patient => {
                let bare = reference
                    .strip_prefix("urn:uuid:")
                    .or_else(|| reference.strip_prefix("urn:oid:"))
                    .filter(|id| is_valid_id(id));
                Resolved::Patient(match bare {
                    Some(id) => id.to_owned(),
                    None => placeholder("reference", reference),
                })
            }
            None => Resolved::NotPatient,
        };
    }
    if let Some((path, query)) = reference.split_once('?') {
        let names_patient = path.rsplit('/').next() == Some("Patient") || typed_patient;
        if !compartment || !names_patient {
            return Resolved::NotPatient;
        }
        let key = format!("Patient?{query}");
        if let Some(id) = ctx.and_then(|c| c.conditional(&key)) {
            return Resolved::Patient(id.to_owned());
        }
        return Resolved::Patient(match query.strip_prefix("identifier=") {
            Some(tok) if !tok.contains('&') => placeholder("identifier", tok),
            _ => placeholder("reference", reference),
        });
    }
    let mut segs: Vec<&str> = reference.split('/').collect();
    if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        segs.truncate(segs.len() - 2);
    }
    match segs.as_slice() {
        [.., "Patient", id] if is_valid_id(id) => Resolved::Patient((*id).to_owned()),
        [.., "Patient", _] if compartment => Resolved::Patient(placeholder("reference", reference)),
        _ if compartment && typed_patient => Resolved::Patient(placeholder("reference", reference)),
        _ => Resolved::NotPatient,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scan::scan;

    fn subj(t: &str, ctx: Option<&BundleCtx<'_>>) -> String {
        let f = scan(t).unwrap();
        subject_of(&f, f.resource_type().unwrap(), "r1", ctx)
    }

    #[test]
    fn reference_forms() {
        let obs = |r: &str| format!(r#"{{"resourceType":"Observation","subject":{r}}}"#);
        assert_eq!(subj(&obs(r#"{"reference":"Patient/p1"}"#), None), "p1");
        assert_eq!(
            subj(&obs(r#"{"reference":"Patient/p1/_history/2"}"#), None),
            "p1"
        );
        assert_eq!(
            subj(
                &obs(r#"{"reference":"https://x.org/fhir/Patient/p2"}"#),
                None
            ),
            "p2"
        );
        assert_eq!(
            subj(&obs(r#"{"reference":"urn:uuid:0a1b-2c"}"#), None),
            "0a1b-2c"
        );
        assert_eq!(
            subj(&obs(r#"{"reference":"Group/g"}"#), None),
            SHARED_SUBJECT
        );
        assert_eq!(subj(&obs(r#"{"display":"x"}"#), None), SHARED_SUBJECT);
        let cond = subj(&obs(r#"{"reference":"Patient?identifier=s|v"}"#), None);
        assert_eq!(cond, placeholder("identifier", "s|v"));
        let logical = subj(
            &obs(r#"{"type":"Patient","identifier":{"system":"s","value":"v"}}"#),
            None,
        );
        assert_eq!(logical, cond);
        let mut ctx = BundleCtx::default();
        ctx.urns
            .insert("urn:uuid:u1".into(), UrnTarget::Patient("pp".into()));
        ctx.urns.insert("urn:uuid:g1".into(), UrnTarget::Other);
        ctx.conditional
            .insert("Patient?identifier=s|v".into(), "pc".into());
        assert_eq!(
            subj(&obs(r#"{"reference":"urn:uuid:u1"}"#), Some(&ctx)),
            "pp"
        );
        assert_eq!(
            subj(&obs(r#"{"reference":"urn:uuid:g1"}"#), Some(&ctx)),
            SHARED_SUBJECT
        );
        assert_eq!(
            subj(
                &obs(r#"{"reference":"Patient?identifier=s|v"}"#),
                Some(&ctx)
            ),
            "pc"
        );
    }

    #[test]
    fn contained_patient() {
        let t = r##"{"resourceType":"Claim","id":"c","patient":{"reference":"#p"},
            "contained":[{"resourceType":"Patient","id":"p"}]}"##;
        assert_eq!(subj(t, None), "urn:medvault:contained:Claim/r1");
        let t = r##"{"resourceType":"Claim","patient":{"reference":"#p"},
            "contained":[{"resourceType":"Patient","id":"p","identifier":[{"value":"9"}]}]}"##;
        assert_eq!(subj(t, None), placeholder("identifier", "9"));
        let t = r##"{"resourceType":"Claim","patient":{"reference":"#o"},
            "contained":[{"resourceType":"Organization","id":"o"}]}"##;
        assert_eq!(subj(t, None), SHARED_SUBJECT);
    }

    #[test]
    fn elsewhere_only_certain_patient_references() {
        let t = r#"{"resourceType":"Appointment","participant":[{"actor":{"reference":"Practitioner/d"}},{"actor":{"reference":"Patient/p9"}}]}"#;
        assert_eq!(subj(t, None), "p9");
        let t = r#"{"resourceType":"Provenance","target":[{"reference":"urn:uuid:x"}]}"#;
        assert_eq!(subj(t, None), SHARED_SUBJECT);
    }
}
