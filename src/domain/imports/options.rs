//! What a person chose at mapping besides the columns: the format a column's values are
//! written in and, for enums, which allowed value each unknown value stands for. Stored with
//! the import's mapping and applied when its rows are parsed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::detect::{FileProfile, Guess, guess, plain_match, unknown_values};
use super::{ColumnMapping, Import};
use crate::domain::entities::{CellFormat, EntitySchema, FieldKind};

/// A field's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnOption {
    /// How the column writes its values; none: the canonical way (ISO dates, `1234.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<CellFormat>,
    /// For an enum: a value of the file → the allowed value it stands for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

impl ColumnOption {
    pub fn is_empty(&self) -> bool {
        self.format.is_none() && self.values.is_empty()
    }
}

/// Field name → its options (only fields with some).
pub type ColumnOptions = BTreeMap<String, ColumnOption>;

/// Checks options given for `schema` (by the API, or read back): each names a field, its
/// format suits the field's type, each value maps to an allowed value. The problem in words.
pub fn check_options(schema: &EntitySchema, options: &ColumnOptions) -> Result<(), String> {
    for (name, o) in options {
        let f = schema.field(name).ok_or_else(|| format!("\"{name}\" is not a field of {}.", schema.name))?;
        if let Some(format) = o.format {
            let fits = match format {
                CellFormat::Date(_) => matches!(f.kind(), FieldKind::Date | FieldKind::Datetime),
                CellFormat::Decimal(_) => f.kind() == FieldKind::Decimal,
            };
            if !fits {
                return Err(format!(
                    "{name} is a {} field; the format {} is not for it.",
                    f.kind().as_str(),
                    format.pattern()
                ));
            }
        }
        if !o.values.is_empty() && !matches!(f.kind(), FieldKind::Enum | FieldKind::EnumMultiple) {
            return Err(format!("{name} is not an enum field; only enum values can be mapped."));
        }
        for (from, to) in &o.values {
            if !f.rule.values.iter().any(|a| a == to) {
                return Err(format!(
                    "{name}: \"{from}\" is mapped to \"{to}\", which is not one of the allowed values ({}).",
                    f.rule.values.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The format each mapped field's column seems to follow, read off the profile.
pub fn guesses(
    schema: &EntitySchema,
    headers: &[String],
    mapping: &ColumnMapping,
    profile: &FileProfile,
    xlsx: bool,
) -> BTreeMap<String, Guess> {
    let mut out = BTreeMap::new();
    for f in &schema.fields {
        let column = mapping.get(f.name()).and_then(|h| headers.iter().position(|x| x == h));
        if let Some(c) = column.and_then(|i| profile.columns.get(i)) {
            out.insert(f.name().to_string(), guess(&f.rule, c, xlsx));
        }
    }
    out
}

/// The options proposed for a new file: the formats its columns seem to follow, and enum
/// values that plainly stand for an allowed value (`Wait list` → `waitlist`).
pub fn proposed_options(
    schema: &EntitySchema,
    headers: &[String],
    mapping: &ColumnMapping,
    profile: &FileProfile,
    xlsx: bool,
) -> ColumnOptions {
    let mut options = ColumnOptions::new();
    for (field, g) in guesses(schema, headers, mapping, profile, xlsx) {
        if let Some(format) = g.proposed().filter(|f| f.pattern() != "YYYY-MM-DD") {
            options.entry(field).or_default().format = Some(format);
        }
    }
    for f in schema.fields.iter().filter(|f| matches!(f.kind(), FieldKind::Enum | FieldKind::EnumMultiple)) {
        let column = mapping.get(f.name()).and_then(|h| headers.iter().position(|x| x == h));
        let Some(c) = column.and_then(|i| profile.columns.get(i)) else { continue };
        for (value, _) in unknown_values(&f.rule, c) {
            if let Some(to) = plain_match(&f.rule, &value) {
                options.entry(f.name().to_string()).or_default().values.insert(value, to.to_string());
            }
        }
    }
    options
}

/// A mapping remembered for the same headers, fitted to this file: its columns as this
/// file spells them, only fields the schema still has, options that still check.
pub fn fit_remembered(
    schema: &EntitySchema,
    headers: &[String],
    mapping: &ColumnMapping,
    options: &ColumnOptions,
) -> (ColumnMapping, ColumnOptions) {
    let normalize = super::mapping::normalize;
    let mut fitted = ColumnMapping::new();
    for (field, column) in mapping {
        let here = headers
            .iter()
            .find(|h| *h == column)
            .or_else(|| headers.iter().find(|h| normalize(h) == normalize(column)));
        if let (Some(h), Some(_)) = (here, schema.field(field)) {
            fitted.insert(field.clone(), h.clone());
        }
    }
    let kept: ColumnOptions = options
        .iter()
        .filter(|(f, _)| fitted.contains_key(*f))
        .filter(|(f, o)| check_options(schema, &ColumnOptions::from([((*f).clone(), (*o).clone())])).is_ok())
        .map(|(f, o)| (f.clone(), o.clone()))
        .collect();
    (fitted, kept)
}

impl Import {
    /// The format each mapped field's column seems to follow, read off the profile.
    pub fn guesses(
        &self,
        schema: &EntitySchema,
        mapping: &ColumnMapping,
        profile: &FileProfile,
    ) -> BTreeMap<String, Guess> {
        guesses(schema, &self.headers, mapping, profile, self.file.is_xlsx())
    }

    /// Reads the mapping form's options for the fields `mapping` gives a column:
    /// `fmt.<field>` (a format's pattern, empty for the canonical one), and for enums the
    /// value list made for the column `vcol.<field>` (`vfrom.<field>.<i>` →
    /// `vto.<field>.<i>`; ignored when the person picked another column since). Dates whose
    /// day/month order the values leave open must be answered. The options, or the problem
    /// in words with the options as submitted.
    pub fn options_from_form(
        &self,
        schema: &EntitySchema,
        mapping: &ColumnMapping,
        profile: &FileProfile,
        pairs: &[(String, String)],
    ) -> Result<ColumnOptions, (String, ColumnOptions)> {
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.trim());
        let guesses = self.guesses(schema, mapping, profile);
        let mut options = ColumnOptions::new();
        let mut problem = None;
        for f in &schema.fields {
            let Some(column) = mapping.get(f.name()) else { continue };
            let mut o = ColumnOption::default();
            match get(&format!("fmt.{}", f.name())) {
                Some("") | None => {
                    if let Some(Guess::Ambiguous { formats, example }) = guesses.get(f.name()) {
                        let names: Vec<String> = formats.iter().map(|f| f.label()).collect();
                        problem.get_or_insert(format!(
                            "The column \"{column}\" has values like {example} that could be {}: choose its format for {}.",
                            names.join(" or "),
                            f.label
                        ));
                    }
                }
                Some(p) => o.format = CellFormat::parse(p),
            }
            if get(&format!("vcol.{}", f.name())) == Some(column.as_str()) {
                let prefix = format!("vfrom.{}.", f.name());
                for (k, from) in pairs.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                    let to = get(&format!("vto.{}.{}", f.name(), &k[prefix.len()..])).unwrap_or("");
                    if !to.is_empty() {
                        o.values.insert(from.clone(), to.to_string());
                    }
                }
            }
            // ISO is what a date field reads anyway
            if o.format.is_some_and(|f| f.pattern() == "YYYY-MM-DD") {
                o.format = None;
            }
            if !o.is_empty() {
                options.insert(f.name().to_string(), o);
            }
        }
        if let Err(e) = check_options(schema, &options) {
            problem.get_or_insert(e);
        }
        match problem {
            Some(p) => Err((p, options)),
            None => Ok(options),
        }
    }
}
