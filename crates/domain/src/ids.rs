//! Identifiers of workspaces, accounts and people.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {what}: {reason}")]
pub struct InvalidId {
    pub what: &'static str,
    pub reason: &'static str,
}

/// A workspace: the unit of isolation. Nothing crosses from one workspace to another.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub fn generate() -> Self {
        WorkspaceId(format!("ws_{}", crate::random_token(16)))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = s.len() >= 4
            && s.len() <= 64
            && s.starts_with("ws_")
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(WorkspaceId(s.to_owned()))
        } else {
            Err(InvalidId { what: "workspace id", reason: "expected ws_ followed by letters and digits" })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorkspaceId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        WorkspaceId::parse(&s)
    }
}

impl From<WorkspaceId> for String {
    fn from(w: WorkspaceId) -> String {
        w.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account's id is the customer's own group id (Segment's `groupId`): users think in their ids.
/// Shared, not copied, when cloned: processing names an account for every event of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(std::sync::Arc<str>);

impl AccountId {
    pub const MAX_LEN: usize = 256;

    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        Self::check(s)?;
        Ok(AccountId(s.into()))
    }

    /// Whether `s` is a valid account id, without making one (for text that is only read).
    pub fn check(s: &str) -> Result<&str, InvalidId> {
        if s.is_empty() {
            return Err(InvalidId { what: "account id", reason: "must not be empty" });
        }
        if s.len() > Self::MAX_LEN {
            return Err(InvalidId { what: "account id", reason: "longer than 256 bytes" });
        }
        Ok(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        AccountId::parse(&s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0.to_string()
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which kind of client-side identifier names a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    User,
    Anonymous,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::User => "user",
            IdKind::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(IdKind::User),
            "anonymous" => Some(IdKind::Anonymous),
            _ => None,
        }
    }
}

/// One identifier a person is known by: a `userId` or an `anonymousId`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityKey {
    pub kind: IdKind,
    pub value: String,
}

impl IdentityKey {
    pub fn user(v: impl Into<String>) -> Self {
        IdentityKey { kind: IdKind::User, value: v.into() }
    }
    pub fn anonymous(v: impl Into<String>) -> Self {
        IdentityKey { kind: IdKind::Anonymous, value: v.into() }
    }
}

/// The id of the person first seen under `key`.
///
/// Derived, not random, so that replaying the event log from zero rebuilds the same people
/// with the same ids. An identity is linked to a person once and never unlinked, so the
/// identity that creates a person is never used to create another.
pub fn person_id_for(workspace: &WorkspaceId, key: &IdentityKey) -> String {
    let mut h = Sha256::new();
    h.update(workspace.as_str().as_bytes());
    h.update([0]);
    h.update(key.kind.as_str().as_bytes());
    h.update([0]);
    h.update(key.value.as_bytes());
    let digest = h.finalize();
    format!("p_{}", hex::encode(&digest[..12]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids_are_checked() {
        assert!(WorkspaceId::parse("ws_abc123").is_ok());
        assert!(WorkspaceId::parse("abc").is_err());
        assert!(WorkspaceId::parse("ws_a b").is_err());
        assert!(WorkspaceId::generate().as_str().starts_with("ws_"));
    }

    #[test]
    fn person_ids_are_stable_and_workspace_specific() {
        let a = WorkspaceId::parse("ws_a").unwrap();
        let b = WorkspaceId::parse("ws_b").unwrap();
        let k = IdentityKey::user("u1");
        assert_eq!(person_id_for(&a, &k), person_id_for(&a, &k));
        assert_ne!(person_id_for(&a, &k), person_id_for(&b, &k));
        assert_ne!(person_id_for(&a, &k), person_id_for(&a, &IdentityKey::anonymous("u1")));
        assert_eq!(person_id_for(&a, &k).len(), 2 + 24);
    }

    #[test]
    fn account_ids_must_be_non_empty_and_bounded() {
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse(&"x".repeat(257)).is_err());
        assert_eq!(AccountId::parse("acme").unwrap().as_str(), "acme");
    }
}
