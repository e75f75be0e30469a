//! `steward bench`: ingest throughput and latency, measured against a baseline in the same
//! process. Targets are servers started in-process (`discard`: parses and answers without
//! storing, the parsing ceiling; `sqlite`; `postgres`), or an external server by URL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use hyper::body::Bytes;
use serde_json::json;

use crate::client::Client;
use crate::config::{Config, DatabaseUrl};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable events/s through /v1/batch, and p50/p99 of single /v1/track requests at a fixed rate.
    Ingest {
        /// Comma-separated in-process targets: discard, sqlite, postgres.
        #[arg(long, default_value = "discard,sqlite")]
        targets: String,
        /// PostgreSQL for the `postgres` target (default: STEWARD_DATABASE_URL).
        #[arg(long)]
        postgres_url: Option<String>,
        /// Benchmark an external server instead (needs --write-key).
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        write_key: Option<String>,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Messages per /v1/batch request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Seconds of /v1/batch load per target.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Single /v1/track requests per second in the latency run (0 skips it).
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Seconds of the latency run per target.
        #[arg(long, default_value_t = 5)]
        rate_seconds: u64,
        /// Rounds over all targets; with more than one, each round's table and then the
        /// medians (a shared machine's speed drifts, and the ratio to `discard` of the same
        /// round is steadier than either figure).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
    /// Time a full rescore of synthetic accounts with 90 days of rollups (features, health,
    /// churn and expansion with drivers, alerts), and one account rescored alone, in memory
    /// and through SQLite.
    Score {
        /// Comma-separated workspace sizes.
        #[arg(long, default_value = "100000,1000000")]
        accounts: String,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Accounts rescored one at a time.
        #[arg(long, default_value_t = 1000)]
        single: usize,
        /// Print a digest of every account's score, explanation and alerts after each run (all
        /// but the time it was scored at), to check that a change leaves the results as they
        /// were. Hashing is part of the timed run.
        #[arg(long)]
        digest: bool,
    },
    /// Segment membership after an event (events at a steady rate, processing and segment
    /// evaluation running as in the server) and a full evaluation of every account for five
    /// segments, through SQLite.
    Segments {
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// People for the full evaluation of a five-clause people segment (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        people: usize,
        /// Events per second, each a probe of an account not probed yet.
        #[arg(long, default_value_t = 1_000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Full evaluations timed before the latency run.
        #[arg(long, default_value_t = 3)]
        full: usize,
    },
    /// Durable journey step transitions per second through the runner (seven steps over three
    /// ticks, each run's email, task and webhook written as it steps), on SQLite and, with
    /// `--postgres URL`, on PostgreSQL.
    Journeys {
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        postgres: Option<String>,
    },
    /// A Stripe backfill from a local server paging like Stripe's API: N customers, each with
    /// a subscription and M months of invoices, stored, matched and mapped, on SQLite and,
    /// with `--postgres URL`, on PostgreSQL.
    Connectors {
        #[arg(long, default_value_t = 10_000)]
        customers: usize,
        #[arg(long, default_value_t = 12)]
        months: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        postgres: Option<String>,
    },
    /// The dashboard's server time per page (p50, p95, max) with a large portfolio: builds a
    /// data directory of scored accounts with their history, alerts, tasks, segments and
    /// journeys (or reuses one built before), starts the server, signs in and requests each
    /// page; with `--browser`, the overview's load time in headless Chromium.
    Ui {
        #[arg(long, default_value_t = 100_000)]
        accounts: usize,
        /// Days of score history.
        #[arg(long, default_value_t = 90)]
        history_days: u32,
        /// Requests per page.
        #[arg(long, default_value_t = 50)]
        requests: usize,
        /// Where to build (and reuse) the data; a temporary directory if none.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
        #[arg(long)]
        browser: bool,
    },
    /// Time training the churn model (the ensemble with its calibration folds) on synthetic
    /// observation rows.
    Train {
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        #[arg(long, default_value_t = 20)]
        features: usize,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

struct Outcome {
    target: String,
    events_per_sec: f64,
    /// Events over the time until processing had caught up with them (in-process targets).
    processed_per_sec: Option<f64>,
    batch_p50_ms: f64,
    batch_p99_ms: f64,
    track_sent: u64,
    track_ok: u64,
    track_p50_ms: f64,
    track_p99_ms: f64,
    /// Events/s over those of `discard`: set in the medians of several rounds, else worked out
    /// from the round's own `discard`.
    ratio: Option<f64>,
    /// CPU time of the whole process (server and load generator) per event of the batch
    /// run, during it, and until processing had caught up with it (in-process targets).
    batch_cpu_us: Option<f64>,
    pipeline_cpu_us: Option<f64>,
    /// The database's size on disk over the events in it (SQLite).
    disk_bytes_per_event: Option<f64>,
}

fn dir_size(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        total += if meta.is_dir() { 0 } else { meta.len() };
    }
    Ok(total)
}

pub async fn run(config: Config, command: BenchCommand) -> Result<()> {
    if let BenchCommand::Train { rows, features, repeat } = command {
        return tokio::task::spawn_blocking(move || train(rows, features, repeat)).await?;
    }
    if let BenchCommand::Connectors { customers, months, rounds, postgres } = command {
        return crate::bench_connectors::run(customers, months, rounds, postgres).await;
    }
    if let BenchCommand::Journeys { runs, rounds, postgres } = command {
        return crate::bench_journeys::run(runs, rounds, postgres).await;
    }
    if let BenchCommand::Ui { accounts, history_days, requests, data_dir, browser } = command {
        return crate::bench_ui::run(accounts.max(10), history_days.max(1), requests, data_dir, browser).await;
    }
    if let BenchCommand::Segments { accounts, people, rate, seconds, full } = command {
        return crate::bench_segments::run(accounts, people, rate.max(1), seconds, full).await;
    }
    if let BenchCommand::Score { accounts, repeat, single, digest } = command {
        let sizes = accounts
            .split(',')
            .map(|s| s.trim().parse::<usize>().with_context(|| format!("--accounts: {s:?} is not a number")))
            .collect::<Result<Vec<_>>>()?;
        return crate::bench_score::run(sizes, repeat, single, digest).await;
    }
    let BenchCommand::Ingest {
        targets,
        postgres_url,
        url,
        write_key,
        concurrency,
        batch,
        seconds,
        rate,
        rate_seconds,
        repeat,
    } = command
    else {
        unreachable!("handled above")
    };
    let mut rounds = Vec::new();
    for round in 1..=repeat.max(1) {
        if repeat > 1 {
            eprintln!("bench: round {round} of {repeat}");
        }
        let outcomes = Box::pin(run_round(
            &config,
            &targets,
            &postgres_url,
            &url,
            &write_key,
            &Load { concurrency, batch, seconds, rate, rate_seconds },
        ))
        .await?;
        print_table(&outcomes, concurrency, batch, rate);
        rounds.push(outcomes);
    }
    if rounds.len() > 1 {
        println!("\nmedians of {} rounds (vs discard: the median of each round's ratio)", rounds.len());
        print_table(&medians(&rounds), concurrency, batch, rate);
    }
    Ok(())
}

/// The median of each figure of each target over the rounds; the ratio to `discard` is the
/// median of the rounds' ratios, kept in `ratio`.
fn medians(rounds: &[Vec<Outcome>]) -> Vec<Outcome> {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let opt_median = |v: Vec<Option<f64>>| {
        let v: Vec<f64> = v.into_iter().flatten().collect();
        (!v.is_empty()).then(|| median(v))
    };
    rounds[0]
        .iter()
        .enumerate()
        .map(|(i, first)| {
            let all: Vec<&Outcome> = rounds.iter().map(|r| &r[i]).collect();
            let pick = |f: &dyn Fn(&Outcome) -> f64| median(all.iter().map(|o| f(o)).collect());
            let pick_opt = |f: &dyn Fn(&Outcome) -> Option<f64>| opt_median(all.iter().map(|o| f(o)).collect());
            let ratio = opt_median(
                rounds
                    .iter()
                    .map(|r| {
                        let base = r.iter().find(|o| o.target == "discard")?.events_per_sec;
                        Some(r[i].events_per_sec / base)
                    })
                    .collect(),
            );
            Outcome {
                target: first.target.clone(),
                events_per_sec: pick(&|o| o.events_per_sec),
                ratio,
                processed_per_sec: pick_opt(&|o| o.processed_per_sec),
                batch_p50_ms: pick(&|o| o.batch_p50_ms),
                batch_p99_ms: pick(&|o| o.batch_p99_ms),
                track_sent: first.track_sent,
                track_ok: pick(&|o| o.track_ok as f64) as u64,
                track_p50_ms: pick(&|o| o.track_p50_ms),
                track_p99_ms: pick(&|o| o.track_p99_ms),
                batch_cpu_us: pick_opt(&|o| o.batch_cpu_us),
                pipeline_cpu_us: pick_opt(&|o| o.pipeline_cpu_us),
                disk_bytes_per_event: pick_opt(&|o| o.disk_bytes_per_event),
            }
        })
        .collect()
}

/// The load each target gets.
struct Load {
    concurrency: usize,
    /// Messages per /v1/batch request.
    batch: usize,
    /// Seconds of /v1/batch load.
    seconds: u64,
    /// Single /v1/track requests per second, and for how many seconds.
    rate: u64,
    rate_seconds: u64,
}

async fn run_round(
    config: &Config,
    targets: &str,
    postgres_url: &Option<String>,
    url: &Option<String>,
    write_key: &Option<String>,
    load: &Load,
) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    if let Some(url) = url {
        let key = write_key.as_deref().context("--url needs --write-key")?;
        let client = Client::with_write_key(url, key);
        let mut outcome = measure(url.clone(), &client, None, load).await?;
        // The server is another process: this one's CPU is the load generator's alone.
        (outcome.batch_cpu_us, outcome.pipeline_cpu_us) = (None, None);
        outcomes.push(outcome);
    } else {
        for target in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let dir = tempfile::tempdir()?;
            let mut cfg =
                Config { listen: "127.0.0.1:0".parse()?, data_dir: dir.path().to_path_buf(), ..config.clone() };
            cfg.database_url = None;
            let discard = match target {
                "discard" => true,
                "sqlite" => false,
                "postgres" => {
                    let url = postgres_url.clone().or_else(|| config.database_url.as_ref().map(|u| u.0.clone()));
                    cfg.database_url = Some(DatabaseUrl(
                        url.context("the postgres target needs --postgres-url or STEWARD_DATABASE_URL")?,
                    ));
                    false
                }
                other => bail!("unknown target {other:?}: expected discard, sqlite or postgres"),
            };
            let running = crate::run::start(&cfg, discard).await?;
            let ws = crate::admin::create_workspace(running.backend.store().as_ref(), "bench").await?;
            let client = Client::with_write_key(&format!("http://{}", running.addr), &ws.write_key);
            eprintln!("bench: {target} ...");
            let log = (!discard).then(|| (running.backend.store(), ws.workspace_id.clone()));
            let mut outcome = measure(target.to_owned(), &client, log, load).await?;
            let stored = running.backend.store().log_status(&ws.workspace_id).await?.total_events;
            running.stop().await;
            if target == "sqlite" && stored > 0 {
                outcome.disk_bytes_per_event = Some(dir_size(dir.path())? as f64 / stored as f64);
            }
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// Batches of distinct track messages, as an SDK would send them, made cheaply: the load
/// generator shares the machine with the server, so its own cost would lower the figures.
/// Each body is one of a few templates (together naming 5,000 users) with the batch's
/// number written into every message id.
struct Batches {
    templates: Vec<(Vec<u8>, Vec<usize>)>,
}

const SEQ_DIGITS: usize = 12;

impl Batches {
    fn new(run: u64, n: usize) -> Batches {
        let variants = 5_000usize.div_ceil(n).max(1);
        let placeholder = "0".repeat(SEQ_DIGITS);
        let templates = (0..variants)
            .map(|v| {
                let messages: Vec<_> = (0..n)
                    .map(|i| {
                        json!({"type": "track", "messageId": format!("bench-{run}-{placeholder}-{i}"),
                               "userId": format!("user-{}", (v * n + i) % 5_000),
                               "event": "Report Created", "properties": {"report_id": i, "format": "pdf", "rows": 1_200},
                               "context": {"groupId": format!("acct-{}", i % 200), "library": {"name": "steward-bench", "version": "1"}},
                               "timestamp": "2026-11-20T10:00:00.000Z"})
                    })
                    .collect();
                let body = json!({"batch": messages, "sentAt": "2026-11-20T10:00:00.000Z"}).to_string().into_bytes();
                let marker = format!("bench-{run}-{placeholder}-");
                let offsets = body
                    .windows(marker.len())
                    .enumerate()
                    .filter(|(_, w)| *w == marker.as_bytes())
                    .map(|(at, _)| at + marker.len() - 1 - SEQ_DIGITS)
                    .collect();
                (body, offsets)
            })
            .collect();
        Batches { templates }
    }

    fn body(&self, seq: u64) -> Bytes {
        let (template, offsets) = &self.templates[seq as usize % self.templates.len()];
        let mut body = template.clone();
        let digits = format!("{seq:0width$}", width = SEQ_DIGITS);
        for &at in offsets {
            body[at..at + SEQ_DIGITS].copy_from_slice(digits.as_bytes());
        }
        Bytes::from(body)
    }
}

async fn measure(
    target: String,
    client: &Client,
    log: Option<(Arc<dyn store::Store>, domain::WorkspaceId)>,
    &Load { concurrency, batch, seconds, rate, rate_seconds }: &Load,
) -> Result<Outcome> {
    let run = domain::random_bytes::<4>().iter().fold(0u64, |a, b| a * 256 + *b as u64);
    // Closed loop: `concurrency` clients each send a batch, wait for the ack, repeat.
    let stored = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let batches = Arc::new(Batches::new(run, batch));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let cpu_at_start = cpu_seconds();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, stored, counter, batches) = (client.clone(), stored.clone(), counter.clone(), batches.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let seq = counter.fetch_add(1, Ordering::Relaxed);
                let body = batches.body(seq);
                let t = Instant::now();
                let (status, reply) = client.post("/v1/batch", body).await?;
                latencies.push(t.elapsed());
                if status != 200 {
                    bail!("batch refused: {status} {}", String::from_utf8_lossy(&reply));
                }
                stored.fetch_add(batch as u64, Ordering::Relaxed);
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let events = stored.load(Ordering::Relaxed) as f64;
    let events_per_sec = events / elapsed;
    let cpu_us_per_event = |since: Option<f64>| Some((cpu_seconds()? - since?) * 1e6 / events);
    let batch_cpu_us = cpu_us_per_event(cpu_at_start);
    let (batch_p50_ms, batch_p99_ms) = percentiles(&mut latencies);

    // Processing runs beside ingest and may fall behind during the burst: how long until it
    // has caught up says what rate the whole pipeline sustains.
    let mut processed_per_sec = None;
    if let Some((store, ws)) = &log {
        let catch_up = Instant::now() + Duration::from_secs(300);
        while store.log_status(ws).await?.pending_events > 0 && Instant::now() < catch_up {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if store.log_status(ws).await?.pending_events == 0 {
            processed_per_sec = Some(stored.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64());
        }
    }
    let pipeline_cpu_us = if log.is_some() { cpu_us_per_event(cpu_at_start) } else { batch_cpu_us };

    // Open loop at a fixed rate: latency is measured from when each request was due, so a
    // slow server cannot hide its queueing by slowing the sender down.
    let (mut track_sent, mut track_ok, mut track_p50_ms, mut track_p99_ms) = (0, 0, 0.0, 0.0);
    if rate > 0 {
        let total = rate * rate_seconds;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let ok = Arc::new(AtomicUsize::new(0));
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = start + interval * i as u32;
            tokio::time::sleep_until(due).await;
            let (client, ok) = (client.clone(), ok.clone());
            tasks.push(tokio::spawn(async move {
                let body = Bytes::from(
                    json!({"messageId": format!("bench-{run}-track-{i}"), "userId": format!("user-{}", i % 5_000), "event": "Signed In",
                           "context": {"groupId": format!("acct-{}", i % 200)}})
                    .to_string(),
                );
                let r = client.post("/v1/track", body).await;
                if matches!(r, Ok((200, _))) {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                due.elapsed()
            }));
        }
        let mut lat = Vec::with_capacity(tasks.len());
        for t in tasks {
            lat.push(t.await?);
        }
        track_sent = total;
        track_ok = ok.load(Ordering::Relaxed) as u64;
        (track_p50_ms, track_p99_ms) = percentiles(&mut lat);
    }
    Ok(Outcome {
        target,
        events_per_sec,
        processed_per_sec,
        batch_p50_ms,
        batch_p99_ms,
        track_sent,
        track_ok,
        track_p50_ms,
        track_p99_ms,
        ratio: None,
        batch_cpu_us,
        pipeline_cpu_us,
        disk_bytes_per_event: None,
    })
}

/// Synthetic observation rows shaped like usage features (counts with heavy tails, a
/// tenure, a few noise columns), with churn depending on a few of them: `rows` by `features`.
fn train(rows: usize, features: usize, repeat: usize) -> Result<()> {
    use intelligence::model::{Ensemble, EnsembleParams, Matrix, metrics};
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut unit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let names: Vec<String> = (0..features).map(|j| format!("f{j}")).collect();
    let mut x = Matrix::new(names);
    let (mut y, mut groups) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for i in 0..rows {
        let row: Vec<f64> = (0..features).map(|_| (-unit().max(1e-12).ln() * 20.0).floor()).collect();
        let activity = row.iter().take(4).sum::<f64>();
        let p = 1.0 / (1.0 + (0.05 * activity - 1.5).exp());
        y.push(unit() < p * 0.3);
        x.push(&row);
        groups.push((i / 6) as u64);
    }
    let mut seconds = Vec::new();
    let mut auc = 0.0;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let model = Ensemble::fit(&x, &y, &groups, &EnsembleParams::default());
        seconds.push(started.elapsed().as_secs_f64());
        let scores: Vec<f64> = (0..x.rows()).map(|i| model.probability(x.row(i))).collect();
        auc = metrics::auc(&scores, &y);
    }
    seconds.sort_by(f64::total_cmp);
    println!(
        "train: {rows} rows x {features} features, {} positives; median {:.2} s (runs {:?}); training AUC {auc:.3}",
        y.iter().filter(|&&v| v).count(),
        seconds[seconds.len() / 2],
        seconds.iter().map(|s| (s * 100.0).round() / 100.0).collect::<Vec<_>>()
    );
    Ok(())
}

/// CPU time this process has used (user and system), from `/proc/self/stat`; `None` where
/// there is no such file. The machine may be shared and noisy: CPU per event is steadier than
/// events per second, and the two bars are set in the latter.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces);
    // utime and stime are the 14th and 15th fields, in clock ticks of 1/100 s.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

fn print_table(outcomes: &[Outcome], concurrency: usize, batch: usize, rate: u64) {
    let baseline = outcomes.iter().find(|o| o.target == "discard").map(|o| o.events_per_sec);
    println!("/v1/batch: {concurrency} concurrent clients x {batch} messages; /v1/track: {rate} requests/s, open loop");
    println!(
        "| target | batch events/s | vs discard | processed events/s | CPU us/event | with processing | batch p50 ms | batch p99 ms | track ok/sent | track p50 ms | track p99 ms | disk bytes/event |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for o in outcomes {
        let ratio =
            o.ratio.or(baseline.map(|b| o.events_per_sec / b)).map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into());
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {:.1} | {:.1} | {}/{} | {:.2} | {:.2} | {} |",
            o.target,
            o.events_per_sec,
            ratio,
            o.processed_per_sec.map(|p| format!("{p:.0}")).unwrap_or_else(|| "-".into()),
            o.batch_cpu_us.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
            o.pipeline_cpu_us.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
            o.batch_p50_ms,
            o.batch_p99_ms,
            o.track_ok,
            o.track_sent,
            o.track_p50_ms,
            o.track_p99_ms,
            o.disk_bytes_per_event.map(|b| format!("{b:.0}")).unwrap_or_else(|| "-".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_valid_and_every_message_id_is_distinct() {
        let batches = Batches::new(7, 300);
        let mut ids = std::collections::HashSet::new();
        for seq in [0, 1, 2, 123_456_789] {
            let parsed =
                capture::parse_batch(&batches.body(seq), chrono::Utc::now(), &capture::Limits::default()).unwrap();
            assert!(parsed.rejected.is_empty());
            assert_eq!(parsed.events.len(), 300);
            for e in parsed.events {
                assert!(e.message_id.contains(&format!("{seq:012}")), "{}", e.message_id);
                assert!(ids.insert(e.message_id), "a message id repeats");
            }
        }
    }
}
