//! `steward bench score`: rescoring speed. A full rescore (features, health, churn and
//! expansion with their drivers, alerts) of synthetic accounts with 90 days of daily
//! rollups, in memory; and one account rescored after an event, in memory and through a
//! real SQLite store (read its rollups and records, score, write the score and its alerts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::{Datelike, NaiveDate, Utc};
use domain::{AccountId, Currency, Money};
use intelligence::churn::{ANY, AccountHistory, FeatureSpec, HorizonModel, Outcome, Period, Series, Trained};
use intelligence::model::{Ensemble, EnsembleParams, Matrix};
use intelligence::signals::Sources;
use scoring::{Loaded, Models, Previous, Scorer, ScoringSettings};
use serde_json::json;
use store::Store;

const KEY_EVENTS: [&str; 3] = ["report_created", "dashboard_viewed", "export_run"];

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn day0() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date")
}

/// An account with `days` of usage of the key events ending the day before `day0 + days`.
fn account(i: usize, days: u32, rng: &mut Rng) -> AccountHistory {
    let rate = rng.unit() * 6.0;
    let fading = rng.unit() < 0.15;
    let seats = 1 + (rng.unit() * 20.0) as i64;
    let people = ((seats as f64) * (0.3 + rng.unit())).ceil() as u64;
    let mut usage = HashMap::new();
    let mut any = Vec::new();
    let mut bits: HashMap<(u64, NaiveDate), u32> = HashMap::new();
    for (k, name) in KEY_EVENTS.iter().enumerate() {
        let mut daily = Vec::new();
        for d in 0..days {
            let level = if fading && d > days / 2 { rate * 0.2 } else { rate } / (k + 1) as f64;
            let n = (level * rng.unit() * 2.0) as u32;
            if n > 0 {
                let date = day0() + chrono::Days::new(d as u64);
                daily.push((date, n));
                any.push((date, n));
                let person = (rng.unit() * people as f64) as u64;
                let month = date.with_day0(0).expect("a first of month");
                *bits.entry((person, month)).or_default() |= 1 << date.day0();
            }
        }
        usage.insert((*name).to_owned(), Series::new(daily));
    }
    usage.insert(ANY.to_owned(), Series::new(any));
    let start = day0() - chrono::Days::new(30 + (rng.unit() * 700.0) as u64);
    AccountHistory {
        account_id: format!("acct_{i:07}"),
        periods: vec![Period { start, end: None, mrr: 2_000 * seats, seats, term_months: None }],
        usage,
        people: bits.into_iter().map(|((p, m), b)| (p, m, b)).collect(),
        ..Default::default()
    }
}

/// A model per horizon fitted on synthetic rows of the spec's features, so that the trees
/// are as many and as deep as a workspace's.
fn models(spec: &FeatureSpec) -> Models {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let names = spec.names();
    let mut x = Matrix::new(names.clone());
    let (mut y, mut groups) = (Vec::new(), Vec::new());
    for i in 0..20_000 {
        let row: Vec<f64> = (0..names.len()).map(|_| (-rng.unit().max(1e-12).ln() * 20.0).floor()).collect();
        let activity: f64 = row.iter().take(3).sum();
        y.push(rng.unit() < 0.3 / (1.0 + (0.05 * activity - 1.5).exp()));
        x.push(&row);
        groups.push(i as u64 / 6);
    }
    let model = Ensemble::fit(&x, &y, &groups, &EnsembleParams::default());
    let trained = |outcome, horizons: &[u32]| Trained {
        outcome,
        spec: spec.clone(),
        trained_through: day0(),
        horizons: horizons
            .iter()
            .map(|&h| HorizonModel { horizon_days: h, rows: 20_000, positives: 1, model: Some(model.clone()) })
            .collect(),
    };
    Models {
        churn: trained(Outcome::Churn, &scoring::CHURN_HORIZONS),
        expansion: trained(Outcome::Expansion, &scoring::EXPANSION_HORIZONS),
        churn_id: Some("bench".into()),
        expansion_id: Some("bench".into()),
    }
}

fn loaded(n: usize, days: u32) -> Loaded {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let histories: Vec<AccountHistory> = (0..n).map(|i| account(i, days, &mut rng)).collect();
    let usd = Currency::parse("USD").expect("a currency");
    Loaded {
        ids: histories.iter().map(|h| AccountId::parse(&h.account_id).expect("an id")).collect(),
        currencies: vec![Some(usd); n],
        sources: Sources { subscriptions: true, tickets: false, payment_events: false },
        end: None,
        histories,
        metrics: Vec::new(),
    }
}

/// The CPU time this process has used, user and system, in seconds (Linux, at the kernel's
/// usual 100 ticks a second; none elsewhere). On a machine other work keeps busy, it shows
/// what a run costs where the wall clock shows how long it waited too.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A digest of one account's result: its score but for the time it was scored at, and its
/// alerts, as their debug text (floats in full).
fn digest_of(r: &scoring::AccountResult, into: &mut impl std::hash::Hasher) {
    let score = store::AccountScore { scored_at: chrono::DateTime::UNIX_EPOCH, ..r.score.clone() };
    into.write(format!("{score:?}{:?}", r.alerts).as_bytes());
}

pub async fn run(accounts: Vec<usize>, repeat: usize, single: usize, digest: bool) -> Result<()> {
    let spec = FeatureSpec::events(KEY_EVENTS.map(String::from).to_vec());
    let days = 90;
    let day = day0() + chrono::Days::new(days as u64 - 1);
    let models = tokio::task::spawn_blocking(move || models(&spec)).await?;
    println!("| accounts | median full rescore (s) | accounts/s | runs (s) | CPU per run (s) |");
    println!("| ---: | ---: | ---: | --- | --- |");
    let mut scorer = None;
    for &n in &accounts {
        let (models, data) = (models.clone(), tokio::task::spawn_blocking(move || loaded(n, days)).await?);
        let data = Arc::new(data);
        let (mut runs, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..repeat.max(1) {
            let (models, shared) = (models.clone(), data.clone());
            let (secs, cpu_secs, s) = tokio::task::spawn_blocking(move || {
                let (started, cpu_before) = (Instant::now(), cpu_seconds());
                // Each chunk is handed over as `score_workspace` hands it to the store, and
                // dropped: the store's writes are not measured here.
                let (mut scored, mut text) = (0, 0);
                let mut hasher = std::hash::DefaultHasher::new();
                let s = Scorer::score_in_chunks(
                    ScoringSettings::default(),
                    models,
                    &shared,
                    day,
                    &Previous::default(),
                    Utc::now(),
                    |chunk| {
                        scored += chunk.len();
                        text += chunk.iter().map(|r| r.score.explanation.as_str().len()).sum::<usize>();
                        if digest {
                            chunk.iter().for_each(|r| digest_of(r, &mut hasher));
                        }
                    },
                );
                assert_eq!(scored, shared.ids.len());
                assert!(text > 1_000 * scored, "every account is explained");
                let cpu_secs = cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
                if digest {
                    println!("digest of {scored} accounts' results: {:016x}", std::hash::Hasher::finish(&hasher));
                }
                (started.elapsed().as_secs_f64(), cpu_secs, s)
            })
            .await?;
            runs.push(secs);
            cpu.extend(cpu_secs);
            scorer = Some((s, data.clone()));
        }
        let runs_shown: Vec<f64> = runs.iter().map(|s| (s * 100.0).round() / 100.0).collect();
        let m = median(&mut runs);
        println!("| {n} | {m:.2} | {:.0} | {runs_shown:?} | {cpu:.2?} |", n as f64 / m);
    }
    let Some((scorer, data)) = scorer else { return Ok(()) };
    if single == 0 {
        return Ok(());
    }
    // One account at a time, in memory: what an event's rescoring computes.
    let mut one = Vec::new();
    for i in (0..data.ids.len()).step_by((data.ids.len() / single.max(1)).max(1)).take(single) {
        let alone = Loaded {
            ids: vec![data.ids[i].clone()],
            histories: vec![data.histories[i].clone()],
            currencies: vec![data.currencies[i]],
            sources: data.sources,
            end: None,
            metrics: Vec::new(),
        };
        let started = Instant::now();
        let r = scorer.rescore_one(&alone, day, &Previous::default(), Utc::now());
        one.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r.len(), 1);
    }
    let p99 = {
        let mut s = one.clone();
        s.sort_by(f64::total_cmp);
        s[(s.len() * 99 / 100).min(s.len() - 1)]
    };
    println!(
        "\none account rescored in memory: median {:.0} µs, p99 {p99:.0} µs ({} accounts)",
        median(&mut one),
        single
    );
    store_rescore(single.min(300)).await
}

/// One account rescored through SQLite: a workspace of `n` accounts with 90 days of events
/// processed into rollups, scored in full, then each account rescored alone.
async fn store_rescore(n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(store_sqlite::SqliteStore::open_in_dir(dir.path())?);
    let ws = store.create_workspace("bench").await?.workspace_id;
    let today = Utc::now().date_naive();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut events = Vec::new();
    for a in 0..n {
        let rate = rng.unit() * 4.0;
        for d in 0..90 {
            for _ in 0..(rate * rng.unit()) as usize {
                let at =
                    Utc::now() - chrono::Duration::days(d) - chrono::Duration::minutes((rng.unit() * 600.0) as i64);
                events.push(json!({"type": "track", "messageId": format!("b{}", events.len()),
                    "userId": format!("u{a}-{}", (rng.unit() * 4.0) as u32), "event": KEY_EVENTS[(rng.unit() * 3.0) as usize],
                    "context": {"groupId": format!("acct_{a:04}")}, "timestamp": at.to_rfc3339()}));
            }
        }
    }
    let received = Utc::now();
    for chunk in events.chunks(2_000) {
        let body = json!({"batch": chunk}).to_string();
        let parsed = capture::parse_batch(body.as_bytes(), received, &capture::Limits::default())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        store.append_events(&ws, &parsed.events).await?;
    }
    let processor = processor::Processor::new(store.clone(), Default::default());
    processor.run_until_idle(&ws).await?;
    let usd = Currency::parse("USD")?;
    for a in 0..n {
        let started = Utc::now() - chrono::Duration::days(400);
        store
            .upsert_subscription(
                &ws,
                &store::Subscription {
                    subscription_id: format!("sub_{a}"),
                    account_id: AccountId::parse(&format!("acct_{a:04}"))?,
                    plan: Some("team".into()),
                    status: store::SubscriptionStatus::Active,
                    mrr: Money::new(20_000, usd),
                    quantity: 5,
                    started_at: started,
                    ended_at: None,
                    current_period_end: None,
                    cancel_at_period_end: false,
                    updated_at: started,
                    attributes: json!({}),
                },
            )
            .await?;
    }
    let (_, scorer) = scoring::score_workspace(store.as_ref(), &ws, today, Utc::now()).await?;
    let mut times = Vec::new();
    for round in 0..3 {
        for a in 0..n {
            let id = AccountId::parse(&format!("acct_{a:04}"))?;
            let started = Instant::now();
            let s = scorer.rescore(store.as_ref(), &ws, &id, today, Utc::now()).await?;
            let t = started.elapsed();
            assert!(s.is_some());
            if round > 0 {
                times.push(t.as_secs_f64() * 1e6);
            }
        }
    }
    println!(
        "one account rescored through SQLite (read rollups and records, score, write score and alerts): {} ({} rescores, {} events in {n} accounts)",
        quantiles(&mut times),
        times.len(),
        events.len()
    );
    // Where the time goes: the store's read and its write, each on its own.
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    for a in 0..n {
        let id = AccountId::parse(&format!("acct_{a:04}"))?;
        let started = Instant::now();
        let records = store.account_records(&ws, &id, (today - chrono::Days::new(120), today), (today, today)).await?;
        reads.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(records.subscriptions.len(), 1);
        let score = store.account_score(&ws, &id).await?.expect("scored above");
        let started = Instant::now();
        store.put_account_score(&ws, &score, &[], Utc::now()).await?;
        writes.push(started.elapsed().as_secs_f64() * 1e6);
    }
    println!("  of which the read: {}; the write: {}", quantiles(&mut reads), quantiles(&mut writes));
    Ok(())
}

/// Median and 99th percentile of times in µs, as text.
fn quantiles(times: &mut [f64]) -> String {
    times.sort_by(f64::total_cmp);
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    format!("median {:.0} µs, p99 {p99:.0} µs", median(times))
}
