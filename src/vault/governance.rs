//! Access governance on the façade: the policy decision ([`Vault::authorize`]),
//! installing or changing the policy ([`Vault::set_policy`]), and the policy-version
//! check that catches a rolled-back or deleted policy (docs/POLICY.md,
//! docs/FORMAT.md "Access policy").

use std::sync::Arc;

use super::Vault;
use super::commit::{Flush, noted};
use crate::audit::Action;
use crate::context::AccessContext;
use crate::error::{Error, Result, Structure};
use crate::keyspace;
use crate::policy::{Invocation, Policy, seal_policy};
use crate::storage::WriteBatch;

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
                    let sealed = seal_policy(&self.vault_secret, &self.vault_id, version, &policy);
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
    pub(crate) fn check_policy_version(&self) -> Result<()> {
        let n = self.log.len();
        if n == 0 {
            return Ok(());
        }
        let mut logged = 0;
        self.log.for_each(self.storage.as_ref(), n - 1, |e, _| {
            logged = e.policy_version;
            Ok(false)
        })?;
        self.compare_policy_version(logged)
    }

    /// [`Vault::check_policy_version`] against a version `logged` by the log's last
    /// entry.
    pub(crate) fn compare_policy_version(&self, logged: u32) -> Result<()> {
        let stored = self.policy.version();
        match stored.cmp(&logged) {
            std::cmp::Ordering::Equal => Ok(()),
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
