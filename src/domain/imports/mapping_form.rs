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
        let missing = super::missing_required(self.required_fields(schema), &mapping);
        if !missing.is_empty() {
            let msg = format!("Map a column to every required field; not mapped yet: {}.", missing.join(", "));
            return Err(MappingProblem::Invalid(msg, mapping));
        }
        Ok(mapping)
    }
}
