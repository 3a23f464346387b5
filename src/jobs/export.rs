//! `export.build`: writes an export request's file. Rows stream from the database a page
//! at a time into the file, never whole in memory; the file is written beside its final
//! name and renamed when complete, so a job taken over after a crash starts the file again
//! and nobody ever downloads half of one.
//!
//! CSV: one file per entity, headers exactly the importer template's, values as the
//! importer reads them, formula-like cells neutralized; zipped when there is more than one.
//! XLSX: one workbook in constant-memory mode, a sheet per entity with a bold, frozen
//! header row and widths from the headers, a new sheet past Excel's 1,048,576 rows.
//! JSON: JSON Lines, one document per entity, zipped when more than one.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};

use super::{JobContext, JobHandler};
use crate::domain::entities::Schemas;
use crate::domain::exports::{ExportType, Format, cell_text, neutralize};
use crate::domain::ids::OrgId;
use crate::domain::jobs::Outcome;
use crate::files::object::FileStore;
use crate::store::Db;
use crate::store::exports::{self as store, ExportRow};

pub const KIND: &str = "export.build";

/// Rows read per query.
const PAGE: i64 = 5000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub org_id: i64,
    pub export_id: i64,
}

/// Queues the build of an export request.
pub async fn enqueue(db: &Db, org: OrgId, export_id: i64) -> anyhow::Result<()> {
    let payload = serde_json::to_value(Payload { org_id: org.get(), export_id })?;
    super::enqueue(db, Some(org), KIND, &payload, None).await?;
    Ok(())
}

/// Excel's rows per sheet, the header included.
const XLSX_ROWS: u32 = 1_048_576;

/// A workbook being written, one sheet at a time.
struct Workbook {
    book: rust_xlsxwriter::Workbook,
    path: PathBuf,
    header: rust_xlsxwriter::Format,
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
                        sheet.write_string(self.row, col, neutralize(&cell_text(other)))?;
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
enum Sink {
    Plain(BufWriter<std::fs::File>),
    Zip(Box<zip::ZipWriter<BufWriter<std::fs::File>>>),
    Xlsx(Box<Workbook>),
}

impl Sink {
    fn open(path: &Path, format: Format, zipped: bool) -> std::io::Result<Sink> {
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
    fn start_part(&mut self, entry: &str, sheet: &str) -> std::io::Result<()> {
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

    fn finish(self) -> std::io::Result<()> {
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
struct Part<'a> {
    format: Format,
    sink: &'a mut Sink,
    columns: Vec<String>,
}

impl Part<'_> {
    fn header(&mut self, columns: &[String]) -> Result<(), String> {
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
    fn rows(&mut self, rows: &[Vec<serde_json::Value>]) -> Result<(), String> {
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
fn write_records(
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

fn xlsx(e: rust_xlsxwriter::XlsxError) -> String {
    tracing::warn!(error = %e, "writing an XLSX export failed");
    "the workbook could not be written (see the server log)".into()
}

fn storage(e: std::io::Error) -> String {
    tracing::warn!(error = %e, "writing an export file failed");
    "the file could not be written (a storage error; see the server log)".into()
}

pub struct ExportHandler {
    pub schemas: Arc<Schemas>,
    pub files: FileStore,
}

/// The content type an export is served with.
pub fn content_type(r: &ExportRow) -> &'static str {
    if r.file_name.ends_with(".zip") {
        "application/zip"
    } else {
        Format::parse(&r.format).map(Format::content_type).unwrap_or("application/octet-stream")
    }
}

/// Where the object of an export goes in the bucket (below its prefix).
fn object_key(r: &ExportRow) -> String {
    let ext = r.file_name.rsplit('.').next().unwrap_or("bin");
    format!("exports/{}/{}.{ext}", r.org_id, r.id)
}

impl JobHandler for ExportHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, ctx: &'a JobContext) -> LocalBoxFuture<'a, Outcome> {
        Box::pin(async move {
            let p: Payload = match ctx.payload() {
                Ok(p) => p,
                Err(e) => return Outcome::Fail(e),
            };
            let org = OrgId::new(p.org_id);
            let req = match store::get(&ctx.db, org, p.export_id).await {
                Ok(Some(r)) => r,
                Ok(None) => return Outcome::Done,
                Err(e) => return Outcome::Retry(format!("{e:#}")),
            };
            match store::start(&ctx.db, req.id).await {
                Ok(true) => {}
                Ok(false) => return Outcome::Done,
                Err(e) => return Outcome::Retry(format!("{e:#}")),
            }
            let part_path = PathBuf::from(format!("{}.part", req.file_path));
            match build(&ctx.db, &self.schemas, &req, &part_path, ctx).await {
                Ok(Some(rows)) => {
                    let size = std::fs::metadata(&part_path).map(|m| m.len() as i64).unwrap_or(0);
                    if let Err(e) = std::fs::rename(&part_path, &req.file_path) {
                        let _ = store::fail(&ctx.db, req.id, &storage(e)).await;
                        return Outcome::Done;
                    }
                    let disposition = crate::files::attachment(&req.file_name);
                    let published = self
                        .files
                        .publish(Path::new(&req.file_path), &object_key(&req), content_type(&req), &disposition)
                        .await;
                    let object = match published {
                        Ok(key) => key,
                        // the bucket may be back in a moment: the job retries, and says so
                        // on the page when it gives up
                        Err(e) => {
                            tracing::warn!(
                                error = format!("{e:#}"),
                                export_id = req.id,
                                "storing an export in the bucket failed"
                            );
                            if ctx.job.attempts >= ctx.job.max_attempts {
                                let why = "the file could not be stored in the bucket (see the server log)";
                                return match store::fail(&ctx.db, req.id, why).await {
                                    Ok(()) => Outcome::Done,
                                    Err(e) => Outcome::Retry(format!("{e:#}")),
                                };
                            }
                            return Outcome::Retry(format!("storing the file in the bucket: {e:#}"));
                        }
                    };
                    match store::complete(&ctx.db, req.id, rows, size, object.as_deref()).await {
                        Ok(_) => Outcome::Done,
                        Err(e) => Outcome::Retry(format!("{e:#}")),
                    }
                }
                Ok(None) => {
                    let _ = std::fs::remove_file(&part_path);
                    Outcome::Stopped
                }
                Err(BuildError::Retry(e)) => {
                    let _ = std::fs::remove_file(&part_path);
                    Outcome::Retry(e)
                }
                Err(BuildError::Fail(why)) => {
                    let _ = std::fs::remove_file(&part_path);
                    match store::fail(&ctx.db, req.id, &why).await {
                        Ok(()) => Outcome::Done,
                        Err(e) => Outcome::Retry(format!("{e:#}")),
                    }
                }
            }
        })
    }
}

enum BuildError {
    /// A database hiccup: try again.
    Retry(String),
    /// The request cannot be built: shown to the user.
    Fail(String),
}

impl From<anyhow::Error> for BuildError {
    fn from(e: anyhow::Error) -> Self {
        BuildError::Retry(format!("{e:#}"))
    }
}

/// Writes the file; the number of rows, or None when asked to stop.
async fn build(
    db: &Db,
    schemas: &Schemas,
    req: &ExportRow,
    path: &Path,
    ctx: &JobContext,
) -> Result<Option<i64>, BuildError> {
    let org = OrgId::new(req.org_id);
    let kind = ExportType::parse(&req.export_type).ok_or_else(|| BuildError::Fail("unknown export type".into()))?;
    let format = Format::parse(&req.format).ok_or_else(|| BuildError::Fail("unknown format".into()))?;
    let range = (req.date_from, req.date_to);
    let entities: Vec<String> = serde_json::from_str(&req.entity_types).unwrap_or_default();
    let zipped = kind == ExportType::EntityData && entities.len() > 1 && format != Format::Xlsx;
    let mut sink = Sink::open(path, format, zipped).map_err(|e| BuildError::Fail(storage(e)))?;
    let mut total = 0i64;
    match kind {
        ExportType::EntityData => {
            for name in &entities {
                let schema = schemas
                    .get(name)
                    .ok_or_else(|| BuildError::Fail(format!("the entity type \"{name}\" no longer exists")))?;
                sink.start_part(&format!("{name}.{}", format.extension()), &schema.label)
                    .map_err(|e| BuildError::Fail(storage(e)))?;
                let columns: Arc<Vec<String>> = Arc::new(schema.fields.iter().map(|f| f.name().to_string()).collect());
                Part { format, sink: &mut sink, columns: vec![] }.header(&columns).map_err(BuildError::Fail)?;
                // the next page is read while this one is written (on a blocking thread):
                // the database and the serializing each get a core
                let mut page = store::records_page(db, org, name, range, 0, PAGE).await?;
                while let Some(last) = page.last().map(|r| r.0) {
                    let cols = columns.clone();
                    let mut s = sink;
                    let write = tokio::task::spawn_blocking(move || {
                        let written = write_records(&mut s, format, &cols, &page);
                        (s, written)
                    });
                    let (written, next) = tokio::join!(write, store::records_page(db, org, name, range, last, PAGE));
                    let (s, written) = written.map_err(|e| BuildError::Retry(format!("writing a page: {e}")))?;
                    sink = s;
                    total += written.map_err(BuildError::Fail)?;
                    store::progress(db, req.id, total).await?;
                    if ctx.should_stop() {
                        return Ok(None);
                    }
                    page = next?;
                }
            }
        }
        ExportType::ImportHistory | ExportType::AuditLog => {
            sink.start_part("", kind.label()).map_err(|e| BuildError::Fail(storage(e)))?;
            let mut part = Part { format, sink: &mut sink, columns: vec![] };
            let names: &[&str] = if kind == ExportType::ImportHistory {
                &[
                    "id",
                    "entity",
                    "name",
                    "file",
                    "action",
                    "status",
                    "total_rows",
                    "created",
                    "updated",
                    "deleted",
                    "failed",
                    "created_by",
                    "created_at",
                ]
            } else {
                &["id", "at", "who", "action", "target", "detail", "address"]
            };
            let columns: Vec<String> = names.iter().map(|c| c.to_string()).collect();
            part.header(&columns).map_err(BuildError::Fail)?;
            let mut after = 0i64;
            loop {
                let rows: Vec<Vec<serde_json::Value>> = if kind == ExportType::ImportHistory {
                    crate::store::imports::page_after(db, org, range, after, PAGE)
                        .await?
                        .into_iter()
                        .map(|i| {
                            let values: Vec<serde_json::Value> = vec![
                                i.id.into(),
                                i.entity.clone().into(),
                                i.name.clone().into(),
                                i.file.name.clone().into(),
                                i.action.as_str().into(),
                                i.stage.as_str().into(),
                                i.validated.total_rows.into(),
                                i.created_rows.into(),
                                i.updated_rows.into(),
                                i.deleted_rows.into(),
                                i.not_imported_rows().into(),
                                i.created_by_label.clone().into(),
                                iso(i.created_at).into(),
                            ];
                            values
                        })
                        .collect()
                } else {
                    store::audit_page(db, org, range, after, PAGE)
                        .await?
                        .into_iter()
                        .map(|e| {
                            let values: Vec<serde_json::Value> = vec![
                                e.id.into(),
                                iso(e.at).into(),
                                e.actor_label.into(),
                                e.action.into(),
                                e.target.into(),
                                e.detail.into(),
                                e.address.into(),
                            ];
                            values
                        })
                        .collect()
                };
                let Some(last) = rows.last().and_then(|r| r.first()).and_then(|v| v.as_i64()) else { break };
                part.rows(&rows).map_err(BuildError::Fail)?;
                total += rows.len() as i64;
                after = last;
                store::progress(db, req.id, total).await?;
                if ctx.should_stop() {
                    return Ok(None);
                }
            }
        }
    }
    sink.finish().map_err(|e| BuildError::Fail(storage(e)))?;
    Ok(Some(total))
}

/// A timestamp as an ISO 8601 UTC date and time.
fn iso(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
