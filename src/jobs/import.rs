//! `import.validate` and `import.process`: the background phases of an import.
//!
//! Validation makes five streaming passes over the stored file, one per seed-004 phase,
//! each recording its status, timing and counts; rows it leaves out are stored as issues
//! with the reason and the original cells. Processing writes the remaining rows in chunks,
//! each chunk one transaction that also moves the import's cursor, so a job taken over
//! after a crash continues after the last committed chunk and never writes a row twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::LocalBoxFuture;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::{JobContext, JobHandler};
use crate::domain::entities::{EntitySchema, Schemas};
use crate::domain::ids::OrgId;
use crate::domain::imports::{DuplicateHandling, Phase, Stage};
use crate::domain::jobs::Outcome;
use crate::files::{FileInfo, sniff, visit_rows};
use crate::store::Db;
use crate::store::imports::{self as store, ChunkRow, ImportRow, Issue, PhaseEnd, Validated};

pub const VALIDATE: &str = "import.validate";
pub const PROCESS: &str = "import.process";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub org_id: i64,
    pub import_id: i64,
}

type Row = (u64, Vec<String>);

/// The file's rows in batches, read on a blocking thread; memory stays at a few batches.
struct Batches {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<Row>, String>>,
}

impl Batches {
    fn open(path: PathBuf, info: FileInfo, batch: usize) -> Batches {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Row>, String>>(4);
        tokio::task::spawn_blocking(move || {
            let mut buf: Vec<Row> = Vec::with_capacity(batch);
            let res = visit_rows(&path, &info, &mut |n, cells| {
                buf.push((n, cells.to_vec()));
                // a closed channel means the reader was dropped: stop reading
                if buf.len() >= batch && tx.blocking_send(Ok(std::mem::take(&mut buf))).is_err() {
                    return Ok(false);
                }
                Ok(true)
            });
            let _ = match res {
                Ok(()) if !buf.is_empty() => tx.blocking_send(Ok(buf)),
                Ok(()) => Ok(()),
                Err(e) => tx.blocking_send(Err(e.to_string())),
            };
        });
        Batches { rx }
    }

    async fn next(&mut self) -> Option<Result<Vec<Row>, String>> {
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

fn issue(row: u64, kind: &str, message: String, cells: &[String]) -> Issue {
    Issue { row_number: row as i64, kind: kind.into(), message, cells: cells_json(cells) }
}

/// Shared state of the handlers.
pub struct Handlers {
    pub schemas: Arc<Schemas>,
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
        match validate(&run, ctx).await {
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
                Ok(_) => Outcome::Done,
                Err(e) => Outcome::Retry(retry(e)),
            },
            Ok(Progress::Paused) => Outcome::Done,
            Ok(Progress::Stopped) => Outcome::Stopped,
            Err(e) => fail_import(&ctx.db, p.import_id, Stage::Importing, &e).await,
        }
    }
}

async fn fail_import(db: &Db, id: i64, from: Stage, why: &str) -> Outcome {
    match store::transition(db, id, from, Stage::Failed, why).await {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Retry(retry(e)),
    }
}

const BATCH: usize = 1000;

impl Run<'_> {
    fn batches(&self, size: usize) -> Batches {
        Batches::open(self.path.clone(), self.info.clone(), size)
    }
}

/// The five validation phases; None when asked to stop.
async fn validate(run: &Run<'_>, ctx: &JobContext) -> Result<Option<Validated>, String> {
    let db = run.db;
    let id = run.imp.id;
    store::clear_issues(db, id).await.map_err(retry)?;
    let cols = Columns::new(&run.imp)?;
    let mut out_rows: HashSet<u64> = HashSet::new();

    let total = run.phase(Phase::Prevalidation, prevalidation(run, ctx, &mut out_rows)).await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    let in_file = run.phase(Phase::Preparsing, preparsing(run, ctx, &cols, &mut out_rows)).await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    run.phase(Phase::Transforming, transforming(run, ctx, &cols, &mut out_rows)).await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    run.phase(Phase::Parsing, parsing(run, ctx, &cols, &mut out_rows)).await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    let v = run.phase(Phase::Validation, validation(run, ctx, &cols, &out_rows)).await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    let left_out_before = out_rows.len() as i64 - in_file;
    Ok(Some(Validated {
        total_rows: total,
        valid_rows: v.valid_rows,
        invalid_rows: left_out_before + v.invalid_rows,
        duplicate_rows: in_file + v.unchanged_rows,
        to_create: v.to_create,
        to_update: v.to_update,
        unchanged_rows: v.unchanged_rows,
    }))
}

type PhaseResult<T> = Result<(T, i64, i64, String), String>;

/// Every row readable and no wider than the header.
async fn prevalidation(run: &Run<'_>, ctx: &JobContext, out: &mut HashSet<u64>) -> PhaseResult<i64> {
    let width = run.info.headers.len();
    let (mut total, mut issues) = (0i64, vec![]);
    let mut rows = run.batches(BATCH);
    while let Some(batch) = rows.next().await {
        for (n, cells) in batch? {
            total += 1;
            if cells.iter().skip(width).any(|c| !c.trim().is_empty()) {
                let msg = format!("row {n} has {} values but the header has {width} columns", cells.len());
                issues.push(issue(n, "error", msg, &cells));
                out.insert(n);
            }
        }
        if ctx.should_stop() {
            break;
        }
    }
    store::add_issues(run.db, run.imp.id, &issues).await.map_err(retry)?;
    let bad = issues.len() as i64;
    Ok((total, total, total - bad, format!("{total} rows read, {bad} malformed")))
}

/// Rows repeated within the file, left out per `duplicate_handling`. Returns how many.
async fn preparsing(run: &Run<'_>, ctx: &JobContext, cols: &Columns, out: &mut HashSet<u64>) -> PhaseResult<i64> {
    let handling = DuplicateHandling::parse(&run.imp.duplicate_handling).unwrap_or_default();
    let mut seen: HashMap<[u8; 16], (u64, usize)> = HashMap::new();
    let mut order: Vec<(u64, [u8; 16])> = vec![];
    let mut rows = run.batches(BATCH);
    while let Some(batch) = rows.next().await {
        for (n, cells) in batch? {
            if out.contains(&n) {
                continue;
            }
            let mut h = Md5::new();
            for f in &run.schema.fields {
                h.update(cols.cell(&cells, f.name()).unwrap_or("").trim().as_bytes());
                h.update([0x1f]);
            }
            let digest: [u8; 16] = h.finalize().into();
            seen.entry(digest).or_insert((n, 0)).1 += 1;
            order.push((n, digest));
        }
        if ctx.should_stop() {
            break;
        }
    }
    let mut occurrence: HashMap<[u8; 16], usize> = HashMap::new();
    let mut flagged: HashMap<u64, String> = HashMap::new();
    for (n, d) in &order {
        let (first, total) = seen[d];
        let k = occurrence.entry(*d).or_insert(0);
        *k += 1;
        if handling.keeps(*k, total) {
            continue;
        }
        let msg = match handling {
            DuplicateHandling::IgnoreAll if *n == first => {
                format!(
                    "row {n} appears {total} times in the file; every copy is left out (duplicate handling: ignore all)"
                )
            }
            DuplicateHandling::IgnoreAll => {
                format!("row {n} repeats row {first}; every copy is left out (duplicate handling: ignore all)")
            }
            DuplicateHandling::UseFirst => format!("row {n} repeats row {first}; only the first copy is imported"),
        };
        flagged.insert(*n, msg);
    }
    if !flagged.is_empty() {
        let mut issues = vec![];
        let mut rows = run.batches(BATCH);
        while let Some(batch) = rows.next().await {
            for (n, cells) in batch? {
                if let Some(m) = flagged.get(&n) {
                    issues.push(issue(n, "duplicate", m.clone(), &cells));
                }
            }
        }
        store::add_issues(run.db, run.imp.id, &issues).await.map_err(retry)?;
    }
    let count = flagged.len() as i64;
    out.extend(flagged.into_keys());
    let n = order.len() as i64;
    Ok((count, n, n - count, format!("{count} rows repeated within the file")))
}

/// The mapping applied and every record identified by its key, once per file.
async fn transforming(run: &Run<'_>, ctx: &JobContext, cols: &Columns, out: &mut HashSet<u64>) -> PhaseResult<()> {
    let key_field = &run.schema.key;
    let mut first_row: HashMap<String, u64> = HashMap::new();
    let mut issues = vec![];
    let mut seen = 0i64;
    let mut rows = run.batches(BATCH);
    while let Some(batch) = rows.next().await {
        for (n, cells) in batch? {
            if out.contains(&n) {
                continue;
            }
            seen += 1;
            let key = cols.cell(&cells, key_field).unwrap_or("").trim().to_string();
            if key.is_empty() {
                continue;
            }
            match first_row.get(&key) {
                Some(first) => {
                    let msg = format!(
                        "row {n}, {key_field}: \"{key}\" is also in row {first} with other values; a record can appear only once in a file"
                    );
                    issues.push(issue(n, "error", msg, &cells));
                }
                None => {
                    first_row.insert(key, n);
                }
            }
        }
        if ctx.should_stop() {
            break;
        }
    }
    store::add_issues(run.db, run.imp.id, &issues).await.map_err(retry)?;
    let bad = issues.len() as i64;
    out.extend(issues.iter().map(|i| i.row_number as u64));
    Ok(((), seen, seen - bad, format!("{bad} rows whose key another row uses")))
}

/// Every field of every row against its type and rules.
async fn parsing(run: &Run<'_>, ctx: &JobContext, cols: &Columns, out: &mut HashSet<u64>) -> PhaseResult<()> {
    let mut seen = 0i64;
    let mut bad = 0i64;
    let mut rows = run.batches(BATCH);
    while let Some(batch) = rows.next().await {
        let mut issues = vec![];
        for (n, cells) in batch? {
            if out.contains(&n) {
                continue;
            }
            seen += 1;
            if let Err(errors) = run.schema.prepare(|f| cols.cell(&cells, f)) {
                issues.push(issue(n, "error", format!("row {n}, {}", errors.join("; ")), &cells));
                out.insert(n);
            }
        }
        bad += issues.len() as i64;
        store::add_issues(run.db, run.imp.id, &issues).await.map_err(retry)?;
        if ctx.should_stop() {
            break;
        }
    }
    Ok(((), seen, seen - bad, format!("{bad} rows with invalid values")))
}

/// References to other records, rows identical to stored records, unique values in use.
async fn validation(run: &Run<'_>, ctx: &JobContext, cols: &Columns, out: &HashSet<u64>) -> PhaseResult<Validated> {
    let db = run.db;
    let org = OrgId::new(run.imp.org_id);
    let schema = &run.schema;
    let mut v = Validated::default();
    let mut seen = 0i64;
    let mut rows = run.batches(500);
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        let prepared: Vec<_> = batch
            .iter()
            .filter(|(n, _)| !out.contains(n))
            .filter_map(|(n, cells)| schema.prepare(|f| cols.cell(cells, f)).ok().map(|r| (*n, cells, r)))
            .collect();
        seen += prepared.len() as i64;
        let mut problems: HashMap<u64, Vec<String>> = HashMap::new();
        for f in schema.fields.iter().filter(|f| f.kind().is_relationship()) {
            let target = f.target.clone().unwrap_or_default();
            let mut refs: Vec<(u64, String)> = vec![];
            for (n, _, r) in &prepared {
                let data: serde_json::Value = serde_json::from_str(&r.data).unwrap_or_default();
                match &data[f.name()] {
                    serde_json::Value::String(k) => refs.push((*n, k.clone())),
                    serde_json::Value::Array(ks) => {
                        refs.extend(ks.iter().filter_map(|k| k.as_str()).map(|k| (*n, k.to_string())))
                    }
                    _ => {}
                }
            }
            let keys: Vec<String> = refs.iter().map(|(_, k)| k.clone()).collect::<HashSet<_>>().into_iter().collect();
            let found = store::existing_keys(db, org, &target, &keys).await.map_err(retry)?;
            for (n, k) in refs {
                if !found.contains_key(&k) {
                    problems
                        .entry(n)
                        .or_default()
                        .push(format!("{}: no {target} record has the key \"{k}\"", f.name()));
                }
            }
        }
        for f in schema.fields.iter().filter(|f| f.unique && f.name() != schema.key) {
            let values: Vec<String> = prepared
                .iter()
                .filter_map(|(_, _, r)| r.uniques.iter().find(|(n, _)| n == f.name()).map(|(_, v)| v.clone()))
                .collect();
            let used = store::used_unique_values(db, org, &schema.name, f.name(), &values).await.map_err(retry)?;
            for (n, _, r) in &prepared {
                if let Some((_, val)) = r.uniques.iter().find(|(n2, _)| n2 == f.name())
                    && let Some(owner) = used.get(val)
                    && *owner != r.key
                {
                    problems.entry(*n).or_default().push(format!("{}: \"{val}\" is already used by {owner}", f.name()));
                }
            }
        }
        let keys: Vec<String> = prepared.iter().map(|(_, _, r)| r.key.clone()).collect();
        let stored = store::existing_keys(db, org, &schema.name, &keys).await.map_err(retry)?;
        let mut issues = vec![];
        for (n, cells, r) in &prepared {
            if let Some(p) = problems.get(n) {
                issues.push(issue(*n, "error", format!("row {n}, {}", p.join("; ")), cells));
                v.invalid_rows += 1;
                continue;
            }
            match stored.get(&r.key) {
                Some(h) if *h == r.row_hash => {
                    let msg = format!("row {n} is identical to the stored record {}; nothing to change", r.key);
                    issues.push(issue(*n, "duplicate", msg, cells));
                    v.unchanged_rows += 1;
                }
                Some(_) => {
                    v.to_update += 1;
                    v.valid_rows += 1;
                }
                None => {
                    v.to_create += 1;
                    v.valid_rows += 1;
                }
            }
        }
        store::add_issues(db, run.imp.id, &issues).await.map_err(retry)?;
        if ctx.should_stop() {
            break;
        }
    }
    let detail = format!("{} to create, {} to update, {} unchanged", v.to_create, v.to_update, v.unchanged_rows);
    let kept = v.valid_rows;
    Ok((v, seen, kept, detail))
}

enum Progress {
    Finished,
    Paused,
    Stopped,
}

/// The processing phase: chunks of valid rows, each one transaction with the cursor.
async fn process(run: &Run<'_>, ctx: &JobContext) -> Result<Progress, String> {
    let db = run.db;
    let id = run.imp.id;
    let org = OrgId::new(run.imp.org_id);
    let cols = Columns::new(&run.imp)?;
    let left_out = store::left_out_rows(db, id).await.map_err(retry)?;
    let chunk_size = run.imp.chunk_size.max(1) as usize;
    let mut cursor = run.imp.next_row;
    if cursor == 0 {
        store::phase_started(db, id, Phase::Processing.as_str()).await.map_err(retry)?;
    }
    let started = Instant::now();
    let mut chunk: Vec<ChunkRow> = Vec::with_capacity(chunk_size);
    let mut rows = run.batches(BATCH);
    while let Some(batch) = rows.next().await {
        for (n, cells) in batch? {
            if (n as i64) <= cursor || left_out.contains(&(n as i64)) {
                continue;
            }
            if let Ok(record) = run.schema.prepare(|f| cols.cell(&cells, f)) {
                chunk.push(ChunkRow { row_number: n as i64, record, cells: cells_json(&cells) });
            }
            if chunk.len() >= chunk_size {
                if let Some(p) = write(db, org, id, &run.schema.name, &mut cursor, &chunk, ctx).await? {
                    return Ok(p);
                }
                chunk.clear();
            }
        }
    }
    if !chunk.is_empty()
        && let Some(p) = write(db, org, id, &run.schema.name, &mut cursor, &chunk, ctx).await?
    {
        return Ok(p);
    }
    let imp = store::get(db, org, id).await.map_err(retry)?;
    let (done, created, updated, failed) =
        imp.map(|i| (i.processed_rows, i.created_rows, i.updated_rows, i.failed_rows)).unwrap_or_default();
    let detail = format!("{created} created, {updated} updated, {failed} failed");
    let end = PhaseEnd {
        status: "completed",
        duration_ms: started.elapsed().as_millis() as i64,
        rows_in: done,
        rows_out: created + updated,
        detail: &detail,
    };
    store::phase_finished(db, id, Phase::Processing.as_str(), &end).await.map_err(retry)?;
    let skipped = PhaseEnd {
        status: "skipped",
        duration_ms: 0,
        rows_in: 0,
        rows_out: 0,
        detail: "only overwrite imports remove records",
    };
    store::phase_finished(db, id, Phase::Cleanup.as_str(), &skipped).await.map_err(retry)?;
    Ok(Progress::Finished)
}

/// Writes one chunk unless the import was paused or the worker is stopping; Some(p) means
/// "stop here with p".
async fn write(
    db: &Db,
    org: OrgId,
    id: i64,
    entity: &str,
    cursor: &mut i64,
    chunk: &[ChunkRow],
    ctx: &JobContext,
) -> Result<Option<Progress>, String> {
    if ctx.should_stop() {
        return Ok(Some(Progress::Stopped));
    }
    let current = store::get(db, org, id).await.map_err(retry)?;
    match current {
        Some(i) if i.stage() == Stage::Importing && !i.paused && i.next_row == *cursor => {}
        Some(i) if i.paused => return Ok(Some(Progress::Paused)),
        // cancelled, failed elsewhere, or another worker has moved on: nothing more here
        _ => return Ok(Some(Progress::Paused)),
    }
    let to = chunk.last().map(|r| r.row_number).unwrap_or(*cursor);
    match store::write_chunk(db, org, id, entity, *cursor, to, chunk).await {
        Ok(Some(_)) => {
            *cursor = to;
            Ok(None)
        }
        Ok(None) => Ok(Some(Progress::Paused)),
        Err(e) => {
            tracing::warn!(error = ?e, import_id = id, "chunk failed; its rows are marked failed");
            let rows: Vec<(i64, String)> = chunk.iter().map(|r| (r.row_number, r.cells.clone())).collect();
            let why =
                "this chunk could not be saved (a database error; see the server log) and its rows were not imported";
            store::fail_chunk(db, id, *cursor, to, &rows, why).await.map_err(retry)?;
            *cursor = to;
            Ok(None)
        }
    }
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
