//! Scoring runs: a workspace's history out of the store, through the intelligence crate, and
//! its scores, models and alerts back.
//!
//! - [`train`] fits the churn and expansion models on the whole history and keeps each only
//!   if it does at least as well on a time-based holdout as the active one.
//! - [`score_workspace`] scores every account as of a day: health with its explanation and
//!   what moved, churn per horizon and expansion with their drivers, and the alerts they
//!   raise. It keeps a [`Scorer`], which rescores one account after an event without the
//!   others ([`Scorer::rescore`]).
//!
//! - [`actions::recommendations`] reads a stored score back into an account's recommended
//!   next actions.
//!
//! The arithmetic is pure and runs on the blocking pool, in parallel over accounts.

pub mod actions;
pub mod kpis;
pub mod load;
pub mod rules;
pub mod service;
pub mod settings;

use chrono::{Datelike, NaiveDate};
use domain::{AccountId, Money, Timestamp, WorkspaceId};
use intelligence::churn::{
    AccountHistory, FeatureSpec, HorizonModel, ModelCard, Outcome, Outlook, Trained, evaluate_with,
};
use intelligence::health::{Component, Gathered, Health, Reference};
use intelligence::model::EnsembleParams;
use intelligence::signals::{Snapshot, snapshot};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use store::{
    AccountScore, AlertScope, AlertSignal, AlertSync, HealthBand, ModelKind, ModelRecord, ModelStatus, ScorePoint,
    Store, StoreError,
};

pub use load::{Loaded, load};
pub use settings::ScoringSettings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored model or setting that does not read back.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub const CHURN_HORIZONS: [u32; 3] = [30, 60, 90];
pub const EXPANSION_HORIZONS: [u32; 1] = [90];
/// The holdout AUC a first model needs to replace the rule-based prior.
pub const MIN_AUC: f64 = 0.55;
/// Days of usage a scoring run reads: the 90-day windows and a margin.
pub const SCORING_DAYS: u64 = 120;

/// The workspace's scoring settings (the defaults where it has none).
pub async fn settings(store: &dyn Store, ws: &WorkspaceId) -> Result<ScoringSettings> {
    match store.get_setting(ws, settings::KEY).await? {
        Some(v) => ScoringSettings::parse(&v).map_err(|e| Error::Invalid(format!("the scoring setting: {e}"))),
        None => Ok(ScoringSettings::default()),
    }
}

fn kind_of(outcome: Outcome) -> ModelKind {
    match outcome {
        Outcome::Churn => ModelKind::Churn,
        Outcome::Expansion => ModelKind::Expansion,
    }
}

fn horizons_of(outcome: Outcome) -> &'static [u32] {
    match outcome {
        Outcome::Churn => &CHURN_HORIZONS,
        Outcome::Expansion => &EXPANSION_HORIZONS,
    }
}

/// A model that has no horizon trained: every forecast comes from the prior.
fn prior_only(outcome: Outcome) -> Trained {
    Trained {
        outcome,
        spec: FeatureSpec::events(Vec::new()),
        trained_through: NaiveDate::MIN,
        horizons: horizons_of(outcome)
            .iter()
            .map(|&h| HorizonModel { horizon_days: h, rows: 0, positives: 0, model: None })
            .collect(),
    }
}

/// The models that score a workspace now.
#[derive(Clone, Debug)]
pub struct Models {
    pub churn: Trained,
    pub expansion: Trained,
    /// The ids of the active models (none: the prior).
    pub churn_id: Option<String>,
    pub expansion_id: Option<String>,
}

/// The workspace's active models, or the priors.
pub async fn models(store: &dyn Store, ws: &WorkspaceId) -> Result<Models> {
    let pick = async |outcome: Outcome| -> Result<(Trained, Option<String>)> {
        match store.active_model(ws, kind_of(outcome)).await? {
            Some(record) => {
                let params = record.model.ok_or_else(|| Error::Invalid("an active model without parameters".into()))?;
                let trained: Trained = serde_json::from_value(params)
                    .map_err(|e| Error::Invalid(format!("model {}: {e}", record.model_id)))?;
                Ok((trained, Some(record.model_id)))
            }
            None => Ok((prior_only(outcome), None)),
        }
    };
    let (churn, churn_id) = pick(Outcome::Churn).await?;
    let (expansion, expansion_id) = pick(Outcome::Expansion).await?;
    Ok(Models { churn, expansion, churn_id, expansion_id })
}

/// What one training run decided for one kind of model.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainOutcome {
    pub kind: ModelKind,
    pub model_id: String,
    pub status: ModelStatus,
    pub reason: String,
    pub card: Value,
}

/// The first of the month four months before `as_of`: the holdout starts there.
pub fn holdout_start(as_of: NaiveDate) -> NaiveDate {
    let d = as_of - chrono::Months::new(4);
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("a first of month")
}

/// Trains the churn and expansion models on everything known at `as_of` (default: the day
/// after the last usage) and stores each with its card: active when it did at least as well
/// on the holdout as the active model's configuration trained on the same months, rejected
/// otherwise or while the history is too short.
pub async fn train(
    store: &dyn Store,
    ws: &WorkspaceId,
    as_of: Option<NaiveDate>,
    params: &EnsembleParams,
    now: Timestamp,
) -> Result<Vec<TrainOutcome>> {
    let settings = settings(store, ws).await?;
    let loaded = Arc::new(load(store, ws, NaiveDate::MIN, &settings).await?);
    let settings = settings.matched_to(&loaded.metrics);
    let as_of = as_of.or(loaded.end).unwrap_or_else(|| now.date_naive());
    let current = models(store, ws).await?;
    let mut out = Vec::new();
    for (outcome, incumbent) in [
        (Outcome::Churn, current.churn_id.as_ref().map(|_| current.churn.clone())),
        (Outcome::Expansion, current.expansion_id.as_ref().map(|_| current.expansion.clone())),
    ] {
        let (loaded, params, key_events) = (loaded.clone(), params.clone(), settings.key_events.clone());
        let decided = tokio::task::spawn_blocking(move || {
            decide(&loaded.histories, as_of, outcome, &params, key_events, incumbent.as_ref())
        })
        .await
        .map_err(|e| Error::Invalid(format!("training stopped: {e}")))?;
        let record = ModelRecord {
            model_id: store::scores::new_model_id(),
            kind: kind_of(outcome),
            status: decided.status,
            created_at: now,
            card: decided.card.clone(),
            reason: decided.reason.clone(),
            model: Some(serde_json::to_value(&decided.trained).map_err(|e| Error::Invalid(e.to_string()))?),
        };
        store.insert_model(ws, &record).await?;
        tracing::info!(workspace = %ws, kind = %record.kind.as_str(), status = record.status.as_str(), reason = %record.reason, "trained");
        out.push(TrainOutcome {
            kind: record.kind,
            model_id: record.model_id,
            status: record.status,
            reason: record.reason,
            card: record.card,
        });
    }
    Ok(out)
}

struct Decision {
    status: ModelStatus,
    reason: String,
    card: Value,
    trained: Trained,
}

fn spec_for(
    accounts: &[intelligence::churn::AccountHistory],
    at: NaiveDate,
    key_events: &Option<Vec<String>>,
) -> FeatureSpec {
    feature_spec(accounts, at, at, key_events)
}

/// The features of a model trained before `before` on a history that ends at `end`: the
/// workspace's key events when it configured them (see [`ScoringSettings::matched_to`]),
/// else its ten most frequent events before `before`; and the account attributes worth one.
pub fn feature_spec(
    accounts: &[intelligence::churn::AccountHistory],
    before: NaiveDate,
    end: NaiveDate,
    key_events: &Option<Vec<String>>,
) -> FeatureSpec {
    match key_events {
        Some(k) => FeatureSpec::events(k.clone()),
        None => FeatureSpec::most_frequent(accounts, before, 10),
    }
    .with_attributes(accounts, before, end)
}

fn decide(
    accounts: &[intelligence::churn::AccountHistory],
    as_of: NaiveDate,
    outcome: Outcome,
    params: &EnsembleParams,
    key_events: Option<Vec<String>>,
    incumbent: Option<&Trained>,
) -> Decision {
    let horizons = horizons_of(outcome);
    let test_from = holdout_start(as_of);
    let card = evaluate_with(
        accounts,
        as_of,
        test_from,
        horizons,
        params,
        outcome,
        &spec_for(accounts, test_from, &key_events),
    );
    let trained = Trained::fit(accounts, as_of, horizons, params, outcome, spec_for(accounts, as_of, &key_events));
    // The active model's configuration (its key events) on the same months.
    let rival: Option<ModelCard> = incumbent
        .filter(|m| m.has_model())
        .map(|m| evaluate_with(accounts, as_of, test_from, horizons, params, outcome, &m.spec));
    let positives: Vec<String> = trained
        .horizons
        .iter()
        .map(|h| format!("{} in {} rows at {} days", h.positives, h.rows, h.horizon_days))
        .collect();
    let (status, reason) = if !trained.has_model() {
        (
            ModelStatus::Rejected,
            format!(
                "too little history: {} (a model needs {} examples); the rule-based prior scores accounts",
                positives.join(", "),
                intelligence::churn::MIN_CHURN_EXAMPLES
            ),
        )
    } else {
        match (card.mean_auc(), rival.as_ref().and_then(ModelCard::mean_auc)) {
            (Some(new), Some(old)) if new >= old => {
                (ModelStatus::Active, format!("mean AUC {new:.3} on the holdout, at least the active model's {old:.3}"))
            }
            (Some(new), Some(old)) => (
                ModelStatus::Rejected,
                format!("mean AUC {new:.3} on the holdout, below the active model's {old:.3}: the active model stays"),
            ),
            (Some(new), None) if new < MIN_AUC => (
                ModelStatus::Rejected,
                format!("mean AUC {new:.3} on the holdout, hardly better than chance: the rule-based prior stays"),
            ),
            (Some(new), None) => {
                let tenure = card.horizons.iter().map(|h| h.tenure_auc).sum::<f64>() / card.horizons.len() as f64;
                (ModelStatus::Active, format!("mean AUC {new:.3} on the holdout (tenure alone: {tenure:.3})"))
            }
            (None, Some(_)) => (
                ModelStatus::Rejected,
                "no holdout to compare on (the months from the holdout's start hold no outcome yet): the active model stays"
                    .into(),
            ),
            (None, None) => (
                ModelStatus::Active,
                format!("no holdout yet (history too short to test); trained on {}", positives.join(", ")),
            ),
        }
    };
    let card = json!({
        "outcome": outcome,
        "as_of": as_of,
        "holdout": card,
        "active_model_on_the_same_holdout": rival,
        "trained": trained.horizons.iter().map(|h| json!({
            "horizon_days": h.horizon_days, "rows": h.rows, "positives": h.positives, "model": h.model.is_some()
        })).collect::<Vec<_>>(),
        "key_events": trained.spec.metrics,
    });
    Decision { status, reason, card, trained }
}

/// An account's earlier scores, for trends and what moved.
#[derive(Clone, Debug, Default)]
pub struct Previous {
    /// The last score before today.
    pub last: HashMap<AccountId, ScorePoint>,
    pub week_ago: HashMap<AccountId, ScorePoint>,
    pub month_ago: HashMap<AccountId, ScorePoint>,
}

impl Previous {
    pub async fn load(store: &dyn Store, ws: &WorkspaceId, day: NaiveDate) -> Result<Previous> {
        let points = async |d: NaiveDate| -> Result<HashMap<AccountId, ScorePoint>> {
            Ok(store.score_points_as_of(ws, d).await?.into_iter().collect())
        };
        Ok(Previous {
            last: points(day.pred_opt().unwrap_or(day)).await?,
            week_ago: points(day - chrono::Days::new(7)).await?,
            month_ago: points(day - chrono::Days::new(30)).await?,
        })
    }
}

/// What scores one account: the workspace's settings and models, and from the last full
/// run the reference its measures are ranked against and the baselines alerts compare with.
#[derive(Clone, Debug)]
pub struct Scorer {
    pub settings: ScoringSettings,
    pub models: Models,
    pub reference: Reference,
    pub baseline: rules::Baseline,
    pub sources: intelligence::signals::Sources,
    /// The features of the churn and the expansion models, named once for every driver.
    names: [Vec<String>; 2],
}

/// One account scored: what is stored, and the alerts it raises.
#[derive(Clone, Debug)]
pub struct AccountResult {
    pub score: AccountScore,
    pub alerts: Vec<AlertSignal>,
}

/// The outcome of scoring a workspace.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScoreRun {
    pub day: NaiveDate,
    pub accounts: usize,
    pub alerts: AlertSync,
    pub churn_model: Option<String>,
    pub expansion_model: Option<String>,
}

/// Accounts assembled between two hand-overs to a run's sink: their results are written and
/// dropped before the next are made, so that a run's memory does not grow with the
/// workspace (kept whole, a million accounts' explanations took gigabytes, and the kernel
/// zeroing fresh pages for them cost more than scoring).
pub const CHUNK: usize = 4_096;

/// What an account's score is assembled from: its snapshot, and its forecasts with their
/// drivers. Made for every account before any is assembled, since health ranks each
/// account's measures among all of them and alerts compare each forecast with the mean.
struct Prepared {
    snap: Snapshot,
    churn: Vec<Outlook>,
    expansion: Vec<Outlook>,
}

impl Prepared {
    fn of(settings: &ScoringSettings, models: &Models, h: &AccountHistory, at: NaiveDate) -> Self {
        let snap = snapshot(h, at, &settings.signals);
        let (churn, expansion) = forecasts(settings, models, h, &snap, at);
        Prepared { snap, churn, expansion }
    }
}

/// The account's churn and expansion forecasts at `at`; none for an account that is no
/// customer then.
fn forecasts(
    settings: &ScoringSettings,
    models: &Models,
    h: &AccountHistory,
    snap: &Snapshot,
    at: NaiveDate,
) -> (Vec<Outlook>, Vec<Outlook>) {
    // Without billing records every account with activity is a customer.
    if !h.eligible(at) {
        return (Vec::new(), Vec::new());
    }
    let churn = models.churn.outlooks(h, snap, at, &settings.signals);
    let expansion =
        if h.periods.is_empty() { Vec::new() } else { models.expansion.outlooks(h, snap, at, &settings.signals) };
    (churn, expansion)
}

/// The threads a run scores on.
fn threads(items: usize) -> usize {
    if items < 1024 { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).min(16) }
}

/// The accounts of chunk `c` (of [`CHUNK`]) of `n` that thread `t` of `threads` takes: a run
/// hands each thread the same share of each chunk from start to end, so that a thread
/// assembles the accounts it prepared and frees what it allocated.
fn share(n: usize, c: usize, t: usize, threads: usize) -> std::ops::Range<usize> {
    let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
    let each = (end - start).div_ceil(threads);
    (start + t * each).min(end)..(start + (t + 1) * each).min(end)
}

/// `parts[t]` holds thread `t`'s shares of every chunk, chunk after chunk: the items in
/// their order.
fn in_order<T>(parts: &[Vec<T>], n: usize) -> impl Iterator<Item = &T> {
    let threads = parts.len();
    let mut taken = vec![0; threads];
    (0..n.div_ceil(CHUNK)).flat_map(move |c| {
        (0..threads)
            .map(|t| {
                let len = share(n, c, t, threads).len();
                taken[t] += len;
                &parts[t][taken[t] - len..taken[t]]
            })
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
    })
}

fn band(b: intelligence::health::Band) -> HealthBand {
    match b {
        intelligence::health::Band::Healthy => HealthBand::Healthy,
        intelligence::health::Band::Neutral => HealthBand::Neutral,
        intelligence::health::Band::AtRisk => HealthBand::AtRisk,
    }
}

/// What a stored score says of itself (written straight to text: building a tree of JSON
/// values per account would cost more than scoring it). Its object is `health`, `churn`,
/// `expansion`, `signals` and `models`, in that order (see [`write_explanation`]).
struct Explanation<'a> {
    health: HealthView<'a>,
    churn: Vec<ForecastView<'a>>,
    expansion: Option<ForecastView<'a>>,
    signals: &'a Snapshot,
    models: ModelsView<'a>,
}

/// Written by [`write_health`].
struct HealthView<'a> {
    score: f64,
    band: HealthBand,
    profile: &'a str,
    components: &'a [intelligence::health::ComponentScore],
    trend: Trend,
    /// Each component's change in points since the last score, largest first.
    moved: Option<Vec<Moved>>,
    since: Option<NaiveDate>,
}

#[derive(serde::Serialize)]
struct Trend {
    vs_7_days_ago: Option<f64>,
    vs_30_days_ago: Option<f64>,
}

#[derive(serde::Serialize)]
struct Moved {
    component: String,
    points: f64,
}

#[derive(serde::Serialize)]
struct ForecastView<'a> {
    horizon_days: u32,
    probability: f64,
    /// `model` or `prior`.
    source: &'static str,
    drivers: Vec<rules::Driver<'a>>,
}

impl<'a> ForecastView<'a> {
    /// `names`: the features of the model that made it.
    fn of(f: &'a Outlook, names: &'a [String]) -> ForecastView<'a> {
        let model = f.driver_places().map(|(i, c)| rules::Driver { name: &names[i], contribution: c });
        let prior = f.rules().iter().map(|(name, c)| rules::Driver { name, contribution: *c });
        ForecastView {
            horizon_days: f.horizon_days,
            probability: f.probability,
            source: if f.from_model { "model" } else { "prior" },
            drivers: model.chain(prior).collect(),
        }
    }

    fn odds(&self) -> rules::Odds<'_> {
        rules::Odds { probability: self.probability, from_model: self.source == "model", drivers: &self.drivers }
    }
}

#[derive(serde::Serialize)]
struct ModelsView<'a> {
    churn: Option<&'a str>,
    expansion: Option<&'a str>,
}

impl Scorer {
    /// Scores every account of `loaded` as of the end of `day`, returning the scorer that can
    /// rescore one of them later and every account's result.
    pub fn score_all(
        settings: ScoringSettings,
        models: Models,
        loaded: &Loaded,
        day: NaiveDate,
        previous: &Previous,
        now: Timestamp,
    ) -> (Scorer, Vec<AccountResult>) {
        let mut all = Vec::with_capacity(loaded.ids.len());
        let scorer = Scorer::score_in_chunks(settings, models, loaded, day, previous, now, |chunk| all.extend(chunk));
        (scorer, all)
    }

    /// Scores every account of `loaded` as of the end of `day`, handing the results to `sink`
    /// in order, [`CHUNK`] accounts at a time; returns the scorer that can rescore one of
    /// them later.
    pub fn score_in_chunks(
        settings: ScoringSettings,
        models: Models,
        loaded: &Loaded,
        day: NaiveDate,
        previous: &Previous,
        now: Timestamp,
        mut sink: impl FnMut(Vec<AccountResult>),
    ) -> Scorer {
        let at = day.succ_opt().expect("a next day");
        let n = loaded.histories.len();
        let (threads, chunks) = (threads(n), n.div_ceil(CHUNK));
        // Each thread prepares its share of every chunk, and gathers its accounts' measures
        // (they are made again from the snapshot when assembled); assembled, they are dropped
        // by the thread that made them.
        let (parts, gathered): (Vec<Vec<Prepared>>, Vec<Gathered>) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (settings, models) = (&settings, &models);
                    s.spawn(move || {
                        let mut part = Vec::with_capacity((0..chunks).map(|c| share(n, c, t, threads).len()).sum());
                        let mut gathered = Gathered::new(&settings.health);
                        for i in (0..chunks).flat_map(|c| share(n, c, t, threads)) {
                            let p = Prepared::of(settings, models, &loaded.histories[i], at);
                            gathered.add(&p.snap.measures(&settings.health, loaded.sources));
                            part.push(p);
                        }
                        (part, gathered)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a scoring thread panicked")).unzip()
        });
        let mut all = Gathered::new(&settings.health);
        gathered.into_iter().for_each(|g| all.extend(g));
        let reference = Reference::of(&settings.health, all);
        let mean = |v: Vec<f64>| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
        let mut mrrs: Vec<i64> = in_order(&parts, n).map(|p| p.snap.mrr).filter(|&m| m > 0).collect();
        mrrs.sort_unstable();
        let baseline = rules::Baseline {
            churn_30d: mean(in_order(&parts, n).filter_map(|p| p.churn.first()).map(|f| f.probability).collect()),
            expansion: mean(in_order(&parts, n).filter_map(|p| p.expansion.first()).map(|f| f.probability).collect()),
            top_quarter_mrr: mrrs.get(mrrs.len() * 3 / 4).copied().unwrap_or(i64::MAX),
        };
        let names = [models.churn.spec.names(), models.expansion.spec.names()];
        let scorer = Scorer { settings, models, reference, baseline, sources: loaded.sources, names };
        // Each thread assembles its share of a chunk while the one before is handed over.
        std::thread::scope(|s| {
            let shares: Vec<_> = parts
                .into_iter()
                .enumerate()
                .map(|(t, part)| {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<AccountResult>>(1);
                    let scorer = &scorer;
                    s.spawn(move || {
                        let mut part = part.into_iter();
                        for c in 0..chunks {
                            let assembled = share(n, c, t, threads)
                                .zip(part.by_ref())
                                .map(|(i, p)| scorer.assemble(loaded, i, &p, day, previous, now))
                                .collect();
                            if tx.send(assembled).is_err() {
                                break;
                            }
                        }
                    });
                    rx
                })
                .collect();
            for _ in 0..chunks {
                let mut chunk = Vec::with_capacity(CHUNK);
                for rx in &shares {
                    chunk.extend(rx.recv().expect("a scoring thread panicked"));
                }
                sink(chunk);
            }
        });
        scorer
    }

    fn assemble(
        &self,
        loaded: &Loaded,
        i: usize,
        prepared: &Prepared,
        day: NaiveDate,
        previous: &Previous,
        now: Timestamp,
    ) -> AccountResult {
        let Prepared { snap, churn, expansion } = prepared;
        let id = &loaded.ids[i];
        let measures = snap.measures(&self.settings.health, self.sources);
        let health = self.reference.score(&self.settings.health, &measures, snap.tenure_days as f64);
        let (last, week, month) = (previous.last.get(id), previous.week_ago.get(id), previous.month_ago.get(id));
        let churn_at = |h: u32| churn.iter().find(|f| f.horizon_days == h).map(|f| f.probability);
        let [churn_names, expansion_names] = &self.names;
        let churn_views: Vec<ForecastView> = churn.iter().map(|f| ForecastView::of(f, churn_names)).collect();
        let expansion_view = expansion.first().map(|f| ForecastView::of(f, expansion_names));
        let mrr = loaded.currencies[i].map(|c| Money::new(snap.mrr, c));
        let components: serde_json::Map<String, Value> =
            health.components.iter().map(|c| (component_name(c.component).to_owned(), json!(c.points))).collect();
        let view = Explanation {
            health: HealthView {
                score: health.score,
                band: band(health.band),
                profile: &health.profile,
                components: &health.components,
                trend: Trend {
                    vs_7_days_ago: week.map(|p| health.score - p.health),
                    vs_30_days_ago: month.map(|p| health.score - p.health),
                },
                moved: last.map(|p| moved_since(p, &health)),
                since: last.map(|p| p.day),
            },
            churn: churn_views,
            expansion: expansion_view,
            signals: snap,
            models: ModelsView {
                churn: self.models.churn_id.as_deref(),
                expansion: self.models.expansion_id.as_deref(),
            },
        };
        let explanation = store::JsonText::new(write_explanation(&view));
        let alerts = rules::alerts(
            id,
            snap,
            &health,
            view.churn.iter().find(|f| f.horizon_days == 30).map(ForecastView::odds),
            view.expansion.as_ref().map(ForecastView::odds),
            week,
            &self.baseline,
        );
        AccountResult {
            score: AccountScore {
                account_id: id.clone(),
                day,
                health: health.score,
                band: band(health.band),
                churn_30d: churn_at(30),
                churn_60d: churn_at(60),
                churn_90d: churn_at(90),
                expansion: expansion.first().map(|f| f.probability),
                mrr,
                components: Value::Object(components),
                explanation,
                scored_at: now,
            },
            alerts,
        }
    }

    /// Scores one account again, as of the end of `day`, against the reference of the last
    /// full run: what an event changes without rescoring the workspace.
    pub fn rescore_one(
        &self,
        loaded: &Loaded,
        day: NaiveDate,
        previous: &Previous,
        now: Timestamp,
    ) -> Vec<AccountResult> {
        let at = day.succ_opt().expect("a next day");
        (0..loaded.ids.len())
            .map(|i| {
                let prepared = Prepared::of(&self.settings, &self.models, &loaded.histories[i], at);
                self.assemble(loaded, i, &prepared, day, previous, now)
            })
            .collect()
    }

    /// Loads, scores and stores one account, and syncs its alerts: one read of the store and
    /// one write.
    pub async fn rescore(
        &self,
        store: &dyn Store,
        ws: &WorkspaceId,
        account: &AccountId,
        day: NaiveDate,
        now: Timestamp,
    ) -> Result<Option<AccountScore>> {
        let usage = (day - chrono::Days::new(SCORING_DAYS), day.succ_opt().unwrap_or(day));
        let records = store.account_records(ws, account, usage, (day - chrono::Days::new(31), day)).await?;
        let before = |d: NaiveDate| records.scores.iter().rev().find(|p| p.day <= d).cloned();
        let mut previous = Previous::default();
        for (map, d) in [
            (&mut previous.last, day.pred_opt().unwrap_or(day)),
            (&mut previous.week_ago, day - chrono::Days::new(7)),
            (&mut previous.month_ago, day - chrono::Days::new(30)),
        ] {
            if let Some(p) = before(d) {
                map.insert(account.clone(), p);
            }
        }
        let Some(loaded) = account_history(account, records, usage.0, &self.settings) else { return Ok(None) };
        let results = self.rescore_one(&loaded, day, &previous, now);
        let Some(result) = results.into_iter().next() else { return Ok(None) };
        store.put_account_score(ws, &result.score, &result.alerts, now).await?;
        Ok(Some(result.score))
    }
}

/// `view` as JSON text, as `serde_json` writes the same fields in the same order, the fixed
/// keys written as they are (plain names, with nothing to escape) rather than escaped for
/// every account: the snapshot's and the health components' keys are most of an
/// explanation's strings. Written into a buffer each thread keeps (an explanation is about 2 KB) and copied out at
/// its size, rather than grown in a fresh allocation per account.
fn write_explanation(view: &Explanation) -> String {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(4096));
    }
    BUFFER.with_borrow_mut(|out| {
        out.clear();
        out.extend_from_slice(b"{\"health\":");
        write_health(out, &view.health);
        put(out, ",\"churn\":", &view.churn);
        put(out, ",\"expansion\":", &view.expansion);
        out.extend_from_slice(b",\"signals\":");
        write_signals(out, view.signals);
        put(out, ",\"models\":", &view.models);
        out.push(b'}');
        std::str::from_utf8(out).expect("JSON is UTF-8").to_owned()
    })
}

/// Adds to each forecast of a stored explanation that the rule-based prior made (`source`
/// `prior`) how it came about, as `prior`: the base rate, the rules that held (its drivers)
/// with the factor each multiplies the odds by, and the rules checked that did not hold
/// (see [`intelligence::churn::read_prior`]). What a reader needs to see why, when the
/// workspace has no model.
pub fn read_priors(explanation: &mut Value) {
    let read = |forecast: &mut Value, outcome: Outcome| {
        if forecast["source"] != "prior" {
            return;
        }
        let Some(horizon) = forecast["horizon_days"].as_u64().and_then(|h| u32::try_from(h).ok()) else { return };
        let drivers: Vec<(String, f64)> = forecast["drivers"]
            .as_array()
            .map(|ds| {
                ds.iter().filter_map(|d| Some((d["name"].as_str()?.to_owned(), d["contribution"].as_f64()?))).collect()
            })
            .unwrap_or_default();
        let reading = intelligence::churn::read_prior(outcome, horizon, &drivers);
        forecast["prior"] = serde_json::to_value(reading).unwrap_or(Value::Null);
    };
    if let Some(churn) = explanation.get_mut("churn").and_then(Value::as_array_mut) {
        churn.iter_mut().for_each(|f| read(f, Outcome::Churn));
    }
    if let Some(expansion) = explanation.get_mut("expansion").filter(|e| e.is_object()) {
        read(expansion, Outcome::Expansion);
    }
}

/// `raw` as it is, then `value` as JSON.
fn put(out: &mut Vec<u8>, raw: &str, value: &impl serde::Serialize) {
    out.extend_from_slice(raw.as_bytes());
    serde_json::to_writer(&mut *out, value).expect("an explanation serializes");
}

/// An account's [`Snapshot`] as JSON, its fields in their order (as its `Serialize` writes
/// them).
fn write_signals(out: &mut Vec<u8>, s: &Snapshot) {
    put(out, "{\"events_7d\":", &s.events_7d);
    put(out, ",\"events_28d\":", &s.events_28d);
    put(out, ",\"events_prev_28d\":", &s.events_prev_28d);
    put(out, ",\"events_90d\":", &s.events_90d);
    put(out, ",\"breadth_28d\":", &s.breadth_28d);
    put(out, ",\"active_days_28d\":", &s.active_days_28d);
    put(out, ",\"days_since_active\":", &s.days_since_active);
    put(out, ",\"active_users_28d\":", &s.active_users_28d);
    put(out, ",\"seats\":", &s.seats);
    put(out, ",\"tenure_days\":", &s.tenure_days);
    put(out, ",\"mrr\":", &s.mrr);
    put(out, ",\"mrr_90d_ago\":", &s.mrr_90d_ago);
    put(out, ",\"payment_failures_90d\":", &s.payment_failures_90d);
    put(out, ",\"limit_hits_28d\":", &s.limit_hits_28d);
    put(out, ",\"open_tickets\":", &s.open_tickets);
    put(out, ",\"escalated_open_tickets\":", &s.escalated_open_tickets);
    put(out, ",\"tickets_7d\":", &s.tickets_7d);
    put(out, ",\"tickets_28d\":", &s.tickets_28d);
    put(out, ",\"tickets_prev_28d\":", &s.tickets_prev_28d);
    put(out, ",\"csat_90d\":", &s.csat_90d);
    put(out, ",\"nps\":", &s.nps);
    out.push(b'}');
}

/// The health components as JSON, as their `Serialize` writes them (each component's
/// `component`, `score`, `weight`, `points` and `measures`, each measure's `name`, `value`
/// and `score`), the keys written as they are.
fn write_components(out: &mut Vec<u8>, components: &[intelligence::health::ComponentScore]) {
    out.push(b'[');
    for (i, c) in components.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"{\"component\":\"" } else { b",{\"component\":\"" });
        out.extend_from_slice(component_name(c.component).as_bytes());
        put(out, "\",\"score\":", &c.score);
        put(out, ",\"weight\":", &c.weight);
        put(out, ",\"points\":", &c.points);
        out.extend_from_slice(b",\"measures\":[");
        for (j, m) in c.measures.iter().enumerate() {
            put(out, if j == 0 { "{\"name\":" } else { ",{\"name\":" }, &m.name);
            put(out, ",\"value\":", &m.value);
            put(out, ",\"score\":", &m.score);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
    }
    out.push(b']');
}

/// The explanation's `health`, its fields in their order.
fn write_health(out: &mut Vec<u8>, h: &HealthView) {
    put(out, "{\"score\":", &h.score);
    put(out, ",\"band\":", &h.band);
    put(out, ",\"profile\":", &h.profile);
    out.extend_from_slice(b",\"components\":");
    write_components(out, h.components);
    put(out, ",\"trend\":", &h.trend);
    put(out, ",\"moved\":", &h.moved);
    put(out, ",\"since\":", &h.since);
    out.push(b'}');
}

fn component_name(c: Component) -> &'static str {
    match c {
        Component::Usage => "usage",
        Component::Engagement => "engagement",
        Component::Support => "support",
        Component::Financial => "financial",
        Component::Relationship => "relationship",
    }
}

/// Each component's change in points since an earlier score.
fn moved_since(before: &ScorePoint, now: &Health) -> Vec<Moved> {
    let points_before: HashMap<String, f64> = before
        .components
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect())
        .unwrap_or_default();
    let mut names: Vec<String> = points_before.keys().cloned().collect();
    for c in &now.components {
        let n = component_name(c.component).to_owned();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let now_points =
        |name: &str| now.components.iter().find(|c| component_name(c.component) == name).map_or(0.0, |c| c.points);
    let mut moves: Vec<(String, f64)> = names
        .into_iter()
        .map(|n| (n.clone(), now_points(&n) - points_before.get(&n).copied().unwrap_or(0.0)))
        .collect();
    moves.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    moves.into_iter().map(|(component, points)| Moved { component, points }).collect()
}

/// One account's history for rescoring it, out of its records: its subscriptions, usage of
/// days from `from` on and tickets. None when the workspace has no such account (neither
/// from events nor from billing records).
fn account_history(
    account: &AccountId,
    records: store::AccountRecords,
    from: NaiveDate,
    settings: &ScoringSettings,
) -> Option<Loaded> {
    let mut h = intelligence::churn::AccountHistory { account_id: account.to_string(), ..Default::default() };
    if let Some(a) = &records.account {
        load::take_traits(&mut h, &a.traits);
    }
    let mut currency = None;
    for s in &records.subscriptions {
        currency = Some(s.mrr.currency);
        h.periods.push(load::period(s));
    }
    h.tickets = records.tickets.iter().map(load::ticket).collect();
    let mut days: HashMap<String, Vec<(NaiveDate, u32)>> = HashMap::new();
    let mut metrics = std::collections::BTreeSet::new();
    for row in records.usage {
        let entry = days.entry(settings.feature_of(&row.metric).to_owned()).or_default();
        metrics.insert(row.metric);
        for (slot, &n) in row.events.iter().enumerate() {
            let d = row.month + chrono::Days::new(slot as u64);
            if n > 0 && d.month() == row.month.month() && d >= from {
                entry.push((d, n));
            }
        }
        h.people.extend(row.people.iter().map(|&(key, bits)| (key, row.month, bits)));
    }
    for (metric, d) in days {
        if settings.churn_events.iter().any(|e| settings::same_event(e, &metric)) {
            h.churned.extend(d.iter().map(|(day, _)| *day));
        }
        h.usage.insert(metric, intelligence::churn::Series::new(d));
    }
    // An account known only from billing records is still a customer to score.
    if records.account.is_none() && h.periods.is_empty() {
        return None;
    }
    Some(Loaded {
        ids: vec![account.clone()],
        histories: vec![h],
        currencies: vec![currency],
        sources: Default::default(),
        end: None,
        metrics: metrics.into_iter().collect(),
    })
}

/// Scores every account of the workspace as of the end of `day`, stores the scores and syncs
/// the alerts. Returns the run's summary and the scorer for rescoring single accounts.
pub async fn score_workspace(
    store: &dyn Store,
    ws: &WorkspaceId,
    day: NaiveDate,
    now: Timestamp,
) -> Result<(ScoreRun, Scorer)> {
    let settings = settings(store, ws).await?;
    let models = models(store, ws).await?;
    let usage_from = day - chrono::Days::new(SCORING_DAYS);
    let loaded = load(store, ws, usage_from, &settings).await?;
    let settings = settings.matched_to(&loaded.metrics);
    let previous = Previous::load(store, ws, day).await?;
    let earlier = kpis::earlier_cohorts(store, ws, &loaded, &settings, kpis::cohorts_from(day), usage_from).await?;
    let kpis = kpis::report(&loaded, &earlier, &settings, usage_from, day, now);
    drop(earlier);
    // Each chunk of scores is written while the next is scored: the run holds a few chunks,
    // not the workspace's explanations.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<AccountResult>>(2);
    let scoring = tokio::task::spawn_blocking(move || {
        Scorer::score_in_chunks(settings, models, &loaded, day, &previous, now, |chunk| {
            // Refused only once a write failed, which the run reports below.
            let _ = tx.blocking_send(chunk);
        })
    });
    let (mut accounts, mut signals) = (0, Vec::<AlertSignal>::new());
    let written: Result<()> = async {
        while let Some(chunk) = rx.recv().await {
            accounts += chunk.len();
            let mut scores: Vec<AccountScore> = Vec::with_capacity(chunk.len());
            for r in chunk {
                scores.push(r.score);
                signals.extend(r.alerts);
            }
            store.put_scores(ws, &scores).await?;
        }
        Ok(())
    }
    .await;
    drop(rx);
    let scorer = scoring.await.map_err(|e| Error::Invalid(format!("scoring stopped: {e}")))?;
    written?;
    let alerts = store.sync_alerts(ws, AlertScope::Workspace, &signals, now).await?;
    store.put_kpis(ws, &kpis).await?;
    let run = ScoreRun {
        day,
        accounts,
        alerts,
        churn_model: scorer.models.churn_id.clone(),
        expansion_model: scorer.models.expansion_id.clone(),
    };
    tracing::info!(workspace = %ws, accounts = run.accounts, opened = alerts.opened, resolved = alerts.resolved, "scored");
    Ok((run, scorer))
}

/// What scoring past days wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HistoryRun {
    /// The days scored, `[from, to)`.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Account-days written to the history.
    pub scores: usize,
}

/// Scores each day of `[from, to)`, oldest first, point-in-time (from what was known by the
/// day's end: usage, billing periods, tickets), with the workspace's settings and models of
/// now, and writes each account's score of the day to its history alone
/// ([`Store::put_score_history`]). A past day's run leaves the latest scores as they are and
/// opens, updates or resolves no alert and replaces no KPI: nothing journeys, messages or
/// tasks start from is written for a change that is long past. An account counts from the
/// day it was first seen or its first billing period began. This builds the trends of a
/// workspace that arrives with months of past data (an import, the demo), which would
/// otherwise start on its first day of scoring.
pub async fn score_past_days(
    store: &dyn Store,
    ws: &WorkspaceId,
    from: NaiveDate,
    to: NaiveDate,
    now: Timestamp,
) -> Result<HistoryRun> {
    let settings = settings(store, ws).await?;
    let models = models(store, ws).await?;
    let loaded = load(store, ws, from - chrono::Days::new(SCORING_DAYS), &settings).await?;
    let settings = settings.matched_to(&loaded.metrics);
    let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d < to).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<AccountScore>>(2);
    let scoring = tokio::task::spawn_blocking(move || {
        let (mut settings, mut models) = (settings, models);
        for day in days {
            let known = known_by(&loaded, day);
            let scorer = Scorer::score_in_chunks(
                settings,
                models,
                known.as_ref().unwrap_or(&loaded),
                day,
                &Previous::default(),
                now,
                |chunk| {
                    // Refused only once a write failed, which the run reports below.
                    let _ = tx.blocking_send(chunk.into_iter().map(|r| r.score).collect());
                },
            );
            (settings, models) = (scorer.settings, scorer.models);
        }
    });
    let mut scores = 0;
    let written: Result<()> = async {
        // Days of a small workspace are written together.
        let mut pending: Vec<AccountScore> = Vec::new();
        while let Some(chunk) = rx.recv().await {
            scores += chunk.len();
            pending.extend(chunk);
            if pending.len() >= CHUNK {
                store.put_score_history(ws, &std::mem::take(&mut pending)).await?;
            }
        }
        store.put_score_history(ws, &pending).await?;
        Ok(())
    }
    .await;
    drop(rx);
    scoring.await.map_err(|e| Error::Invalid(format!("scoring stopped: {e}")))?;
    written?;
    tracing::info!(workspace = %ws, %from, %to, scores, "scored past days");
    Ok(HistoryRun { from, to, scores })
}

/// The accounts of `loaded` known by the end of `day` (first seen, or a billing period
/// begun, by then); none when that is all of them.
fn known_by(loaded: &Loaded, day: NaiveDate) -> Option<Loaded> {
    let known =
        |h: &AccountHistory| [h.first_seen, h.first_start()].into_iter().flatten().min().is_some_and(|d| d <= day);
    let keep: Vec<usize> = (0..loaded.ids.len()).filter(|&i| known(&loaded.histories[i])).collect();
    if keep.len() == loaded.ids.len() {
        return None;
    }
    Some(Loaded {
        ids: keep.iter().map(|&i| loaded.ids[i].clone()).collect(),
        histories: keep.iter().map(|&i| loaded.histories[i].clone()).collect(),
        currencies: keep.iter().map(|&i| loaded.currencies[i]).collect(),
        sources: loaded.sources,
        end: loaded.end,
        metrics: loaded.metrics.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelligence::churn::{ANY, AccountHistory, Period, Series};
    use intelligence::health::Component;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// Accounts over a year: those that `post` little churn, at any age; `noise` is
    /// unrelated to churn.
    fn world(n: usize) -> Vec<AccountHistory> {
        let mut rng = 7u64;
        let mut next = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) as f64 / (1u64 << 31) as f64
        };
        (0..n)
            .map(|i| {
                let rate = next() * 10.0;
                let start = day("2020-01-01") + chrono::Months::new((next() * 4.0) as u32);
                let months = if rate < 3.0 { 1 + (next() * 11.0) as u32 } else { 24 };
                let end = start + chrono::Months::new(months);
                let (mut post, mut noise) = (Vec::new(), Vec::new());
                let mut d = start;
                while d < end.min(day("2020-12-01")) {
                    if next() * 10.0 < rate {
                        post.push((d, 1 + (next() * 3.0) as u32));
                    }
                    if next() < 0.5 {
                        noise.push((d, 1 + (next() * 6.0) as u32));
                    }
                    d = d.succ_opt().unwrap();
                }
                let periods = (0..months)
                    .map(|m| {
                        let s = start + chrono::Months::new(m);
                        Period {
                            start: s,
                            end: Some(s + chrono::Months::new(1)),
                            mrr: 1000,
                            seats: 1,
                            term_months: None,
                        }
                    })
                    .collect();
                let any: Vec<(NaiveDate, u32)> = post.iter().chain(&noise).copied().collect();
                AccountHistory {
                    account_id: format!("{i:04}"),
                    periods,
                    usage: HashMap::from([
                        ("post".to_string(), Series::new(post)),
                        ("noise".to_string(), Series::new(noise)),
                        (ANY.to_string(), Series::new(any)),
                    ]),
                    ..Default::default()
                }
            })
            .collect()
    }

    #[test]
    fn a_retrained_model_replaces_the_active_one_only_when_it_does_as_well() {
        let accounts = world(500);
        let as_of = day("2020-12-01");
        let params = EnsembleParams::default();
        // The active model counts only the unrelated event: the default configuration wins.
        let weak = Trained::fit(
            &accounts,
            as_of,
            &CHURN_HORIZONS,
            &params,
            Outcome::Churn,
            FeatureSpec::events(vec!["noise".into()]),
        );
        let better = decide(&accounts, as_of, Outcome::Churn, &params, None, Some(&weak));
        assert_eq!(better.status, ModelStatus::Active, "{}", better.reason);
        let rival = better.card["active_model_on_the_same_holdout"]["horizons"][0]["auc"].as_f64().unwrap();
        let own = better.card["holdout"]["horizons"][0]["auc"].as_f64().unwrap();
        assert!(own > rival, "{own} vs {rival}");
        // A configuration that drops the telling event does not replace a good model.
        let worse =
            decide(&accounts, as_of, Outcome::Churn, &params, Some(vec!["noise".into()]), Some(&better.trained));
        assert_eq!(worse.status, ModelStatus::Rejected, "{}", worse.reason);
        assert!(worse.reason.contains("the active model stays"));
        // Too little history: the prior stays.
        let few = decide(&accounts[..20], as_of, Outcome::Churn, &params, None, None);
        assert_eq!(few.status, ModelStatus::Rejected);
        assert!(few.reason.starts_with("too little history"), "{}", few.reason);
        assert!(!few.trained.has_model());
    }

    #[test]
    fn a_run_hands_over_every_account_once_in_order_chunk_by_chunk() {
        let histories = world(CHUNK + 300);
        let loaded = Loaded {
            ids: histories.iter().map(|h| AccountId::parse(&h.account_id).unwrap()).collect(),
            currencies: vec![None; histories.len()],
            sources: intelligence::signals::Sources { subscriptions: true, ..Default::default() },
            end: None,
            histories,
            metrics: Vec::new(),
        };
        let models = Models {
            churn: prior_only(Outcome::Churn),
            expansion: prior_only(Outcome::Expansion),
            churn_id: None,
            expansion_id: None,
        };
        let (at, now) = (day("2020-11-30"), chrono::Utc::now());
        let mut chunks: Vec<Vec<AccountResult>> = Vec::new();
        let scorer = Scorer::score_in_chunks(
            ScoringSettings::default(),
            models,
            &loaded,
            at,
            &Previous::default(),
            now,
            |chunk| chunks.push(chunk),
        );
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [CHUNK, 300]);
        let all: Vec<AccountResult> = chunks.into_iter().flatten().collect();
        let ids: Vec<&AccountId> = all.iter().map(|r| &r.score.account_id).collect();
        assert_eq!(ids, loaded.ids.iter().collect::<Vec<_>>());
        // Each account on either side of the chunks' boundary scores as when rescored alone.
        for i in [0, CHUNK - 1, CHUNK, CHUNK + 299] {
            let one = Loaded {
                ids: vec![loaded.ids[i].clone()],
                histories: vec![loaded.histories[i].clone()],
                currencies: vec![None],
                sources: loaded.sources,
                end: None,
                metrics: Vec::new(),
            };
            let alone = scorer.rescore_one(&one, at, &Previous::default(), now);
            assert_eq!(alone[0].score, all[i].score, "account {i}");
            assert_eq!(alone[0].alerts, all[i].alerts);
        }
        assert!(all.iter().any(|r| !r.alerts.is_empty()), "the priors raise alerts somewhere");
    }

    #[test]
    fn threads_share_every_chunk_and_their_parts_read_back_in_order() {
        for (n, threads) in [(2 * CHUNK + 5, 2), (3 * CHUNK, 3), (CHUNK - 1, 2), (7, 4), (0, 2)] {
            let parts: Vec<Vec<usize>> =
                (0..threads).map(|t| (0..n.div_ceil(CHUNK)).flat_map(|c| share(n, c, t, threads)).collect()).collect();
            assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), n, "every account once");
            assert!(parts.iter().all(|p| p.len() <= parts[0].len()), "{n} on {threads}");
            assert_eq!(in_order(&parts, n).copied().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_explanation_is_written_as_its_fields_serialize() {
        use intelligence::health::{ComponentScore, MeasureScore};
        #[derive(serde::Serialize)]
        struct AsDerived<'a> {
            health: HealthAsDerived<'a>,
            churn: &'a [ForecastView<'a>],
            expansion: &'a Option<ForecastView<'a>>,
            signals: &'a Snapshot,
            models: &'a ModelsView<'a>,
        }
        #[derive(serde::Serialize)]
        struct HealthAsDerived<'a> {
            score: f64,
            band: &'a HealthBand,
            profile: &'a str,
            components: &'a [ComponentScore],
            trend: &'a Trend,
            moved: &'a Option<Vec<Moved>>,
            since: Option<NaiveDate>,
        }
        let snap = Snapshot {
            events_7d: 1,
            events_28d: 2,
            events_prev_28d: 3,
            events_90d: u64::MAX,
            breadth_28d: 5,
            active_days_28d: 6,
            days_since_active: Some(-7),
            active_users_28d: 8,
            seats: None,
            tenure_days: 10,
            mrr: -11,
            mrr_90d_ago: 12,
            payment_failures_90d: 13,
            limit_hits_28d: 14,
            open_tickets: 15,
            escalated_open_tickets: 16,
            tickets_7d: 17,
            tickets_28d: 18,
            tickets_prev_28d: 19,
            csat_90d: Some(0.1 + 0.2),
            nps: Some(f64::NAN),
        };
        let measure = |name: &str, value: f64| MeasureScore { name: name.into(), value, score: value / 3.0 };
        let components = vec![
            ComponentScore {
                component: Component::Usage,
                score: 71.25,
                weight: 0.4,
                points: 28.5,
                measures: vec![measure("events_28d", 12.0), measure("a \"quoted\" \\ name\n é", f64::INFINITY)],
            },
            ComponentScore {
                component: Component::Relationship,
                score: 0.0,
                weight: 0.6,
                points: -0.0,
                measures: vec![],
            },
        ];
        let drivers = [
            rules::Driver { name: "logins", contribution: 0.25 },
            rules::Driver { name: "x\ty", contribution: -1e-300 },
        ];
        let forecast = |h: u32| ForecastView {
            horizon_days: h,
            probability: 1.0 / 3.0,
            source: "model",
            drivers: drivers.to_vec(),
        };
        for (moved, since, expansion, churn) in [
            (None, None, None, vec![]),
            (
                Some(vec![Moved { component: "usage".into(), points: -2.5 }]),
                Some(day("2026-12-02")),
                Some(forecast(90)),
                vec![forecast(30), forecast(60)],
            ),
        ] {
            let view = Explanation {
                health: HealthView {
                    score: 64.125,
                    band: HealthBand::Neutral,
                    profile: "mature",
                    components: &components,
                    trend: Trend { vs_7_days_ago: Some(1.5), vs_30_days_ago: None },
                    moved,
                    since,
                },
                churn,
                expansion,
                signals: &snap,
                models: ModelsView { churn: Some("m_1"), expansion: None },
            };
            let derived = AsDerived {
                health: HealthAsDerived {
                    score: view.health.score,
                    band: &view.health.band,
                    profile: view.health.profile,
                    components: view.health.components,
                    trend: &view.health.trend,
                    moved: &view.health.moved,
                    since: view.health.since,
                },
                churn: &view.churn,
                expansion: &view.expansion,
                signals: view.signals,
                models: &view.models,
            };
            let written = write_explanation(&view);
            assert_eq!(written, serde_json::to_string(&derived).unwrap());
            assert!(serde_json::from_str::<Value>(&written).is_ok());
        }
    }

    #[test]
    fn a_prior_s_forecasts_say_how_they_came_about_and_a_model_s_are_left_as_they_are() {
        let mut explanation = json!({
            "churn": [
                {"horizon_days": 30, "probability": 0.0706, "source": "prior",
                 "drivers": [{"name": "usage down by half (77 to 38 events in 28 days)", "contribution": 0.9}]},
                {"horizon_days": 60, "probability": 0.2, "source": "model",
                 "drivers": [{"name": "active days (28 days)", "contribution": 0.4}]}
            ],
            "expansion": {"horizon_days": 90, "probability": 0.05, "source": "prior", "drivers": []}
        });
        read_priors(&mut explanation);
        let prior = &explanation["churn"][0]["prior"];
        assert!((prior["base_rate"].as_f64().unwrap() - 0.03).abs() < 1e-12);
        assert_eq!(prior["held"][0]["driver"], "usage down by half (77 to 38 events in 28 days)");
        assert!((prior["held"][0]["odds"].as_f64().unwrap() - 0.9f64.exp()).abs() < 1e-12);
        let not_held: Vec<&str> =
            prior["not_held"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(not_held, ["no activity for 30 days", "ticket surge", "payment failed", "negative feedback"]);
        assert!(explanation["churn"][1].get("prior").is_none(), "a model's forecast has its drivers");
        let expansion = &explanation["expansion"]["prior"];
        assert!(expansion["held"].as_array().unwrap().is_empty());
        assert_eq!(expansion["not_held"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn one_account_rescored_alone_scores_as_in_the_full_run() {
        let histories = world(400);
        let loaded = Loaded {
            ids: histories.iter().map(|h| AccountId::parse(&h.account_id).unwrap()).collect(),
            currencies: vec![None; histories.len()],
            sources: intelligence::signals::Sources { subscriptions: true, ..Default::default() },
            end: None,
            histories,
            metrics: vec!["noise".into(), "post".into()],
        };
        let at = day("2020-11-30");
        let spec = FeatureSpec::events(vec!["post".into(), "noise".into()]);
        let churn =
            Trained::fit(&loaded.histories, at, &CHURN_HORIZONS, &EnsembleParams::default(), Outcome::Churn, spec);
        assert!(churn.has_model());
        let models =
            Models { churn, expansion: prior_only(Outcome::Expansion), churn_id: Some("m".into()), expansion_id: None };
        let now = chrono::Utc::now();
        let (scorer, all) =
            Scorer::score_all(ScoringSettings::default(), models, &loaded, at, &Previous::default(), now);
        assert_eq!(all.len(), 400);
        for i in [0, 17, 123, 399] {
            let one = Loaded {
                ids: vec![loaded.ids[i].clone()],
                histories: vec![loaded.histories[i].clone()],
                currencies: vec![None],
                sources: loaded.sources,
                end: None,
                metrics: loaded.metrics.clone(),
            };
            let alone = scorer.rescore_one(&one, at, &Previous::default(), now);
            assert_eq!(alone[0].score, all[i].score, "account {i}");
            assert_eq!(alone[0].alerts, all[i].alerts);
        }
        // Accounts covered at the date have churn forecasts from the model, with drivers.
        let covered = all.iter().filter(|r| r.score.churn_30d.is_some()).count();
        assert!(covered > 100, "{covered}");
        let sample = all.iter().find(|r| r.score.churn_30d.is_some()).unwrap();
        assert_eq!(sample.score.explanation.to_value()["churn"][0]["source"], "model");
    }
}
