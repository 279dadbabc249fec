//! Why a JSON text was refused, and where. An error names a byte offset and a nesting
//! depth, never the bytes themselves: the text is plaintext patient data.

use std::fmt;

/// What is wrong with a JSON text (RFC 8259 grammar, or one of medvault's own refusals:
/// duplicated member names, depth and size bounds).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonErrorKind {
    /// The text ends inside a value (or is empty).
    UnexpectedEnd,
    /// The bytes are not valid UTF-8 (RFC 8259, "Character Encoding").
    InvalidUtf8,
    /// A value was expected here (after `[`, `,` or `:`, or at the start).
    ExpectedValue,
    /// A member name (a string) was expected here (after `{` or `,` in an object).
    ExpectedName,
    /// A `:` was expected after a member name.
    ExpectedColon,
    /// A `,` or the closing bracket of the enclosing array or object was expected.
    ExpectedCommaOrClose,
    /// A number does not follow the grammar (RFC 8259, "Numbers"): a leading zero, a
    /// missing digit after `-`, `.` or the exponent mark.
    InvalidNumber,
    /// `true`, `false` or `null` misspelt.
    InvalidLiteral,
    /// A backslash escape other than `\" \\ \/ \b \f \n \r \t \uXXXX`.
    InvalidEscape,
    /// A `\u` escape names a UTF-16 surrogate that is not part of a high/low pair.
    LoneSurrogate,
    /// A raw control character (U+0000 to U+001F) inside a string; it must be escaped.
    ControlCharacter,
    /// Bytes after the end of the top-level value.
    TrailingData,
    /// An object holds the same member name twice (compared after unescaping). RFC 8259
    /// allows it with unpredictable results; FHIR forbids it; medvault refuses it.
    DuplicateName,
    /// Arrays and objects nested deeper than the limit ([`crate::json::Limits`]).
    TooDeep,
    /// The text is longer than the limit ([`crate::json::Limits`]).
    TooLarge,
    /// A value could not be serialized to JSON (serde_json refused it: a map key that is
    /// not a string, a failing `Serialize` impl). The offset is 0.
    Serialize,
    /// The JSON is valid but does not match the requested Rust type (or holds a number
    /// the type cannot represent, such as `1e400` for `f64`). The offset is the byte in
    /// the canonical text where serde_json stopped.
    Deserialize,
    /// The top-level value is not an object where one is required (a record).
    NotAnObject,
    /// Members joined into an object do not come back as the same number of members: a
    /// name or value was not exactly one JSON token (e.g. the value `0,"x":1` would
    /// splice a member in). The offset is 0.
    SplicedMember,
}

impl JsonErrorKind {
    fn describe(self) -> &'static str {
        match self {
            JsonErrorKind::UnexpectedEnd => "unexpected end of the text",
            JsonErrorKind::InvalidUtf8 => "invalid UTF-8",
            JsonErrorKind::ExpectedValue => "expected a value",
            JsonErrorKind::ExpectedName => "expected a member name",
            JsonErrorKind::ExpectedColon => "expected ':' after a member name",
            JsonErrorKind::ExpectedCommaOrClose => "expected ',' or a closing bracket",
            JsonErrorKind::InvalidNumber => "invalid number",
            JsonErrorKind::InvalidLiteral => "invalid literal (true, false or null)",
            JsonErrorKind::InvalidEscape => "invalid escape in a string",
            JsonErrorKind::LoneSurrogate => "unpaired UTF-16 surrogate in a \\u escape",
            JsonErrorKind::ControlCharacter => "unescaped control character in a string",
            JsonErrorKind::TrailingData => "data after the end of the value",
            JsonErrorKind::DuplicateName => "duplicated member name",
            JsonErrorKind::TooDeep => "nested deeper than the limit",
            JsonErrorKind::TooLarge => "longer than the limit",
            JsonErrorKind::Serialize => "the value could not be serialized",
            JsonErrorKind::Deserialize => "the JSON does not match the requested type",
            JsonErrorKind::NotAnObject => "the top-level value is not an object",
            JsonErrorKind::SplicedMember => "a joined member is not exactly one name and value",
        }
    }
}

/// A refused JSON text: what is wrong ([`JsonErrorKind`]), at which byte offset of the
/// input (0-based), at which nesting depth (0 = top level, 1 = inside the outermost
/// array or object, ...). Carries no byte of the text, so it may be logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    kind: JsonErrorKind,
    offset: usize,
    depth: usize,
}

impl JsonError {
    pub(crate) fn new(kind: JsonErrorKind, offset: usize, depth: usize) -> Self {
        JsonError {
            kind,
            offset,
            depth,
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> JsonErrorKind {
        self.kind
    }

    /// Byte offset (0-based) in the input where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Nesting depth at that point (0 = top level).
    pub fn depth(&self) -> usize {
        self.depth
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JSON: {} at byte {} (depth {})",
            self.kind.describe(),
            self.offset,
            self.depth
        )
    }
}

impl std::error::Error for JsonError {}

impl From<JsonError> for crate::error::Error {
    /// A refused JSON text is a malformed record ([`crate::error::InputKind::Record`]);
    /// the detail names the kind, offset and depth.
    fn from(e: JsonError) -> Self {
        crate::error::Error::invalid(crate::error::InputKind::Record, e.to_string())
    }
}
