//! Creating and driving imports through the API: `POST /api/v1/imports` (an import waiting
//! for its file, with a signed upload URL), the `PUT` of the file to that URL (CSV, XLSX, a
//! JSON array of objects or JSON Lines, streamed to storage and hashed), and start, pause,
//! resume, cancel and rollback. Every POST takes an `Idempotency-Key`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use super::imports::{ImportObject, object, upload_signed_path};
use super::{ApiError, Caller};
use crate::domain::exports::{link_query, verify};
use crate::domain::ids::{Actor, OrgId};
use crate::domain::imports::mapping::Target;
use crate::domain::imports::{
    Action, DuplicateHandling, Import, ImportFile, RollbackRefusal, Stage, auto_map, missing_required,
    model::parse_chunk_size,
};
use crate::domain::permissions::Permission;
use crate::jobs::import as import_jobs;
use crate::state::AppState;
use crate::store::api_keys::{self as key_store, Idempotency};
use crate::store::imports::phases;
use crate::store::imports::{self as store, NewImport};

/// What `POST /api/v1/imports` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImport {
    /// The resource to import into (see /api/v1/resources).
    pub resource: String,
    /// merge (default), overwrite or delete.
    #[schema(pattern = "^(merge|overwrite|delete)$")]
    pub action: Option<String>,
    /// async (default): the upload answers at once; sync: it answers once validation ran,
    /// with the first 100 problems.
    #[schema(pattern = "^(sync|async)$")]
    pub upload_mode: Option<String>,
    /// ignore_all (default) or use_first.
    #[schema(pattern = "^(ignore_all|use_first)$")]
    pub duplicate_handling: Option<String>,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Resource field → the file's column header. Left out: matched by name.
    pub column_mapping: Option<BTreeMap<String, String>>,
    /// true: wait as `queued` after validation until POST /api/v1/imports/{id}/start.
    pub review: Option<bool>,
    /// Rows per processing chunk, 1 to 10000 (default 50).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    pub chunk_size: Option<f64>,
}

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

/// The idempotency wrapper of every POST: the first answer to a key and body is kept and
/// replayed for 24 hours; the same key with another body is a 409.
async fn idempotent<F, Fut>(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: &[u8],
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), ApiError>>,
{
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str().map(str::trim) {
            Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x21..=0x7e).contains(&b)) => {
                Some(k.to_string())
            }
            _ => {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "The Idempotency-Key header must be 1 to 255 visible ASCII characters, without spaces (a UUID, say).",
                ));
            }
        },
    };
    let Some(key) = key else {
        return Ok(match run().await {
            Ok((status, v)) => HttpResponse::build(status).json(v),
            Err(e) => e.error_response(),
        });
    };
    let hash = {
        let mut h = Sha256::new();
        h.update(req.method().as_str().as_bytes());
        h.update(b" ");
        h.update(req.path().as_bytes());
        h.update(b"\n");
        h.update(body);
        hex::encode(h.finalize())
    };
    match key_store::begin_idempotent(&state.db, caller.key_id, &key, &hash).await? {
        Idempotency::Replay(status, body) => {
            return Ok(HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
                .insert_header((HeaderName::from_static("idempotent-replayed"), "true"))
                .content_type("application/json")
                .body(body));
        }
        Idempotency::Mismatch => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "idempotency_key_reused",
                "This Idempotency-Key was used for another request in the last 24 hours; use a new key for a new request.",
            )
            .param("Idempotency-Key"));
        }
        Idempotency::InFlight => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "idempotency_in_progress",
                "A request with this Idempotency-Key is still running; ask again in a moment for its answer.",
            )
            .param("Idempotency-Key"));
        }
        Idempotency::New => {}
    }
    let (status, text) = match run().await {
        Ok((status, v)) => (status, serde_json::to_string(&v).map_err(anyhow::Error::from)?),
        Err(e) => {
            let res = e.error_response();
            let body = serde_json::json!({ "error": {
                "type": e.kind, "code": e.code, "message": e.message, "param": e.param
            }});
            key_store::finish_idempotent(&state.db, caller.key_id, &key, e.status.as_u16(), &body.to_string()).await?;
            return Ok(res);
        }
    };
    key_store::finish_idempotent(&state.db, caller.key_id, &key, status.as_u16(), &text).await?;
    Ok(HttpResponse::build(status).content_type("application/json").body(text))
}

fn json_value<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    Ok(serde_json::to_value(v).map_err(anyhow::Error::from)?)
}

/// The model.
async fn model(state: &AppState, imp: &Import) -> Result<ImportObject, ApiError> {
    object(state, imp).await
}

fn enum_param<T>(
    raw: Option<&str>,
    name: &str,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
    all: &str,
) -> Result<T, ApiError> {
    match raw {
        None => Ok(default),
        Some(v) => parse(v.trim()).ok_or_else(|| ApiError::invalid(name, format!("\"{v}\" is not one of {all}."))),
    }
}

/// Reads a JSON body (415 when it is not JSON, 400 naming what is wrong).
fn json_body<T: serde::de::DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            "Send the body as JSON, with Content-Type: application/json.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names an unknown or missing field in backticks
        let param = (msg.starts_with("unknown field") || msg.starts_with("missing field"))
            .then(|| msg.split('`').nth(1).map(str::to_string))
            .flatten();
        let mut err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body_invalid",
            format!("The JSON body could not be read: {msg}."),
        );
        err.param = param;
        err
    })
}

/// Create an import
///
/// The import waits for its file (status `requested`) at `_upload_url`, a signed URL good for
/// one hour. Without `review` it then runs to completed by itself.
#[utoipa::path(
    post,
    path = "/api/v1/imports",
    operation_id = "createImport",
    tag = "Imports",
    request_body = CreateImport,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    responses(
        (status = 201, description = "Created, waiting for its file at `_upload_url`", body = ImportObject),
        (status = 400, description = "A field is not valid", body = super::ErrorBody),
        (status = 401, description = "No valid API key", body = super::ErrorBody),
        (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for another request", body = super::ErrorBody),
        (status = 415, description = "The body is not JSON", body = super::ErrorBody),
        (status = 429, description = "Rate limit reached", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all, fields(org_id = caller.org.get()))]
pub async fn create(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    idempotent(&state, &caller, &req, &body, || async {
        let c: CreateImport = json_body(&req, &body)?;
        let schema = state.schemas.get(c.resource.trim()).cloned().ok_or_else(|| {
            ApiError::invalid("resource", format!("\"{}\" is not a resource; see /api/v1/resources.", c.resource))
        })?;
        let action = enum_param(
            c.action.as_deref(),
            "action",
            Action::Merge,
            |v| Action::parse(v).ok(),
            "merge, overwrite, delete",
        )?;
        let handling = enum_param(
            c.duplicate_handling.as_deref(),
            "duplicate_handling",
            DuplicateHandling::IgnoreAll,
            |v| DuplicateHandling::parse(v).ok(),
            "ignore_all, use_first",
        )?;
        let sync = enum_param(
            c.upload_mode.as_deref(),
            "upload_mode",
            false,
            |v| match v {
                "sync" => Some(true),
                "async" => Some(false),
                _ => None,
            },
            "sync, async",
        )?;
        // 40 and 40.0 are the same number in JSON
        let chunk_size = match c.chunk_size {
            Some(n) if n.fract() != 0.0 || !n.is_finite() => {
                return Err(ApiError::invalid(
                    "chunk_size",
                    format!("Chunk size {n} must be a whole number from 1 to 10000."),
                ));
            }
            other => parse_chunk_size(other.map(|n| (n as i64).to_string()).as_deref())
                .map_err(|m| ApiError::invalid("chunk_size", m))?,
        };
        let mapping = c.column_mapping.unwrap_or_default();
        if let Some(field) = mapping.keys().find(|f| schema.field(f).is_none()) {
            return Err(ApiError::invalid(
                "column_mapping",
                format!("\"{field}\" is not a field of {}; see /api/v1/resources/{}.", schema.name, schema.name),
            ));
        }
        let name = c.name.unwrap_or_default();
        if name.chars().count() > 200 {
            return Err(ApiError::invalid("name", "A name can be at most 200 characters."));
        }
        let label = caller.label();
        let id = store::create(
            &state.db,
            caller.org,
            &NewImport {
                entity: &schema.name,
                name: name.trim(),
                action,
                duplicate_handling: handling,
                file_name: "",
                file_path: "",
                file_size: 0,
                checksum: "",
                chunk_size,
                created_by: Actor::Key(caller.key_id),
                created_by_label: &label,
                upload_mode_sync: sync,
                auto_start: !c.review.unwrap_or(false),
            },
        )
        .await?;
        tracing::Span::current().record("import_id", id);
        if !mapping.is_empty() {
            store::set_requested_mapping(&state.db, id, &mapping).await?;
        }
        caller
            .audit(
                &state,
                &req,
                "import_created",
                &format!("import {id}"),
                &format!("{}, {}", schema.label, action.label()),
            )
            .await?;
        let imp = store::get(&state.db, caller.org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
        Ok((StatusCode::CREATED, json_value(&model(&state, &imp).await?)?))
    })
    .await
}

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
    let dir = state.settings.db.data_dir.join("files").join("imports").join(org.get().to_string());
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
        let targets: Vec<Target> = schema.fields.iter().map(|f| Target { name: f.name(), label: &f.label }).collect();
        auto_map(&targets, &info.headers)
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
    let file =
        ImportFile { name: stored_name, path: stored.to_string_lossy().into_owned(), size: file_size, checksum, sheet };
    if !store::attach_and_validate(&state.db, org, id, &file, &info.headers, &mapping).await? {
        let _ = tokio::fs::remove_file(&stored).await;
        let now = store::get(&state.db, org, id).await?.unwrap_or(imp);
        return Err(used(&now));
    }
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
        return Ok(HttpResponse::Accepted().json(model(&state, &now).await?));
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
    let import = model(&state, &now).await?;
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
            // messages read "row 3, capacity: …" or "capacity: …"
            let text = i
                .message
                .split_once(", ")
                .filter(|(head, _)| head.starts_with("row "))
                .map(|(_, t)| t)
                .unwrap_or(&i.message);
            let field =
                text.split_once(':').map(|(f, _)| f.trim()).filter(|f| schema.field(f).is_some()).map(str::to_string);
            let value = field
                .as_ref()
                .and_then(|f| imp.mapping.get(f))
                .and_then(|column| imp.headers.iter().position(|h| h == column).and_then(|at| cells.get(at).cloned()));
            Problem { row: i.row_number, field, value, message: i.message }
        })
        .collect())
}

/// What `POST …/start` takes (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartOptions {
    /// For an overwrite that removes records not in the file: their number, as validation
    /// counted it (the import's `to_delete`), to confirm the removals.
    pub confirm_removals: Option<i64>,
}

/// What `POST …/rollback` takes (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackOptions {
    /// Also put back records changed since the import (default false: they are left alone
    /// and counted).
    pub overwrite_changed: Option<bool>,
}

/// One control action on an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Pause,
    Resume,
    Cancel,
    Rollback,
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict_error", "import_state", message)
}

async fn apply(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: &[u8],
    id: i64,
    what: Control,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let org: OrgId = caller.org;
    let imp = store::get(&state.db, org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
    let by = Actor::Key(caller.key_id);
    let state_word = imp.status_label().to_lowercase();
    match what {
        Control::Start => {
            let opts: StartOptions =
                if body.iter().all(u8::is_ascii_whitespace) { StartOptions::default() } else { json_body(req, body)? };
            let confirmed = opts.confirm_removals.map(|n| n.to_string());
            if imp.needs_removal_confirmation(confirmed.as_deref()) {
                let n = imp.validated.to_delete;
                return Err(conflict(format!(
                    "This overwrite removes {n} records that are not in the file. To go ahead, POST start with \
                     {{\"confirm_removals\": {n}}}."
                ))
                .param("confirm_removals"));
            }
            if !store::start_import(&state.db, org, id, by).await? {
                return Err(conflict(format!(
                    "Import {id} is {state_word}; only a validated (queued) import can start."
                )));
            }
            import_jobs::enqueue(&state.db, org, id, import_jobs::PROCESS).await?;
        }
        Control::Pause | Control::Resume => {
            let pause = what == Control::Pause;
            if !store::set_paused(&state.db, org, id, pause, by).await? {
                let verb = if pause { "paused" } else { "resumed" };
                return Err(conflict(format!(
                    "Import {id} is {state_word}; only an import that is processing can be {verb}."
                )));
            }
            if !pause {
                import_jobs::enqueue(&state.db, org, id, import_jobs::PROCESS).await?;
            }
        }
        Control::Cancel => {
            let reason = format!(
                "Cancelled through the API by {}; {} records imported before it stopped stay (roll back to undo them).",
                caller.label(),
                imp.changed_rows()
            );
            if store::cancel(&state.db, org, id, by, &reason).await?.is_none() {
                return Err(conflict(format!("Import {id} is {state_word}; there is nothing left to cancel.")));
            }
        }
        Control::Rollback => {
            let opts: RollbackOptions = if body.iter().all(u8::is_ascii_whitespace) {
                RollbackOptions::default()
            } else {
                json_body(req, body)?
            };
            let overwrite = opts.overwrite_changed.unwrap_or(false);
            if let Some(why) = imp.rollback_refusal() {
                return Err(conflict(refusal(why)));
            }
            if !crate::store::journal::request(&state.db, org, id, by, &caller.label(), overwrite).await? {
                let now = store::get(&state.db, org, id).await?.unwrap_or(imp);
                return Err(conflict(refusal(now.rollback_refusal().unwrap_or(RollbackRefusal::InProgress))));
            }
            import_jobs::enqueue(&state.db, org, id, import_jobs::ROLLBACK).await?;
        }
    }
    let action = match what {
        Control::Start => "import_started",
        Control::Pause => "import_paused",
        Control::Resume => "import_resumed",
        Control::Cancel => "import_cancelled",
        Control::Rollback => "import_rollback_requested",
    };
    caller.audit(state, req, action, &format!("import {id}"), "").await?;
    let now = store::get(&state.db, org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
    Ok((StatusCode::OK, json_value(&model(state, &now).await?)?))
}

fn refusal(r: RollbackRefusal) -> String {
    match r {
        RollbackRefusal::AlreadyRolledBack => "This import was already rolled back.".into(),
        RollbackRefusal::JournalPurged(_) => {
            "This import can no longer be rolled back: its journal was purged after the retention period.".into()
        }
        RollbackRefusal::InProgress => "This import is already being rolled back.".into(),
        RollbackRefusal::NotFinished(stage) => {
            format!(
                "This import is {}; only a completed or failed import can be rolled back.",
                stage.label().to_lowercase()
            )
        }
        RollbackRefusal::NothingChanged => "This import changed no records, so there is nothing to roll back.".into(),
    }
}

async fn control(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
    what: Control,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    let id: i64 = path.parse().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::not_found("import"))?;
    idempotent(&state, &caller, &req, &body, || apply(&state, &caller, &req, &body, id, what)).await
}

macro_rules! control_endpoint {
    ($name:ident, $what:expr, $op:literal, $path:literal, $summary:literal, $ok:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            operation_id = $op,
            tag = "Imports",
            params(
                ("id" = String, Path, description = "The import's id"),
                ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
            ),
            responses(
                (status = 200, description = $ok, body = ImportObject),
                (status = 400, description = "The Idempotency-Key or the body is not valid", body = super::ErrorBody),
                (status = 401, description = "No valid API key", body = super::ErrorBody),
                (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
                (status = 404, description = "No such import in the key's organization", body = super::ErrorBody),
                (status = 409, description = "The import's state does not allow it (the message says why)", body = super::ErrorBody),
                (status = 429, description = "Rate limit reached", body = super::ErrorBody),
            ),
            security(("api_key" = []))
        )]
        pub async fn $name(
            req: HttpRequest,
            caller: Caller,
            state: web::Data<AppState>,
            path: web::Path<String>,
            body: web::Bytes,
        ) -> Result<HttpResponse, ApiError> {
            control(req, caller, state, path, body, $what).await
        }
    };
}

control_endpoint!(
    start,
    Control::Start,
    "startImport",
    "/api/v1/imports/{id}/start",
    "Start a queued import (one created for review)",
    "Started"
);
control_endpoint!(
    pause,
    Control::Pause,
    "pauseImport",
    "/api/v1/imports/{id}/pause",
    "Pause processing before the next chunk",
    "Paused"
);
control_endpoint!(
    resume,
    Control::Resume,
    "resumeImport",
    "/api/v1/imports/{id}/resume",
    "Resume a paused import",
    "Resumed"
);
control_endpoint!(
    cancel,
    Control::Cancel,
    "cancelImport",
    "/api/v1/imports/{id}/cancel",
    "Cancel an import before the next chunk; what was imported stays",
    "Cancelled: status failed, the reason says so"
);
control_endpoint!(
    rollback,
    Control::Rollback,
    "rollbackImport",
    "/api/v1/imports/{id}/rollback",
    "Roll back a finished import from its journal",
    "Rollback asked for; it runs in the background"
);
