//! Reading CSV and XLSX files row by row.
//!
//! - CSV: UTF-8 with or without a byte-order mark; comma, semicolon or tab, detected from
//!   the header line; quoted fields may hold the delimiter, quotes and newlines. Another
//!   encoding, or a binary file, is refused with a message saying so.
//! - XLSX (via calamine): the first sheet, or the one named; cells streamed in order.
//!
//! Rows are numbered from the header, which is row 1. In XLSX that is the sheet's own row
//! number. In CSV each record is one row (however many lines its quoted fields span);
//! blank lines are skipped and not counted, so a CSV with blank lines in the middle numbers
//! its later rows lower than a spreadsheet opening it would.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use calamine::{DataRef, Reader, Xlsx, open_workbook};

use super::limits::{Limits, RecordGuard, RecordTooLarge, check_workbook};

/// What the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Csv { delimiter: u8 },
    Xlsx { sheet: String },
}

impl Format {
    pub fn describe(&self) -> String {
        match self {
            Format::Csv { delimiter: b';' } => "CSV (semicolon-separated)".into(),
            Format::Csv { delimiter: b'\t' } => "CSV (tab-separated)".into(),
            Format::Csv { .. } => "CSV (comma-separated)".into(),
            Format::Xlsx { sheet } => format!("XLSX, sheet \"{sheet}\""),
        }
    }
}

/// A recognized file and its header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub format: Format,
    pub headers: Vec<String>,
    /// The workbook's sheets (XLSX only), for choosing another one.
    pub sheets: Vec<String>,
    /// What reading it may meet before it is refused.
    pub limits: Limits,
}

/// Why a file cannot be read, in words for the person who uploaded it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    #[error("The file is empty.")]
    Empty,
    #[error(
        "The file looks like a binary file, not CSV or XLSX text (it contains NUL bytes; UTF-16 text looks like this too). Save it as \"CSV UTF-8\" or XLSX and upload it again."
    )]
    Binary,
    #[error(
        "The file is not UTF-8 text: line {line} has characters in another encoding (such as Windows-1252). Save it as \"CSV UTF-8\" and upload it again."
    )]
    NotUtf8 { line: u64 },
    #[error("The file has no header row.")]
    NoHeader,
    #[error("Column {column} has no header; every column needs a name.")]
    BlankHeader { column: usize },
    #[error("The header \"{name}\" appears twice (columns {first} and {second}); column names must be unique.")]
    DuplicateHeader { name: String, first: usize, second: usize },
    #[error("The workbook has no sheet named \"{0}\".")]
    SheetNotFound(String),
    #[error("The workbook has no sheets.")]
    NoSheets,
    #[error("The XLSX file cannot be read: {0}")]
    Xlsx(String),
    #[error("Row {row} cannot be read: {why}")]
    BadRow { row: u64, why: String },
    #[error(
        "The file has {columns} columns; at most {max} are read (STEVEDORE_MAX_COLUMNS). Remove the columns you do not import, then upload it again."
    )]
    TooManyColumns { columns: usize, max: usize },
    #[error(
        "The file has more than {max} rows (STEVEDORE_MAX_ROWS). Split it into smaller files and import them one after another."
    )]
    TooManyRows { max: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("The file cannot be read: {0}")]
    Io(String),
}

const SNIFF_BYTES: usize = 64 * 1024;

/// Columns an XLSX sheet can have (A to XFD); a cell claiming more is a malformed file.
const MAX_XLSX_COLUMNS: usize = 16_384;

/// Receives each row as (row number, cells); returns false to stop reading.
pub type RowVisitor<'a> = dyn FnMut(u64, &[String]) -> Result<bool, FileProblem> + 'a;

fn io(e: std::io::Error) -> FileProblem {
    FileProblem::Io(e.to_string())
}

fn head(path: &Path) -> Result<Vec<u8>, FileProblem> {
    let mut buf = Vec::with_capacity(SNIFF_BYTES);
    File::open(path).map_err(io)?.take(SNIFF_BYTES as u64).read_to_end(&mut buf).map_err(io)?;
    Ok(buf)
}

/// Checks the start of a text file: no NUL bytes, valid UTF-8 (a character cut at the
/// end of the sample is fine).
fn check_text(sample: &[u8]) -> Result<(), FileProblem> {
    if sample.contains(&0) {
        return Err(FileProblem::Binary);
    }
    let body = sample.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(sample);
    if let Err(e) = std::str::from_utf8(body)
        && e.error_len().is_some()
    {
        let at = e.valid_up_to();
        let line = body[..at].iter().filter(|b| **b == b'\n').count() as u64 + 1;
        return Err(FileProblem::NotUtf8 { line });
    }
    Ok(())
}

/// The delimiter among `,` `;` and tab that the header line uses most (outside quotes).
pub fn detect_delimiter(sample: &[u8]) -> u8 {
    let body = sample.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(sample);
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in body {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], usize::from(i == 0))).unwrap_or(0);
    if counts[best] == 0 { b',' } else { [b',', b';', b'\t'][best] }
}

/// The header row checked: trailing empty columns dropped, then no more than the limit
/// allows, none blank, none twice (case-insensitively); one pass, whatever the width.
fn check_headers(raw: Vec<String>, limits: &Limits) -> Result<Vec<String>, FileProblem> {
    // trailing empty columns (a spreadsheet's stray delimiter) are dropped
    let last = raw.iter().rposition(|h| !h.trim().is_empty()).ok_or(FileProblem::NoHeader)?;
    if last + 1 > limits.max_columns {
        return Err(FileProblem::TooManyColumns { columns: last + 1, max: limits.max_columns });
    }
    let headers: Vec<String> = raw[..=last].iter().map(|h| h.trim().to_string()).collect();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::with_capacity(headers.len());
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            return Err(FileProblem::BlankHeader { column: i + 1 });
        }
        if let Some(j) = seen.insert(h.to_lowercase(), i) {
            return Err(FileProblem::DuplicateHeader { name: h.clone(), first: j + 1, second: i + 1 });
        }
    }
    Ok(headers)
}

fn is_zip(sample: &[u8]) -> bool {
    sample.starts_with(b"PK\x03\x04")
}

/// Recognizes the file and reads its header row. `sheet` picks an XLSX sheet (default: the first).
pub fn sniff(path: &Path, sheet: Option<&str>, limits: &Limits) -> Result<FileInfo, FileProblem> {
    let sample = head(path)?;
    if sample.is_empty() {
        return Err(FileProblem::Empty);
    }
    if is_zip(&sample) {
        return sniff_xlsx(path, sheet, limits);
    }
    check_text(&sample)?;
    let delimiter = detect_delimiter(&sample);
    // the header row is one record too: a full cell per column allowed, no more
    let mut rdr = csv_reader(path, delimiter, record_max(limits.max_columns, limits))?;
    let mut rec = csv::StringRecord::new();
    let got = rdr.read_record(&mut rec).map_err(|e| csv_problem(e, 1))?;
    if !got {
        return Err(FileProblem::NoHeader);
    }
    let headers = check_headers(rec.iter().map(str::to_string).collect(), limits)?;
    Ok(FileInfo { format: Format::Csv { delimiter }, headers, sheets: vec![], limits: *limits })
}

/// The most bytes one record of `columns` full cells (and a few beyond) can honestly take.
fn record_max(columns: usize, limits: &Limits) -> usize {
    (columns + 16) * limits.max_cell_bytes + 64 * 1024
}

/// A CSV reader whose records are cut off past `record_max` bytes (see [`RecordGuard`]).
fn csv_reader(path: &Path, delimiter: u8, record_max: usize) -> Result<csv::Reader<impl Read>, FileProblem> {
    let file = File::open(path).map_err(io)?;
    Ok(csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(RecordGuard::new(BufReader::with_capacity(256 * 1024, file), record_max)))
}

/// A cell past the limit, named by row and column.
fn cell_too_large(row: u64, column: usize, bytes: usize, limits: &Limits) -> FileProblem {
    FileProblem::BadRow {
        row,
        why: format!(
            "column {column} holds {} KiB of text; a cell may hold at most {} KiB (STEVEDORE_MAX_CELL_KIB)",
            bytes.div_ceil(1024),
            limits.max_cell_bytes / 1024
        ),
    }
}

fn csv_problem(e: csv::Error, row: u64) -> FileProblem {
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => {
            FileProblem::NotUtf8 { line: pos.as_ref().map(|p| p.line()).unwrap_or(row) }
        }
        csv::ErrorKind::Io(err) => match err.get_ref().and_then(|e| e.downcast_ref::<RecordTooLarge>()) {
            Some(too_large) => FileProblem::BadRow {
                row,
                why: format!(
                    "{too_large}: more than a whole row of full cells can hold. Check for a quote (\") that is not closed."
                ),
            },
            None => FileProblem::Io(err.to_string()),
        },
        _ => FileProblem::BadRow { row, why: e.to_string() },
    }
}

fn open_xlsx(path: &Path) -> Result<Xlsx<BufReader<File>>, FileProblem> {
    open_workbook(path).map_err(|e: calamine::XlsxError| FileProblem::Xlsx(e.to_string()))
}

fn pick_sheet(sheets: &[String], wanted: Option<&str>) -> Result<String, FileProblem> {
    match wanted {
        Some(w) => sheets.iter().find(|s| s.as_str() == w).cloned().ok_or_else(|| FileProblem::SheetNotFound(w.into())),
        None => sheets.first().cloned().ok_or(FileProblem::NoSheets),
    }
}

/// Runs `f`, which reads a workbook through the XLSX library, turning a panic inside it (a
/// damaged workbook the library did not expect) into a refusal rather than a lost thread.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, FileProblem>) -> Result<T, FileProblem> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(FileProblem::Xlsx("the workbook is damaged and cannot be read".into())))
}

fn sniff_xlsx(path: &Path, sheet: Option<&str>, limits: &Limits) -> Result<FileInfo, FileProblem> {
    // measured before anything is inflated into memory
    check_workbook(path, limits)?;
    guarded(|| sniff_checked_xlsx(path, sheet, limits))
}

fn sniff_checked_xlsx(path: &Path, sheet: Option<&str>, limits: &Limits) -> Result<FileInfo, FileProblem> {
    let mut wb = open_xlsx(path)?;
    let sheets = wb.sheet_names().to_vec();
    let sheet = pick_sheet(&sheets, sheet)?;
    let mut first: Option<Vec<String>> = None;
    visit_xlsx(&mut wb, &sheet, limits, &mut |_, cells| {
        first = Some(cells.to_vec());
        Ok(false)
    })?;
    let headers = check_headers(first.ok_or(FileProblem::NoHeader)?, limits)?;
    Ok(FileInfo { format: Format::Xlsx { sheet }, headers, sheets, limits: *limits })
}

/// Text of a spreadsheet cell as a CSV would hold it: whole numbers without `.0`, dates
/// as `YYYY-MM-DD`, date-times as `YYYY-MM-DDTHH:MM:SS`, booleans as `true`/`false`.
pub fn cell_text(v: &DataRef<'_>) -> String {
    match v {
        DataRef::Empty => String::new(),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_string(),
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        DataRef::Float(f) => f.to_string(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(dt) => {
            let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
            if dt.is_datetime() && (h, mi, s) == (0, 0, 0) && dt.as_f64().fract() == 0.0 {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
            }
        }
        DataRef::Error(e) => format!("#{e:?}"),
    }
}

/// Streams the sheet's rows (row number, cells) to `f` until it returns false.
fn visit_xlsx(
    wb: &mut Xlsx<BufReader<File>>,
    sheet: &str,
    limits: &Limits,
    f: &mut RowVisitor<'_>,
) -> Result<(), FileProblem> {
    let mut cells = wb.worksheet_cells_reader(sheet).map_err(|e| FileProblem::Xlsx(e.to_string()))?;
    let mut row: Vec<String> = vec![];
    let mut current: Option<u32> = None;
    while let Some(cell) = cells.next_cell().map_err(|e| FileProblem::Xlsx(e.to_string()))? {
        let (r, c) = cell.get_position();
        let text = cell_text(cell.get_value());
        if text.is_empty() {
            continue;
        }
        if u64::from(r) > limits.max_rows {
            return Err(FileProblem::TooManyRows { max: limits.max_rows });
        }
        if text.len() > limits.max_cell_bytes {
            return Err(cell_too_large(u64::from(r) + 1, c as usize + 1, text.len(), limits));
        }
        if current != Some(r) {
            if let Some(prev) = current
                && !f(u64::from(prev) + 1, &row)?
            {
                return Ok(());
            }
            row.clear();
            current = Some(r);
        }
        let c = c as usize;
        if c >= MAX_XLSX_COLUMNS {
            return Err(FileProblem::Xlsx(format!(
                "row {} has a cell beyond column XFD, the last column a spreadsheet can have",
                u64::from(r) + 1
            )));
        }
        if row.len() <= c {
            row.resize(c + 1, String::new());
        }
        row[c] = text;
    }
    if let Some(prev) = current {
        f(u64::from(prev) + 1, &row)?;
    }
    Ok(())
}

/// Whether the file from `byte` (where the last record starts) to its end leaves a quote
/// open: an odd number of `"` (quoted fields open and close theirs, and escape one as `""`).
fn quote_left_open(path: &Path, byte: u64) -> Result<bool, FileProblem> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(byte)).map_err(io)?;
    let (mut buf, mut quotes) = (vec![0u8; 64 * 1024], 0u64);
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(quotes % 2 == 1);
        }
        quotes += buf[..n].iter().filter(|b| **b == b'"').count() as u64;
    }
}

/// Streams every data row (after the header) to `f` as (row number, cells), in order,
/// holding one row at a time. `f` returns false to stop early.
pub fn visit_rows(path: &Path, info: &FileInfo, f: &mut RowVisitor<'_>) -> Result<(), FileProblem> {
    match &info.format {
        Format::Csv { delimiter } => {
            let limits = &info.limits;
            // a record holds at most a full cell per column (and a few beyond the header)
            let mut rdr = csv_reader(path, *delimiter, record_max(info.headers.len(), limits))?;
            let mut rec = csv::StringRecord::new();
            // One record is one row however many lines its quoted fields span; the
            // header is row 1. Blank lines are skipped by the parser and not counted.
            let mut row: u64 = 0;
            let mut cells: Vec<String> = vec![];
            // the last record that spans lines (only a quoted field can): where it starts
            let mut spanning: Option<(u64, csv::Position)> = None;
            loop {
                match rdr.read_record(&mut rec) {
                    Ok(false) => {
                        return match spanning {
                            Some((row, at)) if quote_left_open(path, at.byte())? => Err(FileProblem::BadRow {
                                row,
                                why: format!(
                                    "a quoted field is not closed: from line {} it runs to the end of the file. Close the quote (\") or remove it, then upload the file again.",
                                    at.line()
                                ),
                            }),
                            _ => Ok(()),
                        };
                    }
                    Ok(true) => {
                        row += 1;
                        if row > limits.max_rows + 1 {
                            return Err(FileProblem::TooManyRows { max: limits.max_rows });
                        }
                        if let Some((c, cell)) = rec.iter().enumerate().find(|(_, c)| c.len() > limits.max_cell_bytes) {
                            return Err(cell_too_large(row, c + 1, cell.len(), limits));
                        }
                        spanning = match rec.position() {
                            Some(at) if rec.iter().any(|c| c.contains(['\n', '\r'])) => Some((row, at.clone())),
                            _ => None,
                        };
                        if row == 1 {
                            continue;
                        }
                        // the cells' buffers are kept from row to row: no allocation per cell
                        cells.truncate(rec.len());
                        for (i, c) in rec.iter().enumerate() {
                            match cells.get_mut(i) {
                                Some(cell) => {
                                    cell.clear();
                                    cell.push_str(c);
                                }
                                None => cells.push(c.to_string()),
                            }
                        }
                        if cells.iter().all(|c| c.trim().is_empty()) {
                            continue;
                        }
                        if !f(row, &cells)? {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(csv_problem(e, row + 1)),
                }
            }
        }
        Format::Xlsx { sheet } => guarded(|| {
            let mut wb = open_xlsx(path)?;
            let mut header_seen = false;
            visit_xlsx(&mut wb, sheet, &info.limits, &mut |n, cells| {
                if !header_seen {
                    header_seen = true;
                    return Ok(true);
                }
                f(n, cells)
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_are_detected_outside_quotes() {
        assert_eq!(detect_delimiter(b"a,b,c\n1;2;3"), b',');
        assert_eq!(detect_delimiter(b"a;b;c\n"), b';');
        assert_eq!(detect_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(detect_delimiter(b"\"x;y;z\",b\n"), b',');
        assert_eq!(detect_delimiter(b"\xEF\xBB\xBFa;b"), b';');
        assert_eq!(detect_delimiter(b"single"), b',');
    }

    fn rows_of(text: &str) -> Result<Vec<(u64, Vec<String>)>, FileProblem> {
        rows_within(text, &Limits::default())
    }

    fn rows_within(text: &str, limits: &Limits) -> Result<Vec<(u64, Vec<String>)>, FileProblem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, text).unwrap();
        let info = sniff(&path, None, limits)?;
        let mut rows = vec![];
        visit_rows(&path, &info, &mut |n, cells| {
            rows.push((n, cells.to_vec()));
            Ok(true)
        })?;
        Ok(rows)
    }

    #[test]
    fn rows_and_cells_past_their_limits_stop_the_file_naming_them() {
        let limits = Limits { max_rows: 2, max_cell_bytes: 2048, ..Limits::default() };
        assert_eq!(rows_within("a,b\n1,2\n3,4\n", &limits).map(|r| r.len()), Ok(2));
        assert_eq!(rows_within("a,b\n1,2\n3,4\n5,6\n", &limits), Err(FileProblem::TooManyRows { max: 2 }));
        let big = format!("a,b\n1,{}\n", "x".repeat(3000));
        assert_eq!(
            rows_within(&big, &limits).unwrap_err().to_string(),
            "Row 2 cannot be read: column 2 holds 3 KiB of text; a cell may hold at most 2 KiB (STEVEDORE_MAX_CELL_KIB)"
        );
        // an unclosed quote in a big file is cut off once it passes a row's worth, not read whole
        let swallowed = format!("a,b\n1,\"{}\n", "line of text\n".repeat(20_000));
        let e = rows_within(&swallowed, &limits).unwrap_err().to_string();
        assert!(e.starts_with("Row 2 cannot be read: a record runs past"), "{e}");
        assert!(e.contains("Check for a quote (\") that is not closed."), "{e}");
    }

    #[test]
    fn an_unclosed_quote_is_named_not_swallowed() {
        let err = rows_of("code,name\nA,\"Main\nB,North\nC,South\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Row 2 cannot be read: a quoted field is not closed: from line 2 it runs to the end of the file. Close the quote (\") or remove it, then upload the file again."
        );
        // with a byte order mark, and with quotes that do close across lines
        assert!(rows_of("\u{feff}code,name\nA,x\nB,\"open\nC,y\n").unwrap_err().to_string().contains("Row 3"));
        let ok = rows_of("\u{feff}code,name\n\"A\",\"two\nlines \"\"quoted\"\"\"\nB,\"x\"\n").unwrap();
        assert_eq!(ok, [(2, vec!["A".into(), "two\nlines \"quoted\"".into()]), (3, vec!["B".into(), "x".into()])]);
        let last = rows_of("code,name\nA,\"two\nlines\"\n").unwrap();
        assert_eq!(last, [(2, vec!["A".into(), "two\nlines".into()])]);
    }

    #[test]
    fn text_checks() {
        assert_eq!(check_text(b"a,b\x00"), Err(FileProblem::Binary));
        assert_eq!(check_text(b"a,b\ncaf\xE9,1\n"), Err(FileProblem::NotUtf8 { line: 2 }));
        assert_eq!(check_text("caf\u{e9}".as_bytes()), Ok(()));
        // a character cut by the end of the sample is not an error
        assert_eq!(check_text(&"é".as_bytes()[..1]), Ok(()));
    }

    #[test]
    fn header_rules() {
        let h = |v: &[&str]| check_headers(v.iter().map(|s| s.to_string()).collect(), &Limits::default());
        assert_eq!(h(&[" a ", "b", "", ""]), Ok(vec!["a".to_string(), "b".to_string()]));
        let narrow = Limits { max_columns: 2, ..Limits::default() };
        let three = vec!["a".to_string(), "b".into(), "c".into(), "".into()];
        assert_eq!(check_headers(three, &narrow), Err(FileProblem::TooManyColumns { columns: 3, max: 2 }));
        // a very wide header is one pass: 100,000 columns checked in well under a second
        let wide: Vec<String> = (0..100_000).map(|i| format!("column {i}")).collect();
        let t = std::time::Instant::now();
        assert_eq!(
            check_headers(wide, &Limits { max_columns: 200_000, ..Limits::default() }).map(|h| h.len()),
            Ok(100_000)
        );
        assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
        assert_eq!(h(&["a", "", "c"]), Err(FileProblem::BlankHeader { column: 2 }));
        assert_eq!(h(&["a", "b", "A"]), Err(FileProblem::DuplicateHeader { name: "A".into(), first: 1, second: 3 }));
        assert_eq!(h(&["", ""]), Err(FileProblem::NoHeader));
    }
}
