//! Segment files: the log as append-only files `VAULT/log/<first seq, 20 digits>.seg`,
//! each bounded in size so that whole old segments can later be dropped by a retention
//! rule, and the anchor as `VAULT/anchor` (docs/FORMAT.md "Log segment files").
//!
//! Appends are one `pwrite` at the segment's end; a failed one is cut back, so the file
//! never holds a partial frame followed by more. A segment is fdatasynced before the
//! next one is created, so only the last segment can end in a torn frame.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::anchor::{SLOT_LEN, SLOT_STRIDE};
use super::frame::{
    Decoded, FRAME_LEN_RANGE, Frame, MAX_FRAME_BODY, SEGMENT_HEADER_LEN, decode_frame,
    decode_segment_header, encode_segment_header, frame_ending_at,
};
use super::{FrameIter, LogPos, LogStore, Recovered, corrupt, io_error};
use crate::error::{Error, Result};

/// Name of the log directory inside a vault directory.
pub const LOG_DIR: &str = "log";
/// Name of the anchor file inside a vault directory.
pub const ANCHOR_FILE: &str = "anchor";
const SEGMENT_SUFFIX: &str = ".seg";

/// Tuning of the segment files.
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// A new segment is started when an append would take the current one past this
    /// many bytes (one append's frames always share a segment, so a segment can exceed
    /// it by one commit). Default 64 MiB.
    pub max_segment_bytes: u64,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            max_segment_bytes: 64 << 20,
        }
    }
}

struct Writer {
    file: Arc<File>,
    end: LogPos,
}

/// The log of one vault directory as segment files. See the module docs.
pub struct SegmentLog {
    dir: PathBuf,
    log_dir: PathBuf,
    vault_id: crate::VaultId,
    options: SegmentOptions,
    /// `None` until [`LogStore::recover`] (or `create`) found the end, and after a failed
    /// append could not be cut back (then every append fails until the vault reopens).
    writer: Mutex<Option<Writer>>,
    anchor: Mutex<Option<File>>,
    /// The Merkle tree over the frames (`log/tree`, apart from the segments).
    /// `None` only in the benches' baseline ([`SegmentLog::without_tree`]).
    tree: Option<super::tree::LogTree>,
}

/// File name of the segment whose first sequence number is `first_seq`:
/// `<first_seq, 20 decimal digits>.seg`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// Inverse of [`segment_name`]: `None` for any other file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error)
}

fn not_ready() -> Error {
    Error::Storage(crate::error::StorageError::new(
        "the access log is not open for appending (a failed append could not be undone; \
         reopen the vault)",
    ))
}

impl SegmentLog {
    /// Creates the log of a new vault under `vault_dir`: `log/` with an empty first
    /// segment (first seq 0), fdatasynced, and the directory entries synced. Fails if a
    /// log already exists there.
    pub fn create(
        vault_dir: &Path,
        vault_id: crate::VaultId,
        options: SegmentOptions,
    ) -> Result<Self> {
        let log_dir = vault_dir.join(LOG_DIR);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&log_dir)
            .map_err(io_error)?;
        let file = new_segment(&log_dir, &vault_id, 0)?;
        sync_dir(&log_dir)?;
        sync_dir(vault_dir)?;
        let log = SegmentLog::open(vault_dir, vault_id, options)?;
        *log.lock_writer() = Some(Writer {
            file: Arc::new(file),
            end: LogPos {
                next_seq: 0,
                segment: 0,
                offset: SEGMENT_HEADER_LEN as u64,
            },
        });
        Ok(log)
    }

    /// Opens the log of an existing vault; [`LogStore::recover`] must run before the
    /// first append. [`Error::Integrity`] when `log/` is missing.
    pub fn open(
        vault_dir: &Path,
        vault_id: crate::VaultId,
        options: SegmentOptions,
    ) -> Result<Self> {
        let log_dir = vault_dir.join(LOG_DIR);
        match fs::symlink_metadata(&log_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(corrupt("access log: log/ is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt("access log: log/ is missing (deleted)"));
            }
            Err(e) => return Err(io_error(e)),
        }
        let tree = super::tree::LogTree::open_file(&log_dir, vault_id)?;
        Ok(SegmentLog {
            tree: Some(tree),
            dir: vault_dir.to_path_buf(),
            log_dir,
            vault_id,
            options,
            writer: Mutex::new(None),
            anchor: Mutex::new(None),
        })
    }

    /// This log without its Merkle tree: appends hash and write no node. Only for the
    /// benches' baseline (`benches/merkle.rs`); a vault never runs without its tree.
    #[cfg(feature = "testing")]
    pub fn without_tree(mut self) -> Self {
        self.tree = None;
        self
    }

    fn lock_writer(&self) -> MutexGuard<'_, Option<Writer>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// First seqs of the segments present, ascending. Files of other names are ignored.
    fn segments(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.log_dir).map_err(io_error)? {
            let e = e.map_err(io_error)?;
            if let Some(s) = e.file_name().to_str().and_then(parse_segment_name) {
                out.push(s);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.log_dir.join(segment_name(first_seq))
    }

    /// Opens a segment for reading and checks its header names this vault and `first`.
    fn open_segment(&self, first: u64) -> Result<File> {
        let mut f = File::open(self.segment_path(first)).map_err(io_error)?;
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        f.read_exact(&mut h)
            .map_err(|_| corrupt(format!("log segment {first}: header truncated")))?;
        check_header(&h, &self.vault_id, first)?;
        Ok(f)
    }

    /// The bytes of segment `first` from `offset` to its end, its header checked;
    /// `None` when the segment is shorter than `offset`.
    fn read_from(&self, first: u64, offset: u64) -> Result<Option<Vec<u8>>> {
        use std::io::{Seek, SeekFrom};
        let mut f = File::open(self.segment_path(first)).map_err(io_error)?;
        let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
        (&mut f)
            .take(SEGMENT_HEADER_LEN as u64)
            .read_to_end(&mut h)
            .map_err(io_error)?;
        check_header(&h, &self.vault_id, first)?;
        let len = f.metadata().map_err(io_error)?.len();
        if len < offset {
            return Ok(None);
        }
        f.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        let mut rest = Vec::with_capacity((len - offset) as usize);
        f.read_to_end(&mut rest).map_err(io_error)?;
        Ok(Some(rest))
    }

    fn anchor_path(&self) -> PathBuf {
        self.dir.join(ANCHOR_FILE)
    }
}

fn check_header(h: &[u8], vault_id: &crate::VaultId, first: u64) -> Result<()> {
    let (id, s) =
        decode_segment_header(h).map_err(|e| corrupt(format!("log segment {first}: {e}")))?;
    if id != *vault_id {
        return Err(corrupt(format!(
            "log segment {first}: belongs to another vault"
        )));
    }
    if s != first {
        return Err(corrupt(format!(
            "log segment {first}: header names another first sequence number"
        )));
    }
    Ok(())
}

/// Creates segment `first` with its header, fdatasynced (the directory is synced by the
/// caller).
fn new_segment(log_dir: &Path, vault_id: &crate::VaultId, first: u64) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(log_dir.join(segment_name(first)))
        .map_err(io_error)?;
    f.write_all_at(&encode_segment_header(vault_id, first), 0)
        .map_err(io_error)?;
    f.sync_data().map_err(io_error)?;
    Ok(f)
}

impl LogStore for SegmentLog {
    fn recover(&self, from: &LogPos) -> Result<Recovered> {
        let segs = self.segments()?;
        let Some(start) = segs.iter().position(|&s| s == from.segment) else {
            return Ok(Recovered::Missing("its log segment is missing"));
        };
        if from.offset < SEGMENT_HEADER_LEN as u64 || from.next_seq < from.segment {
            return Err(corrupt("access log: a remembered position is malformed"));
        }
        let mut frames = Vec::new();
        let mut expected = from.next_seq;
        let mut end = *from;
        let mut cut_bytes = 0u64;
        let last = segs.len() - 1;
        for (i, &seg) in segs.iter().enumerate().skip(start) {
            let path = self.segment_path(seg);
            // `bytes` holds the segment from byte `base` on: from the remembered position
            // in the first segment read (its header checked apart), so open reads only
            // the tail, never the whole segment.
            let (bytes, base) = if i == start {
                (self.read_from(seg, from.offset)?, from.offset as usize)
            } else {
                (Some(fs::read(&path).map_err(io_error)?), 0)
            };
            let Some(bytes) = bytes else {
                return Ok(Recovered::Missing("its log segment is shorter"));
            };
            let offset = if i == start {
                0
            } else {
                if seg != expected {
                    return Err(corrupt(format!(
                        "access log: segment {seg} does not continue the log at {expected} \
                         (a segment is missing or cut)"
                    )));
                }
                if i == last && bytes.len() < SEGMENT_HEADER_LEN {
                    // A crash while creating the segment: nothing was appended to it.
                    fs::remove_file(&path).map_err(io_error)?;
                    sync_dir(&self.log_dir)?;
                    cut_bytes += bytes.len() as u64;
                    break;
                }
                check_header(&bytes, &self.vault_id, seg)?;
                end = LogPos {
                    next_seq: seg,
                    segment: seg,
                    offset: SEGMENT_HEADER_LEN as u64,
                };
                SEGMENT_HEADER_LEN
            };
            let mut at = offset;
            while at < bytes.len() {
                match decode_frame(&bytes[at..]) {
                    Decoded::Frame(f, n) => {
                        if f.seq != expected {
                            return Err(corrupt(format!(
                                "access log: frame at {expected} carries another sequence number"
                            )));
                        }
                        at += n;
                        expected += 1;
                        end = LogPos {
                            next_seq: expected,
                            segment: seg,
                            offset: (base + at) as u64,
                        };
                        frames.push((end, f));
                    }
                    Decoded::Incomplete | Decoded::Bad(_) if i == last => {
                        // Only the last segment can end in a torn append (a segment is
                        // synced before the next is created): cut it off.
                        cut_bytes += (bytes.len() - at) as u64;
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io_error)?;
                        f.set_len((base + at) as u64).map_err(io_error)?;
                        f.sync_data().map_err(io_error)?;
                        break;
                    }
                    Decoded::Incomplete | Decoded::Bad(_) => {
                        return Err(corrupt(format!(
                            "access log: segment {seg} is damaged or cut at entry {expected}"
                        )));
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.segment_path(end.segment))
            .map_err(io_error)?;
        *self.lock_writer() = Some(Writer {
            file: Arc::new(file),
            end,
        });
        // The tree: cut to the log's end, and what was not durable rebuilt from frames.
        if let Some(tree) = &self.tree
            && tree.size() != end.next_seq
        {
            tree.catch_up(end.next_seq, |from| {
                Ok(self.read(from)?.map(|r| r.map(|(f, _)| f)))
            })?;
            tree.sync()?;
        }
        Ok(Recovered::Tail {
            frames,
            end,
            cut_bytes,
        })
    }

    fn append(&self, frames: &[Frame]) -> Result<LogPos> {
        let mut guard = self.lock_writer();
        let w = guard.as_mut().ok_or_else(not_ready)?;
        let mut buf = Vec::with_capacity(frames.iter().map(Frame::encoded_len).sum());
        let mut leaves = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            if f.seq != w.end.next_seq + i as u64 {
                return Err(super::misuse("log append out of sequence"));
            }
            if f.body.len() > MAX_FRAME_BODY {
                return Err(super::misuse("log entry over its size bound"));
            }
            let at = buf.len();
            f.encode_into(&mut buf);
            if self.tree.is_some() {
                leaves.push(medvault_verify::leaf_hash(&buf[at..]));
            }
        }
        if buf.is_empty() {
            return Ok(w.end);
        }
        let header = SEGMENT_HEADER_LEN as u64;
        if w.end.offset > header && w.end.offset + buf.len() as u64 > self.options.max_segment_bytes
        {
            // Rollover: the full segment is made durable before its successor exists, so
            // only the last segment can ever end in a torn frame; so is the tree, so that
            // no leaf of a segment a prune may drop needs rebuilding.
            w.file.sync_data().map_err(io_error)?;
            if let Some(tree) = &self.tree {
                tree.sync()?;
            }
            let first = w.end.next_seq;
            let file = new_segment(&self.log_dir, &self.vault_id, first)?;
            sync_dir(&self.log_dir)?;
            *w = Writer {
                file: Arc::new(file),
                end: LogPos {
                    next_seq: first,
                    segment: first,
                    offset: header,
                },
            };
        }
        if let Err(e) = w.file.write_all_at(&buf, w.end.offset) {
            // Cut back whatever part was written; if even that fails, refuse further
            // appends rather than append after a partial frame.
            if w.file.set_len(w.end.offset).is_err() {
                *guard = None;
            }
            return Err(io_error(e));
        }
        if let Some(Err(e)) = self.tree.as_ref().map(|t| t.append_leaves(&leaves)) {
            // All or nothing: the frames go too.
            if w.file.set_len(w.end.offset).is_err() {
                *guard = None;
            }
            return Err(e);
        }
        w.end = LogPos {
            next_seq: w.end.next_seq + frames.len() as u64,
            segment: w.end.segment,
            offset: w.end.offset + buf.len() as u64,
        };
        Ok(w.end)
    }

    fn sync(&self) -> Result<()> {
        // The file handle is taken under the lock and synced outside it, so appends go on
        // during the fdatasync (group commit). A rollover since then synced its segment.
        let file = match self.lock_writer().as_ref() {
            Some(w) => w.file.clone(),
            None => return Err(not_ready()),
        };
        // The tree's buffered nodes reach the file (not durable: see the tree's module).
        if let Some(tree) = &self.tree {
            tree.flush()?;
        }
        file.sync_data().map_err(io_error)
    }

    fn end(&self) -> LogPos {
        self.lock_writer()
            .as_ref()
            .map(|w| w.end)
            .unwrap_or_default()
    }

    fn read(&self, from_seq: u64) -> Result<FrameIter<'_>> {
        let end = self
            .lock_writer()
            .as_ref()
            .map(|w| w.end)
            .ok_or_else(not_ready)?;
        let segs: Vec<u64> = self
            .segments()?
            .into_iter()
            .filter(|&s| s <= end.segment)
            .collect();
        let start = segs
            .iter()
            .rposition(|&s| s <= from_seq)
            .ok_or_else(|| corrupt("access log: no segment holds the first entry asked for"))?;
        Ok(Box::new(SegmentIter {
            log: self,
            segs: segs[start..].to_vec(),
            idx: 0,
            reader: None,
            offset: 0,
            expected: segs[start],
            from_seq,
            end,
            done: false,
            buf: Vec::new(),
        }))
    }

    fn read_back(&self, n: usize) -> Result<Vec<Frame>> {
        let (file, end) = match self.lock_writer().as_ref() {
            Some(w) => (w.file.clone(), w.end),
            None => return Err(not_ready()),
        };
        let header = SEGMENT_HEADER_LEN as u64;
        let largest = (*FRAME_LEN_RANGE.end() + 4) as u64;
        let mut out = Vec::new();
        // The bytes `lo..end.offset` of the last segment, read once and widened (from
        // 64 KiB, times 8) only when a frame starts before them.
        let mut lo = end.offset;
        let mut window: Vec<u8> = Vec::new();
        let mut boundary = end.offset;
        let mut seq = end.next_seq;
        while out.len() < n && seq > end.segment && boundary > header {
            let mut span = 64u64 << 10;
            loop {
                let want = boundary.saturating_sub(span).max(header);
                if want < lo {
                    let mut more = vec![0u8; (lo - want) as usize];
                    file.read_exact_at(&mut more, want).map_err(io_error)?;
                    more.extend_from_slice(&window);
                    window = more;
                    lo = want;
                }
                let upto = window.get(..(boundary - lo) as usize).unwrap_or(&[]);
                if let Some((f, at)) = frame_ending_at(upto, seq - 1) {
                    boundary = lo + at as u64;
                    seq -= 1;
                    out.push(f);
                    break;
                }
                if lo == header || boundary - lo >= largest {
                    return Ok(out);
                }
                span = span.saturating_mul(8);
            }
        }
        Ok(out)
    }

    fn read_anchor(&self) -> Result<[Option<Vec<u8>>; 2]> {
        let bytes = match fs::symlink_metadata(self.anchor_path()) {
            Ok(m) if !m.is_file() => return Err(corrupt("the anchor is not a regular file")),
            Ok(_) => {
                let f = File::open(self.anchor_path()).map_err(io_error)?;
                let mut b = Vec::new();
                f.take(SLOT_STRIDE + SLOT_LEN as u64)
                    .read_to_end(&mut b)
                    .map_err(io_error)?;
                b
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(e)),
        };
        let slot = |i: u64| {
            let at = (i * SLOT_STRIDE) as usize;
            bytes.get(at..at + SLOT_LEN).map(<[u8]>::to_vec)
        };
        Ok([slot(0), slot(1)])
    }

    fn write_anchor(&self, slot: usize, bytes: &[u8]) -> Result<()> {
        if slot > 1 || bytes.len() != SLOT_LEN {
            return Err(super::misuse("anchor slot out of range"));
        }
        let mut g = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(self.anchor_path())
                .map_err(io_error)?;
            *g = Some(f);
        }
        let f = g.as_ref().ok_or_else(not_ready)?;
        f.write_all_at(bytes, slot as u64 * SLOT_STRIDE)
            .map_err(io_error)
    }

    fn sync_anchor(&self) -> Result<()> {
        if let Some(tree) = &self.tree {
            tree.sync()?;
        }
        let g = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(f) => f.sync_data().map_err(io_error),
            None => Ok(()),
        }
    }

    fn tree(&self) -> Option<&super::tree::LogTree> {
        self.tree.as_ref()
    }

    fn drop_before(&self, first_kept: u64) -> Result<u64> {
        let segs = self.segments()?;
        if !segs.contains(&first_kept) {
            return Err(super::misuse(
                "a prune point must be the first entry of a segment",
            ));
        }
        let end = self.end();
        if first_kept > end.segment {
            return Err(super::misuse("a prune must keep the last segment"));
        }
        let mut dropped = 0;
        for s in segs.into_iter().filter(|&s| s < first_kept) {
            fs::remove_file(self.segment_path(s)).map_err(io_error)?;
            dropped += 1;
        }
        sync_dir(&self.log_dir)?;
        Ok(dropped)
    }

    fn size_on_disk(&self) -> Result<u64> {
        let mut n = 0;
        for s in self.segments()? {
            n += fs::metadata(self.segment_path(s)).map_err(io_error)?.len();
        }
        if let Ok(m) = fs::metadata(self.anchor_path()) {
            n += m.len();
        }
        if let Ok(m) = fs::metadata(self.log_dir.join(super::tree::TREE_FILE)) {
            n += m.len();
        }
        Ok(n)
    }
}

impl Drop for SegmentLog {
    /// A clean close leaves the tree durable, so the next open rebuilds nothing (best
    /// effort: a failure leaves what a crash would, which open repairs).
    fn drop(&mut self) {
        if let Some(tree) = &self.tree {
            let _ = tree.sync();
        }
    }
}

/// Reads frames segment by segment up to the end snapshotted when it was made.
struct SegmentIter<'a> {
    log: &'a SegmentLog,
    segs: Vec<u64>,
    idx: usize,
    reader: Option<BufReader<File>>,
    offset: u64,
    expected: u64,
    from_seq: u64,
    end: LogPos,
    done: bool,
    buf: Vec<u8>,
}

impl SegmentIter<'_> {
    fn next_frame(&mut self) -> Result<Option<(Frame, LogPos)>> {
        loop {
            let Some(&seg) = self.segs.get(self.idx) else {
                return Ok(None);
            };
            if self.reader.is_none() {
                if seg != self.expected {
                    return Err(corrupt(format!(
                        "access log: segment {seg} does not continue the log at {} (a \
                         segment is missing or cut)",
                        self.expected
                    )));
                }
                let f = self.log.open_segment(seg)?;
                self.reader = Some(BufReader::with_capacity(1 << 20, f));
                self.offset = SEGMENT_HEADER_LEN as u64;
            }
            let at_end = if seg == self.end.segment {
                self.offset >= self.end.offset
            } else {
                false
            };
            if at_end {
                return Ok(None);
            }
            let r = self.reader.as_mut().ok_or_else(not_ready)?;
            let mut len = [0u8; 4];
            match read_full(r, &mut len)? {
                0 if seg != self.end.segment => {
                    // A whole earlier segment read: go on with the next.
                    self.reader = None;
                    self.idx += 1;
                    continue;
                }
                4 => {}
                _ => {
                    return Err(corrupt(format!(
                        "access log: segment {seg} is cut at entry {}",
                        self.expected
                    )));
                }
            }
            let n = u32::from_be_bytes(len) as usize;
            if !FRAME_LEN_RANGE.contains(&n) {
                return Err(corrupt(format!(
                    "access log: entry {} is malformed (frame length out of bounds)",
                    self.expected
                )));
            }
            // One buffer for every frame of the walk (a frame's body is copied out).
            let buf = &mut self.buf;
            buf.clear();
            buf.resize(4 + n, 0);
            buf[..4].copy_from_slice(&len);
            if read_full(r, &mut buf[4..])? != n {
                return Err(corrupt(format!(
                    "access log: segment {seg} is cut at entry {}",
                    self.expected
                )));
            }
            let frame = match decode_frame(buf) {
                Decoded::Frame(f, _) => f,
                Decoded::Bad(e) => {
                    return Err(corrupt(format!("access log: entry {}: {e}", self.expected)));
                }
                Decoded::Incomplete => {
                    return Err(corrupt(format!(
                        "access log: entry {} is cut",
                        self.expected
                    )));
                }
            };
            if frame.seq != self.expected {
                return Err(corrupt(format!(
                    "access log: entry {} carries another sequence number (moved)",
                    self.expected
                )));
            }
            self.offset += buf.len() as u64;
            self.expected += 1;
            if frame.seq < self.from_seq {
                continue;
            }
            let pos = LogPos {
                next_seq: self.expected,
                segment: seg,
                offset: self.offset,
            };
            return Ok(Some((frame, pos)));
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    Ok(got)
}

impl Iterator for SegmentIter<'_> {
    type Item = Result<(Frame, LogPos)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_frame().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}
