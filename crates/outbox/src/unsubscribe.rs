//! One-click unsubscribe tokens (RFC 8058): an HMAC-SHA256 over the workspace and the
//! recipient's address with a key from configuration, URL-safe base64 without padding. The
//! link carries the workspace, the address and the token; the unsubscribe endpoint checks
//! the token before adding the address to the workspace's suppression list.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The key tokens are made with. Never printed by `Debug`.
#[derive(Clone)]
pub struct UnsubscribeKey(hmac::Key);

/// A key too short to be secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsubscribe key: {0} bytes, expected at least 16")]
pub struct KeyError(usize);

impl UnsubscribeKey {
    /// A key from configured bytes (at least 16).
    pub fn new(bytes: &[u8]) -> Result<UnsubscribeKey, KeyError> {
        if bytes.len() < 16 {
            return Err(KeyError(bytes.len()));
        }
        Ok(UnsubscribeKey(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }
}

impl fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsubscribeKey(…)")
    }
}

/// What is signed: a version, then each field with its length, so no two pairs of
/// (workspace, email) sign the same bytes. Addresses are compared without case.
fn message(workspace: &str, email: &str) -> Vec<u8> {
    let email = email.trim().to_ascii_lowercase();
    let mut out = b"steward-unsubscribe-v1".to_vec();
    for field in [workspace.as_bytes(), email.as_bytes()] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The token for `email` in `workspace`.
pub fn unsubscribe_token(key: &UnsubscribeKey, workspace: &str, email: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac::sign(&key.0, &message(workspace, email)).as_ref())
}

/// Whether `token` was made by `key` for `email` in `workspace` (constant-time).
pub fn verify_unsubscribe(key: &UnsubscribeKey, workspace: &str, email: &str, token: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(token.trim()) else { return false };
    hmac::verify(&key.0, &message(workspace, email), &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_its_own_workspace_and_address() {
        let key = UnsubscribeKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let token = unsubscribe_token(&key, "ws_1", "Ada@Example.com");
        assert_eq!(token.len(), 43);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
        assert!(verify_unsubscribe(&key, "ws_1", "ada@example.com", &token));
        assert!(!verify_unsubscribe(&key, "ws_2", "ada@example.com", &token));
        assert!(!verify_unsubscribe(&key, "ws_1", "bob@example.com", &token));
        // Moving a character between the fields changes the signed bytes.
        assert!(!verify_unsubscribe(&key, "ws_1a", "da@example.com", &token));
        let other = UnsubscribeKey::new(b"fedcba9876543210fedcba9876543210").unwrap();
        assert!(!verify_unsubscribe(&other, "ws_1", "ada@example.com", &token));
        assert!(!verify_unsubscribe(&key, "ws_1", "ada@example.com", "not base64!"));
        assert!(!verify_unsubscribe(&key, "ws_1", "ada@example.com", &token[..40]));
        assert_eq!(UnsubscribeKey::new(b"short").unwrap_err(), KeyError(5));
        assert_eq!(format!("{key:?}"), "UnsubscribeKey(…)");
    }
}
