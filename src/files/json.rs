//! JSON uploads of the API: a JSON array of objects or JSON Lines (one object per line),
//! turned into a CSV file as they are read (never whole in memory), so the importer reads
//! them as it reads any CSV. The first object's fields are the header; a later object may
//! leave fields out but may not bring new ones. Strings stay as they are, numbers and
//! booleans become their JSON text, null an empty cell, and an array of plain values the
//! values separated by spaces (as tags and multiple-choice cells are written).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::Path;

use serde::de::{Deserializer as _, Error as _, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Writes rows out as CSV, the header taken from the first object.
struct Sink {
    out: csv::Writer<BufWriter<File>>,
    headers: Option<Vec<String>>,
    rows: u64,
    max_rows: u64,
    max_columns: usize,
}

/// One JSON value as a cell.
fn cell(v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let mut parts = vec![];
            for item in items {
                match item {
                    Value::Array(_) | Value::Object(_) => {
                        return Err("holds a list of lists or objects; a cell takes plain values".into());
                    }
                    other => parts.push(cell(other)?),
                }
            }
            parts.join(" ")
        }
        Value::Object(_) => return Err("is an object; a cell takes a plain value or a list of them".into()),
    })
}

impl Sink {
    /// `what` names the object for errors ("element 3", "line 7").
    fn push(&mut self, obj: &Map<String, Value>, what: &str) -> Result<(), String> {
        self.rows += 1;
        if self.rows > self.max_rows {
            return Err(format!("the upload has more than {} rows (STEVEDORE_MAX_ROWS)", self.max_rows));
        }
        if self.headers.is_none() {
            if obj.is_empty() {
                return Err(format!("{what} is an empty object: the first object names the columns"));
            }
            if obj.len() > self.max_columns {
                return Err(format!(
                    "{what} has {} fields, more than {} (STEVEDORE_MAX_COLUMNS)",
                    obj.len(),
                    self.max_columns
                ));
            }
            let headers: Vec<String> = obj.keys().cloned().collect();
            self.out.write_record(&headers).map_err(|e| e.to_string())?;
            self.headers = Some(headers);
        }
        let headers = self.headers.as_deref().unwrap_or_default();
        if let Some(extra) = obj.keys().find(|k| !headers.contains(k)) {
            return Err(format!(
                "{what} has the field \"{extra}\", which the first object does not have (the first object names the columns)"
            ));
        }
        let mut cells = Vec::with_capacity(headers.len());
        for h in headers {
            cells.push(match obj.get(h) {
                Some(v) => cell(v).map_err(|why| format!("{what}, field \"{h}\" {why}"))?,
                None => String::new(),
            });
        }
        self.out.write_record(&cells).map_err(|e| e.to_string())
    }
}

/// Reads the array's elements one at a time into the sink.
struct Elements<'a>(&'a mut Sink);

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0u64;
        loop {
            n += 1;
            let what = format!("element {n}");
            let next = seq.next_element::<Value>()?;
            let Some(v) = next else { return Ok(()) };
            let Value::Object(obj) = v else {
                return Err(A::Error::custom(format!("{what} is not an object")));
            };
            self.0.push(&obj, &what).map_err(A::Error::custom)?;
        }
    }
}

/// Turns the JSON (`lines`: JSON Lines) at `src` into CSV at `dst`; the number of rows, or
/// why the upload cannot be read, naming the element or line.
pub fn to_csv(src: &Path, dst: &Path, lines: bool, limits: &super::Limits) -> Result<u64, String> {
    let input = BufReader::with_capacity(1 << 16, File::open(src).map_err(|e| e.to_string())?);
    let out = BufWriter::new(File::create(dst).map_err(|e| e.to_string())?);
    let mut sink = Sink {
        out: csv::Writer::from_writer(out),
        headers: None,
        rows: 0,
        max_rows: limits.max_rows,
        max_columns: limits.max_columns,
    };
    if lines {
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let what = format!("line {}", i + 1);
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(obj)) => sink.push(&obj, &what)?,
                Ok(_) => return Err(format!("{what} is not a JSON object")),
                Err(e) => return Err(format!("{what} is not valid JSON: {e}")),
            }
        }
    } else {
        let mut de = serde_json::Deserializer::from_reader(input);
        de.deserialize_seq(Elements(&mut sink)).map_err(|e| e.to_string())?;
        de.end().map_err(|e| format!("after the array: {e}"))?;
    }
    if sink.headers.is_none() {
        return Err("the upload holds no objects, so there is nothing to import".into());
    }
    sink.out.flush().map_err(|e| e.to_string())?;
    Ok(sink.rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &str, lines: bool) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("in.json"), dir.path().join("out.csv"));
        std::fs::write(&src, text).unwrap();
        to_csv(&src, &dst, lines, &crate::files::Limits::default())?;
        Ok(std::fs::read_to_string(&dst).unwrap())
    }

    #[test]
    fn an_array_of_objects_becomes_csv_with_the_first_objects_fields() {
        let csv = convert(r#"[{"code":"A","n":4,"ok":true,"tags":["x","y"]},{"code":"B,C","n":null}]"#, false).unwrap();
        assert_eq!(csv, "code,n,ok,tags\nA,4,true,x y\n\"B,C\",,,\n");
    }

    #[test]
    fn json_lines_skip_blank_lines() {
        let csv = convert("{\"code\":\"A\"}\n\n{\"code\":\"B\"}\n", true).unwrap();
        assert_eq!(csv, "code\nA\nB\n");
    }

    #[test]
    fn problems_name_the_element_or_line() {
        assert!(convert(r#"[{"a":1},{"b":2}]"#, false).unwrap_err().contains("element 2 has the field \"b\""));
        assert!(convert(r#"[{"a":1},3]"#, false).unwrap_err().contains("element 2 is not an object"));
        assert!(convert(r#"[{"a":{"x":1}}]"#, false).unwrap_err().contains("element 1, field \"a\" is an object"));
        assert!(convert("{\"a\":1}\nnot json\n", true).unwrap_err().contains("line 2 is not valid JSON"));
        assert!(convert("[]", false).unwrap_err().contains("no objects"));
        assert!(convert(r#"{"a":1}"#, false).is_err(), "an object is not an array");
        assert!(convert(r#"[{"a":1}] x"#, false).unwrap_err().contains("after the array"));
    }
}
