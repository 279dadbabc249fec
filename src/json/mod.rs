//! Exact JSON: one representation of JSON text that cannot lose a digit, used by every
//! path that parses or prints JSON.
//!
//! [`JsonText`] is an owned, validated JSON text (RFC 8259) in a *canonical compact*
//! form: insignificant whitespace removed, and nothing else changed. Number tokens and
//! string tokens are kept byte for byte as written (`1.50`, `-0`, `1e-400`,
//! `12345678901234567890123`, `"\u00e9"` all survive), member order is kept at every
//! level. It is strict: valid UTF-8, RFC 8259 grammar, valid escapes, no unpaired
//! surrogate in a `\u` escape, nothing after the value. Beyond RFC 8259 it refuses an
//! object naming a member twice (compared after unescaping; FHIR forbids it and a store
//! must not pick one silently), and text nested or sized beyond [`Limits`]. Errors
//! ([`JsonError`]) name a byte offset and a depth, never content.
//!
//! On top of it: a borrowed tree ([`JsonText::tree`], [`Value`]) for callers that route
//! on values; the top-level split into members ([`JsonText::members`]) and its reverse
//! ([`JsonText::from_members`], [`ObjectBuilder`]) for the record codec; and serde
//! bridges ([`JsonText::from_serialize`], [`JsonText::deserialize`]) so typed callers
//! keep working (through serde_json, with serde_json's own precision for Rust numbers).
//!
//! The text is plaintext patient data: it lives in zeroize-on-drop buffers (grown by
//! copying into a fresh zeroizing buffer, never by a reallocation that would leave a
//! copy behind), and no `Debug` prints it.

mod error;
mod scan;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod tree;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

pub use error::{JsonError, JsonErrorKind};
pub use scan::Unescaped;
pub(crate) use scan::unescape;
pub use tree::{Array, Member, Number, Object, Str, Value};

use scan::{Sink, Validate};

/// Default bound on nesting: 100 levels of arrays and objects. FHIR resources nest
/// about 10 deep; serde_json's own limit (127) is above it, so every text accepted can
/// also be read by [`JsonText::deserialize`].
pub const DEFAULT_MAX_DEPTH: usize = 100;
/// Default bound on the input's length: 64 MiB (a record's bound).
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Bounds on what [`JsonText::parse_with`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of arrays and objects (a scalar at the top level has depth 0,
    /// `[]` depth 1).
    pub max_depth: usize,
    /// Maximum input length in bytes (whitespace included).
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// An owned, validated JSON text in canonical compact form (see the module docs).
///
/// Invariants: valid UTF-8; one RFC 8259 value; no whitespace outside strings; no
/// duplicated member name in any object; within the [`Limits`] it was parsed with.
/// Two texts are equal when their bytes are. Zeroized on drop; `Debug` shows the length
/// only.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonText {
    text: Zeroizing<String>,
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonText({} bytes)", self.text.len())
    }
}

/// Collects the canonical text: the input minus the gaps the scanner reports. Starts
/// copying only at the first gap (text already compact is taken as it is).
struct Canonical<'a> {
    input: &'a str,
    out: Option<Zeroizing<String>>,
    copied: usize,
}

impl<'a> Sink<'a> for Canonical<'a> {
    #[inline]
    fn gap(&mut self, start: usize, end: usize) {
        let input = self.input;
        let out = self
            .out
            .get_or_insert_with(|| Zeroizing::new(String::with_capacity(input.len())));
        // Gaps are ASCII whitespace outside strings: character boundaries.
        out.push_str(input.get(self.copied..start).unwrap_or_default());
        self.copied = end;
    }
}

impl JsonText {
    /// Parses `input` under the default [`Limits`] (depth 100, 64 MiB). Fails with a
    /// [`JsonError`] naming the kind, byte offset and depth of the first problem.
    pub fn parse(input: impl AsRef<[u8]>) -> Result<Self, JsonError> {
        Self::parse_with(input.as_ref(), Limits::default())
    }

    /// Parses `input` under `limits`: see [`JsonText::parse`].
    pub fn parse_with(input: &[u8], limits: Limits) -> Result<Self, JsonError> {
        let text = utf8(input, limits)?;
        let text = compact(text, limits)?.unwrap_or_else(|| Zeroizing::new(text.to_owned()));
        Ok(JsonText { text })
    }

    /// Parses an owned buffer, reusing it when it is already compact (serde_json's
    /// output, a minified NDJSON line): no copy in that case. See [`JsonText::parse`].
    pub fn parse_owned(mut input: Zeroizing<Vec<u8>>, limits: Limits) -> Result<Self, JsonError> {
        utf8(&input, limits)?;
        let owned = match String::from_utf8(std::mem::take(&mut *input)) {
            Ok(s) => Zeroizing::new(s),
            // Already checked, so unreachable; the bytes are zeroized on drop.
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                return Err(JsonError::new(JsonErrorKind::InvalidUtf8, 0, 0));
            }
        };
        let text = compact(&owned, limits)?.unwrap_or(owned);
        Ok(JsonText { text })
    }

    /// Serializes `value` with serde_json (compact) and validates the result. Rust
    /// numbers are written by serde_json (shortest round-trip for floats; non-finite
    /// floats become `null`). Fails with [`JsonErrorKind::Serialize`] when serde_json
    /// refuses the value (a map key that is not a string), or with
    /// [`JsonErrorKind::DuplicateName`] when the value names a member twice (a
    /// `#[serde(flatten)]` clash, a map with two keys that serialize alike).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, JsonError> {
        let mut w = ZeroizingWriter(Zeroizing::new(Vec::with_capacity(256)));
        serde_json::to_writer(&mut w, value)
            .map_err(|_| JsonError::new(JsonErrorKind::Serialize, 0, 0))?;
        Self::parse_owned(
            w.0,
            Limits {
                max_depth: DEFAULT_MAX_DEPTH,
                max_bytes: usize::MAX,
            },
        )
    }

    /// Deserializes into `T` with serde_json. Numbers go through serde_json's
    /// conversions (an `f64` field reads `1.50` as 1.5; `1e400` fails). Fails with
    /// [`JsonErrorKind::Deserialize`] at the offset of the last canonical-text byte
    /// serde_json read; serde_json's message is dropped because it may quote content.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        serde_json::from_str(&self.text).map_err(|e| {
            // The canonical text is one line: the column is the byte offset plus one.
            JsonError::new(JsonErrorKind::Deserialize, e.column().saturating_sub(1), 0)
        })
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// Length of the canonical text in bytes (never 0).
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Always false (a JSON text holds one value); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The canonical text as a zeroize-on-drop string.
    pub fn into_string(self) -> Zeroizing<String> {
        self.text
    }

    /// The tree over the canonical text, built in one pass (see [`Value`]).
    pub fn tree(&self) -> Value<'_> {
        let mut sink = tree::TreeSink::new(&self.text);
        let done = scan::scan(&self.text, usize::MAX, false, &mut sink);
        debug_assert!(done.is_ok(), "a JsonText always scans");
        // The invariant makes both failures impossible; a null is the safe fallback.
        sink.finish()
            .filter(|_| done.is_ok())
            .unwrap_or(Value::Null)
    }

    /// The text indented for people (two spaces per level, `": "` after names, one
    /// member or item per line), tokens untouched: numbers and strings stay byte for
    /// byte, so parsing the result gives back this text. Zeroized on drop.
    pub fn pretty(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(self.text.len() * 2));
        pretty_into(&self.tree(), 0, &mut out);
        out
    }

    /// True when the top-level value is an object.
    pub fn is_object(&self) -> bool {
        self.text.starts_with('{')
    }

    /// The top-level members, in order, as `(name, exact value text)`, without building
    /// a tree. Fails with [`JsonErrorKind::NotAnObject`] when the top level is not an
    /// object.
    pub fn members(&self) -> Result<Members<'_>, JsonError> {
        if !self.is_object() {
            return Err(JsonError::new(JsonErrorKind::NotAnObject, 0, 0));
        }
        Ok(Members {
            text: &self.text,
            pos: 1,
        })
    }

    /// Joins members `(raw name without quotes, exact value text)` into an object, in
    /// the order given, and validates the result (so duplicated names, malformed names or
    /// values are refused: [`JsonError`] offsets are in the joined text). The reverse of
    /// [`JsonText::members`]: `from_members(t.members()?.map(|(n, v)| (n.raw(), v)))`
    /// equals `t`.
    pub fn from_members<'m, I>(members: I) -> Result<Self, JsonError>
    where
        I: IntoIterator<Item = (&'m str, &'m str)>,
    {
        let mut b = ObjectBuilder::with_capacity(0);
        for (name, value) in members {
            b.member(name, value);
        }
        b.finish()
    }
}

fn pretty_into(v: &Value<'_>, depth: usize, out: &mut String) {
    let indent = |out: &mut String, d: usize| {
        out.push('\n');
        for _ in 0..d {
            out.push_str("  ");
        }
    };
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, item) in a.items().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                pretty_into(item, depth + 1, out);
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(o) if !o.is_empty() => {
            out.push('{');
            for (i, m) in o.members().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                out.push_str(m.name.token());
                out.push_str(": ");
                pretty_into(&m.value, depth + 1, out);
            }
            indent(out, depth);
            out.push('}');
        }
        v => out.push_str(v.raw()),
    }
}

/// An `io::Write` over a zeroizing buffer that grows by copying into a fresh zeroizing
/// buffer, so no reallocation leaves plaintext behind.
struct ZeroizingWriter(Zeroizing<Vec<u8>>);

impl std::io::Write for ZeroizingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        extend_zeroizing(&mut self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes room for `extra` more bytes in `buf` without a reallocation that would leave
/// a copy of the plaintext in freed memory: when full, moves to a fresh buffer of twice
/// the need and lets the old one be zeroized on drop.
pub(crate) fn reserve_zeroizing(buf: &mut Zeroizing<Vec<u8>>, extra: usize) {
    let need = buf.len().saturating_add(extra);
    if need > buf.capacity() {
        let mut fresh = Zeroizing::new(Vec::with_capacity(need.saturating_mul(2).max(64)));
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
}

/// Appends `bytes` to `buf` through [`reserve_zeroizing`].
pub(crate) fn extend_zeroizing(buf: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    reserve_zeroizing(buf, bytes.len());
    buf.extend_from_slice(bytes);
}

/// The top-level members of an object [`JsonText`], in order: `(name, exact value text)`.
/// Made by [`JsonText::members`]; walks the canonical text once, unescaping nothing.
pub struct Members<'a> {
    text: &'a str,
    /// At the next member's name, or at the closing brace.
    pos: usize,
}

impl fmt::Debug for Members<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Members(at byte {})", self.pos)
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (Str<'a>, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        if b.get(self.pos) != Some(&b'"') {
            return None;
        }
        let name_end = skip_string(b, self.pos)?;
        let name = Str::from_token(self.text.get(self.pos..name_end)?);
        // Canonical text: the colon follows the name at once.
        let value_start = name_end + 1;
        let value_end = skip_value(b, value_start)?;
        let value = self.text.get(value_start..value_end)?;
        self.pos = match b.get(value_end) {
            Some(b',') => value_end + 1,
            _ => value_end,
        };
        Some((name, value))
    }
}

/// The offset after the string token starting at `i` (a quote) of checked text.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += b.get(j..)?.iter().position(|&c| c == b'"' || c == b'\\')?;
        match b.get(j)? {
            b'\\' => j += 2,
            _ => return Some(j + 1),
        }
    }
}

/// The offset after the value starting at `i` of checked canonical text.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let n = b
                .get(i..)?
                .iter()
                .position(|&c| matches!(c, b',' | b'}' | b']'))
                .unwrap_or(b.len() - i);
            Some(i + n)
        }
    }
}

/// Builds an object [`JsonText`] member by member, writing into one zeroizing buffer
/// (the record codec decrypts field values straight into it). [`ObjectBuilder::finish`]
/// validates the whole text, so a builder can never produce an invalid [`JsonText`].
pub struct ObjectBuilder {
    buf: Zeroizing<Vec<u8>>,
    members: usize,
}

impl fmt::Debug for ObjectBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectBuilder({} members)", self.members)
    }
}

impl ObjectBuilder {
    /// An empty object, with room for `capacity` bytes of text before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Zeroizing::new(Vec::with_capacity(capacity.max(2)));
        buf.push(b'{');
        ObjectBuilder { buf, members: 0 }
    }

    /// Appends a member: `raw_name` is the name as it sits between the quotes (escapes
    /// as written, e.g. [`Str::raw`]), `raw_value` the value's exact text.
    pub fn member(&mut self, raw_name: &str, raw_value: &str) {
        self.value_buffer(raw_name, raw_value.len())
            .extend_from_slice(raw_value.as_bytes());
    }

    /// Appends a member's name and returns the buffer, with room for `value_len` more
    /// bytes, for the caller to append the value's exact text to (the caller must not
    /// write more than `value_len` bytes, or the buffer reallocates).
    pub(crate) fn value_buffer(&mut self, raw_name: &str, value_len: usize) -> &mut Vec<u8> {
        reserve_zeroizing(&mut self.buf, raw_name.len() + value_len + 5);
        if self.members > 0 {
            self.buf.push(b',');
        }
        self.members += 1;
        self.buf.push(b'"');
        self.buf.extend_from_slice(raw_name.as_bytes());
        self.buf.extend_from_slice(b"\":");
        &mut self.buf
    }

    /// Closes the object and validates it (no size bound; depth under the default).
    pub fn finish(mut self) -> Result<JsonText, JsonError> {
        extend_zeroizing(&mut self.buf, b"}");
        let buf = std::mem::replace(&mut self.buf, Zeroizing::new(Vec::new()));
        let text = JsonText::parse_owned(
            buf,
            Limits {
                max_depth: DEFAULT_MAX_DEPTH,
                max_bytes: usize::MAX,
            },
        )?;
        // Valid JSON is not enough: a value such as `0,"x":1` (or a name holding `":0,"`)
        // joins into a valid object with a member nobody appended. Found by the `record`
        // fuzz target.
        if text.members()?.count() != self.members {
            return Err(JsonError::new(JsonErrorKind::SplicedMember, 0, 0));
        }
        Ok(text)
    }
}

/// Checks the size bound and UTF-8 (RFC 8259, "Character Encoding").
fn utf8(input: &[u8], limits: Limits) -> Result<&str, JsonError> {
    if input.len() > limits.max_bytes {
        return Err(JsonError::new(JsonErrorKind::TooLarge, limits.max_bytes, 0));
    }
    std::str::from_utf8(input)
        .map_err(|e| JsonError::new(JsonErrorKind::InvalidUtf8, e.valid_up_to(), 0))
}

/// `input` without a leading UTF-8 byte order mark (EF BB BF), for readers of files.
/// RFC 8259 ("Character Encoding") forbids writing one and lets a parser ignore it;
/// [`JsonText::parse`] itself refuses it, so a file reader strips it explicitly.
pub fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input)
}

/// The tree of a text already checked once (a field value cut from a [`JsonText`], read
/// back from the vault): scanned again with the grammar checks, without the duplicate
/// check, under the default depth.
pub(crate) fn tree_of(text: &str) -> Result<Value<'_>, JsonError> {
    let mut sink = tree::TreeSink::new(text);
    scan::scan(text, DEFAULT_MAX_DEPTH, false, &mut sink)?;
    sink.finish()
        .ok_or_else(|| JsonError::new(JsonErrorKind::UnexpectedEnd, 0, 0))
}

/// Validates without keeping anything (same checks as [`JsonText::parse_with`]).
pub fn validate(input: &[u8], limits: Limits) -> Result<(), JsonError> {
    let text = utf8(input, limits)?;
    scan::scan(text, limits.max_depth, true, &mut Validate)
}

/// Checks `text` and returns its canonical form, or `None` when `text` already is.
fn compact(text: &str, limits: Limits) -> Result<Option<Zeroizing<String>>, JsonError> {
    let mut sink = Canonical {
        input: text,
        out: None,
        copied: 0,
    };
    scan::scan(text, limits.max_depth, true, &mut sink)?;
    Ok(sink.out.map(|mut out| {
        out.push_str(text.get(sink.copied..).unwrap_or_default());
        out
    }))
}
