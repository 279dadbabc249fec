//! From one resource text to records: record ids, subjects and the Bundle rules of
//! docs/FHIR.md sections 3 to 5.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::FhirRecord;
use crate::scan::{self, Facts, Kind, Member, ScanError, kind, members};
use crate::subject::{self, BundleCtx, UrnTarget, is_valid_id, is_valid_resource_type};

/// Bundle types whose entries are split into their resources (docs/FHIR.md section 5;
/// FHIR R4 "Bundle", value set `bundle-type`). Every other type (document, message,
/// history, unknown) is kept whole.
pub const SPLIT_TYPES: [&str; 6] = [
    "transaction",
    "batch",
    "collection",
    "searchset",
    "transaction-response",
    "batch-response",
];

/// Why a position is rejected (docs/FHIR.md section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Not JSON, not an object, a duplicated member name.
    Scan(ScanError),
    /// `resourceType` missing (where a resource is required) or malformed.
    NotAResource,
    /// `id` present but not a FHIR id.
    InvalidId,
    /// `Bundle.entry` is not an array of objects.
    BadEntry,
}

/// What one position of the input gives.
#[derive(Clone, PartialEq, Eq)]
pub enum Piece {
    /// A record to store.
    Record(FhirRecord),
    /// Not a resource to store (fixed reason).
    Skipped(&'static str),
    /// Rejected.
    Rejected(Reason),
}

/// Where a piece comes from inside one file position: the index of the top-level
/// Bundle entry (nested entries report their top-level entry).
pub type EntryIndex = Option<usize>;

/// Removes JSON whitespace outside strings, without parsing anything else.
pub fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut esc = false;
    for c in text.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\r' | '\n') {
            out.push(c);
        }
    }
    out
}

/// `sha256-<32 hex>`: the first 128 bits of SHA-256 over the minified text.
pub fn content_id(text: &str) -> String {
    let d = Sha256::digest(minify(text).as_bytes());
    let mut s = String::from("sha256-");
    for b in &d[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The id a `fullUrl` gives an entry of type `rtype` (rules 2 and 3 of section 3).
pub fn fullurl_id<'a>(full_url: &'a str, rtype: &str) -> Option<&'a str> {
    if let Some(u) = full_url
        .strip_prefix("urn:uuid:")
        .or_else(|| full_url.strip_prefix("urn:oid:"))
    {
        return Some(u).filter(|u| is_valid_id(u));
    }
    let mut segs: Vec<&str> = full_url.split('/').collect();
    if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        segs.truncate(segs.len() - 2);
    }
    match segs.as_slice() {
        [.., t, id] if *t == rtype && is_valid_id(id) => Some(id),
        _ => None,
    }
}

/// The record id of a resource (section 3), or `Err` for an invalid `id`.
fn record_id(
    facts: &Facts,
    rtype: &str,
    full_url: Option<&str>,
    text: &str,
) -> Result<String, Reason> {
    match &facts.id {
        Member::Str(id) if !id.is_empty() => {
            return if is_valid_id(id) {
                Ok(id.clone())
            } else {
                Err(Reason::InvalidId)
            };
        }
        Member::Other => return Err(Reason::InvalidId),
        Member::Str(_) | Member::Absent => {}
    }
    if let Some(id) = full_url.and_then(|u| fullurl_id(u, rtype)) {
        return Ok(id.to_owned());
    }
    Ok(content_id(text))
}

/// Deepest nesting of split Bundles (each level is four levels of JSON: the Bundle, its
/// `entry` array, the entry, its `resource`), within [`scan::MAX_DEPTH`].
pub const MAX_BUNDLE_NESTING: usize = scan::MAX_DEPTH / 4;

/// One Bundle entry's parts.
#[derive(Default)]
pub struct EntryParts<'a> {
    /// `fullUrl`.
    pub full_url: Option<String>,
    /// `resource` (raw text).
    pub resource: Option<&'a str>,
    /// `request.method`.
    pub method: Option<String>,
    /// `request.url`.
    pub url: Option<String>,
    /// `request.ifNoneExist`.
    pub if_none_exist: Option<String>,
    /// `search.mode`.
    pub search_mode: Option<String>,
}

/// Reads the parts of one entry text.
///
/// # Errors
/// [`Reason::BadEntry`] if the entry is not an object; [`Reason::Scan`] for duplicated
/// names in the entry, its `request` or `search`.
pub fn entry_parts(entry: &str) -> Result<EntryParts<'_>, Reason> {
    let ms = members(entry).map_err(|e| match e {
        ScanError::NotAnObject => Reason::BadEntry,
        e => Reason::Scan(e),
    })?;
    let mut p = EntryParts::default();
    for (k, v) in ms {
        match k.as_ref() {
            "fullUrl" => p.full_url = scan::string(v),
            "resource" if kind(v) != Kind::Scalar || v.get() != "null" => {
                p.resource = Some(v.get());
            }
            "request" if kind(v) == Kind::Object => {
                for (k2, v2) in members(v.get()).map_err(Reason::Scan)? {
                    match k2.as_ref() {
                        "method" => p.method = scan::string(v2),
                        "url" => p.url = scan::string(v2),
                        "ifNoneExist" => p.if_none_exist = scan::string(v2),
                        _ => {}
                    }
                }
            }
            "search" if kind(v) == Kind::Object => {
                for (k2, v2) in members(v.get()).map_err(Reason::Scan)? {
                    if k2 == "mode" {
                        p.search_mode = scan::string(v2);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(p)
}

/// Adds what one entry contributes to its Bundle's resolution context (pass one).
/// Entries that cannot be read contribute nothing (they are rejected in pass two).
pub fn add_to_ctx(entry: &str, ctx: &mut BundleCtx<'_>) {
    let Ok(p) = entry_parts(entry) else { return };
    let Some(res) = p.resource else { return };
    // resourceType and id from the top level only.
    let Ok(ms) = members(res) else { return };
    let mut rtype = None;
    let mut id = Member::Absent;
    for (k, v) in &ms {
        match k.as_ref() {
            "resourceType" => rtype = scan::string(v),
            "id" => id = scan::string(v).map_or(Member::Other, Member::Str),
            _ => {}
        }
    }
    let is_patient = rtype.as_deref() == Some("Patient");
    let target = if is_patient {
        let facts = Facts {
            id,
            ..Facts::default()
        };
        match record_id(&facts, "Patient", p.full_url.as_deref(), res) {
            Ok(id) => UrnTarget::Patient(id),
            Err(_) => return,
        }
    } else {
        UrnTarget::Other
    };
    if let UrnTarget::Patient(id) = &target {
        for q in [p.if_none_exist.map(|q| format!("Patient?{q}")), p.url] {
            if let Some(q) = q.filter(|q| q.starts_with("Patient?")) {
                ctx.conditional.entry(q).or_insert_with(|| id.clone());
            }
        }
    }
    if let Some(u) = p.full_url.filter(|u| u.starts_with("urn:")) {
        ctx.urns.entry(u).or_insert(target);
    }
}

/// Why an entry of a split Bundle is skipped, if it is (section 5).
fn skip_reason(p: &EntryParts<'_>) -> Option<&'static str> {
    if p.resource.is_none() {
        return Some("Bundle entry without resource (a request or a bare response)");
    }
    if p.method.as_deref() == Some("PATCH") {
        return Some("PATCH entry (a patch document, not applied)");
    }
    if p.search_mode.as_deref() == Some("outcome") {
        return Some("searchset outcome entry (OperationOutcome about the search)");
    }
    None
}

/// Processes one entry of a split Bundle (pass two).
pub fn expand_entry(
    entry: &str,
    index: usize,
    ctx: &BundleCtx<'_>,
    out: &mut dyn FnMut(EntryIndex, Piece),
) {
    let p = match entry_parts(entry) {
        Ok(p) => p,
        Err(r) => return out(Some(index), Piece::Rejected(r)),
    };
    if let Some(why) = skip_reason(&p) {
        return out(Some(index), Piece::Skipped(why));
    }
    if let Some(res) = p.resource {
        expand_inner(
            Cow::Borrowed(res),
            p.full_url.as_deref(),
            Some(ctx),
            Some(index),
            out,
        );
    }
}

/// Turns one resource text (an NDJSON line, a `.json` file, or `None` for the
/// surrounding Bundle) into pieces. `top_line`: an NDJSON line, where an object without
/// `resourceType` is skipped rather than rejected.
///
/// An owned `text` is moved into the record it becomes (no copy of a large resource).
pub fn expand(text: Cow<'_, str>, top_line: bool, out: &mut dyn FnMut(EntryIndex, Piece)) {
    if top_line {
        match members(&text) {
            Ok(ms) if !ms.iter().any(|(k, _)| k == "resourceType") => {
                return out(
                    None,
                    Piece::Skipped(
                        "no resourceType (not a FHIR resource, e.g. a bulk-export log line)",
                    ),
                );
            }
            _ => {}
        }
    }
    expand_inner(text, None, None, None, out);
}

fn expand_inner(
    text: Cow<'_, str>,
    full_url: Option<&str>,
    ctx: Option<&BundleCtx<'_>>,
    entry: EntryIndex,
    out: &mut dyn FnMut(EntryIndex, Piece),
) {
    // A Bundle to split is judged by its top level only: each entry is then scanned on
    // its own, so that one bad entry rejects that entry, not the Bundle.
    if is_split_bundle(&text) {
        return split(&text, ctx, entry, out);
    }
    let facts = match scan::scan(&text) {
        Ok(f) => f,
        Err(e) => return out(entry, Piece::Rejected(Reason::Scan(e))),
    };
    let rtype = match facts.resource_type() {
        Some(t) if is_valid_resource_type(t) => t.to_owned(),
        _ => return out(entry, Piece::Rejected(Reason::NotAResource)),
    };
    let record_id = match record_id(&facts, &rtype, full_url, &text) {
        Ok(id) => id,
        Err(r) => return out(entry, Piece::Rejected(r)),
    };
    let subject = if rtype == "Bundle" {
        whole_bundle_patient(&text, ctx).unwrap_or_else(|| subject::SHARED_SUBJECT.to_owned())
    } else {
        subject::subject_of(&facts, &rtype, &record_id, ctx)
    };
    out(
        entry,
        Piece::Record(FhirRecord {
            subject,
            collection: rtype,
            record_id,
            resource: Zeroizing::new(text.into_owned()),
        }),
    );
}

/// Whether a text is a Bundle whose type is split (top level only; a top level with a
/// duplicated member name is not, and is rejected by the full scan).
fn is_split_bundle(text: &str) -> bool {
    let Ok(ms) = members(text) else {
        return false;
    };
    let get = |name: &str| {
        ms.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| scan::string(v))
    };
    get("resourceType").as_deref() == Some("Bundle")
        && get("type").is_some_and(|t| SPLIT_TYPES.contains(&t.as_str()))
}

/// The entries of a Bundle text (`[]` when absent or null).
fn bundle_entries(text: &str) -> Result<Vec<&str>, Reason> {
    let ms = members(text).map_err(Reason::Scan)?;
    let Some((_, entry)) = ms.iter().find(|(k, _)| k == "entry") else {
        return Ok(Vec::new());
    };
    match kind(entry) {
        Kind::Array => Ok(scan::elements(entry.get())
            .map_err(Reason::Scan)?
            .into_iter()
            .map(|r| r.get())
            .collect()),
        Kind::Scalar if entry.get() == "null" => Ok(Vec::new()),
        _ => Err(Reason::BadEntry),
    }
}

fn split(
    text: &str,
    parent: Option<&BundleCtx<'_>>,
    entry: EntryIndex,
    out: &mut dyn FnMut(EntryIndex, Piece),
) {
    let entries = match bundle_entries(text) {
        Ok(e) => e,
        Err(r) => return out(entry, Piece::Rejected(r)),
    };
    let depth = parent.map_or(0, |p| p.depth + 1);
    if depth > MAX_BUNDLE_NESTING {
        return out(entry, Piece::Rejected(Reason::Scan(ScanError::TooDeep)));
    }
    let mut ctx = BundleCtx {
        parent,
        depth,
        ..BundleCtx::default()
    };
    for e in &entries {
        add_to_ctx(e, &mut ctx);
    }
    for (i, e) in entries.iter().enumerate() {
        // A nested Bundle's entries are reported at their top-level entry.
        let at = entry.unwrap_or(i);
        let mut fwd = |_: EntryIndex, p: Piece| out(Some(at), p);
        expand_entry(e, at, &ctx, &mut fwd);
    }
}

/// The patient of a Bundle kept whole: the first entry, in order, that names one.
fn whole_bundle_patient(text: &str, parent: Option<&BundleCtx<'_>>) -> Option<String> {
    let depth = parent.map_or(0, |p| p.depth + 1);
    if depth > MAX_BUNDLE_NESTING {
        return None;
    }
    let entries = bundle_entries(text).ok()?;
    let mut ctx = BundleCtx {
        parent,
        depth,
        ..BundleCtx::default()
    };
    for e in &entries {
        add_to_ctx(e, &mut ctx);
    }
    for e in &entries {
        let Ok(p) = entry_parts(e) else { continue };
        let Some(res) = p.resource else { continue };
        let Ok(facts) = scan::scan(res) else { continue };
        let Some(rtype) = facts.resource_type().map(str::to_owned) else {
            continue;
        };
        let Ok(id) = record_id(&facts, &rtype, p.full_url.as_deref(), res) else {
            continue;
        };
        if rtype == "Bundle" {
            if let Some(s) = whole_bundle_patient(res, Some(&ctx)) {
                return Some(s);
            }
            continue;
        }
        if let Some(s) = subject::patient_of(&facts, &rtype, &id, Some(&ctx)) {
            return Some(s);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(text: &str) -> Vec<(EntryIndex, Piece)> {
        let mut v = Vec::new();
        expand(Cow::Borrowed(text), true, &mut |i, p| v.push((i, p)));
        v
    }

    fn recs(v: &[(EntryIndex, Piece)]) -> Vec<(String, String, String)> {
        v.iter()
            .filter_map(|(_, p)| match p {
                Piece::Record(r) => {
                    Some((r.subject.clone(), r.collection.clone(), r.record_id.clone()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn transaction_split_with_urns_and_fullurl_ids() {
        let t = r#"{"resourceType":"Bundle","type":"transaction","entry":[
          {"fullUrl":"urn:uuid:c1","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:p1"}},"request":{"method":"POST","url":"Observation"}},
          {"fullUrl":"urn:uuid:p1","resource":{"resourceType":"Patient","id":"pat"},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=s|v"}},
          {"resource":{"resourceType":"Condition","subject":{"reference":"Patient?identifier=s|v"}}},
          {"request":{"method":"DELETE","url":"Patient/1"}},
          {"fullUrl":"Patient/pat","resource":{"resourceType":"Binary"},"request":{"method":"PATCH","url":"Patient/pat"}}
        ]}"#;
        let v = run(t);
        let r = recs(&v);
        assert_eq!(r[0], ("pat".into(), "Observation".into(), "c1".into()));
        assert_eq!(r[1], ("pat".into(), "Patient".into(), "pat".into()));
        assert_eq!(r[2].0, "pat");
        assert!(r[2].2.starts_with("sha256-"));
        assert_eq!(r.len(), 3);
        let skipped = v
            .iter()
            .filter(|(_, p)| matches!(p, Piece::Skipped(_)))
            .count();
        assert_eq!(skipped, 2);
    }

    #[test]
    fn document_kept_whole_under_its_patient() {
        let t = r#"{"resourceType":"Bundle","id":"doc1","type":"document","entry":[
          {"fullUrl":"urn:uuid:comp","resource":{"resourceType":"Composition","subject":{"reference":"urn:uuid:pp"}}},
          {"fullUrl":"urn:uuid:pp","resource":{"resourceType":"Patient"}}]}"#;
        let v = run(t);
        let r = recs(&v);
        assert_eq!(r, vec![("pp".into(), "Bundle".into(), "doc1".into())]);
        match &v[0].1 {
            Piece::Record(rec) => assert_eq!(rec.resource.as_str(), t),
            _ => panic!(),
        }
    }

    #[test]
    fn nested_bundles_follow_the_rule() {
        let t = r#"{"resourceType":"Bundle","type":"batch-response","entry":[
          {"response":{"status":"200"}},
          {"resource":{"resourceType":"Bundle","type":"searchset","entry":[
             {"resource":{"resourceType":"Patient","id":"a"}},
             {"resource":{"resourceType":"Observation","id":"o","subject":{"reference":"Patient/a"}}}]}}]}"#;
        let r = recs(&run(t));
        assert_eq!(
            r,
            vec![
                ("a".into(), "Patient".into(), "a".into()),
                ("a".into(), "Observation".into(), "o".into())
            ]
        );
    }

    #[test]
    fn rejects_and_skips() {
        assert!(matches!(run(r#"{"a":1}"#)[0].1, Piece::Skipped(_)));
        assert!(matches!(
            run(r#"{"resourceType":"Patient","id":"a_b"}"#)[0].1,
            Piece::Rejected(Reason::InvalidId)
        ));
        assert!(matches!(
            run(r#"{"resourceType":"Patient","id":"a","id":"b"}"#)[0].1,
            Piece::Rejected(Reason::Scan(ScanError::DuplicateMember))
        ));
        assert!(matches!(
            run(r#"{"resourceType":"patient"}"#)[0].1,
            Piece::Rejected(Reason::NotAResource)
        ));
    }

    #[test]
    fn nested_bundles_are_bounded() {
        let n = 100_000;
        let t = format!(
            "{}{}{}",
            r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":"#.repeat(n),
            r#"{"resourceType":"Patient","id":"x"}"#,
            "}]}".repeat(n)
        );
        let v = run(&t);
        assert!(matches!(
            v[0].1,
            Piece::Rejected(Reason::Scan(ScanError::TooDeep))
        ));
    }

    #[test]
    fn minify_keeps_strings() {
        assert_eq!(
            minify("{ \"a b\" : [ 1.50 , \"\\\" x\" ] }"),
            "{\"a b\":[1.50,\"\\\" x\"]}"
        );
    }
}
