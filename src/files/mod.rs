//! Uploaded files: recognizing CSV and XLSX, reading their header row, and streaming
//! their rows without holding the file in memory; fetching the files that file and image
//! fields name by URL.

pub mod fetch;
pub mod reader;

pub use reader::{FileInfo, FileProblem, Format, RowVisitor, sniff, visit_rows};
