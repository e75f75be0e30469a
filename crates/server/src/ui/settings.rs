//! Settings, for admins: API keys, integrations (see [`super::integrations`]), operators
//! and the audit log.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use domain::{KeyRole, NewApiKey};
use minijinja::context;
use serde_json::json;
use store::Operator;

use super::pages::layout;
use super::session::Signed;
use super::{UiError, audit, done, form_of, password, render, ser};
use crate::AppState;

pub(super) async fn render_page(
    s: &AppState,
    signed: &Signed,
    q: &HashMap<String, String>,
    extra: (Option<String>, Option<String>),
    status: StatusCode,
) -> Result<Response, UiError> {
    let ws = &signed.operator.workspace_id;
    let keys = s.store().list_keys(ws).await?;
    let connectors = super::integrations::view(s, ws).await?;
    let operators = s.store().list_operators(ws).await?;
    let before = q.get("before").and_then(|b| b.parse::<i64>().ok());
    let entries = s.store().list_audit(ws, before, 50).await?;
    let older = (entries.len() == 50).then(|| entries.last().map(|e| e.seq)).flatten();
    let (error, secret) = extra;
    let html = render(
        "settings.html",
        context! {
            layout => layout(signed, "settings", q),
            keys => ser(&keys),
            connectors => ser(&connectors),
            connectors_running => s.connectors().is_some(),
            operators => ser(operators.iter().map(|o| json!({
                "id": o.operator_id, "email": o.email, "name": o.name, "role": o.role.as_str(),
                "disabled": o.disabled_at.is_some(), "created_at": o.created_at,
                "me": o.operator_id == signed.operator.operator_id})).collect::<Vec<_>>()),
            audit => ser(&entries),
            older,
            error,
            secret,
        },
    )?;
    Ok((status, html).into_response())
}

/// `GET /settings`.
pub(crate) async fn page(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    render_page(&s, &signed, &q, (None, None), StatusCode::OK).await
}

/// `POST /settings/keys` with `role`: the secret is shown once, on the page answered.
pub(crate) async fn create_key(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    req: Request,
) -> Result<Response, UiError> {
    let form = form_of(req).await?;
    let role: KeyRole = form
        .get("role")
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| UiError::bad("A key's role is admin, member, viewer or write."))?;
    let key = NewApiKey::generate(&signed.operator.workspace_id, role, Utc::now());
    s.store().insert_key(&key.key).await?;
    audit(&s, signed.audit_entry("key.create", &key.key.key_id, json!({"role": role.as_str()}))).await?;
    let q = HashMap::from([("done".to_owned(), format!("Key {} created; copy its secret now.", key.key.key_id))]);
    render_page(&s, &signed, &q, (None, Some(key.secret)), StatusCode::CREATED).await
}

/// `POST /settings/keys/{id}/revoke`.
pub(crate) async fn revoke_key(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    if !s.store().revoke_key(&signed.operator.workspace_id, &id, Utc::now()).await? {
        return Err(UiError::not_found("active key"));
    }
    audit(&s, signed.audit_entry("key.revoke", &id, json!({}))).await?;
    Ok(done("/settings", &format!("Key {id} revoked.")))
}

/// `POST /settings/operators`: email, name, role, password.
pub(crate) async fn add_operator(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Result<Response, UiError> {
    let form = form_of(req).await?;
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (email, name) = (field("email").to_lowercase(), field("name"));
    let refuse = |m: String| (Some(m), None);
    let problem = if !email.contains('@') || email.len() > 254 || email.contains(char::is_whitespace) {
        Some("email: give the operator's email address".to_owned())
    } else if name.is_empty() {
        Some("name: give the operator's name".to_owned())
    } else {
        password::check(form.get("password").map(String::as_str).unwrap_or("")).err().map(|e| format!("password: {e}"))
    };
    let role = match field("role").parse::<KeyRole>() {
        Ok(r) if r != KeyRole::Write => r,
        _ => {
            return render_page(
                &s,
                &signed,
                &q,
                refuse("role: admin, member or viewer".into()),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    if let Some(p) = problem {
        return render_page(&s, &signed, &q, refuse(p), StatusCode::BAD_REQUEST).await;
    }
    let pw = form.get("password").cloned().unwrap_or_default();
    let hash =
        tokio::task::spawn_blocking(move || password::hash(&pw)).await.map_err(|e| UiError::bad(e.to_string()))?;
    let op = Operator {
        operator_id: format!("op_{}", domain::random_token(12)),
        workspace_id: signed.operator.workspace_id.clone(),
        email: email.clone(),
        name,
        role,
        password_hash: Some(hash),
        created_at: Utc::now(),
        disabled_at: None,
    };
    match s.store().insert_operator(&op).await {
        Ok(()) => {}
        Err(store::StoreError::Conflict(_)) => {
            return render_page(
                &s,
                &signed,
                &q,
                refuse(format!("email: {email} is already an operator here")),
                StatusCode::CONFLICT,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    }
    audit(&s, signed.audit_entry("operator.add", &op.operator_id, json!({"email": email, "role": role.as_str()})))
        .await?;
    Ok(done("/settings", &format!("{email} can now sign in as {role}.")))
}

/// `POST /settings/operators/{id}/disable|enable`.
pub(crate) async fn operator_action(
    State(s): State<AppState>,
    Extension(signed): Extension<Signed>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let at = match action.as_str() {
        "disable" if id == signed.operator.operator_id => return Err(UiError::bad("You cannot disable yourself.")),
        "disable" => Some(Utc::now()),
        "enable" => None,
        _ => return Err(UiError::not_found("action")),
    };
    if !s.store().set_operator_disabled(&signed.operator.workspace_id, &id, at).await? {
        return Err(UiError::not_found("operator"));
    }
    audit(&s, signed.audit_entry(&format!("operator.{action}"), &id, json!({}))).await?;
    Ok(done("/settings", &format!("Operator {id}: {action}d.")))
}
