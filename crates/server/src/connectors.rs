//! Connectors: admins configure them (secrets are write-only), everyone with a key sees their
//! state and errors, members ask for a resync and link unmatched records by hand; providers
//! deliver webhooks to `POST /webhooks/{provider}/{workspace}`, checked by their signature.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use connectors::backfill::SyncState;
use connectors::worker::Syncer;
use connectors::{Config, Provider, Secrets, WebhookError};
use domain::{AccountId, WorkspaceId};
use serde_json::{Value, json};
use store::{ConnectorRecord, ObjectQuery};

use crate::api::body_json;
use crate::intel::{admin, operator, workspace};
use crate::{ApiError, AppState};

/// The largest webhook body read: Stripe's events are tens of kilobytes at most.
pub(crate) const MAX_WEBHOOK_BODY: usize = 4 << 20;

fn syncer(s: &AppState) -> Result<&Arc<Syncer>, ApiError> {
    s.connectors().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "connectors_unavailable",
            "connectors are not running in this server",
        )
    })
}

fn provider(name: &str) -> Result<Provider, ApiError> {
    Provider::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        ApiError::not_found("connector", format!("no provider {name:?}; known: {}", known.join(", "))).field("provider")
    })
}

fn not_found(p: Provider) -> ApiError {
    ApiError::not_found("connector", format!("no {} connector in this workspace", p.name()))
}

/// A connector as the API shows it: never its secrets, only whether each is set.
fn view(s: &AppState, ws: &WorkspaceId, record: &ConnectorRecord, secrets: Option<&Secrets>) -> Value {
    let sync = SyncState::of(record);
    json!({
        "provider": record.provider,
        "enabled": record.enabled,
        "config": record.config,
        "secrets": secrets.map(Secrets::summary),
        "webhook_path": format!("/webhooks/{}/{}", record.provider, ws),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "last_sync_at": record.last_sync_at,
        "records_synced": record.records_synced,
        "webhooks_received": record.webhooks_received,
        "errors": record.errors,
        "sync": sync,
        "syncing": sync.requested && s.connectors().is_some(),
    })
}

async fn load(s: &AppState, ws: &WorkspaceId, p: Provider) -> Result<(ConnectorRecord, Option<Secrets>), ApiError> {
    let syncer = syncer(s)?;
    let record = s.store().get_connector(ws, p.name()).await?.ok_or_else(|| not_found(p))?;
    // Secrets that no longer open (the key changed) show as unreadable, not as an error.
    let secrets = Secrets::open(syncer.connectors().key(), ws.as_str(), p.name(), &record.secrets).ok();
    Ok((record, secrets))
}

/// `GET /api/v1/connectors`: the workspace's connectors and the providers it could add.
pub(crate) async fn list_connectors(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let key = syncer(&s)?.connectors().key();
    let data: Vec<Value> = s
        .store()
        .list_connectors(&ws)
        .await?
        .iter()
        .map(|r| view(&s, &ws, r, Secrets::open(key, ws.as_str(), &r.provider, &r.secrets).ok().as_ref()))
        .collect();
    let providers: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
    Ok(Json(json!({"data": data, "providers": providers})).into_response())
}

/// `GET /api/v1/connectors/{provider}`.
pub(crate) async fn get_connector(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let (record, secrets) = load(&s, &ws, provider(&name)?).await?;
    Ok(Json(view(&s, &ws, &record, secrets.as_ref())).into_response())
}

fn text_field(body: &Value, field: &'static str) -> Result<Option<String>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(v)) if !v.trim().is_empty() => Ok(Some(v.trim().to_owned())),
        _ => {
            Err(ApiError::bad_request("invalid_connector", format!("`{field}` must be a non-empty string"))
                .field(field))
        }
    }
}

/// `PUT /api/v1/connectors/{provider}` `{"enabled"?, "config"?, "api_key"?, "webhook_secrets"?,
/// "refresh_token"?, "client_id"?, "client_secret"?}` (admin): creates or changes the
/// connector. Secrets given replace those stored (a list of webhook secrets, several while
/// one is rolled); secrets left out are kept. The OAuth client's secrets (Salesforce's) renew
/// its access token: a refresh token given without an access token has one asked for at the
/// next backfill. A connector created with an API key or a refresh token starts its first
/// backfill.
pub(crate) async fn put_connector(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = admin(&s, &headers).await?;
    let ws = key.workspace_id;
    let p = provider(&name)?;
    let body = body_json(&body)?;
    let saved = save(&s, &ws, p, &body).await?;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(view(&s, &ws, &saved.record, saved.secrets.as_ref()))).into_response())
}

/// A connector as saved.
pub(crate) struct Saved {
    pub created: bool,
    pub record: ConnectorRecord,
    pub secrets: Option<Secrets>,
}

/// Creates or changes the workspace's connector of `p` from `body`, as
/// `PUT /api/v1/connectors/{provider}` takes it (the caller checked it may): every field
/// checked first, so a refused change changes nothing.
pub(crate) async fn save(s: &AppState, ws: &WorkspaceId, p: Provider, body: &Value) -> Result<Saved, ApiError> {
    let syncer = syncer(s)?;
    let Some(fields) = body.as_object() else {
        return Err(ApiError::bad_request("invalid_connector", "the body must be a JSON object"));
    };
    for field in fields.keys() {
        if !["enabled", "config", "api_key", "webhook_secrets", "refresh_token", "client_id", "client_secret"]
            .contains(&field.as_str())
        {
            return Err(
                ApiError::bad_request("invalid_connector", format!("unknown field `{field}`")).field(field.clone())
            );
        }
    }
    let config = match body.get("config") {
        None => None,
        Some(c) => {
            let parsed =
                Config::from_value(c).map_err(|e| ApiError::bad_request("invalid_connector", e).field("config"))?;
            Some(serde_json::to_value(parsed).expect("config serializes"))
        }
    };
    let enabled = match body.get("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(ApiError::bad_request("invalid_connector", "`enabled` must be true or false").field("enabled"));
        }
    };
    let api_key = text_field(body, "api_key")?;
    let refresh_token = text_field(body, "refresh_token")?;
    let client_id = text_field(body, "client_id")?;
    let client_secret = text_field(body, "client_secret")?;
    for (field, given) in
        [("refresh_token", &refresh_token), ("client_id", &client_id), ("client_secret", &client_secret)]
    {
        if given.is_some() && !p.refreshes_tokens() {
            return Err(ApiError::bad_request(
                "invalid_connector",
                format!("`{field}` is for a provider whose access tokens are refreshed (salesforce), not {}", p.name()),
            )
            .field(field));
        }
    }
    let webhook_secrets = match body.get("webhook_secrets") {
        None => None,
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 5 => Some(
            a.iter()
                .map(|v| v.as_str().filter(|t| !t.trim().is_empty()).map(|t| t.trim().to_owned()))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_connector", "`webhook_secrets` must hold non-empty strings")
                        .field("webhook_secrets")
                })?,
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_connector",
                "`webhook_secrets` must be a list of 1 to 5 secrets",
            )
            .field("webhook_secrets"));
        }
    };
    let sealing = syncer.connectors().key();
    let now = Utc::now();
    let existing = s.store().get_connector(ws, p.name()).await?;
    let created = existing.is_none();
    let mut secrets = match &existing {
        Some(r) => Secrets::open(sealing, ws.as_str(), p.name(), &r.secrets).unwrap_or_default(),
        None => Secrets::default(),
    };
    let new_key = api_key.is_some() || refresh_token.is_some();
    if let Some(k) = api_key {
        secrets.api_key = Some(k);
    }
    if let Some(t) = refresh_token {
        secrets.refresh_token = Some(t);
        // The access token held came with the refresh token replaced: the next run asks anew.
        if body.get("api_key").is_none_or(Value::is_null) {
            secrets.api_key = None;
        }
    }
    if client_id.is_some() {
        secrets.client_id = client_id;
    }
    if client_secret.is_some() {
        secrets.client_secret = client_secret;
    }
    if secrets.refresh_token.is_some() && secrets.client_id.is_none() {
        return Err(ApiError::bad_request(
            "invalid_connector",
            "a refresh token needs `client_id`, the connected app's consumer key",
        )
        .field("client_id"));
    }
    if let Some(w) = webhook_secrets {
        secrets.webhook_secrets = w;
    }
    let mut record = existing.unwrap_or_else(|| ConnectorRecord {
        provider: p.name().into(),
        config: json!({}),
        secrets: String::new(),
        enabled: true,
        created_at: now,
        updated_at: now,
        sync: json!({}),
        last_sync_at: None,
        records_synced: 0,
        webhooks_received: 0,
        errors: 0,
    });
    if let Some(c) = config {
        record.config = c;
    }
    if let Some(e) = enabled {
        record.enabled = e;
    }
    record.secrets = secrets.seal(sealing, ws.as_str(), p.name());
    record.updated_at = now;
    if created {
        // The first backfill starts as soon as there is a key to read the history with.
        if secrets.api_key.is_some() || secrets.refresh_token.is_some() {
            let mut sync = SyncState::default();
            sync.request(true);
            record.sync = serde_json::to_value(sync).expect("state serializes");
        }
        s.store().create_connector(ws, &record).await?;
    } else {
        s.store().update_connector(ws, &record).await?;
        // New credentials: a first backfill waiting for them, or one stopped on the old ones
        // (a refused refresh), runs now.
        if new_key && (record.last_sync_at.is_none() || SyncState::of(&record).last_error.is_some()) {
            request_sync(s, ws, p, false).await?;
        }
    }
    syncer.wake();
    let (record, secrets) = load(s, ws, p).await?;
    Ok(Saved { created, record, secrets })
}

/// `DELETE /api/v1/connectors/{provider}` (admin): the connector, its mirror and its errors.
/// What it already wrote (subscriptions, events) stays.
pub(crate) async fn delete_connector(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ws = admin(&s, &headers).await?.workspace_id;
    let p = provider(&name)?;
    if !s.store().delete_connector(&ws, p.name()).await? {
        return Err(not_found(p));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Asks for a backfill of the workspace's connector of `p` now (`full`: from the start) and
/// wakes the worker.
pub(crate) async fn ask_sync(s: &AppState, ws: &WorkspaceId, p: Provider, full: bool) -> Result<SyncState, ApiError> {
    let syncer = syncer(s)?;
    let sync = request_sync(s, ws, p, full).await?;
    syncer.wake();
    Ok(sync)
}

async fn request_sync(s: &AppState, ws: &WorkspaceId, p: Provider, full: bool) -> Result<SyncState, ApiError> {
    let record = s.store().get_connector(ws, p.name()).await?.ok_or_else(|| not_found(p))?;
    let mut sync = SyncState::of(&record);
    sync.request(full);
    sync.retry_at = None;
    let progress = store::ConnectorProgress {
        sync: Some(serde_json::to_value(&sync).expect("state serializes")),
        ..Default::default()
    };
    s.store().record_connector_progress(ws, p.name(), &progress, Utc::now()).await?;
    Ok(sync)
}

/// `POST /api/v1/connectors/{provider}/sync` `{"full"?: bool}` (member): asks for a backfill
/// now; one under way resumes where it stopped unless `full` starts it over.
pub(crate) async fn sync_connector(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let p = provider(&name)?;
    syncer(&s)?;
    let body = if body.is_empty() { json!({}) } else { body_json(&body)? };
    let full = match body.get("full") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("invalid_parameter", "`full` must be true or false").field("full")),
    };
    let sync = ask_sync(&s, &ws, p, full).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"sync": sync}))).into_response())
}

/// The key's workspace and the provider named, which must have a connector there.
async fn configured(s: &AppState, headers: &HeaderMap, name: &str) -> Result<(WorkspaceId, Provider), ApiError> {
    let ws = workspace(s, headers).await?;
    let p = provider(name)?;
    s.store().get_connector(&ws, p.name()).await?.ok_or_else(|| not_found(p))?;
    Ok((ws, p))
}

fn limit(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("limit") {
        None => Ok(100),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_request("invalid_parameter", "`limit` must be 1 to 1000").field("limit")),
    }
}

/// `GET /api/v1/connectors/{provider}/errors?limit=`: newest first, each with its record.
pub(crate) async fn connector_errors(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (ws, p) = configured(&s, &headers, &name).await?;
    let errors = s.store().connector_errors(&ws, p.name(), limit(&q)?).await?;
    Ok(Json(json!({"data": errors})).into_response())
}

/// The root kind a request names (`kind`), one of the provider's; none names the main one.
fn root_kind(p: Provider, kind: Option<&str>) -> Result<&'static str, ApiError> {
    let roots = p.root_kinds();
    match kind {
        None => Ok(roots[0]),
        Some(k) => roots.iter().copied().find(|r| *r == k).ok_or_else(|| {
            ApiError::bad_request("invalid_parameter", format!("`kind` must be one of: {}", roots.join(", ")))
                .field("kind")
        }),
    }
}

/// `GET /api/v1/connectors/{provider}/unmatched?kind=&limit=&after=`: the provider's
/// customers, companies or requesters (`kind`, one of its root kinds, the main one by
/// default) that match no account, with the records waiting on each.
pub(crate) async fn unmatched(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (ws, p) = configured(&s, &headers, &name).await?;
    let n = limit(&q)?;
    let kind = root_kind(p, q.get("kind").map(String::as_str))?;
    let query = ObjectQuery {
        kind: Some(kind.into()),
        unmatched: true,
        after: q.get("after").map(|a| (kind.to_owned(), a.clone())),
        limit: n,
        ..Default::default()
    };
    let roots = s.store().provider_objects(&ws, p.name(), &query).await?;
    let mut data = Vec::with_capacity(roots.len());
    for root in &roots {
        let children = ObjectQuery { parent_id: Some(root.object_id.clone()), ..Default::default() };
        let waiting = s.store().provider_objects(&ws, p.name(), &children).await?;
        let mut by_kind: HashMap<&str, usize> = HashMap::new();
        // A parent id names a root of one kind: another kind's object with the same id is not
        // this one's.
        for c in waiting.iter().filter(|c| !p.is_root(&c.kind) && p.parent_kind(c) == kind) {
            *by_kind.entry(c.kind.as_str()).or_default() += 1;
        }
        data.push(json!({"kind": root.kind, "object_id": root.object_id, "label": root.label,
            "seen_at": root.updated_at, "waiting": by_kind, "object": root.payload}));
    }
    let next = (roots.len() == n).then(|| roots.last().map(|r| r.object_id.clone())).flatten();
    Ok(Json(json!({"data": data, "next_cursor": next})).into_response())
}

/// `POST /api/v1/connectors/{provider}/unmatched/{object_id}/link` `{"account_id", "kind"?}`
/// (member): links a customer, company or requester to an account by hand; it and what waited
/// on it are applied. Without `kind`, the first of the provider's root kinds holding the id.
pub(crate) async fn link_unmatched(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path((name, object_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let p = provider(&name)?;
    let syncer = syncer(&s)?;
    let body = body_json(&body)?;
    let account = body
        .get("account_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("invalid_parameter", "`account_id` is required").field("account_id"))?;
    let account = AccountId::parse(account)
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()).field("account_id"))?;
    let kinds = match body.get("kind") {
        None | Some(Value::Null) => p.root_kinds().to_vec(),
        Some(k) => vec![root_kind(p, Some(k.as_str().unwrap_or_default()))?],
    };
    let mut linked = None;
    for kind in &kinds {
        linked = syncer.connectors().link(&ws, p, kind, &object_id, &account).await.map_err(webhook_error)?;
        if linked.is_some() {
            break;
        }
    }
    let applied = linked.ok_or_else(|| {
        ApiError::not_found("connector", format!("no {} {object_id:?} in this connector", kinds.join(" or ")))
            .field("object_id")
    })?;
    Ok(Json(json!({"linked": {"object_id": object_id, "account_id": account}, "applied": applied})).into_response())
}

fn webhook_error(e: WebhookError) -> ApiError {
    match e {
        WebhookError::NotConfigured(_) => ApiError::new(StatusCode::NOT_FOUND, "connector_not_found", e.to_string()),
        WebhookError::Signature(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", e.to_string()),
        WebhookError::BadPayload(_) => ApiError::bad_request("invalid_payload", e.to_string()),
        WebhookError::Secrets(_) => {
            tracing::error!(error = %e, "connector secrets cannot be opened: was the secrets key changed?");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "connector_secrets_unreadable", e.to_string())
        }
        WebhookError::Store(e) => e.into(),
    }
}

/// `POST /webhooks/{provider}/{workspace}`: a provider's delivery. Checked against the
/// connector's webhook secrets over the raw body (and, for HubSpot, the URL it called: the
/// host header and the path and query as received), then stored and applied before the
/// answer, so that a delivery acknowledged is never lost; a delivery seen before is
/// acknowledged without being applied again. A delivery that only names what changed
/// (HubSpot's) starts a sync that reads it.
pub(crate) async fn webhook(
    State(s): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path((name, ws)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = provider(&name)?;
    let syncer = syncer(&s)?;
    let outcome =
        |o: &'static str| metrics::counter!("steward_connector_webhooks_total", "provider" => p.name(), "outcome" => o);
    let Ok(ws) = WorkspaceId::parse(&ws) else {
        outcome("rejected").increment(1);
        return Err(ApiError::new(StatusCode::NOT_FOUND, "connector_not_found", "no such workspace"));
    };
    if s.store().get_workspace(&ws).await?.is_none() {
        outcome("rejected").increment(1);
        return Err(ApiError::new(StatusCode::NOT_FOUND, "connector_not_found", "no such workspace"));
    }
    let path = uri.path_and_query().map(|pq| pq.as_str().to_owned());
    let header = |n: &str| match n {
        ":path" => path.clone(),
        _ => headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    match syncer.connectors().webhook(&ws, p, &header, &body).await {
        Ok((delivery, ingested)) => {
            outcome(if ingested.duplicate { "duplicate" } else { "accepted" }).increment(1);
            if p.syncs_on_webhook() && !ingested.duplicate {
                syncer.wake();
            }
            Ok(Json(json!({"received": true, "event_id": delivery.event_id, "duplicate": ingested.duplicate,
                "stored": ingested.stored, "stale": ingested.stale, "unmatched": ingested.unmatched}))
            .into_response())
        }
        Err(e) => {
            outcome("rejected").increment(1);
            tracing::info!(workspace = %ws, provider = p.name(), error = %e, "webhook refused");
            Err(webhook_error(e))
        }
    }
}
