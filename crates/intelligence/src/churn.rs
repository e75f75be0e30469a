//! Churn: labels from subscription history, point-in-time features from daily usage, and
//! the time-based evaluation that a model card reports.
//!
//! An account churns when its paid coverage ends: the end of a subscription period after
//! which no period covers the account. A forecast at date `d` sees only what was known at
//! `d`: usage of days before `d`, periods that started on or before `d` (and of those, only
//! whether they still run at `d`, not when they will end).

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::attributes::AttributeFeature;
use crate::model::{Ensemble, EnsembleParams, Matrix, metrics};

/// A billing period of one of the account's subscriptions: it covers `[start, end)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Period {
    pub start: NaiveDate,
    /// `None` while it runs with no end known.
    pub end: Option<NaiveDate>,
    /// Monthly recurring revenue in minor units.
    pub mrr: i64,
    /// Seats (the subscription's quantity).
    pub seats: i64,
    /// The billing term in months (12 for a yearly contract), when the billing system says.
    pub term_months: Option<u32>,
}

/// A metric's daily counts as running totals, so that any window is two lookups.
#[derive(Clone, Debug, Default)]
pub struct Series {
    origin: Option<NaiveDate>,
    /// `origin` as a day number (days from the common era), for window arithmetic in
    /// integers.
    origin_day: i32,
    /// `totals[i]`: the events of the days before `origin + i`.
    totals: Vec<u64>,
}

impl Series {
    /// From `(day, events)` in any order (rollups come sorted: then nothing is sorted).
    pub fn new(mut days: Vec<(NaiveDate, u32)>) -> Series {
        if !days.is_sorted() {
            days.sort_unstable();
        }
        let Some(&(origin, _)) = days.first() else { return Series::default() };
        let origin_day = origin.num_days_from_ce();
        let span = (days.last().expect("non-empty").0.num_days_from_ce() - origin_day) as usize + 1;
        let mut daily = vec![0u64; span];
        for (d, n) in days {
            daily[(d.num_days_from_ce() - origin_day) as usize] += n as u64;
        }
        let mut totals = Vec::with_capacity(span + 1);
        totals.push(0);
        for n in daily {
            totals.push(totals.last().expect("starts with 0") + n);
        }
        Series { origin: Some(origin), origin_day, totals }
    }

    /// Days from the origin to `day`.
    fn offset(&self, day: NaiveDate) -> i64 {
        i64::from(day.num_days_from_ce() - self.origin_day)
    }

    /// Events of the days before `day`.
    fn before(&self, day: NaiveDate) -> u64 {
        if self.origin.is_none() {
            return 0;
        }
        let i = self.offset(day);
        if i <= 0 { 0 } else { self.totals[(i as usize).min(self.totals.len() - 1)] }
    }

    /// Events of the days in `[from, to)`.
    pub fn window(&self, from: NaiveDate, to: NaiveDate) -> u64 {
        self.before(to).saturating_sub(self.before(from))
    }

    /// The first day with events.
    pub fn first_day(&self) -> Option<NaiveDate> {
        self.origin
    }

    /// The last day before `day` with any events.
    pub fn last_day_before(&self, day: NaiveDate) -> Option<NaiveDate> {
        let origin = self.origin?;
        let total = self.before(day);
        if total == 0 {
            return None;
        }
        // The first prefix that holds every event before `day` ends with the last active day.
        let j = self.totals.partition_point(|&t| t < total);
        Some(origin + chrono::Days::new(j as u64 - 1))
    }

    /// Days in `[from, to)` with any events: the days whose running total grows.
    pub fn active_days(&self, from: NaiveDate, to: NaiveDate) -> u64 {
        if self.origin.is_none() {
            return 0;
        }
        let first = self.offset(from).max(0) as usize;
        // `totals` ends with the last active day: days after it add nothing.
        let end = (self.offset(to).max(0) as usize).min(self.totals.len() - 1);
        (first..end).filter(|&i| self.totals[i + 1] > self.totals[i]).count() as u64
    }
}

/// What is known of one account over the workspace's history.
#[derive(Clone, Debug, Default)]
pub struct AccountHistory {
    pub account_id: String,
    pub periods: Vec<Period>,
    /// By metric.
    pub usage: HashMap<String, Series>,
    /// Each person's active days: `(person key, first of the month, a bit per day)`.
    pub people: Vec<(u64, NaiveDate, u32)>,
    pub tickets: Vec<crate::signals::TicketFact>,
    /// The account's numeric traits (`nps`, ...), as they are now.
    pub traits: HashMap<String, f64>,
    /// Days of explicit churn events (an `account_churned` event, say).
    pub churned: Vec<NaiveDate>,
    /// Its categorical traits (channel, region, plan, ...) as known over time.
    pub attributes: HashMap<String, crate::attributes::ValueHistory>,
    /// The day it was first seen (its first event), when known.
    pub first_seen: Option<NaiveDate>,
}

/// The bits of a month's day slots (slot 0 is `month`, up to the month's end) that fall in
/// `[from, to)`.
fn window_mask(month: NaiveDate, from: NaiveDate, to: NaiveDate) -> u32 {
    use chrono::Datelike;
    let next = month.with_day(1).and_then(|first| first.checked_add_months(chrono::Months::new(1)));
    let in_month = next.map_or(31, |n| (n - month).num_days()).clamp(0, 31);
    let lo = (from - month).num_days().clamp(0, in_month);
    let hi = (to - month).num_days().clamp(0, in_month);
    let bits = |n: i64| (1u32 << n) - 1;
    bits(hi) & !bits(lo)
}

static EMPTY: Series = Series { origin: None, origin_day: 0, totals: Vec::new() };

impl AccountHistory {
    /// Whether the account is a customer at `d`: a period covers it or, for an account
    /// without billing records, it has been active before and has not churned explicitly.
    pub fn active_at(&self, d: NaiveDate) -> bool {
        if self.periods.is_empty() {
            return self.series(ANY).first_day().is_some_and(|f| f <= d) && self.churned.iter().all(|&c| c > d);
        }
        self.periods.iter().any(|p| p.start <= d && p.end.is_none_or(|e| d < e))
    }

    /// The first period's start or, without billing records, the first day of activity.
    pub fn first_start(&self) -> Option<NaiveDate> {
        self.periods.iter().map(|p| p.start).min().or_else(|| self.series(ANY).first_day())
    }

    /// Eligible for a forecast at `d`: a customer at `d`, with at least a day of history.
    pub fn eligible(&self, d: NaiveDate) -> bool {
        self.active_at(d) && self.first_start().is_some_and(|s| s < d)
    }

    /// The first day in `(d, as_of]` on which the account stops being covered, if any: the
    /// end of a period that no other period continues.
    /// An explicit churn event counts too: the earlier of the two.
    pub fn churn_after(&self, d: NaiveDate, as_of: NaiveDate) -> Option<NaiveDate> {
        let mut ends: Vec<NaiveDate> =
            self.periods.iter().filter_map(|p| p.end).filter(|&e| e > d && e <= as_of).collect();
        ends.sort_unstable();
        let coverage = ends.into_iter().find(|&e| !self.active_at(e));
        let explicit = self.churned.iter().copied().filter(|&c| c > d && c <= as_of).min();
        coverage.into_iter().chain(explicit).min()
    }

    /// Monthly recurring revenue at `d`, in minor units.
    pub fn mrr_at(&self, d: NaiveDate) -> i64 {
        self.periods.iter().filter(|p| p.start <= d && p.end.is_none_or(|e| d < e)).map(|p| p.mrr).sum()
    }

    pub fn seats_at(&self, d: NaiveDate) -> i64 {
        self.periods.iter().filter(|p| p.start <= d && p.end.is_none_or(|e| d < e)).map(|p| p.seats).sum()
    }

    /// The billing term of the latest period started on or before `d`, if known.
    pub fn term_at(&self, d: NaiveDate) -> Option<u32> {
        self.periods.iter().filter(|p| p.start <= d).max_by_key(|p| p.start).and_then(|p| p.term_months)
    }

    /// Days since the first period started (0 before it).
    pub fn tenure_days(&self, d: NaiveDate) -> i64 {
        self.first_start().map_or(0, |s| (d - s).num_days().max(0))
    }

    /// A metric's daily counts (empty for one never seen).
    pub fn series(&self, metric: &str) -> &Series {
        self.usage.get(metric).unwrap_or(&EMPTY)
    }

    /// Distinct people active on days in `[from, to)`.
    pub fn active_people(&self, from: NaiveDate, to: NaiveDate) -> u64 {
        let mut keys: Vec<u64> = Vec::new();
        // Rows come grouped by month: the mask of the window's days is worked out once each.
        let mut last: Option<(NaiveDate, u32)> = None;
        for &(key, month, bits) in &self.people {
            let mask = match last {
                Some((m, mask)) if m == month => mask,
                _ => {
                    let mask = window_mask(month, from, to);
                    last = Some((month, mask));
                    mask
                }
            };
            if bits & mask != 0 {
                keys.push(key);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys.len() as u64
    }

    /// The first day in `(d, as_of]` on which the account pays more than at `d` (more MRR
    /// or more seats), if any.
    pub fn expansion_after(&self, d: NaiveDate, as_of: NaiveDate) -> Option<NaiveDate> {
        let (mrr, seats) = (self.mrr_at(d), self.seats_at(d));
        let mut starts: Vec<NaiveDate> =
            self.periods.iter().map(|p| p.start).filter(|&s| s > d && s <= as_of).collect();
        starts.sort_unstable();
        starts.into_iter().find(|&s| self.mrr_at(s) > mrr || self.seats_at(s) > seats)
    }

    /// Whether `outcome` happens within `(d, d + h]`, as known at `as_of`.
    fn outcome_within(&self, outcome: Outcome, d: NaiveDate, h: u32, as_of: NaiveDate) -> bool {
        let end = d + chrono::Days::new(h as u64);
        match outcome {
            Outcome::Churn => self.churn_after(d, as_of),
            Outcome::Expansion => self.expansion_after(d, as_of),
        }
        .is_some_and(|day| day <= end)
    }
}

/// What a model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Paid coverage ends.
    Churn,
    /// The account starts paying more: more MRR or more seats.
    Expansion,
}

/// All activity, whatever the event: its days are the active days. The name the rollups give
/// it (`store::usage::ANY`; this crate does no IO and does not depend on the store).
pub const ANY: &str = "$any";

/// The features after the key events', in this order. Fixed features are only ever appended
/// (before the attributes): a model stored before an addition reads the columns it was
/// trained on (see `Trained::forecast`).
const FIXED_FEATURES: [&str; 4] = ["active days (28 days)", "tenure days", "MRR", "billing term (months)"];

/// Which features a workspace's model uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// The key events: counted over 28 days, and at their 90-day rate.
    pub metrics: Vec<String>,
    /// The account attributes, one-hot encoded after the rest.
    #[serde(default)]
    pub attributes: Vec<AttributeFeature>,
}

impl FeatureSpec {
    /// Key events and no attributes.
    pub fn events(metrics: Vec<String>) -> FeatureSpec {
        FeatureSpec { metrics, attributes: Vec::new() }
    }

    /// These key events with the account attributes worth a feature before `before`, in a
    /// history that ends at `end`.
    pub fn with_attributes(self, accounts: &[AccountHistory], before: NaiveDate, end: NaiveDate) -> FeatureSpec {
        FeatureSpec { attributes: crate::attributes::choose(accounts, before, end), ..self }
    }

    /// The `n` most frequent events before `before`: the default key events.
    pub fn most_frequent(accounts: &[AccountHistory], before: NaiveDate, n: usize) -> FeatureSpec {
        let mut totals: HashMap<&str, u64> = HashMap::new();
        for a in accounts {
            for (metric, series) in &a.usage {
                if !metric.starts_with('$') {
                    *totals.entry(metric).or_default() += series.before(before);
                }
            }
        }
        let mut ranked: Vec<(&str, u64)> = totals.into_iter().filter(|(_, n)| *n > 0).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        FeatureSpec::events(ranked.into_iter().take(n).map(|(m, _)| m.to_owned()).collect())
    }

    pub fn names(&self) -> Vec<String> {
        (0..self.width()).map(|i| self.name(i)).collect()
    }

    /// How many features a row has.
    pub fn width(&self) -> usize {
        self.metrics.len() * 2 + FIXED_FEATURES.len() + self.attributes.iter().map(|a| a.values.len()).sum::<usize>()
    }

    /// The name of the `i`-th feature of a row: each key event over 28 days, each at its
    /// 90-day rate, then the fixed features, then each attribute's values.
    pub fn name(&self, i: usize) -> String {
        let k = self.metrics.len();
        if i < k {
            return format!("{} (28 days)", self.metrics[i]);
        } else if i < 2 * k {
            return format!("{} (per 28 days over 90)", self.metrics[i - k]);
        } else if i < 2 * k + FIXED_FEATURES.len() {
            return FIXED_FEATURES[i - 2 * k].to_owned();
        }
        let mut j = i - 2 * k - FIXED_FEATURES.len();
        for a in &self.attributes {
            if j < a.values.len() {
                return format!("{} = {}", a.key, a.values[j]);
            }
            j -= a.values.len();
        }
        panic!("feature {i} of a row of {}", self.width())
    }

    /// The features of `account` at `d`, from what was known at `d` only.
    pub fn row(&self, account: &AccountHistory, d: NaiveDate) -> Vec<f64> {
        let days = |n: i64| d - chrono::Days::new(n as u64);
        let tenure = account.first_start().map(|s| (d - s).num_days().max(0)).unwrap_or(0);
        let empty = Series::default();
        let series = |m: &str| account.usage.get(m).unwrap_or(&empty);
        let mut row: Vec<f64> = self.metrics.iter().map(|m| series(m).window(days(28), d) as f64).collect();
        let span = tenure.clamp(1, 90) as f64;
        row.extend(self.metrics.iter().map(|m| series(m).window(days(90), d) as f64 / span * 28.0));
        row.push(series(ANY).active_days(days(28), d) as f64);
        row.push(tenure as f64);
        row.push(account.mrr_at(d) as f64);
        // A term contract ends only at its renewal: a yearly account cannot leave this month
        // the way a monthly one can. The term is known when the period starts.
        row.push(account.term_at(d).map_or(0.0, f64::from));
        for a in &self.attributes {
            a.encode(account, d, &mut row);
        }
        row
    }
}

/// The first of each month in `[from, to]`.
pub fn month_starts(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    use chrono::Datelike;
    let mut d = NaiveDate::from_ymd_opt(from.year(), from.month(), 1).expect("a first of month");
    if d < from {
        d = d + chrono::Months::new(1);
    }
    let mut out = Vec::new();
    while d <= to {
        out.push(d);
        d = d + chrono::Months::new(1);
    }
    out
}

/// One horizon's line of a model card.
#[derive(Clone, Debug, Serialize)]
pub struct HorizonCard {
    pub horizon_days: u32,
    pub train_rows: usize,
    pub train_churned: usize,
    pub test_rows: usize,
    pub test_churned: usize,
    pub auc: f64,
    pub pr_auc: f64,
    pub top_decile_lift: f64,
    pub calibration_error: f64,
    /// The same metrics for ranking by tenure alone (newest first): what behaviour adds.
    pub tenure_auc: f64,
    /// Features by their share of the model's weight and gain.
    pub importances: Vec<(String, f64)>,
}

/// A model card: how the churn model did on the months after `test_from`, trained only on
/// what was known before.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCard {
    pub as_of: NaiveDate,
    pub test_from: NaiveDate,
    pub features: FeatureSpec,
    pub horizons: Vec<HorizonCard>,
}

/// Rows at the observation dates for horizon `h`, labelled: `(matrix, labels, account index
/// per row)`, ordered by account then date.
fn rows(
    spec: &FeatureSpec,
    accounts: &[AccountHistory],
    dates: &[NaiveDate],
    h: u32,
    as_of: NaiveDate,
    outcome: Outcome,
) -> (Matrix, Vec<bool>, Vec<usize>) {
    let mut x = Matrix::new(spec.names());
    let (mut y, mut who) = (Vec::new(), Vec::new());
    for (i, a) in accounts.iter().enumerate() {
        for &d in dates {
            let horizon_end = d + chrono::Days::new(h as u64);
            if horizon_end > as_of || !a.eligible(d) {
                continue;
            }
            x.push(&spec.row(a, d));
            y.push(a.outcome_within(outcome, d, h, as_of));
            who.push(i);
        }
    }
    (x, y, who)
}

/// Trains on the observation dates whose horizon ends by `test_from` and tests on those from
/// `test_from` on, for each horizon. `accounts` should be ordered by account id: ties in the
/// lift are broken by that order, then by date.
pub fn evaluate(
    accounts: &[AccountHistory],
    as_of: NaiveDate,
    test_from: NaiveDate,
    horizons: &[u32],
    params: &EnsembleParams,
) -> ModelCard {
    let spec = FeatureSpec::most_frequent(accounts, test_from, 10).with_attributes(accounts, test_from, as_of);
    evaluate_with(accounts, as_of, test_from, horizons, params, Outcome::Churn, &spec)
}

/// [`evaluate`] for either outcome, with the features of `spec`.
pub fn evaluate_with(
    accounts: &[AccountHistory],
    as_of: NaiveDate,
    test_from: NaiveDate,
    horizons: &[u32],
    params: &EnsembleParams,
    outcome: Outcome,
    spec: &FeatureSpec,
) -> ModelCard {
    let first = accounts.iter().filter_map(|a| a.first_start()).min().unwrap_or(test_from);
    let dates = month_starts(first.succ_opt().unwrap_or(first), as_of);
    let mut cards = Vec::new();
    for &h in horizons {
        let train_dates: Vec<NaiveDate> =
            dates.iter().copied().filter(|&d| d + chrono::Days::new(h as u64) <= test_from).collect();
        let test_dates: Vec<NaiveDate> = dates.iter().copied().filter(|&d| d >= test_from).collect();
        let (x, y, who) = rows(spec, accounts, &train_dates, h, test_from, outcome);
        let (xt, yt, _) = rows(spec, accounts, &test_dates, h, as_of, outcome);
        let positives = y.iter().filter(|&&v| v).count();
        if positives == 0 || positives == y.len() || xt.rows() == 0 {
            continue;
        }
        let groups: Vec<u64> = who.iter().map(|&i| i as u64).collect();
        let model = Ensemble::fit(&x, &y, &groups, params);
        let p: Vec<f64> = (0..xt.rows()).map(|i| model.probability(xt.row(i))).collect();
        let tenure_col = spec.names().iter().position(|n| n == "tenure days").expect("tenure is a feature");
        let tenure: Vec<f64> = (0..xt.rows()).map(|i| -xt.get(i, tenure_col)).collect();
        let mut importances: Vec<(String, f64)> = spec.names().into_iter().zip(model.importances()).collect();
        importances.sort_by(|a, b| b.1.total_cmp(&a.1));
        cards.push(HorizonCard {
            horizon_days: h,
            train_rows: y.len(),
            train_churned: positives,
            test_rows: yt.len(),
            test_churned: yt.iter().filter(|&&v| v).count(),
            auc: metrics::auc(&p, &yt),
            pr_auc: metrics::average_precision(&p, &yt),
            top_decile_lift: metrics::top_decile_lift(&p, &yt),
            calibration_error: metrics::calibration_error(&p, &yt, 10),
            tenure_auc: metrics::auc(&tenure, &yt),
            importances,
        });
    }
    ModelCard { as_of, test_from, features: spec.clone(), horizons: cards }
}

impl ModelCard {
    /// The mean AUC over the horizons it has, for comparing two cards of the same holdout.
    pub fn mean_auc(&self) -> Option<f64> {
        let aucs: Vec<f64> = self.horizons.iter().map(|h| h.auc).filter(|a| a.is_finite()).collect();
        (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
    }
}

/// One account's forecast at a date, with what drives it.
#[derive(Clone, Debug, Serialize)]
pub struct Forecast {
    pub account_id: String,
    pub date: NaiveDate,
    pub horizon_days: u32,
    pub probability: f64,
    /// What raises the probability most, with its contribution to the log-odds: features of
    /// the model, or the rules of the prior that held.
    pub drivers: Vec<(String, f64)>,
    /// Whether the workspace's model made it (rather than the rule-based prior).
    pub from_model: bool,
}

/// Examples of an outcome a workspace's history needs before its model replaces the
/// rule-based prior.
pub const MIN_CHURN_EXAMPLES: usize = 30;

/// The transparent prior used until there is enough history: a base rate for the horizon,
/// raised by each rule that holds at `d`; the rules that held are the drivers.
pub fn prior(account: &AccountHistory, d: NaiveDate, horizon_days: u32) -> (f64, Vec<(String, f64)>) {
    let snap = crate::signals::snapshot(account, d, &crate::signals::SignalConfig::default());
    churn_prior(&snap, horizon_days)
}

/// A rule of a rule-based prior: the warning (or buying) sign it looks for and how much
/// it raises the log-odds when the sign holds. A forecast's driver is the rule's name, with
/// what was seen in parentheses when there is more to say.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PriorRule {
    pub name: &'static str,
    /// More of what it looks for, beside its name, for whoever reads a forecast it did not
    /// raise.
    pub when: &'static str,
    pub weight: f64,
}

/// The churn prior's rules, in the order they are checked.
pub const CHURN_RULES: [PriorRule; 5] = [
    PriorRule { name: "no activity for 30 days", when: "an account of 30 days or more", weight: 1.6 },
    PriorRule { name: "usage down by half", when: "of 10 events or more in the 28 days before", weight: 0.9 },
    PriorRule { name: "ticket surge", when: "3 tickets or more in 7 days, twice the usual week", weight: 0.7 },
    PriorRule { name: "payment failed", when: "in the last 90 days", weight: 1.0 },
    PriorRule {
        name: "negative feedback",
        when: "CSAT of 2.5 or less over 90 days, or an NPS of 6 or less",
        weight: 0.8,
    },
];

/// The expansion prior's rules.
pub const EXPANSION_RULES: [PriorRule; 3] = [
    PriorRule { name: "seats nearly full", when: "active people on nearly every seat", weight: 1.2 },
    PriorRule { name: "usage growing", when: "30% more events than the 28 days before, of 20 or more", weight: 0.7 },
    PriorRule { name: "plan limits hit", when: "in the last 28 days", weight: 1.0 },
];

/// A prior's probability with no sign holding: about 3% of a typical SaaS book churns in a
/// month, about 5% expands in a quarter.
pub fn base_rate(outcome: Outcome, horizon_days: u32) -> f64 {
    match outcome {
        Outcome::Churn => 1.0 - 0.97f64.powf(horizon_days as f64 / 30.0),
        Outcome::Expansion => 1.0 - 0.95f64.powf(horizon_days as f64 / 90.0),
    }
}

/// A rule that held for a forecast: its driver as the forecast names it, its contribution to
/// the log-odds, and the factor it multiplies the odds by.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldRule {
    pub driver: String,
    pub contribution: f64,
    pub odds: f64,
}

/// Why a prior's forecast is what it is: the base rate, the rules that held (its drivers)
/// and those checked that did not.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriorReading {
    pub base_rate: f64,
    pub held: Vec<HeldRule>,
    pub not_held: Vec<PriorRule>,
}

/// Reads a prior's forecast of `outcome` at `horizon_days` from its drivers (the rules that
/// held, as [`churn_prior`] and [`expansion_prior`] name them).
pub fn read_prior(outcome: Outcome, horizon_days: u32, drivers: &[(String, f64)]) -> PriorReading {
    let rules: &[PriorRule] = match outcome {
        Outcome::Churn => &CHURN_RULES,
        Outcome::Expansion => &EXPANSION_RULES,
    };
    let of_rule = |driver: &str, rule: &PriorRule| {
        driver == rule.name || driver.strip_prefix(rule.name).is_some_and(|rest| rest.starts_with(" ("))
    };
    PriorReading {
        base_rate: base_rate(outcome, horizon_days),
        held: drivers
            .iter()
            .map(|(driver, c)| HeldRule { driver: driver.clone(), contribution: *c, odds: c.exp() })
            .collect(),
        not_held: rules.iter().filter(|r| !drivers.iter().any(|(d, _)| of_rule(d, r))).copied().collect(),
    }
}

/// The churn prior of an account at a date: the base rate raised by each of
/// [`CHURN_RULES`] that holds.
pub fn churn_prior(s: &crate::signals::Snapshot, horizon_days: u32) -> (f64, Vec<(String, f64)>) {
    let [quiet, down, surge, payment, feedback] = CHURN_RULES;
    let mut drivers = Vec::new();
    if s.tenure_days >= 30 && s.days_since_active.is_none_or(|d| d >= 30) {
        drivers.push((quiet.name.to_string(), quiet.weight));
    } else if s.events_prev_28d >= 10 && (s.events_28d as f64) < s.events_prev_28d as f64 / 2.0 {
        drivers.push((
            format!("{} ({} to {} events in 28 days)", down.name, s.events_prev_28d, s.events_28d),
            down.weight,
        ));
    }
    let weekly_before = s.tickets_prev_28d as f64 / 4.0;
    if s.tickets_7d >= 3 && s.tickets_7d as f64 > 2.0 * weekly_before {
        drivers.push((format!("{} ({} tickets in 7 days)", surge.name, s.tickets_7d), surge.weight));
    }
    if s.payment_failures_90d > 0 {
        drivers.push((format!("{} ({} in 90 days)", payment.name, s.payment_failures_90d), payment.weight));
    }
    if s.csat_90d.is_some_and(|c| c <= 2.5) || s.nps.is_some_and(|n| n <= 6.0) {
        drivers.push((format!("{} (CSAT of 2.5 or less, or an NPS detractor)", feedback.name), feedback.weight));
    }
    prior_probability(base_rate(Outcome::Churn, horizon_days), drivers)
}

/// The expansion prior: the base rate raised by each of [`EXPANSION_RULES`] that holds.
pub fn expansion_prior(
    s: &crate::signals::Snapshot,
    config: &crate::signals::SignalConfig,
    horizon_days: u32,
) -> (f64, Vec<(String, f64)>) {
    let [seats, growing, limits] = EXPANSION_RULES;
    let mut drivers = Vec::new();
    if let Some(u) = s.seat_utilisation().filter(|&u| u >= config.seats_nearly_full * 100.0) {
        drivers.push((
            format!("{} ({} active of {} seats, {u:.0}%)", seats.name, s.active_users_28d, s.seats.unwrap_or(0)),
            seats.weight,
        ));
    }
    if let Some(t) = s.usage_trend().filter(|&t| t >= 30.0 && s.events_prev_28d >= 20) {
        drivers.push((format!("{} ({t:+.0}% in 28 days)", growing.name), growing.weight));
    }
    if s.limit_hits_28d > 0 {
        drivers.push((format!("{} ({} times in 28 days)", limits.name, s.limit_hits_28d), limits.weight));
    }
    prior_probability(base_rate(Outcome::Expansion, horizon_days), drivers)
}

fn prior_probability(base: f64, drivers: Vec<(String, f64)>) -> (f64, Vec<(String, f64)>) {
    use crate::model::{logit, sigmoid};
    let z = logit(base) + drivers.iter().map(|(_, w)| w).sum::<f64>();
    (sigmoid(z), drivers)
}

/// One horizon of a trained model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HorizonModel {
    pub horizon_days: u32,
    /// Observation rows it was trained on, and how many had the outcome.
    pub rows: usize,
    pub positives: usize,
    /// None while the history holds fewer than [`MIN_CHURN_EXAMPLES`] positives: the prior
    /// forecasts this horizon.
    pub model: Option<Ensemble>,
}

/// A workspace's model for one outcome: one ensemble per horizon, trained on every
/// observation date whose outcome was known at `trained_through`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trained {
    pub outcome: Outcome,
    pub spec: FeatureSpec,
    pub trained_through: NaiveDate,
    pub horizons: Vec<HorizonModel>,
}

impl Trained {
    pub fn fit(
        accounts: &[AccountHistory],
        at: NaiveDate,
        horizons: &[u32],
        params: &EnsembleParams,
        outcome: Outcome,
        spec: FeatureSpec,
    ) -> Trained {
        let first = accounts.iter().filter_map(|a| a.first_start()).min().unwrap_or(at);
        let dates = month_starts(first.succ_opt().unwrap_or(first), at);
        let mut models = Vec::new();
        for &h in horizons {
            let train: Vec<NaiveDate> =
                dates.iter().copied().filter(|&d| d + chrono::Days::new(h as u64) <= at).collect();
            let (x, y, who) = rows(&spec, accounts, &train, h, at, outcome);
            let positives = y.iter().filter(|&&v| v).count();
            let model = (positives >= MIN_CHURN_EXAMPLES && positives < y.len()).then(|| {
                let groups: Vec<u64> = who.iter().map(|&i| i as u64).collect();
                Ensemble::fit(&x, &y, &groups, params)
            });
            models.push(HorizonModel { horizon_days: h, rows: y.len(), positives, model });
        }
        Trained { outcome, spec, trained_through: at, horizons: models }
    }

    /// Whether any horizon has a model (rather than the prior).
    pub fn has_model(&self) -> bool {
        self.horizons.iter().any(|h| h.model.is_some())
    }

    /// The account's forecast at `at` for each horizon: the model's, with its top three
    /// drivers, or the prior's.
    pub fn forecast(
        &self,
        account: &AccountHistory,
        snap: &crate::signals::Snapshot,
        at: NaiveDate,
        config: &crate::signals::SignalConfig,
    ) -> Vec<Forecast> {
        self.outlooks(account, snap, at, config)
            .into_iter()
            .map(|o| Forecast {
                account_id: account.account_id.clone(),
                date: at,
                horizon_days: o.horizon_days,
                probability: o.probability,
                drivers: o.drivers(&self.spec).map(|(name, c)| (name.into_owned(), c)).collect(),
                from_model: o.from_model,
            })
            .collect()
    }

    /// [`Trained::forecast`] without the account and the date, the model's drivers not yet
    /// named: what a scoring run keeps of every account until it writes them.
    pub fn outlooks(
        &self,
        account: &AccountHistory,
        snap: &crate::signals::Snapshot,
        at: NaiveDate,
        config: &crate::signals::SignalConfig,
    ) -> Vec<Outlook> {
        let mut row = None;
        self.horizons
            .iter()
            .map(|h| match &h.model {
                Some(model) => {
                    let row = row.get_or_insert_with(|| self.spec.row(account, at));
                    // A model stored before a feature was added reads the columns it knew.
                    let explained = model.explain(&row[..model.features().min(row.len())]);
                    let (features, top) = top_drivers(&explained.contributions);
                    Outlook {
                        horizon_days: h.horizon_days,
                        probability: crate::model::sigmoid(explained.margin),
                        from_model: true,
                        features,
                        top,
                        rules: Vec::new(),
                    }
                }
                None => {
                    let (probability, rules) = match self.outcome {
                        Outcome::Churn => churn_prior(snap, h.horizon_days),
                        Outcome::Expansion => expansion_prior(snap, config, h.horizon_days),
                    };
                    Outlook {
                        horizon_days: h.horizon_days,
                        probability,
                        from_model: false,
                        features: [(0, 0.0); TOP_DRIVERS],
                        top: 0,
                        rules,
                    }
                }
            })
            .collect()
    }
}

/// The drivers a model's forecast shows.
const TOP_DRIVERS: usize = 3;

/// The features that raise the log-odds most, largest first (the first of equal ones first),
/// and how many there are: at most [`TOP_DRIVERS`] of those with a positive contribution.
fn top_drivers(contributions: &[f64]) -> ([(u32, f64); TOP_DRIVERS], u8) {
    let (mut top, mut len) = ([(0, 0.0); TOP_DRIVERS], 0);
    for (i, &c) in contributions.iter().enumerate().filter(|(_, c)| **c > 0.0) {
        // After every one at least as large: a stable sort's place.
        let at = top[..len].partition_point(|(_, t): &(u32, f64)| t.total_cmp(&c).is_ge());
        if at < TOP_DRIVERS {
            len = (len + 1).min(TOP_DRIVERS);
            top.copy_within(at..len - 1, at + 1);
            top[at] = (i as u32, c);
        }
    }
    (top, len as u8)
}

/// One horizon's forecast with its drivers, a model's named only when they are shown: a
/// scoring run keeps one per horizon of every account until the workspace's means are known,
/// and names (and their strings) for a million accounts' drivers cost more than the rest of
/// what it keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct Outlook {
    pub horizon_days: u32,
    pub probability: f64,
    /// Whether the workspace's model made it (rather than the rule-based prior).
    pub from_model: bool,
    /// The model's drivers, the first `top`: each feature's place in the spec and its
    /// contribution to the log-odds, largest first.
    features: [(u32, f64); TOP_DRIVERS],
    top: u8,
    /// The prior's drivers: the rules that held.
    rules: Vec<(String, f64)>,
}

impl Outlook {
    /// The drivers, named by the features of `spec` (the spec of the model that made it).
    pub fn drivers<'a>(&'a self, spec: &'a FeatureSpec) -> impl Iterator<Item = (std::borrow::Cow<'a, str>, f64)> {
        self.driver_places()
            .map(|(i, c)| (std::borrow::Cow::Owned(spec.name(i)), c))
            .chain(self.rules.iter().map(|(name, c)| (std::borrow::Cow::Borrowed(name.as_str()), *c)))
    }

    /// The model's drivers as the places of their features in its spec, with their
    /// contributions (none for the prior's forecast).
    pub fn driver_places(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.features[..self.top as usize].iter().map(|&(i, c)| (i as usize, c))
    }

    /// The prior's drivers: the rules that held (none for a model's forecast).
    pub fn rules(&self) -> &[(String, f64)] {
        &self.rules
    }
}

/// Trains, per horizon, on every observation date whose outcome is known at `at`, and
/// forecasts every account eligible at `at` (covered, with a day of history). A horizon
/// whose history holds fewer than [`MIN_CHURN_EXAMPLES`] churns is forecast by [`prior`].
pub fn predict(accounts: &[AccountHistory], at: NaiveDate, horizons: &[u32], params: &EnsembleParams) -> Vec<Forecast> {
    let spec = FeatureSpec::most_frequent(accounts, at, 10).with_attributes(accounts, at, at);
    predict_with(accounts, at, horizons, params, spec, &crate::signals::SignalConfig::default())
}

/// [`predict`] with the features of `spec` and the signals of `config`.
pub fn predict_with(
    accounts: &[AccountHistory],
    at: NaiveDate,
    horizons: &[u32],
    params: &EnsembleParams,
    spec: FeatureSpec,
    config: &crate::signals::SignalConfig,
) -> Vec<Forecast> {
    let trained = Trained::fit(accounts, at, horizons, params, Outcome::Churn, spec);
    let mut out: Vec<Forecast> = Vec::new();
    for a in accounts.iter().filter(|a| a.eligible(at)) {
        let snap = crate::signals::snapshot(a, at, config);
        out.extend(trained.forecast(a, &snap, at, config));
    }
    // By horizon, then account, as the file lists them.
    out.sort_by_key(|f| f.horizon_days);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn monthly(from: &str, months: u32, mrr: i64) -> Vec<Period> {
        (0..months)
            .map(|i| {
                let start = day(from) + chrono::Months::new(i);
                Period { start, end: Some(start + chrono::Months::new(1)), mrr, seats: 1, term_months: Some(1) }
            })
            .collect()
    }

    #[test]
    fn the_top_drivers_are_the_largest_positive_contributions_in_a_stable_order() {
        let sorted = |c: &[f64]| {
            let mut top: Vec<(u32, f64)> =
                c.iter().enumerate().filter(|(_, c)| **c > 0.0).map(|(i, &c)| (i as u32, c)).collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            top.truncate(TOP_DRIVERS);
            top
        };
        let mut rng = 11u64;
        let mut next = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) % 7
        };
        for n in 0..200 {
            // Few distinct values: ties, zeros and negatives are common.
            let c: Vec<f64> = (0..n % 13).map(|_| next() as f64 - 2.0).collect();
            let (top, len) = top_drivers(&c);
            assert_eq!(top[..len as usize], sorted(&c)[..], "{c:?}");
        }
        assert_eq!(top_drivers(&[f64::NAN, 1.0, f64::INFINITY, 0.5, 2.0]).0, [(2, f64::INFINITY), (4, 2.0), (1, 1.0)]);
    }

    #[test]
    fn an_account_churns_when_no_period_continues_its_coverage() {
        let a = AccountHistory { periods: monthly("2020-01-01", 3, 1000), ..Default::default() };
        assert_eq!(a.churn_after(day("2020-01-15"), day("2020-10-01")), Some(day("2020-04-01")));
        assert_eq!(a.churn_after(day("2020-01-15"), day("2020-03-31")), None, "not known by then");
        assert!(a.eligible(day("2020-02-01")) && !a.eligible(day("2020-01-01")), "a day of history first");
        assert!(!a.eligible(day("2020-04-01")));
        // A gap and a return: the first end with nothing after it is the churn.
        let mut b = a.clone();
        b.periods.extend(monthly("2020-06-01", 2, 1000));
        assert_eq!(b.churn_after(day("2020-04-15"), day("2020-10-01")), Some(day("2020-08-01")));
        assert_eq!(b.mrr_at(day("2020-02-10")), 1000);
    }

    #[test]
    fn an_explicit_churn_event_is_a_churn_with_or_without_billing() {
        let mut a = AccountHistory { periods: monthly("2020-01-01", 12, 1000), ..Default::default() };
        a.churned.push(day("2020-03-10"));
        assert_eq!(a.churn_after(day("2020-02-01"), day("2020-12-31")), Some(day("2020-03-10")));
        assert_eq!(a.churn_after(day("2020-03-10"), day("2020-12-31")), None, "nothing after it by then");
        // Without billing records: a customer from the first activity to the churn event.
        let usage = Series::new(vec![(day("2020-01-05"), 3), (day("2020-02-01"), 1)]);
        let b = AccountHistory {
            usage: HashMap::from([(ANY.to_string(), usage)]),
            churned: vec![day("2020-04-01")],
            ..Default::default()
        };
        assert!(!b.active_at(day("2020-01-04")) && b.active_at(day("2020-01-05")));
        assert!(b.eligible(day("2020-03-01")) && !b.eligible(day("2020-04-01")));
        assert_eq!(b.churn_after(day("2020-03-01"), day("2020-12-31")), Some(day("2020-04-01")));
    }

    #[test]
    fn features_at_a_date_never_see_what_came_after() {
        let usage = |days: &[(&str, u32)]| Series::new(days.iter().map(|&(d, n)| (day(d), n)).collect());
        let mut a = AccountHistory {
            account_id: "a".into(),
            periods: monthly("2020-01-01", 12, 1000),
            usage: HashMap::from([
                ("post".to_string(), usage(&[("2020-02-10", 3), ("2020-02-29", 1)])),
                (ANY.to_string(), usage(&[("2020-02-10", 3), ("2020-02-29", 1)])),
            ]),
            ..Default::default()
        };
        let spec = FeatureSpec::events(vec!["post".into()]);
        let at = day("2020-03-01");
        let before = spec.row(&a, at);
        assert_eq!(before[0], 4.0, "both days are in the 28 days before March 1st");
        assert_eq!(before[2], 2.0, "two active days");
        // Whatever happens from the date on changes nothing at the date.
        a.usage.insert("post".into(), usage(&[("2020-02-10", 3), ("2020-02-29", 1), ("2020-03-01", 50)]));
        a.usage.insert(ANY.into(), usage(&[("2020-02-10", 3), ("2020-02-29", 1), ("2020-03-01", 50)]));
        a.periods.push(Period { start: day("2020-03-01"), end: None, mrr: 5000, seats: 1, term_months: Some(12) });
        assert_eq!(spec.row(&a, at)[..3], before[..3]);
        assert_eq!(before[3], 60.0, "tenure in days");
        assert_eq!(before[5], 1.0, "a monthly term");
        assert_eq!(spec.row(&a, day("2020-03-02"))[5], 12.0, "the yearly term that started on March 1st");
    }

    #[test]
    fn windows_count_days_in_range_only() {
        let s = Series::new(vec![(day("2020-01-05"), 2), (day("2020-01-01"), 1), (day("2020-01-05"), 1)]);
        assert_eq!(s.window(day("2019-12-01"), day("2020-01-01")), 0);
        assert_eq!(s.window(day("2020-01-01"), day("2020-01-05")), 1);
        assert_eq!(s.window(day("2020-01-01"), day("2020-02-01")), 4);
        assert_eq!(s.active_days(day("2020-01-01"), day("2020-01-10")), 2);
        assert_eq!(Series::default().window(day("2020-01-01"), day("2020-02-01")), 0);
    }

    #[test]
    fn active_days_and_people_count_what_falls_in_the_window() {
        let days: Vec<(NaiveDate, u32)> = (0..70)
            .filter(|i| i % 3 != 1)
            .map(|i| (day("2020-01-20") + chrono::Days::new(i), 1 + i as u32 % 2))
            .collect();
        let s = Series::new(days.clone());
        // Person k is active on the days whose offset is a multiple of k + 1.
        let mut a = AccountHistory::default();
        for k in 0..5u64 {
            for (d, _) in
                days.iter().filter(|(d, _)| ((*d - day("2020-01-20")).num_days() as u64).is_multiple_of(k + 1))
            {
                let month = d.with_day(1).unwrap();
                a.people.push((k, month, 1 << (d.day() - 1)));
            }
        }
        a.people.sort_by_key(|&(_, month, _)| month);
        use chrono::Datelike;
        for (from, to) in [
            ("2020-01-01", "2020-05-01"),
            ("2020-01-29", "2020-02-02"),
            ("2020-02-28", "2020-03-02"),
            ("2020-03-29", "2020-04-01"),
            ("2020-02-10", "2020-02-11"),
            ("2020-05-01", "2020-06-01"),
        ] {
            let (from, to) = (day(from), day(to));
            let expected_days = days.iter().filter(|(d, _)| *d >= from && *d < to).count() as u64;
            assert_eq!(s.active_days(from, to), expected_days, "{from} to {to}");
            let mut people: Vec<u64> = a
                .people
                .iter()
                .filter(|&&(_, month, bits)| {
                    (0..31).any(|b| bits & (1 << b) != 0 && (from..to).contains(&(month + chrono::Days::new(b))))
                })
                .map(|p| p.0)
                .collect();
            people.dedup();
            people.sort_unstable();
            people.dedup();
            assert_eq!(a.active_people(from, to), people.len() as u64, "{from} to {to}");
        }
        assert_eq!(a.active_people(day("2020-02-10"), day("2020-02-11")), 2, "offset 21: persons 0 and 2");
    }

    /// Accounts signed up over eight months; those that use the product little churn after
    /// two to four months, the rest stay beyond the data.
    fn simulated() -> Vec<AccountHistory> {
        let mut accounts = Vec::new();
        let mut rng = 1u64;
        let mut next = || {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) as f64 / (1u64 << 31) as f64
        };
        for i in 0..600 {
            let rate = next() * 10.0;
            // Signed up over the first eight months; low usage churns after two to four
            // months, the rest stay beyond the data.
            let start = day("2020-01-01") + chrono::Months::new((next() * 8.0) as u32);
            let months = if rate < 3.0 { 2 + (next() * 3.0) as u32 } else { 24 };
            let mut days = Vec::new();
            let mut d = start;
            let end = start + chrono::Months::new(months);
            while d < end.min(day("2020-12-01")) {
                if next() * 10.0 < rate {
                    days.push((d, 1 + (next() * 3.0) as u32));
                }
                d = d.succ_opt().unwrap();
            }
            let first = start.to_string();
            accounts.push(AccountHistory {
                account_id: format!("{i:04}"),
                periods: monthly(&first, months, 1000),
                usage: HashMap::from([
                    ("post".to_string(), Series::new(days.clone())),
                    (ANY.to_string(), Series::new(days)),
                ]),
                ..Default::default()
            });
        }
        accounts
    }

    #[test]
    fn the_ranking_follows_the_behaviour_that_drives_churn() {
        // "Neural network test" style: accounts that stopped using the product rank above
        // those that use it more, when churn followed inactivity in the training months.
        let accounts = simulated();
        let card = evaluate(&accounts, day("2020-12-01"), day("2020-06-01"), &[30, 60], &EnsembleParams::default());
        for h in &card.horizons {
            assert!(h.train_churned > 10 && h.test_churned > 5, "{h:?}");
            assert!(h.auc > 0.8, "usage explains churn here: {h:?}");
            assert!(h.auc > h.tenure_auc, "behaviour adds to tenure");
        }
        assert_eq!(card.features.metrics, ["post"]);
    }

    #[test]
    fn below_the_history_threshold_the_prior_says_why() {
        use chrono::Datelike;
        let at = day("2020-05-01");
        let usage = |days: Vec<(NaiveDate, u32)>| HashMap::from([(ANY.to_string(), Series::new(days))]);
        let busy: Vec<(NaiveDate, u32)> = (1..120).map(|i| (day("2020-01-01") + chrono::Days::new(i), 3)).collect();
        let gone: Vec<(NaiveDate, u32)> = busy.iter().copied().filter(|(d, _)| *d < day("2020-03-15")).collect();
        let fading: Vec<(NaiveDate, u32)> = busy
            .iter()
            .map(|&(d, n)| (d, if d >= day("2020-04-03") && d.ordinal() % 4 != 0 { 0 } else { n }))
            .collect();
        let account = |id: &str, days| AccountHistory {
            account_id: id.into(),
            periods: monthly("2020-01-01", 12, 1000),
            usage: usage(days),
            ..Default::default()
        };
        let accounts = vec![account("busy", busy), account("gone", gone), account("fading", fading)];
        // Three accounts and no churn yet: too little history for a model.
        let forecasts = predict(&accounts, at, &[30], &EnsembleParams::default());
        let of = |id: &str| forecasts.iter().find(|f| f.account_id == id).unwrap();
        assert!(of("busy").drivers.is_empty());
        assert_eq!(of("gone").drivers[0].0, "no activity for 30 days");
        assert!(of("fading").drivers[0].0.starts_with("usage down by half"), "{:?}", of("fading"));
        assert!(of("gone").probability > of("fading").probability);
        assert!(of("fading").probability > of("busy").probability);
        assert!((of("busy").probability - 0.03).abs() < 1e-9, "the base rate for a month");
    }

    #[test]
    fn forecasts_cover_the_accounts_still_covered_and_name_their_drivers() {
        let accounts = simulated();
        let at = day("2020-09-01");
        let forecasts = predict(&accounts, at, &[30], &EnsembleParams::default());
        let eligible = accounts.iter().filter(|a| a.eligible(at)).count();
        assert_eq!(forecasts.len(), eligible);
        assert!(forecasts.iter().all(|f| f.probability > 0.0 && f.probability < 1.0 && f.date == at));
        // The quiet accounts are the risky ones, and usage is why.
        let usage = |f: &Forecast| {
            let a = accounts.iter().find(|a| a.account_id == f.account_id).unwrap();
            a.usage.get("post").map_or(0, |s| s.window(at - chrono::Days::new(28), at))
        };
        let mut by_risk: Vec<&Forecast> = forecasts.iter().collect();
        by_risk.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let top: Vec<u64> = by_risk.iter().take(10).map(|f| usage(f)).collect();
        let bottom: Vec<u64> = by_risk.iter().rev().take(10).map(|f| usage(f)).collect();
        assert!(top.iter().sum::<u64>() < bottom.iter().sum::<u64>(), "{top:?} vs {bottom:?}");
        assert!(
            by_risk[0].drivers.iter().any(|(name, _)| name.contains("post") || name.contains("active")),
            "{:?}",
            by_risk[0]
        );
    }

    #[test]
    fn a_prior_s_forecast_reads_back_as_its_base_rate_and_the_rules_that_held() {
        use crate::model::{logit, sigmoid};
        use crate::signals::Snapshot;
        let snap = Snapshot {
            tenure_days: 200,
            days_since_active: Some(2),
            events_28d: 30,
            events_prev_28d: 90,
            payment_failures_90d: 1,
            ..Default::default()
        };
        let (p, drivers) = churn_prior(&snap, 30);
        let reading = read_prior(Outcome::Churn, 30, &drivers);
        assert!((reading.base_rate - 0.03).abs() < 1e-12);
        let held: Vec<&str> = reading.held.iter().map(|h| h.driver.as_str()).collect();
        assert_eq!(held, ["usage down by half (90 to 30 events in 28 days)", "payment failed (1 in 90 days)"]);
        assert!((reading.held[1].odds - 1f64.exp()).abs() < 1e-12, "a weight of 1 multiplies the odds by e");
        let not_held: Vec<&str> = reading.not_held.iter().map(|r| r.name).collect();
        assert_eq!(not_held, ["no activity for 30 days", "ticket surge", "negative feedback"]);
        // The probability is the base rate's log-odds raised by what held, nothing else.
        let z = logit(reading.base_rate) + reading.held.iter().map(|h| h.contribution).sum::<f64>();
        assert!((sigmoid(z) - p).abs() < 1e-12);
        // Nothing held: the base rate, every rule checked and not seen.
        let calm = Snapshot {
            tenure_days: 200,
            days_since_active: Some(1),
            events_28d: 50,
            events_prev_28d: 50,
            ..Default::default()
        };
        let (p, drivers) = churn_prior(&calm, 90);
        let reading = read_prior(Outcome::Churn, 90, &drivers);
        assert!(reading.held.is_empty() && (p - reading.base_rate).abs() < 1e-12);
        assert_eq!(reading.not_held, CHURN_RULES);
        let (_, drivers) = expansion_prior(&Snapshot { limit_hits_28d: 2, ..calm }, &Default::default(), 90);
        let reading = read_prior(Outcome::Expansion, 90, &drivers);
        assert_eq!(reading.held[0].driver, "plan limits hit (2 times in 28 days)");
        assert_eq!(reading.not_held.iter().map(|r| r.name).collect::<Vec<_>>(), ["seats nearly full", "usage growing"]);
    }
}
