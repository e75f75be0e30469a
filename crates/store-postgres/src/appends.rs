//! Appends, batched: requests queue for a few appender tasks, each of which takes whatever has
//! queued and writes it in one transaction, one `INSERT ... SELECT FROM UNNEST` per workspace,
//! so that many small requests cost a few round trips and one commit rather than a pooled
//! connection and a commit each. A request is answered once its transaction committed. When
//! the queue is full the caller is told to back off at once (`StoreError::Busy`) instead of
//! waiting for a connection.

use std::collections::HashMap;

use domain::{NewEvent, WorkspaceId};
use sqlx::PgPool;
use store::{AppendReport, Result, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::db_error;

/// Requests that may wait; beyond, callers are told the store is busy.
const QUEUE: usize = 2_048;
/// Tasks writing at once, each on its own connection.
const WRITERS: usize = 4;
/// Events at most in one transaction.
const MAX_EVENTS: usize = 20_000;

struct Request {
    ws: WorkspaceId,
    events: Vec<NewEvent>,
    done: oneshot::Sender<Result<AppendReport>>,
}

pub(crate) struct Appender {
    queue: mpsc::Sender<Request>,
    /// The writers' end of the queue, held here too so that the queue lives as long as the
    /// appender, whatever happens to the writers.
    _taken_from: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>,
}

impl Appender {
    pub(crate) fn start(pool: PgPool) -> Appender {
        Appender::with(pool, QUEUE, WRITERS)
    }

    fn with(pool: PgPool, queue: usize, writers: usize) -> Appender {
        let (tx, rx) = mpsc::channel::<Request>(queue);
        // The writers take turns at the queue: each takes what has queued, then writes it
        // while the next one gathers.
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(write_loop(pool.clone(), rx.clone()));
        }
        Appender { queue: tx, _taken_from: rx }
    }

    pub(crate) async fn append(&self, ws: &WorkspaceId, events: &[NewEvent]) -> Result<AppendReport> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let (done, answer) = oneshot::channel();
        let request = Request { ws: ws.clone(), events: events.to_vec(), done };
        self.queue.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Busy("too many appends are waiting".into()),
            mpsc::error::TrySendError::Closed(_) => StoreError::Backend("the store is closed".into()),
        })?;
        answer.await.map_err(|_| StoreError::Backend("the append was dropped before committing".into()))?
    }
}

async fn write_loop(pool: PgPool, rx: std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut events = first.events.len();
            let mut batch = vec![first];
            while events < MAX_EVENTS {
                match rx.try_recv() {
                    Ok(r) => {
                        events += r.events.len();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            batch
        };
        let outcome = write(&pool, &batch).await;
        match outcome {
            Ok(reports) => {
                for (r, report) in batch.into_iter().zip(reports) {
                    let _ = r.done.send(Ok(report));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for r in batch {
                    let _ = r.done.send(Err(match &e {
                        StoreError::Full(m) => StoreError::Full(m.clone()),
                        StoreError::Busy(m) => StoreError::Busy(m.clone()),
                        _ => StoreError::Backend(message.clone()),
                    }));
                }
            }
        }
    }
}

/// Writes a batch in one transaction; returns each request's report.
async fn write(pool: &PgPool, batch: &[Request]) -> Result<Vec<AppendReport>> {
    let mut by_workspace: HashMap<&WorkspaceId, Vec<usize>> = HashMap::new();
    for (i, r) in batch.iter().enumerate() {
        by_workspace.entry(&r.ws).or_default().push(i);
    }
    let mut reports = vec![AppendReport::default(); batch.len()];
    let mut tx = pool.begin().await.map_err(db_error)?;
    for (ws, requests) in by_workspace {
        let events: Vec<&NewEvent> = requests.iter().flat_map(|&i| &batch[i].events).collect();
        let inserted = insert(&mut tx, ws, &events).await?;
        let ids: Vec<Vec<&str>> =
            requests.iter().map(|&i| batch[i].events.iter().map(|e| e.message_id.as_str()).collect()).collect();
        for (&i, report) in requests.iter().zip(attribute(&ids, inserted)) {
            reports[i] = report;
        }
    }
    tx.commit().await.map_err(db_error)?;
    Ok(reports)
}

/// Which request stored each inserted id: the first (in request order, then event order) that
/// carried it; every other occurrence was a duplicate.
fn attribute(requests: &[Vec<&str>], inserted: Vec<String>) -> Vec<AppendReport> {
    let mut unclaimed: std::collections::HashSet<String> = inserted.into_iter().collect();
    requests
        .iter()
        .map(|ids| {
            let stored = ids.iter().filter(|id| unclaimed.remove(**id)).count();
            AppendReport { stored, duplicates: ids.len() - stored }
        })
        .collect()
}

/// One statement for a workspace's events, in order; returns the message ids stored now (a
/// message already stored, or repeated in the statement, is skipped).
async fn insert(conn: &mut sqlx::PgConnection, ws: &WorkspaceId, events: &[&NewEvent]) -> Result<Vec<String>> {
    let n = events.len();
    let mut ids = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut users = Vec::with_capacity(n);
    let mut anons = Vec::with_capacity(n);
    let mut groups = Vec::with_capacity(n);
    let mut previous = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut received = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    for e in events {
        ids.push(e.message_id.as_str());
        kinds.push(e.kind.as_str());
        names.push(e.name.as_deref());
        users.push(e.user_id.as_deref());
        anons.push(e.anonymous_id.as_deref());
        groups.push(e.group_id.as_deref());
        previous.push(e.previous_id.as_deref());
        times.push(e.timestamp);
        received.push(e.received_at);
        payloads.push(e.payload.as_str());
    }
    // The ordinality keeps seq in the order the events came.
    sqlx::query_scalar(
        "INSERT INTO events (workspace_id, message_id, type, name, user_id, anonymous_id, group_id, previous_id,
                             timestamp, received_at, payload)
         SELECT $1, m.message_id, m.type, m.name, m.user_id, m.anonymous_id, m.group_id, m.previous_id,
                m.timestamp, m.received_at, m.payload
         FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::timestamptz[], $10::timestamptz[], $11::text[])
              WITH ORDINALITY AS m (message_id, type, name, user_id, anonymous_id, group_id, previous_id,
                                    timestamp, received_at, payload, ord)
         ORDER BY m.ord
         ON CONFLICT (workspace_id, message_id) DO NOTHING
         RETURNING message_id",
    )
    .bind(ws.as_str())
    .bind(ids)
    .bind(kinds)
    .bind(names)
    .bind(users)
    .bind(anons)
    .bind(groups)
    .bind(previous)
    .bind(times)
    .bind(received)
    .bind(payloads)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once_and_stores_nothing() {
        // A lazy pool to no server: nothing here reaches a database.
        let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://steward@127.0.0.1:1/none").unwrap();
        // No writer and room for one request: the second finds the queue full.
        let appender = Appender::with(pool, 1, 0);
        let ws = WorkspaceId::generate();
        let event = |id: &str| NewEvent {
            message_id: id.into(),
            kind: domain::EventType::Track,
            name: Some("x".into()),
            user_id: Some("u".into()),
            anonymous_id: None,
            group_id: None,
            previous_id: None,
            timestamp: chrono::Utc::now(),
            received_at: chrono::Utc::now(),
            payload: "{}".into(),
        };
        let waiting = {
            let (done, answer) = oneshot::channel();
            appender.queue.try_send(Request { ws: ws.clone(), events: vec![event("a")], done }).unwrap();
            answer
        };
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), appender.append(&ws, &[event("b")]))
            .await
            .expect("refused at once, not after a wait");
        assert!(matches!(refused, Err(StoreError::Busy(_))), "{refused:?}");
        drop(appender);
        assert!(waiting.await.is_err(), "the queued request was dropped unwritten");
    }

    #[test]
    fn each_stored_id_is_counted_for_the_first_request_that_carried_it() {
        let requests = vec![vec!["a", "b", "a"], vec!["b", "c"], vec!["d"]];
        // "d" was stored before this batch; "a", "b" and "c" are new.
        let reports = attribute(&requests, vec!["a".into(), "b".into(), "c".into()]);
        let counts: Vec<(usize, usize)> = reports.iter().map(|r| (r.stored, r.duplicates)).collect();
        assert_eq!(counts, [(2, 1), (1, 1), (0, 1)]);
    }
}
