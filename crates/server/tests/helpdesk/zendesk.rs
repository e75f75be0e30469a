use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use connectors::Provider;
use connectors::backfill::SyncState;
use store::{TicketPriority, TicketStatus};

use super::*;
use crate::accounts;

const SECRET: &str = "dGhlIHpENGRlc2sgc2lnbmluZyBzZWNyZXQ=";
const OLD_SECRET: &str = "b2xkIHplbmRlc2sgc2VjcmV0";

fn iso(t: i64) -> String {
    DateTime::from_timestamp(t, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An event subscription's delivery of `kind` (`ticket.status_changed`) whose detail is
/// `detail`, as Zendesk sends it.
fn event(id: &str, kind: &str, at: i64, detail: Value, change: Value) -> String {
    let mut e = fixture("zendesk", "event");
    e["id"] = json!(id);
    e["type"] = json!(format!("zen:event-type:{kind}"));
    e["time"] = json!(iso(at));
    e["subject"] = json!(format!("zen:{}:{}", kind.split('.').next().unwrap(), detail["id"].as_str().unwrap()));
    e["detail"] = detail;
    e["event"] = change;
    e.to_string()
}

/// The event fixture's ticket, changed.
fn ticket_detail(id: &str, status: &str, priority: &str, updated: i64, created: i64) -> Value {
    let mut d = fixture("zendesk", "event")["detail"].clone();
    d["id"] = json!(id);
    d["status"] = json!(status);
    d["priority"] = json!(priority);
    d["created_at"] = json!(iso(created));
    d["updated_at"] = json!(iso(updated));
    d
}

async fn configure(app: &App, ws: &Keys, body: Value) -> (StatusCode, Value) {
    app.call("PUT", "/api/v1/connectors/zendesk", &ws.admin, Some(body)).await
}

async fn send(app: &App, ws: &Keys, signer: &Signer, body: &str, secret: &str) -> Value {
    let at = iso(Utc::now().timestamp());
    let signature = signer.zendesk(body, secret, &at);
    let headers = [("x-zendesk-webhook-signature", signature.as_str()), ("x-zendesk-webhook-signature-timestamp", &at)];
    let (status, answer) = deliver(app, ws, "zendesk", body, &headers).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test]
async fn zendesk_webhooks_are_verified_deduplicated_and_newest_wins() {
    let Some(signer) = Signer::new("zendesk_webhooks_are_verified_deduplicated_and_newest_wins") else { return };
    let app = App::new().await;
    let ws = app.workspace("support").await;
    accounts(&app, &ws).await;
    let (status, created) = configure(&app, &ws, json!({"webhook_secrets": [OLD_SECRET, SECRET]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let now = Utc::now().timestamp();
    let opened = now - 7_200;

    // The organization, matched to `acme` by its external id.
    let org = json!({"created_at": iso(opened - 100), "external_id": "acme", "group_id": null, "id": "361898904439",
        "name": "Acme Analytics", "shared_comments": false, "shared_tickets": false, "updated_at": iso(opened - 100)});
    let body = event("e-org", "organization.created", opened - 100, org, json!({}));
    let at = iso(now);
    let signed = signer.zendesk(&body, SECRET, &at);
    // Refused, and nothing stored: a tampered body, a wrong secret, a stale timestamp, a
    // timestamp that is not the signed one, a missing header.
    let tampered = body.replace("Acme Analytics", "Evil Corp");
    let wrong = signer.zendesk(&body, "someone else's", &at);
    let stale_at = iso(now - 400);
    let stale = signer.zendesk(&body, SECRET, &stale_at);
    let moved = iso(now - 1);
    for (what, body, signature, timestamp) in [
        ("tampered", tampered.as_str(), Some(signed.as_str()), Some(at.as_str())),
        ("wrong secret", body.as_str(), Some(wrong.as_str()), Some(at.as_str())),
        ("stale", body.as_str(), Some(stale.as_str()), Some(stale_at.as_str())),
        ("another timestamp", body.as_str(), Some(signed.as_str()), Some(moved.as_str())),
        ("unsigned", body.as_str(), None, Some(at.as_str())),
        ("no timestamp", body.as_str(), Some(signed.as_str()), None),
    ] {
        let mut headers = Vec::new();
        headers.extend(signature.map(|s| ("x-zendesk-webhook-signature", s)));
        headers.extend(timestamp.map(|t| ("x-zendesk-webhook-signature-timestamp", t)));
        let (status, answer) = deliver(&app, &ws, "zendesk", body, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{what}");
    }
    let q = store::ObjectQuery::default();
    assert!(app.store.provider_objects(&ws.id, "zendesk", &q).await.unwrap().is_empty(), "nothing stored");
    let headers = [("x-zendesk-webhook-signature", signed.as_str()), ("x-zendesk-webhook-signature-timestamp", &at)];
    let (status, answer) = deliver(&app, &ws, "zendesk", &body, &headers).await;
    assert_eq!((status, answer["stored"].clone(), answer["unmatched"].clone()), (StatusCode::OK, json!(1), json!(0)));

    // The ticket, signed with the secret being rolled out; then the same delivery again.
    let created =
        event("e-1", "ticket.created", opened, ticket_detail("5158", "NEW", "HIGH", opened, opened), json!({}));
    assert_eq!(send(&app, &ws, &signer, &created, OLD_SECRET).await["stored"], 1);
    assert_eq!(send(&app, &ws, &signer, &created, SECRET).await["duplicate"], true);
    let t = &tickets_of(&app, &ws, "acme").await["5158"];
    assert_eq!(
        (t.status, t.priority, t.subject.as_str()),
        (TicketStatus::New, TicketPriority::High, "Exports fail since this morning")
    );
    assert_eq!((t.opened_at.timestamp(), t.first_response_at, t.resolved_at), (opened, None, None));

    // An agent's public reply after 10 minutes, then the ticket solved (and made urgent on the
    // way) after an hour, delivered before the older change of priority.
    let reply = event(
        "e-2",
        "ticket.comment_added",
        opened + 600,
        ticket_detail("5158", "OPEN", "HIGH", opened + 600, opened),
        json!({"comment": {"id": "9001", "body": "Looking into it", "is_public": true,
            "author": {"id": "8447388090495", "is_staff": true, "name": "Sam Agent"}}}),
    );
    send(&app, &ws, &signer, &reply, SECRET).await;
    let solved = event(
        "e-4",
        "ticket.status_changed",
        opened + 3_600,
        ticket_detail("5158", "SOLVED", "URGENT", opened + 3_600, opened),
        json!({"current": "SOLVED", "previous": "OPEN"}),
    );
    let urgent = event(
        "e-3",
        "ticket.priority_changed",
        opened + 1_800,
        ticket_detail("5158", "OPEN", "URGENT", opened + 1_800, opened),
        json!({"current": "URGENT", "previous": "HIGH"}),
    );
    assert_eq!(send(&app, &ws, &signer, &solved, SECRET).await["stored"], 1);
    let answer = send(&app, &ws, &signer, &urgent, SECRET).await;
    assert_eq!((answer["stale"].clone(), answer["stored"].clone()), (json!(1), json!(0)), "{answer}");
    let t = &tickets_of(&app, &ws, "acme").await["5158"];
    assert_eq!((t.status, t.priority), (TicketStatus::Solved, TicketPriority::Urgent));
    assert_eq!(t.first_response_at.map(|t| t.timestamp()), Some(opened + 600));
    assert_eq!(t.resolved_at.map(|t| t.timestamp()), Some(opened + 3_600));
    assert_eq!(t.updated_at.timestamp(), opened + 3_600);
    assert_eq!(t.attributes["requester_id"], "8447388090494");

    // A ticket with no organization waits for its requester, who matches `globex` by email.
    let mut alone = ticket_detail("5160", "OPEN", "LOW", opened + 60, opened + 60);
    alone["organization_id"] = Value::Null;
    let answer = send(&app, &ws, &signer, &event("e-5", "ticket.created", opened + 60, alone, json!({})), SECRET).await;
    assert_eq!(answer["unmatched"], 1, "{answer}");
    let (_, listed) = app.get("/api/v1/connectors/zendesk/unmatched?kind=user", &ws.viewer).await;
    assert_eq!(listed["data"], json!([]), "the requester is not known yet");
    let user = json!({"id": "8447388090494", "email": "ops@gmail.com", "name": "Otto Globex", "role": "END_USER",
        "created_at": iso(opened - 50), "updated_at": iso(opened - 50), "organization_id": null});
    send(&app, &ws, &signer, &event("e-6", "user.created", opened - 50, user, json!({})), SECRET).await;
    let t = &tickets_of(&app, &ws, "globex").await["5160"];
    assert_eq!(
        (t.status, t.priority, t.account_id.as_ref().unwrap().as_str()),
        (TicketStatus::Open, TicketPriority::Low, "globex")
    );

    assert_eq!(
        events_of(&app, &ws, "zendesk", "acme").await,
        [
            ("zendesk:5158:opened".to_owned(), "Ticket Opened".to_owned()),
            (format!("zendesk:5158:solved:{}", opened + 3_600), "Ticket Solved".to_owned()),
            (format!("zendesk:organization:361898904439:{}", (opened - 100) * 1000), "(group)".to_owned()),
        ]
    );
    assert_eq!(
        events_of(&app, &ws, "zendesk", "globex").await,
        [("zendesk:5160:opened".to_owned(), "Ticket Opened".to_owned())]
    );
    let (_, shown) = app.get("/api/v1/connectors/zendesk", &ws.viewer).await;
    assert_eq!(shown["webhooks_received"], 8, "{shown}");
    assert!(!shown.to_string().contains(SECRET));
}

/// A local Zendesk: organizations, end users and tickets (metric sets side-loaded) paged 10
/// at a time by cursor, a 429 once, and failures it is told to give.
#[derive(Default)]
struct Fake {
    organizations: Vec<Value>,
    users: Vec<Value>,
    tickets: Vec<Value>,
    metric_sets: Vec<Value>,
    /// Requests seen: path and cursor.
    seen: Vec<(String, Option<String>)>,
    /// The ticket page after this cursor fails while this is above 0.
    fail_after: Option<(String, u32)>,
    limited_once: bool,
}

/// A cursor as Zendesk's look: opaque base64, padding and all.
fn cursor(i: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("after:{i}"))
}

async fn list(
    axum::extract::State(fake): axum::extract::State<Arc<Mutex<Fake>>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    // `ana@acme.io/token:tok_123` as Basic authentication.
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic YW5hQGFjbWUuaW8vdG9rZW46dG9rXzEyMw==")
    {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Couldn't authenticate you"}))).into_response();
    }
    let q = query(&uri);
    assert_eq!(q.get("page[size]").map(String::as_str), Some("100"), "{uri}");
    let after = q.get("page[after]").cloned();
    let mut fake = fake.lock().unwrap();
    fake.seen.push((uri.path().to_owned(), after.clone()));
    if uri.path() == "/api/v2/users.json" && after.is_some() && !fake.limited_once {
        fake.limited_once = true;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "Too Many Requests").into_response();
    }
    if uri.path() == "/api/v2/tickets.json"
        && let Some((at, left)) = &mut fake.fail_after
        && after.as_deref() == Some(at.as_str())
        && *left > 0
    {
        *left -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let (key, all) = match uri.path() {
        "/api/v2/organizations.json" => ("organizations", &fake.organizations),
        "/api/v2/users.json" => ("users", &fake.users),
        _ => ("tickets", &fake.tickets),
    };
    let start = after.map_or(0, |a| (0..=all.len()).find(|i| cursor(*i) == a).unwrap());
    let items: Vec<Value> = all.iter().skip(start).take(10).cloned().collect();
    let end = start + items.len();
    let more = end < all.len();
    let mut page = json!({key: items, "meta": {"has_more": more, "after_cursor": more.then(|| cursor(end)),
        "before_cursor": cursor(start)}, "links": {"next": null, "prev": null}});
    if key == "tickets" {
        assert_eq!(q.get("include").map(String::as_str), Some("metric_sets"));
        let ids: Vec<&Value> = page["tickets"].as_array().unwrap().iter().map(|t| &t["id"]).collect();
        let sets: Vec<Value> = fake.metric_sets.iter().filter(|m| ids.contains(&&m["ticket_id"])).cloned().collect();
        page["metric_sets"] = json!(sets);
    }
    axum::Json(page).into_response()
}

#[tokio::test]
async fn zendesk_backfills_page_wait_out_rate_limits_and_resume_after_a_failure() {
    let app = App::new().await;
    let ws = app.workspace("support").await;
    accounts(&app, &ws).await;
    let opened = Utc::now().timestamp() - 86_400;
    let mut fake = Fake::default();
    // Organization 0 is Acme's (matched by its domain); the others hold their account's id.
    for i in 0..25u64 {
        let mut org = fixture("zendesk", "organization");
        org["id"] = json!(361_898_904_439 + i);
        if i > 0 {
            org["name"] = json!(format!("Customer {i}"));
            org["domain_names"] = json!([]);
            org["organization_fields"]["steward_account_id"] = json!(format!("customer-{i}"));
        }
        fake.organizations.push(org);
        let mut user = fixture("zendesk", "user");
        user["id"] = json!(8_447_388_090_494 + i);
        user["email"] = json!(format!("user{i}@customer{i}.example.org"));
        fake.users.push(user);
        let mut t = fixture("zendesk", "ticket");
        let mut m = fixture("zendesk", "metric_set");
        t["id"] = json!(5158 + i);
        t["organization_id"] = json!(361_898_904_439 + i);
        t["requester_id"] = json!(8_447_388_090_494 + i);
        t["created_at"] = json!(iso(opened));
        m["ticket_id"] = json!(5158 + i);
        m["reply_time_in_minutes"] = json!({"calendar": 10 + i, "business": 10 + i});
        if i % 2 == 0 {
            // Even tickets are solved after an hour and rated: good, or bad every fourth.
            t["status"] = json!("solved");
            t["updated_at"] = json!(iso(opened + 3_600));
            t["satisfaction_rating"] = json!({"id": 7000 + i, "score": if i % 4 == 0 { "bad" } else { "good" },
                "comment": ""});
            m["solved_at"] = json!(iso(opened + 3_600));
        } else {
            t["status"] = json!("open");
            t["priority"] = json!("normal");
            t["updated_at"] = json!(iso(opened + 600));
        }
        fake.tickets.push(t);
        fake.metric_sets.push(m);
    }
    fake.fail_after = Some((cursor(20), 100));
    let fake = Arc::new(Mutex::new(fake));
    let base =
        serve(axum::Router::new().route("/api/v2/{list}", axum::routing::get(list)).with_state(fake.clone())).await;

    // No host, no backfill: Zendesk has none by default.
    let (status, _) = configure(&app, &ws, json!({"api_key": "ana@acme.io/token:tok_123"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let retries = retries();
    let run =
        || connectors::backfill::run(app.syncer.connectors(), app.syncer.http(), &ws.id, Provider::Zendesk, &retries);
    assert!(!run().await.unwrap().finished);
    let record = app.store.get_connector(&ws.id, "zendesk").await.unwrap().unwrap();
    assert!(SyncState::of(&record).last_error.unwrap().contains("base_url"));
    configure(&app, &ws, json!({"config": {"base_url": base}})).await;

    // Ticket 5158 was solved while a webhook listened: told once, whichever way it came.
    let (status, _) = configure(&app, &ws, json!({"webhook_secrets": [SECRET]})).await;
    assert_eq!(status, StatusCode::OK);
    let solved = ticket_detail("5158", "SOLVED", "HIGH", opened + 3_600, opened);
    let body = event("e-1", "ticket.status_changed", opened + 3_600, solved, json!({"current": "SOLVED"}));
    let at = iso(Utc::now().timestamp());
    let signature = connectors::zendesk::signature::sign(body.as_bytes(), SECRET, &at);
    let headers = [("x-zendesk-webhook-signature", signature.as_str()), ("x-zendesk-webhook-signature-timestamp", &at)];
    let (status, answer) = deliver(&app, &ws, "zendesk", &body, &headers).await;
    assert_eq!((status, answer["unmatched"].clone()), (StatusCode::OK, json!(1)), "waits for its organization");

    // The first run waits out the 429, stores every organization and user and two pages of
    // tickets, then stops on the page that keeps failing.
    let report = run().await.unwrap();
    assert_eq!((report.finished, report.pages), (false, 3 + 3 + 2), "{report:?}");
    let record = app.store.get_connector(&ws.id, "zendesk").await.unwrap().unwrap();
    let state = SyncState::of(&record);
    // The second failure in a row: the run without a host was the first.
    assert_eq!((state.resource, state.cursor.clone(), state.failures), (2, Some(cursor(20)), 2), "{state:?}");
    assert!(state.last_error.as_deref().unwrap().contains("HTTP 503"), "{state:?}");
    let seen = fake.lock().unwrap().seen.clone();
    let users_page_2 = seen.iter().filter(|(p, a)| p == "/api/v2/users.json" && a.as_ref() == Some(&cursor(10)));
    assert_eq!(users_page_2.count(), 2, "retried after 429");
    assert_eq!(tickets_of(&app, &ws, "customer-19").await.len(), 1);
    assert!(tickets_of(&app, &ws, "customer-20").await.is_empty(), "not yet");

    // Healed, the next run resumes after the last page stored.
    fake.lock().unwrap().fail_after = None;
    let before = fake.lock().unwrap().seen.len();
    assert!(run().await.unwrap().finished);
    let seen: Vec<_> = fake.lock().unwrap().seen[before..].to_vec();
    assert_eq!(seen[0], ("/api/v2/tickets.json".to_owned(), Some(cursor(20))));
    assert!(seen.iter().all(|(p, _)| p == "/api/v2/tickets.json"), "{seen:?}");
    for (i, account) in
        [(0, "acme".to_owned()), (3, "customer-3".into()), (20, "customer-20".into()), (22, "customer-22".into())]
    {
        let tickets = tickets_of(&app, &ws, &account).await;
        let t = &tickets[&(5158 + i).to_string()];
        assert_eq!(t.first_response_at.unwrap().timestamp(), opened + (10 + i as i64) * 60, "{account}");
        if i % 2 == 0 {
            assert_eq!((t.status, t.priority), (TicketStatus::Solved, TicketPriority::High), "{account}");
            assert_eq!(t.resolved_at.unwrap().timestamp(), opened + 3_600);
            assert_eq!(t.csat, Some(if i % 4 == 0 { 1 } else { 5 }), "{account}");
        } else {
            assert_eq!(
                (t.status, t.priority, t.resolved_at, t.csat),
                (TicketStatus::Open, TicketPriority::Normal, None, None)
            );
        }
    }
    let record = app.store.get_connector(&ws.id, "zendesk").await.unwrap().unwrap();
    assert_eq!(record.records_synced, 25 * 3 + 1);
    let events = events_of(&app, &ws, "zendesk", "acme").await;
    let names: Vec<&str> = events.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["CSAT Rated", "Ticket Opened", "Ticket Solved", "(group)"], "{events:?}");
    assert_eq!(events[2].0, format!("zendesk:5158:solved:{}", opened + 3_600));

    // A second full backfill changes nothing and tells nothing twice.
    let log_before = app.store.log_status(&ws.id).await.unwrap().total_events;
    let (status, _) =
        app.call("POST", "/api/v1/connectors/zendesk/sync", &ws.member, Some(json!({"full": true}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(run().await.unwrap().finished);
    assert_eq!(app.store.log_status(&ws.id).await.unwrap().total_events, log_before);
}

/// The body a "Satisfaction changed" trigger's webhook posts, as Zendesk renders the
/// placeholders README documents (`{{ticket.updated_at_with_timestamp}}` is to the minute).
fn rating(ticket: &str, rating: &str, comment: &str, updated_minute: i64) -> String {
    let at = DateTime::from_timestamp(updated_minute * 60, 0).unwrap().format("%Y-%m-%dT%H:%MZ").to_string();
    json!({"type": "satisfaction_rating", "ticket_id": ticket, "rating": rating, "comment": comment,
        "requester_id": "8447388090494", "requester_email": "Ana.Lopez@acme.io", "updated_at": at})
    .to_string()
}

#[tokio::test]
async fn zendesk_satisfaction_ratings_come_live_from_a_trigger_webhook() {
    let Some(signer) = Signer::new("zendesk_satisfaction_ratings_come_live_from_a_trigger_webhook") else { return };
    let app = App::new().await;
    let ws = app.workspace("support").await;
    accounts(&app, &ws).await;
    let (status, _) = configure(&app, &ws, json!({"webhook_secrets": [SECRET]})).await;
    assert_eq!(status, StatusCode::CREATED);
    let now = Utc::now().timestamp();
    let opened = now - 7_200;
    let org = json!({"id": "361898904439", "external_id": "acme", "name": "Acme Analytics",
        "created_at": iso(opened - 100), "updated_at": iso(opened - 100)});
    send(&app, &ws, &signer, &event("e-org", "organization.created", opened - 100, org, json!({})), SECRET).await;
    let created = ticket_detail("5158", "NEW", "HIGH", opened, opened);
    send(&app, &ws, &signer, &event("e-1", "ticket.created", opened, created, json!({})), SECRET).await;
    let solved = ticket_detail("5158", "SOLVED", "HIGH", opened + 3_600, opened);
    let change = json!({"current": "SOLVED", "previous": "NEW"});
    send(&app, &ws, &signer, &event("e-2", "ticket.status_changed", opened + 3_600, solved, change), SECRET).await;
    assert_eq!(tickets_of(&app, &ws, "acme").await["5158"].csat, None);

    // Rated good a while after: the ticket keeps all it was, with the rating and its comment.
    let minute = (opened + 4_000) / 60;
    let good = rating("5158", "Good, I'm satisfied", "Quick and clear", minute);
    // Signed as Zendesk signs every webhook: a tampered or unsigned body changes nothing.
    let at = iso(Utc::now().timestamp());
    let signature = signer.zendesk(&good, SECRET, &at);
    let tampered = good.replace("Good", "Bad,");
    for (body, headers) in [
        (
            tampered.as_str(),
            vec![
                ("x-zendesk-webhook-signature", signature.as_str()),
                ("x-zendesk-webhook-signature-timestamp", at.as_str()),
            ],
        ),
        (good.as_str(), vec![("x-zendesk-webhook-signature-timestamp", at.as_str())]),
    ] {
        let (status, answer) = deliver(&app, &ws, "zendesk", body, &headers).await;
        assert_eq!((status, answer["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_signature")));
    }
    assert_eq!(tickets_of(&app, &ws, "acme").await["5158"].csat, None);
    let answer = send(&app, &ws, &signer, &good, SECRET).await;
    assert_eq!((answer["stored"].clone(), answer["duplicate"].clone()), (json!(1), json!(false)), "{answer}");
    assert_eq!(send(&app, &ws, &signer, &good, SECRET).await["duplicate"], true, "a retried invocation");
    let t = &tickets_of(&app, &ws, "acme").await["5158"];
    assert_eq!((t.csat, t.status, t.priority), (Some(5), TicketStatus::Solved, TicketPriority::High));
    assert_eq!(t.resolved_at.map(|t| t.timestamp()), Some(opened + 3_600));
    assert_eq!(
        (t.subject.as_str(), t.attributes["csat_comment"].as_str()),
        ("Exports fail since this morning", Some("Quick and clear"))
    );
    assert_eq!(t.updated_at.timestamp(), minute * 60);

    // Changed to bad later, then good again: each change is the ticket's CSAT and an event.
    send(&app, &ws, &signer, &rating("5158", "Bad, I'm unsatisfied", "It broke again", minute + 5), SECRET).await;
    assert_eq!(tickets_of(&app, &ws, "acme").await["5158"].csat, Some(1));
    send(&app, &ws, &signer, &rating("5158", "Good, I'm satisfied", "", minute + 9), SECRET).await;
    let t = &tickets_of(&app, &ws, "acme").await["5158"];
    assert_eq!(t.csat, Some(5));
    assert!(t.attributes.get("csat_comment").is_none(), "the new rating has no comment: {}", t.attributes);
    let rated: Vec<String> = events_of(&app, &ws, "zendesk", "acme")
        .await
        .into_iter()
        .filter(|(_, name)| name == "CSAT Rated")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(rated.len(), 3, "{rated:?}");
    let log = app.store.read_log(&ws.id, LogPosition::ZERO, 100_000).await.unwrap();
    let scores: Vec<i64> = log
        .iter()
        .filter(|e| e.event.name.as_deref() == Some("CSAT Rated"))
        .map(|e| serde_json::from_str::<Value>(&e.event.payload).unwrap()["properties"]["score"].as_i64().unwrap())
        .collect();
    assert_eq!(scores, [5, 1, 5]);

    // A ticket event after the rating (an agent's note) keeps it.
    let noted = ticket_detail("5158", "SOLVED", "HIGH", (minute + 12) * 60, opened);
    send(&app, &ws, &signer, &event("e-3", "ticket.tags_changed", (minute + 12) * 60, noted, json!({})), SECRET).await;
    assert_eq!(tickets_of(&app, &ws, "acme").await["5158"].csat, Some(5));

    // What is not a rating is refused with the reason, shown in the errors, and changes nothing.
    for (body, reason) in [
        (rating("5158", "Meh", "", minute + 20), "`rating` \"meh\""),
        (rating("{{ticket.id}}", "Good", "", minute + 20), "`ticket_id`"),
        (
            rating("5158", "Good", "", minute + 20)
                .replace(&format!("{}Z", ""), "")
                .replace("\"updated_at\"", "\"when\""),
            "`updated_at`",
        ),
    ] {
        let at = iso(Utc::now().timestamp());
        let signature = signer.zendesk(&body, SECRET, &at);
        let headers = [
            ("x-zendesk-webhook-signature", signature.as_str()),
            ("x-zendesk-webhook-signature-timestamp", at.as_str()),
        ];
        let (status, answer) = deliver(&app, &ws, "zendesk", &body, &headers).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_payload")),
            "{body}"
        );
        assert!(answer["error"]["message"].as_str().unwrap().contains(reason), "{answer}");
    }
    let (_, errors) = app.get("/api/v1/connectors/zendesk/errors", &ws.viewer).await;
    assert_eq!(errors["data"].as_array().unwrap().len(), 3, "{errors}");
    assert_eq!(tickets_of(&app, &ws, "acme").await["5158"].csat, Some(5));

    // A rating of a ticket not seen yet waits for it: it tells nothing alone, and the ticket
    // brings it when it comes.
    send(&app, &ws, &signer, &rating("5170", "Bad, I'm unsatisfied", "", minute), SECRET).await;
    assert!(!tickets_of(&app, &ws, "acme").await.contains_key("5170"));
    let later = ticket_detail("5170", "SOLVED", "LOW", minute * 60 + 30, opened);
    send(&app, &ws, &signer, &event("e-9", "ticket.created", minute * 60 + 30, later, json!({})), SECRET).await;
    let t = &tickets_of(&app, &ws, "acme").await["5170"];
    assert_eq!((t.csat, t.status), (Some(1), TicketStatus::Solved));

    // A rating delivered late, after a later event of its ticket (the trigger's webhook was
    // retried): the ticket takes it, and keeps what the event told.
    let solved = ticket_detail("5180", "SOLVED", "NORMAL", opened + 600, opened);
    send(&app, &ws, &signer, &event("e-20", "ticket.created", opened + 600, solved, json!({})), SECRET).await;
    let rated_minute = (opened + 1_200) / 60;
    let noted = ticket_detail("5180", "SOLVED", "URGENT", (rated_minute + 30) * 60, opened);
    send(
        &app,
        &ws,
        &signer,
        &event("e-21", "ticket.priority_changed", (rated_minute + 30) * 60, noted, json!({})),
        SECRET,
    )
    .await;
    let late = rating("5180", "Bad, I'm unsatisfied", "Too slow", rated_minute);
    let answer = send(&app, &ws, &signer, &late, SECRET).await;
    assert_eq!((answer["stored"].clone(), answer["stale"].clone()), (json!(1), json!(0)), "{answer}");
    let t = &tickets_of(&app, &ws, "acme").await["5180"];
    assert_eq!((t.csat, t.priority), (Some(1), TicketPriority::Urgent));
    assert_eq!(t.attributes["csat_comment"], "Too slow");
    assert_eq!(t.updated_at.timestamp(), (rated_minute + 30) * 60, "the ticket as of its last event");
    let rated = |events: Vec<(String, String)>| {
        events.into_iter().filter(|(id, name)| name == "CSAT Rated" && id.contains(":5180:")).count()
    };
    assert_eq!(rated(events_of(&app, &ws, "zendesk", "acme").await), 1);
    // An older rating still, arriving after it, is stale: the ticket knows a newer one.
    let older = rating("5180", "Good, I'm satisfied", "", rated_minute - 5);
    let answer = send(&app, &ws, &signer, &older, SECRET).await;
    assert_eq!((answer["stored"].clone(), answer["stale"].clone()), (json!(0), json!(1)), "{answer}");
    assert_eq!(tickets_of(&app, &ws, "acme").await["5180"].csat, Some(1));
    assert_eq!(rated(events_of(&app, &ws, "zendesk", "acme").await), 1);
}
