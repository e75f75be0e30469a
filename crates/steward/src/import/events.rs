//! What an imported event row becomes: its message id when the file gives none, and its
//! payload, written directly (an import writes millions of them).
//!
//! A row without a message id gets one from its content, `import_<key>_<n>`: the 128-bit
//! [`content_key`](super::content_key) of its fields and `n`, how many rows with the same content came before it plus
//! one. Importing the same file again gives the same ids, so it stores nothing twice. Rows are
//! parsed on several threads, so `n` is settled in two steps (see [`RowKeys`]).

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use domain::NewEvent;
use serde_json::Value;

/// `import_<32 hex digits>_<n>`.
pub(super) fn derived_id(key: u128, n: u32) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(7 + 32 + 1 + 10);
    id.push_str("import_");
    for i in (0..32).rev() {
        id.push(HEX[((key >> (i * 4)) & 0xf) as usize] as char);
    }
    if n == 1 {
        id.push_str("_1");
    } else {
        let _ = write!(id, "_{n}");
    }
    id
}

/// Gives an event built with the derived id of the first row of its content (`_1`) that of
/// the `n`th, in its message id and its payload.
pub(super) fn renumber(event: &mut NewEvent, n: u32) {
    let Some(stem) = event.message_id.strip_suffix("_1") else { return };
    let id = format!("{stem}_{n}");
    let (old, new) = (format!("\"messageId\":\"{}\"", event.message_id), format!("\"messageId\":\"{id}\""));
    event.payload = event.payload.replacen(&old, &new, 1);
    event.message_id = id;
}

/// The keys of event rows whose id is derived from their content, collected while checking
/// and used while storing. Chunks of rows are parsed on several threads, so a parser cannot
/// count the copies before its row; instead the check finds the keys that occur more than
/// once, and while storing a row with such a key is numbered in file order by the reader
/// that puts the chunks back in order. Every other row is the only one of its content.
pub(super) enum RowKeys {
    /// Checking: 64 bits of each key, to find those that repeat.
    Collect(Vec<u64>),
    /// Storing: the keys that repeat, and the last row's if it is one of them.
    Number { repeated: Arc<foldhash::HashSet<u64>>, last: Option<u64> },
}

impl RowKeys {
    pub(super) fn add(&mut self, key: u128) {
        match self {
            RowKeys::Collect(keys) => keys.push(key as u64),
            RowKeys::Number { repeated, last } => {
                *last = repeated.contains(&(key as u64)).then_some(key as u64);
            }
        }
    }

    /// The key of the row parsed last, if it may have copies before it.
    pub(super) fn take_repeated(&mut self) -> Option<u64> {
        match self {
            RowKeys::Collect(_) => None,
            RowKeys::Number { last, .. } => last.take(),
        }
    }
}

/// The keys that occur more than once among `keys`.
pub(super) fn repeated(mut keys: Vec<u64>) -> foldhash::HashSet<u64> {
    keys.sort_unstable();
    keys.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect()
}

/// A string of a [`CompactRows`]: where it is in the chunk's text, or none.
#[derive(Clone, Copy)]
struct Text {
    start: u32,
    len: u32,
}

impl Text {
    const NONE: Text = Text { start: 0, len: u32::MAX };
}

/// Where a kept row's message id comes from.
#[derive(Clone, Copy)]
enum MessageId {
    Given(Text),
    /// Derived from the row's content key (numbered when storing).
    Derived(u128),
}

/// An event row as the check parsed it: what storing needs to build its event, without the
/// file's text.
struct CompactRow {
    account: Text,
    name: Text,
    /// The person's user id as stored (`<account>/<user>` with user ids per account).
    user: Text,
    anonymous: Text,
    /// The properties as JSON; none for `{}`.
    properties: Text,
    message_id: MessageId,
    seconds: i64,
    nanos: u32,
}

/// The event rows of a chunk, parsed once by the check and kept for storing, so that the
/// file is neither read nor parsed a second time: each row's fields as spans of one text
/// per chunk and its time as numbers: 96 bytes a row and its fields' text (for ChurnSim's
/// rows of 40 bytes, nearly three times the file's text).
#[derive(Default)]
pub(super) struct CompactRows {
    text: String,
    rows: Vec<CompactRow>,
}

/// An event row's fields, parsed: what its event is built from.
pub(super) struct EventFields<'a> {
    pub account: Option<&'a str>,
    pub at: DateTime<Utc>,
    pub name: &'a str,
    /// The user id as stored, in parts to join (`<account>`, `/`, `<user>`).
    pub user: Option<[&'a str; 3]>,
    pub anonymous: Option<&'a str>,
    /// The properties as JSON; `None` for `{}`.
    pub properties: Option<&'a str>,
    pub message_id: Option<&'a str>,
    /// The content key of a row without a message id.
    pub key: Option<u128>,
}

impl CompactRows {
    fn put(&mut self, parts: &[&str]) -> Text {
        let start = self.text.len() as u32;
        for p in parts {
            self.text.push_str(p);
        }
        Text { start, len: self.text.len() as u32 - start }
    }

    fn put_opt(&mut self, s: Option<&str>) -> Text {
        s.map_or(Text::NONE, |s| self.put(&[s]))
    }

    fn get(&self, t: Text) -> Option<&str> {
        (t.len != u32::MAX).then(|| &self.text[t.start as usize..(t.start + t.len) as usize])
    }

    /// Keeps a row.
    pub(super) fn push(&mut self, f: &EventFields<'_>) {
        let row = CompactRow {
            account: self.put_opt(f.account),
            name: self.put(&[f.name]),
            user: f.user.map_or(Text::NONE, |parts| self.put(&parts)),
            anonymous: self.put_opt(f.anonymous),
            properties: self.put_opt(f.properties),
            message_id: match (f.message_id, f.key) {
                (Some(id), _) => MessageId::Given(self.put(&[id])),
                (None, key) => MessageId::Derived(key.expect("a key for rows without an id")),
            },
            seconds: f.at.timestamp(),
            nanos: f.at.timestamp_subsec_nanos(),
        };
        self.rows.push(row);
    }

    /// Memory the rows hold, roughly.
    pub(super) fn bytes(&self) -> usize {
        self.text.capacity() + self.rows.capacity() * std::mem::size_of::<CompactRow>()
    }

    /// Each row's fields, in file order.
    pub(super) fn fields(&self) -> impl Iterator<Item = EventFields<'_>> {
        self.rows.iter().map(|r| {
            let (message_id, key) = match r.message_id {
                MessageId::Given(t) => (self.get(t), None),
                MessageId::Derived(key) => (None, Some(key)),
            };
            EventFields {
                account: self.get(r.account),
                at: DateTime::from_timestamp(r.seconds, r.nanos).expect("a time that was parsed"),
                name: self.get(r.name).expect("every row has a name"),
                user: self.get(r.user).map(|u| [u, "", ""]),
                anonymous: self.get(r.anonymous),
                properties: self.get(r.properties),
                message_id,
                key,
            }
        })
    }
}

impl EventFields<'_> {
    /// The event the row becomes, with the derived id of the first row of its content (`_1`)
    /// when it has no message id.
    pub(super) fn event(&self, received_at: DateTime<Utc>) -> NewEvent {
        let message_id = match (self.message_id, self.key) {
            (Some(id), _) => id.to_owned(),
            (None, key) => derived_id(key.expect("a key for rows without an id"), 1),
        };
        let user = self.user.map(|parts| parts.concat());
        let payload = Track {
            message_id: &message_id,
            event: self.name,
            user_id: user.as_deref(),
            anonymous_id: self.anonymous,
            timestamp: self.at,
            properties: self.properties,
            group_id: self.account,
        }
        .to_json();
        NewEvent {
            message_id,
            kind: domain::EventType::Track,
            name: Some(self.name.to_owned()),
            user_id: user,
            anonymous_id: self.anonymous.map(str::to_owned),
            group_id: self.account.map(str::to_owned),
            previous_id: None,
            timestamp: self.at,
            received_at,
            payload,
        }
    }
}

/// An imported event's payload: a track call as capture stores one. The same JSON as
/// serialising the message with serde gives (keys in this order, absent ones left out).
pub(super) struct Track<'a> {
    pub message_id: &'a str,
    pub event: &'a str,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub timestamp: DateTime<Utc>,
    /// As JSON; `None` for `{}`.
    pub properties: Option<&'a str>,
    pub group_id: Option<&'a str>,
}

impl Track<'_> {
    pub(super) fn to_json(&self) -> String {
        // Room for the keys, the time and every value but large properties: one allocation.
        let ids = [self.user_id, self.anonymous_id, self.group_id, self.properties]
            .iter()
            .flatten()
            .map(|s| s.len())
            .sum::<usize>();
        let mut out = String::with_capacity(192 + self.message_id.len() + self.event.len() + ids);
        out.push_str(r#"{"type":"track","messageId":"#);
        json_str(&mut out, self.message_id);
        out.push_str(r#","event":"#);
        json_str(&mut out, self.event);
        if let Some(u) = self.user_id {
            out.push_str(r#","userId":"#);
            json_str(&mut out, u);
        }
        if let Some(a) = self.anonymous_id {
            out.push_str(r#","anonymousId":"#);
            json_str(&mut out, a);
        }
        out.push_str(r#","timestamp":""#);
        push_time(&mut out, self.timestamp);
        out.push_str(r#"","properties":"#);
        out.push_str(self.properties.unwrap_or("{}"));
        if let Some(g) = self.group_id {
            out.push_str(r#","context":{"groupId":"#);
            json_str(&mut out, g);
            out.push('}');
        }
        out.push('}');
        out
    }
}

/// A JSON string; most need no escaping.
fn json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::from(s).to_string());
    }
}

/// RFC 3339 in UTC to the millisecond (`2020-01-20T08:47:22.000Z`), as chrono writes it,
/// digit by digit (formatting machinery was a tenth of an import's parsing).
fn push_time(out: &mut String, t: DateTime<Utc>) {
    let ms = t.timestamp_subsec_millis();
    if !(0..=9999).contains(&t.year()) || ms >= 1000 {
        out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        return;
    }
    let mut digits = |v: u32, n: u32, after: char| {
        for i in (0..n).rev() {
            out.push((b'0' + (v / 10u32.pow(i) % 10) as u8) as char);
        }
        out.push(after);
    };
    digits(t.year() as u32, 4, '-');
    digits(t.month(), 2, '-');
    digits(t.day(), 2, 'T');
    digits(t.hour(), 2, ':');
    digits(t.minute(), 2, ':');
    digits(t.second(), 2, '.');
    digits(ms, 3, 'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    #[test]
    fn derived_ids_are_the_key_in_hex_and_the_copy() {
        let key = super::super::content_key(["7", "2020-01-03 10:00:00", "like", "0", ""].into_iter());
        assert_eq!(derived_id(key, 1), "import_3d798c1a0bd7400cddf199e87768222e_1");
        let id = derived_id(0xab, 12);
        assert_eq!(id, format!("import_{}ab_12", "0".repeat(30)));
    }

    #[test]
    fn kept_rows_build_the_events_their_fields_do() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let rows = [
            EventFields {
                account: Some("7"),
                at: at("2020-01-03T10:00:00Z"),
                name: "like",
                user: Some(["7", "/", "0"]),
                anonymous: None,
                properties: None,
                message_id: None,
                key: Some(0xabc),
            },
            EventFields {
                account: None,
                at: at("2020-01-03T10:00:00.123456789Z"),
                name: "Report \"Created\"",
                user: None,
                anonymous: Some("anon-1"),
                properties: Some(r#"{"value":2.5,"plan":"pro"}"#),
                message_id: Some("m-1"),
                key: None,
            },
            EventFields {
                account: Some("acme"),
                at: at("1999-12-31T23:59:59Z"),
                name: "",
                user: Some(["u", "", ""]),
                anonymous: Some(""),
                properties: Some("{}"),
                message_id: None,
                key: Some(u128::MAX),
            },
        ];
        let mut kept = CompactRows::default();
        for row in &rows {
            kept.push(row);
        }
        let received = Utc::now();
        let built: Vec<NewEvent> = kept.fields().map(|f| f.event(received)).collect();
        let direct: Vec<NewEvent> = rows.iter().map(|f| f.event(received)).collect();
        assert_eq!(built, direct);
        assert_eq!(built[0].user_id.as_deref(), Some("7/0"));
        assert_eq!(built[0].message_id, derived_id(0xabc, 1));
        assert_eq!(built[1].timestamp, rows[1].at, "to the nanosecond");
        assert_eq!(built[1].message_id, "m-1");
        assert_eq!(built[2].anonymous_id.as_deref(), Some(""), "an empty string is not none");
        let keys: Vec<Option<u128>> = kept.fields().map(|f| f.key).collect();
        assert_eq!(keys, [Some(0xabc), None, Some(u128::MAX)]);
        assert!(std::mem::size_of::<CompactRow>() <= 96, "kept for every row of a file");
    }

    #[test]
    fn repeated_keys_and_renumbering() {
        assert_eq!(repeated(vec![3, 1, 2, 3, 1, 3]), foldhash::HashSet::from_iter([1, 3]));
        let id = derived_id(7, 1);
        let track = Track {
            message_id: &id,
            event: "like",
            user_id: Some("7/0"),
            anonymous_id: None,
            timestamp: Utc::now(),
            properties: None,
            group_id: Some("7"),
        };
        let mut event = NewEvent {
            message_id: id.clone(),
            kind: domain::EventType::Track,
            name: Some("like".into()),
            user_id: Some("7/0".into()),
            anonymous_id: None,
            group_id: Some("7".into()),
            previous_id: None,
            timestamp: track.timestamp,
            received_at: track.timestamp,
            payload: track.to_json(),
        };
        renumber(&mut event, 3);
        assert_eq!(event.message_id, derived_id(7, 3));
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload["messageId"], json!(derived_id(7, 3)));
    }

    #[test]
    fn payloads_are_the_json_serde_writes() {
        #[derive(serde::Serialize)]
        struct Message<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(rename = "messageId")]
            message_id: &'a str,
            event: &'a str,
            #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
            user_id: Option<&'a str>,
            #[serde(rename = "anonymousId", skip_serializing_if = "Option::is_none")]
            anonymous_id: Option<&'a str>,
            timestamp: String,
            properties: &'a Map<String, Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            context: Option<Value>,
        }
        let mut props = Map::new();
        let times = ["2020-01-20T08:47:22.5Z", "1999-12-31T23:59:59Z", "2026-03-01T00:00:00.123Z"];
        for (i, at) in times.iter().enumerate() {
            let at = DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc);
            let (user, anon, group) = match i {
                0 => (Some("7/0"), None, Some("7")),
                1 => (None, Some("anon \"quoted\"\n"), None),
                _ => (Some("ü/1"), Some("a"), Some("acme\\x")),
            };
            let json = serde_json::to_string(&props).unwrap();
            let track = Track {
                message_id: "import_x_1",
                event: "Report \"Created\"",
                user_id: user,
                anonymous_id: anon,
                timestamp: at,
                properties: (!props.is_empty()).then_some(json.as_str()),
                group_id: group,
            };
            let serde = serde_json::to_string(&Message {
                kind: "track",
                message_id: track.message_id,
                event: track.event,
                user_id: user,
                anonymous_id: anon,
                timestamp: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                properties: &props,
                context: group.map(|g| json!({"groupId": g})),
            })
            .unwrap();
            assert_eq!(track.to_json(), serde);
            props.insert(format!("k{i}"), json!(i as f64 + 0.5));
        }
    }
}
