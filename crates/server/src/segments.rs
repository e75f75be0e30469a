//! The segments API: define segments in the filter language, preview them, read their
//! members and the stream of entries and exits.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use membership::{Definition, Error};
use serde_json::{Value, json};
use store::SubjectKind;

use crate::api::{body_json, page_json, page_request};
use crate::intel::{operator, workspace};
use crate::{ApiError, AppState};

/// The most members a preview lists.
const MAX_SAMPLE: usize = 100;

pub(crate) fn engine_error(e: Error) -> ApiError {
    match e {
        Error::Invalid(e) => ApiError {
            details: Some(json!({"position": {"line": e.line, "column": e.column, "length": e.length}})),
            ..ApiError::bad_request("invalid_condition", e.to_string()).field("condition")
        },
        Error::Refused(m) => {
            let (field, message) = match m.split_once(": ") {
                Some((f @ ("name" | "kind" | "condition"), rest)) => (Some(f), rest.to_owned()),
                _ => (None, m.clone()),
            };
            let status = if message.contains("exists") { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
            let code = if status == StatusCode::CONFLICT { "conflict" } else { "invalid_segment" };
            let e = ApiError::new(status, code, message);
            match field {
                Some(f) => e.field(f),
                None => e,
            }
        }
        Error::NotFound => ApiError::not_found("segment", "no such segment in this workspace"),
        Error::Store(e) => e.into(),
    }
}

fn definition(v: Value) -> Result<Definition, ApiError> {
    let text = |field: &'static str, required: bool| -> Result<Option<String>, ApiError> {
        match v.get(field) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => {
                Err(ApiError::bad_request("invalid_segment", format!("`{field}` is required")).field(field))
            }
            Some(_) => {
                Err(ApiError::bad_request("invalid_segment", format!("`{field}` must be a string")).field(field))
            }
        }
    };
    let kind = kind(v.get("kind"))?;
    Ok(Definition {
        name: text("name", true)?.unwrap_or_default(),
        kind,
        condition: text("condition", true)?.unwrap_or_default(),
        description: text("description", false)?,
    })
}

fn kind(v: Option<&Value>) -> Result<SubjectKind, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(SubjectKind::Accounts),
        Some(Value::String(s)) => SubjectKind::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_segment", "`kind` must be \"accounts\" or \"people\"").field("kind")
        }),
        Some(_) => Err(ApiError::bad_request("invalid_segment", "`kind` must be a string").field("kind")),
    }
}

/// `GET /api/v1/segments`: every segment with its size.
pub(crate) async fn list_segments(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let mut out = Vec::new();
    for seg in s.store().list_segments(&ws).await? {
        let size = s.store().segment_size(&ws, &seg.segment_id).await?;
        out.push(json!({"segment": seg, "size": size}));
    }
    Ok(Json(json!({"data": out})).into_response())
}

/// `POST /api/v1/segments`: checks and saves a segment, then evaluates every account for it.
pub(crate) async fn create_segment(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let d = definition(body_json(&body)?)?;
    let saved = s.membership().create(&ws, &d, Utc::now()).await.map_err(engine_error)?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

/// `POST /api/v1/segments/preview`: what a condition selects now, saving nothing.
pub(crate) async fn preview_segment(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let v = body_json(&body)?;
    let kind = kind(v.get("kind"))?;
    let Some(condition) = v.get("condition").and_then(Value::as_str) else {
        return Err(ApiError::bad_request("invalid_segment", "`condition` is required, as a string").field("condition"));
    };
    let sample = match v.get("sample") {
        None | Some(Value::Null) => 10,
        Some(n) => match n.as_u64() {
            Some(n) if n as usize <= MAX_SAMPLE => n as usize,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("`sample` must be a whole number from 0 to {MAX_SAMPLE}"),
                )
                .field("sample"));
            }
        },
    };
    let preview = s.membership().preview(&ws, kind, condition, Utc::now(), sample).await.map_err(engine_error)?;
    Ok(Json(preview).into_response())
}

/// `GET /api/v1/segments/{id}`.
pub(crate) async fn get_segment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let seg = s.store().get_segment(&ws, &id).await?.ok_or_else(|| engine_error(Error::NotFound))?;
    let size = s.store().segment_size(&ws, &id).await?;
    Ok(Json(json!({"segment": seg, "size": size})).into_response())
}

/// `PUT /api/v1/segments/{id}`: replaces the definition and evaluates every account again.
pub(crate) async fn update_segment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    let d = definition(body_json(&body)?)?;
    let saved = s.membership().update(&ws, &id, &d, Utc::now()).await.map_err(engine_error)?;
    Ok(Json(saved).into_response())
}

/// `DELETE /api/v1/segments/{id}`.
pub(crate) async fn delete_segment(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = operator(&s, &headers).await?.workspace_id;
    s.membership().delete(&ws, &id).await.map_err(engine_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/segments/{id}/members`: current members by id, with when they entered.
pub(crate) async fn segment_members(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    if s.store().get_segment(&ws, &id).await?.is_none() {
        return Err(engine_error(Error::NotFound));
    }
    let page = s.store().segment_members(&ws, &id, &page_request(&q)?).await?;
    Ok(page_json(page))
}

/// `GET /api/v1/accounts/{id}/segments` and `/api/v1/people/{id}/segments`: the segments a
/// subject is a member of, with when it entered each.
pub(crate) async fn subject_segments(
    s: &AppState,
    ws: &domain::WorkspaceId,
    subject: &str,
) -> Result<Response, ApiError> {
    let segments: std::collections::HashMap<String, store::SegmentRecord> =
        s.store().list_segments(ws).await?.into_iter().map(|seg| (seg.segment_id.clone(), seg)).collect();
    let mut out: Vec<Value> = s
        .store()
        .memberships_of(ws, subject)
        .await?
        .into_iter()
        .filter_map(|m| {
            let seg = segments.get(&m.segment_id)?;
            Some(json!({"segment_id": m.segment_id, "name": seg.name, "kind": seg.kind, "since": m.since}))
        })
        .collect();
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(json!({"data": out})).into_response())
}

pub(crate) async fn account_segments(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let account = crate::api::existing_account(&s, &ws, &id).await?;
    subject_segments(&s, &ws, account.as_str()).await
}

pub(crate) async fn person_segments(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let person = s
        .store()
        .get_person(&ws, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("person", format!("no person {id:?} in this workspace")))?;
    subject_segments(&s, &ws, &person.person_id).await
}

/// `GET /api/v1/segments/changes?after=SEQ&limit=N`: entries and exits in order, from after
/// `after` (0: from the start).
pub(crate) async fn segment_changes(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let ws = workspace(&s, &headers).await?;
    let after = match q.get("after").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request("invalid_parameter", "`after` must be a whole number, 0 or more").field("after")
        })?,
    };
    let limit = page_request(&q)?.limit;
    let changes = s.store().segment_changes(&ws, after, limit).await?;
    let next = changes.last().map_or(after, |c| c.seq);
    Ok(Json(json!({"data": changes, "next_after": next})).into_response())
}
