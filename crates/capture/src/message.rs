//! One message: its required fields by type, its timestamps, its merged context.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::time::{format_timestamp, parse_timestamp};
use crate::{BatchDefaults, Limits};
use domain::{EventType, NewEvent, Timestamp};

/// Longest accepted id (`userId`, `anonymousId`, `groupId`, `messageId`, `previousId`).
const MAX_ID_BYTES: usize = 256;

/// Why one message of a request was not stored. The others are unaffected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The message's position in the batch (0 for single-message endpoints).
    pub index: usize,
    /// A stable, documented code.
    pub code: &'static str,
    /// The field at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    pub message: String,
}

fn reject(code: &'static str, field: Option<&'static str>, message: impl Into<String>) -> Rejection {
    Rejection { index: 0, code, field, message: message.into() }
}

/// Validates and normalizes one message of a batch, given as JSON text.
pub fn normalize_message(
    raw: &str,
    forced_kind: Option<EventType>,
    defaults: &BatchDefaults,
    received_at: Timestamp,
    limits: &Limits,
) -> Result<NewEvent, Rejection> {
    if raw.len() > limits.max_message_bytes {
        return Err(reject(
            "message_too_large",
            None,
            format!("the message is {} bytes; at most {} are accepted", raw.len(), limits.max_message_bytes),
        ));
    }
    let obj = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(m)) => m,
        _ => return Err(reject("not_an_object", None, "each message must be a JSON object")),
    };
    normalize_object(obj, forced_kind, defaults, received_at, raw.as_bytes())
}

/// Validates and normalizes one message. `raw` is its original text, used to derive a
/// stable `messageId` when the client sent none, so that a retry is still deduplicated.
pub(crate) fn normalize_object(
    mut m: Map<String, Value>,
    forced_kind: Option<EventType>,
    defaults: &BatchDefaults,
    received_at: Timestamp,
    raw: &[u8],
) -> Result<NewEvent, Rejection> {
    let kind = match forced_kind {
        Some(k) => k,
        None => match m.get("type") {
            Some(Value::String(s)) => {
                s.parse::<EventType>().map_err(|e| reject("invalid_type", Some("type"), e.to_string()))?
            }
            Some(_) => return Err(reject("invalid_type", Some("type"), "`type` must be a string")),
            None => return Err(reject("missing_type", Some("type"), "`type` is required in a batch")),
        },
    };
    m.insert("type".into(), Value::String(kind.as_str().into()));
    m.remove("writeKey");

    let user_id = id_field(&m, "userId")?;
    let anonymous_id = id_field(&m, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(reject("missing_identity", Some("userId"), "either `userId` or `anonymousId` is required"));
    }
    for (field, v) in [("userId", &user_id), ("anonymousId", &anonymous_id)] {
        if let Some(v) = v {
            m.insert(field.into(), Value::String(v.clone()));
        }
    }

    for field in ["properties", "traits", "context", "integrations"] {
        match m.get(field) {
            None | Some(Value::Object(_)) => {}
            Some(Value::Null) => {
                m.remove(field);
            }
            Some(_) => return Err(reject("invalid_field", Some(field), format!("`{field}` must be an object"))),
        }
    }
    merge_defaults(&mut m, "context", defaults.context.as_ref());
    merge_defaults(&mut m, "integrations", defaults.integrations.as_ref());

    let mut name = None;
    let mut group_id = None;
    let mut previous_id = None;
    match kind {
        EventType::Track => match m.get("event") {
            Some(Value::String(s)) if !s.trim().is_empty() => name = Some(s.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(reject("missing_event", Some("event"), "a track needs a non-empty `event` name"));
            }
            Some(_) => return Err(reject("invalid_field", Some("event"), "`event` must be a string")),
        },
        EventType::Page | EventType::Screen => match m.get("name") {
            Some(Value::String(s)) => name = Some(s.clone()),
            None | Some(Value::Null) => {}
            Some(_) => return Err(reject("invalid_field", Some("name"), "`name` must be a string")),
        },
        EventType::Group => {
            group_id = id_field(&m, "groupId")?;
            let Some(g) = &group_id else {
                return Err(reject("missing_group_id", Some("groupId"), "a group call needs a `groupId`"));
            };
            m.insert("groupId".into(), Value::String(g.clone()));
        }
        EventType::Alias => {
            previous_id = id_field(&m, "previousId")?;
            if previous_id.is_none() {
                return Err(reject("missing_previous_id", Some("previousId"), "an alias needs a `previousId`"));
            }
            if user_id.is_none() {
                return Err(reject("missing_identity", Some("userId"), "an alias needs the new `userId`"));
            }
        }
        EventType::Identify => {
            // `context.traits` are the client's idea of the user's traits; the message's own win.
            let ctx_traits = m.get("context").and_then(|c| c.get("traits")).and_then(Value::as_object).cloned();
            if let Some(ctx_traits) = ctx_traits {
                let traits = m.entry("traits").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(t) = traits {
                    for (k, v) in ctx_traits {
                        t.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
    if kind != EventType::Group {
        group_id = match m.get("context").and_then(|c| c.get("groupId")) {
            None | Some(Value::Null) => None,
            Some(v) => Some(id_value(v, "context.groupId")?),
        };
    }

    let message_id = match id_field(&m, "messageId")? {
        Some(id) => id,
        None => {
            let id = format!("derived-{}", hex::encode(&Sha256::digest(raw)[..16]));
            m.insert("messageId".into(), Value::String(id.clone()));
            id
        }
    };

    let original = time_field(&m, "timestamp")?.or(time_field(&m, "originalTimestamp")?);
    let sent_at = time_field(&m, "sentAt")?.or(defaults.sent_at);
    let timestamp = match (original, sent_at) {
        (Some(t), Some(sent)) => received_at - (sent - t),
        (Some(t), None) => t,
        (None, _) => received_at,
    };
    if let Some(t) = original {
        m.insert("originalTimestamp".into(), Value::String(format_timestamp(&t)));
    }
    if let Some(s) = sent_at {
        m.insert("sentAt".into(), Value::String(format_timestamp(&s)));
    }
    m.insert("timestamp".into(), Value::String(format_timestamp(&timestamp)));
    m.insert("receivedAt".into(), Value::String(format_timestamp(&received_at)));

    Ok(NewEvent {
        message_id,
        kind,
        name,
        user_id,
        anonymous_id,
        group_id,
        previous_id,
        timestamp,
        received_at,
        payload: Value::Object(m).to_string(),
    })
}

/// Merges the batch's `context` (or `integrations`) under the message's own: the message wins.
fn merge_defaults(m: &mut Map<String, Value>, field: &str, defaults: Option<&Map<String, Value>>) {
    let Some(defaults) = defaults else { return };
    let entry = m.entry(field).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(own) = entry {
        for (k, v) in defaults {
            own.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// An id may be sent as a string or a number (some SDKs send numeric user ids); it is kept as
/// a string. Empty strings count as absent, as in Segment.
fn id_field(m: &Map<String, Value>, field: &'static str) -> Result<Option<String>, Rejection> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(v) => id_value(v, field).map(Some),
    }
}

fn id_value(v: &Value, field: &'static str) -> Result<String, Rejection> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(reject("invalid_field", Some(field), format!("`{field}` must be a string or a number"))),
    };
    if s.len() > MAX_ID_BYTES {
        return Err(reject("invalid_field", Some(field), format!("`{field}` is longer than {MAX_ID_BYTES} bytes")));
    }
    Ok(s)
}

fn time_field(m: &Map<String, Value>, field: &'static str) -> Result<Option<Timestamp>, Rejection> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timestamp(s).map(Some).ok_or_else(|| {
            reject("invalid_timestamp", Some(field), format!("`{field}` is not an ISO 8601 timestamp: {s:?}"))
        }),
        Some(_) => Err(reject("invalid_timestamp", Some(field), format!("`{field}` must be an ISO 8601 string"))),
    }
}
