//! Zendesk's webhook signature: `X-Zendesk-Webhook-Signature` holds the base64 of the
//! HMAC-SHA256, keyed by the webhook's signing secret, of the
//! `X-Zendesk-Webhook-Signature-Timestamp` header's text followed directly by the raw body (no
//! separator). The timestamp (ISO 8601, `2024-05-01T10:00:00Z`) further than the tolerance
//! from now is refused, so that a captured delivery cannot be replayed later.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

pub const HEADER: &str = "x-zendesk-webhook-signature";
pub const TIMESTAMP_HEADER: &str = "x-zendesk-webhook-signature-timestamp";

/// Zendesk states none; Stripe's five minutes, as for every scheme with a timestamp here.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the X-Zendesk-Webhook-Signature header is missing")]
    Missing,
    #[error("the X-Zendesk-Webhook-Signature-Timestamp header is missing or not a time")]
    NoTimestamp,
    #[error("the signature is not base64")]
    NotBase64,
    #[error("the signature's timestamp is {0} s from now, beyond the {TOLERANCE_SECONDS} s tolerance")]
    Stale(i64),
    #[error("the signature does not match the body with any of the connector's webhook secrets")]
    Mismatch,
    #[error("the connector has no webhook secret to check signatures with")]
    NoSecret,
}

/// Checks the two headers against `body` with each of `secrets` (several while one is rolled).
pub fn verify(
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    let timestamp = timestamp.map(str::trim).ok_or(SignatureError::NoTimestamp)?;
    let at = chrono::DateTime::parse_from_rfc3339(timestamp).map_err(|_| SignatureError::NoTimestamp)?.timestamp();
    let signature = STANDARD.decode(signature.trim()).map_err(|_| SignatureError::NotBase64)?;
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    if (now - at).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale(now - at));
    }
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    for secret in secrets {
        // `verify` compares in constant time.
        if hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), &signed, &signature).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The signature header Zendesk would send for `body` at `timestamp`: for tests.
pub fn sign(body: &[u8], secret: &str, timestamp: &str) -> String {
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    STANDARD.encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()), &signed).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"type":"zen:event-type:ticket.created"}"#;
    const AT: &str = "2024-05-01T10:00:00Z";
    const NOW: i64 = 1_714_557_600;

    #[test]
    fn a_signature_is_checked_as_zendesk_signs() {
        let secrets = vec!["old-secret".to_owned(), "dGhlIHNpZ25pbmcgc2VjcmV0".to_owned()];
        let good = sign(BODY, "dGhlIHNpZ25pbmcgc2VjcmV0", AT);
        // Computed apart with Python's hmac: base64(HMAC-SHA256(secret, timestamp + body)).
        assert_eq!(good, "1wbajPojtE5p/EUeFGvzKJCpukTW5F7GUQ2+xGN2cmM=");
        assert_eq!(verify(Some(&good), Some(AT), BODY, &secrets, NOW + 10), Ok(()));
        let cases = [
            (None, Some(AT), BODY, &secrets, NOW, SignatureError::Missing),
            (Some(good.as_str()), None, BODY, &secrets, NOW, SignatureError::NoTimestamp),
            (Some(good.as_str()), Some("yesterday"), BODY, &secrets, NOW, SignatureError::NoTimestamp),
            (Some("not base64!"), Some(AT), BODY, &secrets, NOW, SignatureError::NotBase64),
            (Some(good.as_str()), Some(AT), BODY, &vec![], NOW, SignatureError::NoSecret),
            (Some(good.as_str()), Some(AT), BODY, &secrets, NOW + 301, SignatureError::Stale(301)),
            (Some(good.as_str()), Some(AT), BODY, &secrets, NOW - 301, SignatureError::Stale(-301)),
            (Some(good.as_str()), Some(AT), b"{}", &secrets, NOW, SignatureError::Mismatch),
            (Some(good.as_str()), Some(AT), BODY, &vec!["other".to_owned()], NOW, SignatureError::Mismatch),
            // The timestamp is signed: another one breaks the signature.
            (Some(good.as_str()), Some("2024-05-01T10:00:01Z"), BODY, &secrets, NOW, SignatureError::Mismatch),
        ];
        for (signature, at, body, secrets, now, expected) in cases {
            assert_eq!(verify(signature, at, body, secrets, now), Err(expected.clone()), "{signature:?} {at:?}");
        }
    }
}
