//! A track call's payload as its fields alone write it: what an import stores for each event
//! row, and what the SQLite log rebuilds instead of keeping such a payload whole.

use chrono::{Datelike, Timelike};
use serde_json::Value;

use crate::Timestamp;

/// The JSON of a track call made of these fields: the same text as serialising the message
/// with serde gives (keys in this order, absent ones left out), the time to the millisecond.
#[derive(Clone, Copy, Debug)]
pub struct TrackPayload<'a> {
    pub message_id: &'a str,
    pub event: &'a str,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub timestamp: Timestamp,
    /// As JSON; `None` for `{}`.
    pub properties: Option<&'a str>,
    /// Written as `context.groupId`.
    pub group_id: Option<&'a str>,
}

impl TrackPayload<'_> {
    pub fn to_json(&self) -> String {
        // Room for the keys, the time and every value but large properties: one allocation.
        let values = [self.user_id, self.anonymous_id, self.group_id, self.properties]
            .iter()
            .flatten()
            .map(|s| s.len())
            .sum::<usize>();
        let mut out = String::with_capacity(192 + self.message_id.len() + self.event.len() + values);
        self.write_json(&mut out);
        out
    }

    /// Appends the JSON to `out`.
    pub fn write_json(&self, out: &mut String) {
        self.write_head(out);
        out.push_str(self.properties.unwrap_or("{}"));
        self.write_tail(out);
    }

    /// The text that, written in place of the properties (whatever `self.properties` says),
    /// makes these fields write exactly `payload`; `None` when no text does. The payload is
    /// then these fields and that text. `scratch` is reused between calls.
    pub fn properties_in<'p>(&self, payload: &'p str, scratch: &mut String) -> Option<&'p str> {
        // The head is compared piece by piece as it would be written, not written out.
        let mut head = Expect { rest: payload };
        if !self.write_head(&mut head) {
            return None;
        }
        scratch.clear();
        self.write_tail(scratch);
        head.rest.strip_suffix(scratch.as_str())
    }

    /// Everything before the properties; false as soon as `out` refuses a piece.
    fn write_head(&self, out: &mut impl Pieces) -> bool {
        out.put(r#"{"type":"track","messageId":"#)
            && json_str(out, self.message_id)
            && out.put(r#","event":"#)
            && json_str(out, self.event)
            && optional(out, r#","userId":"#, self.user_id)
            && optional(out, r#","anonymousId":"#, self.anonymous_id)
            && out.put(r#","timestamp":""#)
            && push_time(out, self.timestamp)
            && out.put(r#"","properties":"#)
    }

    /// Everything after the properties.
    fn write_tail(&self, out: &mut String) {
        if let Some(g) = self.group_id {
            out.push_str(r#","context":{"groupId":"#);
            json_str(out, g);
            out.push('}');
        }
        out.push('}');
    }
}

/// Where the pieces of a payload go: written out, or compared with a payload.
trait Pieces {
    /// Takes the next piece; false if it is not the one expected.
    fn put(&mut self, piece: &str) -> bool;
}

impl Pieces for String {
    fn put(&mut self, piece: &str) -> bool {
        self.push_str(piece);
        true
    }
}

/// A payload's text still to compare.
struct Expect<'p> {
    rest: &'p str,
}

impl Pieces for Expect<'_> {
    fn put(&mut self, piece: &str) -> bool {
        match self.rest.strip_prefix(piece) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }
}

/// A key and its string, if there is one.
fn optional(out: &mut impl Pieces, key: &str, value: Option<&str>) -> bool {
    value.is_none_or(|v| out.put(key) && json_str(out, v))
}

/// A JSON string; most need no escaping.
fn json_str(out: &mut impl Pieces, s: &str) -> bool {
    // Without stopping at the first byte, so that the check runs on whole words.
    let plain = !s.bytes().fold(false, |bad, b| bad | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain { out.put("\"") && out.put(s) && out.put("\"") } else { out.put(&Value::from(s).to_string()) }
}

/// RFC 3339 in UTC to the millisecond (`2020-01-20T08:47:22.000Z`), as chrono writes it,
/// digit by digit (formatting machinery was a tenth of an import's parsing).
fn push_time(out: &mut impl Pieces, t: Timestamp) -> bool {
    let ms = t.timestamp_subsec_millis();
    let n = t.naive_utc();
    if !(0..=9999).contains(&n.year()) || ms >= 1000 {
        return out.put(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    let mut text = [0u8; 24];
    let mut at = 0;
    let mut digits = |v: u32, len: u32, after: u8| {
        for i in (0..len).rev() {
            text[at] = b'0' + (v / 10u32.pow(i) % 10) as u8;
            at += 1;
        }
        text[at] = after;
        at += 1;
    };
    digits(n.year() as u32, 4, b'-');
    digits(n.month(), 2, b'-');
    digits(n.day(), 2, b'T');
    digits(n.hour(), 2, b':');
    digits(n.minute(), 2, b':');
    digits(n.second(), 2, b'.');
    digits(ms, 3, b'Z');
    out.put(std::str::from_utf8(&text).expect("ASCII digits"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::{Map, json};

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
            let track = TrackPayload {
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

    #[test]
    fn a_payload_is_its_fields_and_the_text_in_place_of_the_properties() {
        let at = DateTime::parse_from_rfc3339("2020-01-20T08:47:22.5Z").unwrap().with_timezone(&Utc);
        let track = TrackPayload {
            message_id: "m-1",
            event: "like",
            user_id: Some("7/0"),
            anonymous_id: None,
            timestamp: at,
            properties: Some(r#"{"value":3}"#),
            group_id: Some("7"),
        };
        let mut scratch = String::new();
        let fields = TrackPayload { properties: None, ..track };
        let payload = track.to_json();
        assert_eq!(fields.properties_in(&payload, &mut scratch), Some(r#"{"value":3}"#));
        assert_eq!(fields.properties_in(&fields.to_json(), &mut scratch), Some("{}"));
        let other_time = TrackPayload { timestamp: at + chrono::Duration::milliseconds(1), ..fields };
        assert_eq!(other_time.properties_in(&payload, &mut scratch), None);
        let other_user = TrackPayload { user_id: Some("7/1"), ..fields };
        assert_eq!(other_user.properties_in(&payload, &mut scratch), None);
        assert_eq!(fields.properties_in(r#"{"type":"identify"}"#, &mut scratch), None);
        // Whatever the text in between holds, the fields and it write the payload again.
        let no_group = TrackPayload { group_id: None, ..fields };
        let with_context = payload.replace(r#""context":{"#, r#""context":{"ip":"1.2.3.4","#);
        for (fields, payload) in [(no_group, &payload), (no_group, &with_context), (fields, &with_context)] {
            if let Some(text) = fields.properties_in(payload, &mut scratch) {
                assert_eq!(&TrackPayload { properties: Some(text), ..fields }.to_json(), payload);
            }
        }
        assert_eq!(fields.properties_in(&with_context, &mut scratch), None);
    }
}
