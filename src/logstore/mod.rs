//! The log store: where access-log frames live, apart from the record store. Segment
//! files in the vault directory now ([`SegmentLog`]), a server table later; an in-memory
//! store for tests ([`MemoryLog`]).
//!
//! Contract every implementation keeps: frames are appended in sequence order, gapless;
//! [`LogStore::append`] either appends every frame of the call or leaves the log as it
//! was (a partial write is cut back before the error returns); [`LogStore::sync`] makes
//! every appended frame durable; [`LogStore::read`] never returns a frame past the end
//! appended so far; [`LogStore::write_anchor`] replaces one anchor slot and never the
//! other. The store sees only sealed bodies and links: it learns nothing a file would not.

pub mod anchor;
mod files;
pub mod frame;
mod memory;
pub mod tree;

pub use files::{
    ANCHOR_FILE, LOG_DIR, SegmentLog, SegmentOptions, parse_segment_name, segment_name,
};
pub use frame::{FLAG_CHANGE, FRAME_VERSION, Frame};
pub use memory::{LogFaults, MemoryLog};

use crate::error::{Error, Result, StorageError, Structure};

/// A position in the log: the next sequence number there, and where the frame with that
/// number starts (or will start): the segment (named by its first seq) and the byte
/// offset in it. Stored in the applied marker and the anchor so that open seeks to the
/// tail instead of scanning the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LogPos {
    /// Sequence number of the next frame (= frames before this position).
    pub next_seq: u64,
    /// First sequence number of the segment the position is in.
    pub segment: u64,
    /// Byte offset in that segment (at least the segment header's length).
    pub offset: u64,
}

impl LogPos {
    /// Bytes of [`LogPos::to_bytes`].
    pub const LEN: usize = 24;

    /// `u64 next_seq || u64 segment || u64 offset`, big-endian.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.next_seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.segment.to_be_bytes());
        b[16..].copy_from_slice(&self.offset.to_be_bytes());
        b
    }

    /// Inverse of [`LogPos::to_bytes`].
    pub fn from_bytes(b: &[u8; Self::LEN]) -> LogPos {
        let u = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        LogPos {
            next_seq: u(0),
            segment: u(8),
            offset: u(16),
        }
    }
}

/// What [`LogStore::recover`] found past a known-good position.
#[derive(Debug)]
pub enum Recovered {
    /// The position is in the log. `frames` are the whole frames after it, in order,
    /// each with the position just after it; `end` is where the next frame goes; `cut_bytes` torn bytes were removed from the
    /// end of the last segment (a crash in the middle of an append).
    Tail {
        /// Whole frames after the position, each with the position just after it.
        frames: Vec<(LogPos, Frame)>,
        /// The end of the log after the cut.
        end: LogPos,
        /// Bytes cut off the end.
        cut_bytes: u64,
    },
    /// The position is not in the log: its segment is missing or shorter than the
    /// offset, or the frames there do not continue at its sequence number. The log is
    /// behind whatever remembered the position (cut, rolled back or deleted).
    Missing(&'static str),
}

/// An iterator over frames in sequence order, each with the position just after it.
pub type FrameIter<'a> = Box<dyn Iterator<Item = Result<(Frame, LogPos)>> + Send + 'a>;

/// What medvault needs of a log backend. See the module docs for the contract.
pub trait LogStore: Send + Sync {
    /// Finds the end of the log from `from`, a position known to be in it (remembered by
    /// the anchor or the applied marker), cuts a torn last frame, and makes the store
    /// ready to append. Cost: the frames after `from`, not the whole log. Errors:
    /// [`Error::Integrity`] when bytes past `from` are damaged other than by a torn last
    /// write (a bad frame followed by more data, a damaged segment header, a segment
    /// that does not continue the sequence).
    fn recover(&self, from: &LogPos) -> Result<Recovered>;
    /// Appends frames (consecutive seqs from [`LogStore::end`]); not durable until
    /// [`LogStore::sync`]. Returns the new end. All or nothing.
    fn append(&self, frames: &[Frame]) -> Result<LogPos>;
    /// Makes every appended frame durable (fdatasync).
    fn sync(&self) -> Result<()>;
    /// Where the next frame goes.
    fn end(&self) -> LogPos;
    /// Frames from sequence number `from_seq` to the end appended so far, in order.
    /// Errors (from the iterator): [`Error::Integrity`] for a damaged, missing or
    /// misnumbered frame or segment.
    fn read(&self, from_seq: u64) -> Result<FrameIter<'_>>;
    /// Up to `n` whole frames that end the log appended so far, newest first, found
    /// without reading the log from its start (segment files: a backward probe from the
    /// end, [`frame::frame_ending_at`]; cost: those frames' bytes). Fewer, possibly none,
    /// where a frame does not decode (damaged: `verify` names it), or at the start of
    /// the last segment; callers needing more fall back to [`LogStore::read`]. The
    /// frames' seals and links are not checked here. The default finds none.
    fn read_back(&self, n: usize) -> Result<Vec<Frame>> {
        let _ = n;
        Ok(Vec::new())
    }
    /// The two anchor slots as stored (`None`: absent or short), unparsed.
    fn read_anchor(&self) -> Result<[Option<Vec<u8>>; 2]>;
    /// Replaces anchor slot `slot` (0 or 1), leaving the other untouched. Not synced:
    /// see [`LogStore::sync_anchor`].
    fn write_anchor(&self, slot: usize, bytes: &[u8]) -> Result<()>;
    /// Makes the anchor durable (fsync).
    fn sync_anchor(&self) -> Result<()>;
    /// Bytes used on disk (0 in memory).
    fn size_on_disk(&self) -> Result<u64>;
    /// The Merkle tree over the frames (docs/VERIFY.md "The tree"), which the store keeps
    /// in step with every append and cut; `None` for a store that keeps none (no signed
    /// checkpoints nor proofs then).
    fn tree(&self) -> Option<&tree::LogTree> {
        None
    }

    /// Deletes every whole segment before the one starting at `first_kept` (retention,
    /// docs/BACKUP.md); returns how many. `first_kept` must start a segment and not be
    /// past the last. Default: this store cannot drop entries, an [`Error::Storage`].
    fn drop_before(&self, first_kept: u64) -> Result<u64> {
        let _ = first_kept;
        Err(Error::Storage(StorageError::new(
            "this log store cannot drop segments",
        )))
    }
}

/// An integrity error of the log store (no content in the message).
pub(crate) fn corrupt(what: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::integrity(Structure::LogSegment, what)
}

/// A caller's misuse of the log store (an internal bug if it happens).
pub(crate) fn misuse(what: &'static str) -> Error {
    Error::invalid(crate::error::InputKind::Output, what)
}

/// An I/O error of the log store.
pub(crate) fn io_error(e: std::io::Error) -> Error {
    Error::Storage(StorageError::from(e))
}

#[cfg(test)]
mod tests;
