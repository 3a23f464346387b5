//! What an import's file may hold, and the checks that keep reading it bounded whatever it
//! holds. A workbook is measured before anything inflates it into memory: every part is
//! inflated once into nothing, counting, so a part that lies about its size is caught too;
//! the parts together, the shared strings (which the XLSX reader keeps whole in memory) and
//! each part's ratio to its compressed size have limits, and so do the declared dimensions
//! of its sheets. While a file is read no cell, record or file grows past its limit: a CSV
//! record is cut off by [`RecordGuard`] before the parser holds more than a row can be.

use std::io::{BufReader, Read};
use std::path::Path;

use super::FileProblem;

/// What a file may hold before it is refused (each a setting; see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Columns of the header row (`STEVEDORE_MAX_COLUMNS`).
    pub max_columns: usize,
    /// Data rows (`STEVEDORE_MAX_ROWS`).
    pub max_rows: u64,
    /// Bytes of text in one cell (`STEVEDORE_MAX_CELL_KIB`), 32 KiB as in Excel.
    pub max_cell_bytes: usize,
    /// What a workbook's parts may inflate to together (`STEVEDORE_MAX_XLSX_INFLATED_MIB`).
    pub max_inflated_bytes: u64,
    /// What a workbook's shared strings may inflate to (`STEVEDORE_MAX_XLSX_SHARED_STRINGS_MIB`).
    pub max_shared_strings_bytes: u64,
}

const MIB: u64 = 1024 * 1024;

impl Limits {
    pub const DEFAULT_MAX_COLUMNS: usize = 1024;
    pub const DEFAULT_MAX_ROWS: u64 = 2_000_000;
    pub const DEFAULT_MAX_CELL_KIB: usize = 32;
    pub const DEFAULT_MAX_INFLATED_MIB: u64 = 2048;
    pub const DEFAULT_MAX_SHARED_STRINGS_MIB: u64 = 64;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_columns: Limits::DEFAULT_MAX_COLUMNS,
            max_rows: Limits::DEFAULT_MAX_ROWS,
            max_cell_bytes: Limits::DEFAULT_MAX_CELL_KIB * 1024,
            max_inflated_bytes: Limits::DEFAULT_MAX_INFLATED_MIB * MIB,
            max_shared_strings_bytes: Limits::DEFAULT_MAX_SHARED_STRINGS_MIB * MIB,
        }
    }
}

/// Parts a workbook may have (a real one has a few dozen).
const MAX_PARTS: usize = 10_000;
/// How many times its compressed size a part over a megabyte may inflate to: text that
/// repeats compresses 10 to 50 times, a zip bomb thousands.
const MAX_RATIO: u64 = 200;
/// Excel's widest and longest sheet.
const SHEET_COLUMNS: u64 = 16_384;
const SHEET_ROWS: u64 = 1_048_576;

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes.div_ceil(MIB))
}

fn refuse(why: String) -> FileProblem {
    FileProblem::Xlsx(why)
}

/// Measures a workbook before it is opened: its parts, what they inflate to, and the
/// dimensions its sheets declare.
pub fn check_workbook(path: &Path, limits: &Limits) -> Result<(), FileProblem> {
    let file = std::fs::File::open(path).map_err(|e| FileProblem::Io(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| refuse(e.to_string()))?;
    if zip.len() > MAX_PARTS {
        return Err(refuse(format!("it has {} parts, more than the {MAX_PARTS} a workbook may have", zip.len())));
    }
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut part = zip.by_index(i).map_err(|e| refuse(e.to_string()))?;
        let name = part.name().map_err(|e| refuse(e.to_string()))?.to_string();
        let compressed = part.compressed_size();
        let shared = name.eq_ignore_ascii_case("xl/sharedStrings.xml");
        let left = limits.max_inflated_bytes.saturating_sub(total);
        // the shared strings' own limit, when it is the nearer one
        let shared_cap = shared && limits.max_shared_strings_bytes < left;
        let cap = if shared_cap { limits.max_shared_strings_bytes } else { left };
        // the start of a sheet, for its declared dimension; the rest is counted, not kept
        let mut start = vec![];
        let sheet = name.starts_with("xl/worksheets/") && name.ends_with(".xml");
        if sheet {
            (&mut part).take(16 * 1024).read_to_end(&mut start).map_err(|e| refuse(e.to_string()))?;
        }
        let mut rest = (&mut part).take(cap.saturating_sub(start.len() as u64) + 1);
        let inflated = start.len() as u64
            + if sheet || shared {
                // the reader holds a cell's text whole: none may be longer than a cell can be
                // (escaped as XML, a character takes at most six bytes)
                let mut texts = LongestText::new(limits.max_cell_bytes * 6);
                texts.feed(&start).map_err(|_| cell_too_long(limits))?;
                count_through(&mut rest, |chunk| texts.feed(chunk).map_err(|_| cell_too_long(limits)))?
            } else {
                count_through(&mut rest, |_| Ok(()))?
            };
        if inflated > cap {
            return Err(if shared_cap {
                FileProblem::TooLarge(format!(
                    "The workbook's shared text inflates to more than {}, which is read whole into memory (STEVEDORE_MAX_XLSX_SHARED_STRINGS_MIB). Save the sheet as CSV and upload that instead.",
                    mib(limits.max_shared_strings_bytes)
                ))
            } else {
                FileProblem::TooLarge(format!(
                    "The workbook inflates to more than {} (STEVEDORE_MAX_XLSX_INFLATED_MIB). Save the sheet as CSV and upload that instead.",
                    mib(limits.max_inflated_bytes)
                ))
            });
        }
        if inflated > MIB && inflated > compressed.max(1) * MAX_RATIO {
            return Err(refuse(format!(
                "its part {name} inflates from {} to {} ({} times), which only a zip bomb does",
                compressed,
                mib(inflated),
                inflated / compressed.max(1)
            )));
        }
        if sheet && let Some((rows, columns)) = declared_dimension(&start) {
            if rows > SHEET_ROWS.min(limits.max_rows + 1) {
                return Err(FileProblem::TooManyRows { max: limits.max_rows });
            }
            if columns > SHEET_COLUMNS {
                return Err(refuse(format!("a sheet declares {columns} columns, more than a spreadsheet can have")));
            }
        }
        total += inflated;
    }
    Ok(())
}

/// Reads `r` to its end in pieces handed to `look`; the bytes read.
fn count_through(
    r: &mut impl Read,
    mut look: impl FnMut(&[u8]) -> Result<(), FileProblem>,
) -> Result<u64, FileProblem> {
    let (mut buf, mut n) = (vec![0u8; 64 * 1024], 0u64);
    loop {
        let got = r.read(&mut buf).map_err(|e| refuse(e.to_string()))?;
        if got == 0 {
            return Ok(n);
        }
        look(&buf[..got])?;
        n += got as u64;
    }
}

fn cell_too_long(limits: &Limits) -> FileProblem {
    FileProblem::TooLarge(format!(
        "The workbook has a cell holding more than {} KiB of text (STEVEDORE_MAX_CELL_KIB).",
        limits.max_cell_bytes / 1024
    ))
}

/// The longest run of text between XML tags seen so far, refused once past `max`.
struct LongestText {
    max: usize,
    run: usize,
    in_tag: bool,
}

impl LongestText {
    fn new(max: usize) -> LongestText {
        LongestText { max, run: 0, in_tag: false }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), ()> {
        for b in bytes {
            match b {
                b'<' => (self.in_tag, self.run) = (true, 0),
                b'>' => (self.in_tag, self.run) = (false, 0),
                _ if !self.in_tag => {
                    self.run += 1;
                    if self.run > self.max {
                        return Err(());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The (last row, last column) of a sheet's `<dimension ref="A1:K200"/>`.
fn declared_dimension(start: &[u8]) -> Option<(u64, u64)> {
    let text = String::from_utf8_lossy(start);
    let at = text.find("<dimension ")?;
    let rest = &text[at..];
    let r = rest.find("ref=\"")? + 5;
    let reference = rest[r..].split('"').next()?;
    let last = reference.rsplit(':').next()?;
    let letters: String = last.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let row: u64 = last[letters.len()..].parse().ok()?;
    let column = letters.to_ascii_uppercase().bytes().fold(0u64, |n, b| n * 26 + u64::from(b - b'A' + 1));
    Some((row, column))
}

/// The message a [`RecordGuard`] stops reading with.
#[derive(Debug)]
pub struct RecordTooLarge(pub usize);

impl std::fmt::Display for RecordTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a record runs past {} without ending", mib(self.0 as u64))
    }
}

impl std::error::Error for RecordTooLarge {}

/// Reads a CSV for the parser, failing once one record (from one newline outside quotes
/// to the next) passes `max` bytes: the parser keeps a whole record in memory, and a row of
/// full cells is the most a record can honestly be.
pub struct RecordGuard<R> {
    inner: R,
    max: usize,
    since: usize,
    quoted: bool,
}

impl<R: Read> RecordGuard<R> {
    pub fn new(inner: R, max: usize) -> RecordGuard<R> {
        RecordGuard { inner, max, since: 0, quoted: false }
    }
}

impl<R: Read> Read for RecordGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for b in &buf[..n] {
            match b {
                // an escaped quote ("") toggles twice: still inside
                b'"' => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.since = 0,
                _ => {}
            }
            self.since += 1;
            if self.since > self.max {
                return Err(std::io::Error::other(RecordTooLarge(self.max)));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn workbook(dir: &Path, parts: &[(&str, &[u8])]) -> std::path::PathBuf {
        let path = dir.join("w.xlsx");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in parts {
            z.start_file(*name, options).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
        path
    }

    #[test]
    fn dimensions_are_read_from_the_sheet_start() {
        assert_eq!(declared_dimension(br#"<worksheet><dimension ref="A1:K200"/>"#), Some((200, 11)));
        assert_eq!(declared_dimension(br#"<dimension ref="B3"/>"#), Some((3, 2)));
        assert_eq!(declared_dimension(br#"<dimension ref="A1:XFD9000000"/>"#), Some((9_000_000, 16_384)));
        assert_eq!(declared_dimension(b"<sheetData>"), None);
    }

    #[test]
    fn bombs_are_refused_before_anything_is_read_into_memory() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { max_shared_strings_bytes: 2 * MIB, max_inflated_bytes: 8 * MIB, ..Limits::default() };
        // one 4 MiB run of one letter: thousands of times its compressed size
        let run = vec![b'a'; 4 * MIB as usize];
        let bomb = workbook(dir.path(), &[("xl/media/image1.png", &run)]);
        let e = check_workbook(&bomb, &limits).unwrap_err().to_string();
        assert!(e.contains("which only a zip bomb does"), "{e}");
        // in a sheet, the same run is one cell of text, refused as such
        let e = check_workbook(&workbook(dir.path(), &[("xl/worksheets/sheet1.xml", &run)]), &limits).unwrap_err();
        assert!(e.to_string().contains("a cell holding more than 32 KiB of text"), "{e}");
        // shared strings past their limit, whatever the ratio
        let many = "<si><t>ab</t></si>".repeat(200_000);
        let shared = workbook(dir.path(), &[("xl/sharedStrings.xml", many.as_bytes())]);
        let e = check_workbook(&shared, &limits).unwrap_err().to_string();
        assert!(e.contains("shared text inflates to more than 2 MiB"), "{e}");
        // a declared dimension past the rows allowed
        let tall = br#"<worksheet><dimension ref="A1:C9000000"/><sheetData/></worksheet>"#;
        let e = check_workbook(&workbook(dir.path(), &[("xl/worksheets/sheet1.xml", tall)]), &limits).unwrap_err();
        assert_eq!(e, FileProblem::TooManyRows { max: Limits::DEFAULT_MAX_ROWS });
        // one cell of text past what a cell may hold, however well it compresses or not
        let mut long = br#"<worksheet><sheetData><row r="1"><c t="inlineStr"><is><t>"#.to_vec();
        long.extend((0..300_000u32).map(|i| b"abcdefghijklmnopqrstuvwxyz"[(i * 7 % 26) as usize]));
        long.extend(b"</t></is></c></row></sheetData></worksheet>");
        let e = check_workbook(&workbook(dir.path(), &[("xl/worksheets/sheet1.xml", &long)]), &limits).unwrap_err();
        assert!(e.to_string().contains("a cell holding more than 32 KiB of text"), "{e}");
        let fine = br#"<worksheet><dimension ref="A1:C9"/><sheetData/></worksheet>"#;
        assert_eq!(check_workbook(&workbook(dir.path(), &[("xl/worksheets/sheet1.xml", fine)]), &limits), Ok(()));
    }

    #[test]
    fn a_record_is_cut_off_once_it_passes_what_a_row_can_hold() {
        let read = |text: &str, max| {
            let mut out = vec![];
            RecordGuard::new(text.as_bytes(), max).read_to_end(&mut out).map(|_| out.len())
        };
        assert!(read("a,b\n\"x\ny\",\"say \"\"hi\"\"\"\n", 30).is_ok(), "quoted newlines stay in a record");
        let e = read("a,b\n\"an unclosed quote\nswallows\nevery line after it\n", 30).unwrap_err();
        assert!(e.to_string().contains("a record runs past"), "{e}");
    }
}
