//! The real Segment SDKs (Python and Node) send to Steward through a proxy that makes some
//! batches fail after Steward stored them, so the SDK retries the same batch: every messageId
//! must be stored exactly once, attributed to the right account.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Http, Server, create_workspace, repo_root};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Forwards to Steward; answers 503 to every `fail_every`-th batch *after* Steward stored it,
/// as a network failure between the two would.
#[derive(Clone)]
struct FlakyProxy {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    batches: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    fail_every: usize,
}

async fn forward(State(p): State<FlakyProxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let mut up =
        hyper::Request::builder().method(parts.method.clone()).uri(format!("{}{}", p.upstream, parts.uri.path()));
    for (k, v) in &parts.headers {
        if k != "host" {
            up = up.header(k, v);
        }
    }
    let resp = p.client.request(up.body(Full::new(bytes)).unwrap()).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let n = p.batches.fetch_add(1, Ordering::SeqCst) + 1;
    if status == StatusCode::OK && n % p.fail_every == 0 {
        p.failed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream connection reset").into_response();
    }
    (status, Body::from(body)).into_response()
}

async fn start_proxy(upstream: &str, fail_every: usize) -> (String, FlakyProxy) {
    let proxy = FlakyProxy {
        upstream: upstream.to_owned(),
        client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        batches: Arc::default(),
        failed: Arc::default(),
        fail_every,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), proxy)
}

/// Runs an SDK script; returns messageId -> account it was sent for.
fn run_sdk(program: &str, script: &str, host: &str, key: &str, prefix: &str) -> HashMap<String, String> {
    let sdk_dir = repo_root().join("crates/steward/tests/sdk");
    let out = Command::new(program)
        .arg(sdk_dir.join(script))
        .args([host, key, prefix, "150", "8"])
        .current_dir(&sdk_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/test installs the SDKs): {e}"));
    assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["messageId"].as_str().unwrap().to_owned(), v["account"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn python() -> String {
    std::env::var("STEWARD_TEST_PYTHON")
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python").to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_sdks_deliver_every_message_once_to_the_right_account() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "sdk");
    let server = Server::start(dir.path()).await;
    let (proxy_url, proxy) = start_proxy(&server.base, 3).await;

    let mut sent = HashMap::new();
    let (url, key) = (proxy_url.clone(), ws.write_key.clone());
    let py = tokio::task::spawn_blocking(move || run_sdk(&python(), "send.py", &url, &key, "py"));
    let (url, key) = (proxy_url.clone(), ws.write_key.clone());
    let node = tokio::task::spawn_blocking(move || run_sdk("node", "send.mjs", &url, &key, "node"));
    sent.extend(py.await.unwrap());
    sent.extend(node.await.unwrap());
    assert_eq!(sent.len(), 2 * 150 * 11);
    assert!(proxy.failed.load(Ordering::SeqCst) >= 2, "the SDKs were made to retry");

    // Processing resolves memberships shortly after; wait for that outcome, with a deadline.
    let http = Http::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let stored = http.all_events(&server.base, &ws.admin_key).await;
        if stored.len() >= sent.len() && stored.values().all(|(_, a)| !a.is_empty()) || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (id, account) in &sent {
        let (times, accounts) = stored.get(id).unwrap_or_else(|| panic!("{id} was not stored"));
        assert_eq!(*times, 1, "{id} stored {times} times");
        assert_eq!(accounts, &vec![account.clone()], "{id} attributed to {accounts:?}");
    }
    assert_eq!(stored.len(), sent.len(), "nothing else was stored");
    let (_, person) = http.get(&format!("{}/api/v1/people/py-user-7", server.base), Some(&ws.admin_key)).await.unwrap();
    assert_eq!(person["traits"]["email"], "user7@py-acct-7.test");
    assert_eq!(person["account_ids"], serde_json::json!(["py-acct-7"]));
}
