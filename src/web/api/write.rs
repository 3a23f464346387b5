//! Creating imports through the API: `POST /api/v1/imports` (an import waiting for its file,
//! with a signed upload URL), and what every POST of the API shares: the `Idempotency-Key`
//! wrapper and reading a JSON body. The upload is in [`super::upload`], start, pause, resume,
//! cancel and rollback in [`super::control`].

use std::collections::BTreeMap;
use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use md5::Digest;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::imports::{ImportObject, object};
use super::{ApiError, Caller};
use crate::domain::ids::Actor;
use crate::domain::imports::{Action, DuplicateHandling, model::parse_chunk_size};
use crate::domain::permissions::Permission;
use crate::state::AppState;
use crate::store::api_keys::{self as key_store, Idempotency};
use crate::store::imports::{self as store, NewImport};

/// What `POST /api/v1/imports` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateImport {
    /// The resource to import into (see /api/v1/resources).
    pub resource: String,
    /// merge (default), overwrite or delete.
    #[schema(pattern = "^(merge|overwrite|delete)$")]
    pub action: Option<String>,
    /// async (default): the upload answers at once; sync: it answers once validation ran,
    /// with the first 100 problems.
    #[schema(pattern = "^(sync|async)$")]
    pub upload_mode: Option<String>,
    /// ignore_all (default) or use_first.
    #[schema(pattern = "^(ignore_all|use_first)$")]
    pub duplicate_handling: Option<String>,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Resource field → the file's column header, or an object with the header (`column`),
    /// the `format` its values are written in (dates: `DD/MM/YYYY` and the like or
    /// `excel_serial`; decimals: `decimal_comma`, `decimal_point`) and, for enums, `values`
    /// mapping the file's values to allowed ones. Left out: matched by name.
    pub column_mapping: Option<BTreeMap<String, super::mapping::MappingEntry>>,
    /// true: wait as `queued` after validation until POST /api/v1/imports/{id}/start.
    pub review: Option<bool>,
    /// Rows per processing chunk, 1 to 10000 (default 50).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    pub chunk_size: Option<f64>,
}

/// The idempotency wrapper of every POST: the first answer to a key and body is kept and
/// replayed for 24 hours; the same key with another body is a 409.
pub(super) async fn idempotent<F, Fut>(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: &[u8],
    run: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), ApiError>>,
{
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str().map(str::trim) {
            Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x21..=0x7e).contains(&b)) => {
                Some(k.to_string())
            }
            _ => {
                return Err(ApiError::invalid(
                    "Idempotency-Key",
                    "The Idempotency-Key header must be 1 to 255 visible ASCII characters, without spaces (a UUID, say).",
                ));
            }
        },
    };
    let Some(key) = key else {
        return Ok(match run().await {
            Ok((status, v)) => HttpResponse::build(status).json(v),
            Err(e) => e.error_response(),
        });
    };
    let hash = {
        let mut h = Sha256::new();
        h.update(req.method().as_str().as_bytes());
        h.update(b" ");
        h.update(req.path().as_bytes());
        h.update(b"\n");
        h.update(body);
        hex::encode(h.finalize())
    };
    match key_store::begin_idempotent(&state.db, caller.key_id, &key, &hash).await? {
        Idempotency::Replay(status, body) => {
            return Ok(HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
                .insert_header((HeaderName::from_static("idempotent-replayed"), "true"))
                .content_type("application/json")
                .body(body));
        }
        Idempotency::Mismatch => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "idempotency_key_reused",
                "This Idempotency-Key was used for another request in the last 24 hours; use a new key for a new request.",
            )
            .param("Idempotency-Key"));
        }
        Idempotency::InFlight => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict_error",
                "idempotency_in_progress",
                "A request with this Idempotency-Key is still running; ask again in a moment for its answer.",
            )
            .param("Idempotency-Key"));
        }
        Idempotency::New => {}
    }
    let (status, text) = match run().await {
        Ok((status, v)) => (status, serde_json::to_string(&v).map_err(anyhow::Error::from)?),
        Err(e) => {
            let res = e.error_response();
            let body = serde_json::json!({ "error": {
                "type": e.kind, "code": e.code, "message": e.message, "param": e.param
            }});
            key_store::finish_idempotent(&state.db, caller.key_id, &key, e.status.as_u16(), &body.to_string()).await?;
            return Ok(res);
        }
    };
    key_store::finish_idempotent(&state.db, caller.key_id, &key, status.as_u16(), &text).await?;
    Ok(HttpResponse::build(status).content_type("application/json").body(text))
}

pub(super) fn json_value<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    Ok(serde_json::to_value(v).map_err(anyhow::Error::from)?)
}

fn enum_param<T>(
    raw: Option<&str>,
    name: &str,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
    all: &str,
) -> Result<T, ApiError> {
    // exactly one of the documented values: the web form's empty "default" is not one here
    match raw {
        None => Ok(default),
        Some(v) => (!v.is_empty())
            .then(|| parse(v))
            .flatten()
            .ok_or_else(|| ApiError::invalid(name, format!("\"{v}\" is not one of {all}."))),
    }
}

/// Reads a JSON body (415 when it is not JSON, 400 naming what is wrong).
pub(super) fn json_body<T: serde::de::DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, ApiError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            "Send the body as JSON, with Content-Type: application/json.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        // serde names an unknown or missing field in backticks
        let param = (msg.starts_with("unknown field") || msg.starts_with("missing field"))
            .then(|| msg.split('`').nth(1).map(str::to_string))
            .flatten();
        let mut err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body_invalid",
            format!("The JSON body could not be read: {msg}."),
        );
        err.param = param;
        err
    })
}

/// Create an import
///
/// The import waits for its file (status `requested`) at `_upload_url`, a signed URL good for
/// one hour. Without `review` it then runs to completed by itself.
#[utoipa::path(
    post,
    path = "/api/v1/imports",
    operation_id = "createImport",
    tag = "Imports",
    request_body = CreateImport,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 hours", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    responses(
        (status = 201, description = "Created, waiting for its file at `_upload_url`", body = ImportObject),
        (status = 400, description = "A field is not valid", body = super::ErrorBody),
        (status = 401, description = "No valid API key", body = super::ErrorBody),
        (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
        (status = 409, description = "The Idempotency-Key was used for another request", body = super::ErrorBody),
        (status = 415, description = "The body is not JSON", body = super::ErrorBody),
        (status = 429, description = "Rate limit reached", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
#[tracing::instrument(skip_all, fields(org_id = caller.org.get()))]
pub async fn create(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    idempotent(&state, &caller, &req, &body, || async {
        let c: CreateImport = json_body(&req, &body)?;
        let schema = state.schemas.get(c.resource.trim()).cloned().ok_or_else(|| {
            ApiError::invalid("resource", format!("\"{}\" is not a resource; see /api/v1/resources.", c.resource))
        })?;
        let action = enum_param(
            c.action.as_deref(),
            "action",
            Action::Merge,
            |v| Action::parse(v).ok(),
            "merge, overwrite, delete",
        )?;
        let handling = enum_param(
            c.duplicate_handling.as_deref(),
            "duplicate_handling",
            DuplicateHandling::IgnoreAll,
            |v| DuplicateHandling::parse(v).ok(),
            "ignore_all, use_first",
        )?;
        let sync = enum_param(
            c.upload_mode.as_deref(),
            "upload_mode",
            false,
            |v| match v {
                "sync" => Some(true),
                "async" => Some(false),
                _ => None,
            },
            "sync, async",
        )?;
        // 40 and 40.0 are the same number in JSON
        let chunk_size = match c.chunk_size {
            Some(n) if n.fract() != 0.0 || !n.is_finite() => {
                return Err(ApiError::invalid(
                    "chunk_size",
                    format!("Chunk size {n} must be a whole number from 1 to 10000."),
                ));
            }
            other => parse_chunk_size(other.map(|n| (n as i64).to_string()).as_deref())
                .map_err(|m| ApiError::invalid("chunk_size", m))?,
        };
        let (mapping, options) = super::mapping::split_mapping(&schema, c.column_mapping.unwrap_or_default())?;
        let name = c.name.unwrap_or_default();
        if name.chars().count() > 200 {
            return Err(ApiError::invalid("name", "A name can be at most 200 characters."));
        }
        let label = caller.label();
        let id = store::create(
            &state.db,
            caller.org,
            &NewImport {
                entity: &schema.name,
                name: name.trim(),
                action,
                duplicate_handling: handling,
                file_name: "",
                file_path: "",
                file_size: 0,
                checksum: "",
                chunk_size,
                created_by: Actor::Key(caller.key_id),
                created_by_label: &label,
                upload_mode_sync: sync,
                auto_start: !c.review.unwrap_or(false),
            },
        )
        .await?;
        tracing::Span::current().record("import_id", id);
        if !mapping.is_empty() {
            store::set_requested_mapping(&state.db, id, &mapping, &options).await?;
        }
        caller
            .audit(
                &state,
                &req,
                "import_created",
                &format!("import {id}"),
                &format!("{}, {}", schema.label, action.label()),
            )
            .await?;
        let imp = store::get(&state.db, caller.org, id).await?.ok_or_else(|| ApiError::not_found("import"))?;
        Ok((StatusCode::CREATED, json_value(&object(&state, &imp).await?)?))
    })
    .await
}
