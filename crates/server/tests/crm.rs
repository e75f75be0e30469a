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
    /// Results per search page, when not `PAGE` (HubSpot's is the `limit` asked, at most 100).
    search_page: Option<usize>,
}

type Shared<T> = Arc<Mutex<T>>;

/// HubSpot's answer to a request without the connector's private app token.
fn hubspot_refuses(headers: &HeaderMap) -> Option<Response> {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer pat-na1-test");
    let body = json!({"status": "error", "category": "INVALID_AUTHENTICATION"});
    (!authorized).then(|| (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response())
}

async fn hubspot_list(
    State(fake): State<Shared<FakeHubSpot>>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = hubspot_refuses(&headers) {
        return refused;
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

/// The milliseconds of a HubSpot time.
fn hubspot_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
}

/// HubSpot's CRM search, as its reference describes it: a filter on the last modification
/// (`GTE`) sorted by it, or one millisecond's (`EQ`) above an id (`hs_object_id` `GT`) sorted
/// by id; ascending, `after` an offset, at most `limit` (here `PAGE`, unless the portal says)
/// a page, the properties asked for and no associations; past 10,000 results a 400.
async fn hubspot_search(
    State(fake): State<Shared<FakeHubSpot>>,
    axum::extract::Path(list): axum::extract::Path<String>,
    headers: HeaderMap,
    axum::Json(search): axum::Json<Value>,
) -> Response {
    if let Some(refused) = hubspot_refuses(&headers) {
        return refused;
    }
    let filters = search["filterGroups"][0]["filters"].as_array().unwrap();
    let modified = if list == "contacts" { "lastmodifieddate" } else { "hs_lastmodifieddate" };
    let filter = &filters[0];
    let value = |f: &Value| f["value"].as_str().unwrap().parse::<i64>().unwrap();
    let from = value(filter);
    // `None`: modified at `from` or later; `Some(id)`: at `from` exactly, with a higher id.
    let above = match filters.as_slice() {
        [f] if f["propertyName"] == modified && f["operator"] == "GTE" => None,
        [f, id]
            if f["propertyName"] == modified
                && f["operator"] == "EQ"
                && id["propertyName"] == "hs_object_id"
                && id["operator"] == "GT" =>
        {
            Some(value(id))
        }
        other => panic!("filters HubSpot's search is not asked with here: {other:?}"),
    };
    let sort = if above.is_some() { "hs_object_id" } else { modified };
    assert_eq!(search["sorts"], json!([{"propertyName": sort, "direction": "ASCENDING"}]));
    assert_eq!(search["limit"], 100);
    let after = search["after"].as_str().map(str::to_owned);
    let mut fake = fake.lock().unwrap();
    let searched = match above {
        None => format!("{list}/search>={from}"),
        Some(id) => format!("{list}/search={from}>#{id}"),
    };
    fake.seen.push((searched, after.clone()));
    let start: usize = after.as_deref().map_or(0, |a| a.parse().unwrap());
    if start >= 10_000 {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "error", "category": "VALIDATION_ERROR",
            "message": "There was a problem with the request."})),
        )
            .into_response();
    }
    let ms = |o: &Value| hubspot_ms(o["updatedAt"].as_str().unwrap());
    let id = |o: &Value| o["id"].as_str().unwrap().parse::<i64>().unwrap();
    let mut found: Vec<&Value> = fake.lists.get(&list).into_iter().flatten().collect();
    match above {
        None => {
            found.retain(|o| ms(o) >= from);
            found.sort_by_cached_key(|o| ms(o));
        }
        Some(above) => {
            found.retain(|o| ms(o) == from && id(o) > above);
            found.sort_by_cached_key(|o| id(o));
        }
    }
    let asked: Vec<String> =
        search["properties"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_owned()).collect();
    let page_size = fake.search_page.unwrap_or(PAGE);
    let results: Vec<Value> = found
        .iter()
        .skip(start)
        .take(page_size)
        .map(|o| {
            let mut o = (*o).clone();
            if let Some(Value::Object(props)) = o.get_mut("properties") {
                props.retain(|k, _| k == "hs_object_id" || k == modified || asked.contains(k));
            }
            if let Value::Object(fields) = &mut o {
                fields.remove("associations");
            }
            o
        })
        .collect();
    let mut page = json!({"total": found.len(), "results": results});
    if start + page_size < found.len() {
        page["paging"] = json!({"next": {"after": (start + page_size).to_string()}});
    }
    axum::Json(page).into_response()
}

/// Associations v4's batch read of contacts' or deals' companies: each input's companies,
/// the primary one labelled so.
async fn hubspot_associations(
    State(fake): State<Shared<FakeHubSpot>>,
    axum::extract::Path(from): axum::extract::Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut fake = fake.lock().unwrap();
    fake.seen.push((format!("associations/{from}"), None));
    let objects: HashMap<&str, &Value> =
        fake.lists.get(&from).into_iter().flatten().map(|o| (o["id"].as_str().unwrap(), o)).collect();
    let mut results = Vec::new();
    for input in body["inputs"].as_array().unwrap() {
        let id = input["id"].as_str().unwrap();
        let Some(o) = objects.get(id) else { continue };
        let mut to: Vec<Value> = Vec::new();
        for c in o["associations"]["companies"]["results"].as_array().into_iter().flatten() {
            let company: i64 = c["id"].as_str().unwrap().parse().unwrap();
            if to.iter().any(|t| t["toObjectId"] == company) {
                continue;
            }
            let primary = !c["type"].as_str().unwrap().ends_with("_unlabeled");
            let mut types = vec![json!({"category": "HUBSPOT_DEFINED", "typeId": 341, "label": null})];
            if primary {
                types.insert(0, json!({"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"}));
            }
            to.push(json!({"toObjectId": company, "associationTypes": types}));
        }
        results.push(json!({"from": {"id": id}, "to": to}));
    }
    axum::Json(json!({"status": "COMPLETE", "results": results, "startedAt": "2026-01-01T00:00:00.000Z",
        "completedAt": "2026-01-01T00:00:00.050Z"}))
    .into_response()
}

async fn hubspot(fake: &Shared<FakeHubSpot>) -> String {
    let router = axum::Router::new()
        .route("/crm/v3/owners", axum::routing::get(hubspot_list))
        .route("/crm/v3/objects/{list}", axum::routing::get(hubspot_list))
        .route("/crm/v3/objects/{list}/search", axum::routing::post(hubspot_search))
        .route("/crm/v4/associations/{from}/companies/batch/read", axum::routing::post(hubspot_associations))
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

    // Newer: Noah owns Acme now, and the renewal is won (changed now, as HubSpot stamps it).
    let stamp =
        |s: i64| (Utc::now() + chrono::Duration::seconds(s)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    {
        let mut f = fake.lock().unwrap();
        let acme = &mut f.lists.get_mut("companies").unwrap()[0];
        acme["properties"]["name"] = json!("Acme Analytics");
        acme["properties"]["hubspot_owner_id"] = json!("52210044");
        acme["properties"]["hs_lastmodifieddate"] = json!(stamp(0));
        acme["updatedAt"] = json!(stamp(0));
        let renewal = &mut f.lists.get_mut("deals").unwrap()[0];
        renewal["properties"]["dealstage"] = json!("closedwon");
        renewal["properties"]["hs_is_closed"] = json!("true");
        renewal["properties"]["hs_is_closed_won"] = json!("true");
        renewal["properties"]["hs_lastmodifieddate"] = json!(stamp(1));
        renewal["updatedAt"] = json!(stamp(1));
    }
    // A sync after the first searches for what changed since its watermark: the owners' list
    // (it has no search), then one search per object type, and the found deal's company.
    let since = sync_state(&app, &ws, "hubspot").await.since.expect("a watermark").timestamp_millis();
    app.call("POST", "/api/v1/connectors/hubspot/sync", &ws.member, None).await;
    let before = fake.lock().unwrap().seen.len();
    let report = run(&app, &ws, Provider::HubSpot).await;
    assert_eq!((report.finished, report.objects), (true, 2 + 1 + 1), "{report:?}");
    let seen = fake.lock().unwrap().seen[before..].to_vec();
    let searched = |list: &str| (format!("{list}/search>={since}"), None);
    assert_eq!(
        seen,
        [
            ("owners".to_owned(), None),
            searched("companies"),
            searched("contacts"),
            searched("deals"),
            ("associations/deals".to_owned(), None)
        ]
    );
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

#[tokio::test]
async fn hubspot_reads_every_change_of_one_millisecond_past_the_search_cap() {
    let app = App::new().await;
    let ws = app.workspace("crm").await;
    accounts(&app, &ws).await;
    let fake = Arc::new(Mutex::new(FakeHubSpot { search_page: Some(100), ..portal() }));
    let base = hubspot(&fake).await;
    let config = json!({"api_key": "pat-na1-test", "config": {"base_url": base}});
    assert_eq!(app.call("PUT", "/api/v1/connectors/hubspot", &ws.admin, Some(config)).await.0, StatusCode::CREATED);
    assert!(run(&app, &ws, Provider::HubSpot).await.finished, "the first sync reads the lists");

    // A workflow touches more contacts than one search answers, all in one millisecond (the
    // watermark's); the list holds them with the highest ids first, so that a search sorted
    // by modification gives them in no order of id.
    const TOUCHED: usize = 10_150;
    let at = sync_state(&app, &ws, "hubspot").await.since.expect("a watermark");
    let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ms = at.timestamp_millis();
    {
        let mut f = fake.lock().unwrap();
        let contact = fixture("hubspot", "contact");
        let contacts = f.lists.get_mut("contacts").unwrap();
        for i in (0..TOUCHED).rev() {
            let id = (700_000 + i).to_string();
            contacts.push(with(
                contact.clone(),
                json!({"id": id, "updatedAt": stamp, "associations": null,
                    "properties": {"email": format!("user{i}@acme.io"), "hs_object_id": id, "lastmodifieddate": stamp}}),
            ));
        }
    }
    app.call("POST", "/api/v1/connectors/hubspot/sync", &ws.member, None).await;
    let before = fake.lock().unwrap().seen.len();
    assert!(run(&app, &ws, Provider::HubSpot).await.finished);

    let query = store::ObjectQuery { kind: Some("contact".into()), limit: 20_000, ..Default::default() };
    let stored = app.store.provider_objects(&ws.id, "hubspot", &query).await.unwrap();
    let touched = stored.iter().filter(|o| o.version == ms).count();
    assert_eq!(touched, TOUCHED, "every contact changed in that millisecond is mirrored");
    // The searches: from the watermark up to the cap (every result of that millisecond), the
    // millisecond alone by id from the first, again from the highest id read at its cap, then
    // what follows it. Before, the search moved on past the millisecond at the cap, and the
    // 150 contacts beyond it were never read.
    let seen = fake.lock().unwrap().seen[before..].to_vec();
    let mut searches: Vec<String> =
        seen.iter().filter(|(l, _)| l.starts_with("contacts/search")).map(|(l, _)| l.clone()).collect();
    searches.dedup();
    let highest_at_cap = 700_000 + 10_000 - 1;
    assert_eq!(
        searches,
        [
            format!("contacts/search>={ms}"),
            format!("contacts/search={ms}>#0"),
            format!("contacts/search={ms}>#{highest_at_cap}"),
            format!("contacts/search>={}", ms + 1),
        ]
    );
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
    /// The access token the API takes (a plain one by default).
    token: String,
    /// The token endpoint: the refresh token it takes (none: it refuses every one, as for a
    /// revoked grant), the refreshes asked for (their forms), and whether it rotates the
    /// refresh token it answers with.
    refresh_token: Option<String>,
    refreshes: Vec<HashMap<String, String>>,
    rotate: bool,
}

/// Salesforce's token endpoint (`grant_type=refresh_token`): a new access token (and, when
/// the connected app rotates them, a new refresh token), or `invalid_grant`.
async fn salesforce_token(
    State(fake): State<Shared<FakeSalesforce>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    assert_eq!(headers.get("content-type").unwrap(), "application/x-www-form-urlencoded");
    let form: HashMap<String, String> = body
        .split(|b| *b == b'&')
        .map(|pair| {
            let (k, v) = std::str::from_utf8(pair).unwrap().split_once('=').unwrap();
            let decode = |t: &str| percent_decode(t);
            (decode(k), decode(v))
        })
        .collect();
    let mut fake = fake.lock().unwrap();
    fake.refreshes.push(form.clone());
    let good = form.get("grant_type").map(String::as_str) == Some("refresh_token")
        && form.get("client_id").map(String::as_str) == Some("3MVG9lKcPoNINVBIPJjdw1J9LLM82Hn")
        && form.get("client_secret").map(String::as_str) == Some("1955279925675241571")
        && fake.refresh_token.is_some()
        && form.get("refresh_token") == fake.refresh_token.as_ref();
    if !good {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant",
            "error_description": "expired access/refresh token"})),
        )
            .into_response();
    }
    let n = fake.refreshes.len();
    let mut answer = fixture("salesforce", "token");
    fake.token = format!("00Dxx0000001gEH!AQ4AQ.refreshed-{n}");
    answer["access_token"] = json!(fake.token);
    if fake.rotate {
        let rotated = format!("5Aep861rotated{n}");
        fake.refresh_token = Some(rotated.clone());
        answer["refresh_token"] = json!(rotated);
    }
    axum::Json(answer).into_response()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
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
    let mut fake = fake.lock().unwrap();
    let bearer = format!("Bearer {}", fake.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])),
        )
            .into_response();
    }
    let soql = q.get("q").cloned().unwrap_or_default();
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
    FakeSalesforce {
        records: records.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        token: "00Dxx0000001gEH!AQ4AQ.test".into(),
        ..Default::default()
    }
}

async fn salesforce(fake: &Shared<FakeSalesforce>) -> String {
    let router = axum::Router::new()
        .route("/services/data/v59.0/queryAll", axum::routing::get(salesforce_query))
        .route("/services/data/v59.0/query/{next}", axum::routing::get(salesforce_next))
        .route("/services/oauth2/token", axum::routing::post(salesforce_token))
        .with_state(fake.clone());
    serve(router).await
}

#[tokio::test]
async fn salesforce_polls_changes_since_its_watermark_and_resumes_after_a_failure() {
    let app = App::new().await;
    let ws = app.workspace("crm").await;
    accounts(&app, &ws).await;
    let mut org = org();
    org.fail_next = 100;
    let fake = Arc::new(Mutex::new(org));
    let base = salesforce(&fake).await;
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

/// The connector's secrets as stored, opened.
async fn stored_secrets(app: &App, ws: &Keys, provider: &str) -> (String, connectors::Secrets) {
    let record = app.store.get_connector(&ws.id, provider).await.unwrap().unwrap();
    let opened =
        connectors::Secrets::open(app.syncer.connectors().key(), ws.id.as_str(), provider, &record.secrets).unwrap();
    (record.secrets, opened)
}

#[tokio::test]
async fn salesforce_access_tokens_are_refreshed_and_a_refused_refresh_is_an_error_shown() {
    let app = App::new().await;
    let ws = app.workspace("crm").await;
    accounts(&app, &ws).await;
    let mut org = org();
    org.limited_once = true;
    org.token = "none issued yet".into();
    org.refresh_token = Some("5Aep861TSESvWeug_xvFHRBTTbf_YrTWgEyjBJrbRu6rVbnFTl".into());
    let fake = Arc::new(Mutex::new(org));
    let base = salesforce(&fake).await;
    let put = |body: Value| app.call("PUT", "/api/v1/connectors/salesforce", &ws.admin, Some(body));

    // Bad input changes nothing: OAuth secrets are Salesforce's, a refresh token needs its
    // client, a login URL is a URL.
    let (status, answer) =
        app.call("PUT", "/api/v1/connectors/hubspot", &ws.admin, Some(json!({"refresh_token": "x"}))).await;
    assert_eq!(
        (status, answer["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("refresh_token")),
        "{answer}"
    );
    let (status, answer) = put(json!({"refresh_token": "x", "config": {"base_url": base}})).await;
    assert_eq!((status, answer["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("client_id")), "{answer}");
    let (status, answer) = put(json!({"config": {"base_url": base, "login_url": "login.salesforce.com"}})).await;
    assert_eq!((status, answer["error"]["field"].clone()), (StatusCode::BAD_REQUEST, json!("config")), "{answer}");
    assert!(app.store.get_connector(&ws.id, "salesforce").await.unwrap().is_none());

    // A refresh token and its client, no access token: one is asked for before the first page.
    let (status, shown) = put(json!({"refresh_token": "5Aep861TSESvWeug_xvFHRBTTbf_YrTWgEyjBJrbRu6rVbnFTl",
        "client_id": "3MVG9lKcPoNINVBIPJjdw1J9LLM82Hn", "client_secret": "1955279925675241571",
        "config": {"base_url": base, "login_url": base, "account_id_field": "Steward_Account_Id__c"}}))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{shown}");
    assert_eq!(
        shown["secrets"],
        json!({"api_key": false, "webhook_secrets": 0, "refresh_token": true, "client_id": true, "client_secret": true})
    );
    for secret in ["5Aep861", "3MVG9", "1955279925675241571"] {
        assert!(!shown.to_string().contains(secret), "{shown}");
    }
    let report = run(&app, &ws, Provider::Salesforce).await;
    assert!(report.finished, "{report:?} {:?}", sync_state(&app, &ws, "salesforce").await);
    let form = fake.lock().unwrap().refreshes[0].clone();
    assert_eq!(
        (form["grant_type"].as_str(), form["client_id"].as_str(), form["refresh_token"].as_str()),
        ("refresh_token", "3MVG9lKcPoNINVBIPJjdw1J9LLM82Hn", "5Aep861TSESvWeug_xvFHRBTTbf_YrTWgEyjBJrbRu6rVbnFTl")
    );
    let (sealed, secrets) = stored_secrets(&app, &ws, "salesforce").await;
    assert_eq!(secrets.api_key.as_deref(), Some("00Dxx0000001gEH!AQ4AQ.refreshed-1"), "the new token is kept");
    assert!(!sealed.contains("refreshed"), "sealed, not in the clear");
    assert_eq!(traits(&app, &ws, "acme").await["csm_email"], json!("ravi.patel@steward-demo.io"));

    // The session expires (Salesforce answers 401 INVALID_SESSION_ID): the token is refreshed
    // and the page asked again; a connected app that rotates refresh tokens gives a new one,
    // kept for the next refresh.
    {
        let mut f = fake.lock().unwrap();
        f.token = "expired".into();
        f.rotate = true;
    }
    app.call("POST", "/api/v1/connectors/salesforce/sync", &ws.member, None).await;
    assert!(run(&app, &ws, Provider::Salesforce).await.finished);
    let (_, secrets) = stored_secrets(&app, &ws, "salesforce").await;
    assert_eq!(
        (secrets.api_key.as_deref(), secrets.refresh_token.as_deref()),
        (Some("00Dxx0000001gEH!AQ4AQ.refreshed-2"), Some("5Aep861rotated2"))
    );
    fake.lock().unwrap().token = "expired again".into();
    app.call("POST", "/api/v1/connectors/salesforce/sync", &ws.member, None).await;
    assert!(run(&app, &ws, Provider::Salesforce).await.finished);
    assert_eq!(fake.lock().unwrap().refreshes[2]["refresh_token"], "5Aep861rotated2");
    assert_eq!(sync_state(&app, &ws, "salesforce").await.failures, 0);

    // The grant is revoked: the run stops with an error an operator sees, in the connector's
    // state and its errors, and waits before trying again instead of looping.
    {
        let mut f = fake.lock().unwrap();
        f.token = "expired once more".into();
        f.refresh_token = None;
    }
    app.call("POST", "/api/v1/connectors/salesforce/sync", &ws.member, None).await;
    let refreshes = fake.lock().unwrap().refreshes.len();
    let report = run(&app, &ws, Provider::Salesforce).await;
    assert!(!report.finished);
    assert_eq!(fake.lock().unwrap().refreshes.len(), refreshes + 1, "one refresh asked for, not a loop");
    let (_, shown) = app.get("/api/v1/connectors/salesforce", &ws.viewer).await;
    let error = shown["sync"]["last_error"].as_str().unwrap();
    assert!(error.contains("invalid_grant") && error.contains("new refresh token"), "{shown}");
    assert_eq!(shown["sync"]["failures"], 1);
    assert!(shown["sync"]["retry_at"].is_string(), "{shown}");
    let (_, errors) = app.get("/api/v1/connectors/salesforce/errors", &ws.viewer).await;
    assert_eq!(
        (errors["data"][0]["stage"].clone(), errors["data"][0]["message"].as_str()),
        (json!("auth"), Some(error))
    );

    // A new refresh token from the operator: the stopped sync runs again, at once.
    fake.lock().unwrap().refresh_token = Some("5Aep861NewGrant".into());
    let (status, _) = put(json!({"refresh_token": "5Aep861NewGrant"})).await;
    assert_eq!(status, StatusCode::OK);
    let state = sync_state(&app, &ws, "salesforce").await;
    assert!(state.requested && state.retry_at.is_none(), "{state:?}");
    assert!(run(&app, &ws, Provider::Salesforce).await.finished);
    let (_, secrets) = stored_secrets(&app, &ws, "salesforce").await;
    assert_eq!(secrets.refresh_token.as_deref().map(|t| t.starts_with("5Aep861rotated")), Some(true));
}
