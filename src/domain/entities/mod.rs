//! Entity types: their schemas (one TOML file each, see `schemas/`), the field types of
//! the importer (seed 003), and the rules that turn a CSV cell into a stored value.

pub mod field;
pub mod formats;
pub mod record;
pub mod schema;

pub use field::{FieldKind, FieldRule, parse_cell, parse_date, row_hash};
pub use formats::{CellFormat, DateFormat, DecimalStyle};
pub use record::{PreparedRecord, display_value};
pub use schema::{EntitySchema, Field, SchemaError, Schemas};
