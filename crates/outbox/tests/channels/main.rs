//! The outbox's channels against real receivers on this machine: an HTTP server in the
//! test for webhooks and Slack, Python's aiosmtpd for email, the reference Standard
//! Webhooks library for signatures.

mod email;
mod python {
    pub use testkit::*;
}
mod slack;
mod webhook;
