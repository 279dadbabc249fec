//! [`ImportSource`]: the streaming reader of FHIR resources from NDJSON and JSON files.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Ndjson,
    Json,
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
    buf: Vec<u8>,
}

/// A streaming reader of FHIR resources from NDJSON and JSON files.
///
/// Built from files and directories; yields one [`ImportItem`] per NDJSON
/// line (blank lines are skipped silently) and per Bundle entry, in file
/// order. Directories contribute their `*.ndjson` and `*.json` files
/// (not recursively, sorted by file name for determinism); other files in a
/// directory, such as `*.ndjson.gz`, are ignored.
///
/// Errors are yielded in place of the item they concern and iteration can go
/// on: after a bad NDJSON line the next line is read; after an I/O error,
/// an oversized `.json` file or an unsupported Bundle the rest of that file
/// is skipped.
///
/// A Bundle found on an NDJSON line is stored as one `Bundle` record, not
/// expanded: Bulk Data ndjson never carries Bundles, so that is an unusual
/// input kept as given.
///
/// Memory: one NDJSON line at a time (at most the line cap, see
/// [`ImportSource::with_max_line_bytes`]); a `.json` file is held whole
/// (at most [`ImportSource::with_max_json_bytes`] bytes of text).
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
    pending: VecDeque<Result<ImportItem, FhirError>>,
}

impl ImportSource {
    /// Lists the input files under `paths` (files or directories).
    ///
    /// A file named explicitly must end in `.ndjson` or `.json`
    /// (case-insensitive). Nothing is parsed yet.
    ///
    /// # Errors
    /// [`FhirError::Io`] if a path does not exist or a directory cannot be
    /// listed; [`FhirError::UnsupportedFile`] for a file of another type.
    pub fn new(paths: &[PathBuf]) -> Result<Self, FhirError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FhirError::Io { path, source }
        };
        let mut files = Vec::new();
        let mut total_bytes = 0u64;
        for path in paths {
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
                    }
                }
                found.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
                for (p, kind, len) in found {
                    total_bytes = total_bytes.saturating_add(len);
                    files.push((p, kind, len));
                }
            } else {
                let kind = kind_of(path)
                    .ok_or_else(|| FhirError::UnsupportedFile { path: path.clone() })?;
                total_bytes = total_bytes.saturating_add(meta.len());
                files.push((path.clone(), kind, meta.len()));
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
            pending: VecDeque::new(),
        })
    }

    /// Sets the cap on one NDJSON line in bytes (default
    /// [`DEFAULT_MAX_LINE_BYTES`]); longer lines yield
    /// [`FhirError::LineTooLong`].
    #[must_use]
    pub fn with_max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }

    /// Sets the cap on one `.json` file in bytes (default
    /// [`DEFAULT_MAX_JSON_BYTES`]); larger files yield
    /// [`FhirError::BundleTooLarge`].
    #[must_use]
    pub fn with_max_json_bytes(mut self, limit: u64) -> Self {
        self.max_json_bytes = limit;
        self
    }

    /// The input files, in reading order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _, _)| p.as_path())
    }

    /// Sum of the input file sizes in bytes, as listed by [`ImportSource::new`]
    /// (the denominator of a progress bar).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes of input consumed so far (the numerator of a progress bar).
    ///
    /// Advances per NDJSON line and per whole `.json` file, never exceeds
    /// [`ImportSource::total_bytes`], and equals it once iteration has ended
    /// (a file is counted at its listed size when finished, even if it was
    /// cut short by an error or changed size meanwhile).
    pub fn bytes_read(&self) -> u64 {
        self.finished_bytes
            .saturating_add(self.current_read.min(self.current_size))
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
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(source) => {
                self.pending.push_back(Err(FhirError::Io { path, source }));
                return true;
            }
        };
        match kind {
            FileKind::Ndjson => {
                self.ndjson = Some(NdjsonState {
                    path,
                    reader: BufReader::with_capacity(256 * 1024, file),
                    line: 0,
                    buf: Vec::new(),
                });
            }
            FileKind::Json => self.read_json_file(path, file),
        }
        true
    }

    fn read_json_file(&mut self, path: PathBuf, file: File) {
        let mut text = Vec::new();
        // Read one byte past the cap so that an oversized file is detected
        // even if its size changed since it was listed.
        let read = file
            .take(self.max_json_bytes.saturating_add(1))
            .read_to_end(&mut text);
        if let Err(source) = read {
            self.pending.push_back(Err(FhirError::Io { path, source }));
            return;
        }
        self.current_read = text.len() as u64;
        if text.len() as u64 > self.max_json_bytes {
            self.pending.push_back(Err(FhirError::BundleTooLarge {
                path,
                limit: self.max_json_bytes,
            }));
            return;
        }
        let value: Value = match serde_json::from_slice(strip_bom(&text)) {
            Ok(v) => v,
            Err(e) => {
                self.pending.push_back(Err(json_error(path, None, &e)));
                return;
            }
        };
        drop(text);
        bundle::expand(path, value, &mut self.pending);
    }

    /// Reads the next non-blank NDJSON line of the open file into an item;
    /// `None` at end of file.
    fn next_ndjson(&mut self) -> Option<Result<ImportItem, FhirError>> {
        let max = self.max_line_bytes;
        let st = self.ndjson.as_mut()?;
        loop {
            st.buf.clear();
            // A huge line once must not pin that much memory for the rest of
            // the file.
            if st.buf.capacity() > 4 * 1024 * 1024 {
                st.buf.shrink_to(64 * 1024);
            }
            st.line += 1;
            let limit = (max as u64).saturating_add(1);
            let n = match (&mut st.reader).take(limit).read_until(b'\n', &mut st.buf) {
                Ok(n) => n,
                Err(source) => {
                    let path = st.path.clone();
                    self.ndjson = None;
                    return Some(Err(FhirError::Io { path, source }));
                }
            };
            if n == 0 {
                self.ndjson = None;
                return None;
            }
            self.current_read = self.current_read.saturating_add(n as u64);
            let mut line: &[u8] = &st.buf;
            if let Some(rest) = line.strip_suffix(b"\n") {
                line = rest;
            } else if n as u64 == limit {
                // No newline within the cap: drop the rest of this line
                // without buffering it.
                match skip_line(&mut st.reader) {
                    Ok(skipped) => {
                        self.current_read = self.current_read.saturating_add(skipped);
                    }
                    Err(source) => {
                        let path = st.path.clone();
                        self.ndjson = None;
                        return Some(Err(FhirError::Io { path, source }));
                    }
                }
                return Some(Err(FhirError::LineTooLong {
                    path: st.path.clone(),
                    line: st.line,
                    limit: max,
                }));
            }
            if let Some(rest) = line.strip_suffix(b"\r") {
                line = rest;
            }
            if st.line == 1 {
                line = strip_bom(line);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = Position::Line(st.line);
            let value: Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(e) => return Some(Err(json_error(st.path.clone(), Some(st.line), &e))),
            };
            return Some(resource_item(&st.path, at, value, None, None));
        }
    }
}

impl Iterator for ImportSource {
    type Item = Result<ImportItem, FhirError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.ndjson.is_some() {
                if let Some(item) = self.next_ndjson() {
                    return Some(item);
                }
                continue;
            }
            if !self.open_next() {
                return None;
            }
        }
    }
}

impl std::iter::FusedIterator for ImportSource {}

/// Discards input up to and including the next `'\n'` (or to end of file),
/// returning the number of bytes discarded.
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

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

/// Builds a [`FhirError::Json`] without any input text: serde_json's syntax
/// and EOF messages are fixed strings, but its data errors can quote input.
fn json_error(path: PathBuf, ndjson_line: Option<u64>, e: &serde_json::Error) -> FhirError {
    use serde_json::error::Category;
    let message = match e.classify() {
        Category::Syntax | Category::Eof => {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
        }
        Category::Io => "I/O error".to_owned(),
        Category::Data => "value not representable".to_owned(),
    };
    FhirError::Json {
        path,
        line: ndjson_line.unwrap_or(e.line() as u64),
        column: e.column(),
        message,
    }
}
