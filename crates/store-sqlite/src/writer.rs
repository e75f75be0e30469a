//! The one writer: a thread that owns the write connection and commits whatever work has
//! queued up in one transaction (group commit), each piece in its own savepoint so that one
//! failure does not undo the others.

use rusqlite::Connection;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use store::{Result, StoreError};

use crate::ids::RecentIds;
use crate::sql_error;

/// A piece of work queued for the writer.
trait Work: Send {
    /// Runs inside a savepoint; says whether it succeeded.
    fn run(&mut self, conn: &Connection, ids: &mut RecentIds) -> bool;
    /// Reports the outcome once the transaction committed, or why it did not.
    fn finish(self: Box<Self>, committed: Result<()>);
    /// Whether its commit must be on disk before it is reported.
    fn durability(&self) -> Durability;
}

/// What a commit waits for before the work is reported done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// On disk (the WAL synced): what callers are told is stored survives power loss.
    Synced,
    /// Visible to readers at once, on disk with the next synced commit or checkpoint. For
    /// what is derived from durable data and made again if lost (processing's people,
    /// accounts, rollups and event lists with the cursor they reach, scores and the alerts
    /// they open): its commit does not wait for the disk. The WAL keeps commits in order, so a
    /// synced commit makes every earlier one durable with it, and nothing written later can
    /// survive a power loss without what was derived before it.
    Derived,
}

struct Typed<F, R> {
    f: Option<F>,
    outcome: Option<Result<R>>,
    done: tokio::sync::oneshot::Sender<Result<R>>,
    durability: Durability,
}

impl<F, R> Work for Typed<F, R>
where
    F: FnOnce(&Connection, &mut RecentIds) -> Result<R> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection, ids: &mut RecentIds) -> bool {
        let f = self.f.take().expect("work runs once");
        let outcome = f(conn, ids);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        let outcome = match (committed, self.outcome) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(outcome)) => outcome,
            (Ok(()), None) => Err(StoreError::Backend("the write did not run".into())),
        };
        let _ = self.done.send(outcome);
    }

    fn durability(&self) -> Durability {
        self.durability
    }
}

type Job = Box<dyn Work>;

/// Whether work is waited on by a client (appends, records) or by a background loop
/// (processing), which yields to the other when both wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Priority {
    Now,
    Background,
}

/// How many pieces of work at most share one transaction.
const MAX_GROUP: usize = 512;
/// How many pieces of work may wait; beyond, callers are told to back off.
const QUEUE: usize = 4_096;

pub(crate) struct Writer {
    queue: Mutex<Option<SyncSender<(Job, Priority)>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) stats: Arc<WriterStats>,
}

#[derive(Default)]
pub(crate) struct WriterStats {
    pub transactions: std::sync::atomic::AtomicU64,
    pub jobs: std::sync::atomic::AtomicU64,
    /// Transactions committed, those of id flushes included.
    pub commits: std::sync::atomic::AtomicU64,
    /// Groups of work committed that waited for the disk (some [`Durability::Synced`] work).
    pub synced: std::sync::atomic::AtomicU64,
}

impl Writer {
    pub(crate) fn start(conn: Connection, ids: RecentIds) -> Writer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Job, Priority)>(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, ids, rx, &thread_stats))
            .expect("spawn the SQLite writer thread");
        Writer { queue: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), stats }
    }

    /// Runs `f` in the next transaction and returns its result once that transaction is
    /// committed: on disk for [`Durability::Synced`] work.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        priority: Priority,
        durability: Durability,
        f: impl FnOnce(&Connection, &mut RecentIds) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let job = (Box::new(Typed { f: Some(f), outcome: None, done, durability }) as Job, priority);
        let sender = self.queue.lock().expect("writer queue lock").clone();
        let Some(sender) = sender else { return Err(StoreError::Backend("the store is closed".into())) };
        match sender.try_send(job) {
            Ok(()) => {}
            // The queue is bounded so memory is; a full queue waits off the async runtime.
            Err(TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || sender.send(job))
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))?
                    .map_err(|_| StoreError::Backend("the writer stopped".into()))?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Backend("the writer stopped".into())),
        }
        done_rx.await.map_err(|_| StoreError::Backend("the writer stopped before committing".into()))?
    }

    /// Finishes the queued work, then stops the thread.
    pub(crate) fn close(&self) {
        self.queue.lock().expect("writer queue lock").take();
        if let Some(t) = self.thread.lock().expect("writer thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// How long the writer waits for work before it counts as idle and flushes recent ids.
const IDLE: Duration = Duration::from_millis(100);
/// While foreground work arrives, background work gets at most this share of the writer...
const BACKGROUND_SHARE: u32 = 4; // one part in four
/// ...and still a turn at least this often.
const BACKGROUND_TURN: Duration = Duration::from_millis(250);
/// Without foreground work for this long, background work runs as fast as it can.
const QUIET: Duration = Duration::from_millis(20);

/// Work taken off the channel, by priority, and the pacing of background work.
struct Waiting {
    now: VecDeque<Job>,
    background: VecDeque<(Instant, Job)>,
    last_foreground: Instant,
    /// While foreground work arrives, no background work starts before this.
    background_after: Instant,
}

impl Waiting {
    fn new() -> Waiting {
        let now = Instant::now();
        Waiting { now: VecDeque::new(), background: VecDeque::new(), last_foreground: now, background_after: now }
    }

    fn push(&mut self, (job, priority): (Job, Priority)) {
        match priority {
            Priority::Now => {
                self.last_foreground = Instant::now();
                self.now.push_back(job);
            }
            Priority::Background => self.background.push_back((Instant::now(), job)),
        }
    }

    fn is_empty(&self) -> bool {
        self.now.is_empty() && self.background.is_empty()
    }

    /// How long until waiting background work may run; `None` when none waits.
    fn background_wait(&self) -> Option<Duration> {
        let (since, _) = self.background.front()?;
        let now = Instant::now();
        let quiet = (self.last_foreground + QUIET).saturating_duration_since(now);
        let paced = self.background_after.saturating_duration_since(now);
        let starved = (*since + BACKGROUND_TURN).saturating_duration_since(now);
        Some(quiet.min(paced).min(starved))
    }

    /// Whether background work may have the writer now: foreground work has stopped
    /// arriving, or the last background turn has been paid for.
    fn background_turn(&self) -> bool {
        self.until_background_turn().is_zero()
    }

    fn until_background_turn(&self) -> Duration {
        let turn = (self.last_foreground + QUIET).min(self.background_after);
        turn.saturating_duration_since(Instant::now())
    }

    /// The next transaction's work: waiting foreground work, and one piece of background
    /// work when nothing else waits and its pace allows, or when it has waited its turn.
    fn take_group(&mut self) -> (Vec<Job>, bool) {
        let take = self.now.len().min(MAX_GROUP);
        let mut group: Vec<Job> = self.now.drain(..take).collect();
        let ready = self.background_wait().is_some_and(|w| w.is_zero());
        let starved = self.background.front().is_some_and(|(since, _)| since.elapsed() >= BACKGROUND_TURN);
        let background = (group.is_empty() && ready) || starved;
        if background {
            group.extend(self.background.pop_front().map(|(_, job)| job));
        }
        (group, background)
    }

    /// A transaction with background work took `took`: pace the next accordingly.
    fn ran_background(&mut self, took: Duration) {
        self.background_after = Instant::now() + took * (BACKGROUND_SHARE - 1);
    }
}

fn run(conn: Connection, mut ids: RecentIds, rx: Receiver<(Job, Priority)>, stats: &WriterStats) {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut flush_failed: Option<Instant> = None;
    let may_flush = |failed: &Option<Instant>| failed.is_none_or(|at| at.elapsed() > FLUSH_RETRY);
    let mut waiting = Waiting::new();
    let mut open = true;
    // The connection opens with `synchronous = FULL`; a group of derived work only commits
    // with NORMAL (written to the WAL, not synced).
    let mut synced = true;
    let mut sync_with = |conn: &Connection, want: bool| -> Result<()> {
        if synced != want {
            conn.execute_batch(if want { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" })
                .map_err(sql_error)?;
            synced = want;
        }
        Ok(())
    };
    while open || !waiting.is_empty() {
        // Between groups, at most one flush step, paced as background work, so that writing
        // ids out and merging their runs never holds up ingest for long.
        if ids.wants_flush(false) && may_flush(&flush_failed) && (waiting.background_turn() || ids.flush_urgent()) {
            let started = Instant::now();
            flush_failed = match sync_with(&conn, true) {
                Ok(()) => flush_step(&conn, &mut ids, false, stats),
                Err(e) => flush_failed_with(&e),
            };
            waiting.ran_background(started.elapsed());
        } else if waiting.now.is_empty() && open {
            let mut wait = waiting.background_wait().unwrap_or(IDLE).min(IDLE);
            if ids.wants_flush(false) && may_flush(&flush_failed) {
                wait = wait.min(waiting.until_background_turn());
            }
            if !wait.is_zero() {
                match rx.recv_timeout(wait) {
                    Ok(job) => waiting.push(job),
                    Err(RecvTimeoutError::Timeout) if waiting.is_empty() => {
                        if ids.wants_flush(true) && may_flush(&flush_failed) {
                            flush_failed = match sync_with(&conn, true) {
                                Ok(()) => flush_step(&conn, &mut ids, true, stats),
                                Err(e) => flush_failed_with(&e),
                            };
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
        }
        // Take what has queued, leaving the channel to bound what waits beyond one group.
        while open && waiting.now.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => waiting.push(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if !open && waiting.now.is_empty() {
            // Closing: background work left runs now.
            waiting.last_foreground = Instant::now().checked_sub(QUIET).unwrap_or(waiting.last_foreground);
            waiting.background_after = Instant::now();
        }
        let started = Instant::now();
        let (group, background) = waiting.take_group();
        if group.is_empty() {
            continue;
        }
        stats.transactions.fetch_add(1, Relaxed);
        stats.jobs.fetch_add(group.len() as u64, Relaxed);
        let want_sync = group.iter().any(|job| job.durability() == Durability::Synced);
        if let Err(e) =
            sync_with(&conn, want_sync).and_then(|()| conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error))
        {
            for job in group {
                job.finish(Err(clone_error(&e)));
            }
            continue;
        }
        let group_mark = ids.mark();
        let mut ran = Vec::with_capacity(group.len());
        // Whether the transaction is open: a failed first job closes it.
        let mut begun = true;
        for mut job in group {
            if !begun {
                if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE").map_err(sql_error) {
                    job.finish(Err(e));
                    continue;
                }
                begun = true;
            }
            // The transaction's first job runs without a savepoint of its own: should it fail,
            // the transaction is rolled back, and begun again for the jobs after it. Inside a
            // savepoint SQLite first copies each page a job changes to a statement journal (a
            // megabyte or more for a group of processing's changes), for a rollback that the
            // first job can have without one.
            if ran.is_empty() {
                let ok = run_job(&conn, &mut ids, &mut *job);
                if !ok {
                    let _ = conn.execute_batch("ROLLBACK");
                    ids.undo_to(group_mark);
                    begun = false;
                    // Its own outcome: the error it returned.
                    job.finish(Ok(()));
                    continue;
                }
                ran.push((job, None));
                continue;
            }
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                ran.push((job, Some(sql_error(e))));
                continue;
            }
            let mark = ids.mark();
            let ok = run_job(&conn, &mut ids, &mut *job);
            if !ok {
                ids.undo_to(mark);
            }
            let end = if ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
            let err = conn.execute_batch(end).err().map(sql_error);
            ran.push((job, err));
        }
        if !begun {
            // Every job failed or could not begin.
            ids.committed();
            if background {
                waiting.ran_background(started.elapsed());
            }
            continue;
        }
        let committed = conn.execute_batch("COMMIT").map_err(sql_error);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            ids.undo_to(group_mark);
        }
        ids.committed();
        if committed.is_ok() {
            stats.commits.fetch_add(1, Relaxed);
            if want_sync {
                stats.synced.fetch_add(1, Relaxed);
            }
        }
        for (job, err) in ran {
            let outcome = match (&committed, err) {
                (Err(e), _) => Err(clone_error(e)),
                (Ok(()), Some(e)) => Err(e),
                (Ok(()), None) => Ok(()),
            };
            job.finish(outcome);
        }
        if background {
            waiting.ran_background(started.elapsed());
        }
    }
    // Leave as little as possible to rebuild at the next start; merges can wait for it.
    // Its steps commit without a sync each (a run is thousands of pages; a step lost to a
    // crash leaves a run that is not live, and the ids are read from the log again at the
    // next start): the store's last checkpoint, after the writer stops, syncs the WAL.
    if let Err(e) = sync_with(&conn, false) {
        tracing::warn!(error = %e, "could not write the held ids out without syncing each step");
    }
    ids.closing();
    while ids.unflushed() {
        if flush_step(&conn, &mut ids, true, stats).is_some() {
            break;
        }
    }
}

/// Runs `job`; says whether it succeeded (a panic is a failure).
fn run_job(conn: &Connection, ids: &mut RecentIds, job: &mut dyn Work) -> bool {
    catch_unwind(AssertUnwindSafe(|| job.run(conn, ids))).unwrap_or_else(|_| {
        tracing::error!("a write panicked; it is rolled back");
        false
    })
}

fn flush_failed_with(e: &StoreError) -> Option<Instant> {
    tracing::warn!(error = %e, "could not add recent message ids to the index; will retry");
    Some(Instant::now())
}

/// After a failed flush, how long before the next try.
const FLUSH_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// One step of writing recent message ids out or merging runs of them; when it failed, the
/// time it did.
fn flush_step(conn: &Connection, ids: &mut RecentIds, idle: bool, stats: &WriterStats) -> Option<Instant> {
    match ids.flush_step(conn, idle) {
        Ok(_) => {
            stats.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not add recent message ids to the index; will retry");
            Some(Instant::now())
        }
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full(m) => StoreError::Full(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(priority: Priority) -> (Job, Priority) {
        let (done, _) = tokio::sync::oneshot::channel::<Result<()>>();
        let f = |_: &Connection, _: &mut RecentIds| Ok(());
        (Box::new(Typed { f: Some(f), outcome: None, done, durability: Durability::Synced }), priority)
    }

    impl Waiting {
        /// How many jobs the next group has, and whether one is background work.
        fn counts(&mut self) -> (usize, bool) {
            let (group, background) = Waiting::take_group(self);
            (group.len(), background)
        }
    }

    /// The `synchronous` setting each job sees inside its transaction.
    async fn setting_seen(writer: &Writer, durability: Durability) -> i64 {
        writer
            .write(Priority::Now, durability, |conn, _| {
                conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).map_err(sql_error)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn derived_work_commits_without_a_sync_and_synced_work_still_waits_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = crate::connect(&path, false).unwrap();
        let writer = Writer::start(conn, RecentIds::new(dir.path().join("w.lock"), Default::default()));
        const NORMAL: i64 = 1;
        const FULL: i64 = 2;
        assert_eq!(setting_seen(&writer, Durability::Synced).await, FULL);
        assert_eq!(setting_seen(&writer, Durability::Derived).await, NORMAL);
        assert_eq!(setting_seen(&writer, Durability::Derived).await, NORMAL);
        assert_eq!(setting_seen(&writer, Durability::Synced).await, FULL, "back to FULL after derived work");
        writer.close();
    }

    /// Jobs queued together while the writer is busy, so that they share one transaction:
    /// each inserts its name into `t`, then fails if its name starts with "fail" (or panics
    /// if it starts with "panic"). Returns each job's outcome and the names stored.
    async fn group_of(names: &[&'static str]) -> (Vec<Result<()>>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        crate::connect(&path, false).unwrap().execute_batch("CREATE TABLE t (name TEXT NOT NULL)").unwrap();
        let writer = Arc::new(Writer::start(
            crate::connect(&path, false).unwrap(),
            RecentIds::new(dir.path().join("g.lock"), Default::default()),
        ));
        // A job that holds the writer until the others are queued.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(Priority::Now, Durability::Synced, move |_, _| {
                        started_tx.send(()).unwrap();
                        released.recv().unwrap();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv().unwrap()).await.unwrap();
        let mut jobs = Vec::new();
        for &name in names {
            let writer = writer.clone();
            jobs.push(tokio::spawn(async move {
                writer
                    .write(Priority::Now, Durability::Synced, move |conn, _| {
                        conn.execute("INSERT INTO t VALUES (?1)", [name]).map_err(sql_error)?;
                        if name.starts_with("panic") {
                            panic!("{name} panics");
                        }
                        if name.starts_with("fail") {
                            return Err(StoreError::Backend(format!("{name} failed")));
                        }
                        Ok(())
                    })
                    .await
            }));
            // Each is queued before the next is spawned (a single-threaded runtime runs them
            // in turn up to their wait).
            tokio::task::yield_now().await;
        }
        let transactions = writer.stats.transactions.load(std::sync::atomic::Ordering::Relaxed);
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut outcomes = Vec::new();
        for job in jobs {
            outcomes.push(job.await.unwrap());
        }
        assert_eq!(
            writer.stats.transactions.load(std::sync::atomic::Ordering::Relaxed),
            transactions + 1,
            "the jobs shared a transaction"
        );
        writer.close();
        let conn = crate::connect(&path, true).unwrap();
        let mut stmt = conn.prepare("SELECT name FROM t ORDER BY rowid").unwrap();
        let stored = stmt.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<Vec<String>>>().unwrap();
        (outcomes, stored)
    }

    fn messages(outcomes: &[Result<()>]) -> Vec<Option<String>> {
        outcomes.iter().map(|o| o.as_ref().err().map(|e| e.to_string())).collect()
    }

    #[tokio::test]
    async fn a_failed_job_changes_nothing_and_the_others_of_its_transaction_are_stored() {
        // The first job of a transaction runs without a savepoint: its failure rolls the
        // transaction back, and the jobs after it run in a new one.
        let (outcomes, stored) = group_of(&["fail-a", "b", "fail-c", "d", "panic-e", "f"]).await;
        let errors = messages(&outcomes);
        assert!(errors[0].as_deref().is_some_and(|e| e.contains("fail-a failed")), "{errors:?}");
        assert_eq!(errors[1], None);
        assert!(errors[2].as_deref().is_some_and(|e| e.contains("fail-c failed")), "{errors:?}");
        assert_eq!(errors[3], None);
        assert!(errors[4].is_some(), "a panicking job fails: {errors:?}");
        assert_eq!(errors[5], None);
        assert_eq!(stored, ["b", "d", "f"]);

        let failed = |outcomes: &[Result<()>]| outcomes.iter().map(Result::is_err).collect::<Vec<_>>();
        let (outcomes, stored) = group_of(&["fail-a", "fail-b", "c"]).await;
        assert_eq!(failed(&outcomes), [true, true, false]);
        assert_eq!(stored, ["c"]);

        let (outcomes, stored) = group_of(&["panic-a", "b", "fail-c"]).await;
        assert_eq!(failed(&outcomes), [true, false, true]);
        assert_eq!(stored, ["b"]);

        let (outcomes, stored) = group_of(&["a", "b"]).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(stored, ["a", "b"]);
    }

    #[test]
    fn background_work_yields_to_foreground_work_but_is_not_starved() {
        let mut waiting = Waiting::new();
        waiting.push(job(Priority::Background));
        waiting.push(job(Priority::Now));
        waiting.push(job(Priority::Now));
        assert_eq!(waiting.counts(), (2, false), "foreground work goes first");

        assert_eq!(waiting.counts(), (1, true), "with nothing else waiting, background work runs");

        // Paced: after a background turn that took 10 ms, the next waits three times that
        // while foreground work arrives...
        waiting.ran_background(Duration::from_millis(10));
        waiting.push(job(Priority::Background));
        waiting.push(job(Priority::Now));
        assert_eq!(waiting.counts(), (1, false));
        assert_eq!(waiting.counts(), (0, false), "not yet, though nothing else waits");
        assert!(waiting.background_wait().is_some_and(|w| !w.is_zero() && w <= QUIET));
        // ...or until foreground work has stopped arriving.
        std::thread::sleep(QUIET);
        assert_eq!(waiting.counts(), (1, true), "once quiet, background work runs");

        // A long background turn paces the next far out, but it still gets a turn in time.
        waiting.ran_background(Duration::from_secs(60));
        waiting.push(job(Priority::Background));
        waiting.push(job(Priority::Now));
        assert_eq!(waiting.counts(), (1, false));
        std::thread::sleep(BACKGROUND_TURN);
        waiting.push(job(Priority::Now));
        assert_eq!(waiting.counts(), (2, true), "a starved background job joins the group");
        assert!(waiting.is_empty());
    }
}
