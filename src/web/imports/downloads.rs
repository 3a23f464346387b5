//! An import's downloads: the original file (streamed from storage), and the rows it left
//! out, as CSV (the file's columns plus `error`, to fix and upload again) or JSON, written
//! a page of rows at a time with `csv::Writer` and `serde_json` so memory stays flat.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::Stream;
use serde::Serialize;

use super::{load, page_of, target_of};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::files::attachment;
use crate::state::AppState;
use crate::store::Db;
use crate::store::imports::phases::{self, Issue};
use crate::web::{audit, file_stream, format_time, see_other};

/// Rows left out read per page.
const ISSUE_PAGE: i64 = 2000;

/// The original file, streamed.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn original(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    if let Some(at) = imp.journal_purged_at {
        let days = state.settings.import_retention_secs / 86_400;
        let text = format!(
            "The original file was deleted on {}, {days} days after the import, as set by the retention period.",
            format_time(at)
        );
        session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
        return Ok(see_other(page_of(&imp)));
    }
    // from the bucket's own presigned URL when there is one, else streamed from this disk
    if let Some(url) = state.files.presigned_file(&imp.file.path, 300).await? {
        audit(&state, &req, &id, "import_file_downloaded", &target_of(&imp), "original").await?;
        return Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, url)).finish());
    }
    let file = tokio::fs::File::open(state.files.path_of(&imp.file.path)).await.map_err(|_| AppError::NotFound)?;
    audit(&state, &req, &id, "import_file_downloaded", &target_of(&imp), "original").await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, imp.file.content_type()))
        .insert_header((header::CONTENT_DISPOSITION, attachment(&imp.file.name)))
        .streaming(file_stream(file)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorFormat {
    Csv,
    Json,
}

/// One row left out in the JSON download.
#[derive(Serialize)]
struct JsonIssue<'a> {
    row: i64,
    kind: &'a str,
    error: &'a str,
    values: serde_json::Map<String, serde_json::Value>,
}

/// A page of rows left out, encoded; `first` says whether it is the first page (the CSV
/// header, the JSON array's opening), `last` whether it closes the document.
fn encode(format: ErrorFormat, headers: &[String], page: &[Issue], first: bool, last: bool) -> anyhow::Result<Vec<u8>> {
    let mut out = vec![];
    match format {
        ErrorFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            if first {
                w.write_record(headers.iter().map(String::as_str).chain(["error"]))?;
            }
            for issue in page {
                let mut cells: Vec<String> = serde_json::from_str(&issue.cells).unwrap_or_default();
                cells.resize(headers.len(), String::new());
                cells.push(issue.message.clone());
                w.write_record(&cells)?;
            }
            w.flush()?;
        }
        ErrorFormat::Json => {
            if first {
                out.push(b'[');
            }
            for (i, issue) in page.iter().enumerate() {
                if !(first && i == 0) {
                    out.push(b',');
                }
                let cells: Vec<String> = serde_json::from_str(&issue.cells).unwrap_or_default();
                let values = headers.iter().cloned().zip(cells.into_iter().map(serde_json::Value::String)).collect();
                let item = JsonIssue { row: issue.row_number, kind: &issue.kind, error: &issue.message, values };
                serde_json::to_writer(&mut out, &item)?;
            }
            if last {
                out.push(b']');
            }
        }
    }
    Ok(out)
}

/// The rows left out, encoded a page at a time as the client reads.
pub(crate) fn issue_stream(
    db: Db,
    import_id: i64,
    headers: Vec<String>,
    format: ErrorFormat,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    struct Cursor {
        db: Db,
        import_id: i64,
        headers: Vec<String>,
        format: ErrorFormat,
        offset: i64,
        done: bool,
    }
    let start = Cursor { db, import_id, headers, format, offset: 0, done: false };
    futures_util::stream::unfold(start, |mut c| async move {
        if c.done {
            return None;
        }
        let page = match phases::issues(&c.db, c.import_id, ISSUE_PAGE, c.offset).await {
            Ok(p) => p,
            Err(e) => {
                c.done = true;
                tracing::error!(error = ?e, import_id = c.import_id, "reading rows left out for a download");
                return Some((Err(std::io::Error::other("the rows could not be read")), c));
            }
        };
        let last = (page.len() as i64) < ISSUE_PAGE;
        let bytes = encode(c.format, &c.headers, &page, c.offset == 0, last).map_err(std::io::Error::other);
        c.offset += page.len() as i64;
        c.done = last;
        Some((bytes.map(Bytes::from), c))
    })
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id))]
async fn errors_download(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    import_id: i64,
    format: ErrorFormat,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, import_id).await?;
    audit(&state, &req, &id, "import_file_downloaded", &target_of(&imp), "errors").await?;
    let (ct, name) = match format {
        ErrorFormat::Csv => ("text/csv; charset=utf-8", format!("import-{}-errors.csv", imp.id)),
        ErrorFormat::Json => ("application/json", format!("import-{}-errors.json", imp.id)),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, ct))
        .insert_header((header::CONTENT_DISPOSITION, attachment(&name)))
        .streaming(issue_stream(state.db.clone(), imp.id, imp.headers, format)))
}

pub async fn errors_csv(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    errors_download(req, id, state, path.into_inner(), ErrorFormat::Csv).await
}

pub async fn errors_json(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    errors_download(req, id, state, path.into_inner(), ErrorFormat::Json).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(row: i64, message: &str, cells: &[&str]) -> Issue {
        Issue {
            row_number: row,
            kind: "error".into(),
            message: message.into(),
            cells: serde_json::to_string(cells).unwrap(),
        }
    }

    #[test]
    fn csv_pages_join_into_one_file_with_the_error_column() {
        let h = vec!["code".to_string(), "name".to_string()];
        let mut out =
            encode(ErrorFormat::Csv, &h, &[issue(2, "row 2, name: is required", &["A1"])], true, false).unwrap();
        out.extend(encode(ErrorFormat::Csv, &h, &[issue(5, "quote \" and, comma", &["B", "x"])], false, true).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "code,name,error\nA1,,\"row 2, name: is required\"\nB,x,\"quote \"\" and, comma\"\n");
    }

    #[test]
    fn json_pages_join_into_one_array() {
        let h = vec!["code".to_string()];
        let mut out =
            encode(ErrorFormat::Json, &h, &[issue(2, "bad", &["A"]), issue(3, "worse", &["B"])], true, false).unwrap();
        out.extend(encode(ErrorFormat::Json, &h, &[issue(9, "last", &["C"])], false, true).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(3));
        assert_eq!(v[2]["row"], 9);
        assert_eq!(v[0]["values"]["code"], "A");
        assert_eq!(v[1]["error"], "worse");
        let empty = encode(ErrorFormat::Json, &h, &[], true, true).unwrap();
        assert_eq!(empty, b"[]");
    }
}
