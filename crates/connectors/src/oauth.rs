//! OAuth 2.0 access tokens renewed with a refresh token (RFC 6749, section 6), as a
//! Salesforce connected app issues them: `POST {host}/services/oauth2/token` with
//! `grant_type=refresh_token`, the client's id and secret and the refresh token, form-encoded.
//! The answer is a new access token (and, where the app rotates them, a new refresh token);
//! a refusal (`invalid_grant`: the refresh token was revoked or expired) is the provider's
//! word that only an operator can fix it.

use outbox::http::{HttpClient, PostBody};
use serde_json::Value;

use crate::secrets::Secrets;

/// The path of Salesforce's token endpoint, from its login host or an org's My Domain.
pub const TOKEN_PATH: &str = "/services/oauth2/token";

/// The most of a token answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// What a refresh gave.
#[derive(Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub access_token: String,
    /// A new refresh token, when the app rotates them (the old one is then void).
    pub refresh_token: Option<String>,
    /// The org's API host, as the token endpoint says it.
    pub instance_url: Option<String>,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshed").field("instance_url", &self.instance_url).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The connector has no refresh token, or no client id to use it with.
    #[error("the connector has no {0} to refresh its access token with")]
    Missing(&'static str),
    /// The token endpoint refused: the grant or the client is wrong, revoked or expired.
    #[error("the token endpoint refused the refresh ({error}{}); give the connector a new refresh token",
        .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    /// No usable answer: the endpoint could not be reached, failed, or answered nonsense.
    #[error("refreshing the access token failed: {0}")]
    Failed(String),
}

impl RefreshError {
    /// Whether trying again later may work without an operator.
    pub fn transient(&self) -> bool {
        matches!(self, RefreshError::Failed(_))
    }
}

/// Asks `host`'s token endpoint for a new access token with `secrets`' refresh token.
pub async fn refresh(http: &HttpClient, host: &str, secrets: &Secrets) -> Result<Refreshed, RefreshError> {
    let refresh_token = secrets.refresh_token.as_deref().ok_or(RefreshError::Missing("refresh token"))?;
    let client_id = secrets.client_id.as_deref().ok_or(RefreshError::Missing("client id"))?;
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)];
    if let Some(secret) = secrets.client_secret.as_deref() {
        form.push(("client_secret", secret));
    }
    let url = format!("{}{TOKEN_PATH}", host.trim_end_matches('/'));
    let headers = [("accept", "application/json".to_owned())];
    let answer = http.post(&url, &headers, PostBody::Form(&form), MAX_ANSWER).await.map_err(RefreshError::Failed)?;
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned).filter(|s| !s.is_empty());
    match answer.status {
        200..=299 => Ok(Refreshed {
            access_token: text("access_token")
                .ok_or_else(|| RefreshError::Failed("the token endpoint's answer has no `access_token`".into()))?,
            refresh_token: text("refresh_token"),
            instance_url: text("instance_url"),
        }),
        // RFC 6749 5.2: a refused grant or client is a 400 (or 401) naming the error.
        400 | 401 if text("error").is_some() => Err(RefreshError::Refused {
            error: text("error").unwrap_or_default(),
            description: text("error_description"),
        }),
        status => {
            let said = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
            Err(RefreshError::Failed(format!("{url}: HTTP {status}: {said}")))
        }
    }
}
