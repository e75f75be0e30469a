//! The processing worker: one unit of work is one slice of one workspace's log.

use foldhash::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::{AccountId, EventType, IdentityKey, WorkspaceId};
use store::{KnownPerson, LogPosition, Op, Payloads, Result, Store};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::resolve::{Learned, resolve_learning};

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
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig { batch: 2_000, max_batch: 8_000, idle_poll: Duration::from_millis(250) }
    }
}

pub struct Processor {
    store: Arc<dyn Store>,
    config: ProcessorConfig,
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

/// Identities beyond which the worker forgets what it knows and asks the store again.
const MAX_KNOWN: usize = 1_000_000;

/// First and last seen are kept to the minute: a slice's activity of a person or account that
/// falls within what was written for them, or less than this after it, writes nothing. (Most
/// slices would otherwise rewrite every active person's row to move a time by seconds.)
pub const SEEN_RESOLUTION_MS: i64 = 60_000;

/// The identities this worker looked up or changed, as they are at its cursor, so that a slice
/// asks the store only for those it has not seen. Right because processing is what changes
/// identities, and only while this worker alone moved the cursor: it is forgotten whenever
/// the cursor is reloaded from the store.
#[derive(Default)]
struct KnownIdentities {
    person_of: HashMap<IdentityKey, String>,
    /// The user id of each person known to exist. A person merged into another is not here,
    /// so a key still naming them is asked of the store, which knows where it points now.
    user_of: HashMap<String, Option<String>>,
    /// First and last seen as this worker last widened them, in ms, by `p:`/`g:` subject.
    /// The stored span holds at least this one.
    seen: HashMap<String, (i64, i64)>,
    /// Accounts and memberships known to be stored (neither goes away but by a merge, whose
    /// person then never comes back, or a reset, which starts a new worker state).
    accounts: HashSet<AccountId>,
    /// Person -> accounts.
    memberships: HashMap<String, HashSet<AccountId>>,
}

impl KnownIdentities {
    fn get(&self, key: &IdentityKey) -> Option<KnownPerson> {
        let person = self.person_of.get(key)?;
        let user_id = self.user_of.get(person)?.clone();
        Some(KnownPerson { person_id: person.clone(), user_id })
    }

    /// Leaves out the ops that would change nothing: accounts and memberships already stored,
    /// first/last seen that would move a stored time by less than the resolution. Returns the
    /// spans kept, to remember once they are applied.
    fn skip_unneeded(&self, ops: &mut Vec<Op>) -> Vec<(String, i64, i64)> {
        let mut kept = Vec::new();
        ops.retain(|op| {
            let (subject, first, last) = match op {
                Op::UpsertAccount { account_id, .. } => return !self.accounts.contains(account_id),
                Op::AddMembership { person_id, account_id, .. } => {
                    return !self.memberships.get(person_id).is_some_and(|a| a.contains(account_id));
                }
                Op::PersonSeen { person_id, first, last } => (format!("p:{person_id}"), first, last),
                Op::Seen { person_id: None, account_id: Some(a), first, last } => (format!("g:{a}"), first, last),
                _ => return true,
            };
            let (first, last) = (first.timestamp_millis(), last.timestamp_millis());
            let needed = match self.seen.get(&subject) {
                Some(&(f, l)) => first < f || last > l + SEEN_RESOLUTION_MS,
                None => true,
            };
            if needed {
                kept.push((subject, first, last));
            }
            needed
        });
        kept
    }

    fn learn(&mut self, learned: Learned, seen: Vec<(String, i64, i64)>, ops: &[Op]) {
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
        for (subject, first, last) in seen {
            let span = self.seen.entry(subject).or_insert((first, last));
            *span = (span.0.min(first), span.1.max(last));
        }
        if self.person_of.len() + learned.identities.len() > MAX_KNOWN
            || self.seen.len() > MAX_KNOWN
            || self.memberships.len() > MAX_KNOWN
        {
            *self = KnownIdentities::default();
        }
        for from in learned.merged.keys() {
            self.user_of.remove(from);
        }
        self.person_of.extend(learned.identities);
        self.user_of.extend(learned.user_of);
    }
}

impl Processor {
    pub fn new(store: Arc<dyn Store>, config: ProcessorConfig) -> Arc<Processor> {
        Arc::new(Processor { store, config, cursors: Mutex::default(), wake: Notify::new() })
    }

    /// Tells the worker that events were appended.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Processes the next slice of `ws`'s log. Returns how many events it processed (0 when
    /// the workspace is up to date).
    pub async fn run_once(&self, ws: &WorkspaceId) -> Result<usize> {
        let mut cursors = self.cursors.lock().await;
        let cursor = match cursors.remove(ws) {
            Some(c) => c,
            None => Cursor {
                at: self.store.log_status(ws).await?.cursor,
                slice: self.config.batch,
                known: KnownIdentities::default(),
            },
        };
        let Cursor { at: from, slice, mut known } = cursor;
        // Resolution reads the traits of identify and group calls only.
        const PAYLOADS: Payloads = Payloads::of(&[EventType::Identify, EventType::Group]);
        let events = self.store.read_log_with(ws, from, slice, PAYLOADS).await?;
        let Some(last) = events.last() else {
            cursors.insert(ws.clone(), Cursor { at: from, slice: self.config.batch, known });
            return Ok(0);
        };
        let next_slice = if events.len() == slice {
            (slice * 2).min(self.config.max_batch.max(self.config.batch))
        } else {
            self.config.batch
        };
        let to = last.position;
        let mut keys: Vec<IdentityKey> = Vec::new();
        for e in &events {
            let e = &e.event;
            keys.extend(e.user_id.iter().map(IdentityKey::user));
            keys.extend(e.anonymous_id.iter().map(IdentityKey::anonymous));
            if let Some(p) = &e.previous_id {
                keys.push(IdentityKey::user(p));
                keys.push(IdentityKey::anonymous(p));
            }
        }
        keys.sort();
        keys.dedup();
        let mut found = Vec::with_capacity(keys.len());
        let mut unknown = Vec::new();
        for key in keys {
            match known.get(&key) {
                Some(person) => found.push((key, person)),
                None => unknown.push(key),
            }
        }
        if !unknown.is_empty() {
            found.extend(self.store.load_identities(ws, &unknown).await?);
        }
        let (mut changes, learned) = resolve_learning(ws, &events, found);
        let seen = known.skip_unneeded(&mut changes.ops);
        if self.store.apply_changes(ws, from, to, &changes).await? {
            known.learn(learned, seen, &changes.ops);
            cursors.insert(ws.clone(), Cursor { at: to, slice: next_slice, known });
            drop(cursors);
            metrics::counter!("steward_events_processed_total").increment(events.len() as u64);
            // The backend's bulk indexes keep pace with processing, a step per slice.
            self.store.maintain(ws, false).await?;
            Ok(events.len())
        } else {
            // Another process processed this slice first: start again from where it is.
            tracing::debug!(workspace = %ws, "processing cursor moved elsewhere; reloading");
            Ok(0)
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
                            Ok(n) => processed += n,
                            Err(e) => {
                                metrics::counter!("steward_processing_errors_total").increment(1);
                                tracing::error!(workspace = %ws, error = %e, "processing failed; will retry");
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list workspaces"),
            }
            if processed == 0 && !maintained {
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
