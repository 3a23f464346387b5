//! `/settings/imports/{id}`: the import's detail sheet. The page ([`DetailPage`]) is the
//! layout around the sheet ([`DetailSheet`]); while background work changes the import,
//! the sheet polls itself through htmx and an htmx request gets the sheet alone. Without
//! JavaScript a reload shows the same state.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::mapping_view::{ColumnGuesses, Draft, FormatChoice, ValueList, column_guesses, format_choice, value_list};
use super::{PER_PAGE, label_of, load, page_of, target_of};
use crate::auth::Identity;
use crate::auth::session::AppSession;
use crate::domain::entities::{EntitySchema, display_value};
use crate::domain::imports::{Action, Import, MappingWarning, Phase, PhaseStatus, Stage};
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
    pub phase: Phase,
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
    /// A few values of the chosen column ("A1 · A2 · A3"), empty when none is chosen.
    pub sample: String,
    /// For date, datetime and decimal fields: the column's format.
    pub format: Option<FormatChoice>,
    /// For enum fields: the column's values that are not allowed values.
    pub values: Option<ValueList>,
}

/// A column of the file as the mapping form offers it.
pub struct HeaderOption {
    pub header: String,
    /// A few of its values from the first rows, or a note that they were empty.
    pub sample: String,
    /// What its values look like as a date, datetime or decimal column.
    pub guesses: ColumnGuesses,
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

/// Where validation is, for the page while it runs.
pub struct ValidationProgress {
    /// The step running now, from 1.
    pub step: usize,
    pub steps: usize,
    /// What it is doing, in words.
    pub doing: &'static str,
    /// Rows of the file read so far.
    pub rows_read: i64,
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
    /// The file's columns with a few values of each, for the mapping form's choices.
    pub header_options: Vec<HeaderOption>,
    /// What the mapping step warns about (shown while the import is at Mapping).
    pub mapping_warnings: Vec<MappingWarning>,
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
    /// The import is a step of the onboarding workflow.
    pub onboarding: bool,
    /// The mapping was proposed as the org last confirmed it for the same headers: which
    /// import, and when.
    pub remembered: Option<String>,
    /// Rows left out with errors, to fix in the grid while the import is ready.
    pub fixable_rows: i64,
    /// Rows edited in the grid since the last validation.
    pub edited_rows: i64,
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

    /// The required-fields warning's text, if the mapping leaves one without a column.
    pub fn required_warning(&self) -> Option<String> {
        self.mapping_warnings.iter().find(|w| w.is_required()).map(|w| w.text())
    }

    /// Where validation is: the first validating phase not completed yet, and the rows
    /// read so far. None before the first phase starts and after the last one ends.
    pub fn validation_progress(&self) -> Option<ValidationProgress> {
        validation_progress(&self.phases)
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

/// See [`DetailView::validation_progress`].
fn validation_progress(phases: &[PhaseView]) -> Option<ValidationProgress> {
    let of = |phase: Phase| phases.iter().find(|p| p.phase == phase);
    let rows_read = of(Phase::Prevalidation).map(|p| p.rows_in).unwrap_or(0);
    let at = Phase::VALIDATING.iter().position(|ph| of(*ph).is_none_or(|p| p.status != PhaseStatus::Completed))?;
    let started = Phase::VALIDATING.iter().any(|ph| of(*ph).is_some_and(|p| p.status != PhaseStatus::NotStarted));
    started.then(|| ValidationProgress {
        step: at + 1,
        steps: Phase::VALIDATING.len(),
        doing: Phase::VALIDATING[at].doing(),
        rows_read,
    })
}

fn phase_views(stored: &[phases::PhaseRow]) -> Vec<PhaseView> {
    Phase::ALL
        .iter()
        .map(|p| {
            let row = stored.iter().find(|r| r.phase == p.as_str());
            PhaseView {
                phase: *p,
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
    draft: Option<Draft>,
) -> Result<DetailView, AppError> {
    let schema = state.schemas.get(&imp.entity).cloned();
    let (shown, shown_options, mapping_error) = match draft {
        Some(d) => (d.mapping, d.options, Some(d.error)),
        None => (imp.mapping.clone(), imp.options.clone(), None),
    };
    let at_mapping = matches!(imp.stage, Stage::Mapping | Stage::Ready);
    let profile =
        if at_mapping { crate::store::imports::column_profile(&state.db, imp.id).await? } else { Default::default() };
    let header_options: Vec<HeaderOption> = if at_mapping {
        let samples = crate::store::imports::column_samples(&state.db, imp.id).await?;
        let mut guesses = column_guesses(&imp, &profile).into_iter();
        imp.headers
            .iter()
            .enumerate()
            .map(|(i, h)| HeaderOption {
                header: h.clone(),
                sample: match samples.get(i) {
                    Some(values) if !values.is_empty() => values.join(" · "),
                    Some(_) => "(empty in the first rows)".into(),
                    None => String::new(),
                },
                guesses: guesses.next().unwrap_or_default(),
            })
            .collect()
    } else {
        vec![]
    };
    let mapping = schema
        .iter()
        .flat_map(|s| s.fields.iter().map(move |f| (s, f)))
        .map(|(s, f)| {
            let header = shown.get(f.name()).cloned().unwrap_or_default();
            MappingLine {
                field: f.name().to_string(),
                label: f.label.clone(),
                required: imp.field_required(s, f.name()),
                sample: header_options
                    .iter()
                    .find(|o| o.header == header)
                    .map(|o| o.sample.clone())
                    .unwrap_or_default(),
                format: at_mapping.then(|| format_choice(&imp, f, &header, &shown_options, &profile)).flatten(),
                values: at_mapping.then(|| value_list(&imp, f, &header, &shown_options, &profile)).flatten(),
                header,
            }
        })
        .collect();
    let remembered = match imp.stage {
        Stage::Mapping if mapping_error.is_none() => {
            let key = crate::domain::imports::mapping::headers_key(&imp.headers);
            crate::store::imports::remembered_mapping(&state.db, id.org_id, &imp.entity, &key)
                .await?
                .filter(|r| r.import_id != imp.id && r.updated_at <= imp.created_at)
                .map(|r| {
                    format!(
                        "Columns and formats are proposed as they were confirmed for import {} on {}, a file with the same columns.",
                        r.import_id,
                        format_time(r.updated_at)
                    )
                })
        }
        _ => None,
    };
    let mapping_warnings = match (&schema, imp.stage) {
        // a submitted mapping's problem is already said by its error
        (Some(s), Stage::Mapping) if mapping_error.is_none() => imp.mapping_warnings(s, &shown),
        _ => vec![],
    };
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
        header_options,
        mapping_warnings,
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
        remembered,
        fixable_rows: match imp.stage {
            Stage::Ready => crate::store::imports::edits::count_rows_left_out(&state.db, imp.id, None).await?,
            _ => 0,
        },
        edited_rows: match imp.stage {
            Stage::Ready => crate::store::imports::edits::rows_edited_since_validation(&state.db, imp.id).await?,
            _ => 0,
        },
        onboarding: crate::store::onboarding::step_of_import(&state.db, id.org_id, imp.id).await?.is_some(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn phases(running: Option<Phase>, done: &[Phase], rows_read: i64) -> Vec<PhaseView> {
        let stored: Vec<phases::PhaseRow> = done
            .iter()
            .map(|p| (p, "completed"))
            .chain(running.iter().map(|p| (p, "running")))
            .map(|(p, status)| phases::PhaseRow {
                phase: p.as_str().into(),
                status: status.into(),
                started_at: Some(1),
                finished_at: None,
                duration_ms: None,
                rows_in: if *p == Phase::Prevalidation { rows_read } else { 0 },
                rows_out: 0,
                detail: String::new(),
            })
            .collect();
        phase_views(&stored)
    }

    #[test]
    fn validation_progress_names_the_step_and_the_rows_read_so_far() {
        assert!(validation_progress(&phases(None, &[], 0)).is_none(), "not started: waiting for a worker");
        let reading = validation_progress(&phases(Some(Phase::Prevalidation), &[], 12_000)).unwrap();
        assert_eq!((reading.step, reading.steps, reading.doing, reading.rows_read), (1, 5, "Reading the file", 12_000));
        let done = [Phase::Prevalidation, Phase::Preparsing, Phase::Transforming];
        let parsing = validation_progress(&phases(Some(Phase::Parsing), &done, 40_000)).unwrap();
        assert_eq!(
            (parsing.step, parsing.doing, parsing.rows_read),
            (4, "Checking every value against its field", 40_000)
        );
        let between = validation_progress(&phases(None, &done, 40_000)).unwrap();
        assert_eq!(between.step, 4, "between two phases: the next one");
        let all = Phase::VALIDATING;
        assert!(validation_progress(&phases(None, &all, 40_000)).is_none(), "validated");
    }
}
