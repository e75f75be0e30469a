//! Several Steward processes on one database, simulated by several stores (each its own pool)
//! on one schema: they start at once, and they race to process the same slice.

mod common;

use domain::IdentityKey;
use serde_json::json;
use std::sync::Arc;
use store::{Changes, EventPerson, LogPosition, Op, Store};
use store_postgres::PgStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_starting_at_once_migrate_once() {
    let Some(url) = common::database_url() else {
        eprintln!("skipped processes_starting_at_once_migrate_once: no database configured");
        return;
    };
    let schema = common::fresh_schema();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move { PgStore::connect_in_schema(&url, &schema).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every process starts"));
    }
    let ws = stores[0].create_workspace("Shared").await.unwrap();
    for s in &stores {
        assert_eq!(s.get_workspace(&ws.workspace_id).await.unwrap(), Some(ws.clone()), "one schema, seen by all");
    }
    // Starting again later finds nothing to do.
    PgStore::connect_in_schema(&url, &schema).await.unwrap();
    let raw = sqlx::PgPool::connect(&url).await.unwrap();
    let versions: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {schema}.schema_migrations ORDER BY version"
    )))
    .fetch_all(&raw)
    .await
    .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count() as i64;
    assert_eq!(versions, (1..=files).collect::<Vec<_>>(), "every migration once");
    raw.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_process_wins_a_slice() {
    let Some(url) = common::database_url() else {
        eprintln!("skipped one_process_wins_a_slice: no database configured");
        return;
    };
    let schema = common::fresh_schema();
    let a = Arc::new(PgStore::connect_in_schema(&url, &schema).await.unwrap());
    let b = Arc::new(PgStore::connect_in_schema(&url, &schema).await.unwrap());
    let ws = a.create_workspace("Race").await.unwrap().workspace_id;
    a.append_events(
        &ws,
        &store::contract::events(json!([
            {"type": "track", "messageId": "m1", "userId": "u", "event": "x", "timestamp": "2026-10-01T10:00:00Z"}
        ])),
    )
    .await
    .unwrap();
    let to = b.read_log(&ws, LogPosition::ZERO, 10).await.unwrap()[0].position;

    // Both processes resolved the same slice, each naming the person its own way.
    let racers: Vec<_> = [(a.clone(), "p_a"), (b.clone(), "p_b")]
        .into_iter()
        .map(|(s, person)| {
            let ws = ws.clone();
            tokio::spawn(async move {
                let changes = Changes {
                    ops: vec![
                        Op::CreatePerson {
                            person_id: person.into(),
                            user_id: Some("u".into()),
                            at: chrono::Utc::now(),
                        },
                        Op::LinkIdentity { key: IdentityKey::user("u"), person_id: person.into() },
                    ],
                    event_people: vec![EventPerson {
                        seq: to.seq,
                        person_id: person.into(),
                        account_id: None,
                        timestamp: chrono::Utc::now(),
                    }],
                    ..Default::default()
                };
                s.apply_changes(&ws, LogPosition::ZERO, to, &changes).await.unwrap()
            })
        })
        .collect();
    let mut won = Vec::new();
    for r in racers {
        won.push(r.await.unwrap());
    }
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "exactly one process applies the slice: {won:?}");
    let winner = if won[0] { "p_a" } else { "p_b" };
    let loser = if won[0] { "p_b" } else { "p_a" };
    assert_eq!(a.get_person(&ws, "u").await.unwrap().unwrap().person_id, winner);
    assert!(b.get_person(&ws, loser).await.unwrap().is_none(), "the loser changed nothing");
    let status = b.log_status(&ws).await.unwrap();
    assert_eq!((status.cursor, status.pending_events), (to, 0));
}
