//! `steward bench connectors`: a Stripe backfill of N customers, each with a subscription and
//! M months of invoices, from a local server that pages them as Stripe's REST API does (100
//! to a page, `starting_after`), into a fresh workspace: every object stored in the mirror,
//! matched, mapped to subscriptions and events. On SQLite and, given a URL, on PostgreSQL.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use connectors::backfill::{Retries, SyncState};
use connectors::{Connectors, Provider, SealingKey, Secrets};
use serde_json::{Value, json};
use store::{ConnectorRecord, Store};

/// The fake Stripe's lists, each object's JSON text kept ready.
struct Lists {
    customers: Vec<(String, String)>,
    subscriptions: Vec<(String, String)>,
    invoices: Vec<(String, String)>,
}

fn lists(customers: usize, months: usize) -> Lists {
    let start = Utc::now().timestamp() - months as i64 * 30 * 86_400;
    let mut out = Lists { customers: Vec::new(), subscriptions: Vec::new(), invoices: Vec::new() };
    for i in 0..customers {
        let cus = format!("cus_{i:08}");
        let customer = json!({"id": cus, "object": "customer", "created": start, "currency": "usd",
            "email": format!("billing@customer{i}.example.org"), "name": format!("Customer {i}"),
            "metadata": {"steward_account_id": format!("acct_{i:07}")}, "delinquent": i % 17 == 0,
            "balance": 0, "livemode": false, "invoice_prefix": format!("C{i:07}"), "discount": null});
        out.customers.push((cus.clone(), customer.to_string()));
        let (interval, amount) = if i % 5 == 0 { ("year", 49_000) } else { ("month", 4_900) };
        let sub = format!("sub_{i:08}");
        let status = if i % 11 == 0 {
            "canceled"
        } else if i % 13 == 0 {
            "past_due"
        } else {
            "active"
        };
        let subscription = json!({"id": sub, "object": "subscription", "customer": cus, "status": status,
            "currency": "usd", "created": start, "start_date": start, "cancel_at_period_end": i % 7 == 0,
            "ended_at": if status == "canceled" { json!(start + 200 * 86_400) } else { Value::Null },
            "canceled_at": null, "pause_collection": null, "discounts": [], "collection_method": "charge_automatically",
            "items": {"object": "list", "has_more": false, "data": [{"id": format!("si_{i:08}"), "object": "subscription_item",
                "quantity": 1 + i % 20, "current_period_end": start + (months as i64) * 30 * 86_400,
                "price": {"id": format!("price_{interval}"), "object": "price", "billing_scheme": "per_unit",
                    "unit_amount": amount, "unit_amount_decimal": amount.to_string(), "currency": "usd",
                    "nickname": "Team", "transform_quantity": null,
                    "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"}}}]}});
        out.subscriptions.push((sub.clone(), subscription.to_string()));
        for m in 0..months {
            let id = format!("in_{i:08}_{m:02}");
            let failed = (i + m) % 29 == 0;
            let created = start + m as i64 * 30 * 86_400;
            let invoice = json!({"id": id, "object": "invoice", "customer": cus, "subscription": sub,
                "status": if failed { "open" } else { "paid" }, "attempt_count": 1, "attempted": true,
                "amount_due": amount * (1 + i as i64 % 20), "amount_paid": if failed { 0 } else { amount * (1 + i as i64 % 20) },
                "currency": "usd", "created": created, "billing_reason": "subscription_cycle",
                "lines": {"object": "list", "has_more": false, "data": [{"id": format!("il_{i:08}_{m:02}"),
                    "object": "line_item", "amount": amount, "currency": "usd", "quantity": 1 + i % 20,
                    "period": {"start": created, "end": created + 30 * 86_400}}]}});
            out.invoices.push((id, invoice.to_string()));
        }
    }
    out
}

async fn page(
    State(lists): State<Arc<Lists>>,
    Path(list): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let all = match list.as_str() {
        "customers" => &lists.customers,
        "subscriptions" => &lists.subscriptions,
        _ => &lists.invoices,
    };
    let start = q.get("starting_after").map_or(0, |a| all.partition_point(|(id, _)| id <= a));
    let end = (start + 100).min(all.len());
    let data: Vec<&str> = all[start..end].iter().map(|(_, text)| text.as_str()).collect();
    let body =
        format!(r#"{{"object":"list","url":"/v1/{list}","has_more":{},"data":[{}]}}"#, end < all.len(), data.join(","));
    ([("content-type", "application/json")], body).into_response()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn run(customers: usize, months: usize, rounds: usize, postgres: Option<String>) -> Result<()> {
    let lists = Arc::new(lists(customers, months));
    let objects = lists.customers.len() + lists.subscriptions.len() + lists.invoices.len();
    let server = axum::Router::new().route("/v1/{list}", axum::routing::get(page)).with_state(lists);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, server).await });
    let http = outbox::http::HttpClient::new(&Default::default())?;
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> = Arc::new(store_sqlite::SqliteStore::open_in_dir(dir.path())?);
    let mut backends = vec![("sqlite", sqlite)];
    if let Some(url) = postgres {
        let pg = store_postgres::PgStore::connect(&url).await.with_context(|| format!("connecting to {url}"))?;
        backends.push(("postgres", Arc::new(pg) as Arc<dyn Store>));
    }
    println!("{customers} customers, {months} months of invoices: {objects} objects in pages of 100");
    for (name, store) in backends {
        let mut times = Vec::new();
        for r in 0..rounds.max(1) {
            let ws = store.create_workspace("bench connectors").await?.workspace_id;
            let key = Arc::new(SealingKey::from_base64(&SealingKey::generate())?);
            let secrets = Secrets { api_key: Some("sk_test_bench".into()), ..Secrets::default() };
            let now = Utc::now();
            let mut sync = SyncState::default();
            sync.request(true);
            store
                .create_connector(
                    &ws,
                    &ConnectorRecord {
                        provider: "stripe".into(),
                        config: json!({"base_url": base}),
                        secrets: secrets.seal(&key, ws.as_str(), "stripe"),
                        enabled: true,
                        created_at: now,
                        updated_at: now,
                        sync: serde_json::to_value(sync)?,
                        last_sync_at: None,
                        records_synced: 0,
                        webhooks_received: 0,
                        errors: 0,
                    },
                )
                .await?;
            let connectors = Connectors::new(store.clone(), key);
            let started = Instant::now();
            let report =
                connectors::backfill::run(&connectors, &http, &ws, Provider::Stripe, &Retries::default()).await?;
            let secs = started.elapsed().as_secs_f64();
            anyhow::ensure!(report.finished && report.objects as usize == objects, "the backfill stopped: {report:?}");
            let subs = store.list_subscriptions(&ws).await?.len();
            anyhow::ensure!(subs == customers, "{subs} subscriptions stored for {customers} customers");
            println!(
                "{name} round {}: {} pages, {} objects in {secs:.2} s: {:.0} objects/s, {subs} subscriptions",
                r + 1,
                report.pages,
                report.objects,
                report.objects as f64 / secs
            );
            times.push(secs);
        }
        let m = median(times);
        println!(
            "{name}: median {m:.2} s for {objects} objects ({:.0}/s) over {} rounds",
            objects as f64 / m,
            rounds.max(1)
        );
    }
    Ok(())
}
