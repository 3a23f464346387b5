//! One import as the rest of the app sees it: typed stage, action, duplicate handling,
//! headers, mapping and counts, decoded once by the store. Its methods are the rules that
//! the pages, the jobs and the API all ask (may it start, may it be rolled back, which
//! fields must be mapped, how far along is it).

use std::collections::BTreeMap;

use super::{Action, DuplicateHandling, Stage};
use crate::domain::entities::EntitySchema;
use crate::domain::ids::{OrgId, UserId};

/// Rows per chunk when the upload does not say.
pub const DEFAULT_CHUNK_SIZE: i64 = 50;
/// The largest chunk an upload may ask for.
pub const MAX_CHUNK_SIZE: i64 = 10_000;

/// The column mapping: field name → the file's header that fills it (seed 004's shape).
pub type ColumnMapping = BTreeMap<String, String>;

/// The uploaded file behind an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFile {
    /// The name it was uploaded with.
    pub name: String,
    /// Where it is stored.
    pub path: String,
    pub size: i64,
    /// MD5 of its bytes, hex.
    pub checksum: String,
    /// The sheet read, for XLSX.
    pub sheet: Option<String>,
}

impl ImportFile {
    pub fn is_xlsx(&self) -> bool {
        self.name.to_ascii_lowercase().ends_with(".xlsx")
    }

    /// The content type the original is downloaded with.
    pub fn content_type(&self) -> &'static str {
        super::content_type_of(&self.name)
    }
}

/// What validation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validated {
    pub total_rows: i64,
    pub valid_rows: i64,
    pub invalid_rows: i64,
    pub duplicate_rows: i64,
    pub to_create: i64,
    pub to_update: i64,
    pub unchanged_rows: i64,
    pub to_delete: i64,
}

/// A rollback asked for, and how far it got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollback {
    pub requested_at: Option<i64>,
    pub requested_by_label: String,
    /// Records changed since the import are rolled back too.
    pub overwrite: bool,
    pub cursor: i64,
    pub rolled_back_rows: i64,
    pub skipped: i64,
    pub rolled_back_at: Option<i64>,
}

impl Rollback {
    /// Journal entries dealt with so far: undone, or left alone as changed since.
    pub fn handled(&self) -> i64 {
        self.rolled_back_rows + self.skipped
    }
}

/// Why an import cannot be rolled back now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackRefusal {
    AlreadyRolledBack,
    /// The journal was purged at this time (retention).
    JournalPurged(i64),
    InProgress,
    /// The import is in this stage, which has nothing to undo.
    NotFinished(Stage),
    /// Finished but changed nothing.
    NothingChanged,
}

#[derive(Debug, Clone)]
pub struct Import {
    pub id: i64,
    pub org: OrgId,
    /// The entity type imported into.
    pub entity: String,
    /// The name given at upload (may be empty).
    pub name: String,
    pub action: Action,
    pub duplicate_handling: DuplicateHandling,
    pub stage: Stage,
    pub paused: bool,
    /// Why it failed or expired; empty otherwise.
    pub reason: String,
    pub file: ImportFile,
    /// The file's header row.
    pub headers: Vec<String>,
    pub mapping: ColumnMapping,
    /// Column formats and enum value mappings chosen with the mapping.
    pub options: super::ColumnOptions,
    pub chunk_size: i64,
    pub validated: Validated,
    /// The last staged row number a committed chunk covered.
    pub next_row: i64,
    pub processed_rows: i64,
    pub created_rows: i64,
    pub updated_rows: i64,
    pub deleted_rows: i64,
    pub failed_rows: i64,
    pub created_by: Option<UserId>,
    pub created_by_label: String,
    /// Who last started, paused or resumed it.
    pub updated_by: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
    pub rollback: Rollback,
    pub staging_purged_at: Option<i64>,
    pub journal_purged_at: Option<i64>,
    pub api: ApiOrigin,
}

/// How the JSON API drives an import (all false and None for one uploaded in the browser).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiOrigin {
    /// The upload answers once validation ran (seed 004's `upload_mode: sync`).
    pub sync: bool,
    /// It starts by itself once validated (created without `review`).
    pub auto_start: bool,
    pub created_by_key: Option<i64>,
    pub updated_by_key: Option<i64>,
}

impl Import {
    /// The name shown for it: the one given at upload, else the file's.
    pub fn title(&self) -> &str {
        if self.name.is_empty() { &self.file.name } else { &self.name }
    }

    /// Created through the API and still waiting for its file to be uploaded.
    pub fn awaits_file(&self) -> bool {
        self.stage == Stage::Pending && self.file.path.is_empty()
    }

    /// Seed 004's status: an import waiting for its file is `requested`.
    pub fn api_status(&self) -> super::ApiStatus {
        if self.awaits_file() { super::ApiStatus::Requested } else { self.stage.api_status() }
    }

    pub fn is_delete(&self) -> bool {
        self.action == Action::Delete
    }

    /// A delete import needs only the key mapped: the records it names are removed whole.
    pub fn delete_needs_only_key(&self) -> bool {
        self.is_delete()
    }

    /// Whether `field` must be mapped to a column before validation.
    pub fn field_required(&self, schema: &EntitySchema, field: &str) -> bool {
        if self.delete_needs_only_key() {
            field == schema.key
        } else {
            schema.field(field).is_some_and(|f| f.required())
        }
    }

    /// The fields that must be mapped, in schema order.
    pub fn required_fields<'s>(&self, schema: &'s EntitySchema) -> Vec<&'s str> {
        schema.fields.iter().map(|f| f.name()).filter(|f| self.field_required(schema, f)).collect()
    }

    /// Records the import changed (created, updated or deleted).
    pub fn changed_rows(&self) -> i64 {
        self.created_rows + self.updated_rows + self.deleted_rows
    }

    /// Rows repeated within the file (validation stores them with the unchanged rows for a
    /// merge or overwrite, apart for a delete).
    pub fn repeated_rows(&self) -> i64 {
        if self.is_delete() {
            self.validated.duplicate_rows
        } else {
            self.validated.duplicate_rows - self.validated.unchanged_rows
        }
    }

    /// Rows with nothing to do: repeated in the file, identical to the stored record, or (for
    /// a delete) naming no record. Total = changed + skipped + not imported.
    pub fn skipped_rows(&self) -> i64 {
        self.repeated_rows() + self.validated.unchanged_rows
    }

    /// A completed import that left rows out: it says so rather than a plain green Completed.
    pub fn completed_with_issues(&self) -> bool {
        self.stage == Stage::Completed && self.not_imported_rows() > 0
    }

    /// The status a person reads: the stage's, or "Completed with issues".
    pub fn status_label(&self) -> &'static str {
        if self.completed_with_issues() {
            "Completed with issues"
        } else if self.awaits_file() {
            "Awaiting file"
        } else if self.is_paused() {
            "Paused"
        } else {
            self.stage.label()
        }
    }

    /// Waiting on a person before anything was imported (its mapping, or Start): it may be
    /// discarded; nothing is lost but the work of mapping it.
    pub fn can_discard(&self) -> bool {
        matches!(self.stage, Stage::Mapping | Stage::Ready)
    }

    /// An import a person paused half way: one "Paused" badge, not "Importing" beside it.
    pub fn is_paused(&self) -> bool {
        self.paused && self.stage == Stage::Importing
    }

    /// The badge variant of [`Import::status_label`].
    pub fn status_badge(&self) -> &'static str {
        if self.completed_with_issues() {
            "warning"
        } else if self.is_paused() {
            "outline"
        } else {
            self.stage.badge()
        }
    }

    /// Rows the file brought that were not imported (invalid or failed).
    pub fn not_imported_rows(&self) -> i64 {
        self.validated.invalid_rows + self.failed_rows
    }

    /// The rows the processing phase works through.
    pub fn to_process(&self) -> i64 {
        if self.is_delete() { self.validated.to_delete } else { self.validated.to_create + self.validated.to_update }
    }

    /// Processing progress, 0–100.
    pub fn percent(&self) -> i64 {
        let total = self.to_process();
        if total == 0 { 100 } else { (self.processed_rows * 100 / total).clamp(0, 100) }
    }

    /// The mapping can still change (and validation run again).
    pub fn can_remap(&self) -> bool {
        self.stage.can_transition_to(Stage::Validating)
    }

    pub fn can_start(&self) -> bool {
        self.stage.can_transition_to(Stage::Importing)
    }

    /// An overwrite that removes records starts only once the person confirmed that number
    /// (`confirmed` is what the confirmation form sent).
    pub fn needs_removal_confirmation(&self, confirmed: Option<&str>) -> bool {
        self.can_start()
            && self.action == Action::Overwrite
            && self.validated.to_delete > 0
            && confirmed.map(str::trim) != Some(self.validated.to_delete.to_string().as_str())
    }

    /// Whether it is paused or running chunks.
    pub fn can_pause_or_resume(&self) -> bool {
        self.stage == Stage::Importing
    }

    /// Why a rollback cannot be asked for now; None when it can.
    pub fn rollback_refusal(&self) -> Option<RollbackRefusal> {
        if self.stage == Stage::RolledBack {
            Some(RollbackRefusal::AlreadyRolledBack)
        } else if let Some(at) = self.journal_purged_at {
            Some(RollbackRefusal::JournalPurged(at))
        } else if self.rollback.requested_at.is_some() {
            Some(RollbackRefusal::InProgress)
        } else if !self.stage.can_transition_to(Stage::RolledBack) {
            Some(RollbackRefusal::NotFinished(self.stage))
        } else if self.changed_rows() == 0 {
            Some(RollbackRefusal::NothingChanged)
        } else {
            None
        }
    }

    /// Finished with changes to undo, its journal kept, and no rollback asked for yet.
    pub fn can_roll_back(&self) -> bool {
        self.rollback_refusal().is_none()
    }

    /// A rollback was asked for and has not finished.
    pub fn is_rolling_back(&self) -> bool {
        self.rollback.requested_at.is_some() && self.stage != Stage::RolledBack
    }

    /// Background work is changing it: its page keeps itself up to date.
    pub fn is_live(&self) -> bool {
        (self.stage.is_active() && !self.paused && !self.awaits_file()) || self.is_rolling_back()
    }

    /// The stored file and journal are gone (retention), so neither the original nor a
    /// rollback is available.
    pub fn is_purged(&self) -> bool {
        self.journal_purged_at.is_some()
    }
}

/// The chunk size an upload asked for (empty: the default).
pub fn parse_chunk_size(raw: Option<&str>) -> Result<i64, String> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_CHUNK_SIZE),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_CHUNK_SIZE).contains(&n) => Ok(n),
            _ => Err(format!("Chunk size \"{s}\" must be a whole number from 1 to {MAX_CHUNK_SIZE}.")),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::entities::Schemas;
    use crate::domain::imports::{MappingProblem, MappingWarning};

    fn schema() -> EntitySchema {
        let toml = r#"
entity = "things"
label = "Things"
singular = "Thing"
key = "code"
[[fields]]
name = "code"
type = "text"
required = true
[[fields]]
name = "name"
type = "text"
required = true
[[fields]]
name = "note"
type = "text"
"#;
        let s = Schemas::load([("things.toml", toml)]).unwrap();
        (*s.get("things").unwrap().clone()).clone()
    }

    pub(crate) fn import(stage: Stage, action: Action) -> Import {
        Import {
            id: 7,
            org: OrgId::new(1),
            entity: "things".into(),
            name: String::new(),
            action,
            duplicate_handling: DuplicateHandling::IgnoreAll,
            stage,
            paused: false,
            reason: String::new(),
            file: ImportFile {
                name: "things.csv".into(),
                path: "/tmp/x.csv".into(),
                size: 10,
                checksum: "abc".into(),
                sheet: None,
            },
            headers: vec!["code".into(), "name".into(), "note".into()],
            mapping: ColumnMapping::new(),
            options: Default::default(),
            chunk_size: 50,
            validated: Validated::default(),
            next_row: 0,
            processed_rows: 0,
            created_rows: 0,
            updated_rows: 0,
            deleted_rows: 0,
            failed_rows: 0,
            created_by: None,
            created_by_label: String::new(),
            updated_by: None,
            created_at: 0,
            updated_at: 0,
            rollback: Rollback::default(),
            staging_purged_at: None,
            journal_purged_at: None,
            api: ApiOrigin::default(),
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn repeated_and_unchanged_rows_are_counted_once_each() {
        let mut imp = import(Stage::Ready, Action::Merge);
        imp.validated = Validated {
            total_rows: 30,
            valid_rows: 20,
            invalid_rows: 2,
            duplicate_rows: 8,
            unchanged_rows: 5,
            ..Validated::default()
        };
        assert_eq!((imp.repeated_rows(), imp.skipped_rows()), (3, 8));
        assert_eq!(
            imp.validated.valid_rows + imp.validated.invalid_rows + imp.skipped_rows(),
            imp.validated.total_rows
        );
        let mut del = import(Stage::Ready, Action::Delete);
        del.validated = Validated {
            total_rows: 30,
            valid_rows: 20,
            invalid_rows: 2,
            duplicate_rows: 3,
            unchanged_rows: 5,
            ..Validated::default()
        };
        assert_eq!((del.repeated_rows(), del.skipped_rows()), (3, 8), "a delete keeps them apart already");
    }

    #[test]
    fn a_completed_import_that_left_rows_out_says_so() {
        let mut imp = import(Stage::Completed, Action::Merge);
        assert_eq!((imp.status_label(), imp.status_badge()), ("Completed", Stage::Completed.badge()));
        imp.failed_rows = 3;
        assert!(imp.completed_with_issues());
        assert_eq!((imp.status_label(), imp.status_badge()), ("Completed with issues", "warning"));
        imp.stage = Stage::RolledBack;
        assert_eq!(imp.status_label(), Stage::RolledBack.label(), "only a completed import");
    }

    #[test]
    fn rollback_needs_a_finished_import_that_changed_something() {
        let mut i = import(Stage::Completed, Action::Merge);
        assert_eq!(i.rollback_refusal(), Some(RollbackRefusal::NothingChanged));
        i.created_rows = 3;
        assert!(i.can_roll_back());
        i.rollback.requested_at = Some(5);
        assert_eq!(i.rollback_refusal(), Some(RollbackRefusal::InProgress));
        i.rollback.rolled_back_rows = 2;
        i.rollback.skipped = 1;
        assert_eq!(i.rollback.handled(), 3, "undone and left alone both count as handled");
        assert!(i.is_rolling_back() && i.is_live());
        i.stage = Stage::RolledBack;
        assert_eq!(i.rollback_refusal(), Some(RollbackRefusal::AlreadyRolledBack));
        let mut j = import(Stage::Importing, Action::Merge);
        j.created_rows = 1;
        assert_eq!(j.rollback_refusal(), Some(RollbackRefusal::NotFinished(Stage::Importing)));
        let mut k = import(Stage::Failed, Action::Merge);
        k.updated_rows = 1;
        assert!(k.can_roll_back(), "a failed import's committed chunks can be undone");
        k.journal_purged_at = Some(9);
        assert_eq!(k.rollback_refusal(), Some(RollbackRefusal::JournalPurged(9)));
    }

    #[test]
    fn a_delete_import_needs_only_the_key() {
        let s = schema();
        assert_eq!(import(Stage::Mapping, Action::Merge).required_fields(&s), ["code", "name"]);
        assert_eq!(import(Stage::Mapping, Action::Delete).required_fields(&s), ["code"]);
        let d = import(Stage::Mapping, Action::Delete);
        assert!(d.mapping_from_form(&s, pairs(&[("map.code", "code")])).is_ok());
        let m = import(Stage::Mapping, Action::Merge);
        match m.mapping_from_form(&s, pairs(&[("map.code", "code")])) {
            Err(MappingProblem::Invalid(msg, kept)) => {
                assert!(msg.contains("not mapped yet: Name."), "fields by their label: {msg}");
                assert_eq!(kept.get("code").map(String::as_str), Some("code"), "what was chosen is kept");
            }
            other => panic!("{other:?}"),
        }
        let nothing = m.mapping_warnings(&s, &ColumnMapping::new());
        assert_eq!(nothing.iter().map(|w| w.title()).collect::<Vec<_>>().len(), 2, "{nothing:?}");
        assert_eq!(nothing[1], MappingWarning::RequiredWithoutColumn(vec!["Code".into(), "Name".into()]));
        let code = ColumnMapping::from([("code".to_string(), "code".to_string())]);
        assert_eq!(d.mapping_warnings(&s, &code), vec![], "a delete needs only its key");
    }

    #[test]
    fn mapping_forms_are_checked() {
        let s = schema();
        let i = import(Stage::Mapping, Action::Merge);
        let ok = i
            .mapping_from_form(
                &s,
                pairs(&[
                    ("csrf_token", "x"),
                    ("map.code", "code"),
                    ("map.name", "name"),
                    ("map.note", ""),
                    ("map.zz", "note"),
                ]),
            )
            .unwrap();
        assert_eq!(ok.len(), 2, "empty choices and unknown fields are ignored: {ok:?}");
        assert_eq!(
            i.mapping_from_form(&s, pairs(&[("map.code", "nope")])),
            Err(MappingProblem::UnknownColumn("nope".into()))
        );
        match i.mapping_from_form(&s, pairs(&[("map.code", "code"), ("map.name", "code")])) {
            Err(MappingProblem::Invalid(msg, _)) => assert!(msg.contains("mapped to both code and name"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overwrite_asks_for_the_number_it_removes() {
        let mut i = import(Stage::Ready, Action::Overwrite);
        assert!(!i.needs_removal_confirmation(None), "nothing to remove");
        i.validated.to_delete = 4;
        assert!(i.needs_removal_confirmation(None));
        assert!(i.needs_removal_confirmation(Some("3")));
        assert!(!i.needs_removal_confirmation(Some(" 4 ")));
        i.stage = Stage::Importing;
        assert!(!i.needs_removal_confirmation(None), "only before it starts");
        assert!(!import(Stage::Ready, Action::Merge).needs_removal_confirmation(None));
    }

    #[test]
    fn progress_and_liveness() {
        let mut i = import(Stage::Importing, Action::Merge);
        assert_eq!(i.percent(), 100, "nothing to do is done");
        i.validated.to_create = 3;
        i.validated.to_update = 1;
        i.processed_rows = 2;
        assert_eq!((i.to_process(), i.percent()), (4, 50));
        assert!(i.is_live());
        i.paused = true;
        assert!(!i.is_live(), "a paused import does not change by itself");
        let mut d = import(Stage::Importing, Action::Delete);
        d.validated.to_delete = 10;
        d.processed_rows = 20;
        assert_eq!((d.to_process(), d.percent()), (10, 100));
        assert!(
            import(Stage::Ready, Action::Merge).can_remap() && !import(Stage::Importing, Action::Merge).can_remap()
        );
        assert!(import(Stage::Ready, Action::Merge).can_start() && !import(Stage::Mapping, Action::Merge).can_start());
    }

    #[test]
    fn chunk_sizes_default_and_stay_in_range() {
        assert_eq!(parse_chunk_size(None), Ok(DEFAULT_CHUNK_SIZE));
        assert_eq!(parse_chunk_size(Some(" ")), Ok(DEFAULT_CHUNK_SIZE));
        assert_eq!(parse_chunk_size(Some("200")), Ok(200));
        for bad in ["0", "10001", "ten", "-5"] {
            assert!(parse_chunk_size(Some(bad)).unwrap_err().contains("from 1 to 10000"), "{bad}");
        }
    }

    #[test]
    fn only_an_import_waiting_on_a_person_may_be_discarded() {
        for stage in Stage::ALL {
            let i = import(stage, Action::Merge);
            assert_eq!(i.can_discard(), matches!(stage, Stage::Mapping | Stage::Ready), "{stage:?}");
            if i.can_discard() {
                assert!(stage.can_transition_to(Stage::Failed), "{stage:?}");
            }
        }
    }

    #[test]
    fn a_paused_import_reads_paused_alone() {
        let mut i = import(Stage::Importing, Action::Merge);
        assert_eq!((i.status_label(), i.status_badge()), ("Importing", Stage::Importing.badge()));
        i.paused = true;
        assert_eq!((i.status_label(), i.status_badge()), ("Paused", "outline"));
        // the flag outlives the run only in the database: a finished import reads as finished
        i.stage = Stage::Completed;
        assert_eq!(i.status_label(), "Completed");
    }

    #[test]
    fn titles_and_files() {
        let mut i = import(Stage::Mapping, Action::Merge);
        assert_eq!(i.title(), "things.csv");
        i.name = "Spring intake".into();
        assert_eq!(i.title(), "Spring intake");
        assert_eq!(i.file.content_type(), "text/csv; charset=utf-8");
        i.file.name = "Book.XLSX".into();
        assert!(i.file.content_type().contains("spreadsheetml"));
    }
}
