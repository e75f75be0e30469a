//! What an imported event row becomes: its message id when the file gives none, and its
//! payload, written directly (an import writes millions of them).
//!
//! A row without a message id gets one from its content, `import_<key>_<n>`: the 128-bit
//! [`content_key`](super::content_key) of its fields and `n`, how many rows with the same content came before it plus
//! one. Importing the same file again gives the same ids, so it stores nothing twice. Rows are
//! parsed on several threads, so `n` is settled in two steps (see [`RowKeys`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::{DerivedId, MessageId, NewEvent, TrackPayload};

/// `import_<32 hex digits>_<n>`.
pub(super) fn derived_id(key: u128, n: u32) -> String {
    DerivedId { key, n: u64::from(n) }.to_string()
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
    Collect(KeyBuckets),
    /// Storing: the keys that repeat, and the last row's if it is one of them.
    Number { repeated: Arc<foldhash::HashSet<u64>>, last: Option<u64> },
}

impl RowKeys {
    pub(super) fn add(&mut self, key: u128) {
        match self {
            RowKeys::Collect(keys) => keys.add(key as u64),
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

/// Keys as a check's worker collects them: by their top byte, so that finding those that
/// repeat sorts 256 lists that each fit in a cache (a sort of a worker's millions at once took
/// a tenth of a second, between the check and storing). Each byte's keys are held in blocks
/// of [`KEY_BLOCK`], so that a list grows without being copied: doubling 256 lists copied
/// every key about twice and left as much freed behind.
pub(super) struct KeyBuckets(Vec<Vec<Vec<u64>>>);

/// Keys a block of a [`KeyBuckets`] list holds: 4 KiB.
const KEY_BLOCK: usize = 512;

impl KeyBuckets {
    pub(super) fn new() -> KeyBuckets {
        KeyBuckets((0..256).map(|_| Vec::new()).collect())
    }

    fn add(&mut self, key: u64) {
        let blocks = &mut self.0[(key >> 56) as usize];
        match blocks.last_mut() {
            Some(block) if block.len() < KEY_BLOCK => block.push(key),
            _ => {
                let mut block = Vec::with_capacity(KEY_BLOCK);
                block.push(key);
                blocks.push(block);
            }
        }
    }
}

/// The keys that occur more than once among the workers' collections: each byte's bucket
/// (the workers' lists of it together) sorted on its own, the buckets shared among threads.
pub(super) fn repeated(collected: Vec<KeyBuckets>) -> foldhash::HashSet<u64> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let collected = &collected;
    std::thread::scope(|s| {
        let found: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let (mut all, mut found) = (Vec::new(), Vec::new());
                    for bucket in (t..256).step_by(threads) {
                        all.clear();
                        for block in collected.iter().flat_map(|keys| &keys.0[bucket]) {
                            all.extend_from_slice(block);
                        }
                        all.sort_unstable();
                        found.extend(all.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
                    }
                    found
                })
            })
            .collect();
        found.into_iter().flat_map(|f| f.join().expect("a sorting thread panicked")).collect()
    })
}

/// The event rows of a chunk, parsed once by the check and kept for storing, so that the
/// file is neither read nor parsed a second time: the rows as the track calls they become
/// (each with the derived id of the first row of its content, `_1`, when it has none), the
/// content key of each such row kept with it to number its copies when storing. A derived id
/// is kept in its parts, never written out as text unless something asks for it.
#[derive(Clone)]
pub(super) struct KeptRows {
    tracks: domain::TrackRows,
}

impl KeptRows {
    /// Rows received at `received_at`.
    pub(super) fn new(received_at: DateTime<Utc>) -> KeptRows {
        KeptRows { tracks: domain::TrackRows::with_capacity(received_at, 0, 0) }
    }

    /// Keeps a row.
    pub(super) fn push(&mut self, f: &EventFields<'_>) {
        let message_id = match (f.message_id, f.key) {
            (Some(id), _) => MessageId::Text(id),
            (None, key) => MessageId::Derived(DerivedId { key: key.expect("a key for rows without an id"), n: 1 }),
        };
        self.tracks.push(&domain::NewTrack {
            message_id,
            event: f.name,
            user_id: f.user,
            anonymous_id: f.anonymous,
            group_id: f.account,
            properties: f.properties,
            timestamp: f.at,
        });
    }

    /// Makes room for the rows of a chunk of `text` (at most one a line) at once: growing
    /// the list copied every chunk's rows several times.
    pub(super) fn reserve_for(&mut self, text: &[u8]) {
        let lines = memchr::memchr_iter(b'\n', text).count() + 1;
        // Rows in runs of one person's keep a few bytes of text each.
        self.tracks.reserve(lines, text.len() / 4, lines);
    }

    /// Gives back the room reserved for rows the chunk did not have: what is kept until it
    /// is stored is the rows' own size.
    pub(super) fn fit(&mut self) {
        self.tracks.fit();
    }

    /// Memory the rows hold, roughly.
    pub(super) fn bytes(&self) -> usize {
        self.tracks.bytes()
    }

    /// The rows as track calls, and those whose key is among the keys `repeated` in the
    /// file with it (in order), to number when storing.
    pub(super) fn into_tracks(self, repeated: &foldhash::HashSet<u64>) -> (domain::TrackRows, Vec<(usize, u64)>) {
        let copies = if repeated.is_empty() {
            Vec::new()
        } else {
            let derived = self.tracks.derived().map(|(row, key)| (row, key as u64));
            derived.filter(|(_, key)| repeated.contains(key)).collect()
        };
        (self.tracks, copies)
    }
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
        let received = Utc::now();
        let mut kept = KeptRows::new(received);
        for row in &rows {
            kept.push(row);
        }
        let (_, none) = kept.clone().into_tracks(&foldhash::HashSet::default());
        assert!(none.is_empty(), "no key repeats in the file");
        let (tracks, copies) = kept.into_tracks(&foldhash::HashSet::from_iter([0xabc_u64, 7]));
        assert_eq!(copies, [(0, 0xabc)], "the rows with a derived id whose key repeats");
        let built = tracks.to_events();
        let direct: Vec<NewEvent> = rows.iter().map(|f| f.event(received)).collect();
        assert_eq!(built, direct);
        assert_eq!(built[0].user_id.as_deref(), Some("7/0"));
        assert_eq!(built[0].message_id, derived_id(0xabc, 1));
        assert_eq!(built[1].timestamp, rows[1].at, "to the nanosecond");
        assert_eq!(built[1].message_id, "m-1");
        assert_eq!(built[2].anonymous_id.as_deref(), Some(""), "an empty string is not none");
        let mut renumbered = tracks.clone();
        renumbered.set_copy(0, 3);
        assert_eq!(renumbered.get_row(0).unwrap().message_id.to_string(), derived_id(0xabc, 3));
        assert_eq!(renumbered.get_row(1).unwrap().message_id, "m-1", "a given id is never renumbered");
    }

    fn collected(lists: &[&[u64]]) -> Vec<KeyBuckets> {
        lists
            .iter()
            .map(|keys| {
                let mut buckets = KeyBuckets::new();
                keys.iter().for_each(|&k| buckets.add(k));
                buckets
            })
            .collect()
    }

    #[test]
    fn repeated_keys_and_renumbering() {
        let set = |keys: &[u64]| foldhash::HashSet::from_iter(keys.iter().copied());
        assert_eq!(repeated(collected(&[&[3, 1, 2, 3, 1, 3]])), set(&[1, 3]));
        // A key repeated only across the lists, or only within one; keys in every bucket.
        let (high, top) = (0xff00_0000_0000_0001, u64::MAX);
        assert_eq!(
            repeated(collected(&[&[9, 4, 7, high], &[], &[5, 4, top, high], &[8, 8, top - 1]])),
            set(&[4, 8, high])
        );
        let spread: Vec<u64> = (0..10_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let (a, b) = spread.split_at(5_000);
        assert!(repeated(collected(&[a, b])).is_empty());
        assert_eq!(repeated(collected(&[a, b, &spread[4_990..5_010]])).len(), 20);
        assert!(repeated(Vec::new()).is_empty());
        // One byte's keys over several blocks: repeats within a block, across two, and first
        // and last.
        let one_byte: Vec<u64> = (0..3 * KEY_BLOCK as u64 + 7).collect();
        let mut copies = vec![0, 1, 1, KEY_BLOCK as u64 - 1, KEY_BLOCK as u64 + 2, 3 * KEY_BLOCK as u64 + 6];
        copies.push(0);
        assert_eq!(
            repeated(collected(&[&one_byte, &copies])),
            set(&[0, 1, KEY_BLOCK as u64 - 1, KEY_BLOCK as u64 + 2, 3 * KEY_BLOCK as u64 + 6])
        );
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
