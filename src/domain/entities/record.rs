//! One row checked against its entity's schema and turned into the record it will be
//! stored as: normalized values, key, row hash, search text, and what the importer must
//! check further (unique values, references, file URLs).

use super::FieldKind;
use super::schema::EntitySchema;

/// A row that passed validation, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRecord {
    pub key: String,
    /// The normalized values as a JSON object, fields by name (see [`record_json`]).
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

/// The record's values as stored: one JSON object, its fields sorted by name, as serde_json
/// writes a map (a name given twice keeps its last value, as a map does), through serde's own
/// map serializer. Written straight from the values: building the map first cost a `String`
/// per field name and a tree per row, for every row an import writes.
pub fn record_json(mut values: Vec<(&str, serde_json::Value)>) -> Result<String, serde_json::Error> {
    use serde::ser::{Error, SerializeMap, Serializer};
    values.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(48 * values.len() + 2);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut map = (&mut ser).serialize_map(None)?;
    for (i, (name, v)) in values.iter().enumerate() {
        if values.get(i + 1).is_none_or(|(next, _)| next != name) {
            map.serialize_entry(name, v)?;
        }
    }
    map.end()?;
    String::from_utf8(out).map_err(serde_json::Error::custom)
}

/// How a stored value reads in a table cell or the search text.
pub fn display_value(v: &serde_json::Value) -> String {
    let mut out = String::new();
    push_display(&mut out, v);
    out
}

/// [`display_value`], written at the end of `out`.
fn push_display(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => {}
        Value::Bool(true) => out.push_str("Yes"),
        Value::Bool(false) => out.push_str("No"),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_display(out, item);
            }
        }
        // a fetched file: its name
        Value::Object(m) if m.get("name").is_some_and(|n| n.is_string()) => {
            out.push_str(m.get("name").and_then(|n| n.as_str()).unwrap_or_default())
        }
        other => {
            use std::fmt::Write;
            let _ = write!(out, "{other}");
        }
    }
}

/// The search text of a record's values: each value as it reads, those that read as
/// something, joined by ` | `, lower-cased.
fn search_text(values: &[(&str, serde_json::Value)]) -> String {
    let mut text = String::with_capacity(32 * values.len());
    for (_, v) in values {
        let mark = text.len();
        if mark > 0 {
            text.push_str(" | ");
        }
        let start = text.len();
        push_display(&mut text, v);
        if text.len() == start {
            text.truncate(mark);
        }
    }
    text.to_lowercase()
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
        let search_text = if record { search_text(&values) } else { String::new() };
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
        let data = match record {
            true => record_json(values).map_err(|e| vec![format!("the record could not be written as JSON: {e}")])?,
            false => String::new(),
        };
        Ok(PreparedRecord { key, data, row_hash, search_text, uniques, refs, files })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    #[test]
    fn records_are_written_as_serde_json_writes_their_map() {
        let rows: Vec<Vec<(&str, Value)>> = vec![
            vec![],
            vec![("b", json!(1)), ("a", json!("x"))],
            vec![
                ("name", json!("Zoë \"Q\" \\ tab\t new\nline \u{1}")),
                ("amount", json!(12.5)),
                ("count", json!(-3)),
                ("none", Value::Null),
                ("ok", json!(true)),
                ("tags", json!(["a", "b,c", 1])),
                ("file", json!({"name": "a.png", "size": 3})),
                ("Émile", json!("accents sort by bytes")),
                ("_under", json!("")),
            ],
            // a name twice: the last value, as a map keeps it
            vec![("k", json!(1)), ("j", json!(2)), ("k", json!(3))],
        ];
        for values in rows {
            let map: serde_json::Map<String, Value> = values.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
            assert_eq!(super::record_json(values).unwrap(), Value::Object(map).to_string());
        }
    }

    #[test]
    fn search_text_joins_what_each_value_reads_as_lower_cased() {
        let values = vec![
            ("a", json!("ÉMILE Zoë")),
            ("b", Value::Null),
            ("c", json!("")),
            ("d", json!(true)),
            ("e", json!([null, "X", 2.5])),
            ("f", json!({"name": "Scan.PNG", "size": 3})),
            ("g", json!({"other": 1})),
            ("h", json!(-7)),
            ("i", json!([])),
        ];
        let shown: Vec<String> = values.iter().map(|(_, v)| super::display_value(v)).collect();
        assert_eq!(shown, ["ÉMILE Zoë", "", "", "Yes", ", X, 2.5", "Scan.PNG", "{\"other\":1}", "-7", ""]);
        assert_eq!(super::search_text(&values), "émile zoë | yes | , x, 2.5 | scan.png | {\"other\":1} | -7");
        assert_eq!(super::search_text(&[("a", Value::Null)]), "");
    }
}
