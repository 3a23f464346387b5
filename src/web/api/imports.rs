//! `/api/v1/imports`: seed 004's import object, one import and the org's list, and the
//! signed links (one hour) to an import's original file and its rows left out (CSV, JSON).

use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::{ApiError, Caller, query_params};
use crate::domain::exports::{LINK_SECS, link_query, sign, verify};
use crate::domain::imports::history::Cursor;
use crate::domain::imports::{ApiStatus, Import, Phase, PhaseStatus, Stage};
use crate::domain::permissions::Permission;
use crate::files::attachment;
use crate::state::AppState;
use crate::store::imports::phases::{self, PhaseRow};
use crate::store::imports::{self as store, ListFilter};
use crate::web::imports::downloads::{ErrorFormat, issue_stream};

/// One phase of an import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PhaseObject {
    /// prevalidation, preparsing, transforming, parsing, validation, processing or cleanup.
    pub name: &'static str,
    /// `sync` when it runs inside the upload request, else `async`.
    pub mode: &'static str,
    /// not_started, running, completed, failed or skipped.
    pub status: &'static str,
    /// Epoch seconds.
    pub started_at: Option<i64>,
    /// Epoch seconds.
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Rows the phase looked at.
    pub rows_in: i64,
    /// Rows it passed on.
    pub rows_out: i64,
    /// Rows it left out (rows_in - rows_out) for the validation phases; rows that failed for
    /// processing.
    pub issues: i64,
    /// What it found, in one line.
    pub detail: String,
}

/// Counts of what the import did with its rows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsObject {
    /// Data rows in the file.
    pub rows: i64,
    /// Rows that passed validation.
    pub valid: i64,
    /// Rows with invalid values or references.
    pub invalid: i64,
    /// Rows repeated within the file.
    pub duplicates: i64,
    pub created: i64,
    pub updated: i64,
    pub deleted: i64,
    /// Rows identical to the stored record (or, for a delete, naming no record).
    pub unchanged: i64,
    /// Rows that could not be written while processing.
    pub failed: i64,
    /// Records put back by a rollback.
    pub rolled_back: i64,
    /// Records an overwrite removes because the file does not have them (known once
    /// validated; confirmed by `POST …/start` with `confirm_removals`).
    pub to_delete: i64,
}

/// Seed 004's import object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportObject {
    /// Always `import`.
    pub object: &'static str,
    pub id: String,
    pub organization_id: String,
    /// The entity type imported into (see /api/v1/resources).
    pub resource: String,
    /// sync or async.
    pub upload_mode: &'static str,
    /// merge, overwrite or delete.
    pub action: &'static str,
    /// requested, queued, processing, completed, failed, timed_out or expired.
    pub status: &'static str,
    /// The stage behind the status, as the Import History page names it.
    pub stage: &'static str,
    /// Whether processing is paused between chunks.
    pub paused: bool,
    /// ignore_all or use_first.
    pub duplicate_handling: &'static str,
    /// Why it failed, timed out or expired.
    pub reason: Option<String>,
    pub has_upload_file: bool,
    pub has_errors_file: bool,
    pub name: Option<String>,
    /// `user_<id>` or `key_<id>`.
    pub created_by: Option<String>,
    /// Resource field name → the file's column header.
    pub column_mapping: BTreeMap<String, String>,
    /// Resource field → `format` and (enums) `values` its column is read with, if any.
    pub column_options: BTreeMap<String, super::mapping::ColumnOptionObject>,
    pub phases: Vec<PhaseObject>,
    pub stats: StatsObject,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
    /// `user_<id>` or `key_<id>` of who last started, paused or resumed it.
    pub updated_by: Option<String>,
    /// MD5 of the uploaded file, hex.
    pub checksum: Option<String>,
    /// Epoch seconds; set once a rollback finished (the status stays completed).
    pub rolled_back_at: Option<i64>,
    /// Where to PUT the file (null once a file was uploaded).
    pub _upload_url: Option<String>,
    /// The uploaded file as CSV (signed, one hour).
    pub _upload_csv_url: Option<String>,
    /// The uploaded file as a JSON array of objects (signed, one hour).
    pub _upload_json_url: Option<String>,
    /// The rows left out, with an `error` column (signed, one hour).
    pub _errors_csv_url: Option<String>,
    /// The rows left out as JSON (signed, one hour).
    pub _errors_json_url: Option<String>,
}

/// The files a signed link can fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkedFile {
    UploadCsv,
    UploadJson,
    ErrorsCsv,
    ErrorsJson,
}

impl LinkedFile {
    const ALL: [LinkedFile; 4] =
        [LinkedFile::UploadCsv, LinkedFile::UploadJson, LinkedFile::ErrorsCsv, LinkedFile::ErrorsJson];

    fn as_str(self) -> &'static str {
        match self {
            LinkedFile::UploadCsv => "upload.csv",
            LinkedFile::UploadJson => "upload.json",
            LinkedFile::ErrorsCsv => "errors.csv",
            LinkedFile::ErrorsJson => "errors.json",
        }
    }

    fn parse(s: &str) -> Option<LinkedFile> {
        LinkedFile::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// What the signature covers: the import and the file.
    fn signed_path(self, import_id: i64) -> String {
        format!("api/imports/{import_id}/{}", self.as_str())
    }
}

/// A link to `file` of the import, good for an hour from `now`.
fn link(state: &AppState, imp: &Import, file: LinkedFile, now: i64) -> String {
    let expires = now + LINK_SECS;
    let sig = sign(&state.link_key, &file.signed_path(imp.id), imp.org.get(), expires);
    format!("/api/v1/files/imports/{}/{}?expires={expires}&sig={sig}", imp.id, file.as_str())
}

/// The path an upload URL signs.
pub fn upload_signed_path(id: i64) -> String {
    format!("api/uploads/imports/{id}")
}

/// The import's upload URL, good for an hour (GET the import for a fresh one).
fn upload_url(state: &AppState, imp: &Import, now: i64) -> String {
    let expires = now + LINK_SECS;
    let sig = sign(&state.link_key, &upload_signed_path(imp.id), imp.org.get(), expires);
    format!("/api/v1/uploads/imports/{}?expires={expires}&sig={sig}", imp.id)
}

/// Whether the uploaded file is still kept.
fn has_upload_file(imp: &Import) -> bool {
    !imp.is_purged() && !imp.file.path.is_empty()
}

/// `key_<id>` for an API key, else `user_<id>`.
fn actor(user: Option<crate::domain::ids::UserId>, key: Option<i64>) -> Option<String> {
    match (key, user) {
        (Some(k), _) => Some(format!("key_{k}")),
        (None, Some(u)) => Some(format!("user_{}", u.get())),
        (None, None) => None,
    }
}

fn phase_objects(imp: &Import, stored: &[PhaseRow]) -> Vec<PhaseObject> {
    Phase::ALL
        .iter()
        .map(|p| {
            let row = stored.iter().find(|r| r.phase == p.as_str());
            let status = row.map(|r| PhaseStatus::parse(&r.status)).unwrap_or(PhaseStatus::NotStarted);
            let (rows_in, rows_out) = row.map(|r| (r.rows_in, r.rows_out)).unwrap_or((0, 0));
            let issues = match p {
                Phase::Processing => imp.failed_rows,
                Phase::Cleanup => 0,
                _ => (rows_in - rows_out).max(0),
            };
            PhaseObject {
                name: p.as_str(),
                mode: if imp.api.sync && matches!(p, Phase::Prevalidation | Phase::Preparsing) {
                    "sync"
                } else {
                    "async"
                },
                status: status.as_str_api(),
                started_at: row.and_then(|r| r.started_at),
                finished_at: row.and_then(|r| r.finished_at),
                duration_ms: row.and_then(|r| r.duration_ms),
                rows_in,
                rows_out,
                issues,
                detail: row.map(|r| r.detail.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The import as the API shows it, read again with its phases and issues in one statement.
pub async fn object(state: &AppState, imp: &Import) -> Result<ImportObject, ApiError> {
    let shown = store::shown(&state.db, imp.org, imp.id).await?.ok_or_else(|| ApiError::not_found("import"))?;
    Ok(object_with(state, &shown.import, &shown.phases, shown.has_issues))
}

/// The import as the API shows it, with its phases and whether it left rows out.
fn object_with(state: &AppState, imp: &Import, stored: &[phases::PhaseRow], has_errors: bool) -> ImportObject {
    let now = crate::now();
    let upload = has_upload_file(imp);
    let v = &imp.validated;
    ImportObject {
        object: "import",
        id: imp.id.to_string(),
        organization_id: imp.org.get().to_string(),
        resource: imp.entity.clone(),
        upload_mode: if imp.api.sync { "sync" } else { "async" },
        action: imp.action.as_str(),
        status: imp.api_status().as_str(),
        stage: imp.stage.as_str(),
        paused: imp.paused,
        duplicate_handling: imp.duplicate_handling.as_str(),
        reason: (!imp.reason.is_empty()).then(|| imp.reason.clone()),
        has_upload_file: upload,
        has_errors_file: has_errors,
        name: (!imp.name.is_empty()).then(|| imp.name.clone()),
        created_by: actor(imp.created_by, imp.api.created_by_key),
        column_mapping: imp.mapping.clone(),
        column_options: super::mapping::options_object(&imp.options),
        phases: phase_objects(imp, stored),
        stats: StatsObject {
            rows: v.total_rows,
            valid: v.valid_rows,
            invalid: v.invalid_rows,
            duplicates: imp.repeated_rows(),
            created: imp.created_rows,
            updated: imp.updated_rows,
            deleted: imp.deleted_rows,
            unchanged: v.unchanged_rows,
            failed: imp.failed_rows,
            rolled_back: imp.rollback.rolled_back_rows,
            to_delete: if imp.action == crate::domain::imports::Action::Overwrite { v.to_delete } else { 0 },
        },
        created_at: imp.created_at,
        updated_at: imp.updated_at,
        updated_by: match (imp.updated_by, imp.api.updated_by_key) {
            (None, None) => actor(imp.created_by, imp.api.created_by_key),
            (user, key) => actor(user, key),
        },
        checksum: (!imp.file.checksum.is_empty()).then(|| imp.file.checksum.clone()),
        rolled_back_at: imp.rollback.rolled_back_at,
        _upload_url: imp.awaits_file().then(|| upload_url(state, imp, now)),
        _upload_csv_url: upload.then(|| link(state, imp, LinkedFile::UploadCsv, now)),
        _upload_json_url: upload.then(|| link(state, imp, LinkedFile::UploadJson, now)),
        _errors_csv_url: has_errors.then(|| link(state, imp, LinkedFile::ErrorsCsv, now)),
        _errors_json_url: has_errors.then(|| link(state, imp, LinkedFile::ErrorsJson, now)),
    }
}

/// Reads an import id from the path: a positive whole number, else 404 (as an unknown id).
fn import_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::not_found("import"))
}

/// One import
///
/// Its status, the seven phases with their counts, what it did with the rows, and signed
/// links (good for one hour) to the uploaded file and to the rows it left out.
#[utoipa::path(
    get,
    path = "/api/v1/imports/{id}",
    operation_id = "getImport",
    tag = "Imports",
    params(("id" = String, Path, description = "The import's id")),
    responses(
        (status = 200, description = "The import", body = ImportObject),
        (status = 401, description = "No valid API key", body = super::ErrorBody),
        (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
        (status = 404, description = "No such import in the key's organization", body = super::ErrorBody),
        (status = 429, description = "Rate limit reached", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all, fields(org_id = caller.org.get(), import_id))]
pub async fn get(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    query_params(&req, &[])?;
    let id = import_id(&path)?;
    let shown = store::shown(&state.db, caller.org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
    Ok(HttpResponse::Ok().json(object_with(&state, &shown.import, &shown.phases, shown.has_issues)))
}

/// A page of imports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportList {
    /// Always `list`.
    pub object: &'static str,
    /// Newest first.
    pub data: Vec<ImportObject>,
    /// Whether there are more beyond this page, in the direction read (older after
    /// `starting_after` or a first page; newer before `ending_before`).
    pub has_more: bool,
}

/// The list's query, checked.
struct ListQuery {
    limit: i64,
    status: Option<ApiStatus>,
    resource: Option<String>,
    created_after: Option<i64>,
    created_before: Option<i64>,
    starting_after: Option<i64>,
    ending_before: Option<i64>,
}

const LIST_PARAMS: [&str; 7] =
    ["limit", "status", "resource", "created_after", "created_before", "starting_after", "ending_before"];

fn list_query(state: &AppState, req: &HttpRequest) -> Result<ListQuery, ApiError> {
    let q = query_params(req, &LIST_PARAMS)?;
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError::invalid(name, format!("\"{name}\" must be a whole number, not \"{v}\"."))),
        }
    };
    let limit = number("limit")?.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("\"limit\" must be from 1 to 100, not {limit}.")));
    }
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(ApiStatus::parse(s.trim()).ok_or_else(|| {
            let all: Vec<&str> = ApiStatus::ALL.iter().map(|a| a.as_str()).collect();
            ApiError::invalid("status", format!("\"{s}\" is not a status; use one of {}.", all.join(", ")))
        })?),
    };
    let resource = match q.get("resource") {
        None => None,
        Some(r) if state.schemas.get(r.trim()).is_some() => Some(r.trim().to_string()),
        Some(r) => {
            return Err(ApiError::invalid("resource", format!("\"{r}\" is not a resource; see /api/v1/resources.")));
        }
    };
    let id = |name: &str| -> Result<Option<i64>, ApiError> {
        match number(name)? {
            Some(n) if n <= 0 => Err(ApiError::invalid(name, format!("\"{name}\" must be an import id."))),
            other => Ok(other),
        }
    };
    let starting_after = id("starting_after")?;
    let ending_before = id("ending_before")?;
    Ok(ListQuery {
        limit,
        status,
        resource,
        created_after: number("created_after")?,
        created_before: number("created_before")?,
        starting_after,
        ending_before,
    })
}

/// List imports
///
/// The organization's imports, newest first, a page at a time: pass the last id of a page as
/// `starting_after` for the next one. Imports created meanwhile never shift the pages.
#[utoipa::path(
    get,
    path = "/api/v1/imports",
    operation_id = "listImports",
    tag = "Imports",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 10)", minimum = 1, maximum = 100),
        ("status" = Option<String>, Query, description = "requested, queued, processing, completed, failed, timed_out or expired"),
        ("resource" = Option<String>, Query, description = "Only imports into this resource"),
        ("created_after" = Option<i64>, Query, description = "Created at or after this time (epoch seconds)"),
        ("created_before" = Option<i64>, Query, description = "Created before this time (epoch seconds)"),
        ("starting_after" = Option<i64>, Query, description = "The next page: imports older than this import id (404 when there is no such import)", minimum = 1),
        ("ending_before" = Option<i64>, Query, description = "The previous page: imports newer than this import id; with starting_after, the imports between the two", minimum = 1),
    ),
    responses(
        (status = 200, description = "A page of imports, newest first", body = ImportList),
        (status = 400, description = "A parameter is not valid", body = super::ErrorBody),
        (status = 401, description = "No valid API key", body = super::ErrorBody),
        (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
        (status = 404, description = "The import named by starting_after or ending_before does not exist", body = super::ErrorBody),
        (status = 429, description = "Rate limit reached", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all, fields(org_id = caller.org.get()))]
pub async fn list(req: HttpRequest, caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    let q = list_query(&state, &req)?;
    // a page after one import, before another, or (both given) between the two
    let bound = |param: &'static str, id: Option<i64>| {
        let state = state.clone();
        let org = caller.org;
        async move {
            let Some(id) = id else { return Ok::<_, ApiError>(None) };
            let from =
                store::get(&state.db, org, id).await?.ok_or_else(|| ApiError::not_found("import").param(param))?;
            Ok(Some((from.created_at, from.id)))
        }
    };
    let older_than = bound("starting_after", q.starting_after).await?;
    let newer_than = bound("ending_before", q.ending_before).await?;
    let cursor = match (older_than, newer_than) {
        (Some((at, id)), _) => Cursor::Before(at, id),
        (None, Some((at, id))) => Cursor::After(at, id),
        (None, None) => Cursor::First,
    };
    let newer_than = if older_than.is_some() { newer_than } else { None };
    let mut stages = q.status.map(ApiStatus::stages).unwrap_or_default();
    // an import waiting for its file is stored as pending but reads as requested
    let pending_with_file = match q.status {
        Some(ApiStatus::Requested) => {
            stages.push(Stage::Pending);
            Some(false)
        }
        Some(ApiStatus::Processing) => Some(true),
        _ => None,
    };
    let filter = ListFilter {
        stages: &stages,
        entity: q.resource.as_deref(),
        created_after: q.created_after,
        created_before: q.created_before,
        pending_with_file,
        newer_than,
    };
    // the page with each import's phases and issues: one statement
    let (imports, has_more) = store::list_shown(&state.db, caller.org, &filter, cursor, q.limit).await?;
    let data = imports.iter().map(|s| object_with(&state, &s.import, &s.phases, s.has_issues)).collect();
    Ok(HttpResponse::Ok().json(ImportList { object: "list", data, has_more }))
}

/// `GET /api/v1/files/imports/{id}/{file}?expires=…&sig=…`: a signed link; whoever holds it
/// may fetch the file until it expires (no key: links are handed to other tools).
pub async fn signed_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, raw_file) = path.into_inner();
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "link_invalid",
            "This link is not valid or has expired (links work for one hour); fetch the import again for fresh links.",
        )
    };
    let (Ok(id), Some(file)) = (raw_id.parse::<i64>(), LinkedFile::parse(&raw_file)) else {
        return Err(ApiError::not_found("file"));
    };
    let (expires, sig) = link_query(req.query_string()).ok_or_else(refused)?;
    let org = store::org_of(&state.db, id).await?.ok_or_else(refused)?;
    if !verify(&state.link_key, &file.signed_path(id), org.get(), expires, &sig, crate::now()) {
        return Err(refused());
    }
    let imp = store::get(&state.db, org, id).await?.ok_or_else(refused)?;
    let base = format!("import-{}", imp.id);
    let (content_type, name) = match file {
        LinkedFile::UploadCsv | LinkedFile::ErrorsCsv => {
            ("text/csv; charset=utf-8", format!("{base}-{}", file.as_str()))
        }
        LinkedFile::UploadJson | LinkedFile::ErrorsJson => ("application/json", format!("{base}-{}", file.as_str())),
    };
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_DISPOSITION, attachment(&name)))
        .insert_header((header::CACHE_CONTROL, "private, no-store"));
    match file {
        LinkedFile::ErrorsCsv => {
            Ok(res.streaming(issue_stream(state.db.clone(), imp.id, imp.headers, ErrorFormat::Csv)))
        }
        LinkedFile::ErrorsJson => {
            Ok(res.streaming(issue_stream(state.db.clone(), imp.id, imp.headers, ErrorFormat::Json)))
        }
        LinkedFile::UploadCsv | LinkedFile::UploadJson => {
            if !has_upload_file(&imp) {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "not_found_error",
                    "file_deleted",
                    "The uploaded file was deleted after the retention period.",
                ));
            }
            // from the bucket when another instance received it
            let copy = state.files.open(&imp.file.path).await.map_err(anyhow::Error::from)?;
            Ok(res.streaming(super::converted::converted(&state, &imp, copy, file == LinkedFile::UploadJson)))
        }
    }
}
