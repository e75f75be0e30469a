//! Binary classifiers trained per workspace, and how they are judged.
//!
//! Every learner here explains each prediction additively: a bias plus one contribution per
//! feature, summing to the margin (log-odds), so that a probability on a screen can be traced
//! to the inputs that made it.

mod data;
mod ensemble;
mod gbdt;
mod logistic;
pub mod metrics;
mod rng;

pub use data::Matrix;
pub use ensemble::{Ensemble, EnsembleParams};
pub use gbdt::{Gbdt, GbdtParams};
pub use logistic::{Logistic, LogisticParams};

/// The log-odds of `p`, kept finite.
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

/// The probability of log-odds `z`.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A prediction explained: `bias + contributions.sum() == margin`.
#[derive(Clone, Debug, PartialEq)]
pub struct Explained {
    pub margin: f64,
    pub bias: f64,
    /// One per feature, in the matrix's column order.
    pub contributions: Vec<f64>,
}
