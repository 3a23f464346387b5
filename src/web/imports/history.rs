//! `/settings/imports`: Import History, newest first, filterable by status and entity
//! type, with Roll back where an import can be rolled back.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{PER_PAGE, label_of};
use crate::auth::Identity;
use crate::domain::imports::history::{self, Cursor};
use crate::domain::imports::{Import, Stage};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::imports::{self as store, ListFilter};
use crate::web::Grouped;
use crate::web::layout::{Layout, render};
use crate::web::{Pagination, format_time};

pub struct HistoryRow {
    pub id: i64,
    pub entity: String,
    pub name: String,
    pub status: &'static str,
    pub badge: &'static str,
    /// Rolled back: what it imported was undone (the count stays what it did).
    pub undone: bool,
    pub total: i64,
    pub imported: i64,
    /// Repeated within the file or identical to the stored record; with imported and
    /// failed it adds up to the total.
    pub skipped: i64,
    pub failed: i64,
    pub created_by: String,
    pub created_at: String,
    pub can_roll_back: bool,
}

#[derive(Template)]
#[template(path = "imports/history.html")]
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
    /// The next page: imports older than this cursor.
    before: Option<String>,
    /// The previous page: imports newer than this cursor.
    after: Option<String>,
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn history(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let stage = Stage::parse(&q.stage);
    let entity = state.schemas.get(&q.entity).map(|s| s.name.clone());
    let filter = ListFilter {
        stages: stage.as_slice(),
        entity: entity.as_deref(),
        created_after: None,
        created_before: None,
        pending_with_file: None,
        newer_than: None,
    };
    let total = store::count(&state.db, id.org_id, &filter).await?;
    let (stage, entity) =
        (stage.map(|s| s.as_str().to_string()).unwrap_or_default(), entity.clone().unwrap_or_default());
    let base = format!(
        "/settings/imports?{}",
        serde_urlencoded::to_string([("stage", &stage), ("entity", &entity)]).unwrap_or_default()
    );
    let cursor = Cursor::from_query(q.before.as_deref(), q.after.as_deref());
    let (imports, more) = store::list(&state.db, id.org_id, &filter, cursor, PER_PAGE).await?;
    // the page number only labels the page; the cursor says where it starts
    let page = if cursor == Cursor::First { 1 } else { q.page.unwrap_or(1).max(1) };
    let (has_prev, has_next) = history::neighbours(cursor, more);
    let link = |key: &str, i: &Import, page: i64| {
        if page <= 1 {
            base.trim_end_matches(['?', '&']).to_string()
        } else {
            format!("{base}&{key}={}&page={page}", history::token(i.created_at, i.id))
        }
    };
    let prev = imports.first().filter(|_| has_prev).map(|i| link("after", i, page - 1));
    let next = imports.last().filter(|_| has_next).map(|i| link("before", i, page + 1));
    let pagination = Pagination::keyset(page, PER_PAGE, total, prev, next);
    let rows = imports
        .into_iter()
        .map(|i| HistoryRow {
            id: i.id,
            entity: label_of(&state, &i.entity),
            name: i.title().to_string(),
            status: i.status_label(),
            badge: i.status_badge(),
            undone: i.stage == Stage::RolledBack,
            total: i.validated.total_rows,
            imported: i.changed_rows(),
            skipped: i.skipped_rows(),
            failed: i.not_imported_rows(),
            created_by: i.created_by_label.clone(),
            created_at: format_time(i.created_at),
            can_roll_back: i.can_roll_back(),
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
