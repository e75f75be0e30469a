//! Track calls in columns: what a bulk import's rows become, stored and processed without an
//! event (seven strings and its payload's JSON) for each row.
//!
//! The rows' strings are spans of one text; a row's payload is what its fields write
//! ([`TrackPayload`]), so it is never held, only written when something asks for a whole
//! [`NewEvent`].

use crate::{DerivedId, EventType, MessageId, NewEvent, Timestamp, TrackPayload};

/// A string of a [`TrackRows`]: where it is in the text, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const NONE: Span = Span { start: 0, len: u32::MAX };
}

/// Whose a run of rows is: rows that name the same user, anonymous id and account share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Who {
    user_id: Span,
    anonymous_id: Span,
    group_id: Span,
}

/// A row: 32 bytes, its strings by their place in the lists of a [`TrackRows`] (an import
/// keeps millions of rows in memory between checking a file and storing it).
#[derive(Clone, Copy, Debug)]
struct Row {
    seconds: i64,
    nanos: u32,
    /// Its place in `who`.
    who: u32,
    /// Its place in `names`.
    name: u32,
    /// For a derived message id (`copy` above 0), its key's place in `keys`; else its text's
    /// place in `spans`.
    message_id: u32,
    /// For a derived message id, its `n`; 0 for an id held as text.
    copy: u32,
    /// The properties' place in `spans`, or [`NO_SPAN`] for `{}`.
    properties: u32,
}

/// A place in `spans` that holds nothing: a row's `properties` when it has none.
const NO_SPAN: u32 = u32::MAX;

/// How many of the last distinct event names a new row's is looked for among: a file names
/// a few dozen events, and rows of a few of them alternate.
const RECENT_NAMES: usize = 32;

/// A track call's fields, to add to a [`TrackRows`]. The user id is given in parts, joined
/// when stored (an import's `<account>/<user>`).
#[derive(Clone, Copy, Debug)]
pub struct NewTrack<'a> {
    pub message_id: MessageId<'a>,
    pub event: &'a str,
    pub user_id: Option<[&'a str; 3]>,
    pub anonymous_id: Option<&'a str>,
    pub group_id: Option<&'a str>,
    /// As JSON; `None` for `{}`.
    pub properties: Option<&'a str>,
    pub timestamp: Timestamp,
}

/// One row of a [`TrackRows`], borrowing from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Track<'a> {
    pub message_id: MessageId<'a>,
    pub event: &'a str,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub group_id: Option<&'a str>,
    /// As JSON; `None` for `{}`.
    pub properties: Option<&'a str>,
    /// The time as stored (Unix seconds and nanoseconds), made a date only when asked: a
    /// reader that wants milliseconds (storing an import's rows) need not convert twice.
    seconds: i64,
    nanos: u32,
}

impl<'a> Track<'a> {
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_timestamp(self.seconds, self.nanos).expect("a time that was one")
    }

    /// The time in Unix milliseconds.
    pub fn millis(&self) -> i64 {
        self.seconds * 1_000 + i64::from(self.nanos / 1_000_000)
    }

    /// The payload its fields write, given its message id's text.
    pub fn payload<'b>(&self, message_id: &'b str) -> TrackPayload<'b>
    where
        'a: 'b,
    {
        TrackPayload {
            message_id,
            event: self.event,
            user_id: self.user_id,
            anonymous_id: self.anonymous_id,
            timestamp: self.timestamp(),
            properties: self.properties,
            group_id: self.group_id,
        }
    }
}

/// Who did what and when in a row of a [`TrackRows`]: [`Track`] without its message id and
/// properties.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activity<'a> {
    pub event: &'a str,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub group_id: Option<&'a str>,
    seconds: i64,
    nanos: u32,
}

impl Activity<'_> {
    /// The row's time, its date worked out once per day in `days`: rows come in runs of one
    /// day's, and making the date is most of the cost of a time.
    pub fn timestamp_in(&self, days: &mut Days) -> Timestamp {
        let (day, second) = (self.seconds.div_euclid(86_400), self.seconds.rem_euclid(86_400));
        let date = match days.0 {
            Some((d, date)) if d == day => date,
            _ => {
                let date = Timestamp::from_timestamp(day * 86_400, 0).expect("a time that was one").date_naive();
                days.0 = Some((day, date));
                date
            }
        };
        let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(second as u32, self.nanos)
            .expect("a time that was one");
        chrono::NaiveDateTime::new(date, time).and_utc()
    }
}

/// The day of the last row whose time was made, as a count of days since 1970 and a date
/// (see [`Activity::timestamp_in`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Days(Option<(i64, chrono::NaiveDate)>);

/// Whether `parts` joined are `s`.
fn joined_is(s: &str, parts: &[&str; 3]) -> bool {
    if s.len() != parts.iter().map(|p| p.len()).sum::<usize>() {
        return false;
    }
    let mut at = 0;
    parts.iter().all(|p| {
        let same = short_eq(&s.as_bytes()[at..at + p.len()], p.as_bytes());
        at += p.len();
        same
    })
}

/// Whether two byte strings are equal, compared here rather than by a call to `memcmp`: a row's
/// names and ids are a few bytes, and each row compares several with the row before's.
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.len() > 32 && a == b || a.iter().zip(b).all(|(x, y)| x == y))
}

/// A name's length and first seven bytes in one word: names with different tags differ, so
/// a row's name is compared by its text only with those of its tag (most files have a few
/// names, met in turn).
fn name_tag(name: &str) -> u64 {
    let b = name.as_bytes();
    let mut word = [0u8; 8];
    let n = b.len().min(7);
    word[..n].copy_from_slice(&b[..n]);
    word[7] = b.len().min(255) as u8;
    u64::from_le_bytes(word)
}

/// [`short_eq`] of two optional strings.
fn short_eq_opt(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => short_eq(a.as_bytes(), b.as_bytes()),
        (None, None) => true,
        _ => false,
    }
}

/// Whether two strings are the same, by where they are first (strings a [`TrackRows`]
/// shares between rows are one), then by their bytes.
pub fn same_str(a: &str, b: &str) -> bool {
    (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
}

/// [`same_str`] of two optional strings.
pub fn same_opt(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_str(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Track calls received together, in order, in columns.
#[derive(Clone, Debug)]
pub struct TrackRows {
    text: String,
    rows: Vec<Row>,
    /// Whose each run of rows is.
    who: Vec<Who>,
    /// The event names, each once among the last [`RECENT_NAMES`].
    names: Vec<Span>,
    /// Each name's [`name_tag`], looked through before any name's text.
    name_tags: Vec<u64>,
    /// Message ids and properties held as text.
    spans: Vec<Span>,
    /// The keys of derived message ids.
    keys: Vec<u128>,
    received_at: Timestamp,
}

impl TrackRows {
    /// Rows received at `received_at`, with room for `rows` of them and `text` bytes of their
    /// strings.
    pub fn with_capacity(received_at: Timestamp, rows: usize, text: usize) -> TrackRows {
        TrackRows {
            text: String::with_capacity(text),
            rows: Vec::with_capacity(rows),
            who: Vec::new(),
            names: Vec::new(),
            name_tags: Vec::new(),
            spans: Vec::new(),
            keys: Vec::new(),
            received_at,
        }
    }

    fn put(&mut self, parts: &[&str]) -> Span {
        let start = self.text.len();
        for p in parts {
            self.text.push_str(p);
        }
        let (start, len) = (u32::try_from(start), u32::try_from(self.text.len() - start));
        match (start, len) {
            (Ok(start), Ok(len)) if len != u32::MAX => Span { start, len },
            _ => panic!("track rows hold at most 4 GiB of text"),
        }
    }

    fn put_opt(&mut self, s: Option<&str>) -> Span {
        s.map_or(Span::NONE, |s| self.put(&[s]))
    }

    fn get(&self, s: Span) -> Option<&str> {
        (s.len != u32::MAX).then(|| &self.text[s.start as usize..(s.start + s.len) as usize])
    }

    /// Adds a row at the end. A user, anonymous id or account the row before has too is
    /// shared with it rather than written again (rows come in runs of one person's), and so is
    /// an event name among the last few; readers find them equal by where they are.
    pub fn push(&mut self, t: &NewTrack<'_>) {
        let (message_id, copy) = match t.message_id {
            MessageId::Text(text) => (self.put_span(&[text]), 0),
            // Held in parts when its `n` fits where a row keeps it (it always does for an
            // import's ids), else as its text.
            MessageId::Derived(id) => match u32::try_from(id.n).ok().filter(|n| *n > 0) {
                Some(n) => {
                    let at = u32::try_from(self.keys.len()).expect("track rows hold fewer than 2^32 rows");
                    self.keys.push(id.key);
                    (at, n)
                }
                None => (self.put_span(&[&id.to_string()]), 0),
            },
        };
        let name = self.name(t.event);
        let who = self.who(t);
        let properties = match t.properties {
            Some(p) => self.put_span(&[p]),
            None => NO_SPAN,
        };
        self.rows.push(Row {
            seconds: t.timestamp.timestamp(),
            nanos: t.timestamp.timestamp_subsec_nanos(),
            who,
            name,
            message_id,
            copy,
            properties,
        });
    }

    /// Puts a string in `spans`: its place there.
    fn put_span(&mut self, parts: &[&str]) -> u32 {
        let span = self.put(parts);
        self.spans.push(span);
        u32::try_from(self.spans.len() - 1).expect("track rows hold fewer than 2^32 strings")
    }

    /// The place in `names` of `event`: one of the last few names, or a new one.
    fn name(&mut self, event: &str) -> u32 {
        let recent = self.names.len().saturating_sub(RECENT_NAMES);
        let tag = name_tag(event);
        let found = (recent..self.names.len())
            .rev()
            .find(|&i| self.name_tags[i] == tag && short_eq_opt(self.get(self.names[i]), Some(event)));
        let at = match found {
            Some(i) => i,
            None => {
                let span = self.put(&[event]);
                self.names.push(span);
                self.name_tags.push(tag);
                self.names.len() - 1
            }
        };
        u32::try_from(at).expect("track rows hold fewer than 2^32 names")
    }

    /// The place in `who` of the row's user, anonymous id and account: the last one's when
    /// it is theirs, else a new one sharing what it can with the last.
    fn who(&mut self, t: &NewTrack<'_>) -> u32 {
        let last = self.who.last().copied();
        let user_id = match (last, t.user_id) {
            (_, None) => Span::NONE,
            (Some(l), Some(parts)) if self.get(l.user_id).is_some_and(|u| joined_is(u, &parts)) => l.user_id,
            (_, Some(parts)) => self.put(&parts),
        };
        let anonymous_id = match last {
            Some(l) if t.anonymous_id.is_some() && short_eq_opt(self.get(l.anonymous_id), t.anonymous_id) => {
                l.anonymous_id
            }
            _ => self.put_opt(t.anonymous_id),
        };
        let group_id = match last {
            Some(l) if t.group_id.is_some() && short_eq_opt(self.get(l.group_id), t.group_id) => l.group_id,
            _ => self.put_opt(t.group_id),
        };
        let who = Who { user_id, anonymous_id, group_id };
        if last != Some(who) {
            self.who.push(who);
        }
        u32::try_from(self.who.len() - 1).expect("track rows hold fewer than 2^32 rows")
    }

    /// Gives row `i`, if its message id is derived, that of the `n`th row of its content.
    pub fn set_copy(&mut self, i: usize, n: u32) {
        if let Some(row) = self.rows.get_mut(i).filter(|r| r.copy > 0) {
            row.copy = n.max(1);
        }
    }

    /// Makes room for `rows` more rows, `text` more bytes of their strings and `derived`
    /// more derived message ids.
    pub fn reserve(&mut self, rows: usize, text: usize, derived: usize) {
        self.rows.reserve(rows);
        self.text.reserve(text);
        self.keys.reserve(derived);
    }

    /// Gives back the room the rows do not use: the lists are copied to their size when they
    /// hold much more. For rows kept a while (an import's, between checking and storing).
    pub fn fit(&mut self) {
        let wastes = |capacity: usize, len: usize| capacity - len > len / 16 + 64;
        fn fit<T: Copy>(v: &mut Vec<T>, wastes: impl Fn(usize, usize) -> bool) {
            if wastes(v.capacity(), v.len()) {
                let mut exact = Vec::with_capacity(v.len());
                exact.extend_from_slice(v);
                *v = exact;
            }
        }
        if wastes(self.text.capacity(), self.text.len()) {
            let mut text = String::with_capacity(self.text.len());
            text.push_str(&self.text);
            self.text = text;
        }
        fit(&mut self.rows, wastes);
        fit(&mut self.who, wastes);
        fit(&mut self.names, wastes);
        fit(&mut self.name_tags, wastes);
        fit(&mut self.spans, wastes);
        fit(&mut self.keys, wastes);
    }

    /// Memory the rows hold, roughly.
    pub fn bytes(&self) -> usize {
        self.text.capacity()
            + self.rows.capacity() * std::mem::size_of::<Row>()
            + self.who.capacity() * std::mem::size_of::<Who>()
            + (self.names.capacity() + self.spans.capacity()) * std::mem::size_of::<Span>()
            + self.name_tags.capacity() * std::mem::size_of::<u64>()
            + self.keys.capacity() * std::mem::size_of::<u128>()
    }

    /// The rows whose message id is derived, with their ids' keys, in order.
    pub fn derived(&self) -> impl Iterator<Item = (usize, u128)> + '_ {
        let rows = self.rows.iter().enumerate();
        rows.filter(|(_, r)| r.copy > 0).map(|(i, r)| (i, self.keys[r.message_id as usize]))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn received_at(&self) -> Timestamp {
        self.received_at
    }

    /// Row `i`.
    pub fn get_row(&self, i: usize) -> Option<Track<'_>> {
        self.rows.get(i).map(|r| self.track(r))
    }

    fn track(&self, r: &Row) -> Track<'_> {
        let message_id = match r.copy {
            0 => MessageId::Text(self.span(r.message_id).expect("every row has a message id")),
            n => MessageId::Derived(DerivedId { key: self.keys[r.message_id as usize], n: u64::from(n) }),
        };
        let who = self.who[r.who as usize];
        Track {
            message_id,
            event: self.event(r),
            user_id: self.get(who.user_id),
            anonymous_id: self.get(who.anonymous_id),
            group_id: self.get(who.group_id),
            properties: self.span(r.properties),
            seconds: r.seconds,
            nanos: r.nanos,
        }
    }

    fn span(&self, at: u32) -> Option<&str> {
        (at != NO_SPAN).then(|| self.get(self.spans[at as usize]).expect("a span of text"))
    }

    fn event(&self, r: &Row) -> &str {
        self.get(self.names[r.name as usize]).expect("every row has an event")
    }

    /// The rows in runs that name one user and anonymous id: each run's rows and the two.
    /// Rows come in runs of one person's, and a run's strings are shared, so that this reads
    /// where each row's strings are, not the strings.
    pub fn people_runs(&self) -> impl Iterator<Item = (std::ops::Range<usize>, Option<&str>, Option<&str>)> {
        let mut at = 0;
        std::iter::from_fn(move || {
            let first = self.rows.get(at)?;
            let who = self.who[first.who as usize];
            let start = at;
            at += 1;
            while self.rows.get(at).is_some_and(|r| {
                let w = &self.who[r.who as usize];
                r.who == first.who || (w.user_id == who.user_id && w.anonymous_id == who.anonymous_id)
            }) {
                at += 1;
            }
            Some((start..at, self.get(who.user_id), self.get(who.anonymous_id)))
        })
    }

    /// Who did what and when in row `i`: its event, user, anonymous id, account and time,
    /// without its message id and properties (processing reads millions of rows for these).
    pub fn activity(&self, i: usize) -> Option<Activity<'_>> {
        let r = self.rows.get(i)?;
        let who = self.who[r.who as usize];
        Some(Activity {
            event: self.event(r),
            user_id: self.get(who.user_id),
            anonymous_id: self.get(who.anonymous_id),
            group_id: self.get(who.group_id),
            seconds: r.seconds,
            nanos: r.nanos,
        })
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Track<'_>> + Clone {
        self.rows.iter().map(|r| self.track(r))
    }

    /// Each row as a whole event.
    pub fn to_events(&self) -> Vec<NewEvent> {
        self.iter().map(|t| t.to_event(self.received_at)).collect()
    }
}

impl Track<'_> {
    /// The event this row is, received at `received_at`.
    pub fn to_event(&self, received_at: Timestamp) -> NewEvent {
        let message_id = self.message_id.to_string();
        let payload = self.payload(&message_id).to_json();
        NewEvent {
            message_id,
            kind: EventType::Track,
            name: Some(self.event.to_owned()),
            user_id: self.user_id.map(str::to_owned),
            anonymous_id: self.anonymous_id.map(str::to_owned),
            group_id: self.group_id.map(str::to_owned),
            previous_id: None,
            timestamp: self.timestamp(),
            received_at,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc)
    }

    #[test]
    fn rows_give_back_their_fields_and_the_events_they_are() {
        let received = at("2024-05-01T00:00:00Z");
        let mut rows = TrackRows::with_capacity(received, 2, 64);
        rows.push(&NewTrack {
            message_id: MessageId::Text("m-1"),
            event: "like",
            user_id: Some(["7", "/", "0"]),
            anonymous_id: None,
            group_id: Some("7"),
            properties: Some(r#"{"value":2.5}"#),
            timestamp: at("2020-01-03T10:00:00.123456789Z"),
        });
        rows.push(&NewTrack {
            message_id: MessageId::Text("m-2"),
            event: "Report \"Created\"",
            user_id: None,
            anonymous_id: Some(""),
            group_id: None,
            properties: None,
            timestamp: at("1999-12-31T23:59:59Z"),
        });
        rows.push(&NewTrack {
            message_id: MessageId::Text("m-3"),
            event: "Report \"Created\"",
            user_id: None,
            anonymous_id: Some(""),
            group_id: None,
            properties: None,
            timestamp: at("2000-01-01T00:00:00Z"),
        });
        let (b, c) = (rows.get_row(1).unwrap(), rows.get_row(2).unwrap());
        assert!(std::ptr::eq(b.event.as_ptr(), c.event.as_ptr()), "a run's strings are shared");
        assert!(same_opt(b.anonymous_id, c.anonymous_id) && same_str("x", "x") && !same_opt(Some(""), None));
        assert_eq!(rows.len(), 3);
        let first = rows.get_row(0).unwrap();
        assert_eq!(first.user_id, Some("7/0"));
        assert_eq!(first.timestamp(), at("2020-01-03T10:00:00.123456789Z"), "to the nanosecond");
        assert_eq!(first.millis(), at("2020-01-03T10:00:00.123Z").timestamp_millis());
        let second = rows.get_row(1).unwrap();
        assert_eq!((second.message_id, second.anonymous_id, second.user_id), (MessageId::Text("m-2"), Some(""), None));
        // What processing reads of a row is the row's.
        for i in 0..rows.len() {
            let (row, activity) = (rows.get_row(i).unwrap(), rows.activity(i).unwrap());
            assert_eq!(
                (activity.event, activity.user_id, activity.anonymous_id, activity.group_id),
                (row.event, row.user_id, row.anonymous_id, row.group_id)
            );
        }
        assert!(rows.activity(3).is_none());
        // Times made with the day before's date are the times, whatever the order of days.
        let mut days = Days::default();
        for i in [0, 1, 2, 2, 0, 1] {
            let activity = rows.activity(i).unwrap();
            assert_eq!(activity.timestamp_in(&mut days), rows.get_row(i).unwrap().timestamp(), "row {i}");
        }
        // Rows 1 and 2 share their anonymous id (and have no user): one run.
        let runs: Vec<_> = rows.people_runs().collect();
        assert_eq!(runs, [(0..1, Some("7/0"), None), (1..3, None, Some(""))]);
        rows.set_copy(1, 5);
        assert_eq!(rows.get_row(1).unwrap().message_id, "m-2", "an id given as text has no copies");
        let derived = DerivedId { key: 0xabc, n: 1 };
        rows.push(&NewTrack {
            message_id: MessageId::Derived(derived),
            event: "like",
            user_id: None,
            anonymous_id: Some("a"),
            group_id: None,
            properties: None,
            timestamp: at("2000-01-01T00:00:00Z"),
        });
        assert_eq!(rows.get_row(3).unwrap().message_id, MessageId::Derived(derived));
        rows.set_copy(3, 4);
        assert_eq!(rows.get_row(3).unwrap().message_id, MessageId::Derived(DerivedId { key: 0xabc, n: 4 }));
        assert_eq!(rows.to_events()[3].message_id, DerivedId { key: 0xabc, n: 4 }.to_string());
        let big = DerivedId { key: 1, n: u64::from(u32::MAX) + 1 };
        rows.push(&NewTrack {
            message_id: MessageId::Derived(big),
            event: "e",
            user_id: None,
            anonymous_id: Some("a"),
            group_id: None,
            properties: None,
            timestamp: at("2000-01-01T00:00:00Z"),
        });
        assert_eq!(rows.get_row(4).unwrap().message_id, MessageId::Text(&big.to_string()), "kept as its text");
        assert!(rows.get_row(5).is_none());
        // The runs of people, row by row, are each row's people.
        let people: Vec<_> =
            rows.people_runs().flat_map(|(run, user, anonymous)| run.map(move |_| (user, anonymous))).collect();
        let of_rows: Vec<_> = rows.iter().map(|t| (t.user_id, t.anonymous_id)).collect();
        assert_eq!(people, of_rows);
        assert_eq!(people[0], (Some("7/0"), None));

        let events = rows.to_events();
        assert_eq!(events[0].message_id, "m-1");
        assert_eq!(events[0].kind, EventType::Track);
        assert_eq!(events[0].received_at, received);
        let payload: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
        assert_eq!(payload["properties"]["value"], serde_json::json!(2.5));
        assert_eq!(payload["context"]["groupId"], "7");
        let payload: serde_json::Value = serde_json::from_str(&events[1].payload).unwrap();
        assert_eq!(payload["event"], "Report \"Created\"");
        assert_eq!(payload["messageId"], "m-2");
        assert_eq!(payload["properties"], serde_json::json!({}));
    }

    #[test]
    fn names_alternating_rows_and_fitted_rows_read_as_they_were_pushed() {
        let mut rows = TrackRows::with_capacity(at("2024-05-01T00:00:00Z"), 0, 0);
        rows.reserve(1_000, 10_000, 1_000);
        // Two names of one length and first seven bytes: told apart by their text.
        let names = ["post", "like", "post", "feature_a_used", "reply", "feature_b_used", "like", "post"];
        let mut pushed = Vec::new();
        for i in 0..60u32 {
            let user = (i / 7).to_string();
            let account = (i / 20).to_string();
            let id = DerivedId { key: u128::from(i) << 64 | 7, n: 1 };
            let message_id = if i % 5 == 0 { MessageId::Text("given") } else { MessageId::Derived(id) };
            let properties = (i % 3 == 0).then_some(r#"{"value":1}"#);
            rows.push(&NewTrack {
                message_id,
                event: names[i as usize % names.len()],
                user_id: Some(["u", "/", &user]),
                anonymous_id: None,
                group_id: Some(&account),
                properties,
                timestamp: at("2020-01-03T10:00:00Z") + chrono::TimeDelta::seconds(i64::from(i)),
            });
            pushed.push((
                message_id.to_string(),
                names[i as usize % names.len()],
                format!("u/{user}"),
                account,
                properties,
            ));
        }
        let before = rows.bytes();
        rows.fit();
        assert!(rows.bytes() < before / 4, "fitted: {} of {before} bytes", rows.bytes());
        let read: Vec<_> = rows
            .iter()
            .map(|t| {
                let user = t.user_id.unwrap().to_owned();
                (t.message_id.to_string(), t.event, user, t.group_id.unwrap().to_owned(), t.properties)
            })
            .collect();
        assert_eq!(read, pushed);
        // A name among the last few is held once, wherever its rows are.
        let (first, later) = (rows.get_row(0).unwrap().event, rows.get_row(2).unwrap().event);
        assert!(std::ptr::eq(first, later), "rows of one name share it");
        // Every derived id is listed with its row, in order; given ids are not.
        let derived: Vec<_> = rows.derived().collect();
        let expected: Vec<_> =
            (0..60u32).filter(|i| i % 5 != 0).map(|i| (i as usize, u128::from(i) << 64 | 7)).collect();
        assert_eq!(derived, expected);
        // People's runs break where the user does (every 7 rows), not where the account does.
        let starts: Vec<usize> = rows.people_runs().map(|(run, ..)| run.start).collect();
        assert_eq!(starts, (0..60).step_by(7).collect::<Vec<_>>());
    }

    #[test]
    fn joined_parts_and_short_strings_compare_by_their_bytes() {
        assert!(joined_is("7/0", &["7", "/", "0"]));
        assert!(joined_is("70", &["7", "", "0"]) && joined_is("", &["", "", ""]));
        assert!(!joined_is("7/0", &["7", "/", "1"]) && !joined_is("7/0", &["7/", "", "1"]));
        assert!(!joined_is("7/01", &["7", "/", "0"]) && !joined_is("7/", &["7", "/", "0"]));
        let long = "a".repeat(40);
        let other = format!("{}b", "a".repeat(39));
        assert!(short_eq(long.as_bytes(), long.clone().as_bytes()) && !short_eq(long.as_bytes(), other.as_bytes()));
        assert!(short_eq(b"post", b"post") && !short_eq(b"post", b"like") && !short_eq(b"post", b"posts"));
        assert!(short_eq_opt(None, None) && !short_eq_opt(Some(""), None) && short_eq_opt(Some(""), Some("")));
    }
}
