//! Account intelligence: what Steward concludes about each account from its usage and records.
//!
//! Pure: data in, scores and explanations out. The store keeps rollups and records, the
//! binary moves them here and the results back.
//!
//! - [`churn`]: labels from subscription history, point-in-time features from daily usage,
//!   and the time-based evaluation a model card reports.
//! - [`health`]: the health score from weighted components of measures normalised within the
//!   workspace, with bands and an explanation that adds up to the score.
//! - [`signals`]: the account at a date beyond the model's features (breadth, people against
//!   seats, money, support, feedback), the health measures made of it and the default
//!   health configuration.
//! - [`kpis`]: gross MRR churn, logo churn and net revenue retention per month from billing
//!   periods, point-in-time; the activation rate of new accounts.
//! - [`actions`]: recommended next actions for an account from its state (signals, health
//!   components, forecasts and their drivers, renewal), ranked, each with its evidence and
//!   the playbook that handles it.
//! - [`model`]: the learners (L2 logistic regression, gradient-boosted trees), their
//!   ensemble with calibrated probabilities and per-row drivers, and the metrics of a model
//!   card (AUC, PR-AUC, top-decile lift, calibration error).

pub mod actions;
pub mod attributes;
pub mod churn;
pub mod health;
pub mod kpis;
pub mod model;
pub mod signals;
