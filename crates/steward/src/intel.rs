//! Scoring from the command line: the workspace's history out of the store, into the
//! intelligence crate, and its model card out.

use anyhow::{Context, Result, bail};
use chrono::{Datelike, NaiveDate};
use domain::WorkspaceId;
use intelligence::churn::{AccountHistory, Outcome, evaluate_with};
use intelligence::model::EnsembleParams;
use store::Store;

use crate::config::Config;
use crate::run::Backend;

/// A workspace's whole history and its scoring settings, as its models are trained on them.
struct History {
    ws: WorkspaceId,
    accounts: Vec<AccountHistory>,
    /// The day after the last day with usage.
    end: Option<NaiveDate>,
    /// Spelled as the workspace's events are.
    settings: scoring::ScoringSettings,
}

/// Opens the store and loads the workspace's whole history.
async fn load(config: &Config, workspace: &str) -> Result<History> {
    let backend = Backend::open(config).await?;
    let store = backend.store();
    let ws = existing(store.as_ref(), workspace).await?;
    let settings = scoring::settings(store.as_ref(), &ws).await?;
    let loaded = scoring::load(store.as_ref(), &ws, NaiveDate::MIN, &settings).await?;
    backend.close().await;
    let settings = settings.matched_to(&loaded.metrics);
    Ok(History { ws, accounts: loaded.histories, end: loaded.end, settings })
}

async fn existing(store: &dyn Store, workspace: &str) -> Result<WorkspaceId> {
    let ws = WorkspaceId::parse(workspace).with_context(|| format!("{workspace:?} is not a workspace id"))?;
    if store.get_workspace(&ws).await?.is_none() {
        bail!("no workspace {workspace}");
    }
    Ok(ws)
}

pub async fn train(config: Config, workspace: &str, as_of: Option<NaiveDate>) -> Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let ws = existing(store.as_ref(), workspace).await?;
    let outcomes = scoring::train(store.as_ref(), &ws, as_of, &EnsembleParams::default(), chrono::Utc::now()).await?;
    backend.close().await;
    println!("{}", serde_json::to_string_pretty(&outcomes)?);
    Ok(())
}

pub async fn score(config: Config, workspace: &str, day: Option<NaiveDate>, history: Option<u32>) -> Result<()> {
    let backend = Backend::open(&config).await?;
    let store = backend.store();
    let ws = existing(store.as_ref(), workspace).await?;
    let day = day.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let started = std::time::Instant::now();
    let past = match history {
        Some(days) => {
            let from = day - chrono::Days::new(u64::from(days));
            Some(scoring::score_past_days(store.as_ref(), &ws, from, day, chrono::Utc::now()).await?)
        }
        None => None,
    };
    let (run, _) = scoring::score_workspace(store.as_ref(), &ws, day, chrono::Utc::now()).await?;
    backend.close().await;
    let mut out = serde_json::to_value(&run)?;
    if let Some(past) = past {
        out["history"] = serde_json::to_value(&past)?;
    }
    out["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    println!("{out}");
    Ok(())
}

pub async fn predict(config: Config, workspace: &str, at: NaiveDate, out: &std::path::Path) -> Result<()> {
    let History { ws, accounts, settings, .. } = load(&config, workspace).await?;
    let forecasts = tokio::task::spawn_blocking(move || {
        let spec = scoring::feature_spec(&accounts, at, at, &settings.key_events);
        intelligence::churn::predict_with(
            &accounts,
            at,
            &[30, 60, 90],
            &EnsembleParams::default(),
            spec,
            &settings.signals,
        )
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
    let History { accounts, end, settings, .. } = load(&config, workspace).await?;
    let Some(as_of) = as_of.or(end) else { bail!("the workspace has no usage yet") };
    let test_from = test_from.unwrap_or_else(|| {
        let d = as_of - chrono::Months::new(4);
        NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("a first of month")
    });
    if test_from >= as_of {
        bail!("--test-from {test_from} is not before the end of the data ({as_of})");
    }
    let spec = scoring::feature_spec(&accounts, test_from, as_of, &settings.key_events);
    let card =
        evaluate_with(&accounts, as_of, test_from, &[30, 60, 90], &EnsembleParams::default(), Outcome::Churn, &spec);
    if json {
        println!("{}", serde_json::to_string_pretty(&card)?);
        return Ok(());
    }
    println!("churn model card: trained on what was known before {test_from}, tested from {test_from} to {as_of}");
    println!("key events: {}", card.features.metrics.join(", "));
    let attributes: Vec<String> =
        card.features.attributes.iter().map(|a| format!("{} ({})", a.key, a.values.join(", "))).collect();
    println!("account attributes: {}", if attributes.is_empty() { "none".into() } else { attributes.join("; ") });
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
