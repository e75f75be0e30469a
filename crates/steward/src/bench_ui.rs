//! `steward bench ui`: the dashboard's server time per page with a large portfolio. Builds
//! (or reuses) a data directory of scored accounts with their people, usage, subscriptions,
//! tickets, score history, alerts, tasks, segments and journeys, starts the server in this
//! process, signs in as an operator and requests each page many times, reporting p50, p95
//! and max per page as the client on the same machine saw them; then, with `--browser`, the
//! overview's load time in headless Chromium (navigation timing, `tests/sdk/overview_load.mjs`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{Days, NaiveDate, Utc};
use domain::{Currency, KeyRole, WorkspaceId};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;
use store::{AccountScore, HealthBand, JsonText, Store};

use crate::config::Config;

const EMAIL: &str = "bench@steward.example";
const PASSWORD: &str = "bench-password-ui";
const PLANS: [(&str, i64); 4] = [("starter", 4_900), ("team", 19_900), ("business", 79_900), ("enterprise", 299_900)];
const KEY_EVENTS: [&str; 4] = ["Report Created", "Dashboard Viewed", "Export Run", "Invite Sent"];
const WORDS: [&str; 16] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Gringotts",
    "Oceanic",
    "Massive",
    "Dynamic",
];
const KINDS: [&str; 8] = ["Labs", "Systems", "Analytics", "Health", "Logistics", "Media", "Foods", "Capital"];

/// What a built data directory holds, written beside it so a later run reuses it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Built {
    workspace_id: String,
    admin_key: String,
    accounts: usize,
    history_days: u32,
    day: NaiveDate,
}

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

fn account_id(i: usize) -> String {
    format!("acct_{i:06}")
}

/// The import files of a portfolio of `n` accounts as of `today`: accounts with a plan and
/// an owner, two or three people each, 90 days of key events (some accounts fading), billing
/// periods over up to two years (expansions, contractions, cancellations) and tickets.
fn write_files(dir: &Path, n: usize, today: NaiveDate) -> Result<()> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let file = |name: &str| -> Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(std::fs::File::create(dir.join(name))?))
    };
    let (mut accounts, mut people, mut subs, mut events, mut tickets) = (
        file("accounts.csv")?,
        file("people.csv")?,
        file("subscriptions.csv")?,
        file("events.csv")?,
        file("tickets.csv")?,
    );
    writeln!(accounts, "account_id,name,plan,csm_email,csm_name,region")?;
    writeln!(people, "user_id,account_id,email,name,created_at")?;
    writeln!(subs, "subscription_id,account_id,start_date,end_date,mrr,quantity,product,status")?;
    writeln!(events, "event_time,event_type,user_id,account_id")?;
    writeln!(tickets, "ticket_id,account_id,opened_at,status,priority,subject,resolved_at,csat")?;
    for i in 0..n {
        let id = account_id(i);
        let (plan, price) = PLANS[[0, 0, 0, 1, 1, 1, 2, 2, 3][rng.below(9)]];
        let csm = rng.below(20);
        let name = format!("{} {} {i}", WORDS[rng.below(WORDS.len())], KINDS[rng.below(KINDS.len())]);
        let region = ["EMEA", "NA", "APAC", "LATAM"][rng.below(4)];
        writeln!(accounts, "{id},{name},{plan},csm{csm}@vendor.example,CSM {csm},{region}")?;
        let age = 20 + rng.below(700) as u64;
        let start = today - Days::new(age);
        let users = 2 + rng.below(2);
        for u in 0..users {
            writeln!(
                people,
                "u{i}_{u},{id},u{i}_{u}@{}.example,Person {i} {u},{start}T09:00:00Z",
                id.replace('_', "-")
            )?;
        }
        // Billing: a first period; for some a change of seats (expansion or contraction);
        // for some an end.
        let seats = 1 + rng.below(10) as i64;
        let churned = rng.unit() < 0.12 && age > 60;
        let change = (rng.unit() < 0.3 && age > 90).then(|| {
            (
                start + Days::new(30 + rng.below(age as usize - 60) as u64),
                if rng.unit() < 0.7 { seats + 1 + rng.below(5) as i64 } else { (seats - 1).max(1) },
            )
        });
        let end = churned.then(|| today - Days::new(1 + rng.below((age as usize - 30).min(400)) as u64));
        let mut periods = vec![(start, change.map(|c| c.0).or(end), seats)];
        if let Some((at, seats2)) = change
            && end.is_none_or(|e| e > at)
        {
            periods.push((at, end, seats2));
        } else if change.is_some() {
            periods[0].1 = end;
        }
        for (k, (from, to, seats)) in periods.iter().enumerate() {
            let status = if to.is_some_and(|t| t <= today) { "canceled" } else { "active" };
            let to = to.map(|t| t.to_string()).unwrap_or_default();
            writeln!(
                subs,
                "sub_{i}_{k},{id},{from},{to},{:.2},{seats},{plan},{status}",
                (price * seats) as f64 / 100.0
            )?;
        }
        // Usage over the last 90 days: a rate per account, fading for some.
        let rate = rng.unit() * 1.2;
        let fading = rng.unit() < 0.2;
        for d in 0..90u64.min(age) {
            let level = if fading && d < 45 { rate * 0.15 } else { rate };
            let mut count = level * rng.unit() * 2.0;
            while count >= 1.0 || rng.unit() < count {
                count -= 1.0;
                let day = today - Days::new(d + 1);
                let (h, m) = (8 + rng.below(10), rng.below(60));
                let ev = KEY_EVENTS[rng.below(KEY_EVENTS.len())];
                writeln!(events, "{day}T{h:02}:{m:02}:00Z,{ev},u{i}_{},{id}", rng.below(users))?;
                if count < 0.0 {
                    break;
                }
            }
        }
        if rng.unit() < 0.15 {
            let opened = today - Days::new(1 + rng.below(60) as u64);
            let solved = rng.unit() < 0.7;
            let (status, resolved, csat) = if solved {
                ("solved", format!("{}T12:00:00Z", opened + Days::new(1)), (1 + rng.below(5)).to_string())
            } else {
                ("open", String::new(), String::new())
            };
            let priority = ["low", "normal", "high", "urgent"][rng.below(4)];
            writeln!(tickets, "t_{i},{id},{opened}T10:00:00Z,{status},{priority},Question {i},{resolved},{csat}")?;
        }
    }
    for mut f in [accounts, people, subs, events, tickets] {
        f.flush()?;
    }
    Ok(())
}

fn config_for(dir: &Path) -> Config {
    let mut config =
        Config { data_dir: dir.to_owned(), listen: "127.0.0.1:0".parse().expect("an address"), ..Default::default() };
    // Nothing runs in the background while pages are timed: the data are built before.
    config.scoring.enabled = false;
    config.segments.recompute_minutes = 24 * 60;
    config
}

/// Builds the portfolio into `dir`: imports, one real scoring run (explanations and alerts),
/// a score history drawn back from it, tasks, an operator; segments and journeys are saved
/// through the API once the server runs.
async fn build(dir: &Path, n: usize, history_days: u32) -> Result<Built> {
    let today = Utc::now().date_naive();
    let files = dir.join("bench-files");
    std::fs::create_dir_all(&files)?;
    let t = Instant::now();
    write_files(&files, n, today)?;
    println!("files for {n} accounts written in {:.1} s", t.elapsed().as_secs_f64());
    let backend = crate::run::Backend::open(&config_for(dir)).await?;
    let store = backend.store();
    let created = crate::admin::create_workspace(store.as_ref(), "Bench portfolio").await?;
    let ws = created.workspace_id.clone();
    let usd = Currency::parse("USD")?;
    for (kind, name) in [
        (crate::import::Kind::Accounts, "accounts.csv"),
        (crate::import::Kind::People, "people.csv"),
        (crate::import::Kind::Subscriptions, "subscriptions.csv"),
        (crate::import::Kind::Events, "events.csv"),
        (crate::import::Kind::Tickets, "tickets.csv"),
    ] {
        let t = Instant::now();
        let options = crate::import::Options {
            kind,
            file: files.join(name),
            columns: Vec::new(),
            user_scope: crate::import::UserScope::Workspace,
            currency: usd,
        };
        let imported = crate::import::import(store.clone(), &ws, &options).await?;
        println!("{name}: {} rows imported in {:.1} s", imported.rows, t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let (run, _) = scoring::score_workspace(store.as_ref(), &ws, today, Utc::now()).await?;
    println!("scored: {run:?} in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    history(store.as_ref(), &ws, today, history_days).await?;
    println!("{history_days} days of score history written in {:.1} s", t.elapsed().as_secs_f64());
    tasks(store.as_ref(), &ws, n).await?;
    crate::admin::add_operator(store.as_ref(), &ws, EMAIL, "Bench Operator", KeyRole::Admin, PASSWORD).await?;
    backend.close().await;
    Ok(Built {
        workspace_id: created.workspace_id.to_string(),
        admin_key: created.admin_key,
        accounts: n,
        history_days,
        day: today,
    })
}

/// Each account's earlier days, drawn back from its latest score: health wanders by a few
/// points a day (more for accounts at risk now, which fell), MRR as it is.
async fn history(store: &dyn Store, ws: &WorkspaceId, today: NaiveDate, days: u32) -> Result<()> {
    let latest = store.score_points_as_of(ws, today).await?;
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut health: Vec<f64> = latest.iter().map(|(_, s)| s.health).collect();
    for d in 1..days {
        let day = today - Days::new(u64::from(d));
        let mut points = Vec::with_capacity(latest.len());
        for ((id, s), h) in latest.iter().zip(health.iter_mut()) {
            let drift = if s.band == HealthBand::AtRisk { 1.2 } else { 0.0 };
            *h = (*h + drift + (rng.unit() - 0.5) * 4.0).clamp(0.0, 100.0);
            let band = if *h >= 70.0 {
                HealthBand::Healthy
            } else if *h < 40.0 {
                HealthBand::AtRisk
            } else {
                HealthBand::Neutral
            };
            points.push(AccountScore {
                account_id: id.clone(),
                day,
                health: (*h * 10.0).round() / 10.0,
                band,
                churn_30d: s.churn_30d,
                churn_60d: s.churn_60d,
                churn_90d: s.churn_90d,
                expansion: s.expansion,
                mrr: s.mrr,
                components: s.components.clone(),
                explanation: JsonText::new("{}".into()),
                scored_at: Utc::now(),
            });
        }
        store.put_scores(ws, &points).await?;
    }
    Ok(())
}

async fn tasks(store: &dyn Store, ws: &WorkspaceId, n: usize) -> Result<()> {
    let now = Utc::now();
    for i in (0..n).step_by(40) {
        let open = i % 200 != 0;
        store
            .insert_task(
                ws,
                &store::Task {
                    task_id: format!("task_{i:06}"),
                    title: format!("Call {} about their renewal", account_id(i)),
                    body: None,
                    assignee: if i % 3 == 0 { EMAIL.into() } else { "csm".into() },
                    priority: ["low", "normal", "high"][i % 3].into(),
                    due_at: Some(now + chrono::Duration::days((i % 14) as i64)),
                    status: if open { store::TaskStatus::Open } else { store::TaskStatus::Done },
                    account_id: Some(account_id(i)),
                    person_id: None,
                    journey_id: None,
                    run_id: None,
                    created_at: now - chrono::Duration::days((i % 30) as i64),
                    updated_at: now,
                    closed_by: None,
                },
            )
            .await?;
    }
    Ok(())
}

/// A client that keeps the dashboard's cookies.
struct Browser {
    inner: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        Browser {
            inner: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
            base: base.to_owned(),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, method: hyper::Method, path: &str, form: Option<String>) -> Result<(u16, String, String)> {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut req =
            hyper::Request::builder().method(method).uri(format!("{}{path}", self.base)).header("cookie", cookie);
        if form.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        let resp = self.inner.request(req.body(Full::new(Bytes::from(form.unwrap_or_default())))?).await?;
        for set in resp.headers().get_all("set-cookie") {
            if let Some((k, v)) = set.to_str().ok().and_then(|s| s.split(';').next()).and_then(|c| c.split_once('=')) {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
        Ok((status, location, body))
    }

    async fn sign_in(&mut self) -> Result<()> {
        let (_, _, form) = self.send(hyper::Method::GET, "/login", None).await?;
        let mut fields = vec![("email", EMAIL.to_owned()), ("password", PASSWORD.to_owned())];
        if let Some(token) = hidden(&form, "csrf") {
            fields.push(("csrf", token));
        }
        let body = serde_urlencoded::to_string(&fields)?;
        let (status, location, page) = self.send(hyper::Method::POST, "/login", Some(body)).await?;
        if status != 303 || location != "/overview" {
            bail!("signing in answered {status} {location}: {page}");
        }
        Ok(())
    }
}

/// The value of a hidden form field of `html`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
    Some(html[at..].split('"').next()?.to_owned())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

/// Machine load as `uptime` shows it.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub async fn run(
    accounts: usize,
    history_days: u32,
    requests: usize,
    data_dir: Option<PathBuf>,
    browser: bool,
) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = data_dir.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let marker = dir.join("bench-ui.json");
    let built: Built = match std::fs::read(&marker) {
        Ok(bytes) => {
            let built: Built = serde_json::from_slice(&bytes).context("bench-ui.json")?;
            println!(
                "reusing {}: {} accounts, {} days of history, built on {}",
                dir.display(),
                built.accounts,
                built.history_days,
                built.day
            );
            built
        }
        Err(_) => {
            let t = Instant::now();
            let built = build(&dir, accounts, history_days).await?;
            std::fs::write(&marker, serde_json::to_vec(&built)?)?;
            println!("built in {:.0} s", t.elapsed().as_secs_f64());
            built
        }
    };
    let running = crate::run::start(&config_for(&dir), false).await?;
    let base = format!("http://{}", running.addr);
    let result = measure(&running, &base, &built, requests, browser).await;
    running.stop().await;
    result
}

async fn measure(
    running: &crate::run::Running,
    base: &str,
    built: &Built,
    requests: usize,
    browser: bool,
) -> Result<()> {
    let store = running.backend.store();
    let ws = WorkspaceId::parse(&built.workspace_id)?;
    let api = crate::playbooks::Api::Http(crate::client::Client::with_api_key(base, &built.admin_key));
    if store.list_journeys(&ws).await?.is_empty() {
        let t = Instant::now();
        let installed = crate::playbooks::install(&api, &crate::playbooks::shipped()?, false).await?;
        println!("playbooks installed in {:.1} s: {}", t.elapsed().as_secs_f64(), installed.summary(false));
        for (name, condition) in [
            ("Enterprise at risk", "plan == \"enterprise\" and band == \"at_risk\""),
            ("Quiet for two weeks", "days_since(last_seen) > 14"),
        ] {
            let body = json!({"name": name, "kind": "accounts", "condition": condition});
            api.ok(hyper::Method::POST, "/api/v1/segments", Some(&body)).await?;
        }
    }
    let segments = store.list_segments(&ws).await?;
    let journeys = store.list_journeys(&ws).await?;
    let segment = segments.iter().find(|s| s.name == "Quiet for two weeks").map(|s| s.segment_id.clone());
    // A deep page: the cursor after half the accounts in the default order.
    let half = store
        .query_accounts(&ws, &store::AccountQuery::default(), &store::PageRequest::first(built.accounts / 2))
        .await?
        .next
        .map(|c| c.encode());
    let mut pages: Vec<(String, String)> = vec![
        ("overview".into(), "/overview".into()),
        ("accounts".into(), "/accounts".into()),
        ("accounts, at risk".into(), "/accounts?band=at_risk".into()),
        ("accounts, churn risk ≥ 50%".into(), "/accounts?risk=50".into()),
        ("accounts, searched".into(), "/accounts?q=Globex".into()),
        ("accounts, by MRR".into(), "/accounts?sort=mrr&order=desc".into()),
        ("accounts, by health".into(), "/accounts?sort=health".into()),
        ("accounts, plan and owner".into(), "/accounts?plan=enterprise&owner=csm3%40vendor.example".into()),
    ];
    if let Some(cursor) = half {
        pages.push(("accounts, page 1,001".into(), format!("/accounts?after={cursor}")));
    }
    if let Some(id) = segment {
        pages.push(("accounts, in a segment".into(), format!("/accounts?segment={id}")));
    }
    for i in [0, built.accounts / 3, built.accounts / 2, built.accounts - 1] {
        pages.push((format!("account {}", account_id(i)), format!("/accounts/{}", account_id(i))));
    }
    pages.extend([
        ("alerts".to_owned(), "/alerts".to_owned()),
        ("alerts, open".to_owned(), "/alerts?status=open".to_owned()),
        ("tasks".to_owned(), "/tasks".to_owned()),
        ("segments".to_owned(), "/segments".to_owned()),
        ("journeys".to_owned(), "/journeys".to_owned()),
    ]);
    if let Some(j) = journeys.first() {
        pages.push((format!("journey {}", j.name), format!("/journeys/{}", j.journey_id)));
    }
    pages.extend([("models".to_owned(), "/models".to_owned()), ("settings".to_owned(), "/settings".to_owned())]);

    let mut client = Browser::new(base);
    client.sign_in().await?;
    println!(
        "\n{} accounts, {} days of score history; {requests} requests per page, one at a time; load {}\n",
        built.accounts,
        built.history_days,
        load()
    );
    println!("| page | first (ms) | p50 (ms) | p95 (ms) | max (ms) | bytes |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut worst: f64 = 0.0;
    for (name, path) in &pages {
        let mut times = Vec::with_capacity(requests);
        let mut first = 0.0;
        let mut bytes = 0;
        for i in 0..requests.max(1) {
            let t = Instant::now();
            let (status, _, body) = client.send(hyper::Method::GET, path, None).await?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if status != 200 {
                bail!("{path} answered {status}: {}", &body[..body.len().min(500)]);
            }
            if i == 0 {
                first = ms;
            }
            bytes = body.len();
            times.push(ms);
        }
        times.sort_by(f64::total_cmp);
        let p95 = quantile(&times, 0.95);
        worst = worst.max(p95);
        println!(
            "| {name} | {first:.1} | {:.1} | {p95:.1} | {:.1} | {bytes} |",
            quantile(&times, 0.5),
            times.last().copied().unwrap_or_default()
        );
    }
    println!("\nworst p95: {worst:.1} ms (bar: 100 ms); load {}", load());
    segment_editor(&crate::client::Client::with_api_key(base, &built.admin_key), requests).await?;
    if browser {
        overview_in_browser(base)?;
    }
    Ok(())
}

/// What the segment editor waits for as a condition is typed: its check and preview
/// (`POST /api/v1/segments/preview`, what the editor's own route calls), for a condition
/// with a mistake, one on the account's record alone, one on traits and scores, and one
/// that counts events.
async fn segment_editor(api: &crate::client::Client, requests: usize) -> Result<()> {
    let conditions = [
        ("a mistake", "plan ==", 400),
        ("the account alone", "days_since(last_seen) > 14", 200),
        ("traits and scores", "plan == \"enterprise\" and band == \"at_risk\"", 200),
        ("events counted", "count(event \"Report Created\", 28d) < 2", 200),
    ];
    println!("\nThe segment editor, {} previews each:\n", requests.min(10));
    println!("| condition | p50 (ms) | p95 (ms) | max (ms) | members |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, condition, expected) in conditions {
        let body = Bytes::from(json!({"kind": "accounts", "condition": condition}).to_string());
        let mut times = Vec::new();
        let mut members = String::new();
        for _ in 0..requests.clamp(1, 10) {
            let t = Instant::now();
            let (status, reply) =
                api.request(hyper::Method::POST, "/api/v1/segments/preview", Some(body.clone())).await?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if status != expected {
                bail!("a preview of {condition} answered {status}: {}", String::from_utf8_lossy(&reply));
            }
            let v: serde_json::Value = serde_json::from_slice(&reply)?;
            members = v.get("size").map_or("-".into(), |n| n.to_string());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {members} |",
            quantile(&times, 0.5),
            quantile(&times, 0.95),
            times.last().copied().unwrap_or_default()
        );
    }
    Ok(())
}

/// The overview's load time in headless Chromium, by `tests/sdk/overview_load.mjs` (beside
/// the playwright-core that `scripts/test` installs).
fn overview_in_browser(base: &str) -> Result<()> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/overview_load.mjs");
    let out = std::process::Command::new("node")
        .arg(&script)
        .args([base, EMAIL, PASSWORD, "20"])
        .output()
        .context("running node (scripts/test installs playwright-core and Chromium)")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
