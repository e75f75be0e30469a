//! The HTTPS client the webhook and Slack channels share, and the connectors read providers'
//! APIs with: hyper over rustls (ring, Mozilla's roots), connect and total timeouts,
//! redirects never followed, and the common reading of an HTTP answer as an [`Outcome`].

use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::Outcome;
use crate::outcome::shorten;
use crate::retry::parse_retry_after;
pub use crate::tls::TlsError;

/// How the HTTP channels connect.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The longest a TCP connect (and the TLS handshake's start) may take.
    pub connect_timeout: Duration,
    /// The longest a whole attempt may take: connect, request, and the answer's body.
    pub total_timeout: Duration,
    /// The `User-Agent` sent.
    pub user_agent: String,
    /// Extra trusted roots (PEM), for endpoints behind a private CA.
    pub extra_root_pem: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            // The Standard Webhooks guidance: give receivers 15 to 30 seconds.
            total_timeout: Duration::from_secs(30),
            user_agent: "Steward-Outbox/1".into(),
            extra_root_pem: None,
        }
    }
}

/// The most of an answer's body read: enough for an error string, not a whole page.
const MAX_BODY: usize = 16 * 1024;
/// The most of an answer kept in an attempt's detail or reason.
pub(crate) const MAX_DETAIL: usize = 512;

/// A pooled HTTP/1.1 client over plain TCP or rustls; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    total_timeout: Duration,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("total_timeout", &self.total_timeout).finish_non_exhaustive()
    }
}

/// What came back from an endpoint, read as far as the channels need it.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the body, lossily decoded.
    pub body: String,
}

/// Why an [`HttpClient`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    /// The TLS configuration (extra roots) is wrong.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The user agent is not a valid header value.
    #[error("user agent {0:?} is not a valid header value")]
    UserAgent(String),
}

impl HttpClient {
    /// A client for `config`.
    pub fn new(config: &HttpConfig) -> Result<HttpClient, HttpConfigError> {
        let tls = crate::tls::client_config(config.extra_root_pem.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Idle connections are closed after a while: endpoints are many and most are rare.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| HttpConfigError::UserAgent(config.user_agent.clone()))?;
        Ok(HttpClient { client, total_timeout: config.total_timeout, user_agent })
    }

    /// POSTs `body` to `url` with `headers` and reads the answer, all within the total
    /// timeout. Errors are already outcomes: a URL that cannot be used is `Rejected`, a
    /// connection that fails or an answer that does not come in time is `Retry`.
    pub(crate) async fn deliver(
        &self,
        url: &str,
        content_type: &'static str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Answer, Outcome> {
        let uri: Uri = url.parse().map_err(|e| Outcome::rejected(format!("endpoint URL {url:?}: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") if uri.host().is_some() => {}
            _ => return Err(Outcome::rejected(format!("endpoint URL {url:?}: must be an absolute http(s) URL"))),
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, content_type)
            .header(USER_AGENT, self.user_agent.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| Outcome::rejected(format!("request: {e}")))?;
        let attempt = async {
            let response = self.client.request(request).await.map_err(|e| Outcome::retry(describe(&e)))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let mut body = response.into_body();
            let mut read = Vec::new();
            while read.len() < MAX_BODY {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            read.extend_from_slice(&data[..data.len().min(MAX_BODY - read.len())]);
                        }
                    }
                    // A body cut short still has its status: that is the answer.
                    Some(Err(_)) | None => break,
                }
            }
            Ok(Answer { status, retry_after, body: String::from_utf8_lossy(&read).into_owned() })
        };
        match tokio::time::timeout(self.total_timeout, attempt).await {
            Ok(answer) => answer,
            Err(_) => Err(Outcome::retry(format!("no answer within {:?}", self.total_timeout))),
        }
    }
}

/// A whole answer to a GET or a POST: its status, `Retry-After`, and its body.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The HTTP status.
    pub status: u16,
    /// What `Retry-After` asked for, if it was given and readable.
    pub retry_after: Option<Duration>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// What a POST carries: form fields (`application/x-www-form-urlencoded`, as OAuth token
/// endpoints take them) or a JSON document.
#[derive(Clone, Copy, Debug)]
pub enum PostBody<'a> {
    /// Names and values, sent form-encoded.
    Form(&'a [(&'a str, &'a str)]),
    /// A JSON document.
    Json(&'a serde_json::Value),
}

impl PostBody<'_> {
    fn encode(&self) -> (&'static str, Bytes) {
        match self {
            PostBody::Form(fields) => ("application/x-www-form-urlencoded", Bytes::from(form_encode(fields))),
            PostBody::Json(value) => ("application/json", Bytes::from(value.to_string())),
        }
    }
}

/// `fields` as an `application/x-www-form-urlencoded` body: names and values with every byte
/// but the unreserved ones (RFC 3986) percent-encoded, joined by `&`.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    let escape = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    fields.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect::<Vec<_>>().join("&")
}

impl HttpClient {
    /// GETs `url` with `headers` and reads the whole answer (up to `max_body` bytes, else an
    /// error) within the total timeout: what a backfill reads a provider's list pages with.
    /// The error says why nothing usable came back (URL, connection, timeout, size).
    pub async fn get(&self, url: &str, headers: &[(&str, String)], max_body: usize) -> Result<Fetched, String> {
        self.fetch(Method::GET, url, headers, None, max_body).await
    }

    /// POSTs `body` to `url` with `headers`, read as [`HttpClient::get`] reads: the same
    /// URL rules, timeouts, size limit and errors, redirects not followed (a 3xx is an answer
    /// like any other). What a connector searches a provider with (HubSpot's CRM search) or
    /// refreshes an OAuth access token with.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: PostBody<'_>,
        max_body: usize,
    ) -> Result<Fetched, String> {
        self.fetch(Method::POST, url, headers, Some(body.encode()), max_body).await
    }

    async fn fetch(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<(&'static str, Bytes)>,
        max_body: usize,
    ) -> Result<Fetched, String> {
        let uri: Uri = url.parse().map_err(|e| format!("URL {url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!("URL {url:?}: must be an absolute http(s) URL"));
        }
        let mut request = Request::builder().method(method).uri(uri).header(USER_AGENT, self.user_agent.clone());
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| format!("request: {e}"))?;
        let attempt = async {
            let response = self.client.request(request).await.map_err(|e| describe(&e))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let mut body = response.into_body();
            let mut read = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(|e| describe(&e))?.into_data() {
                    if read.len() + data.len() > max_body {
                        return Err(format!("the answer is larger than {max_body} bytes"));
                    }
                    read.extend_from_slice(&data);
                }
            }
            Ok(Fetched { status, retry_after, body: read })
        };
        match tokio::time::timeout(self.total_timeout, attempt).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {:?}", self.total_timeout)),
        }
    }
}

/// The error with its causes, which say what really failed (refused, DNS, certificate).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    shorten(&text, MAX_DETAIL)
}

/// The common reading of an HTTP answer: 2xx delivered; 410 gone; 408, 409, 425, 429 and
/// 5xx retried (after `Retry-After` if given); any other status (3xx: redirects are not
/// followed, the endpoint's URL should change; other 4xx) rejected.
pub(crate) fn classify(answer: &Answer) -> Outcome {
    let status = Some(answer.status);
    let said = shorten(&answer.body, MAX_DETAIL);
    let reason =
        if said.is_empty() { format!("HTTP {}", answer.status) } else { format!("HTTP {}: {said}", answer.status) };
    match answer.status {
        200..=299 => Outcome::Delivered { status, detail: said },
        410 => Outcome::Gone { status, reason },
        408 | 409 | 425 | 429 | 500..=599 => Outcome::Retry { status, retry_after: answer.retry_after, reason },
        300..=399 => {
            Outcome::Rejected { status, reason: format!("{reason} (redirects are not followed; update the URL)") }
        }
        _ => Outcome::Rejected { status, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, retry_after: None, body: body.into() }
    }

    #[test]
    fn forms_are_percent_encoded() {
        let fields = [("grant_type", "refresh_token"), ("refresh_token", "5Aep861.a/b+c=d&e f"), ("é", "")];
        assert_eq!(
            form_encode(&fields),
            "grant_type=refresh_token&refresh_token=5Aep861.a%2Fb%2Bc%3Dd%26e%20f&%C3%A9="
        );
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify(&answer(204, "")), Outcome::Delivered { status: Some(204), detail: String::new() });
        assert_eq!(classify(&answer(410, "bye")), Outcome::Gone { status: Some(410), reason: "HTTP 410: bye".into() });
        for status in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert_eq!(classify(&answer(status, "")).kind(), "retry", "{status}");
        }
        for status in [301, 302, 400, 401, 403, 404, 405, 413, 422] {
            assert_eq!(classify(&answer(status, "")).kind(), "rejected", "{status}");
        }
        let slow = Answer { status: 503, retry_after: Some(Duration::from_secs(7)), body: String::new() };
        assert_eq!(
            classify(&slow),
            Outcome::Retry { status: Some(503), retry_after: Some(Duration::from_secs(7)), reason: "HTTP 503".into() }
        );
    }
}
