//! `export.build`: writes an export request's file. Rows stream from the database a page
//! at a time into the file, never whole in memory; the file is written beside its final
//! name and renamed when complete, so a job taken over after a crash starts the file again
//! and nobody ever downloads half of one.
//!
//! CSV: one file per entity, headers exactly the importer template's, values as the
//! importer reads them, formula-like cells neutralized; zipped when there is more than one.
//! XLSX: one workbook in constant-memory mode, a sheet per entity with a bold, frozen
//! header row and widths from the headers, a new sheet past Excel's 1,048,576 rows.
//! JSON: JSON Lines, one document per entity, zipped when more than one.
//!
//! This module owns the job itself (claim the request, build, publish, complete); `build`
//! reads the rows and writes the file, `sink` the three formats.

mod build;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use self::build::{BuildError, build};
use self::sink::storage;
use super::{JobContext, JobHandler};
use crate::domain::entities::Schemas;
use crate::domain::exports::Format;
use crate::domain::ids::OrgId;
use crate::domain::jobs::Outcome;
use crate::files::object::FileStore;
use crate::store::Db;
use crate::store::exports::{self as store, ExportRow};

pub const KIND: &str = "export.build";

/// Rows read per query.
const PAGE: i64 = 5000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub org_id: i64,
    pub export_id: i64,
}

/// Queues the build of an export request.
pub async fn enqueue(db: &Db, org: OrgId, export_id: i64) -> anyhow::Result<()> {
    let payload = serde_json::to_value(Payload { org_id: org.get(), export_id })?;
    super::enqueue(db, Some(org), KIND, &payload, None).await?;
    Ok(())
}

pub struct ExportHandler {
    pub schemas: Arc<Schemas>,
    pub files: FileStore,
}

/// The content type an export is served with.
pub fn content_type(r: &ExportRow) -> &'static str {
    if r.file_name.ends_with(".zip") {
        "application/zip"
    } else {
        Format::parse(&r.format).map(Format::content_type).unwrap_or("application/octet-stream")
    }
}

/// Where the object of an export goes in the bucket (below its prefix).
fn object_key(r: &ExportRow) -> String {
    let ext = r.file_name.rsplit('.').next().unwrap_or("bin");
    format!("exports/{}/{}.{ext}", r.org_id, r.id)
}

impl ExportHandler {
    /// One attempt at an export request: claim it, write the file, publish it, complete it.
    #[tracing::instrument(skip_all, fields(org_id = p.org_id, export_id = p.export_id))]
    async fn export(&self, ctx: &JobContext, p: Payload) -> Outcome {
        let org = OrgId::new(p.org_id);
        let req = match store::get(&ctx.db, org, p.export_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return Outcome::Done,
            Err(e) => return Outcome::Retry(format!("{e:#}")),
        };
        match store::start(&ctx.db, req.id).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Done,
            Err(e) => return Outcome::Retry(format!("{e:#}")),
        }
        let part_path = PathBuf::from(format!("{}.part", req.file_path));
        match build(&ctx.db, &self.schemas, &req, &part_path, ctx).await {
            Ok(Some(rows)) => self.publish(ctx, &req, &part_path, rows).await,
            Ok(None) => {
                let _ = std::fs::remove_file(&part_path);
                Outcome::Stopped
            }
            Err(BuildError::Retry(e)) => {
                let _ = std::fs::remove_file(&part_path);
                Outcome::Retry(e)
            }
            Err(BuildError::Fail(why)) => {
                let _ = std::fs::remove_file(&part_path);
                match store::fail(&ctx.db, req.id, &why).await {
                    Ok(()) => Outcome::Done,
                    Err(e) => Outcome::Retry(format!("{e:#}")),
                }
            }
        }
    }

    /// A written file: renamed to its final name, moved to the bucket when there is one,
    /// and the request completed with its row count and size.
    #[tracing::instrument(skip_all, fields(export_id = req.id, rows = rows))]
    async fn publish(&self, ctx: &JobContext, req: &ExportRow, part_path: &Path, rows: i64) -> Outcome {
        let size = std::fs::metadata(part_path).map(|m| m.len() as i64).unwrap_or(0);
        if let Err(e) = std::fs::rename(part_path, &req.file_path) {
            let _ = store::fail(&ctx.db, req.id, &storage(e)).await;
            return Outcome::Done;
        }
        let disposition = crate::files::attachment(&req.file_name);
        let published =
            self.files.publish(Path::new(&req.file_path), &object_key(req), content_type(req), &disposition).await;
        let object = match published {
            Ok(key) => key,
            // the bucket may be back in a moment: the job retries, and says so on the page
            // when it gives up
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), export_id = req.id, "storing an export in the bucket failed");
                if ctx.job.attempts >= ctx.job.max_attempts {
                    let why = "the file could not be stored in the bucket (see the server log)";
                    return match store::fail(&ctx.db, req.id, why).await {
                        Ok(()) => Outcome::Done,
                        Err(e) => Outcome::Retry(format!("{e:#}")),
                    };
                }
                return Outcome::Retry(format!("storing the file in the bucket: {e:#}"));
            }
        };
        match store::complete(&ctx.db, req.id, rows, size, object.as_deref()).await {
            Ok(_) => {
                crate::metrics::add_export_bytes(size.max(0) as u64);
                Outcome::Done
            }
            Err(e) => Outcome::Retry(format!("{e:#}")),
        }
    }
}

impl JobHandler for ExportHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move {
            let p = match ctx.payload::<Payload>() {
                Ok(p) => p,
                Err(e) => return Outcome::Fail(e),
            };
            let (id, out) = (p.export_id, self.export(ctx, p).await);
            match out {
                // the last attempt: the request fails with what happened in plain words (the
                // error itself is in the log), rather than staying Processing
                Outcome::Retry(e) if ctx.job.attempts >= ctx.job.max_attempts => {
                    tracing::warn!(error = %e, export_id = id, "export gave up");
                    let why = format!(
                        "a database or storage error kept interrupting it (tried {} times; see the server log). Request it again.",
                        ctx.job.attempts
                    );
                    if let Err(f) = store::fail(&ctx.db, id, &why).await {
                        tracing::warn!(error = ?f, export_id = id, "recording the export's failure failed");
                    }
                    Outcome::Retry(e)
                }
                other => other,
            }
        })
    }
}
