//! The churn learner: a logistic regression and boosted trees averaged on the log-odds scale,
//! then calibrated. The linear model generalises from little history and the trees find
//! thresholds and interactions; averaged, each covers the other's misses, which on small,
//! noisy histories is steadier than either alone.
//!
//! Probabilities are calibrated (Platt) on out-of-fold margins: each training row is scored
//! by models that did not see its account, so the calibration learns how far to trust the
//! margins on new rows rather than on the rows that shaped them. The same margins decide the
//! blend: one model alone when it ranks the held-out rows clearly better than the average.

use super::{Explained, Gbdt, GbdtParams, Logistic, LogisticParams, Matrix, sigmoid};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnsembleParams {
    pub logistic: LogisticParams,
    pub gbdt: GbdtParams,
    /// Folds for the out-of-fold margins the calibration is fitted on (by group).
    pub folds: usize,
}

impl Default for EnsembleParams {
    fn default() -> Self {
        EnsembleParams { logistic: LogisticParams::default(), gbdt: GbdtParams::default(), folds: 5 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    logistic: Logistic,
    gbdt: Gbdt,
    /// The logistic regression's share of the margin, the trees having the rest: a half,
    /// unless one of the two alone ranked the held-out folds clearly better.
    #[serde(default = "half")]
    linear_share: f64,
    /// Calibrated probability = sigmoid(scale * margin + shift).
    scale: f64,
    shift: f64,
}

fn half() -> f64 {
    0.5
}

/// How much better (in out-of-fold AUC) one model alone must rank than the average of the two
/// to be used alone: less is noise on the histories Steward sees.
const ALONE_BY: f64 = 0.01;

impl Ensemble {
    /// Fits on rows `x` with labels `y`; `groups` names each row's account, so that no fold
    /// of the calibration both trains and scores one account.
    pub fn fit(x: &Matrix, y: &[bool], groups: &[u64], params: &EnsembleParams) -> Ensemble {
        assert_eq!(x.rows(), groups.len(), "one group per row");
        let folds = params.folds.max(2) as u64;
        // Each row's margins from the models that did not see its account: linear, trees.
        let mut out_of_fold = vec![(0.0, 0.0); x.rows()];
        let mut scored = vec![false; x.rows()];
        for k in 0..folds {
            let fold_of = |g: u64| mix(g) % folds;
            let (train, test): (Vec<usize>, Vec<usize>) = (0..x.rows()).partition(|&i| fold_of(groups[i]) != k);
            let train_y: Vec<bool> = train.iter().map(|&i| y[i]).collect();
            if test.is_empty() || train_y.iter().all(|&v| v) || !train_y.iter().any(|&v| v) {
                continue;
            }
            let xs = x.select(&train);
            let part = Ensemble::fit_margins(&xs, &train_y, params);
            for &i in &test {
                out_of_fold[i] = (part.logistic.margin(x.row(i)), part.gbdt.margin(x.row(i)));
                scored[i] = true;
            }
        }
        let (m, l): (Vec<(f64, f64)>, Vec<bool>) =
            (0..x.rows()).filter(|&i| scored[i]).map(|i| (out_of_fold[i], y[i])).unzip();
        let mut model = Ensemble::fit_margins(x, y, params);
        model.linear_share = linear_share(&m, &l);
        (model.scale, model.shift) = platt(&blend(&m, model.linear_share), &l);
        model
    }

    fn fit_margins(x: &Matrix, y: &[bool], params: &EnsembleParams) -> Ensemble {
        Ensemble {
            logistic: Logistic::fit(x, y, &params.logistic),
            gbdt: Gbdt::fit(x, y, &params.gbdt),
            linear_share: 0.5,
            scale: 1.0,
            shift: 0.0,
        }
    }

    /// The number of features it was trained on.
    pub fn features(&self) -> usize {
        self.logistic.weights().len()
    }

    /// The uncalibrated log-odds: the two models' blended.
    pub fn margin(&self, row: &[f64]) -> f64 {
        let w = self.linear_share;
        w * self.logistic.margin(row) + (1.0 - w) * self.gbdt.margin(row)
    }

    pub fn probability(&self, row: &[f64]) -> f64 {
        sigmoid(self.scale * self.margin(row) + self.shift)
    }

    /// The calibrated log-odds of `row`, with each feature's part in it.
    pub fn explain(&self, row: &[f64]) -> Explained {
        let (a, mut b) = (self.logistic.explain(row), self.gbdt.explain(row));
        let (wa, wb) = (self.scale * self.linear_share, self.scale * (1.0 - self.linear_share));
        for (b, a) in b.contributions.iter_mut().zip(&a.contributions) {
            *b = wa * a + wb * *b;
        }
        Explained {
            margin: wa * a.margin + wb * b.margin + self.shift,
            bias: wa * a.bias + wb * b.bias + self.shift,
            contributions: b.contributions,
        }
    }

    /// Global importances: the share of each feature in the trees' gain and in the linear
    /// model's absolute weights, blended as the margins are.
    pub fn importances(&self) -> Vec<f64> {
        let share = |v: Vec<f64>| {
            let total: f64 = v.iter().sum();
            v.into_iter().map(|x| if total > 0.0 { x / total } else { 0.0 }).collect::<Vec<_>>()
        };
        let a = share(self.logistic.weights().iter().map(|w| w.abs()).collect());
        let b = share(self.gbdt.importances().to_vec());
        let w = self.linear_share;
        a.iter().zip(&b).map(|(a, b)| w * a + (1.0 - w) * b).collect()
    }
}

/// Margins `(linear, trees)` blended with the linear model's `share`.
fn blend(margins: &[(f64, f64)], share: f64) -> Vec<f64> {
    margins.iter().map(|(a, b)| share * a + (1.0 - share) * b).collect()
}

/// The linear model's share of the margin, from out-of-fold margins `(linear, trees)`: a half,
/// or all or nothing when one model alone ranks the held-out rows better by [`ALONE_BY`].
fn linear_share(margins: &[(f64, f64)], labels: &[bool]) -> f64 {
    let rank = |share: f64| super::metrics::auc(&blend(margins, share), labels);
    let both = rank(0.5);
    [1.0, 0.0]
        .into_iter()
        .map(|share| (share, rank(share)))
        .filter(|&(_, auc)| auc >= both + ALONE_BY)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.5, |(share, _)| share)
}

/// A well-spread hash of a group id, for fold assignment.
fn mix(g: u64) -> u64 {
    let mut z = g.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Platt scaling: `(a, b)` minimising the log-loss of sigmoid(a * m + b), by Newton's
/// method with a backtracking line search, with Platt's smoothed targets so that separable
/// margins stay finite. The scale is never negative: margins that rank held-out rows worse
/// than chance are not turned around (that would trust the noise twice) but given no weight,
/// every row then getting the base rate.
fn platt(margins: &[f64], labels: &[bool]) -> (f64, f64) {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return (1.0, 0.0);
    }
    let (hi, lo) = ((positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0));
    let target = |l: bool| if l { hi } else { lo };
    let loss = |a: f64, b: f64| -> f64 {
        margins
            .iter()
            .zip(labels)
            .map(|(&m, &l)| {
                let (z, t) = (a * m + b, target(l));
                // Cross-entropy against the smoothed target, without overflow.
                z.max(0.0) + (-z.abs()).exp().ln_1p() - t * z
            })
            .sum()
    };
    let base = (positives + 1.0) / (positives + negatives + 2.0);
    let flat = (0.0, super::logit(base));
    let (mut a, mut b) = (1.0, 0.0);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for (&m, &l) in margins.iter().zip(labels) {
            let t = if l { hi } else { lo };
            let p = sigmoid(a * m + b);
            let w = (p * (1.0 - p)).max(1e-12);
            ga += (p - t) * m;
            gb += p - t;
            haa += w * m * m;
            hab += w * m;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        let (before, slope) = (loss(a, b), ga * da + gb * db);
        let mut t = 1.0;
        while loss(a - t * da, b - t * db) > before - 1e-4 * t * slope && t > 1e-10 {
            t /= 2.0;
        }
        a -= t * da;
        b -= t * db;
        if (t * da).abs().max((t * db).abs()) < 1e-10 {
            break;
        }
    }
    if a.is_finite() && b.is_finite() && a > 0.0 { (a, b) } else { flat }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::{auc, calibration_error};
    use crate::model::rng::Rng;

    /// Accounts whose churn chance falls with usage and rises when usage drops.
    fn accounts(n: usize, seed: u64) -> (Matrix, Vec<bool>, Vec<u64>) {
        let mut rng = Rng::new(seed);
        let mut x = Matrix::new(vec!["usage".into(), "trend".into(), "noise".into()]);
        let (mut y, mut groups) = (Vec::new(), Vec::new());
        for i in 0..n {
            let usage = rng.unit() * 50.0;
            let trend = rng.unit() * 2.0 - 1.0;
            x.push(&[usage, trend, rng.unit()]);
            y.push(rng.unit() < sigmoid(-2.0 - 0.08 * usage + 0.5 - 1.5 * trend));
            groups.push(seed * 1_000_000 + i as u64);
        }
        (x, y, groups)
    }

    #[test]
    fn calibrated_probabilities_match_held_out_rates() {
        let (x, y, g) = accounts(6_000, 1);
        let (xt, yt, _) = accounts(6_000, 2);
        let m = Ensemble::fit(&x, &y, &g, &EnsembleParams::default());
        let p: Vec<f64> = (0..xt.rows()).map(|i| m.probability(xt.row(i))).collect();
        let ece = calibration_error(&p, &yt, 10);
        assert!(ece < 0.03, "calibration error {ece}");
        assert!(auc(&p, &yt) > 0.7);
        let e = m.explain(xt.row(0));
        assert!((e.bias + e.contributions.iter().sum::<f64>() - e.margin).abs() < 1e-9);
        assert!((sigmoid(e.margin) - m.probability(xt.row(0))).abs() < 1e-12);
        let imp = m.importances();
        assert!(imp[0] > imp[2] && imp[1] > imp[2], "{imp:?}");
    }

    #[test]
    fn platt_never_turns_a_ranking_around_and_stays_finite_on_separable_margins() {
        let mut rng = Rng::new(4);
        let margins: Vec<f64> = (0..2_000).map(|_| rng.unit() * 8.0 - 4.0).collect();
        let inverted: Vec<bool> = margins.iter().map(|&m| rng.unit() < sigmoid(-m)).collect();
        let (a, b) = platt(&margins, &inverted);
        let rate = inverted.iter().filter(|&&l| l).count() as f64 / inverted.len() as f64;
        assert_eq!(a, 0.0);
        assert!((sigmoid(b) - rate).abs() < 0.01, "the base rate: {} against {rate}", sigmoid(b));
        // Fifty positives far above the rest: a steep but finite scale that ranks them first.
        let separable: Vec<bool> = (0..2_000).map(|i| i < 50).collect();
        let m: Vec<f64> = (0..2_000).map(|i| if i < 50 { 3.0 + rng.unit() } else { -3.0 - rng.unit() }).collect();
        let (a, b) = platt(&m, &separable);
        assert!(a > 0.5 && a < 50.0 && b.abs() < 50.0, "{a} {b}");
        assert!(sigmoid(a * 3.0 + b) > 0.9 && sigmoid(-a * 3.0 + b) < 0.01);
    }

    #[test]
    fn one_model_alone_is_used_only_when_it_ranks_clearly_better() {
        let mut rng = Rng::new(9);
        let labels: Vec<bool> = (0..4_000).map(|_| rng.unit() < 0.1).collect();
        let signal = |l: bool, rng: &mut Rng| if l { 1.0 } else { 0.0 } + rng.unit();
        let noise = |rng: &mut Rng| 3.0 * rng.unit();
        let informative_linear: Vec<(f64, f64)> =
            labels.iter().map(|&l| (signal(l, &mut rng), noise(&mut rng))).collect();
        assert_eq!(linear_share(&informative_linear, &labels), 1.0);
        let informative_trees: Vec<(f64, f64)> =
            labels.iter().map(|&l| (noise(&mut rng), signal(l, &mut rng))).collect();
        assert_eq!(linear_share(&informative_trees, &labels), 0.0);
        let both: Vec<(f64, f64)> = labels.iter().map(|&l| (signal(l, &mut rng), signal(l, &mut rng))).collect();
        assert_eq!(linear_share(&both, &labels), 0.5, "two good models average");
        let neither: Vec<(f64, f64)> = labels.iter().map(|_| (noise(&mut rng), noise(&mut rng))).collect();
        assert_eq!(linear_share(&neither, &labels), 0.5, "noise against noise is no reason to choose");
    }

    #[test]
    fn platt_recovers_a_known_scale() {
        let mut rng = Rng::new(3);
        let margins: Vec<f64> = (0..20_000).map(|_| rng.unit() * 8.0 - 4.0).collect();
        let labels: Vec<bool> = margins.iter().map(|&m| rng.unit() < sigmoid(0.5 * m - 1.0)).collect();
        let (a, b) = platt(&margins, &labels);
        assert!((a - 0.5).abs() < 0.05 && (b + 1.0).abs() < 0.08, "{a} {b}");
    }
}
