//! Logging. One subscriber (text or JSON lines); one span per request carrying a
//! request id, the user and org (filled in once known), and a closing line with the
//! status and latency. Row data and secrets are never logged.

use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` filter.
pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,actix_server=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

/// The request's id, also sent back as `X-Request-Id` and shown on error pages.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn new_request_id() -> String {
    crate::random_token(8).unwrap_or_else(|_| format!("{:x}", crate::now()))
}

pub async fn log_requests(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let request_id = new_request_id();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.path(),
        user_id = tracing::field::Empty,
        org_id = tracing::field::Empty,
        api_key_id = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let result = next.call(req).instrument(span.clone()).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let _enter = span.enter();
    match result {
        Ok(mut res) => {
            let status = res.status().as_u16();
            if let Some(e) = res.response().error()
                && status >= 500
            {
                tracing::error!(error = ?e, "request failed");
            }
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                res.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
            }
            tracing::info!(status, latency_ms = format!("{latency_ms:.1}"), "request");
            let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
            crate::metrics::observe_request(res.request().method().as_str(), &route, status, latency_ms / 1000.0);
            Ok(res)
        }
        Err(e) => {
            tracing::error!(error = %e, latency_ms = format!("{latency_ms:.1}"), "request failed");
            Err(e)
        }
    }
}
