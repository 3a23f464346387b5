//! Seed 000's onboarding workflow: every entity type, in the order their relationships need
//! (a client refers to its location, so locations come first), each a step with a state
//! read from the import the org made for it. The order is computed from the schemas, not
//! written down anywhere; see `docs/onboarding.md`.

use std::collections::BTreeSet;

use super::entities::EntitySchema;
use super::imports::{Import, Stage};

/// One entity type as a step of the workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub entity: String,
    /// The entity types its relationships point to (itself excluded), in step order.
    pub depends_on: Vec<String>,
}

/// The steps in dependency order: an entity type comes after every type its relationship
/// fields target; among the types free to go next, the schemas' `order` (then name)
/// decides. Relationships that form a cycle cannot all be honoured: the first by `order` of
/// the types another one waits for goes first (a reference to a later step resolves once
/// both are imported).
pub fn steps<S: AsRef<EntitySchema>>(schemas: &[S]) -> Vec<Step> {
    let mut all: Vec<&EntitySchema> = schemas.iter().map(AsRef::as_ref).collect();
    all.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
    let targets = |s: &EntitySchema| -> BTreeSet<String> {
        s.fields
            .iter()
            .filter_map(|f| f.target.clone())
            .filter(|t| *t != s.name && all.iter().any(|o| o.name == *t))
            .collect()
    };
    let mut placed: Vec<&EntitySchema> = vec![];
    loop {
        let mut left = all.iter().filter(|s| !placed.iter().any(|p| p.name == s.name));
        let free = left.clone().find(|s| targets(s).iter().all(|t| placed.iter().any(|p| p.name == *t)));
        // a cycle: nothing is free, so the first by order of those another type waits for goes
        let awaited = || left.clone().find(|s| left.clone().any(|o| targets(o).contains(&s.name)));
        match free.or_else(awaited).or_else(|| left.next()) {
            Some(next) => placed.push(next),
            None => break,
        }
    }
    placed
        .iter()
        .map(|s| {
            let deps = targets(s);
            Step {
                entity: s.name.clone(),
                depends_on: placed.iter().filter(|p| deps.contains(&p.name)).map(|p| p.name.clone()).collect(),
            }
        })
        .collect()
}

/// The entity type a workbook's sheet or a zipped CSV file is named after: its name, label
/// or singular, ignoring case, spaces and punctuation, a folder and a `.csv` ending
/// (`Clients`, `staff_members.csv`, `export/LOCATIONS.CSV`).
pub fn entity_of_part<S: AsRef<EntitySchema>>(part: &str, schemas: &[S]) -> Option<String> {
    let file = part.rsplit(['/', '\\']).next().unwrap_or(part);
    let stem = match file.len().checked_sub(4) {
        Some(cut) if file.is_char_boundary(cut) && file[cut..].eq_ignore_ascii_case(".csv") => &file[..cut],
        _ => file,
    };
    let key = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>();
    let wanted = key(stem);
    if wanted.is_empty() {
        return None;
    }
    schemas
        .iter()
        .map(AsRef::as_ref)
        .find(|s| [&s.name, &s.label, &s.singular].iter().any(|n| key(n) == wanted))
        .map(|s| s.name.clone())
}

/// Where a step is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    NotStarted,
    /// Its import is on its way: waiting on a person (mapping, ready) or working.
    InProgress,
    /// Imported, every row in.
    Completed,
    /// Imported with rows left out, or its import failed: the number left out, or 0 for a
    /// failure (the import says why).
    NeedsAttention {
        left_out: i64,
        failed: bool,
    },
    Skipped,
}

impl StepState {
    /// The state of a step from its latest import (if any) and whether it was skipped.
    pub fn of(import: Option<&Import>, skipped: bool) -> StepState {
        if skipped {
            return StepState::Skipped;
        }
        match import {
            None => StepState::NotStarted,
            // being undone: on its way, like an import running
            Some(i) if i.is_rolling_back() => StepState::InProgress,
            Some(i) => match i.stage {
                Stage::Completed if i.completed_with_issues() => {
                    StepState::NeedsAttention { left_out: i.not_imported_rows(), failed: false }
                }
                Stage::Completed => StepState::Completed,
                Stage::Failed | Stage::Expired | Stage::TimedOut => {
                    StepState::NeedsAttention { left_out: 0, failed: true }
                }
                // undone: as if it never ran
                Stage::RolledBack => StepState::NotStarted,
                _ => StepState::InProgress,
            },
        }
    }

    /// The step's records are in (or it was skipped): the steps that depend on it may go.
    pub fn lets_dependents_go(&self) -> bool {
        matches!(self, StepState::Completed | StepState::Skipped | StepState::NeedsAttention { failed: false, .. })
    }

    /// Counts toward "n of m steps done".
    pub fn is_done(&self) -> bool {
        self.lets_dependents_go()
    }

    /// A new file may be uploaded for it (nothing of it is on its way).
    pub fn takes_a_file(&self) -> bool {
        !matches!(self, StepState::InProgress | StepState::Skipped)
    }

    pub fn label(&self) -> &'static str {
        match self {
            StepState::NotStarted => "Not started",
            StepState::InProgress => "In progress",
            StepState::Completed => "Completed",
            StepState::NeedsAttention { .. } => "Needs attention",
            StepState::Skipped => "Skipped",
        }
    }

    pub fn badge(&self) -> &'static str {
        match self {
            StepState::NotStarted | StepState::Skipped => "outline",
            StepState::InProgress => "secondary badge-animated",
            StepState::Completed => "success",
            StepState::NeedsAttention { .. } => "warning",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entities::Schemas;

    fn schema(name: &str, order: i64, targets: &[&str]) -> String {
        let mut s = format!(
            "entity = \"{name}\"\nlabel = \"{name}\"\nsingular = \"{name}\"\nkey = \"code\"\norder = {order}\n\
             [[fields]]\nname = \"code\"\ntype = \"text\"\nrequired = true\n"
        );
        for (i, t) in targets.iter().enumerate() {
            s += &format!("[[fields]]\nname = \"ref{i}\"\ntype = \"relationship_one\"\ntarget = \"{t}\"\n");
        }
        s
    }

    fn order_of(defs: &[(&str, i64, &[&str])]) -> Vec<(String, Vec<String>)> {
        let texts: Vec<(String, String)> =
            defs.iter().map(|(n, o, t)| (format!("{n}.toml"), schema(n, *o, t))).collect();
        let schemas = Schemas::load(texts.iter().map(|(f, t)| (f.as_str(), t.as_str()))).unwrap();
        steps(schemas.all()).into_iter().map(|s| (s.entity, s.depends_on)).collect()
    }

    fn names(steps: &[(String, Vec<String>)]) -> Vec<&str> {
        steps.iter().map(|s| s.0.as_str()).collect()
    }

    #[test]
    fn a_type_comes_after_the_types_it_refers_to_whatever_its_order() {
        // clients (order 1) refers to staff and locations; staff (order 2) to locations (order 9)
        let s =
            order_of(&[("clients", 1, &["locations", "staff"]), ("staff", 2, &["locations"]), ("locations", 9, &[])]);
        assert_eq!(names(&s), ["locations", "staff", "clients"]);
        assert_eq!(s[2].1, ["locations", "staff"], "dependencies in step order");
    }

    #[test]
    fn free_types_follow_their_order_and_self_references_do_not_block() {
        let s = order_of(&[("forms", 50, &[]), ("policies", 40, &["policies"]), ("locations", 10, &[])]);
        assert_eq!(names(&s), ["locations", "policies", "forms"]);
        assert!(s[1].1.is_empty(), "a policy referring to another policy waits for nothing");
    }

    #[test]
    fn a_cycle_falls_back_to_the_order() {
        let s = order_of(&[("a", 2, &["b"]), ("b", 1, &["a"]), ("c", 0, &["a"])]);
        assert_eq!(names(&s), ["b", "a", "c"]);
    }

    /// The schemas in `schemas/`, as the app loads them.
    fn shipped_schemas() -> Schemas {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let texts: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        Schemas::load(texts.iter().map(|(f, t)| (f.as_str(), t.as_str()))).unwrap()
    }

    #[test]
    fn the_shipped_schemas_put_locations_before_staff_before_clients() {
        let schemas = shipped_schemas();
        let s: Vec<String> = steps(schemas.all()).into_iter().map(|s| s.entity).collect();
        assert_eq!(s, ["locations", "staff", "clients", "policies", "forms"]);
    }

    #[test]
    fn sheets_and_files_match_an_entity_by_name_label_or_singular() {
        let schemas = shipped_schemas();
        let of = |part: &str| entity_of_part(part, schemas.all());
        assert_eq!(of("Clients").as_deref(), Some("clients"));
        assert_eq!(of(" staff member ").as_deref(), Some("staff"), "the singular, spaces aside");
        assert_eq!(of("Staff_Member.csv").as_deref(), Some("staff"));
        assert_eq!(of("export/LOCATIONS.CSV").as_deref(), Some("locations"), "a folder and the ending aside");
        assert_eq!(of("Location").as_deref(), Some("locations"));
        assert_eq!(of("Notes"), None);
        assert_eq!(of(".csv"), None);
        assert_eq!(of("clients.xlsx"), None, "only a CSV ending is dropped");
    }

    #[test]
    fn states_follow_the_import_and_decide_what_may_go_next() {
        assert_eq!(StepState::of(None, false), StepState::NotStarted);
        assert_eq!(StepState::of(None, true), StepState::Skipped);
        assert!(StepState::Skipped.lets_dependents_go() && !StepState::Skipped.takes_a_file());
        assert!(!StepState::InProgress.lets_dependents_go() && !StepState::InProgress.takes_a_file());
        let attention = StepState::NeedsAttention { left_out: 3, failed: false };
        assert!(attention.lets_dependents_go() && attention.takes_a_file());
        let failed = StepState::NeedsAttention { left_out: 0, failed: true };
        assert!(!failed.lets_dependents_go() && failed.takes_a_file());
        assert!(StepState::NotStarted.takes_a_file() && !StepState::NotStarted.is_done());
    }
}
