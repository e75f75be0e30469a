//! The customer success KPIs a team is judged by, from accounts' billing periods and usage:
//! gross MRR churn, logo churn and net revenue retention per calendar month, and the share
//! of new accounts that reached activation.
//!
//! Point-in-time: an account's MRR at an instant is the sum of the periods covering it
//! ([`AccountHistory::mrr_at`]: a period counts from its start, up to but not including its
//! end), so a month's figures are those of its first day against those of the next month's
//! first day, whatever was recorded later about other times.

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::churn::AccountHistory;

/// One calendar month's revenue movements of the accounts paying on its first day (the
/// cohort), in minor units.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RevenueMonth {
    /// The month's first day.
    pub month: NaiveDate,
    /// The cohort's MRR on the first day.
    pub starting_mrr: i64,
    /// MRR added by cohort accounts paying more at the month's end.
    pub expansion: i64,
    /// MRR lost by cohort accounts paying less, but still paying.
    pub contraction: i64,
    /// MRR of cohort accounts paying nothing at the month's end.
    pub churned: i64,
    /// MRR of accounts that paid nothing on the first day and something at the end.
    pub new: i64,
    pub starting_accounts: u64,
    pub churned_accounts: u64,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

impl RevenueMonth {
    /// (churned + contraction) / starting MRR.
    pub fn gross_mrr_churn(&self) -> Option<f64> {
        ratio((self.churned + self.contraction) as f64, self.starting_mrr as f64)
    }

    /// Cohort accounts lost / cohort accounts.
    pub fn logo_churn(&self) -> Option<f64> {
        ratio(self.churned_accounts as f64, self.starting_accounts as f64)
    }

    /// (starting + expansion - contraction - churned) / starting MRR: what the month's
    /// cohort pays at its end for each unit it paid at its start.
    pub fn nrr(&self) -> Option<f64> {
        ratio(self.retained_mrr() as f64, self.starting_mrr as f64)
    }

    pub fn retained_mrr(&self) -> i64 {
        self.starting_mrr + self.expansion - self.contraction - self.churned
    }
}

/// The first day of `d`'s month.
pub fn month_of(d: NaiveDate) -> NaiveDate {
    d.with_day(1).expect("every month has a first day")
}

/// The `n` complete calendar months before `today`'s, oldest first.
pub fn complete_months(today: NaiveDate, n: u32) -> Vec<NaiveDate> {
    let current = month_of(today);
    (1..=n).rev().filter_map(|k| current.checked_sub_months(Months::new(k))).collect()
}

/// Each of `months`' movements over `accounts`.
pub fn revenue_months<'a>(
    accounts: impl Iterator<Item = &'a AccountHistory> + Clone,
    months: &[NaiveDate],
) -> Vec<RevenueMonth> {
    months
        .iter()
        .map(|&month| {
            let end = month + Months::new(1);
            let mut m = RevenueMonth { month, ..Default::default() };
            for a in accounts.clone() {
                let (from, to) = (a.mrr_at(month), a.mrr_at(end));
                if from > 0 {
                    m.starting_mrr += from;
                    m.starting_accounts += 1;
                    if to == 0 {
                        m.churned += from;
                        m.churned_accounts += 1;
                    } else if to > from {
                        m.expansion += to - from;
                    } else {
                        m.contraction += from - to;
                    }
                } else if to > 0 {
                    m.new += to;
                }
            }
            m
        })
        .collect()
}

/// Net revenue retention over the twelve months to `end` (a month's first day): the MRR on
/// `end` of the accounts paying twelve months before, over what they paid then.
/// `(retained, starting)` in minor units.
pub fn trailing_nrr<'a>(accounts: impl Iterator<Item = &'a AccountHistory>, end: NaiveDate) -> (i64, i64) {
    let start = end - Months::new(12);
    accounts.fold((0, 0), |(kept, began), a| {
        let then = a.mrr_at(start);
        if then > 0 { (kept + a.mrr_at(end), began + then) } else { (kept, began) }
    })
}

/// When a new account counts as activated: within `within_days` of its first activity, at
/// least `key_events` of the workspace's key events and at least `people` distinct people
/// active. A workspace sets it in its scoring settings (`activation`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivationRule {
    pub key_events: u64,
    pub people: u64,
    pub within_days: u32,
}

impl Default for ActivationRule {
    fn default() -> Self {
        ActivationRule { key_events: 5, people: 2, within_days: 14 }
    }
}

/// New accounts of a month (first seen in it) whose window has passed, and how many of them
/// reached activation in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ActivationMonth {
    pub month: NaiveDate,
    pub accounts: u64,
    pub activated: u64,
}

impl ActivationMonth {
    pub fn rate(&self) -> Option<f64> {
        ratio(self.activated as f64, self.accounts as f64)
    }
}

/// Whether `a`, first seen on `first`, reached `rule` within its window.
pub fn activated(a: &AccountHistory, first: NaiveDate, key_events: &[String], rule: &ActivationRule) -> bool {
    let end = first + chrono::Days::new(u64::from(rule.within_days));
    let events: u64 = key_events.iter().map(|k| a.series(k).window(first, end)).sum();
    events >= rule.key_events && a.active_people(first, end) >= rule.people
}

/// Accounts first seen on or after `from` (each with the day it was first seen) by month,
/// oldest first; an account counts once its window has passed by `today`. Months from
/// `from`'s to `today`'s, each present even when empty.
pub fn activation_months<'a>(
    accounts: impl Iterator<Item = (&'a AccountHistory, NaiveDate)>,
    key_events: &[String],
    rule: &ActivationRule,
    from: NaiveDate,
    today: NaiveDate,
) -> Vec<ActivationMonth> {
    let mut months = Vec::new();
    let mut m = month_of(from);
    while m <= today {
        months.push(ActivationMonth { month: m, ..Default::default() });
        m = m + Months::new(1);
    }
    for (a, first) in accounts {
        if first < from || first + chrono::Days::new(u64::from(rule.within_days)) > today {
            continue;
        }
        let Some(slot) = months.iter_mut().find(|x| x.month == month_of(first)) else { continue };
        slot.accounts += 1;
        if activated(a, first, key_events, rule) {
            slot.activated += 1;
        }
    }
    months
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::churn::{ANY, Period, Series};

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn paying(periods: &[(&str, Option<&str>, i64)]) -> AccountHistory {
        AccountHistory {
            periods: periods
                .iter()
                .map(|&(start, end, mrr)| Period {
                    start: day(start),
                    end: end.map(day),
                    mrr,
                    seats: 1,
                    term_months: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_month_splits_into_expansion_contraction_churn_and_new() {
        // March 2026: a pays 100 all month; b goes 200 -> 300 on the 10th; c 400 -> 100 on
        // the 20th; d (50) ends on the 15th; e starts at 80 on the 5th; f ends on April 1st,
        // so it is lost by April 1st; g starts on April 2nd: April's new MRR, not March's.
        let accounts = [
            paying(&[("2026-01-01", None, 100)]),
            paying(&[("2026-02-01", Some("2026-03-10"), 200), ("2026-03-10", None, 300)]),
            paying(&[("2026-01-15", Some("2026-03-20"), 400), ("2026-03-20", None, 100)]),
            paying(&[("2025-06-01", Some("2026-03-15"), 50)]),
            paying(&[("2026-03-05", None, 80)]),
            paying(&[("2025-12-01", Some("2026-04-01"), 70)]),
            paying(&[("2026-04-02", None, 999)]),
        ];
        let m = &revenue_months(accounts.iter(), &[day("2026-03-01")])[0];
        assert_eq!(
            *m,
            RevenueMonth {
                month: day("2026-03-01"),
                starting_mrr: 100 + 200 + 400 + 50 + 70,
                expansion: 100,
                contraction: 300,
                churned: 50 + 70,
                new: 80,
                starting_accounts: 5,
                churned_accounts: 2,
            }
        );
        // Hand-computed: gross churn (120 + 300) / 820; logo churn 2 / 5; NRR (820 + 100 -
        // 300 - 120) / 820 = 500 / 820.
        assert!((m.gross_mrr_churn().unwrap() - 420.0 / 820.0).abs() < 1e-12);
        assert_eq!(m.logo_churn(), Some(0.4));
        assert!((m.nrr().unwrap() - 500.0 / 820.0).abs() < 1e-12);
    }

    #[test]
    fn a_month_nobody_paid_in_has_no_rates() {
        let m = &revenue_months([paying(&[("2026-03-05", None, 80)])].iter(), &[day("2026-03-01")])[0];
        assert_eq!((m.new, m.gross_mrr_churn(), m.logo_churn(), m.nrr()), (80, None, None, None));
    }

    #[test]
    fn trailing_nrr_follows_the_cohort_of_a_year_before() {
        let accounts = [
            paying(&[("2025-01-01", Some("2025-09-01"), 100), ("2025-09-01", None, 150)]),
            paying(&[("2025-02-01", Some("2025-12-01"), 300)]),
            paying(&[("2025-05-01", None, 1_000)]),
        ];
        // On 2026-03-01, the cohort of 2025-03-01 (a and b, 400 then) pays 150.
        assert_eq!(trailing_nrr(accounts.iter(), day("2026-03-01")), (150, 400));
    }

    #[test]
    fn months_are_the_complete_ones_before_today() {
        assert_eq!(complete_months(day("2026-03-15"), 3), [day("2025-12-01"), day("2026-01-01"), day("2026-02-01")]);
    }

    fn using(events: &[(&str, &str, u32)], people: &[(u64, &str)]) -> AccountHistory {
        let mut usage: std::collections::HashMap<String, Vec<(NaiveDate, u32)>> = Default::default();
        for &(name, d, n) in events {
            usage.entry(name.into()).or_default().push((day(d), n));
            usage.entry(ANY.into()).or_default().push((day(d), n));
        }
        AccountHistory {
            usage: usage.into_iter().map(|(k, v)| (k, Series::new(v))).collect(),
            people: people
                .iter()
                .map(|&(key, d)| {
                    let d = day(d);
                    (key, month_of(d), 1u32 << d.day0())
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn activation_counts_key_events_and_people_within_the_window() {
        let rule = ActivationRule { key_events: 3, people: 2, within_days: 14 };
        let keys = ["Report Created".to_owned()];
        // Enough: three reports by two people in the first 14 days (the 14th day, the 15th
        // of March, is out).
        let yes = using(
            &[("Report Created", "2026-03-01", 2), ("Report Created", "2026-03-14", 1)],
            &[(1, "2026-03-01"), (2, "2026-03-14")],
        );
        // Too late: the third report on the 15th.
        let late = using(
            &[("Report Created", "2026-03-01", 2), ("Report Created", "2026-03-15", 1)],
            &[(1, "2026-03-01"), (2, "2026-03-02")],
        );
        // Alone: one person.
        let alone = using(&[("Report Created", "2026-03-02", 5)], &[(1, "2026-03-02")]);
        // Not key events.
        let other = using(&[("Logged In", "2026-03-02", 9)], &[(1, "2026-03-02"), (2, "2026-03-03")]);
        assert!(activated(&yes, day("2026-03-01"), &keys, &rule));
        assert!(!activated(&late, day("2026-03-01"), &keys, &rule));
        assert!(!activated(&alone, day("2026-03-01"), &keys, &rule));
        assert!(!activated(&other, day("2026-03-01"), &keys, &rule));
        // By month: March's four (their windows passed by April 20th); one of April, first
        // seen on the 10th, still in its window; one before `from`, left out.
        let april = using(&[("Report Created", "2026-04-10", 9)], &[(1, "2026-04-10"), (2, "2026-04-10")]);
        let months = activation_months(
            [
                (&yes, day("2026-03-01")),
                (&late, day("2026-03-01")),
                (&alone, day("2026-03-02")),
                (&other, day("2026-03-02")),
                (&april, day("2026-04-10")),
                (&yes, day("2026-02-27")),
            ]
            .into_iter(),
            &keys,
            &rule,
            day("2026-03-01"),
            day("2026-04-20"),
        );
        assert_eq!(
            months,
            [
                ActivationMonth { month: day("2026-03-01"), accounts: 4, activated: 1 },
                ActivationMonth { month: day("2026-04-01"), accounts: 0, activated: 0 },
            ]
        );
        assert_eq!(months[0].rate(), Some(0.25));
        assert_eq!(months[1].rate(), None);
    }
}
