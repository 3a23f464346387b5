//! Static files, compiled into the binary so one file is the whole app.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::error::AppError;

/// Bumped with the crate version so browsers fetch new assets after an upgrade.
pub const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match name {
        "app.css" => ("text/css; charset=utf-8", include_bytes!("../../static/app.css")),
        "app.js" => ("text/javascript; charset=utf-8", include_bytes!("../../static/app.js")),
        // htmx.org from the npm registry, `package/dist/htmx.min.js`; the version is in the name
        "htmx-2.0.11.min.js" => ("text/javascript; charset=utf-8", include_bytes!("../../static/htmx-2.0.11.min.js")),
        "favicon.svg" => ("image/svg+xml", include_bytes!("../../static/favicon.svg")),
        _ => return None,
    })
}

pub async fn serve(path: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (content_type, body) = asset(&path).ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body))
}
