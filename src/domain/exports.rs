//! Export rules: types, formats and statuses (seed 002), what a New Export request may ask
//! for, how a stored value is written so the file re-imports cleanly, formula
//! neutralization, and the signed download links.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// What is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportType {
    EntityData,
    ImportHistory,
    AuditLog,
}

impl ExportType {
    pub const ALL: [ExportType; 3] = [ExportType::EntityData, ExportType::ImportHistory, ExportType::AuditLog];

    pub fn parse(s: &str) -> Option<ExportType> {
        ExportType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportType::EntityData => "entity_data",
            ExportType::ImportHistory => "import_history",
            ExportType::AuditLog => "audit_log",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ExportType::EntityData => "Entity data",
            ExportType::ImportHistory => "Import history",
            ExportType::AuditLog => "Audit log",
        }
    }
}

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Csv, Format::Xlsx, Format::Json];

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Json => "json",
        }
    }

    /// How seed 002 shows a format: uppercase.
    pub fn label(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Xlsx => "XLSX",
            Format::Json => "JSON",
        }
    }

    /// The extension of one part (one entity, or the whole export); an XLSX export is one
    /// workbook with a sheet per entity.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Json => "jsonl",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Json => "application/x-ndjson",
        }
    }
}

/// Where a request is: pending → processing → completed or failed; a completed export
/// whose file passed its retention is expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Processing,
    Completed,
    Failed,
    Expired,
}

impl Status {
    pub fn parse(s: &str) -> Status {
        match s {
            "pending" => Status::Pending,
            "processing" => Status::Processing,
            "completed" => Status::Completed,
            "expired" => Status::Expired,
            _ => Status::Failed,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Processing => "Processing",
            Status::Completed => "Completed",
            Status::Failed => "Failed",
            Status::Expired => "Expired",
        }
    }

    /// The badge variant.
    pub fn badge(self) -> &'static str {
        match self {
            Status::Pending | Status::Processing => "secondary badge-animated",
            Status::Completed => "success",
            Status::Failed => "destructive",
            Status::Expired => "outline",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, Status::Pending | Status::Processing)
    }
}

/// What the New Export dialog holds, as typed (kept when it is shown again with an error).
#[derive(Debug, Clone, Default)]
pub struct ExportForm {
    pub export_type: String,
    pub format: String,
    pub entities: Vec<String>,
    pub date_from: String,
    pub date_to: String,
}

impl ExportForm {
    pub fn has(&self, entity: &str) -> bool {
        self.entities.iter().any(|e| e == entity)
    }
}

/// Why a New Export form was refused; the message is shown in the dialog as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportRequestError {
    #[error("Choose what to export.")]
    NoExportType,
    #[error("Choose a format: CSV, XLSX or JSON.")]
    NoFormat,
    #[error("Choose at least one entity type to export.")]
    NoEntityTypes,
    #[error("\"{0}\" is not an entity type.")]
    UnknownEntityType(String),
    #[error("\"{0}\" is not a date (expected YYYY-MM-DD).")]
    NotADate(String),
    #[error("The start of the date range is after its end.")]
    RangeReversed,
}

/// A valid export request: what, in which format, which entity types (entity data only),
/// and the date range as epoch seconds from the start of its first day to the end of its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    kind: ExportType,
    format: Format,
    entities: Vec<String>,
    from: Option<i64>,
    to: Option<i64>,
}

impl ExportRequest {
    /// Checks a New Export form; `is_entity` says whether a name is an entity type.
    pub fn parse(form: &ExportForm, is_entity: impl Fn(&str) -> bool) -> Result<ExportRequest, ExportRequestError> {
        let kind = ExportType::parse(&form.export_type).ok_or(ExportRequestError::NoExportType)?;
        let format = Format::parse(&form.format).ok_or(ExportRequestError::NoFormat)?;
        let entities = if kind == ExportType::EntityData {
            if form.entities.is_empty() {
                return Err(ExportRequestError::NoEntityTypes);
            }
            if let Some(unknown) = form.entities.iter().find(|e| !is_entity(e)) {
                return Err(ExportRequestError::UnknownEntityType(unknown.clone()));
            }
            form.entities.clone()
        } else {
            vec![]
        };
        let (from, to) = (day(&form.date_from, false)?, day(&form.date_to, true)?);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(ExportRequestError::RangeReversed);
        }
        Ok(ExportRequest { kind, format, entities, from, to })
    }

    pub fn kind(&self) -> ExportType {
        self.kind
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The entity types to export (none unless entity data).
    pub fn entities(&self) -> &[String] {
        &self.entities
    }

    pub fn date_from(&self) -> Option<i64> {
        self.from
    }

    pub fn date_to(&self) -> Option<i64> {
        self.to
    }

    /// The download name on `today` (YYYY-MM-DD): `locations-2026-11-25.csv`,
    /// `entities-….zip` for several entity types (one XLSX workbook holds them all).
    pub fn file_name(&self, today: &str) -> String {
        let stem = match (self.kind, self.entities.as_slice()) {
            (ExportType::EntityData, [one]) => one.as_str(),
            (ExportType::EntityData, _) => "entities",
            (ExportType::ImportHistory, _) => "import-history",
            (ExportType::AuditLog, _) => "audit-log",
        };
        let ext = if self.entities.len() > 1 && self.format != Format::Xlsx { "zip" } else { self.format.extension() };
        format!("{stem}-{today}.{ext}")
    }
}

/// A YYYY-MM-DD day as the epoch seconds of its start (or its end, for `end`).
fn day(raw: &str, end: bool) -> Result<Option<i64>, ExportRequestError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let date = time::Date::parse(raw, &time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| ExportRequestError::NotADate(raw.to_string()))?;
    let start = date.midnight().assume_utc().unix_timestamp();
    Ok(Some(if end { start + 86_399 } else { start }))
}

/// A stored value as the importer reads it back: lists space-separated (stored files by
/// their source URL), booleans as true/false, absent as empty.
pub fn cell_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell_text).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" "),
        Value::Object(m) => m.get("url").and_then(|u| u.as_str()).map(str::to_string).unwrap_or_else(|| v.to_string()),
    }
}

/// A cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or
/// carriage return) gets a leading apostrophe; a plain number such as `-12.5` stays as it is.
pub fn neutralize(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() { format!("'{cell}").into() } else { cell.into() }
}

/// The key download links are signed with, derived from the server's session key (so
/// every instance with the same key agrees, and the session key itself never signs links).
pub fn link_key(session_key: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(b"stevedore signed download links\n");
    h.update(session_key);
    h.finalize().into()
}

/// The `expires` and `sig` of a download link's query, each given once; anything else
/// (missing, repeated, not a number) is no link at all.
pub fn link_query(query: &str) -> Option<(i64, String)> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let once = |name: &str| {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (Some(v), None) => Some(v.clone()),
            _ => None,
        }
    };
    Some((once("expires")?.parse().ok()?, once("sig")?))
}

/// How long a download link is good for.
pub const LINK_SECS: i64 = 3600;

fn mac(key: &[u8], path: &str, org: i64, expires: i64) -> Hmac {
    // an HMAC takes a key of any length
    let mut m = <Hmac as KeyInit>::new_from_slice(key).unwrap_or_else(|_| <Hmac as KeyInit>::new(&Default::default()));
    m.update(path.as_bytes());
    m.update(b"\n");
    m.update(org.to_string().as_bytes());
    m.update(b"\n");
    m.update(expires.to_string().as_bytes());
    m
}

type Hmac = hmac::Hmac<Sha256>;

/// The signature of a link to `path` for `org`, good until `expires` (HMAC-SHA256, hex).
pub fn sign(key: &[u8], path: &str, org: i64, expires: i64) -> String {
    hex::encode(mac(key, path, org, expires).finalize().into_bytes())
}

/// Whether `sig` is the signature of that link and it has not expired at `now`.
pub fn verify(key: &[u8], path: &str, org: i64, expires: i64, sig: &str, now: i64) -> bool {
    let Ok(bytes) = hex::decode(sig) else { return false };
    now <= expires && mac(key, path, org, expires).verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_query_names_expires_and_sig_once_each() {
        assert_eq!(link_query("expires=10&sig=abc"), Some((10, "abc".into())));
        assert_eq!(link_query("sig=abc&expires=10&x=1"), Some((10, "abc".into())));
        assert_eq!(link_query("expires=10&sig=abc&sig=abd"), None, "a repeated sig is no link");
        assert_eq!(link_query("expires=soon&sig=abc"), None);
        assert_eq!(link_query("sig=abc"), None);
        assert_eq!(link_query("%zz"), None);
    }
    use serde_json::json;

    #[test]
    fn values_are_written_as_the_importer_reads_them() {
        assert_eq!(cell_text(&json!(null)), "");
        assert_eq!(cell_text(&json!(true)), "true");
        assert_eq!(cell_text(&json!(42)), "42");
        assert_eq!(cell_text(&json!("12.50")), "12.50");
        assert_eq!(cell_text(&json!(["dbt", "substance_use"])), "dbt substance_use");
        let file = json!([{"name": "a.png", "url": "https://x.test/a.png", "md5": "00"}]);
        assert_eq!(cell_text(&file), "https://x.test/a.png");
    }

    #[test]
    fn formulas_are_neutralized_but_numbers_are_not() {
        for f in ["=HYPERLINK(\"x\")", "+1+1", "-cmd", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralize(f), format!("'{f}"), "{f:?}");
        }
        for plain in ["-12.5", "+3", "plain", "", "a=b"] {
            assert_eq!(neutralize(plain), plain);
        }
    }

    #[test]
    fn links_verify_until_they_expire_and_not_when_changed() {
        let key = b"server secret";
        let sig = sign(key, "exports/1/7.zip", 1, 1000);
        assert!(verify(key, "exports/1/7.zip", 1, 1000, &sig, 999));
        assert!(verify(key, "exports/1/7.zip", 1, 1000, &sig, 1000));
        assert!(!verify(key, "exports/1/7.zip", 1, 1000, &sig, 1001), "expired");
        assert!(!verify(key, "exports/1/8.zip", 1, 1000, &sig, 999), "another file");
        assert!(!verify(key, "exports/1/7.zip", 2, 1000, &sig, 999), "another org");
        assert!(!verify(key, "exports/1/7.zip", 1, 99999, &sig, 999), "a longer life");
        assert!(!verify(b"other key", "exports/1/7.zip", 1, 1000, &sig, 999));
        assert!(!verify(key, "exports/1/7.zip", 1, 1000, "zz", 999));
        assert!(!verify(key, "exports/1/7.zip", 1, 1000, &sig[..10], 999));
    }

    fn form(kind: &str, format: &str, entities: &[&str], from: &str, to: &str) -> ExportForm {
        ExportForm {
            export_type: kind.into(),
            format: format.into(),
            entities: entities.iter().map(|e| e.to_string()).collect(),
            date_from: from.into(),
            date_to: to.into(),
        }
    }

    fn parse(f: &ExportForm) -> Result<ExportRequest, ExportRequestError> {
        ExportRequest::parse(f, |e| ["locations", "staff"].contains(&e))
    }

    fn refusal(f: &ExportForm) -> String {
        parse(f).map(|r| format!("accepted: {r:?}")).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn a_request_needs_a_type_and_a_format() {
        assert_eq!(refusal(&form("", "csv", &["locations"], "", "")), "Choose what to export.");
        assert_eq!(refusal(&form("everything", "csv", &["locations"], "", "")), "Choose what to export.");
        assert_eq!(refusal(&form("entity_data", "pdf", &["locations"], "", "")), "Choose a format: CSV, XLSX or JSON.");
        assert_eq!(refusal(&form("audit_log", "", &[], "", "")), "Choose a format: CSV, XLSX or JSON.");
    }

    #[test]
    fn entity_data_needs_known_entity_types_and_the_others_ignore_them() {
        assert_eq!(refusal(&form("entity_data", "csv", &[], "", "")), "Choose at least one entity type to export.");
        assert_eq!(
            refusal(&form("entity_data", "csv", &["locations", "planets"], "", "")),
            "\"planets\" is not an entity type."
        );
        let r = parse(&form("entity_data", "json", &["locations", "staff"], "", "")).unwrap();
        assert_eq!(
            (r.kind(), r.format(), r.entities()),
            (ExportType::EntityData, Format::Json, &["locations".to_string(), "staff".to_string()][..])
        );
        let r = parse(&form("import_history", "csv", &["planets"], "", "")).unwrap();
        assert!(r.entities().is_empty(), "entity types only matter for entity data");
    }

    #[test]
    fn dates_are_whole_days_in_order() {
        let r = parse(&form("audit_log", "csv", &[], "2026-05-01", " 2026-05-01 ")).unwrap();
        assert_eq!((r.date_from(), r.date_to()), (Some(1_777_593_600), Some(1_777_593_600 + 86_399)), "the whole day");
        let open = parse(&form("audit_log", "csv", &[], "", "2026-05-01")).unwrap();
        assert_eq!((open.date_from(), open.date_to()), (None, Some(1_777_593_600 + 86_399)));
        assert_eq!(
            refusal(&form("audit_log", "csv", &[], "2026-05-02", "2026-05-01")),
            "The start of the date range is after its end."
        );
        assert_eq!(
            refusal(&form("audit_log", "csv", &[], "May 1", "")),
            "\"May 1\" is not a date (expected YYYY-MM-DD)."
        );
        assert_eq!(
            refusal(&form("audit_log", "csv", &[], "", "2026-02-30")),
            "\"2026-02-30\" is not a date (expected YYYY-MM-DD)."
        );
    }

    #[test]
    fn file_names_say_what_and_when() {
        let name = |k, f, e: &[&str]| parse(&form(k, f, e, "", "")).unwrap().file_name("2026-11-25");
        assert_eq!(name("entity_data", "csv", &["locations"]), "locations-2026-11-25.csv");
        assert_eq!(name("entity_data", "csv", &["locations", "staff"]), "entities-2026-11-25.zip");
        assert_eq!(name("entity_data", "json", &["staff"]), "staff-2026-11-25.jsonl");
        assert_eq!(name("entity_data", "xlsx", &["locations", "staff"]), "entities-2026-11-25.xlsx");
        assert_eq!(name("import_history", "json", &[]), "import-history-2026-11-25.jsonl");
        assert_eq!(name("audit_log", "xlsx", &[]), "audit-log-2026-11-25.xlsx");
    }

    #[test]
    fn statuses_and_formats_read_as_the_seed_says() {
        assert_eq!(Format::parse("csv").map(Format::label), Some("CSV"));
        assert_eq!(Format::parse("xml"), None);
        assert_eq!(Status::parse("processing").badge(), "secondary badge-animated");
        assert!(Status::parse("pending").is_active() && !Status::parse("completed").is_active());
        assert_eq!(ExportType::parse("audit_log").map(ExportType::label), Some("Audit log"));
    }
}
