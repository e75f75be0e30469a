//! The outbox's channels against real receivers on this machine: an HTTP server in the
//! test for webhooks, Slack and the API reads connectors make, Python's aiosmtpd for email, the reference Standard
//! Webhooks library for signatures.

mod email;
mod fetch;
mod python {
    pub use testkit::*;
}
mod slack;
mod webhook;
