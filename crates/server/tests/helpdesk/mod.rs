//! The support connectors end to end: Zendesk and Intercom webhooks signed as each provider
//! documents its scheme (by Python's hmac, see testkit's `helpdesk_sign.py`), tampered,
//! wrongly signed, stale, repeated and out of order, and their backfills against local
//! servers that page recorded, real-shaped responses, rate-limit and fail halfway. The
//! tickets they leave are checked field by field.

mod intercom;
mod zendesk;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use store::{LogPosition, Store, Ticket};
use tower::ServiceExt;

use crate::common::{App, Keys};

fn fixture(provider: &str, name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{provider}/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Python's hmac, signing as each provider documents it.
struct Signer {
    python: std::path::PathBuf,
}

impl Signer {
    fn new(test: &str) -> Option<Signer> {
        testkit::python(&["hmac", "hashlib"], test).map(|python| Signer { python })
    }

    fn run(&self, request: Value) -> String {
        let mut child = Command::new(&self.python)
            .arg(testkit::script("helpdesk_sign.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(child.wait().unwrap().success());
        let answer: Value = serde_json::from_str(&line).unwrap();
        answer["signature"].as_str().unwrap().to_owned()
    }

    fn zendesk(&self, body: &str, secret: &str, timestamp: &str) -> String {
        self.run(json!({"zendesk": body, "secret": secret, "timestamp": timestamp}))
    }

    fn intercom(&self, body: &str, secret: &str) -> String {
        self.run(json!({"intercom": body, "secret": secret}))
    }
}

async fn deliver(app: &App, ws: &Keys, provider: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = Request::post(format!("/webhooks/{provider}/{}", ws.id)).header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = app.router.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The events `provider` appended for `account`: message id and event name (`(group)` for a
/// traits call).
async fn events_of(app: &App, ws: &Keys, provider: &str, account: &str) -> Vec<(String, String)> {
    let log = app.store.read_log(&ws.id, LogPosition::ZERO, 100_000).await.unwrap();
    let mut events: Vec<(String, String)> = log
        .into_iter()
        .filter(|e| {
            e.event.group_id.as_deref() == Some(account) && e.event.message_id.starts_with(&format!("{provider}:"))
        })
        .map(|e| (e.event.message_id.clone(), e.event.name.clone().unwrap_or_else(|| "(group)".into())))
        .collect();
    events.sort();
    events
}

async fn tickets_of(app: &App, ws: &Keys, account: &str) -> HashMap<String, Ticket> {
    let id = domain::AccountId::parse(account).unwrap();
    let tickets = app.store.account_tickets(&ws.id, &id).await.unwrap();
    tickets.into_iter().map(|t| (t.ticket_id.clone(), t)).collect()
}

/// Serves `router` on a local port; its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// A query string's parameters, percent-decoded.
fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (decode(k), decode(v))))
        .collect()
}

fn retries() -> connectors::backfill::Retries {
    connectors::backfill::Retries {
        attempts: 3,
        backoff: std::time::Duration::from_millis(10),
        max_wait: std::time::Duration::from_secs(2),
    }
}
