//! The one writer: a thread that owns the write connection and commits whatever work has
//! queued up in one transaction (group commit), each piece in its own savepoint so that one
//! failure does not undo the others.

use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use store::{Result, StoreError};

use crate::ids::RecentIds;
use crate::sql_error;

/// A piece of work queued for the writer.
trait Work: Send {
    /// Runs inside a savepoint; says whether it succeeded.
    fn run(&mut self, conn: &Connection, ids: &mut RecentIds) -> bool;
    /// Reports the outcome once the transaction committed, or why it did not.
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct Typed<F, R> {
    f: Option<F>,
    outcome: Option<Result<R>>,
    done: tokio::sync::oneshot::Sender<Result<R>>,
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
}

type Job = Box<dyn Work>;

/// How many pieces of work at most share one transaction.
const MAX_GROUP: usize = 512;
/// How many pieces of work may wait; beyond, callers are told to back off.
const QUEUE: usize = 4_096;

pub(crate) struct Writer {
    queue: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) stats: Arc<WriterStats>,
}

#[derive(Default)]
pub(crate) struct WriterStats {
    pub transactions: std::sync::atomic::AtomicU64,
    pub jobs: std::sync::atomic::AtomicU64,
}

impl Writer {
    pub(crate) fn start(conn: Connection, ids: RecentIds) -> Writer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, ids, rx, &thread_stats))
            .expect("spawn the SQLite writer thread");
        Writer { queue: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), stats }
    }

    /// Runs `f` in the next transaction and returns its result once that transaction is durable.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut RecentIds) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(Typed { f: Some(f), outcome: None, done });
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
const IDLE: std::time::Duration = std::time::Duration::from_millis(100);

fn run(conn: Connection, mut ids: RecentIds, rx: Receiver<Job>, stats: &WriterStats) {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::mpsc::RecvTimeoutError;
    let mut flush_failed: Option<std::time::Instant> = None;
    let may_flush = |failed: &Option<std::time::Instant>| failed.is_none_or(|at| at.elapsed() > FLUSH_RETRY);
    loop {
        // Between groups, at most one flush step, so a flush never holds up ingest for long.
        let first = if ids.wants_flush(false) && may_flush(&flush_failed) {
            flush_failed = flush_step(&conn, &mut ids);
            match rx.try_recv() {
                Ok(job) => job,
                Err(std::sync::mpsc::TryRecvError::Empty) => continue,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv_timeout(IDLE) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if ids.wants_flush(true) && may_flush(&flush_failed) {
                        flush_failed = flush_step(&conn, &mut ids);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        stats.transactions.fetch_add(1, Relaxed);
        stats.jobs.fetch_add(group.len() as u64, Relaxed);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = sql_error(e);
            for job in group {
                job.finish(Err(clone_error(&e)));
            }
            continue;
        }
        let group_mark = ids.mark();
        let mut ran = Vec::with_capacity(group.len());
        for mut job in group {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                ran.push((job, Some(sql_error(e))));
                continue;
            }
            let mark = ids.mark();
            let ok = catch_unwind(AssertUnwindSafe(|| job.run(&conn, &mut ids))).unwrap_or_else(|_| {
                tracing::error!("a write panicked; its savepoint is rolled back");
                false
            });
            if !ok {
                ids.undo_to(mark);
            }
            let end = if ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
            let err = conn.execute_batch(end).err().map(sql_error);
            ran.push((job, err));
        }
        let committed = conn.execute_batch("COMMIT").map_err(sql_error);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            ids.undo_to(group_mark);
        }
        ids.committed();
        for (job, err) in ran {
            let outcome = match (&committed, err) {
                (Err(e), _) => Err(clone_error(e)),
                (Ok(()), Some(e)) => Err(e),
                (Ok(()), None) => Ok(()),
            };
            job.finish(outcome);
        }
    }
    // Leave as little as possible to rebuild at the next start.
    while ids.wants_flush(true) {
        if flush_step(&conn, &mut ids).is_some() {
            break;
        }
    }
}

/// After a failed flush, how long before the next try.
const FLUSH_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// One step of adding recent message ids to `event_ids`; when it failed, the time it did.
fn flush_step(conn: &Connection, ids: &mut RecentIds) -> Option<std::time::Instant> {
    match ids.flush_step(conn) {
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not add recent message ids to the index; will retry");
            Some(std::time::Instant::now())
        }
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Full(m) => StoreError::Full(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}
