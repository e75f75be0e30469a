//! HubSpot's webhook signature, version 3: `X-HubSpot-Signature-v3` is the base64 of an
//! HMAC-SHA256, keyed by the app's client secret, of the method, the full URI HubSpot called
//! (scheme, host, path and query), the raw body and `X-HubSpot-Request-Timestamp`
//! (milliseconds) concatenated. A timestamp older than five minutes is refused.
//!
//! Steward rebuilds the URI from the request: the host from `X-Forwarded-Host` or `Host`, the
//! path and query as received (`:path`), either scheme (a proxy in front usually ends TLS).
//! A proxy must therefore keep the host and path HubSpot was given. HubSpot decodes a few
//! percent-escapes in the URI before signing (`%3A` is signed as `:` and so on); so does this.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

/// HubSpot's documented limit on a timestamp's age.
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;

/// The method HubSpot delivers webhooks with.
const METHOD: &str = "POST";

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the X-HubSpot-Signature-v3 header is missing")]
    Missing,
    #[error("the X-HubSpot-Request-Timestamp header is missing or not milliseconds")]
    NoTimestamp,
    #[error("the request's host or path is unknown, so its URI cannot be rebuilt")]
    NoUri,
    #[error("the signature's timestamp is {0} ms old, beyond the 300 s HubSpot allows")]
    Stale(i64),
    #[error("the signature matches the body with none of the connector's client secrets")]
    Mismatch,
    #[error("the connector has no client secret to check signatures with")]
    NoSecret,
}

/// The escapes HubSpot decodes in the URI it signs.
const DECODED: [(&str, &str); 12] = [
    ("%3A", ":"),
    ("%2F", "/"),
    ("%3F", "?"),
    ("%40", "@"),
    ("%21", "!"),
    ("%24", "$"),
    ("%27", "'"),
    ("%28", "("),
    ("%29", ")"),
    ("%2A", "*"),
    ("%2C", ","),
    ("%3B", ";"),
];

fn decoded(uri: &str) -> String {
    let mut out = uri.to_owned();
    for (escape, plain) in DECODED {
        out = out.replace(escape, plain).replace(&escape.to_ascii_lowercase(), plain);
    }
    out
}

/// What HubSpot signs: the method, the URI as it decodes it, the body and the timestamp.
fn signed(uri: &str, body: &[u8], timestamp: &str) -> Vec<u8> {
    let uri = decoded(uri);
    let mut signed = Vec::with_capacity(METHOD.len() + uri.len() + body.len() + timestamp.len());
    signed.extend_from_slice(METHOD.as_bytes());
    signed.extend_from_slice(uri.as_bytes());
    signed.extend_from_slice(body);
    signed.extend_from_slice(timestamp.as_bytes());
    signed
}

/// Checks a delivery with each of `secrets`, `now_ms` in milliseconds; `header` gives the
/// request's headers and `:path`.
pub fn verify(
    header: &(dyn Fn(&str) -> Option<String> + Sync),
    body: &[u8],
    secrets: &[String],
    now_ms: i64,
) -> Result<(), SignatureError> {
    let signature = header("x-hubspot-signature-v3").ok_or(SignatureError::Missing)?;
    let timestamp = header("x-hubspot-request-timestamp").ok_or(SignatureError::NoTimestamp)?;
    let t = timestamp.trim().parse::<i64>().map_err(|_| SignatureError::NoTimestamp)?;
    let host = header("x-forwarded-host").or_else(|| header("host")).ok_or(SignatureError::NoUri)?;
    let path = header(":path").ok_or(SignatureError::NoUri)?;
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    if now_ms - t > MAX_AGE_MS {
        return Err(SignatureError::Stale(now_ms - t));
    }
    // A value that is not base64 cannot match.
    let Ok(expected) = STANDARD.decode(signature.trim()) else { return Err(SignatureError::Mismatch) };
    let host = host.split(',').next().unwrap_or_default().trim();
    for scheme in ["https", "http"] {
        let signed = signed(&format!("{scheme}://{host}{path}"), body, timestamp.trim());
        for secret in secrets {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            // `verify` compares in constant time.
            if hmac::verify(&key, &signed, &expected).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// The `X-HubSpot-Signature-v3` HubSpot would send for `body` posted to `uri` at `t_ms`: for
/// tests and local servers.
pub fn sign(uri: &str, body: &[u8], secret: &str, t_ms: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    STANDARD.encode(hmac::sign(&key, &signed(uri, body, &t_ms.to_string())).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"[{"eventId":1,"subscriptionType":"company.creation","objectId":7}]"#;
    const URI: &str = "https://steward.example.com/webhooks/hubspot/acme";

    fn headers(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> + Sync {
        move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    fn request(signature: &str, t: i64) -> Vec<(&'static str, String)> {
        vec![
            ("x-hubspot-signature-v3", signature.to_owned()),
            ("x-hubspot-request-timestamp", t.to_string()),
            ("host", "steward.example.com".to_owned()),
            (":path", "/webhooks/hubspot/acme".to_owned()),
        ]
    }

    #[test]
    fn a_signature_is_checked_as_hubspot_signs() {
        let now = 1_700_000_000_000;
        let secrets = vec!["old-secret".to_owned(), "client-secret".to_owned()];
        let good = sign(URI, BODY, "client-secret", now);
        assert_eq!(verify(&headers(request(&good, now)), BODY, &secrets, now + 1_000), Ok(()));
        // Behind a proxy ending TLS the request arrives over http; the host it forwards counts.
        let mut proxied = request(&good, now);
        proxied[2] = ("host", "127.0.0.1:8080".to_owned());
        proxied.push(("x-forwarded-host", "steward.example.com".to_owned()));
        assert_eq!(verify(&headers(proxied), BODY, &secrets, now), Ok(()));
        // HubSpot signs `%3A` in a query as `:`.
        let with_query = sign(&format!("{URI}?at=10:30"), BODY, "client-secret", now);
        let mut escaped = request(&with_query, now);
        escaped[3] = (":path", "/webhooks/hubspot/acme?at=10%3A30".to_owned());
        assert_eq!(verify(&headers(escaped), BODY, &secrets, now), Ok(()));

        let mut missing = request(&good, now);
        missing.remove(0);
        let mut other_path = request(&good, now);
        other_path[3] = (":path", "/webhooks/hubspot/other".to_owned());
        let cases = [
            (missing, BODY, secrets.clone(), now, SignatureError::Missing),
            (request(&good, now), BODY, vec![], now, SignatureError::NoSecret),
            (request(&good, now), BODY, secrets.clone(), now + MAX_AGE_MS + 1, SignatureError::Stale(MAX_AGE_MS + 1)),
            (request(&good, now), &BODY[1..], secrets.clone(), now, SignatureError::Mismatch),
            (request(&good, now), BODY, vec!["someone-else".to_owned()], now, SignatureError::Mismatch),
            (request(&good, now + 1), BODY, secrets.clone(), now, SignatureError::Mismatch),
            (request("not base64!", now), BODY, secrets.clone(), now, SignatureError::Mismatch),
            (other_path, BODY, secrets.clone(), now, SignatureError::Mismatch),
        ];
        for (i, (request, body, secrets, at, expected)) in cases.into_iter().enumerate() {
            assert_eq!(verify(&headers(request), body, &secrets, at), Err(expected), "case {i}");
        }
    }
}
