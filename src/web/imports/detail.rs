//! `/settings/imports/{id}`: the import's detail sheet. The page ([`DetailPage`]) is the
//! layout around the sheet ([`DetailSheet`]); while background work changes the import,
//! the sheet polls itself through htmx and an htmx request gets the sheet alone. Without
//! JavaScript a reload shows the same state.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{PER_PAGE, label_of, load, page_of, target_of};
use crate::auth::Identity;
use crate::auth::session::AppSession;
use crate::domain::entities::{EntitySchema, display_value};
use crate::domain::imports::{Action, ColumnMapping, Import, Phase, PhaseStatus, Stage};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::imports::phases;
use crate::store::journal::{self, Changed};
use crate::web::Grouped;
use crate::web::audit::EventView;
use crate::web::layout::{Layout, render};
use crate::web::{Pagination, format_time, is_htmx};

pub struct PhaseView {
    pub name: &'static str,
    pub description: &'static str,
    pub status: PhaseStatus,
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

/// Another import of the same file (same MD5) in the org.
pub struct SameFileView {
    pub id: i64,
    pub title: String,
    pub status: &'static str,
    pub badge: &'static str,
    pub created_at: String,
    pub created_by: String,
}

/// What a rollback would undo.
pub struct RollbackView {
    /// Records changed since the import (the first few) and how many there are.
    pub changed: Vec<Changed>,
    pub changed_count: i64,
}

/// Everything the sheet shows.
pub struct DetailView {
    pub imp: Import,
    pub csrf: String,
    pub entity_label: String,
    pub mapping: Vec<MappingLine>,
    pub mapping_error: Option<String>,
    pub phases: Vec<PhaseView>,
    pub issues: Vec<IssueView>,
    pub issue_count: i64,
    pub pagination: Pagination,
    pub sample_columns: Vec<String>,
    pub sample: Vec<Vec<String>>,
    pub created_at: String,
    /// Roll back is offered (a finished import not rolled back yet).
    pub rollback: Option<RollbackView>,
    /// Open the rollback dialog at load (`?rollback=1`, from Import History).
    pub rollback_open: bool,
    /// Open the overwrite confirmation at load.
    pub confirm_open: bool,
    /// Open the Discard confirmation at load (`?discard=1`).
    pub discard_open: bool,
    /// The file's size in words (`2.1 KiB`).
    pub file_size: String,
    /// The org's other imports of this file, shown until this one starts (the first few).
    pub same_file: Vec<SameFileView>,
    /// The import's audit events, newest first.
    pub events: Vec<EventView>,
    /// Days an import's journal and original file are kept.
    pub retention_days: i64,
}

impl DetailView {
    pub fn time(&self, at: &i64) -> String {
        format_time(*at)
    }

    /// Validation has counted the rows: before that, counts would be zeros that mean nothing.
    pub fn validated(&self) -> bool {
        self.imp.validated.total_rows > 0
            || matches!(self.imp.stage, Stage::Ready | Stage::Importing | Stage::Completed | Stage::RolledBack)
    }

    /// Some phase has started: before that, the phases table would be a list of "Not started".
    pub fn any_phase_started(&self) -> bool {
        self.phases.iter().any(|p| p.status != PhaseStatus::NotStarted)
    }
}

/// The whole page.
#[derive(Template)]
#[template(path = "imports/detail.html")]
pub struct DetailPage {
    pub l: Layout,
    pub v: DetailView,
}

/// The sheet alone, for htmx's polling.
#[derive(Template)]
#[template(path = "imports/detail_sheet.html")]
pub struct DetailSheet {
    pub v: DetailView,
}

/// The shared partials (`pagination`, `events`) read the sheet's fields through these.
impl std::ops::Deref for DetailPage {
    type Target = DetailView;
    fn deref(&self) -> &DetailView {
        &self.v
    }
}

impl std::ops::Deref for DetailSheet {
    type Target = DetailView;
    fn deref(&self) -> &DetailView {
        &self.v
    }
}

#[derive(Deserialize)]
pub struct DetailQuery {
    page: Option<i64>,
    rollback: Option<String>,
    confirm: Option<String>,
    discard: Option<String>,
}

/// The first rows waiting to be imported, as they will be stored (from staging).
async fn sample_rows(
    db: &crate::store::Db,
    schema: &EntitySchema,
    imp: &Import,
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

fn phase_views(stored: &[phases::PhaseRow]) -> Vec<PhaseView> {
    Phase::ALL
        .iter()
        .map(|p| {
            let row = stored.iter().find(|r| r.phase == p.as_str());
            PhaseView {
                name: p.as_str(),
                description: p.description(),
                status: row.map(|r| PhaseStatus::parse(&r.status)).unwrap_or(PhaseStatus::NotStarted),
                duration: row
                    .and_then(|r| r.duration_ms)
                    .map(|ms| format!("{:.2} s", ms as f64 / 1000.0))
                    .unwrap_or_default(),
                rows_in: row.map(|r| r.rows_in).unwrap_or(0),
                rows_out: row.map(|r| r.rows_out).unwrap_or(0),
                detail: row.map(|r| r.detail.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The sheet's contents. `mapping_override` is a submitted mapping shown back with its
/// problem.
pub(super) async fn detail_view(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    imp: Import,
    page: Option<i64>,
    mapping_override: Option<(ColumnMapping, String)>,
) -> Result<DetailView, AppError> {
    let schema = state.schemas.get(&imp.entity).cloned();
    let (shown, mapping_error) = match mapping_override {
        Some((m, e)) => (m, Some(e)),
        None => (imp.mapping.clone(), None),
    };
    let mapping = schema
        .iter()
        .flat_map(|s| s.fields.iter().map(move |f| (s, f)))
        .map(|(s, f)| MappingLine {
            field: f.name().to_string(),
            label: f.label.clone(),
            required: imp.field_required(s, f.name()),
            header: shown.get(f.name()).cloned().unwrap_or_default(),
        })
        .collect();
    let phases = phase_views(&phases::phases(&state.db, imp.id).await?);
    let issue_count = phases::count_issues(&state.db, imp.id).await?;
    let pagination = Pagination::new(page, PER_PAGE, issue_count, &page_of(&imp));
    let issues = phases::issues(&state.db, imp.id, PER_PAGE, pagination.offset())
        .await?
        .into_iter()
        .map(|i| IssueView { row: i.row_number, kind: i.kind, message: i.message })
        .collect();
    let (sample_columns, sample) = match (&schema, imp.stage) {
        (Some(s), Stage::Ready) => sample_rows(&state.db, s, &imp).await.unwrap_or_default(),
        _ => (vec![], vec![]),
    };
    let rollback = if imp.can_roll_back() {
        let (changed, changed_count) = journal::changed_since(&state.db, &imp, 20).await?;
        Some(RollbackView { changed, changed_count })
    } else {
        None
    };
    let same_file = if matches!(imp.stage, Stage::Pending | Stage::Mapping | Stage::Validating | Stage::Ready) {
        crate::store::imports::same_file(&state.db, &imp, 3)
            .await?
            .into_iter()
            .map(|o| SameFileView {
                id: o.id,
                title: o.title().to_string(),
                status: o.status_label(),
                badge: o.status_badge(),
                created_at: format_time(o.created_at),
                created_by: o.created_by_label.clone(),
            })
            .collect()
    } else {
        vec![]
    };
    let events = crate::store::audit::for_target(&state.db, id.org_id, &target_of(&imp), 100)
        .await?
        .into_iter()
        .map(EventView::new)
        .collect();
    Ok(DetailView {
        csrf: AppSession::from_request_ref(req).csrf_token()?,
        entity_label: label_of(state, &imp.entity),
        mapping,
        mapping_error,
        phases,
        issues,
        issue_count,
        pagination,
        sample_columns,
        sample,
        created_at: format_time(imp.created_at),
        rollback,
        rollback_open: false,
        confirm_open: false,
        discard_open: false,
        retention_days: state.settings.import_retention_secs / 86_400,
        file_size: crate::config::format_size(imp.file.size.max(0) as u64),
        same_file,
        events,
        imp,
    })
}

/// The page around a sheet.
pub(super) async fn page(req: &HttpRequest, id: &Identity, v: DetailView) -> Result<DetailPage, AppError> {
    Ok(DetailPage { l: Layout::for_user(req, id, format!("Import {}", v.imp.id), "imports").await?, v })
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn detail(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<DetailQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let mut v = detail_view(&req, &id, &state, imp, q.page, None).await?;
    v.rollback_open = q.rollback.is_some() && v.rollback.is_some();
    v.confirm_open = q.confirm.is_some();
    v.discard_open = q.discard.is_some() && v.imp.can_discard();
    if is_htmx(&req) {
        return Ok(render(StatusCode::OK, &DetailSheet { v }));
    }
    Ok(render(StatusCode::OK, &page(&req, &id, v).await?))
}
