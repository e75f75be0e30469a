//! The Segment HTTP Tracking API: `/v1/batch` and the single-message endpoints. A request is
//! answered 200 only once its messages are durably committed.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use capture::{BodyError, Parsed, RequestError};
use chrono::Utc;
use domain::EventType;
use serde_json::json;

use crate::{ApiError, AppState, auth};

pub(crate) async fn batch(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
    ingest(state, headers, body, None).await.unwrap_or_else(IntoResponse::into_response)
}

macro_rules! single {
    ($($name:ident => $kind:expr),*) => {$(
        pub(crate) async fn $name(state: State<AppState>, headers: HeaderMap, body: Body) -> Response {
            ingest(state, headers, body, Some($kind)).await.unwrap_or_else(IntoResponse::into_response)
        }
    )*};
}

single!(track => EventType::Track, identify => EventType::Identify, group => EventType::Group,
        page => EventType::Page, screen => EventType::Screen, alias => EventType::Alias);

async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
    kind: Option<EventType>,
) -> Result<Response, ApiError> {
    let received_at = Utc::now();
    let limits = &state.inner.config.limits;
    let raw = axum::body::to_bytes(body, limits.max_batch_bytes)
        .await
        .map_err(|_| request_error(RequestError::Body(BodyError::TooLarge { limit: limits.max_batch_bytes })))?;
    let decoded = capture::decode_body(&raw, limits.max_batch_bytes).map_err(|e| request_error(e.into()))?;
    let parsed = match kind {
        None => capture::parse_batch(&decoded, received_at, limits),
        Some(k) => capture::parse_single(k, &decoded, received_at, limits),
    }
    .map_err(request_error)?;
    // Authenticate before reporting anything about the messages themselves.
    let key = auth::write_key(&state, &headers, parsed.write_key.as_deref()).await?;
    let Parsed { events, rejected, received, .. } = parsed;
    metrics::counter!("steward_events_received_total").increment(received as u64);
    metrics::counter!("steward_events_rejected_total").increment(rejected.len() as u64);

    if events.is_empty() && !rejected.is_empty() {
        let first = &rejected[0];
        let mut err = ApiError::bad_request(first.code, format!("no message could be stored: {}", first.message));
        if let Some(f) = first.field {
            err = err.field(f);
        }
        err.details = Some(json!({ "rejected": rejected }));
        return Err(err);
    }

    let n = events.len();
    let permit = match state.inner.inflight.try_acquire_many(n as u32) {
        Ok(p) => p,
        Err(_) => {
            metrics::counter!("steward_capture_overloaded_total").increment(1);
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "overloaded",
                    "too many events are waiting to be stored; retry shortly",
                )
            });
        }
    };
    let report = if state.inner.config.discard_events {
        store::AppendReport { stored: n, duplicates: 0 }
    } else {
        state.inner.store.append_events(&key.workspace_id, &events).await?
    };
    drop(permit);
    metrics::counter!("steward_events_stored_total").increment(report.stored as u64);
    metrics::counter!("steward_events_duplicate_total").increment(report.duplicates as u64);
    if let Some(p) = &state.inner.processor {
        p.wake();
    }
    let mut body = json!({"success": true, "stored": report.stored, "duplicates": report.duplicates});
    if !rejected.is_empty() {
        body["rejected"] = json!(rejected);
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn request_error(e: RequestError) -> ApiError {
    let message = e.to_string();
    match e {
        RequestError::Body(BodyError::TooLarge { .. }) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
        }
        RequestError::Body(BodyError::BadGzip(_)) => ApiError::bad_request("invalid_gzip", message),
        RequestError::Body(BodyError::Empty) => ApiError::bad_request("empty_body", message),
        RequestError::InvalidJson(_) => ApiError::bad_request("invalid_json", message),
        RequestError::NotAnObject => ApiError::bad_request("invalid_json", message),
        RequestError::MissingBatch => ApiError::bad_request("missing_batch", message).field("batch"),
        RequestError::TooManyMessages { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_messages", message).field("batch")
        }
        RequestError::MessageTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", message)
        }
        RequestError::InvalidField { field, .. } => ApiError::bad_request("invalid_field", message).field(field),
    }
}
