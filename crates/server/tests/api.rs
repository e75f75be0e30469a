//! The HTTP contract: capture and the read API, driven through the real router on a real
//! SQLite store, as a client would use them.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use domain::{KeyRole, NewApiKey, WorkspaceId};
use processor::{Processor, ProcessorConfig};
use serde_json::{Value, json};
use store::{EventFilter, PageRequest, Store};
use store_sqlite::SqliteStore;
use tower::ServiceExt;

struct TestApp {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    router: axum::Router,
    processor: Arc<Processor>,
}

struct Workspace {
    id: WorkspaceId,
    write: String,
    admin: String,
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

impl TestApp {
    async fn new() -> TestApp {
        TestApp::with(server::ServerConfig::default()).await
    }

    async fn with(config: server::ServerConfig) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_in_dir(dir.path()).unwrap());
        let processor = Processor::new(store.clone(), ProcessorConfig::default());
        let state = server::AppState::new(store.clone(), Some(processor.clone()), config);
        TestApp { _dir: dir, router: server::router(state), store, processor }
    }

    async fn workspace(&self, name: &str) -> Workspace {
        let ws = self.store.create_workspace(name).await.unwrap().workspace_id;
        let write = NewApiKey::generate(&ws, KeyRole::Write, chrono::Utc::now());
        let admin = NewApiKey::generate(&ws, KeyRole::Admin, chrono::Utc::now());
        self.store.insert_key(&write.key).await.unwrap();
        self.store.insert_key(&admin.key).await.unwrap();
        Workspace { id: ws, write: write.secret, admin: admin.secret }
    }

    async fn request(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply { status, retry_after, body }
    }

    async fn post(&self, path: &str, key: Option<&str>, body: impl Into<Body>) -> Reply {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(k) = key {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{k}:"));
            req = req.header("authorization", format!("Basic {basic}"));
        }
        self.request(req.body(body.into()).unwrap()).await
    }

    async fn get(&self, path: &str, key: &str) -> Reply {
        self.request(Request::get(path).header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap())
            .await
    }

    async fn stored(&self, ws: &Workspace) -> usize {
        self.store.list_events(&ws.id, &EventFilter::default(), &PageRequest::first(1000)).await.unwrap().items.len()
    }
}

fn track(id: &str) -> Value {
    json!({"type": "track", "messageId": id, "userId": "u1", "event": "Report Created"})
}

#[tokio::test]
async fn a_batch_is_stored_once_and_answered_as_segment_does() {
    let app = TestApp::new().await;
    let ws = app.workspace("acme").await;
    let body = json!({"batch": [track("m1"), track("m2")]}).to_string();
    let r = app.post("/v1/batch", Some(&ws.write), body.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"success": true, "stored": 2, "duplicates": 0}));
    let again = app.post("/v1/batch", Some(&ws.write), body).await;
    assert_eq!(again.body, json!({"success": true, "stored": 0, "duplicates": 2}));
    assert_eq!(app.stored(&ws).await, 2);
}

#[tokio::test]
async fn the_write_key_may_come_in_the_body_and_bodies_may_be_gzipped_unannounced() {
    let app = TestApp::new().await;
    let ws = app.workspace("acme").await;
    let body = json!({"writeKey": ws.write, "batch": [track("m1")]}).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let r = app.post("/v1/batch", None, gz.finish().unwrap()).await;
    assert_eq!((r.status, r.body["stored"].clone()), (StatusCode::OK, json!(1)));
    let single = json!({"writeKey": ws.write, "userId": "u2", "traits": {"plan": "pro"}}).to_string();
    assert_eq!(app.post("/v1/identify", None, single).await.status, StatusCode::OK);
    assert_eq!(app.stored(&ws).await, 2);
}

#[tokio::test]
async fn bad_requests_get_their_specific_error_and_store_nothing() {
    let app = TestApp::new().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    let big = "x".repeat(33 * 1024);
    let too_many: Vec<Value> = (0..2_501).map(|i| track(&format!("m{i}"))).collect();
    let huge: Vec<Value> = (0..40).map(|i| json!({"type": "track", "userId": "u", "event": "x", "messageId": format!("h{i}"), "properties": {"pad": "y".repeat(15_000)}})).collect();
    // (path, key, body, status, code, field)
    type Case<'a> = (&'a str, Option<&'a str>, String, StatusCode, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("/v1/batch", Some(&ws.write), "{\"batch\": [".into(), StatusCode::BAD_REQUEST, "invalid_json", None),
        ("/v1/batch", Some(&ws.write), "not json".into(), StatusCode::BAD_REQUEST, "invalid_json", None),
        ("/v1/batch", Some(&ws.write), "".into(), StatusCode::BAD_REQUEST, "empty_body", None),
        ("/v1/batch", Some(&ws.write), "{}".into(), StatusCode::BAD_REQUEST, "missing_batch", Some("batch")),
        (
            "/v1/batch",
            Some(&ws.write),
            json!({"batch": too_many}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_messages",
            Some("batch"),
        ),
        (
            "/v1/batch",
            Some(&ws.write),
            json!({"batch": huge}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            None,
        ),
        (
            "/v1/track",
            Some(&ws.write),
            json!({"userId": "u", "event": "x", "properties": {"pad": big}}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            None,
        ),
        (
            "/v1/track",
            Some(&ws.write),
            json!({"event": "x"}).to_string(),
            StatusCode::BAD_REQUEST,
            "missing_identity",
            Some("userId"),
        ),
        (
            "/v1/batch",
            Some(&ws.write),
            json!({"batch": [{"type": "track", "event": "x"}]}).to_string(),
            StatusCode::BAD_REQUEST,
            "missing_identity",
            Some("userId"),
        ),
        (
            "/v1/batch",
            None,
            json!({"batch": [track("m")]}).to_string(),
            StatusCode::UNAUTHORIZED,
            "missing_write_key",
            None,
        ),
        (
            "/v1/batch",
            Some("stw_wk_wrongwrongwrongwrongwrongwrongwr"),
            json!({"batch": [track("m")]}).to_string(),
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            None,
        ),
        (
            "/v1/batch",
            Some(&ws.admin),
            json!({"batch": [track("m")]}).to_string(),
            StatusCode::FORBIDDEN,
            "wrong_key_type",
            None,
        ),
    ];
    for (path, key, body, status, code, field) in cases {
        let r = app.post(path, key, body.clone()).await;
        let what = format!("{path} {}", &body[..body.len().min(60)]);
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_eq!(r.body["success"], json!(false), "{what}");
        assert_eq!(r.body["error"]["code"], json!(code), "{what}: {}", r.body);
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(r.body["error"]["field"].as_str(), field, "{what}");
    }
    assert_eq!(app.stored(&ws).await, 0, "nothing was stored");
    assert_eq!(app.stored(&other).await, 0);

    // Another workspace's write key writes to that workspace only.
    let r = app.post("/v1/batch", Some(&other.write), json!({"batch": [track("m1")]}).to_string()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!((app.stored(&ws).await, app.stored(&other).await), (0, 1));
}

#[tokio::test]
async fn a_batch_with_some_invalid_messages_stores_the_rest_and_says_which() {
    let app = TestApp::new().await;
    let ws = app.workspace("acme").await;
    let body = json!({"batch": [track("ok1"), {"type": "group", "userId": "u"}, track("ok2"), {"type": "track", "userId": "u", "event": "x", "timestamp": "soon"}]});
    let r = app.post("/v1/batch", Some(&ws.write), body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["stored"], json!(2));
    let rejected: Vec<_> = r.body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["index"].clone(), x["code"].clone(), x["field"].clone()))
        .collect();
    assert_eq!(
        rejected,
        [
            (json!(1), json!("missing_group_id"), json!("groupId")),
            (json!(3), json!("invalid_timestamp"), json!("timestamp"))
        ]
    );
    assert_eq!(app.stored(&ws).await, 2);
}

#[tokio::test]
async fn overload_is_refused_with_retry_after_never_dropped() {
    let app = TestApp::with(server::ServerConfig { max_inflight_events: 3, ..Default::default() }).await;
    let ws = app.workspace("acme").await;
    let four: Vec<Value> = (0..4).map(|i| track(&format!("m{i}"))).collect();
    let r = app.post("/v1/batch", Some(&ws.write), json!({"batch": four}).to_string()).await;
    assert_eq!((r.status, r.body["error"]["code"].clone()), (StatusCode::TOO_MANY_REQUESTS, json!("overloaded")));
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert_eq!(app.stored(&ws).await, 0);
    let r = app.post("/v1/batch", Some(&ws.write), json!({"batch": [track("a"), track("b")]}).to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "capacity is released after each request");
}

#[tokio::test]
async fn the_read_api_serves_the_workspace_of_its_key_only() {
    let app = TestApp::new().await;
    let acme = app.workspace("acme").await;
    let globex = app.workspace("globex").await;
    let story = json!({"batch": [
        {"type": "identify", "messageId": "i1", "userId": "ana", "traits": {"email": "ana@acme.test"}},
        {"type": "group", "messageId": "g1", "userId": "ana", "groupId": "acme", "traits": {"name": "Acme", "plan": "team"}},
        {"type": "track", "messageId": "t1", "userId": "ana", "event": "Report Created"},
        {"type": "page", "messageId": "p1", "userId": "ana", "name": "Dashboard"},
    ]});
    assert_eq!(app.post("/v1/batch", Some(&acme.write), story.to_string()).await.status, StatusCode::OK);
    app.processor.run_until_idle(&acme.id).await.unwrap();

    let accounts = app.get("/api/v1/accounts", &acme.admin).await;
    assert_eq!(accounts.status, StatusCode::OK);
    assert_eq!(accounts.body["data"][0]["account_id"], "acme");
    assert_eq!(accounts.body["data"][0]["people_count"], 1);
    assert_eq!(accounts.body["next_cursor"], Value::Null);
    let account = app.get("/api/v1/accounts/acme", &acme.admin).await;
    assert_eq!((account.body["name"].clone(), account.body["traits"]["plan"].clone()), (json!("Acme"), json!("team")));
    let people = app.get("/api/v1/accounts/acme/people", &acme.admin).await;
    assert_eq!(people.body["data"][0]["user_id"], "ana");
    let timeline = app.get("/api/v1/accounts/acme/timeline?limit=2", &acme.admin).await;
    assert_eq!(timeline.body["data"].as_array().unwrap().len(), 2);
    let cursor = timeline.body["next_cursor"].as_str().expect("a second page").to_owned();
    let rest = app.get(&format!("/api/v1/accounts/acme/timeline?limit=2&cursor={cursor}"), &acme.admin).await;
    assert_eq!(rest.body["data"].as_array().unwrap().len(), 2);
    let person = app.get("/api/v1/people/ana", &acme.admin).await;
    assert_eq!(person.body["account_ids"], json!(["acme"]));
    let events = app.get("/api/v1/events?message_id=t1", &acme.admin).await;
    assert_eq!(events.body["data"][0]["message_id"], "t1");
    assert_eq!(events.body["data"][0]["account_ids"], json!(["acme"]));
    let pages = app.get("/api/v1/events?type=page&account_id=acme", &acme.admin).await;
    assert_eq!(pages.body["data"].as_array().unwrap().len(), 1);

    // Globex's key sees none of Acme's data.
    assert_eq!(app.get("/api/v1/accounts/acme", &globex.admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/people/ana", &globex.admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/events", &globex.admin).await.body["data"], json!([]));
    assert_eq!(app.get("/api/v1/accounts", &globex.admin).await.body["data"], json!([]));

    // Errors on the read side.
    let cases = [
        ("/api/v1/accounts", acme.write.as_str(), StatusCode::FORBIDDEN, "wrong_key_type"),
        ("/api/v1/accounts", "stw_sk_nope", StatusCode::UNAUTHORIZED, "invalid_api_key"),
        ("/api/v1/accounts/nope", acme.admin.as_str(), StatusCode::NOT_FOUND, "account_not_found"),
        ("/api/v1/accounts?limit=0", acme.admin.as_str(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/api/v1/accounts?cursor=!!", acme.admin.as_str(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/api/v1/events?type=click", acme.admin.as_str(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/api/v1/events?since=yesterday", acme.admin.as_str(), StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/api/v1/nothing", acme.admin.as_str(), StatusCode::NOT_FOUND, "not_found"),
    ];
    for (path, key, status, code) in cases {
        let r = app.get(path, key).await;
        assert_eq!((r.status, r.body["error"]["code"].as_str()), (status, Some(code)), "{path}");
    }
    let anonymous = app.request(Request::get("/api/v1/accounts").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (anonymous.status, anonymous.body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_api_key"))
    );
}

#[tokio::test]
async fn revoked_keys_stop_working() {
    let app =
        TestApp::with(server::ServerConfig { key_cache_ttl: std::time::Duration::ZERO, ..Default::default() }).await;
    let ws = app.workspace("acme").await;
    assert_eq!(app.get("/api/v1/accounts", &ws.admin).await.status, StatusCode::OK);
    let key = app.store.list_keys(&ws.id).await.unwrap().into_iter().find(|k| k.role == KeyRole::Admin).unwrap();
    assert!(app.store.revoke_key(&ws.id, &key.key_id, chrono::Utc::now()).await.unwrap());
    let r = app.get("/api/v1/accounts", &ws.admin).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("revoked_api_key")));
}

#[tokio::test]
async fn every_route_is_documented_and_operations_endpoints_answer() {
    let app = TestApp::new().await;
    let doc = app.request(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths: Vec<&String> = doc.body["paths"].as_object().unwrap().keys().collect();
    let src = include_str!("../src/lib.rs");
    for line in src.lines().filter(|l| l.trim_start().starts_with(".route(\"")) {
        let route = line.split('"').nth(1).unwrap();
        if route != "/v1/import" {
            assert!(paths.iter().any(|p| *p == route), "{route} is not in the OpenAPI document");
        }
    }
    for code in ["invalid_json", "wrong_key_type", "overloaded", "storage_full", "message_too_large"] {
        assert!(
            doc.body["info"]["description"].as_str().unwrap().contains(&format!("`{code}`")),
            "{code} undocumented"
        );
    }
    assert_eq!(app.request(Request::get("/healthz").body(Body::empty()).unwrap()).await.status, StatusCode::OK);
    assert_eq!(app.request(Request::get("/readyz").body(Body::empty()).unwrap()).await.status, StatusCode::OK);
    let ws = app.workspace("acme").await;
    app.post("/v1/batch", Some(&ws.write), json!({"batch": [track("m1")]}).to_string()).await;
    let metrics = app.request(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = metrics.body.as_str().unwrap().to_owned();
    for name in [
        "steward_http_requests_total",
        "steward_events_stored_total",
        "steward_processing_queue_depth",
        "steward_processing_lag_seconds",
        "steward_ingest_inflight_events",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}
