//! Runs journeys. [`Runner::tick`] does, as of the time it is given, everything that is due:
//! it starts runs for the triggers recorded since the last tick (segment entries and exits,
//! read from their durable stream with a cursor kept in the store, and events, read from the
//! log behind processing), moves the runs that waited for those events, then takes the steps
//! of every run whose timer is due. The clock is always the caller's, so tests step time as they like.
//!
//! Durability: a run moves by compare-and-set on its transition number (`seq`), and what a
//! step decides (messages to send, tasks, trait updates) is written in the same transaction,
//! keyed by run, step and transition. A step may be computed twice (a crash before the
//! commit, two nodes); its effects exist once. Trait updates go through the event log with
//! that key as their `messageId`, so a repeated append is a duplicate the log drops.

pub mod deliver;
#[cfg(test)]
mod deliver_tests;
mod events;
mod step;
#[cfg(test)]
mod tests;
mod triggers;
pub mod zone;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::{Timestamp, WorkspaceId};
use journeys::{Journey, Subject, Trigger};
use serde_json::{Value, json};
use store::{JourneyRecord, Reentry, Run, RunStart, RunStatus, Store, StoreError, SubjectKind};

pub use step::{SLACK_URL, Why};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such journey")]
    NotFound,
    /// The request is wrong, said in full.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Membership(#[from] membership::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs stepped per store round trip.
const BATCH: usize = 1_000;
/// Segment changes read per round.
const CHANGES_PER_READ: usize = 5_000;
/// The setting under which the last segment change a workspace's journeys have seen is kept.
const SEGMENT_CURSOR: &str = "journeys.segment_cursor";

/// What a tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Runs started.
    pub started: usize,
    /// Runs moved.
    pub advanced: usize,
    /// Transitions made (steps taken), over all runs.
    pub transitions: usize,
}

impl std::ops::AddAssign for Tick {
    fn add_assign(&mut self, o: Tick) {
        self.started += o.started;
        self.advanced += o.advanced;
        self.transitions += o.transitions;
    }
}

pub struct Runner {
    store: Arc<dyn Store>,
    membership: Arc<membership::Engine>,
    /// Checked definitions by workspace, journey and version: a version never changes.
    definitions: Mutex<HashMap<(WorkspaceId, String, i64), Arc<Journey>>>,
}

/// Reads a stored definition; it was checked when saved, so its conditions are not checked
/// again here.
pub fn parse_stored(definition: &Value) -> Result<Journey> {
    journeys::parse(definition, &|_, _| Ok(()))
        .map_err(|problems| Error::Refused(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))
}

pub fn kind_of(subject: Subject) -> SubjectKind {
    match subject {
        Subject::Accounts => SubjectKind::Accounts,
        Subject::People => SubjectKind::People,
    }
}

fn reentry(r: journeys::Reentry) -> Reentry {
    match r {
        journeys::Reentry::Never => Reentry::Never,
        journeys::Reentry::After(s) => Reentry::After(s),
        journeys::Reentry::Always => Reentry::Always,
    }
}

impl Runner {
    pub fn new(store: Arc<dyn Store>, membership: Arc<membership::Engine>) -> Runner {
        Runner { store, membership, definitions: Mutex::new(HashMap::new()) }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The definition of one version of a journey.
    pub async fn definition(&self, ws: &WorkspaceId, journey_id: &str, version: i64) -> Result<Arc<Journey>> {
        let key = (ws.clone(), journey_id.to_owned(), version);
        if let Some(j) = self.definitions.lock().expect("definitions lock").get(&key) {
            return Ok(j.clone());
        }
        let value = self.store.journey_version(ws, journey_id, version).await?.ok_or(Error::NotFound)?;
        let j = Arc::new(parse_stored(&value)?);
        self.definitions.lock().expect("definitions lock").insert(key, j.clone());
        Ok(j)
    }

    /// Everything due by `now`: runs started by the triggers recorded since the last tick,
    /// then every due step.
    pub async fn tick(&self, ws: &WorkspaceId, now: Timestamp) -> Result<Tick> {
        // The workspace's journeys, read once for every trigger.
        let all = self.store.list_journeys(ws).await?;
        let journeys = self.enabled(ws, &all).await;
        let mut tick = Tick { started: self.start_from_segments(ws, &journeys, now).await?, ..Tick::default() };
        tick += self.follow_log(ws, &all, &journeys, now).await?;
        tick.started += self.start_from_scoring(ws, &journeys, now).await?;
        tick.started += self.start_from_schedules(ws, &journeys, now).await?;
        // Runs that raced with another node are read again; a bounded number of rounds keeps
        // a tick finite while other nodes keep moving the same runs.
        for _ in 0..64 {
            let due = self.store.due_runs(ws, now, BATCH).await?;
            let n = due.len();
            if n == 0 {
                break;
            }
            let done = self.step_runs(ws, due, Why::Due, now).await?;
            let progressed = done.advanced > 0;
            tick += done;
            if n < BATCH || !progressed {
                break;
            }
        }
        Ok(tick)
    }

    /// Starts a run of `journey_id` for one subject by hand, if the journey's re-entry rule
    /// allows; returns it.
    pub async fn start_manual(
        &self,
        ws: &WorkspaceId,
        journey_id: &str,
        subject_id: &str,
        data: Value,
        now: Timestamp,
    ) -> Result<Option<Run>> {
        let record = self.store.get_journey(ws, journey_id).await?.ok_or(Error::NotFound)?;
        if !record.enabled {
            return Err(Error::Refused("the journey is not enabled".into()));
        }
        let j = self.definition(ws, journey_id, record.version).await?;
        let exists = match j.subject {
            Subject::Accounts => match domain::AccountId::parse(subject_id) {
                Ok(id) => self.store.get_account(ws, &id).await?.is_some(),
                Err(_) => false,
            },
            Subject::People => self.store.get_person(ws, subject_id).await?.is_some(),
        };
        if !exists {
            return Err(Error::Refused(format!(
                "subject_id: the workspace has no {} {subject_id:?}",
                if j.subject == Subject::Accounts { "account" } else { "person" }
            )));
        }
        let key = format!("manual:{}", domain::random_token(12));
        let trigger = json!({"kind": "manual", "data": data});
        let start = self.new_run(&record, &j, subject_id, None, trigger, key, now);
        let run = start.run.clone();
        let started = self.store.start_runs(ws, &[start]).await?;
        if started.first() != Some(&true) {
            return Ok(None);
        }
        // Its first steps are taken now.
        self.step_runs(ws, vec![run.clone()], Why::Due, now).await?;
        Ok(self.store.get_run(ws, &run.run_id).await?)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_run(
        &self,
        record: &JourneyRecord,
        j: &Journey,
        subject_id: &str,
        account_id: Option<String>,
        trigger: Value,
        trigger_key: String,
        now: Timestamp,
    ) -> RunStart {
        let account_id = match j.subject {
            Subject::Accounts => Some(subject_id.to_owned()),
            Subject::People => account_id,
        };
        RunStart {
            run: Run {
                run_id: store::journeys::new_run_id(),
                journey_id: record.journey_id.clone(),
                version: record.version,
                subject_id: subject_id.to_owned(),
                account_id,
                status: RunStatus::Active,
                step: j.steps.first().map(|s| s.id.clone()),
                seq: 0,
                wake_at: Some(now),
                waiting: None,
                context: json!({ "trigger": trigger }),
                started_at: now,
                updated_at: now,
                ended_at: None,
            },
            reentry: reentry(j.reentry),
            trigger_key,
        }
    }

    /// Starts the runs of journeys triggered by segment entries and exits recorded since
    /// the last call; returns how many started.
    async fn start_from_segments(
        &self,
        ws: &WorkspaceId,
        journeys: &[(JourneyRecord, Arc<Journey>)],
        now: Timestamp,
    ) -> Result<usize> {
        let mut after = match self.store.get_setting(ws, SEGMENT_CURSOR).await? {
            Some(v) => v.as_i64().unwrap_or(0),
            None => 0,
        };
        let listening: Vec<&(JourneyRecord, Arc<Journey>)> = journeys
            .iter()
            .filter(|(_, j)| matches!(j.trigger, Trigger::SegmentEntered { .. } | Trigger::SegmentExited { .. }))
            .collect();
        let mut started = 0;
        loop {
            let changes = self.store.segment_changes(ws, after, CHANGES_PER_READ).await?;
            let Some(last) = changes.last().map(|c| c.seq) else { break };
            if !listening.is_empty() {
                let names: HashMap<String, String> =
                    self.store.list_segments(ws).await?.into_iter().map(|s| (s.segment_id, s.name)).collect();
                let mut starts = Vec::new();
                for c in &changes {
                    let Some(name) = names.get(&c.segment_id) else { continue };
                    for (record, j) in &listening {
                        let fires = match &j.trigger {
                            Trigger::SegmentEntered { segment } => c.entered && segment == name,
                            Trigger::SegmentExited { segment } => !c.entered && segment == name,
                            _ => false,
                        };
                        if fires {
                            let kind = if c.entered { "segment_entered" } else { "segment_exited" };
                            let trigger = json!({"kind": kind, "segment": name, "at": c.at});
                            let key = format!("segment:{}", c.seq);
                            starts.push(self.new_run(record, j, &c.subject_id, None, trigger, key, now));
                        }
                    }
                }
                started += self.start(ws, starts).await?;
            }
            // Starts are keyed by the change, so a crash before this leaves them to be
            // tried again, and none is made twice.
            self.store.put_setting(ws, SEGMENT_CURSOR, &json!(last), now).await?;
            after = last;
            if changes.len() < CHANGES_PER_READ {
                break;
            }
        }
        Ok(started)
    }

    async fn start(&self, ws: &WorkspaceId, starts: Vec<RunStart>) -> Result<usize> {
        if starts.is_empty() {
            return Ok(0);
        }
        let outcome = self.store.start_runs(ws, &starts).await?;
        Ok(outcome.iter().filter(|s| **s).count())
    }

    /// The enabled ones of a workspace's journeys, with their current definitions.
    async fn enabled(&self, ws: &WorkspaceId, all: &[JourneyRecord]) -> Vec<(JourneyRecord, Arc<Journey>)> {
        let mut out = Vec::new();
        for record in all.iter().filter(|r| r.enabled).cloned() {
            match self.definition(ws, &record.journey_id, record.version).await {
                Ok(j) => out.push((record, j)),
                Err(e) => tracing::warn!(workspace = %ws, journey = %record.journey_id, error = %e,
                    "a stored journey no longer reads; it starts no runs"),
            }
        }
        out
    }

    /// Moves the runs waiting for `event` from `subject_id` (and, for keyed waits, with the
    /// given property value); returns what it did.
    pub async fn event(
        &self,
        ws: &WorkspaceId,
        event: &str,
        subject_id: &str,
        keys: &[Value],
        now: Timestamp,
    ) -> Result<Tick> {
        let mut waits = vec![store::journeys::wait_key(event, subject_id, None)];
        waits.extend(keys.iter().map(|k| store::journeys::wait_key(event, subject_id, Some(k))));
        let runs = self.store.waiting_runs(ws, &waits).await?;
        if runs.is_empty() {
            return Ok(Tick::default());
        }
        self.step_runs(ws, runs, Why::Event, now).await
    }
}

impl Runner {
    /// Ticks every workspace every `every` until `shutdown`, and again at once while a tick
    /// finds a full batch of work.
    pub async fn run(self: Arc<Self>, every: std::time::Duration, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let mut busy = false;
            match self.store.list_workspaces().await {
                Ok(workspaces) => {
                    for w in workspaces {
                        match self.tick(&w.workspace_id, chrono::Utc::now()).await {
                            Ok(t) => busy |= t.advanced >= BATCH,
                            Err(e) => tracing::warn!(workspace = %w.workspace_id, error = %e, "a journeys tick failed"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "journeys could not list the workspaces"),
            }
            if busy {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
