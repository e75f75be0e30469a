//! A workspace behind the real router, with its keys, fed through capture and processed:
//! what the API tests share.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use chrono::{Duration, Utc};
use domain::{AccountId, Currency, KeyRole, Money, NewApiKey, WorkspaceId};
use processor::{Processor, ProcessorConfig};
use serde_json::{Value, json};
use store::{Store, Subscription, SubscriptionStatus};
use store_sqlite::SqliteStore;
use tower::ServiceExt;

pub struct App {
    _dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub router: axum::Router,
    pub processor: Arc<Processor>,
    pub syncer: Arc<connectors::worker::Syncer>,
}

pub struct Keys {
    pub id: WorkspaceId,
    pub write: String,
    pub admin: String,
    pub viewer: String,
    pub member: String,
}

impl App {
    pub async fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_in_dir(dir.path()).unwrap());
        let processor = Processor::new(store.clone(), ProcessorConfig::default());
        let scoring = scoring::service::Service::new(store.clone(), Default::default());
        let key = connectors::SealingKey::from_base64(&connectors::SealingKey::generate()).unwrap();
        let syncer = Arc::new(connectors::worker::Syncer::new(
            Arc::new(connectors::Connectors::new(store.clone(), Arc::new(key))),
            outbox::http::HttpClient::new(&Default::default()).unwrap(),
            Default::default(),
        ));
        let state = server::AppState::new(store.clone(), Some(processor.clone()), server::ServerConfig::default())
            .with_scoring(scoring)
            .with_connectors(syncer.clone());
        App { _dir: dir, router: server::router(state), store, processor, syncer }
    }

    pub async fn workspace(&self, name: &str) -> Keys {
        let ws = self.store.create_workspace(name).await.unwrap().workspace_id;
        let mut secrets = Vec::new();
        for role in [KeyRole::Write, KeyRole::Admin, KeyRole::Viewer, KeyRole::Member] {
            let k = NewApiKey::generate(&ws, role, Utc::now());
            self.store.insert_key(&k.key).await.unwrap();
            secrets.push(k.secret);
        }
        Keys {
            id: ws,
            write: secrets[0].clone(),
            admin: secrets[1].clone(),
            viewer: secrets[2].clone(),
            member: secrets[3].clone(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call("GET", path, key, None).await
    }

    pub async fn send(&self, ws: &Keys, batch: Vec<Value>) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:", ws.write));
        for chunk in batch.chunks(2000) {
            let req = Request::post("/v1/batch")
                .header("authorization", format!("Basic {basic}"))
                .header("content-type", "application/json")
                .body(Body::from(json!({"batch": chunk}).to_string()))
                .unwrap();
            let resp = self.router.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
        self.processor.run_until_idle(&ws.id).await.unwrap();
    }
}

/// Four customers over the last 60 days: `busy` uses the product daily with five people on
/// five seats, `steady` a few times a week, `fading` stopped three weeks ago, `gone` has
/// done nothing for 40 days.
pub fn story() -> Vec<Value> {
    let now = Utc::now();
    let mut out = Vec::new();
    let mut n = 0;
    let mut event = |user: &str, account: &str, name: &str, days_ago: i64| {
        n += 1;
        json!({"type": "track", "messageId": format!("m{n}"), "userId": user, "event": name,
               "context": {"groupId": account},
               "timestamp": (now - Duration::days(days_ago) - Duration::hours(1)).to_rfc3339()})
    };
    for (account, people) in [("busy", 5), ("steady", 2), ("fading", 2), ("gone", 1)] {
        for p in 0..people {
            out.push(
                json!({"type": "group", "messageId": format!("g-{account}-{p}"), "userId": format!("{account}-u{p}"),
                            "groupId": account, "traits": {"name": account},
                            "timestamp": (now - Duration::days(70)).to_rfc3339()}),
            );
        }
    }
    for d in 0..60 {
        for p in 0..5 {
            out.push(event(&format!("busy-u{p}"), "busy", "report_created", d));
            out.push(event(&format!("busy-u{p}"), "busy", "dashboard_viewed", d));
        }
        if d % 3 == 0 {
            out.push(event("steady-u0", "steady", "report_created", d));
        }
        if d >= 21 {
            out.push(event("fading-u0", "fading", "report_created", d));
            out.push(event("fading-u1", "fading", "report_created", d));
        }
        if d >= 40 {
            out.push(event("gone-u0", "gone", "report_created", d));
        }
    }
    out
}

pub async fn bill(store: &SqliteStore, ws: &WorkspaceId, account: &str, mrr: i64, seats: i64) {
    let started = Utc::now() - Duration::days(200);
    let sub = Subscription {
        subscription_id: format!("sub_{account}"),
        account_id: AccountId::parse(account).unwrap(),
        plan: Some("team".into()),
        status: SubscriptionStatus::Active,
        mrr: Money::new(mrr, Currency::parse("USD").unwrap()),
        quantity: seats,
        started_at: started,
        ended_at: None,
        current_period_end: None,
        cancel_at_period_end: false,
        updated_at: started,
        attributes: json!({}),
    };
    store.upsert_subscription(ws, &sub).await.unwrap();
}

/// The four customers of [`story`] sent and processed, each billed (MRR in cents, seats).
pub async fn billed_story(app: &App, ws: &Keys) {
    app.send(ws, story()).await;
    for (account, mrr, seats) in
        [("busy", 50_000, 5), ("steady", 20_000, 10), ("fading", 20_000, 10), ("gone", 90_000, 10)]
    {
        bill(&app.store, &ws.id, account, mrr, seats).await;
    }
}
