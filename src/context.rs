//! Who is acting and why. Every data-touching call takes an [`AccessContext`]; it is
//! validated before anything is read and recorded in the access log entry of the call.

use crate::error::{Denial, Error, InputKind, Result};

/// Maximum length of an actor id, in bytes.
pub const MAX_ACTOR_LEN: usize = 256;
/// Maximum length of a free-text reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// Why a record is accessed. The set follows common hospital access policies (care,
/// emergency break-the-glass, billing, research, the patient's own request, and
/// administrative or technical work).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Purpose {
    /// Treatment of the patient by a member of the care team.
    Care,
    /// Emergency access outside the usual care relationship ("break-the-glass"); a
    /// reason is required and the entry stands out in the access log.
    Emergency,
    /// Administrative work (registration, scheduling).
    Administration,
    /// Billing and claims.
    Billing,
    /// Research under an approved protocol.
    Research,
    /// Access on the patient's own request (GDPR art. 15 access, art. 17 erasure).
    PatientRequest,
    /// Technical maintenance: imports, key rotation, verification, backups.
    Maintenance,
}

impl Purpose {
    /// Every purpose, in code order.
    pub const ALL: [Purpose; 7] = [
        Purpose::Care,
        Purpose::Emergency,
        Purpose::Administration,
        Purpose::Billing,
        Purpose::Research,
        Purpose::PatientRequest,
        Purpose::Maintenance,
    ];

    /// Stable one-byte code used in access-log entries (docs/FORMAT.md).
    pub fn code(self) -> u8 {
        match self {
            Purpose::Care => 1,
            Purpose::Emergency => 2,
            Purpose::Administration => 3,
            Purpose::Billing => 4,
            Purpose::Research => 5,
            Purpose::PatientRequest => 6,
            Purpose::Maintenance => 7,
        }
    }

    /// Inverse of [`Purpose::code`].
    pub fn from_code(code: u8) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.code() == code)
    }

    /// Lower-case name (`care`, `emergency`, `administration`, `billing`, `research`,
    /// `patient-request`, `maintenance`), as used by the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Care => "care",
            Purpose::Emergency => "emergency",
            Purpose::Administration => "administration",
            Purpose::Billing => "billing",
            Purpose::Research => "research",
            Purpose::PatientRequest => "patient-request",
            Purpose::Maintenance => "maintenance",
        }
    }
}

impl std::str::FromStr for Purpose {
    type Err = Error;

    /// Parses a name of [`Purpose::name`] (also `break-the-glass` for `Emergency` and
    /// `patient_request`); fails with [`Error::InvalidInput`] listing the valid names.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "break-the-glass" | "btg" => return Ok(Purpose::Emergency),
            "patient_request" => return Ok(Purpose::PatientRequest),
            _ => {}
        }
        Purpose::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    InputKind::Context,
                    "unknown purpose; expected one of care, emergency, administration, billing, \
                 research, patient-request, maintenance",
                )
            })
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who is acting and why: recorded with every operation in the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessContext {
    /// Unique id of the acting user or system (1 to 256 bytes).
    pub actor: String,
    /// Why the access happens.
    pub purpose: Purpose,
    /// Free text (at most 1024 bytes); required for [`Purpose::Emergency`].
    pub reason: Option<String>,
}

impl AccessContext {
    /// A context without a reason.
    pub fn new(actor: impl Into<String>, purpose: Purpose) -> Self {
        AccessContext {
            actor: actor.into(),
            purpose,
            reason: None,
        }
    }

    /// Adds a reason (required for break-the-glass).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Checks the context. Fails with [`Error::InvalidInput`] for an empty or over-long
    /// actor or reason, and [`Error::AccessDenied`] for break-the-glass without a reason.
    pub fn validate(&self) -> Result<()> {
        if self.actor.trim().is_empty() {
            return Err(Error::invalid(
                InputKind::Context,
                "the access context needs a non-empty actor",
            ));
        }
        if self.actor.len() > MAX_ACTOR_LEN {
            return Err(Error::invalid(
                InputKind::Context,
                "actor id longer than 256 bytes",
            ));
        }
        if let Some(r) = &self.reason
            && r.len() > MAX_REASON_LEN
        {
            return Err(Error::invalid(
                InputKind::Context,
                "reason longer than 1024 bytes",
            ));
        }
        if self.purpose == Purpose::Emergency
            && self.reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            return Err(Error::AccessDenied(Denial::BreakGlassWithoutReason));
        }
        Ok(())
    }
}
