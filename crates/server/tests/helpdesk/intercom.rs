use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use chrono::Utc;
use connectors::Provider;
use connectors::backfill::SyncState;
use store::{TicketPriority, TicketStatus};

use super::*;
use crate::accounts;

const SECRET: &str = "c2a8a9e0-3a4f-4a8e-9d3b-7c1e2f4a5b6c";

/// A notification of `topic` carrying `item`, as Intercom delivers it.
fn notification(id: &str, topic: &str, created: i64, item: &Value) -> String {
    let mut n = fixture("intercom", "notification");
    n["id"] = json!(id);
    n["topic"] = json!(topic);
    n["created_at"] = json!(created);
    n["first_sent_at"] = json!(created);
    n["data"]["item"] = item.clone();
    n.to_string()
}

async fn configure(app: &App, ws: &Keys, body: Value) -> (StatusCode, Value) {
    app.call("PUT", "/api/v1/connectors/intercom", &ws.admin, Some(body)).await
}

async fn send(app: &App, ws: &Keys, signer: &Signer, body: &str) -> Value {
    let signature = signer.intercom(body, SECRET);
    let (status, answer) = deliver(app, ws, "intercom", body, &[("x-hub-signature", &signature)]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// The conversation fixture as it stands `after` seconds on: replied to, closed, rated.
fn conversation(opened: i64, updated: i64, reply: Option<i64>, closed: Option<i64>, rating: Option<i64>) -> Value {
    let mut c = fixture("intercom", "conversation");
    c["created_at"] = json!(opened);
    c["updated_at"] = json!(updated);
    c["statistics"]["first_contact_reply_at"] = json!(opened);
    if let Some(r) = reply {
        c["statistics"]["first_admin_reply_at"] = json!(r);
        c["statistics"]["time_to_admin_reply"] = json!(r - opened);
        c["admin_assignee_id"] = json!(814_860);
    }
    if let Some(t) = closed {
        c["state"] = json!("closed");
        c["open"] = json!(false);
        c["statistics"]["first_close_at"] = json!(t);
        c["statistics"]["last_close_at"] = json!(t);
    }
    if let Some(r) = rating {
        c["conversation_rating"] = json!({"rating": r, "remark": "Sorted quickly", "created_at": updated,
            "contact": {"type": "contact", "id": "6643703ffa8f1ef4f2ca0a2f", "external_id": "u-globex"},
            "teammate": {"type": "admin", "id": "814860"}});
    }
    c
}

#[tokio::test]
async fn intercom_webhooks_are_verified_deduplicated_and_newest_wins() {
    let Some(signer) = Signer::new("intercom_webhooks_are_verified_deduplicated_and_newest_wins") else { return };
    let app = App::new().await;
    let ws = app.workspace("support").await;
    accounts(&app, &ws).await;
    let (status, created) = configure(&app, &ws, json!({"webhook_secrets": [SECRET]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let now = Utc::now().timestamp();
    let opened = now - 7_200;

    // The company, matched to `acme` by its company_id.
    let body = notification("notif_1", "company.created", opened - 100, &fixture("intercom", "company"));
    let signed = signer.intercom(&body, SECRET);
    let tampered = body.replace("Acme Analytics", "Evil Corp");
    let wrong = signer.intercom(&body, "someone else's");
    let bare = signed.trim_start_matches("sha1=").to_owned();
    for (what, body, header) in [
        ("tampered", tampered.as_str(), Some(signed.as_str())),
        ("wrong secret", body.as_str(), Some(wrong.as_str())),
        ("not sha1=", body.as_str(), Some(bare.as_str())),
        ("unsigned", body.as_str(), None),
    ] {
        let headers: Vec<(&str, &str)> = header.map(|h| ("x-hub-signature", h)).into_iter().collect();
        let (status, answer) = deliver(&app, &ws, "intercom", body, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{what}");
    }
    let q = store::ObjectQuery::default();
    assert!(app.store.provider_objects(&ws.id, "intercom", &q).await.unwrap().is_empty(), "nothing stored");
    assert_eq!(send(&app, &ws, &signer, &body).await["stored"], 1);
    assert_eq!(send(&app, &ws, &signer, &body).await["duplicate"], true);

    // The conversation, before its contact (who matches `globex` by email): it waits.
    let started =
        notification("notif_2", "conversation.user.created", opened, &conversation(opened, opened, None, None, None));
    assert_eq!(send(&app, &ws, &signer, &started).await["unmatched"], 1);
    let mut contact = fixture("intercom", "contact");
    contact["updated_at"] = json!(opened);
    send(&app, &ws, &signer, &notification("notif_3", "contact.user.created", opened, &contact)).await;
    let t = &tickets_of(&app, &ws, "globex").await["1295"];
    assert_eq!((t.status, t.priority, t.subject.as_str()), (TicketStatus::New, TicketPriority::Normal, ""));
    assert_eq!((t.opened_at.timestamp(), t.first_response_at, t.csat), (opened, None, None));

    // Replied to after 10 minutes and closed after an hour, the close delivered first; then rated.
    let replied = conversation(opened, opened + 600, Some(opened + 600), None, None);
    let closed = conversation(opened, opened + 3_600, Some(opened + 600), Some(opened + 3_600), None);
    let rated = conversation(opened, opened + 4_000, Some(opened + 600), Some(opened + 3_600), Some(5));
    send(&app, &ws, &signer, &notification("notif_5", "conversation.admin.closed", opened + 3_600, &closed)).await;
    let answer =
        send(&app, &ws, &signer, &notification("notif_4", "conversation.admin.replied", opened + 600, &replied)).await;
    assert_eq!((answer["stale"].clone(), answer["stored"].clone()), (json!(1), json!(0)), "{answer}");
    send(&app, &ws, &signer, &notification("notif_6", "conversation.rating.added", opened + 4_000, &rated)).await;
    let t = &tickets_of(&app, &ws, "globex").await["1295"];
    assert_eq!(
        (t.status, t.csat, t.attributes["csat_comment"].as_str()),
        (TicketStatus::Solved, Some(5), Some("Sorted quickly"))
    );
    assert_eq!(t.first_response_at.map(|t| t.timestamp()), Some(opened + 600));
    assert_eq!(t.resolved_at.map(|t| t.timestamp()), Some(opened + 3_600));
    assert_eq!(
        (t.attributes["contact"].as_str(), t.attributes["time_to_admin_reply"].as_i64()),
        (Some("6643703ffa8f1ef4f2ca0a2f"), Some(600))
    );

    assert_eq!(
        events_of(&app, &ws, "intercom", "globex").await,
        [
            (format!("intercom:1295:csat:{}:5", opened + 4_000), "CSAT Rated".to_owned()),
            ("intercom:1295:opened".to_owned(), "Ticket Opened".to_owned()),
            (format!("intercom:1295:solved:{}", opened + 3_600), "Ticket Solved".to_owned()),
        ]
    );
    let traits = events_of(&app, &ws, "intercom", "acme").await;
    assert_eq!(
        traits,
        [(format!("intercom:company:531ee472cce572a6ec000006:{}", 1_709_283_600_000i64), "(group)".to_owned())]
    );
    let (_, shown) = app.get("/api/v1/connectors/intercom", &ws.viewer).await;
    assert_eq!(shown["webhooks_received"], 7, "{shown}");
}

#[tokio::test]
async fn intercom_unmatched_contacts_are_listed_and_linked_by_kind() {
    let app = App::new().await;
    let ws = app.workspace("support").await;
    accounts(&app, &ws).await;
    configure(&app, &ws, json!({"webhook_secrets": [SECRET]})).await;
    let opened = Utc::now().timestamp() - 600;
    let mut contact = fixture("intercom", "contact");
    contact["email"] = json!("someone@example.net");
    let mut convo = conversation(opened, opened, None, None, None);
    convo["title"] = json!("Billing question");
    for (i, (topic, item)) in
        [("contact.lead.created", &contact), ("conversation.user.created", &convo)].into_iter().enumerate()
    {
        let body = notification(&format!("n{i}"), topic, opened, item);
        let signature = connectors::intercom::signature::sign(body.as_bytes(), SECRET);
        let (status, answer) = deliver(&app, &ws, "intercom", &body, &[("x-hub-signature", &signature)]).await;
        assert_eq!((status, answer["unmatched"].clone()), (StatusCode::OK, json!(1)), "{answer}");
    }
    let (_, companies) = app.get("/api/v1/connectors/intercom/unmatched", &ws.viewer).await;
    assert_eq!(companies["data"], json!([]), "companies by default");
    let (status, answer) = app.get("/api/v1/connectors/intercom/unmatched?kind=conversation", &ws.viewer).await;
    assert_eq!((status, answer["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("kind")));
    let (_, listed) = app.get("/api/v1/connectors/intercom/unmatched?kind=contact", &ws.viewer).await;
    assert_eq!(listed["data"][0]["object_id"], "6643703ffa8f1ef4f2ca0a2f", "{listed}");
    assert_eq!(listed["data"][0]["waiting"], json!({"conversation": 1}));
    let path = "/api/v1/connectors/intercom/unmatched/6643703ffa8f1ef4f2ca0a2f/link";
    let (status, answer) = app.call("POST", path, &ws.member, Some(json!({"account_id": "globex"}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let t = &tickets_of(&app, &ws, "globex").await["1295"];
    assert_eq!((t.subject.as_str(), t.status), ("Billing question", TicketStatus::New));
    let (_, listed) = app.get("/api/v1/connectors/intercom/unmatched?kind=contact", &ws.viewer).await;
    assert_eq!(listed["data"], json!([]));
}

/// A local Intercom: companies paged by number (5 a page), contacts and conversations by
/// `starting_after` (10 a page), a 429 once, and failures it is told to give.
#[derive(Default)]
struct Fake {
    companies: Vec<Value>,
    contacts: Vec<Value>,
    conversations: Vec<Value>,
    /// Requests seen: path and page or cursor.
    seen: Vec<(String, Option<String>)>,
    /// The conversation page after this cursor fails while this is above 0.
    fail_after: Option<(String, u32)>,
    limited_once: bool,
}

/// A cursor as Intercom's look: opaque base64.
fn cursor(i: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("[{i},\"after\"]"))
}

async fn list(
    axum::extract::State(fake): axum::extract::State<Arc<Mutex<Fake>>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if header("authorization").as_deref() != Some("Bearer dG9rOmFjbWU=") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"type": "error.list", "errors": [{"code": "unauthorized"}]})),
        )
            .into_response();
    }
    assert_eq!(header("intercom-version").as_deref(), Some(connectors::intercom::API_VERSION));
    let q = query(&uri);
    let mut fake = fake.lock().unwrap();
    if uri.path() == "/companies" {
        let page: usize = q.get("page").map_or(1, |p| p.parse().unwrap());
        fake.seen.push((uri.path().to_owned(), q.get("page").cloned()));
        let total = fake.companies.len().div_ceil(5);
        let data: Vec<Value> = fake.companies.iter().skip((page - 1) * 5).take(5).cloned().collect();
        let next = (page < total).then(|| format!("https://api.intercom.io/companies?per_page=5&page={}", page + 1));
        return axum::Json(json!({"type": "list", "data": data, "total_count": fake.companies.len(),
            "pages": {"type": "pages", "next": next, "page": page, "per_page": 5, "total_pages": total}}))
        .into_response();
    }
    let after = q.get("starting_after").cloned();
    fake.seen.push((uri.path().to_owned(), after.clone()));
    if uri.path() == "/contacts" && after.is_some() && !fake.limited_once {
        fake.limited_once = true;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "rate limited").into_response();
    }
    if uri.path() == "/conversations"
        && let Some((at, left)) = &mut fake.fail_after
        && after.as_deref() == Some(at.as_str())
        && *left > 0
    {
        *left -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "server error").into_response();
    }
    let (key, all) =
        if uri.path() == "/contacts" { ("data", &fake.contacts) } else { ("conversations", &fake.conversations) };
    let start = after.map_or(0, |a| (0..=all.len()).find(|i| cursor(*i) == a).unwrap());
    let items: Vec<Value> = all.iter().skip(start).take(10).cloned().collect();
    let end = start + items.len();
    let next = (end < all.len()).then(|| json!({"page": end / 10 + 1, "starting_after": cursor(end)}));
    let kind = if key == "data" { "list" } else { "conversation.list" };
    axum::Json(json!({"type": kind, key: items, "total_count": all.len(),
        "pages": {"type": "pages", "next": next, "page": start / 10 + 1, "per_page": 10,
            "total_pages": all.len().div_ceil(10)}}))
    .into_response()
}

#[tokio::test]
async fn intercom_backfills_page_wait_out_rate_limits_and_resume_after_a_failure() {
    let app = App::new().await;
    let ws = app.workspace("support").await;
    accounts(&app, &ws).await;
    let opened = Utc::now().timestamp() - 86_400;
    let mut fake = Fake::default();
    // Company i is account `customer-i`'s; contact i works there, conversation i is theirs.
    for i in 0..25 {
        let mut company = fixture("intercom", "company");
        company["id"] = json!(format!("co_{i:03}"));
        company["company_id"] = json!(format!("customer-{i}"));
        company["website"] = json!(null);
        fake.companies.push(company);
        let mut contact = fixture("intercom", "contact");
        contact["id"] = json!(format!("ct_{i:03}"));
        contact["email"] = json!(format!("ana@customer{i}.example.org"));
        contact["custom_attributes"] = json!({"steward_account_id": format!("customer-{i}")});
        fake.contacts.push(contact);
        let closed = (i % 2 == 0).then_some(opened + 3_600);
        let mut c =
            conversation(opened, opened + 3_600, Some(opened + 60 * (i + 1)), closed, closed.map(|_| 1 + i % 5));
        c["id"] = json!(format!("{}", 1295 + i));
        c["contacts"]["contacts"][0]["id"] = json!(format!("ct_{i:03}"));
        c["priority"] = json!(if i % 3 == 0 { "priority" } else { "not_priority" });
        fake.conversations.push(c);
    }
    fake.fail_after = Some((cursor(20), 100));
    let fake = Arc::new(Mutex::new(fake));
    let router = axum::Router::new()
        .route("/companies", axum::routing::get(list))
        .route("/contacts", axum::routing::get(list))
        .route("/conversations", axum::routing::get(list))
        .with_state(fake.clone());
    let base = serve(router).await;
    let (status, _) = configure(&app, &ws, json!({"api_key": "dG9rOmFjbWU=", "config": {"base_url": base}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let retries = retries();
    let run =
        || connectors::backfill::run(app.syncer.connectors(), app.syncer.http(), &ws.id, Provider::Intercom, &retries);

    // Five pages of companies, three of contacts (one rate-limited), two of conversations,
    // then the page that keeps failing.
    let report = run().await.unwrap();
    assert_eq!((report.finished, report.pages), (false, 5 + 3 + 2), "{report:?}");
    let record = app.store.get_connector(&ws.id, "intercom").await.unwrap().unwrap();
    let state = SyncState::of(&record);
    assert_eq!((state.resource, state.cursor.clone(), state.failures), (2, Some(cursor(20)), 1), "{state:?}");
    let seen = fake.lock().unwrap().seen.clone();
    let pages: Vec<Option<&str>> = seen.iter().filter(|(p, _)| p == "/companies").map(|(_, n)| n.as_deref()).collect();
    assert_eq!(pages, [None, Some("2"), Some("3"), Some("4"), Some("5")]);
    assert_eq!(
        seen.iter().filter(|(p, a)| p == "/contacts" && a.as_ref() == Some(&cursor(10))).count(),
        2,
        "retried after 429"
    );
    assert!(tickets_of(&app, &ws, "customer-20").await.is_empty(), "not yet");

    fake.lock().unwrap().fail_after = None;
    let before = fake.lock().unwrap().seen.len();
    assert!(run().await.unwrap().finished);
    let seen: Vec<_> = fake.lock().unwrap().seen[before..].to_vec();
    assert_eq!(seen, [("/conversations".to_owned(), Some(cursor(20)))]);
    for i in [0i64, 3, 20, 21] {
        let account = format!("customer-{i}");
        let t = &tickets_of(&app, &ws, &account).await[&(1295 + i).to_string()];
        assert_eq!(t.first_response_at.unwrap().timestamp(), opened + 60 * (i + 1), "{account}");
        let priority = if i % 3 == 0 { TicketPriority::High } else { TicketPriority::Normal };
        if i % 2 == 0 {
            assert_eq!(
                (t.status, t.priority, t.csat),
                (TicketStatus::Solved, priority, Some(1 + i as i16 % 5)),
                "{account}"
            );
            assert_eq!(t.resolved_at.unwrap().timestamp(), opened + 3_600);
        } else {
            assert_eq!(
                (t.status, t.priority, t.resolved_at, t.csat),
                (TicketStatus::Open, priority, None, None),
                "{account}"
            );
        }
    }
    let events = events_of(&app, &ws, "intercom", "customer-20").await;
    let names: Vec<&str> = events.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["CSAT Rated", "Ticket Opened", "Ticket Solved", "(group)"], "{events:?}");

    let log_before = app.store.log_status(&ws.id).await.unwrap().total_events;
    let (status, _) =
        app.call("POST", "/api/v1/connectors/intercom/sync", &ws.member, Some(json!({"full": true}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(run().await.unwrap().finished);
    assert_eq!(app.store.log_status(&ws.id).await.unwrap().total_events, log_before);
}

/// A local Intercom with more companies than page numbers reach: `/companies` says so
/// (`total_count`), `/companies/scroll` scrolls them 100 at a time (one scroll open at a
/// time; a scroll parameter it is told to expire answers 404, as after a minute unused), and
/// its pages fail while told to.
#[derive(Default)]
struct Scrolling {
    companies: Vec<Value>,
    /// Requests seen: path and page or scroll parameter.
    seen: Vec<(String, Option<String>)>,
    scrolls: usize,
    /// The scroll parameter that answers 404 once, by its offset.
    expire_at: Option<usize>,
    /// Scroll pages at this offset fail (503) while this is above 0.
    fail_at: Option<(usize, u32)>,
}

async fn scroll(
    axum::extract::State(fake): axum::extract::State<Arc<Mutex<Scrolling>>>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    let q = query(&uri);
    let mut fake = fake.lock().unwrap();
    if uri.path() == "/companies" {
        fake.seen.push(("/companies".into(), q.get("page").cloned()));
        let total = fake.companies.len().div_ceil(50);
        let data: Vec<Value> = fake.companies.iter().take(50).cloned().collect();
        return axum::Json(json!({"type": "list", "data": data, "total_count": fake.companies.len(),
            "pages": {"type": "pages", "next": "https://api.intercom.io/companies?per_page=50&page=2", "page": 1,
                "per_page": 50, "total_pages": total}}))
        .into_response();
    }
    let param = q.get("scroll_param").cloned();
    fake.seen.push(("/companies/scroll".into(), param.clone()));
    let (id, offset) = match &param {
        None => {
            fake.scrolls += 1;
            (fake.scrolls, 0)
        }
        Some(p) => {
            let (id, offset) = p.split_once('-').unwrap();
            (id.parse().unwrap(), offset.parse().unwrap())
        }
    };
    if param.is_some() && (id != fake.scrolls || fake.expire_at == Some(offset)) {
        fake.expire_at = None;
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"type": "error.list", "request_id": "req-1",
            "errors": [{"code": "not_found", "message": "scroll parameter not found"}]})),
        )
            .into_response();
    }
    if let Some((at, left)) = &mut fake.fail_at
        && *at == offset
        && *left > 0
    {
        *left -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "Request failed due to an internal network error").into_response();
    }
    let data: Vec<Value> = fake.companies.iter().skip(offset).take(100).cloned().collect();
    axum::Json(json!({"type": "list", "data": data, "pages": null, "total_count": null,
        "scroll_param": format!("{id}-{}", offset + data.len())}))
    .into_response()
}

#[tokio::test]
async fn intercom_companies_past_ten_thousand_are_scrolled_and_an_expired_scroll_starts_again() {
    let app = App::new().await;
    let ws = app.workspace("support").await;
    let mut fake = Scrolling::default();
    for i in 0..10_050 {
        let mut company = fixture("intercom", "company");
        company["id"] = json!(format!("co_{i:05}"));
        company["company_id"] = json!(format!("customer-{i}"));
        company["website"] = json!(null);
        fake.companies.push(company);
    }
    fake.fail_at = Some((200, 100));
    let fake = Arc::new(Mutex::new(fake));
    let empty = |key: &'static str| {
        move || async move {
            axum::Json(
                json!({"type": "list", key: [], "total_count": 0, "pages": {"type": "pages", "next": null, "page": 1, "per_page": 150, "total_pages": 0}}),
            )
        }
    };
    let router = axum::Router::new()
        .route("/companies", axum::routing::get(scroll))
        .route("/companies/scroll", axum::routing::get(scroll))
        .with_state(fake.clone())
        .route("/contacts", axum::routing::get(empty("data")))
        .route("/conversations", axum::routing::get(empty("conversations")));
    let base = serve(router).await;
    let (status, _) = configure(&app, &ws, json!({"api_key": "dG9rOmFjbWU=", "config": {"base_url": base}})).await;
    assert_eq!(status, StatusCode::CREATED);
    let retries = retries();
    let run =
        || connectors::backfill::run(app.syncer.connectors(), app.syncer.http(), &ws.id, Provider::Intercom, &retries);

    // The first page says there are more than 10,000: the companies are scrolled from their
    // start. A scroll that keeps failing (Intercom asks for it to be started again) is started
    // again a few times, then the run stops.
    let report = run().await.unwrap();
    assert!(!report.finished, "{report:?}");
    let seen = fake.lock().unwrap().seen.clone();
    assert_eq!(seen[0], ("/companies".to_owned(), None));
    assert_eq!(seen[1], ("/companies/scroll".to_owned(), None));
    assert_eq!(seen.iter().filter(|(p, s)| p == "/companies/scroll" && s.is_none()).count(), 4, "{seen:?}");
    let state = SyncState::of(&app.store.get_connector(&ws.id, "intercom").await.unwrap().unwrap());
    assert!(state.cursor.as_deref().unwrap().starts_with("scroll:"), "{state:?}");
    assert!(state.last_error.as_deref().unwrap().contains("HTTP 503"), "{state:?}");

    // Resumed a while later, the scroll has expired: a new one starts; one that expires on the
    // way (unused for a minute) starts again too, and the run reads every company.
    {
        let mut f = fake.lock().unwrap();
        f.fail_at = None;
        f.expire_at = Some(300);
    }
    let before = fake.lock().unwrap().seen.len();
    let report = run().await.unwrap();
    assert!(report.finished, "{report:?}");
    let seen = fake.lock().unwrap().seen[before..].to_vec();
    assert_eq!(seen[0], ("/companies/scroll".to_owned(), None), "a new scroll, not the stopped one's");
    assert_eq!(seen.iter().filter(|(p, s)| p == "/companies/scroll" && s.is_none()).count(), 2, "{seen:?}");
    let q = store::ObjectQuery { kind: Some("company".into()), limit: 20_000, ..Default::default() };
    let companies = app.store.provider_objects(&ws.id, "intercom", &q).await.unwrap();
    assert_eq!(companies.len(), 10_050);
    assert!(companies.iter().any(|c| c.object_id == "co_10049"));
}
