//! The web dashboard: server-rendered pages for operators who sign in (`/login`,
//! `/overview`, `/accounts`, ...), separate from the API under `/api/v1`.
//!
//! Templates, CSS and JS are embedded in the binary; nothing is fetched at run time. Pages
//! work without JavaScript, which only adds live validation and confirmations. Every route
//! but the sign-in form passes [`session::require_session`] (a live session; a CSRF token on
//! anything that changes state), and the routes that change things pass a role check too, so
//! what a role may do is decided in one place: [`routes`].

mod chart;
mod headers;
mod integrations;
pub(crate) mod next;
mod pages;
pub mod password;
pub(crate) mod session;
mod settings;
mod work;

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;
use store::AuditEntry;

pub(crate) use headers::security_headers;
pub use session::UiConfig;

use crate::AppState;

/// The largest form body read.
pub(crate) const MAX_FORM: usize = 256 * 1024;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("error.html", include_str!("templates/error.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("accounts.html", include_str!("templates/accounts.html")),
        ("account.html", include_str!("templates/account.html")),
        ("alerts.html", include_str!("templates/alerts.html")),
        ("tasks.html", include_str!("templates/tasks.html")),
        ("segments.html", include_str!("templates/segments.html")),
        ("journeys.html", include_str!("templates/journeys.html")),
        ("journey.html", include_str!("templates/journey.html")),
        ("models.html", include_str!("templates/models.html")),
        ("settings.html", include_str!("templates/settings.html")),
    ] {
        env.add_template(name, source).expect("templates parse");
    }
    env.add_filter("pct", |v: f64| format!("{:.0}%", v * 100.0));
    env.add_filter("num", |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") });
    env.add_filter("money", |minor: i64, currency: String| money(minor, &currency));
    env.add_filter("fixed", |v: f64, places: usize| format!("{v:.places$}"));
    env.add_filter("signed", |v: f64| format!("{v:+.2}"));
    env.add_filter("when", |v: String| v.get(..16).unwrap_or(&v).replace('T', " "));
    env
});

pub(crate) fn money(minor: i64, currency: &str) -> String {
    let major = minor as f64 / 100.0;
    let whole = format!("{:.0}", major.abs());
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped} {currency}", if major < 0.0 { "-" } else { "" })
}

/// A value for a template, from anything serializable.
pub(crate) fn ser<T: serde::Serialize>(v: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// A page rendered from `template` with `ctx`.
pub(crate) fn render(template: &str, ctx: minijinja::Value) -> Result<Html<String>, UiError> {
    let t = TEMPLATES.get_template(template).map_err(|e| UiError::internal(e.to_string()))?;
    t.render(ctx).map(Html).map_err(|e| UiError::internal(format!("{template}: {e:#}")))
}

/// What a dashboard request failed with: an HTML page with the status.
#[derive(Debug)]
pub(crate) struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    pub(crate) fn status(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError { status, message: message.into() }
    }
    pub(crate) fn not_found(what: &str) -> UiError {
        UiError::status(StatusCode::NOT_FOUND, format!("There is no such {what} in this workspace."))
    }
    pub(crate) fn bad(message: impl Into<String>) -> UiError {
        UiError::status(StatusCode::BAD_REQUEST, message)
    }
    fn internal(message: String) -> UiError {
        tracing::error!(error = %message, "a dashboard page failed");
        UiError::status(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong; nothing was changed.")
    }
}

impl From<store::StoreError> for UiError {
    fn from(e: store::StoreError) -> Self {
        let api = crate::ApiError::from(e);
        UiError::status(api.status, api.message)
    }
}

impl From<crate::ApiError> for UiError {
    fn from(e: crate::ApiError) -> Self {
        UiError::status(e.status, e.message)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let html = TEMPLATES
            .get_template("error.html")
            .and_then(|t| {
                t.render(minijinja::context! { status => self.status.as_u16(), title, message => self.message })
            })
            .unwrap_or_else(|_| "Error".into());
        (self.status, Html(html)).into_response()
    }
}

/// A form's fields (the last of a repeated name wins).
pub(crate) async fn form_of(req: Request) -> Result<HashMap<String, String>, UiError> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| UiError::status(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .map(|fields| fields.into_iter().collect())
        .map_err(|_| UiError::bad("The form could not be read."))
}

pub(crate) fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|e| e[1..].to_owned()).unwrap_or_default()
}

/// Writes an audit entry; a change that cannot be recorded is reported as failed.
pub(crate) async fn audit(s: &AppState, entry: AuditEntry) -> Result<(), UiError> {
    s.store().append_audit(&entry).await?;
    Ok(())
}

/// Back to `to` after a change, saying what was done.
pub(crate) fn done(to: &str, message: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}done={}", url_encode(message))).into_response()
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    resp
}

/// Every dashboard route, with who may use it.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let readers = Router::new()
        .route("/", get(|| async { Redirect::to("/overview") }))
        .route("/overview", get(pages::overview))
        .route("/accounts", get(pages::accounts))
        .route("/accounts/{id}", get(pages::account))
        .route("/alerts", get(work::alerts))
        .route("/tasks", get(work::tasks))
        .route("/segments", get(work::segments))
        .route("/segments/preview", post(work::preview_segment))
        .route("/journeys", get(work::journeys))
        .route("/journeys/{id}", get(work::journey))
        .route("/models", get(work::models))
        .route("/logout", post(session::logout));
    let members = Router::new()
        .route("/accounts/{id}/next/{kind}/task", post(next::create_task))
        .route("/alerts/{id}/{action}", post(work::act_on_alert))
        .route("/tasks/{id}/{status}", post(work::set_task))
        .route("/segments/new", post(work::create_segment))
        .route("/segments/{id}/edit", post(work::update_segment))
        .route("/segments/{id}/delete", post(work::delete_segment))
        .route("/journeys/{id}/{action}", post(work::set_journey))
        .route_layer(axum::middleware::from_fn(session::require_member));
    let admins = Router::new()
        .route("/settings", get(settings::page))
        .route("/settings/keys", post(settings::create_key))
        .route("/settings/keys/{id}/revoke", post(settings::revoke_key))
        .route("/settings/operators", post(settings::add_operator))
        .route("/settings/operators/{id}/{action}", post(settings::operator_action))
        .route("/settings/connectors/{provider}", post(integrations::save))
        .route("/settings/connectors/{provider}/sync", post(integrations::sync))
        .route("/settings/connectors/{provider}/{action}", post(integrations::switch))
        .route_layer(axum::middleware::from_fn(session::require_admin));
    let signed = readers
        .merge(members)
        .merge(admins)
        .route_layer(axum::middleware::from_fn_with_state(state, session::require_session));
    Router::new()
        .route("/login", get(session::login_form).post(session::login))
        .route("/assets/app.css", get(stylesheet))
        .route("/assets/app.js", get(script))
        .merge(signed)
}
