//! The PostgreSQL event log under concurrent appends: sequence numbers are drawn before commit,
//! so these check that a reader following the log by position still sees every event once.

mod common;

use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use store::{LogPosition, Store};
use store_postgres::PgStore;
use tokio::time::Instant;

fn track(id: &str) -> Value {
    json!({"type": "track", "messageId": id, "userId": "u", "event": "x", "timestamp": "2026-10-01T10:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_read_exactly_once() {
    const WRITERS: usize = 2;
    const BATCHES: usize = 200;
    const PER_BATCH: usize = 3;
    let Some(store) = common::fresh().await else {
        eprintln!("skipped concurrent_appends_are_read_exactly_once: no database configured");
        return;
    };
    let store = Arc::new(store);
    let ws = store.create_workspace("Concurrent").await.unwrap().workspace_id;

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, ws) = (store.clone(), ws.clone());
            tokio::spawn(async move {
                for b in 0..BATCHES {
                    let batch = (0..PER_BATCH).map(|i| track(&format!("w{w}-b{b}-{i}"))).collect();
                    let report = store.append_events(&ws, &store::contract::events(Value::Array(batch))).await.unwrap();
                    assert_eq!(report.stored, PER_BATCH);
                }
            })
        })
        .collect();

    // The reader follows the log while the writers run, in small reads so that it often reads
    // right behind the appends.
    let reader = {
        let (store, ws) = (store.clone(), ws.clone());
        tokio::spawn(async move {
            let total = WRITERS * BATCHES * PER_BATCH;
            let deadline = Instant::now() + Duration::from_secs(120);
            let (mut position, mut seen, mut reads, mut reordered) = (LogPosition::ZERO, Vec::new(), 0, 0);
            while seen.len() < total {
                assert!(Instant::now() < deadline, "the reader saw {} of {total} events", seen.len());
                let batch = store.read_log(&ws, position, 7).await.unwrap();
                reads += 1;
                for e in batch {
                    // A transaction that took its sequence numbers earlier but committed later:
                    // the case a reader going by seq alone could skip.
                    reordered += usize::from(e.position.seq < position.seq);
                    assert!(e.position > position, "positions only grow");
                    position = e.position;
                    seen.push(e.event.message_id);
                }
            }
            (position, seen, reads, reordered)
        })
    };

    for w in writers {
        w.await.unwrap();
    }
    let (position, seen, reads, reordered) = reader.await.unwrap();
    assert!(store.read_log(&ws, position, 100).await.unwrap().is_empty(), "nothing is left behind the reader");

    let distinct: HashSet<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(distinct.len(), seen.len(), "no event is read twice");
    let expected: HashSet<String> = (0..WRITERS)
        .flat_map(|w| (0..BATCHES).flat_map(move |b| (0..PER_BATCH).map(move |i| format!("w{w}-b{b}-{i}"))))
        .collect();
    assert_eq!(distinct, expected.iter().map(String::as_str).collect(), "every event is read");
    eprintln!("read {} events in {reads} reads; {reordered} came after a higher seq", seen.len());
    store.close().await;
}

/// The case the (tx, seq) order exists for, made deterministic: a transaction takes a sequence
/// number, another appends after it and commits first. Read by seq alone, a reader would pass the
/// first row before it commits and never return to it.
///
/// Whatever else runs in the database at the same time can only make the reader wait longer,
/// never return sooner, so the outcome does not depend on other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_commits_late_is_not_skipped() {
    let Some(url) = common::database_url() else {
        eprintln!("skipped a_row_that_commits_late_is_not_skipped: no database configured");
        return;
    };
    let schema = common::fresh_schema();
    let store = Arc::new(PgStore::connect_in_schema(&url, &schema).await.unwrap());
    let ws = store.create_workspace("Late").await.unwrap().workspace_id;
    let raw = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(PgConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]))
        .await
        .unwrap();

    let late = &store::contract::events(json!([track("late")]))[0];
    let mut slow = raw.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (workspace_id, message_id, type, name, user_id, timestamp, received_at, payload)
         VALUES ($1, $2, 'track', $3, 'u', $4, $5, $6)",
    )
    .bind(ws.as_str())
    .bind(&late.message_id)
    .bind(&late.name)
    .bind(late.timestamp)
    .bind(late.received_at)
    .bind(&late.payload)
    .execute(&mut *slow)
    .await
    .unwrap();

    store.append_events(&ws, &store::contract::events(json!([track("early")]))).await.unwrap();
    // "early" is committed and visible, but an older transaction is still running: the reader
    // must wait for it rather than return "early" and move its position past "late".
    let reader = {
        let (store, ws) = (store.clone(), ws.clone());
        tokio::spawn(async move { store.read_log(&ws, LogPosition::ZERO, 10).await.unwrap() })
    };
    // Give the reader time to start waiting; had it returned, it could only hold "early".
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "read_log returned while an older transaction was still running");

    slow.commit().await.unwrap();
    let log = reader.await.unwrap();
    let ids: Vec<_> = log.iter().map(|e| e.event.message_id.as_str()).collect();
    assert_eq!(ids, ["late", "early"], "log order is commit order of the transactions' ids");
    assert!(log[0].position.seq < log[1].position.seq && log[0].position.tx < log[1].position.tx);
    assert_eq!(log[0].event, *late);
    assert_eq!(store.log_status(&ws).await.unwrap().pending_events, 2);
    raw.close().await;
    store.close().await;
}
