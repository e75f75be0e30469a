//! The command line: configuration, workspaces and keys, also while a server runs.

mod common;

use common::{Http, Server, create_workspace, steward};
use serde_json::Value;

#[tokio::test]
async fn keys_made_while_the_server_runs_work_at_once_and_revoked_ones_stop() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Acme");
    assert!(ws.write_key.starts_with("stw_wk_") && ws.admin_key.starts_with("stw_sk_"));
    let server = Server::start(dir.path()).await;
    let data_dir = dir.path().to_str().unwrap();

    let other = create_workspace(dir.path(), "Globex");
    let out = steward(&["keys", "create", "--workspace", &ws.id, "--role", "viewer", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let viewer = key["key"].as_str().unwrap();
    let http = Http::new();
    assert_eq!(http.get(&format!("{}/api/v1/accounts", server.base), Some(viewer)).await.unwrap().0, 200);
    assert_eq!(
        http.post(&format!("{}/v1/track", server.base), &other.write_key, r#"{"userId":"u","event":"x"}"#.into())
            .await
            .unwrap()
            .0,
        200
    );

    let out =
        steward(&["keys", "revoke", "--workspace", &ws.id, key["key_id"].as_str().unwrap(), "--data-dir", data_dir])
            .output()
            .unwrap();
    assert!(out.status.success());
    let listed = steward(&["keys", "list", "--workspace", &ws.id, "--data-dir", data_dir]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(
        !String::from_utf8_lossy(&serde_json::to_vec(&listed).unwrap()).contains(viewer),
        "secrets are never shown again"
    );

    let bad = steward(&["keys", "create", "--workspace", &ws.id, "--role", "owner", "--data-dir", data_dir])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));
}

#[test]
fn config_is_layered_and_secrets_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steward.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nlog_format = \"json\"\n[ingest]\nmax_inflight_events = 1234\nkey_cache_ttl_secs = 5\n").unwrap();
    let out = steward(&["config", "--config", file.to_str().unwrap()])
        .env("STEWARD_DATABASE_URL", "postgres://steward:s3cret@db:5432/steward")
        .env("STEWARD_LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "the file applies: {text}");
    assert!(text.contains("log_format = \"text\""), "the environment overrides the file: {text}");
    assert!(text.contains("max_inflight_events = 1234"));
    assert!(text.contains("postgres://steward:***@db:5432/steward"));
    assert!(!text.contains("s3cret"));

    let bad = steward(&["config"]).env("STEWARD_LISTEN", "nowhere").output().unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).to_lowercase().contains("listen"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test]
async fn the_playbooks_install_into_a_fresh_workspace_and_installing_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Acme");
    let data_dir = dir.path().to_str().unwrap();
    let install = || {
        let out = steward(&["playbooks", "install", "--workspace", &ws.id, "--data-dir", data_dir]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let first = install();
    assert!(
        first.lines().last().unwrap().starts_with(
            "Playbooks: 11 segments (11 new), 14 email templates (14 new), 11 journeys (11 new), the new ones disabled"
        ),
        "{first}"
    );
    assert!(first.contains("segment \"Urgent ticket open\": saved, 0 members"), "{first}");
    let again = install();
    assert_eq!(
        again.lines().last().unwrap(),
        "Playbooks: 11 segments (0 new), 14 email templates (0 new), 11 journeys (0 new).",
        "{again}"
    );
    assert!(again.contains("journey \"Renewal: 30 days\": exists, left as it is"), "{again}");

    // What the API shows: the segments with their conditions, the journeys disabled.
    let server = Server::start(dir.path()).await;
    let http = Http::new();
    let get = |path: &str| {
        let url = format!("{}{path}", server.base);
        let (http, admin) = (http.clone(), ws.admin_key.clone());
        async move { http.get(&url, Some(&admin)).await.unwrap().1 }
    };
    let segments = get("/api/v1/segments").await;
    let conditions: Vec<&str> =
        segments["data"].as_array().unwrap().iter().map(|s| s["segment"]["condition"].as_str().unwrap()).collect();
    assert_eq!(conditions.len(), 11);
    assert!(conditions.contains(&"urgent_tickets > 0") && !conditions.contains(&"false"), "{conditions:?}");
    let journeys = get("/api/v1/journeys").await;
    let journeys = journeys["data"].as_array().unwrap();
    assert_eq!(journeys.len(), 11);
    assert!(journeys.iter().all(|j| j["journey"]["enabled"] == false), "{journeys:?}");
    assert_eq!(get("/api/v1/templates").await["data"].as_array().unwrap().len(), 14);
    // The keys the installs acted with are revoked.
    let listed = steward(&["keys", "list", "--workspace", &ws.id, "--data-dir", data_dir]).output().unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let active = listed.as_array().unwrap().iter().filter(|k| k["revoked_at"].is_null()).count();
    assert_eq!((listed.as_array().unwrap().len(), active), (4, 2), "{listed}");
}

/// A small imported workspace: three accounts paying since December, two people each, daily
/// use through January and February 2026; "fading" stops on February 10th.
fn imported_workspace(dir: &std::path::Path) -> common::Workspace {
    let ws = create_workspace(dir, "History");
    use chrono::Datelike;
    let files = tempfile::tempdir().unwrap();
    let subscriptions =
        "account_id,start_date,mrr\nacme,2025-12-01,500\nglobex,2025-12-01,1200\nfading,2025-12-01,300\n";
    let mut events = String::from("event_time,event_type,user_id,account_id\n");
    for day in chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().iter_days().take(59) {
        for (account, until) in [("acme", 28), ("globex", 28), ("fading", 10)] {
            if day.month() == 2 && day.day() > until {
                continue;
            }
            for (n, event) in ["report_created", "dashboard_viewed"].iter().enumerate() {
                events += &format!("{day}T1{n}:00:00Z,{event},{account}_{n},{account}\n");
            }
        }
    }
    for (kind, name, text) in [("subscriptions", "subscriptions.csv", subscriptions), ("events", "events.csv", &events)]
    {
        let file = files.path().join(name);
        std::fs::write(&file, text).unwrap();
        let args = ["import", "--workspace", &ws.id, "--data-dir", dir.to_str().unwrap(), kind, file.to_str().unwrap()];
        let out = steward(&args).output().unwrap();
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
    }
    ws
}

/// What a scoring run leaves: each account's history by day, its latest score's day,
/// health and band, the band changes journeys start from and the alerts.
async fn scored_state(dir: &std::path::Path, ws: &str) -> Value {
    use store::Store;
    let store = store_sqlite::SqliteStore::open_in_dir(dir).unwrap();
    let ws = domain::WorkspaceId::parse(ws).unwrap();
    let mut accounts = serde_json::Map::new();
    for id in ["acme", "globex", "fading"] {
        let account = domain::AccountId::parse(id).unwrap();
        let (from, to) = (
            chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
        );
        let history = store.score_history(&ws, &account, from, to).await.unwrap();
        let latest = store.account_score(&ws, &account).await.unwrap().expect("scored");
        accounts.insert(
            id.into(),
            serde_json::json!({
                "history": history.iter().map(|p| serde_json::json!([p.day, p.health, p.band])).collect::<Vec<_>>(),
                "latest": [latest.day, latest.health, latest.band],
            }),
        );
    }
    let changes = store.account_changes(&ws, store::LogPosition::ZERO, 1000).await.unwrap();
    let bands: Vec<Value> = changes
        .iter()
        .filter_map(|c| match &c.what {
            store::AccountChangeKind::Band { from, to, day } => Some(serde_json::json!([c.account_id, from, to, day])),
            store::AccountChangeKind::AlertOpened { .. } => None,
        })
        .collect();
    let alerts = store
        .list_alerts(&ws, &store::AlertFilter::default(), &store::PageRequest::first(store::MAX_LIMIT))
        .await
        .unwrap()
        .items;
    store.close();
    serde_json::json!({
        "accounts": accounts,
        "changes": changes.len(),
        "bands": bands,
        "alerts": alerts.iter().map(|a| serde_json::json!([a.alert_id, a.reason, a.opened_at])).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn score_history_writes_its_days_once_and_refuses_a_count_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let ws = imported_workspace(dir.path());
    let data_dir = dir.path().to_str().unwrap();
    let score = |days: &str| {
        let args = ["score", "--workspace", &ws.id, "--day", "2026-03-01", "--history", days, "--data-dir", data_dir];
        steward(&args).output().unwrap()
    };
    let out = score("30");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["history"], serde_json::json!({"from": "2026-01-30", "to": "2026-03-01", "scores": 90}));
    let first = scored_state(dir.path(), &ws.id).await;
    // Each account: the 30 days before March 1st, then March 1st's latest score.
    for id in ["acme", "globex", "fading"] {
        let history = first["accounts"][id]["history"].as_array().unwrap();
        let days: Vec<&str> = history.iter().map(|p| p[0].as_str().unwrap()).collect();
        assert_eq!(days.len(), 31, "{id}: {days:?}");
        assert_eq!((days[0], days[29], days[30]), ("2026-01-30", "2026-02-28", "2026-03-01"), "{id}");
        assert_eq!(first["accounts"][id]["latest"][0], "2026-03-01");
    }
    // Those days were scored as they were then: "fading" was active until February 10th.
    let fading = first["accounts"]["fading"]["history"].as_array().unwrap();
    let (before, after) = (fading[0][1].as_f64().unwrap(), fading[30][1].as_f64().unwrap());
    assert!(after < before, "fading's health fell from {before} to {after}: {fading:?}");
    let bands = first["bands"].as_array().unwrap();
    assert_eq!(bands.len(), 3, "the past days move no band journeys start from: {bands:?}");
    assert!(bands.iter().all(|b| b[1].is_null() && b[3] == "2026-03-01"), "only first scores: {bands:?}");

    // Again: the same days, the same scores; no band change or alert more.
    let out = score("30");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["history"]["scores"], 90);
    assert_eq!(scored_state(dir.path(), &ws.id).await, first);

    // A count of days that is not from 1 to 365 is refused before anything is read.
    for bad in ["0", "-3", "366", "a week"] {
        let out = score(bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(&format!("invalid value '{bad}' for '--history <DAYS>'")), "{bad}: {stderr}");
        if bad != "a week" {
            assert!(stderr.contains(&format!("{bad} is not in 1..=365")), "{bad}: {stderr}");
        }
    }
    assert_eq!(scored_state(dir.path(), &ws.id).await, first);
}
