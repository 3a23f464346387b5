//! `/account/password`: choose a new password (required after a one-time password).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use crate::auth::session::{AppSession, Flash};
use crate::auth::{SignedIn, password};
use crate::domain::account::{MIN_PASSWORD_LEN, check_new_password};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, audit::AuditEvent};

#[derive(Template)]
#[template(path = "account_password.html")]
pub struct PasswordPage {
    pub l: Layout,
    pub forced: bool,
    pub error: Option<String>,
    pub min_len: usize,
}

#[tracing::instrument(skip_all)]
pub async fn form(req: HttpRequest, SignedIn(id): SignedIn) -> Result<HttpResponse, AppError> {
    let page = PasswordPage {
        l: Layout::for_user(&req, &id, "Change password", "").await?,
        forced: id.must_change_password,
        error: None,
        min_len: MIN_PASSWORD_LEN,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

#[tracing::instrument(skip_all)]
pub async fn submit(
    req: HttpRequest,
    SignedIn(id): SignedIn,
    state: web::Data<AppState>,
    session: AppSession,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let user = store::accounts::user_by_id(&state.db, id.user_id).await?.ok_or(AppError::NotFound)?;
    let problem = if !password::verify(form.current.clone(), user.password_hash.clone()).await? {
        Some("Your current password is not correct.".to_string())
    } else if let Err(msg) = check_new_password(&form.new) {
        Some(msg)
    } else if form.new != form.confirm {
        Some("The new password and its confirmation do not match.".into())
    } else if form.new == form.current {
        Some("Choose a password different from the current one.".into())
    } else {
        None
    };
    if let Some(error) = problem {
        let page = PasswordPage {
            l: Layout::for_user(&req, &id, "Change password", "").await?,
            forced: id.must_change_password,
            error: Some(error),
            min_len: MIN_PASSWORD_LEN,
        };
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let hash = password::hash(form.new.clone()).await?;
    store::accounts::set_password(&state.db, id.user_id, &hash, false).await?;
    // Every other session of this user ends; this one continues under a new key.
    store::sessions::delete_for_user(&state.db, id.user_id).await?;
    session.sign_in(id.user_id, id.org_id)?;
    let address = super::client_address(&req, state.settings.trust_proxy);
    store::audit::record(
        &state.db,
        Some(id.org_id),
        &AuditEvent {
            actor: Some(id.user_id),
            actor_label: &id.email,
            action: "password_changed",
            target: &id.email,
            detail: "",
            address: &address,
        },
    )
    .await?;
    session.set_flash(&Flash {
        kind: "success".into(),
        text: "Your password has been changed.".into(),
        secret: None,
    })?;
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/")).finish())
}
