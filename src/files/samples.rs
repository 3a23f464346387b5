//! The first rows of a file, read once at upload for the mapping step: a few values of each
//! column (a person sees what a column holds before choosing it for a field) and a profile
//! of each column's values (what formats and enum value mappings are proposed from).

use std::path::Path;

use super::reader::{FileInfo, visit_rows};
use crate::domain::imports::detect::{ColumnProfile, FileProfile, PROFILE_ROWS};

/// Rows read for samples: enough to meet values in sparse columns, few enough to be instant.
pub const SAMPLE_ROWS: usize = 20;
/// Values kept per column.
pub const PER_COLUMN: usize = 3;
/// Characters of a value shown; a longer one is cut with an ellipsis.
const MAX_CHARS: usize = 40;

/// Up to `PER_COLUMN` distinct non-blank values of each column (in the header's order) from
/// the first `SAMPLE_ROWS` data rows, and the distinct values of each column with their rows
/// over the first [`PROFILE_ROWS`], in one read of the file. Best effort: a row
/// that cannot be read ends both (validation names it), it does not refuse the file.
pub fn first_rows(path: &Path, info: &FileInfo) -> (Vec<Vec<String>>, FileProfile) {
    let mut samples: Vec<Vec<String>> = vec![vec![]; info.headers.len()];
    let mut profile =
        FileProfile { rows: 0, complete: true, columns: vec![ColumnProfile::default(); info.headers.len()] };
    let _ = visit_rows(path, info, &mut |_, cells| {
        if profile.rows == PROFILE_ROWS {
            profile.complete = false;
            return Ok(false);
        }
        if profile.rows < SAMPLE_ROWS as u64 {
            for (kept, cell) in samples.iter_mut().zip(cells) {
                let value = shorten(cell.trim());
                if kept.len() < PER_COLUMN && !value.is_empty() && !kept.contains(&value) {
                    kept.push(value);
                }
            }
        }
        for (column, cell) in profile.columns.iter_mut().zip(cells) {
            column.add(cell);
        }
        profile.rows += 1;
        Ok(true)
    });
    (samples, profile)
}

/// One line of at most `MAX_CHARS` characters.
fn shorten(value: &str) -> String {
    let line = value.split(['\r', '\n']).next().unwrap_or("");
    let cut = line.chars().count() > MAX_CHARS || line.len() < value.len();
    if cut {
        let mut s: String = line.chars().take(MAX_CHARS - 1).collect();
        s.push('…');
        s
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{Limits, sniff};

    fn samples_of(text: &str) -> Vec<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, text).unwrap();
        let info = sniff(&path, None, &Limits::default()).unwrap();
        first_rows(&path, &info).0
    }

    #[test]
    fn each_column_keeps_its_first_distinct_non_blank_values() {
        let s = samples_of("code,name,kind\nA1,North,\nA2,North,depot\nA3, South ,depot\nA4,East,store\n");
        assert_eq!(s, vec![vec!["A1", "A2", "A3"], vec!["North", "South", "East"], vec!["depot", "store"]]);
    }

    #[test]
    fn long_and_multi_line_values_are_cut_and_a_bad_row_ends_the_sample() {
        let long = "x".repeat(100);
        let s = samples_of(&format!("a,b\n{long},\"one\ntwo\"\n"));
        assert_eq!(s[0], vec![format!("{}…", "x".repeat(39))]);
        assert_eq!(s[1], vec!["one…"]);
        // a quote left open: the rows before it are the sample
        let s = samples_of("a,b\n1,2\n3,\"open\n");
        assert_eq!(s[0][0], "1");
    }

    #[test]
    fn a_profile_counts_each_columns_values_and_says_whether_it_read_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, "d,s\n2012/01/01,on\n2012/01/02,on\n,off\n").unwrap();
        let info = sniff(&path, None, &Limits::default()).unwrap();
        let p = first_rows(&path, &info).1;
        assert_eq!((p.rows, p.complete), (3, true));
        assert_eq!(p.columns[1].values, vec![("on".to_string(), 2), ("off".to_string(), 1)]);
        assert_eq!(p.columns[0].values.len(), 2, "blanks are not values");
        let mut text = String::from("a\n");
        for i in 0..=PROFILE_ROWS {
            text.push_str(&format!("{}\n", i % 3));
        }
        std::fs::write(&path, text).unwrap();
        let info = sniff(&path, None, &Limits::default()).unwrap();
        let p = first_rows(&path, &info).1;
        assert_eq!((p.rows, p.complete), (PROFILE_ROWS, false));
        assert_eq!(p.columns[0].values.iter().map(|(_, n)| n).sum::<u64>(), PROFILE_ROWS);
    }

    #[test]
    fn samples_come_from_the_first_rows_only() {
        let mut text = String::from("a\n");
        for i in 0..SAMPLE_ROWS {
            text.push_str(&format!("{}\n", i % 2));
        }
        text.push_str("late\n");
        assert_eq!(samples_of(&text), vec![vec!["0", "1"]], "the row after the sample rows is not sampled");
    }
}
