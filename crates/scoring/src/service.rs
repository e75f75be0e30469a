//! Scoring on a schedule and on demand, inside the server: every workspace is rescored
//! every `rescore` (and whenever the day changes), and its models retrained every `retrain`.
//! Runs of one workspace never overlap; the scorer of the last full run is kept to rescore
//! single accounts.

use chrono::{NaiveDate, Utc};
use domain::{AccountId, WorkspaceId};
use intelligence::model::EnsembleParams;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{AccountScore, Store};
use tokio_util::sync::CancellationToken;

use crate::{Result, ScoreRun, Scorer, TrainOutcome};

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// How often every workspace is rescored.
    pub rescore: Duration,
    /// How often models are retrained.
    pub retrain: Duration,
    /// How often the schedule is checked.
    pub tick: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            rescore: Duration::from_secs(3600),
            retrain: Duration::from_secs(7 * 24 * 3600),
            tick: Duration::from_secs(30),
        }
    }
}

#[derive(Default)]
struct WorkspaceState {
    scorer: Option<Arc<Scorer>>,
    scored: Option<(NaiveDate, std::time::Instant)>,
    trained: Option<std::time::Instant>,
}

pub struct Service {
    store: Arc<dyn Store>,
    config: ServiceConfig,
    state: Mutex<HashMap<WorkspaceId, WorkspaceState>>,
    /// One run at a time per workspace.
    runs: Mutex<HashMap<WorkspaceId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, config: ServiceConfig) -> Arc<Service> {
        Arc::new(Service { store, config, state: Mutex::default(), runs: Mutex::default() })
    }

    fn lock_of(&self, ws: &WorkspaceId) -> Arc<tokio::sync::Mutex<()>> {
        self.runs.lock().expect("runs lock").entry(ws.clone()).or_default().clone()
    }

    /// Trains the workspace's models now.
    pub async fn train(&self, ws: &WorkspaceId) -> Result<Vec<TrainOutcome>> {
        let lock = self.lock_of(ws);
        let _run = lock.lock().await;
        let out = crate::train(self.store.as_ref(), ws, None, &EnsembleParams::default(), Utc::now()).await?;
        self.state.lock().expect("state lock").entry(ws.clone()).or_default().trained = Some(std::time::Instant::now());
        Ok(out)
    }

    /// Scores every account of the workspace as of today, now.
    pub async fn score(&self, ws: &WorkspaceId) -> Result<ScoreRun> {
        let lock = self.lock_of(ws);
        let _run = lock.lock().await;
        let now = Utc::now();
        let (run, scorer) = crate::score_workspace(self.store.as_ref(), ws, now.date_naive(), now).await?;
        let mut state = self.state.lock().expect("state lock");
        let entry = state.entry(ws.clone()).or_default();
        entry.scorer = Some(Arc::new(scorer));
        entry.scored = Some((run.day, std::time::Instant::now()));
        Ok(run)
    }

    /// Scores one account again now. Without a full run of the workspace since the server
    /// started, runs one first (a single account is ranked against the others).
    pub async fn rescore(&self, ws: &WorkspaceId, account: &AccountId) -> Result<Option<AccountScore>> {
        let scorer = self.state.lock().expect("state lock").get(ws).and_then(|s| s.scorer.clone());
        let scorer = match scorer {
            Some(s) => s,
            None => {
                self.score(ws).await?;
                return Ok(self.store.account_score(ws, account).await?);
            }
        };
        let now = Utc::now();
        scorer.rescore(self.store.as_ref(), ws, account, now.date_naive(), now).await
    }

    /// What is due for `ws` now: (train, score).
    fn due(&self, ws: &WorkspaceId, today: NaiveDate) -> (bool, bool) {
        let state = self.state.lock().expect("state lock");
        let s = state.get(ws);
        let train = s.and_then(|s| s.trained).is_none_or(|t| t.elapsed() >= self.config.retrain);
        let score = s.and_then(|s| s.scored).is_none_or(|(day, t)| day != today || t.elapsed() >= self.config.rescore);
        (train, score)
    }

    /// Keeps every workspace scored until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "scheduled scoring failed; it is tried again at the next tick");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    async fn tick(&self) -> Result<()> {
        let today = Utc::now().date_naive();
        for w in self.store.list_workspaces().await? {
            let ws = w.workspace_id;
            // Scores of a half-processed backlog would be wrong until the next run: wait for it.
            if self.store.log_status(&ws).await?.pending_events > 0 {
                continue;
            }
            let (train, score) = self.due(&ws, today);
            if train {
                // A restart should not retrain a workspace whose model is recent.
                let newest = self.store.list_models(&ws).await?.first().map(|m| m.created_at);
                let age = newest.map(|t| (Utc::now() - t).to_std().unwrap_or_default());
                if age.is_none_or(|a| a >= self.config.retrain) {
                    self.train(&ws).await?;
                } else {
                    let since = std::time::Instant::now().checked_sub(age.unwrap_or_default());
                    self.state.lock().expect("state lock").entry(ws.clone()).or_default().trained =
                        Some(since.unwrap_or_else(std::time::Instant::now));
                }
            }
            if score {
                self.score(&ws).await?;
            }
        }
        Ok(())
    }
}
