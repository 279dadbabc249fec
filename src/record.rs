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

use crate::codec::{Reader, put_lp16};
use crate::crypto::AeadKey;
use crate::crypto::aead::{NONCE_LEN, TAG_LEN};
use crate::error::{Error, InputKind, Result, Structure};
use crate::json::{self, JsonText, ObjectBuilder};

/// Record-value format version. Version 3: one random 96-bit record nonce per write
/// (each envelope's nonce derived from it and the envelope's index), each field's AAD a
/// per-record binding digest plus the field name, varint lengths (docs/FORMAT.md
/// "Record value").
pub const RECORD_VERSION: u8 = 3;
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
#[cfg(test)]
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

/// Everything a record's AADs bind besides the field names.
pub(crate) struct Binding<'a> {
    pub vault_id: &'a crate::VaultId,
    pub storage_key: &'a [u8],
    pub key: &'a RecordKey,
    pub key_version: u32,
}

/// The write a record value belongs to: its version and its random 96-bit record nonce
/// (fresh for every write; every envelope's nonce is derived from it and every AAD binds
/// it), so that envelopes of two writes never combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WriteStamp {
    pub version: u64,
    pub nonce: [u8; NONCE_LEN],
}

impl WriteStamp {
    /// The nonce of envelope `index` (0: the meta block; field `i`: `i + 1`): the record
    /// nonce with its last four bytes XORed with `u32 index` (docs/FORMAT.md "Record
    /// value"). Distinct for every index of one record.
    fn envelope_nonce(&self, index: usize) -> [u8; NONCE_LEN] {
        let mut n = self.nonce;
        // index <= MAX_FIELDS (4096): fits a u32.
        let i = (index as u32).to_be_bytes();
        for (b, x) in n[NONCE_LEN - 4..].iter_mut().zip(i) {
            *b ^= x;
        }
        n
    }
}

/// Appends `x` as an unsigned LEB128 varint (7 bits a byte, low group first, high bit =
/// more follows), minimal length.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8 & 0x7f) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Reads a minimal unsigned LEB128 varint of at most `max`. [`Error::Integrity`] when
/// truncated, over `max`, longer than 5 bytes or not minimal (a last byte of zero after
/// the first): every value has exactly one encoding.
fn varint(r: &mut Reader<'_>, max: usize, what: Structure) -> Result<usize> {
    let mut x: u64 = 0;
    for i in 0..5 {
        let b = r.u8()?;
        x |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(Error::integrity(what, "varint not minimal"));
            }
            return usize::try_from(x)
                .ok()
                .filter(|x| *x <= max)
                .ok_or_else(|| Error::integrity(what, "length over its bound"));
        }
    }
    Err(Error::integrity(what, "varint too long"))
}

/// A varint-length-prefixed byte string of at most `max` bytes.
fn lpv<'a>(r: &mut Reader<'a>, max: usize, what: Structure) -> Result<&'a [u8]> {
    let n = varint(r, max, what)?;
    r.bytes(n)
}

/// Appends a varint-length-prefixed byte string.
fn put_lpv(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

impl Binding<'_> {
    /// AAD of the meta block: everything known before it is opened (the ids are inside
    /// it; the storage key is their keyed hash).
    fn meta_aad(&self, w: &WriteStamp) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        aad.extend_from_slice(b"medvault/v1/record-meta");
        aad.push(RECORD_VERSION);
        aad.extend_from_slice(self.vault_id.as_bytes());
        aad.extend_from_slice(&self.key_version.to_be_bytes());
        aad.extend_from_slice(&w.version.to_be_bytes());
        aad.extend_from_slice(&w.nonce);
        put_lp16(&mut aad, self.storage_key);
        aad
    }

    /// The record's binding digest, computed once per record: SHA-256 over the format
    /// version, vault id, storage key, logical ids, key version, write (version and
    /// record nonce) and the ordered list of field names (docs/FORMAT.md "Record
    /// value"). Each field's AAD is this digest followed by the field's raw name.
    fn digest<'n>(
        &self,
        w: &WriteStamp,
        names: impl ExactSizeIterator<Item = &'n str>,
    ) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let k = self.key;
        let mut h = Sha256::new();
        let mut lp = |b: &[u8]| {
            h.update((b.len() as u16).to_be_bytes());
            h.update(b);
        };
        lp(b"medvault/v1/record-binding");
        lp(&[RECORD_VERSION]);
        lp(self.vault_id.as_bytes());
        lp(self.storage_key);
        lp(k.subject.as_bytes());
        lp(k.collection.as_bytes());
        lp(k.record_id.as_bytes());
        lp(&self.key_version.to_be_bytes());
        lp(&w.version.to_be_bytes());
        lp(&w.nonce);
        lp(&(names.len() as u16).to_be_bytes());
        for n in names {
            lp(n.as_bytes());
        }
        h.finalize().into()
    }
}

/// A field's AAD buffer: the binding digest, then (per field) the raw name.
struct FieldAad(Vec<u8>);

impl FieldAad {
    fn new(digest: &[u8; 32]) -> Self {
        let mut v = Vec::with_capacity(32 + 64);
        v.extend_from_slice(digest);
        FieldAad(v)
    }

    fn with_name(&mut self, name: &str) -> &[u8] {
        self.0.truncate(32);
        self.0.extend_from_slice(name.as_bytes());
        &self.0
    }
}

/// Seals a record's fields into a record value (docs/FORMAT.md "Record value") as
/// write `version` (the vault's next log sequence number when sealed: it grows with every
/// write), under a fresh random record nonce. Seals `fields.len() + 1` messages under
/// `dek` (the caller counts them against the key's usage).
pub(crate) fn seal_record(
    dek: &AeadKey,
    bind: &Binding<'_>,
    version: u64,
    fields: &[PlainField],
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    crate::crypto::random_bytes(&mut nonce);
    let stamp = WriteStamp { version, nonce };
    let k = bind.key;
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let mut meta = Zeroizing::new(Vec::with_capacity(
        8 + k.collection.len()
            + k.record_id.len()
            + names.iter().map(|n| n.len() + 2).sum::<usize>(),
    ));
    put_lpv(&mut meta, k.collection.as_bytes());
    put_lpv(&mut meta, k.record_id.as_bytes());
    put_varint(&mut meta, fields.len() as u64);
    for n in &names {
        put_lpv(&mut meta, n.as_bytes());
    }
    let payload: usize = fields.iter().map(|f| f.value.len() + TAG_LEN + 3).sum();
    let mut out = Vec::with_capacity(25 + 8 + meta.len() + TAG_LEN + payload);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&bind.key_version.to_be_bytes());
    out.extend_from_slice(&stamp.version.to_be_bytes());
    out.extend_from_slice(&stamp.nonce);
    put_varint(&mut out, (meta.len() + TAG_LEN) as u64);
    dek.seal_detached_into(
        &stamp.envelope_nonce(0),
        &bind.meta_aad(&stamp),
        &meta,
        &mut out,
    );
    put_varint(&mut out, fields.len() as u64);
    let mut aad = FieldAad::new(&bind.digest(&stamp, names.iter().copied()));
    for (i, f) in fields.iter().enumerate() {
        put_varint(&mut out, (f.value.len() + TAG_LEN) as u64);
        dek.seal_detached_into(
            &stamp.envelope_nonce(i + 1),
            aad.with_name(&f.name),
            &f.value,
            &mut out,
        );
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
/// malformation (non-minimal varints included), [`Error::UnsupportedVersion`] on an
/// unknown version (1: CBOR fields; 2: one random nonce and the whole AAD per field).
pub(crate) fn parse_record(bytes: &[u8]) -> Result<SealedRecord<'_>> {
    const S: Structure = Structure::RecordValue;
    let mut r = Reader::new(bytes, S);
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
        nonce: r.array()?,
    };
    let meta = lpv(&mut r, MAX_RECORD_BYTES, S)?;
    if meta.len() < TAG_LEN {
        return Err(Error::integrity(S, "meta block shorter than a tag"));
    }
    let n = varint(&mut r, MAX_FIELDS, S)?;
    // Each field takes at least 1 + 16 bytes: bound the allocation by what remains.
    if n * (1 + TAG_LEN) > r.remaining() {
        return Err(Error::integrity(S, "bad field count"));
    }
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let f = lpv(&mut r, MAX_RECORD_BYTES, S)?;
        if f.len() < TAG_LEN {
            return Err(Error::integrity(S, "field envelope shorter than a tag"));
        }
        fields.push(f);
    }
    r.finish()?;
    Ok(SealedRecord {
        key_version,
        stamp,
        meta,
        fields,
    })
}

/// The opened meta block of a record. The field names (plaintext: names can reveal
/// facts) sit in one zeroize-on-drop string, not one allocation per name.
pub(crate) struct Meta {
    pub collection: String,
    pub record_id: String,
    /// Every field name, concatenated.
    names: Zeroizing<String>,
    /// End offset of each name in `names`, in stored order.
    ends: Vec<usize>,
}

impl Meta {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The raw name of field `i` (empty when out of range).
    pub fn name(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0),
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        // Offsets are boundaries between whole UTF-8 names: `get` cannot fail.
        self.names.get(start..end).unwrap_or_default()
    }

    /// The raw names, in stored order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names_exact()
    }

    fn names_exact(&self) -> impl ExactSizeIterator<Item = &str> {
        (0..self.len()).map(|i| self.name(i))
    }
}

/// Parses an opened meta block that must name `fields` fields. [`Error::Integrity`] when
/// malformed.
pub(crate) fn parse_meta(pt: &[u8], fields: usize) -> Result<Meta> {
    fn utf8(b: &[u8]) -> Result<&str> {
        std::str::from_utf8(b).map_err(|_| Error::integrity(Structure::RecordMeta, "bad UTF-8"))
    }
    const S: Structure = Structure::RecordMeta;
    let mut r = Reader::new(pt, S);

    let collection = utf8(lpv(&mut r, MAX_ID_LEN, S)?)?.to_owned();
    let record_id = utf8(lpv(&mut r, MAX_ID_LEN, S)?)?.to_owned();
    let n = varint(&mut r, MAX_FIELDS, S)?;
    if n != fields {
        return Err(Error::integrity(S, "field count mismatch"));
    }
    let mut names = Zeroizing::new(String::with_capacity(r.remaining()));
    let mut ends = Vec::with_capacity(n);
    for _ in 0..n {
        names.push_str(utf8(lpv(&mut r, MAX_FIELD_NAME_LEN, S)?)?);
        ends.push(names.len());
    }
    r.finish()?;
    Ok(Meta {
        collection,
        record_id,
        names,
        ends,
    })
}

impl SealedRecord<'_> {
    /// Opens the meta block: collection, record id and field names.
    pub fn open_meta(&self, dek: &AeadKey, bind: &Binding<'_>) -> Result<Meta> {
        let pt = dek
            .open_detached(
                &self.stamp.envelope_nonce(0),
                &bind.meta_aad(&self.stamp),
                self.meta,
            )
            .ok_or_else(|| Error::integrity(Structure::RecordMeta, "authentication failed"))?;
        parse_meta(&pt, self.fields.len())
    }

    /// Opens the fields whose names pass `want` (all when `want` is `None`), in stored
    /// order, each into its own buffer (the re-encryption and index paths, which need
    /// the fields apart; reads use [`SealedRecord::open_json`]). [`Error::Integrity`]
    /// when any opened field fails.
    pub fn open_fields(
        &self,
        dek: &AeadKey,
        bind: &Binding<'_>,
        meta: &Meta,
        want: Option<&[&str]>,
    ) -> Result<Vec<PlainField>> {
        let mut aad = FieldAad::new(&bind.digest(&self.stamp, meta.names_exact()));
        let mut out = Vec::with_capacity(want.map_or(meta.len(), |w| w.len()));
        for (i, (name, env)) in meta.names().zip(&self.fields).enumerate() {
            if let Some(w) = want
                && !w.iter().any(|n| raw_name_is(name, n))
            {
                continue;
            }
            let value = dek
                .open_detached(&self.stamp.envelope_nonce(i + 1), aad.with_name(name), env)
                .ok_or_else(|| {
                    Error::integrity(Structure::FieldEnvelope, "authentication failed")
                })?;
            out.push(PlainField {
                name: name.to_owned(),
                value,
            });
        }
        Ok(out)
    }

    /// Opens the fields whose names pass `want` (all when `want` is `None`) straight
    /// into one JSON object, in stored order: each field is decrypted in place at the
    /// end of the output buffer (no per-field plaintext buffer). Returns the text and
    /// the indexes (into `meta.names`) of the fields in it. [`Error::Integrity`] when a
    /// field fails to open or the result is not JSON.
    pub fn open_json(
        &self,
        dek: &AeadKey,
        bind: &Binding<'_>,
        meta: &Meta,
        want: Option<&[&str]>,
    ) -> Result<(JsonText, Vec<usize>)> {
        let picked: Vec<usize> = meta
            .names()
            .enumerate()
            .filter(|(_, name)| want.is_none_or(|w| w.iter().any(|n| raw_name_is(name, n))))
            .map(|(i, _)| i)
            .collect();
        let total: usize = picked
            .iter()
            .map(|&i| meta.name(i).len() + self.fields.get(i).map_or(0, |f| f.len()) + 4)
            .sum();
        let mut out = ObjectBuilder::with_capacity(total + 2);
        let mut aad = FieldAad::new(&bind.digest(&self.stamp, meta.names_exact()));
        for &i in &picked {
            let (name, env) = (
                meta.name(i),
                self.fields.get(i).copied().unwrap_or_default(),
            );
            let buf = out.value_buffer(name, env.len().saturating_sub(TAG_LEN));
            if !dek.open_detached_into(
                &self.stamp.envelope_nonce(i + 1),
                aad.with_name(name),
                env,
                buf,
            ) {
                return Err(Error::integrity(
                    Structure::FieldEnvelope,
                    "authentication failed",
                ));
            }
        }
        let text = out
            .finish()
            .map_err(|_| Error::integrity(Structure::FieldValue, "not valid JSON"))?;
        Ok((text, picked))
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
        assert_eq!(meta.names().collect::<Vec<_>>(), vec!["age", "name"]);
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

    /// Reads an unsigned LEB128 varint by hand (the oracle does not use the codec).
    fn leb(b: &[u8], at: &mut usize) -> usize {
        let (mut x, mut shift) = (0usize, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            x |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return x;
            }
            shift += 7;
        }
    }

    fn leb_bytes(mut x: usize) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let b = (x & 0x7f) as u8;
            x >>= 7;
            if x == 0 {
                v.push(b);
                return v;
            }
            v.push(b | 0x80);
        }
    }

    /// Splits a record value into (head of 25 bytes, meta with its length, fields with
    /// their lengths) by hand from the documented layout: the oracle does not use
    /// `parse_record`.
    fn pieces(b: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
        let head = b[..25].to_vec();
        let mut at = 25;
        let ml = leb(b, &mut at);
        let meta = b[25..at + ml].to_vec();
        at += ml;
        let n = leb(b, &mut at);
        let mut fields = Vec::new();
        for _ in 0..n {
            let start = at;
            let l = leb(b, &mut at);
            fields.push(b[start..at + l].to_vec());
            at += l;
        }
        assert_eq!(at, b.len());
        (head, meta, fields)
    }

    fn assemble(head: &[u8], meta: &[u8], fields: &[Vec<u8>]) -> Vec<u8> {
        let mut out = head.to_vec();
        out.extend_from_slice(meta);
        out.extend_from_slice(&leb_bytes(fields.len()));
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

    #[test]
    fn varints_are_minimal_and_bounded() {
        let ok = |b: &[u8], max| {
            varint(
                &mut Reader::new(b, Structure::RecordValue),
                max,
                Structure::RecordValue,
            )
        };
        for x in [0usize, 1, 127, 128, 300, 16_383, 16_384, MAX_RECORD_BYTES] {
            let mut v = Vec::new();
            put_varint(&mut v, x as u64);
            assert_eq!(v, leb_bytes(x), "{x}");
            assert_eq!(ok(&v, MAX_RECORD_BYTES).unwrap(), x);
        }
        // Non-minimal spellings of 0 and 1, an over-long varint, a bound, a truncation.
        for bad in [
            &[0x80u8, 0x00][..],
            &[0x81, 0x00],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            &[0x80],
        ] {
            assert!(
                matches!(ok(bad, usize::MAX), Err(Error::Integrity { .. })),
                "{bad:?}"
            );
        }
        assert!(ok(&[0x81, 0x01], 128).is_err());
        assert_eq!(ok(&[0x80, 0x01], 128).unwrap(), 128);
    }

    #[test]
    fn envelope_nonces_are_distinct_within_a_record() {
        let w = WriteStamp {
            version: 1,
            nonce: [0xa5; NONCE_LEN],
        };
        let mut seen = std::collections::HashSet::new();
        for i in 0..=MAX_FIELDS {
            let n = w.envelope_nonce(i);
            assert_eq!(n[..8], [0xa5; 8], "only the last 32 bits vary");
            assert_eq!(
                u32::from_be_bytes(n[8..].try_into().unwrap()),
                0xa5a5_a5a5 ^ i as u32
            );
            assert!(seen.insert(n));
        }
    }

    /// Every binding of the field AAD: a field of a record opens under no other record
    /// key, subject, vault, storage key, key version, record version or record nonce, and
    /// no other name or field list. The field is opened by hand (aes-gcm directly) with
    /// the nonce and AAD the format documents, so the oracle is the documented formula.
    #[test]
    fn every_binding_of_a_field_is_checked() {
        use aes_gcm::aead::AeadInPlace;
        use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
        use sha2::{Digest, Sha256};
        let raw = [7u8; 32];
        let dek = AeadKey::new(&SecretKey::from_bytes(raw));
        let key = RecordKey::new("s", "Patient", "p1");
        let vid = crate::VaultId::from([1; 16]);
        let bind = Binding {
            vault_id: &vid,
            storage_key: b"sk",
            key: &key,
            key_version: 4,
        };
        let v = json!({"a": "x", "b": 2});
        let sealed = seal_record(&dek, &bind, 9, &split_fields(&v).unwrap());
        let (head, _, fields) = pieces(&sealed);
        let nonce: [u8; 12] = head[13..25].try_into().unwrap();
        let field_b = &fields[1][1..]; // one length byte
        let digest = |vault: &[u8],
                      sk: &[u8],
                      subject: &str,
                      coll: &str,
                      id: &str,
                      kv: u32,
                      w: u64,
                      rn: &[u8],
                      names: &[&str]| {
            let mut h = Sha256::new();
            let mut lp = |b: &[u8]| {
                h.update((b.len() as u16).to_be_bytes());
                h.update(b);
            };
            lp(b"medvault/v1/record-binding");
            lp(&[3]);
            lp(vault);
            lp(sk);
            lp(subject.as_bytes());
            lp(coll.as_bytes());
            lp(id.as_bytes());
            lp(&kv.to_be_bytes());
            lp(&w.to_be_bytes());
            lp(rn);
            lp(&(names.len() as u16).to_be_bytes());
            for n in names {
                lp(n.as_bytes());
            }
            h.finalize().to_vec()
        };
        let cipher = Aes256Gcm::new(&raw.into());
        let opens = |d: Vec<u8>, name: &str, index: u32| {
            let mut aad = d;
            aad.extend_from_slice(name.as_bytes());
            let mut n = nonce;
            for (b, x) in n[8..].iter_mut().zip(index.to_be_bytes()) {
                *b ^= x;
            }
            let (ct, tag) = field_b.split_at(field_b.len() - 16);
            let mut buf = ct.to_vec();
            cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(&n),
                    &aad,
                    &mut buf,
                    Tag::from_slice(tag),
                )
                .ok()
                .map(|_| buf)
        };
        let good = digest(
            &[1; 16],
            b"sk",
            "s",
            "Patient",
            "p1",
            4,
            9,
            &nonce,
            &["a", "b"],
        );
        assert_eq!(opens(good.clone(), "b", 2).unwrap(), b"2");
        let mut other_nonce = nonce;
        other_nonce[0] ^= 1;
        let wrong = [
            digest(
                &[2; 16],
                b"sk",
                "s",
                "Patient",
                "p1",
                4,
                9,
                &nonce,
                &["a", "b"],
            ),
            digest(
                &[1; 16],
                b"sK",
                "s",
                "Patient",
                "p1",
                4,
                9,
                &nonce,
                &["a", "b"],
            ),
            digest(
                &[1; 16],
                b"sk",
                "t",
                "Patient",
                "p1",
                4,
                9,
                &nonce,
                &["a", "b"],
            ),
            digest(
                &[1; 16],
                b"sk",
                "s",
                "Patienu",
                "p1",
                4,
                9,
                &nonce,
                &["a", "b"],
            ),
            digest(
                &[1; 16],
                b"sk",
                "s",
                "Patient",
                "p2",
                4,
                9,
                &nonce,
                &["a", "b"],
            ),
            digest(
                &[1; 16],
                b"sk",
                "s",
                "Patient",
                "p1",
                5,
                9,
                &nonce,
                &["a", "b"],
            ),
            digest(
                &[1; 16],
                b"sk",
                "s",
                "Patient",
                "p1",
                4,
                8,
                &nonce,
                &["a", "b"],
            ),
            digest(
                &[1; 16],
                b"sk",
                "s",
                "Patient",
                "p1",
                4,
                9,
                &other_nonce,
                &["a", "b"],
            ),
            digest(&[1; 16], b"sk", "s", "Patient", "p1", 4, 9, &nonce, &["b"]),
            digest(
                &[1; 16],
                b"sk",
                "s",
                "Patient",
                "p1",
                4,
                9,
                &nonce,
                &["b", "a"],
            ),
        ];
        for (i, d) in wrong.into_iter().enumerate() {
            assert!(opens(d, "b", 2).is_none(), "binding {i} not checked");
        }
        assert!(opens(good.clone(), "a", 2).is_none(), "name not bound");
        assert!(opens(good, "b", 1).is_none(), "index not bound");
        // And the codec agrees: another record key, another version fail.
        let p = parse_record(&sealed).unwrap();
        let meta = p.open_meta(&dek, &bind).unwrap();
        let k2 = RecordKey::new("s", "Patient", "p2");
        assert!(
            p.open_json(&dek, &Binding { key: &k2, ..bind }, &meta, None)
                .is_err()
        );
    }
}
