//! Where an export's rows are written: one plain file, the entries of a zip, or the sheets
//! of an XLSX workbook (constant-memory mode, a new sheet past Excel's row limit); CSV and
//! JSON Lines serialization of a page of rows, formula-like cells neutralized (a leading
//! apostrophe in CSV, Excel's quote prefix in XLSX).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::domain::exports::{Format, cell_text, neutralize};

/// Excel's rows per sheet, the header included.
const XLSX_ROWS: u32 = 1_048_576;

/// A workbook being written, one sheet at a time.
pub(super) struct Workbook {
    book: rust_xlsxwriter::Workbook,
    path: PathBuf,
    header: rust_xlsxwriter::Format,
    /// Text a spreadsheet would run as a formula: shown as written, never run (Excel's
    /// quote prefix, what typing an apostrophe first does, without changing the text).
    as_text: rust_xlsxwriter::Format,
    /// The current part's sheet name, columns, sheet number and next row.
    name: String,
    columns: Vec<String>,
    sheets: u32,
    row: u32,
}

impl Workbook {
    /// Starts a sheet for the current part (a second one is "Name (2)", and so on).
    fn new_sheet(&mut self) -> Result<(), rust_xlsxwriter::XlsxError> {
        self.sheets += 1;
        let name = if self.sheets == 1 { self.name.clone() } else { format!("{} ({})", self.name, self.sheets) };
        let sheet = self.book.add_worksheet_with_constant_memory()?;
        sheet.set_name(name)?;
        for (i, c) in self.columns.iter().enumerate() {
            sheet.write_string_with_format(0, i as u16, c, &self.header)?;
            sheet.set_column_width(i as u16, (c.len() as f64 + 4.0).clamp(12.0, 50.0))?;
        }
        sheet.set_freeze_panes(1, 0)?;
        self.row = 1;
        Ok(())
    }

    fn rows(&mut self, rows: &[Vec<serde_json::Value>]) -> Result<(), rust_xlsxwriter::XlsxError> {
        for row in rows {
            if self.row >= XLSX_ROWS {
                self.new_sheet()?;
            }
            let index = self.book.worksheets().len() - 1;
            let sheet = self.book.worksheet_from_index(index)?;
            for (i, v) in row.iter().enumerate() {
                let col = i as u16;
                match v {
                    serde_json::Value::Null => {}
                    serde_json::Value::Number(n) => {
                        sheet.write_number(self.row, col, n.as_f64().unwrap_or_default())?;
                    }
                    serde_json::Value::Bool(b) => {
                        sheet.write_boolean(self.row, col, *b)?;
                    }
                    other => {
                        let text = cell_text(other);
                        if matches!(neutralize(&text), std::borrow::Cow::Owned(_)) {
                            sheet.write_string_with_format(self.row, col, &text, &self.as_text)?;
                        } else {
                            sheet.write_string(self.row, col, &text)?;
                        }
                    }
                }
            }
            self.row += 1;
        }
        Ok(())
    }
}

/// Where the parts of an export go: one plain file, entries of a zip, or sheets of a
/// workbook.
pub(super) enum Sink {
    Plain(BufWriter<std::fs::File>),
    Zip(Box<zip::ZipWriter<BufWriter<std::fs::File>>>),
    Xlsx(Box<Workbook>),
}

impl Sink {
    pub(super) fn open(path: &Path, format: Format, zipped: bool) -> std::io::Result<Sink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if format == Format::Xlsx {
            let mut book = rust_xlsxwriter::Workbook::new();
            if let Some(dir) = path.parent() {
                // each constant-memory sheet spools to a temporary file beside the export
                book.set_tempdir(dir).map_err(std::io::Error::other)?;
            }
            let header = rust_xlsxwriter::Format::new().set_bold().set_background_color("#E8EFFD");
            let book = Workbook {
                book,
                path: path.to_path_buf(),
                header,
                as_text: rust_xlsxwriter::Format::new().set_quote_prefix(),
                name: String::new(),
                columns: vec![],
                sheets: 0,
                row: 0,
            };
            return Ok(Sink::Xlsx(Box::new(book)));
        }
        let file = BufWriter::with_capacity(256 * 1024, std::fs::File::create(path)?);
        Ok(if zipped { Sink::Zip(Box::new(zip::ZipWriter::new(file))) } else { Sink::Plain(file) })
    }

    /// A new part: an entry of the zip, or the sheet name of the workbook.
    pub(super) fn start_part(&mut self, entry: &str, sheet: &str) -> std::io::Result<()> {
        match self {
            Sink::Zip(z) => {
                let options =
                    zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
                z.start_file(entry, options).map_err(std::io::Error::other)?;
            }
            Sink::Xlsx(w) => {
                // Excel's limits: 31 characters (room left for " (2)"), none of []:*?/\
                let clean: String = sheet.chars().filter(|c| !"[]:*?/\\".contains(*c)).take(25).collect();
                w.name = if clean.is_empty() { "Export".into() } else { clean };
                w.sheets = 0;
            }
            Sink::Plain(_) => {}
        }
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Zip(z) => z.write_all(bytes),
            Sink::Xlsx(_) => Ok(()),
        }
    }

    pub(super) fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Zip(z) => z.finish().map_err(std::io::Error::other)?.flush(),
            Sink::Xlsx(mut w) => {
                let path = w.path.clone();
                w.book.save(&path).map_err(std::io::Error::other)
            }
        }
    }
}

/// One part's rows, serialized.
pub(super) struct Part<'a> {
    pub(super) format: Format,
    pub(super) sink: &'a mut Sink,
    pub(super) columns: Vec<String>,
}

impl Part<'_> {
    pub(super) fn header(&mut self, columns: &[String]) -> Result<(), String> {
        self.columns = columns.to_vec();
        if let Sink::Xlsx(w) = self.sink {
            w.columns = columns.to_vec();
            return w.new_sheet().map_err(xlsx);
        }
        if self.format == Format::Csv {
            let mut w = csv::Writer::from_writer(vec![]);
            w.write_record(columns).map_err(|e| e.to_string())?;
            let bytes = w.into_inner().map_err(|e| e.to_string())?;
            self.sink.write_all(&bytes).map_err(storage)?;
        }
        Ok(())
    }

    /// Rows as (column, value) pairs in column order.
    pub(super) fn rows(&mut self, rows: &[Vec<serde_json::Value>]) -> Result<(), String> {
        if let Sink::Xlsx(w) = self.sink {
            return w.rows(rows).map_err(xlsx);
        }
        let bytes = match self.format {
            Format::Xlsx => vec![],
            Format::Csv => {
                let mut w = csv::Writer::from_writer(vec![]);
                for row in rows {
                    for v in row {
                        let written = match v {
                            // most cells: no copy unless neutralized
                            serde_json::Value::String(t) => w.write_field(neutralize(t).as_bytes()),
                            other => w.write_field(neutralize(&cell_text(other)).as_bytes()),
                        };
                        written.map_err(|e| e.to_string())?;
                    }
                    w.write_record(None::<&[u8]>).map_err(|e| e.to_string())?;
                }
                w.into_inner().map_err(|e| e.to_string())?
            }
            Format::Json => {
                let mut out = vec![];
                for row in rows {
                    let obj: serde_json::Map<String, serde_json::Value> =
                        self.columns.iter().cloned().zip(row.iter().cloned()).collect();
                    serde_json::to_writer(&mut out, &obj).map_err(|e| e.to_string())?;
                    out.push(b'\n');
                }
                out
            }
        };
        self.sink.write_all(&bytes).map_err(storage)
    }
}

/// Writes a page of stored records (id, key, data) as rows of `columns`; the rows written.
pub(super) fn write_records(
    sink: &mut Sink,
    format: Format,
    columns: &[String],
    page: &[(i64, String, String)],
) -> Result<i64, String> {
    let rows: Vec<Vec<serde_json::Value>> = page
        .iter()
        .map(|(_, _, data)| {
            // field names borrow from the stored text: they are identifiers, which never need
            // unescaping (anything else takes the slow path)
            match serde_json::from_str::<std::collections::HashMap<&str, serde_json::Value>>(data) {
                Ok(mut m) => columns.iter().map(|c| m.remove(c.as_str()).unwrap_or_default()).collect(),
                Err(_) => {
                    let mut m: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(data).unwrap_or_default();
                    columns.iter().map(|c| m.remove(c).unwrap_or_default()).collect()
                }
            }
        })
        .collect();
    Part { format, sink, columns: columns.to_vec() }.rows(&rows)?;
    Ok(rows.len() as i64)
}

pub(super) fn xlsx(e: rust_xlsxwriter::XlsxError) -> String {
    tracing::warn!(error = %e, "writing an XLSX export failed");
    "the workbook could not be written (see the server log)".into()
}

pub(super) fn storage(e: std::io::Error) -> String {
    tracing::warn!(error = %e, "writing an export file failed");
    "the file could not be written (a storage error; see the server log)".into()
}
