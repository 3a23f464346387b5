//! The mapping step's choices besides the columns: a format for date, datetime and decimal
//! fields (proposed from the column's values, asked when they allow two readings), and for
//! enum fields the column's values that are not allowed values, each with a select of the
//! allowed ones.

use crate::domain::entities::{CellFormat, DateFormat, Field, FieldKind};
use crate::domain::imports::detect::{self, FileProfile, Guess, PROFILE_ROWS};
use crate::domain::imports::{ColumnMapping, ColumnOptions, Import};
use crate::web::Grouped;

/// A mapping submitted with a problem: shown back as it was, with the problem.
pub struct Draft {
    pub mapping: ColumnMapping,
    pub options: ColumnOptions,
    pub error: String,
}

/// A field's format on the mapping form.
pub struct FormatChoice {
    /// `date`, `datetime` or `decimal`: which of a column's guesses the page's script reads.
    pub kind: &'static str,
    /// `(pattern, label)`; the canonical one's pattern is `""` for decimals.
    pub choices: Vec<(String, String)>,
    /// The pattern selected; `""` with `ask`: nothing chosen yet.
    pub selected: String,
    /// The values allow two readings and nothing is chosen: "Choose…" is offered and selected.
    pub ask: bool,
    /// What the chosen column's values look like, in words.
    pub hint: String,
}

/// An enum value of the column that is not an allowed value.
pub struct ValueChoice {
    pub value: String,
    pub rows: u64,
    /// The allowed value it is mapped to; empty: left an error.
    pub selected: String,
}

/// An enum field's unknown values, for the column they were read from.
pub struct ValueList {
    pub column: String,
    pub values: Vec<ValueChoice>,
    pub allowed: Vec<String>,
    /// Where the counts come from: "in the file" or "in the first 10,000 rows".
    pub counted: String,
    /// The column has more distinct values than were read.
    pub capped: bool,
}

/// What the page's script needs to redo a column's guesses when a person picks it:
/// per kind, the pattern to select (`?`: ask) and the words.
#[derive(Default)]
pub struct ColumnGuesses {
    pub date: (String, String),
    pub datetime: (String, String),
    pub decimal: (String, String),
}

fn kind_name(kind: FieldKind) -> Option<&'static str> {
    match kind {
        FieldKind::Date => Some("date"),
        FieldKind::Datetime => Some("datetime"),
        FieldKind::Decimal => Some("decimal"),
        _ => None,
    }
}

/// The pattern a guess selects (`?` when it asks) and its words.
fn guess_attrs(g: &Guess, kind: FieldKind) -> (String, String) {
    let pattern = match g {
        Guess::Format { format, .. } => format.pattern(),
        Guess::Ambiguous { .. } => "?".into(),
        _ => String::new(),
    };
    (pattern, g.text(kind))
}

/// Every column's guesses, in the header's order.
pub fn column_guesses(imp: &Import, profile: &FileProfile) -> Vec<ColumnGuesses> {
    let xlsx = imp.file.is_xlsx();
    (0..imp.headers.len())
        .map(|i| match profile.columns.get(i) {
            None => ColumnGuesses::default(),
            Some(c) => {
                let values: Vec<&str> = c.values.iter().map(|(v, _)| v.as_str()).collect();
                ColumnGuesses {
                    date: guess_attrs(&detect::detect_date(&values, false, xlsx), FieldKind::Date),
                    datetime: guess_attrs(&detect::detect_date(&values, true, xlsx), FieldKind::Datetime),
                    decimal: guess_attrs(&detect::detect_decimal(&values), FieldKind::Decimal),
                }
            }
        })
        .collect()
}

/// The format choice of `field`, whose column is `header` (empty: none chosen).
pub fn format_choice(
    imp: &Import,
    f: &Field,
    header: &str,
    options: &ColumnOptions,
    profile: &FileProfile,
) -> Option<FormatChoice> {
    let kind = kind_name(f.kind())?;
    let xlsx = imp.file.is_xlsx();
    // a datetime's format is its date's, the time read after it
    let label = |c: CellFormat| match (f.kind(), c) {
        (FieldKind::Datetime, CellFormat::Date(d)) if d != DateFormat::ExcelSerial => {
            format!("{} hh:mm[:ss]", c.label())
        }
        _ => c.label(),
    };
    let mut choices: Vec<(String, String)> =
        detect::formats_for(f.kind(), xlsx).into_iter().map(|c| (c.pattern(), label(c))).collect();
    if f.kind() == FieldKind::Decimal {
        choices.insert(0, (String::new(), "1234.5 (as written)".into()));
    }
    let column = imp.headers.iter().position(|h| h == header).and_then(|i| profile.columns.get(i));
    let guess = column.map(|c| detect::guess(&f.rule, c, xlsx)).unwrap_or(Guess::Canonical);
    let chosen = options.get(f.name()).and_then(|o| o.format).map(|c| c.pattern());
    let canonical = if f.kind() == FieldKind::Decimal { String::new() } else { "YYYY-MM-DD".into() };
    let ask = chosen.is_none() && matches!(guess, Guess::Ambiguous { .. });
    let selected = match chosen {
        Some(p) => p,
        None if ask => String::new(),
        None => canonical,
    };
    Some(FormatChoice { kind, choices, selected, ask, hint: guess.text(f.kind()) })
}

/// The unknown values of enum `field`'s column `header`, with what each is mapped to.
pub fn value_list(
    imp: &Import,
    f: &Field,
    header: &str,
    options: &ColumnOptions,
    profile: &FileProfile,
) -> Option<ValueList> {
    if f.kind() != FieldKind::Enum {
        return None;
    }
    let column = profile.columns.get(imp.headers.iter().position(|h| h == header)?)?;
    let unknown = detect::unknown_values(&f.rule, column);
    if unknown.is_empty() {
        return None;
    }
    let mapped = options.get(f.name()).map(|o| &o.values);
    let values = unknown
        .into_iter()
        .map(|(value, rows)| ValueChoice {
            selected: mapped.and_then(|m| m.get(&value)).cloned().unwrap_or_default(),
            value,
            rows,
        })
        .collect();
    let counted = if profile.complete {
        "in the file".to_string()
    } else {
        format!("in the first {} rows", (PROFILE_ROWS as i64).grouped())
    };
    Some(ValueList {
        column: header.to_string(),
        values,
        allowed: f.rule.values.clone(),
        counted,
        capped: column.capped,
    })
}
