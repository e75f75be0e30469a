//! The segments API on a real workspace: segments defined in the filter language over usage,
//! scores and billing, their members and the stream of entries and exits, and what is refused.

mod common;

use axum::http::StatusCode;
use common::{App, billed_story};
use serde_json::{Value, json};

fn members(v: &Value) -> Vec<String> {
    v["data"].as_array().unwrap().iter().map(|m| m["subject_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_select_accounts_by_usage_scores_and_billing() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    billed_story(&app, &ws).await;
    assert_eq!(app.call("POST", "/api/v1/scores/run", &ws.admin, None).await.0, StatusCode::OK);

    // Reports stopped more than two weeks ago for fading (21 days) and gone (40 days).
    let lapsed = json!({"name": "Reporting lapsed", "condition": "count(event \"Report Created\", 14d) == 0",
                        "description": "No report in two weeks"});
    let (status, saved) = app.call("POST", "/api/v1/segments", &ws.admin, Some(lapsed.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(saved["size"], 2);
    assert_eq!(saved["warnings"], json!([]));
    let id = saved["segment"]["segment_id"].as_str().unwrap().to_owned();
    let (_, m) = app.get(&format!("/api/v1/segments/{id}/members"), &ws.viewer).await;
    assert_eq!(members(&m), ["fading", "gone"]);

    // A segment over another, scores and money: the lapsed ones paying at least $500.
    let big = json!({"name": "Big and lapsed",
                     "condition": "in segment \"Reporting lapsed\"\n  and mrr >= 500 and band == \"at_risk\""});
    let (status, saved_big) = app.call("POST", "/api/v1/segments", &ws.admin, Some(big)).await;
    assert_eq!(status, StatusCode::CREATED, "{saved_big}");
    let big_id = saved_big["segment"]["segment_id"].as_str().unwrap().to_owned();
    let (_, m) = app.get(&format!("/api/v1/segments/{big_id}/members"), &ws.admin).await;
    assert_eq!(members(&m), ["gone"]);

    // A preview counts without saving; a bad condition says where and what was expected.
    let (status, p) = app
        .call(
            "POST",
            "/api/v1/segments/preview",
            &ws.viewer,
            Some(json!({"condition": "seats >= 10 and active_users < 3", "sample": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!((p["size"].as_u64(), p["of"].as_u64()), (Some(3), Some(4)));
    assert_eq!(p["sample"], json!(["fading", "gone", "steady"]));
    let (status, e) = app
        .call(
            "POST",
            "/api/v1/segments/preview",
            &ws.admin,
            Some(json!({"condition": "health < 40 and\n  plan = \"pro\""})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["code"], "invalid_condition");
    assert_eq!(e["error"]["field"], "condition");
    assert_eq!(e["position"], json!({"line": 2, "column": 8, "length": 1}));
    assert_eq!(e["error"]["message"], "line 2, column 8: `=` is not an operator; use `==`");

    // Refused, and nothing changes: a viewer's write, a taken name, an unknown field.
    let (status, _) = app.call("POST", "/api/v1/segments", &ws.viewer, Some(lapsed.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, e) = app.call("POST", "/api/v1/segments", &ws.admin, Some(lapsed.clone())).await;
    assert_eq!(
        (status, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"), Some("name"))
    );
    let (status, e) =
        app.call("POST", "/api/v1/segments", &ws.admin, Some(json!({"name": "Typo", "condition": "helth < 40"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e["error"]["message"].as_str().unwrap().contains("did you mean `health`?"), "{e}");
    let (status, e) = app.call("POST", "/api/v1/segments", &ws.admin, Some(json!({"name": "No condition"}))).await;
    assert_eq!((status, e["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("condition")));
    let (_, list) = app.get("/api/v1/segments", &ws.admin).await;
    let sizes: Vec<(String, u64)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["segment"]["name"].as_str().unwrap().to_owned(), s["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(sizes, [("Big and lapsed".to_owned(), 1), ("Reporting lapsed".to_owned(), 2)]);

    // An account lists the segments it is in, with when it entered.
    let (status, of_gone) = app.get("/api/v1/accounts/gone/segments", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = of_gone["data"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Big and lapsed", "Reporting lapsed"]);
    assert!(of_gone["data"][0]["since"].is_string(), "{of_gone}");
    let (_, of_busy) = app.get("/api/v1/accounts/busy/segments", &ws.viewer).await;
    assert_eq!(of_busy["data"], json!([]));
    assert_eq!(app.get("/api/v1/accounts/nobody/segments", &ws.viewer).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/accounts/gone/segments", &other.admin).await.0, StatusCode::NOT_FOUND);

    // Another workspace sees none of it.
    assert_eq!(app.get(&format!("/api/v1/segments/{id}"), &other.admin).await.0, StatusCode::NOT_FOUND);
    let (_, theirs) = app.get("/api/v1/segments", &other.admin).await;
    assert_eq!(theirs["data"], json!([]));
    let (_, changes) = app.get("/api/v1/segments/changes", &other.admin).await;
    assert_eq!(changes["data"], json!([]));

    // Narrowed to 30 days, steady stays out and gone stays in; fading leaves both segments.
    let narrowed = json!({"name": "Reporting lapsed", "condition": "count(event \"report_created\", 30d) == 0"});
    let (status, updated) = app.call("PUT", &format!("/api/v1/segments/{id}"), &ws.admin, Some(narrowed)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["size"], 1);
    let (_, changes) = app.get("/api/v1/segments/changes?limit=100", &ws.admin).await;
    let stream: Vec<(String, bool)> = changes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["subject_id"].as_str().unwrap().to_owned(), c["entered"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        stream,
        [("fading".into(), true), ("gone".into(), true), ("gone".into(), true), ("fading".into(), false)]
    );
    let after = changes["data"][1]["seq"].as_i64().unwrap();
    let (_, rest) = app.get(&format!("/api/v1/segments/changes?after={after}"), &ws.admin).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest["next_after"], changes["next_after"]);

    // A segment another tests cannot go; once that one has, it can.
    let (status, e) = app.call("DELETE", &format!("/api/v1/segments/{id}"), &ws.admin, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(
        app.call("DELETE", &format!("/api/v1/segments/{big_id}"), &ws.admin, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.call("DELETE", &format!("/api/v1/segments/{id}"), &ws.admin, None).await.0, StatusCode::NO_CONTENT);
    let (status, e) = app.get(&format!("/api/v1/segments/{id}/members"), &ws.admin).await;
    assert_eq!((status, e["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("segment_not_found")));
}
