//! JSON lines: one object per line, with the fields a CSV file's columns would have. Known
//! fields are read as text (numbers and booleans as written), the others keep their JSON
//! types as traits, attributes or properties. Blank lines are skipped.

use std::io::BufRead;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Parser, Record, Row, progress, steward_name};

/// The objects of a JSON-lines file, through `each`.
pub(super) fn rows(
    mut input: Box<dyn BufRead>,
    parser: &mut Parser,
    each: &mut impl FnMut(Record) -> Result<()>,
    progress: &mut progress::Bar,
) -> Result<u64> {
    let file = parser.file.clone();
    let mut buf = Vec::new();
    let (mut line, mut rows) = (0u64, 0u64);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf).with_context(|| format!("{file}: reading line {}", line + 1))? == 0 {
            break;
        }
        line += 1;
        let text = std::str::from_utf8(&buf).map_err(|_| anyhow!("{file} line {line}: not valid UTF-8"))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text).trim();
        if text.is_empty() {
            continue;
        }
        let row = JsonRow::parse(text, parser, line)?;
        each(parser.parse(&row, line)?)?;
        rows += 1;
        progress.tick(rows);
    }
    Ok(rows)
}

/// One line's object: Steward's fields as text, the others as they were.
struct JsonRow<'a> {
    text: &'a str,
    known: Vec<(&'static str, String)>,
    extra: Map<String, Value>,
}

impl<'a> JsonRow<'a> {
    fn parse(text: &'a str, parser: &Parser, line: u64) -> Result<JsonRow<'a>> {
        let file = &parser.file;
        let object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => o,
            Ok(other) => bail!("{file} line {line}: {} where an object was expected", type_name(&other)),
            Err(e) => {
                let reason = e.to_string();
                let reason = reason.rfind(" at line ").map_or(reason.as_str(), |i| &reason[..i]);
                bail!("{file} line {line}: not valid JSON at column {}: {reason}", e.column())
            }
        };
        let (kind, mapping) = (parser.options.kind, &parser.options.columns);
        let mut row = JsonRow { text, known: Vec::new(), extra: Map::new() };
        for (field, value) in object {
            if value.is_null() {
                continue;
            }
            let Some(name) = steward_name(kind, mapping, &field) else {
                row.extra.insert(field, value);
                continue;
            };
            let text = match &value {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    let named = if field == name { format!("{name:?}") } else { format!("{field:?} ({name})") };
                    bail!("{file} line {line}: field {named} is {}, expected text or a number", type_name(&value))
                }
            };
            if !text.is_empty() {
                row.known.push((name, text));
            }
        }
        Ok(row)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Row for JsonRow<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.known.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn extra(&self) -> Map<String, Value> {
        self.extra.clone()
    }

    fn digest(&self, h: &mut Sha256) {
        h.update(self.text.as_bytes());
    }
}
