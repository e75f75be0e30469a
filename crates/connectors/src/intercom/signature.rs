//! Intercom's webhook signature: `X-Hub-Signature: sha1=<hex>`, the HMAC-SHA1 of the raw
//! body keyed by the app's client secret. The scheme has no timestamp: a replayed
//! notification is the same notification (its id), applied once.

use ring::hmac;

pub const HEADER: &str = "x-hub-signature";

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the X-Hub-Signature header is missing")]
    Missing,
    #[error("the X-Hub-Signature header is not `sha1=<hex>`")]
    Malformed,
    #[error("the signature does not match the body with any of the connector's webhook secrets")]
    Mismatch,
    #[error("the connector has no webhook secret (the app's client secret) to check signatures with")]
    NoSecret,
}

/// Checks `header` against `body` with each of `secrets` (several while one is rolled).
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[String]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex = header.trim().strip_prefix("sha1=").ok_or(SignatureError::Malformed)?;
    let signature = hex::decode(hex).map_err(|_| SignatureError::Malformed)?;
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    for secret in secrets {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
        // `verify` compares in constant time.
        if hmac::verify(&key, body, &signature).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The header Intercom would send for `body`: for tests.
pub fn sign(body: &[u8], secret: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    format!("sha1={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"type":"notification_event","topic":"ping"}"#;

    #[test]
    fn a_signature_is_checked_as_intercom_signs() {
        let secrets = vec!["old".to_owned(), "client-secret-1".to_owned()];
        let good = sign(BODY, "client-secret-1");
        // Computed apart with Python's hmac: "sha1=" + hex(HMAC-SHA1(secret, body)).
        assert_eq!(good, "sha1=cedc8ed709697bb99a58c92a166f7d14453f863d");
        assert_eq!(verify(Some(&good), BODY, &secrets), Ok(()));
        let cases = [
            (None, BODY, &secrets, SignatureError::Missing),
            (Some(good.trim_start_matches("sha1=")), BODY, &secrets, SignatureError::Malformed),
            (Some("sha1=zz"), BODY, &secrets, SignatureError::Malformed),
            (Some(good.as_str()), BODY, &vec![], SignatureError::NoSecret),
            (Some(good.as_str()), b"{}".as_slice(), &secrets, SignatureError::Mismatch),
            (Some(good.as_str()), BODY, &vec!["other".to_owned()], SignatureError::Mismatch),
        ];
        for (header, body, secrets, expected) in cases {
            assert_eq!(verify(header, body, secrets), Err(expected.clone()), "{header:?}");
        }
    }
}
