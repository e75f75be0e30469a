//! `steward bench journeys`: durable journey step transitions per second, through the
//! runner as the server ticks it, on SQLite and (given a URL) on PostgreSQL.
//!
//! Each run goes through a journey of seven steps over three ticks an hour apart: an email
//! (an outbox row), a wait, a task, a wait, an A/B split, a webhook on one arm, the end. A
//! transition is one step taken and stored (the run's new state, the step's record and its
//! effect, in the transaction of its batch).

use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use store::{JourneyDraft, Reentry, Run, RunStart, RunStatus, Store, SubjectKind};

fn definition() -> serde_json::Value {
    json!({
        "name": "Bench",
        "trigger": "manual",
        "steps": [
            {"id": "welcome", "email": {"template": "welcome", "to": "owner@example.com"}},
            {"id": "pause", "wait": "1h"},
            {"id": "call", "task": {"title": "Call", "assignee": "csm", "priority": "normal", "due": "2d"}},
            {"id": "later", "wait": "1h"},
            {"id": "ab", "split": {"arms": [{"weight": 1, "next": "hook"}, {"weight": 1, "next": "done"}]}},
            {"id": "hook", "webhook": {"url": "http://127.0.0.1:9/bench"}},
            {"id": "done", "end": {}}
        ]
    })
}

struct Round {
    start_s: f64,
    tick_s: f64,
    transitions: usize,
}

async fn round(store: Arc<dyn Store>, runs: usize) -> Result<Round> {
    let ws = store.create_workspace("bench journeys").await?.workspace_id;
    let membership = Arc::new(membership::Engine::new(store.clone()));
    let runner = runner::Runner::new(store.clone(), membership);
    let t0 = Utc::now();
    let draft = JourneyDraft {
        journey_id: store::journeys::new_journey_id(),
        name: "Bench".into(),
        kind: SubjectKind::Accounts,
        enabled: true,
        definition: definition(),
    };
    let record = store.put_journey(&ws, &draft, t0).await?;
    let started = Instant::now();
    for chunk in (0..runs).collect::<Vec<_>>().chunks(1_000) {
        let starts: Vec<RunStart> = chunk
            .iter()
            .map(|i| RunStart {
                run: Run {
                    run_id: store::journeys::new_run_id(),
                    journey_id: record.journey_id.clone(),
                    version: record.version,
                    subject_id: format!("acct_{i:07}"),
                    account_id: Some(format!("acct_{i:07}")),
                    status: RunStatus::Active,
                    step: Some("welcome".into()),
                    seq: 0,
                    wake_at: Some(t0),
                    waiting: None,
                    context: json!({"trigger": {"kind": "manual"}}),
                    started_at: t0,
                    updated_at: t0,
                    ended_at: None,
                },
                reentry: Reentry::Never,
                trigger_key: format!("bench:{i}"),
            })
            .collect();
        store.start_runs(&ws, &starts).await?;
    }
    let start_s = started.elapsed().as_secs_f64();
    let ticking = Instant::now();
    let mut transitions = 0;
    for hour in 0..3 {
        transitions += runner.tick(&ws, t0 + Duration::hours(hour) + Duration::seconds(1)).await?.transitions;
    }
    let tick_s = ticking.elapsed().as_secs_f64();
    let stats = store.journey_stats(&ws, &record.journey_id).await?;
    anyhow::ensure!(stats.completed as usize == runs, "{} of {runs} runs completed", stats.completed);
    Ok(Round { start_s, tick_s, transitions })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn run(runs: usize, rounds: usize, postgres: Option<String>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open_in_dir(dir.path())?);
    let mut backends = vec![("sqlite", sqlite)];
    if let Some(url) = postgres {
        let pg = store_postgres::PgStore::connect(&url).await.with_context(|| format!("connecting to {url}"))?;
        backends.push(("postgres", Arc::new(pg) as Arc<dyn Store>));
    }
    for (name, store) in backends {
        let mut rates = Vec::new();
        let mut starts = Vec::new();
        for r in 0..rounds.max(1) {
            let out = round(store.clone(), runs).await?;
            let rate = out.transitions as f64 / out.tick_s;
            println!(
                "{name} round {}: {runs} runs started in {:.2} s ({:.0}/s); {} transitions in {:.2} s: {:.0}/s",
                r + 1,
                out.start_s,
                runs as f64 / out.start_s,
                out.transitions,
                out.tick_s,
                rate
            );
            rates.push(rate);
            starts.push(runs as f64 / out.start_s);
        }
        println!(
            "{name}: median {:.0} transitions/s, {:.0} run starts/s over {} rounds of {runs} runs",
            median(rates),
            median(starts),
            rounds.max(1)
        );
    }
    Ok(())
}
