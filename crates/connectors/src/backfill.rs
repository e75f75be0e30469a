//! Backfills: a provider's history read through its REST API, list by list and page by
//! page, each page's objects stored and applied before the next is asked for, and the cursor
//! saved with them, so a sync cut short (a crash, an error that outlasted its retries)
//! resumes after the last page stored. Rate limits are waited out as the provider asks
//! (`429` with `Retry-After`); other transient failures are retried with backoff.
//!
//! A finished backfill leaves a watermark: the next run asks a provider that can filter by
//! modification time (Salesforce) only for what changed since the last one started, less
//! [`WATERMARK_OVERLAP`]; the others read everything again, which changes nothing that did
//! not change.

use std::time::Duration;

use chrono::Utc;
use domain::{Timestamp, WorkspaceId};
use outbox::http::HttpClient;
use serde::{Deserialize, Serialize};
use store::ConnectorProgress;

use crate::{Config, Connectors, Directory, Provider, WebhookError};

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
    if provider.cursors_expire() {
        state.cursor = None;
    }
    let Some(api_key) = secrets.api_key.clone() else {
        let message = "the connector has no API key to read the provider's history with".to_owned();
        state.failed(&message);
        save(connectors, ws, provider, &mut state, 0).await?;
        connectors.error(ws, provider, "backfill", None, &message, None).await;
        return Ok(Report::default());
    };
    let Some(base) = config.base_url.clone().or_else(|| provider.default_base_url().map(str::to_owned)) else {
        let message = format!("the {} connector needs `config.base_url`, its account's API host", provider.name());
        state.failed(&message);
        save(connectors, ws, provider, &mut state, 0).await?;
        connectors.error(ws, provider, "backfill", None, &message, None).await;
        return Ok(Report::default());
    };
    let headers = provider.auth_headers(&api_key);
    let directory = Directory::load(store.as_ref(), ws, &rules).await?;
    let resources = provider.resources();
    let mut report = Report::default();
    while let Some(resource) = resources.get(state.resource) {
        let url = provider.page_url(&base, resource, state.cursor.as_deref(), state.since, &rules);
        let body = match fetch(http, &url, &headers, retries).await {
            Ok(body) => body,
            Err(message) => {
                state.failed(&message);
                save(connectors, ws, provider, &mut state, 0).await?;
                let record = serde_json::json!({"url": url, "resource": resource.kind, "cursor": state.cursor});
                connectors.error(ws, provider, "backfill", None, &message, Some(record)).await;
                return Ok(report);
            }
        };
        let version = Utc::now().timestamp_millis();
        let (objects, next) = match provider.page(resource, &body, version) {
            Ok(page) => page,
            Err(message) => {
                state.failed(&message);
                save(connectors, ws, provider, &mut state, 0).await?;
                let record = serde_json::from_slice(&body).ok();
                connectors.error(ws, provider, "backfill", None, &message, record).await;
                return Ok(report);
            }
        };
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

/// One page, retried: `429` and `5xx` and failed connections after `Retry-After` or a
/// doubling backoff, other statuses not at all.
async fn fetch(
    http: &HttpClient,
    url: &str,
    headers: &[(&'static str, String)],
    retries: &Retries,
) -> Result<Vec<u8>, String> {
    let mut wait = retries.backoff;
    let mut last = String::new();
    for attempt in 1..=retries.attempts.max(1) {
        let (retry_after, reason) = match http.get(url, headers, MAX_PAGE).await {
            Ok(f) if (200..300).contains(&f.status) => return Ok(f.body),
            Ok(f) if f.status == 429 || f.status >= 500 => (
                f.retry_after,
                format!("HTTP {}: {}", f.status, String::from_utf8_lossy(&f.body[..f.body.len().min(300)])),
            ),
            Ok(f) => {
                let said = String::from_utf8_lossy(&f.body[..f.body.len().min(300)]).into_owned();
                return Err(format!("{url}: HTTP {}: {said}", f.status));
            }
            Err(e) => (None, e),
        };
        last = format!("{url}: {reason} (attempt {attempt} of {})", retries.attempts);
        tracing::debug!(url, reason = %last, "backfill page will be retried");
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
