//! The outbox's channels: how Steward's side effects leave the building.
//!
//! Every side effect Steward performs is an outbox row with an idempotency key
//! (`run_7f3a:welcome:1`). The delivery loop claims a due row, hands it to one of the
//! channels here, records the attempt and its [`Outcome`], and schedules a retry
//! ([`retry::next_delay`]) or marks a dead letter. This crate holds the channels and the
//! policies; it keeps no state of its own and never reads the store.
//!
//! - [`outcome`]: what an attempt came to, the same for every channel.
//! - [`retry`]: the backoff schedule, `Retry-After`, and per-channel rate limits. Pure.
//! - [`http`]: the HTTPS client the webhook and Slack channels share.
//! - [`webhook`]: webhooks signed per the Standard Webhooks specification.
//! - [`slack`]: Slack incoming webhooks.
//! - [`email`]: email over SMTP, with the crash window between handing a message over and
//!   the server's answer made explicit ([`email::Smtp::hand_over`], [`email::Handed::confirm`]).
//! - [`template`]: email templates (subject, HTML and text parts).
//! - [`unsubscribe`]: signed one-click unsubscribe tokens.

#![warn(missing_docs)]

pub mod email;
pub mod http;
pub mod outcome;
pub mod retry;
pub mod slack;
pub mod template;
mod tls;
pub mod unsubscribe;
pub mod webhook;

pub use outcome::Outcome;
