//! The re-identification check: k-anonymity (Sweeney 2002, "k-anonymity: a model for
//! protecting privacy") over the quasi-identifiers of each patient, computed on the
//! values as they will be exported.

use std::collections::BTreeMap;

use super::minimize::postal_prefix;
use super::{DataSpec, MAX_AGE};
use crate::json::JsonText;

/// One patient's quasi-identifiers as exported: birth year (`90+` when grouped,
/// `unknown` when absent), gender, postal prefix, then the specification's extra fields
/// (their exact JSON text, `unknown` when absent).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuasiIdentifiers(pub Vec<String>);

impl QuasiIdentifiers {
    /// The quasi-identifiers of Patient resource `patient` under `spec`, with ages
    /// computed at `reference_year`; and whether the age is grouped (over 89).
    pub fn of(patient: &JsonText, spec: &DataSpec, reference_year: i32) -> (Self, bool) {
        let t = patient.tree();
        let unknown = || "unknown".to_owned();
        let year: Option<i32> = t
            .get("birthDate")
            .and_then(|v| v.as_str())
            .and_then(|s| s.raw().get(..4).and_then(|y| y.parse().ok()));
        let grouped = year.is_some_and(|y| reference_year - y > MAX_AGE);
        let birth = match year {
            Some(_) if grouped => "90+".to_owned(),
            Some(y) => y.to_string(),
            None => unknown(),
        };
        let gender = t
            .get("gender")
            .and_then(|v| v.as_str())
            .map(|s| s.unescape().to_string())
            .unwrap_or_else(unknown);
        let first_address = match t.get("address") {
            Some(crate::json::Value::Array(a)) => a.items().first().cloned(),
            Some(o) => Some(o.clone()),
            None => None,
        };
        let postal = first_address
            .and_then(|a| postal_prefix(&a, spec.postal_digits))
            .unwrap_or_else(unknown);
        let mut key = vec![birth, gender, postal];
        for q in &spec.quasi_identifiers {
            key.push(t.get(q).map(|v| v.raw().to_owned()).unwrap_or_else(unknown));
        }
        (QuasiIdentifiers(key), grouped)
    }
}

/// The k-anonymity check over `classes` (one entry per patient, in any order) with
/// threshold `k`: for each patient whether it is kept (its class has at least `k`
/// members), and the k achieved (the smallest kept class; 0 when none is kept).
pub fn k_anonymity(classes: &[QuasiIdentifiers], k: usize) -> (Vec<bool>, usize) {
    let mut sizes: BTreeMap<&QuasiIdentifiers, usize> = BTreeMap::new();
    for c in classes {
        *sizes.entry(c).or_default() += 1;
    }
    let keep: Vec<bool> = classes.iter().map(|c| sizes[c] >= k).collect();
    let achieved = sizes
        .values()
        .copied()
        .filter(|&n| n >= k)
        .min()
        .unwrap_or(0);
    (keep, achieved)
}
