//! `POST /settings/imports/onboarding/workbook`: one file for every step of the onboarding,
//! an XLSX workbook with a sheet per entity type or a zip of CSV files named after them.
//! Each matched sheet or file becomes its step's import, waiting at its column mapping;
//! sheets and files that match no entity type are listed and ignored. The steps then go as
//! any step does, in order: validating a step after the steps it refers to are imported
//! resolves its references against their records.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use md5::{Digest, Md5};

use super::imports::upload::{How, create_import};
use super::{audit, see_other};
use crate::auth::Identity;
use crate::auth::session::{AppSession, Flash};
use crate::domain::imports::{Action, DuplicateHandling, Stage, model::parse_chunk_size};
use crate::domain::onboarding::{StepState, entity_of_part, steps};
use crate::domain::permissions::Permission;
use crate::error::AppError;
use crate::files::uploads::{self, StoredUpload, UploadError};
use crate::state::AppState;

const BACK: &str = "/settings/imports/onboarding";

/// A part of the uploaded file: a workbook's sheet, or a CSV file in a zip.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Sheet(String),
    Csv { name: String, index: usize },
}

impl Part {
    fn name(&self) -> &str {
        match self {
            Part::Sheet(s) => s,
            Part::Csv { name, .. } => name,
        }
    }
}

/// The parts of a workbook or a zip of CSV files; why not, in words.
fn parts(path: &Path, limits: &crate::files::Limits) -> Result<Vec<Part>, String> {
    let not_one = "Upload an XLSX workbook with a sheet per entity type, or a zip of CSV files named after them.";
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|_| not_one.to_string())?;
    if zip.by_name("xl/workbook.xml").is_ok() {
        use calamine::Reader;
        // measured before anything is inflated, and a damaged workbook is a refusal, not a panic
        crate::files::limits::check_workbook(path, limits).map_err(|e| e.to_string())?;
        let names = crate::files::reader::guarded(|| {
            let wb: calamine::Xlsx<_> = calamine::open_workbook(path)
                .map_err(|e: calamine::XlsxError| crate::files::FileProblem::Xlsx(e.to_string()))?;
            Ok(wb.sheet_names().to_vec())
        })
        .map_err(|e| e.to_string())?;
        return Ok(names.into_iter().map(Part::Sheet).collect());
    }
    let mut csvs = vec![];
    for index in 0..zip.len() {
        let entry = zip.by_index(index).map_err(|e| format!("The zip cannot be read: {e}"))?;
        let name = entry.name().map_err(|e| format!("The zip cannot be read: {e}"))?.to_string();
        if entry.is_file() && !name.starts_with("__MACOSX/") && name.to_ascii_lowercase().ends_with(".csv") {
            csvs.push(Part::Csv { name, index });
        }
    }
    if csvs.is_empty() {
        return Err(not_one.into());
    }
    Ok(csvs)
}

/// The part as a file of its own beside the upload: a workbook is linked (or copied) whole,
/// its import reads its sheet; a zipped CSV is extracted, at most `limit` bytes, hashed.
fn part_file(upload: &StoredUpload, part: &Part, n: usize, limit: u64) -> Result<StoredUpload, String> {
    let stem = upload.path.file_stem().and_then(|s| s.to_str()).unwrap_or("upload");
    match part {
        Part::Sheet(_) => {
            let to = upload.path.with_file_name(format!("{stem}-part{n}.xlsx"));
            std::fs::hard_link(&upload.path, &to)
                .or_else(|_| std::fs::copy(&upload.path, &to).map(|_| ()))
                .map_err(|e| e.to_string())?;
            Ok(StoredUpload { path: to, ..upload.clone() })
        }
        Part::Csv { name, index } => {
            let file = std::fs::File::open(&upload.path).map_err(|e| e.to_string())?;
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
            let entry = zip.by_index(*index).map_err(|e| e.to_string())?;
            let to: PathBuf = upload.path.with_file_name(format!("{stem}-part{n}.csv"));
            let mut out = std::fs::File::create(&to).map_err(|e| e.to_string())?;
            let (mut md5, mut size, mut buf) = (Md5::new(), 0u64, vec![0u8; 64 * 1024]);
            // read past the limit by one byte at most: a zip bomb stops there
            let mut reader = entry.take(limit + 1);
            loop {
                let got = reader.read(&mut buf).map_err(|e| e.to_string())?;
                if got == 0 {
                    break;
                }
                size += got as u64;
                if size > limit {
                    drop(out);
                    let _ = std::fs::remove_file(&to);
                    let limit = crate::config::format_size(limit);
                    return Err(format!("{name} is larger than the upload limit of {limit} once unzipped."));
                }
                md5.update(&buf[..got]);
                out.write_all(&buf[..got]).map_err(|e| e.to_string())?;
            }
            let original = name.rsplit('/').next().unwrap_or(name).to_string();
            Ok(StoredUpload { original, path: to, size: size as i64, checksum: hex::encode(md5.finalize()) })
        }
    }
}

fn flash(session: &AppSession, kind: &str, text: String) -> Result<HttpResponse, AppError> {
    session.set_flash(&Flash { kind: kind.into(), text, secret: None })?;
    Ok(see_other(BACK))
}

#[tracing::instrument(skip_all, fields(org_id = id.org_id.get(), user_id = id.user_id.get()))]
pub async fn upload(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
    payload: Multipart,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let dir = super::imports::upload::files_dir(&state, id.org_id);
    let limit = state.settings.upload_limit;
    let received = match uploads::receive(payload, &dir, limit).await {
        Ok(r) => r,
        Err(UploadError::TooLarge) => {
            let limit = crate::config::format_size(limit);
            return flash(&session, "error", format!("The file is larger than the upload limit of {limit}."));
        }
        Err(UploadError::Bad(m)) => return flash(&session, "error", m),
        Err(UploadError::Internal(e)) => return Err(AppError::Internal(e)),
    };
    let Some(upload) = received.file.clone() else {
        return flash(&session, "error", "Choose a workbook (XLSX) or a zip of CSV files to upload.".into());
    };
    if crate::store::onboarding::rollback_asked(&state.db, id.org_id).await?.is_some() {
        received.discard();
        return flash(&session, "info", "The onboarding is being rolled back: upload the workbook once it is.".into());
    }
    let (path, limits) = (upload.path.clone(), state.settings.file_limits);
    let listed = web::block(move || parts(&path, &limits)).await.map_err(anyhow::Error::from)?;
    let all = match listed {
        Ok(p) => p,
        Err(why) => {
            received.discard();
            return flash(&session, "error", format!("{}: {why}", upload.original));
        }
    };
    let view = super::onboarding::view(&req, &id, &state).await?;
    let chunk_size = parse_chunk_size(None).map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    let how = How { name: "", action: Action::Merge, handling: DuplicateHandling::IgnoreAll, chunk_size };
    // the steps of this workbook are validated and imported together: named by the upload
    let stem = upload.path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let workbook = format!("{} {stem}", upload.original);
    let (mut created, mut notes, mut matched) = (vec![], vec![], vec![]);
    for (n, step) in steps(state.schemas.all()).iter().enumerate() {
        let Some(part) =
            all.iter().find(|p| entity_of_part(p.name(), state.schemas.all()).as_deref() == Some(&step.entity))
        else {
            continue;
        };
        matched.push(part.clone());
        let Some(schema) = state.schemas.get(&step.entity).cloned() else { continue };
        if view.steps.iter().any(|s| s.entity == step.entity && s.state == StepState::InProgress) {
            notes.push(format!(
                "{}: an import of it is on its way, so \"{}\" was left alone",
                schema.label,
                part.name()
            ));
            continue;
        }
        let (src, p2) = (upload.clone(), part.clone());
        let file = match web::block(move || part_file(&src, &p2, n, limit)).await.map_err(anyhow::Error::from)? {
            Ok(f) => f,
            Err(why) => {
                notes.push(format!("{}: {why}", schema.label));
                continue;
            }
        };
        let sheet = match part {
            Part::Sheet(s) => Some(s.clone()),
            Part::Csv { .. } => None,
        };
        match create_import(&state, &id, &schema, &file, sheet.clone(), &how).await? {
            Ok(import_id) => {
                crate::store::onboarding::attach(&state.db, id.org_id, &schema.name, import_id, &workbook, &id.email)
                    .await?;
                let from = match &sheet {
                    Some(s) => format!("{}, sheet {s}", file.original),
                    None => format!("{} in {}", file.original, upload.original),
                };
                let size = crate::config::format_size(file.size.max(0) as u64);
                let detail = format!("{from}, {size}, {}", schema.label);
                audit(&state, &req, &id, "import_uploaded", &format!("import {import_id}"), &detail).await?;
                created.push(schema.label.clone());
            }
            Err(problem) => {
                let _ = std::fs::remove_file(&file.path);
                notes.push(format!("{} (\"{}\"): {problem}", schema.label, part.name()));
            }
        }
    }
    // the parts keep what they need; the upload itself is no step's file
    received.discard();
    let ignored: Vec<&str> = all.iter().filter(|p| !matched.contains(p)).map(Part::name).collect();
    let mut text = match created.len() {
        0 => format!("{}: no import was created.", upload.original),
        n => format!(
            "{}: {} created ({}), each waiting for its column mapping; go through them in step order.",
            upload.original,
            if n == 1 { "1 import".to_string() } else { format!("{n} imports") },
            created.join(", ")
        ),
    };
    if !notes.is_empty() {
        text.push_str(&format!(" Not created: {}.", notes.join("; ")));
    }
    if !ignored.is_empty() {
        text.push_str(&format!(" Matching no entity type, so ignored: {}.", ignored.join(", ")));
    }
    flash(&session, if created.is_empty() { "error" } else { "success" }, text)
}

/// `POST /settings/imports/onboarding/validate`: every workbook step waiting at its column
/// mapping is validated with the mapping proposed for it, in step order (a step after the
/// steps of the workbook it refers to). Nothing is validated while a step's mapping leaves a
/// required field without a column: the message names them.
pub async fn validate_all(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let view = super::onboarding::view(&req, &id, &state).await?;
    let mut waiting = vec![];
    let mut missing = vec![];
    for step in view.workbook_steps() {
        let Some(import_id) = step.import.as_ref().filter(|i| i.stage == Stage::Mapping).map(|i| i.id) else {
            continue;
        };
        let (Some(imp), Some(schema)) =
            (crate::store::imports::get(&state.db, id.org_id, import_id).await?, state.schemas.get(&step.entity))
        else {
            continue;
        };
        let unmapped = imp.required_without_column(schema, &imp.mapping);
        if !unmapped.is_empty() {
            missing.push(format!("{} (#{}): {}", step.label, imp.id, unmapped.join(", ")));
        }
        waiting.push((step.entity.clone(), step.label.clone(), imp));
    }
    if !missing.is_empty() {
        let text = format!(
            "Nothing was validated: choose a column for these required fields on each import's page first. {}.",
            missing.join("; ")
        );
        return flash(&session, "error", text);
    }
    for (entity, _, imp) in &waiting {
        if crate::store::imports::confirm_mapping(
            &state.db,
            id.org_id,
            imp.id,
            &imp.mapping,
            &imp.options,
            id.user_id.into(),
        )
        .await?
        {
            crate::store::onboarding::queue(&state.db, id.org_id, entity, "validate", id.user_id.get(), &id.email)
                .await?;
            let detail = "as proposed, with the onboarding's Validate all";
            audit(&state, &req, &id, "import_mapping_confirmed", &format!("import {}", imp.id), detail).await?;
        }
    }
    crate::jobs::onboarding::go_on(&state.db, &state.schemas, id.org_id).await?;
    let labels: Vec<String> = waiting.into_iter().map(|(_, l, _)| l).collect();
    flash(
        &session,
        "success",
        format!("Validating {}, in that order. This page updates by itself.", labels.join(", then ")),
    )
}

/// `POST /settings/imports/onboarding/import`: every validated workbook step is imported,
/// in step order: a step starts once the steps of the workbook it refers to are imported;
/// one that fails stops the steps that depend on it, and only those.
pub async fn import_all(
    req: HttpRequest,
    id: Identity,
    state: web::Data<AppState>,
    session: AppSession,
) -> Result<HttpResponse, AppError> {
    id.require(Permission::ImportUpload)?;
    let view = super::onboarding::view(&req, &id, &state).await?;
    if !view.offers_import_all() {
        return flash(&session, "info", "Import all waits until every step of the workbook is validated.".into());
    }
    let mut labels = vec![];
    for step in view.workbook_steps() {
        if step.import.as_ref().is_some_and(|i| i.stage == Stage::Ready) {
            crate::store::onboarding::queue(&state.db, id.org_id, &step.entity, "import", id.user_id.get(), &id.email)
                .await?;
            labels.push(step.label.clone());
        }
    }
    crate::jobs::onboarding::go_on(&state.db, &state.schemas, id.org_id).await?;
    audit(&state, &req, &id, "onboarding_import_all", "onboarding", &labels.join(", ")).await?;
    flash(
        &session,
        "success",
        format!("Importing {}, in that order. This page updates by itself.", labels.join(", then ")),
    )
}
