//! Entity schemas: one TOML file per entity type (see `schemas/`). Loading checks every
//! rule and reports problems with the file and line, so adding an entity type takes a
//! schema file and nothing else.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use super::field::{FieldKind, FieldRule};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    entity: String,
    label: String,
    singular: String,
    key: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    display: Option<String>,
    /// Position in navigation and in import order (dependencies first); default 1000.
    #[serde(default)]
    order: Option<i64>,
    fields: Vec<FieldFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    name: String,
    #[serde(rename = "type")]
    kind: FieldKind,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    min_length: Option<usize>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    pattern_hint: Option<String>,
    #[serde(default)]
    values: Vec<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    help: Option<String>,
    /// Other names a file's column may give the field (`E-mail`, `DOB`), for auto-matching.
    #[serde(default)]
    synonyms: Vec<String>,
}

/// A problem in a schema file: which file, which line (when known), what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for SchemaError {}

/// One field of an entity.
#[derive(Debug, Clone)]
pub struct Field {
    pub rule: FieldRule,
    pub label: String,
    pub unique: bool,
    pub target: Option<String>,
    pub help: String,
    /// Other names a column may have for this field.
    pub synonyms: Vec<String>,
}

impl Field {
    pub fn name(&self) -> &str {
        &self.rule.name
    }
    pub fn kind(&self) -> FieldKind {
        self.rule.kind
    }
    pub fn required(&self) -> bool {
        self.rule.required
    }
    /// Constraints in words, for the template help and the importer.
    pub fn constraints(&self) -> String {
        let r = &self.rule;
        let mut parts = vec![];
        if !r.values.is_empty() {
            parts.push(format!("one of: {}", r.values.join(", ")));
        }
        if let Some(t) = &self.target {
            parts.push(format!("→ {t}"));
        }
        match (r.min, r.max) {
            (Some(a), Some(b)) => parts.push(format!("{a} to {b}")),
            (Some(a), None) => parts.push(format!("at least {a}")),
            (None, Some(b)) => parts.push(format!("at most {b}")),
            _ => {}
        }
        if let Some(m) = r.max_length {
            parts.push(format!("up to {m} characters"));
        }
        if let Some(h) = &r.pattern_hint {
            parts.push(h.clone());
        }
        if self.unique {
            parts.push("unique".into());
        }
        parts.join("; ")
    }
}

/// An entity type.
#[derive(Debug, Clone)]
pub struct EntitySchema {
    pub name: String,
    pub label: String,
    pub singular: String,
    pub description: String,
    /// The field whose value identifies a record within the org (matched on import).
    pub key: String,
    /// The field shown as the record's title.
    pub display: String,
    pub fields: Vec<Field>,
    pub source: String,
    pub order: i64,
}

impl EntitySchema {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name() == name)
    }

    /// This schema with an import's column formats and value mappings applied to its
    /// fields' rules (a field the options do not name keeps its rules).
    pub fn with_options(&self, options: &crate::domain::imports::ColumnOptions) -> EntitySchema {
        let mut out = self.clone();
        for f in &mut out.fields {
            if let Some(o) = options.get(f.name()) {
                f.rule.format = o.format;
                f.rule.value_map = o.values.iter().map(|(from, to)| (from.trim().to_lowercase(), to.clone())).collect();
            }
        }
        out
    }

    /// The template's header row: exactly the field names, in order.
    pub fn header(&self) -> Vec<&str> {
        self.fields.iter().map(Field::name).collect()
    }
}

/// Names that are routes of their own and so cannot be entity names.
pub const RESERVED: &[&str] = &[
    "login",
    "logout",
    "settings",
    "static",
    "api",
    "healthz",
    "readyz",
    "metrics",
    "account",
    "switch-org",
    "cl",
    "admin",
    "records",
];

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 48
}

impl EntitySchema {
    /// Parses and checks one schema file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<EntitySchema, SchemaError> {
        let err = |line: Option<usize>, message: String| SchemaError { file: file.to_string(), line, message };
        let raw: SchemaFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            err(line, e.message().trim().to_string())
        })?;
        if !is_identifier(&raw.entity) || RESERVED.contains(&raw.entity.as_str()) {
            return Err(err(
                line_of(text, "entity"),
                format!("entity \"{}\" must be lower-case letters, digits and _ , and not a reserved name", raw.entity),
            ));
        }
        if raw.fields.is_empty() {
            return Err(err(None, "an entity needs at least one field".into()));
        }
        let mut fields: Vec<Field> = vec![];
        for f in raw.fields {
            let at = line_of(text, &format!("\"{}\"", f.name));
            if !is_identifier(&f.name) {
                return Err(err(at, format!("field name \"{}\" must be lower-case letters, digits and _", f.name)));
            }
            if fields.iter().any(|g| g.name() == f.name) {
                return Err(err(at, format!("field \"{}\" is declared twice", f.name)));
            }
            let needs_values = matches!(f.kind, FieldKind::Enum | FieldKind::EnumMultiple);
            if needs_values && f.values.is_empty() {
                return Err(err(at, format!("field \"{}\" is an enum and needs `values`", f.name)));
            }
            if !needs_values && !f.values.is_empty() {
                return Err(err(at, format!("field \"{}\": `values` only applies to enum fields", f.name)));
            }
            if f.kind.is_relationship() != f.target.is_some() {
                return Err(err(
                    at,
                    format!("field \"{}\": relationship fields, and only they, name a `target` entity", f.name),
                ));
            }
            if f.pattern.is_some() && f.kind != FieldKind::Text {
                return Err(err(at, format!("field \"{}\": `pattern` only applies to text fields", f.name)));
            }
            if let (Some(a), Some(b)) = (f.min, f.max)
                && a > b
            {
                return Err(err(at, format!("field \"{}\": min {a} is greater than max {b}", f.name)));
            }
            let pattern = match &f.pattern {
                Some(p) => Some(regex::Regex::new(p).map_err(|e| {
                    err(at, format!("field \"{}\": pattern is not a valid regular expression: {e}", f.name))
                })?),
                None => None,
            };
            let label = f.label.unwrap_or_else(|| {
                let s = f.name.replace('_', " ");
                let mut c = s.chars();
                c.next().map(|h| h.to_uppercase().chain(c).collect()).unwrap_or_default()
            });
            fields.push(Field {
                rule: FieldRule {
                    name: f.name,
                    kind: f.kind,
                    required: f.required,
                    min: f.min,
                    max: f.max,
                    min_length: f.min_length,
                    max_length: f.max_length,
                    pattern,
                    pattern_hint: f.pattern_hint,
                    values: f.values,
                    format: None,
                    value_map: Default::default(),
                },
                label,
                unique: f.unique,
                target: f.target,
                help: f.help.unwrap_or_default(),
                synonyms: f.synonyms,
            });
        }
        let key_line = line_of(text, "key");
        let Some(key_field) = fields.iter().find(|f| f.name() == raw.key) else {
            return Err(err(key_line, format!("key \"{}\" is not one of the fields", raw.key)));
        };
        if key_field.kind() != FieldKind::Text && key_field.kind() != FieldKind::Integer || !key_field.required() {
            return Err(err(key_line, format!("key \"{}\" must be a required text or integer field", raw.key)));
        }
        let display = raw.display.unwrap_or_else(|| raw.key.clone());
        if !fields.iter().any(|f| f.name() == display) {
            return Err(err(line_of(text, "display"), format!("display \"{display}\" is not one of the fields")));
        }
        // The key identifies the record, so it is unique by definition.
        for f in &mut fields {
            if f.name() == raw.key {
                f.unique = true;
            }
        }
        Ok(EntitySchema {
            name: raw.entity,
            label: raw.label,
            singular: raw.singular,
            description: raw.description,
            key: raw.key,
            display,
            fields,
            source: file.to_string(),
            order: raw.order.unwrap_or(1000),
        })
    }
}

/// Every entity type the app knows, in load order.
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    list: Vec<Arc<EntitySchema>>,
    by_name: BTreeMap<String, Arc<EntitySchema>>,
}

impl Schemas {
    /// Builds the registry from `(file name, text)` pairs, ordered by each schema's `order`
    /// then name; fails on the first bad file,
    /// a duplicate entity name, or a relationship to an unknown entity.
    pub fn load<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Schemas, SchemaError> {
        let mut s = Schemas::default();
        for (file, text) in files {
            let schema = EntitySchema::parse(file, text)?;
            if let Some(other) = s.by_name.get(&schema.name) {
                return Err(SchemaError {
                    file: file.to_string(),
                    line: line_of(text, "entity"),
                    message: format!("entity \"{}\" is already defined in {}", schema.name, other.source),
                });
            }
            let schema = Arc::new(schema);
            s.by_name.insert(schema.name.clone(), schema.clone());
            s.list.push(schema);
        }
        s.list.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
        for schema in &s.list {
            for f in &schema.fields {
                if let Some(t) = &f.target
                    && !s.by_name.contains_key(t)
                {
                    return Err(SchemaError {
                        file: schema.source.clone(),
                        line: None,
                        message: format!("field \"{}\" refers to the unknown entity \"{t}\"", f.name()),
                    });
                }
            }
        }
        Ok(s)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<EntitySchema>> {
        self.by_name.get(name)
    }

    pub fn all(&self) -> &[Arc<EntitySchema>] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCATIONS: &str = r#"
entity = "locations"
label = "Locations"
singular = "Location"
key = "code"
display = "name"

[[fields]]
name = "code"
type = "text"
required = true

[[fields]]
name = "name"
type = "text"
required = true
"#;

    #[test]
    fn a_good_schema_loads_with_the_key_unique() {
        let s = EntitySchema::parse("locations.toml", LOCATIONS).unwrap();
        assert_eq!(s.header(), vec!["code", "name"]);
        assert!(s.field("code").unwrap().unique);
        assert_eq!(s.field("name").unwrap().label, "Name");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let bad = LOCATIONS.replace(
            "required = true\n\n[[fields]]\nname = \"name\"",
            "required = maybe\n\n[[fields]]\nname = \"name\"",
        );
        let e = EntitySchema::parse("locations.toml", &bad).unwrap_err();
        assert_eq!(e.file, "locations.toml");
        assert_eq!(e.line, Some(11), "{e}");
    }

    #[test]
    fn unknown_types_and_keys_are_errors() {
        let e = EntitySchema::parse(
            "x.toml",
            &LOCATIONS.replace(
                "type = \"text\"\nrequired = true\n\n[[fields]]\nname = \"name\"",
                "type = \"texty\"\nrequired = true\n\n[[fields]]\nname = \"name\"",
            ),
        )
        .unwrap_err();
        assert!(e.message.contains("texty"), "{e}");
        let e = EntitySchema::parse("x.toml", &LOCATIONS.replace("key = \"code\"", "key = \"nope\"")).unwrap_err();
        assert_eq!(e.to_string(), "x.toml:5: key \"nope\" is not one of the fields");
        let e = EntitySchema::parse("x.toml", &LOCATIONS.replace("entity = \"locations\"", "entity = \"login\""))
            .unwrap_err();
        assert!(e.message.contains("reserved"), "{e}");
    }

    #[test]
    fn enums_need_values_and_relationships_need_targets() {
        let enum_without = LOCATIONS.replace("name = \"name\"\ntype = \"text\"", "name = \"name\"\ntype = \"enum\"");
        assert!(EntitySchema::parse("x.toml", &enum_without).unwrap_err().message.contains("needs `values`"));
        let rel = LOCATIONS.replace("name = \"name\"\ntype = \"text\"", "name = \"name\"\ntype = \"relationship_one\"");
        assert!(EntitySchema::parse("x.toml", &rel).unwrap_err().message.contains("`target`"));
    }

    #[test]
    fn prepare_reports_every_problem_of_a_row_or_returns_the_record() {
        let s = EntitySchema::parse("locations.toml", LOCATIONS).unwrap();
        let row = |code: &'static str, name: &'static str| {
            move |f: &str| match f {
                "code" => Some(code),
                "name" => Some(name),
                _ => None,
            }
        };
        let r = s.prepare(row(" LOC-1 ", "Main Clinic")).unwrap();
        assert_eq!(r.key, "LOC-1");
        assert_eq!(r.data, r#"{"code":"LOC-1","name":"Main Clinic"}"#);
        assert_eq!(r.search_text, "loc-1 | main clinic");
        assert_eq!(r.row_hash.len(), 32);
        assert_eq!(r.row_hash, s.prepare(row("LOC-1", " Main Clinic")).unwrap().row_hash, "spacing does not matter");
        let errs = s.prepare(row("", "")).unwrap_err();
        assert_eq!(errs, vec!["code: is required but empty".to_string(), "name: is required but empty".to_string()]);
        // validation's lean preparation: the same verdict, key and hash, without the record
        let lean = s.prepare_with(row(" LOC-1 ", "Main Clinic"), false).unwrap();
        assert_eq!((lean.key.as_str(), lean.row_hash.as_str()), ("LOC-1", r.row_hash.as_str()));
        assert_eq!((lean.data.as_str(), lean.search_text.as_str()), ("", ""));
        assert_eq!(s.prepare_with(row("", ""), false).unwrap_err(), errs);
    }

    #[test]
    fn registry_checks_targets_and_duplicates() {
        let staff = LOCATIONS.replace("locations", "staff").replace(
            "name = \"name\"\ntype = \"text\"",
            "name = \"name\"\ntype = \"relationship_one\"\ntarget = \"places\"",
        );
        let e = Schemas::load([("locations.toml", LOCATIONS), ("staff.toml", staff.as_str())]).unwrap_err();
        assert_eq!(e.to_string(), "staff.toml: field \"name\" refers to the unknown entity \"places\"");
        let e = Schemas::load([("a.toml", LOCATIONS), ("b.toml", LOCATIONS)]).unwrap_err();
        assert!(e.message.contains("already defined in a.toml"), "{e}");
        let ok = Schemas::load([("locations.toml", LOCATIONS)]).unwrap();
        assert_eq!(ok.all().len(), 1);
        assert!(ok.get("locations").is_some());
    }
}
