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
    let every = Config::from_value(&record.config).ok().and_then(|c| c.sync_every());
    match (every, record.last_sync_at) {
        (Some(every), Some(last)) => now - last >= every,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schedule_in_hours_or_minutes_makes_a_backfill_due() {
        let now = Utc::now();
        let record = |config: serde_json::Value, minutes_ago: i64| store::ConnectorRecord {
            provider: "salesforce".into(),
            config,
            secrets: String::new(),
            enabled: true,
            created_at: now,
            updated_at: now,
            sync: json!({}),
            last_sync_at: Some(now - chrono::Duration::minutes(minutes_ago)),
            records_synced: 0,
            webhooks_received: 0,
            errors: 0,
        };
        for (config, minutes_ago, expected) in [
            (json!({"sync_every_minutes": 5}), 6, true),
            (json!({"sync_every_minutes": 5}), 4, false),
            (json!({"sync_every_hours": 1}), 59, false),
            (json!({"sync_every_hours": 1}), 61, true),
            (json!({}), 10_000, false),
        ] {
            assert_eq!(due(&record(config.clone(), minutes_ago)), expected, "{config} {minutes_ago}");
        }
        let both = json!({"sync_every_hours": 1, "sync_every_minutes": 5});
        assert!(Config::from_value(&both).is_err());
        assert!(Config::from_value(&json!({"sync_every_minutes": 0})).is_err());
    }
}
