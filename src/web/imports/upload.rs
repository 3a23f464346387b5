//! `/settings/imports/upload` and `/{entity}/importer`: the upload form, and the upload
//! itself (file streamed to storage with its MD5, sniffed, the import created with its
//! headers and a proposed mapping).

use std::path::PathBuf;
use std::sync::Arc;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::schema_of;
use crate::auth::Identity;
use crate::domain::entities::EntitySchema;
use crate::domain::ids::OrgId;
use crate::domain::imports::mapping::{auto_map_schema, headers_key};
use crate::domain::imports::options::{fit_remembered, proposed_options};
use crate::domain::imports::{Action, DuplicateHandling, model::parse_chunk_size};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::files::uploads::{self, Received, UploadError};
use crate::state::AppState;
use crate::store::imports::{self as store, NewImport};
use crate::web::layout::{Layout, render};
use crate::web::see_other;

#[derive(Template)]
#[template(path = "imports/upload.html")]
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
    /// The refused upload came from the onboarding: another try stays its step.
    pub onboarding: bool,
}

/// The form, empty or (after a refused upload) with what was chosen and why it was refused.
async fn upload_page(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    fixed: Option<Arc<EntitySchema>>,
    sent: Option<&Received>,
    error: Option<String>,
) -> Result<UploadPage, AppError> {
    let title = match &fixed {
        Some(s) => format!("Import {}", s.label),
        None => "Upload".to_string(),
    };
    let sent_field = |name: &str, default: &str| {
        sent.and_then(|r| r.field(name)).map(str::to_string).unwrap_or_else(|| default.to_string())
    };
    let entity = match &fixed {
        Some(s) => s.name.clone(),
        None => sent_field("resource", ""),
    };
    Ok(UploadPage {
        l: Layout::for_user(req, id, title, "imports").await?,
        entities: state.schemas.all().iter().map(|s| (s.name.clone(), s.label.clone())).collect(),
        entity,
        fixed,
        name: sent_field("name", ""),
        duplicate_handling: sent_field("duplicate_handling", DuplicateHandling::IgnoreAll.as_str()),
        action: sent_field("action", Action::Merge.as_str()),
        limit: crate::config::format_size(state.settings.upload_limit),
        onboarding: sent.and_then(|r| r.field("onboarding")) == Some("1"),
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
    let mut page = upload_page(&req, &id, &state, None, None, None).await?;
    page.entity = state.schemas.get(&q.entity).map(|s| s.name.clone()).unwrap_or_default();
    Ok(render(StatusCode::OK, &page))
}

pub async fn entity_importer(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let schema = schema_of(&state, &path)?;
    id.require(Permission::ImportUpload)?;
    Ok(render(StatusCode::OK, &upload_page(&req, &id, &state, Some(schema), None, None).await?))
}

pub(crate) fn files_dir(state: &AppState, org: OrgId) -> PathBuf {
    state.files.dir(&format!("imports/{}", org.get()))
}

/// What the upload's fields ask for, checked.
struct Choices {
    schema: Arc<EntitySchema>,
    action: Action,
    handling: DuplicateHandling,
    chunk_size: i64,
}

fn choices(state: &AppState, r: &Received) -> Result<Choices, String> {
    let schema = r
        .field("resource")
        .and_then(|e| state.schemas.get(e))
        .cloned()
        .ok_or("Choose what to import: an entity type.")?;
    let handling = DuplicateHandling::parse(r.field("duplicate_handling").unwrap_or(""))?;
    let action = r.field("action").map(Action::parse).transpose()?.unwrap_or(Action::Merge);
    let chunk_size = parse_chunk_size(r.field("chunk_size"))?;
    Ok(Choices { schema, action, handling, chunk_size })
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id))]
pub async fn upload(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let refuse = |status: StatusCode, sent: Option<Received>, msg: String| {
        let (req, id, state) = (req.clone(), id.clone(), state.clone());
        async move {
            let page = upload_page(&req, &id, &state, None, sent.as_ref(), Some(msg)).await?;
            Ok::<HttpResponse, AppError>(render(status, &page))
        }
    };
    let received = match uploads::receive(payload, &files_dir(&state, id.org_id), state.settings.upload_limit).await {
        Ok(r) => r,
        Err(UploadError::TooLarge) => {
            let limit = crate::config::format_size(state.settings.upload_limit);
            let msg = format!("The file is larger than the upload limit of {limit}.");
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, None, msg).await;
        }
        Err(UploadError::Bad(m)) => return refuse(StatusCode::BAD_REQUEST, None, m).await,
        Err(UploadError::Internal(e)) => return Err(AppError::Internal(e)),
    };
    let c = match choices(&state, &received) {
        Ok(c) => c,
        Err(m) => {
            received.discard();
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, Some(received), m).await;
        }
    };
    let Some(file) = received.file.clone() else {
        let msg = "Choose a CSV or XLSX file to upload.".to_string();
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, Some(received), msg).await;
    };
    // a step of the onboarding takes a file when the page offers it one, not otherwise
    if received.field("onboarding") == Some("1")
        && let Some(why) = crate::web::onboarding::refuses_a_file(&req, &id, &state, &c.schema.name).await?
    {
        received.discard();
        return refuse(StatusCode::CONFLICT, Some(received), why).await;
    }
    let sheet = received.field("sheet").map(str::to_string);
    let how = How {
        name: received.field("name").unwrap_or(""),
        action: c.action,
        handling: c.handling,
        chunk_size: c.chunk_size,
    };
    let import_id = match create_import(&state, &id, &c.schema, &file, sheet, &how).await? {
        Ok(import_id) => import_id,
        Err(problem) => {
            received.discard();
            let msg = format!("{}: {problem}", file.original);
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, Some(received), msg).await;
        }
    };
    tracing::Span::current().record("import_id", import_id);
    // uploaded from the onboarding: the import is its entity type's step now
    if received.field("onboarding") == Some("1") {
        crate::store::onboarding::attach(&state.db, id.org_id, &c.schema.name, import_id, "", &id.email).await?;
    }
    let detail =
        format!("{}, {}, {}", file.original, crate::config::format_size(file.size.max(0) as u64), c.schema.label);
    crate::web::audit(&state, &req, &id, "import_uploaded", &format!("import {import_id}"), &detail).await?;
    Ok(see_other(format!("/settings/imports/{import_id}")))
}

/// How an import is to run, as its upload asked.
pub(crate) struct How<'a> {
    pub name: &'a str,
    pub action: Action,
    pub handling: DuplicateHandling,
    pub chunk_size: i64,
}

/// Creates an import of `file` (its `sheet`, for a workbook) for `schema`: the file is
/// recognized and its header read, a few values of each column kept for the mapping step,
/// and the columns matched to fields; the import waits at Mapping. The file's problem when
/// it cannot be read (nothing is created then).
pub(crate) async fn create_import(
    state: &AppState,
    id: &Identity,
    schema: &EntitySchema,
    file: &crate::files::uploads::StoredUpload,
    sheet: Option<String>,
    how: &How<'_>,
) -> Result<Result<i64, crate::files::FileProblem>, AppError> {
    let p2 = file.path.clone();
    let limits = state.settings.file_limits;
    // the header, a few values of each column and a profile of the first rows for the
    // mapping step
    let sniffed = web::block(move || {
        crate::files::sniff(&p2, sheet.as_deref(), &limits).map(|info| {
            let (samples, profile) = crate::files::samples::first_rows(&p2, &info);
            (info, samples, profile)
        })
    })
    .await
    .map_err(anyhow::Error::from)?;
    let (info, samples, profile) = match sniffed {
        Ok(i) => i,
        Err(problem) => return Ok(Err(problem)),
    };
    // kept where every instance reads it before the import names it
    let file_key = state.files.key_of(&file.path);
    let content_type = crate::domain::imports::content_type_of(&file.original);
    if let Err(e) = state.files.keep(&file_key, content_type, &crate::files::attachment(&file.original)).await {
        state.files.remove_file(&file_key).await;
        return Err(e.context("keeping the uploaded file").into());
    }
    let created = store::create(
        &state.db,
        id.org_id,
        &NewImport {
            entity: &schema.name,
            name: how.name,
            action: how.action,
            duplicate_handling: how.handling,
            file_name: &file.original,
            file_path: &file_key,
            file_size: file.size,
            checksum: &file.checksum,
            chunk_size: how.chunk_size,
            created_by: id.user_id.into(),
            upload_mode_sync: false,
            auto_start: false,
            created_by_label: &id.email,
        },
    )
    .await;
    let import_id = match created {
        Ok(import_id) => import_id,
        Err(e) => {
            // nothing names the kept file: it goes
            state.files.remove_file(&file_key).await;
            return Err(e.into());
        }
    };
    let sheet_name = match &info.format {
        crate::files::Format::Xlsx { sheet } => Some(sheet.as_str()),
        _ => None,
    };
    // the mapping the org last confirmed for these headers, else one matched by name with
    // the formats the columns' values seem to follow
    let key = headers_key(&info.headers);
    let (mapping, proposed) = match store::remembered_mapping(&state.db, id.org_id, &schema.name, &key).await? {
        Some(r) => fit_remembered(schema, &info.headers, &r.mapping, &r.options),
        None => {
            let mapping = auto_map_schema(schema, &info.headers);
            let xlsx = matches!(info.format, crate::files::Format::Xlsx { .. });
            let proposed = proposed_options(schema, &info.headers, &mapping, &profile, xlsx);
            (mapping, proposed)
        }
    };
    let columns = store::FileColumns {
        headers: &info.headers,
        mapping: &mapping,
        proposed: &proposed,
        sheet: sheet_name,
        samples: &samples,
        profile: &profile,
    };
    store::set_headers(&state.db, import_id, &columns).await?;
    state.files.release(&file_key).await;
    Ok(Ok(import_id))
}
