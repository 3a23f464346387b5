//! The import's commands, each a POST from the detail sheet (or Import History): confirm
//! the column mapping (and validate), start, pause, resume, roll back. The rules are the
//! domain's ([`Import`]); a command that lost a race (a second tab, a double click, the
//! import moved on) returns to the sheet with a message.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::detail::{detail_view, page};
use super::mapping_view::Draft;
use super::{load, page_of, schema_of, target_of};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::imports::{Import, MappingProblem, RollbackRefusal};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::jobs::import as import_jobs;
use crate::state::AppState;
use crate::store::imports as store;
use crate::web::layout::render;
use crate::web::{audit, format_time, see_other};

fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn info(session: &AppSession, text: String) -> Result<(), AppError> {
    session.set_flash(&Flash { kind: "info".into(), text, secret: None })?;
    Ok(())
}

/// The sheet again, with `status` (a form to correct).
async fn sheet_again(
    req: &HttpRequest,
    id: &Identity,
    state: &AppState,
    imp: Import,
    status: StatusCode,
    mapping: Option<Draft>,
    confirm_open: bool,
) -> Result<HttpResponse, AppError> {
    let mut v = detail_view(req, id, state, imp, None, mapping).await?;
    v.confirm_open = confirm_open;
    Ok(render(status, &page(req, id, v).await?))
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn save_mapping(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let schema = schema_of(&state, &imp.entity)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("The mapping form could not be read.".into()))?;
    let profile = store::column_profile(&state.db, imp.id).await?;
    let mapping = match imp.mapping_from_form(&schema, pairs.clone()) {
        Ok(m) => m,
        Err(MappingProblem::UnknownColumn(c)) => {
            return Err(AppError::Validation(format!("\"{c}\" is not a column of the file.")));
        }
        Err(MappingProblem::Invalid(error, mapping)) => {
            // the options as submitted are shown back too, whatever their own problems
            let options = imp.options_from_form(&schema, &mapping, &profile, &pairs).unwrap_or_else(|(_, o)| o);
            let draft = Some(Draft { mapping, options, error });
            return sheet_again(&req, &id, &state, imp, StatusCode::UNPROCESSABLE_ENTITY, draft, false).await;
        }
    };
    let options = match imp.options_from_form(&schema, &mapping, &profile, &pairs) {
        Ok(o) => o,
        Err((error, options)) => {
            let draft = Some(Draft { mapping, options, error });
            return sheet_again(&req, &id, &state, imp, StatusCode::UNPROCESSABLE_ENTITY, draft, false).await;
        }
    };
    if !validate_again(&id, &state, &imp, &mapping, &options).await? {
        return Err(AppError::Conflict(format!(
            "This import is {} now, so its mapping can no longer change.",
            imp.stage.label().to_lowercase()
        )));
    }
    let key = crate::domain::imports::mapping::headers_key(&imp.headers);
    store::remember_mapping(&state.db, id.org_id, &imp.entity, &key, &mapping, &options, imp.id).await?;
    // in words: "Location code ← code; Birth date ← DOB (DD/MM/YYYY)" (field label ← column)
    let detail: Vec<String> = schema
        .fields
        .iter()
        .filter_map(|f| {
            mapping
                .get(f.name())
                .map(|column| format!("{} ← {column}{}", f.label, options_words(options.get(f.name()))))
        })
        .collect();
    audit(&state, &req, &id, "import_mapping_confirmed", &target_of(&imp), &detail.join("; ")).await?;
    Ok(see_other(page_of(&imp)))
}

/// Confirms `mapping` and `options` and queues the validation (for a sheet of an
/// onboarding workbook, after the sheets it refers to); false when the import moved on.
pub(super) async fn validate_again(
    id: &Identity,
    state: &AppState,
    imp: &Import,
    mapping: &crate::domain::imports::ColumnMapping,
    options: &crate::domain::imports::ColumnOptions,
) -> Result<bool, AppError> {
    if !store::confirm_mapping(&state.db, id.org_id, imp.id, mapping, options, id.user_id.into()).await? {
        return Ok(false);
    }
    match crate::store::onboarding::step_of_import(&state.db, id.org_id, imp.id).await? {
        // a sheet of an onboarding workbook validates after the sheets it refers to
        Some((entity, workbook)) if !workbook.is_empty() => {
            let by = id.user_id.get();
            crate::store::onboarding::queue(&state.db, id.org_id, &entity, "validate", by, &id.email).await?;
            crate::jobs::onboarding::go_on(&state.db, &state.schemas, id.org_id).await?;
        }
        _ => import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::VALIDATE).await?,
    }
    Ok(true)
}

/// " (DD/MM/YYYY; Actve → active)": a field's options as the activity shows them.
fn options_words(o: Option<&crate::domain::imports::ColumnOption>) -> String {
    let Some(o) = o else { return String::new() };
    let mut parts: Vec<String> = o.format.iter().map(|f| f.label()).collect();
    parts.extend(o.values.iter().map(|(from, to)| format!("{from} → {to}")));
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join("; ")) }
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn start(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    // a sheet of an onboarding workbook starts after the sheets whose rows it refers to
    if let Some(why) = crate::jobs::onboarding::import_blocked(&state.db, &state.schemas, id.org_id, imp.id).await? {
        info(&session, why)?;
        return Ok(see_other(page_of(&imp)));
    }
    let confirmed = form(&body).remove("confirm_delete");
    if imp.needs_removal_confirmation(confirmed.as_deref()) {
        return sheet_again(&req, &id, &state, imp, StatusCode::UNPROCESSABLE_ENTITY, None, true).await;
    }
    if !store::start_import(&state.db, id.org_id, imp.id, id.user_id.into()).await? {
        return Err(AppError::Conflict(format!(
            "This import is {}; only a ready import can start.",
            imp.stage.label().to_lowercase()
        )));
    }
    import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::PROCESS).await?;
    audit(&state, &req, &id, "import_started", &target_of(&imp), "").await?;
    Ok(see_other(page_of(&imp)))
}

/// Why the rollback was not started, in the words the sheet shows.
pub(crate) fn refusal_text(r: RollbackRefusal) -> String {
    match r {
        RollbackRefusal::AlreadyRolledBack => "This import was already rolled back.".into(),
        RollbackRefusal::JournalPurged(at) => {
            format!("This import can no longer be rolled back: its journal was purged on {}.", format_time(at))
        }
        RollbackRefusal::InProgress => "This import is already being rolled back.".into(),
        RollbackRefusal::NotFinished(stage) => format!(
            "This import is {}; only a completed or failed import can be rolled back.",
            stage.label().to_lowercase()
        ),
        RollbackRefusal::NothingChanged => "This import changed no records, so there is nothing to roll back.".into(),
    }
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
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
    let overwrite = form(&body).get("overwrite_changed").is_some_and(|v| v == "1" || v == "on");
    if imp.can_roll_back()
        && crate::store::journal::request(&state.db, id.org_id, imp.id, id.user_id.into(), &id.email, overwrite).await?
    {
        import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::ROLLBACK).await?;
        let detail = if overwrite { "records changed since are overwritten" } else { "" };
        audit(&state, &req, &id, "import_rollback_requested", &target_of(&imp), detail).await?;
        return Ok(see_other(page_of(&imp)));
    }
    // a second tab, a double click, or an import that cannot be rolled back
    let now = store::get(&state.db, id.org_id, imp.id).await?.unwrap_or(imp);
    let why = now.rollback_refusal().unwrap_or(RollbackRefusal::InProgress);
    info(&session, refusal_text(why))?;
    Ok(see_other(page_of(&now)))
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
    if !store::set_paused(&state.db, id.org_id, imp.id, pause, id.user_id.into()).await? {
        // Most often the import finished between the page showing Pause and the click.
        let now = store::get(&state.db, id.org_id, imp.id).await?.map(|i| i.stage).unwrap_or(imp.stage);
        let verb = if pause { "pause" } else { "resume" };
        info(&session, format!("The import is {} now, so there was nothing to {verb}.", now.label().to_lowercase()))?;
        return Ok(see_other(page_of(&imp)));
    }
    if !pause {
        import_jobs::enqueue(&state.db, id.org_id, imp.id, import_jobs::PROCESS).await?;
    }
    let action = if pause { "import_paused" } else { "import_resumed" };
    audit(&state, &req, &id, action, &target_of(&imp), "").await?;
    Ok(see_other(page_of(&imp)))
}

/// Discard: an import waiting at its mapping or at Ready is given up (it fails with a
/// reason naming who discarded it); nothing was imported, so nothing is undone.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn discard(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let reason = format!("Discarded by {} before it started; nothing was imported.", id.email);
    let discarded =
        imp.can_discard() && store::cancel(&state.db, id.org_id, imp.id, id.user_id.into(), &reason).await?.is_some();
    if !discarded {
        let now = store::get(&state.db, id.org_id, imp.id).await?.map(|i| i.stage).unwrap_or(imp.stage);
        info(&session, format!("The import is {} now, so it was not discarded.", now.label().to_lowercase()))?;
        return Ok(see_other(page_of(&imp)));
    }
    audit(&state, &req, &id, "import_discarded", &target_of(&imp), "").await?;
    info(&session, format!("Discarded {}: nothing was imported.", imp.title()))?;
    Ok(see_other("/settings/imports"))
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn pause(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    pause_or_resume(req, id, state, session, path.into_inner(), true).await
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn resume(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    pause_or_resume(req, id, state, session, path.into_inner(), false).await
}
