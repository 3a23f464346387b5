//! For operators: `/healthz` (200 when the database answers), `/readyz` (the database
//! answers, files can be kept, every migration this build knows is applied) and `/metrics`
//! (Prometheus' text format, behind the bearer token `STEVEDORE_METRICS_TOKEN`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::state::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ok", "database": state.db.backend() })),
        Err(e) => {
            tracing::error!(error = ?e, "health check failed");
            HttpResponse::ServiceUnavailable().json(json!({ "status": "unavailable", "database": state.db.backend() }))
        }
    }
}

/// 200 with each check's result when the instance can take traffic, else 503 saying which
/// check failed.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.db.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("unreachable: {e:#}"),
    };
    let storage = match state.files.check(&state.settings.db.data_dir).await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("unavailable: {e:#}"),
    };
    let migrations = match state.db.migrations().await {
        Ok((applied, known)) if applied >= known => "current".to_string(),
        Ok((applied, known)) => format!("behind: {applied} of {known} applied"),
        Err(e) => format!("unknown: {e:#}"),
    };
    let ready = database == "ok" && storage == "ok" && migrations == "current";
    if !ready {
        tracing::warn!(%database, %storage, %migrations, "not ready");
    }
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": database,
        "storage": storage,
        "migrations": migrations,
    });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// The metrics, for a request with the configured bearer token; 404 when no token is
/// configured (off), 401 without the right one.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let Some(token) = &state.settings.metrics_token else {
        return HttpResponse::NotFound().json(json!({ "error": "metrics are off: set STEVEDORE_METRICS_TOKEN" }));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .json(json!({ "error": "a bearer token is required" }));
    }
    let jobs = match crate::store::jobs::counts(&state.db).await {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = ?e, "reading the job queue for metrics");
            return HttpResponse::ServiceUnavailable().json(json!({ "error": "the database did not answer" }));
        }
    };
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(crate::metrics::render(&jobs))
}
