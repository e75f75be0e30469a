//! Running the server: open the store, start processing and HTTP, stop cleanly on a signal.

use std::sync::Arc;

use anyhow::{Context, Result};
use processor::{Processor, ProcessorConfig};
use store::Store;
use store_postgres::PgStore;
use store_sqlite::SqliteStore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The configured store, kept concrete so that it can be closed cleanly.
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Backend {
    pub async fn open(config: &Config) -> Result<Backend> {
        Ok(match &config.database_url {
            Some(url) => Backend::Postgres(Arc::new(
                PgStore::connect(&url.0).await.with_context(|| format!("connecting to {}", url.redacted()))?,
            )),
            None => Backend::Sqlite(Arc::new(
                SqliteStore::open_in_dir(&config.data_dir)
                    .with_context(|| format!("opening the database in {}", config.data_dir.display()))?,
            )),
        })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    /// Waits for queued writes to commit, then releases the database.
    pub async fn close(&self) {
        match self {
            Backend::Sqlite(s) => {
                let s = s.clone();
                let _ = tokio::task::spawn_blocking(move || s.close()).await;
            }
            Backend::Postgres(s) => s.close().await,
        }
    }

    pub fn describe(&self, config: &Config) -> String {
        match self {
            Backend::Sqlite(s) => format!("sqlite:{}", s.path().display()),
            Backend::Postgres(_) => config.database_url.as_ref().map(|u| u.redacted()).unwrap_or_default(),
        }
    }
}

/// A running server: its address, and what stops it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub backend: Backend,
    pub scoring: std::sync::Arc<scoring::service::Service>,
    pub membership: std::sync::Arc<membership::Engine>,
    /// The journeys' runner the server ticks; a caller may tick it too (runs move by
    /// compare-and-set, so two ticks never take a step twice).
    pub runner: std::sync::Arc<runner::Runner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests and processing, and closes the store.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.backend.close().await;
    }
}

pub async fn start(config: &Config, discard_events: bool) -> Result<Running> {
    let backend = Backend::open(config).await?;
    let store = backend.store();
    let processor = Processor::new(
        store.clone(),
        ProcessorConfig {
            batch: config.processor.batch,
            max_batch: config.processor.max_batch,
            gather: std::time::Duration::from_millis(config.processor.gather_ms),
            ..Default::default()
        },
    );
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scoring = scoring::service::Service::new(
        store.clone(),
        scoring::service::ServiceConfig {
            rescore: std::time::Duration::from_secs(config.scoring.rescore_minutes.max(1) * 60),
            retrain: std::time::Duration::from_secs(config.scoring.retrain_hours.max(1) * 3600),
            ..Default::default()
        },
    );
    let sealing = std::sync::Arc::new(config.connectors_key()?);
    let syncer = std::sync::Arc::new(connectors::worker::Syncer::new(
        std::sync::Arc::new(connectors::Connectors::new(store.clone(), sealing)),
        outbox::http::HttpClient::new(&outbox::http::HttpConfig {
            user_agent: "Steward-Connectors/1".into(),
            total_timeout: std::time::Duration::from_secs(60),
            ..Default::default()
        })?,
        connectors::backfill::Retries::default(),
    ));
    let state = server::AppState::new(store.clone(), Some(processor.clone()), config.server_config(discard_events))
        .with_scoring(scoring.clone())
        .with_connectors(syncer.clone());
    let membership = state.membership().clone();
    let runner = state.runner().clone();
    let http = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = server::serve(listener, state, shutdown).await {
                tracing::error!(error = %e, "the HTTP server failed");
            }
        })
    };
    // Segments follow what each slice touched from the first slice on.
    let touched = (!discard_events).then(|| processor.subscribe());
    let processing = tokio::spawn(processor.run(shutdown.clone()));
    let mut tasks = vec![http, processing];
    if config.scoring.enabled && !discard_events {
        tasks.push(tokio::spawn(scoring.clone().run(shutdown.clone())));
    }
    if !discard_events {
        let tick = std::time::Duration::from_millis(config.segments.tick_ms.max(10));
        let full = std::time::Duration::from_secs(config.segments.recompute_minutes.max(1) * 60);
        tasks.push(tokio::spawn(membership.clone().run(touched, tick, full, shutdown.clone())));
        let every = std::time::Duration::from_millis(config.journeys.tick_ms.max(10));
        tasks.push(tokio::spawn(runner.clone().run(every, shutdown.clone())));
        let deliverer = std::sync::Arc::new(runner::deliver::Deliverer::new(store.clone(), config.delivery_config()?)?);
        let every = std::time::Duration::from_millis(config.outbox.tick_ms.max(10));
        tasks.push(tokio::spawn(deliverer.run(every, shutdown.clone())));
        let every = std::time::Duration::from_millis(config.connectors.tick_ms.max(10));
        tasks.push(tokio::spawn(syncer.run(every, shutdown.clone())));
    }
    tracing::info!(%addr, store = %backend.describe(config), "steward is serving");
    Ok(Running { addr, shutdown, backend, tasks, scoring, membership, runner })
}

pub async fn serve(config: Config, discard_events: bool) -> Result<()> {
    let running = start(&config, discard_events).await?;
    println!("Steward is listening on http://{}", running.addr);
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.stop().await;
    tracing::info!("stopped");
    Ok(())
}

pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
