//! The blind indexes a FHIR vault gets by default (issue 8): how clinic software looks
//! patients up. An import into a new vault adds them with [`medvault::Vault::add_index`].

use medvault::{IndexPath, IndexSpec, Normalization};

fn spec(collection: &str, name: &str, parts: &[&str], n: Normalization) -> IndexSpec {
    IndexSpec {
        name: name.to_owned(),
        collection: collection.to_owned(),
        // The paths below are constants known to parse (checked by a unit test).
        parts: parts
            .iter()
            .filter_map(|p| IndexPath::parse(p).ok())
            .collect(),
        normalization: n,
        truncate_bits: None,
    }
}

/// The default FHIR R4 indexes, all full length (128 bits):
///
/// | collection | name | parts | normalization |
/// |---|---|---|---|
/// | Patient | `identifier` | `identifier[].value` (any system: MRN, SSN, driver's licence, passport...) | Identifier |
/// | Patient | `family` | `name[].family` (every name: official, maiden...) | Name |
/// | Patient | `given` | `name[].given[]` | Name |
/// | Patient | `birthdate` | `birthDate` | Exact |
/// | Patient | `family-birthdate` | `name[].family`, `birthDate` | Name |
/// | Condition | `code` | `code.coding[].code` (any code system) | Exact |
///
/// Query with one value per part, e.g.
/// `vault.find(&ctx, "Patient", "family-birthdate", &["Peña909", "1943-03-17"])`.
/// A deployment that wants less leakage truncates some (`spec.truncated(bits)`,
/// docs/INDEXES.md) before adding them.
pub fn default_indexes() -> Vec<IndexSpec> {
    use Normalization::*;
    vec![
        spec("Patient", "identifier", &["identifier[].value"], Identifier),
        spec("Patient", "family", &["name[].family"], Name),
        spec("Patient", "given", &["name[].given[]"], Name),
        spec("Patient", "birthdate", &["birthDate"], Exact),
        spec(
            "Patient",
            "family-birthdate",
            &["name[].family", "birthDate"],
            Name,
        ),
        spec("Condition", "code", &["code.coding[].code"], Exact),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn defaults_are_valid() {
        let d = super::default_indexes();
        assert_eq!(d.len(), 6);
        for s in &d {
            assert!(s.validate().is_ok(), "{}", s.name);
        }
        assert_eq!(d[4].parts.len(), 2);
    }
}
