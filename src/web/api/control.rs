//! Start, pause, resume, cancel and rollback of an import through the API: each answers the
//! import, or 409 with the reason its state does not allow it.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::imports::{ImportObject, object};
use super::write::{idempotent, json_body, json_value};
use super::{ApiError, Caller};
use crate::domain::ids::{Actor, OrgId};
use crate::domain::imports::RollbackRefusal;
use crate::domain::permissions::Permission;
use crate::domain::words::Grouped;
use crate::jobs::import as import_jobs;
use crate::state::AppState;
use crate::store::imports::{self as store};
use crate::web::imports::actions::refusal_text;

/// What `POST …/start` takes (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartOptions {
    /// For an overwrite that removes records not in the file: their number, as validation
    /// counted it (the import's `to_delete`), to confirm the removals.
    pub confirm_removals: Option<i64>,
}

/// What `POST …/rollback` takes (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackOptions {
    /// Also put back records changed since the import (default false: they are left alone
    /// and counted).
    pub overwrite_changed: Option<bool>,
}

/// One control action on an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Pause,
    Resume,
    Cancel,
    Rollback,
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict_error", "import_state", message)
}

async fn apply(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: &[u8],
    id: i64,
    what: Control,
) -> Result<(StatusCode, serde_json::Value), ApiError> {
    let org: OrgId = caller.org;
    let imp = store::get(&state.db, org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
    let by = Actor::Key(caller.key_id);
    let state_word = imp.status_label().to_lowercase();
    match what {
        Control::Start => {
            let opts: StartOptions =
                if body.iter().all(u8::is_ascii_whitespace) { StartOptions::default() } else { json_body(req, body)? };
            let confirmed = opts.confirm_removals.map(|n| n.to_string());
            if imp.needs_removal_confirmation(confirmed.as_deref()) {
                let n = imp.validated.to_delete;
                return Err(conflict(format!(
                    "This overwrite removes {} that {} not in the file. To go ahead, POST start with \
                     {{\"confirm_removals\": {n}}}.",
                    n.count("record", "records"),
                    if n == 1 { "is" } else { "are" }
                ))
                .param("confirm_removals"));
            }
            if !store::start_import(&state.db, org, id, by).await? {
                return Err(conflict(format!(
                    "Import {id} is {state_word}; only a validated (queued) import can start."
                )));
            }
            import_jobs::enqueue(&state.db, org, id, import_jobs::PROCESS).await?;
        }
        Control::Pause | Control::Resume => {
            let pause = what == Control::Pause;
            if !store::set_paused(&state.db, org, id, pause, by).await? {
                let verb = if pause { "paused" } else { "resumed" };
                return Err(conflict(format!(
                    "Import {id} is {state_word}; only an import that is processing can be {verb}."
                )));
            }
            if !pause {
                import_jobs::enqueue(&state.db, org, id, import_jobs::PROCESS).await?;
            }
        }
        Control::Cancel => {
            let reason = format!(
                "Cancelled through the API by {}; {} imported before it stopped {} (roll back to undo {}).",
                caller.label(),
                imp.changed_rows().count("record", "records"),
                if imp.changed_rows() == 1 { "stays" } else { "stay" },
                if imp.changed_rows() == 1 { "it" } else { "them" }
            );
            if store::cancel(&state.db, org, id, by, &reason).await?.is_none() {
                return Err(conflict(format!("Import {id} is {state_word}; there is nothing left to cancel.")));
            }
        }
        Control::Rollback => {
            let opts: RollbackOptions = if body.iter().all(u8::is_ascii_whitespace) {
                RollbackOptions::default()
            } else {
                json_body(req, body)?
            };
            let overwrite = opts.overwrite_changed.unwrap_or(false);
            if let Some(why) = imp.rollback_refusal() {
                return Err(conflict(refusal_text(why)));
            }
            if !crate::store::journal::request(&state.db, org, id, by, &caller.label(), overwrite).await? {
                let now = store::get(&state.db, org, id).await?.unwrap_or(imp);
                return Err(conflict(refusal_text(now.rollback_refusal().unwrap_or(RollbackRefusal::InProgress))));
            }
            import_jobs::enqueue(&state.db, org, id, import_jobs::ROLLBACK).await?;
        }
    }
    let action = match what {
        Control::Start => "import_started",
        Control::Pause => "import_paused",
        Control::Resume => "import_resumed",
        Control::Cancel => "import_cancelled",
        Control::Rollback => "import_rollback_requested",
    };
    caller.audit(state, req, action, &format!("import {id}"), "").await?;
    let now = store::get(&state.db, org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
    Ok((StatusCode::OK, json_value(&object(state, &now).await?)?))
}

async fn control(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
    what: Control,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    let id: i64 = path.parse().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::not_found("import"))?;
    idempotent(&state, &caller, &req, &body, || apply(&state, &caller, &req, &body, id, what)).await
}

macro_rules! control_endpoint {
    ($name:ident, $what:expr, $op:literal, $path:literal, $summary:literal, $ok:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            operation_id = $op,
            tag = "Imports",
            params(
                ("id" = String, Path, description = "The import's id"),
                ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours", min_length = 1, max_length = 255, pattern = "^[!-~]+$"),
            ),
            responses(
                (status = 200, description = $ok, body = ImportObject),
                (status = 400, description = "The Idempotency-Key or the body is not valid", body = super::ErrorBody),
                (status = 401, description = "No valid API key", body = super::ErrorBody),
                (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
                (status = 404, description = "No such import in the key's organization", body = super::ErrorBody),
                (status = 409, description = "The import's state does not allow it (the message says why)", body = super::ErrorBody),
                (status = 429, description = "Rate limit reached", body = super::ErrorBody),
            ),
            security(("api_key" = []))
        )]
        pub async fn $name(
            req: HttpRequest,
            caller: Caller,
            state: web::Data<AppState>,
            path: web::Path<String>,
            body: web::Bytes,
        ) -> Result<HttpResponse, ApiError> {
            control(req, caller, state, path, body, $what).await
        }
    };
}

control_endpoint!(
    start,
    Control::Start,
    "startImport",
    "/api/v1/imports/{id}/start",
    "Start a queued import (one created for review)",
    "Started"
);
control_endpoint!(
    pause,
    Control::Pause,
    "pauseImport",
    "/api/v1/imports/{id}/pause",
    "Pause processing before the next chunk",
    "Paused"
);
control_endpoint!(
    resume,
    Control::Resume,
    "resumeImport",
    "/api/v1/imports/{id}/resume",
    "Resume a paused import",
    "Resumed"
);
control_endpoint!(
    cancel,
    Control::Cancel,
    "cancelImport",
    "/api/v1/imports/{id}/cancel",
    "Cancel an import before the next chunk; what was imported stays",
    "Cancelled: status failed, the reason says so"
);
control_endpoint!(
    rollback,
    Control::Rollback,
    "rollbackImport",
    "/api/v1/imports/{id}/rollback",
    "Roll back a finished import from its journal",
    "Rollback asked for; it runs in the background"
);
