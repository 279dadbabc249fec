//! Audit queries over the access log: `verify`, `checkpoint`, `audit_query` and the JSON
//! Lines export. Each is itself logged through the commit path (`commit.rs`).

use super::commit::Flush;
use super::{LogQuery, Vault};
use crate::audit::{Action, Checkpoint, LogEntry, open_target};
use crate::context::AccessContext;
use crate::error::{Error, InputKind, Result};

impl Vault {
    /// Walks the whole access log (docs/FORMAT.md "Access-log entry", docs/FORMAT.md
    /// "Log segment files"), the anchor and the record store's state digest
    /// (docs/DESIGN-storage.md) and, with a checkpoint (docs/FORMAT.md "Checkpoint"), checks
    /// that the log still extends it. Returns the number of entries verified (before this
    /// call's own `verify` entry is appended). Fails with [`Error::LogTampered`] naming
    /// the first bad sequence number and what is wrong with it; with
    /// [`Error::Integrity`] naming the anchor, the applied marker, or a record store that
    /// does not match the state digest (naming the record or subject entry by storage key
    /// hex, or "index entries").
    pub fn verify(&self, ctx: &AccessContext, checkpoint: Option<&Checkpoint>) -> Result<u64> {
        let n = self.guarded(ctx, Action::Verify, None, || {
            let n = self.log.verify(&self.committer, checkpoint)?;
            self.check_policy_version()?;
            self.check_prune_record()?;
            self.check_subject_entry_generations()?;
            Ok(n)
        })?;
        self.log_only(ctx, Action::Verify, format!("entries={n}"), Flush::Read)?;
        Ok(n)
    }

    /// Issues a checkpoint of the log (after appending the `checkpoint` entry) for an
    /// operator to keep outside the vault.
    pub fn checkpoint(&self, ctx: &AccessContext) -> Result<Checkpoint> {
        self.guarded(ctx, Action::Checkpoint, None, || Ok(()))?;
        self.log_only(ctx, Action::Checkpoint, "", Flush::Write)?;
        Ok(self.log.checkpoint(self.committer.head()))
    }

    /// Number of access-log entries.
    pub fn log_len(&self) -> u64 {
        self.committer.end()
    }

    /// Returns the access-log entries matching `q`, decoded; targets are shown for
    /// subjects still held (erased ones show only the pseudonym). The query is itself
    /// logged (`search`), after the results are gathered.
    pub fn audit_query(&self, ctx: &AccessContext, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let out = self.guarded(ctx, Action::Search, None, || {
            // Under a policy, reading the log (which names patients) is an audit task.
            self.require_capability(ctx, "audit")?;
            self.collect_entries(q)
        })?;
        self.log_only(
            ctx,
            Action::Search,
            format!("access-log query: {} entries", out.len()),
            Flush::Read,
        )?;
        Ok(out)
    }

    /// The entries matching `q`, decoded, targets opened where the subject's audit key
    /// is held. Not logged: the public callers log their own entry.
    pub(super) fn collect_entries(&self, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let want_tag = q.subject.as_deref().map(|s| self.subject_tag(s));
        {
            let vid = self.vault_id();
            let mut out = Vec::new();
            self.log.for_each(
                self.committer.log(),
                self.committer.log_start().0,
                |mut e, sealed| {
                    let keep = want_tag.is_none_or(|t| e.subject_pseudonym == Some(t))
                        && q.actor.as_deref().is_none_or(|a| a == e.actor)
                        && q.purpose.is_none_or(|p| p == e.purpose)
                        && q.action.is_none_or(|a| a == e.action)
                        && q.since_ms.is_none_or(|t| e.time_ms >= t)
                        && q.until_ms.is_none_or(|t| e.time_ms < t);
                    if !keep {
                        return Ok(true);
                    }
                    if let (Some(tag), Some(sealed)) = (e.subject_pseudonym, sealed)
                        && !sealed.is_empty()
                        && let Some(keys) = self.keyring.load(&tag, self.read_fn())?
                    {
                        // The entry itself was authenticated under the log key, so a
                        // target that does not open was sealed under the audit key of an
                        // earlier, erased incarnation of this subject id (same pseudonym,
                        // new keys): it stays unlinked, like any erased subject's.
                        e.target = match open_target(&keys.target, &vid, &tag, &sealed) {
                            Ok(t) => Some(t),
                            Err(Error::Integrity { .. }) => None,
                            Err(other) => return Err(other),
                        };
                    }
                    out.push(e);
                    Ok(true)
                },
            )?;
            Ok(out)
        }
    }

    /// Writes the entries matching `q` as JSON Lines (one [`LogEntry`] per line).
    /// Logged as `export`. Returns the number of lines.
    pub fn audit_export_jsonl(
        &self,
        ctx: &AccessContext,
        q: &LogQuery,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let entries = self.audit_query(ctx, q)?;
        self.log_only(
            ctx,
            Action::Export,
            format!("access-log export: {} entries", entries.len()),
            Flush::Read,
        )?;
        for entry in &entries {
            serde_json::to_writer(&mut *out, entry)
                .map_err(|e| Error::invalid(InputKind::Output, format!("JSON: {e}")))?;
            out.write_all(b"\n")?;
        }
        Ok(entries.len() as u64)
    }
}
