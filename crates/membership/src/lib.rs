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
use segments::{Facts, Schema, Segment, Warning};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{
    Account, MembershipUpdate, PageRequest, PersonSummary, ScorePoint, SegmentChange, SegmentRecord, Store, StoreError,
    SubjectKind, Subscription, Ticket, UsageRow,
};

pub use crate::facts::renews_at;
use crate::facts::{AccountFacts, PersonFacts};

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

/// A workspace's segments of one kind, compiled, in evaluation order (each after the ones it
/// tests).
#[derive(Default)]
struct Kinded {
    ordered: Vec<Compiled>,
    /// What its conditions read, together.
    reads: Reads,
}

/// What evaluating some conditions reads of an account beyond its record, and of its record.
#[derive(Clone, Debug, Default)]
struct Reads {
    /// How far back any condition looks at usage: `None` for all of it.
    usage_days: Option<u32>,
    /// Whether any condition counts support tickets.
    tickets: bool,
    /// Whether any condition reads the latest score.
    scores: bool,
    /// Whether any condition reads subscriptions.
    subscriptions: bool,
    /// The account traits the conditions read, sorted (the others are not parsed).
    traits: Vec<String>,
}

impl Reads {
    /// Nothing beyond the record.
    const NONE: Reads =
        Reads { usage_days: Some(0), tickets: false, scores: false, subscriptions: false, traits: Vec::new() };

    fn of(segment: &Segment) -> Reads {
        Reads {
            usage_days: segment.usage_days,
            tickets: segment.tickets,
            scores: segment.scores,
            subscriptions: segment.subscriptions,
            traits: segment.traits.clone(),
        }
    }

    /// What these and `b` read together.
    fn and(self, b: Reads) -> Reads {
        let usage_days = self.usage_days.zip(b.usage_days).map(|(x, y)| x.max(y));
        let mut traits = self.traits;
        traits.extend(b.traits);
        traits.sort_unstable();
        traits.dedup();
        Reads {
            traits,
            usage_days,
            tickets: self.tickets || b.tickets,
            scores: self.scores || b.scores,
            subscriptions: self.subscriptions || b.subscriptions,
        }
    }
}

/// A workspace's segments, compiled.
struct Workspace {
    made: Instant,
    accounts: Kinded,
    people: Kinded,
}

impl Workspace {
    fn of(&self, kind: SubjectKind) -> &Kinded {
        match kind {
            SubjectKind::Accounts => &self.accounts,
            SubjectKind::People => &self.people,
        }
    }

    /// The kind of the segment with id `id`, if the workspace has it compiled.
    fn kind_of(&self, id: &str) -> Option<SubjectKind> {
        [SubjectKind::Accounts, SubjectKind::People]
            .into_iter()
            .find(|k| self.of(*k).ordered.iter().any(|c| c.record.segment_id == id))
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    compiled: Mutex<HashMap<WorkspaceId, Arc<Workspace>>>,
    /// Each workspace's passes in progress, by the subjects evaluated since each began.
    passes: Mutex<HashMap<WorkspaceId, Vec<Dirty>>>,
}

/// The subjects evaluated one by one while a pass over every subject runs: their results
/// are fresher than the pass's, which leaves them out when it writes.
type Dirty = Arc<tokio::sync::Mutex<HashSet<String>>>;

/// A pass in progress; ends when dropped.
struct Pass<'a> {
    engine: &'a Engine,
    ws: WorkspaceId,
    dirty: Dirty,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut passes = self.engine.passes.lock().expect("passes lock");
        if let Some(list) = passes.get_mut(&self.ws) {
            list.retain(|d| !Arc::ptr_eq(d, &self.dirty));
            if list.is_empty() {
                passes.remove(&self.ws);
            }
        }
    }
}

/// What the evaluation of accounts reads, for any number of them, by account id.
#[derive(Default)]
struct Records {
    accounts: HashMap<String, Account>,
    scores: HashMap<String, ScorePoint>,
    subscriptions: HashMap<String, Vec<Subscription>>,
    tickets: HashMap<String, Vec<Ticket>>,
    usage: HashMap<String, Vec<UsageRow>>,
}

/// The subjects of one kind an evaluation reads.
enum Subjects {
    Accounts(Records),
    People(HashMap<String, PersonSummary>),
}

impl Subjects {
    /// Their ids, in order.
    fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = match self {
            Subjects::Accounts(r) => r.accounts.keys().map(String::as_str).collect(),
            Subjects::People(p) => p.keys().map(String::as_str).collect(),
        };
        ids.sort_unstable();
        ids
    }

    /// The facts of subject `id`, a member of the segments `names`.
    fn facts<'a>(&'a self, id: &'a str, names: &'a HashSet<String>, now: Timestamp) -> Box<dyn Facts + 'a> {
        match self {
            Subjects::Accounts(r) => Box::new(AccountFacts {
                id,
                account: r.accounts.get(id),
                score: r.scores.get(id),
                subscriptions: r.subscriptions.get(id).map_or(&[], Vec::as_slice),
                tickets: r.tickets.get(id).map_or(&[], Vec::as_slice),
                usage: r.usage.get(id).map_or(&[], Vec::as_slice),
                segments: names,
                now,
            }),
            Subjects::People(p) => Box::new(PersonFacts { person: p.get(id), segments: names }),
        }
    }
}

impl Engine {
    pub fn new(store: Arc<dyn Store>) -> Engine {
        Engine { store, compiled: Mutex::new(HashMap::new()), passes: Mutex::new(HashMap::new()) }
    }

    fn forget(&self, ws: &WorkspaceId) {
        self.compiled.lock().expect("compiled lock").remove(ws);
    }

    /// Starts a pass over every subject of `ws`.
    fn begin_pass(&self, ws: &WorkspaceId) -> Pass<'_> {
        let dirty = Dirty::default();
        self.passes.lock().expect("passes lock").entry(ws.clone()).or_default().push(dirty.clone());
        Pass { engine: self, ws: ws.clone(), dirty }
    }

    /// Before subjects are evaluated one by one: every pass in progress leaves them out.
    /// Taken before their records are read, so a pass either leaves them out or wrote
    /// before they were read.
    async fn mark_evaluated(&self, ws: &WorkspaceId, ids: &[String]) {
        let passes: Vec<Dirty> = self.passes.lock().expect("passes lock").get(ws).cloned().unwrap_or_default();
        for dirty in passes {
            dirty.lock().await.extend(ids.iter().cloned());
        }
    }

    /// Writes a pass's updates for one segment, leaving out the subjects evaluated one by one
    /// since the pass began; the pass's dirty set is held while it writes.
    async fn write_pass(
        &self,
        pass: &Pass<'_>,
        segment_id: &str,
        updates: &[MembershipUpdate],
        now: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let mut changes = Vec::new();
        for chunk in updates.chunks(UPDATES_PER_WRITE) {
            let dirty = pass.dirty.lock().await;
            let kept: Vec<MembershipUpdate> =
                chunk.iter().filter(|u| !dirty.contains(&u.subject_id)).cloned().collect();
            changes.extend(self.store.update_memberships(&pass.ws, segment_id, &kept, now).await?);
        }
        Ok(changes)
    }

    /// What conditions on subjects of `kind` may name in the workspace (as segment `name`, which
    /// may not test itself, when one is given).
    pub async fn schema(&self, ws: &WorkspaceId, kind: SubjectKind, name: Option<&str>) -> Result<Schema> {
        let vocabulary = self.store.vocabulary(ws).await?;
        let others = self.store.list_segments(ws).await?;
        Ok(schema_of(&vocabulary, &others, kind, name))
    }

    /// Checks a definition as segment `id` (when it replaces one): its condition, its name,
    /// and that no segment would end up testing its own membership through others.
    async fn check(&self, ws: &WorkspaceId, d: &Definition, id: Option<&str>) -> Result<Segment> {
        let name = d.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::Refused("name: a segment needs a name of 1 to 200 characters".into()));
        }
        let schema = self.schema(ws, d.kind, Some(name)).await?;
        let segment = segments::compile(&d.condition, &schema).map_err(Error::Invalid)?;
        // The stored segments as they are now (a stored condition that no longer compiles
        // tests nothing).
        self.forget(ws);
        let w = self.workspace(ws).await?;
        let mut graph: Vec<(String, Vec<String>)> = w
            .of(d.kind)
            .ordered
            .iter()
            .filter(|c| Some(c.record.segment_id.as_str()) != id)
            .map(|c| (c.record.name.clone(), c.segment.depends_on.clone()))
            .collect();
        graph.push((name.to_owned(), segment.depends_on.clone()));
        if let Some(cycle) = segments::cycle(&graph) {
            return Err(Error::Refused(format!(
                "condition: segments would test their own membership through each other: {}",
                cycle.join(" -> ")
            )));
        }
        Ok(segment)
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
        self.forget(ws);
        let w = self.workspace(ws).await?;
        Ok([&w.accounts, &w.people]
            .into_iter()
            .flat_map(|k| &k.ordered)
            .filter(|c| c.segment.depends_on.iter().any(|d| d == name))
            .map(|c| c.record.name.clone())
            .collect())
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
        let w = self.workspace(ws).await?;
        let subjects = self.load_all(ws, kind, Reads::of(&segment), now).await?;
        // The memberships the condition tests, of the segments it names (most name none).
        let current = self.memberships_of_names(ws, w.of(kind), &segment.depends_on).await?;
        let (mut size, mut of, mut members) = (0u64, 0u64, Vec::new());
        let none = HashSet::new();
        for id in subjects.ids() {
            let names = current.get(id).unwrap_or(&none);
            let v = segment.evaluate(subjects.facts(id, names, now).as_ref(), now);
            of += 1;
            if v.member {
                size += 1;
                if members.len() < sample {
                    members.push(id.to_owned());
                }
            }
        }
        Ok(Preview { size, of, sample: members, warnings: segment.warnings })
    }

    /// Whether `condition` (the segment language, for subjects of `kind`) holds now for each
    /// of `ids`, in their order; a subject that does not exist holds nothing. Journeys test
    /// their branches, goals and exit conditions with it.
    pub async fn holds(
        &self,
        ws: &WorkspaceId,
        kind: SubjectKind,
        condition: &str,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<bool>> {
        let schema = self.schema(ws, kind, None).await?;
        let segment = segments::compile(condition, &schema).map_err(Error::Invalid)?;
        let w = self.workspace(ws).await?;
        let by_id: HashMap<&str, &str> =
            w.of(kind).ordered.iter().map(|c| (c.record.segment_id.as_str(), c.record.name.as_str())).collect();
        let mut unique: Vec<String> = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let subjects = self.load_some(ws, kind, &unique, Reads::of(&segment), now).await?;
        let mut verdicts: HashMap<&str, bool> = HashMap::new();
        for id in subjects.ids() {
            let names: HashSet<String> = if segment.depends_on.is_empty() {
                HashSet::new()
            } else {
                let current = self.store.memberships_of(ws, id).await?;
                current.iter().filter_map(|m| by_id.get(m.segment_id.as_str()).map(|n| n.to_string())).collect()
            };
            verdicts.insert(id, segment.evaluate(subjects.facts(id, &names, now).as_ref(), now).member);
        }
        Ok(ids.iter().map(|id| verdicts.get(id.as_str()).copied().unwrap_or(false)).collect())
    }

    /// The workspace's segments compiled, from the cache while it is fresh.
    async fn workspace(&self, ws: &WorkspaceId) -> Result<Arc<Workspace>> {
        if let Some(w) = self.compiled.lock().expect("compiled lock").get(ws)
            && w.made.elapsed() < RECOMPILE
        {
            return Ok(w.clone());
        }
        let (mut accounts, mut people) = (Vec::new(), Vec::new());
        let (vocabulary, records) = tokio::try_join!(self.store.vocabulary(ws), self.store.list_segments(ws))?;
        for record in records.iter().cloned() {
            let schema = schema_of(&vocabulary, &records, record.kind, Some(&record.name));
            match segments::compile(&record.condition, &schema).map_err(Error::Invalid) {
                Ok(segment) => match record.kind {
                    SubjectKind::Accounts => accounts.push(Compiled { record, segment }),
                    SubjectKind::People => people.push(Compiled { record, segment }),
                },
                Err(e) => {
                    tracing::warn!(workspace = %ws, segment = %record.segment_id, error = %e, "a stored segment no longer compiles; it is not evaluated");
                }
            }
        }
        let kinded = |compiled: Vec<Compiled>| {
            let ordered = order(compiled);
            let reads = ordered.iter().fold(Reads::NONE, |r, c| r.and(Reads::of(&c.segment)));
            Kinded { ordered, reads }
        };
        let w = Arc::new(Workspace { made: Instant::now(), accounts: kinded(accounts), people: kinded(people) });
        self.compiled.lock().expect("compiled lock").insert(ws.clone(), w.clone());
        Ok(w)
    }

    /// Every subject's memberships of segments of one kind, by subject id, as segment names.
    async fn all_memberships(&self, ws: &WorkspaceId, k: &Kinded) -> Result<HashMap<String, HashSet<String>>> {
        let names: Vec<String> = k.ordered.iter().map(|c| c.record.name.clone()).collect();
        self.memberships_of_names(ws, k, &names).await
    }

    /// Each subject's memberships of the segments of one kind named `names`, by subject id, as
    /// segment names.
    async fn memberships_of_names(
        &self,
        ws: &WorkspaceId,
        k: &Kinded,
        names: &[String],
    ) -> Result<HashMap<String, HashSet<String>>> {
        let mut out: HashMap<String, HashSet<String>> = HashMap::new();
        for c in k.ordered.iter().filter(|c| names.contains(&c.record.name)) {
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

    /// Evaluates every subject of its kind for segment `id` and records the result; returns
    /// its size. The segments it tests are read as stored.
    pub async fn recompute(&self, ws: &WorkspaceId, id: &str, now: Timestamp) -> Result<u64> {
        let w = self.workspace(ws).await?;
        let kind = w.kind_of(id).ok_or(Error::NotFound)?;
        let k = w.of(kind);
        let target = k.ordered.iter().find(|c| c.record.segment_id == id).ok_or(Error::NotFound)?;
        let pass = self.begin_pass(ws);
        let subjects = self.load_all(ws, kind, k.reads.clone(), now).await?;
        let current = self.all_memberships(ws, k).await?;
        let was: HashSet<String> = self.members(ws, id).await?.into_iter().collect();
        let mut updates = Vec::new();
        let mut size = 0;
        let none = HashSet::new();
        for subject in subjects.ids() {
            let names = current.get(subject).unwrap_or(&none);
            let v = target.segment.evaluate(subjects.facts(subject, names, now).as_ref(), now);
            size += u64::from(v.member);
            if v.member || v.next_change.is_some() || was.contains(subject) {
                updates.push(MembershipUpdate {
                    subject_id: subject.to_owned(),
                    member: v.member,
                    next_check: v.next_change,
                });
            }
        }
        self.write_pass(&pass, id, &updates, now).await?;
        Ok(size)
    }

    /// Evaluates every subject for every segment of its kind, in one pass per subject, and
    /// records what changed: what a full recompute is, after a scoring run or on a schedule.
    pub async fn recompute_all(&self, ws: &WorkspaceId, now: Timestamp) -> Result<Vec<SegmentChange>> {
        let w = self.workspace(ws).await?;
        let mut changes = Vec::new();
        for kind in [SubjectKind::Accounts, SubjectKind::People] {
            let k = w.of(kind);
            if k.ordered.is_empty() {
                continue;
            }
            let pass = self.begin_pass(ws);
            let subjects = self.load_all(ws, kind, k.reads.clone(), now).await?;
            let current = self.all_memberships(ws, k).await?;
            let updates = evaluate_in_order(k, &subjects, &subjects.ids(), current, now);
            for (c, u) in k.ordered.iter().zip(&updates) {
                changes.extend(self.write_pass(&pass, &c.record.segment_id, u, now).await?);
            }
        }
        Ok(changes)
    }

    /// Writes a pass's updates, one write per segment, side by side (they share commits).
    async fn write(
        &self,
        ws: &WorkspaceId,
        k: &Kinded,
        updates: Vec<Vec<MembershipUpdate>>,
        now: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let mut writes = Vec::new();
        for (c, u) in k.ordered.iter().zip(&updates) {
            for chunk in u.chunks(UPDATES_PER_WRITE) {
                writes.push(self.store.update_memberships(ws, &c.record.segment_id, chunk, now));
            }
        }
        let written = futures_util::future::try_join_all(writes).await?;
        Ok(written.into_iter().flatten().collect())
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
        // Full passes run beside everything else, one per workspace at a time.
        let mut full_passes: HashMap<WorkspaceId, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut next_tick = Instant::now() + tick;
        loop {
            let received = match touched.as_mut() {
                Some(rx) => tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = rx.recv() => Some(r),
                    _ = tokio::time::sleep_until(next_tick.into()) => None,
                },
                None => tokio::select! {
                    _ = shutdown.cancelled() => break,
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
                        let running = full_passes.get(&ws).is_some_and(|t| !t.is_finished());
                        if stale && !running {
                            last_full.insert(ws.clone(), Instant::now());
                            let (engine, of) = (self.clone(), ws.clone());
                            let task = tokio::spawn(async move {
                                let ws = of;
                                let started = Instant::now();
                                match engine.recompute_all(&ws, chrono::Utc::now()).await {
                                    Ok(c) => {
                                        let seconds = started.elapsed().as_secs_f64();
                                        tracing::debug!(workspace = %ws, changes = c.len(), seconds, "a full segment pass")
                                    }
                                    Err(e) => tracing::warn!(workspace = %ws, error = %e, "a full segment pass failed"),
                                }
                            });
                            full_passes.insert(ws.clone(), task);
                        }
                        let done = self.run_due(&ws, now).await.map(|c| c.len());
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
        // A pass cut short writes nothing more; the next start makes a full pass anyway.
        for (_, task) in full_passes {
            task.abort();
            let _ = task.await;
        }
    }

    /// Evaluates the subjects a slice touched: the accounts it named and those of the people
    /// it touched, for account segments, and the people for people segments. A slice that
    /// touched very many (an import) is evaluated in full instead.
    pub async fn evaluate_touched(
        &self,
        ws: &WorkspaceId,
        mut accounts: HashSet<AccountId>,
        people: HashSet<String>,
        now: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let w = self.workspace(ws).await?;
        if w.accounts.ordered.is_empty() && w.people.ordered.is_empty() {
            return Ok(Vec::new());
        }
        if people.len() > MAX_TOUCHED || accounts.len() > MAX_TOUCHED {
            return self.recompute_all(ws, now).await;
        }
        let mut changes = Vec::new();
        if !w.accounts.ordered.is_empty() {
            // The people's accounts, a few reads at a time.
            let reads: Vec<_> = people.iter().map(|p| self.store.get_person(ws, p)).collect();
            let found: Vec<Option<store::Person>> = futures_util::stream::iter(reads)
                .buffered(READS_AT_ONCE)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            accounts.extend(found.into_iter().flatten().flat_map(|p| p.account_ids));
            let ids: Vec<String> = accounts.into_iter().map(|a| a.to_string()).collect();
            changes.extend(self.evaluate(ws, SubjectKind::Accounts, &ids, now).await?);
        }
        if !w.people.ordered.is_empty() {
            let ids: Vec<String> = people.into_iter().collect();
            changes.extend(self.evaluate(ws, SubjectKind::People, &ids, now).await?);
        }
        Ok(changes)
    }

    /// Evaluates `accounts` for every account segment and records what changed.
    pub async fn evaluate_accounts(
        &self,
        ws: &WorkspaceId,
        accounts: &[AccountId],
        now: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let ids: Vec<String> = accounts.iter().map(|a| a.to_string()).collect();
        self.evaluate(ws, SubjectKind::Accounts, &ids, now).await
    }

    /// Evaluates some subjects of `kind` for every segment of that kind and records what
    /// changed.
    pub async fn evaluate(
        &self,
        ws: &WorkspaceId,
        kind: SubjectKind,
        ids: &[String],
        now: Timestamp,
    ) -> Result<Vec<SegmentChange>> {
        let w = self.workspace(ws).await?;
        let k = w.of(kind);
        if k.ordered.is_empty() || ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<String> = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.mark_evaluated(ws, &ids).await;
        let subjects = self.load_some(ws, kind, &ids, k.reads.clone(), now).await?;
        let by_id: HashMap<&str, &str> =
            k.ordered.iter().map(|c| (c.record.segment_id.as_str(), c.record.name.as_str())).collect();
        let present = subjects.ids();
        // Each subject's memberships, a few at a time.
        let reads: Vec<_> = present.iter().map(|id| self.store.memberships_of(ws, id)).collect();
        let memberships: Vec<Vec<store::Membership>> = futures_util::stream::iter(reads)
            .buffered(READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let current: HashMap<String, HashSet<String>> = present
            .iter()
            .zip(memberships)
            .map(|(id, segs)| {
                let names = segs.iter().filter_map(|m| by_id.get(m.segment_id.as_str()).map(|n| n.to_string()));
                (id.to_string(), names.collect())
            })
            .collect();
        let updates = evaluate_in_order(k, &subjects, &present, current, now);
        self.write(ws, k, updates, now).await
    }

    /// Evaluates again the subjects whose results were due to change by `now`; returns the
    /// changes.
    pub async fn run_due(&self, ws: &WorkspaceId, now: Timestamp) -> Result<Vec<SegmentChange>> {
        let mut changes = Vec::new();
        let mut seen: HashSet<(SubjectKind, String)> = HashSet::new();
        loop {
            let w = self.workspace(ws).await?;
            let due = self.store.due_checks(ws, now, DUE_PER_ROUND).await?;
            // A subject evaluated this call gets a next check after `now`; one that is due
            // again is left for the next call rather than evaluated in a loop.
            let mut by_kind: HashMap<SubjectKind, Vec<String>> = HashMap::new();
            for d in due {
                let Some(kind) = w.kind_of(&d.segment_id) else { continue };
                if seen.insert((kind, d.subject_id.clone())) {
                    by_kind.entry(kind).or_default().push(d.subject_id);
                }
            }
            if by_kind.is_empty() {
                return Ok(changes);
            }
            for (kind, ids) in by_kind {
                changes.extend(self.evaluate(ws, kind, &ids, now).await?);
            }
        }
    }

    /// Every subject of `kind`, with what `reads` says of accounts: usage from `usage_days`
    /// back (all of it for `None`), tickets when conditions count them.
    async fn load_all(&self, ws: &WorkspaceId, kind: SubjectKind, reads: Reads, now: Timestamp) -> Result<Subjects> {
        if kind == SubjectKind::People {
            let mut people = HashMap::new();
            let mut page = PageRequest::first(store::MAX_LIMIT);
            loop {
                let p = self.store.list_people(ws, &page).await?;
                people.extend(p.items.into_iter().map(|p| (p.person_id.clone(), p)));
                match p.next {
                    Some(c) => page.after = Some(c),
                    None => return Ok(Subjects::People(people)),
                }
            }
        }
        let today = now.date_naive();
        let from = usage_from(today, reads.usage_days);
        let mut records = Records::default();
        let mut page = PageRequest::first(store::MAX_LIMIT);
        loop {
            // The traits the conditions name only: parsing every trait of every account was a
            // quarter of a preview.
            let p = self.store.list_account_records(ws, &page, &reads.traits).await?;
            records.accounts.extend(p.items.into_iter().map(|a| (a.account_id.to_string(), a)));
            match p.next {
                Some(c) => page.after = Some(c),
                None => break,
            }
        }
        // Only what the conditions read: at 100,000 accounts the score points and the
        // subscriptions are half of what a preview reads.
        if reads.scores {
            let points = self.store.score_headlines_as_of(ws, today).await?;
            records.scores = points.into_iter().map(|(id, p)| (id.to_string(), p)).collect();
        }
        if reads.subscriptions {
            for s in self.store.list_subscriptions(ws).await? {
                records.subscriptions.entry(s.account_id.to_string()).or_default().push(s);
            }
        }
        if reads.tickets {
            // A ticket opened long ago may still be open: all of them.
            for t in self.store.list_tickets(ws, chrono::DateTime::UNIX_EPOCH).await? {
                if let Some(account) = &t.account_id {
                    records.tickets.entry(account.to_string()).or_default().push(t);
                }
            }
        }
        // Conditions that count no events read no usage (at 100,000 accounts, a month's rows
        // are most of what a preview reads).
        if reads.usage_days != Some(0) {
            for row in self.store.accounts_usage(ws, None, from, today + Days::new(1)).await? {
                records.usage.entry(row.account_id.to_string()).or_default().push(row);
            }
        }
        Ok(Subjects::Accounts(records))
    }

    /// The subjects `ids` of `kind` that exist, read a few at a time.
    async fn load_some(
        &self,
        ws: &WorkspaceId,
        kind: SubjectKind,
        ids: &[String],
        reads: Reads,
        now: Timestamp,
    ) -> Result<Subjects> {
        if kind == SubjectKind::People {
            let reads: Vec<_> = ids.iter().map(|id| self.store.get_person(ws, id)).collect();
            let people: Vec<Option<store::Person>> = futures_util::stream::iter(reads)
                .buffered(READS_AT_ONCE)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            return Ok(Subjects::People(
                people
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let summary = PersonSummary {
                            person_id: p.person_id.clone(),
                            user_id: p.user_id,
                            traits: p.traits,
                            first_seen_at: p.first_seen_at,
                            last_seen_at: p.last_seen_at,
                        };
                        (p.person_id, summary)
                    })
                    .collect(),
            ));
        }
        let today = now.date_naive();
        let from = usage_from(today, reads.usage_days);
        let read = |id: &String| {
            let id = id.clone();
            async move {
                let Ok(account) = AccountId::parse(&id) else { return Ok(None) };
                let r = self
                    .store
                    .account_records(
                        ws,
                        &account,
                        (from, today + Days::new(1)),
                        (today - Days::new(400), today + Days::new(1)),
                    )
                    .await?;
                Ok::<_, StoreError>(Some((id, r)))
            }
        };
        let reads: Vec<_> = ids.iter().map(read).collect();
        let read: Vec<Option<(String, store::AccountRecords)>> = futures_util::stream::iter(reads)
            .buffered(READS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let mut records = Records::default();
        for (id, r) in read.into_iter().flatten() {
            let Some(account) = r.account else { continue };
            records.accounts.insert(id.clone(), account);
            if let Some(p) = r.scores.last() {
                records.scores.insert(id.clone(), p.clone());
            }
            records.subscriptions.insert(id.clone(), r.subscriptions);
            records.tickets.insert(id.clone(), r.tickets);
            records.usage.insert(id, r.usage);
        }
        Ok(Subjects::Accounts(records))
    }
}

/// Each of `ids` through every segment of `k` in order, each segment reading the results of
/// those before it. Returns each segment's updates: the subjects that
/// are members, were, or wait for a moment (others need no row).
fn evaluate_in_order(
    k: &Kinded,
    subjects: &Subjects,
    ids: &[&str],
    mut current: HashMap<String, HashSet<String>>,
    now: Timestamp,
) -> Vec<Vec<MembershipUpdate>> {
    let mut updates: Vec<Vec<MembershipUpdate>> = vec![Vec::new(); k.ordered.len()];
    for &id in ids {
        let mut names = current.remove(id).unwrap_or_default();
        for (i, c) in k.ordered.iter().enumerate() {
            let was = names.contains(&c.record.name);
            let v = c.segment.evaluate(subjects.facts(id, &names, now).as_ref(), now);
            if v.member {
                names.insert(c.record.name.clone());
            } else {
                names.remove(&c.record.name);
            }
            if v.member || was || v.next_change.is_some() {
                updates[i].push(MembershipUpdate {
                    subject_id: id.to_owned(),
                    member: v.member,
                    next_check: v.next_change,
                });
            }
        }
    }
    updates
}

/// The schema a condition of `kind` is checked against, as segment `name` (if it has one), in
/// a workspace with `vocabulary` and the segments `all`.
fn schema_of(vocabulary: &store::Vocabulary, all: &[SegmentRecord], kind: SubjectKind, name: Option<&str>) -> Schema {
    Schema {
        kind: match kind {
            SubjectKind::Accounts => segments::Kind::Accounts,
            SubjectKind::People => segments::Kind::People,
        },
        traits: match kind {
            SubjectKind::Accounts => vocabulary.account_traits.clone(),
            SubjectKind::People => vocabulary.person_traits.clone(),
        },
        events: vocabulary.events.clone(),
        segments: all
            .iter()
            .filter(|s| s.kind == kind && Some(s.name.as_str()) != name)
            .map(|s| s.name.clone())
            .collect(),
        name: name.map(str::to_owned),
    }
}

/// The first day of usage to read for conditions that read `usage_days` (all for `None`; a
/// condition naming `active_users` reads the days it counts).
fn usage_from(today: NaiveDate, usage_days: Option<u32>) -> NaiveDate {
    match usage_days {
        Some(days) => today - Days::new(u64::from(days)),
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

#[cfg(test)]
mod tests;
