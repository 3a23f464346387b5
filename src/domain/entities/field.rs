//! Field types and the per-cell rules: a CSV cell either becomes a normalized JSON value
//! or a message in plain words naming the field, the value and what was expected.

use std::collections::HashMap;

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::Value;

use super::formats::{CellFormat, ISO};

/// The importer's field types (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Integer,
    Decimal,
    Date,
    Datetime,
    Boolean,
    Enum,
    EnumMultiple,
    Tags,
    Files,
    Images,
    RelationshipOne,
    RelationshipMany,
}

impl FieldKind {
    /// The type's name as schema files (and the API) write it.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Integer => "integer",
            FieldKind::Decimal => "decimal",
            FieldKind::Date => "date",
            FieldKind::Datetime => "datetime",
            FieldKind::Boolean => "boolean",
            FieldKind::Enum => "enum",
            FieldKind::EnumMultiple => "enum_multiple",
            FieldKind::Tags => "tags",
            FieldKind::Files => "files",
            FieldKind::Images => "images",
            FieldKind::RelationshipOne => "relationship_one",
            FieldKind::RelationshipMany => "relationship_many",
        }
    }

    /// How the template and the importer describe the expected format.
    pub fn format_hint(self) -> &'static str {
        match self {
            FieldKind::Text => "",
            FieldKind::Integer => "a whole number, e.g. 42",
            FieldKind::Decimal => "a number, e.g. 19.99",
            FieldKind::Date => "a date, YYYY-MM-DD",
            FieldKind::Datetime => "a date and time, YYYY-MM-DDTHH:MM:SS",
            FieldKind::Boolean => "true or false",
            FieldKind::Enum => "one of the allowed values",
            FieldKind::EnumMultiple => "allowed values separated by spaces",
            FieldKind::Tags => "words separated by spaces",
            FieldKind::Files => "file URLs separated by spaces",
            FieldKind::Images => "image URLs separated by spaces",
            FieldKind::RelationshipOne => "the key of one record",
            FieldKind::RelationshipMany => "record keys separated by spaces",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FieldKind::Text => "Text",
            FieldKind::Integer => "Integer",
            FieldKind::Decimal => "Decimal",
            FieldKind::Date => "Date",
            FieldKind::Datetime => "Datetime",
            FieldKind::Boolean => "Boolean",
            FieldKind::Enum => "Enumerator",
            FieldKind::EnumMultiple => "Enumerator multiple",
            FieldKind::Tags => "Tags",
            FieldKind::Files => "Files",
            FieldKind::Images => "Images",
            FieldKind::RelationshipOne => "Relationship (one)",
            FieldKind::RelationshipMany => "Relationship (many)",
        }
    }

    pub fn is_relationship(self) -> bool {
        matches!(self, FieldKind::RelationshipOne | FieldKind::RelationshipMany)
    }
}

/// The constraints a field's cells must meet (compiled from its schema entry).
#[derive(Debug, Clone)]
pub struct FieldRule {
    pub name: String,
    pub kind: FieldKind,
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub pattern: Option<regex::Regex>,
    pub pattern_hint: Option<String>,
    pub values: Vec<String>,
    /// How the column writes its values, when not the canonical way (chosen at mapping).
    pub format: Option<CellFormat>,
    /// For enums: a value of the file (lower-cased) → the allowed value it stands for.
    pub value_map: HashMap<String, String>,
}

fn quote(raw: &str) -> String {
    const SHOWN: usize = 60;
    if raw.chars().count() > SHOWN {
        format!("\"{}…\"", raw.chars().take(SHOWN).collect::<String>())
    } else {
        format!("\"{raw}\"")
    }
}

fn check_range(rule: &FieldRule, n: f64, raw: &str) -> Result<(), String> {
    let name = &rule.name;
    if let Some(min) = rule.min
        && n < min
    {
        return Err(format!("{name}: {} is less than the minimum {min}", quote(raw)));
    }
    if let Some(max) = rule.max
        && n > max
    {
        return Err(format!("{name}: {} is more than the maximum {max}", quote(raw)));
    }
    Ok(())
}

fn is_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

pub fn parse_date(s: &str) -> Option<time::Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Some(true),
        "false" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// The allowed value `v` is (in any case), or the one the import's value mapping gives it.
fn canonical_value<'a>(rule: &'a FieldRule, v: &str) -> Option<&'a String> {
    let allowed = |v: &str| rule.values.iter().find(|a| a.eq_ignore_ascii_case(v));
    allowed(v).or_else(|| {
        if rule.value_map.is_empty() {
            return None;
        }
        rule.value_map.get(&v.to_lowercase()).and_then(|to| allowed(to))
    })
}

fn allowed_list(rule: &FieldRule) -> String {
    rule.values.join(", ")
}

/// An http or https URL with a host; the scheme in any case (`HTTP://` is a URL too).
fn is_url(s: &str) -> bool {
    let scheme_end = s.find("://").unwrap_or(0);
    let scheme = &s[..scheme_end];
    let rest =
        (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then(|| &s[scheme_end + 3..]);
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

fn check_length(rule: &FieldRule, item: &str, raw: &str) -> Result<(), String> {
    let n = item.chars().count();
    if let Some(min) = rule.min_length
        && n < min
    {
        return Err(format!("{}: {} is shorter than {min} characters", rule.name, quote(raw)));
    }
    if let Some(max) = rule.max_length
        && n > max
    {
        return Err(format!("{}: {} is longer than {max} characters ({n})", rule.name, quote(raw)));
    }
    Ok(())
}

/// Parses one cell. An empty cell is `Value::Null`, or an error for a required field.
/// Relationship cells are only checked for form here; whether the records exist is a
/// question for the store.
pub fn parse_cell(rule: &FieldRule, raw: &str) -> Result<Value, String> {
    let name = &rule.name;
    let v = without_text_marker(raw.trim());
    if v.is_empty() {
        return if rule.required { Err(format!("{name}: is required but empty")) } else { Ok(Value::Null) };
    }
    match rule.kind {
        FieldKind::Text => {
            check_length(rule, v, raw)?;
            if let Some(p) = &rule.pattern
                && !p.is_match(v)
            {
                let hint = rule.pattern_hint.clone().unwrap_or_else(|| format!("matching {}", p.as_str()));
                return Err(format!("{name}: {} is not in the expected format ({hint})", quote(raw)));
            }
            Ok(Value::String(v.to_string()))
        }
        FieldKind::Integer => {
            let n: i64 =
                v.parse().map_err(|_| format!("{name}: {} is not a whole number (expected e.g. 42)", quote(raw)))?;
            check_range(rule, n as f64, raw)?;
            Ok(Value::from(n))
        }
        FieldKind::Decimal => {
            let (v, example) = match rule.format {
                Some(CellFormat::Decimal(style)) => (style.canonical(v).unwrap_or_default(), style.example()),
                _ => (v.to_string(), "19.99"),
            };
            if !is_decimal(&v) {
                return Err(format!("{name}: {} is not a number (expected e.g. {example})", quote(raw)));
            }
            let n: f64 = v.parse().map_err(|_| format!("{name}: {} is not a number", quote(raw)))?;
            check_range(rule, n, raw)?;
            Ok(Value::String(v))
        }
        FieldKind::Date => {
            let (d, expected) = match rule.format {
                Some(CellFormat::Date(f)) => (f.date(v), f.pattern_words()),
                _ => (parse_date(v), "YYYY-MM-DD".into()),
            };
            let d = d.ok_or_else(|| format!("{name}: {} is not a date (expected {expected})", quote(raw)))?;
            Ok(Value::String(d.to_string()))
        }
        FieldKind::Datetime => {
            let (d, expected) = match rule.format {
                Some(CellFormat::Date(f)) => (f.datetime(v), format!("{} HH:MM:SS", f.pattern_words())),
                _ => (ISO.datetime(v), "YYYY-MM-DDTHH:MM:SS".into()),
            };
            d.map(Value::String)
                .ok_or_else(|| format!("{name}: {} is not a date and time (expected {expected})", quote(raw)))
        }
        FieldKind::Boolean => {
            parse_bool(v).map(Value::Bool).ok_or_else(|| format!("{name}: {} is not true or false", quote(raw)))
        }
        FieldKind::Enum => canonical_value(rule, v)
            .map(|c| Value::String(c.clone()))
            .ok_or_else(|| format!("{name}: {} is not one of the allowed values ({})", quote(raw), allowed_list(rule))),
        FieldKind::EnumMultiple
        | FieldKind::Tags
        | FieldKind::Files
        | FieldKind::Images
        | FieldKind::RelationshipMany => {
            let mut out: Vec<Value> = vec![];
            for item in v.split_whitespace() {
                let item = match rule.kind {
                    FieldKind::EnumMultiple => canonical_value(rule, item).cloned().ok_or_else(|| {
                        format!("{name}: {} is not one of the allowed values ({})", quote(item), allowed_list(rule))
                    })?,
                    FieldKind::Files | FieldKind::Images if !is_url(item) => {
                        return Err(format!("{name}: {} is not an http(s) URL", quote(item)));
                    }
                    FieldKind::Tags => {
                        check_length(rule, item, item)?;
                        item.to_string()
                    }
                    _ => item.to_string(),
                };
                let item = Value::String(item);
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            if let Some(max) = rule.max
                && out.len() as f64 > max
            {
                return Err(format!("{name}: has {} values, more than the maximum {max}", out.len()));
            }
            Ok(Value::Array(out))
        }
        FieldKind::RelationshipOne => {
            if v.split_whitespace().count() > 1 {
                return Err(format!("{name}: {} names more than one record (expected one key)", quote(raw)));
            }
            Ok(Value::String(v.to_string()))
        }
    }
}

/// A leading apostrophe before `=`, `+`, `-`, `@`, tab or carriage return is a spreadsheet's
/// "this is text" marker (and what exports add so a cell is not run as a formula), not part
/// of the value: `'+1 503-555-0100` reads as `+1 503-555-0100`.
pub fn without_text_marker(v: &str) -> &str {
    match v.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => v,
    }
}

/// The MD5 of a row's normalized content, as 32 hex digits: the same values give the
/// same hash whatever the column order or spacing of the file.
pub fn row_hash<'a>(entity: &str, values: impl IntoIterator<Item = (&'a str, &'a Value)>) -> String {
    let mut h = Md5::new();
    h.update(entity.as_bytes());
    for (name, v) in values {
        h.update([0x1e]);
        h.update(name.as_bytes());
        h.update([0x1f]);
        // the value's JSON, as `to_string` writes it, straight into the hash (no string
        // allocated a value: every row of every import and export passes here)
        let _ = serde_json::to_writer(Feed(&mut h), v);
    }
    hex::encode(h.finalize())
}

/// Bytes written to it go into an MD5.
struct Feed<'a>(&'a mut Md5);

impl std::io::Write for Feed<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: FieldKind) -> FieldRule {
        FieldRule {
            name: "f".into(),
            kind,
            required: false,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            pattern: None,
            pattern_hint: None,
            values: vec![],
            format: None,
            value_map: HashMap::new(),
        }
    }

    fn ok(r: &FieldRule, raw: &str) -> Value {
        parse_cell(r, raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    fn err(r: &FieldRule, raw: &str) -> String {
        parse_cell(r, raw).expect_err(raw)
    }

    #[test]
    fn empty_cells_are_null_unless_required() {
        let mut r = rule(FieldKind::Integer);
        assert_eq!(ok(&r, "  "), Value::Null);
        r.required = true;
        assert_eq!(err(&r, ""), "f: is required but empty");
    }

    #[test]
    fn text_length_and_pattern() {
        let mut r = rule(FieldKind::Text);
        r.max_length = Some(5);
        r.min_length = Some(2);
        r.pattern = regex::Regex::new("^[A-Z]+$").ok();
        r.pattern_hint = Some("capital letters".into());
        assert_eq!(ok(&r, " ABC "), Value::String("ABC".into()));
        assert_eq!(err(&r, "ABCDEFG"), "f: \"ABCDEFG\" is longer than 5 characters (7)");
        assert!(err(&r, "A").contains("shorter than 2"));
        assert_eq!(err(&r, "abc"), "f: \"abc\" is not in the expected format (capital letters)");
    }

    #[test]
    fn integers() {
        let mut r = rule(FieldKind::Integer);
        r.min = Some(0.0);
        r.max = Some(100.0);
        assert_eq!(ok(&r, "42"), Value::from(42));
        assert_eq!(ok(&r, "-0"), Value::from(0));
        assert_eq!(err(&r, "4.5"), "f: \"4.5\" is not a whole number (expected e.g. 42)");
        assert_eq!(err(&r, "abc"), "f: \"abc\" is not a whole number (expected e.g. 42)");
        assert_eq!(err(&r, "101"), "f: \"101\" is more than the maximum 100");
        assert_eq!(err(&r, "-1"), "f: \"-1\" is less than the minimum 0");
    }

    #[test]
    fn decimals_keep_their_digits() {
        let mut r = rule(FieldKind::Decimal);
        r.max = Some(1000.0);
        assert_eq!(ok(&r, "19.99"), Value::String("19.99".into()));
        assert_eq!(ok(&r, "-3"), Value::String("-3".into()));
        for bad in ["1.", ".5", "1,5", "1e3", "abc", "--1"] {
            assert!(err(&r, bad).contains("is not a number"), "{bad}");
        }
        assert!(err(&r, "1000.01").contains("more than the maximum 1000"));
    }

    #[test]
    fn dates() {
        let r = rule(FieldKind::Date);
        assert_eq!(ok(&r, "2024-06-15"), Value::String("2024-06-15".into()));
        assert_eq!(err(&r, "notadate"), "f: \"notadate\" is not a date (expected YYYY-MM-DD)");
        assert!(err(&r, "2024-02-30").contains("is not a date"));
        assert!(err(&r, "15/06/2024").contains("is not a date"));
    }

    #[test]
    fn datetimes() {
        let r = rule(FieldKind::Datetime);
        assert_eq!(ok(&r, "2024-06-15T14:30:00"), Value::String("2024-06-15T14:30:00".into()));
        assert_eq!(ok(&r, "2024-06-15 14:30"), Value::String("2024-06-15T14:30:00".into()));
        assert_eq!(ok(&r, "2024-06-15T14:30:00.5Z"), Value::String("2024-06-15T14:30:00.5Z".into()));
        assert_eq!(ok(&r, "2024-06-15T14:30:00+02:00"), Value::String("2024-06-15T14:30:00+02:00".into()));
        for bad in ["2024-06-15", "2024-06-15T25:00:00", "2024-06-15T14:61", "2024-06-15T14:30:00+2", "x"] {
            assert!(err(&r, bad).contains("is not a date and time"), "{bad}");
        }
    }

    #[test]
    fn booleans() {
        let r = rule(FieldKind::Boolean);
        for t in ["true", "TRUE", "True", "yes", "1"] {
            assert_eq!(ok(&r, t), Value::Bool(true), "{t}");
        }
        for f in ["false", "FALSE", "no", "0"] {
            assert_eq!(ok(&r, f), Value::Bool(false), "{f}");
        }
        assert_eq!(err(&r, "maybe"), "f: \"maybe\" is not true or false");
    }

    #[test]
    fn enums_single_and_multiple() {
        let mut r = rule(FieldKind::Enum);
        r.values = vec!["active".into(), "inactive".into()];
        assert_eq!(ok(&r, "ACTIVE"), Value::String("active".into()));
        assert_eq!(err(&r, "paused"), "f: \"paused\" is not one of the allowed values (active, inactive)");
        r.kind = FieldKind::EnumMultiple;
        assert_eq!(ok(&r, "active  inactive active"), serde_json::json!(["active", "inactive"]));
        assert!(err(&r, "active paused").contains("\"paused\" is not one of the allowed values"));
    }

    #[test]
    fn an_apostrophe_marking_formula_like_text_is_not_part_of_the_value() {
        let f = rule(FieldKind::Text);
        assert_eq!(parse_cell(&f, "'+1 503-555-0100").unwrap(), Value::String("+1 503-555-0100".into()));
        assert_eq!(parse_cell(&f, "'=SUM(A1)").unwrap(), Value::String("=SUM(A1)".into()));
        assert_eq!(parse_cell(&f, "'quoted'").unwrap(), Value::String("'quoted'".into()), "other apostrophes stay");
        assert_eq!(parse_cell(&rule(FieldKind::Integer), "'-5").unwrap(), Value::from(-5));
    }

    #[test]
    fn tags_files_images() {
        let mut r = rule(FieldKind::Tags);
        r.max = Some(2.0);
        assert_eq!(ok(&r, "urgent important"), serde_json::json!(["urgent", "important"]));
        assert!(err(&r, "a b c").contains("has 3 values, more than the maximum 2"));
        let f = rule(FieldKind::Files);
        assert_eq!(
            ok(&f, "https://example.com/a.pdf http://x.test/b"),
            serde_json::json!(["https://example.com/a.pdf", "http://x.test/b"])
        );
        assert_eq!(err(&f, "https://example.com/a.pdf ftp://x/y"), "f: \"ftp://x/y\" is not an http(s) URL");
        assert_eq!(
            ok(&f, "HTTP://example.com/a.pdf Https://x.test/b"),
            serde_json::json!(["HTTP://example.com/a.pdf", "Https://x.test/b"]),
            "schemes in any case"
        );
        assert!(err(&f, "HTTPX://example.com/a.pdf").contains("is not an http(s) URL"));
        assert!(err(&rule(FieldKind::Images), "https://").contains("is not an http(s) URL"));
    }

    #[test]
    fn relationships() {
        let one = rule(FieldKind::RelationshipOne);
        assert_eq!(ok(&one, " LOC-1 "), Value::String("LOC-1".into()));
        assert!(err(&one, "LOC-1 LOC-2").contains("names more than one record"));
        let many = rule(FieldKind::RelationshipMany);
        assert_eq!(ok(&many, "id1 id2 id1"), serde_json::json!(["id1", "id2"]));
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let r = rule(FieldKind::Integer);
        let e = err(&r, &"9".repeat(100));
        assert!(e.len() < 120, "{e}");
        assert!(e.contains('…'));
    }

    #[test]
    fn row_hash_depends_on_values_not_layout() {
        let a = Value::String("x".into());
        let b = Value::from(1);
        let h1 = row_hash("locations", [("code", &a), ("capacity", &b)]);
        assert_eq!(h1.len(), 32);
        // the hashes stored by every earlier version: the entity, then per field 0x1e, its
        // name, 0x1f and its value's JSON
        let mut m = Md5::new();
        m.update(b"locations\x1ecode\x1f\"x\"\x1ecapacity\x1f1");
        assert_eq!(h1, hex::encode(m.finalize()));
        let odd = Value::String("quote \" é \u{1}".into());
        let mut m = Md5::new();
        m.update(format!("e\x1ea\x1f{odd}").as_bytes());
        assert_eq!(row_hash("e", [("a", &odd)]), hex::encode(m.finalize()));
        assert_eq!(h1, row_hash("locations", [("code", &a), ("capacity", &b)]));
        assert_ne!(h1, row_hash("locations", [("code", &a), ("capacity", &Value::from(2))]));
        assert_ne!(h1, row_hash("staff", [("code", &a), ("capacity", &b)]));
        // a value cannot leak into the next field's name
        let ab = Value::String("a\u{1f}b".into());
        assert_ne!(
            row_hash("e", [("a", &ab)]),
            row_hash("e", [("a", &Value::String("a".into())), ("b", &Value::Null)])
        );
    }
}
