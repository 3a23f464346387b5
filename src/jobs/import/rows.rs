//! Reading an import's file: its rows in batches from a blocking thread (memory stays at a
//! few batches), where each mapped field sits in a row, and the one pass that stages every
//! row (width check, digest, key, parsed record or problems). [`Run`] is one job's view of
//! its import: the typed import, its schema and its file.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use md5::{Digest, Md5};

use super::Payload;
use crate::domain::entities::{EntitySchema, FieldKind};
use crate::domain::imports::{Action, Import, Phase, PhaseStatus, Stage};
use crate::files::{FileInfo, sniff, visit_rows};
use crate::jobs::{Step, StepError};
use crate::store::Db;
use crate::store::imports::{self as store, phases::PhaseEnd};
use crate::store::staging::{ChunkRow, StagedIssue, StagedRow, StagedValue};

pub(super) type Row = (u64, Vec<String>);

/// What the file-reading thread sends: a batch, or why reading stopped.
type Sent<T> = Result<T, String>;

/// The file's rows, read and turned into batches on a blocking thread; memory stays at a
/// few batches.
pub(super) struct Batches<T> {
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

    /// The next batch; a file that stopped reading is a lasting problem.
    pub(super) async fn next(&mut self) -> Option<Step<T>> {
        self.rx.recv().await.map(|b| b.map_err(StepError::Fail))
    }
}

/// Where each mapped field's value sits in a row.
pub(super) struct Columns {
    by_field: HashMap<String, usize>,
}

impl Columns {
    pub(super) fn new(imp: &Import) -> Step<Columns> {
        let mut by_field = HashMap::new();
        for (field, header) in &imp.mapping {
            let i = imp
                .headers
                .iter()
                .position(|h| h == header)
                .ok_or_else(|| StepError::Fail(format!("the column \"{header}\" is not in the file")))?;
            by_field.insert(field.clone(), i);
        }
        Ok(Columns { by_field })
    }

    fn cell<'a>(&self, cells: &'a [String], field: &str) -> Option<&'a str> {
        self.by_field.get(field).map(|i| cells.get(*i).map(String::as_str).unwrap_or(""))
    }
}

pub(super) fn cells_json(cells: &[String]) -> String {
    serde_json::to_string(cells).unwrap_or_else(|_| "[]".into())
}

/// One job's view of its import.
pub(super) struct Run<'a> {
    pub db: &'a Db,
    pub imp: Import,
    pub schema: Arc<EntitySchema>,
    info: FileInfo,
    path: PathBuf,
}

impl<'a> Run<'a> {
    /// The import of the payload, if it is still in `want` (else another worker or a person
    /// moved it on, and there is nothing to do).
    pub async fn open(db: &'a Db, h: &super::Handlers, p: &Payload, want: Stage) -> Step<Option<Run<'a>>> {
        let schemas = &h.schemas;
        let Some(imp) = store::get(db, crate::domain::ids::OrgId::new(p.org_id), p.import_id).await? else {
            return Ok(None);
        };
        if imp.stage != want {
            return Ok(None);
        }
        let schema = schemas
            .get(&imp.entity)
            .cloned()
            .ok_or_else(|| StepError::Fail(format!("the entity type \"{}\" no longer exists", imp.entity)))?;
        let path = PathBuf::from(&imp.file.path);
        let (p2, sheet) = (path.clone(), imp.file.sheet.clone());
        let limits = h.limits;
        let info = tokio::task::spawn_blocking(move || sniff(&p2, sheet.as_deref(), &limits))
            .await
            .map_err(|e| StepError::Retry(e.into()))?
            .map_err(|e| StepError::Fail(e.to_string()))?;
        Ok(Some(Run { db, imp, schema, info, path }))
    }

    /// Runs one phase's `work`, recording its start, and its end with the rows in, rows
    /// out and a one-line result it returns (or the reason it failed).
    pub async fn phase<T, Fut>(&self, phase: Phase, work: Fut) -> Step<T>
    where
        Fut: Future<Output = Step<(T, i64, i64, String)>>,
    {
        store::phases::phase_started(self.db, self.imp.id, phase.as_str()).await?;
        let started = Instant::now();
        let res = work.await;
        let ms = started.elapsed().as_millis() as i64;
        let (status, rows_in, rows_out, detail, out) = match res {
            Ok((v, i, o, d)) => (PhaseStatus::Completed, i, o, d, Ok(v)),
            Err(StepError::Fail(e)) => (PhaseStatus::Failed, 0, 0, e.clone(), Err(StepError::Fail(e))),
            Err(StepError::Retry(e)) => (
                PhaseStatus::Failed,
                0,
                0,
                "interrupted by a database error; trying again".to_string(),
                Err(StepError::Retry(e)),
            ),
        };
        let end = PhaseEnd { status, duration_ms: ms, rows_in, rows_out, detail: &detail };
        store::phases::phase_finished(self.db, self.imp.id, phase.as_str(), &end).await?;
        out
    }

    pub fn action(&self) -> Action {
        self.imp.action
    }
}

/// Rows per batch between the file-reading thread and the database.
const BATCH: usize = 5000;

/// One file row as the reading thread staged it.
pub(super) struct StagedBatch {
    pub rows: Vec<StagedRow>,
    pub values: Vec<StagedValue>,
    pub issues: Vec<StagedIssue>,
}

impl Run<'_> {
    /// The file's rows as read, in batches.
    pub fn batches(&self) -> Batches<Vec<Row>> {
        let mut buf: Vec<Row> = Vec::with_capacity(BATCH);
        Batches::open(self.path.clone(), self.info.clone(), move |n, cells, last| {
            if !last {
                buf.push((n, cells.to_vec()));
            }
            if buf.len() >= BATCH || (last && !buf.is_empty()) { Some(std::mem::take(&mut buf)) } else { None }
        })
    }
}

/// Rows whose record validation stages for the import page's sample (the first rows that
/// parsed).
const SAMPLE_ROWS: usize = 50;

/// Whether validation stages every row's record (its JSON and search text) for the chunks
/// to copy: on PostgreSQL, where `COPY` makes staging cheap and no one waits for the writer
/// (reading the file again and passing each chunk through a temporary table made the import
/// phase half as fast again there); and for entities with file or image fields, whose values
/// the file step replaces with the stored files' details. Otherwise (SQLite, whose one writer
/// everyone shares) the record is read again from the file when its chunk is written
/// ([`record_batches`]), so validation writes a fraction of the bytes.
pub(super) fn stages_data(db: &Db, schema: &EntitySchema) -> bool {
    matches!(db, Db::Postgres(_))
        || schema.fields.iter().any(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images))
}

/// Reads the file on a blocking thread and stages every row: the width check
/// (prevalidation), the digest of its mapped cells (for preparsing), its key (for
/// transforming) and its parsed record or problems (for parsing and validation).
pub(super) fn stage_batches(run: &Run<'_>, cols: Columns) -> Batches<StagedBatch> {
    let schema = run.schema.clone();
    let delete = run.action() == Action::Delete;
    let keeps_data = stages_data(run.db, &schema);
    let mut sampled = 0usize;
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
                let record = keeps_data || sampled < SAMPLE_ROWS;
                match schema.prepare_with(|f| cols.cell(cells, f), record) {
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
                        row.row_hash = Some(r.row_hash);
                        // the record itself is read again from the file by the chunk that
                        // writes it; staged only where fetching files changes it, and for
                        // the import page's sample
                        if record {
                            sampled += 1;
                            row.data = Some(r.data);
                            row.search_text = Some(r.search_text);
                        }
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

/// The records of the file's rows after `after`, read and parsed again on a blocking thread
/// for the processing phase, in file order: each row the way validation parsed it (the
/// chunk checks its hash against the staged one). Rows that are malformed or do not parse
/// are not sent; they were left out at validation.
pub(super) fn record_batches(run: &Run<'_>, after: i64) -> Step<Batches<Vec<ChunkRow>>> {
    let schema = run.schema.clone();
    let cols = Columns::new(&run.imp)?;
    let width = run.info.headers.len();
    let mut buf: Vec<ChunkRow> = Vec::with_capacity(BATCH);
    Ok(Batches::open(run.path.clone(), run.info.clone(), move |n, cells, last| {
        let row_number = n as i64;
        let wanted = !last && row_number > after && !cells.iter().skip(width).any(|c| !c.trim().is_empty());
        if let Some(r) = wanted.then(|| schema.prepare(|f| cols.cell(cells, f)).ok()).flatten() {
            buf.push(ChunkRow { row_number, data: r.data, row_hash: r.row_hash, search_text: r.search_text });
        }
        if buf.len() >= BATCH || (last && !buf.is_empty()) { Some(std::mem::take(&mut buf)) } else { None }
    }))
}

/// The rows of [`record_batches`] handed out chunk by chunk.
pub(super) struct ChunkRows {
    batches: Batches<Vec<ChunkRow>>,
    ahead: std::collections::VecDeque<ChunkRow>,
    done: bool,
}

impl ChunkRows {
    pub fn new(batches: Batches<Vec<ChunkRow>>) -> ChunkRows {
        ChunkRows { batches, ahead: Default::default(), done: false }
    }

    /// The rows numbered in `(from, to]` (the chunks come in file order).
    pub async fn take(&mut self, from: i64, to: i64) -> Step<Vec<ChunkRow>> {
        let mut out = vec![];
        loop {
            while self.ahead.front().is_some_and(|r| r.row_number <= to) {
                if let Some(r) = self.ahead.pop_front().filter(|r| r.row_number > from) {
                    out.push(r);
                }
            }
            if !self.ahead.is_empty() {
                return Ok(out);
            }
            if self.done {
                return Ok(out);
            }
            match self.batches.next().await {
                Some(b) => self.ahead.extend(b?),
                None => self.done = true,
            }
        }
    }
}
