//! What messages are made of and who may not get them: email templates (checked when saved),
//! the sender and the Slack webhook, the webhook signing secret receivers verify with, the
//! suppression list, and the one-click unsubscribe links emails carry (RFC 8058).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use outbox::template::{Part, Template};
use runner::SLACK_URL;
use runner::deliver::{SENDER, TEMPLATES, UNSUBSCRIBE_SECRET, WEBHOOK_SECRET, workspace_secret};
use serde_json::{Map, Value, json};

use crate::api::body_json;
use crate::intel::{admin, operator, workspace};
use crate::{ApiError, AppState};

async fn templates(s: &AppState, ws: &domain::WorkspaceId) -> Result<Map<String, Value>, ApiError> {
    Ok(match s.store().get_setting(ws, TEMPLATES).await? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    })
}

fn template_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_template", "a template's name is 1 to 100 letters, digits, `_` and `-`")
            .field("name"))
    }
}

fn template_of(v: &Value) -> Result<Template, ApiError> {
    let text = |field: &'static str, required: bool| -> Result<Option<String>, ApiError> {
        match v.get(field) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            _ => Err(ApiError::bad_request(
                "invalid_template",
                format!("`{field}` is {}a string", if required { "required, as " } else { "" }),
            )
            .field(field)),
        }
    };
    let template = Template {
        subject: text("subject", true)?.unwrap_or_default(),
        html: text("html", false)?,
        text: text("text", true)?.unwrap_or_default(),
    };
    outbox::template::check(&template).map_err(|e| {
        let field = match e.part {
            Part::Subject => "subject",
            Part::Html => "html",
            Part::Text => "text",
        };
        ApiError {
            details: e.line.map(|l| json!({"position": {"line": l}})),
            ..ApiError::bad_request("invalid_template", e.to_string()).field(field)
        }
    })?;
    Ok(template)
}

/// `GET /api/v1/templates`: the workspace's email templates by name.
pub(crate) async fn list_templates(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let mut out: Vec<Value> =
        templates(&s, &ws).await?.into_iter().map(|(name, t)| json!({"name": name, "template": t})).collect();
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(json!({"data": out})).into_response())
}

/// `PUT /api/v1/templates/{name}` `{"subject", "html"?, "text"}`: checked (syntax, with the
/// part and line at fault) and saved; 201 when new.
pub(crate) async fn put_template(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    template_name(&name)?;
    let template = template_of(&body_json(&body)?)?;
    let value =
        serde_json::to_value(&template).map_err(|e| ApiError::bad_request("invalid_template", e.to_string()))?;
    // One entry of the templates, in one step: two templates saved at once both stay.
    let existed = s.store().put_setting_entry(&ws, TEMPLATES, &name, Some(&value), Utc::now()).await?;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({"name": name, "template": value}))).into_response())
}

/// `GET /api/v1/templates/{name}`.
pub(crate) async fn get_template(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let all = templates(&s, &ws).await?;
    let t =
        all.get(&name).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "template_not_found", "no such template"))?;
    Ok(Json(json!({"name": name, "template": t})).into_response())
}

/// `DELETE /api/v1/templates/{name}`: messages that name it become dead letters when sent.
pub(crate) async fn delete_template(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    if !s.store().put_setting_entry(&ws, TEMPLATES, &name, None, Utc::now()).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "template_not_found", "no such template"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a preview's `unsubscribe_url` is when the context does not give one: every email is
/// given its link when sent, so a template that uses it must preview too.
const PREVIEW_UNSUBSCRIBE_URL: &str = "https://steward.invalid/unsubscribe/preview";

/// `POST /api/v1/templates/{name}/preview` `{"context": {...}}`: the template filled in, as a
/// recipient would get it (a name the context lacks is an error, as when sending).
pub(crate) async fn preview_template(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let all = templates(&s, &ws).await?;
    let t =
        all.get(&name).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "template_not_found", "no such template"))?;
    let t: Template =
        serde_json::from_value(t.clone()).map_err(|e| ApiError::bad_request("invalid_template", e.to_string()))?;
    let v = body_json(&body)?;
    let mut context = match v.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::bad_request("invalid_context", "`context` must be an object").field("context"));
        }
    };
    context.entry("unsubscribe_url").or_insert_with(|| json!(PREVIEW_UNSUBSCRIBE_URL));
    let context = Value::Object(context);
    let rendered = outbox::template::render(&t, &context).map_err(|e| ApiError {
        details: e.line.map(|l| json!({"position": {"line": l}})),
        ..ApiError::bad_request("invalid_context", e.to_string())
    })?;
    Ok(Json(rendered).into_response())
}

/// `GET /api/v1/settings/messaging`: the sender of emails and the Slack incoming webhook.
pub(crate) async fn get_messaging(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let from = s.store().get_setting(&ws, SENDER).await?;
    let slack = s.store().get_setting(&ws, SLACK_URL).await?;
    Ok(Json(json!({"email_from": from, "slack_webhook_url": slack})).into_response())
}

/// `PUT /api/v1/settings/messaging` `{"email_from": {"name", "address"}, "slack_webhook_url"}`
/// (admin): each member given is replaced; `null` clears it.
pub(crate) async fn put_messaging(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = admin(&s, &headers).await?.workspace_id;
    let v = body_json(&body)?;
    let now = Utc::now();
    let mut updates: Vec<(&str, Value)> = Vec::new();
    if let Some(from) = v.get("email_from") {
        let value = if from.is_null() {
            Value::Null
        } else {
            let address = from.get("address").and_then(Value::as_str).unwrap_or("");
            let name = match from.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) => Some(n.as_str()),
                Some(_) => {
                    return Err(ApiError::bad_request("invalid_settings", "`email_from.name` must be a string")
                        .field("email_from.name"));
                }
            };
            let mailbox = outbox::email::Mailbox::new(name, address)
                .map_err(|e| ApiError::bad_request("invalid_settings", e.to_string()).field("email_from.address"))?;
            // As checked: the address trimmed, nothing else kept.
            json!({"name": mailbox.name(), "address": mailbox.address()})
        };
        updates.push((SENDER, value));
    }
    if let Some(url) = v.get("slack_webhook_url") {
        match url {
            Value::Null => {}
            Value::String(u) if u.starts_with("https://") || u.starts_with("http://") => {}
            _ => {
                return Err(ApiError::bad_request("invalid_settings", "`slack_webhook_url` must be an http(s) URL")
                    .field("slack_webhook_url"));
            }
        }
        updates.push((SLACK_URL, url.clone()));
    }
    for (key, value) in updates {
        s.store().put_setting(&ws, key, &value, now).await?;
    }
    get_messaging(State(s), headers).await
}

/// `GET /api/v1/settings/webhooks` (admin): the secret webhooks are signed with (Standard
/// Webhooks), for receivers to verify them; made on first use.
pub(crate) async fn webhook_secret(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    use base64::Engine;
    let ws = admin(&s, &headers).await?.workspace_id;
    let bytes = workspace_secret(s.store(), &ws, WEBHOOK_SECRET, Utc::now()).await.map_err(runner_error)?;
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    Ok(Json(json!({"signing_secret": secret, "scheme": "https://www.standardwebhooks.com/"})).into_response())
}

fn runner_error(e: runner::Error) -> ApiError {
    match e {
        runner::Error::Store(e) => e.into(),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string()),
    }
}

/// `GET /api/v1/suppressions`: addresses and endpoints nothing is sent to, with why and since
/// when (unsubscribed, gone).
pub(crate) async fn list_suppressions(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let out: Vec<Value> = s
        .store()
        .blocked_endpoints(&ws)
        .await?
        .into_iter()
        .map(|(endpoint, reason, at)| json!({"endpoint": endpoint, "reason": reason, "at": at}))
        .collect();
    Ok(Json(json!({"data": out})).into_response())
}

/// A workspace's suppression of `endpoint` (compared without case), as stored.
async fn suppression(s: &AppState, ws: &domain::WorkspaceId, endpoint: &str) -> Result<Option<Value>, ApiError> {
    let all = s.store().blocked_endpoints(ws).await?;
    Ok(all
        .into_iter()
        .find(|(e, _, _)| e.to_lowercase() == endpoint)
        .map(|(endpoint, reason, at)| json!({"endpoint": endpoint, "reason": reason, "at": at})))
}

/// `POST /api/v1/suppressions` `{"endpoint", "reason"}`: stop sending to an address or URL;
/// 201 with the entry, or 200 with it as it was when the endpoint is already suppressed.
pub(crate) async fn add_suppression(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let v = body_json(&body)?;
    let endpoint =
        v.get("endpoint").and_then(Value::as_str).map(str::trim).filter(|e| !e.is_empty()).ok_or_else(|| {
            ApiError::bad_request("invalid_suppression", "`endpoint` (an email address or a URL) is required")
                .field("endpoint")
        })?;
    let endpoint = endpoint.to_lowercase();
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or("suppressed by an operator");
    if let Some(existing) = suppression(&s, &ws, &endpoint).await? {
        return Ok(Json(existing).into_response());
    }
    s.store().block_endpoint(&ws, &endpoint, reason, Utc::now()).await?;
    let stored =
        suppression(&s, &ws, &endpoint).await?.unwrap_or_else(|| json!({"endpoint": endpoint, "reason": reason}));
    Ok((StatusCode::CREATED, Json(stored)).into_response())
}

/// `DELETE /api/v1/suppressions?endpoint=`: send to it again.
pub(crate) async fn remove_suppression(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let endpoint = q
        .get("endpoint")
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid_parameter", "`endpoint` is required").field("endpoint"))?;
    let removed = s.store().unblock_endpoint(&ws, endpoint).await?
        || s.store().unblock_endpoint(&ws, &endpoint.to_lowercase()).await?;
    if !removed {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "suppression_not_found", "that endpoint is not suppressed")
            .field("endpoint"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Checks an unsubscribe link's token; the address, lower-cased, when it is right.
async fn unsubscribe_target(
    s: &AppState,
    workspace: &str,
    q: &HashMap<String, String>,
) -> Result<(domain::WorkspaceId, String), Response> {
    let refuse = |status: StatusCode, text: &str| (status, Html(page(text))).into_response();
    let Ok(ws) = domain::WorkspaceId::parse(workspace) else {
        return Err(refuse(StatusCode::NOT_FOUND, "This unsubscribe link is not valid."));
    };
    let (Some(email), Some(token)) = (q.get("email"), q.get("token")) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "This unsubscribe link is incomplete."));
    };
    let email = email.trim().to_lowercase();
    let exists = s.store().get_workspace(&ws).await.ok().flatten().is_some();
    let secret = match exists {
        true => s.store().get_setting(&ws, UNSUBSCRIBE_SECRET).await.ok().flatten(),
        false => None,
    };
    let key = secret.and_then(|v| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str()?).ok()?;
        outbox::unsubscribe::UnsubscribeKey::new(&bytes).ok()
    });
    match key {
        Some(key) if outbox::unsubscribe::verify_unsubscribe(&key, ws.as_str(), &email, token) => Ok((ws, email)),
        _ => Err(refuse(StatusCode::NOT_FOUND, "This unsubscribe link is not valid.")),
    }
}

fn page(text: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>Unsubscribe</title></head><body><main><p>{}</p></main></body></html>",
        text.replace('&', "&amp;").replace('<', "&lt;")
    )
}

/// `GET /unsubscribe/{workspace}?email=&token=`: asks to confirm (a link scanner opening the
/// link unsubscribes nobody).
pub(crate) async fn unsubscribe_page(
    State(s): State<AppState>,
    Path(workspace): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match unsubscribe_target(&s, &workspace, &q).await {
        Err(r) => r,
        Ok((_, email)) => {
            let escape = |v: &str| v.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
            Html(format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
                 content=\"width=device-width\"><title>Unsubscribe</title></head><body><main>\
                 <p>Stop emails to {}?</p><form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" \
                 value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form></main></body></html>",
                escape(&email)
            ))
            .into_response()
        }
    }
}

/// `POST /unsubscribe/{workspace}?email=&token=`: one-click unsubscribe (RFC 8058): the
/// address is suppressed, and nothing more is sent to it.
pub(crate) async fn unsubscribe(
    State(s): State<AppState>,
    Path(workspace): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match unsubscribe_target(&s, &workspace, &q).await {
        Err(r) => r,
        Ok((ws, email)) => match s.store().block_endpoint(&ws, &email, "unsubscribed", Utc::now()).await {
            Ok(()) => (
                StatusCode::OK,
                [(header::CACHE_CONTROL, "no-store")],
                Html(page("You are unsubscribed: no more emails will be sent to this address.")),
            )
                .into_response(),
            Err(e) => ApiError::from(e).into_response(),
        },
    }
}
