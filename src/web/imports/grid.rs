//! `/settings/imports/{id}/rows`: the rows a validated import left out with errors, in an
//! editable grid. A row's cells are saved as edits (the file never changes) and the row is
//! checked again at once by its fields' rules; fixed rows join the import when it is
//! validated again (`POST …/revalidate`), which also runs the checks only the whole file
//! can (keys used twice, references, unique values).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::{load, page_of, schema_of, target_of};
use crate::auth::Identity;
use crate::auth::session::AppSession;
use crate::domain::entities::EntitySchema;
use crate::domain::imports::{Import, Stage, problems_by_field};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::imports::edits::{self, NewEdit};
use crate::store::imports::phases::Issue;
use crate::web::layout::{Layout, render};
use crate::web::{Grouped, Pagination, audit, is_htmx, see_other};

/// Rows per page of the grid.
const GRID_ROWS: i64 = 50;

/// A column of the grid: a mapped field and the file's column that fills it.
pub struct GridColumn {
    pub field: String,
    pub label: String,
    pub header: String,
    /// Its index in the file's rows.
    pub index: usize,
}

/// A cell of a row.
pub struct GridCell {
    pub index: usize,
    pub value: String,
    /// What is wrong with it, if anything.
    pub problem: Option<String>,
}

/// A row left out.
pub struct GridRow {
    pub row: i64,
    pub cells: Vec<GridCell>,
    /// Problems no one cell names (a key used twice in the file, say).
    pub row_problems: Vec<String>,
    /// Saved since validation and clean by its rules: it joins the import when validated.
    pub fixed: bool,
}

impl GridRow {
    /// The labels of the fields with a problem ("Capacity, Kind"), to see which cells to
    /// look at when the grid is wider than the screen.
    pub fn problem_labels(&self, columns: &[GridColumn]) -> String {
        let labels: Vec<&str> = self
            .cells
            .iter()
            .zip(columns)
            .filter(|(c, _)| c.problem.is_some())
            .map(|(_, col)| col.label.as_str())
            .collect();
        labels.join(", ")
    }
}

/// Everything the grid page shows.
pub struct GridView {
    pub imp: Import,
    pub csrf: String,
    pub columns: Vec<GridColumn>,
    pub rows: Vec<GridRow>,
    pub pagination: Pagination,
    /// The field the rows are filtered by (empty: all).
    pub field: String,
    /// Rows left out with errors, whatever the filter.
    pub total: i64,
    /// Rows edited since the import was last validated.
    pub edited: i64,
    /// Edits are taken: the import is validated and not started.
    pub editable: bool,
    /// Rows skipped (left out on purpose, out of the grid).
    pub skipped: i64,
}

#[derive(Template)]
#[template(path = "imports/grid.html")]
pub struct GridPage {
    pub l: Layout,
    pub v: GridView,
}

/// One row, for the page's script to swap in after a save.
#[derive(Template)]
#[template(path = "imports/grid_row.html")]
pub struct GridRowPart {
    pub v: GridView,
    pub r: GridRow,
}

#[derive(Deserialize)]
pub struct GridQuery {
    pub page: Option<i64>,
    pub field: Option<String>,
}

/// The grid's columns: the mapped fields in schema order.
fn columns(imp: &Import, schema: &EntitySchema) -> Vec<GridColumn> {
    let at = imp.columns();
    schema
        .fields
        .iter()
        .filter_map(|f| {
            let index = *at.get(f.name())?;
            Some(GridColumn {
                field: f.name().to_string(),
                label: f.label.clone(),
                header: imp.headers[index].clone(),
                index,
            })
        })
        .collect()
}

/// A row's cells as stored (a JSON array in the header's order).
fn cells_of(issue: &Issue, width: usize) -> Vec<String> {
    let mut cells: Vec<String> = serde_json::from_str(&issue.cells).unwrap_or_default();
    if cells.len() < width {
        cells.resize(width, String::new());
    }
    cells
}

/// The grid rows of issues (a row's issues are next to each other). `fixed`: rows saved
/// since validation whose cells now pass their rules.
fn grid_rows(
    schema: &EntitySchema,
    imp: &Import,
    cols: &[GridColumn],
    issues: Vec<Issue>,
    fixed: &HashMap<i64, bool>,
) -> Vec<GridRow> {
    let mut out: Vec<GridRow> = vec![];
    for issue in issues {
        let problems = problems_by_field(&issue.message, schema);
        let width = imp.headers.len();
        match out.last_mut() {
            Some(r) if r.row == issue.row_number => add_problems(r, cols, problems),
            _ => {
                let cells = cells_of(&issue, width);
                let mut r = GridRow {
                    row: issue.row_number,
                    cells: cols
                        .iter()
                        .map(|c| GridCell { index: c.index, value: cells[c.index].clone(), problem: None })
                        .collect(),
                    row_problems: vec![],
                    fixed: fixed.get(&issue.row_number).copied().unwrap_or(false),
                };
                add_problems(&mut r, cols, problems);
                out.push(r);
            }
        }
    }
    out
}

fn add_problems(r: &mut GridRow, cols: &[GridColumn], problems: Vec<(Option<String>, String)>) {
    for (field, text) in problems {
        let cell = field.and_then(|f| cols.iter().position(|c| c.field == f)).map(|i| &mut r.cells[i]);
        match cell {
            Some(c) => c.problem = Some(c.problem.take().map_or(text.clone(), |p| format!("{p}; {text}"))),
            None => r.row_problems.push(text),
        }
    }
}

/// Rows left out are fixed (and skipped) while the import waits to be imported; a
/// conflict otherwise.
fn waiting(imp: &Import) -> Result<(), AppError> {
    if imp.stage == Stage::Ready {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "This import is {}; rows left out can be fixed while it waits to be imported.",
        imp.stage.label().to_lowercase()
    )))
}

/// Back to the grid with `text` said once.
fn back_to_grid(session: &AppSession, imp: &Import, kind: &str, text: String) -> Result<HttpResponse, AppError> {
    session.set_flash(&crate::auth::session::Flash { kind: kind.into(), text, secret: None })?;
    Ok(see_other(format!("{}/rows", page_of(imp))))
}

/// A row's problems as its rules find its cells now (the message, and whether it is clean).
fn rechecked(imp: &Import, schema: &EntitySchema, issue: &Issue) -> (String, bool) {
    match imp.recheck(schema, &cells_of(issue, imp.headers.len())) {
        Ok(()) => (String::new(), true),
        Err(problems) => (format!("row {}, {}", issue.row_number, problems.join("; ")), false),
    }
}

async fn grid_view(
    req: &HttpRequest,
    state: &AppState,
    imp: Import,
    schema: &EntitySchema,
    q: &GridQuery,
) -> Result<GridView, AppError> {
    let field = q.field.as_deref().filter(|f| imp.mapping.contains_key(*f)).map(str::to_string);
    let matching = edits::count_rows_left_out(&state.db, imp.id, field.as_deref()).await?;
    let total = match &field {
        Some(_) => edits::count_rows_left_out(&state.db, imp.id, None).await?,
        None => matching,
    };
    let base = match &field {
        Some(f) => format!("{}/rows?field={f}", page_of(&imp)),
        None => format!("{}/rows", page_of(&imp)),
    };
    let pagination = Pagination::new(q.page, GRID_ROWS, matching, &base);
    let mut issues = edits::rows_left_out(&state.db, imp.id, field.as_deref(), GRID_ROWS, pagination.offset()).await?;
    let cols = columns(&imp, schema);
    // rows edited since validation read as their rules find them now
    let (from, to) = (issues.first().map_or(0, |i| i.row_number), issues.last().map_or(0, |i| i.row_number));
    let edited = edits::rows_edited_in(&state.db, imp.id, from, to).await?;
    let mut fixed = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    issues.retain(|i| !edited.contains(&i.row_number) || seen.insert(i.row_number));
    for issue in issues.iter_mut().filter(|i| edited.contains(&i.row_number)) {
        let (message, ok) = rechecked(&imp, schema, issue);
        issue.message = message;
        fixed.insert(issue.row_number, ok);
    }
    let rows = grid_rows(schema, &imp, &cols, issues, &fixed);
    Ok(GridView {
        csrf: AppSession::from_request_ref(req).csrf_token()?,
        columns: cols,
        rows,
        pagination,
        field: field.unwrap_or_default(),
        total,
        edited: edits::rows_edited_since_validation(&state.db, imp.id).await?,
        editable: imp.stage == Stage::Ready,
        skipped: edits::count_skipped(&state.db, imp.id).await?,
        imp,
    })
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn grid(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
    q: web::Query<GridQuery>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let schema = schema_of(&state, &imp.entity)?;
    let v = grid_view(&req, &state, imp, &schema, &q).await?;
    let l = Layout::for_user(&req, &id, format!("Rows left out · Import {}", v.imp.id), "imports").await?;
    Ok(render(StatusCode::OK, &GridPage { l, v }))
}

/// Saves a row's cells (`cell.<column index>`), keeping an edit for each that changed, and
/// checks the row again by its rules. For the page's script, the row as it now stands;
/// otherwise back to the grid.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn save_row(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    q: web::Query<GridQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let (import_id, row) = path.into_inner();
    let imp = load(&state, &id, import_id).await?;
    let schema = schema_of(&state, &imp.entity)?;
    waiting(&imp)?;
    let issues = edits::row_left_out(&state.db, imp.id, row).await?;
    let Some(first) = issues.first() else {
        return Err(AppError::NotFound);
    };
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&body).map_err(|_| AppError::BadRequest("The row could not be read.".into()))?;
    let cols = columns(&imp, &schema);
    let mut cells = cells_of(first, imp.headers.len());
    let mut changed: Vec<(usize, String, String)> = vec![];
    for (k, v) in &form {
        let Some(index) = k.strip_prefix("cell.").and_then(|i| i.parse::<usize>().ok()) else { continue };
        if !cols.iter().any(|c| c.index == index) {
            return Err(AppError::Validation(format!("Column {index} is not one of the row's fields.")));
        }
        if cells[index] != *v {
            changed.push((index, cells[index].clone(), v.clone()));
            cells[index] = v.clone();
        }
    }
    if !changed.is_empty() {
        let new_edits: Vec<NewEdit> = changed
            .iter()
            .filter_map(|(index, old, new)| {
                let col = cols.iter().find(|c| c.index == *index)?;
                Some(NewEdit {
                    row_number: row,
                    column: &col.header,
                    field: &col.field,
                    old_value: old,
                    new_value: new,
                })
            })
            .collect();
        let json = serde_json::to_string(&cells).unwrap_or_else(|_| "[]".into());
        edits::add_edits(&state.db, imp.id, &new_edits, &[(row, json)], id.user_id, &id.email).await?;
        let words: Vec<String> =
            new_edits.iter().map(|e| format!("{} \"{}\" → \"{}\"", e.field, e.old_value, e.new_value)).collect();
        let detail = format!("row {row}: {}", words.join("; "));
        audit(&state, &req, &id, "import_row_edited", &target_of(&imp), &detail).await?;
    }
    // the filter the grid was at, if it names one of the import's fields
    let field = q.field.as_deref().filter(|f| imp.mapping.contains_key(*f));
    if !is_htmx(&req) {
        let back = match field {
            Some(f) => format!("{}/rows?field={f}&page={}", page_of(&imp), q.page.unwrap_or(1)),
            None => format!("{}/rows?page={}", page_of(&imp), q.page.unwrap_or(1)),
        };
        return Ok(see_other(back));
    }
    let mut issue = Issue { row_number: row, kind: "error".into(), message: String::new(), cells: String::new() };
    issue.cells = serde_json::to_string(&cells).unwrap_or_default();
    let (message, ok) = rechecked(&imp, &schema, &issue);
    issue.message = message;
    let fixed = HashMap::from([(row, ok)]);
    let mut rows = grid_rows(&schema, &imp, &cols, vec![issue], &fixed);
    let r = rows.pop().ok_or(AppError::NotFound)?;
    let v = GridView {
        csrf: AppSession::from_request_ref(&req).csrf_token()?,
        columns: cols,
        rows: vec![],
        pagination: Pagination::new(q.page, GRID_ROWS, 0, ""),
        field: field.unwrap_or_default().to_string(),
        total: 0,
        edited: edits::rows_edited_since_validation(&state.db, imp.id).await?,
        editable: true,
        skipped: 0,
        imp,
    };
    let edited = v.edited;
    let mut res = render(StatusCode::OK, &GridRowPart { v, r });
    // the page's script updates its "rows edited" note from it
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&edited.to_string()) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-edited-rows"), value);
    }
    Ok(res)
}

/// Validates the import again with its mapping, reading the rows through their edits.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn revalidate(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let edited = edits::rows_edited_since_validation(&state.db, imp.id).await?;
    if imp.stage != Stage::Ready
        || !super::actions::validate_again(&id, &state, &imp, &imp.mapping, &imp.options).await?
    {
        return Err(AppError::Conflict(format!(
            "This import is {}; only an import waiting to be imported is validated again.",
            imp.stage.label().to_lowercase()
        )));
    }
    let detail = format!("with {} edited since", edited.count("row", "rows"));
    audit(&state, &req, &id, "import_revalidated", &target_of(&imp), &detail).await?;
    Ok(see_other(page_of(&imp)))
}

/// What "Replace" takes.
#[derive(Deserialize)]
pub struct ReplaceForm {
    /// The file's column, by index.
    pub column: usize,
    pub from: String,
    pub to: String,
}

/// Rows a bulk fix reads and writes at a time.
const REPLACE_BATCH: i64 = 1000;

/// Replaces `from` with `to` in one column of every row left out with an error whose cell
/// holds it (spaces around aside), an edit each; back to the grid, saying how many.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn replace(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
    form: web::Form<ReplaceForm>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let schema = schema_of(&state, &imp.entity)?;
    waiting(&imp)?;
    let cols = columns(&imp, &schema);
    let col = cols
        .iter()
        .find(|c| c.index == form.column)
        .ok_or_else(|| AppError::Validation(format!("Column {} is not one of the import's fields.", form.column)))?;
    let (from, to) = (form.from.trim(), form.to.trim());
    if from == to {
        return Err(AppError::Validation("Replace a value with another one.".into()));
    }
    let (mut after, mut replaced) = (0_i64, 0_i64);
    loop {
        let batch = edits::cells_left_out(&state.db, imp.id, after, REPLACE_BATCH).await?;
        let Some(last) = batch.last().map(|(row, _)| *row) else { break };
        let mut rows: Vec<(i64, Vec<String>, String)> = vec![];
        for (row, json) in batch {
            let mut cells: Vec<String> = serde_json::from_str(&json).unwrap_or_default();
            if cells.len() <= col.index {
                cells.resize(col.index + 1, String::new());
            }
            if cells[col.index].trim() == from {
                let old = std::mem::replace(&mut cells[col.index], to.to_string());
                rows.push((row, cells, old));
            }
        }
        if !rows.is_empty() {
            let new_edits: Vec<NewEdit> = rows
                .iter()
                .map(|(row, _, old)| NewEdit {
                    row_number: *row,
                    column: &col.header,
                    field: &col.field,
                    old_value: old,
                    new_value: to,
                })
                .collect();
            let cells: Vec<(i64, String)> =
                rows.iter().map(|(row, c, _)| (*row, serde_json::to_string(c).unwrap_or_default())).collect();
            edits::add_edits(&state.db, imp.id, &new_edits, &cells, id.user_id, &id.email).await?;
            replaced += rows.len() as i64;
        }
        after = last;
    }
    let text = if replaced == 0 {
        format!("No row left out has \"{from}\" in {}; nothing was changed.", col.label)
    } else {
        let detail = format!("{}: \"{from}\" → \"{to}\" in {}", col.field, replaced.count("row", "rows"));
        audit(&state, &req, &id, "import_rows_replaced", &target_of(&imp), &detail).await?;
        format!(
            "Replaced \"{from}\" with \"{to}\" in {} of {}. Validate again to add the rows this fixes.",
            col.label,
            replaced.count("row", "rows")
        )
    };
    back_to_grid(&session, &imp, if replaced == 0 { "info" } else { "success" }, text)
}

/// Skips the rows ticked in the grid (`row`, repeated): they stay left out, on purpose, and
/// leave the grid; back to it, saying how many.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn skip(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    waiting(&imp)?;
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("The rows to skip could not be read.".into()))?;
    let rows: Vec<i64> = form.iter().filter(|(k, _)| k == "row").filter_map(|(_, v)| v.parse().ok()).collect();
    let text = if rows.is_empty() {
        "Tick the rows to skip first.".to_string()
    } else {
        let n = edits::skip_rows(&state.db, imp.id, &rows, id.user_id, &id.email).await?;
        let listed: Vec<String> = rows.iter().take(20).map(i64::to_string).collect();
        let more = if rows.len() > 20 { format!(" and {} more", rows.len() - 20) } else { String::new() };
        let detail = format!("rows {}{more}", listed.join(", "));
        audit(&state, &req, &id, "import_rows_skipped", &target_of(&imp), &detail).await?;
        format!("Skipped {}: they stay left out of the import and leave this list.", n.count("row", "rows"))
    };
    back_to_grid(&session, &imp, "info", text)
}

/// Puts the skipped rows back in the grid.
#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get(), import_id = *path))]
pub async fn unskip(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    path: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let imp = load(&state, &id, path.into_inner()).await?;
    let n = edits::unskip_rows(&state.db, imp.id).await?;
    audit(&state, &req, &id, "import_rows_unskipped", &target_of(&imp), &n.count("row", "rows")).await?;
    let text = format!("{} back in the list.", n.count("skipped row is", "skipped rows are"));
    back_to_grid(&session, &imp, "info", text)
}
