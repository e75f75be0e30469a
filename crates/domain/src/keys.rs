//! API keys: a write key for ingest and secret keys (admin, member, viewer) for the API.
//!
//! Keys are random tokens of 190 bits; they are stored as their SHA-256 hash (a slow password
//! hash adds nothing for tokens with that much entropy) and shown once, when created.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

use crate::{Timestamp, WorkspaceId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// May only send events (the Segment write key). Safe to embed in clients.
    Write,
    Admin,
    Member,
    Viewer,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, member, viewer or write")]
pub struct UnknownRole(pub String);

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Write => "write",
            KeyRole::Admin => "admin",
            KeyRole::Member => "member",
            KeyRole::Viewer => "viewer",
        }
    }

    /// Secret keys read the API; the write key only sends events.
    pub fn is_secret(self) -> bool {
        !matches!(self, KeyRole::Write)
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyRole::Write => "stw_wk_",
            _ => "stw_sk_",
        }
    }
}

impl FromStr for KeyRole {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        match s {
            "write" => Ok(KeyRole::Write),
            "admin" => Ok(KeyRole::Admin),
            "member" => Ok(KeyRole::Member),
            "viewer" => Ok(KeyRole::Viewer),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of a key's secret, hex encoded: what is stored and looked up.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeyHash(pub String);

impl KeyHash {
    pub fn of(secret: &str) -> Self {
        KeyHash(hex::encode(Sha256::digest(secret.as_bytes())))
    }
}

/// A stored key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub key_id: String,
    pub workspace_id: WorkspaceId,
    pub role: KeyRole,
    /// The first characters of the secret, so operators can tell keys apart.
    pub prefix: String,
    #[serde(skip)]
    pub hash: KeyHash,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A key just created: the only moment its secret exists outside the client.
pub struct NewApiKey {
    pub key: ApiKey,
    pub secret: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey").field("key", &self.key).field("secret", &"[redacted]").finish()
    }
}

impl NewApiKey {
    pub fn generate(workspace_id: &WorkspaceId, role: KeyRole, now: Timestamp) -> Self {
        let secret = format!("{}{}", role.prefix(), crate::random_token(32));
        let key = ApiKey {
            key_id: format!("key_{}", crate::random_token(12)),
            workspace_id: workspace_id.clone(),
            role,
            prefix: secret[..11].to_owned(),
            hash: KeyHash::of(&secret),
            created_at: now,
            revoked_at: None,
        };
        NewApiKey { key, secret }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_hash_to_their_stored_hash() {
        let ws = WorkspaceId::generate();
        let k = NewApiKey::generate(&ws, KeyRole::Write, chrono::Utc::now());
        assert!(k.secret.starts_with("stw_wk_"));
        assert_eq!(k.secret.len(), 7 + 32);
        assert_eq!(KeyHash::of(&k.secret), k.key.hash);
        assert!(!format!("{k:?}").contains(&k.secret));
        let s = NewApiKey::generate(&ws, KeyRole::Admin, chrono::Utc::now());
        assert!(s.secret.starts_with("stw_sk_"));
        assert_ne!(s.secret, k.secret);
    }

    #[test]
    fn roles_parse() {
        assert_eq!("viewer".parse::<KeyRole>().unwrap(), KeyRole::Viewer);
        assert!("owner".parse::<KeyRole>().is_err());
        assert!(!KeyRole::Write.is_secret());
        assert!(KeyRole::Member.is_secret());
    }
}
