//! API keys on requests: the write key for capture (HTTP Basic username or `writeKey`), secret
//! keys as Bearer tokens for the API. A key only ever opens its own workspace.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use domain::{ApiKey, KeyHash, KeyRole};

use crate::{ApiError, AppState};

pub(crate) struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        KeyCache { ttl, entries: Mutex::new(HashMap::new()) }
    }
}

/// The write key from `Authorization: Basic base64(key:)`, as the Segment SDKs send it.
pub(crate) fn basic_username(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(|t| t.trim().to_owned())
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

async fn lookup(state: &AppState, secret: &str) -> Result<ApiKey, ApiError> {
    let hash = KeyHash::of(secret);
    let cache = &state.inner.keys;
    if let Some((key, at)) = cache.entries.lock().expect("key cache lock").get(&hash.0)
        && at.elapsed() < cache.ttl
    {
        return Ok(key.clone());
    }
    let key = state.inner.store.find_key(&hash).await?;
    let key = key.ok_or_else(|| unauthorized("invalid_api_key", "the API key is not valid"))?;
    if key.revoked_at.is_some() {
        return Err(unauthorized("revoked_api_key", "the API key was revoked"));
    }
    let mut entries = cache.entries.lock().expect("key cache lock");
    if entries.len() > 10_000 {
        entries.clear();
    }
    entries.insert(hash.0, (key.clone(), Instant::now()));
    Ok(key)
}

/// The workspace a capture request writes to.
pub(crate) async fn write_key(
    state: &AppState,
    headers: &HeaderMap,
    body_key: Option<&str>,
) -> Result<ApiKey, ApiError> {
    let secret = basic_username(headers).or_else(|| body_key.map(str::to_owned)).ok_or_else(|| {
        unauthorized("missing_write_key", "send the write key as the HTTP Basic username or as `writeKey` in the body")
    })?;
    let key = lookup(state, &secret).await?;
    if key.role != KeyRole::Write {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_key_type",
            "this is a secret API key; capture takes the workspace's write key, which is safe to embed in clients",
        ));
    }
    Ok(key)
}

/// The caller of a read API request.
pub(crate) async fn secret_key(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let secret = bearer(headers)
        .ok_or_else(|| unauthorized("missing_api_key", "send a secret API key as `Authorization: Bearer <key>`"))?;
    let key = lookup(state, &secret).await?;
    if !key.role.is_secret() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_key_type",
            "a write key can only send events; the API takes a secret key (admin, member or viewer)",
        ));
    }
    Ok(key)
}

/// Every change made through the API with a secret key, written to the audit log after it
/// succeeded (a 2xx answer): the key's id as the actor (`key:<id>`), `api.<method>` as the
/// action, the path as the target. Checks that change nothing (`.../preview`,
/// `.../validate`) are left out; so are requests no key made (webhooks, unsubscribes).
pub(crate) async fn audit_api_changes(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let changes = matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        && path.starts_with("/api/v1/")
        && !path.ends_with("/preview")
        && !path.ends_with("/validate");
    let secret = if changes { bearer(req.headers()) } else { None };
    let resp = next.run(req).await;
    let Some(secret) = secret else { return resp };
    if !resp.status().is_success() {
        return resp;
    }
    let Ok(key) = lookup(&state, &secret).await else { return resp };
    let entry = store::AuditEntry {
        seq: 0,
        workspace_id: key.workspace_id.clone(),
        actor: format!("key:{}", key.key_id),
        action: format!("api.{}", method.as_str().to_lowercase()),
        target: path,
        details: serde_json::json!({"role": key.role.as_str(), "status": resp.status().as_u16()}),
        at: chrono::Utc::now(),
    };
    if let Err(e) = state.inner.store.append_audit(&entry).await {
        // The change is made; failing its answer now would invite a retry that makes it twice.
        tracing::error!(error = %e, actor = %entry.actor, target = %entry.target, "an API change was not written to the audit log");
    }
    resp
}
