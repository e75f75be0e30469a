//! Slack: a receiver in the test answering as Slack's incoming webhooks do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use outbox::Outcome;
use outbox::slack::{Slack, SlackMessage};

use crate::webhook::{client, serve};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

async fn slack(State(seen): State<Seen>, uri: axum::http::Uri, body: Bytes) -> impl IntoResponse {
    let path = uri.path().trim_start_matches("/services/").to_string();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    seen.0.lock().unwrap().push((path.clone(), json));
    match path.as_str() {
        "ok" => (StatusCode::OK, "ok").into_response(),
        "archived" => (StatusCode::GONE, "channel_is_archived").into_response(),
        "removed" => (StatusCode::NOT_FOUND, "no_service").into_response(),
        "no-channel" => (StatusCode::NOT_FOUND, "channel_not_found").into_response(),
        "invalid" => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
        "prohibited" => (StatusCode::FORBIDDEN, "action_prohibited").into_response(),
        "limited" => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "30")], "rate_limited").into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "rollup_error").into_response(),
    }
}

#[tokio::test]
async fn posts_messages_and_reads_slacks_answers() {
    let seen = Seen::default();
    let addr = serve(Router::new().route("/services/{hook}", post(slack)).with_state(seen.clone())).await;
    let channel = Slack::new(client(Duration::from_secs(5), None));
    let url = |hook: &str| format!("http://{addr}/services/{hook}");
    let blocks =
        serde_json::json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*Acme* health fell to 38"}}]);
    let message = SlackMessage { text: "Acme health fell to 38".into(), blocks: Some(blocks.clone()) };

    assert_eq!(
        channel.deliver(&url("ok"), &message).await,
        Outcome::Delivered { status: Some(200), detail: "ok".into() }
    );
    let cases = [
        ("archived", Outcome::Gone { status: Some(410), reason: "Slack: HTTP 410: channel_is_archived".into() }),
        ("removed", Outcome::Gone { status: Some(404), reason: "Slack: HTTP 404: no_service".into() }),
        ("no-channel", Outcome::Gone { status: Some(404), reason: "Slack: HTTP 404: channel_not_found".into() }),
        ("invalid", Outcome::Rejected { status: Some(400), reason: "Slack: HTTP 400: invalid_payload".into() }),
        ("prohibited", Outcome::Rejected { status: Some(403), reason: "Slack: HTTP 403: action_prohibited".into() }),
        (
            "limited",
            Outcome::Retry {
                status: Some(429),
                retry_after: Some(Duration::from_secs(30)),
                reason: "Slack: HTTP 429: rate_limited".into(),
            },
        ),
        (
            "broken",
            Outcome::Retry { status: Some(500), retry_after: None, reason: "Slack: HTTP 500: rollup_error".into() },
        ),
    ];
    for (hook, expected) in &cases {
        assert_eq!(&channel.deliver(&url(hook), &message).await, expected, "{hook}");
    }
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1 + cases.len());
    assert_eq!(seen[0], ("ok".to_string(), serde_json::json!({"text": "Acme health fell to 38", "blocks": blocks})));
    let plain = SlackMessage { text: "hi".into(), blocks: None };
    assert_eq!(serde_json::to_value(&plain).unwrap(), serde_json::json!({"text": "hi"}));
}
