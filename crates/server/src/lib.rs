//! Steward's HTTP server: the Segment-compatible capture endpoints, the read API, health and
//! metrics. Handlers turn wire input into domain types first thing and answer with one error
//! shape (see [`error::ApiError`]).

mod api;
mod auth;
mod connectors;
mod error;
mod ingest;
mod intel;
mod journeys;
mod messaging;
mod ops;
mod segments;
pub mod ui;

pub use error::ApiError;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use processor::Processor;
use store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub limits: capture::Limits,
    /// Events accepted but not yet committed, across all requests; beyond it capture answers
    /// 429 so memory stays bounded.
    pub max_inflight_events: usize,
    /// Benchmarks only: parse and validate, then answer without storing. Measures the
    /// parsing ceiling that durable ingest is compared with.
    pub discard_events: bool,
    /// How long a looked-up API key is trusted before it is looked up again (so a revoked key
    /// stops working within this time).
    pub key_cache_ttl: Duration,
    /// The dashboard's sessions and sign-ins.
    pub ui: ui::UiConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: capture::Limits::default(),
            max_inflight_events: 200_000,
            discard_events: false,
            key_cache_ttl: Duration::from_secs(5),
            ui: ui::UiConfig::default(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    processor: Option<Arc<Processor>>,
    config: ServerConfig,
    inflight: Semaphore,
    keys: auth::KeyCache,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    scoring: Option<Arc<scoring::service::Service>>,
    membership: Arc<membership::Engine>,
    runner: Arc<runner::Runner>,
    connectors: Option<Arc<::connectors::worker::Syncer>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, processor: Option<Arc<Processor>>, config: ServerConfig) -> AppState {
        let membership = Arc::new(membership::Engine::new(store.clone()));
        AppState {
            inner: Arc::new(Inner {
                inflight: Semaphore::new(config.max_inflight_events),
                keys: auth::KeyCache::new(config.key_cache_ttl),
                metrics: ops::metrics_handle(),
                membership: membership.clone(),
                runner: Arc::new(runner::Runner::new(store.clone(), membership)),
                store,
                processor,
                config,
                scoring: None,
                connectors: None,
            }),
        }
    }

    /// Serves scoring on demand (rescoring, training) through `service`.
    pub fn with_scoring(mut self, service: Arc<scoring::service::Service>) -> AppState {
        Arc::get_mut(&mut self.inner).expect("set before the state is shared").scoring = Some(service);
        self
    }

    /// Serves connectors (their API and webhooks) through `syncer`.
    pub fn with_connectors(mut self, syncer: Arc<::connectors::worker::Syncer>) -> AppState {
        Arc::get_mut(&mut self.inner).expect("set before the state is shared").connectors = Some(syncer);
        self
    }

    pub fn connectors(&self) -> Option<&Arc<::connectors::worker::Syncer>> {
        self.inner.connectors.as_ref()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Segments and their members.
    pub fn membership(&self) -> &Arc<membership::Engine> {
        &self.inner.membership
    }

    /// Journeys' runs.
    pub fn runner(&self) -> &Arc<runner::Runner> {
        &self.inner.runner
    }
}

pub fn router(state: AppState) -> Router {
    let capture = Router::new()
        .route("/v1/batch", post(ingest::batch))
        .route("/v1/import", post(ingest::batch))
        .route("/v1/track", post(ingest::track))
        .route("/v1/identify", post(ingest::identify))
        .route("/v1/group", post(ingest::group))
        .route("/v1/page", post(ingest::page))
        .route("/v1/screen", post(ingest::screen))
        .route("/v1/alias", post(ingest::alias));
    let api = Router::new()
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/accounts", get(intel::list_accounts))
        .route("/api/v1/accounts/{id}", get(api::get_account))
        .route("/api/v1/accounts/{id}/people", get(api::account_people))
        .route("/api/v1/accounts/{id}/timeline", get(api::account_timeline))
        .route("/api/v1/accounts/{id}/segments", get(segments::account_segments))
        .route("/api/v1/accounts/{id}/health", get(intel::account_health))
        .route("/api/v1/accounts/{id}/predictions", get(intel::account_predictions))
        .route("/api/v1/accounts/{id}/actions", get(intel::account_actions))
        .route("/api/v1/accounts/{id}/score", post(intel::rescore_account))
        .route("/api/v1/scores/run", post(intel::run_scoring))
        .route("/api/v1/alerts", get(intel::list_alerts))
        .route("/api/v1/alerts/{id}", get(intel::get_alert))
        .route("/api/v1/alerts/{id}/acknowledge", post(intel::acknowledge_alert))
        .route("/api/v1/alerts/{id}/resolve", post(intel::resolve_alert))
        .route("/api/v1/alerts/{id}/feedback", post(intel::alert_feedback))
        .route("/api/v1/models", get(intel::list_models))
        .route("/api/v1/kpis", get(intel::kpis))
        .route("/api/v1/models/train", post(intel::train_models))
        .route("/api/v1/settings/scoring", get(intel::get_scoring_settings).put(intel::put_scoring_settings))
        .route("/api/v1/segments", get(segments::list_segments).post(segments::create_segment))
        .route("/api/v1/segments/preview", post(segments::preview_segment))
        .route("/api/v1/segments/changes", get(segments::segment_changes))
        .route(
            "/api/v1/segments/{id}",
            get(segments::get_segment).put(segments::update_segment).delete(segments::delete_segment),
        )
        .route("/api/v1/segments/{id}/members", get(segments::segment_members))
        .route("/api/v1/people/{id}", get(api::get_person))
        .route("/api/v1/people/{id}/segments", get(segments::person_segments))
        .route("/api/v1/events", get(api::list_events))
        .route("/api/v1/journeys", get(journeys::list_journeys).post(journeys::create_journey))
        .route("/api/v1/journeys/validate", post(journeys::validate_journey))
        .route("/api/v1/journeys/{id}", get(journeys::get_journey).put(journeys::update_journey))
        .route("/api/v1/journeys/{id}/versions/{version}", get(journeys::journey_version))
        .route("/api/v1/journeys/{id}/enable", post(journeys::enable_journey))
        .route("/api/v1/journeys/{id}/disable", post(journeys::disable_journey))
        .route("/api/v1/journeys/{id}/runs", get(journeys::journey_runs).post(journeys::start_run))
        .route("/api/v1/runs/{id}", get(journeys::get_run))
        .route("/api/v1/accounts/{id}/journeys", get(journeys::account_runs))
        .route("/api/v1/accounts/{id}/activity", get(journeys::account_activity))
        .route("/api/v1/deliveries", get(journeys::list_deliveries))
        .route("/api/v1/deliveries/{id}", get(journeys::get_delivery))
        .route("/api/v1/deliveries/{id}/replay", post(journeys::replay_delivery))
        .route("/api/v1/tasks", get(journeys::list_tasks).post(journeys::create_task))
        .route("/api/v1/tasks/{id}", get(journeys::get_task).patch(journeys::update_task))
        .route("/api/v1/templates", get(messaging::list_templates))
        .route(
            "/api/v1/templates/{name}",
            get(messaging::get_template).put(messaging::put_template).delete(messaging::delete_template),
        )
        .route("/api/v1/templates/{name}/preview", post(messaging::preview_template))
        .route("/api/v1/settings/messaging", get(messaging::get_messaging).put(messaging::put_messaging))
        .route("/api/v1/settings/webhooks", get(messaging::webhook_secret))
        .route(
            "/api/v1/suppressions",
            get(messaging::list_suppressions).post(messaging::add_suppression).delete(messaging::remove_suppression),
        )
        .route("/unsubscribe/{workspace}", get(messaging::unsubscribe_page).post(messaging::unsubscribe))
        .route("/api/v1/connectors", get(connectors::list_connectors))
        .route(
            "/api/v1/connectors/{provider}",
            get(connectors::get_connector).put(connectors::put_connector).delete(connectors::delete_connector),
        )
        .route("/api/v1/connectors/{provider}/sync", post(connectors::sync_connector))
        .route("/api/v1/connectors/{provider}/errors", get(connectors::connector_errors))
        .route("/api/v1/connectors/{provider}/unmatched", get(connectors::unmatched))
        .route("/api/v1/connectors/{provider}/unmatched/{object_id}/link", post(connectors::link_unmatched))
        // Providers' deliveries are small; a larger body is refused before it is read.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::audit_api_changes))
        .route(
            "/webhooks/{provider}/{workspace}",
            post(connectors::webhook).layer(axum::extract::DefaultBodyLimit::max(connectors::MAX_WEBHOOK_BODY)),
        );
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    let ui = ui::routes(state.clone()).layer(axum::middleware::from_fn(ui::security_headers));
    capture
        .merge(api)
        .merge(ui)
        .merge(ops)
        .fallback(|| async { ApiError::not_found("route", "no such endpoint") })
        .layer(axum::middleware::from_fn(ops::track_requests))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Serves until `shutdown`, then finishes in-flight requests before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state);
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
