//! Keeps each segment's members. A segment's condition (see the `segments` crate) is checked
//! against the workspace's vocabulary when it is saved; its members are evaluated in full
//! then, again for the accounts that changed, and again for each member whose result was due
//! to change by time alone ([`Engine::run_due`]). Every entry and exit is recorded with its
//! time ([`store::SegmentChange`]): what journeys start from.
//!
//! Segments that test other segments are evaluated after them, in one pass per account, so
//! an account that enters "At risk" enters "At risk and big" in the same pass.

mod facts;

use chrono::{Days, NaiveDate};
use domain::{AccountId, Timestamp, WorkspaceId};
use futures_util::StreamExt;
use segments::{Schema, Segment, Warning};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{
    Account, MembershipUpdate, PageRequest, ScorePoint, SegmentChange, SegmentRecord, Store, StoreError, SubjectKind,
    Subscription, UsageRow,
};

use crate::facts::AccountFacts;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The condition does not parse or check.
    #[error("{0}")]
    Invalid(segments::Error),
    /// Something else about the request is wrong, said in full.
    #[error("{0}")]
    Refused(String),
    #[error("no such segment")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long compiled segments are kept before the workspace's vocabulary is read again (so
/// events that arrive under a new spelling are counted by conditions that name them).
const RECOMPILE: Duration = Duration::from_secs(60);
/// Memberships written per store call in a full evaluation.
const UPDATES_PER_WRITE: usize = 5_000;
/// Due checks taken per round.
const DUE_PER_ROUND: usize = 1_000;
/// Accounts whose records are read at once when some are evaluated.
const READS_AT_ONCE: usize = 8;
/// Accounts or people touched beyond which every account is evaluated in bulk instead.
const MAX_TOUCHED: usize = 2_000;

/// A segment as saved: definition, members, and what its condition left to warn about.
#[derive(Clone, Debug, Serialize)]
pub struct Saved {
    pub segment: SegmentRecord,
    pub size: u64,
    pub warnings: Vec<Warning>,
}

/// What a condition would select, without saving it.
#[derive(Clone, Debug, Serialize)]
pub struct Preview {
    /// How many subjects it selects now.
    pub size: u64,
    /// How many were evaluated.
    pub of: u64,
    /// The first members by id.
    pub sample: Vec<String>,
    pub warnings: Vec<Warning>,
}

/// A segment's name, condition and description, as an operator writes them.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Definition {
    pub name: String,
    #[serde(default = "accounts")]
    pub kind: SubjectKind,
    pub condition: String,
    #[serde(default)]
    pub description: Option<String>,
}

fn accounts() -> SubjectKind {
    SubjectKind::Accounts
}

/// One segment compiled, and where it sits in evaluation order.
struct Compiled {
    record: SegmentRecord,
    segment: Segment,
}

/// A workspace's segments of accounts, compiled, in evaluation order (each after the ones it
/// tests).
struct Workspace {
    made: Instant,
    ordered: Vec<Compiled>,
    /// How far back any condition looks at usage: `None` for all of it.
    usage_days: Option<u32>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    compiled: Mutex<HashMap<WorkspaceId, Arc<Workspace>>>,
}

/// What the evaluation of accounts reads, for any number of them.
#[derive(Default)]
struct Records {
    accounts: HashMap<AccountId, Account>,
    scores: HashMap<AccountId, ScorePoint>,
    subscriptions: HashMap<AccountId, Vec<Subscription>>,
    usage: HashMap<AccountId, Vec<UsageRow>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>) -> Engine {
        Engine { store, compiled: Mutex::new(HashMap::new()) }
    }

    fn forget(&self, ws: &WorkspaceId) {
        self.compiled.lock().expect("compiled lock").remove(ws);
    }

    /// The schema a condition of `kind` is checked against, as segment `name` (if it has one).
    async fn schema(&self, ws: &WorkspaceId, kind: SubjectKind, name: Option<&str>) -> Result<Schema> {
        let vocabulary = self.store.vocabulary(ws).await?;
        let others = self.store.list_segments(ws).await?;
        Ok(Schema {
            kind: match kind {
                SubjectKind::Accounts => segments::Kind::Accounts,
                SubjectKind::People => segments::Kind::People,
            },
            traits: match kind {
                SubjectKind::Accounts => vocabulary.account_traits,
                SubjectKind::People => vocabulary.person_traits,
            },
            events: vocabulary.events,
            segments: others
                .into_iter()
                .filter(|s| s.kind == kind && Some(s.name.as_str()) != name)
                .map(|s| s.name)
                .collect(),
            name: name.map(str::to_owned),
        })
    }

    /// Checks a definition as segment `id` (when it replaces one): its condition, its name,
    /// and that no segment would end up testing its own membership through others.
    async fn check(&self, ws: &WorkspaceId, d: &Definition, id: Option<&str>) -> Result<Segment> {
        if d.kind == SubjectKind::People {
            return Err(Error::Refused(
                "people segments are not available yet: a segment's members are accounts (kind \"accounts\")".into(),
            ));
        }
        let name = d.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::Refused("name: a segment needs a name of 1 to 200 characters".into()));
        }
        let schema = self.schema(ws, d.kind, Some(name)).await?;
        let segment = segments::compile(&d.condition, &schema).map_err(Error::Invalid)?;
        let mut graph: Vec<(String, Vec<String>)> = Vec::new();
        for other in self.store.list_segments(ws).await? {
            if Some(other.segment_id.as_str()) == id || other.kind != d.kind {
                continue;
            }
            // Stored conditions compiled when saved; one that no longer does tests nothing.
            let deps = self.compile_stored(ws, &other).await.map(|s| s.depends_on).unwrap_or_default();
            graph.push((other.name, deps));
        }
        graph.push((name.to_owned(), segment.depends_on.clone()));
        if let Some(cycle) = segments::cycle(&graph) {
            return Err(Error::Refused(format!(
                "condition: segments would test their own membership through each other: {}",
                cycle.join(" -> ")
            )));
        }
        Ok(segment)
    }

    async fn compile_stored(&self, ws: &WorkspaceId, record: &SegmentRecord) -> Result<Segment> {
        let schema = self.schema(ws, record.kind, Some(&record.name)).await?;
        segments::compile(&record.condition, &schema).map_err(Error::Invalid)
    }

    /// Saves a new segment and evaluates every account for it.
    pub async fn create(&self, ws: &WorkspaceId, d: &Definition, now: Timestamp) -> Result<Saved> {
        let segment = self.check(ws, d, None).await?;
        let record = SegmentRecord {
            segment_id: store::segments::new_segment_id(),
            name: d.name.trim().to_owned(),
            kind: d.kind,
            condition: d.condition.clone(),
            description: d.description.clone(),
            created_at: now,
            updated_at: now,
        };
        self.store.insert_segment(ws, &record).await.map_err(|e| match e {
            StoreError::Conflict(_) => Error::Refused(format!("name: a segment named {:?} exists", record.name)),
            e => Error::Store(e),
        })?;
        self.forget(ws);
        let size = self.recompute(ws, &record.segment_id, now).await?;
        Ok(Saved { segment: record, size, warnings: segment.warnings })
    }

    /// Replaces a segment's definition (its kind stays) and evaluates every account again.
    pub async fn update(&self, ws: &WorkspaceId, id: &str, d: &Definition, now: Timestamp) -> Result<Saved> {
        let old = self.store.get_segment(ws, id).await?.ok_or(Error::NotFound)?;
        if old.kind != d.kind {
            return Err(Error::Refused("kind: a segment's kind cannot change; make a new segment".into()));
        }
        let segment = self.check(ws, d, Some(id)).await?;
        if old.name != d.name.trim() {
            let users = self.dependents(ws, &old.name).await?;
            if !users.is_empty() {
                return Err(Error::Refused(format!(
                    "name: {} test membership of {:?} by name; change them first",
                    users.join(", "),
                    old.name
                )));
            }
        }
        let record = SegmentRecord {
            name: d.name.trim().to_owned(),
            condition: d.condition.clone(),
            description: d.description.clone(),
            updated_at: now,
            ..old
        };
        let found = self.store.update_segment(ws, &record).await.map_err(|e| match e {
            StoreError::Conflict(_) => Error::Refused(format!("name: a segment named {:?} exists", record.name)),
            e => Error::Store(e),
        })?;
        if !found {
            return Err(Error::NotFound);
        }
        self.forget(ws);
        let size = self.recompute(ws, id, now).await?;
        Ok(Saved { segment: record, size, warnings: segment.warnings })
    }

    /// The names of the segments whose conditions test membership of segment `name`.
    async fn dependents(&self, ws: &WorkspaceId, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for other in self.store.list_segments(ws).await? {
            if let Ok(s) = self.compile_stored(ws, &other).await
                && s.depends_on.iter().any(|d| d == name)
            {
                out.push(other.name);
            }
        }
        Ok(out)
    }

    /// Deletes a segment that no other segment tests.
    pub async fn delete(&self, ws: &WorkspaceId, id: &str) -> Result<()> {
        let record = self.store.get_segment(ws, id).await?.ok_or(Error::NotFound)?;
        let users = self.dependents(ws, &record.name).await?;
        if !users.is_empty() {
            return Err(Error::Refused(format!(
                "{} test membership of {:?}; change them first",
                users.join(", "),
                record.name
            )));
        }
        self.store.delete_segment(ws, id).await?;
        self.forget(ws);
        Ok(())
    }

    /// What `condition` would select now, with up to `sample` members by id.
    pub async fn preview(
        &self,
        ws: &WorkspaceId,
        kind: SubjectKind,
        condition: &str,
        now: Timestamp,
        sample: usize,
    ) -> Result<Preview> {
        let d = Definition { name: "preview".into(), kind, condition: condition.into(), description: None };
        let segment = self.check(ws, &d, None).await?;
        let compiled = self.workspace(ws).await?;
        let records = self.load_all(ws, segment.usage_days, now).await?;
        let current = self.all_memberships(ws, &compiled).await?;
        let (mut size, mut of, mut members) = (0u64, 0u64, Vec::new());
        let none = HashSet::new();
        let mut ids: Vec<&AccountId> = records.accounts.keys().collect();
        ids.sort();
        for id in ids {
            let names = current.get(id.as_str()).unwrap_or(&none);
            let v = segment.evaluate(&records.facts(id, names, now), now);
            of += 1;
            if v.member {
                size += 1;
                if members.len() < sample {
                    members.push(id.to_string());
                }
            }
        }
        Ok(Preview { size, of, sample: members, warnings: segment.warnings })
    }

    /// The workspace's segments compiled, from the cache while it is fresh.
    async fn workspace(&self, ws: &WorkspaceId) -> Result<Arc<Workspace>> {
        if let Some(w) = self.compiled.lock().expect("compiled lock").get(ws)
            && w.made.elapsed() < RECOMPILE
        {
            return Ok(w.clone());
        }
        let mut compiled = Vec::new();
        for record in self.store.list_segments(ws).await? {
            if record.kind != SubjectKind::Accounts {
                continue;
            }
            match self.compile_stored(ws, &record).await {
                Ok(segment) => compiled.push(Compiled { record, segment }),
                Err(e) => {
                    tracing::warn!(workspace = %ws, segment = %record.segment_id, error = %e, "a stored segment no longer compiles; it is not evaluated");
                }
            }
        }
        let ordered = order(compiled);
        let usage_days = ordered.iter().try_fold(0, |days: u32, c| c.segment.usage_days.map(|d| days.max(d)));
        let w = Arc::new(Workspace { made: Instant::now(), ordered, usage_days });
        self.compiled.lock().expect("compiled lock").insert(ws.clone(), w.clone());
        Ok(w)
    }

    /// Every account's memberships, by account id, as segment names.
    async fn all_memberships(&self, ws: &WorkspaceId, w: &Workspace) -> Result<HashMap<String, HashSet<String>>> {
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        for c in &w.ordered {
            for id in self.members(ws, &c.record.segment_id).await? {
                out.entry(id).or_default().insert(c.record.name.clone());
            }
        }
        Ok(out)
    }

    async fn members(&self, ws: &WorkspaceId, segment_id: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(store::MAX_LIMIT);
        loop {
            let p = self.store.segment_members(ws, segment_id, &page).await?;
            out.extend(p.items.into_iter().map(|m| m.subject_id));
            match p.next {
                Some(c) => page.after = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Evaluates every account for segment `id` and records the result; returns its size.
    pub async fn recompute(&self, ws: &WorkspaceId, id: &str, now: Timestamp) -> Result<u64> {
        let w = self.workspace(ws).await?;
        let Some(at) = w.ordered.iter().position(|c| c.record.segment_id == id) else {
            return Err(Error::NotFound);
        };
        let records = self.load_all(ws, w.usage_days, now).await?;
        let current = self.all_memberships(ws, &w).await?;
        let target = &w.ordered[at];
        let was: HashSet<String> = self.members(ws, id).await?.into_iter().collect();
        let mut updates = Vec::new();
        let mut size = 0;
        let mut ids: Vec<&AccountId> = records.accounts.keys().collect();
        ids.sort();
        let none = HashSet::new();
        for account in ids {
            // The segments it tests are read as stored.
            let names = current.get(account.as_str()).unwrap_or(&none);
            let v = target.segment.evaluate(&records.facts(account, names, now), now);
            size += u64::from(v.member);
            if v.member || v.next_change.is_some() || was.contains(account.as_str()) {
                updates.push(MembershipUpdate {
                    subject_id: account.to_string(),
                    member: v.member,
                    next_check: v.next_change,
                });
            }
        }
        for chunk in updates.chunks(UPDATES_PER_WRITE) {
            self.store.update_memberships(ws, id, chunk, now).await?;
        }
        Ok(size)
    }

    /// Evaluates every account for every segment, in one pass per account, and records what
    /// changed: what a full recompute is, after a scoring run or on a schedule.
    pub async fn recompute_all(&self, ws: &WorkspaceId, now: Timestamp) -> Result<Vec<SegmentChange>> {
        let w = self.workspace(ws).await?;
        if w.ordered.is_empty() {
            return Ok(Vec::new());
        }
        let records = self.load_all(ws, w.usage_days, now).await?;
        let mut current = self.all_memberships(ws, &w).await?;
        let mut updates: Vec<Vec<MembershipUpdate>> = vec![Vec::new(); w.ordered.len()];
        let mut ids: Vec<&AccountId> = records.accounts.keys().collect();
        ids.sort();
        for account in ids {
            let mut names = current.remove(account.as_str()).unwrap_or_default();
            for (i, c) in w.ordered.iter().enumerate() {
                let was = names.contains(&c.record.name);
                let v = c.segment.evaluate(&records.facts(account, &names, now), now);
                if v.member {
                    names.insert(c.record.name.clone());
                } else {
                    names.remove(&c.record.name);
                }
                // Subjects that neither are, were, nor wait for a moment need no row.
                if v.member || was || v.next_change.is_some() {
                    updates[i].push(MembershipUpdate {
                        subject_id: account.to_string(),
                        member: v.member,
                        next_check: v.next_change,
                    });
                }
            }
        }
        let mut changes = Vec::new();
        for (c, u) in w.ordered.iter().zip(updates) {
            for chunk in u.chunks(UPDATES_PER_WRITE) {
                changes.extend(self.store.update_memberships(ws, &c.record.segment_id, chunk, now).await?);
            }
        }
        Ok(changes)
    }

    /// Keeps every workspace's segments current until `shutdown`: the accounts each
    /// processed slice touched (from `touched`) at once; each `tick`, the results due to
    /// change by time; each `full`, every account again (scores and records that changed
    /// since are taken in, and whatever a lagging listener missed).
    pub async fn run(
        self: Arc<Self>,
        mut touched: Option<tokio::sync::broadcast::Receiver<processor::Touched>>,
        tick: Duration,
        full: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        let mut last_full: HashMap<WorkspaceId, Instant> = HashMap::new();
        let mut next_tick = Instant::now() + tick;
        loop {
            let received = match touched.as_mut() {
                Some(rx) => tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = rx.recv() => Some(r),
                    _ = tokio::time::sleep_until(next_tick.into()) => None,
                },
                None => tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(next_tick.into()) => None,
                },
            };
            if let Some(first) = received {
                // Everything waiting, by workspace, in one evaluation each.
                let mut batch: HashMap<WorkspaceId, (HashSet<AccountId>, HashSet<String>)> = HashMap::new();
                let mut missed = false;
                let mut take = |r: Result<processor::Touched, ()>| match r {
                    Ok(t) => {
                        let entry = batch.entry(t.workspace).or_default();
                        entry.0.extend(t.accounts);
                        entry.1.extend(t.people);
                    }
                    Err(()) => missed = true,
                };
                match first {
                    Ok(t) => take(Ok(t)),
                    Err(RecvError::Lagged(_)) => take(Err(())),
                    Err(RecvError::Closed) => touched = None,
                }
                if let Some(rx) = touched.as_mut() {
                    loop {
                        match rx.try_recv() {
                            Ok(t) => take(Ok(t)),
                            Err(TryRecvError::Lagged(_)) => take(Err(())),
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                }
                if missed {
                    // Some slices went unseen: every workspace gets a full pass next tick.
                    last_full.clear();
                }
                for (ws, (accounts, people)) in batch {
                    if let Err(e) = self.evaluate_touched(&ws, accounts, people, chrono::Utc::now()).await {
                        tracing::warn!(workspace = %ws, error = %e, "segment evaluation after processing failed; the next full pass covers it");
                    }
                }
                continue;
            }
            next_tick = Instant::now() + tick;
            match self.store.list_workspaces().await {
                Ok(workspaces) => {
                    for w in workspaces {
                        let ws = w.workspace_id;
                        let now = chrono::Utc::now();
                        let stale = last_full.get(&ws).is_none_or(|t| t.elapsed() >= full);
                        let done = if stale {
                            self.recompute_all(&ws, now).await.map(|c| {
                                last_full.insert(ws.clone(), Instant::now());
                                c.len()
                            })
                        } else {
                            self.run_due(&ws, now).await.map(|c| c.len())
                        };
                        match done {
                            Ok(0) => {}
                            Ok(n) => tracing::debug!(workspace = %ws, changes = n, "segment memberships changed"),
                            Err(e) => {
                                tracing::warn!(workspace = %ws, error = %e, "segment evaluation failed; tried again next tick")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not list workspaces for segment evaluation"),
            }
        }
    }

    /// Evaluates the accounts a slice touched: those it named, and those of the people it
    /// touched. A slice that touched very many (an import) is evaluated in full instead.
    pub async fn evaluate_touched(
        &self,
        ws: &WorkspaceId,
        mut accounts: HashSet<AccountId>,
        people: HashSet<String>,
        now: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        if self.workspace(ws).await?.ordered.is_empty() {
            return Ok(Vec::new());
        }
        if people.len() > MAX_TOUCHED || accounts.len() > MAX_TOUCHED {
            return self.recompute_all(ws, now).await;
        }
        for p in people {
            if let Some(person) = self.store.get_person(ws, &p).await? {
                accounts.extend(person.account_ids);
            }
        }
        let mut accounts: Vec<AccountId> = accounts.into_iter().collect();
        accounts.sort();
        self.evaluate_accounts(ws, &accounts, now).await
    }

    /// Evaluates `accounts` for every segment and records what changed: what processing
    /// calls for the accounts a slice touched.
    pub async fn evaluate_accounts(
        &self,
        ws: &WorkspaceId,
        accounts: &[AccountId],
        now: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let w = self.workspace(ws).await?;
        if w.ordered.is_empty() || accounts.is_empty() {
            return Ok(Vec::new());
        }
        let today = now.date_naive();
        let from = usage_from(today, w.usage_days);
        let by_id: HashMap<&str, &str> =
            w.ordered.iter().map(|c| (c.record.segment_id.as_str(), c.record.name.as_str())).collect();
        let mut updates: Vec<Vec<MembershipUpdate>> = vec![Vec::new(); w.ordered.len()];
        // Each account's reads, a few at a time (the store has several readers).
        let read = |account: &AccountId| {
            let account = account.clone();
            async move {
                let r = self
                    .store
                    .account_records(
                        ws,
                        &account,
                        (from, today + Days::new(1)),
                        (today - Days::new(400), today + Days::new(1)),
                    )
                    .await?;
                let ids = self.store.memberships_of(ws, account.as_str()).await?;
                Ok::<_, Error>((account, r, ids))
            }
        };
        let read: Vec<_> = futures_util::stream::iter(accounts.iter().map(read))
            .buffered(READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        for (account, r, ids) in read {
            let Some(record) = r.account else { continue };
            let mut names: HashSet<String> =
                ids.iter().filter_map(|id| by_id.get(id.as_str()).map(|n| n.to_string())).collect();
            let records = Records {
                accounts: HashMap::from([(account.clone(), record)]),
                scores: r.scores.last().map(|p| (account.clone(), p.clone())).into_iter().collect(),
                subscriptions: HashMap::from([(account.clone(), r.subscriptions)]),
                usage: HashMap::from([(account.clone(), r.usage)]),
            };
            for (i, c) in w.ordered.iter().enumerate() {
                let v = c.segment.evaluate(&records.facts(&account, &names, now), now);
                if v.member {
                    names.insert(c.record.name.clone());
                } else {
                    names.remove(&c.record.name);
                }
                updates[i].push(MembershipUpdate {
                    subject_id: account.to_string(),
                    member: v.member,
                    next_check: v.next_change,
                });
            }
        }
        // One write per segment, all at once: they share the store's commits.
        let writes = w
            .ordered
            .iter()
            .zip(&updates)
            .map(|(c, u)| self.store.update_memberships(ws, &c.record.segment_id, u, now));
        let written = futures_util::future::try_join_all(writes).await?;
        Ok(written.into_iter().flatten().collect())
    }

    /// Evaluates again the accounts whose results were due to change by `now`; returns the
    /// changes.
    pub async fn run_due(&self, ws: &WorkspaceId, now: Timestamp) -> Result<Vec<SegmentChange>> {
        let mut changes = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let due = self.store.due_checks(ws, now, DUE_PER_ROUND).await?;
            // An account evaluated this round gets a next check after `now`; one that is due
            // again is left for the next call rather than evaluated in a loop.
            let ids: Vec<AccountId> = due
                .into_iter()
                .filter(|d| seen.insert(d.subject_id.clone()))
                .filter_map(|d| AccountId::parse(&d.subject_id).ok())
                .collect();
            if ids.is_empty() {
                return Ok(changes);
            }
            changes.extend(self.evaluate_accounts(ws, &ids, now).await?);
        }
    }

    /// Every account's records, with usage from `usage_days` back (all of it for `None`).
    async fn load_all(&self, ws: &WorkspaceId, usage_days: Option<u32>, now: Timestamp) -> Result<Records> {
        let today = now.date_naive();
        let from = usage_from(today, usage_days);
        let mut records = Records::default();
        let mut page = PageRequest::first(store::MAX_LIMIT);
        loop {
            let p = self.store.list_accounts(ws, &page).await?;
            records.accounts.extend(p.items.into_iter().map(|a| (a.account_id.clone(), a)));
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        records.scores = self.store.score_points_as_of(ws, today).await?.into_iter().collect();
        for s in self.store.list_subscriptions(ws).await? {
            records.subscriptions.entry(s.account_id.clone()).or_default().push(s);
        }
        for row in self.store.accounts_usage(ws, None, from, today + Days::new(1)).await? {
            records.usage.entry(row.account_id.clone()).or_default().push(row);
        }
        Ok(records)
    }
}

/// The first day of usage to read for conditions that read `usage_days` (all for `None`):
/// at least the days `active_users` counts.
fn usage_from(today: NaiveDate, usage_days: Option<u32>) -> NaiveDate {
    match usage_days {
        Some(days) => today - Days::new(u64::from(days).max(facts::ACTIVE_USERS_DAYS)),
        None => NaiveDate::MIN,
    }
}

/// Segments in an order where each comes after those it tests (names it cannot resolve are
/// left to fail in evaluation as "not a member").
fn order(mut compiled: Vec<Compiled>) -> Vec<Compiled> {
    compiled.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    let mut out: Vec<Compiled> = Vec::with_capacity(compiled.len());
    let mut placed: HashSet<String> = HashSet::new();
    while !compiled.is_empty() {
        let before = compiled.len();
        let mut i = 0;
        while i < compiled.len() {
            let ready = compiled[i]
                .segment
                .depends_on
                .iter()
                .all(|d| placed.contains(d) || !compiled.iter().any(|c| &c.record.name == d));
            if ready {
                let c = compiled.remove(i);
                placed.insert(c.record.name.clone());
                out.push(c);
            } else {
                i += 1;
            }
        }
        if compiled.len() == before {
            // A cycle (refused when saved): the rest in name order.
            out.append(&mut compiled);
        }
    }
    out
}

impl Records {
    /// The facts of account `id`, a member of the segments `names`.
    fn facts<'a>(&'a self, id: &'a AccountId, names: &'a HashSet<String>, now: Timestamp) -> AccountFacts<'a> {
        AccountFacts {
            id: id.as_str(),
            account: self.accounts.get(id),
            score: self.scores.get(id),
            subscriptions: self.subscriptions.get(id).map_or(&[], Vec::as_slice),
            usage: self.usage.get(id).map_or(&[], Vec::as_slice),
            segments: names,
            now,
        }
    }
}

#[cfg(test)]
mod tests;
