//! The JSON API (`/api/v1`, seed 004): integrators drive imports with an API key.
//!
//! Every request under `/api/v1` but the OpenAPI document and signed file links passes
//! [`authenticate`]: the key from `Authorization: Bearer …` (never the query string, never a
//! session cookie), checked against its hash, its revocation and expiry, then counted against
//! the key's rate limit; the response carries the IETF `RateLimit-Policy` and `RateLimit`
//! headers. Handlers take the [`Caller`] and ask it for the permission they need. Every error
//! is one shape, `{"error": {"type", "code", "message", "param"}}` ([`ApiError`]).

pub mod control;
mod converted;
pub mod docs;
pub mod imports;
pub mod mapping;
pub mod resources;
pub mod upload;
pub mod write;

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;

use crate::domain::api_keys::{self, KeyRefusal};
use crate::domain::ids::OrgId;
use crate::domain::permissions::Permission;
use crate::domain::rate_limit::{self, Decision, Window};
use crate::error::AppError;
use crate::state::AppState;
use crate::store;

/// The routes of the API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/openapi.json", web::get().to(docs::openapi_json))
        .route("/api/docs", web::get().to(docs::reference))
        .route("/api/v1/files/imports/{id}/{file}", web::get().to(imports::signed_file))
        .route("/api/v1/uploads/imports/{id}", web::put().to(upload::upload))
        .service(
            web::scope("/api/v1")
                .wrap(from_fn(authenticate))
                // API bodies are small JSON documents (files go to the upload URL)
                .app_data(web::PayloadConfig::new(64 * 1024))
                .route("/imports", web::get().to(imports::list))
                .route("/imports", web::post().to(write::create))
                .route("/imports/{id}", web::get().to(imports::get))
                .route("/imports/{id}/start", web::post().to(control::start))
                .route("/imports/{id}/pause", web::post().to(control::pause))
                .route("/imports/{id}/resume", web::post().to(control::resume))
                .route("/imports/{id}/cancel", web::post().to(control::cancel))
                .route("/imports/{id}/rollback", web::post().to(control::rollback))
                .route("/resources", web::get().to(resources::list))
                .route("/resources/{name}", web::get().to(resources::get))
                .default_service(web::to(not_found)),
        );
}

/// The body of every API error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `conflict_error`, `rate_limit_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A machine-readable code, such as `api_key_revoked` or `parameter_invalid`.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// The parameter (or permission) the error is about, if any.
    pub param: Option<String>,
}

/// An API error: status, the body's fields, and headers to send with it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, code, message: message.into(), param: None, headers: vec![] }
    }

    pub fn param(mut self, p: impl Into<String>) -> ApiError {
        self.param = Some(p.into());
        self
    }

    /// 400 about one parameter.
    pub fn invalid(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", "parameter_invalid", message).param(param)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "resource_missing",
            format!("No such {what} in this organization."),
        )
    }

    fn unauthenticated(r: KeyRefusal) -> ApiError {
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", r.code(), r.message());
        e.headers.push((header::WWW_AUTHENTICATE, "Bearer realm=\"stevedore\"".into()));
        e
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_string(),
                code: self.code.to_string(),
                message: self.message.clone(),
                param: self.param.clone(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut res = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            res.insert_header((name.clone(), value.as_str()));
        }
        res.json(self.body())
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        if let AppError::Internal(inner) = &e {
            tracing::error!(error = ?inner, "internal error");
        }
        ApiError::from(&e)
    }
}

impl From<&AppError> for ApiError {
    fn from(e: &AppError) -> ApiError {
        let status = e.status_code();
        let (_, message) = e.title_and_message();
        let (kind, code, param) = match e {
            AppError::NotFound => ("not_found_error", "resource_missing", None),
            AppError::Forbidden(p) => ("permission_error", "permission_missing", Some(p.as_str().to_string())),
            AppError::Csrf | AppError::BadRequest(_) => ("invalid_request_error", "invalid_request", None),
            AppError::Unauthenticated { .. } => ("authentication_error", "api_key_missing", None),
            AppError::PasswordChangeRequired => ("authentication_error", "password_change_required", None),
            AppError::Validation(_) => ("invalid_request_error", "validation_failed", None),
            AppError::Conflict(_) => ("conflict_error", "conflict", None),
            AppError::PayloadTooLarge(_) => ("invalid_request_error", "payload_too_large", None),
            AppError::TooManyRequests(_) => ("rate_limit_error", "rate_limited", None),
            AppError::Internal(_) => ("api_error", "internal_error", None),
        };
        let message = match e {
            AppError::NotFound => "No such resource in this organization.".to_string(),
            AppError::Forbidden(p) => format!("This API key does not carry the permission {p}."),
            AppError::Internal(_) => {
                "Something went wrong on our side; nothing was changed. Try again, and quote the X-Request-Id header \
                 if it keeps happening."
                    .to_string()
            }
            _ => message,
        };
        let status = if matches!(e, AppError::Unauthenticated { .. }) { StatusCode::UNAUTHORIZED } else { status };
        ApiError { status, kind, code, message, param, headers: vec![] }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        AppError::Internal(e).into()
    }
}

/// The API's answer to an app error on an `/api/` path (used by the error-page middleware
/// for errors raised outside the API's handlers, such as an unknown path).
pub fn error_response(e: &AppError) -> HttpResponse {
    ApiError::from(e).error_response()
}

/// The methods an API path takes (None: no such path).
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "api", "v1", "imports"] => Some("GET, POST"),
        ["", "api", "v1", "imports", _] => Some("GET"),
        ["", "api", "v1", "imports", _, "start" | "pause" | "resume" | "cancel" | "rollback"] => Some("POST"),
        ["", "api", "v1", "resources"] | ["", "api", "v1", "resources", _] | ["", "api", "v1", "openapi.json"] => {
            Some("GET")
        }
        ["", "api", "v1", "files", "imports", _, _] => Some("GET"),
        ["", "api", "v1", "uploads", "imports", _] => Some("PUT"),
        _ => None,
    }
}

/// Unknown path under `/api/v1`, or a method the path does not take (405 with `Allow`).
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(allow) = allowed_methods(req.path()) {
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!("{} is not taken here; this endpoint takes {allow}.", req.method()),
        );
        e.headers.push((header::ALLOW, allow.to_string()));
        return Err(e);
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "route_missing",
        "There is no such endpoint; see /api/v1/openapi.json for the ones there are.",
    ))
}

/// Who is calling: an API key of one org and the permissions it carries.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: i64,
    pub key_name: String,
    pub org: OrgId,
    pub permissions: Vec<Permission>,
}

impl Caller {
    /// 403 unless the key carries `p`.
    pub fn require(&self, p: Permission) -> Result<(), ApiError> {
        if self.permissions.contains(&p) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "permission_missing",
                format!("This API key does not carry the permission {p}; an owner can create a key that does."),
            )
            .param(p.as_str()))
        }
    }

    /// How people read the key in the audit log and in reasons.
    pub fn label(&self) -> String {
        format!("API key \"{}\"", self.key_name)
    }

    /// Records in the org's audit log that this key did `action` to `target`.
    pub async fn audit(
        &self,
        state: &AppState,
        req: &HttpRequest,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Result<(), ApiError> {
        let address = super::client_address(req, state.settings.trust_proxy);
        let label = self.label();
        let event =
            store::audit::AuditEvent { actor: None, actor_label: &label, action, target, detail, address: &address };
        store::audit::record(&state.db, Some(self.org), &event).await?;
        Ok(())
    }

    /// How the API names the key in `created_by` and `updated_by`.
    pub fn actor_id(&self) -> String {
        format!("key_{}", self.key_id)
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions().get::<Caller>().cloned().ok_or_else(|| ApiError::unauthenticated(KeyRefusal::Missing)),
        )
    }
}

/// Each key's current rate-limit window. On PostgreSQL, where several instances may serve
/// one database, the window is a row every instance counts in (one upsert a request); on
/// SQLite, which one instance serves, it is kept in this process, so API requests never
/// wait for the database's one writer.
#[derive(Default)]
pub struct RateLimits {
    windows: Mutex<HashMap<i64, Window>>,
}

/// The window every limit is counted over, in seconds.
pub const RATE_WINDOW_SECS: i64 = 60;

impl RateLimits {
    async fn take(&self, db: &store::Db, key_id: i64, now: i64, limit: u32) -> anyhow::Result<Decision> {
        if let store::Db::Postgres(pool) = db {
            let (started, requests) = store::instances::count_request(pool, key_id, now, RATE_WINDOW_SECS).await?;
            return Ok(rate_limit::counted(started, requests, now, limit, RATE_WINDOW_SECS));
        }
        Ok(self.take_here(key_id, now, limit))
    }

    fn take_here(&self, key_id: i64, now: i64, limit: u32) -> Decision {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            // keys that went quiet: their windows are over anyway
            windows.retain(|_, w| w.started + RATE_WINDOW_SECS > now);
        }
        let (w, d) = rate_limit::take(windows.get(&key_id).copied(), now, limit, RATE_WINDOW_SECS);
        windows.insert(key_id, w);
        d
    }
}

/// Resolves the request's key into a [`Caller`] and counts it against the key's limit.
async fn caller(state: &AppState, req: &HttpRequest) -> Result<(Caller, Decision), ApiError> {
    let authorization = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let secret = api_keys::presented(authorization, req.query_string()).map_err(ApiError::unauthenticated)?;
    let now = crate::now();
    let row = state
        .api_keys
        .by_hash(&state.db, &api_keys::hash(secret))
        .await?
        .ok_or(ApiError::unauthenticated(KeyRefusal::Unknown))?;
    api_keys::check_active(row.revoked_at, row.expires_at, now).map_err(ApiError::unauthenticated)?;
    let span = tracing::Span::current();
    span.record("org_id", row.org_id);
    span.record("api_key_id", row.id);
    let limit = state.settings.api_rate_limit;
    let decision = state.rate_limits.take(&state.db, row.id, now, limit).await?;
    if !decision.allowed {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limited",
            format!(
                "This API key made more than {limit} requests in a minute; wait {} s (Retry-After) and go on.",
                decision.reset_secs
            ),
        );
        e.headers.push((header::RETRY_AFTER, decision.reset_secs.to_string()));
        e.headers
            .push((HeaderName::from_static("ratelimit-policy"), rate_limit::policy_header(limit, RATE_WINDOW_SECS)));
        e.headers.push((HeaderName::from_static("ratelimit"), rate_limit::state_header(&decision)));
        return Err(e);
    }
    let address = super::client_address(req, state.settings.trust_proxy);
    let stale = row.last_used_at.is_none_or(|at| at <= now - store::api_keys::LAST_USED_EVERY_SECS);
    if stale {
        match store::api_keys::touch(&state.db, row.id, &address, now).await {
            Ok(()) => state.api_keys.used(row.id, now, &address),
            // the request goes on: "last used" is a courtesy, not a record
            Err(e) => tracing::warn!(error = ?e, api_key_id = row.id, "could not note the key's use"),
        }
    }
    let caller = Caller {
        key_id: row.id,
        key_name: row.name,
        org: OrgId::new(row.org_id),
        permissions: api_keys::parse_permissions(&row.permissions),
    };
    Ok((caller, decision))
}

/// Middleware of the `/api/v1` scope: no valid key, no further.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError("app state missing"));
    };
    let (caller, decision) = match caller(&state, req.request()).await {
        Ok(c) => c,
        Err(e) => return Ok(req.error_response(e)),
    };
    req.extensions_mut().insert(caller);
    let mut res = next.call(req).await?;
    let limit = state.settings.api_rate_limit;
    let headers = res.headers_mut();
    for (name, value) in [
        ("ratelimit-policy", rate_limit::policy_header(limit, RATE_WINDOW_SECS)),
        ("ratelimit", rate_limit::state_header(&decision)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    Ok(res)
}

/// Query parameters, each given at most once: a repeated one is refused, not guessed at.
pub fn query_params(req: &HttpRequest, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| ApiError::invalid("query", "The query string could not be read."))?;
    let mut out = HashMap::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::invalid(
                &k,
                format!("Unknown parameter \"{k}\"; this endpoint takes {}.", known.join(", ")),
            ));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::invalid(&k, format!("The parameter \"{k}\" is given more than once.")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::allowed_methods;

    #[test]
    fn known_paths_name_their_methods() {
        assert_eq!(allowed_methods("/api/v1/imports"), Some("GET, POST"));
        assert_eq!(allowed_methods("/api/v1/imports/12/rollback"), Some("POST"));
        assert_eq!(allowed_methods("/api/v1/uploads/imports/12"), Some("PUT"));
        assert_eq!(allowed_methods("/api/v1/imports/12/explode"), None);
        assert_eq!(allowed_methods("/api/v1/nothing"), None);
    }
}
