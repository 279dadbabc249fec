//! Streaming read of a `.json` file's top-level object: its `resourceType`, `type` and
//! each `entry` as owned raw text, one at a time, without holding the file.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::scan;

/// What the top level of a `.json` file holds.
#[derive(Debug, Default)]
pub struct Top {
    /// `resourceType`, when a string.
    pub resource_type: Option<String>,
    /// `type`, when a string.
    pub bundle_type: Option<String>,
    /// A member name appears twice at the top level.
    pub duplicate: bool,
    /// `entry` is present and neither an array nor null.
    pub bad_entry: bool,
    /// Number of entries seen.
    pub entries: usize,
    /// The top level is not an object.
    pub not_object: bool,
}

/// Called with (index, entry text); returning `false` stops the read (the read then
/// fails with a "cancelled" error).
pub type OnEntry<'f> = &'f mut dyn FnMut(usize, &str) -> bool;

struct TopSeed<'f, 't> {
    on_entry: OnEntry<'f>,
    top: &'t mut Top,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR resource")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(k) = m.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                self.top.duplicate = true;
            }
            match k.as_str() {
                "resourceType" | "type" => {
                    let raw: Box<RawValue> = m.next_value()?;
                    let s = scan::string(&raw);
                    if k == "type" {
                        self.top.bundle_type = s;
                    } else {
                        self.top.resource_type = s;
                    }
                }
                "entry" => m.next_value_seed(EntriesSeed {
                    on_entry: &mut *self.on_entry,
                    top: &mut *self.top,
                })?,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        self.top.not_object = true;
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.top.not_object = true;
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.top.not_object = true;
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.top.not_object = true;
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.top.not_object = true;
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.top.not_object = true;
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.top.not_object = true;
        Ok(())
    }
}

struct EntriesSeed<'f, 't> {
    on_entry: OnEntry<'f>,
    top: &'t mut Top,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Bundle entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while let Some(e) = s.next_element::<Box<RawValue>>()? {
            let i = self.top.entries;
            self.top.entries += 1;
            if !(self.on_entry)(i, e.get()) {
                return Err(de::Error::custom("cancelled"));
            }
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        self.top.bad_entry = true;
        while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.top.bad_entry = true;
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.top.bad_entry = true;
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.top.bad_entry = true;
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.top.bad_entry = true;
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.top.bad_entry = true;
        Ok(())
    }
}

/// Reads the top level of a JSON text from `reader` (a UTF-8 BOM must already be
/// skipped), calling `on_entry` for every element of `entry`.
///
/// # Errors
/// The serde_json error (syntax, I/O, or "cancelled" when `on_entry` returned false).
pub fn read_top<R: Read>(reader: R, on_entry: OnEntry<'_>) -> Result<Top, serde_json::Error> {
    let mut top = Top::default();
    let mut de = serde_json::Deserializer::from_reader(reader);
    TopSeed {
        on_entry,
        top: &mut top,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(top)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_one_at_a_time() {
        let t = br#"{"entry":[{"a":1e400},{"b":[1,2]}],"resourceType":"Bundle","type":"batch"}"#;
        let mut seen = Vec::new();
        let top = read_top(&t[..], &mut |i, e| {
            seen.push((i, e.to_owned()));
            true
        })
        .unwrap();
        assert_eq!(top.resource_type.as_deref(), Some("Bundle"));
        assert_eq!(top.bundle_type.as_deref(), Some("batch"));
        assert_eq!(
            seen,
            vec![(0, r#"{"a":1e400}"#.into()), (1, r#"{"b":[1,2]}"#.into())]
        );
    }

    #[test]
    fn duplicates_and_garbage() {
        let top = read_top(&br#"{"type":"a","type":"b"}"#[..], &mut |_, _| true).unwrap();
        assert!(top.duplicate);
        assert!(read_top(&br#"{"entry":[{}] x"#[..], &mut |_, _| true).is_err());
        let top = read_top(&b"[1]"[..], &mut |_, _| true).unwrap();
        assert!(top.not_object);
    }
}
