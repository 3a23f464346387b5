//! The import model's rules: the state machine joining seed 000's stages and seed 004's
//! statuses, the seven phases, actions and duplicate handling, and matching file headers
//! to schema fields. See `docs/imports.md`.

pub mod detect;
pub mod edits;
pub mod history;
pub mod mapping;
pub mod mapping_form;
pub mod model;
pub mod options;
pub mod status;

pub use detect::{FileProfile, Guess};
pub use edits::{Overlay, problems_by_field};
pub use mapping::{auto_map, missing_required};
pub use mapping_form::{MappingProblem, MappingWarning};
pub use model::{ApiOrigin, ColumnMapping, Import, ImportFile, Rollback, RollbackRefusal, Validated};
pub use options::{ColumnOption, ColumnOptions, check_options};
pub use status::{Action, ApiStatus, DuplicateHandling, Phase, PhaseStatus, Stage};

/// The content type an uploaded file of this name is downloaded with: a workbook's, else
/// CSV's.
pub fn content_type_of(name: &str) -> &'static str {
    if name.to_ascii_lowercase().ends_with(".xlsx") {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else {
        "text/csv; charset=utf-8"
    }
}
