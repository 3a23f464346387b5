//! Uploaded files: recognizing CSV and XLSX, reading their header row, and streaming
//! their rows without holding the file in memory; fetching the files that file and image
//! fields name by URL; keeping finished export files, locally or in an S3-compatible bucket;
//! receiving uploads.

pub mod fetch;
pub mod json;
pub mod limits;
pub mod object;
pub mod reader;
pub mod samples;
pub mod uploads;

/// A `Content-Disposition` value that downloads the file as `name` (characters outside
/// `[A-Za-z0-9._-]` become `_`, so no header injection and no path).
pub fn attachment(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).collect();
    format!("attachment; filename=\"{safe}\"")
}

pub use limits::Limits;
pub use reader::{FileInfo, FileProblem, Format, RowVisitor, sniff, visit_rows};
