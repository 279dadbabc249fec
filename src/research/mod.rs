//! The research export guard (DESIGN.md invariant 11, docs/RESEARCH.md): data for
//! secondary use leaves the vault only through `Vault::research_export`, which requires
//! the research purpose of use (HL7 v3 `HRESCH`), an authorization reference, a project
//! id and a data specification, and applies, before anything is written:
//!
//! * **per-project pseudonyms** ([`ProjectPseudonyms`]): every resource id and every
//!   reference is replaced by HMAC-SHA-256 (RFC 2104) under a key derived with HKDF-SHA256
//!   (RFC 5869) from a random per-project seed sealed in the vault, with the project id
//!   as HKDF info; two projects' exports, or an export and the vault's own storage
//!   pseudonyms, share no pseudonym. Destroying the seed (`Vault::destroy_research_key`)
//!   makes the mapping unrecoverable;
//! * **minimization** ([`minimize`]): direct identifiers, narrative, free-text notes,
//!   attachments and extensions dropped; dates generalized to month or year; postal codes
//!   truncated; ages over 89 grouped (birth date dropped);
//! * **k-anonymity** over the quasi-identifiers (birth year, sex, postal prefix, and the
//!   specification's additions): patients of classes smaller than k are suppressed;
//! * **objections** (GDPR art. 21): patients who objected are excluded.
//!
//! The export's output is FHIR NDJSON (minimized resources, exact JSON: number tokens
//! are copied, never re-printed by a float parser) and a manifest ([`Manifest`]).

mod kanon;
mod minimize;
mod pseudonym;

pub use kanon::{QuasiIdentifiers, k_anonymity};
pub use minimize::{DropCounts, minimize};
pub use pseudonym::ProjectPseudonyms;
pub(crate) use pseudonym::{open_objection, open_seed, seal_objection, seal_seed};

use serde::{Deserialize, Serialize};

use crate::crypto::sha256;

/// The PurposeOfUse code a research export requires.
pub const RESEARCH_PURPOSE: &str = "HRESCH";
/// Default k of the k-anonymity check (when the policy names none).
pub const DEFAULT_K: usize = 5;
/// Default number of leading postal-code characters kept.
pub const DEFAULT_POSTAL_DIGITS: usize = 3;
/// Ages above this (in years, at the reference year) are grouped: the birth date is
/// dropped and the class key says `90+` (HIPAA 45 CFR 164.514(b)(2)(i)(C)).
pub const MAX_AGE: i32 = 89;
/// Maximum length of a project id or an authorization reference, in bytes.
pub const MAX_REF_LEN: usize = 128;

/// FHIR resource types whose resources carry other whole resources (Bundle
/// `entry.resource`, `entry.response.outcome`; Parameters `parameter.resource`): a
/// specification naming one is refused (rule [`rules::NESTED`]), because a nested
/// resource keeps its own ids, identifiers, dates, URLs (`fullUrl`, `request.url`,
/// `response.location`) and may be another patient's, escaping k-anonymity and that
/// patient's objection. Nested resources in any other record are dropped
/// ([`minimize`]): only top-level resources leave.
pub const CONTAINER_TYPES: [&str; 2] = ["Bundle", "Parameters"];

/// Whether `s` is acceptable as a project id or an authorization reference: 1 to
/// [`MAX_REF_LEN`] bytes of printable ASCII (0x20 to 0x7E) other than `;`, `=` and
/// `` ` ``, not only spaces. These strings are written into the disclosure entry's
/// note (`name=value; ...`), the manifest and the CLI's output: a `;`, `=`, newline or
/// other control character could forge fields or lines there.
pub fn valid_reference(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_REF_LEN && s.bytes().all(reference_byte)
}

/// Whether byte `b` may appear in a project id or authorization reference
/// ([`valid_reference`]).
pub(crate) fn reference_byte(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) && !matches!(b, b';' | b'=' | b'`')
}

/// Member names dropped at every depth unless the specification keeps them and the
/// policy allows it ([`ResearchPolicy::allow_identifiers`]): FHIR direct identifiers
/// (`name`, `identifier`, `masterIdentifier`, `telecom`, `photo`, `contact`, `link`),
/// device identifiers and serial numbers (`udiCarrier`, `serialNumber`,
/// `distinctIdentifier`, `lotNumber`; HIPAA 45 CFR 164.514(b)(2)(i)(M)), free text
/// (`text` and its narrative `div`, `note`, `comment`, `description`, `valueString`,
/// `valueMarkdown`, `patientInstruction`), attachments (`attachment`, `presentedForm`),
/// extensions (they carry birth place and mother's maiden name in US Core data) and
/// contained resources.
pub const DIRECT_IDENTIFIERS: [&str; 23] = [
    "name",
    "identifier",
    "masterIdentifier",
    "telecom",
    "photo",
    "contact",
    "link",
    "udiCarrier",
    "serialNumber",
    "distinctIdentifier",
    "lotNumber",
    "text",
    "note",
    "comment",
    "description",
    "valueString",
    "valueMarkdown",
    "patientInstruction",
    "attachment",
    "presentedForm",
    "extension",
    "modifierExtension",
    "contained",
];

/// What the policy allows research exports (the `research` section of a
/// [`crate::Policy`]; docs/POLICY.md, docs/RESEARCH.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResearchPolicy {
    /// The k of the k-anonymity check: patients of quasi-identifier classes smaller than
    /// this are suppressed. Default 5; at least 1.
    pub k: usize,
    /// Names of [`DIRECT_IDENTIFIERS`] a specification may keep (default none).
    pub allow_identifiers: Vec<String>,
}

impl Default for ResearchPolicy {
    fn default() -> Self {
        ResearchPolicy {
            k: DEFAULT_K,
            allow_identifiers: Vec::new(),
        }
    }
}

/// How dates are generalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DateRule {
    /// To `YYYY-MM` (the default).
    #[default]
    Month,
    /// To `YYYY`.
    Year,
    /// Shifted by a per-patient, per-project offset of -182 to +182 days
    /// ([`ProjectPseudonyms::shift_days`]): `YYYY-MM-DD...` becomes the shifted
    /// `YYYY-MM-DD` (time of day dropped), `YYYY-MM` the month of its shifted first day,
    /// `YYYY` stays. Intervals between one patient's dates are kept.
    Shift,
}

/// One collection of a [`DataSpec`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSpec {
    /// The collection (FHIR resourceType), e.g. `Condition`.
    pub collection: String,
    /// Top-level fields exported (`*`: every field); `resourceType` and `id` always are
    /// (the id pseudonymized). Direct identifiers are dropped even when listed here,
    /// unless also in [`DataSpec::keep_identifiers`].
    #[serde(default = "all_fields")]
    pub fields: Vec<String>,
}

fn all_fields() -> Vec<String> {
    vec!["*".to_owned()]
}

/// The data specification of a research export: which collections and fields, which
/// generalizations. Its digest ([`DataSpec::digest`]) is logged with the disclosure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The collections exported. `Patient` is always read (for the quasi-identifiers and
    /// the objection check) but exported only when listed.
    pub collections: Vec<CollectionSpec>,
    /// How dates are generalized.
    #[serde(default)]
    pub dates: DateRule,
    /// Leading characters of `postalCode` kept (0: dropped). Default 3.
    #[serde(default = "default_postal")]
    pub postal_digits: usize,
    /// Extra quasi-identifiers: top-level Patient fields whose value joins the class key
    /// of the k-anonymity check (e.g. `maritalStatus`).
    #[serde(default)]
    pub quasi_identifiers: Vec<String>,
    /// Direct identifiers ([`DIRECT_IDENTIFIERS`]) to keep; refused unless the policy
    /// allows each ([`ResearchPolicy::allow_identifiers`]).
    #[serde(default)]
    pub keep_identifiers: Vec<String>,
    /// The year ages are computed at (default: the current UTC year).
    #[serde(default)]
    pub reference_year: Option<i32>,
}

fn default_postal() -> usize {
    DEFAULT_POSTAL_DIGITS
}

impl DataSpec {
    /// SHA-256 (FIPS 180-4) of the specification's canonical JSON form (serde_json,
    /// fields in declaration order), lower-case hex: what the disclosure entry names.
    pub fn digest(&self) -> String {
        let text = serde_json::to_vec(self).unwrap_or_default();
        crate::audit::hex(&sha256(&[&text]))
    }

    /// The spec of `collection`, if exported.
    pub(crate) fn collection(&self, collection: &str) -> Option<&CollectionSpec> {
        self.collections.iter().find(|c| c.collection == collection)
    }
}

/// A research export request: everything the guard requires besides the access
/// context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResearchRequest {
    /// The project id (1 to 128 bytes): the HKDF info of the project's pseudonym key.
    pub project: String,
    /// The authorization reference (1 to 128 bytes): the regulator's decision number,
    /// the ethics committee's approval, or the legal basis the policy allows.
    pub authorization: String,
    /// What is exported and how it is generalized.
    pub spec: DataSpec,
}

/// The rule names of the guard's refusals (the `rule` of
/// [`crate::Denial::Policy`]), besides the policy's own (`no-role`, `role-purpose`...).
pub mod rules {
    /// The context's purpose of use is not `HRESCH`.
    pub const PURPOSE: &str = "research-purpose";
    /// No authorization reference, or one over 128 bytes.
    pub const AUTHORIZATION: &str = "research-authorization";
    /// No project id, or one over 128 bytes.
    pub const PROJECT: &str = "research-project";
    /// The specification names no collection, a collection twice, an empty field list,
    /// or a postal length over 10.
    pub const SPECIFICATION: &str = "research-specification";
    /// The specification keeps a direct identifier the policy does not allow.
    pub const IDENTIFIER: &str = "research-identifier";
    /// Recording an objection needs the patient-request purpose (`PATRQT`).
    pub const OBJECTION: &str = "research-objection-purpose";
    /// The specification names a collection whose resources carry other resources
    /// ([`super::CONTAINER_TYPES`]: Bundle, Parameters).
    pub const NESTED: &str = "research-nested-resources";
}

impl ResearchRequest {
    /// The guard's checks of the request against `policy` (the default research policy
    /// when the vault has none): `Err(rule)` names the [`rules`] constant that refuses.
    pub fn check(&self, policy: &ResearchPolicy) -> std::result::Result<(), &'static str> {
        // The charset ([`valid_reference`]) is checked by the vault first.
        let ok_ref = |s: &str| !s.trim().is_empty() && s.len() <= MAX_REF_LEN;
        if !ok_ref(&self.authorization) {
            return Err(rules::AUTHORIZATION);
        }
        if !ok_ref(&self.project) {
            return Err(rules::PROJECT);
        }
        let s = &self.spec;
        let mut seen = std::collections::BTreeSet::new();
        if s.collections.is_empty()
            || s.postal_digits > 10
            || s.collections
                .iter()
                .any(|c| c.fields.is_empty() || !seen.insert(c.collection.as_str()))
        {
            return Err(rules::SPECIFICATION);
        }
        if s.collections
            .iter()
            .any(|c| CONTAINER_TYPES.contains(&c.collection.as_str()))
        {
            return Err(rules::NESTED);
        }
        for id in &s.keep_identifiers {
            if !policy.allow_identifiers.iter().any(|a| a == id) {
                return Err(rules::IDENTIFIER);
            }
        }
        Ok(())
    }
}

/// What a research export produced and did, returned with the resources and written as
/// the manifest (`manifest.json`) for the receiving team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// `medvault research export`.
    pub kind: String,
    /// The project id.
    pub project: String,
    /// The authorization reference.
    pub authorization: String,
    /// The specification as given.
    pub specification: DataSpec,
    /// SHA-256 of the specification ([`DataSpec::digest`]).
    pub specification_digest: String,
    /// The rules applied, one sentence each (docs/RESEARCH.md "Rules").
    pub rules: Vec<String>,
    /// The reference year ages were computed at.
    pub reference_year: i32,
    /// The k required.
    pub k_required: usize,
    /// The smallest class size among exported patients (0: nobody exported).
    pub k_achieved: usize,
    /// Patients exported.
    pub patients: usize,
    /// Resources exported.
    pub records: usize,
    /// Patients suppressed by the k-anonymity check.
    pub suppressed_patients: usize,
    /// Resources of suppressed patients (not exported).
    pub suppressed_records: usize,
    /// Patients excluded because they objected (GDPR art. 21).
    pub excluded_objections: usize,
    /// Patients whose age was grouped as over 89 (birth date dropped).
    pub ages_grouped: usize,
    /// What minimization removed or changed, summed over the exported resources.
    pub changes: DropCounts,
}

/// A research export's result: the minimized resources, each `(resourceType, exact
/// JSON text)`, in patient order (Patient first), and the manifest.
#[derive(Debug)]
pub struct ResearchExport {
    /// The minimized resources.
    pub resources: Vec<(String, crate::json::JsonText)>,
    /// What was done (also returned as JSON by [`ResearchExport::manifest_json`]).
    pub manifest: Manifest,
}

impl ResearchExport {
    /// The manifest as pretty JSON text.
    pub fn manifest_json(&self) -> String {
        serde_json::to_string_pretty(&self.manifest).unwrap_or_default()
    }
}

/// The rules as listed in the manifest.
pub(crate) fn rule_sentences(spec: &DataSpec, k: usize) -> Vec<String> {
    let dates = match spec.dates {
        DateRule::Month => "generalized to the month (YYYY-MM)",
        DateRule::Year => "generalized to the year (YYYY)",
        DateRule::Shift => {
            "shifted by a per-patient per-project offset of -182 to +182 days (time of day dropped; YYYY-MM: the month of the shifted first day; YYYY unchanged)"
        }
    };
    vec![
        "resource ids and references replaced by per-project pseudonyms (HMAC-SHA-256 under HKDF(project seed, project id)); reference display text dropped".to_owned(),
        format!(
            "direct identifiers, narrative, notes, attachments, extensions and contained resources dropped at every depth ({}); kept by the specification: {:?}; any other resource nested in a resource dropped, a record whose resourceType is not its collection not exported, Bundle and Parameters refused",
            DIRECT_IDENTIFIERS.join(", "),
            spec.keep_identifiers
        ),
        format!("dates, dateTimes and instants {dates}; birthDate to the year"),
        format!(
            "address reduced to postalCode truncated to {} characters (dropped when 0)",
            spec.postal_digits
        ),
        format!("ages over {MAX_AGE} grouped: birthDate dropped, class key 90+"),
        format!(
            "k-anonymity over birth year, gender, postal prefix{}: patients of classes smaller than k = {k} suppressed",
            spec.quasi_identifiers
                .iter()
                .map(|q| format!(", {q}"))
                .collect::<String>()
        ),
        "patients who objected to secondary use (GDPR art. 21) excluded".to_owned(),
    ]
}

pub(crate) use crate::civil::{civil_from_days, days_from_civil};

/// The civil year of `ms` since the Unix epoch (UTC).
pub(crate) fn year_of_ms(ms: u64) -> i32 {
    civil_from_days((ms / 86_400_000) as i64).0 as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_of_ms_matches_known_instants() {
        // 2000-02-29T00:00:00Z = 951782400 s; 1999-12-31T23:59:59Z = 946684799 s;
        // 2026-12-02T00:00:00Z = 1796169600 s (date -u -d ... +%s).
        assert_eq!(year_of_ms(951_782_400_000), 2000);
        assert_eq!(year_of_ms(946_684_799_000), 1999);
        assert_eq!(year_of_ms(1_796_169_600_000), 2026);
        assert_eq!(year_of_ms(0), 1970);
    }
}
