//! Secrets at rest: a connector's API keys and webhook secrets are sealed with AES-256-GCM
//! under a key from configuration before the store sees them, bound to the workspace and
//! connector they belong to (a sealed value copied to another connector does not open).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

/// The version prefix of sealed text: a later scheme gets another.
const PREFIX: &str = "v1.";

/// The key secrets are sealed with: 32 bytes.
pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secrets key must be 32 bytes in base64 (44 characters): {0}")]
    BadKey(String),
    #[error("sealed secrets are not readable: {0}")]
    Unreadable(&'static str),
}

impl SealingKey {
    /// A key from its base64 text (standard alphabet, padded, as `openssl rand -base64 32`
    /// prints it).
    pub fn from_base64(text: &str) -> Result<SealingKey, SecretError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| SecretError::BadKey(e.to_string()))?;
        SealingKey::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SealingKey, SecretError> {
        if bytes.len() != 32 {
            return Err(SecretError::BadKey(format!("{} bytes", bytes.len())));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SecretError::BadKey("rejected".into()))?;
        Ok(SealingKey(LessSafeKey::new(key)))
    }

    /// A new random key, as base64 text.
    pub fn generate() -> String {
        STANDARD.encode(domain::random_bytes::<32>())
    }

    /// Seals `plain` for the place named by `context` (workspace and connector).
    pub fn seal(&self, context: &str, plain: &[u8]) -> String {
        let nonce_bytes = domain::random_bytes::<NONCE_LEN>();
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM seals any input shorter than 64 GiB");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`SealingKey::seal`] sealed for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(SecretError::Unreadable("unknown format"))?;
        let mut bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SecretError::Unreadable("not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Unreadable("too short"));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plain = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut bytes[NONCE_LEN..])
            .map_err(|_| SecretError::Unreadable("wrong key, or sealed for another connector"))?;
        Ok(plain.to_vec())
    }
}

/// A connector's secrets in the clear: only in memory, never logged (their `Debug` hides
/// them), never returned by the API.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// The key the backfill calls the provider's API with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The secrets webhook deliveries are signed with; several while one is being rotated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_secrets: Vec<String>,
    /// An OAuth client's refresh token, with which a new access token (the API key) is asked
    /// for when the one held expires or is missing ([`crate::oauth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The OAuth client (a Salesforce connected app's consumer key and secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<set>"))
            .field("client_id", &self.client_id.as_ref().map(|_| "<set>"))
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// What sealed secrets are bound to: their workspace and connector.
pub fn context(workspace: &str, provider: &str) -> String {
    format!("steward/connector/{workspace}/{provider}")
}

impl Secrets {
    pub fn seal(&self, key: &SealingKey, workspace: &str, provider: &str) -> String {
        let json = serde_json::to_vec(self).expect("secrets serialize");
        key.seal(&context(workspace, provider), &json)
    }

    pub fn open(key: &SealingKey, workspace: &str, provider: &str, sealed: &str) -> Result<Secrets, SecretError> {
        let plain = key.open(&context(workspace, provider), sealed)?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Unreadable("not a connector's secrets"))
    }

    /// What the API shows of them: whether each is set, never the values.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "api_key": self.api_key.is_some(),
            "webhook_secrets": self.webhook_secrets.len(),
            "refresh_token": self.refresh_token.is_some(),
            "client_id": self.client_id.is_some(),
            "client_secret": self.client_secret.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_base64(&SealingKey::generate()).unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_place() {
        let (k, other) = (key(), key());
        let s = Secrets {
            api_key: Some("sk_test_123".into()),
            webhook_secrets: vec!["whsec_a".into(), "whsec_b".into()],
            ..Secrets::default()
        };
        let sealed = s.seal(&k, "ws_1", "stripe");
        assert!(!sealed.contains("sk_test_123") && !sealed.contains("whsec"), "{sealed}");
        assert_eq!(Secrets::open(&k, "ws_1", "stripe", &sealed).unwrap(), s);
        // Each sealing has its own nonce.
        assert_ne!(sealed, s.seal(&k, "ws_1", "stripe"));
        for (key, ws, provider) in [(&other, "ws_1", "stripe"), (&k, "ws_2", "stripe"), (&k, "ws_1", "hubspot")] {
            assert!(Secrets::open(key, ws, provider, &sealed).is_err(), "{ws} {provider}");
        }
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(Secrets::open(&k, "ws_1", "stripe", &String::from_utf8(tampered).unwrap()).is_err());
        assert!(Secrets::open(&k, "ws_1", "stripe", "plain text").is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_and_secrets_never_show_in_debug() {
        assert!(matches!(SealingKey::from_base64("c2hvcnQ="), Err(SecretError::BadKey(_))));
        assert!(matches!(SealingKey::from_base64("not base64!"), Err(SecretError::BadKey(_))));
        let s = Secrets {
            api_key: Some("sk_live_secret".into()),
            webhook_secrets: vec!["whsec_x".into()],
            refresh_token: Some("5Aep861_refresh".into()),
            client_id: Some("3MVG9_client".into()),
            client_secret: Some("F7B1_client_secret".into()),
        };
        let shown = format!("{s:?} {}", s.summary());
        for secret in ["sk_live", "whsec", "5Aep861", "3MVG9", "F7B1"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
