//! `column_mapping` in the API: what creating an import takes (a field's column as its
//! header, or with the format its values are written in and an enum's value mapping) and how
//! an import shows the column options it was given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::domain::entities::{CellFormat, FieldKind};
use crate::domain::imports::{ColumnMapping, ColumnOption, ColumnOptions, check_options};

/// A field's column in `column_mapping`: its header, or the header with how its values are
/// written.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MappingEntry {
    Column(String),
    Detailed(ColumnChoice),
}

/// A column with its format and, for an enum, its value mapping.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnChoice {
    /// The file's column header.
    pub column: String,
    /// How the column writes its values, e.g. `DD/MM/YYYY`, `excel_serial`, `decimal_comma`.
    pub format: Option<String>,
    /// For an enum: a value of the file → the allowed value it stands for.
    pub values: Option<BTreeMap<String, String>>,
}

/// The mapping and the column options a request's `column_mapping` gives.
pub fn split_mapping(
    schema: &crate::domain::entities::EntitySchema,
    entries: BTreeMap<String, MappingEntry>,
) -> Result<(ColumnMapping, ColumnOptions), ApiError> {
    let mut mapping = ColumnMapping::new();
    let mut options = ColumnOptions::new();
    for (field, entry) in entries {
        if schema.field(&field).is_none() {
            return Err(ApiError::invalid(
                "column_mapping",
                format!("\"{field}\" is not a field of {}; see /api/v1/resources/{}.", schema.name, schema.name),
            ));
        }
        match entry {
            MappingEntry::Column(c) => {
                mapping.insert(field, c);
            }
            MappingEntry::Detailed(c) => {
                let mut o = ColumnOption::default();
                if let Some(p) = c.format.as_deref() {
                    o.format = Some(CellFormat::parse(p).filter(|f| f.pattern() == p).ok_or_else(|| {
                        ApiError::invalid(
                            "column_mapping",
                            format!("{field}: \"{p}\" is not a format; see /api/v1/resources/{}.", schema.name),
                        )
                    })?);
                }
                if let Some(values) = c.values {
                    // even an empty mapping names values: only an enum has them
                    let kind = schema.field(&field).map(|f| f.kind());
                    if !matches!(kind, Some(FieldKind::Enum | FieldKind::EnumMultiple)) {
                        return Err(ApiError::invalid(
                            "column_mapping",
                            format!("{field} is not an enum field; only enum values can be mapped."),
                        ));
                    }
                    o.values = values;
                }
                if !o.is_empty() {
                    options.insert(field.clone(), o);
                }
                mapping.insert(field, c.column);
            }
        }
    }
    check_options(schema, &options).map_err(|m| ApiError::invalid("column_mapping", m))?;
    Ok((mapping, options))
}

/// How a field's column is read (see `column_mapping` when creating an import).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ColumnOptionObject {
    /// e.g. `DD/MM/YYYY`, `excel_serial`, `decimal_comma`; null: the canonical way.
    pub format: Option<String>,
    /// For an enum: a value of the file → the allowed value it is imported as.
    pub values: BTreeMap<String, String>,
}

/// The import's column options as its object shows them.
pub fn options_object(options: &ColumnOptions) -> BTreeMap<String, ColumnOptionObject> {
    options
        .iter()
        .map(|(f, o)| {
            (f.clone(), ColumnOptionObject { format: o.format.map(|c| c.pattern()), values: o.values.clone() })
        })
        .collect()
}
