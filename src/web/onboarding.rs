//! `/settings/imports/onboarding`: seed 000's onboarding workflow. Every entity type is a
//! step, in the order their relationships need ([`crate::domain::onboarding::steps`]); each
//! step shows where its import is, offers its template and an upload, and may be skipped.
//! The state lives per org (`onboarding_steps`), so another owner picks it up where it
//! stands. While a step's import works, the steps refresh themselves through htmx.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use super::{Grouped, audit, format_time, is_htmx, see_other};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::imports::{Import, Stage};
use crate::domain::onboarding::{StepState, steps};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::imports as imports_store;
use crate::store::onboarding as store;

/// The import a step made, as the step shows it.
pub struct StepImport {
    pub id: i64,
    /// Its rollback may be asked for (completed, not undone, journal kept).
    pub can_roll_back: bool,
    pub rolling_back: bool,
    /// Background work changes it (validating, importing, rolling back).
    pub live: bool,
    /// What validation found: valid, invalid, to create, to update.
    pub valid: i64,
    pub invalid: i64,
    pub to_create: i64,
    pub to_update: i64,
    pub deleted: i64,
    /// Records it wrote that changed since (the first few), and how many there are.
    pub changed: Vec<String>,
    pub changed_count: i64,
    pub title: String,
    pub status: &'static str,
    pub badge: &'static str,
    pub stage: Stage,
    pub paused: bool,
    pub percent: i64,
    pub created: i64,
    pub updated: i64,
    pub left_out: i64,
    pub total: i64,
    pub reason: String,
    pub by: String,
    pub at: String,
}

pub struct StepView {
    pub number: usize,
    pub entity: String,
    pub label: String,
    pub description: String,
    pub state: StepState,
    pub import: Option<StepImport>,
    /// The labels of earlier steps to do (or skip) first.
    pub waits_for: Vec<String>,
    /// "Skipped by ada@… at …".
    pub skipped_note: String,
    /// Records of the type the org already has (shown on a step not started).
    pub existing: i64,
    /// The workbook its import came from ('' for a file of its own).
    pub workbook: String,
    /// "Import all" asked for it.
    pub import_queued: bool,
}

impl StepView {
    /// The upload is offered: nothing of the step is on its way and no earlier step holds it.
    pub fn offers_upload(&self) -> bool {
        self.state.takes_a_file() && self.waits_for.is_empty()
    }

    /// The import the summary counts: none for a skipped step.
    pub fn summary_import(&self) -> Option<&StepImport> {
        self.import.as_ref().filter(|_| self.state != StepState::Skipped)
    }

    pub fn waits_for_words(&self) -> String {
        match self.waits_for.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        }
    }
}

pub struct OnboardingView {
    pub steps: Vec<StepView>,
    pub done: usize,
    /// Records the steps' imports created or updated so far.
    pub records: i64,
    pub csrf: String,
    /// Some step's import is working: the steps refresh themselves.
    pub live: bool,
    /// "Finished by … at …", once the org finished the workflow.
    pub finished: Option<String>,
    /// "Asked by … at …" while the whole onboarding is being rolled back.
    pub rolling_back: Option<String>,
    /// Open the Roll back dialog at load (`?rollback=1`).
    pub rollback_open: bool,
}

impl OnboardingView {
    /// Every step is done or skipped and nothing is on its way: the summary shows, and Finish.
    pub fn all_done(&self) -> bool {
        self.steps.iter().all(|s| s.state.is_done())
    }

    /// Some step's import may be rolled back, and no rollback of the whole runs.
    pub fn can_roll_back(&self) -> bool {
        self.rolling_back.is_none() && self.steps.iter().any(|s| s.import.as_ref().is_some_and(|i| i.can_roll_back))
    }

    /// The steps the rollback undoes, last step first.
    pub fn to_roll_back(&self) -> Vec<&StepView> {
        self.steps
            .iter()
            .rev()
            .filter(|s| s.state != StepState::Skipped && s.import.as_ref().is_some_and(|i| i.can_roll_back))
            .collect()
    }

    /// Records changed since, across the steps the rollback undoes.
    pub fn changed_count(&self) -> i64 {
        self.to_roll_back().iter().filter_map(|s| s.import.as_ref()).map(|i| i.changed_count).sum()
    }

    /// The steps whose imports came from a workbook, in step order (the combined preview).
    pub fn workbook_steps(&self) -> Vec<&StepView> {
        self.steps.iter().filter(|s| !s.workbook.is_empty() && s.import.is_some()).collect()
    }

    /// Some workbook step waits at its column mapping: "Validate all" is offered.
    pub fn offers_validate_all(&self) -> bool {
        self.workbook_steps().iter().any(|s| s.import.as_ref().is_some_and(|i| i.stage == Stage::Mapping))
    }

    /// Every workbook step is validated, imported or failed, one at least waits to be
    /// imported, and none was asked yet: "Import all" is offered (a failed step and the steps
    /// that refer to it are not imported).
    pub fn offers_import_all(&self) -> bool {
        let steps = self.workbook_steps();
        let stage = |s: &&StepView| s.import.as_ref().map(|i| i.stage);
        steps.iter().any(|s| stage(s) == Some(Stage::Ready) && !s.import_queued)
            && steps.iter().all(|s| {
                matches!(
                    stage(s),
                    Some(
                        Stage::Ready
                            | Stage::Completed
                            | Stage::Failed
                            | Stage::Expired
                            | Stage::RolledBack
                            | Stage::TimedOut
                    )
                )
            })
    }

    /// The steps not done yet, by label.
    fn not_done(&self) -> Vec<String> {
        self.steps.iter().filter(|s| !s.state.is_done()).map(|s| s.label.clone()).collect()
    }
}

#[derive(Template)]
#[template(path = "onboarding.html")]
pub struct OnboardingPage {
    pub l: Layout,
    pub v: OnboardingView,
}

#[derive(Template)]
#[template(path = "onboarding_steps.html")]
pub struct OnboardingSteps {
    pub v: OnboardingView,
}

fn step_import(imp: &Import, changed: (Vec<String>, i64)) -> StepImport {
    StepImport {
        id: imp.id,
        can_roll_back: imp.can_roll_back(),
        rolling_back: imp.is_rolling_back(),
        live: imp.is_live(),
        valid: imp.validated.valid_rows,
        invalid: imp.validated.invalid_rows,
        to_create: imp.validated.to_create,
        to_update: imp.validated.to_update,
        deleted: imp.deleted_rows,
        changed: changed.0,
        changed_count: changed.1,
        title: imp.title().to_string(),
        status: imp.status_label(),
        badge: imp.status_badge(),
        stage: imp.stage,
        paused: imp.paused,
        percent: imp.percent(),
        created: imp.created_rows,
        updated: imp.updated_rows,
        left_out: imp.not_imported_rows(),
        total: imp.validated.total_rows,
        reason: imp.reason.clone(),
        by: imp.created_by_label.clone(),
        at: format_time(imp.created_at),
    }
}

pub(crate) async fn view(req: &HttpRequest, id: &Identity, state: &AppState) -> Result<OnboardingView, AppError> {
    // the workbook's steps go on from here too, should a worker have died between two; a
    // problem there is logged, the page still shows where things stand
    if let Err(e) = crate::jobs::onboarding::go_on(&state.db, &state.schemas, id.org_id).await {
        tracing::warn!(error = ?e, "moving the onboarding's workbook steps on failed");
    }
    let rows: HashMap<String, store::StepRow> =
        store::steps(&state.db, id.org_id).await?.into_iter().map(|r| (r.entity.clone(), r)).collect();
    let mut views: Vec<StepView> = vec![];
    let mut records = 0;
    for (i, step) in steps(state.schemas.all()).into_iter().enumerate() {
        let Some(schema) = state.schemas.get(&step.entity) else { continue };
        let row = rows.get(&step.entity);
        let imp = match row.and_then(|r| r.import_id) {
            Some(import_id) => imports_store::get(&state.db, id.org_id, import_id).await?,
            None => None,
        };
        let skipped = row.is_some_and(|r| r.skipped);
        let state_now = StepState::of(imp.as_ref(), skipped);
        let existing = if state_now == StepState::NotStarted {
            state.record_counts.count(&state.db, id.org_id, &step.entity).await?
        } else {
            0
        };
        if let Some(i) = imp.as_ref().filter(|i| i.stage != Stage::RolledBack) {
            records += i.created_rows + i.updated_rows;
        }
        // only earlier steps hold one up: in a reference cycle the later step waits for nothing
        let waits_for = step
            .depends_on
            .iter()
            .filter(|d| views.iter().any(|v| v.entity == **d && !v.state.lets_dependents_go()))
            .map(|d| state.schemas.get(d).map(|s| s.label.clone()).unwrap_or_else(|| d.clone()))
            .collect();
        views.push(StepView {
            number: i + 1,
            entity: step.entity.clone(),
            label: schema.label.clone(),
            description: schema.description.clone(),
            skipped_note: match row {
                Some(r) if skipped => format!("Skipped by {} at {}.", r.updated_by_label, format_time(r.updated_at)),
                _ => String::new(),
            },
            import: match imp.as_ref() {
                Some(i) if i.can_roll_back() => {
                    let (changed, n) = crate::store::journal::changed_since(&state.db, i, 5).await?;
                    Some(step_import(i, (changed.into_iter().map(|c| c.record_key).collect(), n)))
                }
                Some(i) => Some(step_import(i, (vec![], 0))),
                None => None,
            },
            state: state_now,
            waits_for,
            existing,
            workbook: row.filter(|r| !r.skipped).map(|r| r.workbook.clone()).unwrap_or_default(),
            import_queued: row.is_some_and(|r| r.import_queued),
        });
    }
    // the onboarding's rollback goes on from here too, should a worker have died between steps
    let rolling_back = match store::rollback_asked(&state.db, id.org_id).await? {
        Some(asked) => {
            if let Err(e) = crate::jobs::onboarding::roll_back_next(&state.db, &state.schemas, id.org_id).await {
                tracing::warn!(error = ?e, "starting the onboarding's next rollback failed");
            }
            store::rollback_asked(&state.db, id.org_id).await?.map(|_| {
                format!(
                    "Asked by {} at {}.",
                    asked.rollback_requested_by_label,
                    format_time(asked.rollback_requested_at)
                )
            })
        }
        None => None,
    };
    let finished = store::finished(&state.db, id.org_id)
        .await?
        .map(|(at, by)| format!("Finished by {by} at {}.", format_time(at)));
    Ok(OnboardingView {
        // a step waiting on a person (its mapping, its start) does not need the page to poll
        live: rolling_back.is_some() || views.iter().any(|v| v.import.as_ref().is_some_and(|i| i.live)),
        rolling_back,
        rollback_open: false,
        finished,
        done: views.iter().filter(|v| v.state.is_done()).count(),
        records,
        csrf: AppSession::from_request_ref(req).csrf_token()?,
        steps: views,
    })
}

#[derive(Deserialize)]
pub struct PageQuery {
    rollback: Option<String>,
}

/// `GET /settings/imports/onboarding`; to htmx, the steps alone.
pub async fn page(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let mut v = view(&req, &id, &state).await?;
    v.rollback_open = q.rollback.is_some() && v.can_roll_back();
    if is_htmx(&req) {
        return Ok(render(StatusCode::OK, &OnboardingSteps { v }));
    }
    let l = Layout::for_user(&req, &id, "Onboarding".to_string(), "imports").await?;
    Ok(render(StatusCode::OK, &OnboardingPage { l, v }))
}

/// `POST /settings/imports/onboarding/{entity}/skip` and `…/resume`: a step left out of the
/// workflow by choice, or taken up again. A step whose import is on its way is not skipped.
pub async fn skip(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let (entity, what) = path.into_inner();
    let schema = state.schemas.get(&entity).cloned().ok_or(AppError::NotFound)?;
    let skip = match what.as_str() {
        "skip" => true,
        "resume" => false,
        _ => return Err(AppError::NotFound),
    };
    let back = "/settings/imports/onboarding";
    let refuse = |text: String| -> Result<HttpResponse, AppError> {
        session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
        Ok(see_other(back))
    };
    let current = view(&req, &id, &state).await?;
    if current.rolling_back.is_some() {
        return refuse("The onboarding is being rolled back: its steps change once it is.".into());
    }
    let now = current.steps.iter().find(|s| s.entity == entity).map(|s| s.state.clone());
    if skip && now == Some(StepState::InProgress) {
        return refuse(format!("{} is being imported, so it was not skipped.", schema.label));
    }
    if skip && now.as_ref().is_some_and(|s| s.is_done()) {
        return refuse(format!("{} is imported already, so there is nothing to skip.", schema.label));
    }
    store::set_skipped(&state.db, id.org_id, &entity, skip, &id.email).await?;
    let action = if skip { "onboarding_step_skipped" } else { "onboarding_step_resumed" };
    audit(&state, &req, &id, action, &format!("onboarding {entity}"), &schema.label).await?;
    let text = if skip {
        format!("Skipped {}: the steps after it may go on.", schema.label)
    } else {
        format!("{} is a step of the onboarding again.", schema.label)
    };
    session.set_flash(&Flash { kind: "success".into(), text, secret: None })?;
    Ok(see_other(back))
}

/// One step's line in the summary and its audit event.
fn step_summary(s: &StepView) -> String {
    match (&s.state, &s.import) {
        (StepState::Skipped, _) => format!("{}: skipped", s.label),
        (_, Some(i)) => format!(
            "{}: {} created, {} updated, {} left out (import {})",
            s.label,
            i.created.grouped(),
            i.updated.grouped(),
            i.left_out.grouped(),
            i.id
        ),
        _ => format!("{}: {}", s.label, s.state.label().to_lowercase()),
    }
}

/// `POST /settings/imports/onboarding/finish`: once every step is done or skipped, the
/// workflow is finished: an audit event per step and one for the whole.
pub async fn finish(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let v = view(&req, &id, &state).await?;
    let back = "/settings/imports/onboarding";
    if !v.all_done() {
        let left = v.not_done();
        let text = format!("Finish once every step is done or skipped; not yet: {}.", left.join(", "));
        session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
        return Ok(see_other(back));
    }
    store::finish(&state.db, id.org_id, &id.email).await?;
    for s in &v.steps {
        audit(&state, &req, &id, "onboarding_step_done", &format!("onboarding {}", s.entity), &step_summary(s)).await?;
    }
    let imports: Vec<&StepImport> =
        v.steps.iter().filter(|s| s.state != StepState::Skipped).filter_map(|s| s.import.as_ref()).collect();
    let created: i64 = imports.iter().map(|i| i.created).sum();
    let updated: i64 = imports.iter().map(|i| i.updated).sum();
    let skipped = v.steps.iter().filter(|s| s.state == StepState::Skipped).count();
    let detail = format!(
        "{}: {} created, {} updated; {} skipped",
        v.steps.len().count("step", "steps"),
        created.count("record", "records"),
        updated.grouped(),
        skipped.grouped()
    );
    audit(&state, &req, &id, "onboarding_finished", "onboarding", &detail).await?;
    let text = format!("Onboarding finished: {detail}.");
    session.set_flash(&Flash { kind: "success".into(), text, secret: None })?;
    Ok(see_other(back))
}

/// `POST /settings/imports/onboarding/rollback`: every step's import undone, the last step
/// first, through the import rollback; `overwrite_changed` rolls back records changed since
/// too, as an import's rollback does.
pub async fn rollback(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let overwrite = form.get("overwrite_changed").is_some_and(|v| v == "1" || v == "on");
    let v = view(&req, &id, &state).await?;
    let back = "/settings/imports/onboarding";
    if !v.can_roll_back() {
        let text = if v.rolling_back.is_some() {
            "The onboarding is being rolled back already."
        } else {
            "Nothing of the onboarding can be rolled back: no step's import is completed and undoable."
        };
        session.set_flash(&Flash { kind: "info".into(), text: text.into(), secret: None })?;
        return Ok(see_other(back));
    }
    // a step importing now would finish against records the rollback removes
    if let Some(busy) = v.steps.iter().find(|s| s.import.as_ref().is_some_and(|i| i.stage == Stage::Importing)) {
        let text = format!("{} is on its way: roll the onboarding back once it is imported or discarded.", busy.label);
        session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
        return Ok(see_other(back));
    }
    let steps: Vec<String> = v.to_roll_back().iter().map(|s| s.label.clone()).collect();
    if store::request_rollback(&state.db, id.org_id, Some(id.user_id.get()), &id.email, overwrite).await? {
        crate::jobs::onboarding::roll_back_next(&state.db, &state.schemas, id.org_id).await?;
        let detail =
            format!("{}{}", steps.join(", "), if overwrite { "; records changed since are overwritten" } else { "" });
        audit(&state, &req, &id, "onboarding_rollback_requested", "onboarding", &detail).await?;
    }
    let text = format!("Rolling back the onboarding, one step at a time: {}.", steps.join(", then "));
    session.set_flash(&Flash { kind: "success".into(), text, secret: None })?;
    Ok(see_other(back))
}

/// Why the onboarding's step for `entity` takes no file now (earlier steps hold it, an
/// import of it is on its way, it was skipped, the onboarding is being rolled back); None
/// when it takes one, as the page offers.
pub async fn refuses_a_file(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    entity: &str,
) -> Result<Option<String>, AppError> {
    let v = view(req, id, state).await?;
    if v.rolling_back.is_some() {
        return Ok(Some("The onboarding is being rolled back: upload the file once it is.".into()));
    }
    let Some(step) = v.steps.iter().find(|s| s.entity == entity) else { return Ok(None) };
    Ok(match &step.state {
        _ if !step.waits_for.is_empty() => {
            let it = if step.waits_for.len() == 1 { "it" } else { "them" };
            Some(format!("Import {} first, or skip {it}: {} refer to {it} by key.", step.waits_for_words(), step.label))
        }
        StepState::InProgress => {
            Some(format!("An import of {} is on its way: finish or discard it first.", step.label))
        }
        StepState::Skipped => Some(format!("{} is skipped: take it up again first.", step.label)),
        _ => None,
    })
}
