//! `PUT` of an API import's file to its signed upload URL: CSV, XLSX, a JSON array of
//! objects or JSON Lines, streamed to storage and hashed; the columns mapped and validation
//! started in one step; a sync upload answers once validation ran, with its first problems.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::ApiError;
use super::imports::{ImportObject, object, upload_signed_path};
use crate::domain::exports::{link_query, verify};
use crate::domain::imports::mapping::auto_map_schema;
use crate::domain::imports::{Import, ImportFile, Stage, missing_required, problems_by_field};
use crate::jobs::import as import_jobs;
use crate::state::AppState;
use crate::store::imports::phases;
use crate::store::imports::{self as store};

/// A row the upload left out, answered inline by a sync upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub row: i64,
    /// The field the problem is about, when one is named.
    pub field: Option<String>,
    /// That field's cell as uploaded.
    pub value: Option<String>,
    pub message: String,
}

/// What a sync upload answers: the import and its first 100 problems.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadResult {
    #[serde(flatten)]
    pub import: ImportObject,
    pub problems: Vec<Problem>,
}

/// How long a sync upload waits for validation before answering 202 as an async one would.
const SYNC_WAIT: Duration = Duration::from_secs(120);

/// The upload's format, by its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    Csv,
    Xlsx,
    Json,
    JsonLines,
}

impl Upload {
    fn from_content_type(ct: &str) -> Option<Upload> {
        let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match ct.as_str() {
            "text/csv" | "application/csv" => Some(Upload::Csv),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some(Upload::Xlsx),
            "application/json" => Some(Upload::Json),
            "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "application/jsonlines" => {
                Some(Upload::JsonLines)
            }
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Upload::Csv => "csv",
            Upload::Xlsx => "xlsx",
            Upload::Json => "json",
            Upload::JsonLines => "jsonl",
        }
    }
}

fn unreadable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", "file_unreadable", message)
}

/// Upload an import's file
///
/// PUT the file to the import's `_upload_url`: the signed URL is the credential (as a
/// bucket's presigned URL is), so tools that only PUT can use it.
#[utoipa::path(
    put,
    path = "/api/v1/uploads/imports/{id}",
    operation_id = "uploadImportFile",
    tag = "Imports",
    params(
        ("id" = String, Path, description = "The import's id"),
        ("expires" = i64, Query, description = "From the import's `_upload_url`"),
        ("sig" = String, Query, description = "From the import's `_upload_url`"),
    ),
    request_body(content = String, description = "The file: text/csv, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, application/json (an array of objects) or application/x-ndjson (JSON Lines)"),
    responses(
        (status = 200, description = "Sync upload: validated; the import and its first 100 problems", body = UploadResult),
        (status = 202, description = "Async upload: taken; the import goes on in the background", body = ImportObject),
        (status = 400, description = "The upload was interrupted", body = super::ErrorBody),
        (status = 403, description = "The URL is not valid or has expired", body = super::ErrorBody),
        (status = 404, description = "No such import", body = super::ErrorBody),
        (status = 409, description = "A file was already uploaded to this import", body = super::ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = super::ErrorBody),
        (status = 415, description = "Not CSV, XLSX, JSON or JSON Lines", body = super::ErrorBody),
        (status = 422, description = "The file cannot be read, or its columns do not fit the mapping", body = super::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(org_id, import_id))]
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "link_invalid",
            "This upload URL is not valid or has expired (it works for one hour); fetch the import again for a fresh one.",
        )
    };
    let id: i64 = path.parse().map_err(|_| ApiError::not_found("import"))?;
    let (expires, sig) = link_query(req.query_string()).ok_or_else(refused)?;
    let org = store::org_of(&state.db, id).await?.ok_or_else(refused)?;
    if !verify(&state.link_key, &upload_signed_path(id), org.get(), expires, &sig, crate::now()) {
        return Err(refused());
    }
    let span = tracing::Span::current();
    span.record("org_id", org.get());
    span.record("import_id", id);
    let imp = store::get(&state.db, org, id).await?.ok_or_else(refused)?;
    if !imp.awaits_file() {
        return Err(used(&imp));
    }
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = Upload::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            format!(
                "\"{ct}\" is not a format this takes: send text/csv, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet, application/json (an array of objects) or application/x-ndjson (JSON Lines)."
            ),
        )
    })?;
    let limit = state.settings.upload_limit;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "payload_too_large",
            format!("The file is larger than the upload limit of {}.", crate::config::format_size(limit)),
        )
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let dir = state.files.dir(&format!("imports/{}", org.get()));
    tokio::fs::create_dir_all(&dir).await.map_err(anyhow::Error::from)?;
    let stem = format!("api-{id}-{}", crate::random_token(8)?);
    let received = dir.join(format!("{stem}.{}", format.extension()));
    // stream to disk, hashing as it comes; nothing is held whole
    let mut file = tokio::fs::File::create(&received).await.map_err(anyhow::Error::from)?;
    let (mut md5, mut size) = (Md5::new(), 0u64);
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&received).await;
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "upload_interrupted",
                    format!("The upload was interrupted: {e}."),
                ));
            }
        };
        size += chunk.len() as u64;
        if size > limit {
            let _ = tokio::fs::remove_file(&received).await;
            return Err(too_large());
        }
        md5.update(&chunk);
        file.write_all(&chunk).await.map_err(anyhow::Error::from)?;
    }
    file.flush().await.map_err(anyhow::Error::from)?;
    drop(file);
    let checksum = hex::encode(md5.finalize());
    let limits = state.settings.file_limits;
    // JSON becomes CSV on the way in; CSV and XLSX are read as they are
    let (stored, stored_name) = match format {
        Upload::Json | Upload::JsonLines => {
            let csv_path = dir.join(format!("{stem}.csv"));
            let (src, dst) = (received.clone(), csv_path.clone());
            let lines = format == Upload::JsonLines;
            let converted = web::block(move || crate::files::json::to_csv(&src, &dst, lines, &limits))
                .await
                .map_err(anyhow::Error::from)?;
            let _ = tokio::fs::remove_file(&received).await;
            if let Err(why) = converted {
                let _ = tokio::fs::remove_file(&csv_path).await;
                return Err(unreadable(format!("The JSON upload cannot be read: {why}.")));
            }
            (csv_path, format!("upload-{id}.csv"))
        }
        _ => (received.clone(), format!("upload-{id}.{}", format.extension())),
    };
    let sniff_path = stored.clone();
    let info =
        match web::block(move || crate::files::sniff(&sniff_path, None, &limits)).await.map_err(anyhow::Error::from)? {
            Ok(i) => i,
            Err(problem) => {
                let _ = tokio::fs::remove_file(&stored).await;
                return Err(unreadable(format!("The file cannot be read: {problem}")));
            }
        };
    let schema = state.schemas.get(&imp.entity).cloned().ok_or_else(|| ApiError::not_found("resource"))?;
    // the mapping asked for at creation, else every field matched to a column by name
    let mapping = if imp.mapping.is_empty() {
        auto_map_schema(&schema, &info.headers)
    } else {
        if let Some((field, column)) = imp.mapping.iter().find(|(_, c)| !info.headers.contains(c)) {
            let _ = tokio::fs::remove_file(&stored).await;
            return Err(unreadable(format!(
                "column_mapping maps {field} to the column \"{column}\", which the file does not have (its columns: {}).",
                info.headers.join(", ")
            )));
        }
        imp.mapping.clone()
    };
    let missing = missing_required(imp.required_fields(&schema), &mapping);
    if !missing.is_empty() {
        let _ = tokio::fs::remove_file(&stored).await;
        return Err(unreadable(format!(
            "No column of the file fills {}; name the columns after the fields or give a column_mapping when creating the import (its columns: {}).",
            missing.join(", "),
            info.headers.join(", ")
        )));
    }
    let sheet = match &info.format {
        crate::files::Format::Xlsx { sheet } => Some(sheet.clone()),
        _ => None,
    };
    let file_size = tokio::fs::metadata(&stored).await.map(|m| m.len() as i64).unwrap_or(size as i64);
    let key = state.files.key_of(&stored);
    let file = ImportFile { name: stored_name, path: key.clone(), size: file_size, checksum, sheet };
    // kept where every instance reads it before any job can ask for it
    if let Err(e) = state.files.keep(&key, file.content_type(), &crate::files::attachment(&file.name)).await {
        state.files.remove_file(&key).await;
        return Err(e.context("keeping the uploaded file").into());
    }
    if !store::attach_and_validate(&state.db, org, id, &file, &info.headers, &mapping).await? {
        state.files.remove_file(&key).await;
        let now = store::get(&state.db, org, id).await?.unwrap_or(imp);
        return Err(used(&now));
    }
    state.files.release(&key).await;
    let detail = format!("{}, {}, {}", file.name, crate::config::format_size(size), schema.label);
    let event = crate::store::audit::AuditEvent {
        actor: None,
        actor_label: &imp.created_by_label,
        action: "import_uploaded",
        target: &format!("import {id}"),
        detail: &detail,
        address: &crate::web::client_address(&req, state.settings.trust_proxy),
    };
    crate::store::audit::record(&state.db, Some(org), &event).await?;
    import_jobs::enqueue(&state.db, org, id, import_jobs::VALIDATE).await?;
    if !imp.api.sync {
        let now = store::get(&state.db, org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
        return Ok(HttpResponse::Accepted().json(object(&state, &now).await?));
    }
    // sync: answer once validation has run (or after SYNC_WAIT, as async would)
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    let now = loop {
        let now = store::get(&state.db, org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
        if now.stage != Stage::Validating || started.elapsed() > SYNC_WAIT {
            break now;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    };
    let import = object(&state, &now).await?;
    if now.stage == Stage::Validating {
        return Ok(HttpResponse::Accepted().json(import));
    }
    let problems = problems(&state, &now, &schema).await?;
    Ok(HttpResponse::Ok().json(UploadResult { import, problems }))
}

/// 409: the import has its file already (or expired waiting for it).
fn used(imp: &Import) -> ApiError {
    if imp.stage == Stage::Expired || imp.stage == Stage::Failed && imp.file.path.is_empty() {
        return ApiError::new(
            StatusCode::CONFLICT,
            "conflict_error",
            "import_state",
            format!("Import {} is {}: {}. Create a new import.", imp.id, imp.status_label().to_lowercase(), imp.reason),
        );
    }
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict_error",
        "upload_used",
        format!(
            "Import {} already has its file (it is {}); create a new import for another file.",
            imp.id,
            imp.status_label().to_lowercase()
        ),
    )
}

/// The first 100 rows left out, with the field each names and that field's cell.
async fn problems(
    state: &AppState,
    imp: &Import,
    schema: &crate::domain::entities::EntitySchema,
) -> Result<Vec<Problem>, ApiError> {
    let issues = phases::issues(&state.db, imp.id, 100, 0).await?;
    Ok(issues
        .into_iter()
        .map(|i| {
            let cells: Vec<String> = serde_json::from_str(&i.cells).unwrap_or_default();
            // the field the message's first problem names ("row 3, capacity: …")
            let field = problems_by_field(&i.message, schema).into_iter().next().and_then(|(f, _)| f);
            let value = field
                .as_ref()
                .and_then(|f| imp.mapping.get(f))
                .and_then(|column| imp.headers.iter().position(|h| h == column).and_then(|at| cells.get(at).cloned()));
            Problem { row: i.row_number, field, value, message: i.message }
        })
        .collect())
}
