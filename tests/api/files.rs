//! Reading uploaded files: CSV dialects and encodings, binary refusal, XLSX sheets.

use std::path::{Path, PathBuf};

use stevedore::files::{FileProblem, Format, sniff, visit_rows};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn rows(path: &Path) -> Result<Vec<(u64, Vec<String>)>, FileProblem> {
    let info = sniff(path, None, &Default::default())?;
    let mut out = vec![];
    visit_rows(path, &info, &mut |n, cells| {
        out.push((n, cells.to_vec()));
        Ok(true)
    })?;
    Ok(out)
}

/// Copies an XLSX (a zip) with one text replacement in one entry, to craft malformed files.
fn patch_zip_entry(path: &Path, entry: &str, from: &str, to: &str) -> PathBuf {
    use std::io::{Read, Write};
    let out_path = path.with_extension("patched.xlsx");
    let mut src = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(&out_path).unwrap());
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if name == entry {
            let text = String::from_utf8(data).unwrap();
            assert!(text.contains(from), "{entry} has no {from}");
            data = text.replacen(from, to, 1).into_bytes();
        }
        out.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap();
    out_path
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn csv_with_bom_quotes_and_embedded_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "a.csv",
        b"\xEF\xBB\xBFcode,name,notes\r\nLOC-1,\"Main, North\",\"line one\nline two\"\r\n\r\nLOC-2,Annex,\"say \"\"hi\"\"\"\r\n",
    );
    let info = sniff(&p, None, &Default::default()).unwrap();
    assert_eq!(info.format, Format::Csv { delimiter: b',' });
    assert_eq!(info.headers, strings(&["code", "name", "notes"]), "the BOM is not part of the first header");
    let r = rows(&p).unwrap();
    assert_eq!(r.len(), 2, "blank lines are skipped");
    assert_eq!(r[0], (2, strings(&["LOC-1", "Main, North", "line one\nline two"])));
    assert_eq!(
        r[1],
        (3, strings(&["LOC-2", "Annex", "say \"hi\""])),
        "one record is one row; blank lines are not counted"
    );
}

#[test]
fn semicolon_and_tab_files() {
    let dir = tempfile::tempdir().unwrap();
    let semi = write(dir.path(), "s.csv", "code;name;amount\nLOC-1;Café;19,99\n".as_bytes());
    assert_eq!(sniff(&semi, None, &Default::default()).unwrap().format.describe(), "CSV (semicolon-separated)");
    assert_eq!(rows(&semi).unwrap()[0].1, strings(&["LOC-1", "Café", "19,99"]));
    let tab = write(dir.path(), "t.tsv", b"code\tname\nLOC-1\tMain\n");
    assert_eq!(sniff(&tab, None, &Default::default()).unwrap().format, Format::Csv { delimiter: b'\t' });
    assert_eq!(rows(&tab).unwrap()[0].1, strings(&["LOC-1", "Main"]));
}

#[test]
fn other_encodings_and_binary_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let latin1 = write(dir.path(), "l.csv", b"code,name\nLOC-1,Caf\xE9\n");
    let e = sniff(&latin1, None, &Default::default()).unwrap_err();
    assert_eq!(e, FileProblem::NotUtf8 { line: 2 });
    assert!(e.to_string().contains("Save it as \"CSV UTF-8\""), "{e}");
    let png = write(dir.path(), "p.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR");
    assert_eq!(sniff(&png, None, &Default::default()).unwrap_err(), FileProblem::Binary);
    let utf16 = write(dir.path(), "u.csv", b"\xFF\xFEc\x00o\x00d\x00e\x00");
    assert_eq!(sniff(&utf16, None, &Default::default()).unwrap_err(), FileProblem::Binary);
    assert_eq!(sniff(&write(dir.path(), "e.csv", b""), None, &Default::default()).unwrap_err(), FileProblem::Empty);
    // a bad byte past the part sniffed is found while reading, with its line
    let mut big = b"code,name\n".to_vec();
    for i in 0..5000 {
        big.extend_from_slice(format!("LOC-{i},Clinic number {i}\n").as_bytes());
    }
    big.extend_from_slice(b"LOC-X,Caf\xE9\n");
    let late = write(dir.path(), "late.csv", &big);
    assert!(sniff(&late, None, &Default::default()).is_ok());
    match rows(&late).unwrap_err() {
        FileProblem::NotUtf8 { line } => assert_eq!(line, 5002),
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let dup = write(dir.path(), "d.csv", b"code,name,Code\n1,2,3\n");
    assert_eq!(
        sniff(&dup, None, &Default::default()).unwrap_err().to_string(),
        "The header \"Code\" appears twice (columns 1 and 3); column names must be unique."
    );
    let blank = write(dir.path(), "b.csv", b"code,,name\n");
    assert_eq!(sniff(&blank, None, &Default::default()).unwrap_err(), FileProblem::BlankHeader { column: 2 });
    let only = write(dir.path(), "o.csv", b"code,name\n");
    assert!(rows(&only).unwrap().is_empty());
}

#[test]
fn xlsx_first_or_chosen_sheet_with_typed_cells() {
    use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.xlsx");
    let mut wb = Workbook::new();
    let notes = wb.add_worksheet().set_name("Notes").unwrap();
    notes.write_string(0, 0, "not this one").unwrap();
    let ws = wb.add_worksheet().set_name("Clients").unwrap();
    let date = XFormat::new().set_num_format("yyyy-mm-dd");
    for (c, h) in ["client_number", "capacity", "budget", "birth_date", "active", "notes"].iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    ws.write_string(1, 0, "CL-1").unwrap();
    ws.write_number(1, 1, 42.0).unwrap();
    ws.write_number(1, 2, 19.99).unwrap();
    ws.write_datetime_with_format(1, 3, ExcelDateTime::from_ymd(1990, 4, 17).unwrap(), &date).unwrap();
    ws.write_boolean(1, 4, true).unwrap();
    // row 3 is empty; row 4 has a gap
    ws.write_string(3, 0, "CL-2").unwrap();
    ws.write_string(3, 5, "two\nlines").unwrap();
    wb.save(&path).unwrap();

    let first = sniff(&path, None, &Default::default()).unwrap();
    assert_eq!(first.format, Format::Xlsx { sheet: "Notes".into() });
    assert_eq!(first.sheets, strings(&["Notes", "Clients"]));
    let info = sniff(&path, Some("Clients"), &Default::default()).unwrap();
    assert_eq!(info.headers, strings(&["client_number", "capacity", "budget", "birth_date", "active", "notes"]));
    let mut out = vec![];
    visit_rows(&path, &info, &mut |n, cells| {
        out.push((n, cells.to_vec()));
        Ok(true)
    })
    .unwrap();
    assert_eq!(out[0], (2, strings(&["CL-1", "42", "19.99", "1990-04-17", "true"])));
    assert_eq!(
        out[1],
        (4, strings(&["CL-2", "", "", "", "", "two\nlines"])),
        "row numbers as the spreadsheet shows them"
    );
    assert_eq!(
        sniff(&path, Some("Missing"), &Default::default()).unwrap_err(),
        FileProblem::SheetNotFound("Missing".into())
    );
    let fake = write(dir.path(), "fake.xlsx", b"PK\x03\x04 not really a zip");
    // a cell far beyond the last column is refused instead of allocating for it
    let wide = dir.path().join("wide.xlsx");
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "code").unwrap();
    ws.write_string(1, 0, "A").unwrap();
    wb.save(&wide).unwrap();
    let patched = patch_zip_entry(&wide, "xl/worksheets/sheet1.xml", "r=\"A2\"", "r=\"FXSHRXW2\"");
    let info = sniff(&patched, None, &Default::default()).unwrap();
    let err = visit_rows(&patched, &info, &mut |_, _| Ok(true)).unwrap_err();
    assert!(err.to_string().contains("beyond column XFD"), "{err}");
    assert!(matches!(sniff(&fake, None, &Default::default()).unwrap_err(), FileProblem::Xlsx(_)));
}
