//! Signing in and out, the session cookie, CSRF tokens, login rate limiting, and the checks
//! every dashboard request passes: a live session, a valid CSRF token on anything that
//! changes state, and a role high enough for the route.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use domain::{KeyHash, KeyRole};
use store::{AuditEntry, Operator, OperatorSession};

use super::{UiError, audit, pages as page};
use crate::AppState;

pub(crate) const COOKIE: &str = "steward_session";
/// The sign-in form's own CSRF token, set with the form (only sent back to `/login`): a
/// sign-in is accepted only with the same token in the form, so another site cannot sign a
/// browser in to an account of its choosing.
pub(crate) const LOGIN_COOKIE: &str = "steward_login";

/// How sessions and sign-ins behave.
#[derive(Clone, Debug)]
pub struct UiConfig {
    /// Mark the session cookie `Secure` (set when Steward is served over HTTPS, directly or
    /// behind a proxy).
    pub secure_cookies: bool,
    /// A session ends this long after sign-in, however active.
    pub session_ttl: Duration,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// Failed sign-ins allowed per email and per client address within `failure_window`.
    pub max_failures: usize,
    pub failure_window: Duration,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(2 * 3600),
            max_failures: 5,
            failure_window: Duration::from_secs(15 * 60),
        }
    }
}

/// Seconds until `key` (an email or a client address) may try to sign in again, when it has
/// used up its failures in the window. Failures are kept in the store, so that every
/// process sharing a database counts them together.
async fn blocked_for(s: &AppState, key: &str, config: &UiConfig) -> Result<Option<u64>, UiError> {
    let now = Utc::now();
    let window = chrono::Duration::from_std(config.failure_window).unwrap_or(chrono::Duration::minutes(15));
    let (n, oldest) = s.store().sign_in_failures(key, now - window).await?;
    if (n as usize) < config.max_failures {
        return Ok(None);
    }
    let Some(oldest) = oldest else { return Ok(None) };
    Ok(Some((oldest + window - now).num_seconds().max(1) as u64))
}

async fn record_failure(s: &AppState, key: &str, config: &UiConfig) -> Result<(), UiError> {
    let now = Utc::now();
    // Older failures count for nothing: forgotten as new ones come.
    let horizon = chrono::Duration::from_std(config.failure_window * 2).unwrap_or(chrono::Duration::minutes(30));
    s.store().record_sign_in_failure(key, now, now - horizon).await?;
    Ok(())
}

/// The signed-in operator of a dashboard request.
#[derive(Clone, Debug)]
pub(crate) struct Signed {
    pub operator: Operator,
    pub session: OperatorSession,
    pub workspace_name: String,
}

impl Signed {
    pub(crate) fn can(&self, role: KeyRole) -> bool {
        rank(self.operator.role) >= rank(role)
    }

    /// How the audit log names this operator.
    pub(crate) fn actor(&self) -> String {
        self.operator.operator_id.clone()
    }

    /// An entry of the audit log: this operator did `action` to `target`, now.
    pub(crate) fn audit_entry(&self, action: &str, target: &str, details: serde_json::Value) -> AuditEntry {
        AuditEntry {
            seq: 0,
            workspace_id: self.operator.workspace_id.clone(),
            actor: self.actor(),
            action: action.into(),
            target: target.into(),
            details,
            at: Utc::now(),
        }
    }
}

fn rank(role: KeyRole) -> u8 {
    match role {
        KeyRole::Admin => 3,
        KeyRole::Member => 2,
        KeyRole::Viewer => 1,
        KeyRole::Write => 0,
    }
}

pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE)
}

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == wanted && !value.is_empty()).then(|| value.to_owned())
    })
}

/// The sign-in form's token: the browser's, when it has a well-formed one, else a new one.
fn login_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, LOGIN_COOKIE) {
        Some(t) if t.len() == 32 && t.bytes().all(|b| b.is_ascii_alphanumeric()) => (t, false),
        _ => (domain::random_token(32), true),
    }
}

fn login_cookie(token: &str, config: &UiConfig, max_age: u64) -> HeaderValue {
    let secure = if config.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/login; Max-Age={max_age}{secure}"
    ))
    .expect("a cookie of token characters")
}

/// The sign-in form with `status`, carrying the browser's sign-in token (set when new).
fn login_page(
    s: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    (email, workspace, next, error): (&str, &str, &str, &str),
) -> Result<Response, UiError> {
    let (token, new) = login_token(headers);
    let html = page::login(email, workspace, next, error, &token)?;
    let mut resp = (status, html).into_response();
    if new {
        resp.headers_mut().insert(header::SET_COOKIE, login_cookie(&token, &s.inner.config.ui, 3600));
    }
    Ok(resp)
}

/// `GET /login`: the sign-in form.
pub(crate) async fn login_form(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let next = q.get("next").cloned().unwrap_or_default();
    login_page(&s, &headers, StatusCode::OK, ("", "", &next, ""))
}

fn session_cookie(token: &str, config: &UiConfig, max_age: u64) -> HeaderValue {
    let secure = if config.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"))
        .expect("a cookie of token characters")
}

/// Equal bytes, compared in time that does not depend on where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn client_address(req_extensions: &axum::http::Extensions) -> String {
    req_extensions.get::<ConnectInfo<SocketAddr>>().map_or_else(|| "local".to_owned(), |c| c.0.ip().to_string())
}

/// The workspace and email of a sign-in form: the workspace may be left out when the server
/// has one workspace with an operator of that email.
async fn find_operator(s: &AppState, workspace: &str, email: &str) -> Result<Option<Operator>, UiError> {
    let store = s.store();
    if !workspace.is_empty() {
        let Ok(ws) = domain::WorkspaceId::parse(workspace) else { return Ok(None) };
        return Ok(store.find_operator_by_email(&ws, email).await?);
    }
    let mut found = Vec::new();
    for w in store.list_workspaces().await? {
        if let Some(op) = store.find_operator_by_email(&w.workspace_id, email).await? {
            found.push(op);
        }
    }
    Ok(if found.len() == 1 { found.pop() } else { None })
}

/// `POST /login`: email, password (and a workspace id when the email is in several).
pub(crate) async fn login(State(s): State<AppState>, req: Request) -> Result<Response, UiError> {
    let address = client_address(req.extensions());
    let headers = req.headers().clone();
    let form = super::form_of(req).await?;
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (email, workspace, next) = (field("email").to_lowercase(), field("workspace"), field("next"));
    // The form's token must be the one its page set: first, before anything is looked up.
    let token = cookie(&headers, LOGIN_COOKIE);
    if !token.is_some_and(|t| same(t.as_bytes(), field("csrf").as_bytes())) {
        tracing::warn!(address = %address, "refused a sign-in without the form's token");
        let expired = "This sign-in form has expired or did not come from Steward; please sign in again.";
        return login_page(&s, &headers, StatusCode::FORBIDDEN, (&email, &workspace, &next, expired));
    }
    let password = form.get("password").cloned().unwrap_or_default();
    let config = &s.inner.config.ui;
    let (by_email, by_address) = (format!("email:{email}"), format!("ip:{address}"));
    let blocked = blocked_for(&s, &by_email, config).await?.max(blocked_for(&s, &by_address, config).await?);
    if let Some(secs) = blocked {
        let mut resp = login_page(
            &s,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            (&email, &workspace, &next, "Too many failed sign-ins; try again later."),
        )?;
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(resp);
    }
    let operator = find_operator(&s, &workspace, &email).await?;
    let hash = operator.as_ref().and_then(|o| o.password_hash.clone());
    // Always one argon2 check, whether or not the email is known.
    let matches = {
        let hash = hash.unwrap_or_else(|| super::password::decoy().to_owned());
        let password = password.clone();
        tokio::task::spawn_blocking(move || super::password::verify(&password, &hash)).await.unwrap_or(false)
    };
    let operator = match operator {
        Some(op) if matches && op.disabled_at.is_none() => op,
        _ => {
            record_failure(&s, &by_email, config).await?;
            record_failure(&s, &by_address, config).await?;
            tracing::info!(email = %email, address = %address, "a sign-in failed");
            let wrong = (email.as_str(), workspace.as_str(), next.as_str(), "Wrong email or password.");
            return login_page(&s, &headers, StatusCode::UNAUTHORIZED, wrong);
        }
    };
    s.store().clear_sign_in_failures(&by_email).await?;
    let token = domain::random_token(43);
    let at = Utc::now();
    let session = OperatorSession {
        token_hash: KeyHash::of(&token).0,
        workspace_id: operator.workspace_id.clone(),
        operator_id: operator.operator_id.clone(),
        csrf_token: domain::random_token(32),
        created_at: at,
        last_seen_at: at,
        expires_at: at + chrono::Duration::from_std(config.session_ttl).unwrap_or(chrono::Duration::hours(12)),
    };
    s.store().insert_session(&session).await?;
    audit(
        &s,
        AuditEntry {
            seq: 0,
            workspace_id: operator.workspace_id.clone(),
            actor: operator.operator_id.clone(),
            action: "session.sign_in".into(),
            target: operator.email.clone(),
            details: serde_json::json!({"address": address}),
            at,
        },
    )
    .await?;
    // Only a path of ours: never an address elsewhere.
    let next = if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/overview".to_owned()
    };
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&token, config, config.session_ttl.as_secs()));
    // The sign-in token has served: a later sign-in gets a new one.
    resp.headers_mut().append(header::SET_COOKIE, login_cookie("", config, 0));
    Ok(resp)
}

/// `POST /logout`: ends the session (the CSRF check has passed).
pub(crate) async fn logout(
    State(s): State<AppState>,
    axum::Extension(signed): axum::Extension<Signed>,
) -> Result<Response, UiError> {
    s.store().delete_session(&signed.session.token_hash).await?;
    audit(&s, signed.audit_entry("session.sign_out", &signed.operator.email, serde_json::json!({}))).await?;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie("", &s.inner.config.ui, 0));
    Ok(resp)
}

/// The signed-in operator of a request, if its session is live.
async fn signed_in(s: &AppState, headers: &HeaderMap) -> Result<Option<Signed>, UiError> {
    let Some(token) = cookie_token(headers) else { return Ok(None) };
    let hash = KeyHash::of(&token).0;
    let Some(found) = s.store().find_session(&hash).await? else { return Ok(None) };
    let now = Utc::now();
    let idle = chrono::Duration::from_std(s.inner.config.ui.idle_timeout).unwrap_or(chrono::Duration::hours(2));
    if found.session.expires_at <= now
        || found.session.last_seen_at + idle <= now
        || found.operator.disabled_at.is_some()
    {
        s.store().delete_session(&hash).await?;
        return Ok(None);
    }
    if now - found.session.last_seen_at > chrono::Duration::minutes(1) {
        s.store().touch_session(&hash, now).await?;
    }
    let workspace_name = s
        .store()
        .get_workspace(&found.operator.workspace_id)
        .await?
        .map_or_else(|| found.operator.workspace_id.to_string(), |w| w.name);
    Ok(Some(Signed { operator: found.operator, session: found.session, workspace_name }))
}

/// Every dashboard route behind sign-in: no live session sends a page to the sign-in form
/// (401 for anything else); a request that changes state must carry the session's CSRF
/// token (the `csrf` form field or the `X-CSRF-Token` header), or is refused with 403.
pub(crate) async fn require_session(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let signed = match signed_in(&s, req.headers()).await {
        Ok(Some(signed)) => signed,
        Ok(None) if req.method() == Method::GET || req.method() == Method::HEAD => {
            let path = req.uri().path_and_query().map_or("/overview", |p| p.as_str());
            let to = format!("/login?next={}", super::url_encode(path));
            return Redirect::to(&to).into_response();
        }
        Ok(None) => return UiError::status(StatusCode::UNAUTHORIZED, "Sign in first.").into_response(),
        Err(e) => return e.into_response(),
    };
    let mut req = req;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let header = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let token = match header {
            Some(t) => Some(t),
            None => {
                // The form field: read the body, then hand it on unchanged.
                let (parts, body) = req.into_parts();
                let bytes = match axum::body::to_bytes(body, super::MAX_FORM).await {
                    Ok(b) => b,
                    Err(_) => {
                        return UiError::status(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
                            .into_response();
                    }
                };
                let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                    .ok()
                    .and_then(|fields| fields.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
                req = Request::from_parts(parts, axum::body::Body::from(bytes));
                token
            }
        };
        if !token.is_some_and(|t| same(t.as_bytes(), signed.session.csrf_token.as_bytes())) {
            tracing::warn!(operator = %signed.operator.operator_id, path = %req.uri().path(), "refused a request without a valid CSRF token");
            return UiError::status(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from Steward: reload the page and try again.",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(signed);
    next.run(req).await
}

/// Routes for members (and admins): acting on accounts, alerts, tasks, segments, journeys.
pub(crate) async fn require_member(req: Request, next: Next) -> Response {
    require(KeyRole::Member, req, next).await
}

/// Routes for admins: keys, connectors, operators, settings, the audit log.
pub(crate) async fn require_admin(req: Request, next: Next) -> Response {
    require(KeyRole::Admin, req, next).await
}

async fn require(role: KeyRole, req: Request, next: Next) -> Response {
    match req.extensions().get::<Signed>() {
        Some(signed) if signed.can(role) => next.run(req).await,
        Some(signed) => {
            tracing::warn!(operator = %signed.operator.operator_id, path = %req.uri().path(), "refused: role too low");
            UiError::status(
                StatusCode::FORBIDDEN,
                format!("This needs the {role} role; you are a {}.", signed.operator.role),
            )
            .into_response()
        }
        None => UiError::status(StatusCode::UNAUTHORIZED, "Sign in first.").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; steward_session=tok; b=2"));
        assert_eq!(cookie_token(&h).as_deref(), Some("tok"));
        h.insert(header::COOKIE, HeaderValue::from_static("steward_session="));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
