//! Access governance on the façade: the policy decision ([`Vault::authorize`]),
//! installing or changing the policy ([`Vault::set_policy`]), and the policy-version
//! check that catches a rolled-back or deleted policy (docs/POLICY.md,
//! docs/FORMAT.md "Access policy").

use std::sync::Arc;

use super::commit::{Flush, noted};
use super::{LogQuery, Vault};
use crate::audit::Action;
use crate::audit::alerts::Alert;
use crate::audit::fhir_audit_event::audit_event;
use crate::audit::report::{AccessReport, EmergencyAccess, REVIEW_NOTE, Verdict, pending};
use crate::context::AccessContext;
use crate::error::{Denial, Error, InputKind, Result, Structure};
use crate::keyspace;
use crate::policy::{FieldFilter, Invocation, Policy, seal_policy};
use crate::storage::WriteBatch;

/// The policy's decision for one caller's operation ([`Vault::decide`]): `None` inside
/// when no policy is installed. Its field is private to this module, so the only way to
/// get one is the policy decision itself.
pub(super) struct Decision(Option<Invocation>);

/// Whom record fields are opened for: an argument of [`Vault::with_opened`], the one
/// function that decrypts stored records, so that no read path can open a field without
/// saying whose read it is (docs/POLICY.md "Where the policy is enforced").
pub(super) enum OpenFor<'a> {
    /// A caller's read, narrowed to what the policy grants its purpose: a collection
    /// it may not read is refused ([`Error::AccessDenied`] naming the rule), a partial
    /// grant opens only the granted fields (the others are never decrypted).
    Caller(&'a Decision),
    /// The vault's own work, whose plaintext never reaches a caller: data-key rotation
    /// re-sealing, index builds and checks, the match test of a lookup on fields the
    /// policy was first checked to grant.
    Vault,
    /// The research export guard (`Vault::research_export`, docs/RESEARCH.md): every
    /// field is opened after the guard's own checks (purpose, role, authorization,
    /// specification), and what reaches the caller is only the minimized, pseudonymized
    /// export.
    ResearchExport,
}

impl Decision {
    /// Refused unless every field of `fields` may be written in `collection` (`None`:
    /// the whole record, as a delete needs).
    pub(super) fn check_write(&self, collection: &str, fields: Option<&[String]>) -> Result<()> {
        match &self.0 {
            None => Ok(()),
            Some(inv) => inv.check_write(collection, fields),
        }
    }

    /// Refused unless the purpose may write something (of some collection).
    pub(super) fn check_writes_something(&self) -> Result<()> {
        match &self.0 {
            None => Ok(()),
            Some(inv) => inv.check_writes_something(),
        }
    }

    /// Refused unless the purpose may erase a subject.
    pub(super) fn check_erase(&self) -> Result<()> {
        match &self.0 {
            None => Ok(()),
            Some(inv) => inv.check_erase(),
        }
    }

    /// Refused unless the purpose may read something of `collection` (`None`: of some
    /// collection).
    pub(super) fn check_read(&self, collection: Option<&str>) -> Result<()> {
        match (&self.0, collection) {
            (None, _) => Ok(()),
            (Some(inv), Some(c)) => inv.read_filter(c).map(|_| ()),
            (Some(inv), None) => inv.check_reads_something(),
        }
    }

    /// The read filter of `collection`: [`FieldFilter::All`] without a policy.
    pub(super) fn read_filter(&self, collection: &str) -> Result<FieldFilter> {
        match &self.0 {
            None => Ok(FieldFilter::All),
            Some(inv) => inv.read_filter(collection),
        }
    }
}

impl OpenFor<'_> {
    /// The fields to open of a record of `collection` when `want` are asked for
    /// (`None`: all): `Ok(None)` to open `want` unchanged, `Ok(Some(names))` to open only
    /// `names`. [`Error::AccessDenied`] naming the rule when the collection may not be
    /// read, or (`field-not-granted`) when fields were named and none is granted.
    pub(super) fn narrow(
        &self,
        collection: &str,
        want: Option<&[&str]>,
    ) -> Result<Option<Vec<String>>> {
        let OpenFor::Caller(Decision(Some(inv))) = self else {
            return Ok(None);
        };
        match (inv.read_filter(collection)?, want) {
            (FieldFilter::All, _) => Ok(None),
            (FieldFilter::Only(g), Some(w)) => {
                let v: Vec<String> = w
                    .iter()
                    .filter(|f| g.contains(**f))
                    .map(|f| (*f).to_owned())
                    .collect();
                if v.is_empty() && !w.is_empty() {
                    return Err(Error::AccessDenied(Denial::Policy {
                        rule: "field-not-granted".to_owned(),
                        version: inv.version(),
                    }));
                }
                Ok(Some(v))
            }
            (FieldFilter::Only(g), None) => Ok(Some(g.into_iter().collect())),
        }
    }
}

impl Vault {
    /// The policy decision for `ctx` (role, purpose of use: [`Vault::authorize`]) that
    /// reads, writes, deletes and erasures then consult per collection and field.
    pub(super) fn decide(&self, ctx: &AccessContext) -> Result<Decision> {
        self.authorize(ctx).map(Decision)
    }
}

impl Vault {
    /// The policy decision's first step for `ctx`: `Ok(None)` when no policy is
    /// installed, the invocation (purpose allowed for one of the roles) otherwise.
    /// [`Error::AccessDenied`] naming the rule when refused.
    pub(crate) fn authorize(&self, ctx: &AccessContext) -> Result<Option<Invocation>> {
        match self.policy.get() {
            None => Ok(None),
            Some((v, p)) => p.invoke(v, ctx).map(Some),
        }
    }

    /// Refused with [`Error::AccessDenied`] (rule `capability`) unless no policy is
    /// installed or a role of `ctx` holds administration capability `cap` (`policy`,
    /// `keys`, `audit`).
    pub(crate) fn require_capability(&self, ctx: &AccessContext, cap: &str) -> Result<()> {
        match self.policy.get() {
            None => Ok(()),
            Some((v, p)) => p.has_capability(v, ctx, cap),
        }
    }

    /// The access policy in force and its version, `None` when none is installed.
    pub fn policy(&self) -> Option<(u32, Policy)> {
        self.policy.get().map(|(v, p)| (v, (*p).clone()))
    }

    /// Installs `policy` as the next version (1 for the first), sealed in the vault
    /// (docs/FORMAT.md "Access policy") in the same atomic commit as its
    /// [`Action::PolicyChange`] log entry. Once a policy is installed, `ctx` needs a role
    /// with the `policy` capability (the default clinic policy: `administration`); there
    /// is no way back to a vault without a policy. Returns the new version. Fails with
    /// [`Error::InvalidInput`] for an invalid policy, [`Error::AccessDenied`].
    pub fn set_policy(&self, ctx: &AccessContext, policy: Policy) -> Result<u32> {
        let version = self.guarded(ctx, Action::PolicyChange, None, || {
            policy.validate()?;
            self.require_capability(ctx, "policy")?;
            let policy = Arc::new(policy);
            let mut version = 0;
            let mut e = noted(ctx, Action::PolicyChange, "");
            e.note = format!(
                "policy {}",
                policy.name.chars().take(200).collect::<String>()
            );
            let mut previous = None;
            let r = self.commit_with(
                WriteBatch::new(),
                vec![e],
                &[],
                &[],
                Flush::Write,
                None,
                |batch, entries| {
                    // Under the commit lock: no concurrent change, and every later entry
                    // is stamped with the new version.
                    previous = self.policy.get();
                    version = previous.as_ref().map_or(0, |(v, _)| *v) + 1;
                    let sealed = seal_policy(
                        &self.vault_secret,
                        self.vault_id.as_bytes(),
                        version,
                        &policy,
                    );
                    batch.put(keyspace::POLICY.to_vec(), sealed);
                    for e in entries.iter_mut() {
                        e.policy_version = version;
                        e.note = format!("version {version}; {}", e.note);
                    }
                    self.policy.set(Some((version, policy.clone())));
                    Ok(())
                },
            );
            if let Err(e) = r {
                if version > 0 {
                    self.policy.set(previous);
                }
                return Err(e);
            }
            Ok(version)
        })?;
        Ok(version)
    }

    /// Checks the stored policy against the log: the last entry records the version in
    /// force when it was committed, so the stored version must equal it. Fails with
    /// [`Error::Integrity`] ([`Structure::Policy`]) when the policy was rolled back to an
    /// older sealed version, deleted, or is newer than the log (a log cut at the tail).
    ///
    /// A last entry that does not open (tampered: `verify` names it) is skipped: the
    /// newest of the previous 64 entries that opens gives a lower bound instead (versions
    /// never decrease), so a rollback is still caught.
    ///
    /// Cost: the last entries' bytes, found backward from the log's end
    /// ([`crate::logstore::LogStore::read_back`]), never a scan of the log; only when
    /// those do not open does it read forward from the oldest entry it may still use.
    pub(crate) fn check_policy_version(&self) -> Result<()> {
        let n = self.committer.end();
        let oldest = n.saturating_sub(64);
        let back = self
            .committer
            .log()
            .read_back((n - oldest) as usize)
            .unwrap_or_default();
        let mut below = n;
        for f in &back {
            if f.seq + 1 != below || f.seq < oldest {
                break;
            }
            below = f.seq;
            if let Ok(e) = self.log.entry_of(f) {
                return self.compare_policy_version(e.policy_version, f.seq + 1 == n);
            }
        }
        for seq in (oldest..below).rev() {
            let mut logged = None;
            let r = self.log.for_each(self.committer.log(), seq, |e, _| {
                logged = Some(e.policy_version);
                Ok(false)
            });
            match (r, logged) {
                (Ok(()), Some(v)) => return self.compare_policy_version(v, seq + 1 == n),
                // Missing or tampered: the log's own checks report it.
                _ => continue,
            }
        }
        Ok(())
    }

    /// [`Vault::check_policy_version`] against a version `logged` by an entry; `last`:
    /// that entry is the log's last (the versions must then be equal).
    fn compare_policy_version(&self, logged: u32, last: bool) -> Result<()> {
        let stored = self.policy.version();
        match stored.cmp(&logged) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater if !last => Ok(()),
            std::cmp::Ordering::Less if stored == 0 => Err(Error::integrity(
                Structure::Policy,
                "missing, but the log records an installed policy (deleted)",
            )),
            std::cmp::Ordering::Less => Err(Error::integrity(
                Structure::Policy,
                "older than the version the log records (rolled back)",
            )),
            std::cmp::Ordering::Greater => Err(Error::integrity(
                Structure::Policy,
                "newer than the version the log records",
            )),
        }
    }
}

impl Vault {
    fn thresholds(&self) -> (crate::policy::AlertThresholds, u64) {
        match self.policy.get() {
            Some((_, p)) => (p.alerts.clone(), p.review_delay_hours),
            None => {
                let d = Policy::default_clinic();
                (d.alerts, d.review_delay_hours)
            }
        }
    }

    /// The break-the-glass (ETREAT) accesses not yet reviewed, oldest first, each
    /// flagged `overdue` when older than the policy's `review_delay_hours` at `now_ms`
    /// (ms since the Unix epoch; `None`: now). Needs the `audit` capability under a
    /// policy. Logged as `search`.
    pub fn review_queue(
        &self,
        ctx: &AccessContext,
        now_ms: Option<u64>,
    ) -> Result<Vec<EmergencyAccess>> {
        let (_, delay_h) = self.thresholds();
        let out = self.guarded(ctx, Action::Search, None, || {
            self.require_capability(ctx, "audit")?;
            let all = self.collect_entries(&LogQuery::default())?;
            Ok(pending(
                &all,
                now_ms.unwrap_or_else(now),
                delay_h.saturating_mul(3_600_000),
            ))
        })?;
        self.log_only(
            ctx,
            Action::Search,
            format!("review queue: {} pending", out.len()),
            Flush::Read,
        )?;
        Ok(out)
    }

    /// Closes the review of the break-the-glass access at log entry `seq` with
    /// `verdict`; `comment` (at most 1024 bytes) is recorded as the review entry's
    /// reason. The review is an [`Action::Review`] entry naming the patient (so it shows
    /// in their access report). Needs the `audit` capability under a policy. Fails with
    /// [`Error::NotFound`] when `seq` is not a pending emergency access.
    pub fn close_review(
        &self,
        ctx: &AccessContext,
        seq: u64,
        verdict: Verdict,
        comment: &str,
    ) -> Result<()> {
        self.guarded(ctx, Action::Review, None, || {
            self.require_capability(ctx, "audit")?;
            let all = self.collect_entries(&LogQuery::default())?;
            let p = pending(&all, 0, u64::MAX);
            let item = p.iter().find(|a| a.seq == seq).ok_or(Error::NotFound)?;
            let reviewed = all.iter().find(|e| e.seq == seq).ok_or(Error::NotFound)?;
            let target = reviewed.target.clone();
            let tag = reviewed.subject_pseudonym;
            let keys = match &item.subject {
                Some(s) => self.keyring.load(&self.subject_tag(s), self.read_fn())?,
                None => None,
            };
            let mut e = self.entry_for(
                ctx,
                Action::Review,
                crate::audit::Outcome::Ok,
                keys.as_deref(),
                tag,
                target.as_ref(),
            );
            e.note = format!("{REVIEW_NOTE}{seq}: {}", verdict.name());
            let c = comment.trim();
            if !c.is_empty() {
                e.reason = Some(c.chars().take(1024).collect());
            }
            let subs: Vec<&Arc<crate::keyring::SubjectKeys>> = keys.iter().collect();
            self.commit(WriteBatch::new(), vec![e], &subs, Flush::Write)?;
            Ok(())
        })
    }

    /// The access report of patient `subject` (GDPR art. 15, L.1111-19): every access
    /// to their records in the log. Itself a logged access (an `export` entry naming the
    /// patient, a disclosure to them). Needs the `audit` capability under a policy
    /// (the default clinic policy: `administration`, `dpo`). Fails with
    /// [`Error::NotFound`] for an unknown or erased subject: an erased subject's entries
    /// no longer link to an identity, by design.
    pub fn access_report(&self, ctx: &AccessContext, subject: &str) -> Result<AccessReport> {
        let tag = self.subject_tag(subject);
        let (report, keys) = self.guarded(ctx, Action::Export, Some(tag), || {
            crate::record::validate_id("subject", subject)?;
            self.require_capability(ctx, "audit")?;
            let keys = self
                .keyring
                .load(&tag, self.read_fn())?
                .ok_or(Error::NotFound)?;
            let all = self.collect_entries(&LogQuery {
                subject: Some(subject.to_owned()),
                ..LogQuery::default()
            })?;
            Ok((
                AccessReport::build(subject, *self.vault_id.as_bytes(), now(), all),
                keys,
            ))
        })?;
        let target = crate::audit::Target {
            subject: subject.to_owned(),
            ..Default::default()
        };
        let mut e = self.entry_for(
            ctx,
            Action::Export,
            crate::audit::Outcome::Ok,
            Some(&keys),
            Some(tag),
            Some(&target),
        );
        e.note = format!("access report: {} accesses", report.accesses.len());
        self.commit(WriteBatch::new(), vec![e], &[&keys], Flush::Read)?;
        Ok(report)
    }

    /// Runs the automated controls ([`crate::audit::alerts`]) over the whole log with the
    /// policy's thresholds (the default clinic policy's when none is installed). Needs the
    /// `audit` capability under a policy. Logged as `search`.
    pub fn alerts(&self, ctx: &AccessContext) -> Result<Vec<Alert>> {
        let (th, _) = self.thresholds();
        let out = self.guarded(ctx, Action::Search, None, || {
            self.require_capability(ctx, "audit")?;
            let all = self.collect_entries(&LogQuery::default())?;
            Ok(crate::audit::alerts::evaluate(&all, &th))
        })?;
        self.log_only(
            ctx,
            Action::Search,
            format!("alerts: {}", out.len()),
            Flush::Read,
        )?;
        Ok(out)
    }

    /// Writes the entries matching `q` that name a subject as NDJSON of FHIR R4
    /// AuditEvent resources following the IHE BALP profiles
    /// ([`crate::audit::fhir_audit_event`]). Logged as `export` (a disclosure of the
    /// log). Needs the `audit` capability under a policy. Returns the number of lines.
    pub fn audit_export_fhir(
        &self,
        ctx: &AccessContext,
        q: &LogQuery,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let events = self.guarded(ctx, Action::Export, None, || {
            self.require_capability(ctx, "audit")?;
            // The whole log, so that creation versus update is known for a range too.
            let all = self.collect_entries(&LogQuery::default())?;
            let created = crate::audit::report::creations(&all);
            let want_tag = q.subject.as_deref().map(|s| self.subject_tag(s));
            let mut events = Vec::new();
            for (e, c) in all.iter().zip(created) {
                let keep = crate::audit::report::is_access(e)
                    && want_tag.is_none_or(|t| e.subject_pseudonym == Some(t))
                    && q.actor.as_deref().is_none_or(|a| a == e.actor)
                    && q.purpose.is_none_or(|p| p == e.purpose)
                    && q.action.is_none_or(|a| a == e.action)
                    && q.since_ms.is_none_or(|t| e.time_ms >= t)
                    && q.until_ms.is_none_or(|t| e.time_ms < t);
                if keep {
                    events.push(audit_event(e, self.vault_id.as_bytes(), c));
                }
            }
            Ok(events)
        })?;
        self.log_only(
            ctx,
            Action::Export,
            format!(
                "access-log export (FHIR AuditEvent): {} entries",
                events.len()
            ),
            Flush::Read,
        )?;
        for ev in &events {
            serde_json::to_writer(&mut *out, ev)
                .map_err(|e| Error::invalid(InputKind::Output, format!("JSON: {e}")))?;
            out.write_all(b"\n")?;
        }
        Ok(events.len() as u64)
    }
}

fn now() -> u64 {
    crate::audit::now_ms()
}
