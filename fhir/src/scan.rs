//! What import needs to know about one resource, read from its exact JSON text without
//! building a value tree: `resourceType`, `id`, the references that may name its patient
//! and its contained resources. The walk also refuses duplicated member names at every
//! level (FHIR R4 "JSON Representation": a name appears once per object).
//!
//! Numbers are never converted (serde_json scans them as raw text), so a number that no
//! float or 64-bit integer holds (`1e400`, 40 digits) is no obstacle. Memory: the members
//! of one object at a time (borrowed slices of the text) plus the few strings kept.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Reference fields that place a resource in a Patient's compartment, in the order they
/// are tried (FHIR R4 "Compartments", CompartmentDefinition `patient`): `subject`
/// (Condition, Encounter, Observation, ...), `patient` (AllergyIntolerance, Claim, ...),
/// `beneficiary` (Coverage), `individual` (ResearchSubject), `candidate`
/// (EnrollmentRequest) and `for` (Task).
pub const SUBJECT_FIELDS: [&str; 6] = [
    "subject",
    "patient",
    "beneficiary",
    "individual",
    "candidate",
    "for",
];

/// Deepest nesting of arrays and objects accepted in a resource (the root object is
/// depth 1), the core's bound on a record (`medvault::json` limits); deeper input is
/// refused rather than walked (it could exhaust the stack).
pub const MAX_DEPTH: usize = 100;

/// How many references outside the compartment fields are kept per resource (the first
/// ones, in text order); enough for the rule "first Patient referenced anywhere".
const MAX_OTHER_REFS: usize = 16;

/// Why a text cannot be read as a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// Not JSON: fixed description, 1-based line and column within the text.
    Json {
        /// Fixed syntax-error description (never input text).
        message: String,
        /// 1-based line within the scanned text.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An object holds the same member name twice.
    DuplicateMember,
    /// The text is valid JSON but not an object.
    NotAnObject,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::Json {
                message,
                line,
                column,
            } => write!(f, "invalid JSON at line {line}, column {column}: {message}"),
            ScanError::DuplicateMember => f.write_str("duplicated member name in an object"),
            ScanError::NotAnObject => f.write_str("not a JSON object"),
            ScanError::TooDeep => write!(f, "arrays and objects nested deeper than {MAX_DEPTH}"),
        }
    }
}

/// Maps a serde_json error to a [`ScanError::Json`] without input text (syntax and EOF
/// messages are fixed strings; data errors could quote input and are replaced).
pub fn json_error(e: &serde_json::Error) -> ScanError {
    use serde_json::error::Category;
    let message = match e.classify() {
        Category::Syntax | Category::Eof => {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
        }
        Category::Io => "I/O error".to_owned(),
        Category::Data => "unexpected JSON value".to_owned(),
    };
    ScanError::Json {
        message,
        line: e.line(),
        column: e.column(),
    }
}

/// A member value of a resource, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Member {
    /// Absent.
    #[default]
    Absent,
    /// A JSON string (unescaped).
    Str(String),
    /// Present but not a string (or `null`).
    Other,
}

impl Member {
    /// The string, if the member is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Member::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One Reference (FHIR R4 "Resource References") as found in a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefFacts {
    /// `reference`, when a string.
    pub reference: Option<String>,
    /// `type`, when a string.
    pub target_type: Option<String>,
    /// `identifier` as a token `system|value` (or `value` without a system).
    pub identifier: Option<String>,
}

/// A contained resource (FHIR R4 "Contained Resources").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainedFacts {
    /// Its `resourceType`.
    pub resource_type: Option<String>,
    /// Its local `id`.
    pub id: Option<String>,
    /// Its first `identifier` token, if any.
    pub identifier: Option<String>,
}

/// What import needs to know about one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `resourceType`.
    pub resource_type: Member,
    /// `id`.
    pub id: Member,
    /// Top-level `type` (a Bundle's type).
    pub bundle_type: Member,
    /// First top-level `identifier` token (for a contained Patient).
    pub identifier: Option<String>,
    /// References in the compartment fields: (index into [`SUBJECT_FIELDS`], reference),
    /// by field order, then element order.
    pub compartment: Vec<(usize, RefFacts)>,
    /// The first references elsewhere (not in `contained`), in text order.
    pub other: Vec<RefFacts>,
    /// Contained resources.
    pub contained: Vec<ContainedFacts>,
}

impl Facts {
    /// `resourceType` if it is a string.
    pub fn resource_type(&self) -> Option<&str> {
        self.resource_type.as_str()
    }
}

/// The members of one object, in order, as borrowed raw slices.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let v: &'de RawValue = m.next_value()?;
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The elements of one array, as borrowed raw slices.
struct Elements<'a>(Vec<&'a RawValue>);

impl<'de> serde::Deserialize<'de> for Elements<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elements<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element::<&'de RawValue>()? {
                    out.push(v);
                }
                Ok(Elements(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The kind of a raw JSON value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{`
    Object,
    /// `[`
    Array,
    /// `"`
    String,
    /// number, `true`, `false`, `null`
    Scalar,
}

/// The kind of a raw value (serde_json hands raw values without surrounding whitespace).
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        _ => Kind::Scalar,
    }
}

/// The members of an object text, refusing duplicated names.
///
/// # Errors
/// [`ScanError::NotAnObject`], [`ScanError::DuplicateMember`], [`ScanError::Json`].
pub fn members(text: &str) -> Result<Vec<(Cow<'_, str>, &RawValue)>, ScanError> {
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        // Still report syntax errors as such.
        serde_json::from_str::<&RawValue>(text).map_err(|e| json_error(&e))?;
        return Err(ScanError::NotAnObject);
    }
    let m: Members<'_> = serde_json::from_str(text).map_err(|e| json_error(&e))?;
    let mut seen: HashSet<&str> = HashSet::with_capacity(m.0.len());
    for (k, _) in &m.0 {
        if !seen.insert(k.as_ref()) {
            return Err(ScanError::DuplicateMember);
        }
    }
    Ok(m.0)
}

/// The elements of an array text.
///
/// # Errors
/// [`ScanError::Json`] (also when the text is not an array).
pub fn elements(text: &str) -> Result<Vec<&RawValue>, ScanError> {
    let e: Elements<'_> = serde_json::from_str(text).map_err(|e| json_error(&e))?;
    Ok(e.0)
}

/// A raw value as a string, if it is one.
pub fn string(raw: &RawValue) -> Option<String> {
    if kind(raw) != Kind::String {
        return None;
    }
    serde_json::from_str::<String>(raw.get()).ok()
}

fn member(raw: &RawValue) -> Member {
    match string(raw) {
        Some(s) => Member::Str(s),
        None => Member::Other,
    }
}

/// An Identifier object as a token `system|value` (`value` alone without a system).
fn identifier_token(raw: &RawValue) -> Result<Option<String>, ScanError> {
    let raw = match kind(raw) {
        Kind::Object => raw,
        Kind::Array => match elements(raw.get())?.first() {
            Some(first) if kind(first) == Kind::Object => *first,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let mut system = None;
    let mut value = None;
    for (k, v) in members(raw.get())? {
        match k.as_ref() {
            "system" => system = string(v),
            "value" => value = string(v),
            _ => {}
        }
    }
    Ok(value.map(|v| match system {
        Some(s) => format!("{s}|{v}"),
        None => v,
    }))
}

/// Where in a resource a value is.
#[derive(Clone, Copy)]
enum Ctx {
    /// A value that may hold References anywhere below.
    Any,
    /// The value of compartment field `SUBJECT_FIELDS[i]`: a Reference or an array of them.
    Compartment(usize),
}

/// Reads the facts of one resource text.
///
/// # Errors
/// [`ScanError`] when the text is not JSON, not an object or holds a duplicated member
/// name anywhere.
pub fn scan(text: &str) -> Result<Facts, ScanError> {
    let mut facts = Facts::default();
    scan_resource(text, &mut facts, true, 1)?;
    facts.compartment.sort_by_key(|(i, _)| *i);
    Ok(facts)
}

/// `depth`: the nesting of the object `text` (the root is 1).
fn scan_resource(text: &str, facts: &mut Facts, top: bool, depth: usize) -> Result<(), ScanError> {
    if depth > MAX_DEPTH {
        return Err(ScanError::TooDeep);
    }
    let d = depth + 1;
    for (k, v) in members(text)? {
        match k.as_ref() {
            "resourceType" => facts.resource_type = member(v),
            "id" => facts.id = member(v),
            "type" => {
                facts.bundle_type = member(v);
                walk(v, Ctx::Any, facts, d)?;
            }
            "identifier" => {
                if facts.identifier.is_none() {
                    facts.identifier = identifier_token(v)?;
                }
                walk(v, Ctx::Any, facts, d)?;
            }
            "contained" if top && kind(v) == Kind::Array => {
                for c in elements(v.get())? {
                    if kind(c) != Kind::Object {
                        walk(c, Ctx::Any, &mut Facts::default(), d + 1)?;
                        continue;
                    }
                    let mut inner = Facts::default();
                    scan_resource(c.get(), &mut inner, false, d + 1)?;
                    facts.contained.push(ContainedFacts {
                        resource_type: inner.resource_type.as_str().map(str::to_owned),
                        id: inner.id.as_str().map(str::to_owned),
                        identifier: inner.identifier,
                    });
                }
            }
            name => match SUBJECT_FIELDS.iter().position(|f| *f == name) {
                Some(i) if top => walk(v, Ctx::Compartment(i), facts, d)?,
                _ => walk(v, Ctx::Any, facts, d)?,
            },
        }
    }
    Ok(())
}

/// `depth`: the nesting `raw` would have if it is an array or object.
fn walk(raw: &RawValue, ctx: Ctx, facts: &mut Facts, depth: usize) -> Result<(), ScanError> {
    let k = kind(raw);
    if matches!(k, Kind::Array | Kind::Object) && depth > MAX_DEPTH {
        return Err(ScanError::TooDeep);
    }
    match k {
        Kind::Array => {
            for e in elements(raw.get())? {
                walk(e, ctx, facts, depth + 1)?;
            }
            Ok(())
        }
        Kind::Object => {
            let mut r = RefFacts::default();
            let mut any = false;
            for (k, v) in members(raw.get())? {
                match k.as_ref() {
                    "reference" => {
                        r.reference = string(v);
                        any |= r.reference.is_some();
                    }
                    "type" => r.target_type = string(v),
                    "identifier" if kind(v) == Kind::Object => {
                        r.identifier = identifier_token(v)?;
                        walk(v, Ctx::Any, facts, depth + 1)?;
                    }
                    _ => walk(v, Ctx::Any, facts, depth + 1)?,
                }
            }
            match ctx {
                Ctx::Compartment(i) => {
                    if any || r.identifier.is_some() {
                        facts.compartment.push((i, r));
                    }
                }
                Ctx::Any => {
                    if any && facts.other.len() < MAX_OTHER_REFS {
                        facts.other.push(r);
                    }
                }
            }
            Ok(())
        }
        // Strings are validated by the scan of the enclosing value; numbers are never
        // converted.
        Kind::String | Kind::Scalar => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_an_observation() {
        let t = r#"{"resourceType":"Observation","id":"o1","valueQuantity":{"value":1e400},
            "subject":{"reference":"Patient/p1","display":"x"},
            "performer":[{"reference":"Practitioner/d"}],
            "contained":[{"resourceType":"Patient","id":"c","identifier":[{"system":"s","value":"v"}]}]}"#;
        let f = scan(t).unwrap();
        assert_eq!(f.resource_type.as_str(), Some("Observation"));
        assert_eq!(f.id.as_str(), Some("o1"));
        assert_eq!(f.compartment.len(), 1);
        assert_eq!(f.compartment[0].1.reference.as_deref(), Some("Patient/p1"));
        assert_eq!(f.other[0].reference.as_deref(), Some("Practitioner/d"));
        assert_eq!(f.contained[0].identifier.as_deref(), Some("s|v"));
    }

    #[test]
    fn duplicates_refused_at_any_depth() {
        assert_eq!(
            scan(r#"{"a":1,"a":2}"#).unwrap_err(),
            ScanError::DuplicateMember
        );
        assert_eq!(
            scan(r#"{"a":[{"b":{"c":1,"c":1}}]}"#).unwrap_err(),
            ScanError::DuplicateMember
        );
        assert!(scan(r#"{"a":{"c":1},"b":{"c":1}}"#).is_ok());
    }

    #[test]
    fn depth_is_bounded_not_walked_into_a_stack_overflow() {
        let deep = |n: usize| format!("{{\"x\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(scan(&deep(MAX_DEPTH - 1)).is_ok());
        assert_eq!(scan(&deep(MAX_DEPTH)), Err(ScanError::TooDeep));
        assert_eq!(scan(&deep(200_000)), Err(ScanError::TooDeep));
        let objs = format!(
            "{{{}\"a\":1{}}}",
            "\"a\":{".repeat(200_000),
            "}".repeat(200_000)
        );
        assert_eq!(scan(&objs), Err(ScanError::TooDeep));
    }

    #[test]
    fn not_json_or_not_object() {
        assert!(matches!(scan("{"), Err(ScanError::Json { .. })));
        assert_eq!(scan("[1]"), Err(ScanError::NotAnObject));
        assert!(matches!(scan("{} x"), Err(ScanError::Json { .. })));
    }
}
