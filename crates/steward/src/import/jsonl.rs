//! JSON lines: one object per line, with the fields a CSV file's columns would have. Known
//! fields are read as text (numbers and booleans as written), the others keep their JSON
//! types as traits, attributes or properties. Blank lines are skipped.

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value};

use super::{Parser, Row, content_key, steward_name};

/// Line `line` of a JSON-lines file (without its line end) as a row; `None` if it is blank.
/// A JSON line never holds a raw line end, so a file is cut into chunks at any of them.
pub(super) fn row<'a>(bytes: &'a [u8], parser: &Parser, line: u64) -> Result<Option<JsonRow<'a>>> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow!("{} line {line}: not valid UTF-8", parser.file))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).trim();
    if text.is_empty() {
        return Ok(None);
    }
    JsonRow::parse(text, parser, line).map(Some)
}

/// One line's object: Steward's fields as text, the others as they were.
pub(super) struct JsonRow<'a> {
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

    fn key(&self) -> u128 {
        content_key(std::iter::once(self.text))
    }
}
