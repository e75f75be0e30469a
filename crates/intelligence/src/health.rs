//! The health score: 0 to 100 per account, from weighted components, each built from
//! measures normalised within the workspace, with an explanation that adds up to the score.
//!
//! A measure's value becomes a score by its percentile among the workspace's accounts that
//! have it (the best gets 100, whichever way "best" points), so a component means the same in
//! a workspace of heavy users as in one of light users. A component is the mean of its
//! measures that the account has; the score is the components' weighted mean, where the
//! weight of a component the account has no measure for is shared among the others in
//! proportion to theirs. Weights come from the first profile whose tenure range holds the
//! account (onboarding accounts are judged on other things than mature ones).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Usage,
    Engagement,
    Support,
    Financial,
    Relationship,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    pub name: String,
    pub component: Component,
    pub direction: Direction,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    /// Accounts younger than this many days (none: any age).
    pub below_tenure_days: Option<f64>,
    pub weights: Vec<(Component, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Healthy,
    Neutral,
    AtRisk,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthConfig {
    pub measures: Vec<Measure>,
    /// Tried in order; the last should hold every account.
    pub profiles: Vec<Profile>,
    /// At or above: healthy.
    pub healthy_from: f64,
    /// Below: at risk.
    pub at_risk_below: f64,
}

impl HealthConfig {
    pub fn band(&self, score: f64) -> Band {
        if score >= self.healthy_from {
            Band::Healthy
        } else if score < self.at_risk_below {
            Band::AtRisk
        } else {
            Band::Neutral
        }
    }
}

/// One account's measures, in the order of the configuration's (`None` where unknown): a
/// measure is found by its place, not by its name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measures(Vec<Option<f64>>);

impl Measures {
    /// From each configured measure's value.
    pub fn new(values: Vec<Option<f64>>) -> Measures {
        Measures(values)
    }

    /// The configured measures' values out of `(name, value)` pairs; a measure without a pair
    /// is unknown.
    pub fn named(config: &HealthConfig, values: &[(&str, f64)]) -> Measures {
        Measures(config.measures.iter().map(|m| values.iter().find(|(n, _)| *n == m.name).map(|&(_, v)| v)).collect())
    }

    /// The value of the configuration's `i`-th measure, if known and finite.
    fn get(&self, i: usize) -> Option<f64> {
        self.0.get(i).copied().flatten().filter(|v| v.is_finite())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeasureScore {
    pub name: String,
    pub value: f64,
    /// 0 to 100 within the workspace.
    pub score: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentScore {
    pub component: Component,
    /// 0 to 100.
    pub score: f64,
    /// Its share of the score after missing components' weight was shared out; the shares
    /// sum to 1.
    pub weight: f64,
    /// `weight * score`: the points it gives; they sum to the health score.
    pub points: f64,
    pub measures: Vec<MeasureScore>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub score: f64,
    pub band: Band,
    pub profile: String,
    pub components: Vec<ComponentScore>,
}

/// The workspace's values of each measure, sorted: what an account's value is ranked
/// against. Kept from a full scoring run, it scores one account again without the others.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reference {
    /// Per configured measure, in its order: its name and the values accounts have.
    values: Vec<(String, Ranks)>,
}

/// A measure's values as its distinct values, sorted, with how many values lie below each:
/// a rank is a search among the distinct values, which are few (counts, days, percentages of
/// small numbers) where the values are one per account. A million accounts' values searched
/// directly missed the cache at nearly every step.
#[derive(Clone, Debug, Default, PartialEq)]
struct Ranks {
    distinct: Vec<f64>,
    /// `below[k]`: the values less than `distinct[k]`; one more entry, the number of values.
    below: Vec<usize>,
}

impl Ranks {
    /// From the values, in any order.
    fn new(mut values: Vec<f64>) -> Ranks {
        values.sort_unstable_by(f64::total_cmp);
        let (mut distinct, mut below) = (Vec::new(), Vec::new());
        for (i, &v) in values.iter().enumerate() {
            // Equal values (0 and -0 too) are one: a rank counts by `<` and `<=`.
            if distinct.last() != Some(&v) {
                distinct.push(v);
                below.push(i);
            }
        }
        below.push(values.len());
        Ranks { distinct, below }
    }

    /// The number of values.
    fn len(&self) -> usize {
        self.below.last().copied().unwrap_or(0)
    }

    /// The values less than `v`, and those less than or equal to it.
    fn around(&self, v: f64) -> (usize, usize) {
        let below = self.below[self.distinct.partition_point(|&x| x < v)];
        let through = self.below[self.distinct.partition_point(|&x| x <= v)];
        (below, through)
    }
}

/// The values of each configured measure, gathered account by account: what a
/// [`Reference`] is made of, without keeping each account's measures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gathered(Vec<Vec<f64>>);

impl Gathered {
    pub fn new(config: &HealthConfig) -> Gathered {
        Gathered(vec![Vec::new(); config.measures.len()])
    }

    /// Adds an account's measures.
    pub fn add(&mut self, account: &Measures) {
        for (i, column) in self.0.iter_mut().enumerate() {
            column.extend(account.get(i));
        }
    }

    /// Adds what `other` gathered.
    pub fn extend(&mut self, other: Gathered) {
        for (column, more) in self.0.iter_mut().zip(other.0) {
            column.extend(more);
        }
    }
}

impl Reference {
    /// From every account's measures.
    pub fn new<'a>(config: &HealthConfig, accounts: impl Iterator<Item = &'a Measures>) -> Reference {
        let mut gathered = Gathered::new(config);
        accounts.for_each(|a| gathered.add(a));
        Reference::of(config, gathered)
    }

    /// From the values gathered of every account.
    pub fn of(config: &HealthConfig, gathered: Gathered) -> Reference {
        let columns = gathered.0;
        // A workspace's columns are sorted on every core.
        let ranks: Vec<Ranks> = if columns.iter().map(Vec::len).sum::<usize>() < 100_000 {
            columns.into_iter().map(Ranks::new).collect()
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = columns.into_iter().map(|c| s.spawn(|| Ranks::new(c))).collect();
                handles.into_iter().map(|h| h.join().expect("a sorting thread panicked")).collect()
            })
        };
        let values = config.measures.iter().map(|m| m.name.clone()).zip(ranks).collect();
        Reference { values }
    }

    /// The percentile of `v` among the workspace's values of `measure` (0 to 100; ties share
    /// their middle rank); none when no account has the measure.
    pub fn percentile(&self, measure: &str, v: f64) -> Option<f64> {
        let (_, ranks) = self.values.iter().find(|(name, _)| name == measure)?;
        percentile_in(ranks, v)
    }

    /// One account's health against this reference. `tenure_days` picks its profile.
    pub fn score(&self, config: &HealthConfig, raw: &Measures, tenure_days: f64) -> Health {
        let profile = config
            .profiles
            .iter()
            .find(|p| p.below_tenure_days.is_none_or(|t| tenure_days < t))
            .or(config.profiles.last())
            .expect("a health configuration has a profile");
        let mut components: Vec<ComponentScore> = Vec::with_capacity(profile.weights.len());
        for &(component, weight) in &profile.weights {
            let measures: Vec<MeasureScore> = config
                .measures
                .iter()
                .enumerate()
                .filter(|(_, m)| m.component == component)
                .filter_map(|(i, m)| {
                    let value = raw.get(i)?;
                    let pct = percentile_in(&self.values.get(i)?.1, value)?;
                    let score = match m.direction {
                        Direction::HigherIsBetter => pct,
                        Direction::LowerIsBetter => 100.0 - pct,
                    };
                    Some(MeasureScore { name: m.name.clone(), value, score })
                })
                .collect();
            if measures.is_empty() || weight <= 0.0 {
                continue;
            }
            let score = measures.iter().map(|m| m.score).sum::<f64>() / measures.len() as f64;
            components.push(ComponentScore { component, score, weight, points: 0.0, measures });
        }
        let total: f64 = components.iter().map(|c| c.weight).sum();
        for c in &mut components {
            c.weight /= total;
            c.points = c.weight * c.score;
        }
        // Without any measure an account is in the middle, not at risk.
        let score = if components.is_empty() { 50.0 } else { components.iter().map(|c| c.points).sum() };
        Health { score, band: config.band(score), profile: profile.name.clone(), components }
    }
}

/// The percentile of `v` among the values of `ranks`; none when there are none.
fn percentile_in(ranks: &Ranks, v: f64) -> Option<f64> {
    let n = ranks.len();
    match n {
        0 => return None,
        1 => return Some(50.0),
        _ => {}
    }
    let (below, through) = ranks.around(v);
    // A value the workspace holds takes the middle of its ties' ranks; another one sits
    // between its neighbours.
    let rank = if through > below { (below + through - 1) as f64 / 2.0 } else { below as f64 - 0.5 };
    Some((rank / (n - 1) as f64).clamp(0.0, 1.0) * 100.0)
}

/// Scores every account of a workspace. `tenure_days` picks each account's profile.
pub fn score(config: &HealthConfig, accounts: &[Measures], tenure_days: &[f64]) -> Vec<Health> {
    let reference = Reference::new(config, accounts.iter());
    accounts.iter().zip(tenure_days).map(|(raw, &tenure)| reference.score(config, raw, tenure)).collect()
}

/// What moved a score since an earlier one: each component's change in points, largest first.
pub fn moved(before: &Health, now: &Health) -> Vec<(Component, f64)> {
    let points = |h: &Health, c: Component| h.components.iter().find(|x| x.component == c).map_or(0.0, |x| x.points);
    let mut all: Vec<Component> = before.components.iter().chain(&now.components).map(|c| c.component).collect();
    all.sort();
    all.dedup();
    let mut out: Vec<(Component, f64)> = all.into_iter().map(|c| (c, points(now, c) - points(before, c))).collect();
    out.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HealthConfig {
        let m = |name: &str, component, direction| Measure { name: name.into(), component, direction };
        HealthConfig {
            measures: vec![
                m("events_28d", Component::Usage, Direction::HigherIsBetter),
                m("active_days_28d", Component::Engagement, Direction::HigherIsBetter),
                m("days_since_active", Component::Engagement, Direction::LowerIsBetter),
                m("open_tickets", Component::Support, Direction::LowerIsBetter),
            ],
            profiles: vec![
                Profile {
                    name: "onboarding".into(),
                    below_tenure_days: Some(90.0),
                    weights: vec![(Component::Engagement, 3.0), (Component::Usage, 1.0)],
                },
                Profile {
                    name: "mature".into(),
                    below_tenure_days: None,
                    weights: vec![(Component::Usage, 2.0), (Component::Engagement, 1.0), (Component::Support, 1.0)],
                },
            ],
            healthy_from: 70.0,
            at_risk_below: 40.0,
        }
    }

    fn account(values: &[(&str, f64)]) -> Measures {
        Measures::named(&config(), values)
    }

    #[test]
    fn explanations_add_up_to_the_score_and_missing_weight_is_shared() {
        let accounts = vec![
            account(&[
                ("events_28d", 100.0),
                ("active_days_28d", 20.0),
                ("days_since_active", 1.0),
                ("open_tickets", 0.0),
            ]),
            account(&[
                ("events_28d", 10.0),
                ("active_days_28d", 4.0),
                ("days_since_active", 9.0),
                ("open_tickets", 3.0),
            ]),
            // No support data: its weight goes to usage and engagement, two to one.
            account(&[("events_28d", 50.0), ("active_days_28d", 10.0), ("days_since_active", 3.0)]),
        ];
        let health = score(&config(), &accounts, &[400.0, 400.0, 400.0]);
        for h in &health {
            let points: f64 = h.components.iter().map(|c| c.points).sum();
            assert!((points - h.score).abs() < 1e-9, "{h:?}");
            let weights: f64 = h.components.iter().map(|c| c.weight).sum();
            assert!((weights - 1.0).abs() < 1e-9);
        }
        assert_eq!((health[0].score, health[0].band), (100.0, Band::Healthy), "the best at everything");
        assert_eq!((health[1].score, health[1].band), (0.0, Band::AtRisk));
        let third = &health[2];
        assert_eq!(third.components.len(), 2);
        let usage = third.components.iter().find(|c| c.component == Component::Usage).unwrap();
        assert!((usage.weight - 2.0 / 3.0).abs() < 1e-9, "{usage:?}");
        assert_eq!(third.band, Band::Neutral);
    }

    #[test]
    fn accounts_rank_in_the_order_a_csm_would_put_them() {
        // Given these accounts, this order: busy and recent, then steady, then quiet, then gone.
        let accounts = vec![
            account(&[
                ("events_28d", 40.0),
                ("active_days_28d", 12.0),
                ("days_since_active", 2.0),
                ("open_tickets", 1.0),
            ]),
            account(&[
                ("events_28d", 0.0),
                ("active_days_28d", 0.0),
                ("days_since_active", 45.0),
                ("open_tickets", 4.0),
            ]),
            account(&[
                ("events_28d", 300.0),
                ("active_days_28d", 25.0),
                ("days_since_active", 0.0),
                ("open_tickets", 0.0),
            ]),
            account(&[
                ("events_28d", 8.0),
                ("active_days_28d", 3.0),
                ("days_since_active", 12.0),
                ("open_tickets", 2.0),
            ]),
        ];
        let health = score(&config(), &accounts, &[400.0; 4]);
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&a, &b| health[b].score.total_cmp(&health[a].score));
        assert_eq!(order, [2, 0, 3, 1]);
    }

    #[test]
    fn young_accounts_are_judged_by_their_profile_and_moves_are_explained() {
        let accounts = vec![
            account(&[("events_28d", 5.0), ("active_days_28d", 20.0)]),
            account(&[("events_28d", 50.0), ("active_days_28d", 2.0)]),
        ];
        let young = score(&config(), &accounts, &[30.0, 30.0]);
        let old = score(&config(), &accounts, &[400.0, 400.0]);
        assert_eq!(young[0].profile, "onboarding");
        assert!(young[0].score > young[1].score, "onboarding weighs engagement");
        assert!(old[0].score < old[1].score, "a mature account weighs usage");
        let moves = moved(&old[0], &young[0]);
        assert_eq!(moves[0].0, Component::Engagement, "{moves:?}");
        let total: f64 = moves.iter().map(|m| m.1).sum();
        assert!((total - (young[0].score - old[0].score)).abs() < 1e-9, "the moves add up to the change");
    }

    #[test]
    fn one_account_rescored_against_the_reference_ranks_among_the_others() {
        let accounts: Vec<Measures> = (0..5).map(|i| account(&[("events_28d", i as f64 * 10.0)])).collect();
        let reference = Reference::new(&config(), accounts.iter());
        assert_eq!(reference.percentile("events_28d", 20.0), Some(50.0), "a value it holds");
        assert_eq!(reference.percentile("events_28d", 25.0), Some(62.5), "between 20 and 30");
        assert_eq!(reference.percentile("events_28d", 99.0), Some(100.0));
        assert_eq!(reference.percentile("events_28d", -1.0), Some(0.0));
        assert_eq!(reference.percentile("open_tickets", 1.0), None, "no account has it");
        let full = score(&config(), &accounts, &[400.0; 5]);
        for (a, h) in accounts.iter().zip(&full) {
            assert_eq!(&reference.score(&config(), a, 400.0), h, "the same as in the full run");
        }
    }

    #[test]
    fn ranks_among_distinct_values_count_as_among_all_values() {
        let values = [3.0, 0.0, -0.0, 3.0, 1.5, 3.0, -2.0, 0.0, 1e9, 1.5];
        let ranks = Ranks::new(values.to_vec());
        assert_eq!((ranks.len(), ranks.distinct.len()), (10, 5), "0 and -0 are one value");
        for v in [-3.0, -2.0, -1.0, -0.0, 0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 1e9, 2e9, f64::NAN] {
            let below = values.iter().filter(|&&x| x < v).count();
            let through = values.iter().filter(|&&x| x <= v).count();
            assert_eq!(ranks.around(v), (below, through), "{v}");
        }
        let accounts: Vec<Measures> = values.iter().map(|&v| account(&[("events_28d", v)])).collect();
        let reference = Reference::new(&config(), accounts.iter());
        assert_eq!(reference.percentile("events_28d", 3.0), Some(7.0 / 9.0 * 100.0), "ties share their middle rank");
        assert_eq!(reference.percentile("events_28d", 0.0), Some(2.0 / 9.0 * 100.0));
        assert_eq!(reference.percentile("events_28d", 2.0), Some(5.5 / 9.0 * 100.0), "between 1.5 and 3");
    }

    #[test]
    fn an_account_without_measures_is_neutral() {
        let health = score(&config(), &[Measures::default()], &[10.0]);
        assert_eq!((health[0].score, health[0].band), (50.0, Band::Neutral));
        assert!(health[0].components.is_empty());
    }
}
