//! The read API: accounts, people and events of the caller's workspace, with cursor paging.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use domain::{AccountId, EventType, WorkspaceId};
use serde::Serialize;
use serde_json::json;
use store::{Cursor, EventFilter, Page, PageRequest};

use crate::{ApiError, AppState, auth};

type Params = Query<HashMap<String, String>>;

const OPENAPI: &str = include_str!("openapi.json");

pub(crate) async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn workspace(state: &AppState, headers: &HeaderMap) -> Result<WorkspaceId, ApiError> {
    Ok(auth::secret_key(state, headers).await?.workspace_id)
}

pub(crate) fn page_request(q: &HashMap<String, String>) -> Result<PageRequest, ApiError> {
    let limit = match q.get("limit") {
        None => store::DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=store::MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("`limit` must be a whole number from 1 to {}", store::MAX_LIMIT),
                )
                .field("limit"));
            }
        },
    };
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(Cursor::decode(c).map_err(ApiError::from)?),
    };
    Ok(PageRequest { limit, after })
}

fn account_id(id: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(id).map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()).field("id"))
}

fn time_param(q: &HashMap<String, String>, name: &'static str) -> Result<Option<domain::Timestamp>, ApiError> {
    q.get(name)
        .map(|s| {
            capture::parse_timestamp(s).ok_or_else(|| {
                ApiError::bad_request("invalid_parameter", format!("`{name}` must be an ISO 8601 timestamp"))
                    .field(name)
            })
        })
        .transpose()
}

/// A JSON request body, or `invalid_json` saying why not.
pub(crate) fn body_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))
}

pub(crate) fn page_json<T: Serialize>(page: Page<T>) -> Response {
    Json(json!({"data": page.items, "next_cursor": page.next.map(|c| c.encode())})).into_response()
}

pub(crate) async fn get_account(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let account = s.store().get_account(&ws, &account_id(&id)?).await?;
    let account =
        account.ok_or_else(|| ApiError::not_found("account", format!("no account {id:?} in this workspace")))?;
    Ok(Json(account).into_response())
}

pub(crate) async fn existing_account(s: &AppState, ws: &WorkspaceId, id: &str) -> Result<AccountId, ApiError> {
    let account = account_id(id)?;
    if s.store().get_account(ws, &account).await?.is_none() {
        return Err(ApiError::not_found("account", format!("no account {id:?} in this workspace")));
    }
    Ok(account)
}

pub(crate) async fn account_people(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let page = page_request(&q)?;
    let account = existing_account(&s, &ws, &id).await?;
    Ok(page_json(s.store().account_people(&ws, &account, &page).await?))
}

pub(crate) async fn account_timeline(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let page = page_request(&q)?;
    let account = existing_account(&s, &ws, &id).await?;
    Ok(page_json(s.store().account_timeline(&ws, &account, &page).await?))
}

pub(crate) async fn get_person(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let person = s.store().get_person(&ws, &id).await?;
    let person = person.ok_or_else(|| ApiError::not_found("person", format!("no person {id:?} in this workspace")))?;
    Ok(Json(person).into_response())
}

pub(crate) async fn list_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let filter = EventFilter {
        message_id: q.get("message_id").cloned(),
        user_id: q.get("user_id").cloned(),
        account_id: q.get("account_id").map(|a| account_id(a).map_err(|e| e.field("account_id"))).transpose()?,
        kind: q
            .get("type")
            .map(|t| {
                t.parse::<EventType>()
                    .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()).field("type"))
            })
            .transpose()?,
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
    };
    Ok(page_json(s.store().list_events(&ws, &filter, &page_request(&q)?).await?))
}
