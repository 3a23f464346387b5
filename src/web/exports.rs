//! `/settings/exports` (seed 002): the org's export requests, New Export, Download through a
//! link signed for an hour, Delete.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use super::{Pagination, format_time};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::exports::{ExportType, Format, LINK_SECS, Status, sign, verify};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::jobs::export as export_jobs;
use crate::startup::AppState;
use crate::store::exports::{self as store, ExportRow, NewExport};

const PER_PAGE: i64 = 25;

pub struct ExportView {
    pub id: i64,
    pub export_type: String,
    pub format: String,
    pub entities: String,
    pub status: Status,
    pub requested_at: String,
    pub requested_by: String,
    pub size: String,
    pub rows: i64,
    pub reason: String,
    pub range: String,
}

fn view(state: &AppState, r: ExportRow) -> ExportView {
    let names: Vec<String> = serde_json::from_str(&r.entity_types).unwrap_or_default();
    let labels: Vec<String> =
        names.iter().map(|n| state.schemas.get(n).map(|s| s.label.clone()).unwrap_or_else(|| n.clone())).collect();
    let day = |t: i64| format_time(t).split(' ').next().unwrap_or_default().to_string();
    let range = match (r.date_from, r.date_to) {
        (None, None) => String::new(),
        (Some(f), None) => format!("from {}", day(f)),
        (None, Some(t)) => format!("until {}", day(t)),
        (Some(f), Some(t)) => format!("{} – {}", day(f), day(t)),
    };
    ExportView {
        id: r.id,
        export_type: ExportType::parse(&r.export_type).map(ExportType::label).unwrap_or_default().to_string(),
        format: r.format.to_uppercase(),
        entities: labels.join(", "),
        status: Status::parse(&r.status),
        requested_at: format_time(r.requested_at),
        requested_by: r.requested_by_label,
        size: r.file_size.map(|n| crate::config::format_size(n.max(0) as u64)).unwrap_or_default(),
        rows: r.row_count,
        reason: r.reason,
        range,
    }
}

#[derive(Template)]
#[template(path = "exports.html")]
pub struct ExportsPage {
    pub l: Layout,
    pub rows: Vec<ExportView>,
    pub pagination: Pagination,
    pub can_create: bool,
    pub any_active: bool,
    pub entities: Vec<(String, String)>,
    pub form: ExportForm,
    pub form_open: bool,
    pub error: Option<String>,
}

/// What the New Export dialog holds (kept when it is shown again with an error).
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

#[derive(Deserialize)]
pub struct ListQuery {
    page: Option<i64>,
    new: Option<String>,
}

async fn page(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    page: Option<i64>,
    form: ExportForm,
    form_open: bool,
    error: Option<String>,
) -> Result<ExportsPage, AppError> {
    let total = store::count(&state.db, id.org_id).await?;
    let pagination = Pagination::new(page, PER_PAGE, total, "/settings/exports");
    let rows: Vec<ExportView> = store::list(&state.db, id.org_id, PER_PAGE, pagination.offset())
        .await?
        .into_iter()
        .map(|r| view(state, r))
        .collect();
    Ok(ExportsPage {
        l: Layout::for_user(req, id, "Data Exports", "exports").await?,
        any_active: rows.iter().any(|r| r.status.is_active()),
        rows,
        pagination,
        can_create: id.can(Permission::ExportRequestsCreate),
        entities: state.schemas.all().iter().map(|s| (s.name.clone(), s.label.clone())).collect(),
        form,
        form_open,
        error,
    })
}

pub async fn list(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ExportRequestsView)?;
    let form = ExportForm { export_type: "entity_data".into(), format: "csv".into(), ..ExportForm::default() };
    let open = q.new.is_some() && id.can(Permission::ExportRequestsCreate);
    let p = page(&req, &id, &state, q.page, form, open, None).await?;
    Ok(render(StatusCode::OK, &p))
}

/// A YYYY-MM-DD day as the epoch seconds of its start (or its end, for `end`).
fn day(raw: &str, end: bool) -> Result<Option<i64>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let date = time::Date::parse(raw, &time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("\"{raw}\" is not a date (expected YYYY-MM-DD)."))?;
    let start = date.midnight().assume_utc().unix_timestamp();
    Ok(Some(if end { start + 86_399 } else { start }))
}

pub async fn create(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ExportRequestsCreate)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let form = ExportForm {
        export_type: field("export_type"),
        format: field("format"),
        entities: pairs.iter().filter(|(k, _)| k == "entity_types").map(|(_, v)| v.clone()).collect(),
        date_from: field("date_from"),
        date_to: field("date_to"),
    };
    let checked = (|| -> Result<(ExportType, Format, Option<i64>, Option<i64>), String> {
        let kind = ExportType::parse(&form.export_type).ok_or("Choose what to export.")?;
        let format = Format::parse(&form.format).ok_or("Choose a format: CSV, XLSX or JSON.")?;
        if kind == ExportType::EntityData {
            if form.entities.is_empty() {
                return Err("Choose at least one entity type to export.".into());
            }
            if let Some(unknown) = form.entities.iter().find(|e| state.schemas.get(e).is_none()) {
                return Err(format!("\"{unknown}\" is not an entity type."));
            }
        }
        let (from, to) = (day(&form.date_from, false)?, day(&form.date_to, true)?);
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err("The start of the date range is after its end.".into());
        }
        Ok((kind, format, from, to))
    })();
    let (kind, format, from, to) = match checked {
        Ok(v) => v,
        Err(msg) => {
            let p = page(&req, &id, &state, None, form, true, Some(msg)).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p));
        }
    };
    let entities = if kind == ExportType::EntityData { form.entities.clone() } else { vec![] };
    let today = format_time(crate::now()).split(' ').next().unwrap_or_default().to_string();
    let stem = match (kind, entities.as_slice()) {
        (ExportType::EntityData, [one]) => one.clone(),
        (ExportType::EntityData, _) => "entities".into(),
        (ExportType::ImportHistory, _) => "import-history".into(),
        (ExportType::AuditLog, _) => "audit-log".into(),
    };
    let ext = if entities.len() > 1 && format != Format::Xlsx { "zip" } else { format.extension() };
    let file_name = format!("{stem}-{today}.{ext}");
    let dir = state.settings.db.data_dir.join("files").join("exports").join(id.org_id.get().to_string());
    let new = NewExport {
        export_type: kind.as_str(),
        format: format.as_str(),
        entity_types: &serde_json::to_string(&entities).map_err(anyhow::Error::from)?,
        date_from: from,
        date_to: to,
        file_dir: &dir.to_string_lossy(),
        file_name: &file_name,
        by: id.user_id,
        by_label: &id.email,
    };
    let export_id = store::create(&state.db, id.org_id, &new).await?;
    export_jobs::enqueue(&state.db, id.org_id, export_id).await?;
    let detail = format!("{} {} {}", kind.as_str(), format.label(), entities.join(" "));
    super::audit(&state, &req, &id, "export_requested", &format!("export {export_id}"), detail.trim()).await?;
    Ok(super::see_other("/settings/exports"))
}

/// Download: a link to the file signed for an hour.
pub async fn download(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ExportRequestsView)?;
    let r = store::get(&state.db, id.org_id, path.into_inner()).await?.ok_or(AppError::NotFound)?;
    if Status::parse(&r.status) != Status::Completed {
        return Err(AppError::Conflict(format!(
            "This export is {}; only a completed export can be downloaded.",
            Status::parse(&r.status).label().to_lowercase()
        )));
    }
    let to = match r.object_key.as_deref() {
        // in a bucket: the bucket's own URL, signed for the same hour
        Some(key) => state.files.presigned(key, LINK_SECS as u64).await?,
        None => {
            let expires = crate::now() + LINK_SECS;
            let sig = sign(&state.link_key, &r.file_path, r.org_id, expires);
            format!("/exports/{}/file?expires={expires}&sig={sig}", r.id)
        }
    };
    super::audit(&state, &req, &id, "export_downloaded", &format!("export {}", r.id), &r.file_name).await?;
    Ok(super::see_other(to))
}

#[derive(Deserialize)]
pub struct LinkQuery {
    expires: Option<i64>,
    sig: Option<String>,
}

#[derive(Template)]
#[template(path = "link_expired.html")]
pub struct LinkExpiredPage {
    pub l: Layout,
}

/// The signed link itself: the file streams to whoever holds a valid, unexpired link.
pub async fn file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<LinkQuery>,
) -> Result<HttpResponse, AppError> {
    let refused = || -> Result<HttpResponse, AppError> {
        Ok(render(StatusCode::FORBIDDEN, &LinkExpiredPage { l: Layout::anonymous(&req, "Link expired")? }))
    };
    let (Some(expires), Some(sig)) = (q.expires, q.sig.as_deref()) else { return refused() };
    let Some(r) = store::by_id(&state.db, path.into_inner()).await? else { return refused() };
    if !verify(&state.link_key, &r.file_path, r.org_id, expires, sig, crate::now())
        || Status::parse(&r.status) != Status::Completed
    {
        return refused();
    }
    if let Some(key) = r.object_key.as_deref() {
        // the file moved to a bucket after the link was made: on to the bucket's link
        let to = state.files.presigned(key, (expires - crate::now()).max(1) as u64).await?;
        return Ok(super::see_other(to));
    }
    let Ok(file) = tokio::fs::File::open(&r.file_path).await else { return refused() };
    let stream = super::file_stream(file);
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, export_jobs::content_type(&r)))
        .insert_header((header::CONTENT_DISPOSITION, crate::files::attachment(&r.file_name)))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .streaming(stream))
}

/// Delete: the history entry and its file; records are never touched.
pub async fn delete(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ExportRequestsCreate)?;
    let r = store::get(&state.db, id.org_id, path.into_inner()).await?.ok_or(AppError::NotFound)?;
    if store::delete(&state.db, id.org_id, r.id).await? {
        state.files.discard(&r.file_path, r.object_key.as_deref()).await;
        super::audit(&state, &req, &id, "export_deleted", &format!("export {}", r.id), &r.file_name).await?;
        let text = format!("Export #{} deleted.", r.id);
        session.set_flash(&Flash { kind: "success".into(), text, secret: None })?;
    }
    Ok(super::see_other("/settings/exports"))
}
