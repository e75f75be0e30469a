//! Settings → Integrations, for admins: each provider's connector set up, its credentials
//! replaced (sealed as the API seals them, never shown back: only whether each is set),
//! switched on or off, and a backfill asked for; each change audited. The checks are the
//! API's own (`connectors::save`, `connectors::ask_sync`).

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use connectors::backfill::SyncState;
use connectors::{Provider, Secrets};
use domain::WorkspaceId;
use serde_json::{Map, Value, json};

use super::session::Signed;
use super::settings::render_page;
use super::{UiError, audit, done, form_of};
use crate::AppState;

/// Every provider, set up or not, as the settings page shows it: never a secret's value.
pub(super) async fn view(s: &AppState, ws: &WorkspaceId) -> Result<Vec<Value>, UiError> {
    let records = s.store().list_connectors(ws).await?;
    let key = s.connectors().map(|c| c.connectors().key());
    Ok(Provider::ALL
        .iter()
        .map(|p| {
            let record = records.iter().find(|r| r.provider == p.name());
            let secrets = record.and_then(|r| {
                key.and_then(|k| Secrets::open(k, ws.as_str(), p.name(), &r.secrets).ok()).map(|x| x.summary())
            });
            let sync = record.map(SyncState::of);
            json!({
                "provider": p.name(),
                "configured": record.is_some(),
                "enabled": record.is_some_and(|r| r.enabled),
                "refreshes_tokens": p.refreshes_tokens(),
                "secrets": secrets,
                "config": record.map_or_else(String::new, |r| {
                    serde_json::to_string_pretty(&r.config).unwrap_or_default()
                }),
                "webhook_path": format!("/webhooks/{}/{}", p.name(), ws),
                "last_sync_at": record.and_then(|r| r.last_sync_at),
                "records": record.map_or(0, |r| r.records_synced),
                "webhooks": record.map_or(0, |r| r.webhooks_received),
                "errors": record.map_or(0, |r| r.errors),
                "syncing": sync.as_ref().is_some_and(|x| x.requested),
                "last_error": sync.and_then(|x| x.last_error),
            })
        })
        .collect())
}

fn provider(name: &str) -> Result<Provider, UiError> {
    Provider::parse(name).ok_or_else(|| UiError::not_found("integration"))
}

/// An API error as the settings page says it: the field, then why.
fn refused(e: crate::ApiError) -> String {
    match e.field {
        Some(f) => format!("{f}: {}", e.message),
        None => e.message,
    }
}

/// The connector's fields from the form, as the API takes them: a secret left empty is
/// kept, webhook secrets one per line, the configuration as JSON, `enabled` a checkbox.
fn body_of(form: &HashMap<String, String>) -> Result<(Value, Vec<&'static str>), String> {
    let mut body = Map::new();
    let mut secrets_given = Vec::new();
    let given = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    for field in ["api_key", "refresh_token", "client_id", "client_secret"] {
        if let Some(v) = given(field) {
            body.insert(field.into(), json!(v));
            secrets_given.push(field);
        }
    }
    if let Some(lines) = given("webhook_secrets") {
        let list: Vec<&str> = lines.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        body.insert("webhook_secrets".into(), json!(list));
        secrets_given.push("webhook_secrets");
    }
    if let Some(text) = given("config") {
        let config: Value = serde_json::from_str(text).map_err(|e| format!("config: not JSON ({e})"))?;
        body.insert("config".into(), config);
    }
    body.insert("enabled".into(), json!(form.contains_key("enabled")));
    Ok((Value::Object(body), secrets_given))
}

/// `POST /settings/connectors/{provider}`: sets the connector up or changes it.
pub(crate) async fn save(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, UiError> {
    let p = provider(&name)?;
    let ws = &signed.operator.workspace_id;
    let form = form_of(req).await?;
    let (body, secrets_given) = match body_of(&form) {
        Ok(b) => b,
        Err(why) => return render_page(&s, &signed, &q, (Some(why), None), StatusCode::BAD_REQUEST).await,
    };
    let saved = match crate::connectors::save(&s, ws, p, &body).await {
        Ok(saved) => saved,
        Err(e) if e.status.is_client_error() => {
            return render_page(&s, &signed, &q, (Some(refused(e)), None), StatusCode::BAD_REQUEST).await;
        }
        Err(e) => return Err(e.into()),
    };
    // What changed, never a secret's value.
    let details = json!({"created": saved.created, "enabled": saved.record.enabled, "config": saved.record.config,
                         "secrets_replaced": secrets_given});
    audit(&s, signed.audit_entry("connector.save", p.name(), details)).await?;
    let what = if saved.created { "set up" } else { "saved" };
    Ok(done("/settings", &format!("The {} integration is {what}.", p.name())))
}

/// `POST /settings/connectors/{provider}/enable|disable`.
pub(crate) async fn switch(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let p = provider(&name)?;
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(UiError::not_found("action")),
    };
    let ws = &signed.operator.workspace_id;
    if s.store().get_connector(ws, p.name()).await?.is_none() {
        return Err(UiError::not_found("integration"));
    }
    crate::connectors::save(&s, ws, p, &json!({"enabled": enabled})).await?;
    audit(&s, signed.audit_entry(&format!("connector.{action}"), p.name(), json!({}))).await?;
    Ok(done("/settings", &format!("The {} integration is {action}d.", p.name())))
}

/// `POST /settings/connectors/{provider}/sync` (`full` checked: from the start): a backfill now.
pub(crate) async fn sync(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, UiError> {
    let p = provider(&name)?;
    let ws = &signed.operator.workspace_id;
    let full = form_of(req).await?.contains_key("full");
    crate::connectors::ask_sync(&s, ws, p, full).await?;
    audit(&s, signed.audit_entry("connector.sync", p.name(), json!({"full": full}))).await?;
    let what = if full { "A full backfill" } else { "A backfill" };
    Ok(done("/settings", &format!("{what} of {} is asked for.", p.name())))
}
