//! Stripe's webhook signature: the `Stripe-Signature` header holds `t=<unix seconds>` and
//! one or more `v1=<hex HMAC-SHA256>` (one per endpoint secret while a secret is rolled),
//! each over `<t>.<raw body>` keyed by the endpoint secret's text (`whsec_...`). Other
//! schemes (`v0=`, test mode's) are ignored. A timestamp further than the tolerance from
//! now is refused, so that a captured delivery cannot be replayed later.

use ring::hmac;

/// Stripe's own libraries' default tolerance.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp (`t=`)")]
    NoTimestamp,
    #[error("the Stripe-Signature header has no `v1=` signature")]
    NoSignature,
    #[error("the signature's timestamp is {0} s from now, beyond the {TOLERANCE_SECONDS} s tolerance")]
    Stale(i64),
    #[error("no signature matches the body with any of the connector's webhook secrets")]
    Mismatch,
    #[error("the connector has no webhook secret to check signatures with")]
    NoSecret,
}

/// Checks `header` against `body` with each of `secrets`; the signature's timestamp on
/// success.
pub fn verify(header: Option<&str>, body: &[u8], secrets: &[String], now: i64) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            // A value that is not hex cannot match; it is skipped rather than refused, as
            // another `v1` may be good.
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::NoTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    if (now - t).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale(now - t));
    }
    let mut signed = Vec::with_capacity(body.len() + 12);
    signed.extend_from_slice(t.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    for secret in secrets {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        // `verify` compares in constant time.
        if signatures.iter().any(|s| hmac::verify(&key, &signed, s).is_ok()) {
            return Ok(t);
        }
    }
    Err(SignatureError::Mismatch)
}

/// The header Stripe would send for `body` at `t`: for tests and the sync benchmark's
/// local server.
pub fn sign(body: &[u8], secret: &str, t: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    format!("t={t},v1={}", hex::encode(hmac::sign(&key, &signed).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    #[test]
    fn a_signature_is_checked_as_stripe_signs() {
        let now = 1_700_000_000;
        let secrets = vec!["whsec_old".to_owned(), "whsec_new".to_owned()];
        let good = sign(BODY, "whsec_new", now);
        assert_eq!(verify(Some(&good), BODY, &secrets, now + 10), Ok(now));
        // A rolled secret: two v1 signatures, one per secret, and a v0 to ignore.
        let old = sign(BODY, "whsec_old", now);
        let both = format!("{},v0=abcd,{}", old, good.split_once(',').unwrap().1);
        assert_eq!(verify(Some(&both), BODY, &["whsec_new".to_owned()], now), Ok(now));
        let cases = [
            (None, BODY, &secrets, now, SignatureError::Missing),
            (Some("v1=00"), BODY, &secrets, now, SignatureError::NoTimestamp),
            (Some("t=1700000000,v0=00"), BODY, &secrets, now, SignatureError::NoSignature),
            (Some(good.as_str()), BODY, &vec![], now, SignatureError::NoSecret),
            (Some(good.as_str()), BODY, &secrets, now + 301, SignatureError::Stale(301)),
            (Some(good.as_str()), BODY, &secrets, now - 301, SignatureError::Stale(-301)),
            (Some(good.as_str()), br#"{"id":"evt_2","object":"event"}"#, &secrets, now, SignatureError::Mismatch),
            (Some(good.as_str()), BODY, &vec!["whsec_other".to_owned()], now, SignatureError::Mismatch),
        ];
        for (header, body, secrets, at, expected) in cases {
            assert_eq!(verify(header, body, secrets, at), Err(expected.clone()), "{header:?}");
        }
        // A timestamp changed after signing breaks the signature.
        let moved = good.replacen(&format!("t={now}"), &format!("t={}", now + 1), 1);
        assert_eq!(verify(Some(&moved), BODY, &secrets, now), Err(SignatureError::Mismatch));
    }
}
