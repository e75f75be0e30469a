//! Account attributes as model features: what an account is (its channel, region, industry,
//! plan, contract type) beside what it does. Each value is read as known at the date: the
//! loader dates a static attribute (a trait whose value never changed in the workspace, such
//! as an imported account column) from before any history, and a changing one (a plan
//! upgraded) from each change. The chosen values are one-hot encoded, a few per attribute.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::churn::AccountHistory;

/// A trait's values over time, `(since, value)` ordered by `since`; a static attribute's one
/// value is dated [`NaiveDate::MIN`].
pub type ValueHistory = Vec<(NaiveDate, String)>;

/// The value known at `d`: the last one set before it.
pub fn value_at(history: &ValueHistory, d: NaiveDate) -> Option<&str> {
    let known = history.partition_point(|(since, _)| *since < d);
    known.checked_sub(1).map(|i| history[i].1.as_str())
}

/// One attribute of a model's rows: its trait and the values that get a feature each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeFeature {
    pub key: String,
    pub values: Vec<String>,
}

/// Most values one attribute contributes, and most distinct values an attribute may have
/// (more is an identifier or a measurement, not a category).
const MAX_VALUES: usize = 8;
const MAX_DISTINCT: usize = 50;
/// A value held by accounts of which at least this share have churned by the end of the
/// history describes the churn (a status, a cancellation reason, recorded as things stand
/// now), not the account: its attribute is left out, since its other values say the opposite
/// just as surely.
const OUTCOME_SHARE: f64 = 0.95;

/// The attributes worth features for rows before `before`, as seen on the accounts with
/// history by then: traits most of them have, with a handful of values, none of which marks
/// the accounts that have churned by `end` (the end of the history); per attribute the values
/// held by at least 1% of those accounts (and five), most common first.
pub fn choose(accounts: &[AccountHistory], before: NaiveDate, end: NaiveDate) -> Vec<AttributeFeature> {
    let known: Vec<&AccountHistory> = accounts.iter().filter(|a| a.first_start().is_some_and(|s| s < before)).collect();
    // Per attribute and value: (accounts holding it, of which had churned by then).
    let mut held: BTreeMap<&str, HashMap<&str, (usize, usize)>> = BTreeMap::new();
    for a in &known {
        let churned = !a.active_at(end);
        for (key, history) in &a.attributes {
            if let Some(v) = value_at(history, before) {
                let e = held.entry(key).or_default().entry(v).or_default();
                e.0 += 1;
                e.1 += usize::from(churned);
            }
        }
    }
    let least = (known.len() / 100).max(5);
    let mut out = Vec::new();
    for (key, values) in held {
        let holders: usize = values.values().map(|v| v.0).sum();
        let outcome = values.values().any(|&(n, c)| n >= 5 && c as f64 >= OUTCOME_SHARE * n as f64);
        if holders * 2 < known.len() || !(2..=MAX_DISTINCT).contains(&values.len()) || outcome {
            continue;
        }
        let mut ranked: Vec<(&str, usize)> =
            values.into_iter().filter(|(_, (n, _))| *n >= least).map(|(v, (n, _))| (v, n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ranked.truncate(MAX_VALUES);
        if !ranked.is_empty() {
            out.push(AttributeFeature {
                key: key.to_owned(),
                values: ranked.into_iter().map(|(v, _)| v.to_owned()).collect(),
            });
        }
    }
    out
}

impl AttributeFeature {
    /// The feature names: `channel = web`, ...
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.values.iter().map(|v| format!("{} = {v}", self.key))
    }

    /// One value per name: 1 for the value `account` had at `d`, 0 for the others.
    pub fn encode(&self, account: &AccountHistory, d: NaiveDate, row: &mut Vec<f64>) {
        let now = account.attributes.get(&self.key).and_then(|h| value_at(h, d));
        row.extend(self.values.iter().map(|v| f64::from(now == Some(v.as_str()))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::churn::Period;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// An account paying from January, leaving at `churn` if given, with attributes.
    fn account(id: usize, churn: Option<&str>, attributes: &[(&str, ValueHistory)]) -> AccountHistory {
        AccountHistory {
            account_id: id.to_string(),
            periods: vec![Period {
                start: day("2020-01-01"),
                end: churn.map(day),
                mrr: 1000,
                seats: 1,
                term_months: None,
            }],
            attributes: attributes.iter().map(|(k, h)| (k.to_string(), h.clone())).collect(),
            ..Default::default()
        }
    }

    fn fixed(v: &str) -> ValueHistory {
        vec![(NaiveDate::MIN, v.to_owned())]
    }

    #[test]
    fn values_are_read_as_known_at_the_date() {
        let plan = vec![(day("2020-02-10"), "starter".to_owned()), (day("2020-04-01"), "team".to_owned())];
        assert_eq!(value_at(&plan, day("2020-02-10")), None, "set that day: known from the next");
        assert_eq!(value_at(&plan, day("2020-03-01")), Some("starter"));
        assert_eq!(value_at(&plan, day("2020-04-02")), Some("team"));
        assert_eq!(value_at(&fixed("web"), day("2020-01-01")), Some("web"));
    }

    #[test]
    fn attributes_most_accounts_have_are_chosen_and_outcomes_are_not() {
        let before = day("2020-06-01");
        let mut accounts = Vec::new();
        for i in 0..200 {
            let churned = i % 4 == 0;
            let channel = ["web", "appstore", "partner"][i % 3];
            let mut attributes = vec![
                ("channel", fixed(channel)),
                // An identifier: a value per account.
                ("name", fixed(&format!("Company {i}"))),
                // Recorded as the account stands now: it gives the churn away.
                ("status", fixed(if churned { "cancelled" } else { "active" })),
                ("plan", vec![(day("2020-01-01"), "starter".to_owned())]),
            ];
            if i % 2 == 0 {
                // Upgraded in April: rows before then see the old plan.
                attributes[3].1.push((day("2020-04-01"), "team".into()));
            }
            if i % 10 == 0 {
                // Too few accounts say this.
                attributes.push(("referrer", fixed("friend")));
            }
            accounts.push(account(i, churned.then_some("2020-05-01"), &attributes));
        }
        let chosen = choose(&accounts, before, day("2020-12-01"));
        let keys: Vec<&str> = chosen.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["channel", "plan"]);
        assert_eq!(chosen[0].values, ["appstore", "web", "partner"], "most common first, ties by name");
        assert_eq!(chosen[1].values, ["starter", "team"]);

        let encode = |a: &AccountHistory, d: &str| {
            let mut row = Vec::new();
            chosen.iter().for_each(|f| f.encode(a, day(d), &mut row));
            row
        };
        assert_eq!(encode(&accounts[2], "2020-03-01"), [0.0, 0.0, 1.0, 1.0, 0.0], "partner; starter in March");
        assert_eq!(encode(&accounts[2], "2020-05-01"), [0.0, 0.0, 1.0, 0.0, 1.0], "team from April");
        assert_eq!(encode(&AccountHistory::default(), "2020-05-01"), [0.0; 5], "nothing known, nothing set");
        let names: Vec<String> = chosen.iter().flat_map(|a| a.names()).collect();
        assert_eq!(names[..2], ["channel = appstore", "channel = web"]);
    }
}
