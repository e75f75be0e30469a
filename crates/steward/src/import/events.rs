//! What an imported event row becomes: its message id when the file gives none, and its
//! payload, written directly (an import writes millions of them).
//!
//! A row without a message id gets one from its content, `import_<key>_<n>`: the 128-bit
//! [`content_key`](super::content_key) of its fields and `n`, how many rows with the same content came before it plus
//! one. Importing the same file again gives the same ids, so it stores nothing twice. Rows are
//! parsed on several threads, so `n` is settled in two steps (see [`RowKeys`]).

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::{NewEvent, TrackPayload};

/// `import_<32 hex digits>_<n>`.
pub(super) fn derived_id(key: u128, n: u32) -> String {
    let mut id = String::with_capacity(7 + 32 + 1 + 10);
    push_derived_id(&mut id, key, n);
    id
}

/// Appends [`derived_id`] to `id`.
fn push_derived_id(id: &mut String, key: u128, n: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    id.push_str("import_");
    for i in (0..32).rev() {
        id.push(HEX[((key >> (i * 4)) & 0xf) as usize] as char);
    }
    if n == 1 {
        id.push_str("_1");
    } else {
        let _ = write!(id, "_{n}");
    }
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

/// Gives the row `i` of `rows`, built with the derived id of the first row of its content
/// (`_1`), that of the `n`th.
pub(super) fn renumber_track(rows: &mut domain::TrackRows, i: usize, n: u32) {
    let Some(row) = rows.get_row(i) else { return };
    let Some(stem) = row.message_id.strip_suffix("_1") else { return };
    let id = format!("{stem}_{n}");
    rows.set_message_id(i, &id);
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

    /// Makes room for the rows of a chunk of `text` (at most one a line) at once: a kept row
    /// is 96 bytes, and growing the list copied every chunk's rows several times.
    pub(super) fn reserve_for(&mut self, text: &[u8]) {
        let lines = text.iter().filter(|&&b| b == b'\n').count() + 1;
        self.rows.reserve(lines);
    }

    /// Memory the rows hold, roughly.
    pub(super) fn bytes(&self) -> usize {
        self.text.capacity() + self.rows.capacity() * std::mem::size_of::<CompactRow>()
    }

    /// The rows as track calls received at `received_at`, each with the derived id of the
    /// first row of its content (`_1`) when it has no message id; `keys` is given each such
    /// row's key, and the rows whose key may have copies before them are returned with it
    /// (numbered by whoever reads the chunks in order).
    pub(super) fn tracks(
        &self,
        received_at: DateTime<Utc>,
        keys: &mut RowKeys,
    ) -> (domain::TrackRows, Vec<(usize, u64)>) {
        // Each row's text, and a derived id's 40 bytes.
        let mut rows =
            domain::TrackRows::with_capacity(received_at, self.rows.len(), self.text.len() + 40 * self.rows.len());
        let mut copies = Vec::new();
        let mut derived = String::new();
        for (i, f) in self.fields().enumerate() {
            let message_id = match (f.message_id, f.key) {
                (Some(id), _) => id,
                (None, key) => {
                    let key = key.expect("a key for rows without an id");
                    keys.add(key);
                    if let Some(repeated) = keys.take_repeated() {
                        copies.push((i, repeated));
                    }
                    derived.clear();
                    push_derived_id(&mut derived, key, 1);
                    &derived
                }
            };
            rows.push(&domain::NewTrack {
                message_id,
                event: f.name,
                user_id: f.user,
                anonymous_id: f.anonymous,
                group_id: f.account,
                properties: f.properties,
                timestamp: f.at,
            });
        }
        (rows, copies)
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
        let payload = TrackPayload {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
        let track = TrackPayload {
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
}
