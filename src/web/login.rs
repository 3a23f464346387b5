//! `/login` and `/logout`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::layout::{Layout, render};
use crate::auth::session::AppSession;
use crate::auth::{Identity, password};
use crate::domain::account::Email;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::throttle::{self, Decision};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{self, audit::AuditEvent};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub l: Layout,
    pub email: String,
    pub next: String,
    pub error: Option<String>,
    pub notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    reason: Option<String>,
}

fn reason_text(reason: Option<&str>) -> Option<&'static str> {
    match reason? {
        "expired" => Some("Your session has expired. Please sign in again."),
        "signed_out" => Some("You have been signed out."),
        "removed" => Some("You no longer have access to that organization. Sign in again to continue."),
        "disabled" => Some("Your session has ended. Please sign in again."),
        _ => None,
    }
}

#[tracing::instrument(skip_all)]
pub async fn form(req: HttpRequest, q: web::Query<LoginQuery>) -> Result<HttpResponse, AppError> {
    if req.extensions().get::<Identity>().is_some() {
        let to = q.next.as_deref().and_then(crate::domain::redirects::safe_next).unwrap_or_else(|| "/".into());
        return Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish());
    }
    let page = LoginPage {
        l: Layout::anonymous(&req, "Sign in")?,
        email: String::new(),
        next: q.next.as_deref().and_then(crate::domain::redirects::safe_next).unwrap_or_default(),
        error: None,
        notice: reason_text(q.reason.as_deref()),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

const WRONG: &str = "Incorrect email or password.";

#[tracing::instrument(skip_all)]
pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: AppSession,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let address = super::client_address(&req, state.settings.trust_proxy);
    let again = |status: StatusCode, error: String| -> Result<HttpResponse, AppError> {
        let page = LoginPage {
            l: Layout::anonymous(&req, "Sign in")?,
            email: form.email.clone(),
            next: crate::domain::redirects::safe_next(&form.next).unwrap_or_default(),
            error: Some(error),
            notice: None,
        };
        Ok(render(status, &page))
    };
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(msg) => return again(StatusCode::UNPROCESSABLE_ENTITY, msg),
    };
    if form.password.is_empty() {
        return again(StatusCode::UNPROCESSABLE_ENTITY, "Enter your password.".into());
    }
    // An address or account already locked is refused before any hashing (a read, no write).
    let now = crate::now();
    let so_far = store::login_attempts::failures_before(&state.db, i64::MAX, email.as_str(), &address, now).await?;
    if let Decision::Locked { retry_in_minutes } = throttle::decide(so_far, now) {
        tracing::warn!(%address, "sign-in throttled");
        return again(StatusCode::TOO_MANY_REQUESTS, throttle::locked_message(retry_in_minutes));
    }
    // The password is checked next (the same work whether or not the email exists: against
    // a dummy hash), so that the attempt's writes below follow each other without the hash's
    // pause between them: each waits at most for one of an import's transactions, not two.
    let user = store::accounts::user_by_email(&state.db, email.as_str()).await?;
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => password::dummy_hash().await?,
    };
    let matches = password::verify(form.password.clone(), hash).await?;
    // The attempt is stored (as a failure) before it is judged, so parallel guesses all see
    // each other: each counts the failures stored before it, in order of arrival. A locked
    // address or account is refused even with the right password.
    let attempt = store::login_attempts::record_pending(&state.db, email.as_str(), &address).await?;
    let before = store::login_attempts::failures_before(&state.db, attempt, email.as_str(), &address, now).await?;
    if let Decision::Locked { retry_in_minutes } = throttle::decide(before, now) {
        store::login_attempts::forget(&state.db, attempt).await?;
        tracing::warn!(%address, "sign-in throttled");
        return again(StatusCode::TOO_MANY_REQUESTS, throttle::locked_message(retry_in_minutes));
    }
    let user = match user {
        Some(u) if matches && !u.disabled => u,
        _ => {
            tracing::info!(%address, "sign-in failed");
            return again(StatusCode::UNAUTHORIZED, WRONG.into());
        }
    };
    let user_id = UserId::new(user.id);
    let Some(org) = store::accounts::preferred_org(&state.db, user_id).await? else {
        return again(
            StatusCode::FORBIDDEN,
            "Your account is not a member of any organization. Ask an organization owner to add you.".into(),
        );
    };
    store::login_attempts::mark_succeeded(&state.db, attempt).await?;
    session.sign_in(user_id, OrgId::new(org.id))?;
    store::audit::record(
        &state.db,
        Some(OrgId::new(org.id)),
        &AuditEvent {
            actor: Some(user_id),
            actor_label: email.as_str(),
            action: "signed_in",
            target: "",
            detail: "",
            address: &address,
        },
    )
    .await?;
    let to = crate::domain::redirects::safe_next(&form.next).unwrap_or_else(|| "/".into());
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish())
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub l: Layout,
}

/// GET /logout: a page with the sign-out button (signing out itself is a POST).
#[tracing::instrument(skip_all)]
pub async fn logout_page(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Ok(render(StatusCode::OK, &LogoutPage { l: Layout::anonymous(&req, "Sign out")? }))
}

#[tracing::instrument(skip_all)]
pub async fn logout(session: AppSession) -> HttpResponse {
    session.sign_out();
    HttpResponse::SeeOther().insert_header((header::LOCATION, "/login?reason=signed_out")).finish()
}
