//! Rolling back the whole onboarding (issue 14): its steps' imports are undone one at a
//! time, the last step first (clients before the staff and locations they refer to), each
//! through the ordinary `import.rollback` job. The end of each step's rollback starts the
//! next ([`roll_back_next`] from the rollback job); so does a visit to the onboarding page,
//! should a worker have died in between (the call is idempotent).

use crate::domain::entities::Schemas;
use crate::domain::ids::{Actor, OrgId, UserId};
use crate::domain::imports::Stage;
use crate::domain::onboarding::steps;
use crate::jobs::import as import_jobs;
use crate::store::{Db, imports, journal, onboarding as store};

/// Where the onboarding's rollback is after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// No rollback of the onboarding is asked for.
    NotAsked,
    /// A step's import is being rolled back (this one started now, or one already was).
    Running(i64),
    /// Every step that could be undone is: the rollback is over.
    Done,
}

/// Starts the rollback of the latest step not undone yet, unless one runs.
pub async fn roll_back_next(db: &Db, schemas: &Schemas, org: OrgId) -> anyhow::Result<Next> {
    let Some(asked) = store::rollback_asked(db, org).await? else { return Ok(Next::NotAsked) };
    let rows = store::steps(db, org).await?;
    for step in steps(schemas.all()).iter().rev() {
        let Some(import_id) = rows.iter().find(|r| r.entity == step.entity && !r.skipped).and_then(|r| r.import_id)
        else {
            continue;
        };
        let Some(imp) = imports::get(db, org, import_id).await? else { continue };
        if imp.is_rolling_back() {
            return Ok(Next::Running(imp.id));
        }
        if !imp.can_roll_back() {
            continue;
        }
        // a person removed since has no user id left: no id is stored, the label says who
        let by = asked.rollback_requested_by.map(|u| Actor::User(UserId::new(u))).unwrap_or(Actor::Key(0));
        let label = format!("{} (onboarding rollback)", asked.rollback_requested_by_label);
        if journal::request(db, org, imp.id, by, &label, asked.rollback_overwrite).await? {
            import_jobs::enqueue(db, org, imp.id, import_jobs::ROLLBACK).await?;
        }
        // asked now, or by another caller a moment ago: either way this step runs
        return Ok(Next::Running(imp.id));
    }
    if store::rollback_done(db, org).await? {
        let detail = format!("asked by {}", asked.rollback_requested_by_label);
        event(db, org, "background job", "onboarding_rolled_back", "onboarding", &detail).await?;
    }
    Ok(Next::Done)
}

/// Moves the steps of onboarding workbooks on, in step order: a step waiting to validate
/// (its mapping confirmed by "Validate all") is queued once the steps of its workbook it
/// refers to are validated, so its references resolve against their rows; a step asked to
/// import ("Import all") starts once those steps are imported. A step whose workbook
/// dependency failed fails too, saying which; the others go on. Called when a validation or
/// an import ends, and by the onboarding page (idempotent: each turn is taken once).
pub async fn go_on(db: &Db, schemas: &Schemas, org: OrgId) -> anyhow::Result<()> {
    let rows = store::steps(db, org).await?;
    let mut stages: Vec<(String, Option<crate::domain::imports::Import>)> = vec![];
    for step in steps(schemas.all()) {
        let row = rows.iter().find(|r| r.entity == step.entity && !r.skipped && !r.workbook.is_empty());
        let imp = match row.and_then(|r| r.import_id) {
            Some(id) => imports::get(db, org, id).await?,
            None => None,
        };
        let (Some(row), Some(imp)) = (row, imp) else {
            stages.push((step.entity.clone(), None));
            continue;
        };
        // the steps of the same workbook this one refers to
        let deps: Vec<&crate::domain::imports::Import> = step
            .depends_on
            .iter()
            .filter(|d| rows.iter().any(|r| r.entity == **d && r.workbook == row.workbook && !r.skipped))
            .filter_map(|d| stages.iter().find(|(e, _)| e == d).and_then(|(_, i)| i.as_ref()))
            .collect();
        let failed = deps
            .iter()
            .find(|d| matches!(d.stage, Stage::Failed | Stage::Expired | Stage::RolledBack | Stage::TimedOut));
        // validating, or validated, against rows that will not come: it cannot go on
        let waiting = matches!(imp.stage, Stage::Validating | Stage::Ready);
        if let (Some(dep), true) = (failed, waiting) {
            let label = schemas.get(&dep.entity).map(|s| s.label.clone()).unwrap_or_else(|| dep.entity.clone());
            let why = format!("Not imported: {label}, which it refers to, did not import (import #{}).", dep.id);
            if imports::transition(db, imp.id, imp.stage, Stage::Failed, &why).await? {
                event(db, org, "background job", "import_failed", &format!("import {}", imp.id), &why).await?;
            }
        } else if imp.stage == Stage::Validating
            && deps.iter().all(|d| matches!(d.stage, Stage::Ready | Stage::Importing | Stage::Completed))
            && store::take_turn(db, org, &step.entity, "validate").await?
        {
            import_jobs::enqueue(db, org, imp.id, import_jobs::VALIDATE).await?;
        } else if imp.stage == Stage::Ready
            && row.import_queued
            && deps.iter().all(|d| d.stage == Stage::Completed)
            && let Some(by) = row.queued_by
            && imports::start_import(db, org, imp.id, Actor::User(UserId::new(by))).await?
        {
            import_jobs::enqueue(db, org, imp.id, import_jobs::PROCESS).await?;
            let who = format!("{} (Import all)", row.updated_by_label);
            event(db, org, &who, "import_started", &format!("import {}", imp.id), "").await?;
        }
        let now = imports::get(db, org, imp.id).await?;
        stages.push((step.entity.clone(), now));
    }
    Ok(())
}

/// Why a workbook step's import may not start yet: the steps of its workbook it refers to
/// (validated against their rows) are not imported. None for any other import.
pub async fn import_blocked(db: &Db, schemas: &Schemas, org: OrgId, import_id: i64) -> anyhow::Result<Option<String>> {
    let rows = store::steps(db, org).await?;
    let Some(me) = rows.iter().find(|r| r.import_id == Some(import_id) && !r.workbook.is_empty()) else {
        return Ok(None);
    };
    let Some(step) = steps(schemas.all()).into_iter().find(|s| s.entity == me.entity) else { return Ok(None) };
    let mut waiting = vec![];
    for dep in &step.depends_on {
        let Some(row) = rows.iter().find(|r| r.entity == *dep && r.workbook == me.workbook && !r.skipped) else {
            continue;
        };
        let done = match row.import_id {
            Some(id) => imports::get(db, org, id).await?.is_some_and(|i| i.stage == Stage::Completed),
            None => true,
        };
        if !done {
            waiting.push(schemas.get(dep).map(|s| s.label.clone()).unwrap_or_else(|| dep.clone()));
        }
    }
    Ok((!waiting.is_empty()).then(|| {
        format!(
            "Import {} first: this sheet of the workbook refers to {} rows, which are not imported yet.",
            waiting.join(" and "),
            if waiting.len() == 1 { "its" } else { "their" }
        )
    }))
}

/// An audit event the chains record on the org's behalf.
async fn event(db: &Db, org: OrgId, who: &str, action: &str, target: &str, detail: &str) -> anyhow::Result<()> {
    let event = crate::store::audit::AuditEvent { actor: None, actor_label: who, action, target, detail, address: "" };
    crate::store::audit::record(db, Some(org), &event).await
}
