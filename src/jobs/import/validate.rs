//! `import.validate`: the file read once and every row staged (prevalidation), then the
//! set-based phases over the staged rows (preparsing, transforming, parsing, validation,
//! with seed 003's file step), and the cells of the rows left out filled in. Safe to run
//! again from the start: the first thing it does is forget what an earlier attempt staged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rows::{Columns, RowSet, Run, stage_batches, stages_data};
use super::seen::Suspects;
use super::{Handlers, Payload, conclude};
use crate::domain::entities::FieldKind;
use crate::domain::imports::{Action, Phase, Stage, Validated};
use crate::domain::jobs::Outcome;
use crate::domain::words::Grouped;
use crate::jobs::{JobContext, Step, StepError};
use crate::store::Db;
use crate::store::imports as store;
use crate::store::{fetched_files, staging};

/// How often prevalidation tells the page how many rows it has read.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The job: validates the import and makes it ready (or fails it with the reason).
pub(super) async fn run(h: &Handlers, ctx: &JobContext) -> Outcome {
    let p: Payload = match ctx.payload() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(e),
    };
    let run = match Run::open(&ctx.db, h, &p, Stage::Validating).await {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Done,
        Err(e) => return conclude(ctx, p.import_id, Stage::Validating, e).await,
    };
    let validated = match validate(&run, ctx, h).await {
        Ok(Some(v)) => store::finish_validation(&ctx.db, p.import_id, &v).await.map_err(StepError::from),
        Ok(None) => return Outcome::Stopped,
        Err(e) => Err(e),
    };
    let validated = match validated {
        Ok(true) if run.imp.api.auto_start => start_by_itself(&run).await,
        other => other,
    };
    let outcome = match validated {
        Ok(_) => Outcome::Done,
        Err(e) => conclude(ctx, p.import_id, Stage::Validating, e).await,
    };
    super::onboarding_goes_on(h, ctx, run.imp.org).await;
    outcome
}

/// An import created through the API without `review` starts once validated, in the name
/// of the key that created it (a rerun finds it started already and leaves it).
///
/// An overwrite that would remove records waits as queued instead: the removals are
/// confirmed with their number, as a person confirms them on the import's page.
async fn start_by_itself(run: &Run<'_>) -> Step<bool> {
    let Some(imp) = store::get(run.db, run.imp.org, run.imp.id).await? else { return Ok(true) };
    if imp.needs_removal_confirmation(None) {
        return Ok(true);
    }
    let by = crate::domain::ids::Actor::Key(imp.api.created_by_key.unwrap_or_default());
    if store::start_import(run.db, imp.org, imp.id, by).await? {
        super::enqueue(run.db, imp.org, imp.id, super::PROCESS).await?;
    }
    Ok(true)
}

/// The five validation phases; None when asked to stop.
#[tracing::instrument(skip_all, fields(org_id = run.imp.org.get(), import_id = run.imp.id))]
async fn validate(run: &Run<'_>, ctx: &JobContext, h: &Handlers) -> Step<Option<Validated>> {
    let db = run.db;
    let id = run.imp.id;
    let org = run.imp.org;
    let entity = run.schema.name.as_str();
    staging::clear(db, id).await?;
    let cols = Columns::new(&run.imp)?;

    // prevalidation: the one pass over the file, staging every row and noting the digests
    // and keys that may occur more than once
    let suspects = Arc::new(Suspects::for_file(run.imp.file.size.max(0) as u64));
    let keeps_data = stages_data(db, run.imp.org, &run.schema).await?;
    let total = run
        .phase(Phase::Prevalidation, async {
            let (mut total, mut malformed) = (0i64, 0i64);
            let mut batches = stage_batches(run, cols, suspects.clone(), keeps_data);
            // the page shows the rows read so far, updated about once a second
            let mut reported = Instant::now();
            while let Some(b) = batches.next().await {
                let b = b?;
                total += b.rows.len() as i64;
                malformed += b.issues.len() as i64;
                staging::insert(db, id, &b.rows, &b.values, &b.issues).await?;
                if reported.elapsed() >= PROGRESS_EVERY {
                    store::phases::phase_progress(db, id, Phase::Prevalidation.as_str(), total).await?;
                    reported = Instant::now();
                }
                if ctx.should_stop() {
                    break;
                }
            }
            staging::analyze(db).await?;
            Ok((
                total,
                total,
                total - malformed,
                format!("{} read, {} malformed", total.count("row", "rows"), malformed.grouped()),
            ))
        })
        .await?;
    if ctx.should_stop() {
        return Ok(None);
    }
    let mut left = total - count_left_out(db, id).await?;
    let handling = run.imp.duplicate_handling;
    let noted = suspects.noted();
    let repeated = run
        .phase(Phase::Preparsing, async {
            let n = staging::mark_repeated_rows(db, id, handling, noted.digests.as_deref()).await?;
            Ok((n, left, left - n, format!("{} repeated within the file", n.count("row", "rows"))))
        })
        .await?;
    left -= repeated;
    if ctx.should_stop() {
        return Ok(None);
    }
    let conflicts = run
        .phase(Phase::Transforming, async {
            let n = staging::mark_key_conflicts(db, id, &run.schema.key, noted.keys.as_deref()).await?;
            Ok((n, left, left - n, format!("{} whose key another row uses", n.count("row", "rows"))))
        })
        .await?;
    left -= conflicts;
    if ctx.should_stop() {
        return Ok(None);
    }
    let invalid = run
        .phase(Phase::Parsing, async {
            let n = staging::mark_parse_errors(db, id).await?;
            Ok((n, left, left - n, format!("{} with invalid values", n.count("row", "rows"))))
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
                let missing = staging::mark_missing(db, org, id, entity).await?;
                let (valid, _) = staging::pending_counts(db, org, id, entity).await?;
                let v = Validated {
                    total_rows: total,
                    valid_rows: valid,
                    invalid_rows: total - valid - repeated - missing,
                    duplicate_rows: repeated,
                    unchanged_rows: missing,
                    to_delete: valid,
                    ..Validated::default()
                };
                let detail =
                    format!("{} to delete, {} naming no record", valid.grouped(), missing.count("row", "rows"));
                Ok((v, left, valid, detail))
            })
            .await?;
        fill_issue_cells(run).await?;
        return Ok((!ctx.should_stop()).then_some(v));
    }
    let v = run
        .phase(Phase::Validation, async {
            let problems = if run.schema.fields.iter().any(|f| f.unique || f.kind().is_relationship()) {
                // another sheet of the same onboarding workbook, validated: its rows count too
                let siblings = crate::store::onboarding::workbook_siblings(db, org, id).await?;
                staging::mark_reference_problems(db, org, id, entity, &siblings).await?
            } else {
                0
            };
            let unchanged = staging::mark_unchanged(db, org, id, entity).await?;
            let files_failed =
                if run.schema.fields.iter().any(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images)) {
                    fetch_files(run, ctx, h).await?
                } else {
                    0
                };
            let (valid, to_update) = staging::pending_counts(db, org, id, entity).await?;
            let v = Validated {
                total_rows: total,
                valid_rows: valid,
                invalid_rows: total - valid - repeated - unchanged,
                duplicate_rows: repeated + unchanged,
                to_create: valid - to_update,
                to_update,
                unchanged_rows: unchanged,
                to_delete: if action == Action::Overwrite {
                    staging::count_not_in_file(db, org, id, entity).await?
                } else {
                    0
                },
            };
            let mut detail = format!(
                "{} to create, {} to update, {} unchanged, {} with references or unique values in use",
                v.to_create.grouped(),
                v.to_update.grouped(),
                unchanged.grouped(),
                problems.grouped()
            );
            if files_failed > 0 {
                detail.push_str(&format!(", {} with files that could not be fetched", files_failed.grouped()));
            }
            if action == Action::Overwrite {
                detail.push_str(&format!("; {} not in the file to remove", v.to_delete.count("record", "records")));
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
async fn fetch_files(run: &Run<'_>, ctx: &JobContext, h: &Handlers) -> Step<i64> {
    let (db, id, org) = (run.db, run.imp.id, run.imp.org);
    let dir = h.files.dir(&format!("fetched/{}", org.get()));
    let images: std::collections::HashSet<&str> =
        run.schema.fields.iter().filter(|f| f.kind() == FieldKind::Images).map(|f| f.name()).collect();
    let (mut after, mut left_out) = (0i64, 0i64);
    loop {
        let rows = staging::rows_with_files(db, id, after, FILE_ROWS).await?;
        let Some(last) = rows.last().map(|(n, _)| *n) else {
            return Ok(left_out);
        };
        let (mut updated, mut failed) = (vec![], vec![]);
        for (n, data) in rows {
            let mut data: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&data).map_err(|e| {
                tracing::error!(error = %e, import_id = id, row = n, "a staged row is not valid JSON");
                StepError::Fail(format!(
                    "row {n} could not be read back from staging (see the server log); upload the file again"
                ))
            })?;
            let mut problems = vec![];
            for f in run.schema.fields.iter().filter(|f| matches!(f.kind(), FieldKind::Files | FieldKind::Images)) {
                let Some(serde_json::Value::Array(items)) = data.get_mut(f.name()) else { continue };
                for item in items.iter_mut() {
                    let Some(url) = item.as_str().map(str::to_string) else { continue };
                    let image = images.contains(f.name());
                    let stored = match fetched_files::fetched_file(db, org, &url).await? {
                        Some(known) if image && !known.content_type.starts_with("image/") => {
                            Err(format!("it is not an image (PNG, JPEG, GIF or WebP) but {}", known.content_type))
                        }
                        Some(known) => Ok(known),
                        None => match h.fetcher.fetch(&url, &dir, image).await {
                            Ok(mut got) => {
                                // kept where every instance finds it, named by its key
                                let key = h.files.key_of(&got.path);
                                let disposition = crate::files::attachment(&got.name);
                                h.files.keep(&key, &got.content_type, &disposition).await.map_err(StepError::Retry)?;
                                h.files.release(&key).await;
                                got.path = key.into();
                                fetched_files::add_fetched_file(db, org, &url, &got).await?;
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
        staging::files_fetched(db, id, &updated, &failed).await?;
        if ctx.should_stop() {
            return Ok(left_out);
        }
        after = last;
    }
}

async fn count_left_out(db: &Db, id: i64) -> Step<i64> {
    Ok(store::phases::count_issues(db, id).await?)
}

/// Issues recorded by the set-based phases carry no cells; their rows are gathered
/// (a bit each), then one pass over the file, up to the last of them, fills them in.
pub(super) async fn fill_issue_cells(run: &Run<'_>) -> Step<()> {
    let (db, id) = (run.db, run.imp.id);
    let mut wanted = RowSet::default();
    let mut after = 0;
    loop {
        let page = staging::rows_without_cells(db, id, after, 20_000).await?;
        let Some(last) = page.last().copied() else { break };
        page.into_iter().for_each(|n| wanted.insert(n));
        after = last;
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let mut cells = run.cells_of(wanted);
    while let Some(batch) = cells.next().await {
        staging::set_cells(db, id, &batch?).await?;
    }
    Ok(())
}
