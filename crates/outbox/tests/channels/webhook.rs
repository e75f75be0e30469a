//! Webhooks: a receiver in the test answering each way a receiver can, and the reference
//! Standard Webhooks library checking our signatures over HTTPS.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use outbox::Outcome;
use outbox::http::{HttpClient, HttpConfig};
use outbox::webhook::{Secret, Webhook, sign, verify};

use crate::python;

/// What the receiver saw: path, headers, body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>);

impl Seen {
    fn take(&self) -> Vec<(String, HeaderMap, Bytes)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

async fn record(State(seen): State<Seen>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let path = uri.path().to_string();
    seen.0.lock().unwrap().push((path.clone(), headers, body));
    match path.as_str() {
        "/ok" => (StatusCode::OK, HeaderMap::new(), "thanks").into_response(),
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "/gone" => (StatusCode::GONE, "unsubscribed").into_response(),
        "/limited" => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")], "slow down").into_response(),
        "/unavailable" => {
            let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
            (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, later)], "").into_response()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            (StatusCode::OK, "too late").into_response()
        }
        "/invalid" => (StatusCode::UNPROCESSABLE_ENTITY, "bad shape").into_response(),
        "/redirect" => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/ok")], "").into_response(),
        _ => (StatusCode::NOT_FOUND, "").into_response(),
    }
}

pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

pub fn client(total: Duration, extra_root_pem: Option<String>) -> HttpClient {
    HttpClient::new(&HttpConfig { total_timeout: total, extra_root_pem, ..HttpConfig::default() }).unwrap()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn delivers_signed_and_reads_every_answer() {
    let seen = Seen::default();
    let addr = serve(Router::new().route("/{*path}", post(record)).with_state(seen.clone())).await;
    let current = Secret::generate();
    let old = Secret::generate();
    let hook = Webhook::new(client(Duration::from_millis(800), None), vec![current.clone(), old.clone()]);
    let url = |path: &str| format!("http://{addr}{path}");
    let body = br#"{"type":"journey.step","data":{"account":"acme","health":41}}"#;

    let outcome = hook.deliver(&url("/ok"), "run_7f3a:welcome:1", body).await;
    assert_eq!(outcome, Outcome::Delivered { status: Some(200), detail: "thanks".into() });
    let mut got = seen.take();
    assert_eq!(got.len(), 1);
    let (_, headers, received) = got.remove(0);
    assert_eq!(&received[..], body);
    let h = |name: &str| headers.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap().to_string();
    assert_eq!(h("webhook-id"), "run_7f3a:welcome:1");
    assert_eq!(h("content-type"), "application/json");
    let timestamp: i64 = h("webhook-timestamp").parse().unwrap();
    assert!((timestamp - unix_now()).abs() <= 5, "timestamp {timestamp}");
    let signatures = h("webhook-signature");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    // Each side of a rotation verifies on its own; a stranger's secret does not.
    let tolerance = Duration::from_secs(300);
    for secret in [&current, &old] {
        verify(
            std::slice::from_ref(secret),
            "run_7f3a:welcome:1",
            &h("webhook-timestamp"),
            &signatures,
            &received,
            unix_now(),
            tolerance,
        )
        .unwrap();
    }
    assert!(
        verify(
            &[Secret::generate()],
            "run_7f3a:welcome:1",
            &h("webhook-timestamp"),
            &signatures,
            &received,
            unix_now(),
            tolerance
        )
        .is_err()
    );

    let outcome = hook.deliver(&url("/fail"), "k1", b"{}").await;
    assert_eq!(outcome, Outcome::Retry { status: Some(500), retry_after: None, reason: "HTTP 500: boom".into() });
    assert_eq!(
        hook.deliver(&url("/gone"), "k1", b"{}").await,
        Outcome::Gone { status: Some(410), reason: "HTTP 410: unsubscribed".into() }
    );
    assert_eq!(
        hook.deliver(&url("/limited"), "k1", b"{}").await,
        Outcome::Retry {
            status: Some(429),
            retry_after: Some(Duration::from_secs(7)),
            reason: "HTTP 429: slow down".into()
        }
    );
    match hook.deliver(&url("/unavailable"), "k1", b"{}").await {
        Outcome::Retry { status: Some(503), retry_after: Some(wait), .. } => {
            assert!((Duration::from_secs(115)..=Duration::from_secs(120)).contains(&wait), "{wait:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        hook.deliver(&url("/invalid"), "k1", b"{}").await,
        Outcome::Rejected { status: Some(422), reason: "HTTP 422: bad shape".into() }
    );
    // A redirect is not followed.
    assert_eq!(hook.deliver(&url("/redirect"), "k1", b"{}").await.kind(), "rejected");
    let paths: Vec<String> = seen.take().into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(paths, ["/fail", "/gone", "/limited", "/unavailable", "/invalid", "/redirect"]);

    // A receiver that does not answer in time.
    let started = Instant::now();
    let outcome = hook.deliver(&url("/slow"), "k1", b"{}").await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    match outcome {
        Outcome::Retry { status: None, reason, .. } => assert!(reason.contains("no answer within"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.take().len(), 1, "the slow receiver got the request");
}

#[tokio::test]
async fn refuses_what_cannot_be_sent_and_retries_what_cannot_connect() {
    let hook = Webhook::new(client(Duration::from_secs(5), None), vec![Secret::generate()]);
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    match hook.deliver(&format!("http://127.0.0.1:{port}/x"), "k1", b"{}").await {
        Outcome::Retry { status: None, reason, .. } => assert!(reason.to_lowercase().contains("connect"), "{reason}"),
        other => panic!("{other:?}"),
    }
    for url in ["not a url", "ftp://127.0.0.1/x", "/relative"] {
        assert_eq!(hook.deliver(url, "k1", b"{}").await.kind(), "rejected", "{url}");
    }
    // An id with a `.` would make the signed content ambiguous.
    assert_eq!(hook.deliver(&format!("http://127.0.0.1:{port}/x"), "a.b", b"{}").await.kind(), "rejected");
    let unsigned = Webhook::new(client(Duration::from_secs(5), None), vec![]);
    assert_eq!(unsigned.deliver(&format!("http://127.0.0.1:{port}/x"), "k1", b"{}").await.kind(), "rejected");
}

#[tokio::test]
async fn the_reference_library_accepts_our_signatures_over_https() {
    let Some(python) =
        python::python(&["standardwebhooks", "trustme"], "the_reference_library_accepts_our_signatures_over_https")
    else {
        return;
    };
    let secret = Secret::generate();
    // The library signs what we sign, byte for byte (a UTF-8 body included).
    let body = r#"{"name":"Zoë","note":"50% off, \"now\""}"#;
    let mut signer = tokio::process::Command::new(&python)
        .arg(python::script("webhook_receiver.py"))
        .args(["--secret", &secret.to_string(), "--sign"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let request = serde_json::json!({"id": "run_1:step:2", "timestamp": 1_700_000_000, "body": body});
    tokio::io::AsyncWriteExt::write_all(signer.stdin.as_mut().unwrap(), request.to_string().as_bytes()).await.unwrap();
    drop(signer.stdin.take());
    let out = signer.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let theirs = String::from_utf8(out.stdout).unwrap();
    assert_eq!(theirs.trim(), sign(std::slice::from_ref(&secret), "run_1:step:2", 1_700_000_000, body.as_bytes()));

    // A delivery over HTTPS (trusting the test's CA) that the library verifies on arrival.
    let dir = tempfile::tempdir().unwrap();
    let (record, ca) = (dir.path().join("received.jsonl"), dir.path().join("ca.pem"));
    let args = [
        "--secret".into(),
        secret.to_string(),
        "--record".into(),
        record.display().to_string(),
        "--ca-out".into(),
        ca.display().to_string(),
    ];
    let receiver = python::start(&python, &python::script("webhook_receiver.py"), &args).await;
    let url = format!("https://127.0.0.1:{}/hooks/steward", receiver.port);
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let hook = Webhook::new(client(Duration::from_secs(10), Some(ca_pem.clone())), vec![secret.clone()]);
    assert_eq!(
        hook.deliver(&url, "run_1:step:2", body.as_bytes()).await,
        Outcome::Delivered { status: Some(204), detail: String::new() }
    );
    // Signed with a secret the receiver does not know: its library refuses it.
    let stranger = Webhook::new(client(Duration::from_secs(10), Some(ca_pem)), vec![Secret::generate()]);
    assert_eq!(stranger.deliver(&url, "run_1:step:3", body.as_bytes()).await.kind(), "rejected");
    let records = python::records(&record);
    let verdicts: Vec<&str> = records.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["valid", "invalid: No matching signature found"]);
    assert_eq!(records[0]["body"], body);
    assert_eq!(records[0]["headers"]["webhook-id"], "run_1:step:2");

    // Without the test's CA the certificate is not trusted, and nothing is sent.
    let untrusting = Webhook::new(client(Duration::from_secs(10), None), vec![secret]);
    match untrusting.deliver(&url, "run_1:step:4", body.as_bytes()).await {
        Outcome::Retry { status: None, reason, .. } => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(python::records(&record).len(), 2);
}
