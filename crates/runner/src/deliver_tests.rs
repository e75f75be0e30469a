//! The delivery loop against real receivers: aiosmtpd for email, an HTTP server in the test
//! for webhooks that fails, stalls, limits and goes away as it is told.

use super::deliver::{Deliverer, DeliveryConfig, SENDER, TEMPLATES};
use super::*;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use store::{JourneyDraft, MessageFilter, MessageStatus, OutboxMessage, PageRequest};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<store_sqlite::SqliteStore>,
    ws: WorkspaceId,
    runner: Runner,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store_sqlite::SqliteStore::open_in_dir(dir.path()).unwrap());
        let ws = store.create_workspace("Deliveries").await.unwrap().workspace_id;
        let membership = Arc::new(membership::Engine::new(store.clone()));
        let runner = Runner::new(store.clone(), membership);
        let events = json!([
            {"type": "identify", "messageId": "i1", "userId": "ann",
             "traits": {"email": "ann@acme.example", "role": "owner", "first_name": "Ann"}},
            {"type": "group", "messageId": "g1", "userId": "ann", "groupId": "acme", "traits": {"name": "Acme"}},
        ]);
        store.append_events(&ws, &store::contract::events(events)).await.unwrap();
        processor::Processor::new(store.clone(), Default::default()).run_until_idle(&ws).await.unwrap();
        World { _dir: dir, store, ws, runner }
    }

    /// A journey of one step, started for acme at `now` (its message decided then).
    async fn decide(&self, name: &str, step: Value, now: DateTime<Utc>) -> OutboxMessage {
        let definition = json!({"name": name, "trigger": "manual", "reentry": "always", "steps": [step]});
        let draft = JourneyDraft {
            journey_id: store::journeys::new_journey_id(),
            name: name.into(),
            kind: SubjectKind::Accounts,
            enabled: true,
            definition,
        };
        let j = self.store.put_journey(&self.ws, &draft, now).await.unwrap();
        let run = self.runner.start_manual(&self.ws, &j.journey_id, "acme", json!({}), now).await.unwrap().unwrap();
        let f = MessageFilter { run_id: Some(run.run_id), ..MessageFilter::default() };
        let mut m = self.store.list_messages(&self.ws, &f, &PageRequest::first(10)).await.unwrap().items;
        assert_eq!(m.len(), 1);
        m.remove(0)
    }

    async fn message(&self, id: &str) -> OutboxMessage {
        self.store.get_message(&self.ws, id).await.unwrap().unwrap()
    }

    async fn attempts(&self, id: &str) -> Vec<(String, Option<i64>)> {
        let a = self.store.message_attempts(&self.ws, id).await.unwrap();
        a.into_iter().map(|a| (a.outcome, a.status)).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_goes_through_a_real_smtp_server_once_with_its_template_and_unsubscribe_link() {
    let Some(python) = testkit::python(&["aiosmtpd", "trustme"], "an_email_goes_through_a_real_smtp_server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("received.jsonl");
    let args = vec!["--record".to_string(), record.display().to_string(), "--security".into(), "none".into()];
    let smtp = testkit::start(&python, &testkit::script("smtp_server.py"), &args).await;
    let w = World::new().await;
    let t0 = at(2, 9);
    let template = json!({"subject": "Welcome to {{ account.name }}, {{ journey.name }}",
        "html": "<p>Hi &amp; welcome, <b>{{ account.name }}</b></p><a href=\"{{ unsubscribe_url }}\">stop</a>",
        "text": "Hi {{ account.name }}!\n.\nStop: {{ unsubscribe_url }}"});
    w.store.put_setting(&w.ws, TEMPLATES, &json!({"welcome": template}), t0).await.unwrap();
    w.store
        .put_setting(&w.ws, SENDER, &json!({"name": "Acme Success", "address": "cs@steward.example"}), t0)
        .await
        .unwrap();
    let config = DeliveryConfig {
        smtp: Some(outbox::email::SmtpConfig {
            host: "127.0.0.1".into(),
            port: smtp.port,
            security: outbox::email::Security::None,
            username: None,
            password: None,
            helo: "steward.test".into(),
            timeout: std::time::Duration::from_secs(10),
            extra_root_pem: None,
        }),
        public_url: Some("https://cs.example.com/".into()),
        ..DeliveryConfig::default()
    };
    let d = Deliverer::new(w.store.clone(), config).unwrap();
    let m =
        w.decide("Hello", json!({"id": "welcome", "email": {"template": "welcome", "to": "account_owner"}}), t0).await;
    let round = d.deliver_due(&w.ws, t0).await.unwrap();
    assert_eq!((round.taken, round.delivered), (1, 1));
    assert_eq!(d.deliver_due(&w.ws, t0 + Duration::hours(1)).await.unwrap().taken, 0, "sent once");
    let received = testkit::records(&record);
    assert_eq!(received.len(), 1);
    let r = &received[0];
    assert_eq!(r["mail_from"], "cs@steward.example");
    assert_eq!(r["rcpt_tos"], json!(["ann@acme.example"]));
    let headers = &r["headers"];
    assert_eq!(headers["subject"], "Welcome to Acme, Hello");
    assert_eq!(headers["from"], "Acme Success <cs@steward.example>");
    assert_eq!(headers["message-id"], format!("<{}>", outbox::email::message_id(&m.message_id, "steward.example")));
    let unsubscribe = headers["list-unsubscribe"].as_str().unwrap();
    assert!(
        unsubscribe.starts_with(&format!(
            "<https://cs.example.com/unsubscribe/{}?email=ann%40acme.example&token=",
            w.ws.as_str()
        )),
        "{unsubscribe}"
    );
    let link = unsubscribe.trim_matches(['<', '>']);
    assert_eq!(r["text"].as_str().unwrap().replace("\r\n", "\n").trim_end(), format!("Hi Acme!\n.\nStop: {link}"));
    assert!(r["html"].as_str().unwrap().contains("<b>Acme</b>"));
    let stored = w.message(&m.message_id).await;
    assert_eq!((stored.status, stored.delivered_at), (MessageStatus::Delivered, Some(t0)));
    assert_eq!(w.attempts(&m.message_id).await, [("delivered".to_owned(), Some(250))]);
    // An unsubscribed address is not sent to: the message is kept, suppressed.
    w.store.block_endpoint(&w.ws, "Ann@Acme.example", "unsubscribed", t0).await.unwrap();
    let second =
        w.decide("Again", json!({"id": "again", "email": {"template": "welcome", "to": "account_owner"}}), t0).await;
    let round = d.deliver_due(&w.ws, t0).await.unwrap();
    assert_eq!(round.suppressed, 1);
    assert_eq!(w.message(&second.message_id).await.status, MessageStatus::Suppressed);
    assert_eq!(testkit::records(&record).len(), 1);
    // A missing template is a dead letter that says why.
    let third =
        w.decide("Missing", json!({"id": "x", "email": {"template": "nope", "to": "ops@acme.example"}}), t0).await;
    d.deliver_due(&w.ws, t0).await.unwrap();
    let dead = w.message(&third.message_id).await;
    assert_eq!(dead.status, MessageStatus::Dead);
    assert!(dead.last_error.unwrap().contains("no email template \"nope\""));
}

/// A status with its `Retry-After`, or none: stall past the client's timeout.
type Answer = Option<(u16, Option<&'static str>)>;

/// A receiver that answers each request with the next of its scripted answers (`None`: it
/// stalls past the client's timeout), and records the ids it was sent.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn answer(State(s): State<Script>, headers: HeaderMap) -> impl IntoResponse {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    s.seen.lock().unwrap().push(id);
    let next = s.answers.lock().unwrap().pop_front().unwrap_or(Some((200, None)));
    match next {
        None => {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            (StatusCode::OK, HeaderMap::new())
        }
        Some((status, retry_after)) => {
            let mut h = HeaderMap::new();
            if let Some(r) = retry_after {
                h.insert("retry-after", r.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), h)
        }
    }
}

async fn receiver(script: Script) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", axum::routing::post(answer)).with_state(script);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

fn quick() -> DeliveryConfig {
    DeliveryConfig {
        http: outbox::http::HttpConfig { total_timeout: std::time::Duration::from_millis(800), ..Default::default() },
        ..DeliveryConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_with_backoff_and_retry_after_then_delivered() {
    let w = World::new().await;
    let script = Script::default();
    script.answers.lock().unwrap().extend([Some((500, None)), None, Some((429, Some("7200"))), Some((200, None))]);
    let url = receiver(script.clone()).await;
    let d = Deliverer::new(w.store.clone(), quick()).unwrap();
    let t0 = at(2, 9);
    let m = w.decide("Hook", json!({"id": "hook", "webhook": {"url": url}}), t0).await;
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..4 {
        d.deliver_due(&w.ws, now).await.unwrap();
        let stored = w.message(&m.message_id).await;
        if stored.status != MessageStatus::Pending {
            break;
        }
        let next = stored.next_attempt_at.unwrap();
        // Not due a moment before its time.
        assert_eq!(d.deliver_due(&w.ws, next - Duration::seconds(1)).await.unwrap().taken, 0);
        waits.push((next - now).num_seconds());
        now = next;
    }
    assert_eq!(w.message(&m.message_id).await.status, MessageStatus::Delivered);
    assert_eq!(
        w.attempts(&m.message_id).await,
        [
            ("retry".into(), Some(500)),
            ("retry".into(), None),
            ("retry".into(), Some(429)),
            ("delivered".into(), Some(200))
        ]
    );
    // 30 s and 2 min, each within 20% jitter, then at least the receiver's two hours.
    assert!((24..=36).contains(&waits[0]), "{waits:?}");
    assert!((96..=144).contains(&waits[1]), "{waits:?}");
    assert!(waits[2] >= 7_200, "{waits:?}");
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen, vec![m.message_id.clone(); 4], "every attempt carries the same webhook-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_is_gone_is_blocked_and_one_that_never_works_becomes_a_dead_letter_that_replays() {
    let w = World::new().await;
    let gone = Script::default();
    gone.answers.lock().unwrap().push_back(Some((410, None)));
    let gone_url = receiver(gone.clone()).await;
    let down = Script::default();
    down.answers.lock().unwrap().extend(std::iter::repeat_n(Some((503, None)), 13));
    let down_url = receiver(down.clone()).await;
    let d = Deliverer::new(w.store.clone(), quick()).unwrap();
    let t0 = at(2, 9);
    let g = w.decide("Gone", json!({"id": "g", "webhook": {"url": gone_url}}), t0).await;
    d.deliver_due(&w.ws, t0).await.unwrap();
    assert_eq!(w.message(&g.message_id).await.status, MessageStatus::Dead);
    let blocked = w.store.blocked_endpoints(&w.ws).await.unwrap();
    assert_eq!(blocked.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(), [gone_url.as_str()]);
    let later = w.decide("Gone again", json!({"id": "g2", "webhook": {"url": gone_url}}), t0).await;
    d.deliver_due(&w.ws, t0).await.unwrap();
    assert_eq!(w.message(&later.message_id).await.status, MessageStatus::Suppressed);
    assert_eq!(gone.seen.lock().unwrap().len(), 1, "nothing more is sent to an endpoint that is gone");
    // Thirteen attempts over about three days, then a dead letter.
    let m = w.decide("Down", json!({"id": "down", "webhook": {"url": down_url}}), t0).await;
    let mut now = t0;
    for _ in 0..13 {
        d.deliver_due(&w.ws, now).await.unwrap();
        match w.message(&m.message_id).await.next_attempt_at {
            Some(next) => now = next,
            None => break,
        }
    }
    let dead = w.message(&m.message_id).await;
    assert_eq!((dead.status, dead.attempts), (MessageStatus::Dead, 13));
    let span = now - t0;
    assert!(span > Duration::days(2) && span < Duration::days(4), "gave up after {span}");
    assert!(dead.last_error.unwrap().starts_with("gave up after 13 attempts"));
    let f = MessageFilter { status: Some(MessageStatus::Dead), ..MessageFilter::default() };
    let dead_letters = w.store.list_messages(&w.ws, &f, &PageRequest::first(10)).await.unwrap().items;
    assert_eq!(dead_letters.len(), 2);
    // The receiver is back; the operator replays the dead letter and it arrives.
    let replayed = w.store.replay_message(&w.ws, &m.message_id, now).await.unwrap().unwrap();
    assert_eq!(replayed.status, MessageStatus::Pending);
    let round = d.deliver_due(&w.ws, now).await.unwrap();
    assert_eq!(round.delivered, 1);
    assert_eq!(w.message(&m.message_id).await.status, MessageStatus::Delivered);
    assert_eq!(down.seen.lock().unwrap().len(), 14);
}
