//! Retention of the access log: a retention period in the vault's settings, a prune that
//! drops whole log segments older than it and leaves a verifiable prune record, and legal
//! holds that stop it (docs/BACKUP.md "Retention"; bytes in docs/FORMAT.md "Vault
//! settings", "Prune record", "Legal hold").
//!
//! The prune record lives twice: in the record store (`"zprune"`, under the state digest,
//! read at open to know where the chain starts) and as the note of the `prune` log entry
//! (chained). `verify` walks the chain from the prune point and checks that both agree,
//! so altering either is detected: the first by the state digest, the second by the
//! chain, and a mismatch between them by the cross-check.

use serde::Serialize;

use super::commit::Flush;
use super::{LogQuery, Vault, lock};
use crate::audit::{Action, Outcome, PendingEntry, hex};
use crate::codec::Reader;
use crate::context::{AccessContext, MAX_REASON_LEN};
use crate::error::{Error, Existing, InputKind, Result, Structure};
use crate::keyspace;
use crate::logstore::{LOG_DIR, parse_segment_name};
use crate::storage::{WriteBatch, prefix_end};

/// Default retention of the access log, in days (one year: the upper end of what the
/// CNIL recommends for access traces, "6 months to 1 year").
pub const DEFAULT_RETENTION_DAYS: u32 = 365;
const PRUNE_VERSION: u8 = 1;
const HOLD_VERSION: u8 = 1;
const MS_PER_DAY: u64 = 86_400_000;

/// What [`Vault::prune_log`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// The first entry the log keeps (the prune point) after this call.
    pub first_kept: u64,
    /// Segments deleted by this call.
    pub segments_dropped: u64,
    /// Entries before `first_kept` that this call dropped.
    pub entries_dropped: u64,
    /// The retention period applied, in days.
    pub retention_days: u32,
    /// Entries older than the period were kept because of these legal holds (nothing
    /// is pruned while one exists).
    pub held_by: Vec<String>,
    /// The oldest break-the-glass access still waiting for its review, if it stopped
    /// the prune (its segment and every later one are kept).
    pub kept_for_review: Option<u64>,
}

/// A legal hold, as [`Vault::legal_holds`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LegalHold {
    /// The hold's name (1..=64 bytes of `A-Z a-z 0-9 . _ -`), e.g. a case number.
    pub name: String,
    /// When it was set (ms since the Unix epoch, UTC).
    pub set_at_ms: u64,
    /// Why (as given when set; at most 1024 bytes).
    pub reason: String,
}

fn validate_hold_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            InputKind::Backup,
            "a legal hold's name is 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

fn hold_key(name: &str) -> Vec<u8> {
    let mut k = vec![keyspace::LEGAL_HOLD_PREFIX];
    k.extend_from_slice(name.as_bytes());
    k
}

/// The prune record: `u8 version (1) || u64 first_kept || link[32] (of entry
/// first_kept - 1) || u64 pruned_at_ms || u64 entry_seq (of the prune entry)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PrunePoint {
    first_kept: u64,
    link: [u8; 32],
    pruned_at_ms: u64,
    entry_seq: u64,
}

impl PrunePoint {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(1 + 8 + 32 + 8 + 8);
        b.push(PRUNE_VERSION);
        b.extend_from_slice(&self.first_kept.to_be_bytes());
        b.extend_from_slice(&self.link);
        b.extend_from_slice(&self.pruned_at_ms.to_be_bytes());
        b.extend_from_slice(&self.entry_seq.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b, Structure::PruneRecord);
        let v = r.u8()?;
        if v != PRUNE_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "prune record",
                version: v,
            });
        }
        let p = PrunePoint {
            first_kept: r.u64()?,
            link: r.array()?,
            pruned_at_ms: r.u64()?,
            entry_seq: r.u64()?,
        };
        r.finish()?;
        Ok(p)
    }

    /// The prune entry's note: what `verify` compares with the stored record.
    fn note(&self, dropped: u64, days: u32) -> String {
        format!(
            "prune record: first_kept={} link={} entries_dropped={dropped} retention_days={days}",
            self.first_kept,
            hex(&self.link)
        )
    }
}

impl Vault {
    fn prune_point(&self) -> Result<Option<PrunePoint>> {
        match self.storage.get(keyspace::PRUNE_POINT)? {
            None => Ok(None),
            Some(b) => PrunePoint::decode(&b).map(Some),
        }
    }

    /// Sets the committer's log start from the stored prune record (at open).
    pub(super) fn load_log_start(&self) -> Result<()> {
        if let Some(p) = self.prune_point()? {
            self.committer.set_log_start(Some((p.first_kept, p.link)));
        }
        Ok(())
    }

    /// Part of `verify`: the stored prune record and the chained `prune` entry agree,
    /// and the log starts where they say. [`Error::Integrity`] ([`Structure::PruneRecord`])
    /// otherwise.
    pub(super) fn check_prune_record(&self) -> Result<()> {
        let Some(p) = self.prune_point()? else {
            return Ok(());
        };
        let bad = |what: &'static str| Error::integrity(Structure::PruneRecord, what);
        if self.committer.log_start() != (p.first_kept, p.link) {
            return Err(bad("the log does not start where the prune record says"));
        }
        let mut found = None;
        self.log
            .for_each(self.committer.log(), p.entry_seq, |e, _| {
                found = Some(e);
                Ok(false)
            })?;
        let e = found.ok_or_else(|| bad("its log entry is missing"))?;
        let want = format!(
            "prune record: first_kept={} link={} ",
            p.first_kept,
            hex(&p.link)
        );
        if e.seq != p.entry_seq || e.action != Action::Prune || !e.note.starts_with(&want) {
            return Err(bad(
                "does not match its log entry (the stored record or the entry was altered)",
            ));
        }
        Ok(())
    }

    /// The access-log retention period in days ([`DEFAULT_RETENTION_DAYS`] unless set).
    /// Not logged. Errors: [`Error::Integrity`] for a malformed setting; [`Error::Storage`].
    pub fn retention_days(&self) -> Result<u32> {
        match self.storage.get(keyspace::RETENTION)? {
            None => Ok(DEFAULT_RETENTION_DAYS),
            Some(b) => {
                let mut r = Reader::new(&b, Structure::PruneRecord);
                let d = r.u32()?;
                r.finish()?;
                Ok(d)
            }
        }
    }

    /// Sets the access-log retention period to `days` (1..=36500). Logged as
    /// `policy_change` with the new period. Under an access policy, needs the `audit`
    /// capability. Errors: [`Error::InvalidInput`] ([`InputKind::Backup`]) out of range;
    /// [`Error::AccessDenied`]; [`Error::Storage`].
    pub fn set_retention_days(&self, ctx: &AccessContext, days: u32) -> Result<()> {
        self.guarded(ctx, Action::PolicyChange, None, || {
            self.require_capability(ctx, "audit")?;
            if !(1..=36_500).contains(&days) {
                return Err(Error::invalid(
                    InputKind::Backup,
                    "a retention period is 1 to 36500 days",
                ));
            }
            Ok(())
        })?;
        let mut batch = WriteBatch::new();
        batch.put(keyspace::RETENTION.to_vec(), days.to_be_bytes().to_vec());
        let e = super::commit::noted(ctx, Action::PolicyChange, format!("retention_days={days}"));
        self.commit(batch, vec![e], &[], Flush::Write)?;
        Ok(())
    }

    /// The checks of setting or lifting a hold, refused and logged by `guarded`: the
    /// `audit` capability, the hold name, a reason of 1 to 1024 bytes (`no_reason` says
    /// what was wrong otherwise).
    fn check_hold_request(
        &self,
        ctx: &AccessContext,
        name: &str,
        reason: &str,
        no_reason: &'static str,
    ) -> Result<()> {
        self.guarded(ctx, Action::LegalHold, None, || {
            self.require_capability(ctx, "audit")?;
            validate_hold_name(name)?;
            if reason.trim().is_empty() || reason.len() > MAX_REASON_LEN {
                return Err(Error::invalid(InputKind::Context, no_reason));
            }
            Ok(())
        })
    }

    /// Sets a legal hold named `name` with `reason`: while any hold exists, no access-log
    /// entry is pruned. Logged as `legal_hold` ("set NAME"). Under an access policy,
    /// needs the `audit` capability. Errors: [`Error::InvalidInput`] (bad name, empty or
    /// over-long reason); [`Error::AlreadyExists`] when a hold of that name exists;
    /// [`Error::AccessDenied`]; [`Error::Storage`].
    pub fn set_legal_hold(&self, ctx: &AccessContext, name: &str, reason: &str) -> Result<()> {
        self.check_hold_request(
            ctx,
            name,
            reason,
            "a legal hold needs a reason of 1 to 1024 bytes",
        )?;
        let batch = |set_at_ms: u64| {
            let mut v = vec![HOLD_VERSION];
            v.extend_from_slice(&set_at_ms.to_be_bytes());
            v.extend_from_slice(reason.as_bytes());
            let mut batch = WriteBatch::new();
            batch.put(hold_key(name), v);
            batch
        };
        self.commit_hold(ctx, name, reason, "set", batch, |held| match held {
            true => Err(Error::AlreadyExists(Existing::LegalHold(name.to_owned()))),
            false => Ok(()),
        })
    }

    /// Lifts the legal hold `name`, with `reason`. Logged as `legal_hold` ("lift
    /// NAME"). Errors: [`Error::NotFound`] when no such hold; as
    /// [`Vault::set_legal_hold`].
    pub fn lift_legal_hold(&self, ctx: &AccessContext, name: &str, reason: &str) -> Result<()> {
        self.check_hold_request(
            ctx,
            name,
            reason,
            "lifting a legal hold needs a reason of 1 to 1024 bytes",
        )?;
        let batch = |_| {
            let mut batch = WriteBatch::new();
            batch.delete(hold_key(name));
            batch
        };
        self.commit_hold(ctx, name, reason, "lift", batch, |held| match held {
            true => Ok(()),
            false => Err(Error::NotFound),
        })
    }

    /// Commits a hold's change (`batch`, given the entry's time in ms) with its
    /// `legal_hold` entry ("`verb` NAME", `reason`), after `check` accepts, under the
    /// commit lock, whether the hold exists; a refusal is logged as a failure.
    fn commit_hold(
        &self,
        ctx: &AccessContext,
        name: &str,
        reason: &str,
        verb: &str,
        batch: impl FnOnce(u64) -> WriteBatch,
        check: impl FnOnce(bool) -> Result<()>,
    ) -> Result<()> {
        let mut e = PendingEntry::new(ctx, Action::LegalHold, Outcome::Ok);
        e.reason = Some(reason.to_owned());
        e.note = format!("{verb} {name}");
        let r = self.commit_with(
            batch(e.time_ms),
            vec![e],
            &[],
            &[],
            Flush::Write,
            None,
            |_, _| check(self.storage.get(&hold_key(name))?.is_some()),
        );
        if r.is_err() {
            self.log_failure(ctx, Action::LegalHold, None, &r);
        }
        r.map(|_| ())
    }

    /// The legal holds in force, by name. Logged as `search`. Under an access policy,
    /// needs the `audit` capability.
    pub fn legal_holds(&self, ctx: &AccessContext) -> Result<Vec<LegalHold>> {
        let out = self.guarded(ctx, Action::Search, None, || {
            self.require_capability(ctx, "audit")?;
            self.holds()
        })?;
        self.log_only(
            ctx,
            Action::Search,
            format!("legal holds: {}", out.len()),
            Flush::Read,
        )?;
        Ok(out)
    }

    fn holds(&self) -> Result<Vec<LegalHold>> {
        let start = [keyspace::LEGAL_HOLD_PREFIX];
        let end = prefix_end(&start);
        let mut out = Vec::new();
        for kv in self.storage.scan(&start, end.as_deref()) {
            let (k, v) = kv?;
            let bad = || Error::integrity(Structure::PruneRecord, "a legal hold is malformed");
            let name = std::str::from_utf8(&k[1..]).map_err(|_| bad())?.to_owned();
            if v.len() < 9 || v[0] != HOLD_VERSION {
                return Err(bad());
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&v[1..9]);
            out.push(LegalHold {
                name,
                set_at_ms: u64::from_be_bytes(t),
                reason: String::from_utf8_lossy(&v[9..]).into_owned(),
            });
        }
        Ok(out)
    }

    /// Prunes the access log: drops every whole segment (never the last) all of whose
    /// entries are older than the retention period at `now_ms` (ms since the Unix
    /// epoch; `None`: now), unless a legal hold exists (then nothing) or a
    /// break-the-glass access in it still awaits its review (then it and everything after
    /// are kept). Commits first the prune record — the first kept entry and the chain
    /// link before it, in the record store and as the `prune` entry's note — then
    /// deletes the segments; `verify` then walks the chain from the prune point
    /// (docs/BACKUP.md "Retention"). Archive the log (JSON Lines or FHIR AuditEvent
    /// export) before pruning. Under an access policy, needs the `audit` capability.
    ///
    /// Errors: [`Error::InvalidInput`] for a vault whose log store cannot drop segments
    /// (in memory); [`Error::Integrity`] from reading the log; [`Error::Storage`].
    pub fn prune_log(&self, ctx: &AccessContext, now_ms: Option<u64>) -> Result<PruneReport> {
        let report = self.guarded(ctx, Action::Prune, None, || {
            self.require_capability(ctx, "audit")?;
            let _m = lock(&self.maintenance_lock);
            self.prune_inner(ctx, now_ms.unwrap_or_else(crate::audit::now_ms))
        })?;
        Ok(report)
    }

    fn prune_inner(&self, ctx: &AccessContext, now: u64) -> Result<PruneReport> {
        let dir = self
            .path()
            .ok_or_else(|| Error::invalid(InputKind::Backup, "prune needs a vault in a directory"))?
            .join(LOG_DIR);
        let days = self.retention_days()?;
        let (start, _) = self.committer.log_start();
        let mut report = PruneReport {
            first_kept: start,
            segments_dropped: 0,
            entries_dropped: 0,
            retention_days: days,
            held_by: Vec::new(),
            kept_for_review: None,
        };
        // Segments left by a prune interrupted after its record was committed.
        report.segments_dropped += self.committer.log().drop_before(start)?;
        let holds = self.holds()?;
        if !holds.is_empty() {
            report.held_by = holds.into_iter().map(|h| h.name).collect();
            self.log_only(
                ctx,
                Action::Prune,
                format!("prune refused: legal hold {}", report.held_by.join(",")),
                Flush::Write,
            )?;
            return Ok(report);
        }
        let cutoff = now.saturating_sub(u64::from(days).saturating_mul(MS_PER_DAY));
        let entries = self.collect_entries(&LogQuery::default())?;
        let review = crate::audit::report::pending(&entries, now, 0)
            .iter()
            .map(|e| e.seq)
            .min();
        let mut segs: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(|e| Error::Storage(e.into()))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(parse_segment_name))
            .filter(|&s| s >= start)
            .collect();
        segs.sort_unstable();
        let mut first_kept = start;
        for w in segs.windows(2) {
            let (s, next) = (w[0], w[1]);
            if s != first_kept {
                break;
            }
            let old = entries
                .iter()
                .filter(|e| e.seq >= s && e.seq < next)
                .all(|e| e.time_ms < cutoff);
            if !old {
                break;
            }
            if review.is_some_and(|r| r < next) {
                report.kept_for_review = review;
                break;
            }
            first_kept = next;
        }
        if first_kept == start {
            self.log_only(
                ctx,
                Action::Prune,
                format!("prune: nothing older than {days} days in whole segments"),
                Flush::Write,
            )?;
            return Ok(report);
        }
        let link = match self.committer.log().read(first_kept - 1)?.next() {
            Some(Ok((f, _))) if f.seq == first_kept - 1 => f.link,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Error::integrity(
                    Structure::LogSegment,
                    "the entry before the prune point is missing",
                ));
            }
        };
        let dropped = first_kept - start;
        let mut point = PrunePoint {
            first_kept,
            link,
            pruned_at_ms: now,
            entry_seq: 0,
        };
        let e = super::commit::noted(ctx, Action::Prune, String::new());
        self.commit_with(
            WriteBatch::new(),
            vec![e],
            &[],
            &[],
            Flush::Write,
            None,
            |batch, entries| {
                point.entry_seq = self.next_log_seq();
                batch.put(keyspace::PRUNE_POINT.to_vec(), point.encode());
                for e in entries {
                    e.note = point.note(dropped, days);
                }
                Ok(())
            },
        )?;
        // The record durable before any segment goes: a crash then leaves the segments,
        // which the next prune drops, never a log start without its record.
        self.group_flush()?;
        self.committer.set_log_start(Some((first_kept, link)));
        report.segments_dropped += self.committer.log().drop_before(first_kept)?;
        report.first_kept = first_kept;
        report.entries_dropped = dropped;
        Ok(report)
    }
}
