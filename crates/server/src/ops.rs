//! Operating the server: liveness, readiness, Prometheus metrics, request accounting.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// The process-wide recorder: installed once, shared by every server in the process.
pub(crate) fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist (an embedding program's); then ours just renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.inner.store.list_workspaces().await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}")).into_response(),
    }
}

/// Prometheus text format. Queue depth and processing lag are read from the store at scrape
/// time, per workspace.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let inflight = state.inner.config.max_inflight_events - state.inner.inflight.available_permits();
    metrics::gauge!("steward_ingest_inflight_events").set(inflight as f64);
    if let Ok(workspaces) = state.inner.store.list_workspaces().await {
        for ws in workspaces {
            if let Ok(status) = state.inner.store.log_status(&ws.workspace_id).await {
                let id = ws.workspace_id.to_string();
                metrics::gauge!("steward_processing_queue_depth", "workspace" => id.clone())
                    .set(status.pending_events as f64);
                metrics::gauge!("steward_event_log_size", "workspace" => id.clone()).set(status.total_events as f64);
                let lag = status
                    .oldest_pending_received_at
                    .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::gauge!("steward_processing_lag_seconds", "workspace" => id).set(lag);
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.inner.metrics.render()).into_response()
}

/// Counts and times every request by route and status.
pub(crate) async fn track_requests(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let elapsed = start.elapsed().as_secs_f64();
    metrics::counter!("steward_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("steward_http_request_duration_seconds", "route" => route).record(elapsed);
    resp
}
