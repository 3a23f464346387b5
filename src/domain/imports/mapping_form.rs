//! Checking the column mapping a person submitted on the mapping form: only the schema's
//! fields, only the file's columns, each column once, every required field mapped.

use std::collections::BTreeMap;

use super::{ColumnMapping, Import};
use crate::domain::entities::EntitySchema;

/// What is wrong with a mapping a person submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingProblem {
    /// A header that is not in the file (a tampered form): nothing to redisplay.
    UnknownColumn(String),
    /// Fixable on the form: the message, with the mapping as submitted.
    Invalid(String, ColumnMapping),
}

impl Import {
    /// Reads the mapping form's `map.<field>` pairs into a mapping: only the schema's
    /// fields, only the file's columns, each column once, every required field mapped.
    pub fn mapping_from_form(
        &self,
        schema: &EntitySchema,
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ColumnMapping, MappingProblem> {
        let mut mapping = ColumnMapping::new();
        for (k, v) in pairs {
            if let Some(field) = k.strip_prefix("map.")
                && schema.field(field).is_some()
                && !v.is_empty()
            {
                if !self.headers.contains(&v) {
                    return Err(MappingProblem::UnknownColumn(v));
                }
                mapping.insert(field.to_string(), v);
            }
        }
        let mut used: BTreeMap<&str, &str> = BTreeMap::new();
        for (field, header) in &mapping {
            if let Some(other) = used.insert(header, field) {
                let msg =
                    format!("The column \"{header}\" is mapped to both {other} and {field}; map each column once.");
                return Err(MappingProblem::Invalid(msg, mapping.clone()));
            }
        }
        let missing = self.required_without_column(schema, &mapping);
        if !missing.is_empty() {
            let msg = format!("Map a column to every required field; not mapped yet: {}.", missing.join(", "));
            return Err(MappingProblem::Invalid(msg, mapping));
        }
        Ok(mapping)
    }

    /// The labels of the required fields `mapping` gives no column, in schema order.
    pub fn required_without_column(&self, schema: &EntitySchema, mapping: &ColumnMapping) -> Vec<String> {
        super::missing_required(self.required_fields(schema), mapping)
            .into_iter()
            .map(|f| schema.field(f).map(|f| f.label.clone()).unwrap_or_else(|| f.to_string()))
            .collect()
    }

    /// What the mapping step warns about at once, before the person submits the form.
    pub fn mapping_warnings(&self, schema: &EntitySchema, mapping: &ColumnMapping) -> Vec<MappingWarning> {
        let mut warnings = vec![];
        if mapping.is_empty() && !self.headers.is_empty() {
            warnings.push(MappingWarning::NothingMatched(self.headers.clone()));
        }
        let missing = self.required_without_column(schema, mapping);
        if !missing.is_empty() {
            warnings.push(MappingWarning::RequiredWithoutColumn(missing));
        }
        warnings
    }
}

/// What the mapping step warns about as soon as it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingWarning {
    /// No column of the file matched a field by name: the file's columns, to compare.
    NothingMatched(Vec<String>),
    /// The labels of required fields without a column.
    RequiredWithoutColumn(Vec<String>),
}

impl MappingWarning {
    pub fn title(&self) -> &'static str {
        match self {
            MappingWarning::NothingMatched(_) => "No column matched a field",
            MappingWarning::RequiredWithoutColumn(_) => "Required fields without a column",
        }
    }

    pub fn text(&self) -> String {
        match self {
            MappingWarning::NothingMatched(columns) => format!(
                "None of the file's columns ({}) has the name of a field. Check that this is the file you meant, then choose below which column fills each field.",
                shown_list(columns, 6)
            ),
            MappingWarning::RequiredWithoutColumn(labels) => required_text(labels),
        }
    }

    /// The required-fields warning, kept in its own element that the page's script updates
    /// as the person picks columns.
    pub fn is_required(&self) -> bool {
        matches!(self, MappingWarning::RequiredWithoutColumn(_))
    }
}

/// "Choose a column for Name and Kind: …" (static/app.js words it the same way).
fn required_text(labels: &[String]) -> String {
    let them = if labels.len() == 1 { "it" } else { "them" };
    format!("Choose a column for {}: the file cannot be validated without {them}.", and_list(labels))
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The first `max` items, then how many more.
fn shown_list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn warnings_name_the_fields_and_columns_in_words() {
        let required = MappingWarning::RequiredWithoutColumn(list(&["Name", "Kind", "City"]));
        assert_eq!(
            required.text(),
            "Choose a column for Name, Kind and City: the file cannot be validated without them."
        );
        assert!(required.is_required());
        let cols = list(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        let nothing = MappingWarning::NothingMatched(cols);
        assert!(nothing.text().contains("(a, b, c, d, e, f and 2 more)"), "{}", nothing.text());
        assert_eq!(and_list(&list(&["Name"])), "Name");
    }
}
