//! The Stripe connector end to end: its configuration through the API, webhook deliveries
//! signed by Stripe's own Python library (tampered, wrongly signed, stale, repeated and out
//! of order), matching and linking by hand, and backfills against a local server that pages
//! recorded, real-shaped responses, rate-limits and fails halfway.

mod common;
mod helpdesk;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use common::{App, Keys};
use connectors::Provider;
use connectors::backfill::{Retries, SyncState};
use serde_json::{Value, json};
use store::{LogPosition, Store, SubscriptionStatus};
use tower::ServiceExt;

const SECRET: &str = "whsec_test_5f2b8c0e4d7a4f0b9c1e";
const OLD_SECRET: &str = "whsec_test_old_0a1b2c3d";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A Stripe event of `kind` carrying `object`, as Stripe delivers it.
fn event(id: &str, kind: &str, created: i64, object: &Value) -> String {
    let mut e = fixture("event");
    e["id"] = json!(id);
    e["type"] = json!(kind);
    e["created"] = json!(created);
    e["data"] = json!({"object": object});
    e.to_string()
}

/// Stripe's Python library, signing and verifying (see testkit's `stripe_sign.py`).
struct StripeLib {
    python: std::path::PathBuf,
}

impl StripeLib {
    fn new(test: &str) -> Option<StripeLib> {
        testkit::python(&["stripe"], test).map(|python| StripeLib { python })
    }

    fn run(&self, requests: &[Value]) -> Vec<Value> {
        let mut child = Command::new(&self.python)
            .arg(testkit::script("stripe_sign.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for r in requests {
            writeln!(stdin, "{r}").unwrap();
        }
        drop(stdin);
        let out: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        assert!(child.wait().unwrap().success());
        assert_eq!(out.len(), requests.len());
        out
    }

    fn sign(&self, payload: &str, secret: &str, timestamp: i64) -> String {
        let r = self.run(&[json!({"sign": payload, "secret": secret, "timestamp": timestamp})]);
        r[0]["header"].as_str().unwrap().to_owned()
    }
}

async fn deliver(app: &App, ws: &Keys, body: &str, header: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::post(format!("/webhooks/stripe/{}", ws.id)).header("content-type", "application/json");
    if let Some(h) = header {
        req = req.header("stripe-signature", h);
    }
    let resp = app.router.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Accounts to match: `acme` by its domain trait, `globex` whose contact has an email.
async fn accounts(app: &App, ws: &Keys) {
    let now = Utc::now().to_rfc3339();
    app.send(
        ws,
        vec![
            json!({"type": "group", "messageId": "g1", "userId": "u-acme", "groupId": "acme",
                   "traits": {"name": "Acme", "domain": "https://www.acme.io"}, "timestamp": now}),
            json!({"type": "identify", "messageId": "i1", "userId": "u-globex", "traits": {"email": "ops@gmail.com"},
                   "timestamp": now}),
            json!({"type": "group", "messageId": "g2", "userId": "u-globex", "groupId": "globex",
                   "traits": {"name": "Globex"}, "timestamp": now}),
        ],
    )
    .await;
}

/// The events the connector appended for `account`, by message id.
async fn account_events(app: &App, ws: &Keys, account: &str) -> HashMap<String, Value> {
    let log = app.store.read_log(&ws.id, LogPosition::ZERO, 100_000).await.unwrap();
    log.into_iter()
        .filter(|e| e.event.group_id.as_deref() == Some(account) && e.event.message_id.starts_with("stripe:"))
        .map(|e| (e.event.message_id.clone(), serde_json::from_str(&e.event.payload).unwrap()))
        .collect()
}

async fn configure(app: &App, ws: &Keys, body: Value) -> (StatusCode, Value) {
    app.call("PUT", "/api/v1/connectors/stripe", &ws.admin, Some(body)).await
}

#[tokio::test]
async fn stripe_webhooks_are_verified_deduplicated_and_newest_wins() {
    let Some(stripe) = StripeLib::new("stripe_webhooks_are_verified_deduplicated_and_newest_wins") else { return };
    let app = App::new().await;
    let ws = app.workspace("billing").await;
    accounts(&app, &ws).await;
    let (status, created) = configure(&app, &ws, json!({"webhook_secrets": [OLD_SECRET, SECRET]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let now = Utc::now().timestamp();

    // The customer, matched to `acme` by its billing email's domain.
    let customer = fixture("customer");
    let body = event("evt_cus_1", "customer.created", now - 100, &customer);
    let signed = stripe.sign(&body, SECRET, now);
    // Refused, and nothing stored: a tampered body, a wrong secret, a stale or missing header.
    let tampered = body.replace("Acme Analytics", "Evil Corp");
    let wrong = stripe.sign(&body, "whsec_someone_else", now);
    let stale = stripe.sign(&body, SECRET, now - 400);
    for (what, body, header) in [
        ("tampered", tampered.as_str(), Some(signed.as_str())),
        ("wrong secret", body.as_str(), Some(wrong.as_str())),
        ("stale", body.as_str(), Some(stale.as_str())),
        ("unsigned", body.as_str(), None),
    ] {
        let (status, answer) = deliver(&app, &ws, body, header).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{what}");
    }
    let q = store::ObjectQuery::default();
    assert!(app.store.provider_objects(&ws.id, "stripe", &q).await.unwrap().is_empty(), "nothing stored");

    let (status, answer) = deliver(&app, &ws, &body, Some(&signed)).await;
    assert_eq!(
        (status, answer["duplicate"].clone(), answer["stored"].clone()),
        (StatusCode::OK, json!(false), json!(1)),
        "{answer}"
    );
    // The same delivery again: acknowledged, not applied again.
    let (status, answer) = deliver(&app, &ws, &body, Some(&signed)).await;
    assert_eq!((status, answer["duplicate"].clone()), (StatusCode::OK, json!(true)));

    // The subscription (5 seats at $49), then a newer state (8 seats) delivered before an
    // older one (6 seats), signed with the secret being rolled out.
    let mut sub = fixture("subscription");
    let created_event = event("evt_sub_1", "customer.subscription.created", now - 90, &sub);
    let (status, _) = deliver(&app, &ws, &created_event, Some(&stripe.sign(&created_event, OLD_SECRET, now))).await;
    assert_eq!(status, StatusCode::OK);
    sub["items"]["data"][0]["quantity"] = json!(8);
    let newer = event("evt_sub_3", "customer.subscription.updated", now - 50, &sub);
    sub["items"]["data"][0]["quantity"] = json!(6);
    let older = event("evt_sub_2", "customer.subscription.updated", now - 70, &sub);
    let (_, answer) = deliver(&app, &ws, &newer, Some(&stripe.sign(&newer, SECRET, now))).await;
    assert_eq!(answer["stored"], 1);
    let (status, answer) = deliver(&app, &ws, &older, Some(&stripe.sign(&older, SECRET, now))).await;
    assert_eq!(
        (status, answer["stale"].clone(), answer["stored"].clone()),
        (StatusCode::OK, json!(1), json!(0)),
        "{answer}"
    );

    let acme = domain::AccountId::parse("acme").unwrap();
    let periods = |id: &'static str| {
        let (store, ws, acme) = (app.store.clone(), ws.id.clone(), acme.clone());
        async move {
            let subs = store.account_subscriptions(&ws, &acme).await.unwrap();
            subs.into_iter().find(|s| s.subscription_id == id).unwrap_or_else(|| panic!("no {id}"))
        }
    };
    let all = app.store.account_subscriptions(&ws.id, &acme).await.unwrap();
    assert_eq!(all.len(), 2, "the period before the change and the current one: {all:?}");
    let s = periods("sub_1QaBcdAcme").await;
    assert_eq!((s.status, s.quantity, s.started_at.timestamp()), (SubscriptionStatus::Active, 8, now - 50));
    assert_eq!((s.mrr.minor, s.mrr.currency.as_str(), s.plan.as_deref()), (8 * 4_900, "USD", Some("Team")));
    let before = periods("sub_1QaBcdAcme@1735689600").await;
    assert_eq!(
        (before.quantity, before.mrr.minor, before.ended_at.map(|t| t.timestamp())),
        (5, 5 * 4_900, Some(now - 50))
    );

    // A failed payment, then the cancellation.
    let invoice = fixture("invoice");
    let failed = event("evt_in_1", "invoice.payment_failed", now - 40, &invoice);
    assert_eq!(deliver(&app, &ws, &failed, Some(&stripe.sign(&failed, SECRET, now))).await.0, StatusCode::OK);
    sub["status"] = json!("canceled");
    sub["ended_at"] = json!(now - 30);
    sub["canceled_at"] = json!(now - 30);
    sub["items"]["data"][0]["quantity"] = json!(8);
    let deleted = event("evt_sub_4", "customer.subscription.deleted", now - 30, &sub);
    assert_eq!(deliver(&app, &ws, &deleted, Some(&stripe.sign(&deleted, SECRET, now))).await.0, StatusCode::OK);
    // The last period ends with what it paid: the end is the churn.
    let s = periods("sub_1QaBcdAcme").await;
    assert_eq!(
        (s.status, s.mrr.minor, s.ended_at.map(|t| t.timestamp())),
        (SubscriptionStatus::Canceled, 8 * 4_900, Some(now - 30))
    );
    assert_eq!(s.started_at.timestamp(), now - 50);

    let events = account_events(&app, &ws, "acme").await;
    let mut names: Vec<(String, String)> =
        events.iter().map(|(id, p)| (id.clone(), p["event"].as_str().unwrap_or("(group)").to_owned())).collect();
    names.sort();
    let expected_expansion = format!("stripe:sub_1QaBcdAcme:expanded:{}", (now - 50) * 1000);
    let mut expected = vec![
        ("stripe:customer:cus_PfA3kq9ZT0:".to_owned() + &((now - 100) * 1000).to_string(), "(group)".to_owned()),
        ("stripe:in_1QbAcme0001:payment_failed:1".into(), "Payment Failed".into()),
        ("stripe:sub_1QaBcdAcme:canceled".into(), "Subscription Canceled".into()),
        (expected_expansion, "Subscription Expanded".into()),
        ("stripe:sub_1QaBcdAcme:started".into(), "Subscription Started".into()),
    ];
    expected.sort();
    assert_eq!(names, expected);
    let group = events.values().find(|p| p["type"] == "group").unwrap();
    assert_eq!(group["traits"]["stripe_customer_id"], "cus_PfA3kq9ZT0");
    assert_eq!(group["traits"]["billing_email"], "billing@acme.io");
    // Processed, the failed payment counts in the account's usage (scoring's signal), with
    // no one active.
    app.processor.run_until_idle(&ws.id).await.unwrap();
    let day = chrono::DateTime::from_timestamp(now - 40, 0).unwrap().date_naive();
    let usage = app.store.account_usage(&ws.id, &acme, day, day.succ_opt().unwrap()).await.unwrap();
    let failed = usage.iter().find(|d| d.metric == "Payment Failed").map(|d| (d.events, d.users));
    assert_eq!(failed, Some((1, 0)), "{usage:?}");
    let expanded = events.values().find(|p| p["event"] == "Subscription Expanded").unwrap();
    assert_eq!(
        (expanded["properties"]["previous_mrr"].clone(), expanded["properties"]["mrr"].clone()),
        (json!(24_500), json!(39_200))
    );

    // The connector's state says what came in; its secrets are never shown.
    let (status, shown) = app.get("/api/v1/connectors/stripe", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["webhooks_received"], 7, "{shown}");
    // The customer, the subscription three times (one delivery was older), the invoice.
    assert_eq!(shown["records_synced"], 5, "{shown}");
    assert_eq!(
        shown["secrets"],
        json!({"api_key": false, "webhook_secrets": 2, "refresh_token": false, "client_id": false, "client_secret": false})
    );
    let text = shown.to_string();
    assert!(!text.contains(SECRET) && !text.contains(OLD_SECRET), "{text}");
    // And the metrics count deliveries by outcome.
    let resp = app.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let metrics =
        String::from_utf8(axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    for outcome in ["accepted", "duplicate", "rejected"] {
        let name = format!("steward_connector_webhooks_total{{provider=\"stripe\",outcome=\"{outcome}\"}}");
        assert!(metrics.contains(&name), "{name} in {metrics}");
    }
    assert!(metrics.contains("steward_connector_objects_total{provider=\"stripe\"}"));
}

#[tokio::test]
async fn our_test_signer_agrees_with_stripes_library() {
    let Some(stripe) = StripeLib::new("our_test_signer_agrees_with_stripes_library") else { return };
    let body = event("evt_x", "customer.updated", 1, &fixture("customer"));
    let now = Utc::now().timestamp();
    let ours = connectors::stripe::signature::sign(body.as_bytes(), SECRET, now);
    let theirs = stripe.sign(&body, SECRET, now);
    assert_eq!(ours, theirs);
    let checked = stripe.run(&[
        json!({"verify": body, "header": ours, "secret": SECRET}),
        json!({"verify": body, "header": ours, "secret": OLD_SECRET}),
    ]);
    assert_eq!((checked[0]["valid"].clone(), checked[1]["valid"].clone()), (json!(true), json!(false)));
}

#[tokio::test]
async fn unmatched_customers_wait_and_are_linked_by_hand() {
    let Some(stripe) = StripeLib::new("unmatched_customers_wait_and_are_linked_by_hand") else { return };
    let app = App::new().await;
    let ws = app.workspace("billing").await;
    accounts(&app, &ws).await;
    configure(&app, &ws, json!({"webhook_secrets": [SECRET]})).await;
    let now = Utc::now().timestamp();
    let mut customer = fixture("customer");
    customer["id"] = json!("cus_Nomatch");
    customer["email"] = json!("someone@example.net");
    customer["name"] = json!("Initech");
    let mut sub = fixture("subscription");
    sub["customer"] = json!("cus_Nomatch");
    sub["id"] = json!("sub_Nomatch");
    // The subscription first: it waits for its customer, which then matches nothing.
    for (i, (kind, object)) in
        [("customer.subscription.created", &sub), ("customer.created", &customer)].into_iter().enumerate()
    {
        let body = event(&format!("evt_{i}"), kind, now - 10, object);
        let (status, answer) = deliver(&app, &ws, &body, Some(&stripe.sign(&body, SECRET, now))).await;
        assert_eq!((status, answer["unmatched"].clone()), (StatusCode::OK, json!(1)), "{answer}");
    }
    let (_, listed) = app.get("/api/v1/connectors/stripe/unmatched", &ws.viewer).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["object_id"], "cus_Nomatch");
    assert_eq!(listed["data"][0]["label"], "Initech · someone@example.net · cus_Nomatch");
    assert_eq!(listed["data"][0]["waiting"], json!({"subscription": 1}));

    // A viewer may not link; a member may; a bad account id changes nothing.
    let path = "/api/v1/connectors/stripe/unmatched/cus_Nomatch/link";
    let (status, _) = app.call("POST", path, &ws.viewer, Some(json!({"account_id": "globex"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = app.call("POST", path, &ws.member, Some(json!({"account_id": ""}))).await;
    assert_eq!((status, answer["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("account_id")));
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/connectors/stripe/unmatched/cus_Other/link",
            &ws.member,
            Some(json!({"account_id": "globex"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let globex = domain::AccountId::parse("globex").unwrap();
    assert!(app.store.account_subscriptions(&ws.id, &globex).await.unwrap().is_empty());
    let (status, answer) = app.call("POST", path, &ws.member, Some(json!({"account_id": "globex"}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["applied"]["records"], 1);
    let subs = app.store.account_subscriptions(&ws.id, &globex).await.unwrap();
    assert_eq!((subs.len(), subs[0].subscription_id.as_str(), subs[0].mrr.minor), (1, "sub_Nomatch", 5 * 4_900));
    let (_, listed) = app.get("/api/v1/connectors/stripe/unmatched", &ws.viewer).await;
    assert!(listed["data"].as_array().unwrap().is_empty(), "{listed}");
    // Later changes follow the link.
    sub["items"]["data"][0]["quantity"] = json!(7);
    let body = event("evt_9", "customer.subscription.updated", now - 5, &sub);
    deliver(&app, &ws, &body, Some(&stripe.sign(&body, SECRET, now))).await;
    let subs = app.store.account_subscriptions(&ws.id, &globex).await.unwrap();
    let current = subs.iter().find(|s| s.subscription_id == "sub_Nomatch").unwrap();
    assert_eq!((subs.len(), current.quantity), (2, 7));
}

#[tokio::test]
async fn configuration_is_checked_secret_and_per_workspace() {
    let app = App::new().await;
    let ws = app.workspace("one").await;
    let other = app.workspace("two").await;
    for (body, field) in [
        (json!({"config": {"base_url": "ftp://x"}}), "config"),
        (json!({"config": {"nope": 1}}), "config"),
        (json!({"webhook_secrets": []}), "webhook_secrets"),
        (json!({"webhook_secrets": [""]}), "webhook_secrets"),
        (json!({"api_key": 42}), "api_key"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        let (status, answer) = configure(&app, &ws, body.clone()).await;
        assert_eq!((status, answer["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!(field)), "{body}");
    }
    assert!(app.store.get_connector(&ws.id, "stripe").await.unwrap().is_none(), "a refused change stores nothing");
    for key in [&ws.member, &ws.viewer] {
        let (status, _) =
            app.call("PUT", "/api/v1/connectors/stripe", key, Some(json!({"webhook_secrets": [SECRET]}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = app.call("PUT", "/api/v1/connectors/zuora", &ws.admin, Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = configure(&app, &ws, json!({"api_key": "sk_test_abc", "webhook_secrets": [SECRET]})).await;
    assert_eq!(status, StatusCode::CREATED);
    // Sealed in the store, never returned; a change that leaves secrets out keeps them.
    let stored = app.store.get_connector(&ws.id, "stripe").await.unwrap().unwrap();
    assert!(!stored.secrets.contains("sk_test_abc") && !stored.secrets.contains(SECRET));
    let (status, shown) = configure(&app, &ws, json!({"config": {"account_trait": "stripe_id"}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        shown["secrets"],
        json!({"api_key": true, "webhook_secrets": 1, "refresh_token": false, "client_id": false, "client_secret": false})
    );
    assert_eq!(shown["config"], json!({"account_trait": "stripe_id", "create_accounts": false}));
    assert!(SyncState::of(&stored).requested, "a connector created with a key asks for its first backfill");
    // Another workspace sees none of it, and its deliveries are not this workspace's.
    let (_, listed) = app.get("/api/v1/connectors", &other.viewer).await;
    assert_eq!(listed["data"], json!([]));
    let (status, _) = app.get("/api/v1/connectors/stripe", &other.viewer).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body = event("evt_1", "customer.created", Utc::now().timestamp(), &fixture("customer"));
    let header = connectors::stripe::signature::sign(body.as_bytes(), SECRET, Utc::now().timestamp());
    let (status, answer) = deliver(&app, &other, &body, Some(&header)).await;
    assert_eq!((status, answer["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!("connector_not_found")));
    let (status, _) = app.call("DELETE", "/api/v1/connectors/stripe", &ws.member, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.call("DELETE", "/api/v1/connectors/stripe", &ws.admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(app.store.get_connector(&ws.id, "stripe").await.unwrap().is_none());
}

/// A local Stripe: lists of customers, subscriptions and invoices paged 10 at a time with
/// `starting_after`, a 429 once, and failures it is told to give.
#[derive(Default)]
struct Fake {
    customers: Vec<Value>,
    subscriptions: Vec<Value>,
    invoices: Vec<Value>,
    /// Requests seen: path and `starting_after`.
    seen: Vec<(String, Option<String>)>,
    /// The subscription page after this cursor fails while this is above 0.
    fail_after: Option<(String, u32)>,
    limited_once: bool,
}

async fn list(
    axum::extract::State(fake): axum::extract::State<Arc<Mutex<Fake>>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk_test_fake") {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"type": "invalid_request_error"}})))
            .into_response();
    }
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let after = query.get("starting_after").cloned();
    let mut fake = fake.lock().unwrap();
    fake.seen.push((uri.path().to_owned(), after.clone()));
    if uri.path() == "/v1/customers" && after.is_some() && !fake.limited_once {
        fake.limited_once = true;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "rate limited").into_response();
    }
    if uri.path() == "/v1/subscriptions"
        && let Some((cursor, left)) = &mut fake.fail_after
        && after.as_deref() == Some(cursor.as_str())
        && *left > 0
    {
        *left -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": {"type": "api_error"}})))
            .into_response();
    }
    let all = match uri.path() {
        "/v1/customers" => &fake.customers,
        "/v1/subscriptions" => &fake.subscriptions,
        _ => &fake.invoices,
    };
    let start = after.map_or(0, |a| all.iter().position(|o| o["id"] == json!(a)).map_or(all.len(), |i| i + 1));
    let data: Vec<Value> = all.iter().skip(start).take(10).cloned().collect();
    let has_more = start + data.len() < all.len();
    axum::Json(json!({"object": "list", "url": uri.path(), "has_more": has_more, "data": data})).into_response()
}

#[tokio::test]
async fn backfills_page_wait_out_rate_limits_and_resume_after_a_failure() {
    let app = App::new().await;
    let ws = app.workspace("billing").await;
    accounts(&app, &ws).await;
    let mut fake = Fake::default();
    for i in 0..25 {
        let mut c = fixture("customer");
        c["id"] = json!(format!("cus_{i:03}"));
        c["email"] = json!(format!("billing@customer{i}.example.org"));
        c["metadata"] = json!({"steward_account_id": format!("customer-{i}")});
        fake.customers.push(c);
        let mut s = fixture("subscription");
        s["id"] = json!(format!("sub_{i:03}"));
        s["customer"] = json!(format!("cus_{i:03}"));
        s["items"]["data"][0]["quantity"] = json!(i + 1);
        fake.subscriptions.push(s);
        for m in 0..2 {
            let mut inv = fixture("invoice");
            inv["id"] = json!(format!("in_{i:03}_{m}"));
            inv["customer"] = json!(format!("cus_{i:03}"));
            inv["status"] = json!(if m == 0 { "paid" } else { "open" });
            inv["attempt_count"] = json!(1);
            fake.invoices.push(inv);
        }
    }
    fake.fail_after = Some(("sub_019".into(), 100));
    let fake = Arc::new(Mutex::new(fake));
    let server = axum::Router::new().route("/v1/{list}", axum::routing::get(list)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, server).await.unwrap() });

    let (status, _) = configure(&app, &ws, json!({"api_key": "sk_test_fake", "config": {"base_url": base}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let retries = Retries {
        attempts: 3,
        backoff: std::time::Duration::from_millis(10),
        max_wait: std::time::Duration::from_secs(2),
    };
    let run =
        || connectors::backfill::run(app.syncer.connectors(), app.syncer.http(), &ws.id, Provider::Stripe, &retries);

    // The first run waits out the 429, stores every customer and two pages of subscriptions,
    // then stops on the page that keeps failing.
    let report = run().await.unwrap();
    assert!(!report.finished);
    assert_eq!(report.pages, 3 + 2, "{report:?}");
    let record = app.store.get_connector(&ws.id, "stripe").await.unwrap().unwrap();
    let state = SyncState::of(&record);
    assert_eq!((state.resource, state.cursor.as_deref(), state.failures), (1, Some("sub_019"), 1), "{state:?}");
    assert!(state.last_error.as_deref().unwrap().contains("HTTP 500"), "{state:?}");
    assert!(state.retry_at.is_some());
    let (_, errors) = app.get("/api/v1/connectors/stripe/errors", &ws.viewer).await;
    assert_eq!(errors["data"][0]["stage"], "backfill", "{errors}");
    assert_eq!(errors["data"][0]["record"]["cursor"], "sub_019");
    let seen_first = fake.lock().unwrap().seen.clone();
    assert_eq!(
        seen_first.iter().filter(|(p, a)| p == "/v1/customers" && a.as_deref() == Some("cus_009")).count(),
        2,
        "retried after 429"
    );
    let synced = |n: usize| {
        let id = domain::AccountId::parse(&format!("customer-{n}")).unwrap();
        let (store, ws) = (app.store.clone(), ws.id.clone());
        async move { store.account_subscriptions(&ws, &id).await.unwrap() }
    };
    assert_eq!(synced(19).await.len(), 1);
    assert!(synced(20).await.is_empty(), "not yet");

    // Healed, the next run resumes after the last page stored: no customer page again.
    fake.lock().unwrap().fail_after = None;
    let before = fake.lock().unwrap().seen.len();
    let report = run().await.unwrap();
    assert!(report.finished, "{report:?}");
    let seen: Vec<_> = fake.lock().unwrap().seen[before..].to_vec();
    assert_eq!(seen[0], ("/v1/subscriptions".to_owned(), Some("sub_019".to_owned())));
    assert!(seen.iter().all(|(p, _)| p != "/v1/customers"), "{seen:?}");
    for n in [0, 19, 20, 24] {
        let subs = synced(n).await;
        assert_eq!(
            (subs.len(), subs[0].quantity, subs[0].mrr.minor),
            (1, n as i64 + 1, (n as i64 + 1) * 4_900),
            "customer {n}"
        );
    }
    let record = app.store.get_connector(&ws.id, "stripe").await.unwrap().unwrap();
    let state = SyncState::of(&record);
    assert!(!state.requested && state.last_error.is_none() && record.last_sync_at.is_some(), "{state:?}");
    assert_eq!(record.records_synced, 25 + 25 + 50);
    // Each open invoice's failed attempt is one event, whichever way it arrived.
    let events = account_events(&app, &ws, "customer-3").await;
    assert!(events.contains_key("stripe:in_003_1:payment_failed:1"), "{:?}", events.keys());
    assert!(!events.contains_key("stripe:in_003_0:payment_failed:1"), "a paid invoice is no failure");

    // A second full backfill changes nothing and tells nothing twice.
    let log_before = app.store.log_status(&ws.id).await.unwrap().total_events;
    let (status, _) = app.call("POST", "/api/v1/connectors/stripe/sync", &ws.member, Some(json!({"full": true}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(run().await.unwrap().finished);
    assert_eq!(app.store.log_status(&ws.id).await.unwrap().total_events, log_before);
    assert_eq!(synced(24).await.len(), 1);
}

#[tokio::test]
async fn the_openapi_document_describes_the_connectors_api() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let (status, doc) = app.get("/api/v1/openapi.json", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let src = include_str!("../src/lib.rs");
    let mut routes = 0;
    for route in src.split(".route(").skip(1).filter(|r| r.contains("connectors::")) {
        let path = route.split('"').nth(1).unwrap();
        for method in ["get", "post", "put", "patch", "delete"] {
            let routed = route.contains(&format!("{method}(connectors::"));
            let op = &doc["paths"][path][method];
            assert_eq!(op.is_object(), routed, "{method} {path}");
            if !routed {
                continue;
            }
            assert_eq!(op["tags"], json!(["connectors"]), "{method} {path}");
            if path.starts_with("/webhooks/") {
                assert!(op.get("security").is_none(), "public: the signature is the key");
                assert!(op["responses"]["400"].is_object() && op["responses"]["404"].is_object());
            } else {
                assert_eq!(op["security"], json!([{"secretKey": []}]), "{method} {path}");
                assert!(op["responses"]["401"].is_object() && op["responses"]["403"].is_object(), "{method} {path}");
            }
            routes += 1;
        }
    }
    assert_eq!(routes, 9);
    let description = doc["info"]["description"].as_str().unwrap();
    let codes = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
    for code in
        ["connector_not_found", "invalid_connector", "invalid_signature", "invalid_payload", "connectors_unavailable"]
    {
        assert!(description.contains(&format!("`{code}`")), "{code} undescribed");
        assert!(codes.as_array().unwrap().contains(&json!(code)), "{code} not in the enum");
    }
}
