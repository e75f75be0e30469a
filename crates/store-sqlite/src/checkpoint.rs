//! Checkpoints off the writer: a thread with its own connection copies the WAL's pages into
//! the database file a few times a second, so that no commit, and no append waiting on one,
//! pays for the copy and the file's sync (measured at 10 to 30 ms a time when the writer
//! checkpointed every 16 MB of WAL, which alone set the p99 of single requests).
//!
//! Passive checkpoints take no lock a writer or a reader waits on: each copies what no
//! reader still needs, and the writer starts the WAL over once everything is copied. The
//! writer's own automatic checkpoint stays as a bound, far above what this thread lets build
//! up, should this thread fall behind.

use rusqlite::Connection;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::writer::WriterStats;

/// How often the WAL is copied while commits happen. Longer lets a page rewritten by several
/// commits be copied once; shorter keeps the WAL, and each copy, small.
const EVERY: Duration = Duration::from_millis(250);

/// How often while the WAL grows fast (an import writes tens of megabytes a second): a
/// checkpoint that found [`BUSY_BYTES`] or more is followed by the next this soon, so that
/// the WAL never reaches the writer's own bound and the writer never copies it itself.
const BUSY_EVERY: Duration = Duration::from_millis(40);
const BUSY_BYTES: i64 = 2 << 20;

/// The writer's own automatic checkpoint: a bound on the WAL for when this thread cannot keep
/// up, never reached while it does. In bytes, as a database's pages may be 4 or 16 KiB.
pub(crate) const WRITER_BOUND_BYTES: i64 = 64 << 20;

pub(crate) struct Checkpointer {
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts checkpointing the database behind `conn` whenever the writer has committed.
    pub(crate) fn start(conn: Connection, writer: Arc<WriterStats>) -> Checkpointer {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &writer, &stopped))
            .expect("spawn the SQLite checkpoint thread");
        Checkpointer { stop: Mutex::new(Some(stop)), thread: Mutex::new(Some(thread)) }
    }

    /// The store is closing: from now on, copy what the writer commits as soon as it does,
    /// so that its last writes (the ids it holds, written out) are mostly copied by the
    /// time it stops, and the last checkpoint has little left to copy.
    pub(crate) fn hurry(&self) {
        if let Some(stop) = self.stop.lock().expect("checkpoint stop lock").as_ref() {
            let _ = stop.send(());
        }
    }

    /// Stops the thread after one last checkpoint.
    pub(crate) fn close(&self) {
        self.stop.lock().expect("checkpoint stop lock").take();
        if let Some(t) = self.thread.lock().expect("checkpoint thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.close();
    }
}

/// How often the WAL is copied once the store is closing.
const CLOSING_EVERY: Duration = Duration::from_millis(5);

fn run(conn: &Connection, writer: &WriterStats, stopped: &Receiver<()>) {
    let busy_pages = BUSY_BYTES / crate::page_size(conn).unwrap_or(4096);
    let mut copied_up_to = writer.commits.load(Relaxed);
    let mut every = EVERY;
    loop {
        let last = match stopped.recv_timeout(every) {
            Ok(()) => {
                every = CLOSING_EVERY;
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let now = writer.commits.load(Relaxed);
        if now != copied_up_to || last {
            let started = Instant::now();
            match checkpoint(conn) {
                Ok((wal_pages, copied)) => {
                    copied_up_to = now;
                    if every != CLOSING_EVERY {
                        every = if wal_pages >= busy_pages { BUSY_EVERY } else { EVERY };
                    }
                    metrics::histogram!("steward_sqlite_checkpoint_seconds").record(started.elapsed().as_secs_f64());
                    tracing::trace!(wal_pages, copied, "checkpointed");
                }
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
            }
        }
        if last {
            return;
        }
    }
}

/// One passive checkpoint: the WAL's size in pages and how many of them are now copied.
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = crate::connect(&path, false).unwrap();
        // The writer's own checkpoint is off: only the thread can copy pages.
        writer.execute_batch("PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB)").unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        let stats = Arc::new(WriterStats::default());
        let checkpointer = Checkpointer::start(crate::connect(&path, false).unwrap(), stats.clone());
        for _ in 0..20 {
            writer.execute_batch("BEGIN").unwrap();
            for _ in 0..50 {
                writer.execute("INSERT INTO t VALUES (randomblob(1000))", []).unwrap();
            }
            writer.execute_batch("COMMIT").unwrap();
            stats.commits.fetch_add(1, Relaxed);
        }
        // Wait for the outcome, bounded: a checkpoint is due within EVERY.
        let deadline = Instant::now() + Duration::from_secs(30);
        while size() < before + 1_000_000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(size() >= before + 1_000_000, "the database file holds {} bytes", size());
        checkpointer.close();
        let (_, log, copied): (i64, i64, i64) =
            writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!(log, copied, "everything committed was copied");
    }
}
