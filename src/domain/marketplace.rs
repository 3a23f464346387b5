//! The marketplace catalog: versioned content bundles, one TOML file per bundle version,
//! shipped in `marketplace/` (embedded in the binary) plus any in `STEVEDORE_MARKETPLACE_DIR`.
//! Every item is validated against its entity's schema when the catalog loads; a file
//! that fails is reported (file and reason) and left out, and the rest load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::entities::{PreparedRecord, Schemas, display_value};

/// One version of a bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub key: String,
    pub version: String,
    pub title: String,
    pub publisher: String,
    /// Accreditation tags.
    pub tags: Vec<String>,
    pub description: String,
    /// `YYYY-MM-DD`.
    pub released_on: String,
    pub items: Vec<Item>,
    /// Where it was loaded from.
    pub source: String,
}

/// A record a bundle brings.
#[derive(Debug, Clone)]
pub struct Item {
    pub entity: String,
    /// The record key (the schema's key field).
    pub key: String,
    /// The schema's display field.
    pub title: String,
    pub record: PreparedRecord,
}

/// A bundle file that was left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: String,
    pub reason: String,
}

/// `1.2.3` as numbers, for ordering versions.
pub fn version_order(v: &str) -> Option<(u64, u64, u64)> {
    let mut parts = v.split('.').map(|p| {
        if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) { None } else { p.parse().ok() }
    });
    let order = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(order)
}

fn is_bundle_key(k: &str) -> bool {
    (2..=60).contains(&k.len())
        && k.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn text(table: &toml::Table, name: &str, max: usize, required: bool) -> Result<String, String> {
    match table.get(name) {
        None if required => Err(format!("\"{name}\" is missing")),
        None => Ok(String::new()),
        Some(toml::Value::String(s)) => {
            let s = s.trim();
            if required && s.is_empty() {
                Err(format!("\"{name}\" is empty"))
            } else if s.chars().count() > max {
                Err(format!("\"{name}\" is longer than {max} characters"))
            } else {
                Ok(s.to_string())
            }
        }
        Some(_) => Err(format!("\"{name}\" must be text")),
    }
}

/// An item value as the importer's cell text.
fn cell(field: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(items) => {
            let mut words = vec![];
            for i in items {
                match i {
                    toml::Value::String(s) if !s.trim().is_empty() && !s.contains(char::is_whitespace) => {
                        words.push(s.trim().to_string());
                    }
                    toml::Value::String(s) => {
                        return Err(format!(
                            "{field}: \"{s}\" is not one word (tags use hyphens, e.g. Joint-Commission)"
                        ));
                    }
                    _ => return Err(format!("{field}: a list holds text only")),
                }
            }
            Ok(words.join(" "))
        }
        toml::Value::Table(_) => Err(format!("{field}: a table is not a value")),
    }
}

/// Parses and validates one bundle file.
pub fn parse_bundle(source: &str, text_: &str, schemas: &Schemas) -> Result<Bundle, String> {
    let table: toml::Table = toml::from_str(text_).map_err(|e| format!("not valid TOML: {}", e.message()))?;
    const KNOWN: [&str; 8] = ["key", "version", "title", "publisher", "tags", "description", "released_on", "items"];
    if let Some(other) = table.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown setting \"{other}\" (expected {})", KNOWN.join(", ")));
    }
    let key = text(&table, "key", 60, true)?;
    if !is_bundle_key(&key) {
        return Err(format!("key \"{key}\" must be 2 to 60 lowercase letters, digits and hyphens"));
    }
    if key == "imports" {
        return Err("key \"imports\" is reserved (it is the Import History's address)".into());
    }
    let version = text(&table, "version", 30, true)?;
    if version_order(&version).is_none() {
        return Err(format!("version \"{version}\" is not a version such as 1.0.0"));
    }
    let title = text(&table, "title", 200, true)?;
    let publisher = text(&table, "publisher", 200, true)?;
    let description = text(&table, "description", 2000, false)?;
    let released_on = text(&table, "released_on", 10, false)?;
    if !released_on.is_empty() && super::entities::parse_date(&released_on).is_none() {
        return Err(format!("released_on \"{released_on}\" is not a date such as 2026-03-02"));
    }
    let tags: Vec<String> = match table.get("tags") {
        None => vec![],
        Some(toml::Value::Array(a)) => a
            .iter()
            .map(|t| match t {
                toml::Value::String(s) if !s.trim().is_empty() && s.trim().chars().count() <= 40 => {
                    Ok(s.trim().to_string())
                }
                _ => Err("tags must be text of 1 to 40 characters".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("tags must be a list of text".into()),
    };
    if tags.len() > 10 {
        return Err("at most 10 tags".into());
    }
    let Some(toml::Value::Array(raw_items)) = table.get("items") else {
        return Err("no [[items]]".into());
    };
    if raw_items.is_empty() || raw_items.len() > 1000 {
        return Err(format!("{} items; a bundle has 1 to 1,000", raw_items.len()));
    }
    let mut items = Vec::with_capacity(raw_items.len());
    let mut seen = BTreeSet::new();
    for (i, raw) in raw_items.iter().enumerate() {
        let n = i + 1;
        let toml::Value::Table(t) = raw else { return Err(format!("item {n} is not a table")) };
        let entity = match t.get("entity") {
            Some(toml::Value::String(e)) => e.as_str(),
            _ => return Err(format!("item {n}: \"entity\" is missing")),
        };
        let schema = schemas.get(entity).ok_or_else(|| format!("item {n}: unknown entity type \"{entity}\""))?;
        let mut cells: BTreeMap<&str, String> = BTreeMap::new();
        for (name, v) in t.iter().filter(|(k, _)| k.as_str() != "entity") {
            if schema.field(name).is_none() {
                return Err(format!("item {n}: {} have no field \"{name}\"", schema.label));
            }
            cells.insert(name, cell(name, v).map_err(|e| format!("item {n}: {e}"))?);
        }
        let record = schema
            .prepare(|f| cells.get(f).map(String::as_str))
            .map_err(|errors| format!("item {n}: {}", errors.join("; ")))?;
        if !record.refs.is_empty() || !record.files.is_empty() {
            return Err(format!("item {n}: bundles cannot carry relationship, file or image values"));
        }
        if !seen.insert((entity.to_string(), record.key.clone())) {
            return Err(format!("item {n}: {} \"{}\" appears twice", schema.singular, record.key));
        }
        let data: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&record.data).unwrap_or_default();
        let title = data.get(&schema.display).map(display_value).unwrap_or_default();
        items.push(Item { entity: entity.to_string(), key: record.key.clone(), title, record });
    }
    Ok(Bundle { key, version, title, publisher, tags, description, released_on, items, source: source.to_string() })
}

/// Every bundle version that loaded, ordered by key and then newest version first.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    bundles: Vec<Arc<Bundle>>,
}

impl Catalog {
    /// Loads `(file, text)` pairs; files that fail, or repeat a key and version already
    /// loaded, are left out and returned as problems.
    pub fn load<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>, schemas: &Schemas) -> (Catalog, Vec<Problem>) {
        let mut bundles: Vec<Arc<Bundle>> = vec![];
        let mut problems = vec![];
        for (file, text) in files {
            match parse_bundle(file, text, schemas) {
                Ok(b) => {
                    if let Some(other) = bundles.iter().find(|o| o.key == b.key && o.version == b.version) {
                        problems.push(Problem {
                            file: file.to_string(),
                            reason: format!("{} {} is already loaded from {}", b.key, b.version, other.source),
                        });
                    } else {
                        bundles.push(Arc::new(b));
                    }
                }
                Err(reason) => problems.push(Problem { file: file.to_string(), reason }),
            }
        }
        bundles
            .sort_by(|a, b| a.key.cmp(&b.key).then_with(|| version_order(&b.version).cmp(&version_order(&a.version))));
        (Catalog { bundles }, problems)
    }

    /// The newest version of each bundle, by title.
    pub fn latest(&self) -> Vec<&Arc<Bundle>> {
        let mut out: Vec<&Arc<Bundle>> = vec![];
        for b in &self.bundles {
            if out.last().is_none_or(|l| l.key != b.key) {
                out.push(b);
            }
        }
        out.sort_by_key(|a| a.title.to_lowercase());
        out
    }

    /// A bundle's versions, newest first.
    pub fn versions(&self, key: &str) -> Vec<&Arc<Bundle>> {
        self.bundles.iter().filter(|b| b.key == key).collect()
    }

    pub fn get(&self, key: &str, version: &str) -> Option<&Arc<Bundle>> {
        self.bundles.iter().find(|b| b.key == key && b.version == version)
    }

    /// The newest versions matching a text (title, key, publisher, description, tags and
    /// item titles, any case) and a tag (exact), either empty for all.
    pub fn search(&self, q: &str, tag: &str) -> Vec<&Arc<Bundle>> {
        let q = q.trim().to_lowercase();
        let tag = tag.trim();
        self.latest()
            .into_iter()
            .filter(|b| tag.is_empty() || b.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)))
            .filter(|b| {
                q.is_empty()
                    || [&b.title, &b.key, &b.publisher, &b.description]
                        .iter()
                        .chain(b.tags.iter().collect::<Vec<_>>().iter())
                        .any(|s| s.to_lowercase().contains(&q))
                    || b.items.iter().any(|i| i.title.to_lowercase().contains(&q) || i.key.to_lowercase().contains(&q))
            })
            .collect()
    }

    /// Every tag of the newest versions, sorted.
    pub fn tags(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.latest().iter().flat_map(|b| b.tags.iter().cloned()).collect();
        set.into_iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> Schemas {
        crate::content::load_schemas(None).unwrap()
    }

    const BUNDLE: &str = r#"
key = "starter"
version = "1.2.0"
title = "Starter"
publisher = "Acme Compliance"
tags = ["CARF", "Joint Commission"]
description = "Two things."
released_on = "2026-03-02"

[[items]]
entity = "policies"
policy_code = "ST-POL-1"
title = "Hand Hygiene"
category = "safety"
accreditation = ["CARF", "Joint-Commission"]

[[items]]
entity = "forms"
form_code = "ST-FRM-1"
title = "Intake"
category = "intake"
question_count = 12
requires_signature = true
"#;

    #[test]
    fn a_bundle_parses_and_its_items_are_validated_records() {
        let b = parse_bundle("starter.toml", BUNDLE, &schemas()).unwrap();
        assert_eq!((b.key.as_str(), b.version.as_str(), b.items.len()), ("starter", "1.2.0", 2));
        assert_eq!(b.items[0].key, "ST-POL-1");
        assert_eq!(b.items[0].title, "Hand Hygiene");
        assert!(
            b.items[0].record.data.contains(r#""accreditation":["CARF","Joint-Commission"]"#),
            "{}",
            b.items[0].record.data
        );
        assert!(b.items[1].record.data.contains(r#""question_count":12"#));
        assert!(b.items[1].record.data.contains(r#""requires_signature":true"#));
    }

    #[test]
    fn bad_bundles_say_which_item_and_why() {
        let s = schemas();
        let bad = |from: &str, to: &str| parse_bundle("f.toml", &BUNDLE.replace(from, to), &s).unwrap_err();
        assert!(bad("category = \"safety\"", "category = \"cooking\"").starts_with("item 1: "));
        assert!(bad("question_count = 12", "question_count = 900").contains("item 2"));
        assert!(bad("question_count = 12", "questions = 12").contains("Forms have no field \"questions\""));
        assert!(bad("entity = \"forms\"", "entity = \"recipes\"").contains("unknown entity type \"recipes\""));
        assert!(bad("\"Joint-Commission\"]", "\"Joint Commission\"]").contains("not one word"));
        assert!(bad("version = \"1.2.0\"", "version = \"latest\"").contains("not a version"));
        assert!(bad("key = \"starter\"", "key = \"Starter Pack\"").contains("lowercase"));
        let shared = BUNDLE.replace("ST-FRM-1", "ST-POL-1");
        assert!(parse_bundle("f.toml", &shared, &s).is_ok(), "different entity types may share a key");
        let twice = format!(
            "{BUNDLE}\n[[items]]\nentity = \"policies\"\npolicy_code = \"ST-POL-1\"\ntitle = \"X\"\ncategory = \"hr\"\n"
        );
        assert!(parse_bundle("f.toml", &twice, &s).unwrap_err().contains("item 3: Policy \"ST-POL-1\" appears twice"));
        assert!(bad("form_code = \"ST-FRM-1\"", "form_code = \"st frm\"").contains("item 2"));
        assert!(bad("publisher = \"Acme Compliance\"\n", "").contains("\"publisher\" is missing"));
        assert!(parse_bundle("f.toml", "key = ", &s).unwrap_err().starts_with("not valid TOML"));
    }

    #[test]
    fn the_catalog_keeps_good_files_and_reports_the_rest() {
        let s = schemas();
        let v2 = BUNDLE.replace("1.2.0", "1.10.0").replace("title = \"Starter\"", "title = \"Starter Two\"");
        let files = [("a.toml", BUNDLE), ("b.toml", v2.as_str()), ("c.toml", "nonsense ="), ("d.toml", BUNDLE)];
        let (catalog, problems) = Catalog::load(files, &s);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].file, "c.toml");
        assert!(problems[1].reason.contains("already loaded from a.toml"));
        let versions: Vec<&str> = catalog.versions("starter").iter().map(|b| b.version.as_str()).collect();
        assert_eq!(versions, ["1.10.0", "1.2.0"], "numeric version order");
        assert_eq!(catalog.latest().len(), 1);
        assert_eq!(catalog.latest()[0].title, "Starter Two");
        assert_eq!(catalog.search("hand hyg", "").len(), 1, "item titles are searched");
        assert_eq!(catalog.search("", "carf").len(), 1);
        assert!(catalog.search("nothing like it", "").is_empty());
        assert!(catalog.search("", "HIPAA").is_empty());
        assert_eq!(catalog.tags(), ["CARF", "Joint Commission"]);
    }

    #[test]
    fn the_shipped_bundles_are_valid() {
        let s = schemas();
        for (name, text) in crate::content::SHIPPED_BUNDLES {
            let b = parse_bundle(name, text, &s).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!((10..=50).contains(&b.items.len()), "{name}: {} items", b.items.len());
            assert_eq!(format!("{}-{}.toml", b.key, b.version), *name);
        }
        let (catalog, problems) = Catalog::load(crate::content::SHIPPED_BUNDLES.iter().copied(), &s);
        assert!(problems.is_empty());
        assert!(catalog.latest().len() >= 3);
        assert!(catalog.latest().iter().any(|b| catalog.versions(&b.key).len() >= 2), "one bundle in two versions");
    }

    #[test]
    fn versions_order_numerically() {
        assert!(version_order("1.10.0") > version_order("1.9.3"));
        assert_eq!(version_order("1.0"), None);
        assert_eq!(version_order("1.0.0.0"), None);
        assert_eq!(version_order("v1.0.0"), None);
    }
}
