//! One state machine for an import. The UI shows seed 000's stage names; the API shows
//! seed 004's statuses, derived from the stage by [`Stage::api_status`].
//!
//! ```text
//! pending ─▶ mapping ─▶ validating ⇄ ready ─▶ importing ─▶ completed ─▶ rolled_back
//!    │          │            │          │          │     └──▶ failed / timed_out ─▶ rolled_back
//!    └──────────┴────────────┴──────────┴──────────┴──▶ failed / timed_out
//!                                       └──▶ expired (not started within its TTL)
//! ```

use std::fmt;

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Uploaded; the file is being read.
    Pending,
    /// Headers read; waiting for the user to confirm the column mapping.
    Mapping,
    /// The validation phases are running in the background.
    Validating,
    /// Validated; waiting for the user to start the import.
    Ready,
    /// Chunks are being imported (possibly paused between chunks).
    Importing,
    Completed,
    Failed,
    RolledBack,
    /// A background phase ran past its time budget.
    TimedOut,
    /// Ready but not started within its time to live; staged data purged.
    Expired,
}

/// Seed 004's statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiStatus {
    Requested,
    Queued,
    Processing,
    Completed,
    Failed,
    TimedOut,
    Expired,
}

impl ApiStatus {
    pub const ALL: [ApiStatus; 7] = [
        ApiStatus::Requested,
        ApiStatus::Queued,
        ApiStatus::Processing,
        ApiStatus::Completed,
        ApiStatus::Failed,
        ApiStatus::TimedOut,
        ApiStatus::Expired,
    ];

    pub fn parse(s: &str) -> Option<ApiStatus> {
        ApiStatus::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The stages shown as this status.
    pub fn stages(self) -> Vec<Stage> {
        Stage::ALL.into_iter().filter(|s| s.api_status() == self).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiStatus::Requested => "requested",
            ApiStatus::Queued => "queued",
            ApiStatus::Processing => "processing",
            ApiStatus::Completed => "completed",
            ApiStatus::Failed => "failed",
            ApiStatus::TimedOut => "timed_out",
            ApiStatus::Expired => "expired",
        }
    }
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Pending,
        Stage::Mapping,
        Stage::Validating,
        Stage::Ready,
        Stage::Importing,
        Stage::Completed,
        Stage::Failed,
        Stage::RolledBack,
        Stage::TimedOut,
        Stage::Expired,
    ];

    /// The stored name (seed 000's words, plus timed_out and expired).
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::Mapping => "mapping",
            Stage::Validating => "validating",
            Stage::Ready => "ready",
            Stage::Importing => "importing",
            Stage::Completed => "completed",
            Stage::Failed => "failed",
            Stage::RolledBack => "rolled_back",
            Stage::TimedOut => "timed_out",
            Stage::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The badge text.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Pending => "Pending",
            Stage::Mapping => "Mapping",
            Stage::Validating => "Validating",
            Stage::Ready => "Ready",
            Stage::Importing => "Importing",
            Stage::Completed => "Completed",
            Stage::Failed => "Failed",
            Stage::RolledBack => "Rolled Back",
            Stage::TimedOut => "Timed Out",
            Stage::Expired => "Expired",
        }
    }

    /// The badge style: the word is always shown too, never colour alone.
    pub fn badge(self) -> &'static str {
        match self {
            Stage::Completed => "success",
            Stage::Failed | Stage::TimedOut => "destructive",
            // undone on purpose, or never started: over, and nothing went wrong
            Stage::RolledBack | Stage::Expired => "outline",
            Stage::Ready | Stage::Mapping => "secondary",
            Stage::Pending | Stage::Validating | Stage::Importing => "secondary badge-animated",
        }
    }

    /// Seed 004's status for this stage. Waiting on a person is `requested`; waiting to
    /// be started is `queued`; background work is `processing`. A rolled-back import
    /// completed (its `reason` says it was rolled back).
    pub fn api_status(self) -> ApiStatus {
        match self {
            Stage::Pending | Stage::Validating | Stage::Importing => ApiStatus::Processing,
            Stage::Mapping => ApiStatus::Requested,
            Stage::Ready => ApiStatus::Queued,
            Stage::Completed | Stage::RolledBack => ApiStatus::Completed,
            Stage::Failed => ApiStatus::Failed,
            Stage::TimedOut => ApiStatus::TimedOut,
            Stage::Expired => ApiStatus::Expired,
        }
    }

    /// The stages from which an import may become `to`: what a store statement that
    /// makes that change requires (`WHERE stage IN (…)`), so the SQL and this state machine
    /// cannot disagree.
    pub fn sources(to: Stage) -> Vec<Stage> {
        Stage::ALL.into_iter().filter(|s| s.can_transition_to(to)).collect()
    }

    /// Nothing more will run for it: its staged rows can be purged.
    pub fn is_finished(self) -> bool {
        matches!(self, Stage::Completed | Stage::Failed | Stage::RolledBack | Stage::TimedOut | Stage::Expired)
    }

    /// The finished stages.
    pub fn finished() -> Vec<Stage> {
        Stage::ALL.into_iter().filter(|s| s.is_finished()).collect()
    }

    /// Background work is under way: pages keep refreshing.
    pub fn is_active(self) -> bool {
        matches!(self, Stage::Pending | Stage::Validating | Stage::Importing)
    }

    /// The transitions the state machine allows.
    pub fn can_transition_to(self, next: Stage) -> bool {
        use Stage::*;
        match (self, next) {
            (Pending, Mapping) => true,
            // re-mapping after validation is allowed until the import starts: a new mapping
            // is validated again straight away
            (Mapping | Ready, Validating) | (Validating, Ready) | (Ready, Mapping) => true,
            // ready and never started, or (through the API) never given its file
            (Ready, Importing) | (Ready | Pending, Expired) => true,
            (Importing, Completed) => true,
            (Completed | Failed | TimedOut, RolledBack) => true,
            (Pending | Mapping | Validating | Ready | Importing, Failed) => true,
            (Pending | Validating | Importing, TimedOut) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seed 004's seven phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Prevalidation,
    Preparsing,
    Transforming,
    Parsing,
    Validation,
    Processing,
    Cleanup,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Prevalidation,
        Phase::Preparsing,
        Phase::Transforming,
        Phase::Parsing,
        Phase::Validation,
        Phase::Processing,
        Phase::Cleanup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prevalidation => "prevalidation",
            Phase::Preparsing => "preparsing",
            Phase::Transforming => "transforming",
            Phase::Parsing => "parsing",
            Phase::Validation => "validation",
            Phase::Processing => "processing",
            Phase::Cleanup => "cleanup",
        }
    }

    /// What the phase does, as the detail sheet explains it.
    pub fn description(self) -> &'static str {
        match self {
            Phase::Prevalidation => "Reads the file: encoding, header row, row shapes",
            Phase::Preparsing => "Finds duplicate rows within the file",
            Phase::Transforming => "Applies the column mapping and identifies each record by its key",
            Phase::Parsing => "Checks every field against its type and rules",
            Phase::Validation => "Checks references to other records and duplicates of stored records",
            Phase::Processing => "Creates and updates records in chunks",
            Phase::Cleanup => "Removes records the file did not contain (overwrite only)",
        }
    }

    /// The phases that validate a file, in order; the rest import it.
    pub const VALIDATING: [Phase; 5] =
        [Phase::Prevalidation, Phase::Preparsing, Phase::Transforming, Phase::Parsing, Phase::Validation];

    /// What the phase is doing, as the page says while it runs.
    pub fn doing(self) -> &'static str {
        match self {
            Phase::Prevalidation => "Reading the file",
            Phase::Preparsing => "Finding rows repeated in the file",
            Phase::Transforming => "Finding rows that share a key",
            Phase::Parsing => "Checking every value against its field",
            Phase::Validation => "Checking references and the records already stored",
            Phase::Processing => "Importing",
            Phase::Cleanup => "Removing the records the file does not contain",
        }
    }

    /// Seed 004: the first two run sync or async with the upload mode; the rest always async.
    pub fn always_async(self) -> bool {
        !matches!(self, Phase::Prevalidation | Phase::Preparsing)
    }
}

/// Where one phase of an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseStatus {
    NotStarted,
    Running,
    Completed,
    Failed,
    /// Not needed for this import (cleanup of a merge).
    Skipped,
}

impl PhaseStatus {
    /// The stored (and shown) word.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::NotStarted => "not started",
            PhaseStatus::Running => "running",
            PhaseStatus::Completed => "completed",
            PhaseStatus::Failed => "failed",
            PhaseStatus::Skipped => "skipped",
        }
    }

    /// A stored word; an unknown one reads as not started.
    /// The API's word: `not_started`, `running`, `completed`, `failed`, `skipped`.
    /// How a page shows it (its badge carries the word).
    pub fn label(self) -> &'static str {
        match self {
            PhaseStatus::NotStarted => "Not started",
            PhaseStatus::Running => "Running",
            PhaseStatus::Completed => "Completed",
            PhaseStatus::Failed => "Failed",
            PhaseStatus::Skipped => "Skipped",
        }
    }

    pub fn as_str_api(self) -> &'static str {
        match self {
            PhaseStatus::NotStarted => "not_started",
            other => other.as_str(),
        }
    }

    pub fn parse(s: &str) -> PhaseStatus {
        [PhaseStatus::Running, PhaseStatus::Completed, PhaseStatus::Failed, PhaseStatus::Skipped]
            .into_iter()
            .find(|p| p.as_str() == s)
            .unwrap_or(PhaseStatus::NotStarted)
    }

    /// The badge style (the word is shown too).
    pub fn badge(self) -> &'static str {
        match self {
            PhaseStatus::Completed => "success",
            PhaseStatus::Failed => "destructive",
            PhaseStatus::Running => "secondary badge-animated",
            PhaseStatus::NotStarted | PhaseStatus::Skipped => "outline",
        }
    }
}

/// What an import does to the org's records (seed 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Merge,
    Overwrite,
    Delete,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action, String> {
        match s {
            "merge" => Ok(Action::Merge),
            "overwrite" => Ok(Action::Overwrite),
            "delete" => Ok(Action::Delete),
            other => Err(format!("\"{other}\" is not an action (expected merge, overwrite or delete)")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Merge => "merge",
            Action::Overwrite => "overwrite",
            Action::Delete => "delete",
        }
    }

    /// The word on screen, as the upload form offers it.
    pub fn label(self) -> &'static str {
        match self {
            Action::Merge => "Merge: update by key, create the rest",
            Action::Overwrite => "Overwrite: merge, then remove records not in the file",
            Action::Delete => "Delete the records the file names",
        }
    }
}

/// What happens to rows that repeat within one file (seed 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateHandling {
    /// Every copy of a repeated row is left out.
    #[default]
    IgnoreAll,
    /// The first copy is imported, later ones left out.
    UseFirst,
}

impl DuplicateHandling {
    pub fn parse(s: &str) -> Result<DuplicateHandling, String> {
        match s {
            "" | "ignore_all" => Ok(DuplicateHandling::IgnoreAll),
            "use_first" => Ok(DuplicateHandling::UseFirst),
            other => Err(format!("\"{other}\" is not a duplicate handling (expected ignore_all or use_first)")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateHandling::IgnoreAll => "ignore_all",
            DuplicateHandling::UseFirst => "use_first",
        }
    }

    /// The words on screen, as the upload form offers them.
    pub fn label(self) -> &'static str {
        match self {
            DuplicateHandling::IgnoreAll => "Leave out every copy of a repeated row",
            DuplicateHandling::UseFirst => "Import the first copy of a repeated row",
        }
    }

    /// Whether the `occurrence`-th copy (1 = first) of a row that appears `total` times
    /// in the file is imported.
    pub fn keeps(self, occurrence: usize, total: usize) -> bool {
        match self {
            DuplicateHandling::IgnoreAll => total <= 1,
            DuplicateHandling::UseFirst => occurrence == 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Stage::ALL {
            assert_eq!(Stage::parse(s.as_str()), Some(s));
        }
        assert_eq!(Stage::parse("paused"), None);
        assert_eq!(Stage::RolledBack.label(), "Rolled Back");
    }

    #[test]
    fn the_happy_path_is_allowed_step_by_step() {
        use Stage::*;
        let path = [Pending, Mapping, Validating, Ready, Importing, Completed, RolledBack];
        for w in path.windows(2) {
            assert!(w[0].can_transition_to(w[1]), "{} -> {}", w[0], w[1]);
        }
    }

    #[test]
    fn no_skipping_and_no_leaving_final_states() {
        use Stage::*;
        assert!(!Pending.can_transition_to(Ready));
        assert!(!Mapping.can_transition_to(Importing));
        assert!(!Validating.can_transition_to(Importing));
        assert!(!Completed.can_transition_to(Importing));
        assert!(!RolledBack.can_transition_to(RolledBack), "a rolled-back import cannot be rolled back again");
        assert!(!Expired.can_transition_to(Importing));
        assert!(Ready.can_transition_to(Mapping), "re-map before starting");
        assert!(Ready.can_transition_to(Expired));
        assert!(!Importing.can_transition_to(Expired));
        for s in Stage::ALL {
            if matches!(s, RolledBack | Expired) {
                assert!(Stage::ALL.iter().all(|n| !s.can_transition_to(*n)), "{s} is final");
            }
        }
    }

    #[test]
    fn stage_sets_come_from_the_transitions() {
        use Stage::*;
        assert_eq!(Stage::sources(Validating), [Mapping, Ready]);
        assert_eq!(Stage::sources(RolledBack), [Completed, Failed, TimedOut]);
        assert_eq!(Stage::sources(Importing), [Ready]);
        assert_eq!(Stage::sources(Expired), [Pending, Ready], "an API import never given its file expires too");
        assert_eq!(Stage::finished(), [Completed, Failed, RolledBack, TimedOut, Expired]);
        for s in Stage::finished() {
            assert!(!s.is_active() && !s.can_transition_to(Importing), "{s}");
        }
    }

    #[test]
    fn api_statuses_name_their_stages() {
        for a in ApiStatus::ALL {
            assert_eq!(ApiStatus::parse(a.as_str()), Some(a));
            assert!(!a.stages().is_empty(), "{a:?}");
            assert!(a.stages().iter().all(|s| s.api_status() == a));
        }
        assert_eq!(ApiStatus::Processing.stages(), [Stage::Pending, Stage::Validating, Stage::Importing]);
        assert_eq!(ApiStatus::parse("done"), None);
    }

    #[test]
    fn every_stage_has_an_api_status() {
        assert_eq!(Stage::Mapping.api_status().as_str(), "requested");
        assert_eq!(Stage::Ready.api_status().as_str(), "queued");
        assert_eq!(Stage::Importing.api_status().as_str(), "processing");
        assert_eq!(Stage::RolledBack.api_status().as_str(), "completed");
        assert_eq!(Stage::TimedOut.api_status().as_str(), "timed_out");
        assert_eq!(Stage::Expired.api_status().as_str(), "expired");
        assert!(Stage::Importing.is_active() && !Stage::Ready.is_active());
        assert!(Stage::Pending.badge().contains("animated"), "background work is animated");
    }

    #[test]
    fn phases_in_order_with_seed_modes() {
        let names: Vec<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            names,
            ["prevalidation", "preparsing", "transforming", "parsing", "validation", "processing", "cleanup"]
        );
        assert!(!Phase::Prevalidation.always_async() && Phase::Transforming.always_async());
    }

    #[test]
    fn phase_statuses_round_trip() {
        for s in [PhaseStatus::Running, PhaseStatus::Completed, PhaseStatus::Failed, PhaseStatus::Skipped] {
            assert_eq!(PhaseStatus::parse(s.as_str()), s);
        }
        assert_eq!(PhaseStatus::parse("paused"), PhaseStatus::NotStarted);
        assert!(PhaseStatus::Running.badge().contains("animated"));
    }

    #[test]
    fn actions_and_duplicate_handling_parse_and_decide() {
        assert_eq!(Action::parse("overwrite"), Ok(Action::Overwrite));
        assert!(Action::parse("upsert").unwrap_err().contains("\"upsert\" is not an action"));
        assert_eq!(DuplicateHandling::parse(""), Ok(DuplicateHandling::IgnoreAll));
        assert!(DuplicateHandling::IgnoreAll.keeps(1, 1));
        assert!(!DuplicateHandling::IgnoreAll.keeps(1, 2));
        assert!(DuplicateHandling::UseFirst.keeps(1, 3));
        assert!(!DuplicateHandling::UseFirst.keeps(2, 3));
    }
}
