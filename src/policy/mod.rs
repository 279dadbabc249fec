//! The vault's access policy: which roles may invoke which purposes of use, and what
//! each purpose may read and write, deny by default (DESIGN.md invariant 11,
//! docs/POLICY.md).
//!
//! A [`Policy`] is a JSON document (serde) held in the vault sealed under a key derived
//! from the vault secret, bound to the vault id and to its version number
//! (docs/FORMAT.md "Access policy"). Every change is an access-log entry
//! ([`crate::Action::PolicyChange`]), and every entry records the policy version in force
//! when it was committed, so a policy swapped in from another vault fails to open and an
//! older version put back is caught at open and by `verify`.
//!
//! Purposes are HL7 v3 PurposeOfUse codes (code system
//! `http://terminology.hl7.org/CodeSystem/v3-ActReason`): the seven of
//! [`crate::Purpose::hl7_code`], plus custom codes declared in [`Policy::purposes`].
//!
//! The decision, for a context with roles `R` and purpose of use `P`:
//! 1. no role: refused (`no-role`); `P` neither standard nor declared: refused
//!    (`undeclared-purpose`); no role of `R` lists `P`: refused (`role-purpose`);
//! 2. `P` = `ETREAT` (break-the-glass, reason required): everything allowed, and the
//!    access enters the review queue (`Vault::review_queue`);
//! 3. otherwise the union of the [`Rule`]s for `P` decides per collection and field;
//!    nothing granted: refused (`deny-by-default`, or the name of the rule that covers the
//!    collection but not the operation). A read of fields partly granted returns only the
//!    granted fields.

mod store;

pub(crate) use store::{PolicyCell, load_policy, seal_policy};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::context::{AccessContext, Purpose};
use crate::error::{Denial, Error, InputKind, Result};

/// The PurposeOfUse code of break-the-glass.
pub const ETREAT: &str = "ETREAT";
/// Code system of the standard PurposeOfUse codes.
pub const PURPOSE_OF_USE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// Upper bound of a policy's JSON form, in bytes.
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// The wildcard matching every collection or every field.
pub const ANY: &str = "*";

/// An access policy (docs/POLICY.md). Deny by default: what no rule grants is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A human-readable name.
    pub name: String,
    /// Custom purposes of use this policy declares, beyond the standard codes.
    #[serde(default)]
    pub purposes: Vec<CustomPurpose>,
    /// Role name → what the role may invoke.
    pub roles: BTreeMap<String, RoleGrant>,
    /// What each purpose of use may read and write.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Hours after which an unreviewed break-the-glass access is reported as overdue.
    #[serde(default = "default_review_delay")]
    pub review_delay_hours: u64,
    /// Thresholds of the automated controls (`Vault::alerts`).
    #[serde(default)]
    pub alerts: AlertThresholds,
    /// What the research export guard allows (docs/RESEARCH.md).
    #[serde(default)]
    pub research: crate::research::ResearchPolicy,
}

fn default_review_delay() -> u64 {
    72
}

/// A purpose of use declared by a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPurpose {
    /// The code, e.g. `PUBHLTH` (1 to 64 bytes).
    pub code: String,
    /// Its code system; `None`: [`PURPOSE_OF_USE_SYSTEM`].
    #[serde(default)]
    pub system: Option<String>,
    /// A human-readable name.
    #[serde(default)]
    pub display: String,
}

/// What one role may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGrant {
    /// The PurposeOfUse codes the role may invoke.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Administration capabilities: `policy` (change the policy), `keys` (key
    /// operations), `audit` (review break-the-glass accesses, patients' access reports,
    /// alerts).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// What one purpose of use grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's name, reported in denials and docs.
    pub name: String,
    /// The PurposeOfUse code it applies to.
    pub purpose: String,
    /// Per collection (or `*`), the fields read and written.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Whether a subject may be erased (GDPR art. 17) under this purpose.
    #[serde(default)]
    pub erase: bool,
}

/// Fields of one collection a rule grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// A collection (FHIR resourceType) or `*`.
    pub collection: String,
    /// Top-level fields that may be read (`*`: all).
    #[serde(default)]
    pub read: Vec<String>,
    /// Top-level fields that may be written (`*`: all). Deleting a record needs `*`.
    #[serde(default)]
    pub write: Vec<String>,
}

/// Thresholds of the automated controls over the log (CNIL 2021 logging recommendation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertThresholds {
    /// More distinct patients read by one actor than this within `window_minutes`.
    pub max_patients_per_window: usize,
    /// The sliding window of the two rules above, in minutes.
    pub window_minutes: u64,
    /// Declared working hours, UTC: `[start, end)` hours (0-24); accesses outside alert.
    pub hours_start_utc: u8,
    /// End of the declared working hours (exclusive), UTC.
    pub hours_end_utc: u8,
    /// More denied attempts by one actor than this within `window_minutes`.
    pub max_denials_per_window: usize,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            max_patients_per_window: 20,
            window_minutes: 60,
            hours_start_utc: 6,
            hours_end_utc: 20,
            max_denials_per_window: 3,
        }
    }
}

/// What a read may return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldFilter {
    /// Every field.
    All,
    /// Only these fields (non-empty).
    Only(BTreeSet<String>),
}

impl FieldFilter {
    /// Whether `field` passes.
    pub fn allows(&self, field: &str) -> bool {
        match self {
            FieldFilter::All => true,
            FieldFilter::Only(s) => s.contains(field),
        }
    }
}

/// The invocation check's result: which purpose applies and whether it is
/// break-the-glass.
#[derive(Clone, Debug)]
pub(crate) struct Invocation {
    pub emergency: bool,
    code: String,
    policy: Arc<Policy>,
    version: u32,
}

fn deny(rule: &str, version: u32) -> Error {
    Error::AccessDenied(Denial::Policy {
        rule: rule.to_owned(),
        version,
    })
}

impl Policy {
    /// Parses a policy from its JSON form and checks it ([`Policy::validate`]).
    pub fn from_json(text: &str) -> Result<Policy> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(Error::invalid(InputKind::Policy, "policy over 1 MiB"));
        }
        let p: Policy = serde_json::from_str(text)
            .map_err(|e| Error::invalid(InputKind::Policy, format!("policy JSON: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// The JSON form (pretty-printed).
    pub fn to_json(&self) -> String {
        // A Policy is made of strings, numbers, lists and string-keyed maps: it always
        // serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks that every purpose a role or rule names is standard or declared, that
    /// rules have names, that the alert hours are in 0..=24, and that the policy does not
    /// lock everyone out of itself: some role must hold the `policy` capability and at
    /// least one purpose of use to invoke it with (a policy without one could never be
    /// changed again, by anyone). Fails with [`Error::InvalidInput`]
    /// ([`InputKind::Policy`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(InputKind::Policy, m));
        for c in &self.purposes {
            if c.code.is_empty() || c.code.len() > crate::context::MAX_ROLE_LEN {
                return bad("a custom purpose code is 1 to 64 bytes".into());
            }
            if Purpose::from_hl7_code(&c.code).is_some() {
                return bad(format!("custom purpose {} is a standard code", c.code));
            }
        }
        for (role, g) in &self.roles {
            for p in &g.purposes {
                if !self.knows_purpose(p) {
                    return bad(format!("role {role} names undeclared purpose {p}"));
                }
            }
            for c in &g.capabilities {
                if !matches!(c.as_str(), "policy" | "keys" | "audit") {
                    return bad(format!("role {role}: unknown capability {c}"));
                }
            }
        }
        for r in &self.rules {
            if r.name.trim().is_empty() {
                return bad("a rule needs a name".into());
            }
            if !self.knows_purpose(&r.purpose) {
                return bad(format!(
                    "rule {} names undeclared purpose {}",
                    r.name, r.purpose
                ));
            }
        }
        let a = &self.alerts;
        if a.hours_start_utc > 24 || a.hours_end_utc > 24 {
            return bad("alert hours are 0 to 24".into());
        }
        let can_change = self
            .roles
            .values()
            .any(|g| !g.purposes.is_empty() && g.capabilities.iter().any(|c| c == "policy"));
        if !can_change {
            return bad(
                "no role holds the `policy` capability together with a purpose of use: \
                 nobody could ever change this policy again (keep `policy` in some role's \
                 capabilities, e.g. the default's `administration`)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Whether `code` is a standard PurposeOfUse code of [`Purpose::hl7_code`] or one
    /// declared in [`Policy::purposes`].
    pub fn knows_purpose(&self, code: &str) -> bool {
        Purpose::from_hl7_code(code).is_some() || self.purposes.iter().any(|c| c.code == code)
    }

    /// The default policy for a clinic (docs/POLICY.md "The default clinic policy"):
    ///
    /// | role | purposes | capabilities |
    /// |---|---|---|
    /// | `care` | TREAT, ETREAT | |
    /// | `billing` | HPAYMT | |
    /// | `research` | HRESCH | |
    /// | `administration` | HOPERAT, HSYSADMIN | policy, keys, audit |
    /// | `dpo` | PATRQT | audit |
    /// | `integration` | HSYSADMIN | |
    ///
    /// | rule | purpose | grants |
    /// |---|---|---|
    /// | `care-all` | TREAT | read and write every field of every collection |
    /// | `billing-claims` | HPAYMT | read Claim, Coverage (all fields), Encounter `period`, `type`, `class`, `serviceType`, `reasonCode` (+ `resourceType`, `id`), Patient `identifier` (+ `resourceType`, `id`) |
    /// | `patient-request` | PATRQT | read every field (art. 15/20 copy), erase (art. 17) |
    /// | `system-import` | HSYSADMIN | write every field (imports), read nothing |
    ///
    /// Research (HRESCH) and administration (HOPERAT) have no rule: they read nothing
    /// directly (research goes through the research export; administration manages the
    /// policy and the keys but reads no clinical field).
    pub fn default_clinic() -> Policy {
        let role = |purposes: &[&str], caps: &[&str]| RoleGrant {
            purposes: purposes.iter().map(|s| s.to_string()).collect(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
        };
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = || vec![ANY.to_owned()];
        let mut roles = BTreeMap::new();
        roles.insert("care".to_owned(), role(&["TREAT", "ETREAT"], &[]));
        roles.insert("billing".to_owned(), role(&["HPAYMT"], &[]));
        roles.insert("research".to_owned(), role(&["HRESCH"], &[]));
        roles.insert(
            "administration".to_owned(),
            role(&["HOPERAT", "HSYSADMIN"], &["policy", "keys", "audit"]),
        );
        roles.insert("dpo".to_owned(), role(&["PATRQT"], &["audit"]));
        roles.insert("integration".to_owned(), role(&["HSYSADMIN"], &[]));
        Policy {
            name: "medvault default clinic policy".to_owned(),
            purposes: Vec::new(),
            roles,
            rules: vec![
                Rule {
                    name: "care-all".to_owned(),
                    purpose: "TREAT".to_owned(),
                    grants: vec![Grant {
                        collection: ANY.to_owned(),
                        read: all(),
                        write: all(),
                    }],
                    erase: false,
                },
                Rule {
                    name: "billing-claims".to_owned(),
                    purpose: "HPAYMT".to_owned(),
                    grants: vec![
                        Grant {
                            collection: "Claim".to_owned(),
                            read: all(),
                            write: Vec::new(),
                        },
                        Grant {
                            collection: "Coverage".to_owned(),
                            read: all(),
                            write: Vec::new(),
                        },
                        Grant {
                            collection: "Encounter".to_owned(),
                            read: fields(&[
                                "resourceType",
                                "id",
                                "period",
                                "type",
                                "class",
                                "serviceType",
                                "reasonCode",
                            ]),
                            write: Vec::new(),
                        },
                        Grant {
                            collection: "Patient".to_owned(),
                            read: fields(&["resourceType", "id", "identifier"]),
                            write: Vec::new(),
                        },
                    ],
                    erase: false,
                },
                Rule {
                    name: "patient-request".to_owned(),
                    purpose: "PATRQT".to_owned(),
                    grants: vec![Grant {
                        collection: ANY.to_owned(),
                        read: all(),
                        write: Vec::new(),
                    }],
                    erase: true,
                },
                Rule {
                    name: "system-import".to_owned(),
                    purpose: "HSYSADMIN".to_owned(),
                    grants: vec![Grant {
                        collection: ANY.to_owned(),
                        read: Vec::new(),
                        write: all(),
                    }],
                    erase: false,
                },
            ],
            review_delay_hours: default_review_delay(),
            alerts: AlertThresholds::default(),
            research: crate::research::ResearchPolicy::default(),
        }
    }

    /// Step 1 of the decision: may `ctx` invoke its purpose of use at all?
    pub(crate) fn invoke(
        self: &Arc<Self>,
        version: u32,
        ctx: &AccessContext,
    ) -> Result<Invocation> {
        if ctx.roles.is_empty() {
            return Err(deny("no-role", version));
        }
        let code = ctx.purpose_of_use();
        let declared = match &ctx.purpose_code {
            // A custom code must be declared; it cannot relabel a standard code.
            Some(c) => self.purposes.iter().any(|p| &p.code == c),
            None => true,
        };
        if !declared {
            return Err(deny("undeclared-purpose", version));
        }
        let allowed = ctx.roles.iter().any(|r| {
            self.roles
                .get(r)
                .is_some_and(|g| g.purposes.iter().any(|p| p == code))
        });
        if !allowed {
            return Err(deny("role-purpose", version));
        }
        Ok(Invocation {
            code: code.to_owned(),
            emergency: ctx.purpose_code.is_none() && ctx.purpose == Purpose::Emergency,
            policy: self.clone(),
            version,
        })
    }

    /// Whether some role of `ctx` holds administration capability `cap`.
    pub(crate) fn has_capability(
        &self,
        version: u32,
        ctx: &AccessContext,
        cap: &str,
    ) -> Result<()> {
        let ok = ctx.roles.iter().any(|r| {
            self.roles
                .get(r)
                .is_some_and(|g| g.capabilities.iter().any(|c| c == cap))
        });
        if ok {
            Ok(())
        } else {
            Err(deny("capability", version))
        }
    }

    fn rules_for<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.purpose == code)
    }
}

impl Invocation {
    /// The policy version that decided.
    pub(crate) fn version(&self) -> u32 {
        self.version
    }

    /// What a read of `collection` may return; refused when nothing.
    pub(crate) fn read_filter(&self, collection: &str) -> Result<FieldFilter> {
        if self.emergency {
            return Ok(FieldFilter::All);
        }
        let mut only = BTreeSet::new();
        let mut covering: Option<&str> = None;
        for r in self.policy.rules_for(&self.code) {
            for g in &r.grants {
                if g.collection != ANY && g.collection != collection {
                    continue;
                }
                covering.get_or_insert(&r.name);
                if g.read.iter().any(|f| f == ANY) {
                    return Ok(FieldFilter::All);
                }
                only.extend(g.read.iter().cloned());
            }
        }
        if only.is_empty() {
            return Err(deny(covering.unwrap_or("deny-by-default"), self.version));
        }
        Ok(FieldFilter::Only(only))
    }

    /// Whether every field of `fields` may be written in `collection` (`None`: the
    /// whole record, as a delete needs).
    pub(crate) fn check_write(&self, collection: &str, fields: Option<&[String]>) -> Result<()> {
        if self.emergency {
            return Ok(());
        }
        let mut covering: Option<&str> = None;
        let mut granted: BTreeSet<&str> = BTreeSet::new();
        for r in self.policy.rules_for(&self.code) {
            for g in &r.grants {
                if g.collection != ANY && g.collection != collection {
                    continue;
                }
                covering.get_or_insert(&r.name);
                if g.write.iter().any(|f| f == ANY) {
                    return Ok(());
                }
                granted.extend(g.write.iter().map(String::as_str));
            }
        }
        let ok = match fields {
            Some(fs) => !granted.is_empty() && fs.iter().all(|f| granted.contains(f.as_str())),
            None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(deny(covering.unwrap_or("deny-by-default"), self.version))
        }
    }

    /// Refused unless the purpose may read at least one collection.
    pub(crate) fn check_reads_something(&self) -> Result<()> {
        let any = self.emergency
            || self
                .policy
                .rules_for(&self.code)
                .any(|r| r.grants.iter().any(|g| !g.read.is_empty()));
        if any {
            Ok(())
        } else {
            Err(deny("deny-by-default", self.version))
        }
    }

    /// Refused unless the purpose may write some field of some collection (emergency
    /// access may).
    pub(crate) fn check_writes_something(&self) -> Result<()> {
        let any = self.emergency
            || self
                .policy
                .rules_for(&self.code)
                .any(|r| r.grants.iter().any(|g| !g.write.is_empty()));
        if any {
            Ok(())
        } else {
            Err(deny("deny-by-default", self.version))
        }
    }

    /// Whether the purpose may erase a subject.
    pub(crate) fn check_erase(&self) -> Result<()> {
        if self.policy.rules_for(&self.code).any(|r| r.erase) {
            Ok(())
        } else {
            Err(deny("deny-by-default", self.version))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;

    #[test]
    fn default_policy_validates_and_round_trips_through_json() {
        let p = Policy::default_clinic();
        p.validate().unwrap();
        let back = Policy::from_json(&p.to_json()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn undeclared_purposes_are_rejected() {
        let mut p = Policy::default_clinic();
        p.roles
            .get_mut("care")
            .unwrap()
            .purposes
            .push("PUBHLTH".into());
        assert!(matches!(p.validate(), Err(Error::InvalidInput(_))));
        p.purposes.push(CustomPurpose {
            code: "PUBHLTH".into(),
            system: None,
            display: "public health".into(),
        });
        p.validate().unwrap();
    }
}
