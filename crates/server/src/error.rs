//! The one error shape of the HTTP API: `{"error": {"code", "message", "field"?}}` with a
//! status. Codes are stable and documented in the OpenAPI description.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
    /// Extra members of the body, e.g. the rejected messages of a batch.
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None, retry_after: None, details: None }
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(what: &'static str, message: impl Into<String>) -> Self {
        let code = match what {
            "account" => "account_not_found",
            "person" => "person_not_found",
            "segment" => "segment_not_found",
            "connector" => "connector_not_found",
            _ => "not_found",
        };
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        use store::StoreError::*;
        match e {
            InvalidCursor => {
                ApiError::bad_request("invalid_parameter", "the cursor is not valid for this list").field("cursor")
            }
            Full(m) => {
                tracing::error!(error = %m, "storage is full; refusing writes");
                ApiError {
                    retry_after: Some(30),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_full",
                        "storage is full; nothing was stored",
                    )
                }
            }
            Conflict(what) => ApiError::new(StatusCode::CONFLICT, "conflict", format!("{what} already exists")),
            Busy(m) => {
                tracing::warn!(error = %m, "storage is busy; asking the client to retry");
                ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "overloaded",
                        "too many writes are waiting; nothing was stored, retry shortly",
                    )
                }
            }
            Backend(m) => {
                tracing::error!(error = %m, "storage error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    "the request could not be completed; nothing was stored",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("steward_http_errors_total", "code" => self.code).increment(1);
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            error["field"] = json!(f);
        }
        let mut body = json!({"success": false, "error": error});
        if let Some(serde_json::Value::Object(extra)) = self.details {
            body.as_object_mut().expect("an object").extend(extra);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_store_asks_the_client_to_retry() {
        let response = ApiError::from(store::StoreError::Busy("queue full".into())).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("1"));
    }
}
