//! Scoring from the command line: the workspace's history out of the store, into the
//! intelligence crate, and its model card out.

use anyhow::{Context, Result, bail};
use chrono::{Datelike, NaiveDate};
use domain::WorkspaceId;
use intelligence::churn::{AccountHistory, Period, Series, evaluate as evaluate_churn};
use intelligence::model::EnsembleParams;
use std::collections::HashMap;
use store::{PageRequest, Store};

use crate::config::Config;
use crate::run::Backend;

/// Every account's subscriptions and daily usage, ordered by account id (numerically where
/// every id is a number), and the day after the last day with any usage.
pub async fn histories(store: &dyn Store, ws: &WorkspaceId) -> Result<(Vec<AccountHistory>, Option<NaiveDate>)> {
    let mut ids = Vec::new();
    let mut page = PageRequest::first(1000);
    loop {
        let p = store.list_accounts(ws, &page).await?;
        ids.extend(p.items.into_iter().map(|a| a.account_id));
        match p.next {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    let mut accounts = Vec::with_capacity(ids.len());
    for id in &ids {
        let periods = store
            .account_subscriptions(ws, id)
            .await?
            .into_iter()
            .map(|s| Period {
                start: s.started_at.date_naive(),
                end: s.ended_at.map(|e| e.date_naive()),
                mrr: s.mrr.minor,
            })
            .collect();
        accounts.push(AccountHistory { account_id: id.to_string(), periods, usage: HashMap::new() });
    }
    let index: HashMap<String, usize> = accounts.iter().enumerate().map(|(i, a)| (a.account_id.clone(), i)).collect();
    let rows = store.accounts_usage(ws, NaiveDate::MIN, NaiveDate::MAX).await?;
    let mut days: HashMap<(usize, String), Vec<(NaiveDate, u32)>> = HashMap::new();
    let mut end: Option<NaiveDate> = None;
    for row in rows {
        let Some(&i) = index.get(row.account_id.as_str()) else { continue };
        let entry = days.entry((i, row.metric)).or_default();
        for (slot, &n) in row.events.iter().enumerate() {
            let day = row.month + chrono::Days::new(slot as u64);
            if n > 0 && day.month() == row.month.month() {
                entry.push((day, n));
                end = end.max(day.succ_opt());
            }
        }
    }
    for ((i, metric), d) in days {
        accounts[i].usage.insert(metric, Series::new(d));
    }
    let numeric = accounts.iter().all(|a| a.account_id.parse::<i64>().is_ok());
    if numeric {
        accounts.sort_by_key(|a| a.account_id.parse::<i64>().expect("checked"));
    } else {
        accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    }
    Ok((accounts, end))
}

/// Opens the store and loads the workspace's histories.
async fn load(config: &Config, workspace: &str) -> Result<(WorkspaceId, Vec<AccountHistory>, Option<NaiveDate>)> {
    let backend = Backend::open(config).await?;
    let store = backend.store();
    let ws = WorkspaceId::parse(workspace).with_context(|| format!("{workspace:?} is not a workspace id"))?;
    if store.get_workspace(&ws).await?.is_none() {
        bail!("no workspace {workspace}");
    }
    let (accounts, end) = histories(store.as_ref(), &ws).await?;
    backend.close().await;
    Ok((ws, accounts, end))
}

pub async fn predict(config: Config, workspace: &str, at: NaiveDate, out: &std::path::Path) -> Result<()> {
    let (ws, accounts, _) = load(&config, workspace).await?;
    let forecasts = tokio::task::spawn_blocking(move || {
        intelligence::churn::predict(&accounts, at, &[30, 60, 90], &EnsembleParams::default())
    })
    .await?;
    let mut file = csv::Writer::from_path(out).with_context(|| format!("create {}", out.display()))?;
    file.write_record(["account_id", "observation_date", "horizon_days", "churn_probability"])?;
    for f in &forecasts {
        file.write_record([
            f.account_id.clone(),
            f.date.to_string(),
            f.horizon_days.to_string(),
            format!("{:.6}", f.probability),
        ])?;
    }
    file.flush()?;
    println!("{}", serde_json::json!({"workspace_id": ws, "forecasts": forecasts.len(), "out": out}));
    Ok(())
}

pub async fn evaluate(
    config: Config,
    workspace: &str,
    as_of: Option<NaiveDate>,
    test_from: Option<NaiveDate>,
    json: bool,
) -> Result<()> {
    let (_, accounts, end) = load(&config, workspace).await?;
    let Some(as_of) = as_of.or(end) else { bail!("the workspace has no usage yet") };
    let test_from = test_from.unwrap_or_else(|| {
        let d = as_of - chrono::Months::new(4);
        NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("a first of month")
    });
    if test_from >= as_of {
        bail!("--test-from {test_from} is not before the end of the data ({as_of})");
    }
    let card = evaluate_churn(&accounts, as_of, test_from, &[30, 60, 90], &EnsembleParams::default());
    if json {
        println!("{}", serde_json::to_string_pretty(&card)?);
        return Ok(());
    }
    println!("churn model card: trained on what was known before {test_from}, tested from {test_from} to {as_of}");
    println!("key events: {}", card.features.metrics.join(", "));
    println!(
        "| horizon | train rows (churned) | test rows (churned) | AUC | PR-AUC | top-decile lift | calibration error | tenure-only AUC |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for h in &card.horizons {
        println!(
            "| {} days | {} ({}) | {} ({}) | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} |",
            h.horizon_days,
            h.train_rows,
            h.train_churned,
            h.test_rows,
            h.test_churned,
            h.auc,
            h.pr_auc,
            h.top_decile_lift,
            h.calibration_error,
            h.tenure_auc
        );
    }
    Ok(())
}
