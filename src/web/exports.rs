//! `/settings/exports` (seed 002): the org's export requests, New Export, Download through a
//! link signed for an hour, Delete.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use super::{Grouped, Pagination, format_day, format_time, is_htmx};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::exports::{ExportForm, ExportRequest, ExportType, LINK_SECS, Status, sign, verify};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::jobs::export as export_jobs;
use crate::state::AppState;
use crate::store::exports::{self as store, ExportRow, NewExport};

const PER_PAGE: i64 = 25;

/// One export request as a row of the list.
pub struct RowView {
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
    /// The date range in pieces that wrap between them, never inside a date.
    pub range: Vec<String>,
}

fn row_view(state: &AppState, r: ExportRow) -> RowView {
    let names: Vec<String> = serde_json::from_str(&r.entity_types).unwrap_or_default();
    let labels: Vec<String> =
        names.iter().map(|n| state.schemas.get(n).map(|s| s.label.clone()).unwrap_or_else(|| n.clone())).collect();
    let day = format_day;
    let range = match (r.date_from, r.date_to) {
        (None, None) => vec![],
        (Some(f), None) => vec![format!("from {}", day(f))],
        (None, Some(t)) => vec![format!("until {}", day(t))],
        (Some(f), Some(t)) => vec![format!("{} –", day(f)), day(t)],
    };
    RowView {
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

/// The list of export requests, as the page and its refresh (htmx) show it.
pub struct ExportsView {
    pub rows: Vec<RowView>,
    pub pagination: Pagination,
    pub can_create: bool,
    /// Some export is pending or processing: the list refreshes itself.
    pub any_active: bool,
    /// This page of the list, where it refreshes from.
    pub url: String,
    /// For the Delete dialogs' forms.
    pub csrf: String,
}

impl ExportsView {
    async fn load(req: &HttpRequest, id: &Identity, state: &AppState, page: Option<i64>) -> Result<Self, AppError> {
        let total = store::count(&state.db, id.org_id).await?;
        let pagination = Pagination::new(page, PER_PAGE, total, "/settings/exports");
        let rows: Vec<RowView> = store::list(&state.db, id.org_id, PER_PAGE, pagination.offset())
            .await?
            .into_iter()
            .map(|r| row_view(state, r))
            .collect();
        let url = if pagination.page > 1 { pagination.href(pagination.page) } else { pagination.base.clone() };
        Ok(ExportsView {
            any_active: rows.iter().any(|r| r.status.is_active()),
            rows,
            pagination,
            can_create: id.can(Permission::ExportRequestsCreate),
            url,
            csrf: AppSession::from_request_ref(req).csrf_token()?,
        })
    }
}

/// `/settings/exports`: the frame, the list, and the New Export dialog.
#[derive(Template)]
#[template(path = "exports/list.html")]
pub struct ExportsPage {
    pub l: Layout,
    pub v: ExportsView,
    pub entities: Vec<(String, String)>,
    pub form: ExportForm,
    pub form_open: bool,
    pub error: Option<String>,
}

/// The list alone, for htmx's refresh (and the Refresh button's state beside it).
#[derive(Template)]
#[template(path = "exports/list_rows_partial.html")]
pub struct ExportsRows {
    pub v: ExportsView,
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
    v: ExportsView,
    form: ExportForm,
    form_open: bool,
    error: Option<String>,
) -> Result<ExportsPage, AppError> {
    Ok(ExportsPage {
        l: Layout::for_user(req, id, "Data Exports", "exports").await?,
        v,
        entities: state.schemas.all().iter().map(|s| (s.name.clone(), s.label.clone())).collect(),
        form,
        form_open,
        error,
    })
}

/// Renders with `Vary: HX-Request`: the same URL answers a page or, to htmx, a partial.
fn varying<T: Template>(t: &T) -> HttpResponse {
    let mut res = render(StatusCode::OK, t);
    res.headers_mut().insert(header::VARY, header::HeaderValue::from_static("HX-Request"));
    res
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get()))]
pub async fn list(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ExportRequestsView)?;
    let v = ExportsView::load(&req, &id, &state, q.page).await?;
    if is_htmx(&req) {
        return Ok(varying(&ExportsRows { v }));
    }
    let form = ExportForm { export_type: "entity_data".into(), format: "csv".into(), ..ExportForm::default() };
    let open = q.new.is_some() && id.can(Permission::ExportRequestsCreate);
    let p = page(&req, &id, &state, v, form, open, None).await?;
    Ok(varying(&p))
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), export_id))]
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
    let request = match ExportRequest::parse(&form, |e| state.schemas.get(e).is_some()) {
        Ok(r) => r,
        Err(e) => {
            let v = ExportsView::load(&req, &id, &state, None).await?;
            let p = page(&req, &id, &state, v, form, true, Some(e.to_string())).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p));
        }
    };
    let today = format_day(crate::now());
    let file_name = request.file_name(&today);
    let dir = state.settings.db.data_dir.join("files").join("exports").join(id.org_id.get().to_string());
    let new = NewExport {
        export_type: request.kind().as_str(),
        format: request.format().as_str(),
        entity_types: &serde_json::to_string(request.entities()).map_err(anyhow::Error::from)?,
        date_from: request.date_from(),
        date_to: request.date_to(),
        file_dir: &dir.to_string_lossy(),
        file_name: &file_name,
        by: id.user_id,
        by_label: &id.email,
    };
    let export_id = store::create(&state.db, id.org_id, &new).await?;
    tracing::Span::current().record("export_id", export_id);
    export_jobs::enqueue(&state.db, id.org_id, export_id).await?;
    let mut detail = format!("{}, {}", request.kind().label(), request.format().label());
    if !request.entities().is_empty() {
        let labels: Vec<String> = request
            .entities()
            .iter()
            .map(|e| state.schemas.get(e).map(|s| s.label.clone()).unwrap_or_else(|| e.to_string()))
            .collect();
        detail = format!("{detail}: {}", labels.join(", "));
    }
    super::audit(&state, &req, &id, "export_requested", &format!("export {export_id}"), &detail).await?;
    Ok(super::see_other("/settings/exports"))
}

/// Download: a link to the file signed for an hour.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), export_id = *path))]
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

#[derive(Template)]
#[template(path = "exports/link_expired.html")]
pub struct LinkExpiredPage {
    pub l: Layout,
}

/// The signed link itself: the file streams to whoever holds a valid, unexpired link.
#[tracing::instrument(skip_all, fields(org_id, export_id = *path))]
pub async fn file(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let refused = || -> Result<HttpResponse, AppError> {
        Ok(render(StatusCode::FORBIDDEN, &LinkExpiredPage { l: Layout::anonymous(&req, "Link expired")? }))
    };
    let Some((expires, sig)) = crate::domain::exports::link_query(req.query_string()) else { return refused() };
    let sig = sig.as_str();
    let Some(r) = store::by_id(&state.db, path.into_inner()).await? else { return refused() };
    tracing::Span::current().record("org_id", r.org_id);
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
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), export_id = *path))]
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
