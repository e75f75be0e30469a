//! Generic webhooks signed per the Standard Webhooks specification: a POST of the row's
//! body with `webhook-id` (the idempotency key, the same on every retry),
//! `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret, space-separated
//! while a secret is being rotated). Secrets are shown as `whsec_<base64>`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::Outcome;
use crate::http::{HttpClient, classify};

/// The header carrying the message id.
pub const ID_HEADER: &str = "webhook-id";
/// The header carrying the attempt's Unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying the signatures.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

const PREFIX: &str = "whsec_";
/// Bytes of a generated secret (the specification asks for 24 to 64).
const GENERATED_LEN: usize = 32;

/// A symmetric signing secret. Shown as `whsec_<base64>`; never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// A secret that is not `whsec_` followed by base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The base64 after the prefix does not decode.
    #[error("webhook secret: not base64 after `whsec_`: {0}")]
    Base64(String),
    /// The secret decodes to too few or too many bytes.
    #[error("webhook secret: {0} bytes, expected 24 to 64")]
    Length(usize),
}

impl Secret {
    /// Reads `whsec_<base64>` (the prefix may be left out, as the reference libraries allow).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let text = text.trim();
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        let bytes = STANDARD.decode(encoded).map_err(|e| SecretError::Base64(e.to_string()))?;
        // The specification's own example secret is 24 bytes; fewer is too weak to accept.
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Secret(bytes))
    }

    /// A new random secret (32 bytes from the operating system).
    pub fn generate() -> Secret {
        let mut bytes = vec![0; GENERATED_LEN];
        // The OS random source failing leaves nothing secure to fall back on.
        SystemRandom::new().fill(&mut bytes).expect("the operating system's random source failed");
        Secret(bytes)
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }
}

impl fmt::Display for Secret {
    /// The `whsec_<base64>` form to show a user once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + body.len() + 24);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` value for `body` sent as message `id` at `timestamp` (Unix
/// seconds): `v1,<base64>` for each secret, space-separated, in the order given.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    let content = signed_content(id, timestamp, body);
    secrets
        .iter()
        .map(|secret| format!("v1,{}", STANDARD.encode(hmac::sign(&secret.key(), &content).as_ref())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a received webhook is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `webhook-timestamp` is not a number.
    #[error("webhook-timestamp {0:?} is not a Unix time in seconds")]
    Timestamp(String),
    /// The timestamp is further from now than the tolerance (a replay, or a wrong clock).
    #[error("webhook-timestamp is {0} s away from now, beyond the tolerance")]
    OutOfTolerance(i64),
    /// No `v1` signature matches any of the secrets.
    #[error("no v1 signature in webhook-signature matches")]
    NoMatch,
}

/// Checks a received webhook: the timestamp within `tolerance` of `now` (Unix seconds) and
/// at least one `v1` signature of the header made with one of `secrets`. Signatures of
/// other schemes are skipped; comparisons are constant-time.
pub fn verify(
    secrets: &[Secret],
    id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| VerifyError::Timestamp(timestamp.to_string()))?;
    let skew = now.saturating_sub(ts);
    if skew.unsigned_abs() > tolerance.as_secs() {
        return Err(VerifyError::OutOfTolerance(skew));
    }
    let content = signed_content(id, ts, body);
    for signature in signature_header.split_whitespace() {
        let Some(encoded) = signature.strip_prefix("v1,") else { continue };
        let Ok(tag) = STANDARD.decode(encoded) else { continue };
        if secrets.iter().any(|secret| hmac::verify(&secret.key(), &content, &tag).is_ok()) {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

/// One webhook endpoint's signer: the secrets it signs with (the current one first, then
/// any being rotated out) over the shared HTTP client.
#[derive(Debug, Clone)]
pub struct Webhook {
    http: HttpClient,
    secrets: Vec<Secret>,
}

impl Webhook {
    /// An endpoint signing with `secrets` (at least one).
    pub fn new(http: HttpClient, secrets: Vec<Secret>) -> Webhook {
        Webhook { http, secrets }
    }

    /// POSTs `body` (JSON) to `url` as message `id` (the outbox row's key), signed now,
    /// and reads the answer: 2xx delivered; 410 gone; 408, 409, 425, 429, 5xx, connection
    /// errors and timeouts retried (with `Retry-After`); other statuses rejected.
    pub async fn deliver(&self, url: &str, id: &str, body: &[u8]) -> Outcome {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.deliver_at(url, id, body, i64::try_from(now).unwrap_or(i64::MAX)).await
    }

    /// [`Webhook::deliver`] with the attempt's timestamp given.
    pub async fn deliver_at(&self, url: &str, id: &str, body: &[u8], timestamp: i64) -> Outcome {
        if self.secrets.is_empty() {
            return Outcome::rejected("webhook endpoint has no signing secret");
        }
        // The specification forbids a `.` in the id: it would make the signed content ambiguous.
        if id.is_empty() || id.contains('.') || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Outcome::rejected(format!("webhook id {id:?}: must be visible ASCII without `.`"));
        }
        let signature = sign(&self.secrets, id, timestamp, body);
        let headers = [
            (HeaderName::from_static(ID_HEADER), HeaderValue::from_str(id)),
            (HeaderName::from_static(TIMESTAMP_HEADER), HeaderValue::from_str(&timestamp.to_string())),
            (HeaderName::from_static(SIGNATURE_HEADER), HeaderValue::from_str(&signature)),
        ];
        let mut checked = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            match value {
                Ok(value) => checked.push((name, value)),
                Err(_) => return Outcome::rejected(format!("{name}: not a valid header value")),
            }
        }
        match self.http.deliver(url, "application/json", &checked, Bytes::copy_from_slice(body)).await {
            Ok(answer) => classify(&answer),
            Err(outcome) => outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn reproduces_the_published_example() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(sign(std::slice::from_ref(&secret), SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIGNATURE);
        let tolerance = Duration::from_secs(300);
        assert_eq!(
            verify(std::slice::from_ref(&secret), SPEC_ID, "1614265330", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS, tolerance),
            Ok(())
        );
        // One byte changed anywhere fails.
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                SPEC_ID,
                "1614265330",
                SPEC_SIGNATURE,
                br#"{"test": 2432232315}"#,
                SPEC_TS,
                tolerance
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&[secret], "msg_other", "1614265330", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS, tolerance),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn a_rotation_signs_with_every_secret_and_either_verifies() {
        let old = Secret::parse(SPEC_SECRET).unwrap();
        let new = Secret::generate();
        assert_ne!(old, new);
        let header = sign(&[new.clone(), old.clone()], SPEC_ID, SPEC_TS, SPEC_BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SPEC_SIGNATURE);
        let tolerance = Duration::from_secs(300);
        for receiver in [old, new] {
            assert_eq!(verify(&[receiver], SPEC_ID, "1614265330", &header, SPEC_BODY, SPEC_TS, tolerance), Ok(()));
        }
        // Unknown schemes and garbage are skipped, not errors.
        let other = Secret::generate();
        assert_eq!(
            verify(&[other], SPEC_ID, "1614265330", &format!("v1a,abc v1,%%% {header}"), SPEC_BODY, SPEC_TS, tolerance),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn refuses_old_timestamps_and_bad_secrets() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let tolerance = Duration::from_secs(300);
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                SPEC_ID,
                "1614265330",
                SPEC_SIGNATURE,
                SPEC_BODY,
                SPEC_TS + 301,
                tolerance
            ),
            Err(VerifyError::OutOfTolerance(301))
        );
        assert_eq!(
            verify(&[secret], SPEC_ID, "soon", SPEC_SIGNATURE, SPEC_BODY, SPEC_TS, tolerance),
            Err(VerifyError::Timestamp("soon".into()))
        );
        assert!(matches!(Secret::parse("whsec_!!"), Err(SecretError::Base64(_))));
        assert_eq!(Secret::parse("whsec_c2hvcnQ="), Err(SecretError::Length(5)));
        // The prefix is optional and the display form reads back.
        let generated = Secret::generate();
        assert!(generated.to_string().starts_with("whsec_"));
        assert_eq!(Secret::parse(&generated.to_string()), Ok(generated.clone()));
        assert_eq!(Secret::parse(generated.to_string().trim_start_matches("whsec_")), Ok(generated.clone()));
        assert!(!format!("{generated:?}").contains(&generated.to_string()[6..]));
    }
}
