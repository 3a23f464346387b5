//! Imports: `/settings/imports` (Import History), `/settings/imports/upload` and
//! `/{entity}/importer` (upload), `/settings/imports/{id}` (the detail sheet: mapping,
//! validation preview, progress with Pause/Resume, phases, rows left out, downloads).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_multipart::Multipart;
use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::layout::{Layout, render};
use super::{Pagination, format_time, see_other};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::entities::{EntitySchema, display_value};
use crate::domain::ids::OrgId;
use crate::domain::imports::mapping::{Target, auto_map, missing_required};
use crate::domain::imports::{Action, DuplicateHandling, Phase, Stage};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::jobs::import as import_jobs;
use crate::startup::AppState;
use crate::store::imports::{self as store, ImportRow, ListFilter, NewImport};

const PER_PAGE: i64 = 25;
/// Rows per chunk when the upload does not say.
pub const DEFAULT_CHUNK: i64 = 50;

fn schema_of(state: &AppState, name: &str) -> Result<Arc<EntitySchema>, AppError> {
    state.schemas.get(name).cloned().ok_or(AppError::NotFound)
}

// ---------- Import History ----------

pub struct HistoryRow {
    pub id: i64,
    pub entity: String,
    pub name: String,
    pub stage: Stage,
    pub paused: bool,
    pub total: i64,
    pub imported: i64,
    pub failed: i64,
    pub created_by: String,
    pub created_at: String,
    /// Finished with changes to undo, and no rollback asked for yet.
    pub can_roll_back: bool,
}

#[derive(Template)]
#[template(path = "imports_list.html")]
pub struct HistoryPage {
    pub l: Layout,
    pub rows: Vec<HistoryRow>,
    pub pagination: Pagination,
    pub stages: Vec<Stage>,
    pub entities: Vec<(String, String)>,
    pub stage: String,
    pub entity: String,
    pub filtered: bool,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    entity: String,
    page: Option<i64>,
}

fn label_of(state: &AppState, resource: &str) -> String {
    state.schemas.get(resource).map(|s| s.label.clone()).unwrap_or_else(|| resource.to_string())
}

pub async fn history(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let stage = Stage::parse(&q.stage).map(|s| s.as_str().to_string()).unwrap_or_default();
    let entity = state.schemas.get(&q.entity).map(|s| s.name.clone()).unwrap_or_default();
    let filter = ListFilter { stage: &stage, resource: &entity };
    let total = store::count(&state.db, id.org_id, &filter).await?;
    let base = format!(
        "/settings/imports?{}",
        serde_urlencoded::to_string([("stage", &stage), ("entity", &entity)]).unwrap_or_default()
    );
    let pagination = Pagination::new(q.page, PER_PAGE, total, &base);
    let rows = store::list(&state.db, id.org_id, &filter, PER_PAGE, pagination.offset())
        .await?
        .into_iter()
        .map(|i| HistoryRow {
            id: i.id,
            entity: label_of(&state, &i.resource),
            name: if i.name.is_empty() { i.file_name.clone() } else { i.name.clone() },
            stage: i.stage(),
            paused: i.paused,
            total: i.total_rows,
            imported: i.created_rows + i.updated_rows + i.deleted_rows,
            failed: i.invalid_rows + i.failed_rows,
            created_by: i.created_by_label.clone(),
            created_at: format_time(i.created_at),
            can_roll_back: i.rollback_requested_at.is_none()
                && i.journal_purged_at.is_none()
                && matches!(i.stage(), Stage::Completed | Stage::Failed | Stage::TimedOut)
                && i.created_rows + i.updated_rows + i.deleted_rows > 0,
        })
        .collect();
    let page = HistoryPage {
        l: Layout::for_user(&req, &id, "Import History", "imports").await?,
        rows,
        pagination,
        stages: Stage::ALL.to_vec(),
        entities: state.schemas.all().iter().map(|s| (s.name.clone(), s.label.clone())).collect(),
        filtered: !stage.is_empty() || !entity.is_empty(),
        stage,
        entity,
    };
    Ok(render(StatusCode::OK, &page))
}

// ---------- Upload ----------

#[derive(Template)]
#[template(path = "imports_upload.html")]
pub struct UploadPage {
    pub l: Layout,
    pub entities: Vec<(String, String)>,
    pub entity: String,
    /// Set on `/{entity}/importer`: the entity is fixed.
    pub fixed: Option<Arc<EntitySchema>>,
    pub name: String,
    pub duplicate_handling: String,
    pub action: String,
    pub limit: String,
    pub error: Option<String>,
}

async fn upload_page(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    fixed: Option<Arc<EntitySchema>>,
    entity: String,
    error: Option<String>,
) -> Result<UploadPage, AppError> {
    let title = match &fixed {
        Some(s) => format!("Import {}", s.label),
        None => "Upload".to_string(),
    };
    Ok(UploadPage {
        l: Layout::for_user(req, id, title, "imports").await?,
        entities: state.schemas.all().iter().map(|s| (s.name.clone(), s.label.clone())).collect(),
        entity,
        fixed,
        name: String::new(),
        duplicate_handling: "ignore_all".into(),
        action: "merge".into(),
        limit: crate::config::format_size(state.settings.upload_limit),
        error,
    })
}

#[derive(Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    entity: String,
}

pub async fn upload_form(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<UploadQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let entity = state.schemas.get(&q.entity).map(|s| s.name.clone()).unwrap_or_default();
    Ok(render(StatusCode::OK, &upload_page(&req, &id, &state, None, entity, None).await?))
}

pub async fn entity_importer(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let schema = schema_of(&state, &path)?;
    id.require(Permission::ImportUpload)?;
    let name = schema.name.clone();
    Ok(render(StatusCode::OK, &upload_page(&req, &id, &state, Some(schema), name, None).await?))
}

fn files_dir(state: &AppState, org: OrgId) -> PathBuf {
    state.settings.db.data_dir.join("files").join("imports").join(org.get().to_string())
}

/// The upload's text fields and where its file went.
struct Received {
    fields: BTreeMap<String, String>,
    file: Option<(String, PathBuf, i64, String)>,
}

enum UploadError {
    TooLarge,
    Bad(String),
    Internal(anyhow::Error),
}

/// Streams the multipart body: text fields into a map, the file to `dir` while hashing it.
async fn receive(mut payload: Multipart, dir: &Path, limit: u64) -> Result<Received, UploadError> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| UploadError::Internal(e.into()))?;
    let mut out = Received { fields: BTreeMap::new(), file: None };
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(|e| UploadError::Bad(format!("The upload could not be read: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_string);
        match (name.as_str(), file_name) {
            ("file", Some(original)) if !original.is_empty() => {
                let token = crate::random_token(12).map_err(UploadError::Internal)?;
                let ext =
                    Path::new(&original).extension().and_then(|e| e.to_str()).unwrap_or("bin").to_ascii_lowercase();
                let ext: String = ext.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
                let path = dir.join(format!("{token}.{ext}"));
                let mut f = tokio::fs::File::create(&path).await.map_err(|e| UploadError::Internal(e.into()))?;
                let mut md5 = Md5::new();
                let mut size: u64 = 0;
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| UploadError::Bad(format!("The upload was interrupted: {e}")))?;
                    size += chunk.len() as u64;
                    if size > limit {
                        drop(f);
                        let _ = tokio::fs::remove_file(&path).await;
                        return Err(UploadError::TooLarge);
                    }
                    md5.update(&chunk);
                    f.write_all(&chunk).await.map_err(|e| UploadError::Internal(e.into()))?;
                }
                f.flush().await.map_err(|e| UploadError::Internal(e.into()))?;
                let checksum = hex::encode(md5.finalize());
                out.file = Some((original, path, size as i64, checksum));
            }
            _ => {
                let mut text = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| UploadError::Bad(format!("The upload could not be read: {e}")))?;
                    if text.len() + chunk.len() > 64 * 1024 {
                        return Err(UploadError::Bad(format!("The field \"{name}\" is too long.")));
                    }
                    text.extend_from_slice(&chunk);
                }
                out.fields.insert(name, String::from_utf8_lossy(&text).into_owned());
            }
        }
    }
    Ok(out)
}

pub async fn upload(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let dir = files_dir(&state, id.org_id);
    let received = receive(payload, &dir, state.settings.upload_limit).await;
    let fail = |status: StatusCode, entity: String, msg: String| {
        let (req, id, state) = (req.clone(), id.clone(), state.clone());
        async move {
            let page = upload_page(&req, &id, &state, None, entity, Some(msg)).await?;
            Ok::<HttpResponse, AppError>(render(status, &page))
        }
    };
    let received = match received {
        Ok(r) => r,
        Err(UploadError::TooLarge) => {
            let limit = crate::config::format_size(state.settings.upload_limit);
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                String::new(),
                format!("The file is larger than the upload limit of {limit}."),
            )
            .await;
        }
        Err(UploadError::Bad(m)) => return fail(StatusCode::BAD_REQUEST, String::new(), m).await,
        Err(UploadError::Internal(e)) => return Err(AppError::Internal(e)),
    };
    let entity = received.fields.get("resource").cloned().unwrap_or_default();
    let discard = |r: &Received| {
        if let Some((_, p, _, _)) = &r.file {
            let _ = std::fs::remove_file(p);
        }
    };
    let Some(schema) = state.schemas.get(&entity).cloned() else {
        discard(&received);
        return fail(StatusCode::UNPROCESSABLE_ENTITY, entity, "Choose what to import: an entity type.".into()).await;
    };
    let handling =
        match DuplicateHandling::parse(received.fields.get("duplicate_handling").map(String::as_str).unwrap_or("")) {
            Ok(h) => h,
            Err(m) => {
                discard(&received);
                return fail(StatusCode::UNPROCESSABLE_ENTITY, entity, m).await;
            }
        };
    let action = match received.fields.get("action").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Action::Merge,
        Some(a) => match Action::parse(a) {
            Ok(a) => a,
            Err(m) => {
                discard(&received);
                return fail(StatusCode::UNPROCESSABLE_ENTITY, entity, m).await;
            }
        },
    };
    let chunk_size = match received.fields.get("chunk_size").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => DEFAULT_CHUNK,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                discard(&received);
                return fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    entity,
                    format!("Chunk size \"{s}\" must be a whole number from 1 to 10000."),
                )
                .await;
            }
        },
    };
    let Some((original, path, size, checksum)) = received.file.clone() else {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, entity, "Choose a CSV or XLSX file to upload.".into()).await;
    };
    let sheet = received.fields.get("sheet").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (p2, sheet2) = (path.clone(), sheet.clone());
    let sniffed = web::block(move || crate::files::sniff(&p2, sheet2.as_deref())).await.map_err(anyhow::Error::from)?;
    let info = match sniffed {
        Ok(i) => i,
        Err(problem) => {
            discard(&received);
            return fail(StatusCode::UNPROCESSABLE_ENTITY, entity, format!("{original}: {problem}")).await;
        }
    };
    let name = received.fields.get("name").map(|s| s.trim().to_string()).unwrap_or_default();
    let path_text = path.to_string_lossy().into_owned();
    let import_id = store::create(
        &state.db,
        id.org_id,
        &NewImport {
            resource: &schema.name,
            name: &name,
            action: action.as_str(),
            duplicate_handling: handling.as_str(),
            file_name: &original,
            file_path: &path_text,
            file_size: size,
            checksum: &checksum,
            chunk_size,
            created_by: id.user_id,
            created_by_label: &id.email,
        },
    )
    .await?;
    let targets: Vec<Target> = schema.fields.iter().map(|f| Target { name: f.name(), label: &f.label }).collect();
    let mapping = auto_map(&targets, &info.headers);
    let sheet_name = match &info.format {
        crate::files::Format::Xlsx { sheet } => Some(sheet.clone()),
        _ => None,
    };
    store::set_headers(
        &state.db,
        import_id,
        &serde_json::to_string(&info.headers).map_err(anyhow::Error::from)?,
        &serde_json::to_string(&mapping).map_err(anyhow::Error::from)?,
        sheet_name.as_deref(),
    )
    .await?;
    super::audit(
        &state,
        &req,
        &id,
        "import_uploaded",
        &format!("import {import_id}"),
        &format!("{original}, {size} bytes, {}", schema.name),
    )
    .await?;
    Ok(see_other(format!("/settings/imports/{import_id}")))
}

// ---------- Detail ----------

pub struct PhaseView {
    pub name: &'static str,
    pub description: &'static str,
    pub status: String,
    pub duration: String,
    pub rows_in: i64,
    pub rows_out: i64,
    pub detail: String,
}

pub struct MappingLine {
    pub field: String,
    pub label: String,
    pub required: bool,
    pub header: String,
}

pub struct IssueView {
    pub row: i64,
    pub kind: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "import_detail.html")]
pub struct DetailPage {
    pub l: Layout,
    pub imp: ImportRow,
    pub stage: Stage,
    pub entity_label: String,
    pub headers: Vec<String>,
    pub mapping: Vec<MappingLine>,
    pub mapping_error: Option<String>,
    pub phases: Vec<PhaseView>,
    pub issues: Vec<IssueView>,
    pub issue_count: i64,
    pub pagination: Pagination,
    pub sample_columns: Vec<String>,
    pub sample: Vec<Vec<String>>,
    pub to_process: i64,
    pub created_at: String,
    pub refresh: bool,
    /// Roll back is offered (a finished import not rolled back yet).
    pub rollback: Option<RollbackView>,
    /// Open the rollback dialog at load (`?rollback=1`, from Import History).
    pub rollback_open: bool,
    /// Open the overwrite confirmation at load.
    pub confirm_open: bool,
    /// The import's audit events, newest first.
    pub events: Vec<super::audit::EventView>,
    /// Days an import's journal and original file are kept.
    pub retention_days: i64,
}

/// What a rollback would undo.
pub struct RollbackView {
    /// Records changed since the import (the first few) and how many there are.
    pub changed: Vec<crate::store::journal::Changed>,
    pub changed_count: i64,
}

impl DetailPage {
    pub fn time(&self, at: &i64) -> String {
        format_time(*at)
    }

    pub fn percent(&self) -> i64 {
        if self.to_process == 0 { 100 } else { (self.imp.processed_rows * 100 / self.to_process).min(100) }
    }
}

#[derive(Deserialize)]
pub struct DetailQuery {
    page: Option<i64>,
    rollback: Option<String>,
    confirm: Option<String>,
}

async fn load(state: &AppState, id: &Identity, import_id: i64) -> Result<ImportRow, AppError> {
    store::get(&state.db, id.org_id, import_id).await?.ok_or(AppError::NotFound)
}

async fn detail_page(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    imp: ImportRow,
    page: Option<i64>,
    mapping_override: Option<(BTreeMap<String, String>, String)>,
) -> Result<DetailPage, AppError> {
    let schema = state.schemas.get(&imp.resource).cloned();
    let headers: Vec<String> = serde_json::from_str(&imp.headers).unwrap_or_default();
    let (saved, mapping_error) = match mapping_override {
        Some((m, e)) => (m, Some(e)),
        None => (serde_json::from_str::<BTreeMap<String, String>>(&imp.column_mapping).unwrap_or_default(), None),
    };
    let delete = imp.action == Action::Delete.as_str();
    let mapping = schema
        .iter()
        .flat_map(|s| s.fields.iter().map(move |f| (s, f)))
        .map(|(s, f)| MappingLine {
            field: f.name().to_string(),
            label: f.label.clone(),
            required: if delete { f.name() == s.key } else { f.required() },
            header: saved.get(f.name()).cloned().unwrap_or_default(),
        })
        .collect();
    let stored = store::phases(&state.db, imp.id).await?;
    let phases = Phase::ALL
        .iter()
        .map(|p| {
            let row = stored.iter().find(|r| r.phase == p.as_str());
            PhaseView {
                name: p.as_str(),
                description: p.description(),
                status: row.map(|r| r.status.clone()).unwrap_or_else(|| "not started".into()),
                duration: row
                    .and_then(|r| r.duration_ms)
                    .map(|ms| format!("{:.2} s", ms as f64 / 1000.0))
                    .unwrap_or_default(),
                rows_in: row.map(|r| r.rows_in).unwrap_or(0),
                rows_out: row.map(|r| r.rows_out).unwrap_or(0),
                detail: row.map(|r| r.detail.clone()).unwrap_or_default(),
            }
        })
        .collect();
    let issue_count = store::count_issues(&state.db, imp.id).await?;
    let pagination = Pagination::new(page, PER_PAGE, issue_count, &format!("/settings/imports/{}", imp.id));
    let issues = store::issues(&state.db, imp.id, PER_PAGE, pagination.offset())
        .await?
        .into_iter()
        .map(|i| IssueView { row: i.row_number, kind: i.kind, message: i.message })
        .collect();
    let stage = imp.stage();
    let (sample_columns, sample) = match (&schema, stage) {
        (Some(s), Stage::Ready) => sample_rows(&state.db, s, &imp).await.unwrap_or_default(),
        _ => (vec![], vec![]),
    };
    let rollback = if imp.rollback_requested_at.is_none()
        && imp.journal_purged_at.is_none()
        && matches!(stage, Stage::Completed | Stage::Failed | Stage::TimedOut)
        && imp.created_rows + imp.updated_rows + imp.deleted_rows > 0
    {
        let (changed, changed_count) =
            crate::store::journal::changed_since(&state.db, id.org_id, imp.id, &imp.resource, 20).await?;
        Some(RollbackView { changed, changed_count })
    } else {
        None
    };
    let to_process = if imp.action == Action::Delete.as_str() { imp.to_delete } else { imp.to_create + imp.to_update };
    let rolling_back = imp.rollback_requested_at.is_some() && stage != Stage::RolledBack;
    Ok(DetailPage {
        l: Layout::for_user(req, id, format!("Import {}", imp.id), "imports").await?,
        entity_label: label_of(state, &imp.resource),
        headers,
        mapping,
        mapping_error,
        phases,
        issues,
        issue_count,
        pagination,
        sample_columns,
        sample,
        to_process,
        created_at: format_time(imp.created_at),
        refresh: (stage.is_active() && !imp.paused) || rolling_back,
        rollback,
        rollback_open: false,
        confirm_open: false,
        retention_days: state.settings.import_retention_secs / 86_400,
        events: crate::store::audit::for_target(&state.db, id.org_id, &format!("import {}", imp.id), 100)
            .await?
            .into_iter()
            .map(super::audit::EventView::new)
            .collect(),
        stage,
        imp,
    })
}

/// The first rows waiting to be imported, as they will be stored (from staging).
async fn sample_rows(
    db: &crate::store::Db,
    schema: &EntitySchema,
    imp: &ImportRow,
) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let shown: Vec<_> = schema.fields.iter().take(6).collect();
    let columns = shown.iter().map(|f| f.label.clone()).collect();
    let mut rows = vec![];
    for data in crate::store::staging::sample(db, imp.id, 5).await? {
        let data: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&data)?;
        rows.push(shown.iter().map(|f| data.get(f.name()).map(display_value).unwrap_or_default()).collect());
    }
    Ok((columns, rows))
}

pub async fn detail(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<DetailQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let mut page = detail_page(&req, &id, &state, imp, q.page, None).await?;
    page.rollback_open = q.rollback.is_some() && page.rollback.is_some();
    page.confirm_open = q.confirm.is_some();
    Ok(render(StatusCode::OK, &page))
}

pub async fn save_mapping(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let schema = schema_of(&state, &imp.resource)?;
    let headers: Vec<String> = serde_json::from_str(&imp.headers).unwrap_or_default();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("The mapping form could not be read.".into()))?;
    let mut mapping = BTreeMap::new();
    for (k, v) in pairs {
        if let Some(field) = k.strip_prefix("map.")
            && schema.field(field).is_some()
            && !v.is_empty()
        {
            if !headers.contains(&v) {
                return Err(AppError::Validation(format!("\"{v}\" is not a column of the file.")));
            }
            mapping.insert(field.to_string(), v);
        }
    }
    let mut used = std::collections::HashMap::new();
    for (field, header) in &mapping {
        if let Some(other) = used.insert(header.clone(), field.clone()) {
            let msg = format!("The column \"{header}\" is mapped to both {other} and {field}; map each column once.");
            let page = detail_page(&req, &id, &state, imp, None, Some((mapping.clone(), msg))).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    }
    // a delete import needs only the key: the records it names are removed whole
    let delete = imp.action == Action::Delete.as_str();
    let required = schema.fields.iter().filter(|f| if delete { f.name() == schema.key } else { f.required() });
    let missing = missing_required(required.map(|f| f.name()), &mapping);
    if !missing.is_empty() {
        let msg = format!("Map a column to every required field; not mapped yet: {}.", missing.join(", "));
        let page = detail_page(&req, &id, &state, imp, None, Some((mapping, msg))).await?;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let json = serde_json::to_string(&mapping).map_err(anyhow::Error::from)?;
    if !store::confirm_mapping(&state.db, id.org_id, imp.id, &json, id.user_id).await? {
        return Err(AppError::Conflict(format!(
            "This import is {} now, so its mapping can no longer change.",
            imp.stage().label().to_lowercase()
        )));
    }
    import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::VALIDATE).await?;
    super::audit(&state, &req, &id, "import_mapping_confirmed", &format!("import {}", imp.id), &json).await?;
    Ok(see_other(format!("/settings/imports/{}", imp.id)))
}

pub async fn start(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // an overwrite that removes records starts only once the user confirmed that number
    if imp.stage() == Stage::Ready
        && imp.action == Action::Overwrite.as_str()
        && imp.to_delete > 0
        && form.get("confirm_delete").map(|v| v.trim()) != Some(imp.to_delete.to_string().as_str())
    {
        let mut page = detail_page(&req, &id, &state, imp, None, None).await?;
        page.confirm_open = true;
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    if !store::start_import(&state.db, id.org_id, imp.id, id.user_id).await? {
        return Err(AppError::Conflict(format!(
            "This import is {}; only a ready import can start.",
            imp.stage().label().to_lowercase()
        )));
    }
    import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::PROCESS).await?;
    super::audit(&state, &req, &id, "import_started", &format!("import {}", imp.id), "").await?;
    Ok(see_other(format!("/settings/imports/{}", imp.id)))
}

pub async fn rollback(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let overwrite = form.get("overwrite_changed").is_some_and(|v| v == "1" || v == "on");
    let to = format!("/settings/imports/{}", imp.id);
    if crate::store::journal::request(&state.db, id.org_id, imp.id, id.user_id, &id.email, overwrite).await? {
        import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::ROLLBACK).await?;
        let detail = if overwrite { "records changed since are overwritten" } else { "" };
        super::audit(&state, &req, &id, "import_rollback_requested", &format!("import {}", imp.id), detail).await?;
        return Ok(see_other(to));
    }
    // a second tab, a double click, or an import that cannot be rolled back
    let now = store::get(&state.db, id.org_id, imp.id).await?.unwrap_or(imp);
    let text = if now.stage() == Stage::RolledBack {
        "This import was already rolled back.".to_string()
    } else if let Some(at) = now.journal_purged_at {
        format!("This import can no longer be rolled back: its journal was purged on {}.", format_time(at))
    } else if now.rollback_requested_at.is_some() {
        "This import is already being rolled back.".to_string()
    } else {
        format!(
            "This import is {}; only a completed or failed import can be rolled back.",
            now.stage().label().to_lowercase()
        )
    };
    session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
    Ok(see_other(to))
}

async fn pause_or_resume(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    import_id: i64,
    pause: bool,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, import_id).await?;
    if !store::set_paused(&state.db, id.org_id, imp.id, pause, id.user_id).await? {
        // Most often the import finished between the page showing Pause and the click.
        let now = store::get(&state.db, id.org_id, imp.id).await?.map(|i| i.stage()).unwrap_or(imp.stage());
        let text = format!(
            "The import is {} now, so there was nothing to {}.",
            now.label().to_lowercase(),
            if pause { "pause" } else { "resume" }
        );
        session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
        return Ok(see_other(format!("/settings/imports/{}", imp.id)));
    }
    if !pause {
        import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::PROCESS).await?;
    }
    let action = if pause { "import_paused" } else { "import_resumed" };
    super::audit(&state, &req, &id, action, &format!("import {}", imp.id), "").await?;
    Ok(see_other(format!("/settings/imports/{}", imp.id)))
}

pub async fn pause(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    pause_or_resume(req, id, state, session, path.into_inner(), true).await
}

pub async fn resume(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    pause_or_resume(req, id, state, session, path.into_inner(), false).await
}

// ---------- Downloads ----------

pub fn attachment(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).collect();
    format!("attachment; filename=\"{safe}\"")
}

/// The original file, streamed.
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
        return Ok(see_other(format!("/settings/imports/{}", imp.id)));
    }
    let file = tokio::fs::File::open(&imp.file_path).await.map_err(|_| AppError::NotFound)?;
    super::audit(&state, &req, &id, "import_file_downloaded", &format!("import {}", imp.id), "original").await?;
    let stream = super::file_stream(file);
    let content_type = if imp.file_name.to_ascii_lowercase().ends_with(".xlsx") {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else {
        "text/csv; charset=utf-8"
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_DISPOSITION, attachment(&imp.file_name)))
        .streaming(stream))
}

enum ErrorFormat {
    Csv,
    Json,
}

/// The rows left out: CSV with the file's columns plus `error` (fix and re-upload), or JSON.
async fn errors_download(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    import_id: i64,
    format: ErrorFormat,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, import_id).await?;
    let headers: Vec<String> = serde_json::from_str(&imp.headers).unwrap_or_default();
    super::audit(&state, &req, &id, "import_file_downloaded", &format!("import {}", imp.id), "errors").await?;
    let db = state.db.clone();
    let first = match format {
        ErrorFormat::Csv => {
            let mut w = csv::Writer::from_writer(vec![]);
            let mut h = headers.clone();
            h.push("error".into());
            w.write_record(&h).map_err(anyhow::Error::from)?;
            w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?
        }
        ErrorFormat::Json => b"[".to_vec(),
    };
    let is_json = matches!(format, ErrorFormat::Json);
    let state0 = (db, imp.id, 0i64, headers, Some(first), false, is_json);
    let stream = futures_util::stream::unfold(state0, |(db, iid, offset, headers, first, done, json)| async move {
        if let Some(b) = first {
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(b)), (db, iid, offset, headers, None, done, json)));
        }
        if done {
            return None;
        }
        let page = match store::issues(&db, iid, 2000, offset).await {
            Ok(p) => p,
            Err(e) => {
                return Some((Err(std::io::Error::other(e.to_string())), (db, iid, offset, headers, None, true, json)));
            }
        };
        let last = page.len() < 2000;
        let mut out = vec![];
        if json {
            for (i, issue) in page.iter().enumerate() {
                let cells: Vec<String> = serde_json::from_str(&issue.cells).unwrap_or_default();
                let values: serde_json::Map<String, serde_json::Value> =
                    headers.iter().cloned().zip(cells.into_iter().map(serde_json::Value::String)).collect();
                let item = serde_json::json!({"row": issue.row_number, "kind": issue.kind, "error": issue.message, "values": values});
                if offset + (i as i64) > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(item.to_string().as_bytes());
            }
            if last {
                out.push(b']');
            }
        } else {
            let mut w = csv::Writer::from_writer(vec![]);
            for issue in &page {
                let mut cells: Vec<String> = serde_json::from_str(&issue.cells).unwrap_or_default();
                cells.resize(headers.len(), String::new());
                cells.push(issue.message.clone());
                if w.write_record(&cells).is_err() {
                    break;
                }
            }
            out = w.into_inner().unwrap_or_default();
        }
        let next = offset + page.len() as i64;
        Some((Ok(Bytes::from(out)), (db, iid, next, headers, None, last, json)))
    });
    let (ct, name) = match format {
        ErrorFormat::Csv => ("text/csv; charset=utf-8", format!("import-{}-errors.csv", imp.id)),
        ErrorFormat::Json => ("application/json", format!("import-{}-errors.json", imp.id)),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, ct))
        .insert_header((header::CONTENT_DISPOSITION, attachment(&name)))
        .streaming(stream))
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
