//! What the connectors keep: each provider connection of a workspace (its settings, sealed
//! secrets and sync state), a mirror of the provider's objects as last seen (the newest
//! state of each wins, whatever order deliveries arrive in), and the errors met on the way.

use domain::{AccountId, Timestamp};
use serde::Serialize;
use serde_json::Value;

/// A workspace's connection to one provider (`stripe`, `hubspot`, ...): at most one each.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectorRecord {
    /// The provider's name, which is also the connector's id within its workspace.
    pub provider: String,
    /// Settings that are not secret: base URL, matching rules, schedule.
    pub config: Value,
    /// The secrets (API keys, webhook signing secrets), sealed by the connectors crate. The
    /// store never sees them in the clear.
    #[serde(skip)]
    pub secrets: String,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Where the backfill is (phase, page cursor, whether one is asked for), as the
    /// connector writes it.
    pub sync: Value,
    /// When a backfill last finished.
    pub last_sync_at: Option<Timestamp>,
    /// Provider objects stored, by backfills and webhooks together.
    pub records_synced: i64,
    /// Webhook deliveries accepted (signature valid), duplicates included.
    pub webhooks_received: i64,
    /// Errors recorded (see [`ConnectorError`]); the newest are kept.
    pub errors: i64,
}

/// What a step of a connector's work adds to its state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectorProgress {
    /// The new sync state, if it changed.
    pub sync: Option<Value>,
    /// Set when a backfill finished.
    pub synced_at: Option<Timestamp>,
    pub records: i64,
    pub webhooks: i64,
}

/// A provider's object as last seen: a Stripe customer, subscription or invoice, a HubSpot
/// company, a Zendesk ticket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderObject {
    /// The provider's object type (`customer`, `subscription`, `company`, `ticket`, ...).
    pub kind: String,
    pub object_id: String,
    /// The object it belongs to (a subscription's customer), by which it reaches an account.
    pub parent_id: Option<String>,
    /// When the provider last changed it, in milliseconds (or the provider's own ordering):
    /// a write older than what is stored is left out.
    pub version: i64,
    /// The account it maps to, once matched.
    pub account_id: Option<AccountId>,
    /// How it was matched: `external_id`, `domain`, `email`, `manual`, ...
    pub matched_by: Option<String>,
    /// What an operator sees when linking it by hand: a name, an email.
    pub label: String,
    pub payload: Value,
    /// When it was stored.
    pub updated_at: Timestamp,
}

/// Which mirrored objects to read: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectQuery {
    pub kind: Option<String>,
    pub object_id: Option<String>,
    pub parent_id: Option<String>,
    pub account_id: Option<AccountId>,
    /// Only objects not matched to an account.
    pub unmatched: bool,
    /// Objects after this one (by kind, then id), for paging through them.
    pub after: Option<(String, String)>,
    pub limit: usize,
}

/// Something a connector could not do, with the record that caused it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectorError {
    pub at: Timestamp,
    /// `webhook`, `backfill`, `mapping`.
    pub stage: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub message: String,
    /// The offending record, as received (secrets never appear in one).
    pub record: Option<Value>,
}

/// The most errors kept per connector: the oldest go first.
pub const ERRORS_KEPT: i64 = 1_000;
