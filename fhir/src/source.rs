//! [`ImportSource`]: the files of an import, read as a stream of items.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use zeroize::Zeroizing;

use crate::bundle::{self, EntryIndex, Piece, Reason};
use crate::scan::ScanError;
use crate::stream;
use crate::subject::BundleCtx;
use crate::{DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_LINE_BYTES, FhirError, ImportItem, Position};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Ndjson,
    Json,
    /// Found in a directory with a `.ndjson`/`.json` name but not a regular file: rejected
    /// when its turn comes.
    NotRegular,
}

fn kind_of(path: &Path) -> Option<FileKind> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("ndjson") => Some(FileKind::Ndjson),
        Some(e) if e.eq_ignore_ascii_case("json") => Some(FileKind::Json),
        _ => None,
    }
}

struct NdjsonState {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    /// The line being read (health data: zeroized when replaced or dropped).
    buf: Zeroizing<Vec<u8>>,
}

/// A Bundle being streamed by its reader thread.
struct StreamState {
    rx: Receiver<Located>,
    handle: std::thread::JoinHandle<()>,
    path: PathBuf,
    read: Arc<AtomicU64>,
}

/// A streaming reader of FHIR resources from NDJSON and JSON files (docs/FHIR.md
/// sections 2 to 6).
///
/// Built from files and directories; yields one [`ImportItem`] per NDJSON line (blank
/// lines are skipped silently), per resource of a Bundle that is split (recursively for
/// nested Bundles), and per `.json` file otherwise, in file order. Directories contribute
/// their `*.ndjson` and `*.json` files (not recursively, sorted by file name); other
/// files in a directory, such as `*.ndjson.gz`, are ignored.
///
/// Errors are yielded in place of the item they concern and iteration goes on: after a
/// bad NDJSON line with the next line; after a bad Bundle entry with the next entry;
/// after an unreadable or invalid `.json` file with the next file.
///
/// Only regular files are read: a path that is (or links to) a device, a FIFO or a
/// socket is refused ([`FhirError::NotRegularFile`]) without being opened.
///
/// Memory: one NDJSON line at a time (at most the line cap, see
/// [`ImportSource::with_max_line_bytes`]) and the records cut from it; a `.json` file is
/// read as a stream, twice when it is a Bundle to split (the first pass keeps, per entry,
/// only its `fullUrl` and what resolving references needs; the second hands over one
/// entry at a time from a reader thread through a channel of two items); a `.json`
/// resource held whole is at most [`ImportSource::with_max_json_bytes`] bytes.
pub struct ImportSource {
    /// (path, kind, size listed by `new`).
    files: Vec<(PathBuf, FileKind, u64)>,
    next_file: usize,
    total_bytes: u64,
    /// Listed sizes of the files already finished.
    finished_bytes: u64,
    /// Listed size of the file being read.
    current_size: u64,
    /// Bytes consumed from the file being read.
    current_read: u64,
    max_line_bytes: usize,
    max_json_bytes: u64,
    ndjson: Option<NdjsonState>,
    stream: Option<StreamState>,
    pending: VecDeque<Located>,
}

impl ImportSource {
    /// Lists the input files under `paths` (files or directories).
    ///
    /// A file named explicitly must end in `.ndjson` or `.json` (case-insensitive) and
    /// be a regular file (or a link to one). Nothing is parsed yet.
    ///
    /// # Errors
    /// [`FhirError::Io`] if a path does not exist or a directory cannot be listed;
    /// [`FhirError::NotRegularFile`] for a device, FIFO or socket (or a link to one);
    /// [`FhirError::UnsupportedFile`] for a file of another type.
    pub fn new(paths: &[PathBuf]) -> Result<Self, FhirError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FhirError::Io { path, source }
        };
        let mut files = Vec::new();
        let mut total_bytes = 0u64;
        for path in paths {
            // `metadata` follows symbolic links: a link is judged by what it points at.
            let meta = std::fs::metadata(path).map_err(io_err(path))?;
            if meta.is_dir() {
                let mut found = Vec::new();
                for entry in std::fs::read_dir(path).map_err(io_err(path))? {
                    let entry = entry.map_err(io_err(path))?;
                    let p = entry.path();
                    let Some(kind) = kind_of(&p) else { continue };
                    let m = std::fs::metadata(&p).map_err(io_err(&p))?;
                    if m.is_file() {
                        found.push((p, kind, m.len()));
                    } else if !m.is_dir() {
                        found.push((p, FileKind::NotRegular, 0));
                    }
                }
                found.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
                for (p, kind, len) in found {
                    total_bytes = total_bytes.saturating_add(len);
                    files.push((p, kind, len));
                }
            } else if meta.is_file() {
                let kind = kind_of(path)
                    .ok_or_else(|| FhirError::UnsupportedFile { path: path.clone() })?;
                total_bytes = total_bytes.saturating_add(meta.len());
                files.push((path.clone(), kind, meta.len()));
            } else {
                return Err(FhirError::NotRegularFile { path: path.clone() });
            }
        }
        Ok(ImportSource {
            files,
            next_file: 0,
            total_bytes,
            finished_bytes: 0,
            current_size: 0,
            current_read: 0,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            ndjson: None,
            stream: None,
            pending: VecDeque::new(),
        })
    }

    /// Sets the cap on one NDJSON line in bytes (default [`DEFAULT_MAX_LINE_BYTES`]);
    /// longer lines yield [`FhirError::LineTooLong`].
    #[must_use]
    pub fn with_max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }

    /// Sets the cap on a `.json` resource held whole, in bytes (default
    /// [`DEFAULT_MAX_JSON_BYTES`]); larger ones yield [`FhirError::BundleTooLarge`].
    #[must_use]
    pub fn with_max_json_bytes(mut self, limit: u64) -> Self {
        self.max_json_bytes = limit;
        self
    }

    /// The input files, in reading order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _, _)| p.as_path())
    }

    /// Sum of the input file sizes in bytes, as listed by [`ImportSource::new`] (the
    /// denominator of a progress bar).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes of input consumed so far (the numerator of a progress bar).
    ///
    /// Advances per NDJSON line and per Bundle entry, never exceeds
    /// [`ImportSource::total_bytes`], and equals it once iteration has ended (a file is
    /// counted at its listed size when finished, even if it was cut short by an error or
    /// changed size meanwhile).
    pub fn bytes_read(&self) -> u64 {
        let current = match &self.stream {
            Some(s) => s.read.load(Ordering::Relaxed),
            None => self.current_read,
        };
        self.finished_bytes
            .saturating_add(current.min(self.current_size))
    }

    /// Opens the next file; returns false when there is none.
    fn open_next(&mut self) -> bool {
        // Only called between files: the previous one is done.
        self.finished_bytes = self.finished_bytes.saturating_add(self.current_size);
        self.current_size = 0;
        self.current_read = 0;
        let Some((path, kind, size)) = self.files.get(self.next_file).cloned() else {
            return false;
        };
        self.current_size = size;
        self.next_file += 1;
        let file = match open_regular(&path, kind) {
            Ok(f) => f,
            Err(e) => {
                self.pending.push_back(Located::err(e));
                return true;
            }
        };
        match kind {
            FileKind::Ndjson => {
                self.ndjson = Some(NdjsonState {
                    path,
                    reader: BufReader::with_capacity(256 * 1024, file),
                    line: 0,
                    buf: Zeroizing::new(Vec::new()),
                });
            }
            FileKind::Json => self.read_json_file(path, file),
            FileKind::NotRegular => {}
        }
        true
    }

    /// Pass one over a `.json` file, then either the streamed pass two (a Bundle to
    /// split) or a whole read.
    fn read_json_file(&mut self, path: PathBuf, file: File) {
        let mut ctx = BundleCtx::default();
        let reader = match skip_bom(BufReader::with_capacity(256 * 1024, file)) {
            Ok(r) => r,
            Err(source) => {
                return self
                    .pending
                    .push_back(Located::err(FhirError::Io { path, source }));
            }
        };
        let pass_one = stream::read_top(reader, &mut |_, entry| {
            bundle::add_to_ctx(entry, &mut ctx);
            true
        });
        let top = match pass_one {
            Ok(top) => top,
            Err(e) => {
                let err = match e.classify() {
                    serde_json::error::Category::Io => FhirError::Io {
                        path,
                        source: io::Error::other(e.to_string()),
                    },
                    _ => json_error(path, Position::Document, &e),
                };
                return self.pending.push_back(Located::err(err));
            }
        };
        let split = top.resource_type.as_deref() == Some("Bundle")
            && top
                .bundle_type
                .as_deref()
                .is_some_and(|t| bundle::SPLIT_TYPES.contains(&t))
            && !top.duplicate
            && !top.bad_entry
            && !top.not_object;
        if split {
            self.start_stream(path, ctx);
        } else {
            self.read_whole(path);
        }
    }

    /// A `.json` resource held whole: a single resource, a Bundle kept whole, or a file
    /// whose top level is invalid (rejected with the reason).
    fn read_whole(&mut self, path: PathBuf) {
        let limit = self.max_json_bytes;
        let file = match open_regular(&path, FileKind::Json) {
            Ok(f) => f,
            Err(e) => return self.pending.push_back(Located::err(e)),
        };
        let mut reader = match skip_bom(BufReader::new(file)) {
            Ok(r) => r,
            Err(source) => {
                return self
                    .pending
                    .push_back(Located::err(FhirError::Io { path, source }));
            }
        };
        let mut bytes =
            Vec::with_capacity(usize::try_from(self.current_size.min(limit)).unwrap_or(0));
        // One byte past the cap so that an oversized file is detected even if its size
        // changed since it was listed.
        if let Err(source) = (&mut reader)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
        {
            return self
                .pending
                .push_back(Located::err(FhirError::Io { path, source }));
        }
        self.current_read = bytes.len() as u64;
        if bytes.len() as u64 > limit {
            return self
                .pending
                .push_back(Located::err(FhirError::BundleTooLarge {
                    path,
                    at: Position::Document,
                    limit,
                }));
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return self.pending.push_back(Located::err(utf8_error(
                    path,
                    Position::Document,
                    e.utf8_error(),
                )));
            }
        };
        let pending = &mut self.pending;
        let trimmed = trim_json_ws(&text);
        let text = if trimmed.len() == text.len() {
            Cow::Owned(text)
        } else {
            Cow::Owned(trimmed.to_owned())
        };
        bundle::expand(text, false, &mut |e, p| {
            pending.push_back(located(&path, at_json(e), p));
        });
    }

    /// Starts the reader thread of pass two over a Bundle to split.
    fn start_stream(&mut self, path: PathBuf, ctx: BundleCtx<'static>) {
        let (tx, rx) = sync_channel::<Located>(2);
        let read = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&read);
        let thread_path = path.clone();
        let limit = self.max_json_bytes;
        let spawned = std::thread::Builder::new()
            .name("medvault-fhir-bundle".to_owned())
            .spawn(move || stream_entries(thread_path, ctx, limit, counter, tx));
        match spawned {
            Ok(handle) => {
                self.stream = Some(StreamState {
                    rx,
                    handle,
                    path,
                    read,
                });
            }
            Err(source) => self
                .pending
                .push_back(Located::err(FhirError::Io { path, source })),
        }
    }

    /// Reads the next non-blank NDJSON line of the open file into items; `false` at end
    /// of file.
    fn next_ndjson(&mut self) -> bool {
        let max = self.max_line_bytes;
        let Some(st) = self.ndjson.as_mut() else {
            return false;
        };
        loop {
            st.buf.clear();
            // A huge line once must not pin that much memory for the rest of the file.
            if st.buf.capacity() > 4 * 1024 * 1024 {
                st.buf = Zeroizing::new(Vec::new());
            }
            st.line += 1;
            let limit = (max as u64).saturating_add(1);
            let n = match (&mut st.reader).take(limit).read_until(b'\n', &mut st.buf) {
                Ok(n) => n,
                Err(source) => {
                    let path = st.path.clone();
                    self.ndjson = None;
                    self.pending
                        .push_back(Located::err(FhirError::Io { path, source }));
                    return true;
                }
            };
            if n == 0 {
                self.ndjson = None;
                return false;
            }
            self.current_read = self.current_read.saturating_add(n as u64);
            let mut end = st.buf.len();
            if st.buf.last() == Some(&b'\n') {
                end -= 1;
            } else if n as u64 == limit {
                // No newline within the cap: drop the rest of this line without
                // buffering it.
                match skip_line(&mut st.reader) {
                    Ok(skipped) => {
                        self.current_read = self.current_read.saturating_add(skipped);
                    }
                    Err(source) => {
                        let path = st.path.clone();
                        self.ndjson = None;
                        self.pending
                            .push_back(Located::err(FhirError::Io { path, source }));
                        return true;
                    }
                }
                self.pending.push_back(Located::err(FhirError::LineTooLong {
                    path: st.path.clone(),
                    line: st.line,
                    limit: max,
                }));
                return true;
            }
            if end > 0 && st.buf[end - 1] == b'\r' {
                end -= 1;
            }
            let mut start = 0;
            if st.line == 1 && st.buf[..end].starts_with(b"\xEF\xBB\xBF") {
                start = 3;
            }
            let line = &st.buf[start..end];
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // The line becomes the record's text without a copy: the buffer is taken (a
            // fresh one serves the next line), cut to the line, its excess capacity
            // (growth by doubling) given back.
            let next = Vec::with_capacity(end.min(1024 * 1024));
            let mut bytes = std::mem::replace(&mut *st.buf, next);
            bytes.truncate(end);
            bytes.drain(..start);
            bytes.shrink_to_fit();
            let n_line = st.line;
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    let err = utf8_error(st.path.clone(), Position::Line(n_line), e.utf8_error());
                    self.pending.push_back(Located::err(err));
                    return true;
                }
            };
            let trimmed = trim_json_ws(&text);
            let text = if trimmed.len() == text.len() {
                Cow::Owned(text)
            } else {
                Cow::Owned(trimmed.to_owned())
            };
            let path = &st.path;
            let pending = &mut self.pending;
            bundle::expand(text, true, &mut |e, p| {
                let at = match e {
                    None => Position::Line(n_line),
                    Some(i) => Position::LineEntry(n_line, i),
                };
                pending.push_back(located(path, at, p));
            });
            return true;
        }
    }
}

impl ImportSource {
    /// The next item with the file and position it comes from.
    pub(crate) fn next_located(&mut self) -> Option<Located> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if let Some(st) = &self.stream {
                match st.rx.recv() {
                    Ok(item) => return Some(item),
                    Err(_) => {
                        // The reader thread is done (it drops its sender when it ends).
                        if let Some(st) = self.stream.take() {
                            self.current_read = st.read.load(Ordering::Relaxed);
                            if st.handle.join().is_err() {
                                return Some(Located::err(FhirError::Io {
                                    path: st.path,
                                    source: io::Error::other("the Bundle reader failed"),
                                }));
                            }
                        }
                        continue;
                    }
                }
            }
            if self.ndjson.is_some() {
                self.next_ndjson();
                continue;
            }
            if !self.open_next() {
                return None;
            }
        }
    }
}

impl Iterator for ImportSource {
    type Item = Result<ImportItem, FhirError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_located().map(|l| l.item)
    }
}

impl std::iter::FusedIterator for ImportSource {}

/// An item with the file and position it comes from (for rejects of records the vault
/// refuses).
pub(crate) struct Located {
    /// File.
    pub path: PathBuf,
    /// Position in the file, when known.
    pub at: Option<Position>,
    /// The item.
    pub item: Result<ImportItem, FhirError>,
}

impl Located {
    fn err(e: FhirError) -> Self {
        Located {
            path: e.path().to_path_buf(),
            at: e.position(),
            item: Err(e),
        }
    }
}

fn located(path: &Path, at: Position, p: Piece) -> Located {
    Located {
        path: path.to_path_buf(),
        at: Some(at),
        item: to_item(path, at, p),
    }
}

/// Pass two over a Bundle to split, on the reader thread: every entry becomes items,
/// sent one at a time. Stops when the receiver is gone.
fn stream_entries(
    path: PathBuf,
    ctx: BundleCtx<'static>,
    limit: u64,
    counter: Arc<AtomicU64>,
    tx: SyncSender<Located>,
) {
    let send = |item: Located| -> bool {
        match tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(item)) => tx.send(item).is_ok(),
            Err(TrySendError::Disconnected(_)) => false,
        }
    };
    let file = match open_regular(&path, FileKind::Json) {
        Ok(f) => f,
        Err(e) => {
            send(Located::err(e));
            return;
        }
    };
    let counting = Counting {
        inner: file,
        read: Arc::clone(&counter),
    };
    let reader = match skip_bom(BufReader::with_capacity(256 * 1024, counting)) {
        Ok(r) => r,
        Err(source) => {
            send(Located::err(FhirError::Io { path, source }));
            return;
        }
    };
    let mut cancelled = false;
    let result = stream::read_top(reader, &mut |i, entry| {
        if entry.len() as u64 > limit {
            let e = FhirError::BundleTooLarge {
                path: path.clone(),
                at: Position::Entry(i),
                limit,
            };
            cancelled = !send(Located::err(e));
            return !cancelled;
        }
        bundle::expand_entry(entry, i, &ctx, &mut |e, p| {
            if !cancelled {
                cancelled = !send(located(&path, at_json(e.or(Some(i))), p));
            }
        });
        !cancelled
    });
    if let Err(e) = result
        && !cancelled
    {
        // The file changed since pass one, or cannot be read any more.
        let err = match e.classify() {
            serde_json::error::Category::Io => FhirError::Io {
                path,
                source: io::Error::other(e.to_string()),
            },
            _ => json_error(path, Position::Document, &e),
        };
        send(Located::err(err));
    }
}

/// A reader that counts the bytes read, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens a file only if it is a regular file, checked before opening (so that a FIFO
/// is never opened, which would block) and again on the open handle (so that a file
/// replaced meanwhile by a device is not read).
fn open_regular(path: &Path, kind: FileKind) -> Result<File, FhirError> {
    let not_regular = || FhirError::NotRegularFile {
        path: path.to_path_buf(),
    };
    if kind == FileKind::NotRegular {
        return Err(not_regular());
    }
    let io_err = |source| FhirError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !std::fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(io_err)?;
    if !file.metadata().map_err(io_err)?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Skips a UTF-8 byte order mark at the start of a reader.
fn skip_bom<R: Read>(mut r: BufReader<R>) -> io::Result<BufReader<R>> {
    let buf = r.fill_buf()?;
    if buf.starts_with(b"\xEF\xBB\xBF") {
        r.consume(3);
    }
    Ok(r)
}

/// Discards input up to and including the next `'\n'` (or to end of file), returning the
/// number of bytes discarded.
fn skip_line<R: BufRead>(r: &mut R) -> io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(skipped);
        }
        let (used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        r.consume(used);
        skipped += used as u64;
        if done {
            return Ok(skipped);
        }
    }
}

/// JSON whitespace (RFC 8259: space, tab, LF, CR) trimmed from both ends.
fn trim_json_ws(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r'])
}

fn at_json(e: EntryIndex) -> Position {
    match e {
        None => Position::Document,
        Some(i) => Position::Entry(i),
    }
}

fn json_error(path: PathBuf, at: Position, e: &serde_json::Error) -> FhirError {
    match crate::scan::json_error(e) {
        ScanError::Json {
            message,
            line,
            column,
        } => FhirError::Json {
            path,
            at,
            line: line as u64,
            column: column as u64,
            message,
        },
        _ => FhirError::NotAResource { path, at },
    }
}

fn utf8_error(path: PathBuf, at: Position, e: std::str::Utf8Error) -> FhirError {
    FhirError::Json {
        path,
        at,
        line: 1,
        column: e.valid_up_to() as u64 + 1,
        message: "invalid UTF-8".to_owned(),
    }
}

/// The error for a rejected piece.
pub(crate) fn reject_error(path: PathBuf, at: Position, r: Reason) -> FhirError {
    match r {
        Reason::Scan(ScanError::Json {
            message,
            line,
            column,
        }) => FhirError::Json {
            path,
            at,
            line: line as u64,
            column: column as u64,
            message,
        },
        Reason::Scan(ScanError::DuplicateMember) => FhirError::DuplicateMember { path, at },
        Reason::Scan(ScanError::TooDeep) => FhirError::TooDeep { path, at },
        Reason::Scan(ScanError::NotAnObject) | Reason::NotAResource | Reason::BadEntry => {
            FhirError::NotAResource { path, at }
        }
        Reason::InvalidId => FhirError::InvalidId { path, at },
    }
}

fn to_item(path: &Path, at: Position, p: Piece) -> Result<ImportItem, FhirError> {
    match p {
        Piece::Record(r) => Ok(ImportItem::Record(r)),
        Piece::Skipped(why) => Ok(ImportItem::Skipped {
            path: path.to_path_buf(),
            at,
            why,
        }),
        Piece::Rejected(r) => Err(reject_error(path.to_path_buf(), at, r)),
    }
}
