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

/// Four processes start runs for the same subjects, step the same runs and deliver the same
/// outbox at once: each subject gets one active run, each run moves once with its message,
/// and each message is taken by one deliverer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_and_messages_are_taken_once_across_processes() {
    use store::{
        Channel, JourneyDraft, MessageStatus, OutboxMessage, Reentry, Run, RunStart, RunStatus, RunUpdate, SubjectKind,
    };

    let Some(url) = common::database_url() else {
        eprintln!("skipped runs_and_messages_are_taken_once_across_processes: no database configured");
        return;
    };
    let schema = common::fresh_schema();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(PgStore::connect_in_schema(&url, &schema).await.unwrap()));
    }
    let ws = stores[0].create_workspace("Race").await.unwrap().workspace_id;
    let at = chrono::Utc::now();
    let draft = JourneyDraft {
        journey_id: "jny_race".into(),
        name: "Race".into(),
        kind: SubjectKind::Accounts,
        enabled: true,
        definition: json!({"steps": []}),
    };
    let journey = stores[0].put_journey(&ws, &draft, at).await.unwrap();
    let subjects: Vec<String> = (0..20).map(|i| format!("acct-{i:02}")).collect();
    let run = |subject: &str, process: usize| Run {
        run_id: format!("run_{subject}_{process}"),
        journey_id: journey.journey_id.clone(),
        version: journey.version,
        subject_id: subject.into(),
        account_id: Some(subject.into()),
        status: RunStatus::Active,
        step: Some("welcome".into()),
        seq: 0,
        wake_at: Some(at),
        waiting: None,
        context: json!({}),
        started_at: at,
        updated_at: at,
        ended_at: None,
    };

    // Each process has its own trigger per subject, so only the re-entry rule keeps them apart.
    let racers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(p, s)| {
            let (s, ws) = (s.clone(), ws.clone());
            let starts: Vec<RunStart> = subjects
                .iter()
                .map(|subject| RunStart {
                    run: run(subject, p),
                    reentry: Reentry::Always,
                    trigger_key: format!("{subject}:{p}"),
                })
                .collect();
            tokio::spawn(async move { s.start_runs(&ws, &starts).await.unwrap() })
        })
        .collect();
    let mut started = 0;
    for r in racers {
        started += r.await.unwrap().into_iter().filter(|s| *s).count();
    }
    assert_eq!(started, subjects.len(), "one run per subject");
    let runs = stores[0].due_runs(&ws, at, 100).await.unwrap();
    assert_eq!(runs.len(), subjects.len());

    // Every process steps every run from the state it read, with the message the step decides.
    let racers: Vec<_> = stores
        .iter()
        .map(|s| {
            let (s, ws) = (s.clone(), ws.clone());
            let updates: Vec<RunUpdate> = runs
                .iter()
                .map(|r| {
                    let mut next = r.clone();
                    next.seq = 1;
                    next.step = Some("pause".into());
                    let message = OutboxMessage {
                        message_id: format!("{}:welcome:0", r.run_id),
                        channel: Channel::Email,
                        endpoint: format!("owner@{}.example", r.subject_id),
                        payload: json!({"subject": "Welcome"}),
                        journey_id: Some(r.journey_id.clone()),
                        run_id: Some(r.run_id.clone()),
                        step_id: Some("welcome".into()),
                        account_id: r.account_id.clone(),
                        person_id: None,
                        status: MessageStatus::Pending,
                        attempts: 0,
                        retry_base: 0,
                        next_attempt_at: Some(at),
                        lease_until: None,
                        last_error: None,
                        created_at: at,
                        updated_at: at,
                        delivered_at: None,
                    };
                    RunUpdate { run: next, expected_seq: 0, steps: vec![], messages: vec![message], tasks: vec![] }
                })
                .collect();
            tokio::spawn(async move { s.advance_runs(&ws, &updates).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for r in racers {
        applied += r.await.unwrap().into_iter().filter(|a| *a).count();
    }
    assert_eq!(applied, runs.len(), "each run moves once");

    // Deliverers take a few at a time until none is left: none is taken twice.
    let racers: Vec<_> = stores
        .iter()
        .map(|s| {
            let (s, ws) = (s.clone(), ws.clone());
            tokio::spawn(async move {
                let mut taken = Vec::new();
                loop {
                    let batch = s.claim_messages(&ws, at, at + chrono::Duration::minutes(5), 3).await.unwrap();
                    if batch.is_empty() {
                        return taken;
                    }
                    taken.extend(batch.into_iter().map(|m| m.message_id));
                }
            })
        })
        .collect();
    let mut taken = Vec::new();
    for r in racers {
        taken.extend(r.await.unwrap());
    }
    taken.sort();
    let mut expected: Vec<String> = runs.iter().map(|r| format!("{}:welcome:0", r.run_id)).collect();
    expected.sort();
    assert_eq!(taken, expected, "every message taken by exactly one deliverer");
}
