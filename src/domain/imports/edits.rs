//! Fixing rows left out where they are seen: a cell edited on the import's page is kept as
//! an edit of the file's cell (row, column), never written into the file. Validation and the
//! import read each row through its edits ([`Overlay`]); an edited row is checked at once by
//! its field rules ([`Import::recheck`]), and joins the import when it is validated again.

use std::collections::HashMap;

use super::{Action, Import};
use crate::domain::entities::EntitySchema;

/// The edits of an import's cells, latest per cell, by row: applied to each row as the
/// file is read.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    rows: HashMap<u64, Vec<(usize, String)>>,
}

impl Overlay {
    /// From `(row, column index, value)` in the order they were made: a later edit of a
    /// cell replaces an earlier one.
    pub fn new(edits: impl IntoIterator<Item = (i64, usize, String)>) -> Overlay {
        let mut rows: HashMap<u64, Vec<(usize, String)>> = HashMap::new();
        for (row, column, value) in edits {
            let cells = rows.entry(row.max(0) as u64).or_default();
            match cells.iter_mut().find(|(c, _)| *c == column) {
                Some(cell) => cell.1 = value,
                None => cells.push((column, value)),
            }
        }
        Overlay { rows }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `n`'s cells with its edits, when it has some (a row shorter than an edited
    /// column is padded with empty cells).
    pub fn apply<S: AsRef<str>>(&self, n: u64, cells: &[S]) -> Option<Vec<String>> {
        let edits = self.rows.get(&n)?;
        let mut out: Vec<String> = cells.iter().map(|c| c.as_ref().to_string()).collect();
        for (column, value) in edits {
            if out.len() <= *column {
                out.resize(column + 1, String::new());
            }
            out[*column] = value.clone();
        }
        Some(out)
    }
}

/// A row's problems, each with the field it names when it names one: `row 4, kind: "x" is
/// not …; capacity: …` → `[(kind, "kind: \"x\" is not …"), (capacity, …)]`.
pub fn problems_by_field(message: &str, schema: &EntitySchema) -> Vec<(Option<String>, String)> {
    let text = message
        .split_once(", ")
        .filter(|(head, _)| head.starts_with("row ") && head[4..].bytes().all(|b| b.is_ascii_digit()))
        .map_or(message, |(_, t)| t);
    text.split("; ")
        .map(|part| {
            let field = part.split_once(':').map(|(f, _)| f.trim()).filter(|f| schema.field(f).is_some());
            (field.map(str::to_string), part.to_string())
        })
        .collect()
}

impl Import {
    /// Checks a row's cells (in the header's order) by every mapped field's rules, with the
    /// import's column formats and value mappings: the problems, each naming its field, or
    /// none. What only the whole file can tell (a key used twice, a reference to a record
    /// not stored, a unique value taken) is checked when the import is validated again.
    pub fn recheck(&self, schema: &EntitySchema, cells: &[String]) -> Result<(), Vec<String>> {
        let columns = self.columns();
        let cell = |f: &str| columns.get(f).map(|i| cells.get(*i).map(String::as_str).unwrap_or(""));
        if self.action == Action::Delete {
            // a delete names records by key; nothing else is read
            return match cell(&schema.key).map(str::trim) {
                Some(k) if !k.is_empty() => Ok(()),
                _ => Err(vec![format!("{}: is required but empty", schema.key)]),
            };
        }
        let compiled;
        let schema = if self.options.is_empty() {
            schema
        } else {
            compiled = schema.with_options(&self.options);
            &compiled
        };
        schema.prepare(cell).map(|_| ())
    }

    /// The file's column index of each mapped field.
    pub fn columns(&self) -> HashMap<String, usize> {
        self.mapping
            .iter()
            .filter_map(|(f, h)| self.headers.iter().position(|x| x == h).map(|i| (f.clone(), i)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::imports::{ColumnMapping, ColumnOption};

    fn schema() -> EntitySchema {
        let toml = r#"
entity = "sites"
label = "Sites"
singular = "Site"
key = "code"
[[fields]]
name = "code"
type = "text"
required = true
[[fields]]
name = "opened"
type = "date"
[[fields]]
name = "kind"
type = "enum"
values = ["clinic", "office"]
"#;
        EntitySchema::parse("sites.toml", toml).unwrap()
    }

    #[test]
    fn the_latest_edit_of_a_cell_wins_and_other_rows_read_as_they_are() {
        let o = Overlay::new([(3, 1, "a".to_string()), (3, 1, "b".to_string()), (3, 4, "far".to_string())]);
        assert_eq!(o.apply(3, &["x", "y"]), Some(vec!["x".into(), "b".into(), "".into(), "".into(), "far".into()]));
        assert_eq!(o.apply(2, &["x", "y"]), None);
        assert!(Overlay::default().is_empty());
    }

    #[test]
    fn problems_name_their_fields_and_the_rest_stay_the_rows() {
        let s = schema();
        let p = problems_by_field("row 12, kind: \"x\" is not one of the allowed values; opened: bad", &s);
        assert_eq!(p[0], (Some("kind".into()), "kind: \"x\" is not one of the allowed values".into()));
        assert_eq!(p[1].0.as_deref(), Some("opened"));
        let p = problems_by_field("row 7 repeats row 6; every copy is left out", &s);
        assert_eq!(p[0].0, None, "no field named");
        let p = problems_by_field("nothing: here", &s);
        assert_eq!(p, vec![(None, "nothing: here".to_string())]);
    }

    #[test]
    fn a_row_is_checked_again_by_its_rules_with_the_imports_formats() {
        let s = schema();
        let mut imp = crate::domain::imports::model::tests::import(crate::domain::imports::Stage::Ready, Action::Merge);
        imp.headers = vec!["code".into(), "Opened".into(), "kind".into()];
        imp.mapping = ColumnMapping::from([
            ("code".to_string(), "code".to_string()),
            ("opened".to_string(), "Opened".to_string()),
            ("kind".to_string(), "kind".to_string()),
        ]);
        let row = |v: [&str; 3]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert!(imp.recheck(&s, &row(["A", "2024-01-31", "clinic"])).is_ok());
        let e = imp.recheck(&s, &row(["", "31/01/2024", "shop"])).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        imp.options.insert(
            "opened".into(),
            ColumnOption { format: crate::domain::entities::CellFormat::parse("DD/MM/YYYY"), ..Default::default() },
        );
        imp.options.entry("kind".into()).or_default().values.insert("shop".into(), "office".into());
        assert!(
            imp.recheck(&s, &row(["A", "31/01/2024", "shop"])).is_ok(),
            "the chosen format and value mapping apply"
        );
        imp.action = Action::Delete;
        assert!(imp.recheck(&s, &row(["A", "never", "read"])).is_ok(), "a delete reads the key only");
        assert!(imp.recheck(&s, &row(["", "", ""])).is_err());
    }
}
