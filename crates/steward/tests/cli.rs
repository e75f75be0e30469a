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
