//! The CS KPIs of a workspace, computed with each scoring run from what it loaded (every
//! account's billing periods; usage of the last [`crate::SCORING_DAYS`] days) by the pure
//! formulas of [`intelligence::kpis`], and stored whole ([`store::Store::put_kpis`]).
//!
//! Revenue KPIs (gross MRR churn, logo churn, NRR by month; NRR over twelve months) cover the
//! last twelve complete months in the workspace's main currency: the one most MRR is in now.
//! Activation covers the new accounts (first seen) of the same twelve months and of this
//! one, each counted once its window has passed: those first seen within the usage a run
//! reads from it, the earlier ones from their first days' usage alone ([`earlier_cohorts`]),
//! so that the KPI's reach does not depend on how much usage scoring reads.

use chrono::{Datelike, Months, NaiveDate};
use domain::{AccountId, Currency, Timestamp, WorkspaceId};
use intelligence::churn::{AccountHistory, FeatureSpec, Series};
use intelligence::kpis::{activation_months, complete_months, month_of, revenue_months, trailing_nrr};
use std::collections::HashMap;
use store::{Kpi, KpiMonth, KpiReport, Store};

use crate::ScoringSettings;
use crate::load::Loaded;
use crate::settings::same_event;

/// The first day of the first month whose new accounts the activation KPI covers as of
/// `today`: that of the revenue KPIs' twelve complete months.
pub fn cohorts_from(today: NaiveDate) -> NaiveDate {
    complete_months(today, REVENUE_MONTHS).first().copied().unwrap_or_else(|| month_of(today))
}

/// The accounts of `loaded` first seen in `[from, usage_from)` (before the usage `loaded`
/// holds), each with its usage of the days of its activation window alone: what their
/// activation is counted from. One store read of their first months.
pub async fn earlier_cohorts(
    store: &dyn Store,
    ws: &WorkspaceId,
    loaded: &Loaded,
    settings: &ScoringSettings,
    from: NaiveDate,
    usage_from: NaiveDate,
) -> crate::Result<Vec<AccountHistory>> {
    let window = chrono::Days::new(u64::from(settings.activation.within_days));
    let mut ranges: Vec<(AccountId, NaiveDate, NaiveDate)> = Vec::new();
    let mut out: Vec<AccountHistory> = Vec::new();
    let mut index: HashMap<AccountId, usize> = HashMap::new();
    for (id, h) in loaded.ids.iter().zip(&loaded.histories) {
        let Some(first) = h.first_seen.filter(|f| *f >= from && *f < usage_from) else { continue };
        ranges.push((id.clone(), first, first + window));
        index.insert(id.clone(), out.len());
        out.push(AccountHistory { account_id: h.account_id.clone(), first_seen: Some(first), ..Default::default() });
    }
    if ranges.is_empty() {
        return Ok(out);
    }
    let mut days: HashMap<(usize, String), Vec<(NaiveDate, u32)>> = HashMap::new();
    for row in store.accounts_usage_each(ws, &ranges).await? {
        let Some(&i) = index.get(&row.account_id) else { continue };
        let (first, end) = (ranges[i].1, ranges[i].2);
        let entry = days.entry((i, settings.feature_of(&row.metric).to_owned())).or_default();
        for (slot, &n) in row.events.iter().enumerate() {
            let day = row.month + chrono::Days::new(slot as u64);
            if n > 0 && day.month() == row.month.month() && day >= first && day < end {
                entry.push((day, n));
            }
        }
        out[i].people.extend(row.people.iter().map(|&(key, bits)| (key, row.month, bits)));
    }
    for ((i, metric), mut d) in days {
        d.sort_unstable();
        let h = &mut out[i];
        if settings.churn_events.iter().any(|e| same_event(e, &metric)) {
            h.churned.extend(d.iter().map(|(day, _)| *day));
        }
        h.usage.insert(metric, Series::new(d));
    }
    Ok(out)
}

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

/// The KPIs as of `today` (`usage_from`: the first day of usage in `loaded`; `earlier`: the
/// accounts first seen before it, from [`cohorts_from`] on, as [`earlier_cohorts`] reads
/// them).
pub fn report(
    loaded: &Loaded,
    earlier: &[AccountHistory],
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
    // Accounts first seen within the usage read have it whole; the earlier ones come with
    // their first days.
    let within = loaded.histories.iter().filter_map(|h| Some((h, h.first_seen.filter(|f| *f >= usage_from)?)));
    let new = within.chain(earlier.iter().filter_map(|h| Some((h, h.first_seen?))));
    for m in activation_months(new, &key_events, &settings.activation, cohorts_from(today), today) {
        rows.push(row(Kpi::Activation, m.month, m.activated as f64, m.accounts as f64));
    }
    KpiReport { computed_at: now, currency, months: rows }
}
