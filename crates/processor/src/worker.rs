//! The processing worker: one unit of work is one slice of one workspace's log.

use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::{AccountId, EventType, IdKind, IdentityKey, WorkspaceId};
use store::{Changes, LogPosition, LoggedEvent, Op, Payloads, Result, Store};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::resolve::{EventView, Identities, resolve_with};

#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    /// Events per slice (per transaction) when processing keeps up: small slices keep the
    /// time from ingest to processed short.
    pub batch: usize,
    /// The largest slice. While a backlog lasts each full slice doubles the next, up to
    /// this: the cost of a slice grows with the people and accounts it touches more than
    /// with its events, so a backlog is worked off in fewer, larger transactions. A slice is
    /// one write that appends may wait behind, so this also bounds that wait.
    pub max_batch: usize,
    /// How long to sleep when there is nothing to do and nobody wakes the worker (events
    /// appended by another process are found this way).
    pub idle_poll: Duration,
    /// After a round of slices that all found their workspace caught up, how long events are
    /// left to gather before the next. A trickle of events is then processed in a few slices a
    /// second rather than one per request: each slice rewrites the pages of the people and
    /// accounts it touches and is one commit that appends may wait behind, so many small ones
    /// cost ingest far more than their events. It adds at most this to processing's lag.
    pub gather: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            batch: 2_000,
            max_batch: 8_000,
            idle_poll: Duration::from_millis(250),
            gather: Duration::from_millis(100),
        }
    }
}

/// What a processed slice changed: accounts whose records or usage it touched, and people
/// whose records or usage it touched (their accounts' usage with them). For those who keep
/// something current as processing goes (segments).
#[derive(Clone, Debug, PartialEq)]
pub struct Touched {
    pub workspace: WorkspaceId,
    pub accounts: Vec<AccountId>,
    pub people: Vec<String>,
}

impl Touched {
    fn of(workspace: &WorkspaceId, changes: &store::Changes) -> Touched {
        let mut accounts: HashSet<&AccountId> = HashSet::default();
        let mut people: HashSet<&str> = HashSet::default();
        for op in &changes.ops {
            match op {
                Op::UpsertAccount { account_id, .. } | Op::SetAccountTraits { account_id, .. } => {
                    accounts.insert(account_id);
                }
                Op::AddMembership { person_id, account_id, .. } => {
                    accounts.insert(account_id);
                    people.insert(person_id);
                }
                Op::Seen { person_id, account_id, .. } => {
                    accounts.extend(account_id);
                    people.extend(person_id.as_deref());
                }
                Op::PersonSeen { person_id, .. } | Op::SetPersonTraits { person_id, .. } => {
                    people.insert(person_id);
                }
                _ => {}
            }
        }
        for e in &changes.event_people {
            people.insert(&e.person_id);
            accounts.extend(e.account_id.as_ref());
        }
        for u in &changes.usage {
            people.insert(&u.person_id);
            match &u.credit {
                store::Credit::Named(a) => {
                    accounts.insert(a);
                }
                store::Credit::Members { people: p, joined } => {
                    people.extend(p.iter().map(String::as_str));
                    accounts.extend(joined);
                }
            }
        }
        let mut accounts: Vec<AccountId> = accounts.into_iter().cloned().collect();
        accounts.sort();
        let mut people: Vec<String> = people.into_iter().map(str::to_owned).collect();
        people.sort();
        Touched { workspace: workspace.clone(), accounts, people }
    }
}

/// Slices' [`Touched`] waiting for a slow listener; beyond, it is told it missed some.
const TOUCHED_BACKLOG: usize = 1_024;

/// Events just appended, as they were given to the store, with where it put them.
pub enum Appended {
    /// Whole events at their positions.
    Events(Vec<LoggedEvent>),
    /// Track calls in columns, batch after batch, and the position of each row in that order
    /// (`None` for a duplicate the store left out).
    Tracks { batches: Vec<Arc<domain::TrackRows>>, positions: Vec<Option<LogPosition>> },
}

impl Appended {
    /// The events stored, in log order.
    pub(crate) fn views(&self) -> Views<'_> {
        match self {
            Appended::Events(events) => Views::Events(events.iter()),
            Appended::Tracks { batches, positions } => Views::Tracks(TrackViews {
                batches,
                positions: positions.iter(),
                batch: 0,
                row: 0,
                days: domain::Days::default(),
            }),
        }
    }

    /// The people each event stored names, in log order: its user id, anonymous id and
    /// previous id, read without the rest of the event.
    fn people(&self) -> Box<dyn Iterator<Item = [Option<&str>; 3]> + '_> {
        match self {
            Appended::Events(events) => Box::new(events.iter().map(|e| {
                let e = &e.event;
                [e.user_id.as_deref(), e.anonymous_id.as_deref(), e.previous_id.as_deref()]
            })),
            // Once per run of rows that name the same people, if the store kept any of them.
            Appended::Tracks { batches, positions } => Box::new(
                batches
                    .iter()
                    .scan(0, |before, b| {
                        let first = *before;
                        *before += b.len();
                        Some(b.people_runs().map(move |(rows, user, anonymous)| {
                            (first + rows.start..first + rows.end, user, anonymous)
                        }))
                    })
                    .flatten()
                    .filter(|(rows, ..)| positions.get(rows.clone()).is_some_and(|at| at.iter().any(Option::is_some)))
                    .map(|(_, user, anonymous)| [user, anonymous, None]),
            ),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Appended::Events(events) => events.len(),
            Appended::Tracks { positions, .. } => positions.iter().flatten().count(),
        }
    }

    pub(crate) fn last_position(&self) -> Option<LogPosition> {
        match self {
            Appended::Events(events) => events.last().map(|e| e.position),
            Appended::Tracks { positions, .. } => positions.iter().rev().flatten().next().copied(),
        }
    }
}

/// The events of an [`Appended`], as views, in log order.
pub(crate) enum Views<'a> {
    Events(std::slice::Iter<'a, LoggedEvent>),
    Tracks(TrackViews<'a>),
}

impl<'a> Iterator for Views<'a> {
    type Item = EventView<'a>;

    fn next(&mut self) -> Option<EventView<'a>> {
        match self {
            Views::Events(events) => events.next().map(EventView::of),
            Views::Tracks(rows) => rows.next(),
        }
    }
}

/// The rows of track batches that the store kept, as views, in order: a row at a time from
/// each batch in turn (millions of them in an import, each read twice).
pub(crate) struct TrackViews<'a> {
    batches: &'a [Arc<domain::TrackRows>],
    /// Where each row went, `None` for one left out.
    positions: std::slice::Iter<'a, Option<LogPosition>>,
    batch: usize,
    row: usize,
    /// The day of the last row read.
    days: domain::Days,
}

impl<'a> Iterator for TrackViews<'a> {
    type Item = EventView<'a>;

    fn next(&mut self) -> Option<EventView<'a>> {
        loop {
            let rows = self.batches.get(self.batch)?;
            if self.row == rows.len() {
                self.batch += 1;
                self.row = 0;
                continue;
            }
            let i = self.row;
            self.row += 1;
            if let Some(at) = self.positions.next()? {
                return Some(EventView::of_track(at.seq, rows.activity(i)?, &mut self.days));
            }
        }
    }
}

pub struct Processor {
    store: Arc<dyn Store>,
    config: ProcessorConfig,
    touched: tokio::sync::broadcast::Sender<Touched>,
    /// Where each workspace's processing is; reloaded from the store when another process
    /// moved it.
    cursors: Mutex<HashMap<WorkspaceId, Cursor>>,
    wake: Notify,
}

/// Where a workspace's processing is, how large its next slice is, and what it knows of the
/// workspace's identities there.
struct Cursor {
    at: LogPosition,
    slice: usize,
    known: KnownIdentities,
}

/// Resolution reads the traits of identify and group calls only.
const PAYLOADS: Payloads = Payloads::of(&[EventType::Identify, EventType::Group]);

/// Identities beyond which the worker forgets what it knows and asks the store again.
const MAX_KNOWN: usize = 1_000_000;

/// First and last seen are kept to the minute: a slice's activity of a person or account that
/// falls within what was written for them, or less than this after it, writes nothing. (Most
/// slices would otherwise rewrite every active person's row to move a time by seconds.)
pub const SEEN_RESOLUTION_MS: i64 = 60_000;

/// What this worker knows of a workspace as of its cursor, so that a slice asks the store only
/// for identities it has not seen and leaves out writes that would change nothing. Right
/// because processing is what changes these, and only while this worker alone moved the
/// cursor: it is forgotten whenever the cursor is reloaded from the store, and whenever a
/// slice fails.
#[derive(Default)]
struct KnownIdentities {
    identities: Identities,
    /// First and last seen as this worker last widened them, in ms. The stored span holds
    /// at least this one.
    person_seen: HashMap<String, (i64, i64)>,
    account_seen: HashMap<AccountId, (i64, i64)>,
    /// Accounts and memberships known to be stored (neither goes away but by a merge, whose
    /// person then never comes back, or a reset, which starts a new worker state).
    accounts: HashSet<AccountId>,
    /// Person -> accounts.
    memberships: HashMap<String, HashSet<AccountId>>,
}

/// A first/last-seen update that was kept, to remember once applied.
enum Widened {
    Person(String, i64, i64),
    Account(AccountId, i64, i64),
}

impl KnownIdentities {
    /// Leaves out the ops that would change nothing: accounts and memberships already stored,
    /// first/last seen that would move a stored time by less than the resolution. Returns the
    /// spans kept, to remember once they are applied.
    fn skip_unneeded(&self, ops: &mut Vec<Op>) -> Vec<Widened> {
        let needed = |span: Option<&(i64, i64)>, first: i64, last: i64| match span {
            Some(&(f, l)) => first < f || last > l + SEEN_RESOLUTION_MS,
            None => true,
        };
        let mut kept = Vec::new();
        ops.retain(|op| match op {
            Op::UpsertAccount { account_id, .. } => !self.accounts.contains(account_id),
            Op::AddMembership { person_id, account_id, .. } => {
                !self.memberships.get(person_id).is_some_and(|a| a.contains(account_id))
            }
            Op::PersonSeen { person_id, first, last } => {
                let (first, last) = (first.timestamp_millis(), last.timestamp_millis());
                let keep = needed(self.person_seen.get(person_id), first, last);
                if keep {
                    kept.push(Widened::Person(person_id.clone(), first, last));
                }
                keep
            }
            Op::Seen { person_id: None, account_id: Some(a), first, last } => {
                let (first, last) = (first.timestamp_millis(), last.timestamp_millis());
                let keep = needed(self.account_seen.get(a), first, last);
                if keep {
                    kept.push(Widened::Account(a.clone(), first, last));
                }
                keep
            }
            _ => true,
        });
        kept
    }

    fn learn(&mut self, slice: Identities, widened: Vec<Widened>, ops: &[Op]) {
        for op in ops {
            match op {
                Op::UpsertAccount { account_id, .. } => {
                    self.accounts.insert(account_id.clone());
                }
                Op::AddMembership { person_id, account_id, .. } => {
                    self.memberships.entry(person_id.clone()).or_default().insert(account_id.clone());
                }
                _ => {}
            }
        }
        fn widen<K: std::hash::Hash + Eq>(spans: &mut HashMap<K, (i64, i64)>, key: K, first: i64, last: i64) {
            let span = spans.entry(key).or_insert((first, last));
            *span = (span.0.min(first), span.1.max(last));
        }
        for w in widened {
            match w {
                Widened::Person(p, first, last) => widen(&mut self.person_seen, p, first, last),
                Widened::Account(a, first, last) => widen(&mut self.account_seen, a, first, last),
            }
        }
        self.identities.extend(slice);
        if self.identities.len() > MAX_KNOWN
            || self.person_seen.len() + self.account_seen.len() > MAX_KNOWN
            || self.memberships.len() > MAX_KNOWN
        {
            *self = KnownIdentities::default();
        }
    }
}

impl Processor {
    pub fn new(store: Arc<dyn Store>, config: ProcessorConfig) -> Arc<Processor> {
        let (touched, _) = tokio::sync::broadcast::channel(TOUCHED_BACKLOG);
        Arc::new(Processor { store, config, touched, cursors: Mutex::default(), wake: Notify::new() })
    }

    /// What each slice processed from now on touched. A listener that falls more than
    /// [`TOUCHED_BACKLOG`] slices behind is told so (`Lagged`) and should look at everything.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Touched> {
        self.touched.subscribe()
    }

    /// Tells the worker that events were appended.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The workspace's cursor, taken out of `cursors` (loaded from the store if this worker
    /// has none).
    async fn take_cursor(&self, cursors: &mut HashMap<WorkspaceId, Cursor>, ws: &WorkspaceId) -> Result<Cursor> {
        Ok(match cursors.remove(ws) {
            Some(c) => c,
            None => Cursor {
                at: self.store.log_status(ws).await?.cursor,
                slice: self.config.batch,
                known: KnownIdentities::default(),
            },
        })
    }

    /// Processes the next slice of `ws`'s log. Returns how many events it processed (0 when
    /// the workspace is up to date).
    pub async fn run_once(&self, ws: &WorkspaceId) -> Result<usize> {
        let mut cursors = self.cursors.lock().await;
        let cursor = self.take_cursor(&mut cursors, ws).await?;
        let events = self.store.read_log_with(ws, cursor.at, cursor.slice, PAYLOADS).await?;
        if events.is_empty() {
            cursors.insert(ws.clone(), Cursor { slice: self.config.batch, ..cursor });
            return Ok(0);
        }
        let next_slice = if events.len() == cursor.slice {
            (cursor.slice * 2).min(self.config.max_batch.max(self.config.batch))
        } else {
            self.config.batch
        };
        Ok(self.process(cursors, ws, cursor, events, next_slice).await?.unwrap_or(0))
    }

    /// Processes the log of `ws` until processing is at `to` or past it, or the log has no
    /// more to give.
    pub async fn run_through(&self, ws: &WorkspaceId, to: LogPosition) -> Result<()> {
        let mut idle = 0;
        loop {
            if self.cursors.lock().await.get(ws).is_some_and(|c| c.at >= to) {
                return Ok(());
            }
            if self.run_once(ws).await? == 0 {
                // Once to reload a cursor another process moved, twice when nothing is left.
                idle += 1;
                if idle > 1 {
                    return Ok(());
                }
            } else {
                idle = 0;
            }
        }
    }

    /// Resolves and applies `events`, the log after `cursor` (not empty), leaving the cursor
    /// after them with `next_slice` as its next slice. Returns how many were processed, or
    /// `None` when the store's cursor had moved elsewhere (nothing applied).
    async fn process(
        &self,
        mut cursors: tokio::sync::MutexGuard<'_, HashMap<WorkspaceId, Cursor>>,
        ws: &WorkspaceId,
        cursor: Cursor,
        events: Vec<LoggedEvent>,
        next_slice: usize,
    ) -> Result<Option<usize>> {
        let Resolved { from, to, count, mut known, changes, learned, seen } =
            self.resolve(ws, cursor, Appended::Events(events)).await?;
        if self.store.apply_changes(ws, from, to, &changes).await? {
            known.learn(learned, seen, &changes.ops);
            announce(&self.touched, ws, changes, count);
            cursors.insert(ws.clone(), Cursor { at: to, slice: next_slice, known });
            drop(cursors);
            // The backend's bulk indexes keep pace with processing, a step per slice.
            self.store.maintain(ws, false).await?;
            Ok(Some(count))
        } else {
            // Another process processed this slice first: start again from where it is.
            tracing::debug!(workspace = %ws, "processing cursor moved elsewhere; reloading");
            Ok(None)
        }
    }

    /// What `events`, the log after `cursor` (not empty), change: the identities they name
    /// that the cursor does not know are asked of the store, then resolution runs.
    async fn resolve(&self, ws: &WorkspaceId, cursor: Cursor, events: Appended) -> Result<Resolved> {
        let Cursor { at: from, mut known, .. } = cursor;
        let to = events.last_position().expect("a slice with events");
        // The keys the slice names that this worker does not know yet, asked of the store.
        let mut unknown: Vec<IdentityKey> = Vec::new();
        {
            let mut asked: HashSet<(IdKind, &str)> = HashSet::default();
            // A log is mostly runs of one person's events: an event naming what the one
            // before it named asks nothing new.
            let mut last: Option<[Option<&str>; 3]> = None;
            for named in events.people() {
                if last.is_some_and(|l| l.iter().zip(&named).all(|(a, b)| domain::same_opt(*a, *b))) {
                    continue;
                }
                last = Some(named);
                let [user_id, anonymous_id, previous_id] = named;
                let keys = [
                    user_id.map(|v| (IdKind::User, v)),
                    anonymous_id.map(|v| (IdKind::Anonymous, v)),
                    previous_id.map(|v| (IdKind::User, v)),
                    previous_id.map(|v| (IdKind::Anonymous, v)),
                ];
                for (kind, value) in keys.into_iter().flatten() {
                    if known.identities.person_of.get(kind, value).is_none() && asked.insert((kind, value)) {
                        unknown.push(IdentityKey { kind, value: value.to_owned() });
                    }
                }
            }
        }
        if !unknown.is_empty() {
            unknown.sort();
            for (key, person) in self.store.load_identities(ws, &unknown).await? {
                known.identities.learn_stored(key, person);
            }
        }
        // Resolution is CPU work of milliseconds per slice: off the async workers, so that
        // requests are not held up behind it.
        let count = events.len();
        let workspace = ws.clone();
        tokio::task::spawn_blocking(move || {
            let (mut changes, learned) = resolve_with(&workspace, events.views(), count, &known.identities);
            let seen = known.skip_unneeded(&mut changes.ops);
            discard(events, count);
            Resolved { from, to, count, known, changes, learned, seen }
        })
        .await
        .map_err(|e| store::StoreError::Backend(format!("resolving a slice failed: {e}")))
    }

    /// Processes groups of events as they are appended (each with the log position right
    /// before it), from memory, so that an import's events are not read back and decoded: a
    /// group is processed as the slice the log would give (the same payloads left out) when
    /// processing is right before it; otherwise (processing behind, or another process moved
    /// it) the log is processed up to the group's end. Each group is resolved while the store
    /// applies the one before: the two take about as long. A group resolved ahead counts on the one
    /// before it being applied; if that fails (another process moved the cursor), both are
    /// processed again from the log. A group whose changes merge people is applied before
    /// the next is resolved, since the identities the store gives afterwards depend on it.
    /// Returns once the channel is closed and every group received is processed.
    pub async fn process_appended_stream(
        &self,
        ws: &WorkspaceId,
        mut groups: tokio::sync::mpsc::Receiver<(LogPosition, Appended)>,
    ) -> Result<()> {
        // The cursor this stream holds, as of the last group resolved; `None` when the
        // workspace's cursor is in the shared map.
        let mut mine: Option<Cursor> = None;
        // The group being applied: whether it was.
        let mut applying: Option<tokio::task::JoinHandle<Result<bool>>> = None;
        // Held by the step of the store's upkeep under way, if any.
        let upkeep = Arc::new(tokio::sync::Semaphore::new(1));
        async fn settle(applying: &mut Option<tokio::task::JoinHandle<Result<bool>>>) -> Result<bool> {
            match applying.take() {
                None => Ok(true),
                Some(task) => {
                    task.await.map_err(|e| store::StoreError::Backend(format!("applying a slice failed: {e}")))?
                }
            }
        }
        while let Some((after, mut events)) = groups.recv().await {
            let Some(last) = events.last_position() else { continue };
            let cursor = match mine.take() {
                Some(c) => c,
                None => {
                    let mut cursors = self.cursors.lock().await;
                    self.take_cursor(&mut cursors, ws).await?
                }
            };
            if cursor.at != after {
                // Processing is not right before these: whatever is pending first, then the
                // log up to their end.
                let applied = settle(&mut applying).await?;
                self.give_back(ws, applied.then_some(cursor)).await;
                self.run_through(ws, last).await?;
                continue;
            }
            // What a read of the log gives: the payloads resolution reads, and no others.
            if let Appended::Events(events) = &mut events {
                let unread: Vec<String> = events
                    .iter_mut()
                    .filter(|e| !PAYLOADS.wants(e.event.kind))
                    .map(|e| std::mem::take(&mut e.event.payload))
                    .collect();
                let n = unread.len();
                discard(unread, n);
            }
            let slice = cursor.slice;
            let Resolved { from, to, count, mut known, changes, learned, seen } =
                self.resolve(ws, cursor, events).await?;
            if !settle(&mut applying).await? {
                // The group before was not applied, and this one was resolved counting on it.
                self.give_back(ws, None).await;
                self.run_through(ws, last).await?;
                continue;
            }
            let merges = changes.ops.iter().any(|op| matches!(op, Op::MergePeople { .. }));
            // Known as of this group's end, ahead of the store, for resolving the next.
            known.learn(learned, seen, &changes.ops);
            mine = Some(Cursor { at: to, slice, known });
            let (store, touched, workspace) = (self.store.clone(), self.touched.clone(), ws.clone());
            let upkeep = upkeep.clone();
            applying = Some(tokio::spawn(async move {
                if !store.apply_changes(&workspace, from, to, &changes).await? {
                    return Ok(false);
                }
                announce(&touched, &workspace, changes, count);
                // The store's upkeep (linking events to their people's and accounts' lists) goes
                // on beside the next groups, a step at a time: the next group waits for this
                // one to be applied, not for it. A step skipped while another runs is left to later
                // upkeep (an import runs processing until idle once its stream ends).
                if let Ok(step) = upkeep.try_acquire_owned() {
                    tokio::spawn(async move {
                        if let Err(e) = store.maintain(&workspace, false).await {
                            tracing::warn!(workspace = %workspace, error = %e, "upkeep beside processing failed; will retry");
                        }
                        drop(step);
                    });
                }
                Ok(true)
            }));
            if merges && !settle(&mut applying).await? {
                mine = None;
                self.give_back(ws, None).await;
                self.run_through(ws, to).await?;
            }
        }
        let end = mine.as_ref().map(|c| c.at);
        let applied = settle(&mut applying).await?;
        // No step of upkeep outlives the stream.
        let _ = upkeep.acquire().await;
        self.give_back(ws, if applied { mine } else { None }).await;
        if let (false, Some(end)) = (applied, end) {
            // The last group was not applied: another process moved the cursor, maybe not
            // past it.
            self.run_through(ws, end).await?;
        }
        Ok(())
    }

    /// Puts back a cursor taken out of the shared map; `None` forgets it, so that the next
    /// use reads it from the store.
    async fn give_back(&self, ws: &WorkspaceId, cursor: Option<Cursor>) {
        let mut cursors = self.cursors.lock().await;
        match cursor {
            Some(c) => {
                cursors.insert(ws.clone(), c);
            }
            None => {
                cursors.remove(ws);
            }
        }
    }

    /// Processes `ws` until its log is fully processed and what the backend derives from it
    /// is up to date.
    pub async fn run_until_idle(&self, ws: &WorkspaceId) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.run_once(ws).await?;
            if n == 0 && self.store.log_status(ws).await?.pending_events == 0 {
                while self.store.maintain(ws, true).await? {}
                return Ok(total);
            }
            total += n;
        }
    }

    /// Forgets the workspace's derived state and processes its whole log again.
    pub async fn replay(&self, ws: &WorkspaceId) -> Result<usize> {
        {
            let mut cursors = self.cursors.lock().await;
            self.store.reset_processing(ws).await?;
            cursors.remove(ws);
        }
        self.run_until_idle(ws).await
    }

    /// Processes every workspace until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(batch = self.config.batch, "processor started");
        while !shutdown.is_cancelled() {
            let mut processed = 0;
            // Whether some workspace has more waiting than one slice took.
            let mut backlog = false;
            let mut maintained = false;
            match self.store.list_workspaces().await {
                Ok(workspaces) => {
                    for ws in workspaces {
                        let ws = ws.workspace_id;
                        match self.run_once(&ws).await {
                            Ok(0) => match self.store.maintain(&ws, true).await {
                                Ok(more) => maintained |= more,
                                Err(e) => {
                                    metrics::counter!("steward_processing_errors_total").increment(1);
                                    tracing::error!(workspace = %ws, error = %e, "index maintenance failed; will retry");
                                }
                            },
                            Ok(n) => {
                                processed += n;
                                backlog |= n >= self.config.batch;
                            }
                            Err(e) => {
                                metrics::counter!("steward_processing_errors_total").increment(1);
                                tracing::error!(workspace = %ws, error = %e, "processing failed; will retry");
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list workspaces"),
            }
            if processed > 0 && !backlog && !maintained {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.config.gather) => {}
                }
            } else if processed == 0 && !maintained {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.config.idle_poll) => {}
                }
            }
        }
        tracing::info!("processor stopped");
    }
}

/// Once the store has applied a slice: says what it touched, and frees its changes.
fn announce(touched: &tokio::sync::broadcast::Sender<Touched>, ws: &WorkspaceId, changes: Changes, count: usize) {
    if touched.receiver_count() > 0 {
        // None listening is the only way this fails.
        let _ = touched.send(Touched::of(ws, &changes));
    }
    discard(changes, count);
    metrics::counter!("steward_events_processed_total").increment(count as u64);
}

/// A slice resolved, not yet applied.
struct Resolved {
    from: LogPosition,
    to: LogPosition,
    count: usize,
    known: KnownIdentities,
    changes: Changes,
    learned: Identities,
    seen: Vec<Widened>,
}

/// Slices at least this large are freed apart.
const DISCARD_APART: usize = 8_192;

/// Frees what a slice is done with on a blocking thread, not in line: a large slice holds
/// millions of strings, and freeing them one by one would hold up the next slice.
/// Small slices are freed in line.
fn discard<T: Send + 'static>(done: T, items: usize) {
    if items >= DISCARD_APART && tokio::runtime::Handle::try_current().is_ok() {
        drop(tokio::task::spawn_blocking(move || drop(done)));
    }
}
