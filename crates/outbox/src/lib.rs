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
//!
//! For the delivery loop, per row:
//! 1. Take a token from the channel's [`retry::RateLimit`]; if none, wait what it says.
//! 2. Deliver: [`webhook::Webhook::deliver`] with the row's key as the id,
//!    [`slack::Slack::deliver`], or for email [`template::render`] the template with the row's
//!    context, build an [`email::Email`] (`message_id` from [`email::message_id`] of the key,
//!    `list_unsubscribe` a link carrying [`unsubscribe::unsubscribe_token`]), call
//!    [`email::Smtp::hand_over`], record that the row was handed over, then
//!    [`email::Handed::confirm`]. A row found handed over after a crash may have been
//!    delivered: resending it risks a duplicate (with the same Message-ID), not resending it a
//!    loss; the loop chooses.
//! 3. Record the attempt and its [`Outcome`]; on `Retry`, [`retry::next_delay`] with the
//!    attempts made so far gives the next due time, or `None`: a dead letter. On `Gone`,
//!    disable the endpoint; on `Rejected`, stop.

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
