//! `/{entity}`: an entity type's records (paginated, searchable, with a total), its field
//! reference, and `/{entity}/template.csv`, the blank CSV template for the importer.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::Pagination;
use super::layout::{Layout, render};
use crate::auth::Identity;
use crate::domain::entities::{EntitySchema, display_value};
use crate::error::AppError;
use crate::state::AppState;
use crate::store;

const PER_PAGE: i64 = 25;
/// How many fields the list shows as columns (the rest are in the field reference).
const COLUMNS: usize = 6;

pub struct RowView {
    pub cells: Vec<String>,
}

pub struct FieldView {
    pub name: String,
    pub label: String,
    pub kind: &'static str,
    pub format: &'static str,
    pub required: bool,
    pub constraints: String,
}

#[derive(Template)]
#[template(path = "entity_list.html")]
pub struct EntityListPage {
    pub l: Layout,
    pub schema: Arc<EntitySchema>,
    pub columns: Vec<String>,
    pub rows: Vec<RowView>,
    pub fields: Vec<FieldView>,
    pub q: String,
    pub pagination: Pagination,
    pub can_import: bool,
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    page: Option<i64>,
}

fn schema_of(state: &AppState, name: &str) -> Result<Arc<EntitySchema>, AppError> {
    state.schemas.get(name).cloned().ok_or(AppError::NotFound)
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn list(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let schema = schema_of(&state, &path)?;
    let q = query.q.as_deref().map(str::trim).unwrap_or_default().to_string();
    let search = (!q.is_empty()).then_some(q.as_str());
    let total = match search {
        Some(_) => store::records::count(&state.db, id.org_id, &schema.name, search).await?,
        None => state.record_counts.count(&state.db, id.org_id, &schema.name).await?,
    };
    let base = if q.is_empty() {
        format!("/{}", schema.name)
    } else {
        format!("/{}?{}", schema.name, serde_urlencoded::to_string([("q", &q)]).unwrap_or_default())
    };
    let pagination = Pagination::new(query.page, PER_PAGE, total, &base);
    let shown: Vec<_> = schema.fields.iter().take(COLUMNS).collect();
    let rows = store::records::list(&state.db, id.org_id, &schema.name, search, PER_PAGE, pagination.offset())
        .await?
        .into_iter()
        .map(|r| {
            let data: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r.data).unwrap_or_default();
            let cells = shown.iter().map(|f| data.get(f.name()).map(display_value).unwrap_or_default()).collect();
            RowView { cells }
        })
        .collect();
    let fields = schema
        .fields
        .iter()
        .map(|f| FieldView {
            name: f.name().to_string(),
            label: f.label.clone(),
            kind: f.kind().label(),
            format: f.kind().format_hint(),
            required: f.required(),
            constraints: f.constraints(),
        })
        .collect();
    let page = EntityListPage {
        l: Layout::for_user(&req, &id, schema.label.clone(), &schema.name).await?,
        columns: shown.iter().map(|f| f.label.clone()).collect(),
        rows,
        fields,
        q,
        pagination,
        can_import: id.can(crate::domain::permissions::Permission::ImportUpload),
        schema,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The blank template: one header row, exactly the schema's field names.
#[tracing::instrument(skip_all)]
pub async fn template(
    _id: Identity,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let schema = schema_of(&state, &path)?;
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(schema.header()).map_err(anyhow::Error::from)?;
    let body = w.into_inner().map_err(|e| anyhow::anyhow!("writing template: {e}"))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}-template.csv\"", schema.name)))
        .body(body))
}
