//! `import.process`: the processing phase (chunks of staged rows into records, each one
//! transaction that moves the cursor) and, for overwrite, the cleanup phase (records the
//! file did not contain removed in chunks). Taken over after a crash, it continues after
//! the last committed chunk.

use std::time::{Duration, Instant};

use super::rows::{ChunkRows, Run, reads_staged, record_batches};
use super::validate::fill_issue_cells;
use super::{Handlers, Payload, conclude, system_event};
use crate::domain::imports::{Action, Phase, PhaseStatus, Stage};
use crate::domain::jobs::Outcome;
use crate::domain::words::Grouped;
use crate::jobs::{JobContext, Step, StepError};
use crate::store::imports::{self as store, phases::PhaseEnd};
use crate::store::staging::{self, ChunkTarget};

/// The job: imports the ready import's rows; completes it, or leaves it paused.
pub(super) async fn run(h: &Handlers, ctx: &JobContext) -> Outcome {
    let p: Payload = match ctx.payload() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(e),
    };
    let run = match Run::open(&ctx.db, h, &p, Stage::Importing).await {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Done,
        Err(e) => return conclude(ctx, p.import_id, Stage::Importing, e).await,
    };
    if run.imp.paused {
        return Outcome::Done;
    }
    let finished = match process(&run, ctx).await {
        Ok(Progress::Finished) => store::finish_import(&ctx.db, p.import_id, Stage::Completed, "").await,
        Ok(Progress::Paused) => return Outcome::Done,
        Ok(Progress::Stopped) => return Outcome::Stopped,
        Err(e) => {
            let outcome = conclude(ctx, p.import_id, Stage::Importing, e).await;
            super::onboarding_goes_on(h, ctx, run.imp.org).await;
            return outcome;
        }
    };
    match finished {
        Ok(true) => {
            let detail = match store::get(&ctx.db, run.imp.org, p.import_id).await {
                Ok(Some(i)) => format!(
                    "{} created, {} updated, {} deleted, {} failed",
                    i.created_rows.grouped(),
                    i.updated_rows.grouped(),
                    i.deleted_rows.grouped(),
                    i.failed_rows.grouped()
                ),
                _ => String::new(),
            };
            system_event(&ctx.db, run.imp.org, "import_completed", p.import_id, &detail).await;
            super::onboarding_goes_on(h, ctx, run.imp.org).await;
            Outcome::Done
        }
        Ok(false) => Outcome::Done,
        Err(e) => {
            let outcome = conclude(ctx, p.import_id, Stage::Importing, e.into()).await;
            super::onboarding_goes_on(h, ctx, run.imp.org).await;
            outcome
        }
    }
}

enum Progress {
    Finished,
    Paused,
    Stopped,
}

/// Rows written after which the processing phase no longer refreshes `records`' statistics
/// itself (PostgreSQL): it does at 1,000 rows written and at every doubling, which keeps the
/// chunks' plans on their indexes while the table grows from nothing; past 100,000 the plans
/// stay as they are, and each `ANALYZE` took longer (0.16–0.25 s at 160,000–640,000 rows,
/// 0.6 s of a 1,000,000-row import). Autovacuum's keeps them after.
const ANALYZE_UNTIL: i64 = 100_000;

/// The fewest rows a chunk is cut to while people write.
const PEOPLE_CHUNK: i64 = 1000;

/// The size of the next chunk. On SQLite a chunk's transaction holds the one writer, and a
/// person who signs in or saves a form waits for the chunk in progress: while people are
/// writing (or wrote in the last two seconds), chunks of more than [`PEOPLE_CHUNK`] rows are
/// cut to a fifth (that many at least), so they wait for ~15 ms of an import instead of ~80.
/// Chunks are cut at the cursor, so any size keeps them exactly once. Writes before the
/// phase `began` do not count (the click on Import itself is one).
fn chunk_size_now(db: &crate::store::Db, size: i64, began: Instant) -> i64 {
    if size > PEOPLE_CHUNK && crate::store::turn::people_writing(db, Duration::from_secs(2), began) {
        (size / 5).max(PEOPLE_CHUNK)
    } else {
        size
    }
}

/// The processing phase: chunks of pending staged rows, each one transaction with the
/// cursor.
#[tracing::instrument(skip_all, fields(org_id = run.imp.org.get(), import_id = run.imp.id))]
async fn process(run: &Run<'_>, ctx: &JobContext) -> Step<Progress> {
    let db = run.db;
    let id = run.imp.id;
    let org = run.imp.org;
    let chunk_size = run.imp.chunk_size.max(1);
    let mut cursor = run.imp.next_row;
    if cursor == 0 {
        store::phases::phase_started(db, id, Phase::Processing.as_str()).await?;
    }
    staging::analyze(db).await?;
    let started = Instant::now();
    // every chunk is written under this attempt's lease: once another worker has taken the
    // job over, this one writes nothing more
    let fence = ctx.fence();
    let target = ChunkTarget {
        org,
        import_id: id,
        entity: &run.schema.name,
        has_uniques: run.schema.fields.iter().any(|f| f.unique && f.name() != run.schema.key),
        updates: run.imp.validated.to_update > 0,
        fence: Some(&fence),
    };
    let action = run.action();
    // merge and overwrite read each chunk's records again from the file, after the cursor
    // (a delete needs only the staged keys; records with files were staged with their
    // fetched details)
    let mut records = if action == Action::Delete || reads_staged(run).await? {
        None
    } else {
        Some(ChunkRows::new(record_batches(run, cursor)?))
    };
    let mut failures = false;
    // rows written since the statistics were refreshed, and the count that asks for it again
    let (mut written, mut analyze_at) = (0i64, 1000i64);
    while let Some(to) = staging::chunk_end(db, id, cursor, chunk_size_now(db, chunk_size, started)).await? {
        if ctx.should_stop() {
            return Ok(Progress::Stopped);
        }
        let written_chunk = if action == Action::Delete {
            staging::delete_chunk(db, &target, cursor, to).await
        } else {
            let read = match records.as_mut() {
                Some(r) => Some(r.take(cursor, to).await?),
                None => None,
            };
            staging::write_chunk(db, &target, cursor, to, read.as_deref()).await
        };
        match written_chunk {
            Ok(Some(r)) => {
                cursor = to;
                // rows left out by the chunk (a unique value taken, written meanwhile) get
                // their cells at the end, as the validation's issues do
                failures |= r.failed > 0;
                written += r.created + r.updated + r.rows;
                crate::metrics::add_import_rows(r.rows.max(0) as u64);
                if written >= analyze_at && analyze_at <= ANALYZE_UNTIL {
                    // records grew: keep PostgreSQL's plans on its indexes
                    crate::store::analyze(db, &["records"]).await?;
                    analyze_at = written * 2;
                }
            }
            // paused, cancelled, or another worker has moved on: nothing more here
            Ok(None) => return Ok(Progress::Paused),
            Err(e) => {
                tracing::warn!(error = ?e, import_id = id, "chunk failed; its rows are marked failed");
                let why = "this chunk could not be saved (a database error; see the server log) and its rows were not imported";
                if !staging::fail_chunk(db, Some(&fence), id, cursor, to, why).await? {
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
    let imp = store::get(db, org, id).await?.ok_or_else(|| StepError::Fail("the import vanished".into()))?;
    let processing_done = imp.stage == Stage::Importing
        && store::phases::phases(db, id).await?.iter().any(|p| p.phase == Phase::Cleanup.as_str());
    if !processing_done {
        let (done, created, updated, deleted, failed) =
            (imp.processed_rows, imp.created_rows, imp.updated_rows, imp.deleted_rows, imp.failed_rows);
        let detail = if action == Action::Delete {
            format!("{deleted} deleted, {failed} failed")
        } else {
            format!("{created} created, {updated} updated, {failed} failed")
        };
        let end = PhaseEnd {
            status: PhaseStatus::Completed,
            duration_ms: started.elapsed().as_millis() as i64,
            rows_in: done,
            rows_out: created + updated + deleted,
            detail: &detail,
        };
        store::phases::phase_finished(db, id, Phase::Processing.as_str(), &end).await?;
        if action == Action::Overwrite {
            store::phases::phase_started(db, id, Phase::Cleanup.as_str()).await?;
        }
    }
    if action != Action::Overwrite {
        let skipped = PhaseEnd {
            status: PhaseStatus::Skipped,
            duration_ms: 0,
            rows_in: 0,
            rows_out: 0,
            detail: "only overwrite imports remove records",
        };
        store::phases::phase_finished(db, id, Phase::Cleanup.as_str(), &skipped).await?;
        return Ok(Progress::Finished);
    }
    // overwrite: remove what the file did not contain, a chunk per transaction
    let started = Instant::now();
    loop {
        if ctx.should_stop() {
            return Ok(Progress::Stopped);
        }
        match staging::cleanup_chunk(db, &target, chunk_size).await? {
            None => return Ok(Progress::Paused),
            Some(0) => break,
            Some(_) => {}
        }
    }
    let removed = store::get(db, org, id).await?.map(|i| i.deleted_rows).unwrap_or_default();
    let detail = format!("{} not in the file removed", removed.count("record", "records"));
    let end = PhaseEnd {
        status: PhaseStatus::Completed,
        duration_ms: started.elapsed().as_millis() as i64,
        rows_in: removed,
        rows_out: removed,
        detail: &detail,
    };
    store::phases::phase_finished(db, id, Phase::Cleanup.as_str(), &end).await?;
    Ok(Progress::Finished)
}
