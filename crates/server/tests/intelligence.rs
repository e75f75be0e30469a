//! The account-intelligence API on a real workspace: events through capture, processing,
//! billing records, then scoring on demand, and what a CSM reads and does with the results.

mod common;

use axum::http::StatusCode;
use common::{App, billed_story};
use serde_json::{Value, json};

fn ids(v: &Value) -> Vec<String> {
    v["data"].as_array().unwrap().iter().map(|a| a["account_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_explain_themselves_and_alerts_are_kept_one_per_reason() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    billed_story(&app, &ws).await;

    // Not scored yet: a clear answer, not an empty score.
    let (status, body) = app.get("/api/v1/accounts/busy/health", &ws.admin).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_scored")));
    // A viewer cannot start a run; an admin can.
    assert_eq!(app.call("POST", "/api/v1/scores/run", &ws.viewer, None).await.0, StatusCode::FORBIDDEN);
    let (status, run) = app.call("POST", "/api/v1/scores/run", &ws.admin, None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["accounts"], 4);

    // Health ranks the accounts as a CSM would, and each explanation adds up.
    let (_, by_health) = app.get("/api/v1/accounts?sort=health&order=desc", &ws.admin).await;
    assert_eq!(ids(&by_health), ["busy", "steady", "fading", "gone"], "{by_health}");
    for id in ["busy", "steady", "fading", "gone"] {
        let (status, h) = app.get(&format!("/api/v1/accounts/{id}/health"), &ws.admin).await;
        assert_eq!(status, StatusCode::OK);
        let points: f64 = h["components"].as_array().unwrap().iter().map(|c| c["points"].as_f64().unwrap()).sum();
        assert!((points - h["score"].as_f64().unwrap()).abs() < 1e-6, "{id}: {h}");
        assert_eq!(h["history"].as_array().unwrap().len(), 1);
        assert_eq!(h["history"][0]["day"], h["day"]);
    }
    let (_, gone) = app.get("/api/v1/accounts/gone/health", &ws.admin).await;
    assert_eq!(gone["band"], "at_risk", "{gone}");
    let (_, busy) = app.get("/api/v1/accounts/busy/health", &ws.admin).await;
    assert_eq!(busy["band"], "healthy", "{busy}");
    assert_eq!(busy["signals"]["active_users_28d"], 5);

    // Churn per horizon, from the prior (no churn in the history yet), with its reasons.
    let (_, p) = app.get("/api/v1/accounts/gone/predictions", &ws.admin).await;
    let horizons: Vec<u64> =
        p["churn"].as_array().unwrap().iter().map(|h| h["horizon_days"].as_u64().unwrap()).collect();
    assert_eq!(horizons, [30, 60, 90]);
    assert_eq!(p["churn"][0]["source"], "prior");
    assert_eq!(p["churn"][0]["drivers"][0]["name"], "no activity for 30 days");
    // The prior says how it came about: its base rate, what held and what it checked.
    let prior = &p["churn"][0]["prior"];
    assert!((prior["base_rate"].as_f64().unwrap() - 0.03).abs() < 1e-9, "{prior}");
    assert_eq!(prior["held"][0]["driver"], "no activity for 30 days");
    assert!((prior["held"][0]["odds"].as_f64().unwrap() - 1.6f64.exp()).abs() < 1e-9);
    let checked: Vec<&str> =
        prior["not_held"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(!checked.contains(&"no activity for 30 days") && checked.contains(&"ticket surge"), "{checked:?}");
    let (_, busy_p) = app.get("/api/v1/accounts/busy/predictions", &ws.admin).await;
    assert!(busy_p["churn"][0]["probability"].as_f64() < p["churn"][0]["probability"].as_f64());
    assert!(busy_p["expansion"]["drivers"][0]["name"].as_str().unwrap().starts_with("seats nearly full"), "{busy_p}");
    let (_, by_risk) = app.get("/api/v1/accounts?sort=churn_risk&limit=2", &ws.admin).await;
    assert_eq!(ids(&by_risk)[0], "gone");
    assert!(by_risk["next_cursor"].is_string());
    let (_, at_risk) = app.get("/api/v1/accounts?band=at_risk", &ws.admin).await;
    assert!(ids(&at_risk).contains(&"gone".to_string()) && !ids(&at_risk).contains(&"busy".to_string()));
    let (_, rich) = app.get("/api/v1/accounts?mrr_min=50000&sort=mrr", &ws.admin).await;
    assert_eq!(ids(&rich), ["gone", "busy"]);

    // Alerts say why; a second run updates them rather than opening more.
    let (_, alerts) = app.get("/api/v1/alerts?unresolved=true&limit=100", &ws.admin).await;
    let list = alerts["data"].as_array().unwrap();
    let inactive =
        list.iter().find(|a| a["account_id"] == "gone" && a["reason"] == "inactive").expect("gone is inactive");
    assert_eq!(inactive["severity"], "critical", "high, raised for a top-quarter account: {inactive}");
    assert!(inactive["title"].as_str().unwrap().starts_with("No activity for"));
    assert!(
        list.iter()
            .any(|a| a["account_id"] == "busy" && a["reason"] == "seats_nearly_full" && a["kind"] == "opportunity")
    );
    assert!(!list.iter().any(|a| a["account_id"] == "busy" && a["kind"] == "risk"), "{alerts}");
    let (_, again) = app.call("POST", "/api/v1/scores/run", &ws.admin, None).await;
    assert_eq!(again["alerts"]["opened"], 0, "{again}");
    let (_, after) = app.get("/api/v1/alerts?unresolved=true&limit=100", &ws.admin).await;
    assert_eq!(after["data"].as_array().unwrap().len(), list.len());

    // Operators act on an alert; a viewer cannot; feedback is kept.
    let id = inactive["alert_id"].as_str().unwrap();
    let path = |action: &str| format!("/api/v1/alerts/{id}/{action}");
    assert_eq!(app.call("POST", &path("acknowledge"), &ws.viewer, None).await.0, StatusCode::FORBIDDEN);
    let (status, acked) = app.call("POST", &path("acknowledge"), &ws.admin, None).await;
    assert_eq!((status, acked["status"].as_str()), (StatusCode::OK, Some("acknowledged")));
    let (status, bad) = app.call("POST", &path("feedback"), &ws.admin, Some(json!({"useful": "yes"}))).await;
    assert_eq!((status, bad["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("useful")));
    let (_, rated) =
        app.call("POST", &path("feedback"), &ws.admin, Some(json!({"useful": true, "note": "booked a call"}))).await;
    assert_eq!((rated["useful"].as_bool(), rated["feedback"].as_str()), (Some(true), Some("booked a call")));
    let (_, resolved) = app.call("POST", &path("resolve"), &ws.admin, None).await;
    assert_eq!(resolved["status"], "resolved");
    // Another workspace sees none of it.
    assert_eq!(app.get(&format!("/api/v1/alerts/{id}"), &other.admin).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.call("POST", &path("resolve"), &other.admin, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/accounts/gone/health", &other.admin).await.0, StatusCode::NOT_FOUND);
    let (_, theirs) = app.get("/api/v1/alerts", &other.admin).await;
    assert!(theirs["data"].as_array().unwrap().is_empty());

    // One account rescored on demand keeps its place among the others.
    let (status, one) = app.call("POST", "/api/v1/accounts/busy/score", &ws.admin, None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["band"], "healthy");

    // Features group events however they are spelled: busy's two events are one feature.
    assert_eq!(busy["signals"]["breadth_28d"], 2);
    let (_, mut settings) = app.get("/api/v1/settings/scoring", &ws.admin).await;
    settings["features"] = json!([{"name": "Reporting", "events": ["Report Created", "Dashboard Viewed"]}]);
    let (status, body) = app.call("PUT", "/api/v1/settings/scoring", &ws.admin, Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.call("POST", "/api/v1/scores/run", &ws.admin, None).await;
    let (_, grouped) = app.get("/api/v1/accounts/busy/health", &ws.admin).await;
    assert_eq!(grouped["signals"]["breadth_28d"], 1, "{grouped}");
    assert_eq!(grouped["signals"]["events_28d"], busy["signals"]["events_28d"], "usage itself is unchanged");

    // Training with too little history keeps the prior, and says so.
    let (status, trained) = app.call("POST", "/api/v1/models/train", &ws.admin, None).await;
    assert_eq!(status, StatusCode::OK, "{trained}");
    assert_eq!(trained["data"][0]["status"], "rejected");
    assert!(trained["data"][0]["reason"].as_str().unwrap().starts_with("too little history"));
    let (_, models) = app.get("/api/v1/models", &ws.viewer).await;
    assert_eq!(models["data"].as_array().unwrap().len(), 2, "churn and expansion");
    assert_eq!(app.call("POST", "/api/v1/models/train", &ws.viewer, None).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_settings_are_refused_and_change_nothing() {
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    for (path, field) in [
        ("/api/v1/accounts?sort=vibes", "sort"),
        ("/api/v1/accounts?order=up", "order"),
        ("/api/v1/accounts?band=amber", "band"),
        ("/api/v1/accounts?health_min=150", "health_min"),
        ("/api/v1/accounts?churn_min=x", "churn_min"),
        ("/api/v1/accounts?mrr_min=1.5", "mrr_min"),
        ("/api/v1/alerts?severity=dire", "severity"),
        ("/api/v1/alerts?status=closed", "status"),
    ] {
        let (status, body) = app.get(path, &ws.admin).await;
        assert_eq!((status, body["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{path}: {body}");
    }
    let (_, defaults) = app.get("/api/v1/settings/scoring", &ws.viewer).await;
    assert_eq!(defaults["health"]["healthy_from"], 70.0);
    let mut bad = defaults.clone();
    bad["health"]["at_risk_below"] = json!(90.0);
    let (status, body) = app.call("PUT", "/api/v1/settings/scoring", &ws.admin, Some(bad)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_settings")));
    let (status, body) =
        app.call("PUT", "/api/v1/settings/scoring", &ws.admin, Some(json!({"key_evnts": ["x"]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("key_evnts"), "{body}");
    let mut bad = defaults.clone();
    bad["features"] = json!([{"name": "Billing", "events": ["Payment Failed"]}]);
    let (status, body) = app.call("PUT", "/api/v1/settings/scoring", &ws.admin, Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("features[0]"), "{body}");
    assert_eq!(app.get("/api/v1/settings/scoring", &ws.admin).await.1, defaults, "nothing changed");
    let mut good = defaults.clone();
    good["key_events"] = json!(["report_created"]);
    assert_eq!(
        app.call("PUT", "/api/v1/settings/scoring", &ws.viewer, Some(good.clone())).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = app.call("PUT", "/api/v1/settings/scoring", &ws.admin, Some(good.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/settings/scoring", &ws.admin).await.1["key_events"], json!(["report_created"]));
}

/// The KPIs a scoring run computes, from billing periods placed in the last complete month,
/// against figures worked out by hand; read through the API by a viewer, and by no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_follow_billing_periods_month_by_month() {
    use chrono::{Datelike, Days, Months, TimeZone, Utc};
    use store::Store;
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let other = app.workspace("globex").await;
    app.send(&ws, common::story()).await;
    let (_, none) = app.get("/api/v1/kpis", &ws.viewer).await;
    assert_eq!((none["computed_at"].clone(), none["kpis"].clone()), (Value::Null, json!({})), "not scored yet");
    let today = Utc::now().date_naive();
    let m0 = today.with_day(1).unwrap() - Months::new(1);
    let at = |d: chrono::NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap());
    let period =
        |account: &str, n: u32, from: chrono::NaiveDate, to: Option<chrono::NaiveDate>, mrr: i64| store::Subscription {
            subscription_id: format!("sub_{account}_{n}"),
            account_id: domain::AccountId::parse(account).unwrap(),
            plan: Some("team".into()),
            status: if to.is_some() { store::SubscriptionStatus::Canceled } else { store::SubscriptionStatus::Active },
            mrr: domain::Money::new(mrr, domain::Currency::parse("USD").unwrap()),
            quantity: 1,
            started_at: at(from),
            ended_at: to.map(at),
            current_period_end: None,
            cancel_at_period_end: false,
            updated_at: at(from),
            attributes: json!({}),
        };
    let (before, long_before) = (m0 - Days::new(60), m0 - Days::new(400));
    for sub in [
        // Steady all month.
        period("busy", 0, before, None, 50_000),
        // Expands on the 11th: +10,000.
        period("steady", 0, before, Some(m0 + Days::new(10)), 20_000),
        period("steady", 1, m0 + Days::new(10), None, 30_000),
        // Lost on the 6th: 20,000 churned.
        period("fading", 0, before, Some(m0 + Days::new(5)), 20_000),
        // A customer for over a year, contracting on the 4th: -30,000.
        period("gone", 0, long_before, Some(m0 + Days::new(3)), 90_000),
        period("gone", 1, m0 + Days::new(3), None, 60_000),
    ] {
        app.store.upsert_subscription(&ws.id, &sub).await.unwrap();
    }
    let (status, run) = app.call("POST", "/api/v1/scores/run", &ws.admin, None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let (status, k) = app.get("/api/v1/kpis", &ws.viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(k["currency"], "USD");
    assert_eq!(k["activation_rule"], json!({"key_events": 5, "people": 2, "within_days": 14}));
    let last = |kpi: &str| -> Value {
        let months = k["kpis"][kpi].as_array().unwrap_or_else(|| panic!("{kpi} in {k}"));
        assert_eq!(months.len(), 12, "{kpi}: the last twelve complete months");
        months.last().unwrap().clone()
    };
    for kpi in ["gross_mrr_churn", "logo_churn", "nrr", "nrr_year"] {
        assert_eq!(last(kpi)["month"], m0.to_string(), "{kpi}");
    }
    // Starting MRR 180,000 over four accounts; 20,000 churned, 30,000 contracted, 10,000 added.
    assert_eq!(
        (last("gross_mrr_churn")["numerator"].clone(), last("gross_mrr_churn")["denominator"].clone()),
        (json!(50_000.0), json!(180_000.0))
    );
    assert_eq!(last("logo_churn")["value"], json!(0.25));
    assert_eq!(
        (last("nrr")["numerator"].clone(), last("nrr")["denominator"].clone()),
        (json!(140_000.0), json!(180_000.0))
    );
    // Twelve months before the month's end only "gone" paid (90,000); it pays 60,000 now.
    assert_eq!(
        (last("nrr_year")["numerator"].clone(), last("nrr_year")["denominator"].clone()),
        (json!(60_000.0), json!(90_000.0))
    );
    // Eleven months earlier only "gone" paid, and kept paying: nothing lost of 90,000.
    let first = &k["kpis"]["gross_mrr_churn"][0];
    assert_eq!((first["value"].clone(), first["denominator"].clone()), (json!(0.0), json!(90_000.0)), "{first}");
    assert!(k["kpis"]["activation"].is_array());
    // The accounts list counts its matches when asked, whatever the page's size.
    let (_, listed) = app.get("/api/v1/accounts?count=true&limit=1", &ws.viewer).await;
    assert_eq!((listed["data"].as_array().unwrap().len(), listed["total"].clone()), (1, json!(4)), "{listed}");
    let (_, listed) = app.get("/api/v1/accounts?limit=1", &ws.viewer).await;
    assert_eq!(listed["total"], Value::Null, "not counted unless asked");
    let (status, bad) = app.get("/api/v1/accounts?count=maybe", &ws.viewer).await;
    assert_eq!((status, bad["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("count")), "{bad}");
    // Another workspace's key sees its own (none).
    let (_, theirs) = app.get("/api/v1/kpis", &other.viewer).await;
    assert_eq!(theirs["computed_at"], Value::Null);
    // The activation rule is the workspace's to set, within bounds.
    let (_, mut settings) = app.get("/api/v1/settings/scoring", &ws.admin).await;
    settings["activation"] = json!({"key_events": 3, "people": 1, "within_days": 0});
    let (status, body) = app.call("PUT", "/api/v1/settings/scoring", &ws.admin, Some(settings.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("activation.within_days"), "{body}");
    settings["activation"]["within_days"] = json!(7);
    let (status, body) = app.call("PUT", "/api/v1/settings/scoring", &ws.admin, Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, k) = app.get("/api/v1/kpis", &ws.viewer).await;
    assert_eq!(k["activation_rule"], json!({"key_events": 3, "people": 1, "within_days": 7}));
}

/// Activation counts the new accounts of the same twelve months as the revenue KPIs, not
/// only those first seen within the usage a scoring run reads: an account first seen eight
/// months ago is counted from its first days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_counts_the_new_accounts_of_the_last_twelve_months() {
    use chrono::{Datelike, Days, Duration, Months, Utc};
    let app = App::new().await;
    let ws = app.workspace("acme").await;
    let now = Utc::now();
    let today = now.date_naive();
    // (account, first seen days ago, people, events in its first days): activated with five
    // key events by two people within 14 days.
    let accounts = [
        ("early", 250, 2, 6),
        ("early_idle", 230, 1, 2),
        ("spring", 170, 2, 8),
        ("recent", 50, 2, 6),
        ("too_new", 5, 2, 6),
    ];
    let mut batch = Vec::new();
    let mut n = 0;
    for (account, ago, people, events) in accounts {
        let first = now - Duration::days(ago);
        for p in 0..people {
            let user = format!("{account}-u{p}");
            batch.push(json!({"type": "group", "messageId": format!("g-{user}"), "userId": user,
                              "groupId": account, "timestamp": first.to_rfc3339()}));
        }
        for e in 0..events {
            n += 1;
            let user = format!("{account}-u{}", e % people);
            let at = first + Duration::hours(1 + 20 * i64::from(e));
            batch
                .push(json!({"type": "track", "messageId": format!("t{n}"), "userId": user, "event": "report_created",
                              "context": {"groupId": account}, "timestamp": at.to_rfc3339()}));
        }
    }
    app.send(&ws, batch).await;
    let (status, run) = app.call("POST", "/api/v1/scores/run", &ws.admin, None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let (_, k) = app.get("/api/v1/kpis", &ws.viewer).await;
    let months = k["kpis"]["activation"].as_array().unwrap_or_else(|| panic!("{k}"));
    // The twelve complete months and this one, the oldest first, as the revenue KPIs start.
    let first_month = (today - Months::new(12)).with_day0(0).unwrap();
    assert_eq!(months.len(), 13, "{months:?}");
    assert_eq!(months[0]["month"], first_month.to_string());
    let month_of = |ago: i64| (today - Days::new(ago as u64)).with_day0(0).unwrap().to_string();
    let counted = |month: String| {
        months
            .iter()
            .find(|m| m["month"] == month)
            .map(|m| (m["numerator"].as_f64().unwrap(), m["denominator"].as_f64().unwrap()))
            .unwrap()
    };
    let mut expected: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for (_, ago, people, events) in accounts.iter().filter(|a| a.1 >= 14) {
        let e = expected.entry(month_of(*ago)).or_default();
        e.0 += f64::from(u8::from(*people >= 2 && *events >= 5));
        e.1 += 1.0;
    }
    for (month, want) in &expected {
        assert_eq!(counted(month.clone()), *want, "{month}: {months:?}");
    }
    // Eight months back, before the 120 days of usage a scoring run reads, counts too.
    assert!(counted(month_of(250)).1 >= 1.0);
    let total: f64 = months.iter().map(|m| m["denominator"].as_f64().unwrap()).sum();
    assert_eq!(total, 4.0, "every account but the one whose window has not passed");
}
