//! What an index covers: paths into a record's plaintext and how their values are
//! extracted (before sealing on a write, after opening on a lookup). Extraction is a
//! pure function of the record's fields, so a lookup can recompute a candidate's values
//! and drop false positives.

use std::fmt;

use zeroize::Zeroizing;

use super::Normalization;
use crate::error::{Error, InputKind, Result, Structure};
use crate::json::{self, Value};
use crate::record::{PlainField, validate_id};

/// Maximum number of parts of a compound index.
pub const MAX_PARTS: usize = 8;
/// Maximum number of segments of one path.
pub const MAX_SEGMENTS: usize = 16;
/// Maximum length of a path's text, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Maximum number of value tuples one record may yield for one index (the cartesian
/// product of a compound index's parts grows fast); a write over it is refused with
/// [`Error::InvalidInput`].
pub const MAX_VALUES_PER_RECORD: usize = 4096;

/// One step of a path: a member name, and whether the member is an array whose every
/// element is taken (`[]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Segment {
    name: String,
    each: bool,
}

/// A path into a record: member names separated by `.`, each optionally followed by `[]`
/// for "every element of this array": `identifier[].value`, `name[].given[]`,
/// `birthDate`, `code.coding[].code`. The first segment names a top-level field.
///
/// A path yields the scalar values it reaches: text as is, integers in decimal, booleans
/// as `true`/`false`; maps, arrays not marked `[]`, floats, bytes and nulls yield
/// nothing, as does a missing member.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IndexPath {
    segments: Vec<Segment>,
}

impl IndexPath {
    /// Parses a path. Fails with [`Error::InvalidInput`] on an empty path or segment, a
    /// `[`/`]` other than a trailing `[]`, more than 16 segments or 1024 bytes.
    pub fn parse(path: &str) -> Result<IndexPath> {
        if path.is_empty() || path.len() > MAX_PATH_LEN {
            return Err(Error::invalid(
                InputKind::Index,
                "index path must be 1 to 1024 bytes",
            ));
        }
        let mut segments = Vec::new();
        for part in path.split('.') {
            let (name, each) = match part.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (part, false),
            };
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(Error::invalid(
                    InputKind::Index,
                    "index path segments are member names, each optionally followed by []",
                ));
            }
            segments.push(Segment {
                name: name.to_owned(),
                each,
            });
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(Error::invalid(
                InputKind::Index,
                "index path has more than 16 segments",
            ));
        }
        Ok(IndexPath { segments })
    }

    /// The top-level field the path starts in.
    pub fn field(&self) -> &str {
        // parse() guarantees at least one segment.
        self.segments.first().map_or("", |s| s.name.as_str())
    }

    /// Appends the scalar values this path reaches in `fields` to `out`, as text.
    fn values(&self, fields: &[PlainField], out: &mut Vec<Zeroizing<String>>) -> Result<()> {
        let Some(field) = fields.iter().find(|f| f.is_named(self.field())) else {
            return Ok(());
        };
        let text = field.text()?;
        let value = json::tree_of(text)
            .map_err(|_| Error::integrity(Structure::FieldValue, "not valid JSON"))?;
        walk(&value, &self.segments, true, out);
        Ok(())
    }
}

/// Follows `segs` from `v` (`first`: `v` is the top-level field the first segment names).
fn walk(v: &Value<'_>, segs: &[Segment], first: bool, out: &mut Vec<Zeroizing<String>>) {
    let Some((seg, rest)) = segs.split_first() else {
        scalar(v, out);
        return;
    };
    let member = if first { Some(v) } else { v.get(&seg.name) };
    let Some(member) = member else { return };
    if seg.each {
        if let Value::Array(items) = member {
            for item in items.items() {
                walk(item, rest, false, out);
            }
        }
    } else {
        walk(member, rest, false, out);
    }
}

/// Strings (unescaped), integers (their decimal text as written) and booleans; nothing
/// for numbers with a fraction or an exponent, nulls, arrays and objects.
fn scalar(v: &Value<'_>, out: &mut Vec<Zeroizing<String>>) {
    match v {
        Value::String(s) => out.push(Zeroizing::new(s.unescape().to_string())),
        Value::Number(n) => {
            let t = n.as_text();
            let digits = t.strip_prefix('-').unwrap_or(t);
            if digits.bytes().all(|b| b.is_ascii_digit()) {
                out.push(Zeroizing::new(t.to_owned()));
            }
        }
        Value::Bool(b) => out.push(Zeroizing::new(b.to_string())),
        _ => {}
    }
}

impl fmt::Display for IndexPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&s.name)?;
            if s.each {
                f.write_str("[]")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for IndexPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexPath({self})")
    }
}

impl std::str::FromStr for IndexPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        IndexPath::parse(s)
    }
}

/// The definition of a blind index over one collection. See docs/INDEXES.md.
///
/// A record of `collection` gets one index entry per distinct tuple of normalized values
/// (the cartesian product of what each part yields; a record where a part yields nothing,
/// or only empty strings, gets no entry for this index).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IndexSpec {
    /// The index's name, unique within its collection (1 to 256 bytes).
    pub name: String,
    /// The collection it covers (e.g. a FHIR resourceType).
    pub collection: String,
    /// The paths whose values are indexed: one for a simple index, several for a
    /// compound one (1 to 8).
    pub parts: Vec<IndexPath>,
    /// Canonicalization applied to every part's values and to queries.
    pub normalization: Normalization,
    /// Bits of the value hash kept (1 to 128); `None` keeps 128. Fewer bits: more false
    /// candidates per lookup (each costs one record decryption), less leakage of which
    /// records share a value. See docs/INDEXES.md for how to choose.
    pub truncate_bits: Option<u8>,
}

impl IndexSpec {
    /// A full-length (128-bit) index. Fails with [`Error::InvalidInput`] on a bad path.
    pub fn new(
        collection: &str,
        name: &str,
        parts: &[&str],
        normalization: Normalization,
    ) -> Result<IndexSpec> {
        let spec = IndexSpec {
            name: name.to_owned(),
            collection: collection.to_owned(),
            parts: parts
                .iter()
                .map(|p| IndexPath::parse(p))
                .collect::<Result<_>>()?,
            normalization,
            truncate_bits: None,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The same index with its hash truncated to `bits` (1 to 128).
    pub fn truncated(mut self, bits: u8) -> IndexSpec {
        self.truncate_bits = Some(bits);
        self
    }

    /// Checks the bounds. Fails with [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        validate_id("collection", &self.collection)?;
        validate_id("index name", &self.name)?;
        if self.parts.is_empty() || self.parts.len() > MAX_PARTS {
            return Err(Error::invalid(
                InputKind::Index,
                "an index has 1 to 8 parts",
            ));
        }
        if let Some(b) = self.truncate_bits
            && !(1..=128).contains(&b)
        {
            return Err(Error::invalid(
                InputKind::Index,
                "truncate_bits must be 1 to 128",
            ));
        }
        Ok(())
    }

    /// Bits of value hash kept.
    pub fn bits(&self) -> u8 {
        self.truncate_bits.unwrap_or(128)
    }

    /// The top-level fields a record must open for this index.
    pub(crate) fn fields(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self.parts.iter().map(IndexPath::field).collect();
        f.sort_unstable();
        f.dedup();
        f
    }

    /// The distinct normalized value tuples a record yields (see the type's docs).
    pub(crate) fn tuples(&self, fields: &[PlainField]) -> Result<Vec<Vec<Zeroizing<String>>>> {
        let mut per_part = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let mut raw = Vec::new();
            p.values(fields, &mut raw)?;
            let mut norm: Vec<Zeroizing<String>> = raw
                .iter()
                .map(|v| self.normalization.apply(v))
                .filter(|v| !v.is_empty())
                .collect();
            norm.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
            norm.dedup();
            if norm.is_empty() {
                return Ok(Vec::new());
            }
            per_part.push(norm);
        }
        let total = per_part
            .iter()
            .try_fold(1usize, |acc, p| acc.checked_mul(p.len()))
            .filter(|n| *n <= MAX_VALUES_PER_RECORD)
            .ok_or_else(|| {
                Error::invalid(
                    InputKind::Index,
                    "a record yields more than 4096 values for one index",
                )
            })?;
        let mut out: Vec<Vec<Zeroizing<String>>> = Vec::with_capacity(total);
        out.push(Vec::new());
        for part in &per_part {
            let mut next = Vec::with_capacity(out.len() * part.len());
            for prefix in &out {
                for v in part {
                    let mut t = prefix.clone();
                    t.push(v.clone());
                    next.push(t);
                }
            }
            out = next;
        }
        Ok(out)
    }

    /// The normalized query tuple; `None` when a part normalizes to nothing (no entry
    /// can match). Fails with [`Error::InvalidInput`] when the number of values is not
    /// the number of parts.
    pub(crate) fn query(&self, values: &[&str]) -> Result<Option<Vec<Zeroizing<String>>>> {
        if values.len() != self.parts.len() {
            return Err(Error::invalid(
                InputKind::Index,
                format!("this index takes {} values, one per part", self.parts.len()),
            ));
        }
        let t: Vec<Zeroizing<String>> =
            values.iter().map(|v| self.normalization.apply(v)).collect();
        Ok(if t.iter().any(|v| v.is_empty()) {
            None
        } else {
            Some(t)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use crate::record::split_fields;
    use serde_json::json;

    fn strs(t: &[Vec<Zeroizing<String>>]) -> Vec<Vec<String>> {
        t.iter()
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn paths_parse_and_print() {
        for p in [
            "identifier[].value",
            "name[].given[]",
            "birthDate",
            "code.coding[].code",
        ] {
            assert_eq!(IndexPath::parse(p).unwrap().to_string(), p);
        }
        for bad in ["", "a..b", "a[0]", "a[]]", ".a", "a.", "[]"] {
            assert!(IndexPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            IndexPath::parse("code.coding[].code").unwrap().field(),
            "code"
        );
    }

    #[test]
    fn extraction_walks_arrays_and_skips_non_scalars() {
        let rec = json!({
            "name": [{"family": "Peña", "given": ["Ann", "Marie"]}, {"family": "Lee"}, {"given": "x"}],
            "birthDate": "1970-01-02",
            "code": {"coding": [{"code": "44054006"}, {"code": 7}, {"code": {"a": 1}}]},
            "multipleBirthBoolean": true,
        });
        let fields = split_fields(&rec).unwrap();
        let s = IndexSpec::new("P", "given", &["name[].given[]"], Normalization::Name).unwrap();
        assert_eq!(strs(&s.tuples(&fields).unwrap()), [["ann"], ["marie"]]);
        let s = IndexSpec::new("C", "code", &["code.coding[].code"], Normalization::Exact).unwrap();
        assert_eq!(strs(&s.tuples(&fields).unwrap()), [["44054006"], ["7"]]);
        let s = IndexSpec::new(
            "P",
            "fb",
            &["name[].family", "birthDate"],
            Normalization::Name,
        )
        .unwrap();
        assert_eq!(
            strs(&s.tuples(&fields).unwrap()),
            [["lee", "1970-01-02"], ["pena", "1970-01-02"]]
        );
        let s = IndexSpec::new(
            "P",
            "m",
            &["name[].family", "deceased"],
            Normalization::Name,
        )
        .unwrap();
        assert!(s.tuples(&fields).unwrap().is_empty());
        // `name` is an array: without [] it yields nothing.
        let s = IndexSpec::new("P", "x", &["name.family"], Normalization::Name).unwrap();
        assert!(s.tuples(&fields).unwrap().is_empty());
        let s = IndexSpec::new("P", "b", &["multipleBirthBoolean"], Normalization::Exact).unwrap();
        assert_eq!(strs(&s.tuples(&fields).unwrap()), [["true"]]);
    }

    #[test]
    fn spec_bounds() {
        let s = IndexSpec::new("P", "x", &["a"], Normalization::Exact).unwrap();
        assert!(s.clone().truncated(0).validate().is_err());
        assert!(s.clone().truncated(129).validate().is_err());
        assert!(s.clone().truncated(16).validate().is_ok());
        assert!(IndexSpec::new("P", "x", &[], Normalization::Exact).is_err());
        assert!(IndexSpec::new("", "x", &["a"], Normalization::Exact).is_err());
        assert!(s.query(&["a", "b"]).is_err());
        assert!(s.query(&[""]).unwrap().is_none());
    }
}
