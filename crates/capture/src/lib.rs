//! Segment-compatible capture: turns the body of a Segment HTTP Tracking API request into
//! validated, normalized events, or says precisely what is wrong with it. Pure: no IO.
//!
//! What it follows from the Segment spec: the six message types and their required fields,
//! batch-level `context`/`integrations` merged into each message, `context.traits` merged into
//! an identify's traits, the write key in the body (`writeKey`), clock-skew correction
//! (`timestamp = receivedAt - (sentAt - originalTimestamp)`), and the size limits (32 KB per
//! message, 500 KB per batch, 2,500 messages per batch).

mod body;
mod message;
mod time;

pub use body::{BodyError, decode_body};
pub use message::{Rejection, normalize_message};
pub use time::parse_timestamp;

use domain::{EventType, NewEvent, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Segment's limits. A request over them is refused whole; a message over them is rejected alone.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_batch_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_bytes: 32 * 1024, max_batch_bytes: 500 * 1024, max_batch_messages: 2_500 }
    }
}

/// Why a whole request is refused: nothing of it is stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("the body has no `batch` array")]
    MissingBatch,
    #[error("the batch has {count} messages; at most {limit} are accepted per batch")]
    TooManyMessages { count: usize, limit: usize },
    #[error("the message is {size} bytes; at most {limit} are accepted per message")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("`{field}` must be {expected}")]
    InvalidField { field: &'static str, expected: &'static str },
}

/// A parsed request: the events to store, the messages rejected, and the write key if the
/// body carried one.
#[derive(Debug, Default)]
pub struct Parsed {
    pub write_key: Option<String>,
    pub events: Vec<NewEvent>,
    pub rejected: Vec<Rejection>,
    /// How many messages the request held.
    pub received: usize,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    integrations: Option<Value>,
    #[serde(rename = "writeKey", default)]
    write_key: Option<Value>,
    #[serde(rename = "sentAt", default)]
    sent_at: Option<Value>,
}

/// Shared by every message of a batch.
#[derive(Default)]
pub struct BatchDefaults {
    pub context: Option<Map<String, Value>>,
    pub integrations: Option<Map<String, Value>>,
    pub sent_at: Option<Timestamp>,
}

/// Parses a `/v1/batch` body (already decompressed).
pub fn parse_batch(body: &[u8], received_at: Timestamp, limits: &Limits) -> Result<Parsed, RequestError> {
    if body.len() > limits.max_batch_bytes {
        return Err(BodyError::TooLarge { limit: limits.max_batch_bytes }.into());
    }
    let parsed: BatchBody<'_> = serde_json::from_slice(body).map_err(json_error)?;
    let messages = parsed.batch.ok_or(RequestError::MissingBatch)?;
    if messages.len() > limits.max_batch_messages {
        return Err(RequestError::TooManyMessages { count: messages.len(), limit: limits.max_batch_messages });
    }
    let defaults = BatchDefaults {
        context: optional_object(parsed.context, "context")?,
        integrations: optional_object(parsed.integrations, "integrations")?,
        sent_at: match parsed.sent_at {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                parse_timestamp(&s)
                    .ok_or(RequestError::InvalidField { field: "sentAt", expected: "an ISO 8601 timestamp" })?,
            ),
            Some(_) => return Err(RequestError::InvalidField { field: "sentAt", expected: "an ISO 8601 timestamp" }),
        },
    };
    let write_key = string_key(parsed.write_key)?;
    let mut out = Parsed { write_key, received: messages.len(), ..Parsed::default() };
    out.events.reserve(messages.len());
    for (index, raw) in messages.into_iter().enumerate() {
        match normalize_message(raw.get(), None, &defaults, received_at, limits) {
            Ok(ev) => out.events.push(ev),
            Err(mut r) => {
                r.index = index;
                out.rejected.push(r);
            }
        }
    }
    Ok(out)
}

/// Parses the body of a single-message endpoint (`/v1/track`, `/v1/identify`, ...).
pub fn parse_single(
    kind: EventType,
    body: &[u8],
    received_at: Timestamp,
    limits: &Limits,
) -> Result<Parsed, RequestError> {
    if body.len() > limits.max_message_bytes {
        return Err(RequestError::MessageTooLarge { size: body.len(), limit: limits.max_message_bytes });
    }
    let value: Value = serde_json::from_slice(body).map_err(json_error)?;
    let Value::Object(mut obj) = value else { return Err(RequestError::NotAnObject) };
    let write_key = string_key(obj.remove("writeKey"))?;
    let mut out = Parsed { write_key, received: 1, ..Parsed::default() };
    match message::normalize_object(obj, Some(kind), &BatchDefaults::default(), received_at, body) {
        Ok(ev) => out.events.push(ev),
        Err(r) => out.rejected.push(r),
    }
    Ok(out)
}

fn json_error(e: serde_json::Error) -> RequestError {
    if e.is_data() {
        // Valid JSON of the wrong shape, e.g. `batch` that is not an array.
        RequestError::InvalidJson(e.to_string())
    } else {
        RequestError::InvalidJson(format!("{} at line {} column {}", describe(&e), e.line(), e.column()))
    }
}

fn describe(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        _ => "invalid JSON",
    }
}

fn optional_object(v: Option<Value>, field: &'static str) -> Result<Option<Map<String, Value>>, RequestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(RequestError::InvalidField { field, expected: "an object" }),
    }
}

fn string_key(v: Option<Value>) -> Result<Option<String>, RequestError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RequestError::InvalidField { field: "writeKey", expected: "a string" }),
    }
}

#[cfg(test)]
mod tests;
