//! L2-regularised logistic regression on standardised, log-compressed features, fitted by
//! Newton's method. Usage counts are heavy-tailed: `sign(x) * ln(1 + |x|)` keeps one very
//! busy account from deciding the slope for all.

use super::{Explained, Matrix, sigmoid};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogisticParams {
    /// The L2 penalty on the weights (not the intercept), against the summed log-loss.
    pub l2: f64,
    pub max_iterations: usize,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams { l2: 1.0, max_iterations: 50 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    mean: Vec<f64>,
    scale: Vec<f64>,
    intercept: f64,
    weights: Vec<f64>,
}

fn compress(x: f64) -> f64 {
    if x.is_finite() { x.signum() * x.abs().ln_1p() } else { 0.0 }
}

/// The log-loss of weights `w` (the intercept first, unpenalised) on standardised `rows`, plus
/// the L2 penalty on the others.
fn penalised_loss(rows: &[Vec<f64>], y: &[bool], w: &[f64], l2: f64) -> f64 {
    let data: f64 = rows
        .iter()
        .zip(y)
        .map(|(row, &label)| {
            let z: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum();
            // log(1 + e^-z) for a positive, log(1 + e^z) for a negative, without overflow.
            let m = if label { -z } else { z };
            m.max(0.0) + (-m.abs()).exp().ln_1p()
        })
        .sum();
    data + 0.5 * l2 * w[1..].iter().map(|v| v * v).sum::<f64>()
}

impl Logistic {
    pub fn fit(x: &Matrix, y: &[bool], params: &LogisticParams) -> Logistic {
        assert_eq!(x.rows(), y.len(), "one label per row");
        let (n, p) = (x.rows(), x.cols());
        let mut mean = vec![0.0; p];
        let mut scale = vec![0.0; p];
        for i in 0..n {
            for (j, m) in mean.iter_mut().enumerate() {
                *m += compress(x.get(i, j));
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        for i in 0..n {
            for j in 0..p {
                scale[j] += (compress(x.get(i, j)) - mean[j]).powi(2);
            }
        }
        for s in &mut scale {
            *s = (*s / n.max(1) as f64).sqrt();
            if *s < 1e-12 {
                *s = 1.0;
            }
        }
        let mut model = Logistic { mean, scale, intercept: 0.0, weights: vec![0.0; p] };
        // Standardised rows with a leading 1 for the intercept.
        let d = p + 1;
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|i| std::iter::once(1.0).chain((0..p).map(|j| model.standardise(j, x.get(i, j)))).collect())
            .collect();
        let positives = y.iter().filter(|&&v| v).count() as f64;
        model.intercept = super::logit((positives + 0.5) / (n as f64 + 1.0));
        let mut w: Vec<f64> = std::iter::once(model.intercept).chain(model.weights.iter().copied()).collect();
        for _ in 0..params.max_iterations {
            let mut grad = vec![0.0; d];
            let mut hess = vec![0.0; d * d];
            for (row, &label) in rows.iter().zip(y) {
                let z: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
                let prob = sigmoid(z);
                let r = prob - if label { 1.0 } else { 0.0 };
                let h = (prob * (1.0 - prob)).max(1e-12);
                for a in 0..d {
                    grad[a] += r * row[a];
                    let ha = h * row[a];
                    for b in a..d {
                        hess[a * d + b] += ha * row[b];
                    }
                }
            }
            for a in 0..d {
                for b in 0..a {
                    hess[a * d + b] = hess[b * d + a];
                }
            }
            for j in 1..d {
                grad[j] += params.l2 * w[j];
                hess[j * d + j] += params.l2;
            }
            hess[0] += 1e-9;
            let Some(step) = solve_cholesky(&hess, &grad, d) else { break };
            // A full Newton step can overshoot where the data are nearly separable (the
            // curvature there is tiny) and run the weights away; halving it until the loss
            // falls enough (Armijo) keeps every step a descent, so the fit reaches the optimum.
            let loss = |w: &[f64]| penalised_loss(&rows, y, w, params.l2);
            let (before, slope) = (loss(&w), grad.iter().zip(&step).map(|(g, s)| g * s).sum::<f64>());
            let mut t = 1.0;
            let moved = loop {
                let next: Vec<f64> = w.iter().zip(&step).map(|(w, s)| w - t * s).collect();
                if loss(&next) <= before - 1e-4 * t * slope {
                    break Some(next);
                }
                t /= 2.0;
                if t < 1e-10 {
                    break None;
                }
            };
            let Some(next) = moved else { break };
            let largest = step.iter().fold(0.0f64, |m, s| m.max((t * s).abs()));
            w = next;
            if largest < 1e-9 {
                break;
            }
        }
        model.intercept = w[0];
        model.weights = w[1..].to_vec();
        model
    }

    fn standardise(&self, j: usize, value: f64) -> f64 {
        (compress(value) - self.mean[j]) / self.scale[j]
    }

    /// The margin of `row`, with each feature's part in it (relative to the training mean).
    pub fn explain(&self, row: &[f64]) -> Explained {
        let contributions: Vec<f64> =
            row.iter().enumerate().map(|(j, &v)| self.weights[j] * self.standardise(j, v)).collect();
        Explained { margin: self.intercept + contributions.iter().sum::<f64>(), bias: self.intercept, contributions }
    }

    pub fn margin(&self, row: &[f64]) -> f64 {
        self.intercept + row.iter().enumerate().map(|(j, &v)| self.weights[j] * self.standardise(j, v)).sum::<f64>()
    }

    /// The weight of each feature on the standardised scale: the model's global importances.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (n x n, row-major); `None` when it
/// is not positive definite.
fn solve_cholesky(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum <= 0.0 {
                    return None;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    let mut z = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * z[k]).sum();
        z[i] = (b[i] - s) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (z[i] - s) / l[i * n + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rng::Rng;

    #[test]
    fn recovers_the_direction_and_size_of_known_effects() {
        // y ~ Bernoulli(sigmoid(-1 + 2 * a - 1 * b)), with a, b standard normal-ish and c noise.
        let mut rng = Rng::new(7);
        let mut x = Matrix::new(vec!["a".into(), "b".into(), "c".into()]);
        let mut y = Vec::new();
        let normal = |rng: &mut Rng| (0..12).map(|_| rng.unit()).sum::<f64>() - 6.0;
        for _ in 0..20_000 {
            let (a, b, c) = (normal(&mut rng), normal(&mut rng), normal(&mut rng));
            x.push(&[a, b, c]);
            y.push(rng.unit() < sigmoid(-1.0 + 2.0 * a - 1.0 * b));
        }
        let m = Logistic::fit(&x, &y, &LogisticParams { l2: 1e-6, ..Default::default() });
        let w = m.weights();
        assert!(w[0] > 0.5 && w[1] < -0.25, "{w:?}");
        assert!(w[0] > 2.0 * w[2].abs() && w[1].abs() > 2.0 * w[2].abs(), "noise weighs little: {w:?}");
        // Explanations add up to the margin.
        let e = m.explain(x.row(3));
        assert!((e.bias + e.contributions.iter().sum::<f64>() - e.margin).abs() < 1e-12);
        assert!((e.margin - m.margin(x.row(3))).abs() < 1e-12);
    }

    #[test]
    fn a_constant_feature_and_separable_data_stay_finite() {
        let mut x = Matrix::new(vec!["k".into(), "v".into()]);
        let mut y = Vec::new();
        for i in 0..100 {
            x.push(&[3.0, i as f64]);
            y.push(i >= 50);
        }
        let m = Logistic::fit(&x, &y, &LogisticParams::default());
        assert!(m.weights().iter().all(|w| w.is_finite()));
        assert!(m.weights()[0].abs() < 1e-9, "a constant carries no weight");
        assert!(m.margin(x.row(99)) > m.margin(x.row(0)));
    }

    #[test]
    fn nearly_separable_rows_with_many_alike_features_reach_the_optimum() {
        // Few positives, each far out on twenty near-copies of one signal: full Newton steps
        // overshoot here.
        let mut rng = Rng::new(11);
        let names: Vec<String> = (0..20).map(|j| format!("f{j}")).collect();
        let mut x = Matrix::new(names);
        let mut y = Vec::new();
        for i in 0..2_000 {
            let positive = i % 40 == 0;
            let signal = if positive { 30.0 + 20.0 * rng.unit() } else { 5.0 * rng.unit() };
            let row: Vec<f64> = (0..20).map(|_| signal * (0.9 + 0.2 * rng.unit())).collect();
            x.push(&row);
            y.push(positive);
        }
        let params = LogisticParams::default();
        let m = Logistic::fit(&x, &y, &params);
        let rows: Vec<Vec<f64>> = (0..x.rows())
            .map(|i| std::iter::once(1.0).chain((0..20).map(|j| m.standardise(j, x.get(i, j)))).collect())
            .collect();
        let w: Vec<f64> = std::iter::once(m.intercept).chain(m.weights().iter().copied()).collect();
        let at = penalised_loss(&rows, &y, &w, params.l2);
        // The optimum: no nearby point is lower, and the penalty bounds every weight.
        for scale in [0.9, 0.99, 1.01, 1.1] {
            let near: Vec<f64> = w.iter().enumerate().map(|(i, v)| if i == 0 { *v } else { v * scale }).collect();
            assert!(at <= penalised_loss(&rows, &y, &near, params.l2) + 1e-9, "{scale}: {w:?}");
        }
        let bound = (2.0 * 2_000.0 * std::f64::consts::LN_2 / params.l2).sqrt();
        assert!(m.weights().iter().all(|v| v.abs() < bound), "{:?}", m.weights());
        assert!(m.margin(x.row(0)) > m.margin(x.row(1)));
    }
}
