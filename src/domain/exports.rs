//! Export rules: types, formats and statuses (seed 002), how a stored value is written so
//! the file re-imports cleanly, formula neutralization, and the signed download links.

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

    #[test]
    fn statuses_and_formats_read_as_the_seed_says() {
        assert_eq!(Format::parse("csv").map(Format::label), Some("CSV"));
        assert_eq!(Format::parse("xml"), None);
        assert_eq!(Status::parse("processing").badge(), "secondary badge-animated");
        assert!(Status::parse("pending").is_active() && !Status::parse("completed").is_active());
        assert_eq!(ExportType::parse("audit_log").map(ExportType::label), Some("Audit log"));
    }
}
