//! The OpenAPI 3.1 document of the operator API (`openapi.json` beside this file, written by
//! hand), served at `/api/v1/openapi.json`. [`operations`] lists its (method, path) pairs; the
//! tests compare them with [`super::api::route_table`] in both directions.

use std::collections::BTreeSet;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Every (method, path) the document describes, methods upper case.
pub fn operations() -> Result<BTreeSet<(String, String)>, serde_json::Error> {
    let doc: serde_json::Value = serde_json::from_str(DOCUMENT)?;
    let mut out = BTreeSet::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_describes_exactly_the_routes_served() {
        let documented = operations().unwrap();
        let served: BTreeSet<(String, String)> = super::super::api::route_table()
            .into_iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "openapi.json paths no route serves: {unserved:?}"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let text = DOCUMENT;
        for part in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "unresolved $ref {name}"
            );
        }
    }
}
