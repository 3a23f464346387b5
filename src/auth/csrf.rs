//! CSRF protection. Every state-changing request (anything but GET, HEAD and OPTIONS)
//! outside the token-authenticated `/api/` must carry the session's token: as the
//! `csrf_token` field of a url-encoded form, in the query string of a multipart upload,
//! or in the `X-CSRF-Token` header. Without
//! it the request is refused with 403 before any handler runs, so nothing changes. A request
//! that says it comes from another site (`Origin` naming another host, or
//! `Sec-Fetch-Site: cross-site`) is refused the same way, token or not.

use actix_web::HttpMessage;
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use futures_util::StreamExt;
use subtle::ConstantTimeEq;

use super::session::AppSession;
use crate::error::AppError;

/// The form field that carries the token.
pub const FIELD: &str = "csrf_token";
/// The header that carries the token for requests that are not url-encoded forms.
pub const HEADER: &str = "x-csrf-token";
/// The largest url-encoded form accepted.
pub const FORM_LIMIT: usize = 64 * 1024;

fn exempt(req: &ServiceRequest) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || req.path().starts_with("/api/")
}

/// Constant-time comparison of the submitted token with the session's.
pub fn tokens_match(expected: &str, submitted: &str) -> bool {
    !expected.is_empty() && expected.as_bytes().ct_eq(submitted.as_bytes()).into()
}

fn is_multipart(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// File uploads stream to storage, so their token travels in the form's action URL
/// (`?csrf_token=…`) rather than in a body field read ahead of the file.
fn token_in_query(req: &ServiceRequest) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .ok()?
        .into_iter()
        .find(|(k, _)| k == FIELD)
        .map(|(_, v)| v)
}

fn is_form(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// Reads the form body (up to [`FORM_LIMIT`]) and puts it back for the handler.
async fn buffer_form(req: &mut ServiceRequest) -> Result<Bytes, AppError> {
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::BadRequest(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > FORM_LIMIT {
            return Err(AppError::PayloadTooLarge(crate::config::format_size(FORM_LIMIT as u64)));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    req.set_payload(body.clone().into());
    Ok(body)
}

fn token_in_form(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == FIELD)
        .map(|(_, v)| v)
}

/// Whether the browser says the request comes from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` whose host (and port) is not `host`, the one the request was
/// sent to (`null`, as sandboxed pages send, is another site too). Requests without either
/// header (older browsers, scripts) are left to the token.
///
/// A browser's `Sec-Fetch-Site` is taken as it is (a page cannot forge it), so a proxy that
/// rewrites `Host` does not break forms; `Origin` is compared only when it is missing.
pub fn from_another_site(origin: Option<&str>, fetch_site: Option<&str>, host: &str) -> bool {
    if let Some(site) = fetch_site {
        return site.trim().eq_ignore_ascii_case("cross-site");
    }
    match origin.map(str::trim) {
        None => false,
        Some(o) => {
            let authority = o.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
            !authority.is_some_and(|a| !a.is_empty() && a.eq_ignore_ascii_case(host))
        }
    }
}

pub async fn check_csrf(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if exempt(&req) {
        return next.call(req).await;
    }
    let header_text = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (origin, fetch_site) = (header_text("origin"), header_text("sec-fetch-site"));
    let host = req.connection_info().host().to_string();
    if from_another_site(origin.as_deref(), fetch_site.as_deref(), &host) {
        tracing::warn!(
            path = req.path(),
            origin = origin.as_deref().unwrap_or(""),
            "request refused: sent from another site"
        );
        return Ok(req.error_response(AppError::Csrf));
    }
    let expected = AppSession::from_request_ref(req.request()).existing_csrf_token().unwrap_or_default();
    let submitted = if is_multipart(&req) {
        token_in_query(&req).or_else(|| req.headers().get(HEADER).and_then(|v| v.to_str().ok()).map(str::to_string))
    } else if is_form(&req) {
        match buffer_form(&mut req).await {
            Ok(body) => token_in_form(&body),
            Err(e) => return Ok(req.error_response(e)),
        }
    } else {
        req.headers().get(HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
    };
    match submitted {
        Some(t) if tokens_match(&expected, &t) => next.call(req).await,
        _ => {
            tracing::warn!(path = req.path(), "request refused: missing or invalid CSRF token");
            Ok(req.error_response(AppError::Csrf))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_match_exactly_and_not_be_empty() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert!(!tokens_match("", ""));
    }

    #[test]
    fn requests_from_another_site_are_known_by_origin_or_fetch_metadata() {
        let host = "app.example.com:8080";
        assert!(!from_another_site(None, None, host), "no headers: the token decides");
        assert!(!from_another_site(Some("http://app.example.com:8080"), Some("same-origin"), host));
        assert!(!from_another_site(Some("https://APP.example.com:8080/"), None, host));
        assert!(from_another_site(Some("https://evil.example"), None, host));
        assert!(from_another_site(Some("http://app.example.com"), None, host), "another port is another origin");
        assert!(from_another_site(Some("null"), None, host));
        assert!(from_another_site(None, Some("cross-site"), host));
        assert!(!from_another_site(None, Some("same-site"), host));
        assert!(
            !from_another_site(Some("https://app.example.com"), Some("same-origin"), "127.0.0.1:8080"),
            "behind a proxy that rewrites Host, the browser's word stands"
        );
    }

    #[test]
    fn the_token_is_found_among_form_fields() {
        assert_eq!(token_in_form(b"a=1&csrf_token=x%2By&b=2"), Some("x+y".into()));
        assert_eq!(token_in_form(b"a=1"), None);
    }
}
