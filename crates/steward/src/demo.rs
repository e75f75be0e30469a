//! `steward demo`: a server with a fresh workspace filled with a simulated B2B SaaS company's
//! customers, sent through the real capture endpoint.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use hyper::body::Bytes;
use simulator::{SimConfig, Simulation};

use crate::client::Client;
use crate::config::Config;

/// The demo's operator.
pub const DEMO_EMAIL: &str = "admin@demo.steward";

pub async fn run(mut config: Config, seed: u64, accounts: usize, days: u32, no_serve: bool) -> Result<()> {
    if config.database_url.is_none() && !std::env::args().any(|a| a == "--data-dir") {
        // A fresh directory: a demo never mixes with real data.
        config.data_dir = std::env::temp_dir().join(format!("steward-demo-{}", domain::random_token(8).to_lowercase()));
    }
    let running = crate::run::start(&config, false).await?;
    let base = format!("http://{}", running.addr);
    let ws = crate::admin::create_workspace(running.backend.store().as_ref(), "Demo: Acme Analytics").await?;
    // An admin who signs in to the dashboard, with a password made for this demo.
    let password = domain::random_token(16);
    crate::admin::add_operator(
        running.backend.store().as_ref(),
        &ws.workspace_id,
        DEMO_EMAIL,
        "Demo Admin",
        domain::KeyRole::Admin,
        &password,
    )
    .await?;
    println!("Filling a demo workspace with {accounts} simulated accounts over {days} days (seed {seed})...");

    let started = Instant::now();
    let sim = Simulation::new(SimConfig { seed, accounts, days, end: Utc::now() });
    let client = Client::with_write_key(&base, &ws.write_key);
    let mut sent = 0usize;
    for batch in sim.batches(2_000) {
        let n = batch["batch"].as_array().map_or(0, Vec::len);
        let body = Bytes::from(serde_json::to_vec(&batch)?);
        let (status, reply) = client.post("/v1/batch", body).await.context("sending a demo batch")?;
        if status != 200 {
            bail!("the server refused a demo batch: {status} {}", String::from_utf8_lossy(&reply));
        }
        sent += n;
    }
    let store = running.backend.store();
    loop {
        let status = store.log_status(&ws.workspace_id).await?;
        if status.pending_events == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("Sent and processed {sent} events in {secs:.1} s ({:.0} events/s).", sent as f64 / secs);
    let periods = billing(store.as_ref(), &ws.workspace_id, &sim).await?;
    println!("Stored {periods} billing periods (plans, seats, MRR, cancellations).");
    let tickets = support(store.as_ref(), &ws.workspace_id, &sim).await?;
    println!("Stored {tickets} support tickets (priorities, response and resolution times, CSAT).");
    let trained = running.scoring.train(&ws.workspace_id).await?;
    for t in &trained {
        println!("Trained the {} model: {} ({}).", t.kind.as_str(), t.status.as_str(), t.reason);
    }
    // The days before today, each as it was then, so that trends have their history; then
    // today, which alone opens alerts and moves the bands journeys start from.
    let started = Instant::now();
    let today = Utc::now().date_naive();
    let from = today - chrono::Days::new(u64::from(days.min(HISTORY_DAYS)));
    let past = scoring::score_past_days(store.as_ref(), &ws.workspace_id, from, today, Utc::now()).await?;
    println!(
        "Scored the {} days before today as they were then: {} daily scores for the trends, in {:.1} s.",
        (today - from).num_days(),
        past.scores,
        started.elapsed().as_secs_f64()
    );
    let run = running.scoring.score(&ws.workspace_id).await?;
    let at_risk = store
        .query_accounts(
            &ws.workspace_id,
            &store::AccountQuery { band: Some(store::HealthBand::AtRisk), ..Default::default() },
            &store::PageRequest::first(store::MAX_LIMIT),
        )
        .await?
        .items
        .len();
    // The server's own schedule may have scored first: count what is open, not what this run opened.
    let open_alerts = run.alerts.opened + run.alerts.updated;
    println!("Scored {} accounts: {at_risk} at risk; {open_alerts} open alerts.", run.accounts);
    let mut saved = Vec::new();
    for (name, condition) in SEGMENTS {
        let d = membership::Definition {
            name: name.into(),
            kind: store::SubjectKind::Accounts,
            condition: condition.into(),
            description: None,
        };
        let s = running
            .membership
            .create(&ws.workspace_id, &d, Utc::now())
            .await
            .with_context(|| format!("segment {name:?}"))?;
        saved.push(format!("{name} ({})", s.size));
    }
    println!("Saved {} segments: {}.", saved.len(), saved.join(", "));
    playbooks(&running, &base, &ws).await?;
    println!();
    if no_serve {
        println!("Steward demo data is ready; `steward serve --data-dir DIR` serves it (DIR as below)");
    } else {
        println!("Steward demo is running at {base}");
    }
    println!("  data:          {}", running.backend.describe(&config));
    println!("  workspace:     {}", ws.workspace_id);
    println!("  write key:     {}   (for the Segment/RudderStack SDKs: host {base})", ws.write_key);
    println!("  admin key:     {}", ws.admin_key);
    println!("  dashboard:     {base}/login   email {DEMO_EMAIL}   password {password}");
    println!();
    println!("Try:");
    println!("  curl -s -H 'Authorization: Bearer {}' '{base}/api/v1/accounts?limit=5'", ws.admin_key);
    println!(
        "  curl -s -H 'Authorization: Bearer {}' '{base}/api/v1/accounts/acct_0001/timeline?limit=5'",
        ws.admin_key
    );
    println!("  curl -s -H 'Authorization: Bearer {}' '{base}/api/v1/accounts?sort=churn_risk&limit=5'", ws.admin_key);
    println!("  curl -s -H 'Authorization: Bearer {}' '{base}/api/v1/alerts?unresolved=true&limit=5'", ws.admin_key);
    println!("  curl -s -H 'Authorization: Bearer {}' '{base}/api/v1/segments'", ws.admin_key);
    println!("  curl -s -H 'Authorization: Bearer {}' '{base}/api/v1/journeys'", ws.admin_key);
    println!("  curl -s -H 'Authorization: Bearer {}' '{base}/api/v1/tasks?status=open&limit=5'", ws.admin_key);
    println!("  curl -s -u '{}:' {base}/v1/track -d '{{\"userId\":\"u1\",\"event\":\"Tried Steward\"}}'", ws.write_key);
    if no_serve {
        running.stop().await;
        return Ok(());
    }
    println!();
    println!("Press Ctrl-C to stop.");
    crate::run::wait_for_signal().await;
    running.stop().await;
    Ok(())
}

/// Installs the playbooks that ship with Steward, enabled, with a sender for their emails,
/// and starts the runs of the accounts already in their segments.
async fn playbooks(running: &crate::run::Running, base: &str, ws: &crate::admin::NewWorkspace) -> Result<()> {
    let client = Client::with_api_key(base, &ws.admin_key);
    let api = crate::playbooks::Api::Http(client.clone());
    let sender =
        serde_json::json!({"email_from": {"name": "Acme Analytics CS", "address": "cs@acme-analytics.example"}});
    let path = "/api/v1/settings/messaging";
    let (status, reply) = client.request(hyper::Method::PUT, path, Some(Bytes::from(sender.to_string()))).await?;
    if status != 200 {
        bail!("the server refused the demo's sender: {status} {}", String::from_utf8_lossy(&reply));
    }
    let installed = crate::playbooks::install(&api, &crate::playbooks::shipped()?, true).await?;
    // The server's runner ticks on its own; this tick makes the first runs' steps now.
    running.runner.tick(&ws.workspace_id, Utc::now()).await?;
    let store = running.backend.store();
    let journeys = store.list_journeys(&ws.workspace_id).await?;
    let (mut runs, mut waiting) = (0, 0);
    for j in &journeys {
        let stats = store.journey_stats(&ws.workspace_id, &j.journey_id).await?;
        runs += stats.entered;
        waiting += stats.active;
    }
    println!(
        "Installed the playbooks: {} journeys enabled, {} segments, {} email templates; {runs} runs started ({waiting} waiting for their next step).",
        journeys.iter().filter(|j| j.enabled).count(),
        installed.segments.created + installed.segments.existed,
        installed.templates.created + installed.templates.existed,
    );
    Ok(())
}

/// Days before today the demo scores point-in-time: the dashboard's trends span 90 days.
const HISTORY_DAYS: u32 = 90;

/// The segments a CS team starts with, over the simulated product's events.
const SEGMENTS: [(&str, &str); 6] = [
    ("At risk and paying", "band == \"at_risk\" and mrr > 0"),
    ("Big accounts at risk", "in segment \"At risk and paying\" and mrr >= 500"),
    ("Gone quiet", "days_since(last_seen) > 14 and mrr > 0"),
    ("Active, no reports", "active_days(28d) >= 4 and count(event \"Report Created\", 28d) == 0"),
    ("New, no project yet", "days_since(signup) <= 30 and last(event \"Project Created\") is not set"),
    ("Ready to expand", "expansion >= 0.5 or (seats > 0 and active_users >= seats)"),
];

/// The simulated customers' billing history, as a billing connector would store it.
/// Contracts are yearly: a running subscription's current period ends on the next
/// anniversary of its start.
async fn billing(store: &dyn store::Store, ws: &domain::WorkspaceId, sim: &Simulation) -> Result<usize> {
    let usd = domain::Currency::parse("USD")?;
    let now = Utc::now();
    let next_anniversary = |start: chrono::DateTime<Utc>| {
        (1..).map_while(|years| start.checked_add_months(chrono::Months::new(12 * years))).find(|t| *t > now)
    };
    let periods = sim.billing();
    for p in &periods {
        // A period that ended was cancelled or replaced by the next (an upgrade, a change of seats).
        let status =
            if p.end.is_none() { store::SubscriptionStatus::Active } else { store::SubscriptionStatus::Canceled };
        let sub = store::Subscription {
            subscription_id: p.subscription_id.clone(),
            account_id: domain::AccountId::parse(&p.account_id)?,
            plan: Some(p.plan.clone()),
            status,
            mrr: domain::Money::new(p.mrr_cents, usd),
            quantity: i64::from(p.seats),
            started_at: p.start,
            ended_at: p.end,
            current_period_end: if p.end.is_none() { next_anniversary(p.start) } else { p.end },
            cancel_at_period_end: false,
            updated_at: p.end.unwrap_or(p.start),
            attributes: serde_json::json!({"source": "demo"}),
        };
        store.upsert_subscription(ws, &sub).await?;
    }
    Ok(periods.len())
}

/// The simulated customers' support tickets, as a help desk connector would store them, each
/// linked to the person who asked.
async fn support(store: &dyn store::Store, ws: &domain::WorkspaceId, sim: &Simulation) -> Result<usize> {
    let tickets = sim.tickets();
    let mut keys: Vec<domain::IdentityKey> =
        tickets.iter().map(|t| domain::IdentityKey::user(t.requester.as_str())).collect();
    keys.sort();
    keys.dedup();
    let people: std::collections::HashMap<domain::IdentityKey, String> =
        store.load_identities(ws, &keys).await?.into_iter().map(|(k, p)| (k, p.person_id)).collect();
    for t in &tickets {
        let status = match (t.first_response_at, t.resolved_at) {
            (_, Some(_)) => store::TicketStatus::Solved,
            (Some(_), None) => store::TicketStatus::Pending,
            (None, None) => store::TicketStatus::New,
        };
        let ticket = store::Ticket {
            ticket_id: t.ticket_id.clone(),
            account_id: Some(domain::AccountId::parse(&t.account_id)?),
            person_id: people.get(&domain::IdentityKey::user(t.requester.as_str())).cloned(),
            subject: t.subject.clone(),
            status,
            priority: t.priority.parse().map_err(anyhow::Error::msg)?,
            opened_at: t.opened_at,
            first_response_at: t.first_response_at,
            resolved_at: t.resolved_at,
            csat: t.csat.map(i16::from),
            updated_at: t.resolved_at.or(t.first_response_at).unwrap_or(t.opened_at),
            attributes: serde_json::json!({"source": "demo", "requester_email": t.requester_email}),
        };
        store.upsert_ticket(ws, &ticket).await?;
    }
    Ok(tickets.len())
}
