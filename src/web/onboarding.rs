//! `/settings/imports/onboarding`: seed 000's onboarding workflow. Every entity type is a
//! step, in the order their relationships need ([`crate::domain::onboarding::steps`]); each
//! step shows where its import is, offers its template and an upload, and may be skipped.
//! The state lives per org (`onboarding_steps`), so another owner picks it up where it
//! stands. While a step's import works, the steps refresh themselves through htmx.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

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
}

impl OnboardingView {
    /// Every step is done or skipped and nothing is on its way: the summary shows, and Finish.
    pub fn all_done(&self) -> bool {
        self.steps.iter().all(|s| s.state.is_done())
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

fn step_import(imp: &Import) -> StepImport {
    StepImport {
        id: imp.id,
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

async fn view(req: &HttpRequest, id: &Identity, state: &AppState) -> Result<OnboardingView, AppError> {
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
            crate::store::records::count(&state.db, id.org_id, &step.entity, None).await?
        } else {
            0
        };
        if let Some(i) = imp.as_ref().filter(|i| i.stage != Stage::RolledBack) {
            records += i.created_rows + i.updated_rows;
        }
        let waits_for = step
            .depends_on
            .iter()
            .filter(|d| !views.iter().any(|v| v.entity == **d && v.state.lets_dependents_go()))
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
            import: imp.as_ref().map(step_import),
            state: state_now,
            waits_for,
            existing,
        });
    }
    let finished = store::finished(&state.db, id.org_id)
        .await?
        .map(|(at, by)| format!("Finished by {by} at {}.", format_time(at)));
    Ok(OnboardingView {
        finished,
        done: views.iter().filter(|v| v.state.is_done()).count(),
        live: views.iter().any(|v| v.state == StepState::InProgress),
        records,
        csrf: AppSession::from_request_ref(req).csrf_token()?,
        steps: views,
    })
}

/// `GET /settings/imports/onboarding`; to htmx, the steps alone.
pub async fn page(req: HttpRequest, id: Identity, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let v = view(&req, &id, &state).await?;
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
    if skip {
        let current = view(&req, &id, &state).await?;
        if current.steps.iter().any(|s| s.entity == entity && s.state == StepState::InProgress) {
            let text = format!("{} is being imported, so it was not skipped.", schema.label);
            session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
            return Ok(see_other(back));
        }
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
