//! The CS KPIs of a workspace, computed with each scoring run from what it loaded (every
//! account's billing periods; usage of the last [`crate::SCORING_DAYS`] days) by the pure
//! formulas of [`intelligence::kpis`], and stored whole ([`store::Store::put_kpis`]).
//!
//! Revenue KPIs (gross MRR churn, logo churn, NRR by month; NRR over twelve months) cover the
//! last twelve complete months in the workspace's main currency: the one most MRR is in now.
//! Activation covers the new accounts (first seen) of each month whose first day is in the
//! usage read, counted once their window has passed.

use chrono::{Months, NaiveDate};
use domain::{Currency, Timestamp};
use intelligence::churn::FeatureSpec;
use intelligence::kpis::{activation_months, complete_months, month_of, revenue_months, trailing_nrr};
use store::{Kpi, KpiMonth, KpiReport};

use crate::ScoringSettings;
use crate::load::Loaded;

/// Months of revenue KPIs.
pub const REVENUE_MONTHS: u32 = 12;

/// The currency most of the MRR on `today` is in.
fn main_currency(loaded: &Loaded, today: NaiveDate) -> Option<Currency> {
    let mut sums: Vec<(Currency, i64)> = Vec::new();
    for (h, c) in loaded.histories.iter().zip(&loaded.currencies) {
        let Some(c) = c else { continue };
        match sums.iter_mut().find(|(x, _)| x == c) {
            Some((_, s)) => *s += h.mrr_at(today),
            None => sums.push((*c, h.mrr_at(today))),
        }
    }
    sums.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.as_str().cmp(b.0.as_str())));
    sums.first().map(|(c, _)| *c)
}

/// The KPIs as of `today` (`usage_from`: the first day of usage in `loaded`).
pub fn report(
    loaded: &Loaded,
    settings: &ScoringSettings,
    usage_from: NaiveDate,
    today: NaiveDate,
    now: Timestamp,
) -> KpiReport {
    let currency = main_currency(loaded, today);
    let paying = || {
        loaded
            .histories
            .iter()
            .zip(&loaded.currencies)
            .filter(move |(_, c)| c.is_some() && **c == currency)
            .map(|(h, _)| h)
    };
    let mut rows = Vec::new();
    let row = |kpi, month, numerator: f64, denominator: f64| KpiMonth { kpi, month, numerator, denominator };
    let months = complete_months(today, REVENUE_MONTHS);
    if currency.is_some() {
        for m in revenue_months(paying(), &months) {
            let start = m.starting_mrr as f64;
            rows.push(row(Kpi::GrossMrrChurn, m.month, (m.churned + m.contraction) as f64, start));
            rows.push(row(Kpi::LogoChurn, m.month, m.churned_accounts as f64, m.starting_accounts as f64));
            rows.push(row(Kpi::Nrr, m.month, m.retained_mrr() as f64, start));
        }
        for &m in &months {
            let (kept, began) = trailing_nrr(paying(), m + Months::new(1));
            rows.push(row(Kpi::NrrYear, m, kept as f64, began as f64));
        }
    }
    let key_events = settings.key_events.clone().unwrap_or_else(|| {
        FeatureSpec::most_frequent(&loaded.histories, today.succ_opt().unwrap_or(today), 10).metrics
    });
    // Cohorts from the first whole month of usage read.
    let from = if month_of(usage_from) == usage_from { usage_from } else { month_of(usage_from) + Months::new(1) };
    let new = loaded.histories.iter().filter_map(|h| Some((h, h.first_seen?)));
    for m in activation_months(new, &key_events, &settings.activation, from, today) {
        rows.push(row(Kpi::Activation, m.month, m.activated as f64, m.accounts as f64));
    }
    KpiReport { computed_at: now, currency, months: rows }
}
