//! The record codec: a record's exact JSON text ⇄ separately sealed top-level fields.
//!
//! A field's plaintext is its value's exact JSON text ([`crate::json::JsonText`]'s
//! canonical form: number and string tokens as written, member order kept, whitespace
//! outside strings removed), and its name is the member name as written between the
//! quotes, escapes included; so what comes out is byte for byte what went in. A record
//! value (docs/FORMAT.md "Record value") holds a sealed *meta* block (collection, record
//! id, field names: names can reveal facts such as `deceasedDateTime`) and one envelope
//! per field, so one field can be opened without the others. A read decrypts the wanted
//! fields straight into one output buffer ([`crate::json::ObjectBuilder`]).

use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::codec::{Reader, put_lp16, put_lp32};
use crate::crypto::AeadKey;
use crate::error::{Error, InputKind, Result, Structure};
use crate::json::{self, JsonText, ObjectBuilder};

/// Record-value format version. Version 2 binds every envelope to its write: the record
/// version and a random write id are in every AAD.
pub const RECORD_VERSION: u8 = 2;
/// Bytes of a record's write id.
pub const WRITE_ID_LEN: usize = 16;
/// Maximum length of a subject, collection or record id, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Maximum length of a field name, in bytes.
pub const MAX_FIELD_NAME_LEN: usize = 1024;
/// Maximum number of top-level fields of a record.
pub const MAX_FIELDS: usize = 4096;
/// Maximum encoded size of one record (all fields), in bytes: 64 MiB.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// The address of a record: `(subject, collection, record_id)`, each 1 to 256 bytes of
/// UTF-8. For FHIR: subject = Patient id, collection = resourceType, record_id = id.
///
/// ```
/// use medvault::{Error, InputKind, RecordKey};
/// // A FHIR Observation of patient p1.
/// let k = RecordKey::new("p1", "Observation", "bp-1");
/// assert!(k.validate().is_ok());
/// // Ids are 1 to 256 bytes; every vault call checks them.
/// match RecordKey::new("p1", "Observation", "x".repeat(257)).validate() {
///     Err(Error::InvalidInput(i)) => assert_eq!(i.kind, InputKind::Id),
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    /// The data subject (patient) that owns the record.
    pub subject: String,
    /// The kind of document (e.g. a FHIR resourceType).
    pub collection: String,
    /// The document's id within its collection.
    pub record_id: String,
}

impl RecordKey {
    /// Builds a key (not yet validated; every vault call validates).
    pub fn new(
        subject: impl Into<String>,
        collection: impl Into<String>,
        record_id: impl Into<String>,
    ) -> Self {
        RecordKey {
            subject: subject.into(),
            collection: collection.into(),
            record_id: record_id.into(),
        }
    }

    /// Checks the length bounds. Fails with [`Error::InvalidInput`] naming the part.
    pub fn validate(&self) -> Result<()> {
        validate_id("subject", &self.subject)?;
        validate_id("collection", &self.collection)?;
        validate_id("record_id", &self.record_id)
    }
}

/// Checks one id: 1 to [`MAX_ID_LEN`] bytes.
pub(crate) fn validate_id(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(
            InputKind::Id,
            format!("{what} must not be empty"),
        ));
    }
    if s.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            InputKind::Id,
            format!("{what} longer than {MAX_ID_LEN} bytes"),
        ));
    }
    Ok(())
}

/// One plaintext field: its name as written in the JSON text (between the quotes,
/// escapes kept) and its value's exact JSON text.
pub(crate) struct PlainField {
    pub name: String,
    pub value: Zeroizing<Vec<u8>>,
}

impl PlainField {
    /// True when the field's name, unescaped, is `name`.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        raw_name_is(&self.name, name)
    }

    /// The value's JSON text.
    pub(crate) fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.value)
            .map_err(|_| Error::integrity(Structure::FieldValue, "not UTF-8"))
    }
}

/// True when the raw member name `raw` (escapes as written) unescapes to `name`.
pub(crate) fn raw_name_is(raw: &str, name: &str) -> bool {
    if raw.as_bytes().contains(&b'\\') {
        *json::unescape(raw) == *name
    } else {
        raw == name
    }
}

/// Serializes `value` through serde_json into exact JSON text and splits it: see
/// [`split_json`].
#[cfg(any(test, feature = "testing"))]
pub(crate) fn split_fields<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<PlainField>> {
    split_json(&JsonText::from_serialize(value)?)
}

/// Splits an object's top-level members into fields, in order. Fails with
/// [`Error::InvalidInput`] when the top level is not an object, when the text is over
/// 64 MiB, has more than 4096 fields or a name over 1024 bytes. (Names are unique:
/// [`JsonText`] refuses duplicates.)
pub(crate) fn split_json(text: &JsonText) -> Result<Vec<PlainField>> {
    if text.len() > MAX_RECORD_BYTES {
        return Err(Error::invalid(
            InputKind::Record,
            "record larger than 64 MiB",
        ));
    }
    let members = text.members().map_err(|_| {
        Error::invalid(
            InputKind::Record,
            "a record's top level must be a JSON object",
        )
    })?;
    let mut fields = Vec::new();
    for (name, value) in members {
        if fields.len() >= MAX_FIELDS {
            return Err(Error::invalid(
                InputKind::Record,
                "record has more than 4096 fields",
            ));
        }
        let name = name.raw();
        if name.len() > MAX_FIELD_NAME_LEN {
            return Err(Error::invalid(
                InputKind::Record,
                "field name longer than 1024 bytes",
            ));
        }
        let mut v = Zeroizing::new(Vec::with_capacity(value.len()));
        v.extend_from_slice(value.as_bytes());
        fields.push(PlainField {
            name: name.to_owned(),
            value: v,
        });
    }
    Ok(fields)
}

/// Joins fields back into the record's exact JSON text. [`Error::Integrity`] when the
/// fields do not form valid JSON (they were authenticated, so only a bug could).
pub(crate) fn join_json(fields: &[PlainField]) -> Result<JsonText> {
    let total: usize = fields
        .iter()
        .map(|f| f.name.len() + f.value.len() + 4)
        .sum();
    let mut b = ObjectBuilder::with_capacity(total + 2);
    for f in fields {
        b.value_buffer(&f.name, f.value.len())
            .extend_from_slice(&f.value);
    }
    b.finish()
        .map_err(|_| Error::integrity(Structure::FieldValue, "not valid JSON"))
}

/// Joins fields and deserializes the record into `T` (through serde_json).
#[cfg(any(test, feature = "testing"))]
pub(crate) fn join_fields<T: DeserializeOwned>(fields: &[PlainField]) -> Result<T> {
    from_json(&join_json(fields)?)
}

/// Deserializes a record's JSON text into `T`; [`Error::InvalidInput`] when `T` does
/// not fit it.
pub(crate) fn from_json<T: DeserializeOwned>(text: &JsonText) -> Result<T> {
    text.deserialize().map_err(|_| {
        Error::invalid(
            InputKind::Record,
            "the stored record does not match the requested type",
        )
    })
}

/// Everything a record's AADs bind besides the field name.
pub(crate) struct Binding<'a> {
    pub vault_id: &'a crate::VaultId,
    pub storage_key: &'a [u8],
    pub key: &'a RecordKey,
    pub key_version: u32,
}

/// The write a record value belongs to: its version and its random write id, in every
/// AAD of the value, so that envelopes of two writes never combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WriteStamp {
    pub version: u64,
    pub write_id: [u8; WRITE_ID_LEN],
}

impl Binding<'_> {
    fn meta_aad(&self, w: &WriteStamp) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        aad.extend_from_slice(b"medvault/v1/record-meta");
        aad.push(RECORD_VERSION);
        aad.extend_from_slice(self.vault_id.as_bytes());
        aad.extend_from_slice(&self.key_version.to_be_bytes());
        aad.extend_from_slice(&w.version.to_be_bytes());
        aad.extend_from_slice(&w.write_id);
        put_lp16(&mut aad, self.storage_key);
        aad
    }

    /// AAD prefix of every field; the field name is appended per field.
    fn field_aad_prefix(&self, w: &WriteStamp) -> Vec<u8> {
        let k = self.key;
        let mut aad =
            Vec::with_capacity(96 + k.subject.len() + k.collection.len() + k.record_id.len());
        aad.extend_from_slice(b"medvault/v1/field");
        aad.push(RECORD_VERSION);
        aad.extend_from_slice(self.vault_id.as_bytes());
        put_lp16(&mut aad, k.subject.as_bytes());
        put_lp16(&mut aad, k.collection.as_bytes());
        put_lp16(&mut aad, k.record_id.as_bytes());
        aad.extend_from_slice(&self.key_version.to_be_bytes());
        aad.extend_from_slice(&w.version.to_be_bytes());
        aad.extend_from_slice(&w.write_id);
        aad
    }
}

/// Seals a record's fields into a record value (docs/FORMAT.md "Record value") as
/// write `version` (the vault's next log sequence number when sealed: it grows with every
/// write), with a fresh random write id.
pub(crate) fn seal_record(
    dek: &AeadKey,
    bind: &Binding<'_>,
    version: u64,
    fields: &[PlainField],
) -> Vec<u8> {
    let mut write_id = [0u8; WRITE_ID_LEN];
    crate::crypto::random_bytes(&mut write_id);
    let stamp = WriteStamp { version, write_id };
    let k = bind.key;
    let mut meta = Zeroizing::new(Vec::with_capacity(64));
    put_lp16(&mut meta, k.collection.as_bytes());
    put_lp16(&mut meta, k.record_id.as_bytes());
    meta.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for f in fields {
        put_lp16(&mut meta, f.name.as_bytes());
    }
    let payload: usize = fields.iter().map(|f| f.value.len() + 32).sum();
    let mut out = Vec::with_capacity(40 + meta.len() + 32 + payload);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&bind.key_version.to_be_bytes());
    out.extend_from_slice(&stamp.version.to_be_bytes());
    out.extend_from_slice(&stamp.write_id);
    let sealed_meta = dek.seal(&bind.meta_aad(&stamp), &meta);
    put_lp32(&mut out, &sealed_meta);
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    let mut aad = bind.field_aad_prefix(&stamp);
    let base = aad.len();
    for f in fields {
        aad.truncate(base);
        put_lp16(&mut aad, f.name.as_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        dek.seal_into(&aad, &f.value, &mut out);
        let n = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
    }
    out
}

/// A record value split into its parts, nothing opened yet.
pub(crate) struct SealedRecord<'a> {
    pub key_version: u32,
    /// The write this value belongs to.
    pub stamp: WriteStamp,
    meta: &'a [u8],
    fields: Vec<&'a [u8]>,
}

/// Parses a record value's structure (no decryption). [`Error::Integrity`] on any
/// malformation, [`Error::UnsupportedVersion`] on an unknown version.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<SealedRecord<'_>> {
    let mut r = Reader::new(bytes, Structure::RecordValue);
    let v = r.u8()?;
    if v != RECORD_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "record value",
            version: v,
        });
    }
    let key_version = r.u32()?;
    let stamp = WriteStamp {
        version: r.u64()?,
        write_id: r.array()?,
    };
    let meta = r.lp32(MAX_RECORD_BYTES)?;
    let n = r.u16()? as usize;
    if n > MAX_FIELDS || n * 4 > r.remaining() {
        return Err(Error::integrity(Structure::RecordValue, "bad field count"));
    }
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        fields.push(r.lp32(MAX_RECORD_BYTES)?);
    }
    r.finish()?;
    Ok(SealedRecord {
        key_version,
        stamp,
        meta,
        fields,
    })
}

/// The opened meta block of a record.
pub(crate) struct Meta {
    pub collection: String,
    pub record_id: String,
    pub names: Vec<String>,
}

/// Parses an opened meta block that must name `fields` fields. [`Error::Integrity`] when
/// malformed.
pub(crate) fn parse_meta(pt: &[u8], fields: usize) -> Result<Meta> {
    let mut r = Reader::new(pt, Structure::RecordMeta);
    let collection = r.str16()?.to_owned();
    let record_id = r.str16()?.to_owned();
    let n = r.u16()? as usize;
    if n != fields {
        return Err(Error::integrity(
            Structure::RecordMeta,
            "field count mismatch",
        ));
    }
    let mut names = Vec::with_capacity(n);
    for _ in 0..n {
        names.push(r.str16()?.to_owned());
    }
    r.finish()?;
    Ok(Meta {
        collection,
        record_id,
        names,
    })
}

impl SealedRecord<'_> {
    /// Opens the meta block: collection, record id and field names.
    pub fn open_meta(&self, dek: &AeadKey, bind: &Binding<'_>) -> Result<Meta> {
        let pt = dek
            .open(&bind.meta_aad(&self.stamp), self.meta)
            .ok_or_else(|| Error::integrity(Structure::RecordMeta, "authentication failed"))?;
        parse_meta(&pt, self.fields.len())
    }

    /// Opens the fields whose names pass `want` (all when `want` is `None`), in stored
    /// order. [`Error::Integrity`] when any opened field fails.
    pub fn open_fields(
        &self,
        dek: &AeadKey,
        bind: &Binding<'_>,
        meta: &Meta,
        want: Option<&[&str]>,
    ) -> Result<Vec<PlainField>> {
        let mut aad = bind.field_aad_prefix(&self.stamp);
        let base = aad.len();
        let mut out = Vec::with_capacity(want.map_or(meta.names.len(), |w| w.len()));
        for (name, env) in meta.names.iter().zip(&self.fields) {
            if let Some(w) = want
                && !w.iter().any(|n| raw_name_is(name, n))
            {
                continue;
            }
            aad.truncate(base);
            put_lp16(&mut aad, name.as_bytes());
            let value = dek.open(&aad, env).ok_or_else(|| {
                Error::integrity(Structure::FieldEnvelope, "authentication failed")
            })?;
            out.push(PlainField {
                name: name.clone(),
                value,
            });
        }
        Ok(out)
    }

    /// Opens the fields whose names pass `want` (all when `want` is `None`) straight
    /// into one JSON object, in stored order: each field is decrypted in place at the
    /// end of the output buffer (no per-field plaintext buffer). Returns the text and
    /// the names of the fields in it. [`Error::Integrity`] when a field fails to open or
    /// the result is not valid JSON.
    pub fn open_json(
        &self,
        dek: &AeadKey,
        bind: &Binding<'_>,
        meta: &Meta,
        want: Option<&[&str]>,
    ) -> Result<(JsonText, Vec<String>)> {
        let picked: Vec<(&String, &[u8])> = meta
            .names
            .iter()
            .zip(self.fields.iter().copied())
            .filter(|(name, _)| want.is_none_or(|w| w.iter().any(|n| raw_name_is(name, n))))
            .collect();
        let total: usize = picked.iter().map(|(n, e)| n.len() + e.len() + 4).sum();
        let mut out = ObjectBuilder::with_capacity(total + 2);
        let mut aad = bind.field_aad_prefix(&self.stamp);
        let base = aad.len();
        let mut names = Vec::with_capacity(picked.len());
        for (name, env) in picked {
            aad.truncate(base);
            put_lp16(&mut aad, name.as_bytes());
            let buf = out.value_buffer(
                name,
                env.len().saturating_sub(crate::crypto::aead::OVERHEAD),
            );
            if !dek.open_into(&aad, env, buf) {
                return Err(Error::integrity(
                    Structure::FieldEnvelope,
                    "authentication failed",
                ));
            }
            names.push(name.clone());
        }
        let text = out
            .finish()
            .map_err(|_| Error::integrity(Structure::FieldValue, "not valid JSON"))?;
        Ok((text, names))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use serde_json::json;

    #[test]
    fn split_join_roundtrip() {
        let v = json!({"a": 1, "b": [1, 2, {"c": null}], "d": "x", "e": 1.5, "f": {"g": true}});
        let f = split_fields(&v).unwrap();
        assert_eq!(f.len(), 5);
        let back: serde_json::Value = join_fields(&f).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn non_maps_are_refused() {
        assert!(matches!(
            split_fields(&json!([1, 2])),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            split_fields(&json!("x")),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(split_fields(&5u32), Err(Error::InvalidInput(_))));
        // serde_json refuses map keys that are not strings or numbers.
        let mut m = std::collections::BTreeMap::new();
        m.insert(vec![1u8], 2u32);
        assert!(matches!(split_fields(&m), Err(Error::InvalidInput(_))));
        // A member name twice (two spellings of one name) is refused.
        let twice = JsonText::parse("{\"a\":1,\"\\u0061\":2}");
        assert!(twice.is_err());
    }

    #[test]
    fn seal_parse_open() {
        let dek = AeadKey::new(&SecretKey::random());
        let key = RecordKey::new("s", "c", "r");
        let bind = Binding {
            vault_id: &crate::VaultId::from([1; 16]),
            storage_key: b"sk",
            key: &key,
            key_version: 3,
        };
        let v = json!({"name": "Ann", "age": 40});
        let sealed = seal_record(&dek, &bind, 7, &split_fields(&v).unwrap());
        let p = parse_record(&sealed).unwrap();
        assert_eq!(p.key_version, 3);
        assert_eq!(p.stamp.version, 7);
        let meta = p.open_meta(&dek, &bind).unwrap();
        assert_eq!(meta.names, vec!["age", "name"]);
        let one = p.open_fields(&dek, &bind, &meta, Some(&["name"])).unwrap();
        let got: serde_json::Value = join_fields(&one).unwrap();
        assert_eq!(got, json!({"name": "Ann"}));
        let other = RecordKey::new("s", "c", "r2");
        let bind2 = Binding {
            key: &other,
            ..bind
        };
        assert!(p.open_fields(&dek, &bind2, &meta, None).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should abort the test
mod binding_tests {
    //! Guards the binding of every envelope to its one write (issue: a record spliced
    //! from two writes, or with a field dropped, read as good).
    use super::*;
    use crate::crypto::SecretKey;
    use serde_json::json;

    /// Splits a record value into (prefix up to the meta, meta lp32, field lp32s) by
    /// hand from the documented layout: the oracle does not use `parse_record`.
    fn pieces(b: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
        let head = b[..29].to_vec();
        let ml = u32::from_be_bytes(b[29..33].try_into().unwrap()) as usize;
        let meta = b[29..33 + ml].to_vec();
        let mut at = 33 + ml;
        let n = u16::from_be_bytes(b[at..at + 2].try_into().unwrap()) as usize;
        at += 2;
        let mut fields = Vec::new();
        for _ in 0..n {
            let l = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            fields.push(b[at..at + 4 + l].to_vec());
            at += 4 + l;
        }
        assert_eq!(at, b.len());
        (head, meta, fields)
    }

    fn assemble(head: &[u8], meta: &[u8], fields: &[Vec<u8>]) -> Vec<u8> {
        let mut out = head.to_vec();
        out.extend_from_slice(meta);
        out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
        for f in fields {
            out.extend_from_slice(f);
        }
        out
    }

    fn read_all(dek: &AeadKey, bind: &Binding<'_>, b: &[u8]) -> Result<serde_json::Value> {
        let p = parse_record(b)?;
        let meta = p.open_meta(dek, bind)?;
        join_fields(&p.open_fields(dek, bind, &meta, None)?)
    }

    #[test]
    fn fields_of_two_writes_do_not_combine_and_a_field_cannot_be_dropped() {
        let dek = AeadKey::new(&SecretKey::random());
        let key = RecordKey::new("s", "Patient", "p1");
        let bind = Binding {
            vault_id: &crate::VaultId::from([1; 16]),
            storage_key: b"sk",
            key: &key,
            key_version: 1,
        };
        let w1 = json!({"birthDate": "1970-01-01", "name": "Ann"});
        let w2 = json!({"birthDate": "1980-02-02", "name": "Bea"});
        // Same version, even: the write id alone tells the writes apart.
        for v2 in [5u64, 6] {
            let a = seal_record(&dek, &bind, 5, &split_fields(&w1).unwrap());
            let b = seal_record(&dek, &bind, v2, &split_fields(&w2).unwrap());
            assert_eq!(read_all(&dek, &bind, &a).unwrap(), w1);
            assert_eq!(read_all(&dek, &bind, &b).unwrap(), w2);
            let (ha, ma, fa) = pieces(&a);
            let (hb, mb, fb) = pieces(&b);
            // birthDate of write 1 with the rest of write 2, under either head and meta.
            let spliced = vec![fa[0].clone(), fb[1].clone()];
            for (h, m) in [(&ha, &ma), (&hb, &mb), (&ha, &mb), (&hb, &ma)] {
                let r = read_all(&dek, &bind, &assemble(h, m, &spliced));
                assert!(
                    matches!(r, Err(Error::Integrity { .. })),
                    "splice read as good"
                );
            }
            // A field dropped (count lowered), under its own meta or the other's.
            for m in [&mb, &ma] {
                let r = read_all(&dek, &bind, &assemble(&hb, m, &fb[1..]));
                assert!(
                    matches!(r, Err(Error::Integrity { .. })),
                    "drop read as good"
                );
            }
            // Fields swapped in place.
            let r = read_all(
                &dek,
                &bind,
                &assemble(&hb, &mb, &[fb[1].clone(), fb[0].clone()]),
            );
            assert!(r.is_err());
        }
    }
}
