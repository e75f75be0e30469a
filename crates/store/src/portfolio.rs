//! The whole portfolio at a glance, as the dashboard's overview shows it: scored accounts by
//! health and band, the MRR at risk and in the expansion pipeline, and how these moved by
//! day. Backends aggregate in SQL into [`ScoreGroup`]s; [`Portfolio::from_groups`] and
//! [`PortfolioDay::from_groups`] put them together alike for both.

use chrono::NaiveDate;
use domain::{AccountId, Currency, Money};
use serde::Serialize;

use crate::HealthBand;

/// The expansion propensity from which an account's MRR counts in the expansion pipeline.
pub const EXPANSION_PIPELINE_MIN: f64 = 0.5;

/// Scored accounts of one group: a day (for trends), a band, a tenth of the health range
/// (`bucket` 0 is [0, 10), 9 is [90, 100]) and a currency.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreGroup {
    pub day: Option<NaiveDate>,
    pub band: HealthBand,
    pub bucket: u8,
    pub currency: Option<Currency>,
    pub accounts: u64,
    /// Their MRR, in the currency's minor units.
    pub mrr: i64,
    /// The MRR of those whose expansion propensity is at least [`EXPANSION_PIPELINE_MIN`].
    pub expansion_mrr: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BandCounts {
    pub healthy: u64,
    pub neutral: u64,
    pub at_risk: u64,
}

impl BandCounts {
    fn add(&mut self, band: HealthBand, n: u64) {
        match band {
            HealthBand::Healthy => self.healthy += n,
            HealthBand::Neutral => self.neutral += n,
            HealthBand::AtRisk => self.at_risk += n,
        }
    }

    pub fn total(&self) -> u64 {
        self.healthy + self.neutral + self.at_risk
    }
}

/// An account whose band changed between two days.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BandChange {
    pub account_id: AccountId,
    pub name: Option<String>,
    pub from: HealthBand,
    pub to: HealthBand,
    pub health: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Portfolio {
    /// Scored accounts by tenth of the health range.
    pub histogram: [u64; 10],
    pub bands: BandCounts,
    /// The MRR of at-risk accounts, per currency (by currency code).
    pub mrr_at_risk: Vec<Money>,
    /// The MRR of accounts likely to expand, per currency.
    pub expansion_pipeline: Vec<Money>,
    /// Every scored account's MRR, per currency.
    pub mrr: Vec<Money>,
    /// Alerts not resolved.
    pub open_alerts: u64,
    pub open_tasks: u64,
    /// Accounts whose band changed after the day asked for, from the band before their latest
    /// change (at most 100, lowest health first).
    pub band_changes: Vec<BandChange>,
}

fn add_money(sums: &mut Vec<Money>, currency: Option<Currency>, minor: i64) {
    let Some(c) = currency else { return };
    if minor == 0 {
        return;
    }
    match sums.iter_mut().find(|m| m.currency == c) {
        Some(m) => m.minor += minor,
        None => {
            sums.push(Money::new(minor, c));
            sums.sort_by(|a, b| a.currency.as_str().cmp(b.currency.as_str()));
        }
    }
}

impl Portfolio {
    pub fn from_groups(groups: &[ScoreGroup]) -> Portfolio {
        let mut p = Portfolio::default();
        for g in groups {
            p.histogram[usize::from(g.bucket.min(9))] += g.accounts;
            p.bands.add(g.band, g.accounts);
            add_money(&mut p.mrr, g.currency, g.mrr);
            if g.band == HealthBand::AtRisk {
                add_money(&mut p.mrr_at_risk, g.currency, g.mrr);
            }
            add_money(&mut p.expansion_pipeline, g.currency, g.expansion_mrr);
        }
        p
    }
}

/// The portfolio as scored on one day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortfolioDay {
    pub day: NaiveDate,
    pub bands: BandCounts,
    pub mrr_at_risk: Vec<Money>,
    pub expansion_pipeline: Vec<Money>,
}

impl PortfolioDay {
    /// One per day that has groups, oldest first.
    pub fn from_groups(groups: &[ScoreGroup]) -> Vec<PortfolioDay> {
        let mut days: Vec<PortfolioDay> = Vec::new();
        for g in groups {
            let Some(day) = g.day else { continue };
            let at = match days.binary_search_by_key(&day, |d| d.day) {
                Ok(i) => i,
                Err(i) => {
                    let empty = BandCounts::default();
                    days.insert(
                        i,
                        PortfolioDay { day, bands: empty, mrr_at_risk: Vec::new(), expansion_pipeline: Vec::new() },
                    );
                    i
                }
            };
            let d = &mut days[at];
            d.bands.add(g.band, g.accounts);
            if g.band == HealthBand::AtRisk {
                add_money(&mut d.mrr_at_risk, g.currency, g.mrr);
            }
            add_money(&mut d.expansion_pipeline, g.currency, g.expansion_mrr);
        }
        days
    }
}

/// The bucket of a health score: its tenth of the range, 100 in the last.
pub fn health_bucket(health: f64) -> u8 {
    ((health / 10.0).floor().clamp(0.0, 9.0)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(day: Option<&str>, band: HealthBand, bucket: u8, n: u64, mrr: i64, exp: i64) -> ScoreGroup {
        ScoreGroup {
            day: day.map(|d| d.parse().unwrap()),
            band,
            bucket,
            currency: Some(Currency::parse("USD").unwrap()),
            accounts: n,
            mrr,
            expansion_mrr: exp,
        }
    }

    #[test]
    fn groups_add_up_to_the_portfolio() {
        let p = Portfolio::from_groups(&[
            g(None, HealthBand::AtRisk, 2, 3, 30_000, 0),
            g(None, HealthBand::AtRisk, 3, 1, 5_000, 5_000),
            g(None, HealthBand::Healthy, 9, 4, 80_000, 20_000),
            ScoreGroup { currency: None, ..g(None, HealthBand::Neutral, 5, 2, 0, 0) },
        ]);
        assert_eq!(p.histogram, [0, 0, 3, 1, 0, 2, 0, 0, 0, 4]);
        assert_eq!(p.bands, BandCounts { healthy: 4, neutral: 2, at_risk: 4 });
        let usd = |m| vec![Money::new(m, Currency::parse("USD").unwrap())];
        assert_eq!(p.mrr_at_risk, usd(35_000));
        assert_eq!(p.expansion_pipeline, usd(25_000));
        assert_eq!(p.mrr, usd(115_000));
    }

    #[test]
    fn days_come_out_oldest_first_whatever_the_order_in() {
        let days = PortfolioDay::from_groups(&[
            g(Some("2026-10-02"), HealthBand::AtRisk, 1, 2, 700, 0),
            g(Some("2026-10-01"), HealthBand::Healthy, 8, 5, 100, 100),
            g(Some("2026-10-02"), HealthBand::Healthy, 8, 4, 100, 0),
        ]);
        assert_eq!(days.iter().map(|d| d.day.to_string()).collect::<Vec<_>>(), ["2026-10-01", "2026-10-02"]);
        assert_eq!(days[1].bands, BandCounts { healthy: 4, neutral: 0, at_risk: 2 });
        assert_eq!(days[1].mrr_at_risk[0].minor, 700);
        assert_eq!(days[0].expansion_pipeline[0].minor, 100);
    }

    #[test]
    fn buckets_split_the_range_in_tenths() {
        assert_eq!([0.0, 9.99, 10.0, 55.0, 99.9, 100.0].map(health_bucket), [0, 0, 1, 5, 9, 9]);
    }
}
