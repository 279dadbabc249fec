//! Access-log entries: what is recorded, and its byte layout (docs/FORMAT.md "Access-log entry").
//!
//! The body (who, why, what, when, outcome) is sealed under the log key. The part that
//! names a subject's records (subject id, collection, record id, field names) is sealed a
//! second time under the subject's own audit key, so erasing the subject unlinks its
//! entries while they stay verifiable; the entry keeps only the subject's pseudonym.

use serde::Serialize;
use zeroize::Zeroizing;

use crate::codec::{Reader, put_lp16, put_lp32};
use crate::context::{AccessContext, Purpose};
use crate::crypto::XAeadKey;
use crate::error::{Error, InputKind, Result, Structure};
use crate::keyring::SubjectTag;

/// Access-log entry format version (2: targets sealed under the subject's log-target key
/// with XChaCha20-Poly1305; version 1, AES-256-GCM under the audit key, was never
/// released and no longer opens).
pub const ENTRY_VERSION: u8 = 2;
/// Upper bound of an entry's sealed body, in bytes.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// The vault was created.
    Create,
    /// The vault was opened.
    Open,
    /// Fields of a record were read.
    Read,
    /// A record was written (inserted or replaced).
    Write,
    /// A record was deleted.
    Delete,
    /// A subject was erased (crypto-shredding).
    Erase,
    /// Records were exported.
    Export,
    /// A record was written by a bulk import.
    Import,
    /// A search or listing (subjects, records of a subject, blind-index lookup,
    /// access-log query).
    Search,
    /// A key operation: root-key rotation, data-key rotation, retirement.
    KeyRotation,
    /// The access log was verified.
    Verify,
    /// A checkpoint was issued.
    Checkpoint,
    /// The access policy was installed or changed (an administration action).
    PolicyChange,
    /// A break-the-glass access was reviewed (verdict in the note).
    Review,
    /// Recovery at open recorded that a logged change never reached the record store
    /// (outcome failed, `not_applied`; the note names the entry).
    Recovery,
    /// An erased subject was re-admitted: its erasure mark was lifted, with a reason
    /// (SECURITY.md "Erasure memory").
    Readmit,
    /// An online backup was taken (docs/BACKUP.md); the note names the backup id and
    /// the log position it captured.
    Backup,
    /// The vault was restored from a backup (docs/BACKUP.md); the note names the backup
    /// id and how many erasures of the ledger were applied.
    Restore,
    /// Whole access-log segments older than the retention period were dropped; the
    /// note is the prune record (first kept entry and the chain link before it).
    Prune,
    /// A legal hold was set or lifted (the note says which and names the hold).
    LegalHold,
}

impl Action {
    const ALL: [Action; 20] = [
        Action::Create,
        Action::Open,
        Action::Read,
        Action::Write,
        Action::Delete,
        Action::Erase,
        Action::Export,
        Action::Import,
        Action::Search,
        Action::KeyRotation,
        Action::Verify,
        Action::Checkpoint,
        Action::PolicyChange,
        Action::Review,
        Action::Recovery,
        Action::Readmit,
        Action::Backup,
        Action::Restore,
        Action::Prune,
        Action::LegalHold,
    ];

    /// Stable one-byte code (docs/FORMAT.md "Access-log entry").
    pub fn code(self) -> u8 {
        match self {
            Action::Create => 1,
            Action::Open => 2,
            Action::Read => 3,
            Action::Write => 4,
            Action::Delete => 5,
            Action::Erase => 6,
            Action::Export => 7,
            Action::Import => 8,
            Action::Search => 9,
            Action::KeyRotation => 10,
            Action::Verify => 11,
            Action::Checkpoint => 12,
            Action::PolicyChange => 13,
            Action::Review => 14,
            Action::Recovery => 15,
            Action::Readmit => 16,
            Action::Backup => 17,
            Action::Restore => 18,
            Action::Prune => 19,
            Action::LegalHold => 20,
        }
    }

    /// Inverse of [`Action::code`].
    pub fn from_code(c: u8) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.code() == c)
    }

    /// Lower-case name, as in JSON exports.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Open => "open",
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Erase => "erase",
            Action::Export => "export",
            Action::Import => "import",
            Action::Search => "search",
            Action::KeyRotation => "key_rotation",
            Action::Verify => "verify",
            Action::Checkpoint => "checkpoint",
            Action::PolicyChange => "policy_change",
            Action::Review => "review",
            Action::Recovery => "recovery",
            Action::Readmit => "readmit",
            Action::Backup => "backup",
            Action::Restore => "restore",
            Action::Prune => "prune",
            Action::LegalHold => "legal_hold",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Action::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::invalid(InputKind::Action, "unknown action"))
    }
}

/// How the operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It was refused by policy (e.g. break-the-glass without a reason).
    Denied,
    /// It failed; the error kind (`Error::kind_name`), never a message with data.
    Failed(String),
}

impl Outcome {
    pub(crate) fn of<T>(r: &Result<T>) -> Outcome {
        match r {
            Ok(_) => Outcome::Ok,
            Err(Error::AccessDenied(_)) => Outcome::Denied,
            Err(e) => Outcome::Failed(e.kind_name().to_owned()),
        }
    }
}

/// What an entry is about, when it names a subject's records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The subject (patient) id.
    pub subject: String,
    /// Collection, when the operation concerned one.
    pub collection: Option<String>,
    /// Record id, when the operation concerned one record.
    pub record_id: Option<String>,
    /// The field names read or written (empty: none or all, per the action).
    pub fields: Vec<String>,
}

/// A decoded access-log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// Gapless sequence number, from 0.
    pub seq: u64,
    /// Time of the operation, milliseconds since the Unix epoch, UTC.
    pub time_ms: u64,
    /// Who acted.
    pub actor: String,
    /// Why.
    #[serde(serialize_with = "ser_purpose")]
    pub purpose: Purpose,
    /// Free-text reason, if given.
    pub reason: Option<String>,
    /// What was done.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// The subject's keyed pseudonym (hex), when the entry concerns a subject.
    #[serde(serialize_with = "ser_tag")]
    pub subject_pseudonym: Option<SubjectTag>,
    /// The target in clear, when the subject's audit key is still held (not erased).
    pub target: Option<Target>,
    /// A short non-identifying note (e.g. a count, a key version, an index name).
    pub note: String,
    /// The roles the context named (docs/FORMAT.md "Governance block").
    pub roles: Vec<String>,
    /// The custom PurposeOfUse code the context named, if any.
    pub purpose_code: Option<String>,
    /// The access-policy version in force when the entry was committed (0: none).
    pub policy_version: u32,
}

impl LogEntry {
    /// The PurposeOfUse code of the access: the custom code, or the purpose's
    /// [`Purpose::hl7_code`].
    pub fn purpose_of_use(&self) -> &str {
        self.purpose_code
            .as_deref()
            .unwrap_or(self.purpose.hl7_code())
    }
}

fn ser_purpose<S: serde::Serializer>(p: &Purpose, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

fn ser_tag<S: serde::Serializer>(
    t: &Option<SubjectTag>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// Lower-case hex of bytes.
pub(crate) fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// An entry before sealing.
pub(crate) struct PendingEntry {
    pub time_ms: u64,
    pub ctx_actor: String,
    pub purpose: Purpose,
    pub reason: Option<String>,
    pub action: Action,
    pub outcome: Outcome,
    /// The subject's pseudonym and the detail sealed under its audit key.
    pub subject: Option<(SubjectTag, Vec<u8>)>,
    pub note: String,
    pub roles: Vec<String>,
    pub purpose_code: Option<String>,
    /// Stamped by the commit path with the policy version in force.
    pub policy_version: u32,
}

pub(crate) fn now_ms() -> u64 {
    #[cfg(test)]
    if let Some(t) = test_clock::get() {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl PendingEntry {
    pub fn new(ctx: &AccessContext, action: Action, outcome: Outcome) -> Self {
        PendingEntry {
            time_ms: now_ms(),
            // Bounded so that an invalid context can still be logged as such.
            ctx_actor: clip(&ctx.actor, crate::context::MAX_ACTOR_LEN).to_owned(),
            purpose: ctx.purpose,
            reason: ctx
                .reason
                .as_deref()
                .map(|r| clip(r, crate::context::MAX_REASON_LEN).to_owned()),
            action,
            outcome,
            subject: None,
            note: String::new(),
            // Bounded like the actor, so that an invalid context can still be logged.
            roles: ctx
                .roles
                .iter()
                .take(crate::context::MAX_ROLES)
                .map(|r| clip(r, crate::context::MAX_ROLE_LEN).to_owned())
                .collect(),
            purpose_code: ctx
                .purpose_code
                .as_deref()
                .map(|c| clip(c, crate::context::MAX_ROLE_LEN).to_owned()),
            policy_version: 0,
        }
    }

    pub fn body(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(128));
        b.extend_from_slice(&self.time_ms.to_be_bytes());
        put_lp16(&mut b, self.ctx_actor.as_bytes());
        b.push(self.purpose.code());
        match &self.reason {
            Some(r) => {
                b.push(1);
                put_lp16(&mut b, r.as_bytes());
            }
            None => b.push(0),
        }
        b.push(self.action.code());
        match &self.outcome {
            Outcome::Ok => b.push(0),
            Outcome::Denied => b.push(1),
            Outcome::Failed(k) => {
                b.push(2);
                put_lp16(&mut b, clip(k, 64).as_bytes());
            }
        }
        match &self.subject {
            Some((tag, detail)) => {
                b.push(1);
                b.extend_from_slice(tag.as_bytes());
                put_lp32(&mut b, detail);
            }
            None => b.push(0),
        }
        put_lp16(&mut b, clip(&self.note, 1024).as_bytes());
        // Governance block (docs/FORMAT.md "Governance block"): absent when empty, so
        // entries of contexts without roles on vaults without a policy keep the v1 bytes.
        if !self.roles.is_empty() || self.purpose_code.is_some() || self.policy_version > 0 {
            b.push(1);
            b.extend_from_slice(&self.policy_version.to_be_bytes());
            let n = self.roles.len().min(crate::context::MAX_ROLES);
            b.push(n as u8);
            for r in &self.roles[..n] {
                put_lp16(&mut b, r.as_bytes());
            }
            match &self.purpose_code {
                Some(c) => {
                    b.push(1);
                    put_lp16(&mut b, c.as_bytes());
                }
                None => b.push(0),
            }
        }
        b
    }
}

/// Seals a target under a subject's audit key. AAD binds the vault and the pseudonym;
/// the entry's own seal binds the sequence number.
pub(crate) fn seal_target(
    target_key: &XAeadKey,
    vault_id: &crate::VaultId,
    tag: &SubjectTag,
    t: &Target,
) -> Vec<u8> {
    let mut pt = Zeroizing::new(Vec::with_capacity(128));
    put_lp16(&mut pt, t.subject.as_bytes());
    put_lp16(&mut pt, t.collection.as_deref().unwrap_or("").as_bytes());
    put_lp16(&mut pt, t.record_id.as_deref().unwrap_or("").as_bytes());
    let n = t.fields.len().min(u16::MAX as usize);
    pt.extend_from_slice(&(n as u16).to_be_bytes());
    for f in &t.fields[..n] {
        put_lp16(&mut pt, f.as_bytes());
    }
    target_key.seal(&target_aad(vault_id, tag), &pt)
}

fn target_aad(vault_id: &crate::VaultId, tag: &SubjectTag) -> Vec<u8> {
    let mut aad = b"medvault/v1/log-target".to_vec();
    aad.push(ENTRY_VERSION);
    aad.extend_from_slice(vault_id.as_bytes());
    aad.extend_from_slice(tag.as_bytes());
    aad
}

/// Opens a target sealed by [`seal_target`].
pub(crate) fn open_target(
    target_key: &XAeadKey,
    vault_id: &crate::VaultId,
    tag: &SubjectTag,
    sealed: &[u8],
) -> Result<Target> {
    let pt = target_key
        .open(&target_aad(vault_id, tag), sealed)
        .ok_or_else(|| Error::integrity(Structure::LogTarget, "authentication failed"))?;
    parse_target(&pt)
}

/// Parses an opened target (the plaintext of [`seal_target`]). [`Error::Integrity`] when
/// malformed.
pub(crate) fn parse_target(pt: &[u8]) -> Result<Target> {
    let mut r = Reader::new(pt, Structure::LogTarget);
    let subject = r.str16()?.to_owned();
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let collection = opt(r.str16()?);
    let record_id = opt(r.str16()?);
    let n = r.u16()? as usize;
    let mut fields = Vec::with_capacity(n.min(r.remaining() / 2));
    for _ in 0..n {
        fields.push(r.str16()?.to_owned());
    }
    r.finish()?;
    Ok(Target {
        subject,
        collection,
        record_id,
        fields,
    })
}

/// A decoded body; the target still sealed.
pub(crate) struct Body {
    pub entry: LogEntry,
    pub sealed_target: Option<Vec<u8>>,
}

pub(crate) fn decode_body(seq: u64, pt: &[u8]) -> Result<Body> {
    let mut r = Reader::new(pt, Structure::LogEntry);
    let time_ms = r.u64()?;
    let actor = r.str16()?.to_owned();
    let purpose = Purpose::from_code(r.u8()?)
        .ok_or_else(|| Error::integrity(Structure::LogEntry, "body: unknown purpose"))?;
    let reason = match r.u8()? {
        0 => None,
        1 => Some(r.str16()?.to_owned()),
        _ => {
            return Err(Error::integrity(
                Structure::LogEntry,
                "body: bad reason flag",
            ));
        }
    };
    let action = Action::from_code(r.u8()?)
        .ok_or_else(|| Error::integrity(Structure::LogEntry, "body: unknown action"))?;
    let outcome = match r.u8()? {
        0 => Outcome::Ok,
        1 => Outcome::Denied,
        2 => Outcome::Failed(r.str16()?.to_owned()),
        _ => return Err(Error::integrity(Structure::LogEntry, "body: bad outcome")),
    };
    let (subject_pseudonym, sealed_target) = match r.u8()? {
        0 => (None, None),
        1 => {
            let tag = SubjectTag::from(r.array::<16>()?);
            (Some(tag), Some(r.lp32(MAX_BODY)?.to_vec()))
        }
        _ => {
            return Err(Error::integrity(
                Structure::LogEntry,
                "body: bad subject flag",
            ));
        }
    };
    let note = r.str16()?.to_owned();
    let (mut roles, mut purpose_code, mut policy_version) = (Vec::new(), None, 0);
    if r.remaining() > 0 {
        if r.u8()? != 1 {
            return Err(Error::integrity(
                Structure::LogEntry,
                "body: bad governance block",
            ));
        }
        policy_version = r.u32()?;
        let n = r.u8()? as usize;
        if n > crate::context::MAX_ROLES {
            return Err(Error::integrity(
                Structure::LogEntry,
                "body: too many roles",
            ));
        }
        for _ in 0..n {
            roles.push(r.str16()?.to_owned());
        }
        purpose_code = match r.u8()? {
            0 => None,
            1 => Some(r.str16()?.to_owned()),
            _ => {
                return Err(Error::integrity(
                    Structure::LogEntry,
                    "body: bad purpose-code flag",
                ));
            }
        };
        // Canonical form: the encoder omits an empty block.
        if roles.is_empty() && purpose_code.is_none() && policy_version == 0 {
            return Err(Error::integrity(
                Structure::LogEntry,
                "body: empty governance block",
            ));
        }
    }
    r.finish()?;
    Ok(Body {
        entry: LogEntry {
            seq,
            time_ms,
            actor,
            purpose,
            reason,
            action,
            outcome,
            subject_pseudonym,
            target: None,
            note,
            roles,
            purpose_code,
            policy_version,
        },
        sealed_target,
    })
}

/// A fixed clock for the golden-file tests, compiled only into this crate's own unit
/// tests: while set on the current thread, [`now_ms`] returns it.
#[cfg(test)]
pub(crate) mod test_clock {
    use std::cell::Cell;

    thread_local! {
        static NOW: Cell<Option<u64>> = const { Cell::new(None) };
    }

    pub(crate) fn get() -> Option<u64> {
        NOW.with(Cell::get)
    }

    /// Sets the clock for the current thread until the guard drops.
    pub(crate) fn set(ms: u64) -> Guard {
        NOW.with(|n| n.set(Some(ms)));
        Guard(())
    }

    /// Clears the clock on drop.
    pub(crate) struct Guard(());

    impl Drop for Guard {
        fn drop(&mut self) {
            NOW.with(|n| n.set(None));
        }
    }
}
