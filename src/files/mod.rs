//! Uploaded files: recognizing CSV and XLSX, reading their header row, and streaming
//! their rows without holding the file in memory; fetching the files that file and image
//! fields name by URL; keeping finished export files, locally or in an S3-compatible bucket.

pub mod fetch;
pub mod object;
pub mod reader;

pub use reader::{FileInfo, FileProblem, Format, RowVisitor, sniff, visit_rows};

pub fn attachment(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).collect();
    format!("attachment; filename=\"{safe}\"")
}
