//! Writing an export's file: entity data page by page (the next page read while this one
//! is written), or the import history and the audit log; progress stored after each page.

use std::path::Path;
use std::sync::Arc;

use super::sink::{Part, Sink, storage, write_records};
use super::{JobContext, PAGE};
use crate::domain::entities::Schemas;
use crate::domain::exports::{ExportType, Format};
use crate::domain::ids::OrgId;
use crate::store::Db;
use crate::store::exports::{self as store, ExportRow};

pub(super) enum BuildError {
    /// A database hiccup: try again.
    Retry(String),
    /// The request cannot be built: shown to the user.
    Fail(String),
}

impl From<anyhow::Error> for BuildError {
    fn from(e: anyhow::Error) -> Self {
        BuildError::Retry(format!("{e:#}"))
    }
}

/// Writes the file; the number of rows, or None when asked to stop.
#[tracing::instrument(skip_all, fields(org_id = req.org_id, export_id = req.id))]
pub(super) async fn build(
    db: &Db,
    schemas: &Schemas,
    req: &ExportRow,
    path: &Path,
    ctx: &JobContext,
) -> Result<Option<i64>, BuildError> {
    let org = OrgId::new(req.org_id);
    let kind = ExportType::parse(&req.export_type).ok_or_else(|| BuildError::Fail("unknown export type".into()))?;
    let format = Format::parse(&req.format).ok_or_else(|| BuildError::Fail("unknown format".into()))?;
    let range = (req.date_from, req.date_to);
    let entities: Vec<String> = serde_json::from_str(&req.entity_types).unwrap_or_default();
    let zipped = kind == ExportType::EntityData && entities.len() > 1 && format != Format::Xlsx;
    let mut sink = Sink::open(path, format, zipped).map_err(|e| BuildError::Fail(storage(e)))?;
    let mut total = 0i64;
    match kind {
        ExportType::EntityData => {
            for name in &entities {
                let schema = schemas
                    .get(name)
                    .ok_or_else(|| BuildError::Fail(format!("the entity type \"{name}\" no longer exists")))?;
                sink.start_part(&format!("{name}.{}", format.extension()), &schema.label)
                    .map_err(|e| BuildError::Fail(storage(e)))?;
                let columns: Arc<Vec<String>> = Arc::new(schema.fields.iter().map(|f| f.name().to_string()).collect());
                Part { format, sink: &mut sink, columns: vec![] }.header(&columns).map_err(BuildError::Fail)?;
                // the next page is read while this one is written (on a blocking thread):
                // the database and the serializing each get a core
                let mut page = store::records_page(db, org, name, range, 0, PAGE).await?;
                while let Some(last) = page.last().map(|r| r.0) {
                    let cols = columns.clone();
                    let mut s = sink;
                    let write = tokio::task::spawn_blocking(move || {
                        let written = write_records(&mut s, format, &cols, &page);
                        (s, written)
                    });
                    let (written, next) = tokio::join!(write, store::records_page(db, org, name, range, last, PAGE));
                    let (s, written) = written.map_err(|e| BuildError::Retry(format!("writing a page: {e}")))?;
                    sink = s;
                    total += written.map_err(BuildError::Fail)?;
                    store::progress(db, req.id, total).await?;
                    if ctx.should_stop() {
                        return Ok(None);
                    }
                    page = next?;
                }
            }
        }
        ExportType::ImportHistory | ExportType::AuditLog => {
            sink.start_part("", kind.label()).map_err(|e| BuildError::Fail(storage(e)))?;
            let mut part = Part { format, sink: &mut sink, columns: vec![] };
            let names: &[&str] = if kind == ExportType::ImportHistory {
                &[
                    "id",
                    "entity",
                    "name",
                    "file",
                    "action",
                    "status",
                    "total_rows",
                    "created",
                    "updated",
                    "deleted",
                    "failed",
                    "created_by",
                    "created_at",
                ]
            } else {
                &["id", "at", "who", "action", "target", "detail", "address"]
            };
            let columns: Vec<String> = names.iter().map(|c| c.to_string()).collect();
            part.header(&columns).map_err(BuildError::Fail)?;
            let mut after = 0i64;
            loop {
                let rows: Vec<Vec<serde_json::Value>> = if kind == ExportType::ImportHistory {
                    crate::store::imports::page_after(db, org, range, after, PAGE)
                        .await?
                        .into_iter()
                        .map(|i| {
                            let values: Vec<serde_json::Value> = vec![
                                i.id.into(),
                                i.entity.clone().into(),
                                i.name.clone().into(),
                                i.file.name.clone().into(),
                                i.action.as_str().into(),
                                i.stage.as_str().into(),
                                i.validated.total_rows.into(),
                                i.created_rows.into(),
                                i.updated_rows.into(),
                                i.deleted_rows.into(),
                                i.not_imported_rows().into(),
                                i.created_by_label.clone().into(),
                                iso(i.created_at).into(),
                            ];
                            values
                        })
                        .collect()
                } else {
                    store::audit_page(db, org, range, after, PAGE)
                        .await?
                        .into_iter()
                        .map(|e| {
                            let values: Vec<serde_json::Value> = vec![
                                e.id.into(),
                                iso(e.at).into(),
                                e.actor_label.into(),
                                e.action.into(),
                                e.target.into(),
                                e.detail.into(),
                                e.address.into(),
                            ];
                            values
                        })
                        .collect()
                };
                let Some(last) = rows.last().and_then(|r| r.first()).and_then(|v| v.as_i64()) else { break };
                part.rows(&rows).map_err(BuildError::Fail)?;
                total += rows.len() as i64;
                after = last;
                store::progress(db, req.id, total).await?;
                if ctx.should_stop() {
                    return Ok(None);
                }
            }
        }
    }
    sink.finish().map_err(|e| BuildError::Fail(storage(e)))?;
    Ok(Some(total))
}

/// A timestamp as an ISO 8601 UTC date and time.
fn iso(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
