//! Rolling back the whole onboarding (issue 14): its steps' imports are undone one at a
//! time, the last step first (clients before the staff and locations they refer to), each
//! through the ordinary `import.rollback` job. The end of each step's rollback starts the
//! next ([`roll_back_next`] from the rollback job); so does a visit to the onboarding page,
//! should a worker have died in between (the call is idempotent).

use crate::domain::entities::Schemas;
use crate::domain::ids::{Actor, OrgId, UserId};
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
            return Ok(Next::Running(imp.id));
        }
    }
    if store::rollback_done(db, org).await? {
        let event = crate::store::audit::AuditEvent {
            actor: None,
            actor_label: "background job",
            action: "onboarding_rolled_back",
            target: "onboarding",
            detail: &format!("asked by {}", asked.rollback_requested_by_label),
            address: "",
        };
        crate::store::audit::record(db, Some(org), &event).await?;
    }
    Ok(Next::Done)
}
