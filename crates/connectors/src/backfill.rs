//! Backfills: a provider's history read through its REST API, list by list and page by
//! page, each page's objects stored and applied before the next is asked for, and the cursor
//! saved with them, so a sync cut short (a crash, an error that outlasted its retries)
//! resumes after the last page stored. Rate limits are waited out as the provider asks
//! (`429` with `Retry-After`); other transient failures are retried with backoff.
//!
//! A finished backfill leaves a watermark: the next run asks a provider that can filter by
//! modification time (Salesforce's SOQL, HubSpot's CRM search) only for what changed since
//! the last one started, less [`WATERMARK_OVERLAP`]; the others read everything again, which
//! changes nothing that did not change.
//!
//! A provider whose access tokens expire (Salesforce, given a refresh token) has its token
//! renewed when it is missing or refused (`401`), and the new one sealed with its secrets; a
//! refusal of the refresh stops the run with an error an operator sees.

use std::time::Duration;

use chrono::Utc;
use domain::{Timestamp, WorkspaceId};
use outbox::http::{HttpClient, PostBody};
use serde::{Deserialize, Serialize};
use store::ConnectorProgress;

use crate::{Config, Connectors, Directory, PageRequest, Provider, Secrets, WebhookError};

/// Where a connector's backfill is: kept in its record's `sync`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncState {
    /// A backfill is asked for and not finished.
    pub requested: bool,
    /// The list being read (an index into the provider's resources) and the cursor after the
    /// last page stored (none: from its first page).
    pub resource: usize,
    pub cursor: Option<String>,
    /// Read only what changed since then: the start of the last finished backfill, less
    /// [`WATERMARK_OVERLAP`] (none: everything).
    pub since: Option<Timestamp>,
    /// Changes were told (by a webhook) while this backfill ran: another follows it.
    pub again: bool,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Pages and objects of this backfill so far.
    pub pages: u64,
    pub objects: u64,
    /// Why the last attempt stopped, while it is not finished.
    pub last_error: Option<String>,
    /// Attempts in a row that stopped on an error.
    pub failures: u32,
    /// When the next attempt may start, after a failure: 30 s, doubling with each failure in
    /// a row, up to an hour.
    pub retry_at: Option<Timestamp>,
}

impl SyncState {
    /// Records a failed attempt: why, and when to try again.
    fn failed(&mut self, message: &str) {
        self.failures += 1;
        self.last_error = Some(message.to_owned());
        let wait = (30i64 << (self.failures - 1).min(7)).min(3600);
        self.retry_at = Some(Utc::now() + chrono::Duration::seconds(wait));
    }
}

impl SyncState {
    pub fn of(record: &store::ConnectorRecord) -> SyncState {
        serde_json::from_value(record.sync.clone()).unwrap_or_default()
    }

    /// A backfill asked for now: from the start when `full` or none is under way, else from
    /// where the last one stopped. Only `full` forgets the watermark.
    pub fn request(&mut self, full: bool) {
        if full || !self.requested {
            let since = if full { None } else { self.since };
            *self = SyncState { requested: true, since, ..SyncState::default() };
        }
        self.requested = true;
    }
}

/// How hard a backfill tries.
#[derive(Clone, Debug)]
pub struct Retries {
    /// Attempts of one page before the backfill stops (to resume later).
    pub attempts: u32,
    /// The first wait after a failure; doubled each time.
    pub backoff: Duration,
    /// The longest wait, `Retry-After` included.
    pub max_wait: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries { attempts: 6, backoff: Duration::from_secs(1), max_wait: Duration::from_secs(60) }
    }
}

/// How far before the last backfill's start the next one asks for changes: room for the
/// provider's clock being behind ours, and for changes committed late.
pub const WATERMARK_OVERLAP: chrono::Duration = chrono::Duration::minutes(5);

/// The largest list page read: Stripe's 100 objects with expansions are well under it.
const MAX_PAGE: usize = 32 << 20;

/// `text` escaped for a URL's query: what is not unreserved (RFC 3986) is percent-encoded.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What a backfill run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub pages: u64,
    pub objects: u64,
    pub finished: bool,
}

/// Runs `provider`'s backfill in `ws` from where its state says, to the end or the first
/// failure that outlasts its retries (the state then says why and where it stopped).
pub async fn run(
    connectors: &Connectors,
    http: &HttpClient,
    ws: &WorkspaceId,
    provider: Provider,
    retries: &Retries,
) -> Result<Report, WebhookError> {
    let store = connectors.store().clone();
    let Some((record, secrets)) = connectors.load(ws, provider).await? else {
        return Err(WebhookError::NotConfigured(provider.name().into()));
    };
    let config = Config::from_value(&record.config).unwrap_or_default();
    let rules = config.rules();
    let mut state = SyncState::of(&record);
    if !state.requested {
        state.request(false);
    }
    state.started_at.get_or_insert_with(Utc::now);
    state.retry_at = None;
    if let Some(resource) = provider.resources().get(state.resource) {
        state.cursor = provider.resume_cursor(resource, state.cursor.take());
    }
    let Some(base) = config.base_url.clone().or_else(|| provider.default_base_url().map(str::to_owned)) else {
        let message = format!("the {} connector needs `config.base_url`, its account's API host", provider.name());
        return stop(connectors, ws, provider, &mut state, "backfill", &message, None, Report::default()).await;
    };
    let mut auth = Auth { sealed: record.secrets.clone(), secrets, refreshed: false };
    if auth.secrets.api_key.is_none()
        && auth.can_refresh(provider)
        && let Err(message) = auth.refresh(connectors, http, ws, provider, &config, &base).await
    {
        return stop(connectors, ws, provider, &mut state, "auth", &message, None, Report::default()).await;
    }
    let Some(api_key) = auth.secrets.api_key.clone() else {
        let message = "the connector has no API key to read the provider's history with".to_owned();
        return stop(connectors, ws, provider, &mut state, "backfill", &message, None, Report::default()).await;
    };
    let mut headers = provider.auth_headers(&api_key);
    let directory = Directory::load(store.as_ref(), ws, &rules).await?;
    let resources = provider.resources();
    let mut report = Report::default();
    // Cursors found expired within this run and started again (bounded: a provider that
    // keeps expiring them stops the run).
    let mut restarts = 0;
    // A refresh is tried once per page: a token refused right after its refresh is an error.
    let mut refreshed_for_page = false;
    while let Some(resource) = resources.get(state.resource) {
        let request = provider.page_request(&base, resource, state.cursor.as_deref(), state.since, &rules);
        let body = match fetch(http, &request, &headers, retries).await {
            Ok(body) => body,
            Err(failed) => {
                if failed.status == Some(401) && !refreshed_for_page && auth.can_refresh(provider) {
                    refreshed_for_page = true;
                    match auth.refresh(connectors, http, ws, provider, &config, &base).await {
                        Ok(()) => {
                            headers = provider.auth_headers(auth.secrets.api_key.as_deref().unwrap_or_default());
                            continue;
                        }
                        Err(message) => {
                            return stop(connectors, ws, provider, &mut state, "auth", &message, None, report).await;
                        }
                    }
                }
                if let Some(again) =
                    failed.status.and_then(|s| provider.expired_cursor(resource, state.cursor.as_deref(), s))
                    && restarts < 3
                {
                    restarts += 1;
                    tracing::info!(
                        provider = provider.name(),
                        resource = resource.kind,
                        "an expired cursor is started again"
                    );
                    state.cursor = again;
                    continue;
                }
                let record = serde_json::json!({"url": request.url, "resource": resource.kind, "cursor": state.cursor});
                return stop(connectors, ws, provider, &mut state, "backfill", &failed.message, Some(record), report)
                    .await;
            }
        };
        refreshed_for_page = false;
        let version = Utc::now().timestamp_millis();
        let page = provider.page(resource, state.cursor.as_deref(), state.since, &body, version);
        let (mut objects, next) = match page {
            Ok(page) => page,
            Err(message) => {
                let record = serde_json::from_slice(&body).ok();
                return stop(connectors, ws, provider, &mut state, "backfill", &message, record, report).await;
            }
        };
        // What the page does not say of its objects (HubSpot's search leaves out associations)
        // is read before they are stored.
        if let Some(follow) = provider.follow_up(&base, resource, &objects, state.since) {
            let attached = match fetch(http, &follow, &headers, retries).await {
                Ok(body) => provider.attach(resource, &mut objects, &body),
                Err(failed) => Err(failed.message),
            };
            if let Err(message) = attached {
                let record = serde_json::json!({"url": follow.url, "resource": resource.kind, "cursor": state.cursor});
                return stop(connectors, ws, provider, &mut state, "backfill", &message, Some(record), report).await;
            }
        }
        let count = objects.len() as u64;
        let ingested = connectors.ingest(ws, provider, &rules, objects, Some(&directory)).await?;
        report.pages += 1;
        report.objects += count;
        state.pages += 1;
        state.objects += count;
        match next {
            Some(cursor) => state.cursor = Some(cursor),
            None => {
                state.resource += 1;
                state.cursor = None;
            }
        }
        save(connectors, ws, provider, &mut state, ingested.stored as i64).await?;
    }
    // Told of changes meanwhile, it runs again (from the watermark it leaves).
    let again = match store.get_connector(ws, provider.name()).await? {
        Some(r) => state.again || SyncState::of(&r).again,
        None => state.again,
    };
    let finished = SyncState {
        requested: again,
        since: state.started_at.map(|t| t - WATERMARK_OVERLAP),
        // Run again, it starts anew.
        started_at: state.started_at.filter(|_| !again),
        finished_at: Some(Utc::now()),
        pages: state.pages,
        objects: state.objects,
        ..SyncState::default()
    };
    let progress = ConnectorProgress {
        sync: Some(serde_json::to_value(&finished).expect("state serializes")),
        synced_at: finished.finished_at,
        ..Default::default()
    };
    store.record_connector_progress(ws, provider.name(), &progress, Utc::now()).await?;
    report.finished = true;
    Ok(report)
}

/// Stops a run on `message`: the state records the failure (and when to try again), the
/// connector's errors the message with its `record`.
#[allow(clippy::too_many_arguments)]
async fn stop(
    connectors: &Connectors,
    ws: &WorkspaceId,
    provider: Provider,
    state: &mut SyncState,
    stage: &str,
    message: &str,
    record: Option<serde_json::Value>,
    report: Report,
) -> Result<Report, WebhookError> {
    state.failed(message);
    save(connectors, ws, provider, state, 0).await?;
    connectors.error(ws, provider, stage, None, message, record).await;
    Ok(report)
}

/// The API key a run calls with, renewed by the provider's OAuth refresh where it has one.
struct Auth {
    /// The secrets as stored (sealed), to replace only if no one changed them meanwhile.
    sealed: String,
    secrets: Secrets,
    refreshed: bool,
}

impl Auth {
    fn can_refresh(&self, provider: Provider) -> bool {
        provider.refreshes_tokens() && self.secrets.refresh_token.is_some() && !self.refreshed
    }

    /// A new access token from the token endpoint (the connector's `login_url`, else its API
    /// host), kept sealed with the other secrets; the error says why there is none.
    async fn refresh(
        &mut self,
        connectors: &Connectors,
        http: &HttpClient,
        ws: &WorkspaceId,
        provider: Provider,
        config: &Config,
        base: &str,
    ) -> Result<(), String> {
        self.refreshed = true;
        let host = config.login_url.as_deref().unwrap_or(base);
        let fresh = crate::oauth::refresh(http, host, &self.secrets).await.map_err(|e| e.to_string())?;
        self.secrets.api_key = Some(fresh.access_token);
        if let Some(rotated) = fresh.refresh_token {
            self.secrets.refresh_token = Some(rotated);
        }
        let sealed = self.secrets.seal(connectors.key(), ws.as_str(), provider.name());
        let kept = connectors.store().replace_connector_secrets(ws, provider.name(), &self.sealed, &sealed).await;
        match kept {
            Ok(true) => self.sealed = sealed,
            // Changed meanwhile (an operator gave new secrets): this run uses the token it
            // got; the next reads theirs.
            Ok(false) => {
                tracing::info!(workspace = %ws, provider = provider.name(), "refreshed token not kept: secrets changed")
            }
            Err(e) => {
                tracing::warn!(workspace = %ws, provider = provider.name(), error = %e, "keeping a refreshed token failed")
            }
        }
        tracing::info!(workspace = %ws, provider = provider.name(), "access token refreshed");
        Ok(())
    }
}

/// Saves `state`, keeping a webhook's word that changes came meanwhile.
async fn save(
    connectors: &Connectors,
    ws: &WorkspaceId,
    provider: Provider,
    state: &mut SyncState,
    records: i64,
) -> store::Result<()> {
    if let Some(r) = connectors.store().get_connector(ws, provider.name()).await? {
        state.again |= SyncState::of(&r).again;
    }
    let progress = ConnectorProgress {
        sync: Some(serde_json::to_value(state).expect("state serializes")),
        records,
        ..Default::default()
    };
    connectors.store().record_connector_progress(ws, provider.name(), &progress, Utc::now()).await.map(|_| ())
}

/// Why a request gave nothing usable: the last status (if one came) and what was said.
#[derive(Debug)]
struct Failed {
    status: Option<u16>,
    message: String,
}

/// One request, retried: `429` and `5xx` and failed connections after `Retry-After` or a
/// doubling backoff, other statuses not at all.
async fn fetch(
    http: &HttpClient,
    request: &PageRequest,
    headers: &[(&'static str, String)],
    retries: &Retries,
) -> Result<Vec<u8>, Failed> {
    let url = request.url.as_str();
    let mut wait = retries.backoff;
    let mut last = Failed { status: None, message: String::new() };
    for attempt in 1..=retries.attempts.max(1) {
        let answer = match &request.body {
            Some(body) => http.post(url, headers, PostBody::Json(body), MAX_PAGE).await,
            None => http.get(url, headers, MAX_PAGE).await,
        };
        let (retry_after, status, reason) = match answer {
            Ok(f) if (200..300).contains(&f.status) => return Ok(f.body),
            Ok(f) if f.status == 429 || f.status >= 500 => (
                f.retry_after,
                Some(f.status),
                format!("HTTP {}: {}", f.status, String::from_utf8_lossy(&f.body[..f.body.len().min(300)])),
            ),
            Ok(f) => {
                let said = String::from_utf8_lossy(&f.body[..f.body.len().min(300)]).into_owned();
                return Err(Failed { status: Some(f.status), message: format!("{url}: HTTP {}: {said}", f.status) });
            }
            Err(e) => (None, None, e),
        };
        last = Failed { status, message: format!("{url}: {reason} (attempt {attempt} of {})", retries.attempts) };
        tracing::debug!(url, reason = %last.message, "backfill page will be retried");
        if attempt < retries.attempts {
            tokio::time::sleep(retry_after.unwrap_or(wait).min(retries.max_wait)).await;
            wait = (wait * 2).min(retries.max_wait);
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_keeps_the_watermark_unless_full() {
        let since = Utc::now() - chrono::Duration::hours(2);
        let mut done = SyncState { since: Some(since), pages: 9, ..SyncState::default() };
        done.request(false);
        assert_eq!((done.requested, done.since, done.pages), (true, Some(since), 0));
        // Under way, a request resumes it where it is.
        done.resource = 2;
        done.request(false);
        assert_eq!((done.resource, done.since), (2, Some(since)));
        done.request(true);
        assert_eq!((done.resource, done.since), (0, None));
        assert_eq!(query_escape("a b,c=d/é"), "a%20b%2Cc%3Dd%2F%C3%A9");
    }
}
