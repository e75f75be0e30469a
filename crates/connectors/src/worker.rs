//! The sync loop: runs each connector's backfill when one is asked for (by an operator, or
//! when a connector is created with an API key) or when its schedule is due, one at a time;
//! a backfill that stopped on an error is tried again after a wait that doubles with each
//! failure in a row (up to an hour), from where it stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use outbox::http::HttpClient;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backfill::{self, Retries, SyncState};
use crate::{Config, Connectors, Provider};

pub struct Syncer {
    connectors: Arc<Connectors>,
    http: HttpClient,
    retries: Retries,
    wake: Notify,
}

impl Syncer {
    pub fn new(connectors: Arc<Connectors>, http: HttpClient, retries: Retries) -> Syncer {
        Syncer { connectors, http, retries, wake: Notify::new() }
    }

    pub fn connectors(&self) -> &Arc<Connectors> {
        &self.connectors
    }

    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Looks for work now rather than at the next tick (after a sync is asked for).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.round(&shutdown).await {
                tracing::warn!(error = %e, "connector sync round failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One look at every workspace's connectors, running the backfills that are due.
    pub async fn round(&self, shutdown: &CancellationToken) -> store::Result<()> {
        let store = self.connectors.store().clone();
        for ws in store.list_workspaces().await? {
            for record in store.list_connectors(&ws.workspace_id).await? {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let Some(provider) = Provider::parse(&record.provider) else { continue };
                if !record.enabled || !due(&record) {
                    continue;
                }
                let started = std::time::Instant::now();
                match backfill::run(&self.connectors, &self.http, &ws.workspace_id, provider, &self.retries).await {
                    Ok(report) => {
                        metrics::counter!("steward_connector_sync_pages_total", "provider" => provider.name())
                            .increment(report.pages);
                        tracing::info!(workspace = %ws.workspace_id, provider = provider.name(), pages = report.pages,
                            objects = report.objects, finished = report.finished, took_ms = started.elapsed().as_millis() as u64,
                            "connector backfill ran");
                    }
                    Err(e) => {
                        tracing::warn!(workspace = %ws.workspace_id, provider = provider.name(), error = %e, "connector backfill failed")
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a connector's backfill should run now: asked for (and not waiting out a failure),
/// or its schedule says so.
fn due(record: &store::ConnectorRecord) -> bool {
    let state = SyncState::of(record);
    let now = Utc::now();
    if state.requested {
        return state.retry_at.is_none_or(|t| t <= now);
    }
    let every = Config::from_value(&record.config).ok().and_then(|c| c.sync_every_hours);
    match (every, record.last_sync_at) {
        (Some(hours), Some(last)) => now - last >= chrono::Duration::hours(i64::from(hours)),
        _ => false,
    }
}
