//! Reading an import's file: its rows in batches from a blocking thread (memory stays at a
//! few batches), where each mapped field sits in a row, and the one pass that stages every
//! row (width check, digest, key, parsed record or problems). [`Run`] is one job's view of
//! its import: the typed import, its schema and its file.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use md5::{Digest, Md5};

use super::Payload;
use super::seen::{FnvBuild, Suspects};
use crate::domain::entities::{EntitySchema, FieldKind};
use crate::domain::ids::OrgId;
use crate::domain::imports::{Action, Import, Overlay, Phase, PhaseStatus, Stage};
use crate::files::object::{LocalCopy, OpenError};
use crate::files::{FileInfo, RowVisitor, sniff, visit_rows};
use crate::jobs::{Step, StepError};
use crate::store::Db;
use crate::store::imports::{self as store, phases::PhaseEnd};
use crate::store::staging::{ChunkRow, StagedIssue, StagedRow, StagedValue};

/// What the file-reading thread sends: a batch, or why reading stopped.
type Sent<T> = Result<T, String>;

/// Where rows come from: the import's file, each row read through the cells fixed on the
/// import's page (the file itself is never changed).
#[derive(Clone)]
pub(super) struct Source {
    file: Arc<LocalCopy>,
    info: FileInfo,
    edits: Arc<Overlay>,
}

impl Source {
    /// Reads the file's rows, with their edits, into `f` until it returns false.
    fn visit(&self, f: &mut RowVisitor<'_>) -> Result<(), crate::files::FileProblem> {
        if self.edits.is_empty() {
            return visit_rows(&self.file.path, &self.info, f);
        }
        visit_rows(&self.file.path, &self.info, &mut |n, cells| match self.edits.apply(n, cells) {
            Some(edited) => f(n, &edited),
            None => f(n, cells),
        })
    }
}

/// The file's rows, read and turned into batches on a blocking thread; memory stays at a
/// few batches.
pub(super) struct Batches<T> {
    rx: tokio::sync::mpsc::Receiver<Sent<T>>,
}

impl<T: Send + 'static> Batches<T> {
    /// `f(row number, cells, last)` returns a batch to send when it has one; `last` asks it
    /// to hand over what it holds.
    fn open<F>(src: Source, f: F) -> Batches<T>
    where
        F: FnMut(u64, &[String], bool) -> Option<T> + Send + 'static,
    {
        Batches::open_until(src, u64::MAX, f)
    }

    /// As [`Batches::open`], reading no further than row `last`.
    fn open_until<F>(src: Source, last: u64, mut f: F) -> Batches<T>
    where
        F: FnMut(u64, &[String], bool) -> Option<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<Sent<T>>(2);
        tokio::task::spawn_blocking(move || {
            let res = src.visit(&mut |n, cells| {
                if n > last {
                    return Ok(false);
                }
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

    /// As [`Batches::open`] with the work spread over threads: the reading thread only
    /// gathers rows, and `workers` threads each turn whole batches of them into a `T` (each
    /// with its own `f`, made by `make`). Batches arrive in no set order.
    fn open_spread<F>(src: Source, workers: usize, make: impl Fn() -> F) -> Batches<T>
    where
        F: FnMut(&RawRows) -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<Sent<T>>(2 * workers);
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<RawRows>(workers);
        let raw_rx = Arc::new(std::sync::Mutex::new(raw_rx));
        for _ in 0..workers {
            let (mut f, tx, raw_rx) = (make(), tx.clone(), raw_rx.clone());
            tokio::task::spawn_blocking(move || {
                loop {
                    // the lock is held only while waiting for the next batch
                    let Ok(raw) = raw_rx.lock().map_err(drop).and_then(|r| r.recv().map_err(drop)) else { return };
                    // a closed channel means the reader was dropped: stop
                    if tx.blocking_send(Ok(f(&raw))).is_err() {
                        return;
                    }
                }
            });
        }
        tokio::task::spawn_blocking(move || {
            let mut raw = RawRows::default();
            let res = src.visit(&mut |n, cells| {
                raw.push(n, cells);
                // every worker gone means the reader was dropped: stop
                Ok(raw.rows.len() < BATCH || raw_tx.send(std::mem::take(&mut raw)).is_ok())
            });
            match res {
                Ok(()) if !raw.rows.is_empty() => drop(raw_tx.send(raw)),
                Ok(()) => {}
                Err(e) => drop(tx.blocking_send(Err(e.to_string()))),
            }
        });
        Batches { rx }
    }

    /// The next batch; a file that stopped reading is a lasting problem.
    pub(super) async fn next(&mut self) -> Option<Step<T>> {
        self.rx.recv().await.map(|b| b.map_err(StepError::Fail))
    }
}

/// A batch of the file's rows as read, their cells in one buffer (one allocation per
/// batch, not one per cell).
#[derive(Default)]
pub(super) struct RawRows {
    text: String,
    /// Each cell's end in `text` (it starts where the one before it ends).
    ends: Vec<usize>,
    /// Each row's number and the index of its first cell in `ends`.
    rows: Vec<(u64, usize)>,
}

impl RawRows {
    fn push(&mut self, n: u64, cells: &[String]) {
        self.rows.push((n, self.ends.len()));
        for c in cells {
            self.text.push_str(c);
            self.ends.push(self.text.len());
        }
    }

    /// Calls `f` with each row's number and cells, in file order.
    fn each(&self, mut f: impl FnMut(u64, &[&str])) {
        let mut cells: Vec<&str> = vec![];
        for (i, &(n, first)) in self.rows.iter().enumerate() {
            let end = self.rows.get(i + 1).map_or(self.ends.len(), |r| r.1);
            cells.clear();
            let mut start = if first == 0 { 0 } else { self.ends[first - 1] };
            for &e in &self.ends[first..end] {
                cells.push(&self.text[start..e]);
                start = e;
            }
            f(n, &cells);
        }
    }
}

/// Where each mapped field's value sits in a row.
#[derive(Clone)]
pub(super) struct Columns {
    /// Looked up twice a cell of every row: keyed by a hash made for short strings.
    by_field: HashMap<String, usize, FnvBuild>,
}

impl Columns {
    pub(super) fn new(imp: &Import) -> Step<Columns> {
        let mut by_field = HashMap::default();
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

    fn cell<'a, S: AsRef<str>>(&self, cells: &'a [S], field: &str) -> Option<&'a str> {
        self.by_field.get(field).map(|i| cells.get(*i).map(AsRef::as_ref).unwrap_or(""))
    }
}

pub(super) fn cells_json<S: serde::Serialize>(cells: &[S]) -> String {
    serde_json::to_string(cells).unwrap_or_else(|_| "[]".into())
}

/// One job's view of its import.
pub(super) struct Run<'a> {
    pub db: &'a Db,
    pub imp: Import,
    pub schema: Arc<EntitySchema>,
    info: FileInfo,
    /// The file, on this instance's disk while the run lasts.
    file: Arc<LocalCopy>,
    /// The cells fixed on the import's page, applied to every row read.
    edits: Arc<Overlay>,
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
        // the column formats and value mappings chosen with the mapping are the rules' too
        let schema = if imp.options.is_empty() { schema } else { Arc::new(schema.with_options(&imp.options)) };
        // from the bucket when another instance received it; a bucket that does not answer
        // is tried again later
        let file = h.files.open(&imp.file.path).await.map_err(|e| match e {
            OpenError::Missing(why) => StepError::Fail(why),
            OpenError::Unavailable(e) => StepError::Retry(e),
        })?;
        let (p2, sheet) = (file.path.clone(), imp.file.sheet.clone());
        let limits = h.limits;
        let info = tokio::task::spawn_blocking(move || sniff(&p2, sheet.as_deref(), &limits))
            .await
            .map_err(|e| StepError::Retry(e.into()))?
            .map_err(|e| StepError::Fail(e.to_string()))?;
        let edits = Arc::new(edits_of(db, &imp).await?);
        Ok(Some(Run { db, imp, schema, info, file, edits }))
    }

    /// The file's rows, through the cells fixed on the import's page.
    pub(super) fn source(&self) -> Source {
        Source { file: self.file.clone(), info: self.info.clone(), edits: self.edits.clone() }
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

/// A set of row numbers, a bit per row up to the largest (a 10,000,000-row file takes
/// 1.2 MB, however many rows are in it).
#[derive(Default)]
pub(super) struct RowSet {
    bits: Vec<u64>,
    last: u64,
}

impl RowSet {
    pub fn insert(&mut self, n: i64) {
        let n = n.max(0) as u64;
        let word = (n / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << (n % 64);
        self.last = self.last.max(n);
    }

    pub fn contains(&self, n: u64) -> bool {
        self.bits.get((n / 64) as usize).is_some_and(|w| w & (1 << (n % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }
}

/// The import's cell edits as an overlay of the file's cells (an edit of a column the
/// file no longer has is ignored).
async fn edits_of(db: &Db, imp: &Import) -> Step<Overlay> {
    let edits = store::edits::edited_cells(db, imp.id).await?;
    Ok(Overlay::new(
        edits
            .into_iter()
            .filter_map(|(row, column, value)| imp.headers.iter().position(|h| *h == column).map(|i| (row, i, value))),
    ))
}

/// Rows per batch of cells sent for issues.
const CELLS_BATCH: usize = 2000;

impl Run<'_> {
    /// The cells (as a JSON array) of the file's rows in `wanted`, in batches; the file is
    /// read up to the last of them only, and no other row is copied.
    pub fn cells_of(&self, wanted: RowSet) -> Batches<Vec<(i64, String)>> {
        let mut buf: Vec<(i64, String)> = Vec::with_capacity(CELLS_BATCH);
        let last = wanted.last;
        Batches::open_until(self.source(), last, move |n, cells, end| {
            if !end && wanted.contains(n) {
                buf.push((n as i64, cells_json(cells)));
            }
            if buf.len() >= CELLS_BATCH || (end && !buf.is_empty()) { Some(std::mem::take(&mut buf)) } else { None }
        })
    }
}

/// Rows whose record validation stages for the import page's sample (the first rows that
/// parsed).
const SAMPLE_ROWS: usize = 50;

/// Whether validation stages every row's record (its JSON and search text) for the chunks
/// to copy: for entities with file or image fields, whose values the file step replaces with
/// the stored files' details; and on PostgreSQL when the org already has records of the
/// entity, so a merge's chunks read their records staged (reading the file again and passing
/// each chunk through a temporary table made a merge of 1,000,000 rows 13× slower there).
/// Otherwise the record is read again from the file when its chunk is written
/// ([`record_batches`]), so validation writes a fraction of the bytes: on SQLite, whose one
/// writer everyone shares, and on PostgreSQL into an entity the org has no records of, whose
/// rows are all new and are copied straight into `records` (`store::staging::direct`).
pub(super) async fn stages_data(db: &Db, org: OrgId, schema: &EntitySchema) -> anyhow::Result<bool> {
    if schema.fields.iter().any(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images)) {
        return Ok(true);
    }
    Ok(matches!(db, Db::Postgres(_)) && crate::store::records::any(db, org, &schema.name).await?)
}

/// Whether the processing phase reads the staged records rather than the file: what
/// [`stages_data`] decided at validation, read off the staged rows (a lean validation staged
/// the records of at most [`SAMPLE_ROWS`] rows).
pub(super) async fn reads_staged(run: &Run<'_>) -> anyhow::Result<bool> {
    if run.schema.fields.iter().any(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images)) {
        return Ok(true);
    }
    Ok(matches!(run.db, Db::Postgres(_))
        && crate::store::staging::records_staged(run.db, run.imp.id, SAMPLE_ROWS as i64 + 1).await?)
}

/// Reads the file and stages every row: the width check (prevalidation), the digest of its
/// mapped cells (for preparsing), its key (for transforming) and its parsed record or
/// problems (for parsing and validation). One thread reads; the checking, on every row's
/// every cell, is spread over a thread per core, a batch each.
pub(super) fn stage_batches(
    run: &Run<'_>,
    cols: Columns,
    suspects: Arc<Suspects>,
    keeps_data: bool,
) -> Batches<StagedBatch> {
    let stager = Stager {
        schema: run.schema.clone(),
        cols,
        delete: run.action() == Action::Delete,
        keeps_data,
        width: run.info.headers.len(),
        sampled: Arc::new(AtomicUsize::new(0)),
        suspects,
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    Batches::open_spread(run.source(), workers, move || {
        let stager = stager.clone();
        move |raw: &RawRows| {
            let mut batch = StagedBatch { rows: Vec::with_capacity(raw.rows.len()), values: vec![], issues: vec![] };
            raw.each(|n, cells| stager.stage(n, cells, &mut batch));
            batch
        }
    })
}

/// What staging a row needs to know (shared by the threads that stage).
#[derive(Clone)]
struct Stager {
    schema: Arc<EntitySchema>,
    cols: Columns,
    delete: bool,
    keeps_data: bool,
    width: usize,
    /// Rows staged with their record so far, for the import page's sample.
    sampled: Arc<AtomicUsize>,
    /// The digests and keys that may occur more than once.
    suspects: Arc<Suspects>,
}

impl Stager {
    fn stage(&self, n: u64, cells: &[&str], batch: &mut StagedBatch) {
        let (schema, cols, width) = (&self.schema, &self.cols, self.width);
        let row_number = n as i64;
        if cells.iter().skip(width).any(|c| !c.trim().is_empty()) {
            let message = format!("row {n} has {} values but the header has {width} columns", cells.len());
            batch.issues.push(StagedIssue { row_number, message, cells: cells_json(cells) });
            batch.rows.push(StagedRow { row_number, state: "malformed", ..Default::default() });
            return;
        }
        let mut h = Md5::new();
        for f in &schema.fields {
            h.update(cols.cell(cells, f.name()).unwrap_or("").trim().as_bytes());
            h.update([0x1f]);
        }
        let mut row = StagedRow { row_number, state: "pending", digest: h.finalize().into(), ..Default::default() };
        if self.delete {
            // a delete names records by key; nothing else is read
            row.record_key = cols.cell(cells, &schema.key).unwrap_or("").trim().to_string();
            if row.record_key.is_empty() {
                row.problem = Some(format!("{}: is required but empty", schema.key));
            }
            self.note(&row);
            batch.rows.push(row);
            return;
        }
        let record = self.keeps_data || self.sampled.load(Ordering::Relaxed) < SAMPLE_ROWS;
        match schema.prepare_with(|f| cols.cell(cells, f), record) {
            Ok(r) => {
                for (field, value) in r.uniques {
                    batch.values.push(StagedValue { row_number, kind: "unique", field, target: String::new(), value });
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
                // the record itself is read again from the file by the chunk that writes it;
                // staged only where fetching files changes it, and for the import page's
                // sample
                if record {
                    self.sampled.fetch_add(1, Ordering::Relaxed);
                    row.data = Some(r.data);
                    row.search_text = Some(r.search_text);
                }
            }
            Err(errors) => {
                row.record_key = cols.cell(cells, &schema.key).unwrap_or("").trim().to_string();
                row.problem = Some(errors.join("; "));
            }
        }
        self.note(&row);
        batch.rows.push(row);
    }

    /// A pending row's digest and key told to the filters of values that may repeat.
    fn note(&self, row: &StagedRow) {
        self.suspects.row(crate::store::staging::digest_halves(&row.digest).1, &row.record_key);
    }
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
    Ok(Batches::open(run.source(), move |n, cells, last| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_set_holds_exactly_the_rows_put_in_it() {
        let mut set = RowSet::default();
        assert!(set.is_empty());
        for n in [2, 63, 64, 65, 1_000_001] {
            set.insert(n);
        }
        assert!(!set.is_empty());
        assert_eq!(set.last, 1_000_001);
        for n in [2, 63, 64, 65, 1_000_001] {
            assert!(set.contains(n), "{n} was put in");
        }
        for n in [0, 1, 3, 62, 66, 1_000_000, 1_000_002, 50_000_000] {
            assert!(!set.contains(n), "{n} was not put in");
        }
    }

    #[test]
    fn raw_rows_give_back_every_row_with_its_own_cells() {
        let mut raw = RawRows::default();
        let rows: Vec<(u64, Vec<String>)> = vec![
            (2, vec!["a".into(), "".into(), "ç€".into()]),
            (3, vec![]),
            (5, vec!["".into()]),
            (6, vec!["x,y".into(), "long value".into(), "".into(), "extra".into()]),
        ];
        for (n, cells) in &rows {
            raw.push(*n, cells);
        }
        let mut back: Vec<(u64, Vec<String>)> = vec![];
        raw.each(|n, cells| back.push((n, cells.iter().map(|c| c.to_string()).collect())));
        assert_eq!(back, rows);
    }
}
