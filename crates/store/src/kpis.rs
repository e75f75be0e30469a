//! The CS KPIs as last computed for a workspace (by each scoring run): one row per KPI and
//! calendar month, its numerator and denominator kept so that every figure can be traced
//! (the MRR lost over the MRR at the month's start, the accounts activated over the new
//! accounts, ...).

use chrono::NaiveDate;
use domain::{Currency, Timestamp};
use serde::Serialize;

string_enum!(
    /// What a KPI row measures: `gross_mrr_churn` (churned and contracted MRR over the
    /// month's starting MRR), `logo_churn` (accounts lost over the accounts paying at the
    /// month's start), `nrr` (the month's cohort's MRR at its end over its MRR at its start),
    /// `nrr_year` (the MRR at the month's end of the accounts paying twelve months before, over
    /// theirs then), `activation` (new accounts of the month that reached activation over the
    /// new accounts whose window has passed).
    Kpi {
        GrossMrrChurn = "gross_mrr_churn",
        LogoChurn = "logo_churn",
        Nrr = "nrr",
        NrrYear = "nrr_year",
        Activation = "activation",
    }
);

/// One KPI for one calendar month.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiMonth {
    pub kpi: Kpi,
    /// The month's first day.
    pub month: NaiveDate,
    pub numerator: f64,
    pub denominator: f64,
}

impl KpiMonth {
    /// The ratio; none when nothing was measured (no MRR, no new account).
    pub fn value(&self) -> Option<f64> {
        (self.denominator > 0.0).then(|| self.numerator / self.denominator)
    }
}

/// A workspace's KPIs as of one computation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KpiReport {
    pub computed_at: Timestamp,
    /// The currency the revenue KPIs are in (the workspace's main one); none without revenue.
    pub currency: Option<Currency>,
    /// By KPI, then month, oldest first.
    pub months: Vec<KpiMonth>,
}

impl KpiReport {
    /// One KPI's months, oldest first.
    pub fn series(&self, kpi: Kpi) -> impl Iterator<Item = &KpiMonth> {
        self.months.iter().filter(move |m| m.kpi == kpi)
    }
}

/// Every KPI, in the order they are shown.
pub const KPIS: [Kpi; 5] = [Kpi::Activation, Kpi::GrossMrrChurn, Kpi::LogoChurn, Kpi::Nrr, Kpi::NrrYear];
