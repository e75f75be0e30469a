//! What one delivery attempt came to, whatever the channel: the delivery loop records it
//! with the attempt and decides from it whether to retry, disable the endpoint or stop.

use std::time::Duration;

use serde::{Serialize, Serializer};

/// The result of one attempt to deliver an outbox row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The receiver accepted it; `detail` is what it said (an SMTP queue id, a response body).
    Delivered {
        /// HTTP status or SMTP reply code, when there was one.
        status: Option<u16>,
        /// What the receiver answered, shortened.
        detail: String,
    },
    /// Transient: try again (after `retry_after` if the receiver said so).
    Retry {
        /// HTTP status or SMTP reply code, when there was one.
        status: Option<u16>,
        /// How long the receiver asked us to wait (`Retry-After`), if it did.
        #[serde(rename = "retry_after_ms", serialize_with = "millis")]
        retry_after: Option<Duration>,
        /// What went wrong.
        reason: String,
    },
    /// 410 Gone (or Slack's `no_service`, `channel_is_archived`...): disable this endpoint.
    Gone {
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// What the receiver said.
        reason: String,
    },
    /// Permanent: no retry (a 4xx other than 408/409/425/429, an SMTP 5xx, a message that
    /// cannot be sent as it is).
    Rejected {
        /// HTTP status or SMTP reply code, when there was one.
        status: Option<u16>,
        /// What was refused and why.
        reason: String,
    },
}

impl Outcome {
    /// A short name for logs, metrics and the stored attempt: `delivered`, `retry`, `gone`
    /// or `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Gone { .. } => "gone",
            Outcome::Rejected { .. } => "rejected",
        }
    }

    /// The HTTP status or SMTP reply code the attempt ended with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status, .. }
            | Outcome::Retry { status, .. }
            | Outcome::Gone { status, .. }
            | Outcome::Rejected { status, .. } => *status,
        }
    }

    /// A transient failure without a status (a connection error, a timeout).
    pub(crate) fn retry(reason: impl Into<String>) -> Outcome {
        Outcome::Retry { status: None, retry_after: None, reason: reason.into() }
    }

    /// A permanent failure without a status (the row cannot be sent as it is).
    pub(crate) fn rejected(reason: impl Into<String>) -> Outcome {
        Outcome::Rejected { status: None, reason: reason.into() }
    }
}

fn millis<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => serializer.serialize_none(),
    }
}

/// Shortens what a receiver said to at most `max` bytes (on a character boundary), so a
/// stored attempt never holds a whole error page.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_its_kind_and_milliseconds() {
        let retry =
            Outcome::Retry { status: Some(429), retry_after: Some(Duration::from_secs(3)), reason: "slow down".into() };
        assert_eq!(retry.kind(), "retry");
        assert_eq!(
            serde_json::to_value(&retry).unwrap(),
            serde_json::json!({"kind": "retry", "status": 429, "retry_after_ms": 3000, "reason": "slow down"})
        );
        let gone = Outcome::Gone { status: Some(410), reason: "gone".into() };
        assert_eq!(serde_json::to_value(&gone).unwrap()["kind"], "gone");
        assert_eq!(gone.status(), Some(410));
    }

    #[test]
    fn shortens_on_a_character_boundary() {
        assert_eq!(shorten("  ok ", 10), "ok");
        assert_eq!(shorten("ééé", 3), "é…");
    }
}
