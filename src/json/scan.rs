//! The scanner: one pass over a JSON text (RFC 8259) that checks the whole grammar and
//! reports tokens to a [`Sink`] as byte spans of the input. Tokens are never converted:
//! a number is its text, a string its raw content with escapes as written. Iterative (an
//! explicit stack, no recursion), so depth costs heap, never the thread's stack.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use zeroize::Zeroizing;

use super::error::{JsonError, JsonErrorKind as K};

/// Objects with more members than this use a hash set for the duplicate check; smaller
/// ones compare linearly (faster for the typical FHIR element of a few members).
const LINEAR_NAMES: usize = 12;

/// A scalar token.
#[derive(Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    /// The number's text.
    Number(&'a str),
    /// The whole string token, quotes included.
    String(&'a str),
}

/// Receives the tokens of a valid prefix of the text, in order. Offsets are byte offsets
/// of the input. Default methods ignore the event, so a sink pays only for what it uses.
pub(crate) trait Sink<'a> {
    /// Insignificant whitespace at `start..end`.
    #[inline]
    fn gap(&mut self, _start: usize, _end: usize) {}
    /// An array (`object == false`) or object opens at `at`.
    #[inline]
    fn open(&mut self, _object: bool, _at: usize) {}
    /// The innermost open container closes; `at` is its closing bracket.
    #[inline]
    fn close(&mut self, _at: usize) {}
    /// A member name: the string token, quotes included.
    #[inline]
    fn name(&mut self, _token: &'a str) {}
    /// A scalar value spanning `start..end`.
    #[inline]
    fn scalar(&mut self, _value: Scalar<'a>, _start: usize) {}
}

/// A sink that keeps nothing: validation only.
pub(crate) struct Validate;
impl Sink<'_> for Validate {}

/// A string's unescaped value: borrowed from the text when it holds no escape,
/// otherwise decoded into a buffer zeroized on drop.
#[derive(Clone)]
pub enum Unescaped<'a> {
    /// The string had no escape: its raw content is its value.
    Borrowed(&'a str),
    /// The decoded value (plaintext: zeroized on drop).
    Owned(Zeroizing<String>),
}

impl Deref for Unescaped<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Unescaped::Borrowed(s) => s,
            Unescaped::Owned(s) => s.as_str(),
        }
    }
}

impl PartialEq for Unescaped<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
impl Eq for Unescaped<'_> {}
impl Hash for Unescaped<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl std::fmt::Debug for Unescaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unescaped({} bytes)", self.len())
    }
}

/// Unescapes the content of a string token already checked by the scanner (`raw` is
/// what lies between the quotes). Anything the scanner would have refused decodes to
/// U+FFFD rather than panicking; it cannot occur for text that passed the scanner.
pub(crate) fn unescape(raw: &str) -> Unescaped<'_> {
    if !raw.as_bytes().contains(&b'\\') {
        return Unescaped::Borrowed(raw);
    }
    // Every escape is at least as long as what it decodes to: no reallocation.
    let mut out = Zeroizing::new(String::with_capacity(raw.len()));
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let esc = rest.get(i..).unwrap_or_default();
        let (ch, used) = decode_escape(esc.as_bytes());
        out.push(ch);
        rest = esc.get(used..).unwrap_or_default();
    }
    out.push_str(rest);
    Unescaped::Owned(out)
}

/// Decodes one escape at the start of `b` (which starts with a backslash): the character
/// and the bytes used.
fn decode_escape(b: &[u8]) -> (char, usize) {
    const BAD: (char, usize) = (char::REPLACEMENT_CHARACTER, 2);
    let simple = match b.get(1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let Some(hi) = hex4(b.get(2..6)) else {
                return BAD;
            };
            if (0xD800..0xDC00).contains(&hi) {
                let lo = match (b.get(6), b.get(7)) {
                    (Some(b'\\'), Some(b'u')) => hex4(b.get(8..12)),
                    _ => None,
                };
                return match lo {
                    Some(lo @ 0xDC00..0xE000) => {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        (char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER), 12)
                    }
                    _ => (char::REPLACEMENT_CHARACTER, 6),
                };
            }
            return (char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER), 6);
        }
        _ => return BAD,
    };
    (simple, 2)
}

/// The value of four hex digits.
#[inline]
fn hex4(b: Option<&[u8]>) -> Option<u32> {
    let b = b?;
    let mut v = 0u32;
    for &c in b {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

struct Frame<'a> {
    object: bool,
    /// Where this object's names start in `Scanner::names`.
    names_start: usize,
    /// The names of a large object.
    set: Option<HashSet<Unescaped<'a>>>,
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    max_depth: usize,
    check_names: bool,
    frames: Vec<Frame<'a>>,
    names: Vec<Unescaped<'a>>,
}

/// Checks `text` as one JSON text (RFC 8259, "JSON Grammar": optional whitespace, one
/// value, optional whitespace) and reports its tokens to `sink`. Refuses nesting deeper
/// than `max_depth` and, when `check_names`, an object naming a member twice (compared
/// after unescaping). Errors carry the byte offset and depth only.
pub(crate) fn scan<'a, S: Sink<'a>>(
    text: &'a str,
    max_depth: usize,
    check_names: bool,
    sink: &mut S,
) -> Result<(), JsonError> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        pos: 0,
        max_depth,
        check_names,
        frames: Vec::new(),
        names: Vec::new(),
    };
    s.run(sink)
}

impl<'a> Scanner<'a> {
    #[inline]
    fn err(&self, kind: K, at: usize) -> JsonError {
        JsonError::new(kind, at, self.frames.len())
    }

    #[inline]
    fn skip_ws<S: Sink<'a>>(&mut self, sink: &mut S) {
        let start = self.pos;
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
        if self.pos > start {
            sink.gap(start, self.pos);
        }
    }

    #[inline]
    fn peek(&self) -> Result<u8, JsonError> {
        self.b
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(K::UnexpectedEnd, self.pos))
    }

    fn run<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<(), JsonError> {
        self.skip_ws(sink);
        'value: loop {
            // At a value (whitespace skipped).
            let start = self.pos;
            match self.peek()? {
                c @ (b'{' | b'[') => {
                    let object = c == b'{';
                    if self.frames.len() >= self.max_depth {
                        return Err(self.err(K::TooDeep, start));
                    }
                    self.frames.push(Frame {
                        object,
                        names_start: self.names.len(),
                        set: None,
                    });
                    sink.open(object, start);
                    self.pos += 1;
                    self.skip_ws(sink);
                    let close = if object { b'}' } else { b']' };
                    if self.b.get(self.pos) == Some(&close) {
                        sink.close(self.pos);
                        self.pos += 1;
                        self.pop();
                    } else {
                        if object {
                            self.member_name(sink)?;
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    let token = self.string()?;
                    sink.scalar(Scalar::String(token), start);
                }
                b'-' | b'0'..=b'9' => {
                    let number = self.number()?;
                    sink.scalar(Scalar::Number(number), start);
                }
                b't' => {
                    self.literal(b"true")?;
                    sink.scalar(Scalar::Bool(true), start);
                }
                b'f' => {
                    self.literal(b"false")?;
                    sink.scalar(Scalar::Bool(false), start);
                }
                b'n' => {
                    self.literal(b"null")?;
                    sink.scalar(Scalar::Null, start);
                }
                _ => return Err(self.err(K::ExpectedValue, start)),
            }
            // After a complete value: close containers until one continues.
            loop {
                self.skip_ws(sink);
                let Some(frame) = self.frames.last() else {
                    break 'value;
                };
                let object = frame.object;
                match (object, self.b.get(self.pos)) {
                    (_, None) => return Err(self.err(K::UnexpectedEnd, self.pos)),
                    (_, Some(b',')) => {
                        self.pos += 1;
                        self.skip_ws(sink);
                        if object {
                            self.member_name(sink)?;
                        }
                        continue 'value;
                    }
                    (true, Some(b'}')) | (false, Some(b']')) => {
                        sink.close(self.pos);
                        self.pos += 1;
                        self.pop();
                    }
                    _ => return Err(self.err(K::ExpectedCommaOrClose, self.pos)),
                }
            }
        }
        if self.pos != self.b.len() {
            return Err(self.err(K::TrailingData, self.pos));
        }
        Ok(())
    }

    fn pop(&mut self) {
        if let Some(f) = self.frames.pop() {
            self.names.truncate(f.names_start);
        }
    }

    /// A member name, the colon and the whitespace after it.
    fn member_name<S: Sink<'a>>(&mut self, sink: &mut S) -> Result<(), JsonError> {
        let at = self.pos;
        match self.b.get(at) {
            Some(b'"') => {}
            None => return Err(self.err(K::UnexpectedEnd, at)),
            Some(_) => return Err(self.err(K::ExpectedName, at)),
        }
        let token = self.string()?;
        if self.check_names {
            self.check_name(token, at)?;
        }
        sink.name(token);
        self.skip_ws(sink);
        match self.b.get(self.pos) {
            Some(b':') => self.pos += 1,
            None => return Err(self.err(K::UnexpectedEnd, self.pos)),
            Some(_) => return Err(self.err(K::ExpectedColon, self.pos)),
        }
        self.skip_ws(sink);
        Ok(())
    }

    fn check_name(&mut self, token: &'a str, at: usize) -> Result<(), JsonError> {
        let depth = self.frames.len();
        let dup = JsonError::new(K::DuplicateName, at, depth);
        let name = unescape(strip_quotes(token));
        let Some(frame) = self.frames.last_mut() else {
            return Ok(());
        };
        if let Some(set) = frame.set.as_mut() {
            return if set.insert(name) { Ok(()) } else { Err(dup) };
        }
        let seen = self.names.get(frame.names_start..).unwrap_or_default();
        if seen.iter().any(|n| **n == *name) {
            return Err(dup);
        }
        self.names.push(name);
        if self.names.len() - frame.names_start > LINEAR_NAMES {
            frame.set = Some(self.names.drain(frame.names_start..).collect());
        }
        Ok(())
    }

    /// A string token starting at `pos` (a quote); returns it, quotes included.
    #[inline]
    fn string(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            let run = self
                .b
                .get(i..)
                .unwrap_or_default()
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            let Some(n) = run else {
                return Err(self.err(K::UnexpectedEnd, self.b.len()));
            };
            i += n;
            match self.b.get(i) {
                Some(b'"') => break,
                Some(b'\\') => i = self.escape(i)?,
                _ => return Err(self.err(K::ControlCharacter, i)),
            }
        }
        self.pos = i + 1;
        // Both ends are ASCII quotes, so they are character boundaries.
        self.text
            .get(start..i + 1)
            .ok_or_else(|| self.err(K::InvalidUtf8, start))
    }

    /// Checks the escape at `i` (a backslash); returns the offset after it.
    fn escape(&self, i: usize) -> Result<usize, JsonError> {
        match self.b.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let hi = self.hex4(i + 2)?;
                if (0xD800..0xDC00).contains(&hi) {
                    match (self.b.get(i + 6), self.b.get(i + 7)) {
                        (Some(b'\\'), Some(b'u')) => {
                            let lo = self.hex4(i + 8)?;
                            if (0xDC00..0xE000).contains(&lo) {
                                return Ok(i + 12);
                            }
                        }
                        (None, _) | (Some(b'\\'), None) => {
                            return Err(self.err(K::UnexpectedEnd, self.b.len()));
                        }
                        _ => {}
                    }
                    Err(self.err(K::LoneSurrogate, i))
                } else if (0xDC00..0xE000).contains(&hi) {
                    Err(self.err(K::LoneSurrogate, i))
                } else {
                    Ok(i + 6)
                }
            }
            None => Err(self.err(K::UnexpectedEnd, i + 1)),
            Some(_) => Err(self.err(K::InvalidEscape, i)),
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for k in at..at + 4 {
            let Some(&c) = self.b.get(k) else {
                return Err(self.err(K::UnexpectedEnd, self.b.len()));
            };
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| self.err(K::InvalidEscape, k))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    /// A number token starting at `pos` (RFC 8259, "Numbers"); returns its text.
    #[inline]
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        let mut i = start;
        if self.b.get(i) == Some(&b'-') {
            i += 1;
        }
        match self.b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = self.digits(i + 1),
            None => return Err(self.err(K::UnexpectedEnd, i)),
            Some(_) => return Err(self.err(K::InvalidNumber, i)),
        }
        if self.b.get(i) == Some(&b'.') {
            i = self.some_digits(i + 1)?;
        }
        if let Some(b'e' | b'E') = self.b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = self.b.get(i) {
                i += 1;
            }
            i = self.some_digits(i)?;
        }
        self.pos = i;
        self.text
            .get(start..i)
            .ok_or_else(|| self.err(K::InvalidNumber, start))
    }

    #[inline]
    fn digits(&self, mut i: usize) -> usize {
        while let Some(b'0'..=b'9') = self.b.get(i) {
            i += 1;
        }
        i
    }

    /// At least one digit at `i`; the offset after the run.
    fn some_digits(&self, i: usize) -> Result<usize, JsonError> {
        match self.b.get(i) {
            Some(b'0'..=b'9') => Ok(self.digits(i + 1)),
            None => Err(self.err(K::UnexpectedEnd, i)),
            Some(_) => Err(self.err(K::InvalidNumber, i)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        if rest.starts_with(word) {
            self.pos += word.len();
            return Ok(());
        }
        // The first byte that differs, or the end.
        let same = rest.iter().zip(word).take_while(|(a, b)| a == b).count();
        if same == rest.len() {
            Err(self.err(K::UnexpectedEnd, self.b.len()))
        } else {
            Err(self.err(K::InvalidLiteral, self.pos + same))
        }
    }
}

/// The content of a string token (without its quotes).
#[inline]
pub(crate) fn strip_quotes(token: &str) -> &str {
    token
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_default()
}
