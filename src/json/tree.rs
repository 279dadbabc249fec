//! A borrowed tree over a [`JsonText`](super::JsonText): every node is a span of the
//! canonical text, built in one pass. Objects are ordered member lists (duplicates were
//! refused when the text was parsed), numbers stay text, strings are unescaped only when
//! asked. For callers that route on values (a FHIR `resourceType`, `id`, references)
//! and for blind-index extraction.

use std::fmt;

use super::scan::{self, Scalar, Sink, Unescaped, strip_quotes};

/// One JSON value of a [`JsonText`](super::JsonText), borrowing its text.
///
/// `Debug` shows the shape only (kind and length), never the content.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, kept as its text.
    Number(Number<'a>),
    /// A string, kept as its token.
    String(Str<'a>),
    /// An array.
    Array(Array<'a>),
    /// An object.
    Object(Object<'a>),
}

impl<'a> Value<'a> {
    /// The value's exact text in the canonical form (for a string, quotes included).
    pub fn raw(&self) -> &'a str {
        match self {
            Value::Null => "null",
            Value::Bool(true) => "true",
            Value::Bool(false) => "false",
            Value::Number(n) => n.0,
            Value::String(s) => s.token,
            Value::Array(a) => a.raw,
            Value::Object(o) => o.raw,
        }
    }

    /// The member named `name` (compared after unescaping) when this is an object.
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        self.as_object()?.get(name)
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&Array<'a>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&Str<'a>> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<&Number<'a>> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// True when this is a string whose unescaped value is `s`.
    pub fn is_str(&self, s: &str) -> bool {
        self.as_str().is_some_and(|v| v.eq_str(s))
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("Null"),
            Value::Bool(_) => f.write_str("Bool"),
            Value::Number(n) => write!(f, "Number({} bytes)", n.0.len()),
            Value::String(s) => write!(f, "String({} bytes)", s.token.len()),
            Value::Array(a) => write!(f, "Array({} items)", a.items.len()),
            Value::Object(o) => write!(f, "Object({} members)", o.members.len()),
        }
    }
}

/// A number token, exactly as written (RFC 8259, "Numbers": `-?int frac? exp?`). No
/// conversion happens unless asked: `1.50`, `-0`, `1e-400` and 40-digit integers stay
/// what they are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number<'a>(&'a str);

impl<'a> Number<'a> {
    /// The token's text.
    pub fn as_text(&self) -> &'a str {
        self.0
    }

    /// The value as an `i64`, when the token is an integer (no fraction, no exponent)
    /// that fits; `None` otherwise (no rounding).
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    /// The value as a `u64`, when the token is a non-negative integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

/// A string token, escapes kept as written; [`Str::unescape`] decodes it on demand.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Str<'a> {
    /// The token, quotes included.
    token: &'a str,
}

impl<'a> Str<'a> {
    pub(crate) fn from_token(token: &'a str) -> Self {
        Str { token }
    }

    /// The token as written, quotes included.
    pub fn token(&self) -> &'a str {
        self.token
    }

    /// What lies between the quotes, escapes as written.
    pub fn raw(&self) -> &'a str {
        strip_quotes(self.token)
    }

    /// True when the string holds a backslash escape.
    pub fn has_escapes(&self) -> bool {
        self.raw().as_bytes().contains(&b'\\')
    }

    /// The string's value (RFC 8259, "Strings"): borrowed when it holds no escape,
    /// decoded into a zeroize-on-drop buffer otherwise.
    pub fn unescape(&self) -> Unescaped<'a> {
        scan::unescape(self.raw())
    }

    /// True when the string's value is `s` (allocates only when the token holds escapes).
    pub fn eq_str(&self, s: &str) -> bool {
        if self.has_escapes() {
            *self.unescape() == *s
        } else {
            self.raw() == s
        }
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Str({} bytes)", self.token.len())
    }
}

impl fmt::Debug for Number<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({} bytes)", self.0.len())
    }
}

/// An array: its items in order, and its exact text.
#[derive(Clone, PartialEq, Eq)]
pub struct Array<'a> {
    raw: &'a str,
    items: Vec<Value<'a>>,
}

impl<'a> Array<'a> {
    /// The array's exact text, brackets included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The items, in order.
    pub fn items(&self) -> &[Value<'a>] {
        &self.items
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the array has no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// One object member: its name (a string token) and its value.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Member<'a> {
    /// The name as written.
    pub name: Str<'a>,
    /// The value.
    pub value: Value<'a>,
}

/// An object: its members in the order written (names are unique after unescaping:
/// [`JsonText`](super::JsonText) refuses duplicates), and its exact text.
#[derive(Clone, PartialEq, Eq)]
pub struct Object<'a> {
    raw: &'a str,
    members: Vec<Member<'a>>,
}

impl<'a> Object<'a> {
    /// The object's exact text, braces included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The members, in the order written.
    pub fn members(&self) -> &[Member<'a>] {
        &self.members
    }

    /// The value of the member named `name` (compared after unescaping). Linear in the
    /// number of members.
    pub fn get(&self, name: &str) -> Option<&Value<'a>> {
        self.members
            .iter()
            .find(|m| m.name.eq_str(name))
            .map(|m| &m.value)
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the object has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

impl fmt::Debug for Array<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array({} items)", self.items.len())
    }
}

impl fmt::Debug for Object<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Object({} members)", self.members.len())
    }
}

enum Open<'a> {
    Array(usize, Vec<Value<'a>>),
    Object(usize, Vec<Member<'a>>, Option<Str<'a>>),
}

/// Builds the tree from the scanner's events over canonical text.
pub(crate) struct TreeSink<'a> {
    text: &'a str,
    stack: Vec<Open<'a>>,
    root: Option<Value<'a>>,
}

impl<'a> TreeSink<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        TreeSink {
            text,
            stack: Vec::new(),
            root: None,
        }
    }

    pub(crate) fn finish(self) -> Option<Value<'a>> {
        self.root
    }

    fn push(&mut self, v: Value<'a>) {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Open::Array(_, items)) => items.push(v),
            Some(Open::Object(_, members, name)) => {
                if let Some(name) = name.take() {
                    members.push(Member { name, value: v });
                }
            }
        }
    }
}

impl<'a> Sink<'a> for TreeSink<'a> {
    fn open(&mut self, object: bool, at: usize) {
        self.stack.push(if object {
            Open::Object(at, Vec::new(), None)
        } else {
            Open::Array(at, Vec::new())
        });
    }

    fn close(&mut self, at: usize) {
        let v = match self.stack.pop() {
            Some(Open::Array(start, items)) => Value::Array(Array {
                raw: self.text.get(start..at + 1).unwrap_or_default(),
                items,
            }),
            Some(Open::Object(start, members, _)) => Value::Object(Object {
                raw: self.text.get(start..at + 1).unwrap_or_default(),
                members,
            }),
            None => return,
        };
        self.push(v);
    }

    fn name(&mut self, token: &'a str) {
        if let Some(Open::Object(_, _, name)) = self.stack.last_mut() {
            *name = Some(Str::from_token(token));
        }
    }

    fn scalar(&mut self, value: Scalar<'a>, _start: usize) {
        let v = match value {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Number(n) => Value::Number(Number(n)),
            Scalar::String(t) => Value::String(Str::from_token(t)),
        };
        self.push(v);
    }
}
