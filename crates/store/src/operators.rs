//! Operators' sign-in sessions and the audit log of what operators (and keys) changed.
//!
//! A session is known by the SHA-256 of its token: the token itself lives only in the
//! operator's cookie, so a copy of the database opens no session.

use domain::{Timestamp, WorkspaceId};
use serde::Serialize;
use serde_json::Value;

use crate::Operator;

/// A signed-in operator's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSession {
    /// SHA-256 of the cookie's token, hex encoded.
    pub token_hash: String,
    pub workspace_id: WorkspaceId,
    pub operator_id: String,
    /// The synchronizer token every state-changing request must carry.
    pub csrf_token: String,
    pub created_at: Timestamp,
    /// Moved forward as the operator uses the session (at most once a minute), for the idle
    /// timeout.
    pub last_seen_at: Timestamp,
    /// The session ends here however active it is.
    pub expires_at: Timestamp,
}

/// A session with its operator, as a request reads them in one lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    pub session: OperatorSession,
    pub operator: Operator,
}

/// One change, by whom and when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Assigned by the store, increasing within a workspace; 0 on an entry not yet stored.
    pub seq: i64,
    pub workspace_id: WorkspaceId,
    /// The operator's id, `key:<key id>` for an API key, `cli` for the command line.
    pub actor: String,
    /// What was done, `noun.verb`: `alert.acknowledge`, `segment.create`, `session.sign_in`.
    pub action: String,
    /// What it was done to (an alert id, a segment id, an email).
    pub target: String,
    pub details: Value,
    pub at: Timestamp,
}
