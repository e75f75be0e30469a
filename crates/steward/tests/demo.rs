//! `steward demo`: a small simulated company, loaded and scored by the real binary, shows
//! every part of account intelligence through the API: health from all five components,
//! forecasts with drivers, alerts of several kinds, and model cards; and the playbooks that
//! ship with Steward, enabled, with their runs writing emails and tasks.

mod common;

use std::collections::HashSet;

use common::{Http, Server, demo, printed};

#[tokio::test]
async fn the_demo_shows_health_forecasts_alerts_and_models_from_every_kind_of_data() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = demo(dir.path(), 60, 120, 7);
    let admin = printed(&stdout, "admin key:").to_owned();
    let tickets: usize = stdout.split("Stored ").nth(2).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    assert!(tickets > 60, "{stdout}");
    past_days_are_history_alone(dir.path(), printed(&stdout, "workspace:")).await;

    let server = Server::start(dir.path()).await;
    let http = Http::new();
    let get = |path: String| {
        let (http, base, admin) = (http.clone(), server.base.clone(), admin.clone());
        async move {
            let (status, body) = http.get(&format!("{base}{path}"), Some(&admin)).await.expect("the API answers");
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };

    let accounts = get("/api/v1/accounts?sort=health&order=asc&limit=100".into()).await;
    let accounts = accounts["data"].as_array().unwrap();
    assert_eq!(accounts.len(), 60);
    assert!(accounts.iter().all(|a| a["score"]["health"].is_number()), "every account is scored");
    let bands: HashSet<&str> = accounts.iter().filter_map(|a| a["score"]["band"].as_str()).collect();
    assert_eq!(bands.len(), 3, "healthy, neutral and at-risk accounts: {bands:?}");

    // Support, money and relationship data reach the health of the accounts that have them.
    let (mut components, mut with_tickets) = (HashSet::new(), 0);
    for a in accounts {
        let id = a["account_id"].as_str().unwrap();
        let health = get(format!("/api/v1/accounts/{id}/health")).await;
        let points: f64 = health["components"].as_array().unwrap().iter().map(|c| c["points"].as_f64().unwrap()).sum();
        assert!((points - health["score"].as_f64().unwrap()).abs() < 1e-6, "{id}: the components add up to the score");
        for c in health["components"].as_array().unwrap() {
            components.insert(c["component"].as_str().unwrap().to_owned());
        }
        with_tickets += usize::from(health["signals"]["tickets_28d"].as_u64().unwrap_or(0) > 0);
    }
    let all: HashSet<String> =
        ["usage", "engagement", "support", "financial", "relationship"].map(String::from).into_iter().collect();
    assert_eq!(components, all);
    assert!(with_tickets > 10, "{with_tickets} accounts wrote in over the last 28 days");

    // Each account's health has its history from the days before today, day by day.
    let oldest = accounts.iter().find(|a| a["account_id"] == "acct_0001").unwrap_or(&accounts[0]);
    let id = oldest["account_id"].as_str().unwrap();
    let health = get(format!("/api/v1/accounts/{id}/health")).await;
    let days = health["history"].as_array().unwrap();
    assert!(days.len() >= 60, "{id}: {} days of history", days.len());
    let distinct: HashSet<String> = days.iter().map(|p| p["score"].to_string()).collect();
    assert!(distinct.len() > 5, "the score moved over the days: {distinct:?}");

    let riskiest = get("/api/v1/accounts?sort=churn_risk&order=desc&limit=1".into()).await;
    let worst = riskiest["data"][0]["account_id"].as_str().unwrap();
    let predictions = get(format!("/api/v1/accounts/{worst}/predictions")).await;
    let horizons: Vec<u64> =
        predictions["churn"].as_array().unwrap().iter().map(|c| c["horizon_days"].as_u64().unwrap()).collect();
    assert_eq!(horizons, [30, 60, 90]);
    for c in predictions["churn"].as_array().unwrap() {
        let p = c["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{c}");
        assert!(!c["drivers"].as_array().unwrap().is_empty(), "a forecast names its drivers: {c}");
    }
    assert!(predictions["expansion"]["probability"].is_number(), "{predictions}");

    let alerts = get("/api/v1/alerts?unresolved=true&limit=500".into()).await;
    let reasons: HashSet<(&str, &str)> = alerts["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["reason"].as_str().unwrap()))
        .collect();
    for expected in [("risk", "payment_failed"), ("risk", "churn_risk"), ("opportunity", "seats_nearly_full")] {
        assert!(reasons.contains(&expected), "no {expected:?} alert in {reasons:?}");
    }
    assert!(reasons.len() >= 4, "{reasons:?}");

    let models = get("/api/v1/models".into()).await;
    let kinds: HashSet<&str> = models["data"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, HashSet::from(["churn", "expansion"]));

    // The segments a CS team starts with, each with members the API lists.
    let segments = get("/api/v1/segments".into()).await;
    let sizes: Vec<(&str, u64)> = segments["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["segment"]["name"].as_str().unwrap(), s["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(sizes.len(), 6 + 11, "the demo's six and the playbooks' eleven: {segments}");
    let size = |name: &str| sizes.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no {name}")).1;
    assert!(size("At risk and paying") >= 1, "{sizes:?}");
    assert!(size("Big accounts at risk") <= size("At risk and paying"), "{sizes:?}");
    let at_risk =
        segments["data"].as_array().unwrap().iter().find(|s| s["segment"]["name"] == "At risk and paying").unwrap();
    let id = at_risk["segment"]["segment_id"].as_str().unwrap();
    let members = get(format!("/api/v1/segments/{id}/members?limit=1000")).await;
    for m in members["data"].as_array().unwrap() {
        let account = m["subject_id"].as_str().unwrap();
        let health = get(format!("/api/v1/accounts/{account}/health")).await;
        assert_eq!(health["band"], "at_risk", "{account} is in the segment: {health}");
    }
    let saved = printed(&stdout, "Saved").split_whitespace().next().unwrap();
    assert!(saved.parse::<u32>().is_ok_and(|n| n == 6), "{stdout}");
    // Renewals come from the billing periods, urgent tickets from the help desk's.
    let renewing: u64 = ["Renewal in 90 days", "Renewal in 60 days", "Renewal in 30 days"].map(size).iter().sum();
    assert!(renewing >= 1, "{sizes:?}");
    assert!(size("Urgent ticket open") <= 60, "{sizes:?}");

    // The playbooks are installed and enabled, and their runs write emails and tasks.
    assert!(stdout.contains("Installed the playbooks: 11 journeys enabled"), "{stdout}");
    let journeys = get("/api/v1/journeys".into()).await;
    let journeys = journeys["data"].as_array().unwrap();
    assert_eq!(journeys.len(), 11);
    assert!(journeys.iter().all(|j| j["journey"]["enabled"] == true), "{journeys:?}");
    let started: u64 = journeys.iter().map(|j| j["stats"]["entered"].as_u64().unwrap()).sum();
    assert!(started > 0, "{journeys:?}");
    let deliveries = get("/api/v1/deliveries?limit=100".into()).await;
    let deliveries = deliveries["data"].as_array().unwrap();
    let tasks = get("/api/v1/tasks?limit=100".into()).await;
    let tasks = tasks["data"].as_array().unwrap();
    assert!(deliveries.iter().any(|d| d["channel"] == "email"), "{deliveries:?}");
    assert!(!tasks.is_empty(), "runs of the high risk or renewal playbooks ask the team to act");
    let messaging = get("/api/v1/settings/messaging".into()).await;
    assert_eq!(messaging["email_from"]["address"], "cs@acme-analytics.example");
}

/// The demo scored the 90 days before today point-in-time: the trend has a sum for each of
/// them, and they wrote nothing that journeys, alerts or messages start from. Read from the
/// demo's database before a server opens it.
async fn past_days_are_history_alone(dir: &std::path::Path, workspace: &str) {
    use store::Store;
    {
        let store = store_sqlite::SqliteStore::open_in_dir(dir).unwrap();
        let ws = domain::WorkspaceId::parse(workspace).unwrap();
        let today = chrono::Utc::now().date_naive();
        let trend =
            store.portfolio_trend(&ws, today - chrono::Days::new(120), today + chrono::Days::new(1)).await.unwrap();
        assert!(trend.len() >= 90, "{} days in the trend", trend.len());
        assert!(trend.iter().all(|d| d.day >= today - chrono::Days::new(90)), "90 days before today, no more");
        let (first, last) = (&trend[0], &trend[trend.len() - 1]);
        assert!(first.bands.total() > 0 && first.bands.total() <= last.bands.total(), "{first:?} {last:?}");
        // Band changes: only each account's first score, today's. Alerts: today's run opened them.
        let changes = store.account_changes(&ws, store::LogPosition::ZERO, 100_000).await.unwrap();
        let bands: Vec<_> = changes
            .iter()
            .filter_map(|c| match &c.what {
                store::AccountChangeKind::Band { from, day, .. } => Some((from, *day)),
                store::AccountChangeKind::AlertOpened { .. } => None,
            })
            .collect();
        assert_eq!(bands.len(), last.bands.total() as usize, "one first score per account scored today");
        assert!(bands.iter().all(|(from, day)| from.is_none() && *day >= today - chrono::Days::new(1)), "{bands:?}");
        // Yet the overview lists the accounts whose band changed this week, as the past
        // days show it: each was in its former band on a day of the last week or so.
        let week_ago = today - chrono::Days::new(7);
        let changed = store.portfolio(&ws, week_ago).await.unwrap().band_changes;
        assert!(!changed.is_empty(), "some of {} accounts changed band this week", last.bands.total());
        for c in &changed {
            assert_ne!(c.from, c.to, "{c:?}");
            let days = store.score_history(&ws, &c.account_id, week_ago - chrono::Days::new(1), today).await.unwrap();
            assert!(days.iter().any(|p| p.band == c.from), "{c:?} was {:?} this week: {days:?}", c.from);
            assert_eq!(store.account_score(&ws, &c.account_id).await.unwrap().map(|s| s.band), Some(c.to), "{c:?}");
        }
        let alerts = store
            .list_alerts(&ws, &store::AlertFilter::default(), &store::PageRequest::first(store::MAX_LIMIT))
            .await
            .unwrap()
            .items;
        assert!(!alerts.is_empty());
        let opened_at = |d: chrono::DateTime<chrono::Utc>| d.date_naive() >= today - chrono::Days::new(1);
        assert!(alerts.iter().all(|a| opened_at(a.opened_at)), "no alert of a past day");
        let runs = store
            .list_runs(&ws, &store::RunFilter::default(), &store::PageRequest::first(store::MAX_LIMIT))
            .await
            .unwrap()
            .items;
        assert!(!runs.is_empty() && runs.iter().all(|r| opened_at(r.started_at)), "no run of a past day");
        let messages = store
            .list_messages(&ws, &store::MessageFilter::default(), &store::PageRequest::first(store::MAX_LIMIT))
            .await
            .unwrap()
            .items;
        assert!(messages.iter().all(|m| opened_at(m.created_at)), "no message of a past day");
        store.close();
    }
}
