//! The one error type of every handler, and the status each variant gets.
//!
//! `AppError::error_response` gives a plain-text body and renders nothing; the
//! `error_pages` middleware in `web/` turns page errors into pages inside the full layout
//! (navigation, request id) once it knows who is signed in, and `/api/` errors into JSON.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};

use crate::domain::permissions::Permission;
use crate::domain::redirects::login_redirect;

#[derive(thiserror::Error)]
pub enum AppError {
    /// Missing, or belonging to another org: the two are answered alike.
    #[error("not found")]
    NotFound,
    #[error("permission {0} required")]
    Forbidden(Permission),
    #[error("missing or invalid CSRF token")]
    Csrf,
    /// Not signed in; `next` is where to return after signing in.
    #[error("sign-in required")]
    Unauthenticated { next: String, reason: Option<&'static str> },
    /// Signed in with a one-time password that must be replaced first.
    #[error("password change required")]
    PasswordChangeRequired,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("unexpected error")]
    Internal(#[from] anyhow::Error),
}

impl std::fmt::Debug for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Internal(e) => write!(f, "{e:?}"),
            other => write!(f, "{other}"),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(e.into())
    }
}

impl AppError {
    /// Title and message for the error page; never internal detail.
    pub fn title_and_message(&self) -> (String, String) {
        match self {
            AppError::NotFound => (
                "Page not found".into(),
                "There is nothing here, or it belongs to another organization. Check the address or go back.".into(),
            ),
            AppError::Forbidden(_) => (
                "Access denied".into(),
                "You don't have permission to view this page or do this action. Ask an owner of this organization for a role that includes the permission below.".into(),
            ),
            AppError::Csrf => (
                "Request not accepted".into(),
                "This form has expired or was sent from another site, so nothing was changed. Reload the page and try again.".into(),
            ),
            AppError::Unauthenticated { .. } => ("Sign in required".into(), "Please sign in to continue.".into()),
            AppError::PasswordChangeRequired => ("Choose a new password".into(), "Choose a new password to continue.".into()),
            AppError::BadRequest(m) => ("Bad request".into(), m.clone()),
            AppError::Validation(m) => ("Check your input".into(), m.clone()),
            AppError::Conflict(m) => ("Conflict".into(), m.clone()),
            AppError::PayloadTooLarge(limit) => (
                "Too large".into(),
                format!("The request is larger than the limit of {limit}."),
            ),
            AppError::TooManyRequests(m) => ("Too many requests".into(), m.clone()),
            AppError::Internal(_) => (
                "Something went wrong".into(),
                "An unexpected error occurred and has been logged. Try again; if it keeps happening, tell your administrator the request id below.".into(),
            ),
        }
    }

    pub fn permission(&self) -> Option<Permission> {
        match self {
            AppError::Forbidden(p) => Some(*p),
            _ => None,
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::Unauthenticated { .. } | AppError::PasswordChangeRequired => StatusCode::SEE_OTHER,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AppError::Unauthenticated { next, reason } => {
                HttpResponse::SeeOther().insert_header((header::LOCATION, login_redirect(next, *reason))).finish()
            }
            AppError::PasswordChangeRequired => {
                HttpResponse::SeeOther().insert_header((header::LOCATION, "/account/password")).finish()
            }
            // the `error_pages` middleware in web/ renders the page (or JSON) for this
            other => {
                let (heading, message) = other.title_and_message();
                HttpResponse::build(other.status_code())
                    .content_type("text/plain; charset=utf-8")
                    .body(format!("{heading}: {message}"))
            }
        }
    }
}
