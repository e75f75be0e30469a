//! The HubSpot and Salesforce connectors end to end: HubSpot's webhooks signed as HubSpot
//! documents (v3; the test signer checked against Python's own `hmac`), tampered, wrongly
//! signed, stale, for another URL and repeated, and the sync they ask for; Salesforce's change
//! polling from a watermark; both against local servers that page recorded, real-shaped
//! records, rate-limit and fail halfway. What is checked is what an operator sees: the
//! account's traits (its CSM, its open pipeline), its events, what matched and what waits.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use common::{App, Keys};
use connectors::Provider;
use connectors::backfill::{Retries, SyncState};
use connectors::hubspot::signature;
use domain::AccountId;
use serde_json::{Value, json};
use store::{LogPosition, Store};
use tower::ServiceExt;

const CLIENT_SECRET: &str = "8f2d6c1e-4b7a-4e9d-a3c5-0b1f9e7d2a64";
const HOST: &str = "steward.example.com";
/// Records per page in the local servers: small, so that every list has several.
const PAGE: usize = 2;

fn fixture(provider: &str, name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{provider}/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Accounts to match: `acme` by its domain trait, `globex` by the id a CRM holds for it.
async fn accounts(app: &App, ws: &Keys) {
    let now = Utc::now().to_rfc3339();
    app.send(
        ws,
        vec![
            json!({"type": "group", "messageId": "g1", "userId": "u-acme", "groupId": "acme",
                   "traits": {"name": "Acme", "domain": "https://www.acme.io"}, "timestamp": now}),
            json!({"type": "group", "messageId": "g2", "userId": "u-globex", "groupId": "globex",
                   "traits": {"name": "Globex"}, "timestamp": now}),
        ],
    )
    .await;
}

/// The account's traits once the processor applied what the connector told.
async fn traits(app: &App, ws: &Keys, account: &str) -> Value {
    app.processor.run_until_idle(&ws.id).await.unwrap();
    let id = AccountId::parse(account).unwrap();
    app.store.get_account(&ws.id, &id).await.unwrap().unwrap().traits
}

/// The named events the connector appended for `account`: message id and name.
async fn account_events(app: &App, ws: &Keys, account: &str) -> Vec<(String, String)> {
    let log = app.store.read_log(&ws.id, LogPosition::ZERO, 100_000).await.unwrap();
    let mut events: Vec<(String, String)> = log
        .into_iter()
        .filter(|e| e.event.group_id.as_deref() == Some(account) && e.event.name.is_some())
        .filter(|e| e.event.message_id.starts_with("hubspot:") || e.event.message_id.starts_with("salesforce:"))
        .map(|e| (e.event.message_id.clone(), e.event.name.clone().unwrap()))
        .collect();
    events.sort();
    events
}

async fn log_size(app: &App, ws: &Keys) -> i64 {
    app.store.log_status(&ws.id).await.unwrap().total_events
}

async fn sync_state(app: &App, ws: &Keys, provider: &str) -> SyncState {
    SyncState::of(&app.store.get_connector(&ws.id, provider).await.unwrap().unwrap())
}

fn retries() -> Retries {
    Retries { attempts: 3, backoff: std::time::Duration::from_millis(10), max_wait: std::time::Duration::from_secs(2) }
}

async fn run(app: &App, ws: &Keys, provider: Provider) -> connectors::backfill::Report {
    connectors::backfill::run(app.syncer.connectors(), app.syncer.http(), &ws.id, provider, &retries()).await.unwrap()
}

/// Serves `router` on a local port; its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

/// A local HubSpot: the owners and CRM object lists, `PAGE` at a time with `after`, with the
/// properties and associations asked for only (as HubSpot answers), a 429 once on the first
/// page of companies, and a page that fails while told to.
#[derive(Default)]
struct FakeHubSpot {
    /// By list: `owners`, `companies`, `contacts`, `deals`.
    lists: HashMap<String, Vec<Value>>,
    /// Requests seen: list and `after`.
    seen: Vec<(String, Option<String>)>,
    limited_once: bool,
    /// This list's page after this cursor fails while the count is above 0.
    fail: Option<(String, String, u32)>,
}

type Shared<T> = Arc<Mutex<T>>;

async fn hubspot_list(
    State(fake): State<Shared<FakeHubSpot>>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer pat-na1-test") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"status": "error", "category": "INVALID_AUTHENTICATION"})),
        )
            .into_response();
    }
    let list = uri.path().rsplit('/').next().unwrap().to_owned();
    let after = q.get("after").cloned();
    let mut fake = fake.lock().unwrap();
    fake.seen.push((list.clone(), after.clone()));
    if list == "companies" && !fake.limited_once {
        fake.limited_once = true;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "rate limited").into_response();
    }
    if let Some((l, cursor, left)) = &mut fake.fail
        && *l == list
        && after.as_deref() == Some(cursor.as_str())
        && *left > 0
    {
        *left -= 1;
        return (StatusCode::BAD_GATEWAY, "upstream failed").into_response();
    }
    let all = fake.lists.get(&list).cloned().unwrap_or_default();
    let start: usize = after.as_deref().map_or(0, |a| a.parse().unwrap());
    let asked: Vec<&str> = q.get("properties").map_or(Vec::new(), |p| p.split(',').collect());
    let results: Vec<Value> = all
        .iter()
        .skip(start)
        .take(PAGE)
        .map(|o| {
            let mut o = o.clone();
            if let Some(Value::Object(props)) = o.get_mut("properties") {
                props.retain(|k, _| k == "hs_object_id" || asked.contains(&k.as_str()));
            }
            if q.get("associations").map(String::as_str) != Some("companies")
                && let Value::Object(fields) = &mut o
            {
                fields.remove("associations");
            }
            o
        })
        .collect();
    let mut page = json!({"results": results});
    if start + PAGE < all.len() {
        let next = (start + PAGE).to_string();
        page["paging"] = json!({"next": {"after": next, "link": format!("{}?after={next}", uri.path())}});
    }
    axum::Json(page).into_response()
}

async fn hubspot(fake: &Shared<FakeHubSpot>) -> String {
    let router = axum::Router::new()
        .route("/crm/v3/owners", axum::routing::get(hubspot_list))
        .route("/crm/v3/objects/{list}", axum::routing::get(hubspot_list))
        .with_state(fake.clone());
    serve(router).await
}

fn with(mut object: Value, changes: Value) -> Value {
    fn merge(into: &mut Value, from: &Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (into, from) => *into = from.clone(),
        }
    }
    merge(&mut object, &changes);
    object
}

/// A portal: two owners; Acme's company (owned by Mia), Initech's (matching nothing); a
/// contact of each; Acme's open renewal, a deal won and one lost, and Initech's open deal.
fn portal() -> FakeHubSpot {
    let company = fixture("hubspot", "company");
    let contact = fixture("hubspot", "contact");
    let deal = fixture("hubspot", "deal");
    let initech_company = json!({"companies": {"results": [{"id": "555", "type": "deal_to_company"}]}});
    let lists = [
        (
            "owners",
            vec![
                fixture("hubspot", "owner"),
                with(
                    fixture("hubspot", "owner"),
                    json!({"id": "52210044", "email": "noah.berg@steward-demo.io", "firstName": "Noah", "lastName": "Berg"}),
                ),
            ],
        ),
        (
            "companies",
            vec![
                company.clone(),
                with(
                    company,
                    json!({"id": "555", "properties": {"name": "Initech", "domain": "initech.example.net",
                        "hs_object_id": "555", "hubspot_owner_id": null}}),
                ),
            ],
        ),
        (
            "contacts",
            vec![
                contact.clone(),
                with(
                    contact,
                    json!({"id": "152", "properties": {"email": "bill@initech.example.net"},
                        "associations": {"companies": {"results": [{"id": "555", "type": "contact_to_company"}]}}}),
                ),
            ],
        ),
        (
            "deals",
            vec![
                deal.clone(),
                with(
                    deal.clone(),
                    json!({"id": "18342977600", "properties": {"dealname": "Acme analytics add-on", "amount": "5000",
                        "dealstage": "closedwon", "dealtype": "newbusiness", "hs_is_closed": "true",
                        "hs_is_closed_won": "true", "closedate": "2025-01-14T00:00:00Z"}}),
                ),
                with(
                    deal.clone(),
                    json!({"id": "18342977601", "properties": {"dealname": "Acme data warehouse", "amount": "12000",
                        "dealstage": "closedlost", "dealtype": "newbusiness", "hs_is_closed": "true",
                        "hs_is_closed_won": "false"}}),
                ),
                with(
                    deal,
                    json!({"id": "18342977602", "properties": {"dealname": "Initech pilot", "amount": "7000",
                        "dealtype": "newbusiness"}, "associations": initech_company}),
                ),
            ],
        ),
    ];
    FakeHubSpot {
        lists: lists.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        limited_once: true,
        ..Default::default()
    }
}

/// A HubSpot delivery to `ws`'s webhook URL with `headers`.
async fn deliver(app: &App, ws: &str, body: &str, headers: &[(&str, String)]) -> (StatusCode, Value) {
    let mut req = Request::post(format!("/webhooks/hubspot/{ws}")).header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = app.router.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The headers HubSpot sends with `body` posted to `url` at `t` (milliseconds).
fn signed(url: &str, body: &str, secret: &str, t: i64) -> Vec<(&'static str, String)> {
    vec![
        ("host", HOST.to_owned()),
        ("x-hubspot-signature-v3", signature::sign(url, body.as_bytes(), secret, t)),
        ("x-hubspot-request-timestamp", t.to_string()),
    ]
}

#[tokio::test]
async fn hubspot_webhooks_are_verified_and_their_sync_sets_the_csm_and_pipeline() {
    let app = App::new().await;
    let ws = app.workspace("crm").await;
    accounts(&app, &ws).await;
    let fake = Arc::new(Mutex::new(portal()));
    let base = hubspot(&fake).await;
    let put = |body: Value| app.call("PUT", "/api/v1/connectors/hubspot", &ws.admin, Some(body));
    let (status, shown) = put(json!({"webhook_secrets": [CLIENT_SECRET], "config": {"base_url": base}})).await;
    assert_eq!(status, StatusCode::CREATED, "{shown}");
    assert!(!sync_state(&app, &ws, "hubspot").await.requested, "no key, no sync yet");

    let body = serde_json::to_string(&fixture("hubspot", "webhook")).unwrap();
    let url = format!("https://{HOST}/webhooks/hubspot/{}", ws.id);
    let now = Utc::now().timestamp_millis();
    let good = signed(&url, &body, CLIENT_SECRET, now);
    let tampered = body.replace("41629779", "41629780");
    let mut unsigned = good.clone();
    unsigned.remove(1);
    for (what, body, headers) in [
        ("tampered", tampered.as_str(), good.clone()),
        ("wrong secret", body.as_str(), signed(&url, &body, "someone-elses-secret", now)),
        ("stale", body.as_str(), signed(&url, &body, CLIENT_SECRET, now - 6 * 60 * 1000)),
        ("unsigned", body.as_str(), unsigned),
        (
            "another URL",
            body.as_str(),
            signed(&format!("https://{HOST}/webhooks/hubspot/other"), &body, CLIENT_SECRET, now),
        ),
    ] {
        let (status, answer) = deliver(&app, ws.id.as_str(), body, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_signature", "{what}");
    }
    assert!(!sync_state(&app, &ws, "hubspot").await.requested, "a refused delivery asks for nothing");

    // Accepted: it carries no object, and asks for a sync to read them; a redelivery is
    // acknowledged as seen.
    let (status, answer) = deliver(&app, ws.id.as_str(), &body, &good).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!((answer["duplicate"].clone(), answer["stored"].clone()), (json!(false), json!(0)));
    assert!(answer["event_id"].as_str().unwrap().starts_with("batch:"), "{answer}");
    let (_, again) = deliver(&app, ws.id.as_str(), &body, &good).await;
    assert_eq!((again["duplicate"].clone(), again["event_id"].clone()), (json!(true), answer["event_id"].clone()));
    assert!(sync_state(&app, &ws, "hubspot").await.requested);

    // The sync reads the portal: Acme's company matches by domain and brings its CSM.
    let (status, _) = put(json!({"api_key": "pat-na1-test"})).await;
    assert_eq!(status, StatusCode::OK);
    // Another delivery while that sync is asked for: one more follows it, which reads what
    // the first may have passed already.
    let next = body.replace("1930578433", "1930578434");
    let (status, _) = deliver(&app, ws.id.as_str(), &next, &signed(&url, &next, CLIENT_SECRET, now)).await;
    assert_eq!(status, StatusCode::OK);
    let state = sync_state(&app, &ws, "hubspot").await;
    assert!(state.requested && state.again, "{state:?}");
    let report = run(&app, &ws, Provider::HubSpot).await;
    assert!(report.finished, "{report:?}");
    assert_eq!(report.objects, 2 + 2 + 2 + 4);
    let state = sync_state(&app, &ws, "hubspot").await;
    assert!(state.requested && !state.again && state.finished_at.is_some(), "{state:?}");
    assert!(run(&app, &ws, Provider::HubSpot).await.finished);
    let acme = traits(&app, &ws, "acme").await;
    for (key, expected) in [
        ("csm_email", json!("mia.svensson@steward-demo.io")),
        ("csm_name", json!("Mia Svensson")),
        ("crm_id", json!("9876543210")),
        ("name", json!("Acme Analytics")),
        ("domain", json!("acme.io")),
        ("industry", json!("COMPUTER_SOFTWARE")),
        ("employees", json!(240)),
        ("lifecycle_stage", json!("customer")),
        ("open_pipeline_amount", json!(24000.0)),
        ("open_deals", json!(1)),
    ] {
        assert_eq!(acme[key], expected, "{key}: {acme}");
    }
    assert_eq!(
        account_events(&app, &ws, "acme").await,
        [
            ("hubspot:deal:18342977521:renewal_created".to_owned(), "Renewal Opportunity Created".to_owned()),
            ("hubspot:deal:18342977600:won".into(), "Deal Won".into()),
            ("hubspot:deal:18342977601:lost".into(), "Deal Lost".into()),
        ]
    );
    let log = app.store.read_log(&ws.id, LogPosition::ZERO, 100_000).await.unwrap();
    let won = log.iter().find(|e| e.event.message_id == "hubspot:deal:18342977600:won").unwrap();
    let won: Value = serde_json::from_str(&won.event.payload).unwrap();
    assert_eq!(
        (won["properties"]["amount"].clone(), won["timestamp"].clone()),
        (json!(5000.0), json!("2025-01-14T00:00:00.000Z"))
    );
    // Contacts stay in the mirror, under their company.
    let q = store::ObjectQuery { kind: Some("contact".into()), object_id: Some("151".into()), ..Default::default() };
    let contact = app.store.provider_objects(&ws.id, "hubspot", &q).await.unwrap().pop().unwrap();
    assert_eq!(
        (contact.parent_id.as_deref(), contact.account_id.as_ref().map(AccountId::as_str)),
        (Some("9876543210"), Some("acme"))
    );

    // Initech matches nothing and waits with what is its; linked by hand, its pipeline follows.
    let (_, listed) = app.get("/api/v1/connectors/hubspot/unmatched", &ws.viewer).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["label"], "Initech · initech.example.net · 555");
    assert_eq!(listed["data"][0]["waiting"], json!({"contact": 1, "deal": 1}));
    let (status, linked) = app
        .call(
            "POST",
            "/api/v1/connectors/hubspot/unmatched/555/link",
            &ws.member,
            Some(json!({"account_id": "globex"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    let globex = traits(&app, &ws, "globex").await;
    assert_eq!(
        (globex["crm_id"].clone(), globex["open_pipeline_amount"].clone(), globex["csm_email"].clone()),
        (json!("555"), json!(7000.0), Value::Null),
        "{globex}"
    );
    assert!(!sync_state(&app, &ws, "hubspot").await.requested, "done");

    // Initech's deal is deleted: HubSpot's lists leave it out, the deletion tells it.
    let deletion = json!([{"eventId": 1930579001, "subscriptionId": 2481041, "portalId": 62515, "appId": 1160452,
        "occurredAt": Utc::now().timestamp_millis(), "subscriptionType": "deal.deletion", "attemptNumber": 0,
        "objectId": 18342977602_i64, "changeFlag": "DELETED", "changeSource": "CRM_UI", "sourceId": "userId:9586504"}])
    .to_string();
    let (status, answer) = deliver(&app, ws.id.as_str(), &deletion, &signed(&url, &deletion, CLIENT_SECRET, now)).await;
    assert_eq!((status, answer["stored"].clone()), (StatusCode::OK, json!(1)), "{answer}");
    let globex = traits(&app, &ws, "globex").await;
    assert_eq!((globex["open_pipeline_amount"].clone(), globex["open_deals"].clone()), (json!(0.0), json!(0)));
    assert!(account_events(&app, &ws, "globex").await.is_empty(), "a deletion is no lost deal");
}

#[tokio::test]
async fn our_hubspot_signer_agrees_with_pythons_hmac() {
    let Some(python) = testkit::python(&["hmac", "hashlib", "base64"], "our_hubspot_signer_agrees_with_pythons_hmac")
    else {
        return;
    };
    // HubSpot signs the URI with `%3A` decoded; Python is given it decoded, Steward receives
    // it escaped.
    let body = serde_json::to_string(&fixture("hubspot", "webhook")).unwrap();
    let t = Utc::now().timestamp_millis();
    let script = "import base64, hashlib, hmac, sys\n\
        secret, uri, body, t = sys.argv[1:]\n\
        mac = hmac.new(secret.encode(), ('POST' + uri + body + t).encode(), hashlib.sha256)\n\
        print(base64.b64encode(mac.digest()).decode())";
    let out = std::process::Command::new(python)
        .args([
            "-c",
            script,
            CLIENT_SECRET,
            &format!("https://{HOST}/webhooks/hubspot/ws1?at=10:30"),
            &body,
            &t.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        signature::sign(&format!("https://{HOST}/webhooks/hubspot/ws1?at=10:30"), body.as_bytes(), CLIENT_SECRET, t),
        theirs
    );
    let headers = [
        ("x-hubspot-signature-v3", theirs),
        ("x-hubspot-request-timestamp", t.to_string()),
        ("host", HOST.to_owned()),
        (":path", "/webhooks/hubspot/ws1?at=10%3A30".to_owned()),
    ];
    let header = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
    assert_eq!(signature::verify(&header, body.as_bytes(), &[CLIENT_SECRET.to_owned()], t), Ok(()));
}

#[tokio::test]
async fn hubspot_syncs_page_wait_out_rate_limits_resume_and_keep_the_newest() {
    let app = App::new().await;
    let ws = app.workspace("crm").await;
    accounts(&app, &ws).await;
    let mut portal = portal();
    portal.limited_once = false;
    portal.fail = Some(("deals".into(), "2".into(), 100));
    let fake = Arc::new(Mutex::new(portal));
    let base = hubspot(&fake).await;
    let (status, _) = app
        .call(
            "PUT",
            "/api/v1/connectors/hubspot",
            &ws.admin,
            Some(json!({"api_key": "pat-na1-test", "config": {"base_url": base}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // The first run waits out the 429 and stops on the second page of deals.
    let report = run(&app, &ws, Provider::HubSpot).await;
    assert!(!report.finished);
    assert_eq!(report.pages, 1 + 1 + 1 + 1, "{report:?}");
    let state = sync_state(&app, &ws, "hubspot").await;
    assert_eq!((state.resource, state.cursor.as_deref(), state.failures), (3, Some("2"), 1), "{state:?}");
    assert!(state.last_error.as_deref().unwrap().contains("HTTP 502"), "{state:?}");
    let seen = fake.lock().unwrap().seen.clone();
    assert_eq!(seen.iter().filter(|(l, _)| l == "companies").count(), 2, "asked again after the 429: {seen:?}");

    // Healed, the next run resumes at that page.
    fake.lock().unwrap().fail = None;
    let before = fake.lock().unwrap().seen.len();
    assert!(run(&app, &ws, Provider::HubSpot).await.finished);
    let seen = fake.lock().unwrap().seen[before..].to_vec();
    assert_eq!(seen, [("deals".to_owned(), Some("2".to_owned()))]);
    assert_eq!(traits(&app, &ws, "acme").await["open_pipeline_amount"], json!(24000.0));

    // A read that is older than what is stored (a lagging replica) changes nothing, and a
    // full sync of what did not change tells nothing.
    let log = log_size(&app, &ws).await;
    {
        let mut f = fake.lock().unwrap();
        let acme = &mut f.lists.get_mut("companies").unwrap()[0];
        acme["properties"]["name"] = json!("Acme (old)");
        acme["updatedAt"] = json!("2024-12-01T00:00:00.000Z");
    }
    let (status, _) =
        app.call("POST", "/api/v1/connectors/hubspot/sync", &ws.member, Some(json!({"full": true}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(run(&app, &ws, Provider::HubSpot).await.finished);
    assert_eq!(log_size(&app, &ws).await, log);
    assert_eq!(traits(&app, &ws, "acme").await["name"], "Acme Analytics");

    // Newer: Noah owns Acme now, and the renewal is won.
    {
        let mut f = fake.lock().unwrap();
        let acme = &mut f.lists.get_mut("companies").unwrap()[0];
        acme["properties"]["name"] = json!("Acme Analytics");
        acme["properties"]["hubspot_owner_id"] = json!("52210044");
        acme["updatedAt"] = json!("2025-02-01T09:00:00.000Z");
        let renewal = &mut f.lists.get_mut("deals").unwrap()[0];
        renewal["properties"]["dealstage"] = json!("closedwon");
        renewal["properties"]["hs_is_closed"] = json!("true");
        renewal["properties"]["hs_is_closed_won"] = json!("true");
        renewal["updatedAt"] = json!("2025-02-01T09:05:00.000Z");
    }
    app.call("POST", "/api/v1/connectors/hubspot/sync", &ws.member, None).await;
    assert!(run(&app, &ws, Provider::HubSpot).await.finished);
    let acme = traits(&app, &ws, "acme").await;
    assert_eq!(
        (
            acme["csm_email"].clone(),
            acme["csm_name"].clone(),
            acme["open_pipeline_amount"].clone(),
            acme["open_deals"].clone()
        ),
        (json!("noah.berg@steward-demo.io"), json!("Noah Berg"), json!(0.0), json!(0)),
        "{acme}"
    );
    let events = account_events(&app, &ws, "acme").await;
    assert!(events.contains(&("hubspot:deal:18342977521:won".into(), "Deal Won".into())), "{events:?}");
    assert_eq!(events.len(), 4, "{events:?}");
}

/// A local Salesforce: SOQL queries answered from records by sObject, with the fields selected
/// only, filtered by `SystemModstamp >`, `PAGE` at a time through `nextRecordsUrl`; a 429
/// once on the first Account query, and a next page that fails while told to.
#[derive(Default)]
struct FakeSalesforce {
    records: HashMap<String, Vec<Value>>,
    /// Queries and next pages asked for.
    seen: Vec<String>,
    /// The records of each query run, by its locator.
    results: HashMap<String, Vec<Value>>,
    limited_once: bool,
    fail_next: u32,
}

fn modstamp(record: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_str(record["SystemModstamp"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.f%z").unwrap()
}

/// A page of a query's records from `start`, with the next page's URL if there is more.
fn query_page(locator: &str, records: &[Value], start: usize) -> Value {
    let page: Vec<Value> = records.iter().skip(start).take(PAGE).cloned().collect();
    let done = start + PAGE >= records.len();
    let mut body = json!({"totalSize": records.len(), "done": done, "records": page});
    if !done {
        body["nextRecordsUrl"] = json!(format!("/services/data/v59.0/query/{locator}-{}", start + PAGE));
    }
    body
}

async fn salesforce_query(
    State(fake): State<Shared<FakeSalesforce>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer 00Dxx0000001gEH!AQ4AQ.test") {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!([{"errorCode": "INVALID_SESSION_ID"}]))).into_response();
    }
    let soql = q.get("q").cloned().unwrap_or_default();
    let mut fake = fake.lock().unwrap();
    fake.seen.push(soql.clone());
    let sobject = soql.split(" FROM ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    if sobject == "Account" && !fake.limited_once {
        fake.limited_once = true;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "REQUEST_LIMIT_EXCEEDED").into_response();
    }
    let since = soql
        .split("SystemModstamp > ")
        .nth(1)
        .map(|s| chrono::DateTime::parse_from_rfc3339(s.split(' ').next().unwrap()).unwrap());
    let mut records: Vec<Value> = fake.records.get(&sobject).cloned().unwrap_or_default();
    records.retain(|r| since.is_none_or(|t| modstamp(r) > t));
    records.sort_by_key(modstamp);
    let selected: Vec<&str> = soql["SELECT ".len()..soql.find(" FROM ").unwrap()].split(", ").collect();
    for r in &mut records {
        if let Value::Object(fields) = r {
            fields.retain(|k, _| {
                k == "attributes"
                    || selected
                        .iter()
                        .any(|f| f == k || f.strip_prefix(k.as_str()).is_some_and(|rest| rest.starts_with('.')))
            });
        }
    }
    let locator = format!("01gD{}", fake.results.len());
    fake.results.insert(locator.clone(), records.clone());
    axum::Json(query_page(&locator, &records, 0)).into_response()
}

async fn salesforce_next(
    State(fake): State<Shared<FakeSalesforce>>,
    axum::extract::Path(next): axum::extract::Path<String>,
) -> Response {
    let mut fake = fake.lock().unwrap();
    fake.seen.push(next.clone());
    if fake.fail_next > 0 {
        fake.fail_next -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    }
    let (locator, start) = next.split_once('-').unwrap();
    let records = fake.results[locator].clone();
    axum::Json(query_page(locator, &records, start.parse().unwrap())).into_response()
}

/// An org: Ravi and Lena; Acme's Account (matched by website, owned by Ravi), Initech's
/// (holding Globex's account id), Umbrella's (matching nothing); a contact; Acme's open
/// renewal, Initech's won deal, Umbrella's open one.
fn org() -> FakeSalesforce {
    let user = fixture("salesforce", "user");
    let account = fixture("salesforce", "account");
    let opportunity = fixture("salesforce", "opportunity");
    let records = [
        (
            "User",
            vec![
                user.clone(),
                with(user, json!({"Id": "0055g00000LeNaAAV", "Name": "Lena Ito", "Email": "lena.ito@steward-demo.io"})),
            ],
        ),
        (
            "Account",
            vec![
                account.clone(),
                with(
                    account.clone(),
                    json!({"Id": "0015g00000InItAAB", "Name": "Initech", "Website": "initech.example.net",
                        "Steward_Account_Id__c": "globex", "SystemModstamp": "2025-01-18T10:13:00.000+0000"}),
                ),
                with(
                    account,
                    json!({"Id": "0015g00000UmBrAAB", "Name": "Umbrella", "Website": "umbrella.example.org",
                        "Owner": null, "SystemModstamp": "2025-01-18T10:14:00.000+0000"}),
                ),
            ],
        ),
        ("Contact", vec![fixture("salesforce", "contact")]),
        (
            "Opportunity",
            vec![
                opportunity.clone(),
                with(
                    opportunity.clone(),
                    json!({"Id": "0065g00000InWoAAV", "AccountId": "0015g00000InItAAB", "Name": "Initech platform",
                        "Amount": 9000.0, "StageName": "Closed Won", "IsClosed": true, "IsWon": true,
                        "Type": "New Customer", "CloseDate": "2025-01-20", "SystemModstamp": "2025-01-20T08:00:00.000+0000"}),
                ),
                with(
                    opportunity,
                    json!({"Id": "0065g00000UmOpAAV", "AccountId": "0015g00000UmBrAAB", "Name": "Umbrella pilot",
                        "Amount": 3000.0, "Type": "New Customer", "SystemModstamp": "2025-01-21T08:00:00.000+0000"}),
                ),
            ],
        ),
    ];
    FakeSalesforce { records: records.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), ..Default::default() }
}

#[tokio::test]
async fn salesforce_polls_changes_since_its_watermark_and_resumes_after_a_failure() {
    let app = App::new().await;
    let ws = app.workspace("crm").await;
    accounts(&app, &ws).await;
    let mut org = org();
    org.fail_next = 100;
    let fake = Arc::new(Mutex::new(org));
    let router = axum::Router::new()
        .route("/services/data/v59.0/queryAll", axum::routing::get(salesforce_query))
        .route("/services/data/v59.0/query/{next}", axum::routing::get(salesforce_next))
        .with_state(fake.clone());
    let base = serve(router).await;
    let config = json!({"base_url": base, "account_id_field": "Steward_Account_Id__c", "sync_every_minutes": 5});
    let (status, _) = app
        .call(
            "PUT",
            "/api/v1/connectors/salesforce",
            &ws.admin,
            Some(json!({"api_key": "00Dxx0000001gEH!AQ4AQ.test", "config": config})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let both = json!({"config": {"sync_every_hours": 1, "sync_every_minutes": 5}});
    let (status, answer) = app.call("PUT", "/api/v1/connectors/salesforce", &ws.admin, Some(both)).await;
    assert_eq!((status, answer["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("config")), "{answer}");
    // Salesforce delivers nothing to sign: a delivery is refused.
    let (status, answer) =
        app.call("POST", &format!("/webhooks/salesforce/{}", ws.id), &ws.admin, Some(json!({}))).await;
    assert_eq!((status, answer["error"]["code"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_signature")));

    // The first run waits out the 429, reads the Users, then stops on the Accounts' second
    // page, which keeps failing.
    let report = run(&app, &ws, Provider::Salesforce).await;
    assert!(!report.finished);
    assert_eq!(report.pages, 2, "{report:?}");
    let state = sync_state(&app, &ws, "salesforce").await;
    assert_eq!((state.resource, state.cursor.as_deref()), (1, Some("/services/data/v59.0/query/01gD1-2")), "{state:?}");
    assert!(state.last_error.as_deref().unwrap().contains("HTTP 503"), "{state:?}");
    let seen = fake.lock().unwrap().seen.clone();
    assert!(seen[0].starts_with("SELECT Id, Name, Email, IsActive, SystemModstamp FROM User ORDER BY"), "{seen:?}");
    assert!(seen[1].contains(", Steward_Account_Id__c FROM Account ORDER BY SystemModstamp"), "{seen:?}");
    assert_eq!(seen.iter().filter(|q| q.contains("FROM Account")).count(), 2, "asked again after the 429");

    // Healed, it resumes with the Accounts (a query locator does not outlive a run: the list
    // is read again from its start), not the Users.
    fake.lock().unwrap().fail_next = 0;
    let before = fake.lock().unwrap().seen.len();
    assert!(run(&app, &ws, Provider::Salesforce).await.finished);
    let seen = fake.lock().unwrap().seen[before..].to_vec();
    assert!(seen[0].contains("FROM Account ORDER BY"), "{seen:?}");
    assert!(seen.iter().all(|q| !q.contains("FROM User")), "{seen:?}");

    let acme = traits(&app, &ws, "acme").await;
    for (key, expected) in [
        ("csm_email", json!("ravi.patel@steward-demo.io")),
        ("csm_name", json!("Ravi Patel")),
        ("crm_id", json!("0015g00000XyZ12AAB")),
        ("account_type", json!("Customer - Direct")),
        ("employees", json!(240)),
        ("open_pipeline_amount", json!(24000.0)),
    ] {
        assert_eq!(acme[key], expected, "{key}: {acme}");
    }
    let globex = traits(&app, &ws, "globex").await;
    assert_eq!(
        (globex["crm_id"].clone(), globex["open_pipeline_amount"].clone()),
        (json!("0015g00000InItAAB"), json!(0.0))
    );
    assert_eq!(
        account_events(&app, &ws, "globex").await,
        [("salesforce:opportunity:0065g00000InWoAAV:won".to_owned(), "Deal Won".to_owned())]
    );
    assert_eq!(
        account_events(&app, &ws, "acme").await,
        [(
            "salesforce:opportunity:0065g00000LmNoPAAV:renewal_created".to_owned(),
            "Renewal Opportunity Created".to_owned()
        )]
    );
    let (_, listed) = app.get("/api/v1/connectors/salesforce/unmatched", &ws.viewer).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        (listed["data"][0]["object_id"].clone(), listed["data"][0]["waiting"].clone()),
        (json!("0015g00000UmBrAAB"), json!({"opportunity": 1}))
    );

    // The next poll asks only for what changed since the last run started (less the
    // overlap): Lena owns Acme now and its renewal is won.
    let state = sync_state(&app, &ws, "salesforce").await;
    let since = state.since.expect("a watermark");
    assert!(since < Utc::now() - chrono::Duration::minutes(4), "{state:?}");
    let changed = (Utc::now() - chrono::Duration::seconds(1)).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    {
        let mut f = fake.lock().unwrap();
        let acme = &mut f.records.get_mut("Account").unwrap()[0];
        acme["Owner"] =
            json!({"attributes": {"type": "User"}, "Name": "Lena Ito", "Email": "lena.ito@steward-demo.io"});
        acme["OwnerId"] = json!("0055g00000LeNaAAV");
        acme["SystemModstamp"] = json!(changed);
        let renewal = &mut f.records.get_mut("Opportunity").unwrap()[0];
        renewal["StageName"] = json!("Closed Won");
        renewal["IsClosed"] = json!(true);
        renewal["IsWon"] = json!(true);
        renewal["SystemModstamp"] = json!(changed);
    }
    let log = log_size(&app, &ws).await;
    let (status, _) = app.call("POST", "/api/v1/connectors/salesforce/sync", &ws.member, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let before = fake.lock().unwrap().seen.len();
    let report = run(&app, &ws, Provider::Salesforce).await;
    assert_eq!((report.finished, report.objects), (true, 2), "{report:?}");
    let seen = fake.lock().unwrap().seen[before..].to_vec();
    let filter = format!("WHERE SystemModstamp > {} ORDER BY", since.format("%Y-%m-%dT%H:%M:%SZ"));
    assert!(seen.len() == 4 && seen.iter().all(|q| q.contains(&filter)), "{seen:?}");
    let acme = traits(&app, &ws, "acme").await;
    assert_eq!(
        (acme["csm_email"].clone(), acme["csm_name"].clone(), acme["open_pipeline_amount"].clone()),
        (json!("lena.ito@steward-demo.io"), json!("Lena Ito"), json!(0.0)),
        "{acme}"
    );
    assert!(
        account_events(&app, &ws, "acme")
            .await
            .contains(&("salesforce:opportunity:0065g00000LmNoPAAV:won".into(), "Deal Won".into()))
    );
    // The account's traits (its CSM), its pipeline and the deal won: three events.
    assert_eq!(log_size(&app, &ws).await, log + 3);

    // A new opportunity opens, then is deleted: read through queryAll, it leaves the pipeline.
    let stamp = |s: i64| (Utc::now() + chrono::Duration::seconds(s)).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let upsell = with(
        fixture("salesforce", "opportunity"),
        json!({"Id": "0065g00000UpSeAAV", "Name": "Acme upsell", "Amount": 4000.0, "Type": "Existing Customer - Upgrade",
            "IsDeleted": false, "SystemModstamp": stamp(1)}),
    );
    fake.lock().unwrap().records.get_mut("Opportunity").unwrap().push(upsell);
    app.call("POST", "/api/v1/connectors/salesforce/sync", &ws.member, None).await;
    assert!(run(&app, &ws, Provider::Salesforce).await.finished);
    assert_eq!(traits(&app, &ws, "acme").await["open_pipeline_amount"], json!(4000.0));
    {
        let mut f = fake.lock().unwrap();
        let upsell = f.records.get_mut("Opportunity").unwrap().last_mut().unwrap();
        upsell["IsDeleted"] = json!(true);
        upsell["SystemModstamp"] = json!(stamp(2));
    }
    app.call("POST", "/api/v1/connectors/salesforce/sync", &ws.member, None).await;
    assert!(run(&app, &ws, Provider::Salesforce).await.finished);
    let acme = traits(&app, &ws, "acme").await;
    assert_eq!((acme["open_pipeline_amount"].clone(), acme["open_deals"].clone()), (json!(0.0), json!(0)));
    let events = account_events(&app, &ws, "acme").await;
    assert!(!events.iter().any(|(id, _)| id.contains("UpSe")), "{events:?}");
}
