//! What a column's values look like, read off a sample of them (never the whole file): the
//! date format they follow, whether numbers use a decimal comma, which values of an enum
//! column are not allowed values. The mapping step proposes what this finds and asks when
//! the values allow two readings (`03/04/2024`).

use serde::{Deserialize, Serialize};

use crate::domain::entities::formats::{DateFormat, DecimalStyle, ISO, Order};
use crate::domain::entities::{CellFormat, FieldKind, FieldRule};

/// Rows read at upload to profile the columns.
pub const PROFILE_ROWS: u64 = 10_000;
/// Distinct values kept per column; a column with more is `capped`.
pub const PROFILE_VALUES: usize = 200;

/// The first rows of a file, column by column: enough to see formats and enum values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileProfile {
    /// Data rows read.
    pub rows: u64,
    /// Every row of the file was read (else only the first [`PROFILE_ROWS`]).
    pub complete: bool,
    /// In the header's order.
    pub columns: Vec<ColumnProfile>,
}

/// A column's distinct non-blank values (trimmed, first seen first) and the rows of each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub values: Vec<(String, u64)>,
    /// More distinct values than [`PROFILE_VALUES`] were met; only the first are kept.
    pub capped: bool,
    /// Where each value sits in `values`, while counting.
    #[serde(skip)]
    index: std::collections::HashMap<String, usize>,
}

impl PartialEq for ColumnProfile {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values && self.capped == other.capped
    }
}

impl ColumnProfile {
    /// Counts one cell.
    pub fn add(&mut self, cell: &str) {
        let v = cell.trim();
        if v.is_empty() {
            return;
        }
        if self.index.len() != self.values.len() {
            self.index = self.values.iter().enumerate().map(|(i, (s, _))| (s.clone(), i)).collect();
        }
        if let Some(&i) = self.index.get(v) {
            self.values[i].1 += 1;
        } else if self.values.len() < PROFILE_VALUES {
            self.index.insert(v.to_string(), self.values.len());
            self.values.push((v.to_string(), 1));
        } else {
            self.capped = true;
        }
    }

    fn strs(&self) -> Vec<&str> {
        self.values.iter().map(|(v, _)| v.as_str()).collect()
    }
}

/// What the values of a column say about its format.
#[derive(Debug, Clone, PartialEq)]
pub enum Guess {
    /// Nothing to choose: no values, or values written the canonical way.
    Canonical,
    /// The values follow `format` (`matched` of the `read` values do; `example` is one).
    Format { format: CellFormat, example: String, matched: usize, read: usize },
    /// The values could be read in more than one way: a person chooses.
    Ambiguous { formats: Vec<CellFormat>, example: String },
    /// No format reads them.
    Unknown { example: String },
}

impl Guess {
    /// The format to preselect, if there is one to propose.
    pub fn proposed(&self) -> Option<CellFormat> {
        match self {
            Guess::Format { format, .. } => Some(*format),
            _ => None,
        }
    }

    /// The proposal in words, for the mapping step.
    pub fn text(&self, kind: FieldKind) -> String {
        let what = if kind == FieldKind::Decimal { "Numbers" } else { "Dates" };
        match self {
            Guess::Canonical => String::new(),
            Guess::Format { format: CellFormat::Decimal(DecimalStyle::Comma), example, matched, read } => {
                format!("{what} in this column use a decimal comma, like {example}.{}", left(*matched, *read))
            }
            Guess::Format { format: CellFormat::Decimal(DecimalStyle::Point), example, matched, read } => {
                format!("{what} in this column use thousands separators, like {example}.{}", left(*matched, *read))
            }
            Guess::Format { format, example, matched, read } => {
                format!("{what} in this column look like {example} ({}).{}", format.label(), left(*matched, *read))
            }
            Guess::Ambiguous { formats, example } => {
                let names: Vec<String> = formats.iter().map(|f| f.label()).collect();
                format!("{what} in this column, like {example}, could be {}: choose which.", names.join(" or "))
            }
            Guess::Unknown { example } => {
                format!(
                    "No format offered here reads values like {example}; check the column, or fix them after validation."
                )
            }
        }
    }
}

fn left(matched: usize, read: usize) -> String {
    if matched == read {
        String::new()
    } else {
        format!(" {} of the {read} different values read do not, and will be left out.", read - matched)
    }
}

/// The date format a column's values follow (`with_time`: a datetime field's values).
/// Excel serial numbers are only proposed for a spreadsheet (`xlsx`): in a CSV file a number
/// is not taken for a date.
pub fn detect_date(values: &[&str], with_time: bool, xlsx: bool) -> Guess {
    if values.is_empty() {
        return Guess::Canonical;
    }
    let reads = |f: DateFormat, v: &str| if with_time { f.datetime(v).is_some() } else { f.date(v).is_some() };
    let scored: Vec<(DateFormat, usize)> = DateFormat::all()
        .into_iter()
        .filter(|f| xlsx || *f != DateFormat::ExcelSerial)
        .map(|f| (f, values.iter().filter(|v| reads(f, v)).count()))
        .collect();
    let best = scored.iter().map(|(_, n)| *n).max().unwrap_or(0);
    if best == 0 {
        return Guess::Unknown { example: quoted(values[0]) };
    }
    let top: Vec<DateFormat> = scored.iter().filter(|(_, n)| *n == best).map(|(f, _)| *f).collect();
    let example = |f: DateFormat| values.iter().find(|v| reads(f, v)).map(|v| v.to_string()).unwrap_or_default();
    if top.contains(&ISO) {
        return if best == values.len() {
            Guess::Canonical
        } else {
            Guess::Format { format: CellFormat::Date(ISO), example: example(ISO), matched: best, read: values.len() }
        };
    }
    // day/month and month/day read the same values when no day is past the 12th
    if top.len() > 1 {
        let mut formats: Vec<CellFormat> = top.iter().map(|f| CellFormat::Date(*f)).collect();
        formats.sort_by_key(|f| matches!(f, CellFormat::Date(DateFormat::Parts { order: Order::Mdy, .. })));
        return Guess::Ambiguous { formats, example: example(top[0]) };
    }
    Guess::Format { format: CellFormat::Date(top[0]), example: example(top[0]), matched: best, read: values.len() }
}

/// What one number says about its decimal mark.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Plain,
    Point,
    Comma,
    /// `1,234` or `1.234`: either a decimal mark or a thousands separator.
    Either,
}

fn mark_of(v: &str) -> Mark {
    let (last_dot, last_comma) = (v.rfind('.'), v.rfind(','));
    let after = |i: usize| v[i + 1..].len();
    let count = |c: char| v.matches(c).count();
    match (last_dot, last_comma) {
        (None, None) => Mark::Plain,
        (Some(d), Some(c)) if d > c => Mark::Point,
        (Some(_), Some(_)) => Mark::Comma,
        (Some(d), None) if count('.') == 1 && after(d) == 3 => Mark::Either,
        (Some(_), None) if count('.') > 1 => Mark::Comma,
        (Some(_), None) => Mark::Plain,
        (None, Some(c)) if count(',') == 1 && after(c) == 3 => Mark::Either,
        (None, Some(_)) if count(',') > 1 => Mark::Point,
        (None, Some(_)) => Mark::Comma,
    }
}

/// Whether a decimal column's numbers use a decimal comma or thousands separators.
pub fn detect_decimal(values: &[&str]) -> Guess {
    let marks: Vec<Mark> = values.iter().map(|v| mark_of(v)).collect();
    let has = |m: Mark| marks.contains(&m);
    let reads = |style: DecimalStyle| values.iter().filter(|v| style.canonical(v).is_some()).count();
    let propose = |style: DecimalStyle| {
        let example = values.iter().zip(&marks).find(|(v, m)| **m != Mark::Plain && style.canonical(v).is_some());
        Guess::Format {
            format: CellFormat::Decimal(style),
            example: example.map(|(v, _)| v.to_string()).unwrap_or_default(),
            matched: reads(style),
            read: values.len(),
        }
    };
    let grouped_points = values.iter().any(|v| v.contains(',') || v.contains(' '));
    match (has(Mark::Comma), has(Mark::Point)) {
        (true, false) => propose(DecimalStyle::Comma),
        (false, true) if grouped_points => propose(DecimalStyle::Point),
        (true, true) if reads(DecimalStyle::Comma) > reads(DecimalStyle::Point) => propose(DecimalStyle::Comma),
        (true, true) => propose(DecimalStyle::Point),
        _ if has(Mark::Either) => {
            let example = values.iter().zip(&marks).find(|(_, m)| **m == Mark::Either).map(|(v, _)| v.to_string());
            Guess::Ambiguous {
                formats: vec![CellFormat::Decimal(DecimalStyle::Point), CellFormat::Decimal(DecimalStyle::Comma)],
                example: example.unwrap_or_default(),
            }
        }
        _ => Guess::Canonical,
    }
}

/// The format guess for a field of `rule`'s kind over a column's profile (Canonical for
/// kinds without formats).
pub fn guess(rule: &FieldRule, column: &ColumnProfile, xlsx: bool) -> Guess {
    let values = column.strs();
    match rule.kind {
        FieldKind::Date => detect_date(&values, false, xlsx),
        FieldKind::Datetime => detect_date(&values, true, xlsx),
        FieldKind::Decimal => detect_decimal(&values),
        _ => Guess::Canonical,
    }
}

/// The formats a person may choose for a field of `kind` (none for kinds without).
pub fn formats_for(kind: FieldKind, xlsx: bool) -> Vec<CellFormat> {
    match kind {
        FieldKind::Date | FieldKind::Datetime => DateFormat::all()
            .into_iter()
            .filter(|f| xlsx || *f != DateFormat::ExcelSerial)
            .map(CellFormat::Date)
            .collect(),
        FieldKind::Decimal => vec![CellFormat::Decimal(DecimalStyle::Point), CellFormat::Decimal(DecimalStyle::Comma)],
        _ => vec![],
    }
}

/// An enum column's values that are not allowed values (in any case), with their rows, most
/// rows first.
pub fn unknown_values(rule: &FieldRule, column: &ColumnProfile) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> =
        column.values.iter().filter(|(v, _)| !rule.values.iter().any(|a| a.eq_ignore_ascii_case(v))).cloned().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// The allowed value a value plainly stands for once case, spaces and punctuation are set
/// aside (`Wait list` → `waitlist`, `day-program` → `day_program`), to preselect.
pub fn plain_match<'a>(rule: &'a FieldRule, value: &str) -> Option<&'a str> {
    let n = super::mapping::normalize(value);
    rule.values.iter().find(|a| super::mapping::normalize(a) == n).map(String::as_str)
}

fn quoted(v: &str) -> String {
    format!("\"{v}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(p: &str) -> CellFormat {
        CellFormat::Date(DateFormat::parse(p).unwrap_or_else(|| panic!("{p}")))
    }

    #[test]
    fn each_date_format_is_recognized() {
        let cases = [
            (vec!["2012/01/01", "2012/01/31", "2012/12/05"], "YYYY/MM/DD"),
            (vec!["31/01/2012", "05/02/2012"], "DD/MM/YYYY"),
            (vec!["01/31/2012", "02/05/2012"], "MM/DD/YYYY"),
            (vec!["31.01.2012", "1.2.2012"], "DD.MM.YYYY"),
            (vec!["31-01-2012"], "DD-MM-YYYY"),
            (vec!["31/01/12", "05/02/12"], "DD/MM/YY"),
            (vec!["12/31/99"], "MM/DD/YY"),
        ];
        for (values, pattern) in cases {
            match detect_date(&values, false, false) {
                Guess::Format { format, matched, read, .. } => {
                    assert_eq!(format, date(pattern), "{values:?}");
                    assert_eq!(matched, read);
                }
                other => panic!("{values:?}: {other:?}"),
            }
        }
        assert_eq!(detect_date(&["2012-01-31", "2013-02-01"], false, false), Guess::Canonical);
        assert_eq!(detect_date(&[], false, false), Guess::Canonical);
    }

    #[test]
    fn the_proposal_reads_as_the_issue_words_it() {
        let g = detect_date(&["2012/01/31", "2012/02/01"], false, false);
        assert_eq!(g.text(FieldKind::Date), "Dates in this column look like 2012/01/31 (YYYY/MM/DD).");
        assert_eq!(g.proposed(), Some(date("YYYY/MM/DD")));
    }

    #[test]
    fn day_and_month_order_is_asked_when_both_read() {
        let g = detect_date(&["03/04/2024", "01/02/2024"], false, false);
        assert_eq!(
            g,
            Guess::Ambiguous { formats: vec![date("DD/MM/YYYY"), date("MM/DD/YYYY")], example: "03/04/2024".into() }
        );
        assert_eq!(g.proposed(), None);
        assert!(g.text(FieldKind::Date).contains("could be DD/MM/YYYY or MM/DD/YYYY: choose which"));
        // one day past the 12th settles it
        assert_eq!(detect_date(&["03/04/2024", "25/04/2024"], false, false).proposed(), Some(date("DD/MM/YYYY")));
        assert_eq!(detect_date(&["03/04/2024", "04/25/2024"], false, false).proposed(), Some(date("MM/DD/YYYY")));
    }

    #[test]
    fn mixed_columns_propose_the_most_read_format_and_count_the_rest() {
        let g = detect_date(&["2012/01/31", "2012/02/01", "31 Jan 2012", "2012-02-03"], false, false);
        match &g {
            Guess::Format { format, matched: 2, read: 4, .. } => assert_eq!(*format, date("YYYY/MM/DD")),
            other => panic!("{other:?}"),
        }
        assert!(
            g.text(FieldKind::Date).contains("2 of the 4 different values read do not"),
            "{}",
            g.text(FieldKind::Date)
        );
        assert!(matches!(detect_date(&["soon", "later"], false, false), Guess::Unknown { .. }));
    }

    #[test]
    fn excel_serials_only_in_spreadsheets_and_datetimes() {
        assert!(matches!(detect_date(&["40909", "40910"], false, false), Guess::Unknown { .. }));
        assert_eq!(detect_date(&["40909", "40910"], false, true).proposed(), Some(date("excel_serial")));
        let g = detect_date(&["31/01/2012 14:30", "01/02/2012 09:05:00"], true, false);
        assert_eq!(g.proposed(), Some(date("DD/MM/YYYY")));
        assert_eq!(detect_date(&["2012-01-31 14:30"], true, false), Guess::Canonical);
    }

    #[test]
    fn decimal_commas_and_thousands() {
        let comma = CellFormat::Decimal(DecimalStyle::Comma);
        let point = CellFormat::Decimal(DecimalStyle::Point);
        assert_eq!(detect_decimal(&["1.234,5", "12,75", "3"]).proposed(), Some(comma));
        assert_eq!(detect_decimal(&["0,5"]).proposed(), Some(comma));
        assert_eq!(detect_decimal(&["1,234.5", "3.25"]).proposed(), Some(point));
        assert_eq!(detect_decimal(&["1,234,567"]).proposed(), Some(point));
        assert_eq!(detect_decimal(&["19.99", "3"]), Guess::Canonical, "plain numbers need nothing");
        let g = detect_decimal(&["1,234", "5"]);
        assert!(matches!(&g, Guess::Ambiguous { formats, .. } if formats == &vec![point, comma]), "{g:?}");
        assert!(detect_decimal(&["1,234", "2,5"]).proposed() == Some(comma), "2,5 settles it");
        let text = detect_decimal(&["1.234,5"]).text(FieldKind::Decimal);
        assert_eq!(text, "Numbers in this column use a decimal comma, like 1.234,5.");
    }

    #[test]
    fn a_profile_counts_distinct_values_up_to_its_cap() {
        let mut c = ColumnProfile::default();
        for v in ["a", " a ", "", "b"] {
            c.add(v);
        }
        assert_eq!(c.values, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
        for i in 0..PROFILE_VALUES {
            c.add(&i.to_string());
        }
        assert!(c.capped);
        assert_eq!(c.values.len(), PROFILE_VALUES);
    }
}
