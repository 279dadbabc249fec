//! Minimization of one FHIR resource for a research export (docs/RESEARCH.md "Rules").
//!
//! The resource is walked as the exact-JSON tree ([`crate::json::Value`]); what is kept
//! is copied token for token (number tokens and string escapes as stored), what is
//! changed is written as a new JSON string. The result is parsed again as a
//! [`JsonText`], so it is always valid JSON.

use serde::Serialize;
use zeroize::Zeroizing;

use super::{DIRECT_IDENTIFIERS, DataSpec, DateRule, ProjectPseudonyms};
use crate::json::{JsonText, Value};

/// What minimization removed or changed, counted per occurrence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    /// Members dropped as direct identifiers, free text, attachments or extensions.
    pub identifiers_dropped: u64,
    /// Top-level fields not in the specification, dropped.
    pub fields_not_requested: u64,
    /// Resource ids and references replaced by project pseudonyms.
    pub ids_pseudonymized: u64,
    /// Reference `display` texts dropped.
    pub reference_displays_dropped: u64,
    /// Date, dateTime and instant values generalized.
    pub dates_generalized: u64,
    /// Addresses reduced to a truncated postal code.
    pub addresses_reduced: u64,
    /// Birth dates dropped because the age is over 89.
    pub birth_dates_dropped: u64,
    /// Resources nested in an exported resource (any object below the top level with
    /// a `resourceType` member), dropped whole.
    pub nested_resources_dropped: u64,
}

impl DropCounts {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &DropCounts) {
        self.identifiers_dropped += o.identifiers_dropped;
        self.fields_not_requested += o.fields_not_requested;
        self.ids_pseudonymized += o.ids_pseudonymized;
        self.reference_displays_dropped += o.reference_displays_dropped;
        self.dates_generalized += o.dates_generalized;
        self.addresses_reduced += o.addresses_reduced;
        self.birth_dates_dropped += o.birth_dates_dropped;
        self.nested_resources_dropped += o.nested_resources_dropped;
    }
}

struct Walk<'a> {
    spec: &'a DataSpec,
    shift_days: i64,
    names: &'a ProjectPseudonyms,
    counts: DropCounts,
}

/// Minimizes `resource` (a FHIR resource of collection `collection`) under `spec` with
/// the project's pseudonyms `names`. `age_grouped`: the patient is over 89 (a Patient's
/// `birthDate` is then dropped). `shift_days`: the patient's date shift under
/// [`DateRule::Shift`] ([`ProjectPseudonyms::shift_days`]), ignored otherwise. Returns the minimized resource and what changed;
/// `None` when the resource is not an object, its `resourceType` is not `collection`,
/// or its collection is not in `spec` or is a [`super::CONTAINER_TYPES`] one.
///
/// Rules, in order, for each member at every depth: a name in [`DIRECT_IDENTIFIERS`]
/// not kept by [`DataSpec::keep_identifiers`] is dropped; `address` is reduced to
/// `{"postalCode": first N characters}` (dropped when N is 0 or no postal code); the
/// `display` of an object holding a `reference` is dropped; a `reference` is
/// pseudonymized; a string that is a FHIR date, dateTime or instant is generalized
/// (`birthDate` always to the year); an object below the top level with a
/// `resourceType` member (a nested resource: Bundle entries, `contained`, Parameters)
/// is dropped whole; objects and arrays left empty are dropped. At the top level only
/// the specification's fields are kept, and `id` is pseudonymized.
pub fn minimize(
    resource: &JsonText,
    collection: &str,
    spec: &DataSpec,
    names: &ProjectPseudonyms,
    age_grouped: bool,
    shift_days: i64,
) -> Option<(JsonText, DropCounts)> {
    if super::CONTAINER_TYPES.contains(&collection) {
        return None;
    }
    let cspec = spec.collection(collection)?;
    let tree = resource.tree();
    let obj = tree.as_object()?;
    // Only a resource of its own collection's type: a Bundle put in another collection
    // would carry its entries' URLs and whole resources past the rules.
    let ty = obj.get("resourceType")?.as_str()?.unescape();
    if *ty != *collection {
        return None;
    }
    let mut w = Walk {
        spec,
        shift_days,
        names,
        counts: DropCounts::default(),
    };
    let all = cspec.fields.iter().any(|f| f == "*");
    let mut out = Zeroizing::new(String::with_capacity(resource.len()));
    out.push('{');
    let mut first = true;
    for m in obj.members() {
        let name = m.name.unescape();
        let name: &str = &name;
        let value: Option<Zeroizing<String>> = match name {
            "resourceType" => Some(Zeroizing::new(m.value.raw().to_owned())),
            "id" => m.value.as_str().map(|s| {
                w.counts.ids_pseudonymized += 1;
                quoted(&names.id(&s.unescape()))
            }),
            _ if !all && !cspec.fields.iter().any(|f| f == name) => {
                w.counts.fields_not_requested += 1;
                None
            }
            "birthDate" if collection == "Patient" && age_grouped => {
                w.counts.birth_dates_dropped += 1;
                None
            }
            "birthDate" if collection == "Patient" => {
                let s = m.value.as_str().map(|s| s.unescape());
                match s
                    .as_deref()
                    .and_then(|s| generalize_date(s, DateRule::Year, 0))
                {
                    Some(g) => {
                        w.counts.dates_generalized += 1;
                        Some(quoted(&g))
                    }
                    None => {
                        // Not a date: not knowable as safe.
                        w.counts.identifiers_dropped += 1;
                        None
                    }
                }
            }
            _ => w.member(name, &m.value, false),
        };
        if let Some(v) = value {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(m.name.token());
            out.push(':');
            out.push_str(&v);
        }
    }
    out.push('}');
    let text = JsonText::parse(out.as_bytes()).ok()?;
    Some((text, w.counts))
}

fn quoted(s: &str) -> Zeroizing<String> {
    // serde_json escapes as RFC 8259 requires; a &str always serializes.
    Zeroizing::new(serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()))
}

impl Walk<'_> {
    fn kept(&self, name: &str) -> bool {
        self.spec.keep_identifiers.iter().any(|k| k == name)
    }

    /// The minimized value of member `name` (in an object holding a `reference` when
    /// `in_reference`), `None` when dropped.
    fn member(
        &mut self,
        name: &str,
        v: &Value<'_>,
        in_reference: bool,
    ) -> Option<Zeroizing<String>> {
        if DIRECT_IDENTIFIERS.contains(&name) && !self.kept(name) {
            self.counts.identifiers_dropped += 1;
            return None;
        }
        if name == "address" && !self.kept(name) {
            self.counts.addresses_reduced += 1;
            return self.address(v);
        }
        if name == "display" && in_reference {
            self.counts.reference_displays_dropped += 1;
            return None;
        }
        if name == "reference"
            && let Some(s) = v.as_str()
        {
            self.counts.ids_pseudonymized += 1;
            return Some(quoted(&self.reference(&s.unescape())));
        }
        self.value(v)
    }

    fn value(&mut self, v: &Value<'_>) -> Option<Zeroizing<String>> {
        match v {
            Value::Object(o) if o.get("resourceType").is_some() => {
                // A resource nested in another: never exported (docs/RESEARCH.md).
                self.counts.nested_resources_dropped += 1;
                None
            }
            Value::Object(o) => {
                let in_ref = o.get("reference").is_some();
                let mut out = Zeroizing::new(String::with_capacity(o.raw().len()));
                out.push('{');
                let mut n = 0;
                for m in o.members() {
                    let name = m.name.unescape();
                    if let Some(x) = self.member(&name, &m.value, in_ref) {
                        if n > 0 {
                            out.push(',');
                        }
                        n += 1;
                        out.push_str(m.name.token());
                        out.push(':');
                        out.push_str(&x);
                    }
                }
                out.push('}');
                (n > 0).then_some(out)
            }
            Value::Array(a) => {
                let mut out = Zeroizing::new(String::with_capacity(a.raw().len()));
                out.push('[');
                let mut n = 0;
                for item in a.items() {
                    if let Some(x) = self.value(item) {
                        if n > 0 {
                            out.push(',');
                        }
                        n += 1;
                        out.push_str(&x);
                    }
                }
                out.push(']');
                (n > 0).then_some(out)
            }
            Value::String(s) => {
                let u = s.unescape();
                match generalize_date(&u, self.spec.dates, self.shift_days) {
                    Some(g) => {
                        self.counts.dates_generalized += 1;
                        Some(quoted(&g))
                    }
                    None => Some(Zeroizing::new(s.token().to_owned())),
                }
            }
            other => Some(Zeroizing::new(other.raw().to_owned())),
        }
    }

    /// An address (object or array of objects) reduced to its truncated postal codes.
    fn address(&mut self, v: &Value<'_>) -> Option<Zeroizing<String>> {
        let one = |o: &Value<'_>| -> Option<String> {
            let p = postal_prefix(o, self.spec.postal_digits)?;
            Some(format!("{{\"postalCode\":{}}}", quoted(&p).as_str()))
        };
        match v {
            Value::Array(a) => {
                let items: Vec<String> = a.items().iter().filter_map(one).collect();
                (!items.is_empty()).then(|| Zeroizing::new(format!("[{}]", items.join(","))))
            }
            o => one(o).map(Zeroizing::new),
        }
    }

    /// A reference with its target replaced by a pseudonym (docs/RESEARCH.md).
    fn reference(&self, r: &str) -> String {
        if r.starts_with('#') {
            // A local anchor into `contained`, which is dropped: nothing to name.
            return "#".to_owned();
        }
        if let Some(id) = r.strip_prefix("urn:uuid:") {
            return format!("urn:uuid:{}", self.names.id(id));
        }
        let ty_end = r.find(['/', '?']);
        if let Some(i) = ty_end {
            let ty = &r[..i];
            let plain_type = !ty.is_empty() && ty.bytes().all(|b| b.is_ascii_alphabetic());
            if plain_type && r.as_bytes().get(i) == Some(&b'/') {
                let id = r[i + 1..].split('/').next().unwrap_or_default();
                return format!("{ty}/{}", self.names.id(id));
            }
            if plain_type {
                return format!("{ty}/{}", self.names.reference(r));
            }
        }
        format!("urn:uuid:{}", self.names.reference(r))
    }
}

/// The first `digits` characters of the `postalCode` of address object `a`; `None`
/// when `digits` is 0 or there is no postal code.
pub(crate) fn postal_prefix(a: &Value<'_>, digits: usize) -> Option<String> {
    if digits == 0 {
        return None;
    }
    let p = a.get("postalCode")?.as_str()?.unescape();
    let p: String = p.chars().take(digits).collect();
    (!p.is_empty()).then_some(p)
}

/// `s` generalized or shifted by `rule` when it is a FHIR date, dateTime or instant
/// (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, optionally followed by `T...`): `YYYY-MM` or `YYYY`,
/// never finer than `s` was; under [`DateRule::Shift`], moved by `shift_days` (see
/// there). A month or day out of range is generalized to the year. `None` when `s` is
/// not a date.
pub(crate) fn generalize_date(s: &str, rule: DateRule, shift_days: i64) -> Option<String> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if !digits(0..4) {
        return None;
    }
    let year = &s[..4];
    let (month, day) = match b.len() {
        4 => (None, None),
        7 if b[4] == b'-' && digits(5..7) => (Some(&s[5..7]), None),
        n if n >= 10 && b[4] == b'-' && b[7] == b'-' && digits(5..7) && digits(8..10) => {
            if n > 10 && b[10] != b'T' {
                return None;
            }
            (Some(&s[5..7]), Some(&s[8..10]))
        }
        _ => return None,
    };
    let num = |t: &str| t.parse::<u32>().ok();
    let valid_month = month.and_then(num).filter(|m| (1..=12).contains(m));
    let valid_day = day.and_then(num).filter(|d| (1..=31).contains(d));
    if month.is_some() && valid_month.is_none() || day.is_some() && valid_day.is_none() {
        return Some(year.to_owned());
    }
    Some(match (rule, month) {
        (DateRule::Shift, Some(m)) => {
            let y: i64 = year.parse().ok()?;
            let m: u32 = m.parse().ok()?;
            let d = valid_day.unwrap_or(1);
            let (y, m, d) = super::civil_from_days(super::days_from_civil(y, m, d) + shift_days);
            if !(1..=9999).contains(&y) {
                // No valid FHIR date (four-digit year, year 0001 at the earliest):
                // the year only, unshifted, as `YYYY` values are.
                return Some(year.to_owned());
            }
            match day {
                Some(_) => format!("{y:04}-{m:02}-{d:02}"),
                None => format!("{y:04}-{m:02}"),
            }
        }
        (DateRule::Month, Some(m)) => format!("{year}-{m}"),
        _ => year.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_generalized_and_other_strings_are_not() {
        let m = DateRule::Month;
        let generalize_date = |s: &str, r: DateRule| super::generalize_date(s, r, 0);
        assert_eq!(
            generalize_date("2019-02-10T09:31:33-05:00", m).as_deref(),
            Some("2019-02")
        );
        assert_eq!(generalize_date("2019-02-10", m).as_deref(), Some("2019-02"));
        assert_eq!(generalize_date("2019-02", m).as_deref(), Some("2019-02"));
        assert_eq!(generalize_date("2019", m).as_deref(), Some("2019"));
        assert_eq!(
            generalize_date("2019-02-10", DateRule::Year).as_deref(),
            Some("2019")
        );
        for s in [
            "201",
            "2019-2",
            "20190210",
            "2019-02-10x",
            "abcd",
            "12345",
            "2019-02-1",
        ] {
            assert_eq!(generalize_date(s, m), None, "{s}");
        }
        // Out-of-range months and days: the year only.
        assert_eq!(generalize_date("2019-13-01", m).as_deref(), Some("2019"));
        assert_eq!(generalize_date("2019-02-32", m).as_deref(), Some("2019"));
    }

    /// Shifts checked against dates worked out by hand (2024 is a leap year).
    #[test]
    fn dates_are_shifted_across_months_years_and_leap_days() {
        let s = |x: &str, d: i64| generalize_date(x, DateRule::Shift, d);
        assert_eq!(s("2024-02-28T10:00:00Z", 1).as_deref(), Some("2024-02-29"));
        assert_eq!(s("2024-02-28", 2).as_deref(), Some("2024-03-01"));
        assert_eq!(s("2023-12-31", 1).as_deref(), Some("2024-01-01"));
        assert_eq!(s("2024-01-01", -1).as_deref(), Some("2023-12-31"));
        assert_eq!(s("2024-03", -1).as_deref(), Some("2024-02"));
        assert_eq!(s("2024", 100).as_deref(), Some("2024"));
        assert_eq!(s("2024-06-15", 0).as_deref(), Some("2024-06-15"));
        // A shift past the FHIR date range: the year only (docs/RESEARCH.md).
        assert_eq!(s("9999-12-31T23:59:59Z", 1).as_deref(), Some("9999"));
        assert_eq!(s("9999-12", 31).as_deref(), Some("9999"));
        assert_eq!(s("0001-01-01", -1).as_deref(), Some("0001"));
        assert_eq!(s("9999-12-30", 1).as_deref(), Some("9999-12-31"));
    }
}
