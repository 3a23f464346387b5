//! An import's uploaded file as the API's signed links give it: read on a blocking thread
//! and written out as CSV or as a JSON array, a piece at a time (memory stays at a piece).

use actix_web::web::Bytes;

use crate::domain::imports::Import;
use crate::files::{FileProblem, sniff, visit_rows};
use crate::state::AppState;

/// What the CSV writer holds so far, leaving it empty.
fn take_csv(w: &mut csv::Writer<Vec<u8>>) -> Result<Vec<u8>, std::io::Error> {
    let full = std::mem::replace(w, csv::Writer::from_writer(Vec::new()));
    full.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
}

/// Rows per piece of a converted file.
const CONVERT_ROWS: usize = 2000;

/// The uploaded file read on a blocking thread and written out as CSV (the header row, then
/// the rows as read) or as a JSON array of objects keyed by header, a piece at a time.
pub(super) fn converted(
    state: &AppState,
    imp: &Import,
    copy: std::sync::Arc<crate::files::object::LocalCopy>,
    json: bool,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + use<> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let path = copy.path.clone();
    let sheet = imp.file.sheet.clone();
    let limits = state.settings.file_limits;
    tokio::task::spawn_blocking(move || {
        let send = |b: Result<Vec<u8>, std::io::Error>| tx.blocking_send(b.map(Bytes::from)).is_ok();
        let info = match sniff(&path, sheet.as_deref(), &limits) {
            Ok(i) => i,
            Err(e) => {
                send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let headers = info.headers.clone();
        // one piece of output: the CSV writer's buffer, or the JSON text so far
        let mut csv_out = csv::Writer::from_writer(Vec::new());
        let mut json_out: Vec<u8> = vec![b'['];
        if !json && csv_out.write_record(&headers).is_err() {
            return;
        }
        let mut rows = 0usize;
        let res = visit_rows(&path, &info, &mut |_, cells| {
            if json {
                if rows > 0 {
                    json_out.push(b',');
                }
                let obj: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (h.clone(), serde_json::Value::String(cells.get(i).cloned().unwrap_or_default())))
                    .collect();
                serde_json::to_writer(&mut json_out, &obj).map_err(|e| FileProblem::Io(e.to_string()))?;
            } else {
                csv_out.write_record(cells).map_err(|e| FileProblem::Io(e.to_string()))?;
            }
            rows += 1;
            if rows.is_multiple_of(CONVERT_ROWS) {
                let piece = if json {
                    std::mem::take(&mut json_out)
                } else {
                    take_csv(&mut csv_out).map_err(|e| FileProblem::Io(e.to_string()))?
                };
                return Ok(send(Ok(piece)));
            }
            Ok(true)
        });
        let last = match res {
            Ok(()) if json => {
                json_out.push(b']');
                Ok(json_out)
            }
            Ok(()) => take_csv(&mut csv_out),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        send(last);
        // the scratch copy, if it is one, goes once the file is read
        drop(copy);
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
