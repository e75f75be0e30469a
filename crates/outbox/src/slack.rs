//! Slack incoming webhooks: a POST of `{"text": ..., "blocks": [...]}` to the webhook's URL,
//! and Slack's own answers read as outcomes. Slack answers `200 ok`; its errors are short
//! strings in the body: `invalid_payload`, `user_not_found` and the like (400),
//! `action_prohibited` (403), `channel_not_found`, `no_service`, `no_team` (404),
//! `channel_is_archived` (410), `rollup_error` (500), and 429 with `Retry-After` when a
//! webhook posts more than about one message a second.

use hyper::body::Bytes;
use serde::Serialize;

use crate::Outcome;
use crate::http::{Answer, HttpClient, MAX_DETAIL, classify};
use crate::outcome::shorten;

/// A message for an incoming webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlackMessage {
    /// The text: the whole message, or the notification fallback when there are blocks.
    pub text: String,
    /// Block Kit blocks, sent as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<serde_json::Value>,
}

/// Answers saying the webhook, its channel or its workspace is no more: disable the endpoint.
const GONE: [&str; 5] = ["no_service", "no_team", "channel_not_found", "channel_is_archived", "invalid_token"];

/// The Slack channel over the shared HTTP client.
#[derive(Debug, Clone)]
pub struct Slack {
    http: HttpClient,
}

impl Slack {
    /// The Slack channel.
    pub fn new(http: HttpClient) -> Slack {
        Slack { http }
    }

    /// Posts `message` to the incoming webhook at `webhook_url`.
    pub async fn deliver(&self, webhook_url: &str, message: &SlackMessage) -> Outcome {
        let body = match serde_json::to_vec(message) {
            Ok(body) => body,
            Err(e) => return Outcome::rejected(format!("Slack message: {e}")),
        };
        match self.http.deliver(webhook_url, "application/json", &[], Bytes::from(body)).await {
            Ok(answer) => classify_slack(&answer),
            Err(outcome) => outcome,
        }
    }
}

/// Slack's answers: its error strings decide before the status does (a removed webhook is
/// gone whatever status it came with); otherwise the common HTTP reading.
pub(crate) fn classify_slack(answer: &Answer) -> Outcome {
    let said = answer.body.trim();
    let status = Some(answer.status);
    let reason = || format!("Slack: HTTP {}: {}", answer.status, shorten(said, MAX_DETAIL));
    if GONE.contains(&said) {
        return Outcome::Gone { status, reason: reason() };
    }
    match answer.status {
        // A 200 with another body is not something Slack documents; it was accepted.
        200..=299 => Outcome::Delivered { status, detail: shorten(said, MAX_DETAIL) },
        // A 404 or 410 from Slack's webhook host means the webhook is gone, whatever it says.
        404 | 410 => Outcome::Gone { status, reason: reason() },
        // Bad payloads (invalid_payload, invalid_blocks, user_not_found...) and a workspace's
        // restriction (action_prohibited) will not pass by themselves.
        400..=499 if answer.status != 408 && answer.status != 429 => Outcome::Rejected { status, reason: reason() },
        _ => match classify(answer) {
            Outcome::Retry { status, retry_after, .. } => Outcome::Retry { status, retry_after, reason: reason() },
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn answer(status: u16, body: &str) -> Outcome {
        classify_slack(&Answer { status, retry_after: None, body: body.into() })
    }

    #[test]
    fn reads_slacks_answers() {
        assert_eq!(answer(200, "ok"), Outcome::Delivered { status: Some(200), detail: "ok".into() });
        for (status, body) in [
            (404, "no_service"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
            (403, "invalid_token"),
            (404, ""),
        ] {
            assert_eq!(answer(status, body).kind(), "gone", "{status} {body}");
        }
        for (status, body) in
            [(400, "invalid_payload"), (400, "user_not_found"), (403, "action_prohibited"), (400, "invalid_blocks")]
        {
            assert_eq!(
                answer(status, body),
                Outcome::Rejected { status: Some(status), reason: format!("Slack: HTTP {status}: {body}") }
            );
        }
        assert_eq!(answer(500, "rollup_error").kind(), "retry");
        let limited = classify_slack(&Answer {
            status: 429,
            retry_after: Some(Duration::from_secs(30)),
            body: "rate_limited".into(),
        });
        assert_eq!(
            limited,
            Outcome::Retry {
                status: Some(429),
                retry_after: Some(Duration::from_secs(30)),
                reason: "Slack: HTTP 429: rate_limited".into()
            }
        );
    }

    #[test]
    fn sends_blocks_only_when_given() {
        let plain = SlackMessage { text: "hi".into(), blocks: None };
        assert_eq!(serde_json::to_string(&plain).unwrap(), r#"{"text":"hi"}"#);
        let rich = SlackMessage { text: "hi".into(), blocks: Some(serde_json::json!([{"type": "divider"}])) };
        assert_eq!(serde_json::to_string(&rich).unwrap(), r#"{"text":"hi","blocks":[{"type":"divider"}]}"#);
    }
}
