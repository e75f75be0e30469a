//! Reading an API with the shared client (what the connectors do): GETs and POSTs of form and
//! JSON bodies against a server in the test, with the same limits and errors for both.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::any;
use outbox::http::PostBody;
use serde_json::json;

use crate::webhook::{client, serve};

/// What the server saw: method, path, content type, body.
type Seen = Arc<Mutex<Vec<(Method, String, Option<String>, Bytes)>>>;

async fn answer(
    State(seen): State<Seen>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    seen.lock().unwrap().push((method, uri.path().to_owned(), content_type, body.clone()));
    match uri.path() {
        "/token" => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"access_token":"00D!new"}"#)
            .into_response(),
        "/echo" => (StatusCode::OK, body).into_response(),
        "/big" => (StatusCode::OK, vec![b'x'; 4096]).into_response(),
        "/limited" => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "3")], "slow down").into_response(),
        "/redirect" => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/token")], "").into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            (StatusCode::OK, "too late").into_response()
        }
        _ => (StatusCode::NOT_FOUND, "").into_response(),
    }
}

#[tokio::test]
async fn posts_forms_and_json_read_as_gets_are() {
    let seen = Seen::default();
    let addr = serve(Router::new().fallback(any(answer)).with_state(seen.clone())).await;
    let http = client(Duration::from_secs(2), None);
    let base = format!("http://{addr}");
    let auth = [("authorization", "Bearer t".to_owned())];

    let form = [("grant_type", "refresh_token"), ("refresh_token", "5Aep8/x+y=z")];
    let got = http.post(&format!("{base}/token"), &auth, PostBody::Form(&form), 1024).await.unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, br#"{"access_token":"00D!new"}"#.as_slice()));
    let search = json!({"filterGroups": [], "limit": 100, "after": "200"});
    let echoed = http.post(&format!("{base}/echo"), &auth, PostBody::Json(&search), 1024).await.unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&echoed.body).unwrap(), search);
    let seen_now: Vec<_> = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen_now[0].0, Method::POST);
    assert_eq!(seen_now[0].2.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(seen_now[0].3.as_ref(), b"grant_type=refresh_token&refresh_token=5Aep8%2Fx%2By%3Dz");
    assert_eq!(seen_now[1].2.as_deref(), Some("application/json"));

    // The same answers and errors as a GET: Retry-After read, redirects not followed, the size
    // bound, the total timeout, URLs that cannot be used.
    for method in ["GET", "POST"] {
        let call = |path: &str, max: usize| {
            let url = format!("{base}{path}");
            let http = http.clone();
            let auth = auth.clone();
            async move {
                if method == "GET" {
                    http.get(&url, &auth, max).await
                } else {
                    http.post(&url, &auth, PostBody::Json(&json!({})), max).await
                }
            }
        };
        let limited = call("/limited", 1024).await.unwrap();
        assert_eq!((limited.status, limited.retry_after), (429, Some(Duration::from_secs(3))), "{method}");
        assert_eq!(call("/redirect", 1024).await.unwrap().status, 307, "{method}");
        let big = call("/big", 1024).await.unwrap_err();
        assert!(big.contains("larger than 1024 bytes"), "{method}: {big}");
        let slow = call("/slow", 1024).await.unwrap_err();
        assert!(slow.starts_with("no answer within"), "{method}: {slow}");
    }
    for url in ["not a url", "ftp://127.0.0.1/x", "/relative"] {
        let e = http.post(url, &[], PostBody::Form(&[]), 1024).await.unwrap_err();
        assert!(e.contains("URL"), "{url}: {e}");
    }
    let methods: Vec<Method> = seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
    assert!(methods.contains(&Method::GET) && methods.contains(&Method::POST), "{methods:?}");
    assert!(!seen.lock().unwrap().iter().any(|s| s.1 == "/token"), "a redirect is not followed");
}
