//! `import.validate` and `import.process`: the background phases of an import.
//!
//! Validation makes five streaming passes over the stored file, one per seed-004 phase,
//! each recording its status, timing and counts; rows it leaves out are stored as issues
//! with the reason and the original cells. Processing writes the remaining rows in chunks,
//! each chunk one transaction that also moves the import's cursor, so a job taken over
//! after a crash continues after the last committed chunk and never writes a row twice.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::{JobContext, JobHandler};
use crate::domain::entities::{EntitySchema, FieldKind, Schemas};
use crate::domain::ids::OrgId;
use crate::domain::imports::{Action, DuplicateHandling, Phase, Stage};
use crate::domain::jobs::Outcome;
use crate::files::fetch::Fetcher;
use crate::files::{FileInfo, sniff, visit_rows};
use crate::store::Db;
use crate::store::imports::{self as store, ImportRow, PhaseEnd, Validated};
use crate::store::journal::{self, RollbackTarget};
use crate::store::staging::{self, ChunkTarget, StagedIssue, StagedRow, StagedValue};

pub const VALIDATE: &str = "import.validate";
pub const PROCESS: &str = "import.process";
pub const ROLLBACK: &str = "import.rollback";

/// Journal entries one rollback transaction undoes at most (the import's chunk size, up to
/// this).
const ROLLBACK_CHUNK: i64 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub org_id: i64,
    pub import_id: i64,
}

type Row = (u64, Vec<String>);

/// What the file-reading thread sends: a batch, or why reading stopped.
type Sent<T> = Result<T, String>;

/// The file's rows, read and turned into batches on a blocking thread; memory stays at a
/// few batches.
struct Batches<T> {
    rx: tokio::sync::mpsc::Receiver<Sent<T>>,
}

impl<T: Send + 'static> Batches<T> {
    /// `f(row number, cells, last)` returns a batch to send when it has one; `last` asks it
    /// to hand over what it holds.
    fn open<F>(path: PathBuf, info: FileInfo, mut f: F) -> Batches<T>
    where
        F: FnMut(u64, &[String], bool) -> Option<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<Sent<T>>(2);
        tokio::task::spawn_blocking(move || {
            let res = visit_rows(&path, &info, &mut |n, cells| {
                // a closed channel means the reader was dropped: stop reading
                Ok(match f(n, cells, false) {
                    Some(b) => tx.blocking_send(Ok(b)).is_ok(),
                    None => true,
                })
            });
            let _ = match res {
                Ok(()) => match f(0, &[], true) {
                    Some(b) => tx.blocking_send(Ok(b)),
                    None => Ok(()),
                },
                Err(e) => tx.blocking_send(Err(e.to_string())),
            };
        });
        Batches { rx }
    }

    async fn next(&mut self) -> Option<Sent<T>> {
        self.rx.recv().await
    }
}

/// Where each mapped field's value sits in a row.
struct Columns {
    by_field: HashMap<String, usize>,
}

impl Columns {
    fn new(imp: &ImportRow) -> Result<Columns, String> {
        let headers: Vec<String> = serde_json::from_str(&imp.headers).map_err(|e| format!("stored headers: {e}"))?;
        let mapping: BTreeMap<String, String> =
            serde_json::from_str(&imp.column_mapping).map_err(|e| format!("stored mapping: {e}"))?;
        let mut by_field = HashMap::new();
        for (field, header) in mapping {
            let i = headers
                .iter()
                .position(|h| *h == header)
                .ok_or_else(|| format!("the column \"{header}\" is not in the file"))?;
            by_field.insert(field, i);
        }
        Ok(Columns { by_field })
    }

    fn cell<'a>(&self, cells: &'a [String], field: &str) -> Option<&'a str> {
        self.by_field.get(field).map(|i| cells.get(*i).map(String::as_str).unwrap_or(""))
    }
}

fn cells_json(cells: &[String]) -> String {
    serde_json::to_string(cells).unwrap_or_else(|_| "[]".into())
}

/// Shared state of the handlers.
pub struct Handlers {
    pub schemas: Arc<Schemas>,
    pub fetcher: Fetcher,
}

struct Run<'a> {
    db: &'a Db,
    imp: ImportRow,
    schema: Arc<EntitySchema>,
    info: FileInfo,
    path: PathBuf,
}

impl<'a> Run<'a> {
    async fn open(db: &'a Db, schemas: &Schemas, p: &Payload, want: Stage) -> Result<Option<Run<'a>>, String> {
        let Some(imp) = store::get(db, OrgId::new(p.org_id), p.import_id).await.map_err(|e| format!("{e:#}"))? else {
            return Ok(None);
        };
        if imp.stage() != want {
            return Ok(None);
        }
        let schema = schemas
            .get(&imp.resource)
            .cloned()
            .ok_or_else(|| format!("the entity type \"{}\" no longer exists", imp.resource))?;
        let path = PathBuf::from(&imp.file_path);
        let (p2, sheet) = (path.clone(), imp.sheet.clone());
        let info = tokio::task::spawn_blocking(move || sniff(&p2, sheet.as_deref()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(Some(Run { db, imp, schema, info, path }))
    }

    async fn phase<T, Fut>(&self, phase: Phase, work: Fut) -> Result<T, String>
    where
        Fut: Future<Output = Result<(T, i64, i64, String), String>>,
    {
        store::phase_started(self.db, self.imp.id, phase.as_str()).await.map_err(|e| format!("{e:#}"))?;
        let started = Instant::now();
        let res = work.await;
        let ms = started.elapsed().as_millis() as i64;
        let (status, rows_in, rows_out, detail, out) = match res {
            Ok((v, i, o, d)) => ("completed", i, o, d, Ok(v)),
            Err(e) => ("failed", 0, 0, e.clone(), Err(e)),
        };
        store::phase_finished(
            self.db,
            self.imp.id,
            phase.as_str(),
            &PhaseEnd { status, duration_ms: ms, rows_in, rows_out, detail: &detail },
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
        out
    }
}

fn retry(e: anyhow::Error) -> String {
    format!("{e:#}")
}

impl Handlers {
    async fn validate(&self, ctx: &JobContext) -> Outcome {
        let p: Payload = match ctx.payload() {
            Ok(p) => p,
            Err(e) => return Outcome::Fail(e),
        };
        let run = match Run::open(&ctx.db, &self.schemas, &p, Stage::Validating).await {
            Ok(Some(r)) => r,
            Ok(None) => return Outcome::Done,
            Err(e) => return fail_import(&ctx.db, p.import_id, Stage::Validating, &e).await,
        };
        match validate(&run, ctx, &self.fetcher).await {
            Ok(Some(v)) => match store::finish_validation(&ctx.db, p.import_id, &v).await {
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::Retry(retry(e)),
            },
            Ok(None) => Outcome::Stopped,
            Err(e) => fail_import(&ctx.db, p.import_id, Stage::Validating, &e).await,
        }
    }

    async fn process(&self, ctx: &JobContext) -> Outcome {
        let p: Payload = match ctx.payload() {
            Ok(p) => p,
            Err(e) => return Outcome::Fail(e),
        };
        let run = match Run::open(&ctx.db, &self.schemas, &p, Stage::Importing).await {
            Ok(Some(r)) => r,
            Ok(None) => return Outcome::Done,
            Err(e) => return fail_import(&ctx.db, p.import_id, Stage::Importing, &e).await,
        };
        if run.imp.paused {
            return Outcome::Done;
        }
        match process(&run, ctx).await {
            Ok(Progress::Finished) => match store::finish_import(&ctx.db, p.import_id, Stage::Completed, "").await {
                Ok(true) => {
                    let i = store::get(&ctx.db, OrgId::new(p.org_id), p.import_id).await.ok().flatten();
                    let detail = i
                        .map(|i| {
                            format!(
                                "{} created, {} updated, {} deleted, {} failed",
                                i.created_rows, i.updated_rows, i.deleted_rows, i.failed_rows
                            )
                        })
                        .unwrap_or_default();
                    system_event(&ctx.db, p.org_id, "import_completed", p.import_id, &detail).await;
                    Outcome::Done
                }
                Ok(false) => Outcome::Done,
                Err(e) => Outcome::Retry(retry(e)),
            },
            Ok(Progress::Paused) => Outcome::Done,
            Ok(Progress::Stopped) => Outcome::Stopped,
            Err(e) => fail_import(&ctx.db, p.import_id, Stage::Importing, &e).await,
        }
    }
}

impl Handlers {
    async fn rollback(&self, ctx: &JobContext) -> Outcome {
        let p: Payload = match ctx.payload() {
            Ok(p) => p,
            Err(e) => return Outcome::Fail(e),
        };
        let org = OrgId::new(p.org_id);
        let imp = match store::get(&ctx.db, org, p.import_id).await {
            Ok(Some(i)) if i.rollback_requested_at.is_some() && i.stage() != Stage::RolledBack => i,
            Ok(_) => return Outcome::Done,
            Err(e) => return Outcome::Retry(retry(e)),
        };
        let target =
            RollbackTarget { org, import_id: imp.id, entity: &imp.resource, overwrite: imp.rollback_overwrite };
        loop {
            if ctx.should_stop() {
                return Outcome::Stopped;
            }
            match journal::rollback_chunk(&ctx.db, &target, imp.chunk_size.clamp(1, ROLLBACK_CHUNK)).await {
                Ok(Some(u)) if u.entries == 0 => break,
                Ok(Some(_)) => {}
                // another worker moved the cursor, or the rollback is no longer asked for
                Ok(None) => return Outcome::Done,
                Err(e) => return Outcome::Retry(retry(e)),
            }
        }
        match journal::finish(&ctx.db, imp.id).await {
            Ok(true) => {
                let i = store::get(&ctx.db, org, imp.id).await.ok().flatten();
                let detail = i
                    .map(|i| {
                        format!(
                            "{} changes undone, {} changed since left alone",
                            i.rolled_back_rows, i.rollback_skipped
                        )
                    })
                    .unwrap_or_default();
                system_event(&ctx.db, p.org_id, "import_rolled_back", imp.id, &detail).await;
                Outcome::Done
            }
            Ok(false) => Outcome::Done,
            Err(e) => Outcome::Retry(retry(e)),
        }
    }
}

/// Records what a background job did to an import in the org's audit log (best effort:
/// the job's own result stands either way).
async fn system_event(db: &Db, org: i64, action: &str, import_id: i64, detail: &str) {
    let event = crate::store::audit::AuditEvent {
        actor: None,
        actor_label: "background job",
        action,
        target: &format!("import {import_id}"),
        detail,
        address: "",
    };
    if let Err(e) = crate::store::audit::record(db, Some(OrgId::new(org)), &event).await {
        tracing::warn!(error = ?e, import_id, action, "recording an audit event failed");
    }
}

async fn fail_import(db: &Db, id: i64, from: Stage, why: &str) -> Outcome {
    match store::transition(db, id, from, Stage::Failed, why).await {
        Ok(true) => {
            if let Ok(Some(org)) = store::org_of(db, id).await {
                system_event(db, org, "import_failed", id, why).await;
            }
            Outcome::Done
        }
        Ok(false) => Outcome::Done,
        Err(e) => Outcome::Retry(retry(e)),
    }
}

/// Rows per batch between the file-reading thread and the database.
const BATCH: usize = 5000;

/// One file row as the reading thread staged it.
struct StagedBatch {
    rows: Vec<StagedRow>,
    values: Vec<StagedValue>,
    issues: Vec<StagedIssue>,
}

impl Run<'_> {
    fn action(&self) -> Action {
        Action::parse(&self.imp.action).unwrap_or(Action::Merge)
    }

    /// The file's rows as read, in batches.
    fn batches(&self) -> Batches<Vec<Row>> {
        let mut buf: Vec<Row> = Vec::with_capacity(BATCH);
        Batches::open(self.path.clone(), self.info.clone(), move |n, cells, last| {
            if !last {
                buf.push((n, cells.to_vec()));
            }
            if buf.len() >= BATCH || (last && !buf.is_empty()) { Some(std::mem::take(&mut buf)) } else { None }
        })
    }
}

/// Reads the file on a blocking thread and stages every row: the width check
/// (prevalidation), the digest of its mapped cells (for preparsing), its key (for
/// transforming) and its parsed record or problems (for parsing and validation).
fn stage_batches(run: &Run<'_>, cols: Columns) -> Batches<StagedBatch> {
    let schema = run.schema.clone();
    let delete = run.action() == Action::Delete;
    let width = run.info.headers.len();
    let mut batch = StagedBatch { rows: vec![], values: vec![], issues: vec![] };
    Batches::open(run.path.clone(), run.info.clone(), move |n, cells, last| {
        let row_number = n as i64;
        if last {
            // the end of the file: hand over the rest
        } else if cells.iter().skip(width).any(|c| !c.trim().is_empty()) {
            let message = format!("row {n} has {} values but the header has {width} columns", cells.len());
            batch.issues.push(StagedIssue { row_number, message, cells: cells_json(cells) });
            batch.rows.push(StagedRow { row_number, state: "malformed", ..Default::default() });
        } else {
            let mut h = Md5::new();
            for f in &schema.fields {
                h.update(cols.cell(cells, f.name()).unwrap_or("").trim().as_bytes());
                h.update([0x1f]);
            }
            let mut row = StagedRow { row_number, state: "pending", digest: h.finalize().into(), ..Default::default() };
            if delete {
                // a delete names records by key; nothing else is read
                row.record_key = cols.cell(cells, &schema.key).unwrap_or("").trim().to_string();
                if row.record_key.is_empty() {
                    row.problem = Some(format!("{}: is required but empty", schema.key));
                }
            } else {
                match schema.prepare(|f| cols.cell(cells, f)) {
                    Ok(r) => {
                        for (field, value) in r.uniques {
                            batch.values.push(StagedValue {
                                row_number,
                                kind: "unique",
                                field,
                                target: String::new(),
                                value,
                            });
                        }
                        for (field, target, value) in r.refs {
                            batch.values.push(StagedValue { row_number, kind: "ref", field, target, value });
                        }
                        for (field, value, image) in r.files {
                            let target = if image { "images" } else { "files" }.to_string();
                            batch.values.push(StagedValue { row_number, kind: "file", field, target, value });
                        }
                        row.record_key = r.key;
                        row.data = Some(r.data);
                        row.row_hash = Some(r.row_hash);
                        row.search_text = Some(r.search_text);
                    }
                    Err(errors) => {
                        row.record_key = cols.cell(cells, &schema.key).unwrap_or("").trim().to_string();
                        row.problem = Some(errors.join("; "));
                    }
                }
            }
            batch.rows.push(row);
        }
        if batch.rows.len() >= BATCH || last {
            return Some(std::mem::replace(&mut batch, StagedBatch { rows: vec![], values: vec![], issues: vec![] }));
        }
        None
    })
}

/// The five validation phases; None when asked to stop.
async fn validate(run: &Run<'_>, ctx: &JobContext, fetcher: &Fetcher) -> Result<Option<Validated>, String> {
    let db = run.db;
    let id = run.imp.id;
    let org = OrgId::new(run.imp.org_id);
    let entity = run.schema.name.as_str();
    staging::clear(db, id).await.map_err(retry)?;
    let cols = Columns::new(&run.imp)?;

    // prevalidation: the one pass over the file, staging every row
    let total = run
        .phase(Phase::Prevalidation, async {
            let (mut total, mut malformed) = (0i64, 0i64);
            let mut batches = stage_batches(run, cols);
            while let Some(b) = batches.next().await {
                let b = b?;
                total += b.rows.len() as i64;
                malformed += b.issues.len() as i64;
                staging::insert(db, id, &b.rows, &b.values, &b.issues).await.map_err(retry)?;
                if ctx.should_stop() {
                    break;
                }
            }
            staging::analyze(db).await.map_err(retry)?;
            Ok((total, total, total - malformed, format!("{total} rows read, {malformed} malformed")))
        })
        .await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    let mut left = total - count_left_out(db, id).await?;
    let handling = DuplicateHandling::parse(&run.imp.duplicate_handling).unwrap_or_default();
    let repeated = run
        .phase(Phase::Preparsing, async {
            let n = staging::mark_repeated_rows(db, id, handling).await.map_err(retry)?;
            Ok((n, left, left - n, format!("{n} rows repeated within the file")))
        })
        .await?;
    left -= repeated;
    if ctx.should_stop() {
        return Ok(None);
    }
    let conflicts = run
        .phase(Phase::Transforming, async {
            let n = staging::mark_key_conflicts(db, id, &run.schema.key).await.map_err(retry)?;
            Ok((n, left, left - n, format!("{n} rows whose key another row uses")))
        })
        .await?;
    left -= conflicts;
    if ctx.should_stop() {
        return Ok(None);
    }
    let invalid = run
        .phase(Phase::Parsing, async {
            let n = staging::mark_parse_errors(db, id).await.map_err(retry)?;
            Ok((n, left, left - n, format!("{n} rows with invalid values")))
        })
        .await?;
    left -= invalid;
    if ctx.should_stop() {
        return Ok(None);
    }
    let action = run.action();
    if action == Action::Delete {
        let v = run
            .phase(Phase::Validation, async {
                let missing = staging::mark_missing(db, org, id, entity).await.map_err(retry)?;
                let (valid, _) = staging::pending_counts(db, org, id, entity).await.map_err(retry)?;
                let v = Validated {
                    total_rows: total,
                    valid_rows: valid,
                    invalid_rows: total - valid - repeated - missing,
                    duplicate_rows: repeated,
                    unchanged_rows: missing,
                    to_delete: valid,
                    ..Validated::default()
                };
                let detail = format!("{valid} to delete, {missing} naming no record");
                Ok((v, left, valid, detail))
            })
            .await?;
        fill_issue_cells(run).await?;
        return Ok((!ctx.should_stop()).then_some(v));
    }
    let v = run
        .phase(Phase::Validation, async {
            let problems = if run.schema.fields.iter().any(|f| f.unique || f.kind().is_relationship()) {
                staging::mark_reference_problems(db, org, id, entity).await.map_err(retry)?
            } else {
                0
            };
            let unchanged = staging::mark_unchanged(db, org, id, entity).await.map_err(retry)?;
            let files_failed =
                if run.schema.fields.iter().any(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images)) {
                    fetch_files(run, ctx, fetcher).await?
                } else {
                    0
                };
            let (valid, to_update) = staging::pending_counts(db, org, id, entity).await.map_err(retry)?;
            let v = Validated {
                total_rows: total,
                valid_rows: valid,
                invalid_rows: total - valid - repeated - unchanged,
                duplicate_rows: repeated + unchanged,
                to_create: valid - to_update,
                to_update,
                unchanged_rows: unchanged,
                to_delete: if action == Action::Overwrite {
                    staging::count_not_in_file(db, org, id, entity).await.map_err(retry)?
                } else {
                    0
                },
            };
            let mut detail = format!(
                "{} to create, {} to update, {unchanged} unchanged, {problems} with references or unique values in use",
                v.to_create, v.to_update
            );
            if files_failed > 0 {
                detail.push_str(&format!(", {files_failed} with files that could not be fetched"));
            }
            if action == Action::Overwrite {
                detail.push_str(&format!("; {} records not in the file to remove", v.to_delete));
            }
            Ok((v, left, valid, detail))
        })
        .await?;
    fill_issue_cells(run).await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    Ok(Some(v))
}

/// Rows whose files one round fetches.
const FILE_ROWS: i64 = 100;

/// Seed 003's file upload step: every URL of a pending row's file and image fields is
/// fetched into storage (once per org and URL) and its value replaced by the stored file's
/// details; a row with a file that cannot be fetched is left out with the reason. Returns
/// how many rows were left out.
async fn fetch_files(run: &Run<'_>, ctx: &JobContext, fetcher: &Fetcher) -> Result<i64, String> {
    let (db, id, org) = (run.db, run.imp.id, OrgId::new(run.imp.org_id));
    let dir = std::path::Path::new(&run.imp.file_path).parent().map(|d| d.join("fetched")).unwrap_or_default();
    let images: std::collections::HashSet<&str> =
        run.schema.fields.iter().filter(|f| f.kind() == FieldKind::Images).map(|f| f.name()).collect();
    let (mut after, mut left_out) = (0i64, 0i64);
    loop {
        let rows = staging::rows_with_files(db, id, after, FILE_ROWS).await.map_err(retry)?;
        let Some(last) = rows.last().map(|(n, _)| *n) else {
            return Ok(left_out);
        };
        let (mut updated, mut failed) = (vec![], vec![]);
        for (n, data) in rows {
            let mut data: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&data).map_err(|e| format!("staged row {n}: {e}"))?;
            let mut problems = vec![];
            for f in run.schema.fields.iter().filter(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images)) {
                let Some(serde_json::Value::Array(items)) = data.get_mut(f.name()) else { continue };
                for item in items.iter_mut() {
                    let Some(url) = item.as_str().map(str::to_string) else { continue };
                    let image = images.contains(f.name());
                    let stored = match staging::fetched_file(db, org, &url).await.map_err(retry)? {
                        Some(known) if image && !known.content_type.starts_with("image/") => {
                            Err(format!("it is not an image (PNG, JPEG, GIF or WebP) but {}", known.content_type))
                        }
                        Some(known) => Ok(known),
                        None => match fetcher.fetch(&url, &dir, image).await {
                            Ok(got) => {
                                staging::add_fetched_file(db, org, &url, &got).await.map_err(retry)?;
                                Ok(got)
                            }
                            Err(why) => Err(why),
                        },
                    };
                    match stored {
                        Ok(file) => {
                            *item = serde_json::json!({
                                "name": file.name,
                                "url": url,
                                "md5": file.md5,
                                "size": file.size,
                                "content_type": file.content_type,
                            })
                        }
                        Err(why) => problems.push(format!("{}: {url} could not be fetched: {why}", f.name())),
                    }
                }
            }
            if problems.is_empty() {
                updated.push((n, serde_json::Value::Object(data).to_string()));
            } else {
                failed.push((n, format!("row {n}, {}", problems.join("; "))));
            }
        }
        left_out += failed.len() as i64;
        staging::files_fetched(db, id, &updated, &failed).await.map_err(retry)?;
        if ctx.should_stop() {
            return Ok(left_out);
        }
        after = last;
    }
}

async fn count_left_out(db: &Db, id: i64) -> Result<i64, String> {
    store::count_issues(db, id).await.map_err(retry)
}

/// Issues recorded by the set-based phases carry no cells; one ordered pass over the file
/// fills them in, a page of row numbers at a time.
async fn fill_issue_cells(run: &Run<'_>) -> Result<(), String> {
    let (db, id) = (run.db, run.imp.id);
    let mut wanted: std::collections::VecDeque<i64> =
        staging::rows_without_cells(db, id, 0, 2000).await.map_err(retry)?.into();
    if wanted.is_empty() {
        return Ok(());
    }
    let mut found: Vec<(i64, String)> = vec![];
    let mut rows = run.batches();
    while let Some(batch) = rows.next().await {
        for (n, cells) in batch? {
            let n = n as i64;
            while wanted.front().is_some_and(|w| *w < n) {
                wanted.pop_front();
            }
            if wanted.front() == Some(&n) {
                wanted.pop_front();
                found.push((n, cells_json(&cells)));
            }
            if wanted.is_empty() {
                staging::set_cells(db, id, &found).await.map_err(retry)?;
                found.clear();
                wanted = staging::rows_without_cells(db, id, n, 2000).await.map_err(retry)?.into();
                if wanted.is_empty() {
                    return Ok(());
                }
            }
        }
    }
    staging::set_cells(db, id, &found).await.map_err(retry)
}

enum Progress {
    Finished,
    Paused,
    Stopped,
}

/// The processing phase: chunks of pending staged rows, each one transaction with the
/// cursor.
async fn process(run: &Run<'_>, ctx: &JobContext) -> Result<Progress, String> {
    let db = run.db;
    let id = run.imp.id;
    let org = OrgId::new(run.imp.org_id);
    let chunk_size = run.imp.chunk_size.max(1);
    let mut cursor = run.imp.next_row;
    if cursor == 0 {
        store::phase_started(db, id, Phase::Processing.as_str()).await.map_err(retry)?;
    }
    staging::analyze(db).await.map_err(retry)?;
    let started = Instant::now();
    let target = ChunkTarget {
        org,
        import_id: id,
        entity: &run.schema.name,
        has_uniques: run.schema.fields.iter().any(|f| f.unique && f.name() != run.schema.key),
    };
    let action = run.action();
    let mut failures = false;
    // rows written since the statistics were refreshed, and the count that asks for it again
    let (mut written, mut analyze_at) = (0i64, 1000i64);
    while let Some(to) = staging::chunk_end(db, id, cursor, chunk_size).await.map_err(retry)? {
        if ctx.should_stop() {
            return Ok(Progress::Stopped);
        }
        let written_chunk = if action == Action::Delete {
            staging::delete_chunk(db, &target, cursor, to).await
        } else {
            staging::write_chunk(db, &target, cursor, to).await
        };
        match written_chunk {
            Ok(Some(r)) => {
                cursor = to;
                written += r.created + r.updated + r.rows;
                if written >= analyze_at {
                    // records grew: keep PostgreSQL's plans on its indexes
                    staging::analyze(db).await.map_err(retry)?;
                    analyze_at = written * 2;
                }
            }
            // paused, cancelled, or another worker has moved on: nothing more here
            Ok(None) => return Ok(Progress::Paused),
            Err(e) => {
                tracing::warn!(error = ?e, import_id = id, "chunk failed; its rows are marked failed");
                let why = "this chunk could not be saved (a database error; see the server log) and its rows were not imported";
                if !staging::fail_chunk(db, id, cursor, to, why).await.map_err(retry)? {
                    return Ok(Progress::Paused);
                }
                failures = true;
                cursor = to;
            }
        }
    }
    if failures {
        fill_issue_cells(run).await?;
    }
    let imp = store::get(db, org, id).await.map_err(retry)?.ok_or("the import vanished")?;
    let processing_done = imp.stage() == Stage::Importing
        && store::phases(db, id).await.map_err(retry)?.iter().any(|p| p.phase == Phase::Cleanup.as_str());
    if !processing_done {
        let (done, created, updated, deleted, failed) =
            (imp.processed_rows, imp.created_rows, imp.updated_rows, imp.deleted_rows, imp.failed_rows);
        let detail = if action == Action::Delete {
            format!("{deleted} deleted, {failed} failed")
        } else {
            format!("{created} created, {updated} updated, {failed} failed")
        };
        let end = PhaseEnd {
            status: "completed",
            duration_ms: started.elapsed().as_millis() as i64,
            rows_in: done,
            rows_out: created + updated + deleted,
            detail: &detail,
        };
        store::phase_finished(db, id, Phase::Processing.as_str(), &end).await.map_err(retry)?;
        if action == Action::Overwrite {
            store::phase_started(db, id, Phase::Cleanup.as_str()).await.map_err(retry)?;
        }
    }
    if action != Action::Overwrite {
        let skipped = PhaseEnd {
            status: "skipped",
            duration_ms: 0,
            rows_in: 0,
            rows_out: 0,
            detail: "only overwrite imports remove records",
        };
        store::phase_finished(db, id, Phase::Cleanup.as_str(), &skipped).await.map_err(retry)?;
        return Ok(Progress::Finished);
    }
    // overwrite: remove what the file did not contain, a chunk per transaction
    let started = Instant::now();
    loop {
        if ctx.should_stop() {
            return Ok(Progress::Stopped);
        }
        match staging::cleanup_chunk(db, &target, chunk_size).await.map_err(retry)? {
            None => return Ok(Progress::Paused),
            Some(0) => break,
            Some(_) => {}
        }
    }
    let removed = store::get(db, org, id).await.map_err(retry)?.map(|i| i.deleted_rows).unwrap_or_default();
    let detail = format!("{removed} records not in the file removed");
    let end = PhaseEnd {
        status: "completed",
        duration_ms: started.elapsed().as_millis() as i64,
        rows_in: removed,
        rows_out: removed,
        detail: &detail,
    };
    store::phase_finished(db, id, Phase::Cleanup.as_str(), &end).await.map_err(retry)?;
    Ok(Progress::Finished)
}

/// Registered as `import.validate`.
pub struct ValidateHandler(pub Arc<Handlers>);
/// Registered as `import.process`.
pub struct ProcessHandler(pub Arc<Handlers>);

impl JobHandler for ValidateHandler {
    fn kind(&self) -> &'static str {
        VALIDATE
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(self.0.validate(ctx))
    }
}

/// Registered as `import.rollback`.
pub struct RollbackHandler(pub Arc<Handlers>);

impl JobHandler for RollbackHandler {
    fn kind(&self) -> &'static str {
        ROLLBACK
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(self.0.rollback(ctx))
    }
}

impl JobHandler for ProcessHandler {
    fn kind(&self) -> &'static str {
        PROCESS
    }
    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(self.0.process(ctx))
    }
}

/// Queues the next background step of an import.
pub async fn enqueue(db: &Db, org: OrgId, import_id: i64, kind: &str) -> anyhow::Result<()> {
    let payload = serde_json::to_value(Payload { org_id: org.get(), import_id })?;
    super::enqueue(db, Some(org), kind, &payload, None).await?;
    Ok(())
}
