//! Expansion of a parsed `.json` file (single resource or Bundle) into items.

use std::collections::VecDeque;
use std::path::PathBuf;

use serde_json::Value;

use super::{FhirError, ImportItem, Position, UrnMap, is_valid_id, resource_item};

/// Bundle types whose entries are independent current resources
/// (FHIR R4 §3.3.1, value set `bundle-type`).
const ACCEPTED_TYPES: [&str; 4] = ["transaction", "batch", "collection", "searchset"];

/// Pushes the items of one parsed `.json` file onto `out`.
///
/// A Bundle yields one item per `entry`; the Bundle itself is not stored. In
/// Synthea transaction Bundles, references are `urn:uuid:<uuid>` naming
/// another entry's `fullUrl` (FHIR R4 §3.3.1 "Resolving references in
/// Bundles"); those are resolved here. An entry resource without `id` whose
/// `fullUrl` is `urn:uuid:X` gets record id `X`, since that is the identity
/// the rest of the Bundle uses for it (in any accepted Bundle type, not just
/// `transaction`).
pub(super) fn expand(
    path: PathBuf,
    value: Value,
    out: &mut VecDeque<Result<ImportItem, FhirError>>,
) {
    let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    if !is_bundle {
        out.push_back(resource_item(&path, Position::Document, value, None, None));
        return;
    }
    let Value::Object(mut bundle) = value else {
        return;
    };
    let bundle_type = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    if !ACCEPTED_TYPES.contains(&bundle_type) {
        let well_formed = !bundle_type.is_empty()
            && bundle_type.len() <= 32
            && bundle_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-');
        out.push_back(Err(FhirError::UnsupportedBundleType {
            path,
            bundle_type: if well_formed {
                bundle_type.to_owned()
            } else {
                "(invalid)".to_owned()
            },
        }));
        return;
    }
    let entries = match bundle.remove("entry") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            out.push_back(Err(FhirError::NotAResource {
                path,
                at: Position::Document,
            }));
            return;
        }
    };
    let urns = urn_map(&entries);
    for (i, entry) in entries.into_iter().enumerate() {
        let at = Position::Entry(i);
        let Value::Object(mut entry) = entry else {
            out.push_back(Err(FhirError::NotAResource {
                path: path.clone(),
                at,
            }));
            continue;
        };
        let is_outcome = entry
            .get("search")
            .and_then(|s| s.get("mode"))
            .and_then(Value::as_str)
            == Some("outcome");
        if is_outcome {
            out.push_back(Ok(ImportItem::Skipped {
                path: path.clone(),
                at,
                why: "searchset outcome entry (OperationOutcome about the search)",
            }));
            continue;
        }
        let Some(resource) = entry.remove("resource") else {
            out.push_back(Ok(ImportItem::Skipped {
                path: path.clone(),
                at,
                why: "bundle entry without resource (e.g. a DELETE request)",
            }));
            continue;
        };
        let fallback = entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix("urn:uuid:"));
        out.push_back(resource_item(&path, at, resource, fallback, Some(&urns)));
    }
}

/// Maps every `urn:` fullUrl to the Patient id of its entry (`None` for
/// entries that are not Patients). Patients whose id would be invalid are left
/// out, so references to them fail as unresolved rather than resolve to a
/// bad subject.
fn urn_map(entries: &[Value]) -> UrnMap {
    let mut urns = UrnMap::new();
    for entry in entries {
        let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) else {
            continue;
        };
        if !full_url.starts_with("urn:") {
            continue;
        }
        let resource = entry.get("resource");
        let is_patient = resource
            .and_then(|r| r.get("resourceType"))
            .and_then(Value::as_str)
            == Some("Patient");
        if !is_patient {
            urns.insert(full_url.to_owned(), None);
            continue;
        }
        let id = match resource.and_then(|r| r.get("id")) {
            Some(Value::String(id)) if !id.is_empty() => Some(id.as_str()),
            Some(Value::String(_)) | Some(Value::Null) | None => full_url.strip_prefix("urn:uuid:"),
            Some(_) => None,
        };
        if let Some(id) = id.filter(|id| is_valid_id(id)) {
            urns.insert(full_url.to_owned(), Some(id.to_owned()));
        }
    }
    urns
}
