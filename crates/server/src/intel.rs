//! The account-intelligence API: scores with their explanations and history, predictions,
//! alerts and what operators do with them, models and their cards, scoring settings.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use domain::{ApiKey, KeyRole, WorkspaceId};
use serde_json::{Value, json};
use store::{AccountQuery, AccountSort, AlertAction, AlertFilter};

use crate::api::{existing_account, page_json, page_request};
use crate::{ApiError, AppState, auth};

type Params = Query<HashMap<String, String>>;

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_parameter", message).field(field)
}

fn parsed<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    field: &'static str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    q.get(field)
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<T>().map_err(|_| invalid(field, format!("`{field}` must be {what}"))))
        .transpose()
}

fn number(
    q: &HashMap<String, String>,
    field: &'static str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, ApiError> {
    let v: Option<f64> = parsed(q, field, "a number")?;
    match v {
        Some(x) if !x.is_finite() || !range.contains(&x) => {
            Err(invalid(field, format!("`{field}` must be from {} to {}", range.start(), range.end())))
        }
        v => Ok(v),
    }
}

/// The caller, who must be allowed to change things (admin or member).
pub(crate) async fn operator(s: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let key = auth::secret_key(s, headers).await?;
    if key.role == KeyRole::Viewer {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a viewer key can read but not change anything"));
    }
    Ok(key)
}

pub(crate) async fn admin(s: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let key = auth::secret_key(s, headers).await?;
    if key.role != KeyRole::Admin {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only an admin key can do this"));
    }
    Ok(key)
}

pub(crate) async fn workspace(s: &AppState, headers: &HeaderMap) -> Result<WorkspaceId, ApiError> {
    Ok(auth::secret_key(s, headers).await?.workspace_id)
}

fn scoring_error(e: scoring::Error) -> ApiError {
    match e {
        scoring::Error::Store(e) => e.into(),
        scoring::Error::Invalid(m) => {
            tracing::error!(error = %m, "scoring failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "scoring_failed", m)
        }
    }
}

fn service(s: &AppState) -> Result<&std::sync::Arc<scoring::service::Service>, ApiError> {
    s.inner.scoring.as_ref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "scoring_unavailable", "this server does not run scoring")
    })
}

fn text(q: &HashMap<String, String>, field: &str) -> Option<String> {
    q.get(field).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// `GET /api/v1/accounts`: with `sort`, `order`, `band`, `health_min`, `health_max`,
/// `churn_min`, `mrr_min`, `mrr_max`, `search`, `plan`, `owner`, `segment`; `count=true`
/// adds `total`, how many accounts match.
pub(crate) async fn list_accounts(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let page = page_request(&q)?;
    let sort = parsed::<AccountSort>(&q, "sort", "one of account_id, health, churn_risk, expansion, mrr")?;
    let descending = match q.get("order").map(String::as_str) {
        None | Some("") => {
            sort.is_some_and(|s| matches!(s, AccountSort::ChurnRisk | AccountSort::Mrr | AccountSort::Expansion))
        }
        Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(invalid("order", "`order` must be asc or desc")),
    };
    let query = AccountQuery {
        sort: sort.unwrap_or(AccountSort::Id),
        descending,
        band: parsed(&q, "band", "one of healthy, neutral, at_risk")?,
        health_min: number(&q, "health_min", 0.0..=100.0)?,
        health_max: number(&q, "health_max", 0.0..=100.0)?,
        churn_min: number(&q, "churn_min", 0.0..=1.0)?,
        mrr_min: parsed(&q, "mrr_min", "a whole number of minor units")?,
        mrr_max: parsed(&q, "mrr_max", "a whole number of minor units")?,
        search: text(&q, "search"),
        plan: text(&q, "plan"),
        owner: text(&q, "owner"),
        segment: text(&q, "segment"),
    };
    let listed = s.store().query_accounts(&ws, &query, &page).await?;
    let total = match q.get("count").map(String::as_str) {
        None | Some("" | "false") => None,
        Some("true") => Some(s.store().count_accounts(&ws, &query, None).await?),
        Some(_) => return Err(invalid("count", "`count` must be true or false")),
    };
    Ok(Json(json!({"data": listed.items, "next_cursor": listed.next.map(|c| c.encode()), "total": total}))
        .into_response())
}

/// `GET /api/v1/accounts/{id}/health`: the latest score, its components, trend and what moved,
/// and the daily history (`days`, default 90).
pub(crate) async fn account_health(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let account = existing_account(&s, &ws, &id).await?;
    let days: i64 = parsed(&q, "days", "a whole number of days")?.unwrap_or(90);
    if !(1..=3660).contains(&days) {
        return Err(invalid("days", "`days` must be from 1 to 3660"));
    }
    let Some(score) = s.store().account_score(&ws, &account).await? else {
        return Err(not_scored(&id));
    };
    let to = score.day.succ_opt().unwrap_or(score.day);
    let history = s.store().score_history(&ws, &account, to - chrono::Days::new(days as u64), to).await?;
    let explanation = score.explanation.to_value();
    let health = &explanation["health"];
    Ok(Json(json!({
        "account_id": account,
        "day": score.day,
        "score": score.health,
        "band": score.band,
        "profile": health["profile"],
        "components": health["components"],
        "trend": health["trend"],
        "moved": health["moved"],
        "moved_since": health["since"],
        "signals": explanation["signals"],
        "scored_at": score.scored_at,
        "history": history.iter().map(|p| json!({
            "day": p.day, "score": p.health, "band": p.band, "components": p.components
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// 404 for an account that exists but has no score yet.
fn not_scored(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_scored", format!("account {id:?} has not been scored yet"))
}

/// `GET /api/v1/accounts/{id}/predictions`: churn per horizon and expansion, with drivers.
pub(crate) async fn account_predictions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let account = existing_account(&s, &ws, &id).await?;
    let Some(score) = s.store().account_score(&ws, &account).await? else {
        return Err(not_scored(&id));
    };
    let mut explanation = score.explanation.to_value();
    scoring::read_priors(&mut explanation);
    Ok(Json(json!({
        "account_id": account,
        "day": score.day,
        "churn": explanation["churn"],
        "expansion": explanation["expansion"],
        "models": explanation["models"],
        "scored_at": score.scored_at,
    }))
    .into_response())
}

/// `GET /api/v1/accounts/{id}/actions`: the account's recommended next actions, most urgent
/// first, as its page in the dashboard shows them (each with its evidence, the playbook for
/// it and the open task made from it).
pub(crate) async fn account_actions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let account = existing_account(&s, &ws, &id).await?;
    let Some(loaded) = crate::ui::next::Loaded::of(s.store().as_ref(), &ws, &account).await? else {
        return Err(not_scored(&id));
    };
    let actions = crate::ui::next::shown(&loaded.recommendations(Utc::now()), &loaded.open_tasks);
    Ok(Json(json!({
        "account_id": account,
        "day": loaded.score.day,
        "scored_at": loaded.score.scored_at,
        "data": actions,
    }))
    .into_response())
}

/// `POST /api/v1/accounts/{id}/score`: scores the account again now.
pub(crate) async fn rescore_account(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let account = existing_account(&s, &ws, &id).await?;
    let score = service(&s)?.rescore(&ws, &account).await.map_err(scoring_error)?;
    let score = score.ok_or_else(|| ApiError::not_found("account", format!("no account {id:?} in this workspace")))?;
    Ok(Json(json!({"account_id": account, "day": score.day, "health": score.health, "band": score.band,
                   "churn_30d": score.churn_30d, "expansion": score.expansion}))
    .into_response())
}

/// `POST /api/v1/scores/run`: scores every account now.
pub(crate) async fn run_scoring(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let run = service(&s)?.score(&ws).await.map_err(scoring_error)?;
    Ok(Json(run).into_response())
}

/// `GET /api/v1/alerts`: with `status`, `unresolved`, `account_id`, `kind`, `severity`.
pub(crate) async fn list_alerts(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let page = page_request(&q)?;
    let filter = AlertFilter {
        status: parsed(&q, "status", "one of open, acknowledged, resolved")?,
        unresolved: parsed(&q, "unresolved", "true or false")?.unwrap_or(false),
        account_id: q
            .get("account_id")
            .map(|a| domain::AccountId::parse(a).map_err(|e| invalid("account_id", e.to_string())))
            .transpose()?,
        kind: parsed(&q, "kind", "risk or opportunity")?,
        severity: parsed(&q, "severity", "one of critical, high, medium, low")?,
    };
    Ok(page_json(s.store().list_alerts(&ws, &filter, &page).await?))
}

pub(crate) async fn get_alert(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let alert = s.store().get_alert(&ws, &id).await?;
    let alert = alert.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "alert_not_found", format!("no alert {id:?} in this workspace"))
    })?;
    Ok(Json(alert).into_response())
}

async fn act(s: AppState, headers: HeaderMap, id: String, action: AlertAction) -> Result<Response, ApiError> {
    let key = operator(&s, &headers).await?;
    let alert = s.store().update_alert(&key.workspace_id, &id, &action, &key.key_id, Utc::now()).await?;
    let alert = alert.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "alert_not_found", format!("no alert {id:?} in this workspace"))
    })?;
    Ok(Json(alert).into_response())
}

pub(crate) async fn acknowledge_alert(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(s, headers, id, AlertAction::Acknowledge).await
}

pub(crate) async fn resolve_alert(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(s, headers, id, AlertAction::Resolve).await
}

/// `POST /api/v1/alerts/{id}/feedback` with `{"useful": bool, "note": string?}`.
pub(crate) async fn alert_feedback(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))?;
    let useful = v
        .get("useful")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::bad_request("invalid_field", "`useful` must be true or false").field("useful"))?;
    let note = match v.get("note") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.len() <= 2000 => Some(n.clone()),
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_field", "`note` must be a string of at most 2000 bytes").field("note")
            );
        }
    };
    act(s, headers, id, AlertAction::Feedback { useful, note }).await
}

/// `GET /api/v1/kpis`: the CS KPIs by month as the last scoring run computed them, each
/// month with its value, numerator and denominator, and the activation rule they used.
pub(crate) async fn kpis(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let store = s.store();
    let report = store.kpis(&ws).await?;
    let settings = store.get_setting(&ws, scoring::settings::KEY).await?;
    let rule = settings.and_then(|v| scoring::ScoringSettings::parse(&v).ok()).unwrap_or_default().activation;
    let mut kpis = serde_json::Map::new();
    if let Some(r) = &report {
        for kpi in store::kpis::KPIS {
            let months: Vec<_> = r
                .series(kpi)
                .map(|m| json!({"month": m.month, "value": m.value(), "numerator": m.numerator, "denominator": m.denominator}))
                .collect();
            kpis.insert(kpi.as_str().to_owned(), json!(months));
        }
    }
    Ok(Json(json!({
        "computed_at": report.as_ref().map(|r| r.computed_at),
        "currency": report.as_ref().and_then(|r| r.currency),
        "activation_rule": rule,
        "kpis": kpis,
    }))
    .into_response())
}

/// `GET /api/v1/models`: every model with its card, newest first.
pub(crate) async fn list_models(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    Ok(Json(json!({"data": s.store().list_models(&ws).await?})).into_response())
}

/// `POST /api/v1/models/train`: trains now; each model replaces the active one only if it
/// does at least as well on the holdout.
pub(crate) async fn train_models(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = admin(&s, &headers).await?.workspace_id;
    let outcomes = service(&s)?.train(&ws).await.map_err(scoring_error)?;
    Ok(Json(json!({"data": outcomes})).into_response())
}

/// `GET /api/v1/settings/scoring`: the workspace's scoring settings (the defaults if unset).
pub(crate) async fn get_scoring_settings(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let settings = scoring::settings(s.store().as_ref(), &ws).await.map_err(scoring_error)?;
    Ok(Json(settings).into_response())
}

/// `PUT /api/v1/settings/scoring`: replaces them, after checking every part.
pub(crate) async fn put_scoring_settings(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = admin(&s, &headers).await?.workspace_id;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))?;
    let settings = scoring::ScoringSettings::parse(&v).map_err(|e| ApiError::bad_request("invalid_settings", e))?;
    let stored = serde_json::to_value(&settings).expect("settings serialize");
    s.store().put_setting(&ws, scoring::settings::KEY, &stored, Utc::now()).await?;
    Ok(Json(stored).into_response())
}
