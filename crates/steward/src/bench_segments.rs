//! `steward bench segments`: how long after an event is acknowledged its account's segment
//! membership changes, with events arriving at a steady rate, processing and segment
//! evaluation running as in the server; and a full evaluation of every account for every
//! segment.

use anyhow::Result;
use chrono::Utc;
use domain::WorkspaceId;
use membership::{Definition, Engine};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Store, SubjectKind};

/// The segments every account is evaluated for: five, one of which tests another.
const SEGMENTS: [(&str, &str); 5] = [
    ("Probed today", "count(event \"Probe\", 1d) >= 1"),
    ("Probed this week and active", "count(event \"Probe\", 7d) >= 1 and active_days(7d) >= 1"),
    ("Probed and seen", "in segment \"Probed today\" and days_since(last_seen) < 1"),
    ("Lapsed logins", "count(event \"login\", 14d) == 0 and days_since(last_seen) > 3"),
    ("Regulars", "active_days(event \"login\", 30d) >= 2 and traits.tier in (\"gold\", \"silver\")"),
];

fn capture(messages: serde_json::Value) -> Result<Vec<domain::NewEvent>> {
    let body = json!({ "batch": messages }).to_string();
    let parsed = capture::parse_batch(body.as_bytes(), Utc::now(), &capture::Limits::default())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(parsed.events)
}

/// A workspace of `accounts` accounts, each with a person who logged in on a few of the
/// last 30 days, processed, with the five segments saved.
async fn seed(store: &Arc<dyn Store>, engine: &Engine, accounts: usize) -> Result<WorkspaceId> {
    let ws = store.create_workspace("bench").await?.workspace_id;
    let now = Utc::now();
    let mut batch = Vec::new();
    for a in 0..accounts {
        let tier = ["gold", "silver", "bronze"][a % 3];
        batch.push(json!({"type": "group", "messageId": format!("g{a}"), "userId": format!("u{a}"),
            "groupId": format!("acct_{a:07}"), "traits": {"tier": tier},
            "timestamp": (now - chrono::Duration::days(40)).to_rfc3339()}));
        for d in [2 + a % 5, 9 + a % 7, 20] {
            batch.push(json!({"type": "track", "messageId": format!("l{a}-{d}"), "userId": format!("u{a}"),
                "event": "login", "context": {"groupId": format!("acct_{a:07}")},
                "timestamp": (now - chrono::Duration::days(d as i64)).to_rfc3339()}));
        }
        if batch.len() >= 2_000 {
            store.append_events(&ws, &capture(serde_json::Value::Array(std::mem::take(&mut batch)))?).await?;
        }
    }
    if !batch.is_empty() {
        store.append_events(&ws, &capture(serde_json::Value::Array(batch))?).await?;
    }
    processor::Processor::new(store.clone(), Default::default()).run_until_idle(&ws).await?;
    for (name, condition) in SEGMENTS {
        let d = Definition {
            name: name.into(),
            kind: SubjectKind::Accounts,
            condition: condition.into(),
            description: None,
        };
        engine.create(&ws, &d, Utc::now()).await.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    Ok(ws)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// A five-clause people segment, timed in full over `people` people (created by identify
/// calls with traits, processed), `runs` times.
async fn people_recompute(store: &Arc<dyn Store>, engine: &Engine, people: usize, runs: usize) -> Result<()> {
    if people == 0 || runs == 0 {
        return Ok(());
    }
    let ws = store.create_workspace("bench people").await?.workspace_id;
    let now = Utc::now();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(2_000);
    for i in 0..people {
        let role = ["admin", "member", "viewer"][i % 3];
        let plan = ["free", "team", "business", "enterprise"][(i / 3) % 4];
        let mut traits = json!({"role": role, "plan": plan, "seats": (i % 50) as u64});
        if i % 10 != 0 {
            traits["email"] = json!(format!("user{i}@example.com"));
        }
        batch.push(json!({"type": "identify", "messageId": format!("p{i}"), "userId": format!("user{i}"),
            "traits": traits, "timestamp": (now - chrono::Duration::minutes((i % (60 * 24 * 60)) as i64)).to_rfc3339()}));
        if batch.len() == 2_000 {
            store.append_events(&ws, &capture(serde_json::Value::Array(std::mem::take(&mut batch)))?).await?;
        }
    }
    if !batch.is_empty() {
        store.append_events(&ws, &capture(serde_json::Value::Array(batch))?).await?;
    }
    processor::Processor::new(store.clone(), Default::default()).run_until_idle(&ws).await?;
    println!("{people} people identified with traits and processed in {:.1} s", started.elapsed().as_secs_f64());
    let person = |name: &str, condition: &str| Definition {
        name: name.into(),
        kind: SubjectKind::People,
        condition: condition.into(),
        description: None,
    };
    engine
        .create(&ws, &person("Viewers", "role == \"viewer\""), Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let condition = "role in (\"admin\", \"member\") and plan != \"free\" and email is set \
                     and days_since(last_seen) > 14 and not in segment \"Viewers\"";
    let t = Instant::now();
    let saved = engine
        .create(&ws, &person("Quiet paying admins", condition), Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let first = t.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        engine.recompute(&ws, &saved.segment.segment_id, Utc::now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "full evaluation of a five-clause people segment over {people} people ({} members): saved and evaluated in \
         {first:.2} s; again: median {:.2} s ({} runs: {})",
        saved.size,
        quantile(&times, 0.5),
        times.len(),
        times.iter().map(|f| format!("{f:.2}")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

pub async fn run(accounts: usize, people: usize, rate: u64, seconds: u64, full_runs: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open_in_dir(dir.path())?);
    let engine = Arc::new(Engine::new(store.clone()));
    let started = Instant::now();
    let ws = seed(&store, &engine, accounts).await?;
    println!(
        "{accounts} accounts with {} events processed and {} segments saved in {:.1} s",
        accounts * 4,
        SEGMENTS.len(),
        started.elapsed().as_secs_f64()
    );

    // A full evaluation: every account for every segment, read from the store, written back.
    let mut fulls = Vec::new();
    for _ in 0..full_runs {
        let t = Instant::now();
        engine.recompute_all(&ws, Utc::now()).await?;
        fulls.push(t.elapsed().as_secs_f64());
    }
    fulls.sort_by(f64::total_cmp);
    if !fulls.is_empty() {
        println!(
            "full evaluation of {accounts} accounts for {} segments: median {:.2} s ({} runs: {})",
            SEGMENTS.len(),
            quantile(&fulls, 0.5),
            fulls.len(),
            fulls.iter().map(|f| format!("{f:.2}")).collect::<Vec<_>>().join(", ")
        );
    }

    people_recompute(&store, &engine, people, full_runs).await?;

    // Latency: events at `rate`/s, each a probe of an account not probed yet; the time from
    // its append's acknowledgement to its account's entry into "Probed today".
    let probed_today =
        store.list_segments(&ws).await?.into_iter().find(|s| s.name == "Probed today").expect("saved above").segment_id;
    let processor = processor::Processor::new(store.clone(), Default::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let touched = processor.subscribe();
    let running = [
        tokio::spawn(processor.clone().run(shutdown.clone())),
        tokio::spawn(engine.clone().run(
            Some(touched),
            Duration::from_secs(1),
            Duration::from_secs(3600),
            shutdown.clone(),
        )),
    ];
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let entered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watching = {
        let (store, ws, entered, shutdown) = (store.clone(), ws.clone(), entered.clone(), shutdown.clone());
        let segment = probed_today.clone();
        let after = store.segment_changes(&ws, 0, usize::MAX).await?.last().map_or(0, |c| c.seq);
        tokio::spawn(async move {
            let mut after = after;
            while !shutdown.is_cancelled() {
                match store.segment_changes(&ws, after, 10_000).await {
                    Ok(changes) => {
                        let now = Instant::now();
                        for c in &changes {
                            if c.entered && c.segment_id == segment {
                                entered.lock().expect("lock").entry(c.subject_id.clone()).or_insert(now);
                            }
                        }
                        after = changes.last().map_or(after, |c| c.seq);
                    }
                    Err(e) => eprintln!("reading changes: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let sending = Instant::now();
    let mut sends = Vec::with_capacity(total.min(accounts));
    for i in 0..total.min(accounts) {
        let due = sending + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (store, ws, acked, processor) = (store.clone(), ws.clone(), acked.clone(), processor.clone());
        sends.push(tokio::spawn(async move {
            let account = format!("acct_{i:07}");
            let event = capture(json!([{"type": "track", "messageId": format!("probe{i}"), "userId": format!("u{i}"),
                "event": "Probe", "context": {"groupId": account}, "timestamp": Utc::now().to_rfc3339()}]))?;
            store.append_events(&ws, &event).await?;
            acked.lock().expect("lock").insert(account, Instant::now());
            processor.wake();
            anyhow::Ok(())
        }));
    }
    for s in sends {
        s.await??;
    }
    let sent_for = sending.elapsed().as_secs_f64();
    let count = acked.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while entered.lock().expect("lock").len() < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    watching.await?;
    for t in running {
        t.await?;
    }
    let acked = acked.lock().expect("lock");
    let entered = entered.lock().expect("lock");
    let mut latencies: Vec<f64> = acked
        .iter()
        .filter_map(|(a, t)| entered.get(a).map(|e| e.saturating_duration_since(*t).as_secs_f64() * 1e3))
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "membership after an event: {} events at {:.0}/s ({} accounts entered \"Probed today\", {} missing): \
         p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        count,
        count as f64 / sent_for,
        latencies.len(),
        count - latencies.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.95),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
