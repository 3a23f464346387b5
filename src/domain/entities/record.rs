//! One row checked against its entity's schema and turned into the record it will be
//! stored as: normalized values, key, row hash, search text, and what the importer must
//! check further (unique values, references, file URLs).

use super::FieldKind;
use super::schema::EntitySchema;

/// A row that passed validation, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRecord {
    pub key: String,
    /// The normalized values as a JSON object, fields in schema order.
    pub data: String,
    pub row_hash: String,
    /// Lower-cased text of every value, for search.
    pub search_text: String,
    /// `(field, value)` of the fields marked unique, other than the key, when not empty.
    pub uniques: Vec<(String, String)>,
    /// `(field, target entity, key)` of every key a relationship field names.
    pub refs: Vec<(String, String, String)>,
    /// `(field, URL, is an image)` of every URL a file or image field names.
    pub files: Vec<(String, String, bool)>,
}

/// How a stored value reads in a table cell or the search text.
pub fn display_value(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "Yes".into(),
        Value::Bool(false) => "No".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(display_value).collect::<Vec<_>>().join(", "),
        // a fetched file: its name
        Value::Object(m) if m.get("name").is_some_and(|n| n.is_string()) => {
            m.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string()
        }
        other => other.to_string(),
    }
}

impl EntitySchema {
    /// Validates one row. `cell(field)` gives the raw text for a field (None: no such
    /// column). Every field is checked, so the caller gets all of a row's problems at once.
    pub fn prepare<'a>(&self, cell: impl Fn(&str) -> Option<&'a str>) -> Result<PreparedRecord, Vec<String>> {
        self.prepare_with(cell, true)
    }

    /// [`prepare`](Self::prepare), leaving `data` and `search_text` empty unless `record`:
    /// validation needs only the row's verdict, key, hash and the values set-based checks
    /// look at; the record itself is built again when its chunk is written.
    pub fn prepare_with<'a>(
        &self,
        cell: impl Fn(&str) -> Option<&'a str>,
        record: bool,
    ) -> Result<PreparedRecord, Vec<String>> {
        let mut errors = vec![];
        let mut values: Vec<(&str, serde_json::Value)> = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            match super::field::parse_cell(&f.rule, cell(f.name()).unwrap_or_default()) {
                Ok(v) => values.push((f.name(), v)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let key = values.iter().find(|(n, _)| *n == self.key).map(|(_, v)| display_value(v)).unwrap_or_default();
        let row_hash = super::field::row_hash(&self.name, values.iter().map(|(n, v)| (*n, v)));
        let search_text = if !record {
            String::new()
        } else {
            values
                .iter()
                .map(|(_, v)| display_value(v))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" | ")
                .to_lowercase()
        };
        let uniques = self
            .fields
            .iter()
            .filter(|f| f.unique && f.name() != self.key)
            .filter_map(|f| {
                let v = values.iter().find(|(n, _)| *n == f.name()).map(|(_, v)| display_value(v))?;
                (!v.is_empty()).then(|| (f.name().to_string(), v.to_lowercase()))
            })
            .collect();
        let mut refs = vec![];
        for f in self.fields.iter().filter(|f| f.kind().is_relationship()) {
            let target = f.target.as_deref().unwrap_or_default();
            let mut add = |k: &str| refs.push((f.name().to_string(), target.to_string(), k.to_string()));
            match values.iter().find(|(n, _)| *n == f.name()).map(|(_, v)| v) {
                Some(serde_json::Value::String(k)) => add(k),
                Some(serde_json::Value::Array(ks)) => ks.iter().filter_map(|k| k.as_str()).for_each(add),
                _ => {}
            }
        }
        let mut files = vec![];
        for f in self.fields.iter().filter(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images)) {
            if let Some(serde_json::Value::Array(urls)) = values.iter().find(|(n, _)| *n == f.name()).map(|(_, v)| v) {
                let image = f.kind() == FieldKind::Images;
                files.extend(
                    urls.iter().filter_map(|u| u.as_str()).map(|u| (f.name().to_string(), u.to_string(), image)),
                );
            }
        }
        let data = if record {
            let map: serde_json::Map<String, serde_json::Value> =
                values.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
            serde_json::Value::Object(map).to_string()
        } else {
            String::new()
        };
        Ok(PreparedRecord { key, data, row_hash, search_text, uniques, refs, files })
    }
}
