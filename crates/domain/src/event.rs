//! An event as it enters the event log: normalized, validated, ready to store.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::Timestamp;

/// The Segment message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Track,
    Identify,
    Group,
    Page,
    Screen,
    Alias,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown message type {0:?}: expected track, identify, group, page, screen or alias")]
pub struct UnknownEventType(pub String);

impl EventType {
    pub const ALL: [EventType; 6] =
        [EventType::Track, EventType::Identify, EventType::Group, EventType::Page, EventType::Screen, EventType::Alias];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Group => "group",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Alias => "alias",
        }
    }
}

impl FromStr for EventType {
    type Err = UnknownEventType;
    fn from_str(s: &str) -> Result<Self, UnknownEventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated message, with the fields that are queried pulled out of its payload.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub message_id: String,
    pub kind: EventType,
    /// `event` of a track, `name` of a page or screen.
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `groupId` of a group call, or `context.groupId` of any other.
    pub group_id: Option<String>,
    /// `previousId` of an alias.
    pub previous_id: Option<String>,
    /// When it happened, corrected for the client's clock skew.
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    /// The whole normalized message as JSON text.
    pub payload: String,
}

/// Whether two event names are one event as people write them: `Payment Failed`,
/// `payment_failed`, `payment-failed`, `payment.failed` and `paymentFailed` are. Steward's own
/// metrics (`$any`, `$page`, `$screen`) match only themselves.
pub fn same_event(a: &str, b: &str) -> bool {
    if a.starts_with('$') || b.starts_with('$') {
        return a == b;
    }
    words(a).eq(words(b))
}

/// An event name in the one form [`same_event`] compares: `Payment Failed` and `paymentFailed`
/// are both `payment failed`; Steward's own metrics stay as they are.
pub fn event_words(name: &str) -> String {
    if name.starts_with('$') { name.to_owned() } else { words(name).collect() }
}

/// The lower-cased letters and digits of an event name, with one `' '` wherever a word ends:
/// at a run of other characters or where a lower-case letter or digit meets a capital.
fn words(name: &str) -> impl Iterator<Item = char> + '_ {
    let mut gap = false;
    let mut after_lower = false;
    let mut started = false;
    name.chars().flat_map(move |ch| {
        let mut out = [None, None];
        if ch.is_alphanumeric() {
            let boundary = gap || (ch.is_uppercase() && after_lower);
            if boundary && started {
                out[0] = Some(' ');
            }
            out[1] = ch.to_lowercase().next();
            after_lower = ch.is_lowercase() || ch.is_numeric();
            gap = false;
            started = true;
        } else {
            gap = true;
            after_lower = false;
        }
        out.into_iter().flatten()
    })
}
