//! The event log's storage unit: the new events of one append, encoded together and
//! compressed, stored as one row of `event_blocks`.
//!
//! A row per event costs SQLite a B-tree cell, a record header and an index entry each; a
//! block costs one of each per request, and its bytes compress well because neighbouring
//! messages repeat their keys, context and identifiers. Events in a block have consecutive
//! seqs from the row's `first_seq`.
//!
//! Layout (before compression): a count, then per event its message id, type, name, user id,
//! anonymous id, group id, previous id, timestamp and receipt time (UTC milliseconds) and the
//! payload. Integers are LEB128 varints (times zigzagged); a string is its length and bytes;
//! an optional string is its length plus one, or 0 for none. The stored form is a format byte
//! followed by the LZ4 block of that, its decompressed size prepended.
//!
//! The payload (format 2) is an optional string: a track call whose payload is what its own
//! fields write ([`TrackPayload`], as every imported event row's is) stores none, then only
//! its properties' JSON, and reading rebuilds the same text. Such payloads repeat the event's
//! id, name, user, time and account: encoding and compressing them was most of the cost of
//! storing an import's blocks. In format 1 the payload is a string, always whole.
//!
//! In format 3 the message id is a code and what it says: an id of one of two common shapes
//! is kept as the 16 bytes its 32 hex digits write (code 0: `import_<32 hex>_<n>`, the id
//! `steward import` derives for a row, followed by `n`; code 1: a lowercase UUID, as the
//! SDKs send), any other as a string (code `2 + length`, then its bytes). Hex digits do not
//! compress: such ids were most of an imported block's stored bytes. Reading writes them out
//! again, the same text.
//!
//! Format 4 takes the 16 bytes of each compact id out of what is compressed: they are random,
//! so LZ4 only spent time on them (a third of an imported event's bytes before compression).
//! The stored form is then the format byte, the number of compact ids (4 bytes,
//! little-endian), their 16 bytes each in event order, and the LZ4 block. Times are written
//! as steps from the event before (the first from 0): an import's are hours apart and its
//! receipt times all one, a few bytes where the whole time took six each. The type byte's
//! high bits say which of the name, user id, anonymous id and group id (bits 4 to 7) are the
//! event before's, and those are not written again: an import's rows come in runs of one
//! account's and one person's.
//!
//! The format is stored: a change needs a new format byte and a decoder for the old one.

use std::borrow::{Borrow, Cow};

use domain::{DerivedId, EventType, MessageId, NewEvent, TrackPayload};
use store::{Result, StoreError};

use crate::{ms, time};

/// Every payload stored whole (blocks written before format 2).
const FORMAT_LZ4_V1: u8 = 1;
/// Payloads that their track call's fields write are rebuilt from them and their properties.
const FORMAT_LZ4_V2: u8 = 2;
/// Message ids of two common shapes kept as the bytes their hex digits write.
const FORMAT_LZ4_V3: u8 = 3;
/// Those bytes kept apart, uncompressed, and times as steps.
const FORMAT_LZ4_V4: u8 = 4;

const ID_DERIVED: u64 = 0;
const ID_UUID: u64 = 1;
/// Codes from this one up are a string of `code - ID_TEXT` bytes.
const ID_TEXT: u64 = 2;

/// Each byte's value as a lowercase hex digit, or 0xFF for any other byte.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

/// The 16 bytes 32 lowercase hex digits write; `None` for anything else. Without a branch
/// per digit: every UUID an SDK sends goes through it.
fn hex16(digits: &[u8]) -> Option<[u8; 16]> {
    let digits: &[u8; 32] = digits.try_into().ok()?;
    let mut out = [0u8; 16];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0xf);
    }
    (bad & 0xF0 == 0).then_some(out)
}

/// Appends the lowercase hex digits of `bytes` to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (pair, b) in digits.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[(b >> 4) as usize];
        pair[1] = HEX[(b & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&digits[..2 * bytes.len().min(16)]).expect("hex digits are ASCII"));
}

/// Writes a message id: its code, the 16 bytes of a compact one onto `keys` (format 4) or
/// `out` (format 3), and a derived id's `n`. An id is compact when it has one of the two
/// shapes exactly (so that writing it out again gives the same text), else a string.
fn put_id(out: &mut Vec<u8>, mut keys: Option<&mut Vec<u8>>, id: MessageId<'_>) {
    let mut key = |out: &mut Vec<u8>, bytes: &[u8]| match keys.as_deref_mut() {
        Some(keys) => keys.extend_from_slice(bytes),
        None => out.extend_from_slice(bytes),
    };
    let derived = match id {
        MessageId::Derived(d) => Some(d),
        MessageId::Text(text) => DerivedId::parse(text),
    };
    if let Some(d) = derived {
        put_uint(out, ID_DERIVED);
        key(out, &d.key.to_be_bytes());
        put_uint(out, d.n);
        return;
    }
    let MessageId::Text(id) = id else { unreachable!("a derived id is written above") };
    if let Some(bytes) = uuid(id.as_bytes()) {
        put_uint(out, ID_UUID);
        key(out, &bytes);
    } else {
        put_uint(out, ID_TEXT + id.len() as u64);
        out.extend_from_slice(id.as_bytes());
    }
}

/// The 16 bytes of a UUID in its lowercase hyphenated form.
fn uuid(b: &[u8]) -> Option<[u8; 16]> {
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut digits = [0u8; 32];
    for (d, &c) in digits.iter_mut().zip(b.iter().filter(|&&c| c != b'-')) {
        *d = c;
    }
    // A hyphen elsewhere leaves fewer than 32 digits, which `hex16` refuses.
    if b.iter().filter(|&&c| c == b'-').count() != 4 {
        return None;
    }
    hex16(&digits)
}

/// Writes out a compact message id read from a format 3 block.
fn write_id(out: &mut String, code: u64, bytes: &[u8; 16], n: u64) {
    if code == ID_DERIVED {
        out.push_str(DerivedId::PREFIX);
        push_hex(out, bytes);
        out.push('_');
        out.push_str(itoa(n).as_str());
    } else {
        for (i, part) in [&bytes[..4], &bytes[4..6], &bytes[6..8], &bytes[8..10], &bytes[10..]].iter().enumerate() {
            if i > 0 {
                out.push('-');
            }
            push_hex(out, part);
        }
    }
}

/// `n` in decimal, without allocating.
fn itoa(mut n: u64) -> Digits {
    let mut d = Digits { buf: [0; 20], start: 20 };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).expect("digits are ASCII")
    }
}
/// A block never decompresses to more than this (a request is at most a few megabytes).
const MAX_DECODED: usize = 64 << 20;

/// At least the bytes [`encode_refs`] writes before compressing: each string's bytes, and the
/// most a varint or a code takes.
fn encoded_bound<'a, E: Borrow<EventRef<'a>>>(events: impl ExactSizeIterator<Item = E>) -> usize {
    const VARINT: usize = 10;
    let strings = |e: &EventRef<'_>| {
        let opt = [e.name, e.user_id, e.anonymous_id, e.group_id, e.previous_id];
        let payload = match e.payload {
            Payload::Whole(text) => text.len(),
            Payload::Track { properties } => properties.len(),
        };
        e.message_id.len() + payload + opt.iter().map(|f| f.map_or(0, str::len)).sum::<usize>()
    };
    VARINT + events.map(|e| strings(e.borrow()) + 1 + 9 * VARINT).sum::<usize>()
}

/// Encodes and compresses events for one `event_blocks` row.
#[cfg(test)]
pub(crate) fn encode<'a>(events: impl ExactSizeIterator<Item = &'a NewEvent> + Clone) -> Vec<u8> {
    encode_refs(events.map(EventRef::of))
}

/// Encodes and compresses events for one `event_blocks` row. A whole payload that is what its
/// track call's fields write is stored as its properties alone, as one given that way is.
pub(crate) fn encode_refs<'a, E: Borrow<EventRef<'a>>>(events: impl ExactSizeIterator<Item = E> + Clone) -> Vec<u8> {
    encode_as(FORMAT_LZ4_V4, events)
}

/// Whether two optional fields are the same: by where their text is first (the rows of an
/// import share their neighbours' text), then by the text.
fn same_field(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b,
        _ => false,
    }
}

/// Encodes events in format 3 or 4 (format 3 only for the tests that read it back). Events
/// are read where they are (an event of a few hundred bytes was copied out for each).
fn encode_as<'a, E: Borrow<EventRef<'a>>>(format: u8, events: impl ExactSizeIterator<Item = E> + Clone) -> Vec<u8> {
    let apart = format == FORMAT_LZ4_V4;
    // Sized once: a block is megabytes, and growing it copied it and touched fresh pages at
    // each doubling (a tenth of an import's CPU went to the kernel zeroing such pages).
    let bound = encoded_bound(events.clone());
    let mut raw = Vec::with_capacity(bound);
    // Format 4's compact ids go straight where they are stored, after the format byte and
    // their count (written once they are counted), rather than into a list copied there.
    let mut stored = Vec::with_capacity(
        1 + if apart { 4 + 16 * events.len() } else { 0 } + 4 + lz4_flex::block::get_maximum_output_size(bound),
    );
    stored.push(format);
    if apart {
        stored.extend_from_slice(&[0; 4]);
    }
    let mut scratch = String::new();
    let (mut last_ts, mut last_received) = (0i64, 0i64);
    let mut last: Option<[Option<&str>; 4]> = None;
    put_uint(&mut raw, events.len() as u64);
    for e in events {
        let e = e.borrow();
        put_id(&mut raw, apart.then_some(&mut stored), e.message_id);
        let fields = [e.name, e.user_id, e.anonymous_id, e.group_id];
        let mut same = 0u8;
        if let Some(last) = last.filter(|_| apart) {
            for (bit, (a, b)) in last.iter().zip(&fields).enumerate() {
                if same_field(*a, *b) {
                    same |= 1 << bit;
                }
            }
        }
        raw.push(kind_code(e.kind) | same << 4);
        for (bit, field) in fields.iter().enumerate() {
            if same & (1 << bit) == 0 {
                put_opt(&mut raw, *field);
            }
        }
        put_opt(&mut raw, e.previous_id);
        last = Some(fields);
        if apart {
            put_int(&mut raw, e.timestamp_ms.wrapping_sub(last_ts));
            put_int(&mut raw, e.received_at_ms.wrapping_sub(last_received));
            (last_ts, last_received) = (e.timestamp_ms, e.received_at_ms);
        } else {
            put_int(&mut raw, e.timestamp_ms);
            put_int(&mut raw, e.received_at_ms);
        }
        let rebuilt = match e.payload {
            Payload::Track { properties } => Some(properties),
            // Compared with what reading will rebuild: the time as stored, to the millisecond.
            Payload::Whole(payload) => e.name.filter(|_| e.kind == EventType::Track).and_then(|name| {
                let id = e.message_id.text();
                let fields = TrackPayload {
                    message_id: &id,
                    event: name,
                    user_id: e.user_id,
                    anonymous_id: e.anonymous_id,
                    timestamp: time(e.timestamp_ms),
                    properties: None,
                    group_id: e.group_id,
                };
                fields.properties_in(payload, &mut scratch)
            }),
        };
        match rebuilt {
            Some(properties) => {
                raw.push(0);
                put_str(&mut raw, properties);
            }
            None => match e.payload {
                Payload::Whole(payload) => put_opt(&mut raw, Some(payload)),
                Payload::Track { .. } => unreachable!("a track's properties are always rebuilt"),
            },
        }
    }
    // Then the decompressed size (as `compress_prepend_size` writes it) and the LZ4 block,
    // compressed in place rather than into a second buffer copied after.
    if apart {
        let ids = (stored.len() - 5) / 16;
        stored[1..5].copy_from_slice(&(ids as u32).to_le_bytes());
    }
    stored.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    let head = stored.len();
    stored.resize(head + lz4_flex::block::get_maximum_output_size(raw.len()), 0);
    let n = lz4_flex::block::compress_into(&raw, &mut stored[head..]).expect("room for the largest compressed size");
    stored.truncate(head + n);
    stored
}

/// A block's events, decompressed and checked; [`Decoded::get`] reads one without copying.
pub(crate) struct Decoded {
    raw: Vec<u8>,
    /// Where each event starts in `raw`.
    starts: Vec<usize>,
    format: u8,
    /// Formats 3 and 4: the compact message ids written out, one after the other, and where
    /// each event's ends (an event whose id is a string in `raw` adds nothing).
    ids: String,
    id_ends: Vec<usize>,
    /// Format 4: each event's time and receipt time (`raw` holds their steps), and where its
    /// name, user id, anonymous id and group id are in `raw` (some are the event before's).
    times: Vec<(i64, i64)>,
    fields: Vec<[Span; 4]>,
}

/// Where a string is in a decoded block; `start` is `u32::MAX` for none.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(raw: &[u8], s: Option<&str>) -> Span {
        match s {
            None => Span { start: u32::MAX, len: 0 },
            Some(s) => Span { start: (s.as_ptr() as usize - raw.as_ptr() as usize) as u32, len: s.len() as u32 },
        }
    }

    fn get(self, raw: &[u8]) -> Option<&str> {
        let (start, end) = (self.start as usize, self.start as usize + self.len as usize);
        // Made from a string of `raw` read whole by `decode`, so valid UTF-8 and in bounds.
        (self.start != u32::MAX).then(|| std::str::from_utf8(&raw[start..end]).expect("a decoded field"))
    }
}

/// A stored event's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload<'a> {
    Whole(&'a str),
    /// The payload its track call's fields write with these properties.
    Track {
        properties: &'a str,
    },
}

/// One event of a block, borrowing from it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventRef<'a> {
    pub message_id: MessageId<'a>,
    pub kind: EventType,
    pub name: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub group_id: Option<&'a str>,
    pub previous_id: Option<&'a str>,
    pub timestamp_ms: i64,
    pub received_at_ms: i64,
    pub payload: Payload<'a>,
}

impl<'a> EventRef<'a> {
    /// An event to store, its payload as given.
    pub(crate) fn of(e: &'a NewEvent) -> EventRef<'a> {
        EventRef {
            message_id: MessageId::Text(&e.message_id),
            kind: e.kind,
            name: e.name.as_deref(),
            user_id: e.user_id.as_deref(),
            anonymous_id: e.anonymous_id.as_deref(),
            group_id: e.group_id.as_deref(),
            previous_id: e.previous_id.as_deref(),
            timestamp_ms: ms(&e.timestamp),
            received_at_ms: ms(&e.received_at),
            payload: Payload::Whole(&e.payload),
        }
    }

    /// A track call given in columns: its payload is what its fields write. `received_at_ms`
    /// is worked out once for all the rows received together.
    pub(crate) fn of_track(t: &domain::Track<'a>, received_at_ms: i64) -> EventRef<'a> {
        EventRef {
            message_id: t.message_id,
            kind: EventType::Track,
            name: Some(t.event),
            user_id: t.user_id,
            anonymous_id: t.anonymous_id,
            group_id: t.group_id,
            previous_id: None,
            timestamp_ms: t.millis(),
            received_at_ms,
            payload: Payload::Track { properties: t.properties.unwrap_or("{}") },
        }
    }

    /// The payload's text, as it was appended.
    pub(crate) fn payload(&self) -> Cow<'a, str> {
        match self.payload {
            Payload::Whole(text) => Cow::Borrowed(text),
            Payload::Track { properties } => Cow::Owned(
                TrackPayload {
                    message_id: &self.message_id.text(),
                    // A rebuilt payload's event has a name: the decoder checks it.
                    event: self.name.unwrap_or_default(),
                    user_id: self.user_id,
                    anonymous_id: self.anonymous_id,
                    timestamp: time(self.timestamp_ms),
                    properties: Some(properties),
                    group_id: self.group_id,
                }
                .to_json(),
            ),
        }
    }

    pub(crate) fn to_owned(self) -> NewEvent {
        let own = |s: Option<&str>| s.map(str::to_owned);
        NewEvent {
            message_id: self.message_id.text().into_owned(),
            kind: self.kind,
            name: own(self.name),
            user_id: own(self.user_id),
            anonymous_id: own(self.anonymous_id),
            group_id: own(self.group_id),
            previous_id: own(self.previous_id),
            timestamp: time(self.timestamp_ms),
            received_at: time(self.received_at_ms),
            payload: self.payload().into_owned(),
        }
    }
}

/// Decompresses a stored block and checks that every event in it reads.
pub(crate) fn decode(stored: &[u8]) -> Result<Decoded> {
    let Some((&format, body)) = stored.split_first() else { return Err(corrupt("empty block")) };
    if !(FORMAT_LZ4_V1..=FORMAT_LZ4_V4).contains(&format) {
        return Err(corrupt(&format!("unknown block format {format}")));
    }
    let (keys, body) = if format == FORMAT_LZ4_V4 {
        let count = body.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        let end = count.and_then(|c| c.checked_mul(16)).map(|len| 4 + len).filter(|&end| end <= body.len());
        let end = end.ok_or_else(|| corrupt("bad id count"))?;
        (&body[4..end], &body[end..])
    } else {
        (&[][..], body)
    };
    let size = body.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
    if size.is_none_or(|s| s > MAX_DECODED) {
        return Err(corrupt("bad decompressed size"));
    }
    let raw = lz4_flex::block::decompress_size_prepended(body).map_err(|e| corrupt(&e.to_string()))?;
    let mut r = Reader { buf: &raw, at: 0, format };
    let count = r.uint()? as usize;
    if count > raw.len() {
        return Err(corrupt("bad event count"));
    }
    let compact = format >= FORMAT_LZ4_V3;
    let mut starts = Vec::with_capacity(count);
    let (mut ids, mut id_ends, mut times) = (String::new(), Vec::new(), Vec::new());
    if compact {
        id_ends.reserve(count);
    }
    let (mut key_at, mut ts, mut received) = (0usize, 0i64, 0i64);
    let mut fields = Vec::new();
    let mut last: Option<[Option<&str>; 4]> = None;
    for _ in 0..count {
        starts.push(r.at);
        if compact && let Some((code, n)) = r.compact_id()? {
            let bytes = if format == FORMAT_LZ4_V4 {
                let bytes = keys.get(key_at..key_at + 16).ok_or_else(|| corrupt("too few ids"))?;
                key_at += 16;
                bytes
            } else {
                let at = r.at + varint_len(code);
                r.buf.get(at..at + 16).ok_or_else(|| corrupt("truncated"))?
            };
            write_id(&mut ids, code, bytes.try_into().expect("16 bytes"), n);
        }
        let event = r.event(last)?;
        if compact {
            id_ends.push(ids.len());
        }
        if format == FORMAT_LZ4_V4 {
            ts = ts.wrapping_add(event.timestamp_ms);
            received = received.wrapping_add(event.received_at_ms);
            times.push((ts, received));
            let own = [event.name, event.user_id, event.anonymous_id, event.group_id];
            fields.push(own.map(|s| Span::of(&raw, s)));
            last = Some(own);
        }
    }
    if r.at != raw.len() {
        return Err(corrupt("trailing bytes"));
    }
    if key_at != keys.len() {
        return Err(corrupt("ids no event has"));
    }
    Ok(Decoded { raw, starts, format, ids, id_ends, times, fields })
}

/// The bytes of `v` as a varint.
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

impl Decoded {
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// The `i`th event (seq `first_seq + i`).
    pub(crate) fn get(&self, i: usize) -> Option<EventRef<'_>> {
        let at = *self.starts.get(i)?;
        // Every event was read once by `decode`, so this cannot fail.
        // The fields an event shares with the one before are this event's own, as decoded.
        let own = self.fields.get(i).map(|f| f.map(|s| s.get(&self.raw)));
        let mut event = Reader { buf: &self.raw, at, format: self.format }.event(own).ok()?;
        if self.format >= FORMAT_LZ4_V3 {
            let start = if i == 0 { 0 } else { self.id_ends[i - 1] };
            if self.id_ends[i] > start {
                event.message_id = MessageId::Text(&self.ids[start..self.id_ends[i]]);
            }
        }
        if self.format == FORMAT_LZ4_V4 {
            (event.timestamp_ms, event.received_at_ms) = self.times[i];
        }
        Some(event)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = EventRef<'_>> {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

pub(crate) fn corrupt(why: &str) -> StoreError {
    StoreError::Backend(format!("corrupt event block: {why}"))
}

/// What a block's row says about its events, so that reads can skip it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    /// A bit per message type present ([`type_bit`]).
    pub types: i64,
    pub min_ts: i64,
    pub max_ts: i64,
}

pub(crate) fn summarize<'a>(events: impl Iterator<Item = EventRef<'a>>) -> Summary {
    events.fold(Summary { types: 0, min_ts: i64::MAX, max_ts: i64::MIN }, |s, e| Summary {
        types: s.types | type_bit(e.kind),
        min_ts: s.min_ts.min(e.timestamp_ms),
        max_ts: s.max_ts.max(e.timestamp_ms),
    })
}

/// The bit of a message type in [`Summary::types`]. Stored: the order of `EventType::ALL`
/// must not change.
pub(crate) fn type_bit(kind: EventType) -> i64 {
    1 << kind_code(kind)
}

fn kind_code(kind: EventType) -> u8 {
    EventType::ALL.iter().position(|k| *k == kind).expect("every type is in ALL") as u8
}

fn kind_from(code: u8) -> Result<EventType> {
    EventType::ALL.get(code as usize).copied().ok_or_else(|| corrupt(&format!("unknown event type {code}")))
}

pub(crate) fn put_uint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_int(out: &mut Vec<u8>, v: i64) {
    put_uint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            put_uint(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    /// The block format whose events it reads.
    format: u8,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0, format: FORMAT_LZ4_V2 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.at == self.buf.len()
    }

    /// What is left to read.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.at..]
    }

    pub(crate) fn byte(&mut self) -> Result<u8> {
        let b = *self.buf.get(self.at).ok_or_else(|| corrupt("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    pub(crate) fn uint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    pub(crate) fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.at.checked_add(N).filter(|&e| e <= self.buf.len()).ok_or_else(|| corrupt("truncated"))?;
        let out = self.buf[self.at..end].try_into().expect("N bytes");
        self.at = end;
        Ok(out)
    }

    pub(crate) fn int(&mut self) -> Result<i64> {
        let v = self.uint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn bytes(&mut self, len: usize) -> Result<&'a str> {
        let end = self.at.checked_add(len).filter(|&e| e <= self.buf.len()).ok_or_else(|| corrupt("truncated"))?;
        let s = std::str::from_utf8(&self.buf[self.at..end]).map_err(|_| corrupt("invalid UTF-8"))?;
        self.at = end;
        Ok(s)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str> {
        let len = self.uint()? as usize;
        self.bytes(len)
    }

    fn opt(&mut self) -> Result<Option<&'a str>> {
        match self.uint()? as usize {
            0 => Ok(None),
            n => self.bytes(n - 1).map(Some),
        }
    }

    /// Formats 3 and 4: the code and `n` of a compact message id at the reader, if it is one
    /// (the reader stays put; in format 3 its 16 bytes follow the code).
    fn compact_id(&self) -> Result<Option<(u64, u64)>> {
        let mut r = Reader { buf: self.buf, at: self.at, format: self.format };
        let code = r.uint()?;
        if code >= ID_TEXT {
            return Ok(None);
        }
        if self.format == FORMAT_LZ4_V3 {
            r.skip(16)?;
        }
        let n = if code == ID_DERIVED { r.uint()? } else { 0 };
        Ok(Some((code, n)))
    }

    /// The message id: a string, or in formats 3 and 4 an empty one for a compact id
    /// (written out by [`decode`]), which is skipped.
    fn message_id(&mut self) -> Result<&'a str> {
        if self.format < FORMAT_LZ4_V3 {
            return self.str();
        }
        let inline = if self.format == FORMAT_LZ4_V3 { 16 } else { 0 };
        match self.uint()? {
            ID_DERIVED => {
                self.skip(inline)?;
                self.uint()?;
                Ok("")
            }
            ID_UUID => {
                self.skip(inline)?;
                Ok("")
            }
            code => self.bytes((code - ID_TEXT) as usize),
        }
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if self.buf.len() - self.at < n {
            return Err(corrupt("truncated"));
        }
        self.at += n;
        Ok(())
    }

    /// The next event; `before` gives the name, user id, anonymous id and group id it may
    /// share with the event before (format 4).
    fn event(&mut self, before: Option<[Option<&'a str>; 4]>) -> Result<EventRef<'a>> {
        let message_id = MessageId::Text(self.message_id()?);
        let code = self.byte()?;
        let (kind, same) = if self.format >= FORMAT_LZ4_V4 { (code & 0x0f, code >> 4) } else { (code, 0) };
        let mut fields = [None; 4];
        for (bit, field) in fields.iter_mut().enumerate() {
            *field = if same & (1 << bit) == 0 {
                self.opt()?
            } else {
                before.ok_or_else(|| corrupt("a field shared with no event"))?[bit]
            };
        }
        let [name, user_id, anonymous_id, group_id] = fields;
        let mut event = EventRef {
            message_id,
            kind: kind_from(kind)?,
            name,
            user_id,
            anonymous_id,
            group_id,
            previous_id: self.opt()?,
            timestamp_ms: self.int()?,
            received_at_ms: self.int()?,
            payload: Payload::Whole(""),
        };
        event.payload = match self.format {
            FORMAT_LZ4_V1 => Payload::Whole(self.str()?),
            _ => match self.opt()? {
                Some(text) => Payload::Whole(text),
                None if event.kind == EventType::Track && event.name.is_some() => {
                    Payload::Track { properties: self.str()? }
                }
                None => return Err(corrupt("a rebuilt payload of an event that is not a named track call")),
            },
        };
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: i64, kind: EventType, with_optional: bool) -> NewEvent {
        let opt = |s: String| with_optional.then_some(s);
        NewEvent {
            message_id: format!("m-{i}"),
            kind,
            name: opt(format!("Report Créé {i}")),
            user_id: opt(format!("user-{i}")),
            anonymous_id: opt(String::new()),
            group_id: opt("acme".into()),
            previous_id: None,
            timestamp: time(-86_400_000 + i * 1_000_003),
            received_at: time(1_700_000_000_000 + i),
            payload: format!(r#"{{"type":"{kind}","messageId":"m-{i}","properties":{{"n":{i}}}}}"#),
        }
    }

    #[test]
    fn events_come_back_as_they_went_in() {
        let events: Vec<NewEvent> = (0..300).map(|i| event(i, EventType::ALL[i as usize % 6], i % 3 != 0)).collect();
        let stored = encode(events.iter());
        let decoded = decode(&stored).unwrap();
        let back: Vec<NewEvent> = decoded.iter().map(EventRef::to_owned).collect();
        assert_eq!(decoded.len(), 300);
        assert_eq!(decoded.get(7).unwrap().message_id, "m-7");
        assert!(decoded.get(300).is_none());
        assert_eq!(back, events);
        // Neighbouring messages share most of their bytes.
        let plain: usize = events
            .iter()
            .map(|e| {
                let fields = [&e.name, &e.user_id, &e.anonymous_id, &e.group_id, &e.previous_id];
                e.payload.len()
                    + e.message_id.len()
                    + fields.iter().filter_map(|f| f.as_ref()).map(String::len).sum::<usize>()
            })
            .sum();
        assert!(stored.len() < plain / 2, "{} bytes stored for {plain}", stored.len());
    }

    /// A track call as an import appends it: its payload is what its fields write.
    fn imported(i: i64, properties: Option<&str>, group: Option<&str>) -> NewEvent {
        let (message_id, user) = (format!("import_{i:032x}_1"), format!("7/{i}"));
        let timestamp = time(1_579_510_042_000 + i * 1_001);
        let payload = TrackPayload {
            message_id: &message_id,
            event: "Report \"Créé\"",
            user_id: Some(&user),
            anonymous_id: None,
            timestamp,
            properties,
            group_id: group,
        }
        .to_json();
        NewEvent {
            message_id,
            kind: EventType::Track,
            name: Some("Report \"Créé\"".into()),
            user_id: Some(user),
            anonymous_id: None,
            group_id: group.map(str::to_owned),
            previous_id: None,
            timestamp,
            received_at: time(1_700_000_000_000 + i),
            payload,
        }
    }

    #[test]
    fn payloads_their_fields_write_are_rebuilt_as_they_were() {
        let mut events: Vec<NewEvent> = (0..300)
            .map(|i| match i % 4 {
                0 => imported(i, Some(r#"{"value":2.5}"#), Some("7")),
                1 => imported(i, None, None),
                2 => imported(i, Some(""), Some("acme \"x\"")),
                _ => event(i, EventType::Track, true),
            })
            .collect();
        // Fields that no longer say what the payload does: kept whole.
        events[4].user_id = Some("someone else".into());
        events[8].timestamp += chrono::Duration::milliseconds(1);
        events[12].kind = EventType::Page;
        // Finer than the log keeps a time: the payload has the milliseconds, the field more.
        events[16].timestamp += chrono::Duration::microseconds(7);
        let stored = encode(events.iter());
        let decoded = decode(&stored).unwrap();
        let rebuilt: Vec<bool> = decoded.iter().map(|e| matches!(e.payload, Payload::Track { .. })).collect();
        assert!(rebuilt[0] && rebuilt[1] && rebuilt[2] && !rebuilt[3], "{:?}", &rebuilt[..4]);
        assert!(!rebuilt[4] && !rebuilt[8] && !rebuilt[12] && rebuilt[16]);
        for (e, back) in events.iter().zip(decoded.iter()) {
            assert_eq!(back.payload(), e.payload.as_str());
            assert_eq!(back.to_owned().payload, e.payload);
        }
        // Rebuilt payloads take no room beyond their properties.
        let raw_size = |stored: &[u8]| {
            let ids = u32::from_le_bytes(stored[1..5].try_into().unwrap()) as usize;
            let at = 5 + 16 * ids;
            u32::from_le_bytes(stored[at..at + 4].try_into().unwrap()) as usize
        };
        let whole: Vec<NewEvent> = events.iter().cloned().map(|e| NewEvent { payload: e.payload + " ", ..e }).collect();
        let saved = raw_size(&encode(whole.iter())) - raw_size(&stored);
        let rebuilt: usize = events.iter().zip(&rebuilt).filter(|(_, r)| **r).map(|(e, _)| e.payload.len()).sum();
        assert!(saved > rebuilt * 9 / 10, "{saved} bytes saved of {rebuilt}");
    }

    #[test]
    fn blocks_of_the_first_format_still_read() {
        let events: Vec<NewEvent> = (0..20).map(|i| imported(i, Some(r#"{"value":1}"#), Some("7"))).collect();
        let stored = older_block(FORMAT_LZ4_V1, &events, |raw, e| put_str(raw, &e.payload));
        let decoded = decode(&stored).unwrap();
        assert!(decoded.iter().all(|e| matches!(e.payload, Payload::Whole(_))));
        assert_eq!(decoded.iter().map(EventRef::to_owned).collect::<Vec<_>>(), events);
    }

    /// A block of an earlier format: each event's fields as formats 1 and 2 wrote them (ids
    /// as strings), then its payload as `payload` writes it.
    fn older_block(format: u8, events: &[NewEvent], payload: impl Fn(&mut Vec<u8>, &NewEvent)) -> Vec<u8> {
        let mut raw = Vec::new();
        put_uint(&mut raw, events.len() as u64);
        for e in events {
            put_str(&mut raw, &e.message_id);
            raw.push(kind_code(e.kind));
            for field in [&e.name, &e.user_id, &e.anonymous_id, &e.group_id, &e.previous_id] {
                put_opt(&mut raw, field.as_deref());
            }
            put_int(&mut raw, ms(&e.timestamp));
            put_int(&mut raw, ms(&e.received_at));
            payload(&mut raw, e);
        }
        let mut stored = vec![format];
        stored.extend(lz4_flex::block::compress_prepend_size(&raw));
        stored
    }

    #[test]
    fn ids_of_the_two_shapes_are_kept_compact_and_read_back_the_same() {
        let hex = "0123456789abcdef0123456789abcdef";
        let compact = [
            format!("import_{hex}_1"),
            format!("import_{hex}_12"),
            format!("import_{hex}_{}", u64::MAX),
            "a1b2c3d4-0000-4fff-8abc-0123456789ab".to_owned(),
        ];
        // Near misses, each stored as the string it is.
        let plain = [
            format!("import_{}_1", hex.to_uppercase()),
            format!("import_{}_1", &hex[1..]),
            format!("import_{hex}_01"),
            format!("import_{hex}_0"),
            format!("import_{hex}_"),
            format!("import_{hex}"),
            format!("import_{hex}_1x"),
            format!("import_{hex}_18446744073709551616"),
            format!("export_{hex}_1"),
            "A1B2C3D4-0000-4FFF-8ABC-0123456789AB".to_owned(),
            "a1b2c3d4-0000-4fff-8abc0-123456789ab".to_owned(),
            "a1b2c3d400004fff8abc0123456789ab".to_owned(),
            "a1b2c3d4-0000-4fff-8abc-0123456789a-".to_owned(),
            "m-1".to_owned(),
            String::new(),
        ];
        let events: Vec<NewEvent> = compact
            .iter()
            .chain(&plain)
            .enumerate()
            .map(|(i, id)| NewEvent { message_id: id.clone(), ..imported(i as i64, None, Some("7")) })
            .collect();
        let stored = encode(events.iter());
        assert_eq!(stored[0], FORMAT_LZ4_V4);
        assert_eq!(stored[1..5], (compact.len() as u32).to_le_bytes(), "the compact ids are kept apart");
        // Blocks of format 3, which kept them among the rest, still read.
        let third = encode_as(FORMAT_LZ4_V3, events.iter().map(EventRef::of));
        assert_eq!(third[0], FORMAT_LZ4_V3);
        for stored in [stored, third] {
            let decoded = decode(&stored).unwrap();
            let ids: Vec<String> = decoded.iter().map(|e| e.message_id.to_string()).collect();
            assert_eq!(ids, events.iter().map(|e| e.message_id.clone()).collect::<Vec<_>>());
            for (e, back) in events.iter().zip(decoded.iter()) {
                assert_eq!(back.payload(), e.payload.as_str(), "the payload names the id it had");
            }
            assert_eq!(decoded.iter().map(EventRef::to_owned).collect::<Vec<_>>(), events);
        }
        for id in &compact {
            let mut raw = Vec::new();
            put_id(&mut raw, None, MessageId::Text(id));
            assert!(raw.len() <= 1 + 16 + 10, "{id} takes {} bytes", raw.len());
            // An id an import holds in its parts is written as its text would be.
            if let Some(parts) = DerivedId::parse(id) {
                let mut from_parts = Vec::new();
                put_id(&mut from_parts, None, MessageId::Derived(parts));
                assert_eq!(from_parts, raw, "{id}");
            }
        }
        for id in &plain {
            let mut raw = Vec::new();
            put_id(&mut raw, None, MessageId::Text(id));
            assert_eq!(raw.len(), 1 + id.len(), "{id} is kept as a string");
        }
    }

    #[test]
    fn times_are_kept_as_steps_and_read_back_whole() {
        let at = [0, -86_400_000, 1_700_000_000_000, 1_699_999_999_999, 253_402_300_799_000, -62_135_596_800_000, 5];
        let events: Vec<NewEvent> = at
            .iter()
            .enumerate()
            .map(|(i, &ms)| NewEvent {
                timestamp: time(ms),
                received_at: time(1_700_000_000_000 + (i as i64 % 2) * 1_000),
                ..imported(i as i64, None, Some("7"))
            })
            .collect();
        let stored = encode(events.iter());
        let decoded = decode(&stored).unwrap();
        assert_eq!(decoded.iter().map(EventRef::to_owned).collect::<Vec<_>>(), events);
        for (i, e) in events.iter().enumerate().rev() {
            let one = decoded.get(i).unwrap();
            assert_eq!((one.timestamp_ms, one.received_at_ms), (ms(&e.timestamp), ms(&e.received_at)), "event {i}");
        }
        // An import's times, a few hours apart and received at once, take a few bytes each
        // (its ids' keys are as random as a hash's).
        let hourly: Vec<NewEvent> = (0..1_000)
            .map(|i| {
                let key = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
                NewEvent {
                    message_id: format!("import_{key:032x}_1"),
                    timestamp: time(1_600_000_000_000 + i * 3_600_000 + (i * 7_919 % 1_000) * 1_000),
                    received_at: time(1_700_000_000_000),
                    ..imported(i, None, Some("7"))
                }
            })
            .collect();
        let steps = encode(hourly.iter());
        let whole = encode_as(FORMAT_LZ4_V3, hourly.iter().map(EventRef::of));
        assert!(steps.len() < whole.len(), "{} bytes as steps, {} whole", steps.len(), whole.len());
    }

    #[test]
    fn fields_the_event_before_has_are_not_written_again() {
        // Runs of one account's and one person's events, as an import's rows come.
        let events: Vec<NewEvent> = (0..400)
            .map(|i| {
                let mut e = imported(i, None, (i % 100 != 99).then_some("acme"));
                e.user_id = Some(format!("acme/{}", i / 7));
                e.anonymous_id = (i % 50 == 0).then(|| "anon".to_owned());
                e.name = Some(["like", "post"][(i / 3 % 2) as usize].to_owned());
                e.kind = if i % 41 == 0 { EventType::Identify } else { EventType::Track };
                e
            })
            .collect();
        let stored = encode(events.iter());
        let decoded = decode(&stored).unwrap();
        assert_eq!(decoded.iter().map(EventRef::to_owned).collect::<Vec<_>>(), events);
        // Read one at a time, in any order, each has its own fields.
        for i in (0..events.len()).rev().step_by(3) {
            assert_eq!(decoded.get(i).unwrap().to_owned(), events[i], "event {i}");
        }
        let raw_size = |stored: &[u8], at: usize| u32::from_le_bytes(stored[at..at + 4].try_into().unwrap());
        let third = encode_as(FORMAT_LZ4_V3, events.iter().map(EventRef::of));
        assert!(raw_size(&stored, 5) < raw_size(&third, 1) * 3 / 4, "a quarter less to compress");
        // A first event cannot share a field with the one before it.
        let mut raw = Vec::new();
        put_uint(&mut raw, 1);
        put_uint(&mut raw, ID_TEXT + 1);
        raw.push(b'm');
        raw.push(kind_code(EventType::Track) | 1 << 4);
        let mut bad = vec![FORMAT_LZ4_V4, 0, 0, 0, 0];
        bad.extend(lz4_flex::block::compress_prepend_size(&raw));
        assert!(decode(&bad).is_err());
    }

    #[test]
    fn blocks_of_the_second_format_still_read() {
        let events: Vec<NewEvent> = (0..20).map(|i| imported(i, Some(r#"{"value":1}"#), Some("7"))).collect();
        // Format 2 wrote a track call's payload as its properties alone, after a 0.
        let stored = older_block(FORMAT_LZ4_V2, &events, |raw, _| {
            raw.push(0);
            put_str(raw, r#"{"value":1}"#);
        });
        let decoded = decode(&stored).unwrap();
        assert!(decoded.iter().all(|e| matches!(e.payload, Payload::Track { .. })));
        assert_eq!(decoded.iter().map(EventRef::to_owned).collect::<Vec<_>>(), events);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let stored = encode([event(1, EventType::Track, true)].iter());
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0, 0, 0, 0]).is_err());
        let mut huge = stored.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        for cut in 1..stored.len() {
            let outcome = decode(&stored[..cut]);
            assert!(outcome.is_err(), "a block cut at {cut} decoded");
        }
    }
}
