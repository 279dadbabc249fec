//! An in-memory log store for tests, with fault injection (fail the N-th append, fail
//! sync, fail anchor writes) and a simulated power loss that keeps only what was synced.
//! Clones share the same state, so a test can "reopen" over the same frames.

use std::sync::{Arc, Mutex, MutexGuard};

use super::tree::LogTree;
use super::{Frame, FrameIter, LogPos, LogStore, Recovered};
use crate::error::{Error, Result, StorageError};

/// Which faults a [`MemoryLog`] injects.
#[derive(Clone, Debug, Default)]
pub struct LogFaults {
    /// Fail every append once this many appends have succeeded.
    pub fail_appends_after: Option<u64>,
    /// Fail `sync`.
    pub fail_sync: bool,
    /// Fail anchor writes.
    pub fail_anchor: bool,
}

#[derive(Default)]
struct State {
    frames: Vec<Frame>,
    synced: usize,
    anchor: [Option<Vec<u8>>; 2],
    anchor_synced: [Option<Vec<u8>>; 2],
    appends: u64,
    faults: LogFaults,
}

/// Shared in-memory log. Positions use segment 0 and the frame index as offset.
#[derive(Clone)]
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
    /// The Merkle tree over `state.frames`, changed only under the state lock.
    tree: Arc<LogTree>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog {
            state: Arc::default(),
            tree: Arc::new(LogTree::memory()),
        }
    }
}

/// An in-memory tree over `frames` (a memory tree cannot fail).
fn tree_of(frames: &[Frame]) -> Arc<LogTree> {
    let t = LogTree::memory();
    let _ = t.append_frames(frames);
    Arc::new(t)
}

fn injected(what: &str) -> Error {
    Error::Storage(StorageError::new(format!("injected fault: {what}")))
}

fn pos(n: usize) -> LogPos {
    LogPos {
        next_seq: n as u64,
        segment: 0,
        offset: n as u64,
    }
}

impl MemoryLog {
    /// An empty log without faults.
    pub fn new() -> Self {
        MemoryLog::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the fault plan and resets the append counter.
    pub fn set_faults(&self, faults: LogFaults) {
        let mut s = self.lock();
        s.faults = faults;
        s.appends = 0;
    }

    /// A new, independent log holding only what a power loss now would leave: the
    /// synced frames and the synced anchor.
    pub fn after_power_loss(&self) -> MemoryLog {
        let s = self.lock();
        let st = State {
            frames: s.frames[..s.synced].to_vec(),
            synced: s.synced,
            anchor: s.anchor_synced.clone(),
            anchor_synced: s.anchor_synced.clone(),
            ..State::default()
        };
        MemoryLog {
            tree: tree_of(&st.frames),
            state: Arc::new(Mutex::new(st)),
        }
    }

    /// A deep copy with its own state (frames, anchor), no faults.
    pub fn deep_clone(&self) -> MemoryLog {
        let s = self.lock();
        let st = State {
            frames: s.frames.clone(),
            synced: s.synced,
            anchor: s.anchor.clone(),
            anchor_synced: s.anchor_synced.clone(),
            ..State::default()
        };
        MemoryLog {
            tree: tree_of(&st.frames),
            state: Arc::new(Mutex::new(st)),
        }
    }

    /// Empties the log (frames, anchor, faults).
    pub fn reset(&self) {
        let mut s = self.lock();
        *s = State::default();
        let _ = self.tree.reset();
    }

    /// A copy of every frame (for tamper tests).
    pub fn frames(&self) -> Vec<Frame> {
        self.lock().frames.clone()
    }

    /// Replaces every frame (for tamper tests); all count as synced.
    pub fn set_frames(&self, frames: Vec<Frame>) {
        let mut s = self.lock();
        s.synced = frames.len();
        // As the segment store after its files were edited: the tree is left as it was for
        // the frames that were there, cut to the new length, and extended by the frames
        // past the old one (what recovery rebuilds).
        let old = self.tree.size() as usize;
        let _ = self.tree.cut(frames.len() as u64);
        let _ = self.tree.append_frames(frames.get(old..).unwrap_or(&[]));
        s.frames = frames;
    }

    /// Replaces the anchor slots (for tamper tests).
    pub fn set_anchor(&self, slots: [Option<Vec<u8>>; 2]) {
        let mut s = self.lock();
        s.anchor_synced = slots.clone();
        s.anchor = slots;
    }
}

impl LogStore for MemoryLog {
    fn recover(&self, from: &LogPos) -> Result<Recovered> {
        let s = self.lock();
        let at = from.next_seq as usize;
        if at > s.frames.len() {
            return Ok(Recovered::Missing("the log is shorter"));
        }
        let frames = s.frames[at..]
            .iter()
            .enumerate()
            .map(|(i, f)| (pos(at + i + 1), f.clone()))
            .collect();
        Ok(Recovered::Tail {
            frames,
            end: pos(s.frames.len()),
            cut_bytes: 0,
        })
    }

    fn append(&self, frames: &[Frame]) -> Result<LogPos> {
        let mut s = self.lock();
        if s.faults.fail_appends_after.is_some_and(|n| s.appends >= n) {
            return Err(injected("log append"));
        }
        for (i, f) in frames.iter().enumerate() {
            if f.seq != (s.frames.len() + i) as u64 {
                return Err(super::misuse("log append out of sequence"));
            }
        }
        self.tree.append_frames(frames)?;
        s.appends += 1;
        s.frames.extend_from_slice(frames);
        Ok(pos(s.frames.len()))
    }

    fn sync(&self) -> Result<()> {
        let mut s = self.lock();
        if s.faults.fail_sync {
            return Err(injected("log sync"));
        }
        s.synced = s.frames.len();
        Ok(())
    }

    fn end(&self) -> LogPos {
        pos(self.lock().frames.len())
    }

    fn read(&self, from_seq: u64) -> Result<FrameIter<'_>> {
        let s = self.lock();
        let from = (from_seq as usize).min(s.frames.len());
        let items: Vec<_> = s.frames[from..]
            .iter()
            .enumerate()
            .map(|(i, f)| Ok((f.clone(), pos(from + i + 1))))
            .collect();
        Ok(Box::new(items.into_iter()))
    }

    fn read_back(&self, n: usize) -> Result<Vec<Frame>> {
        Ok(self.lock().frames.iter().rev().take(n).cloned().collect())
    }

    fn read_anchor(&self) -> Result<[Option<Vec<u8>>; 2]> {
        Ok(self.lock().anchor.clone())
    }

    fn write_anchor(&self, slot: usize, bytes: &[u8]) -> Result<()> {
        let mut s = self.lock();
        if s.faults.fail_anchor {
            return Err(injected("anchor write"));
        }
        let cell = s
            .anchor
            .get_mut(slot)
            .ok_or_else(|| super::misuse("anchor slot out of range"))?;
        *cell = Some(bytes.to_vec());
        Ok(())
    }

    fn sync_anchor(&self) -> Result<()> {
        let mut s = self.lock();
        s.anchor_synced = s.anchor.clone();
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64> {
        Ok(0)
    }

    fn tree(&self) -> Option<&LogTree> {
        Some(&self.tree)
    }
}
