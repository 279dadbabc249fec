//! [`PgLog`]: the access log in table `log` (one row per frame, keyed by seq) and the two
//! anchor slots in table `anchor`.

use std::collections::VecDeque;
use std::sync::Arc;

use medvault::logstore::frame::{Decoded, decode_frame};
use medvault::logstore::{Frame, FrameIter, LogPos, LogStore, Recovered};
use medvault::{Error, StorageError};

use crate::pg_error;
use crate::storage::{Shared, insert_frames, relation_bytes};

/// Frames fetched per round trip by a read.
const PAGE: i64 = 512;

/// The access log of one vault on PostgreSQL.
///
/// Positions: a frame has no byte offset here, so a [`LogPos`] is `(n, 0, n)` for the
/// position before frame `n`, like the in-memory log. [`LogStore::append`] only queues a
/// commit's frames (checking their sequence); they are inserted, in one transaction, by
/// the record-store batch of the same commit ([`crate::PgStorage`]'s `apply`) or, for
/// commits that change nothing, by [`LogStore::sync`] (the group commit's step 3). A
/// frame is therefore durable exactly when the group commit says so, and a change and
/// its entries commit in one transaction. [`LogStore::read`] inserts what is queued
/// first, so it sees every frame appended so far.
pub struct PgLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog")
            .field("schema", &self.shared.name)
            .finish_non_exhaustive()
    }
}

fn pos(n: u64) -> LogPos {
    LogPos {
        next_seq: n,
        segment: 0,
        offset: n,
    }
}

fn corrupt(what: &'static str) -> Error {
    StorageError::corrupt(what).into()
}

pub(crate) fn poisoned() -> StorageError {
    StorageError::new(
        "the access log refuses writes: a COMMIT failed without telling whether it took \
         effect; reopen the vault",
    )
}

fn seq_i64(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| corrupt("log sequence number out of range"))
}

/// Decodes the frame stored in row `seq`: a whole, well-formed frame of that seq.
fn decode_row(seq: i64, bytes: &[u8]) -> Result<Frame, Error> {
    match decode_frame(bytes) {
        Decoded::Frame(f, used) if used == bytes.len() && i64::try_from(f.seq) == Ok(seq) => Ok(f),
        Decoded::Frame(..) => Err(corrupt(
            "a log row's frame does not match its seq or has trailing bytes (table log)",
        )),
        Decoded::Incomplete => Err(corrupt("a log row holds a cut frame (table log)")),
        Decoded::Bad(_) => Err(corrupt("a log row holds a damaged frame (table log)")),
    }
}

impl PgLog {
    /// The log of the vault in `shared`. With `create`, empties the `log` and `anchor`
    /// tables first (what a create interrupted before its header left); otherwise the
    /// end is found by [`LogStore::recover`].
    pub(crate) fn new(
        shared: Arc<Shared>,
        _vault_id: medvault::VaultId,
        create: bool,
    ) -> medvault::Result<PgLog> {
        if create {
            let sql = format!(
                "DELETE FROM {s}.log; DELETE FROM {s}.anchor;",
                s = shared.schema
            );
            shared
                .pool
                .with(|c| c.client.batch_execute(&sql).map_err(pg_error))?;
        }
        let mut st = shared.log_state();
        st.pending.clear();
        st.end = 0;
        st.poisoned = false;
        drop(st);
        Ok(PgLog { shared })
    }

    /// Inserts the queued frames in one transaction.
    fn insert_pending(&self) -> medvault::Result<()> {
        let mut log = self.shared.log_state();
        if log.poisoned {
            return Err(poisoned().into());
        }
        if log.pending.is_empty() {
            return Ok(());
        }
        let committed = self.shared.pool.with(|c| {
            let mut tx = c.client.transaction().map_err(pg_error)?;
            insert_frames(&mut tx, &c.st.log_insert, &log.pending)?;
            Ok(tx.commit())
        })?;
        match committed {
            Ok(()) => {
                log.pending.clear();
                Ok(())
            }
            Err(e) => {
                log.poisoned = true;
                Err(pg_error(e).into())
            }
        }
    }

    fn page(&self, from: i64, end: i64) -> medvault::Result<Vec<(i64, Vec<u8>)>> {
        let rows = self.shared.pool.with(|c| {
            c.client
                .query(&c.st.log_read, &[&from, &end, &PAGE])
                .map_err(pg_error)
        })?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(pg_error)?,
                    r.try_get(1).map_err(pg_error)?,
                ))
            })
            .collect()
    }
}

/// Reads `[next, end)` in seq order, a page per round trip, and fails on a missing,
/// misnumbered or damaged row.
struct Frames<'a> {
    log: &'a PgLog,
    next: u64,
    end: u64,
    buf: VecDeque<(i64, Vec<u8>)>,
    failed: bool,
}

impl Iterator for Frames<'_> {
    type Item = medvault::Result<(Frame, LogPos)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.end {
            return None;
        }
        let r = (|| {
            if self.buf.is_empty() {
                self.buf = self
                    .log
                    .page(seq_i64(self.next)?, seq_i64(self.end)?)?
                    .into();
            }
            match self.buf.pop_front() {
                Some((seq, bytes)) if i64::try_from(self.next) == Ok(seq) => {
                    let f = decode_row(seq, &bytes)?;
                    self.next += 1;
                    Ok((f, pos(self.next)))
                }
                _ => Err(Error::LogTampered {
                    seq: self.next,
                    fault: medvault::LogFault::EntryMissing,
                }),
            }
        })();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

impl LogStore for PgLog {
    /// Checks that frame `from.next_seq - 1` exists (else `Missing`), then reads every
    /// frame from `from.next_seq` on: they must be consecutive and whole. Nothing is ever
    /// torn here (a frame is a row, inserted by a transaction), so `cut_bytes` is 0.
    fn recover(&self, from: &LogPos) -> medvault::Result<Recovered> {
        let start = seq_i64(from.next_seq)?;
        if start > 0 {
            let has: bool = self
                .shared
                .pool
                .with(|c| {
                    c.client
                        .query_one(&c.st.log_has, &[&(start - 1)])
                        .map_err(pg_error)
                })?
                .get(0);
            if !has {
                return Ok(Recovered::Missing(
                    "the log table lacks the remembered frame",
                ));
            }
        }
        let mut frames = Vec::new();
        let mut next = start;
        loop {
            let page = self.page(next, i64::MAX)?;
            let n = page.len();
            for (seq, bytes) in page {
                if seq != next {
                    return Err(Error::LogTampered {
                        seq: next as u64,
                        fault: medvault::LogFault::EntryMissing,
                    });
                }
                next += 1;
                frames.push((pos(next as u64), decode_row(seq, &bytes)?));
            }
            if (n as i64) < PAGE {
                break;
            }
        }
        let end = next as u64;
        let mut st = self.shared.log_state();
        st.pending.clear();
        st.end = end;
        st.poisoned = false;
        Ok(Recovered::Tail {
            frames,
            end: pos(end),
            cut_bytes: 0,
        })
    }

    fn append(&self, frames: &[Frame]) -> medvault::Result<LogPos> {
        let mut st = self.shared.log_state();
        if st.poisoned {
            return Err(poisoned().into());
        }
        let mut encoded = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            if f.seq != st.end + i as u64 {
                return Err(StorageError::new("log append out of sequence").into());
            }
            let mut b = Vec::with_capacity(f.encoded_len());
            f.encode_into(&mut b);
            encoded.push((seq_i64(f.seq)?, b));
        }
        st.end += frames.len() as u64;
        st.pending.extend(encoded);
        Ok(pos(st.end))
    }

    fn sync(&self) -> medvault::Result<()> {
        self.insert_pending()
    }

    fn end(&self) -> LogPos {
        pos(self.shared.log_state().end)
    }

    fn read(&self, from_seq: u64) -> medvault::Result<FrameIter<'_>> {
        self.insert_pending()?;
        let end = self.shared.log_state().end;
        Ok(Box::new(Frames {
            log: self,
            next: from_seq.min(end),
            end,
            buf: VecDeque::new(),
            failed: false,
        }))
    }

    fn read_anchor(&self) -> medvault::Result<[Option<Vec<u8>>; 2]> {
        let rows = self
            .shared
            .pool
            .with(|c| c.client.query(&c.st.anchor_read, &[]).map_err(pg_error))?;
        let mut slots: [Option<Vec<u8>>; 2] = [None, None];
        for r in rows {
            let slot: i16 = r.try_get(0).map_err(pg_error)?;
            let bytes: Vec<u8> = r.try_get(1).map_err(pg_error)?;
            if let Some(s) = usize::try_from(slot).ok().and_then(|i| slots.get_mut(i)) {
                *s = Some(bytes);
            }
        }
        Ok(slots)
    }

    fn write_anchor(&self, slot: usize, bytes: &[u8]) -> medvault::Result<()> {
        let slot: i16 = match slot {
            0 => 0,
            1 => 1,
            _ => return Err(StorageError::new("anchor slot out of range").into()),
        };
        self.shared.pool.with(|c| {
            c.client
                .execute(&c.st.anchor_write, &[&slot, &bytes])
                .map_err(pg_error)
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Nothing to do: each anchor write is its own durable transaction.
    fn sync_anchor(&self) -> medvault::Result<()> {
        Ok(())
    }

    fn size_on_disk(&self) -> medvault::Result<u64> {
        Ok(relation_bytes(&self.shared, &["log", "anchor"])?)
    }
}
