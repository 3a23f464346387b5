//! `stevedore bench export`: an export of generated records through the Data Exports job,
//! against the `sqlite3` shell writing the same rows and columns.

use std::time::Instant;

use anyhow::Context;

use super::data::{generate, peak_rss_mib};
use super::{Input, secs, setup};
use crate::domain::ids::OrgId;
use crate::domain::imports::Action;
use crate::store::{self, Db};

/// `stevedore bench export`: imports `rows` generated contacts, then exports them in
/// `format` through the same job the Data Exports page runs; prints rows/s and peak memory,
/// and last one JSON object.
pub async fn export(rows: usize, format: &str, database: Option<String>) -> anyhow::Result<()> {
    let format = crate::domain::exports::Format::parse(format)
        .ok_or_else(|| anyhow::anyhow!("--format must be csv, xlsx or json"))?;
    let dir = std::env::temp_dir().join(format!("stevedore-bench-{}-{}", std::process::id(), crate::random_token(4)?));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        let b = setup(&dir, 5000, database, &Input::default()).await?;
        let file = dir.join("contacts.csv");
        generate(&file, rows, 0, 3)?;
        println!("importing {rows} contacts to export");
        let (imported, _, _) = b.import(&file, Action::Merge).await?;
        let exports = dir.join("exports");
        let id = store::exports::create(
            &b.db,
            b.org,
            &store::exports::NewExport {
                export_type: "entity_data",
                format: format.as_str(),
                entity_types: "[\"bench_contacts\"]",
                date_from: None,
                date_to: None,
                file_dir: &exports.to_string_lossy(),
                file_name: &format!("contacts.{}", format.extension()),
                by: b.user,
                by_label: "bench",
            },
        )
        .await?;
        crate::jobs::export::enqueue(&b.db, b.org, id).await?;
        let seconds = b.drain().await?;
        let done = store::exports::get(&b.db, b.org, id).await?.context("benchmark export vanished")?;
        anyhow::ensure!(done.status == "completed", "export ended {}: {}", done.status, done.reason);
        anyhow::ensure!(
            done.row_count == imported.created_rows,
            "exported {} of {}",
            done.row_count,
            imported.created_rows
        );
        let bytes = done.file_size.unwrap_or(0);
        let peak = peak_rss_mib();
        let rate = done.row_count as f64 / seconds;
        println!(
            "exported {} rows as {} in {seconds:.2} s ({rate:.0} rows/s), {:.1} MB, peak RSS {peak:.1} MiB",
            done.row_count,
            format.label(),
            bytes as f64 / 1e6
        );
        let mut json = serde_json::json!({
            "rows": done.row_count,
            "format": format.as_str(),
            "seconds": secs(seconds),
            "rows_per_sec": (done.row_count as f64 / seconds).round(),
            "file_bytes": bytes,
            "peak_rss_mib": (peak * 10.0).round() / 10.0,
            "database": b.db.backend(),
        });
        if matches!(b.db, Db::Sqlite(_)) {
            let columns: Vec<&str> = b.schema.fields.iter().map(|f| f.name()).collect();
            let out = dir.join("cli.csv");
            match sqlite_cli_export(&dir.join("bench.db"), b.org, &b.schema.name, &columns, &out)? {
                Some(cli_s) => {
                    let cli_rate = done.row_count as f64 / cli_s;
                    let ratio = (rate / cli_rate * 100.0).round() / 100.0;
                    println!(
                        "sqlite3 CLI, the same rows and columns to CSV: {cli_s:.2} s ({cli_rate:.0} rows/s); ratio {ratio:.2}"
                    );
                    json["cli_s"] = secs(cli_s).into();
                    json["cli_rows_per_sec"] = cli_rate.round().into();
                    json["cli_ratio"] = ratio.into();
                }
                None => println!("no sqlite3 command on the PATH: the ratio to its export is not measured"),
            }
        }
        b.db.close().await;
        println!("{json}");
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The reference for exports: the sqlite3 shell writing the same rows and columns (each
/// read from the stored JSON) as CSV with a header, timed; None without a `sqlite3` command.
fn sqlite_cli_export(
    db_file: &std::path::Path,
    org: OrgId,
    entity: &str,
    columns: &[&str],
    out: &std::path::Path,
) -> anyhow::Result<Option<f64>> {
    // field and entity names are schema identifiers ([a-z0-9_]), never quotes
    let cols: Vec<String> = columns.iter().map(|c| format!("json_extract(data, '$.{c}') AS \"{c}\"")).collect();
    let sql = format!(
        "SELECT {} FROM records WHERE org_id = {} AND entity = '{entity}' ORDER BY id;",
        cols.join(", "),
        org.get()
    );
    let t = Instant::now();
    let run = std::process::Command::new("sqlite3")
        .args(["-readonly", "-csv", "-header"])
        .arg(db_file)
        .arg(&sql)
        .stdout(std::fs::File::create(out)?)
        .status();
    match run {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("running sqlite3"),
        Ok(status) => {
            anyhow::ensure!(status.success(), "sqlite3 failed ({status})");
            Ok(Some(t.elapsed().as_secs_f64()))
        }
    }
}
